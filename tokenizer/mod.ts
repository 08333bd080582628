/**
 * Byte-level BPE tokenizer, GPT-2 style, trained from scratch and compatible
 * with Hugging Face `tokenizer.json` files.
 *
 * @example
 * ```ts
 * import { BpeTokenizer, countWords, trainBpe } from "./mod.ts";
 *
 * const counts = await countWords([["the cat sat", "the cat ran"]]);
 * const tokenizer = BpeTokenizer.fromTrained(trainBpe(counts, { vocabSize: 300 }));
 * const ids = tokenizer.encode("the cat");
 * tokenizer.decode(ids); // "the cat"
 * ```
 *
 * @module
 */

export { BYTE_ALPHABET, BYTE_TO_CHAR, bytesToSymbols, symbolsToBytes } from "./byte_unicode.ts";
export {
  AddedTokenSplitter,
  GPT2_SPLIT_PATTERN,
  GPT2_SPLIT_REGEX,
  pretokenize,
  type TextSegment,
} from "./pretokenize.ts";
export { countWords, WordCounter } from "./word_counts.ts";
export {
  DEFAULT_SPECIAL_TOKENS,
  trainBpe,
  type TrainBpeOptions,
  type TrainedBpe,
} from "./train_bpe.ts";
export {
  type AddedToken,
  BpeTokenizer,
  type BpeTokenizerConfig,
  type DecodeOptions,
  type EncodeOptions,
} from "./bpe.ts";
export {
  fromHfTokenizerJson,
  type HfTokenizerJson,
  loadHfTokenizer,
  saveHfTokenizer,
  toHfTokenizerJson,
} from "./hf_json.ts";
