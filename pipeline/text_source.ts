/**
 * Streams documents (or records of several text fields, such as instruction pairs) from the files
 * a user has: Parquet (columns chosen by name), JSON Lines, a JSON array, or plain text (one
 * document per line), or a folder of them. Batches keep memory bounded: a corpus never has to fit
 * in memory at once. A text file whose name ends in `.gz` (`.jsonl.gz`, `.json.gz`, `.txt.gz`) is
 * gzip-decompressed as it is read; text that is not valid UTF-8 is an error naming the file, so
 * binary bytes are never trained on as text.
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
  /** Fields every record must have as strings (the first is a plain-text line's field). */
  fields: readonly string[];
  /** Fields read when present; a missing one becomes "". */
  optionalFields?: readonly string[];
  /**
   * Plain text: yield every line with its line ending, blank lines included, as Hugging Face's
   * file trainer sees them (a tokenizer trained without them learns other merges). Default
   * false: lines without endings, blank lines skipped.
   */
  keepLineEndings?: boolean;
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
      yield objects.map((row) => {
        const record: TextRecord = {};
        for (const field of [...fields, ...optionalFields]) {
          record[field] = String(row[field] ?? "");
        }
        return record;
      });
    }
    groupStart = groupEnd;
  }
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
    if (e instanceof NotUtf8Error) throw e;
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

/** A file's bytes are not UTF-8 text (or not valid gzip, for a `.gz`). */
class NotUtf8Error extends Error {}

/** The bytes of a file, gzip-decompressed when its name ends in `.gz`. */
async function openBytes(path: string): Promise<ReadableStream<Uint8Array>> {
  const file = await Deno.open(path);
  if (!/\.gz$/i.test(path)) return file.readable;
  return file.readable.pipeThrough(new DecompressionStream("gzip"));
}

/** Rethrows a decoding failure of `path` as an error that names the file and what to do. */
function unreadable(path: string, error: unknown): never {
  if (!(error instanceof TypeError)) throw error;
  throw new NotUtf8Error(
    /\.gz$/i.test(path)
      ? `${path} is not a gzip file of UTF-8 text (${error.message}); recompress it with gzip.`
      : `${path} is not UTF-8 text (${error.message}). If it is compressed, decompress it or ` +
        "give it a .gz name; binary files cannot be read as text.",
  );
}

/** The whole text of a UTF-8 file (gzip-decompressed when its name ends in `.gz`). */
async function readText(path: string): Promise<string> {
  const parts: string[] = [];
  for await (const line of readLines(path, true)) parts.push(line);
  return parts.join("");
}

/**
 * Yields the lines of a UTF-8 file, gzip-decompressed when its name ends in `.gz`: without their
 * line endings, or with them (`\n` or `\r\n`; the last line may lack one) when `keepEndings` is
 * true.
 *
 * @throws when the bytes are not valid UTF-8 (or not valid gzip): the message names the file.
 */
export async function* readLines(path: string, keepEndings = false): AsyncGenerator<string> {
  const lines = linesOf(await openBytes(path), keepEndings);
  try {
    yield* lines;
  } catch (error) {
    unreadable(path, error);
  }
}

/**
 * Yields the lines of a UTF-8 byte stream (a file, standard input) as they arrive: without
 * their line endings, or with them when `keepEndings` is true.
 *
 * @throws a `TypeError` when the bytes are not valid UTF-8.
 */
export async function* linesOf(
  stream: ReadableStream<Uint8Array>,
  keepEndings = false,
): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream("utf-8", { fatal: true }))) {
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
