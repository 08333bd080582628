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
 * The result is a folder of rows (see `token_rows.ts`). Documents are read and encoded in batches
 * of 1000, and the folder appears only when complete. Text that spells a special token (`</s>`,
 * `<|im_start|>`) is encoded as plain text unless `specialTokensInText` says the corpus is
 * meant to hold control tokens (ChatML conversations the program wrote itself).
 *
 *     deno task tokenize --data data/dataset.jsonl --tokenizer out/tokenizer --method concat
 *
 * @module
 */

import { checkContextLength } from "../nn/config.ts";
import { type BpeTokenizer } from "../tokenizer/bpe.ts";
import { loadHfTokenizer } from "../tokenizer/hf_json.ts";
import { readTextBatches } from "./text_source.ts";
import { type TokenizedDatasetMeta, type TokenizeMethod, TokenRowWriter } from "./token_rows.ts";
import { ProgressBar } from "./_progress.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";

/** How {@linkcode tokenizeDataset} makes rows of documents; see the module documentation. */
export type DocumentMethod = Exclude<TokenizeMethod, "chat">;

/** Options of {@linkcode tokenizeDataset}. */
export interface TokenizeDatasetOptions {
  /** The documents: a JSON Lines file from prepare_dataset, or any file `readTextBatches` takes. */
  data: string;
  /** The tokenizer, loaded (or a path to a `tokenizer.json` or its folder). */
  tokenizer: BpeTokenizer | string;
  /** Default `concat`. */
  method?: DocumentMethod;
  /** Tokens per row. Default 1024. */
  contextLength?: number;
  /** Documents encoded per batch. Default 1000. */
  batchSize?: number;
  /** The output folder: new, empty or an earlier tokenized dataset, unless `force`. */
  out: string;
  /**
   * Write into an `out` folder holding other files (they stay) or replace a file there; the
   * input itself is never overwritten.
   */
  force?: boolean;
  /**
   * Encode the text of special tokens in the documents (`</s>`, `<pad>`, `<|im_start|>`) as
   * their control ids, for a corpus whose markup the program wrote (the main job's ChatML
   * conversations). Default false: such text in a corpus is plain text, so a web page that
   * mentions `</s>` cannot end a document early.
   */
  specialTokensInText?: boolean;
  /** No progress output. */
  quiet?: boolean;
}

/** Loads a tokenizer given as an object, a `tokenizer.json` path, or the folder holding one. */
export async function resolveTokenizer(tokenizer: BpeTokenizer | string): Promise<BpeTokenizer> {
  if (typeof tokenizer !== "string") return tokenizer;
  const isFolder = (await Deno.stat(tokenizer).catch(() => null))?.isDirectory;
  const path = isFolder ? `${tokenizer}/tokenizer.json` : tokenizer;
  if (!(await Deno.stat(path).catch(() => null))?.isFile) {
    throw new Error(
      `No tokenizer at ${tokenizer}; pass the folder train_tokenizer wrote (it holds ` +
        "tokenizer.json) or a tokenizer.json file.",
    );
  }
  return await loadHfTokenizer(path);
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
  checkContextLength(context);
  const tokenizer = await resolveTokenizer(options.tokenizer);
  const padId = requireToken(tokenizer, "<pad>", "fills short rows");
  const eosId = requireToken(tokenizer, "</s>", "separates documents");
  const writer = await TokenRowWriter.create(options.out, {
    method,
    contextLength: context,
    vocabSize: tokenizer.vocabSize,
    padId,
    eosId,
  }, {
    stage: "tokenize",
    force: options.force,
    inputs: [options.data, typeof options.tokenizer === "string" ? options.tokenizer : undefined],
  });
  const encoding = { specialTokens: options.specialTokensInText ? "control" : "plain" } as const;
  const meta = writer.meta;
  const progress = new ProgressBar("tokenize", 0, { unit: "docs", silent: options.quiet });
  const carry: number[] = []; // concat: tokens not yet filling a row
  let joined = false; // concat: a document is already in the stream, so the next needs </s>
  let encoded = 0; // tokens of all documents, kept in rows or not

  try {
    for await (const batch of readTextBatches(options.data, { batchSize: options.batchSize })) {
      const rows: number[][] = [];
      for (const ids of tokenizer.encodeBatch(batch, encoding)) {
        encoded += ids.length;
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
      await writer.write(rows);
      progress.update(meta.documents);
    }
  } catch (error) {
    await writer.abandon();
    throw error;
  }
  progress.finish();
  const empty = meta.documents === 0
    ? "holds no documents"
    : encoded === 0
    ? `holds ${meta.documents} documents but no text (every one is empty)`
    : meta.rows === 0
    ? `gave no full rows of ${context} tokens with method "${method}"; use more text, a ` +
      "shorter --context, or --method truncate"
    : "";
  if (empty) {
    await writer.abandon();
    throw new Error(`tokenize: ${options.data} ${empty}. Nothing was written to ${options.out}.`);
  }
  return await writer.finish();
}

/** The flags of `deno task tokenize`, with their defaults and help. */
const FLAGS = {
  data: {
    type: "string",
    default: "data/dataset.jsonl",
    help: "the documents: JSON Lines, JSON, text, Parquet or a folder",
  },
  tokenizer: { type: "string", default: "out/tokenizer", help: "tokenizer.json or its folder" },
  method: { type: "string", default: "concat", help: "truncate, split or concat" },
  context: { type: "string", default: "1024", help: "tokens per row, 2 to 1024" },
  "batch-size": { type: "string", default: "1000", help: "documents encoded at a time" },
  out: { type: "string", default: "data/tokenized", help: "the output folder" },
  force: {
    type: "boolean",
    default: false,
    help: "write into an --out that holds other files (they are kept)",
  },
  "special-tokens-in-text": {
    type: "boolean",
    default: false,
    help: "text such as </s> or <|im_start|> in the documents becomes control ids, not text",
  },
  quiet: { type: "boolean", default: false, help: "no progress output" },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task tokenize [options]", FLAGS);
    if (!values) return;
    const meta = await tokenizeDataset({
      data: values.data,
      tokenizer: values.tokenizer,
      method: values.method as DocumentMethod,
      contextLength: intFlag("context", values.context, 2),
      batchSize: intFlag("batch-size", values["batch-size"]),
      out: values.out,
      force: values.force,
      specialTokensInText: values["special-tokens-in-text"],
      quiet: values.quiet,
    });
    console.log(
      `wrote ${meta.rows} rows of ${meta.contextLength} tokens (${meta.tokens} real tokens ` +
        `from ${meta.documents} documents, method ${meta.method}) to ${values.out}`,
    );
  });
}
