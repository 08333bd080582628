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

import { parseArgs } from "node:util";
import { dirname } from "node:path";
import { type HubDataset, hubFileBuffer, listHubParquetFiles } from "./hub.ts";
import { parquetTextBatches, readTextBatches } from "./text_source.ts";
import { writeAll, writeFileAtomic } from "../util/files.ts";
import { ProgressBar } from "./_progress.ts";
import { intFlag, runCli } from "./_cli.ts";

/** FineWeb's 10-billion-token sample, the default source. */
export const FINEWEB_SAMPLE_10BT: HubDataset = {
  repo: "HuggingFaceFW/fineweb",
  folder: "sample/10BT",
};

/** Options of {@linkcode prepareDataset}. */
export interface PrepareDatasetOptions {
  /** A local file or folder of them; when absent, `hub` is read. */
  data?: string;
  /** The hub dataset to sample when `data` is absent. Default FineWeb `sample-10BT`. */
  hub?: HubDataset;
  /** How many documents to keep (the first ones, in file order); `Infinity` for all. Default 10,000. */
  rows?: number;
  /** The JSON Lines file to write. */
  out: string;
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
 * truncated dataset behind.
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
  await writeFileAtomic(options.out, async (file) => {
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
  });
  progress.finish();
  return { out: options.out, rows: written, characters };
}

/** Batches of documents from the local path, or from the hub's Parquet files in order. */
async function* sourceBatches(options: PrepareDatasetOptions): AsyncGenerator<string[]> {
  const read = { textField: options.textField, batchSize: 1000 };
  if (options.data) {
    yield* readTextBatches(options.data, read);
    return;
  }
  const dataset = options.hub ?? FINEWEB_SAMPLE_10BT;
  for (const path of await listHubParquetFiles(dataset)) {
    yield* parquetTextBatches(await hubFileBuffer(dataset, path), `${dataset.repo}/${path}`, read);
  }
}

if (import.meta.main) {
  await runCli(async () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        data: { type: "string" },
        repo: { type: "string", default: FINEWEB_SAMPLE_10BT.repo },
        folder: { type: "string", default: FINEWEB_SAMPLE_10BT.folder },
        rows: { type: "string", default: "10000" },
        out: { type: "string", default: "data/dataset.jsonl" },
        "text-field": { type: "string", default: "text" },
        quiet: { type: "boolean", default: false },
      },
    });
    const result = await prepareDataset({
      data: values.data,
      hub: { repo: values.repo, folder: values.folder },
      rows: intFlag("rows", values.rows),
      out: values.out,
      textField: values["text-field"],
      quiet: values.quiet,
    });
    console.log(
      `wrote ${result.rows} documents (${(result.characters / 1e6).toFixed(1)}M characters) ` +
        `to ${result.out}`,
    );
  });
}
