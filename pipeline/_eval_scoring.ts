/**
 * The text measures of the eval, on plain strings (no model, no parser): sentences, distinct
 * bigrams and on-topic words. The grammar score is in `_link_grammar.ts`.
 *
 * @module
 */

import { Random } from "../nn/random.ts";

/** Abbreviations whose period does not end a sentence (lower case, without the period). */
const ABBREVIATIONS = new Set([
  "mr",
  "mrs",
  "ms",
  "dr",
  "st",
  "prof",
  "sr",
  "jr",
  "vs",
  "etc",
  "e.g",
  "i.e",
  "no",
  "mt",
]);

/**
 * Normalizes generated text for sentence splitting: Markdown emphasis and heading marks are
 * dropped, and list markers (`1.`, `-`, `*`) at the start of a line are removed, so that a list
 * number is not read as a sentence of its own.
 */
export function plainText(text: string): string {
  return text
    .split("\n")
    .map((line) => line.replace(/^\s*(#+\s+|[-*•]\s+|\d+[.)]\s+)/, "").replace(/\*\*|__|`/g, ""))
    .join("\n");
}

/** The pieces of `text` split into sentences, with whether each ends like a sentence. */
export interface SentencePiece {
  /** The sentence, trimmed, its line breaks read as spaces. */
  text: string;
  /**
   * True when it ends with `.`, `!` or `?` (closing quotes or brackets may follow). The last
   * piece of a completion cut at its token limit is usually unfinished.
   */
  complete: boolean;
}

/**
 * Splits `text` into sentences: after `.`, `!` or `?` (and any closing quotes or brackets)
 * followed by white space, except after a few abbreviations and single initials or before a
 * lower-case word; a line break
 * always ends a sentence (a heading, a list item, a paragraph). Text without letters (a stray
 * punctuation mark, a number) is not a sentence.
 */
export function splitSentences(text: string): SentencePiece[] {
  const pieces: SentencePiece[] = [];
  for (const line of plainText(text).split("\n")) {
    let start = 0;
    const boundary = /[.!?]+["'”’)\]]*(?=\s|$)/g;
    for (let m; (m = boundary.exec(line)) !== null;) {
      const end = m.index + m[0].length;
      const before = line.slice(start, m.index).trim().split(/\s+/).at(-1) ?? "";
      const word = before.toLowerCase().replace(/^["'“‘(\[]+/, "");
      if (m[0] === "." && (ABBREVIATIONS.has(word) || /^[a-z]$/i.test(word))) continue;
      // A lower-case word next goes on the sentence: `"Hi!" said Tom.`, `at 5 p.m. sharp`.
      if (/^\s+\p{Ll}/u.test(line.slice(end))) continue;
      pieces.push({ text: line.slice(start, end).trim(), complete: true });
      start = end;
    }
    const rest = line.slice(start).trim();
    if (rest) pieces.push({ text: rest, complete: false });
  }
  return pieces.filter((piece) => /\p{L}/u.test(piece.text));
}

/** The finished sentences of `text`: those {@linkcode splitSentences} marks complete. */
export function completeSentences(text: string): string[] {
  return splitSentences(text).filter((s) => s.complete).map((s) => s.text);
}

/** The words of `text`, lower case: runs of letters, digits and inner apostrophes. */
export function words(text: string): string[] {
  return text.toLowerCase().replace(/[’‘]/g, "'").match(/[\p{L}\p{N}]+(?:'[\p{L}]+)*/gu) ?? [];
}

/**
 * Distinct word bigrams over all bigrams of one text, from 0 to 1: a text caught in a loop
 * repeats its pairs and scores low; fluent prose scores near 1. Null for a text of fewer than
 * two words.
 */
export function distinctBigramRatio(text: string): number | null {
  const w = words(text);
  if (w.length < 2) return null;
  const pairs = new Set<string>();
  for (let i = 0; i + 1 < w.length; i++) pairs.add(`${w[i]} ${w[i + 1]}`);
  return pairs.size / (w.length - 1);
}

/** Endings a topic word may take and still be the same word ("light" in "lights", "lighting"). */
const SUFFIXES = ["", "s", "es", "ed", "d", "ing", "er", "ers", "est", "ly", "'s", "ies", "ied"];

/**
 * The topic words `answer` uses: a topic word counts when a word of the answer is that word
 * with one of a few English endings (case ignored; "y" may turn into "ies"/"ied"). A topic word
 * of several words counts when the answer holds that phrase.
 */
export function topicWordsUsed(answer: string, topicWords: readonly string[]): string[] {
  const answerWords = words(answer);
  const joined = ` ${answerWords.join(" ")} `;
  return topicWords.filter((topic) => {
    const t = words(topic);
    if (t.length !== 1) return t.length > 1 && joined.includes(` ${t.join(" ")} `);
    const stem = t[0].endsWith("y") ? t[0].slice(0, -1) : t[0];
    return answerWords.some((w) =>
      SUFFIXES.some((suffix) => w === t[0] + suffix || (stem !== t[0] && w === stem + suffix))
    );
  });
}

/** The mean of the numbers that are not null; null when none is. */
export function meanOf(values: readonly (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length === 0 ? null : known.reduce((s, v) => s + v, 0) / known.length;
}

/**
 * The words of `sentence` in a random order under `seed`, as a sentence again (first word
 * capitalized, the sentence's final punctuation kept): word salad made of the same words, the
 * grammar score's negative control.
 */
export function shuffleWords(sentence: string, seed: number): string {
  const end = /[.!?]+$/.exec(sentence.trim())?.[0] ?? "";
  const tokens = sentence.trim().slice(0, sentence.trim().length - end.length).split(/\s+/)
    .map((w) => w.replace(/^["'“‘(]+|[,;:"'”’)]+$/g, "").toLowerCase()).filter((w) => w);
  const order = new Random(seed).permutation(tokens.length);
  const shuffled = Array.from(order, (i) => tokens[i]).join(" ");
  return shuffled.charAt(0).toUpperCase() + shuffled.slice(1) + end;
}
