/**
 * Stage 1 of the pipeline: gather the training text into one JSON Lines file of
 * `{"text": ...}` records. By default a sample of FineWeb `sample-10BT` (10k rows) read from the
 * Hugging Face hub by byte ranges; or the documents of local Parquet, JSON Lines, JSON or text
 * files.
 *
 *     deno task prepare                                   # 10k rows of FineWeb from the hub
 *     deno task prepare --data ../shared/data/fineweb --rows 5000 --out data/train.jsonl
 *
 * @module
 */

import { dirname } from "node:path";
import { type HubDataset, hubFileBuffer, listHubParquetFiles } from "./hub.ts";
import { parquetTextBatches, readRecordBatches, readTextBatches } from "./text_source.ts";
import { chatDocument } from "./chatml.ts";
import { writeAll, writeOutputFile } from "../util/files.ts";
import { ProgressBar } from "./_progress.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";

/** FineWeb's 10-billion-token sample, the default source. */
export const FINEWEB_SAMPLE_10BT: HubDataset = {
  repo: "HuggingFaceFW/fineweb",
  folder: "sample/10BT",
};

/** Options of {@linkcode prepareDataset}. */
export interface PrepareDatasetOptions {
  /** A local file or folder of them; when absent, `hub` is read. */
  data?: string;
  /** Several local sources interleaved by share, instead of `data` or `hub`. */
  mixture?: readonly MixtureSource[];
  /** The hub dataset to sample when `data` is absent. Default FineWeb `sample-10BT`. */
  hub?: HubDataset;
  /** How many documents to keep (the first ones, in file order); `Infinity` for all. Default 10,000. */
  rows?: number;
  /**
   * The JSON Lines file to write: a new path, or a file an earlier prepare wrote (a hidden
   * `.<name>.written-by` marker beside it says so), unless `force`.
   */
  out: string;
  /** Replace an `out` file that prepare did not write; an input is never replaced. */
  force?: boolean;
  /** The Parquet column or JSON field holding the text. Default `text`. */
  textField?: string;
  /** No progress output. */
  quiet?: boolean;
}

/** What {@linkcode prepareDataset} wrote. */
export interface PreparedDataset {
  /** The JSON Lines file written (the `out` option). */
  out: string;
  /** Documents written: fewer than asked when the source ran out. Empty documents are skipped. */
  rows: number;
  /** Length of the documents' text in UTF-16 code units (`String.length`), summed. */
  characters: number;
}

/**
 * Writes the first `rows` non-empty documents of the source to `out` as JSON Lines. The file is
 * written to a temporary name and renamed when complete, so an interrupted run never leaves a
 * truncated dataset behind, and a file at `out` that prepare did not write is never replaced
 * (unless `force`).
 *
 * @throws when `out` is taken (see `writeOutputFile`), or the source gives no documents.
 */
export async function prepareDataset(options: PrepareDatasetOptions): Promise<PreparedDataset> {
  const rows = options.rows ?? 10_000;
  if (!(Number.isInteger(rows) && rows > 0 || rows === Infinity)) {
    throw new Error(`--rows must be a positive whole number, got ${rows}.`);
  }
  const progress = new ProgressBar("prepare dataset", rows === Infinity ? 0 : rows, {
    unit: "rows",
    silent: options.quiet,
  });
  await Deno.mkdir(dirname(options.out), { recursive: true });
  const encoder = new TextEncoder();
  let written = 0, characters = 0;
  const output = {
    stage: "prepare",
    force: options.force,
    inputs: [options.data, ...(options.mixture ?? []).map((source) => source.data)],
  };
  await writeOutputFile(options.out, output, async (file) => {
    for await (const batch of sourceBatches(options)) {
      const lines: string[] = [];
      for (const text of batch) {
        if (written + lines.length >= rows) break;
        if (text.trim() === "") continue;
        lines.push(JSON.stringify({ text }) + "\n");
        characters += text.length;
      }
      await writeAll(file, encoder.encode(lines.join("")));
      written += lines.length;
      progress.update(written);
      if (written >= rows) break;
    }
    if (written === 0) {
      throw new Error(
        `prepare: ${sourceName(options)} gave no documents (it is empty, or every document is ` +
          `blank); nothing was written to ${options.out}. Pass a source that holds text.`,
      );
    }
  });
  progress.finish();
  return { out: options.out, rows: written, characters };
}

/** The source, as a message names it. */
function sourceName(options: PrepareDatasetOptions): string {
  if (options.mixture) return `the mixture of ${options.mixture.map((s) => s.data).join(", ")}`;
  if (options.data) return options.data;
  const dataset = options.hub ?? FINEWEB_SAMPLE_10BT;
  return `${dataset.repo}/${dataset.folder}`;
}

