/**
 * Stage 3 of the pipeline: turn documents into fixed-length rows of token ids for training,
 * by one of three methods (as in the Hugging Face course's causal-LM walk-through):
 *
 * - `truncate`: one row per document, cut at the context length; shorter rows are padded with
 *   `<pad>` and their real length is kept, so padding never counts in the loss.
 * - `split`: each document cut into as many full context-length rows as it holds; the remainder
 *   of each document is dropped.
 * - `concat`: all documents joined with `</s>` between them, then cut into full rows; nothing
 *   but the final partial row is dropped, and rows cross document boundaries.
 *
 * The result is a folder: `tokens.bin` (rows x context ids, little-endian uint16 when the
 * vocabulary fits, else uint32), `lengths.bin` (uint32 real tokens per row) and `meta.json`.
 * Documents are read and encoded in batches of 1000, and the folder appears only when complete.
 *
 *     deno task tokenize --data data/dataset.jsonl --tokenizer out/tokenizer --method concat
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type BpeTokenizer } from "../tokenizer/bpe.ts";
import { loadHfTokenizer } from "../tokenizer/hf_json.ts";
import { readTextBatches } from "./text_source.ts";
import { ProgressBar } from "./_progress.ts";
import { intFlag, runCli } from "./_cli.ts";

/** How documents become rows; see the module documentation. */
export type TokenizeMethod = "truncate" | "split" | "concat";

/** Options of {@linkcode tokenizeDataset}. */
export interface TokenizeDatasetOptions {
  /** The documents: a JSON Lines file from prepare_dataset, or any file `readTextBatches` takes. */
  data: string;
  /** The tokenizer, loaded (or a path to a `tokenizer.json` or its folder). */
  tokenizer: BpeTokenizer | string;
  /** Default `concat`. */
  method?: TokenizeMethod;
  /** Tokens per row. Default 1024. */
  contextLength?: number;
  /** Documents encoded per batch. Default 1000. */
  batchSize?: number;
  /** The output folder. */
  out: string;
  /** No progress output. */
  quiet?: boolean;
}

/** The `meta.json` of a tokenized dataset. */
export interface TokenizedDatasetMeta {
  method: TokenizeMethod;
  contextLength: number;
  rows: number;
  /** Real (non-padding) tokens over all rows. */
  tokens: number;
  documents: number;
  vocabSize: number;
  dtype: "uint16" | "uint32";
  padId: number;
  eosId: number;
}

/** Loads a tokenizer given as an object, a `tokenizer.json` path, or the folder holding one. */
export async function resolveTokenizer(tokenizer: BpeTokenizer | string): Promise<BpeTokenizer> {
  if (typeof tokenizer !== "string") return tokenizer;
  const isFolder = (await Deno.stat(tokenizer).catch(() => null))?.isDirectory;
  return await loadHfTokenizer(isFolder ? `${tokenizer}/tokenizer.json` : tokenizer);
}

function requireToken(tokenizer: BpeTokenizer, token: string, why: string): number {
  const id = tokenizer.tokenToId(token);
  if (id === undefined) {
    throw new Error(`The tokenizer has no ${token} token, which ${why}; train it with ${token}.`);
  }
  return id;
}

