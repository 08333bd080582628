/**
 * Byte-level BPE encoding and decoding.
 *
 * Encoding: added tokens are cut out whole first; the rest is split into GPT-2
 * words, each word's UTF-8 bytes become byte symbols, and merges are applied
 * lowest rank first (leftmost first among equal ranks), like HF's `BPE`
 * model and tiktoken. (HF also lets a stale queue entry through when the pair
 * now at its place yields the same token, which can only matter for
 * vocabularies where two merges produce one token; here a merge always
 * happens at its own rank.) Words repeat a lot in text, so each word's ids
 * are cached. A character whose bytes a vocabulary without the full byte alphabet
 * (`--alphabet seen`) cannot spell becomes one `<unk>`. A tokenizer with no `<unk>` (a
 * Hugging Face file trained that way) leaves it out, as HF does, and warns once.
 * Decoding concatenates the bytes of the tokens and reads them as UTF-8,
 * replacing invalid sequences with U+FFFD.
 *
 * @module
 */

import { BYTE_TO_CHAR, CHAR_CODE_TO_BYTE } from "./byte_unicode.ts";
import { PairTable } from "./_pair_table.ts";
import { AddedTokenSplitter, pretokenize } from "./pretokenize.ts";
import type { TrainedBpe } from "./train_bpe.ts";

/** A token matched whole in the input and never split by BPE (`<s>`, `<|im_start|>`). */
export interface AddedToken {
  /** Its id. */
  id: number;
  /** Its exact text. */
  content: string;
  /** Special tokens can be dropped when decoding with `skipSpecialTokens`. */
  special: boolean;
}

/** Everything that defines a byte-level BPE tokenizer. */
export interface BpeTokenizerConfig {
  /** Model vocabulary: byte-level token string → id. */
  vocab: Map<string, number>;
  /** Merges in rank order, as pairs of byte-level token strings. */
  merges: ReadonlyArray<readonly [string, string]>;
  /** Tokens matched whole in the input; they may or may not also be in `vocab`. */
  addedTokens?: readonly AddedToken[];
  /** Prefix each text with a space (HF ByteLevel `add_prefix_space`); false by default. */
  addPrefixSpace?: boolean;
  /** Split into GPT-2 words before BPE (HF ByteLevel `use_regex`); true by default. */
  useRegex?: boolean;
  /** Take a word that is itself a vocabulary entry as one token (HF `ignore_merges`). */
  ignoreMerges?: boolean;
  /**
   * The token that stands for a character the alphabet cannot spell (an added token or a
   * vocabulary entry). Default `<unk>`. Only a vocabulary without all 256 byte symbols needs it.
   */
  unkToken?: string;
}

/** Options for {@link BpeTokenizer.encode}. */
export interface EncodeOptions {
  /**
   * What the text of an added token (`<|im_start|>`, `</s>`) in the input becomes: `"control"`
   * (default) its one id, as in a prompt the program builds; `"plain"` ordinary text, as for
   * what a user types or a corpus holds, which must not forge control tokens.
   */
  specialTokens?: "control" | "plain";
}

/** Options for {@link BpeTokenizer.decode}. */
export interface DecodeOptions {
  /** Leave special tokens out of the text. */
  skipSpecialTokens?: boolean;
}

// Words up to this many bytes are merged by rescanning; longer ones use a heap.
const SCAN_LIMIT = 48;
const NO_MERGE = 0x7fffffff;
// Scratch for #mergeByScan: the rank of each adjacent pair of a short word.
const scanRanks = new Int32Array(SCAN_LIMIT);
// Scratch for the symbols of a short word.
const scanSymbols = new Int32Array(SCAN_LIMIT);
// The per-word heap packs (rank, position) into one number, rank first.
const POSITION_STRIDE = 2 ** 31;
// Bound on cached words; the cache is dropped and refilled when it is reached.
const CACHE_LIMIT = 200_000;

const utf8 = new TextEncoder();

/** A GPT-2 style byte-level BPE tokenizer. */
export class BpeTokenizer {
  readonly #vocab: Map<string, number>;
  readonly #idToToken: string[] = [];
  readonly #merges: Array<[string, string]>;
  /** (left id, right id) → rank. */
  readonly #rankOfPair: PairTable;
  /** Rank → id of the merged token. */
  readonly #mergedIdOfRank: Int32Array;
  /** Byte → id of its symbol, -1 when the alphabet lacks it (its character becomes `<unk>`). */
  readonly #byteIds = new Int32Array(256);
  readonly #addedTokens: AddedToken[] = [];
  readonly #addedIdOf = new Map<string, number>();
  #splitter: AddedTokenSplitter;
  readonly #cache = new Map<string, Int32Array>();
  readonly #tokenBytes: Array<Uint8Array | undefined> = [];
  readonly #specialIds = new Set<number>();
  readonly #unkToken: string;
  #warnedOfDrops = false;
  /** Prefix each text with a space (HF ByteLevel `add_prefix_space`). */
  readonly addPrefixSpace: boolean;
  /** Split into GPT-2 words before BPE (HF ByteLevel `use_regex`). */
  readonly useRegex: boolean;
  /** Take a word that is itself a vocabulary entry as one token (HF `ignore_merges`). */
  readonly ignoreMerges: boolean;

