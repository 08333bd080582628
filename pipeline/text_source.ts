/**
 * Streams documents (or records of several text fields, such as instruction pairs) from the files
 * a user has: Parquet (columns chosen by name), JSON Lines, a JSON array, or plain text (one
 * document per line), or a folder of them. Batches keep memory bounded: a corpus never has to fit
 * in memory at once. Files are what their bytes say, whatever their names: gzip data (`.jsonl.gz`,
 * or a download that lost its `.gz`) is decompressed as it is read; other compressed data (zstd,
 * xz, bzip2, zip) and Parquet under a text name are refused with what to do; text with a NUL byte
 * in its first kilobyte is binary, and text that is not valid UTF-8 is an error naming the file
 * and the byte offset, so binary or Latin-1 bytes are never trained on as text.
 *
 * @module
 */

import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";

/**
 * A file that Parquet is read from by byte ranges: hyparquet's `AsyncBuffer`, spelled out here so
 * that it is part of this module's documented API. A local file or a hub file read by HTTP range
 * requests ({@linkcode hubFileBuffer}) is one.
 */
export interface AsyncBuffer {
  /** The file's size in bytes. */
  byteLength: number;
  /** Bytes `[start, end)` of the file; `end` defaults to the file's end. */
  slice(start: number, end?: number): ArrayBuffer | Promise<ArrayBuffer>;
}

/** Options of {@linkcode readRecordBatches}. */
export interface RecordSourceOptions {
  /** Records per batch. Default 1000. */
  batchSize?: number;
  /**
   * Fields every record must have as strings. Plain text gives one, a line: with more, a plain
   * text file is refused.
   */
  fields: readonly string[];
  /** Fields read when present; a missing one becomes "". */
  optionalFields?: readonly string[];
  /**
   * Plain text: yield every line with its line ending, blank lines included, as Hugging Face's
   * file trainer sees them (a tokenizer trained without them learns other merges). Default
   * false: lines without endings, blank lines skipped.
   */
  keepLineEndings?: boolean;
  /**
   * Keep only the records whose `source` field is one of these (the bundled files name each
   * record's origin); records without one are dropped. Default: every record.
   */
  sources?: readonly string[];
}

/** Options of {@linkcode readTextBatches}. */
export interface TextSourceOptions extends Omit<RecordSourceOptions, "fields" | "optionalFields"> {
  /** The Parquet column or JSON field holding the text. Default `text`. */
  textField?: string;
}

/** A record of string fields, as read by {@linkcode readRecordBatches}. */
export type TextRecord = Record<string, string>;

const SUPPORTED = /\.(parquet|(jsonl|ndjson|json|txt|text|md)(\.gz)?)$/i;

/**
 * Yields batches of documents' text from a file or a folder of files (read in name order).
 *
 * @throws when the path does not exist, a file is corrupt, or has no text field; the message
 * says which file and what to do.
 */
export async function* readTextBatches(
  path: string,
  { textField = "text", ...options }: TextSourceOptions = {},
): AsyncGenerator<string[]> {
  for await (const batch of readRecordBatches(path, { ...options, fields: [textField] })) {
    yield batch.map((record) => record[textField]);
  }
}

/**
 * Yields batches of records with the named string fields from a file or a folder of files (read
 * in name order): Parquet columns, JSON Lines or JSON array objects (a bare string is the first
 * field), or the lines of a text file (each the first field).
 */