/** Tokenizes a corpus into fixed-length rows; returns the metadata it wrote. */
export async function tokenizeDataset(
  options: TokenizeDatasetOptions,
): Promise<TokenizedDatasetMeta> {
  const method = options.method ?? "concat";
  if (!["truncate", "split", "concat"].includes(method)) {
    throw new Error(`Unknown method "${method}"; use truncate, split or concat.`);
  }
  const context = options.contextLength ?? 1024;
  if (!Number.isInteger(context) || context < 2 || context > 1024) {
    throw new Error(`The context length must be a whole number from 2 to 1024, got ${context}.`);
  }
  const tokenizer = await resolveTokenizer(options.tokenizer);
  const padId = requireToken(tokenizer, "<pad>", "fills short rows");
  const eosId = requireToken(tokenizer, "</s>", "separates documents");
  const dtype = tokenizer.vocabSize <= 65536 ? "uint16" : "uint32";

  const partial = `${options.out}.partial`;
  await Deno.remove(partial, { recursive: true }).catch(() => {});
  await Deno.mkdir(partial, { recursive: true });
  const tokensFile = await Deno.open(`${partial}/tokens.bin`, { write: true, create: true });
  const lengthsFile = await Deno.open(`${partial}/lengths.bin`, { write: true, create: true });
  const meta: TokenizedDatasetMeta = {
    method,
    contextLength: context,
    rows: 0,
    tokens: 0,
    documents: 0,
    vocabSize: tokenizer.vocabSize,
    dtype,
    padId,
    eosId,
  };
  const progress = new ProgressBar("tokenize", 0, { unit: "docs", silent: options.quiet });
  const carry: number[] = []; // concat: tokens not yet filling a row
  let joined = false; // concat: a document is already in the stream, so the next needs </s>

  async function writeRows(rows: number[][]): Promise<void> {
    if (rows.length === 0) return;
    const ids = dtype === "uint16"
      ? new Uint16Array(rows.length * context)
      : new Uint32Array(rows.length * context);
    const lengths = new Uint32Array(rows.length);
    rows.forEach((row, i) => {
      ids.fill(padId, i * context, (i + 1) * context);
      ids.set(row, i * context);
      lengths[i] = row.length;
      meta.tokens += row.length;
    });
    await writeAll(tokensFile, new Uint8Array(ids.buffer));
    await writeAll(lengthsFile, new Uint8Array(lengths.buffer));
    meta.rows += rows.length;
  }

  try {
    for await (const batch of readTextBatches(options.data, { batchSize: options.batchSize })) {
      const rows: number[][] = [];
      for (const ids of tokenizer.encodeBatch(batch)) {
        if (method === "truncate") {
          if (ids.length > 0) rows.push(ids.slice(0, context));
        } else if (method === "split") {
          for (let start = 0; start + context <= ids.length; start += context) {
            rows.push(ids.slice(start, start + context));
          }
        } else if (ids.length > 0) {
          if (joined) carry.push(eosId);
          joined = true;
          for (const id of ids) carry.push(id);
          let start = 0;
          for (; start + context <= carry.length; start += context) {
            rows.push(carry.slice(start, start + context));
          }
          carry.splice(0, start);
        }
        meta.documents++;
      }
      await writeRows(rows);
      progress.update(meta.documents);
    }
  } catch (error) {
    tokensFile.close();
    lengthsFile.close();
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    throw error;
  }
  tokensFile.close();
  lengthsFile.close();
  progress.finish();
  if (meta.rows === 0) {
    await Deno.remove(partial, { recursive: true });
    throw new Error(
      `No full rows of ${context} tokens came out of ${options.data} with method "${method}"; ` +
        "use more text, a shorter --context, or --method truncate.",
    );
  }
  await Deno.writeTextFile(`${partial}/meta.json`, JSON.stringify(meta, null, 2) + "\n");
  await Deno.remove(options.out, { recursive: true }).catch(() => {});
  await Deno.rename(partial, options.out);
  return meta;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await file.write(bytes.subarray(written));
  }
}

/** A tokenized dataset in memory: rows of token ids and their real lengths. */
export interface TokenizedDataset {
  meta: TokenizedDatasetMeta;
  /** rows x contextLength token ids. */
  tokens: Uint16Array | Uint32Array;
  /** Real tokens per row; the rest of each row is `<pad>`. */
  lengths: Uint32Array;
}

/** Loads the folder written by {@linkcode tokenizeDataset}, checking that its files agree. */
export async function loadTokenizedDataset(folder: string): Promise<TokenizedDataset> {
  const meta = JSON.parse(
    await Deno.readTextFile(`${folder}/meta.json`).catch(() => {
      throw new Error(`${folder} is not a tokenized dataset (no meta.json); run tokenize first.`);
    }),
  ) as TokenizedDatasetMeta;
  const bytes = await Deno.readFile(`${folder}/tokens.bin`);
  const tokens = meta.dtype === "uint16"
    ? new Uint16Array(bytes.buffer, 0, bytes.byteLength / 2)
    : new Uint32Array(bytes.buffer, 0, bytes.byteLength / 4);
  const lengths = new Uint32Array((await Deno.readFile(`${folder}/lengths.bin`)).buffer);
  if (tokens.length !== meta.rows * meta.contextLength || lengths.length !== meta.rows) {
    throw new Error(
      `${folder} is inconsistent: meta.json says ${meta.rows} rows of ${meta.contextLength}, ` +
        `tokens.bin holds ${tokens.length} ids and lengths.bin ${lengths.length} rows; ` +
        "tokenize the dataset again.",
    );
  }
  return { meta, tokens, lengths };
}

if (import.meta.main) {
  await runCli(async () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        data: { type: "string", default: "data/dataset.jsonl" },
        tokenizer: { type: "string", default: "out/tokenizer" },
        method: { type: "string", default: "concat" },
        context: { type: "string", default: "1024" },
        "batch-size": { type: "string", default: "1000" },
        out: { type: "string", default: "data/tokenized" },
        quiet: { type: "boolean", default: false },
      },
    });
    const meta = await tokenizeDataset({
      data: values.data,
      tokenizer: values.tokenizer,
      method: values.method as TokenizeMethod,
      contextLength: intFlag("context", values.context, 2),
      batchSize: intFlag("batch-size", values["batch-size"]),
      out: values.out,
      quiet: values.quiet,
    });
    console.log(
      `wrote ${meta.rows} rows of ${meta.contextLength} tokens (${meta.tokens} real tokens ` +
        `from ${meta.documents} documents, method ${meta.method}) to ${values.out}`,
    );
  });
}