/** Batches of documents from the local path, or from the hub's Parquet files in order. */
async function* sourceBatches(options: PrepareDatasetOptions): AsyncGenerator<string[]> {
  const read = { textField: options.textField, batchSize: 1000 };
  if (options.mixture) {
    yield* mixtureBatches(options.mixture, read);
    return;
  }
  if (options.data) {
    yield* readTextBatches(options.data, read);
    return;
  }
  const dataset = options.hub ?? FINEWEB_SAMPLE_10BT;
  for (const path of await listHubParquetFiles(dataset)) {
    yield* parquetTextBatches(await hubFileBuffer(dataset, path), `${dataset.repo}/${path}`, read);
  }
}

/** A source of a mixture and its share of the text. */
export interface MixtureSource {
  /** A local file or folder. */
  data: string;
  /** Its share of the mixture's characters, from 0 to 1 (the shares are normalized). */
  share: number;
  /**
   * Instruction pairs (Alpaca's `instruction`, `input`, `output`), each written as one ChatML
   * exchange, instead of documents' `text`: pretraining that sees conversations learns their
   * format and the end marker with its whole budget, not only in the short tuning after it.
   */
  chat?: boolean;
  /** Only the records whose `source` field is one of these; default all. */
  sources?: readonly string[];
}

/** A mixture source's documents, in batches. */
async function* mixtureSourceBatches(
  source: MixtureSource,
  read: { textField?: string; batchSize: number },
): AsyncGenerator<string[]> {
  if (!source.chat) {
    yield* readTextBatches(source.data, { ...read, sources: source.sources });
    return;
  }
  const pairs = readRecordBatches(source.data, {
    batchSize: read.batchSize,
    fields: ["instruction", "output"],
    optionalFields: ["input"],
    sources: source.sources,
  });
  for await (const batch of pairs) {
    yield batch.map((pair) =>
      chatDocument({ instruction: pair.instruction, input: pair.input, output: pair.output })
    );
  }
}

/**
 * Documents of several sources interleaved so that each has its `share` of the characters all
 * along the file: the next document comes from the source furthest below its share. The mixture
 * ends when a source runs out, so the shares hold to the end (and a held-out tail of the file
 * has the same mixture as the rest).
 */
async function* mixtureBatches(
  sources: readonly MixtureSource[],
  read: { textField?: string; batchSize: number },
): AsyncGenerator<string[]> {
  const total = sources.reduce((sum, s) => sum + s.share, 0);
  if (!(total > 0) || sources.some((s) => !(s.share >= 0))) {
    throw new Error("A mixture needs shares of 0 or more that add up to more than 0.");
  }
  const live = sources.filter((s) => s.share > 0).map((source) => ({
    share: source.share / total,
    batches: mixtureSourceBatches(source, read),
    pending: [] as string[],
    characters: 0,
  }));
  let batch: string[] = [];
  while (true) {
    const next = live.reduce((a, b) => a.characters / a.share <= b.characters / b.share ? a : b);
    if (next.pending.length === 0) {
      const { value, done } = await next.batches.next();
      if (done) break;
      next.pending = value.reverse();
      continue;
    }
    const text = next.pending.pop()!;
    next.characters += text.length;
    batch.push(text);
    if (batch.length === read.batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
  for (const source of live) await source.batches.return?.(undefined);
}

/** The flags of `deno task prepare`, with their defaults and help. */
const FLAGS = {
  data: {
    type: "string",
    help: "a local Parquet, JSON Lines, JSON or text file, or a folder (default: the hub)",
  },
  repo: { type: "string", default: FINEWEB_SAMPLE_10BT.repo, help: "the hub dataset" },
  folder: { type: "string", default: FINEWEB_SAMPLE_10BT.folder, help: "its folder of Parquet" },
  rows: { type: "string", default: "10000", help: "documents to keep, the first ones" },
  out: { type: "string", default: "data/dataset.jsonl", help: "the JSON Lines file to write" },
  "text-field": { type: "string", default: "text", help: "the column or field with the text" },
  force: {
    type: "boolean",
    default: false,
    help: "replace an --out file that prepare did not write",
  },
  quiet: { type: "boolean", default: false, help: "no progress output" },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task prepare [options]", FLAGS);
    if (!values) return;
    const result = await prepareDataset({
      data: values.data,
      hub: { repo: values.repo, folder: values.folder },
      rows: intFlag("rows", values.rows),
      out: values.out,
      force: values.force,
      textField: values["text-field"],
      quiet: values.quiet,
    });
    console.log(
      `wrote ${result.rows} documents (${(result.characters / 1e6).toFixed(1)}M characters) ` +
        `to ${result.out}`,
    );
  });
}