export async function* readRecordBatches(
  path: string,
  options: RecordSourceOptions,
): AsyncGenerator<TextRecord[]> {
  if (options.sources) {
    const keep = new Set(options.sources);
    const optionalFields = [...options.optionalFields ?? [], "source"];
    for await (
      const batch of readRecordBatches(path, { ...options, sources: undefined, optionalFields })
    ) {
      const kept = batch.filter((record) => keep.has(record.source));
      if (kept.length > 0) yield kept;
    }
    return;
  }
  const stat = await Deno.stat(path).catch(() => {
    throw new Error(
      `No such file or folder: ${path}. Pass a Parquet, JSON Lines, JSON or text file, ` +
        "or a folder of them.",
    );
  });
  if (stat.isDirectory) {
    const names: string[] = [];
    for await (const entry of Deno.readDir(path)) {
      if (entry.isFile && SUPPORTED.test(entry.name)) names.push(entry.name);
    }
    if (names.length === 0) {
      throw new Error(
        `The folder ${path} holds no Parquet, JSON Lines, JSON or text files (plain or .gz).`,
      );
    }
    for (const name of names.sort()) yield* readRecordBatches(`${path}/${name}`, options);
    return;
  }
  // The format is named by the extension under any `.gz`.
  const format = path.replace(/\.gz$/i, "");
  if (/\.parquet$/i.test(format) && format !== path) {
    throw new Error(`${path}: compressed Parquet is not read; decompress it (gunzip) first.`);
  } else if (/\.parquet$/i.test(path)) {
    yield* parquetRecordBatches(await asyncBufferFromFile(path), path, options);
  } else if (/\.(jsonl|ndjson)$/i.test(format)) {
    yield* jsonLinesBatches(path, options);
  } else if (/\.json$/i.test(format)) {
    yield* jsonArrayBatches(path, options);
  } else {
    yield* plainTextBatches(path, options);
  }
}

/**
 * Yields the text column of a Parquet file, a batch of rows at a time; see
 * {@linkcode parquetRecordBatches}.
 */
export async function* parquetTextBatches(
  file: AsyncBuffer,
  name: string,
  { textField = "text", batchSize }: TextSourceOptions = {},
): AsyncGenerator<string[]> {
  for await (const batch of parquetRecordBatches(file, name, { batchSize, fields: [textField] })) {
    yield batch.map((record) => record[textField]);
  }
}

/**
 * Yields the named columns of a Parquet file, read a batch of rows at a time: only the pages of
 * those columns are fetched, so a remote file is read by byte ranges, never whole.
 *
 * @param name the file's name or address, for error messages.
 */
export async function* parquetRecordBatches(
  file: AsyncBuffer,
  name: string,
  { batchSize = 1000, fields, optionalFields = [] }: RecordSourceOptions,
): AsyncGenerator<TextRecord[]> {
  const metadata = await parquetMetadataAsync(file).catch((e: Error) => {
    throw new Error(
      `${name} is not a readable Parquet file (${e.message}). It may be truncated or corrupt: ` +
        "download it again.",
    );
  });
  const columns = metadata.schema.slice(1).map((column) => column.name);
  for (const field of fields) {
    if (!columns.includes(field)) {
      throw new Error(
        `${name} has no column "${field}" (it has: ${columns.join(", ")}); ` +
          (fields.length === 1
            ? "choose the text column with --text-field."
            : "pick another file."),
      );
    }
  }
  const wanted = [...fields, ...optionalFields.filter((f) => columns.includes(f))];
  // Batches never cross a row group, so a reader that stops early fetches no later group.
  let groupStart = 0;
  for (const group of metadata.row_groups) {
    const groupEnd = groupStart + Number(group.num_rows);
    for (let rowStart = groupStart; rowStart < groupEnd; rowStart += batchSize) {
      const rowEnd = Math.min(groupEnd, rowStart + batchSize);
      const objects = await parquetReadObjects({
        file,
        metadata,
        columns: wanted,
        rowStart,
        rowEnd,
        useOffsetIndex: true,
      }).catch((e: Error) => {
        throw new Error(`Rows ${rowStart}-${rowEnd} of ${name} could not be read: ${e.message}.`);
      });
      yield objects.map((row, index) => {
        const record: TextRecord = {};
        for (const field of fields) {
          const value = row[field] ?? "";
          // Numbers or lists written out as documents would be trained on as if they were text.
          if (typeof value !== "string") {
            throw new Error(
              `${name}: column "${field}" of row ${rowStart + index} holds ` +
                `${describeValue(value)}, not text; ` +
                (fields.length === 1
                  ? "choose the text column with --text-field."
                  : "pick another file."),
            );
          }
          record[field] = value;
        }
        for (const field of optionalFields) record[field] = String(row[field] ?? "");
        return record;
      });
    }
    groupStart = groupEnd;
  }
}

