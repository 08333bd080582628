/**
 * Reads and writes Hugging Face `tokenizer.json` files for byte-level BPE, so
 * HF `tokenizers` and transformers.js load our tokenizers and we load theirs
 * (GPT-2's included). Supported: model `BPE` (merges as `"a b"` strings or
 * `["a", "b"]` pairs), `added_tokens`, a `ByteLevel` pre-tokenizer (or none)
 * and a `ByteLevel` decoder. Anything else is refused with a message rather
 * than silently encoded differently.
 *
 * @module
 */

import { readJsonFile, writeTextFileAtomic } from "../util/files.ts";
import { BpeTokenizer } from "./bpe.ts";

/** The subset of HF's `tokenizer.json` schema this module reads and writes. */
export interface HfTokenizerJson {
  /** The schema version; `"1.0"` when written here, not checked when read. */
  version: string;
  /** Tokens matched whole before BPE; `special` ones may be skipped when decoding. */
  added_tokens: Array<{
    id: number;
    content: string;
    single_word?: boolean;
    lstrip?: boolean;
    rstrip?: boolean;
    normalized?: boolean;
    special?: boolean;
  }>;
  /** Must be null: text is encoded as given. */
  normalizer: unknown;
  /** `ByteLevel` (its `add_prefix_space` and `use_regex` honoured) or null for none. */
  pre_tokenizer: { type: string; add_prefix_space?: boolean; use_regex?: boolean } | null;
  /** Written as `ByteLevel`; ignored when read (byte-level decoding is the only kind). */
  decoder: unknown;
  /** The `BPE` model: vocabulary, merges in rank order; dropout, byte fallback and affixes off. */
  model: {
    type: string;
    vocab: Record<string, number>;
    merges: Array<string | [string, string]>;
    dropout?: number | null;
    unk_token?: string | null;
    continuing_subword_prefix?: string | null;
    end_of_word_suffix?: string | null;
    fuse_unk?: boolean;
    byte_fallback?: boolean;
    ignore_merges?: boolean;
  };
  /** Other top-level fields (`truncation`, `padding`, `post_processor`): written null, ignored. */
  [field: string]: unknown;
}

/** Builds the `tokenizer.json` object HF `tokenizers` 0.2x writes for such a tokenizer. */
export function toHfTokenizerJson(tokenizer: BpeTokenizer): HfTokenizerJson {
  const byteLevel = {
    type: "ByteLevel",
    add_prefix_space: tokenizer.addPrefixSpace,
    trim_offsets: true,
    use_regex: tokenizer.useRegex,
  };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: tokenizer.addedTokens.map((token) => ({
      id: token.id,
      content: token.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: token.special,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: { ...byteLevel, add_prefix_space: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: tokenizer.ignoreMerges,
      vocab: Object.fromEntries([...tokenizer.vocab].sort((a, b) => a[1] - b[1])),
      merges: tokenizer.merges.map(([a, b]) => [a, b]),
    },
  };
}

function unsupported(what: string): never {
  throw new Error(
    `This tokenizer.json uses ${what}, which this loader does not support; ` +
      "only byte-level BPE (GPT-2 style) files can be loaded.",
  );
}

/** Builds a tokenizer from a parsed `tokenizer.json`; refuses settings it cannot honour. */
export function fromHfTokenizerJson(json: HfTokenizerJson): BpeTokenizer {
  const model = json.model;
  if (model?.type !== "BPE") unsupported(`the model type ${JSON.stringify(model?.type)}`);
  if (json.normalizer != null) unsupported("a normalizer");
  if (model.dropout != null && model.dropout !== 0) unsupported("BPE dropout");
  if (model.byte_fallback) unsupported("byte fallback");
  if (model.continuing_subword_prefix) unsupported("a continuing-subword prefix");
  if (model.end_of_word_suffix) unsupported("an end-of-word suffix");
  const pre = json.pre_tokenizer;
  if (pre != null && pre.type !== "ByteLevel") {
    unsupported(`the pre-tokenizer ${JSON.stringify(pre.type)}`);
  }
  const merges = model.merges.map((merge, rank): [string, string] => {
    if (Array.isArray(merge) && merge.length === 2) return [merge[0], merge[1]];
    const parts = typeof merge === "string" ? merge.split(" ") : [];
    if (parts.length !== 2) {
      throw new Error(
        `Merge ${rank} (${JSON.stringify(merge)}) is neither "a b" nor ["a", "b"]; ` +
          "fix or regenerate the tokenizer.json.",
      );
    }
    return [parts[0], parts[1]];
  });
  const addedTokens = (json.added_tokens ?? []).map((token) => ({
    id: token.id,
    content: token.content,
    special: token.special ?? false,
  }));
  checkOneTokenPerId(model.vocab, addedTokens);
  return new BpeTokenizer({
    vocab: new Map(Object.entries(model.vocab)),
    merges,
    addedTokens,
    addPrefixSpace: pre?.add_prefix_space ?? false,
    useRegex: pre == null ? false : pre.use_regex ?? true,
    ignoreMerges: model.ignore_merges ?? false,
  });
}

/**
 * Refuses two different tokens on one id: decoding that id could give either, so text would not
 * survive a round trip. An added token may repeat a vocabulary entry with the same text and id
 * (GPT-2's `<|endoftext|>` is in both).
 */
function checkOneTokenPerId(
  vocab: Record<string, number>,
  addedTokens: readonly { id: number; content: string }[],
): void {
  const tokenOf = new Map<number, string>();
  const entries = [
    ...Object.entries(vocab),
    ...addedTokens.map((token): [string, number] => [token.content, token.id]),
  ];
  for (const [content, id] of entries) {
    const other = tokenOf.get(id);
    if (other !== undefined && other !== content) {
      throw new Error(
        `The tokens ${JSON.stringify(other)} and ${JSON.stringify(content)} share the id ${id}; ` +
          "every id must stand for one token: fix or regenerate the tokenizer.json.",
      );
    }
    tokenOf.set(id, content);
  }
}

/** Writes a tokenizer as a `tokenizer.json` file, atomically. */
export async function saveHfTokenizer(tokenizer: BpeTokenizer, path: string): Promise<void> {
  await writeTextFileAtomic(path, JSON.stringify(toHfTokenizerJson(tokenizer)));
}

/**
 * Loads a `tokenizer.json` file (ours, HF's, GPT-2's).
 *
 * @throws when the file is not valid JSON or not a byte-level BPE tokenizer; the message names
 * the file.
 */
export async function loadHfTokenizer(path: string): Promise<BpeTokenizer> {
  const json = await readJsonFile<HfTokenizerJson>(
    path,
    "it may be cut short or edited by hand: train the tokenizer again or download it again.",
  );
  try {
    return fromHfTokenizerJson(json);
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message}`);
  }
}
