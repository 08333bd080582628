/**
 * Learns byte-level BPE merges from a word-frequency table, the way Hugging
 * Face's `BpeTrainer` does, so both give the same merges for the same input:
 *
 * - ids: special tokens, then the alphabet in code-point order, then merges;
 * - each step merges the pair with the highest count, ties going to the
 *   smallest `(left id, right id)`;
 * - training stops when the vocabulary reaches `vocabSize` or the best count
 *   drops below `minFrequency`; a `vocabSize` below the special tokens and the
 *   alphabet is an error that says the minimum.
 *
 * Cost per merge is proportional to the words that hold the pair, not to the
 * corpus: pair counts are updated from the local changes of each merged word,
 * and a max-heap with lazy invalidation (a popped entry whose count is stale is
 * pushed back with the current count) picks the next pair.
 *
 * Fidelity notes. As in HF, each heap entry carries the set of words where
 * its pair was (re)created, and a merge rewrites only those words; a merge
 * whose token string already exists (`"Ġt"+"he"` after `"Ġth"+"e"`) reuses
 * that id and adds no vocabulary entry. Merges of a pair that is merged twice
 * keep only the later rank, as HF's saved model does.
 *
 * @module
 */

import { BinaryHeap } from "./_heap.ts";
import { BYTE_ALPHABET, BYTE_TO_CHAR } from "./byte_unicode.ts";

/** The special tokens a new tokenizer gets unless told otherwise (ids 0-4). */
export const DEFAULT_SPECIAL_TOKENS: readonly string[] = [
  "<s>",
  "<pad>",
  "</s>",
  "<unk>",
  "<mask>",
];

/** Settings for {@link trainBpe}. */
export interface TrainBpeOptions {
  /** Target vocabulary size, special tokens and alphabet included. */
  vocabSize: number;
  /** Stop when the best pair occurs fewer times than this (HF's default 0). */
  minFrequency?: number;
  /** Tokens that get the first ids; {@link DEFAULT_SPECIAL_TOKENS} by default. */
  specialTokens?: readonly string[];
  /**
   * `"bytes"`: all 256 byte symbols, so any text can be encoded (default).
   * `"seen"`: only the symbols present in the corpus (HF's default).
   */
  alphabet?: "bytes" | "seen";
  /** Called now and then with the merges done so far and the most possible. */
  onProgress?: (merges: number, maxMerges: number) => void;
}

/** What training produces: everything a byte-level BPE tokenizer needs. */
export interface TrainedBpe {
  /** Byte-level token string → id; special tokens hold their raw text. */
  vocab: Map<string, number>;
  /** Merges in rank order, as pairs of byte-level token strings. */
  merges: Array<[string, string]>;
  /** The special tokens, with ids 0 .. n-1. */
  specialTokens: string[];
}

interface MergeCandidate {
  count: number;
  left: number;
  right: number;
  /** Indices of the words to rewrite when this entry wins. */
  words: number[];
}

function mergesFirst(a: MergeCandidate, b: MergeCandidate): boolean {
  if (a.count !== b.count) return a.count > b.count;
  if (a.left !== b.left) return a.left < b.left;
  return a.right < b.right;
}

const utf8 = new TextEncoder();

/** Converts raw-text word counts to byte-level word counts (distinct raw words may share bytes). */
function toByteLevelWords(wordCounts: Map<string, number>): Map<string, number> {
  const byteWords = new Map<string, number>();
  for (const [word, count] of wordCounts) {
    const bytes = utf8.encode(word);
    let symbols = "";
    for (let i = 0; i < bytes.length; i++) symbols += BYTE_TO_CHAR[bytes[i]];
    byteWords.set(symbols, (byteWords.get(symbols) ?? 0) + count);
  }
  return byteWords;
}

/**
 * Learns merges from raw word counts (see {@link WordCounter} / `countWords`).
 *
 * @example
 * ```ts
 * const counts = new Map([["hug", 10], [" hug", 5], [" pug", 5]]);
 * const { merges } = trainBpe(counts, { vocabSize: 300, specialTokens: [] });
 * // merges[0] is ["u", "g"]
 * ```
 */
