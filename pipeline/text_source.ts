/**
 * Streams documents from the files a user has: Parquet (a text column chosen by name), JSON
 * Lines, a JSON array, or plain text (one document per line), or a folder of them. Batches keep
 * memory bounded: a corpus never has to fit in memory at once.
 *
 * @module
 */

import {
  type AsyncBuffer,
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetReadObjects,
} from "hyparquet";

/** Options of {@linkcode readTextBatches}. */
export interface TextSourceOptions {
  /** Documents per batch. Default 1000. */
  batchSize?: number;
  /** The Parquet column or JSON field holding the text. Default `text`. */
  textField?: string;
  /**
   * Plain text: yield every line with its line ending, blank lines included, as Hugging Face's
   * file trainer sees them (a tokenizer trained without them learns other merges). Default
   * false: lines without endings, blank lines skipped.
   */
  keepLineEndings?: boolean;
}

const SUPPORTED = /\.(parquet|jsonl|ndjson|json|txt|text|md)$/i;

/**
 * Yields batches of documents from a file or a folder of files (read in name order).
 *
 * @throws when the path does not exist, a file is corrupt, or has no text field; the message
 * says which file and what to do.
 */
export async function* readTextBatches(
  path: string,
  options: TextSourceOptions = {},
): AsyncGenerator<string[]> {
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
      throw new Error(`The folder ${path} holds no Parquet, JSON Lines, JSON or text files.`);
    }
    for (const name of names.sort()) yield* readTextBatches(`${path}/${name}`, options);
    return;
  }
  if (/\.parquet$/i.test(path)) {
    yield* parquetTextBatches(await asyncBufferFromFile(path), path, options);
  } else if (/\.(jsonl|ndjson)$/i.test(path)) {
    yield* jsonLinesBatches(path, options);
  } else if (/\.json$/i.test(path)) {
    yield* jsonArrayBatches(path, options);
  } else {
    yield* plainTextBatches(path, options);
  }
}

/**
 * Yields the text column of a Parquet file, read a batch of rows at a time: only the pages of
 * that column are fetched, so a remote file is read by byte ranges, never whole.
 *
 * @param name the file's name or address, for error messages.
 */
export async function* parquetTextBatches(
  file: AsyncBuffer,
  name: string,
  { batchSize = 1000, textField = "text" }: TextSourceOptions = {},
): AsyncGenerator<string[]> {
  const metadata = await parquetMetadataAsync(file).catch((e: Error) => {
    throw new Error(
      `${name} is not a readable Parquet file (${e.message}). It may be truncated or corrupt: ` +
        "download it again.",
    );
  });
  const columns = metadata.schema.slice(1).map((column) => column.name);
  if (!columns.includes(textField)) {
    throw new Error(
      `${name} has no column "${textField}" (it has: ${columns.join(", ")}); ` +
        "choose the text column with --text-field.",
    );
  }
  // Batches never cross a row group, so a reader that stops early fetches no later group.
  let groupStart = 0;
  for (const group of metadata.row_groups) {
    const groupEnd = groupStart + Number(group.num_rows);
    for (let rowStart = groupStart; rowStart < groupEnd; rowStart += batchSize) {
      const rowEnd = Math.min(groupEnd, rowStart + batchSize);
      const objects = await parquetReadObjects({
        file,
        metadata,
        columns: [textField],
        rowStart,
        rowEnd,
        useOffsetIndex: true,
      }).catch((e: Error) => {
        throw new Error(`Rows ${rowStart}-${rowEnd} of ${name} could not be read: ${e.message}.`);
      });
      yield objects.map((row) => String(row[textField] ?? ""));
    }
    groupStart = groupEnd;
  }
}

async function* jsonLinesBatches(
  path: string,
  { batchSize = 1000, textField = "text" }: TextSourceOptions,
): AsyncGenerator<string[]> {
  let batch: string[] = [];
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
    batch.push(textOf(record, textField, `line ${lineNumber} of ${path}`));
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

async function* jsonArrayBatches(
  path: string,
  { batchSize = 1000, textField = "text" }: TextSourceOptions,
): AsyncGenerator<string[]> {
  let records: unknown;
  try {
    records = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new Error(`${path} is not valid JSON: ${(e as Error).message}.`);
  }
  if (!Array.isArray(records)) {
    throw new Error(`${path} must hold a JSON array of documents; use JSON Lines for streams.`);
  }
  for (let i = 0; i < records.length; i += batchSize) {
    yield records.slice(i, i + batchSize).map((record, j) =>
      textOf(record, textField, `item ${i + j} of ${path}`)
    );
  }
}

/** A document's text: the record itself when it is a string, else its `textField`. */
function textOf(record: unknown, textField: string, where: string): string {
  if (typeof record === "string") return record;
  const text = (record as Record<string, unknown> | null)?.[textField];
  if (typeof text !== "string") {
    throw new Error(
      `${where} has no string field "${textField}"; each record must look like ` +
        `{"${textField}": "..."} (choose the field with --text-field).`,
    );
  }
  return text;
}

async function* plainTextBatches(
  path: string,
  { batchSize = 1000, keepLineEndings = false }: TextSourceOptions,
): AsyncGenerator<string[]> {
  let batch: string[] = [];
  for await (const line of readLines(path, keepLineEndings)) {
    if (!keepLineEndings && line.trim() === "") continue;
    batch.push(line);
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/**
 * Yields the lines of a UTF-8 file: without their line endings, or with them (`\n` or `\r\n`;
 * the last line may lack one) when `keepEndings` is true.
 */
export async function* readLines(path: string, keepEndings = false): AsyncGenerator<string> {
  using file = await Deno.open(path);
  let pending = "";
  for await (const chunk of file.readable.pipeThrough(new TextDecoderStream())) {
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
