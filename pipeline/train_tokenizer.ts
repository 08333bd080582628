/**
 * Stage 2 of the pipeline: train a byte-level BPE tokenizer on a text corpus
 * and save it as a Hugging Face `tokenizer.json` (plus a `tokenizer_config.json`
 * so transformers.js can load the folder).
 *
 * The corpus is streamed: only the word-frequency table is held in memory.
 * Input: Parquet (column `text`), JSON Lines or JSON (field `text`), or a
 * folder of them, read by `text_source.ts`; plain text gives one document per
 * line with its line ending kept, as HF's file trainer reads it, so both see
 * the same words (newlines included).
 *
 * Run:
 *   deno task tokenizer --data data.jsonl --vocab-size 8192 --out out/tokenizer
 *
 * @module
 */

import { parseArgs } from "node:util";
import { BpeTokenizer } from "../tokenizer/bpe.ts";
import { saveHfTokenizer } from "../tokenizer/hf_json.ts";
import { DEFAULT_SPECIAL_TOKENS, trainBpe } from "../tokenizer/train_bpe.ts";
import { countWords } from "../tokenizer/word_counts.ts";
import { ProgressBar } from "./_progress.ts";
import { intFlag, runCli } from "./_cli.ts";
import { readTextBatches } from "./text_source.ts";

/** Settings for {@link trainTokenizer}. */
export interface TrainTokenizerOptions {
  /** Corpus file: plain text, JSON Lines or Parquet. */
  data: string;
  /** Target vocabulary size, special tokens and alphabet included. */
  vocabSize: number;
  /** Stop merging when the best pair occurs fewer times than this. Default 0. */
  minFrequency?: number;
  /** Special tokens (ids 0 ..); `DEFAULT_SPECIAL_TOKENS` when absent. */
  specialTokens?: readonly string[];
  /** `"bytes"` (all 256, default) or `"seen"` (only the corpus' characters, HF's default). */
  alphabet?: "bytes" | "seen";
  /** Output folder for `tokenizer.json` and `tokenizer_config.json`. */
  out: string;
  /** Documents per batch read from the corpus. Default 1000. */
  batchSize?: number;
  /** No progress output. */
  quiet?: boolean;
}

/** Trains a tokenizer on a corpus file, writes it to `out`, and returns it. */
export async function trainTokenizer(options: TrainTokenizerOptions): Promise<BpeTokenizer> {
  const specialTokens = options.specialTokens ?? DEFAULT_SPECIAL_TOKENS;
  const silent = options.quiet ?? false;

  const reading = new ProgressBar("count words", 0, { unit: "docs", silent });
  const counts = await countWords(
    trainingTextBatches(options.data, options.batchSize ?? 1000),
    specialTokens,
    (documents) => reading.update(documents),
  );
  reading.finish();

  const merging = new ProgressBar("merge pairs", 0, { unit: "merges", silent });
  const trained = trainBpe(counts, {
    vocabSize: options.vocabSize,
    minFrequency: options.minFrequency ?? 0,
    specialTokens,
    alphabet: options.alphabet ?? "bytes",
    onProgress: (merges, maxMerges) => merging.update(merges, maxMerges),
  });
  merging.finish();

  const tokenizer = BpeTokenizer.fromTrained(trained);
  await Deno.mkdir(options.out, { recursive: true });
  await saveHfTokenizer(tokenizer, `${options.out}/tokenizer.json`);
  await Deno.writeTextFile(
    `${options.out}/tokenizer_config.json`,
    JSON.stringify(tokenizerConfig(specialTokens), null, 2) + "\n",
  );
  return tokenizer;
}

/** The `tokenizer_config.json` transformers(.js) wants beside `tokenizer.json`. */
function tokenizerConfig(specialTokens: readonly string[]): Record<string, unknown> {
  const config: Record<string, unknown> = {
    tokenizer_class: "PreTrainedTokenizerFast",
    clean_up_tokenization_spaces: false,
    model_max_length: 1024,
  };
  const roles = ["bos_token", "pad_token", "eos_token", "unk_token", "mask_token"];
  // The roles hold when the defaults come first (the main job appends ChatML's markers).
  if (DEFAULT_SPECIAL_TOKENS.every((token, i) => specialTokens[i] === token)) {
    roles.forEach((role, i) => config[role] = specialTokens[i]);
  }
  return config;
}

/**
 * Streams a corpus as batches of documents; plain-text lines keep their line endings, as
 * HF's file trainer counts them.
 */
export function trainingTextBatches(path: string, batchSize = 1000): AsyncGenerator<string[]> {
  return readTextBatches(path, { batchSize, keepLineEndings: true });
}

if (import.meta.main) {
  await runCli(async () => {
    const { values } = parseArgs({
      options: {
        data: { type: "string" },
        "vocab-size": { type: "string", default: "8192" },
        "min-frequency": { type: "string", default: "0" },
        "special-tokens": { type: "string", default: DEFAULT_SPECIAL_TOKENS.join(",") },
        alphabet: { type: "string", default: "bytes" },
        out: { type: "string", default: "out/tokenizer" },
        quiet: { type: "boolean", default: false },
      },
    });
    if (!values.data) {
      throw new Error("No corpus given; pass --data FILE (text, JSON Lines or Parquet).");
    }
    const vocabSize = intFlag("vocab-size", values["vocab-size"]);
    const minFrequency = intFlag("min-frequency", values["min-frequency"], 0);
    if (values.alphabet !== "bytes" && values.alphabet !== "seen") {
      throw new Error(`--alphabet must be "bytes" or "seen", got "${values.alphabet}".`);
    }
    const specialTokens = values["special-tokens"] === ""
      ? []
      : values["special-tokens"].split(",");
    const started = performance.now();
    const tokenizer = await trainTokenizer({
      data: values.data,
      vocabSize,
      minFrequency,
      specialTokens,
      alphabet: values.alphabet,
      out: values.out,
      quiet: values.quiet,
    });
    if (!values.quiet) {
      console.error(
        `wrote ${values.out}/tokenizer.json: ${tokenizer.vocabSize} tokens, ` +
          `${tokenizer.merges.length} merges in ${
            ((performance.now() - started) / 1000).toFixed(1)
          }s`,
      );
    }
  });
}
