/**
 * Streaming word-frequency table: the only state BPE training keeps from the
 * corpus. Text arrives in batches and is dropped after it is counted.
 *
 * @module
 */

import { AddedTokenSplitter, pretokenize } from "./pretokenize.ts";

/**
 * Counts GPT-2 words (pre-tokenized pieces of raw text). Occurrences of
 * special tokens are skipped, never split into words, so they cannot leak
 * into the merges.
 */
export class WordCounter {
  /** Raw word → number of occurrences. */
  readonly counts: Map<string, number> = new Map();
  readonly #splitter: AddedTokenSplitter;
  #documents = 0;

  /**
   * An empty counter.
   *
   * @param specialTokens strings to skip whole wherever they occur in the text
   */
  constructor(specialTokens: Iterable<string> = []) {
    this.#splitter = new AddedTokenSplitter(specialTokens);
  }

  /** Number of documents counted so far. */
  get documents(): number {
    return this.#documents;
  }

  /** Counts the words of one document. */
  add(text: string): void {
    this.#documents++;
    for (const segment of this.#splitter.split(text)) {
      if (segment.isAddedToken) continue;
      const counts = this.counts;
      for (const word of pretokenize(segment.text)) {
        const seen = counts.get(word);
        if (seen !== undefined) counts.set(word, seen + 1);
        // A word sliced out of a long document can keep the whole document
        // alive; the concatenation makes the stored key own its characters.
        else counts.set((" " + word).slice(1), 1);
      }
    }
  }

  /** Counts every document of a batch. */
  addBatch(texts: Iterable<string>): void {
    for (const text of texts) this.add(text);
  }
}

/**
 * Counts the words of a stream of text batches (each batch a list of
 * documents) without holding more than one batch at a time.
 */
export async function countWords(
  batches: AsyncIterable<readonly string[]> | Iterable<readonly string[]>,
  specialTokens: Iterable<string> = [],
  onBatch?: (documents: number, characters: number) => void,
): Promise<Map<string, number>> {
  const counter = new WordCounter(specialTokens);
  let characters = 0;
  for await (const batch of batches) {
    counter.addBatch(batch);
    for (const text of batch) characters += text.length;
    onBatch?.(counter.documents, characters);
  }
  return counter.counts;
}