export function trainBpe(wordCounts: Map<string, number>, options: TrainBpeOptions): TrainedBpe {
  const vocabSize = options.vocabSize;
  const minFrequency = options.minFrequency ?? 0;
  const specialTokens = [...(options.specialTokens ?? DEFAULT_SPECIAL_TOKENS)];
  if (!Number.isInteger(vocabSize) || vocabSize < 1) {
    throw new Error(`The vocabulary size must be a positive integer, got ${vocabSize}.`);
  }

  const byteWords = toByteLevelWords(wordCounts);

  // 1. Special tokens, then the alphabet in code-point order.
  const idToToken: string[] = [];
  const tokenToId = new Map<string, number>();
  const addToken = (token: string): void => {
    if (tokenToId.has(token)) return;
    tokenToId.set(token, idToToken.length);
    idToToken.push(token);
  };
  specialTokens.forEach(addToken);
  if ((options.alphabet ?? "bytes") === "bytes") {
    BYTE_ALPHABET.forEach(addToken);
  } else {
    const seen = new Set<string>();
    for (const word of byteWords.keys()) for (const char of word) seen.add(char);
    [...seen].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0)).forEach(addToken);
  }
  if (vocabSize < idToToken.length) {
    const specials = new Set(specialTokens).size;
    const alphabet = (options.alphabet ?? "bytes") === "bytes"
      ? "256 byte symbols"
      : `${idToToken.length - specials} characters of the corpus`;
    throw new Error(
      `A vocabulary of ${vocabSize} tokens cannot hold the ${specials} special tokens and the ` +
        `${alphabet}: it needs at least ${idToToken.length} ` +
        `(--vocab-size ${idToToken.length} or more).`,
    );
  }

  // 2. Words as arrays of symbol ids. Ids never exceed the stride, so a pair
  // (left, right) packs into one number, a small integer when vocabSize < 32768.
  const stride = Math.max(vocabSize, idToToken.length);
  const wordSymbols: Int32Array[] = [];
  const wordLengths: number[] = [];
  const wordCountsById: number[] = [];
  for (const [word, count] of byteWords) {
    const symbols = new Int32Array(word.length);
    for (let i = 0; i < word.length; i++) symbols[i] = tokenToId.get(word[i])!;
    wordSymbols.push(symbols);
    wordLengths.push(word.length);
    wordCountsById.push(count);
  }

  // 3. Initial pair counts and the words holding each pair.
  const pairCounts = new Map<number, number>();
  let pairWords = new Map<number, number[]>();
  const notePair = (key: number, word: number): void => {
    const list = pairWords.get(key);
    if (list === undefined) pairWords.set(key, [word]);
    else if (list[list.length - 1] !== word) list.push(word);
  };
  for (let w = 0; w < wordSymbols.length; w++) {
    const symbols = wordSymbols[w];
    const count = wordCountsById[w];
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = symbols[i] * stride + symbols[i + 1];
      pairCounts.set(key, (pairCounts.get(key) ?? 0) + count);
      notePair(key, w);
    }
  }
  const queue = new BinaryHeap<MergeCandidate>(mergesFirst);
  const enqueueNotedPairs = (): void => {
    for (const [key, words] of pairWords) {
      const count = pairCounts.get(key)!;
      if (count > 0) {
        queue.push({ count, left: Math.floor(key / stride), right: key % stride, words });
      }
    }
    pairWords = new Map();
  };
  enqueueNotedPairs();

  // 4. Merge until the vocabulary is full or no pair is frequent enough.
  const changePair = (left: number, right: number, delta: number, word: number): void => {
    const key = left * stride + right;
    pairCounts.set(key, (pairCounts.get(key) ?? 0) + delta * wordCountsById[word]);
    if (delta > 0) notePair(key, word);
  };
  const mergeLog: Array<[number, number]> = [];
  const maxMerges = Math.max(0, vocabSize - idToToken.length);
  while (idToToken.length < vocabSize) {
    const top = queue.pop();
    if (top === undefined) break;
    const current = pairCounts.get(top.left * stride + top.right)!;
    if (top.count !== current) {
      top.count = current;
      queue.push(top);
      continue;
    }
    if (top.count < 1 || minFrequency > top.count) break;

    const { left, right } = top;
    const merged = idToToken[left] + idToToken[right];
    addToken(merged);
    const replacement = tokenToId.get(merged)!;
    mergeLog.push([left, right]);

    for (const w of top.words) {
      // Left-to-right, non-overlapping rewrite in place; every destroyed and
      // created neighbour pair is reported as a count change (HF's Word::merge).
      const symbols = wordSymbols[w];
      const length = wordLengths[w];
      let read = 0;
      let write = 0;
      while (read < length) {
        if (symbols[read] === left && read + 1 < length && symbols[read + 1] === right) {
          if (write > 0) {
            const before = symbols[write - 1];
            changePair(before, left, -1, w);
            changePair(before, replacement, 1, w);
          }
          if (read + 2 < length) {
            const after = symbols[read + 2];
            changePair(right, after, -1, w);
            changePair(replacement, after, 1, w);
          }
          symbols[write++] = replacement;
          read += 2;
        } else {
          symbols[write++] = symbols[read++];
        }
      }
      wordLengths[w] = write;
    }
    enqueueNotedPairs();
    if (options.onProgress && mergeLog.length % 256 === 0) {
      options.onProgress(mergeLog.length, maxMerges);
    }
  }
  options.onProgress?.(mergeLog.length, maxMerges);

  // A pair merged twice keeps its later rank, as in HF's saved model.
  const lastRank = new Map<number, number>();
  mergeLog.forEach(([left, right], rank) => lastRank.set(left * stride + right, rank));
  const merges: Array<[string, string]> = [];
  mergeLog.forEach(([left, right], rank) => {
    if (lastRank.get(left * stride + right) === rank) {
      merges.push([idToToken[left], idToToken[right]]);
    }
  });
  return {
    vocab: tokenToId,
    merges,
    specialTokens: specialTokens.filter((t, i) => specialTokens.indexOf(t) === i),
  };
}