  /** Builds a tokenizer; throws when a merge names a token the vocabulary lacks. */
  constructor(config: BpeTokenizerConfig) {
    this.#vocab = new Map(config.vocab);
    for (const [token, id] of this.#vocab) this.#idToToken[id] = token;
    this.addPrefixSpace = config.addPrefixSpace ?? false;
    this.useRegex = config.useRegex ?? true;
    this.ignoreMerges = config.ignoreMerges ?? false;
    this.#unkToken = config.unkToken ?? "<unk>";

    this.#merges = config.merges.map(([a, b]) => [a, b]);
    this.#mergedIdOfRank = new Int32Array(this.#merges.length);
    this.#rankOfPair = new PairTable(this.#merges.length);
    this.#merges.forEach(([a, b], rank) => {
      const left = this.#vocab.get(a);
      const right = this.#vocab.get(b);
      const merged = this.#vocab.get(a + b);
      if (left === undefined || right === undefined || merged === undefined) {
        throw new Error(
          `Merge ${rank} (${JSON.stringify(a)} + ${JSON.stringify(b)}) uses a token that is not ` +
            "in the vocabulary; the vocabulary must hold both parts and their concatenation.",
        );
      }
      // A pair listed twice keeps its later rank, as HF does.
      this.#rankOfPair.set(left, right, rank);
      this.#mergedIdOfRank[rank] = merged;
    });
    for (let byte = 0; byte < 256; byte++) {
      this.#byteIds[byte] = this.#vocab.get(BYTE_TO_CHAR[byte]) ?? -1;
    }
    for (const token of config.addedTokens ?? []) this.#registerAddedToken(token);
    this.#splitter = new AddedTokenSplitter(this.#addedIdOf.keys());
  }

  /** Wraps the result of `trainBpe`; its special tokens become added tokens. */
  static fromTrained(trained: TrainedBpe): BpeTokenizer {
    return new BpeTokenizer({
      vocab: trained.vocab,
      merges: trained.merges,
      addedTokens: trained.specialTokens.map((content) => ({
        id: trained.vocab.get(content)!,
        content,
        special: true,
      })),
    });
  }

  /** Number of ids: one more than the largest id in the vocabulary or the added tokens. */
  get vocabSize(): number {
    return this.#idToToken.length;
  }

  /** The model vocabulary (byte-level token string → id), added tokens not included. */
  get vocab(): ReadonlyMap<string, number> {
    return this.#vocab;
  }

  /** The merges in rank order. */
  get merges(): ReadonlyArray<readonly [string, string]> {
    return this.#merges;
  }

  /** The tokens matched whole in the input, in id order. */
  get addedTokens(): readonly AddedToken[] {
    return [...this.#addedTokens].sort((a, b) => a.id - b.id);
  }

  /** The string of a token id (byte-level spelling for model tokens), or undefined. */
  idToToken(id: number): string | undefined {
    return this.#idToToken[id];
  }

  /** The id of a token string (added-token text or byte-level spelling), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#addedIdOf.get(token) ?? this.#vocab.get(token);
  }

  /**
   * Adds tokens to match whole in the input (ChatML's `<|im_start|>`, `<|im_end|>`).
   * A token already known keeps its id; a new one gets the next free id.
   * Returns the ids in the order given.
   */
  addTokens(tokens: readonly string[], options: { special?: boolean } = {}): number[] {
    const ids = tokens.map((content) => {
      if (content.length === 0) {
        throw new Error("An added token cannot be empty; give the text it should match.");
      }
      const known = this.#addedIdOf.get(content);
      if (known !== undefined) return known;
      const id = this.#vocab.get(content) ?? this.#idToToken.length;
      this.#registerAddedToken({ id, content, special: options.special ?? true });
      return id;
    });
    this.#splitter = new AddedTokenSplitter(this.#addedIdOf.keys());
    return ids;
  }

  #registerAddedToken(token: AddedToken): void {
    this.#addedTokens.push({ ...token });
    this.#addedIdOf.set(token.content, token.id);
    this.#idToToken[token.id] = token.content;
    this.#tokenBytes[token.id] = utf8.encode(token.content);
    if (token.special) this.#specialIds.add(token.id);
  }

  /** Encodes text to token ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    const segments = options.specialTokens === "plain"
      ? [{ text, isAddedToken: false }]
      : this.#splitter.split(text);
    for (const segment of segments) {
      if (segment.isAddedToken) {
        ids.push(this.#addedIdOf.get(segment.text)!);
        continue;
      }
      let plain = segment.text;
      if (this.addPrefixSpace && !plain.startsWith(" ")) plain = " " + plain;
      const words = this.useRegex ? pretokenize(plain) : [plain];
      for (const word of words) {
        let wordIds = this.#cache.get(word);
        if (wordIds === undefined) {
          wordIds = this.#encodeWord(word);
          if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
          this.#cache.set(word, wordIds);
        }
        for (let i = 0; i < wordIds.length; i++) ids.push(wordIds[i]);
      }
    }
    return ids;
  }

  /** Encodes each text of a batch. */
  encodeBatch(texts: readonly string[], options: EncodeOptions = {}): number[][] {
    return texts.map((text) => this.encode(text, options));
  }

  /** Applies the merges to one pre-tokenized word. */
  #encodeWord(word: string): Int32Array {
    let ascii = true;
    for (let i = 0; i < word.length && ascii; i++) ascii = word.charCodeAt(i) < 0x80;
    const bytes = ascii ? null : utf8.encode(word);
    const length = bytes === null ? word.length : bytes.length;
    if (this.ignoreMerges) {
      let spelled = "";
      for (let i = 0; i < length; i++) {
        spelled += BYTE_TO_CHAR[bytes === null ? word.charCodeAt(i) : bytes[i]];
      }
      const whole = this.#vocab.get(spelled);
      if (whole !== undefined) return Int32Array.of(whole);
    }
    const symbols = length <= SCAN_LIMIT ? scanSymbols : new Int32Array(length);
    let n = 0;
    for (let i = 0; i < length; i++) {
      const id = this.#byteIds[bytes === null ? word.charCodeAt(i) : bytes[i]];
      if (id >= 0) {
        symbols[n++] = id;
        continue;
      }
      // The alphabet lacks this byte: its whole character becomes one <unk>. The character's
      // earlier bytes (UTF-8 continuation bytes are 10xxxxxx) were placed already; take them
      // back, and skip its later ones.
      let start = i, end = i + 1;
      if (bytes !== null) {
        while (start > 0 && (bytes[start] & 0xc0) === 0x80) start--;
        while (end < length && (bytes[end] & 0xc0) === 0x80) end++;
      }
      n -= i - start;
      const unk = this.#unknownId(bytes === null ? word[i] : bytes.subarray(start, end));
      if (unk >= 0) symbols[n++] = unk;
      i = end - 1;
    }
    if (n < 2) return symbols.slice(0, n);
    return n <= SCAN_LIMIT ? this.#mergeByScan(symbols, n) : this.#mergeByHeap(symbols, n);
  }

  /**
   * The id of `<unk>`, for a character the alphabet cannot spell. Without one, -1 (the character
   * is left out, as HF does with no `unk_token`, so its files encode to HF's ids), and a
   * warning the first time, so that the loss is never silent.
   */
  #unknownId(character: string | Uint8Array): number {
    const id = this.tokenToId(this.#unkToken);
    if (id !== undefined) return id;
    if (!this.#warnedOfDrops) {
      this.#warnedOfDrops = true;
      const text = typeof character === "string" ? character : new TextDecoder().decode(character);
      const codePoint = text.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
      console.warn(
        `warning: the character ${JSON.stringify(text)} (U+${codePoint}) is not in this ` +
          `tokenizer's alphabet and it has no ${this.#unkToken} token, so such characters are ` +
          "left out of the ids; a tokenizer trained with --alphabet bytes (the default) " +
          "encodes any text.",
      );
    }
    return -1;
  }

  /**
   * Short words: repeatedly merge the lowest-rank adjacent pair, leftmost
   * first, keeping each pair's rank in an array so a merge only looks up its
   * two new neighbour pairs. O(n²) moves but no allocation, which wins for
   * typical word lengths.
   */
  #mergeByScan(symbols: Int32Array, n: number): Int32Array {
    const table = this.#rankOfPair;
    const ranks = scanRanks;
    for (let i = 0; i + 1 < n; i++) {
      const rank = table.get(symbols[i], symbols[i + 1]);
      ranks[i] = rank < 0 ? NO_MERGE : rank;
    }
    while (n > 1) {
      let best = NO_MERGE;
      let at = -1;
      for (let i = 0; i + 1 < n; i++) {
        if (ranks[i] < best) {
          best = ranks[i];
          at = i;
        }
      }
      if (at < 0) break;
      symbols[at] = this.#mergedIdOfRank[best];
      symbols.copyWithin(at + 1, at + 2, n);
      ranks.copyWithin(at, at + 1, n - 1);
      n--;
      if (at > 0) {
        const rank = table.get(symbols[at - 1], symbols[at]);
        ranks[at - 1] = rank < 0 ? NO_MERGE : rank;
      }
      if (at + 1 < n) {
        const rank = table.get(symbols[at], symbols[at + 1]);
        ranks[at] = rank < 0 ? NO_MERGE : rank;
      }
    }
    return symbols.slice(0, n);
  }

  /**
   * Long words: HF's algorithm, O(n log n). Symbols form a linked list and a
   * min-heap holds candidate merges by (rank, position); entries made stale
   * by an earlier merge are skipped when popped.
   */
  #mergeByHeap(symbols: Int32Array, n: number): Int32Array {
    const ranks = this.#rankOfPair;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Min-heap of rank * POSITION_STRIDE + position: lowest rank, then leftmost.
    const heap: number[] = [];
    const push = (position: number): void => {
      const right = next[position];
      if (right < 0) return;
      const rank = ranks.get(symbols[position], symbols[right]);
      if (rank >= 0) heapPush(heap, rank * POSITION_STRIDE + position);
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    let remaining = n;
    while (heap.length > 0) {
      const entry = heapPop(heap);
      const rank = Math.floor(entry / POSITION_STRIDE);
      const position = entry - rank * POSITION_STRIDE;
      const right = next[position];
      if (!alive[position] || right < 0) continue;
      // Skip entries made stale by an earlier merge at or next to this position.
      if (ranks.get(symbols[position], symbols[right]) !== rank) continue;
      symbols[position] = this.#mergedIdOfRank[rank];
      alive[right] = 0;
      remaining--;
      next[position] = next[right];
      if (next[right] >= 0) prev[next[right]] = position;
      if (prev[position] >= 0) push(prev[position]);
      push(position);
    }
    const out = new Int32Array(remaining);
    for (let i = 0, k = 0; i >= 0 && k < remaining; i = next[i]) out[k++] = symbols[i];
    return out;
  }

  /** Decodes ids to text; bytes that do not form valid UTF-8 become U+FFFD. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const parts: Uint8Array[] = [];
    let length = 0;
    for (const id of ids) {
      if (options.skipSpecialTokens && this.#specialIds.has(id)) continue;
      const bytes = this.#bytesOf(id);
      parts.push(bytes);
      length += bytes.length;
    }
    const joined = new Uint8Array(length);
    let offset = 0;
    for (const bytes of parts) {
      joined.set(bytes, offset);
      offset += bytes.length;
    }
    return new TextDecoder("utf-8").decode(joined);
  }

  /** Decodes each id list of a batch. */
  decodeBatch(batch: readonly (readonly number[])[], options: DecodeOptions = {}): string[] {
    return batch.map((ids) => this.decode(ids, options));
  }

  #bytesOf(id: number): Uint8Array {
    const cached = this.#tokenBytes[id];
    if (cached !== undefined) return cached;
    const token = this.#idToToken[id];
    if (token === undefined) {
      throw new Error(
        `Token id ${id} is not in the vocabulary (size ${this.vocabSize}); ` +
          "check that the ids come from this tokenizer.",
      );
    }
    // A vocabulary entry outside the byte alphabet (a special token kept in the
    // model vocabulary) stands for its own UTF-8 text.
    let bytes = new Uint8Array(token.length);
    for (let i = 0; i < token.length; i++) {
      const code = token.charCodeAt(i);
      const byte = code < CHAR_CODE_TO_BYTE.length ? CHAR_CODE_TO_BYTE[code] : -1;
      if (byte < 0) {
        bytes = utf8.encode(token);
        break;
      }
      bytes[i] = byte;
    }
    this.#tokenBytes[id] = bytes;
    return bytes;
  }
}

function heapPush(heap: number[], value: number): void {
  let i = heap.length;
  heap.push(value);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent] <= value) break;
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = value;
}

function heapPop(heap: number[]): number {
  const top = heap[0];
  const last = heap.pop()!;
  const n = heap.length;
  if (n > 0) {
    let i = 0;
    while (true) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const child = left + 1 < n && heap[left + 1] < heap[left] ? left + 1 : left;
      if (heap[child] >= last) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
  }
  return top;
}
