/**
 * GPT-2's pre-tokenization: the text is cut into words before BPE, so merges
 * never cross a word boundary. A word is a contraction suffix, an optional
 * space plus a run of letters, of digits or of other symbols, or a run of
 * whitespace (a run followed by a word leaves its last space to that word).
 *
 * @module
 */

/**
 * GPT-2's split pattern as published (OpenAI's encoder, HF's ByteLevel
 * pre-tokenizer, tiktoken's `gpt2`). Compile it with {@link GPT2_SPLIT_REGEX}.
 */
export const GPT2_SPLIT_PATTERN: string = String
  .raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

/**
 * {@link GPT2_SPLIT_PATTERN} for JavaScript. `\s` is spelled
 * `\p{White_Space}` because JavaScript's `\s` differs from the Oniguruma and
 * Rust `\s` that HF and tiktoken use: it adds U+FEFF and omits U+0085.
 */
export const GPT2_SPLIT_REGEX: RegExp = new RegExp(
  GPT2_SPLIT_PATTERN.replaceAll(String.raw`\s`, String.raw`\p{White_Space}`).replaceAll(
    String.raw`\S`,
    String.raw`\P{White_Space}`,
  ),
  "gu",
);

/** Cuts text into GPT-2 words; their concatenation is the text itself. */
export function pretokenize(text: string): string[] {
  return text.match(GPT2_SPLIT_REGEX) ?? [];
}

/** A piece of input text: plain text to pre-tokenize, or one whole added token. */
export interface TextSegment {
  /** The text of the piece. */
  text: string;
  /** True when the piece is exactly one added (e.g. special) token. */
  isAddedToken: boolean;
}

/**
 * Finds added tokens (`<|im_start|>`, `</s>` ...) in text so they can be kept
 * whole. Where several tokens start at the same place the longest wins, which
 * is how HF's added-vocabulary matcher behaves.
 */
export class AddedTokenSplitter {
  readonly #regex: RegExp | null;

  /** Builds a splitter for these token strings (empty strings are ignored). */
  constructor(tokens: Iterable<string>) {
    const sorted = [...new Set(tokens)].filter((t) => t.length > 0)
      .sort((a, b) => b.length - a.length);
    this.#regex = sorted.length === 0
      ? null
      : new RegExp(sorted.map((t) => t.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")).join("|"), "g");
  }

  /** Splits text into plain pieces and added-token pieces, in order. */
  split(text: string): TextSegment[] {
    if (this.#regex === null) return [{ text, isAddedToken: false }];
    const segments: TextSegment[] = [];
    let last = 0;
    for (const match of text.matchAll(this.#regex)) {
      if (match.index > last) {
        segments.push({ text: text.slice(last, match.index), isAddedToken: false });
      }
      segments.push({ text: match[0], isAddedToken: true });
      last = match.index + match[0].length;
    }
    if (last < text.length) segments.push({ text: text.slice(last), isAddedToken: false });
    return segments;
  }
}
