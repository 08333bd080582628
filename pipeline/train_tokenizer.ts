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

import { BpeTokenizer } from "../tokenizer/bpe.ts";
import { DEFAULT_SPECIAL_TOKENS, trainBpe } from "../tokenizer/train_bpe.ts";
import { countWords } from "../tokenizer/word_counts.ts";
import { ProgressBar } from "./_progress.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";
import { FolderOutput } from "../util/files.ts";
import { saveHfTokenizer } from "../tokenizer/hf_json.ts";
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
  /**
   * Output folder for `tokenizer.json` and `tokenizer_config.json`: new, empty, or one an
   * earlier run wrote, unless `force`.
   */
  out: string;
  /** Write into an `out` folder that holds other files (they stay), or replace a file there. */
  force?: boolean;
  /** Where warnings go (a vocabulary smaller than asked). Default: standard error. */
  warn?: (message: string) => void;
  /** Documents per batch read from the corpus. Default 1000. */
  batchSize?: number;
  /** No progress output. */
  quiet?: boolean;
}

/** The files of a tokenizer folder, `tokenizer.json` (the one loaded) last. */
const TOKENIZER_FILES = ["tokenizer_config.json", "tokenizer.json"];

/**
 * Trains a tokenizer on a corpus file, writes it to `out`, and returns it. `out` is checked
 * before the corpus is read, and gets the files only when both are complete.
 *
 * @throws when `out` is taken (see `FolderOutput`), the corpus holds no text, or `vocabSize` is
 * below the special tokens and the alphabet; a vocabulary that stops short of `vocabSize` (too
 * few distinct pairs) is a warning.
 */
export async function trainTokenizer(options: TrainTokenizerOptions): Promise<BpeTokenizer> {
  const specialTokens = options.specialTokens ?? DEFAULT_SPECIAL_TOKENS;
  const silent = options.quiet ?? false;
  const warn = options.warn ?? ((message: string) => console.error(`warning: ${message}`));
  // A vocabulary too small for the special tokens and the byte alphabet fails now, not after
  // the corpus is read: training on no words checks just that.
  trainBpe(new Map(), { vocabSize: options.vocabSize, specialTokens, alphabet: options.alphabet });
  const output = await FolderOutput.start(options.out, {
    stage: "train_tokenizer",
    force: options.force,
    inputs: [options.data],
    files: TOKENIZER_FILES,
  });
  try {
    const reading = new ProgressBar("count words", 0, { unit: "docs", silent });
    const counts = await countWords(
      trainingTextBatches(options.data, options.batchSize ?? 1000),
      specialTokens,
      (documents) => reading.update(documents),
    );
    reading.finish();
    if (counts.size === 0) {
      throw new Error(
        `train_tokenizer: ${options.data} holds no text to learn from; pass a corpus with ` +
          "text (prepare writes one).",
      );
    }

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
    if (tokenizer.vocabSize < options.vocabSize) {
      warn(
        `the tokenizer has ${tokenizer.vocabSize} tokens, fewer than the ${options.vocabSize} ` +
          `asked: ${options.data} has no more pairs of symbols to merge` +
          (options.minFrequency ? ` seen ${options.minFrequency} times or more` : "") +
          ". Train on more text for a larger vocabulary.",
      );
    }
    await saveHfTokenizer(tokenizer, `${output.temporary}/tokenizer.json`);
    await Deno.writeTextFile(
      `${output.temporary}/tokenizer_config.json`,
      JSON.stringify(tokenizerConfig(specialTokens), null, 2) + "\n",
    );
    await output.publish();
    return tokenizer;
  } catch (error) {
    await output.abandon();
    throw error;
  }
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

/** The flags of `deno task tokenizer`, with their defaults and help. */
const FLAGS = {
  data: { type: "string", help: "the corpus: text, JSON Lines, JSON, Parquet or a folder" },
  "vocab-size": {
    type: "string",
    default: "8192",
    help: "tokens in all, special tokens and the 256 bytes included",
  },
  "min-frequency": { type: "string", default: "0", help: "merge only pairs seen this often" },
  "special-tokens": {
    type: "string",
    default: DEFAULT_SPECIAL_TOKENS.join(","),
    help: "comma-separated, ids from 0",
  },
  alphabet: { type: "string", default: "bytes", help: "bytes (all 256) or seen" },
  out: { type: "string", default: "out/tokenizer", help: "the output folder" },
  force: {
    type: "boolean",
    default: false,
    help: "write into an --out that holds other files (they are kept)",
  },
  quiet: { type: "boolean", default: false, help: "no progress output" },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task tokenizer --data FILE [options]", FLAGS);
    if (!values) return;
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
      force: values.force,
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