/** What a non-text Parquet value is, for a message: "a number (42)". */
function describeValue(value: unknown): string {
  const shown = JSON.stringify(value, (_, v) => typeof v === "bigint" ? `${v}` : v) ?? "";
  const kind = Array.isArray(value) ? "a list" : `a ${typeof value}`;
  return `${kind} (${shown.length > 40 ? shown.slice(0, 40) + "…" : shown})`;
}

async function* jsonLinesBatches(
  path: string,
  options: RecordSourceOptions,
): AsyncGenerator<TextRecord[]> {
  const batchSize = options.batchSize ?? 1000;
  let batch: TextRecord[] = [];
  let lineNumber = 0;
  for await (const line of readLines(path)) {
    lineNumber++;
    if (line.trim() === "") continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (e) {
      throw new Error(`Line ${lineNumber} of ${path} is not valid JSON: ${(e as Error).message}.`);
    }
    batch.push(recordOf(record, options, `line ${lineNumber} of ${path}`));
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

async function* jsonArrayBatches(
  path: string,
  options: RecordSourceOptions,
): AsyncGenerator<TextRecord[]> {
  const batchSize = options.batchSize ?? 1000;
  let records: unknown;
  try {
    records = JSON.parse(await readText(path));
  } catch (e) {
    if (e instanceof NotTextError) throw e;
    throw new Error(`${path} is not valid JSON: ${(e as Error).message}.`);
  }
  if (!Array.isArray(records)) {
    throw new Error(`${path} must hold a JSON array of records; use JSON Lines for streams.`);
  }
  for (let i = 0; i < records.length; i += batchSize) {
    yield records.slice(i, i + batchSize).map((record, j) =>
      recordOf(record, options, `item ${i + j} of ${path}`)
    );
  }
}

/** The wanted fields of a JSON value: a bare string is the first field. */
function recordOf(value: unknown, options: RecordSourceOptions, where: string): TextRecord {
  const { fields, optionalFields = [] } = options;
  const object = typeof value === "string"
    ? { [fields[0]]: value }
    : (value ?? {}) as Record<string, unknown>;
  const record: TextRecord = {};
  for (const field of fields) {
    const text = object[field];
    if (typeof text !== "string") {
      const shape = fields.map((f) => `"${f}": "..."`).join(", ");
      throw new Error(
        `${where} has no string field "${field}"; each record must look like {${shape}}` +
          (fields.length === 1 ? " (choose the field with --text-field)." : "."),
      );
    }
    record[field] = text;
  }
  for (const field of optionalFields) {
    const text = object[field];
    record[field] = typeof text === "string" ? text : "";
  }
  return record;
}

async function* plainTextBatches(
  path: string,
  { batchSize = 1000, keepLineEndings = false, fields }: RecordSourceOptions,
): AsyncGenerator<TextRecord[]> {
  if (fields.length > 1) {
    // A line of text is one field; records of several (instruction pairs) need structure.
    throw new Error(
      `${path} is read as plain text, but each record needs the fields ${fields.join(", ")}; ` +
        "pass JSON Lines (.jsonl), JSON (.json) or Parquet (.parquet) records with them.",
    );
  }
  let batch: TextRecord[] = [];
  for await (const line of readLines(path, keepLineEndings)) {
    if (!keepLineEndings && line.trim() === "") continue;
    batch.push({ [fields[0]]: line });
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/** A file's bytes are not UTF-8 text, or not data this module reads. */
export class NotTextError extends Error {}

/** Signatures of compressed or binary files and how to get text out of them. */
const SIGNATURES: Array<{ magic: number[]; what: string; fix: (path: string) => string }> = [
  {
    magic: [0x28, 0xb5, 0x2f, 0xfd],
    what: "compressed with zstd",
    fix: (path) => `decompress it first with zstd -d ${path}`,
  },
  {
    magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
    what: "compressed with xz",
    fix: (path) => `decompress it first with xz -d ${path}`,
  },
  {
    magic: [0x42, 0x5a, 0x68], // "BZh", then a block size digit
    what: "compressed with bzip2",
    fix: (path) => `decompress it first with bunzip2 ${path}`,
  },
  {
    magic: [0x50, 0x4b, 0x03, 0x04],
    what: "a zip archive",
    fix: () => "unzip it and pass the files inside",
  },
  {
    magic: [0x50, 0x41, 0x52, 0x31], // "PAR1"
    what: "a Parquet file",
    fix: () => "give it a .parquet name so it is read as one",
  },
];

const GZIP_MAGIC = [0x1f, 0x8b];

function startsWith(bytes: Uint8Array, magic: readonly number[]): boolean {
  return bytes.length >= magic.length && magic.every((byte, i) => bytes[i] === byte);
}

/** Reads up to `n` bytes from the start of an open file, then seeks back to the start. */
async function peek(file: Deno.FsFile, n: number): Promise<Uint8Array> {
  const head = new Uint8Array(n);
  let filled = 0;
  while (filled < n) {
    const read = await file.read(head.subarray(filled));
    if (read === null) break;
    filled += read;
  }
  await file.seek(0, Deno.SeekMode.Start);
  return head.subarray(0, filled);
}

/**
 * The bytes of a file, gzip-decompressed when they start with gzip's signature (whatever the
 * name); refused when they are other compressed or binary data.
 */
async function openBytes(
  path: string,
): Promise<{ stream: ReadableStream<Uint8Array>; gzip: boolean }> {
  const file = await Deno.open(path);
  const head = await peek(file, 8).catch((error) => {
    file.close();
    throw error;
  });
  if (startsWith(head, GZIP_MAGIC)) {
    return { stream: file.readable.pipeThrough(new DecompressionStream("gzip")), gzip: true };
  }
  const refuse = (message: string): never => {
    file.close();
    throw new NotTextError(message);
  };
  if (/\.gz$/i.test(path)) {
    refuse(
      `${path} is not a gzip file, though its name ends in .gz; if it is plain text, rename it ` +
        "without .gz, else download it again.",
    );
  }
  for (const { magic, what, fix } of SIGNATURES) {
    if (startsWith(head, magic) && (magic[0] !== 0x42 || (head[3] >= 0x31 && head[3] <= 0x39))) {
      refuse(`${path} is ${what}, not text; ${fix(path)}.`);
    }
  }
  return { stream: file.readable, gzip: false };
}

/** The whole text of a file (see {@linkcode readLines}). */
async function readText(path: string): Promise<string> {
  const parts: string[] = [];
  for await (const line of readLines(path, true)) parts.push(line);
  return parts.join("");
}

/**
 * Yields the lines of a UTF-8 text file, gzip-decompressed when it is gzip data: without their
 * line endings, or with them (`\n` or `\r\n`; the last line may lack one) when `keepEndings` is
 * true.
 *
 * @throws a {@linkcode NotTextError} naming the file when its bytes are not UTF-8 text (the
 * byte offset of the first bad sequence), look binary, are other compressed data, or are corrupt
 * gzip.
 */
export async function* readLines(path: string, keepEndings = false): AsyncGenerator<string> {
  const { stream, gzip } = await openBytes(path);
  const name = gzip ? `${path} (after gzip decompression)` : path;
  try {
    yield* linesOf(stream, keepEndings, name);
  } catch (error) {
    if (!gzip || error instanceof NotTextError) throw error;
    throw new NotTextError(
      `${path} is cut short or corrupt gzip data (${(error as Error).message}); download or ` +
        "compress it again.",
    );
  }
}

/**
 * Yields the lines of a UTF-8 byte stream (a file, standard input) as they arrive: without
 * their line endings, or with them when `keepEndings` is true. A byte-order mark at the start is
 * dropped.
 *
 * @param name what the stream is, for error messages.
 * @throws a {@linkcode NotTextError} when the bytes are not valid UTF-8 (naming the byte offset)
 * or hold a NUL byte in their first kilobyte (binary data).
 */
export async function* linesOf(
  stream: ReadableStream<Uint8Array>,
  keepEndings = false,
  name = "the input",
): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of utf8Text(stream, name)) {
    pending += chunk;
    let start = 0;
    for (let end; (end = pending.indexOf("\n", start)) >= 0; start = end + 1) {
      yield keepEndings
        ? pending.slice(start, end + 1)
        : pending.slice(start, end).replace(/\r$/, "");
    }
    pending = pending.slice(start);
  }
  if (pending.length > 0) yield pending;
}

/** Bytes at the start of a text that must hold no NUL for it to be taken for text. */
const BINARY_PROBE_BYTES = 1024;

/**
 * Decodes a stream of UTF-8 bytes strictly: each chunk is decoded up to its last whole
 * character (the rest waits for the next chunk), so a decoding failure knows its byte offset.
 */
async function* utf8Text(stream: ReadableStream<Uint8Array>, name: string): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  let carry = new Uint8Array(0);
  let offset = 0; // bytes decoded before `carry`
  for await (const chunk of stream) {
    const bytes = carry.length === 0 ? chunk : concatBytes(carry, chunk);
    if (offset < BINARY_PROBE_BYTES) {
      const nul = bytes.subarray(0, BINARY_PROBE_BYTES - offset).indexOf(0);
      if (nul >= 0) {
        throw new NotTextError(
          `${name} looks binary, not text (a NUL byte at offset ${offset + nul}); pass text, ` +
            "JSON Lines, JSON or Parquet files.",
        );
      }
    }
    const end = wholeCharactersEnd(bytes);
    let text: string;
    try {
      text = decoder.decode(bytes.subarray(0, end));
    } catch {
      throw notUtf8(name, bytes, offset, firstInvalidUtf8(bytes.subarray(0, end)));
    }
    if (offset === 0 && text.startsWith("\uFEFF")) text = text.slice(1);
    offset += end;
    carry = bytes.slice(end);
    if (text.length > 0) yield text;
  }
  if (carry.length > 0) throw notUtf8(name, carry, offset, 0, true);
}

function notUtf8(
  name: string,
  bytes: Uint8Array,
  offset: number,
  at: number,
  cut = false,
): NotTextError {
  at = Math.min(at, bytes.length - 1); // the decoder and the table agree; this is a safeguard
  const byte = bytes[at].toString(16).padStart(2, "0");
  return new NotTextError(
    `${name} is not UTF-8 text: ${cut ? "it ends inside a character" : "the byte"} at offset ` +
      `${offset + at} (0x${byte}) ${cut ? "" : "starts no valid UTF-8 character"}`.trimEnd() +
      ". Convert it to UTF-8 first (for Latin-1 text: iconv -f latin1 -t utf-8); binary files " +
      "cannot be read as text.",
  );
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** The length of `bytes` without a character that the next chunk completes. */
function wholeCharactersEnd(bytes: Uint8Array): number {
  for (let i = bytes.length - 1; i >= Math.max(0, bytes.length - 4); i--) {
    const byte = bytes[i];
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return i + length > bytes.length ? i : bytes.length;
  }
  return bytes.length;
}

/**
 * The offset of the first byte of `bytes` that starts no valid UTF-8 sequence (Unicode's table
 * of well-formed sequences: no overlong forms, surrogates or code points past U+10FFFF);
 * `bytes.length` when all are valid.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const lead = bytes[i];
    if (lead < 0x80) {
      i++;
      continue;
    }
    let length: number, low = 0x80, high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead === 0xe0) low = 0xa0;
      if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead === 0xf0) low = 0x90;
      if (lead === 0xf4) high = 0x8f;
    } else return i;
    if (i + length > bytes.length) return i;
    if (bytes[i + 1] < low || bytes[i + 1] > high) return i;
    for (let k = 2; k < length; k++) {
      if ((bytes[i + k] & 0xc0) !== 0x80) return i;
    }
    i += length;
  }
  return bytes.length;
}
