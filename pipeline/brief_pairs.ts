/**
 * Brief instruction pairs derived from long ones: the bundled snakes-qa answers of the clean kinds
 * run to 300-450 tokens of headings and lists, longer than the tuning's rows and the eval's
 * answers, so a small model tuned on them neither finishes an answer nor learns that an answer
 * starts from the question's subject. From each long pair this takes the few sentences of prose
 * that answer it (the first that names the subject and those right after it), under a question
 * asked in a few everyday ways:
 *
 * - explanations, explain-like-I'm-five and wiki-style articles ("Explain clouds in simple
 *   terms.") → "Tell me about clouds." with the first sentences about clouds, and each section
 *   whose heading asks about the subject ("Why do leaves change color?") with its first
 *   sentences;
 * - how-to guides ("How do I train my dog?") → the guide's opening sentences;
 * - example sentences ("Generate example sentences using the word 'burn'.") → "Use the word
 *   'burn' in a sentence." with one of the examples;
 * - synonyms ("Provide synonyms for the word 'vote'.") → "What is another word for vote?" with
 *   "Another word for vote is ballot." (the one answer written from a template: the list's first
 *   words, in a sentence);
 * - children's tales ("Tell the child-appropriate tale called `Winnie and the Sunshine
 *   Surprise`.") → "Tell me a short story about Winnie." with the tale's first paragraphs.
 *
 * Every choice of phrasing comes from a hash of the subject, so the same pairs give the same
 * output. Pairs it cannot shorten cleanly give nothing.
 *
 * @module
 */

import type { InstructionPair } from "./chatml.ts";

/** An instruction pair of the bundled files: Alpaca's fields and the kind it comes from. */
export interface SourcedPair extends Omit<InstructionPair, "input"> {
  /** Context for the instruction; absent or empty in most pairs. */
  input?: string;
  /** Where the pair comes from (the bundled files' kinds); a brief pair's is `brief-<kind>`. */
  source?: string;
}

/** The longest brief answer of prose, in words. */
const MAX_ANSWER_WORDS = 70;
/** The most sentences of prose a brief answer keeps. */
const MAX_ANSWER_SENTENCES = 3;
/** A brief story's first paragraphs stop once they reach this many words... */
const STORY_MIN_WORDS = 60;
/** ...and never go past this many. */
const STORY_MAX_WORDS = 150;

/** The derivation for each bundled kind, by its `source`. */
const DERIVATIONS: Record<string, (pair: SourcedPair) => SourcedPair[]> = {
  "llama-explanations": (pair) => explained(pair, /^Explain (.+) in simple terms\.$/),
  "llama-eli5": (pair) => explained(pair, /^Explain (.+) like I'm five years old\.$/),
  "llama-wiki": (pair) => explained(pair, /^Write a wiki article about (.+)\.$/),
  "llama-howto": howTo,
  "llama-sentences": exampleSentences,
  "llama-synonyms": synonyms,
  "generated-child": shortTale,
};

/** The kinds {@linkcode briefPairs} shortens, by their `source`. */
export const BRIEF_KINDS: readonly string[] = Object.keys(DERIVATIONS);

/**
 * The brief pairs derived from `pair` (none when its kind is not one of {@linkcode BRIEF_KINDS}
 * or its answer has no clean sentences to keep); each is tagged `brief-<kind>`.
 */
export function briefPairs(pair: SourcedPair): SourcedPair[] {
  const derive = pair.source === undefined ? undefined : DERIVATIONS[pair.source];
  if (!derive || (pair.input ?? "").trim() !== "") return [];
  return derive(pair).map((brief) => ({ ...brief, input: "", source: `brief-${pair.source}` }));
}

/** The questions an explanation of `subject` answers. */
const EXPLAIN_QUESTIONS = [
  (s: string) => `Tell me about ${s}.`,
  (s: string) => `Explain ${s}.`,
  (s: string) => `Describe ${s}.`,
  (s: string) => `What can you tell me about ${s}?`,
  (s: string) => `Explain ${s} in simple terms.`,
];

/**
 * An explanation's opening about its subject, under an everyday question, and the sections its
 * headings ask about ("**Why do leaves change color?**"), each under its own heading.
 */
function explained(pair: SourcedPair, pattern: RegExp): SourcedPair[] {
  // A wiki title's disambiguation ("Mercury (planet)") is no part of a question.
  const subject = pair.instruction.trim().match(pattern)?.[1]?.replace(/\s*\([^)]*\)$/, "");
  if (!subject) return [];
  const keys = keyWords(subject);
  const briefs: SourcedPair[] = [];
  const answer = leadingProse(pair.output, keys);
  if (answer) {
    // A wiki title names a common noun ("Volcano", "Climate change") when the article writes it
    // in lower case; a name (Toronto) keeps its capitals.
    const noun = subject.toLowerCase();
    const common = subject !== noun && wordPattern(noun, "").test(pair.output);
    const question = !common
      ? pick(EXPLAIN_QUESTIONS, subject)(subject)
      : noun.includes(" ")
      ? pick(EXPLAIN_QUESTIONS, noun)(noun)
      : pick(NOUN_QUESTIONS, noun)(noun);
    briefs.push({ instruction: question, output: answer });
  }
  for (const section of headingQuestions(pair.output, keys)) {
    if (!briefs.some((brief) => brief.output === section.output)) briefs.push(section);
  }
  return briefs;
}

/**
 * The sections whose heading is a question naming the subject ("What are clouds?", not "How does
 * it work?"), each with the first clean sentences of the prose right under it.
 */
function headingQuestions(answer: string, keys: RegExp[]): SourcedPair[] {
  const found: SourcedPair[] = [];
  const all = paragraphs(answer);
  all.forEach((paragraph, i) => {
    const question = paragraph.match(/^(?:#+\s*|\*\*)([^*\n#]+\?)(?:\*\*)?$/)?.[1]?.trim();
    const next = all[i + 1];
    if (!question || !next || isMarkup(next) || !keys.some((key) => key.test(question))) return;
    // A question must stand alone: no pronoun for what the article said before ("What makes
    // them...?"), and no heading's Title Case ("What Does an Octopus Look Like?").
    if (/\b(?:it|its|they|them|their|this|these|those)\b/i.test(question)) return;
    if (question.split(" ").slice(1).filter((word) => /^[A-Z][a-z]/.test(word)).length >= 2) return;
    const output = cleanOpening(sentences(next));
    if (!output) return;
    // "What is Lightning?": a heading's capital stays only on a name the article capitalizes.
    const cased = question.replace(
      /(?<=\s)[A-Z][a-z]+/g,
      (word) => wordPattern(word.toLowerCase(), "").test(answer) ? word.toLowerCase() : word,
    );
    found.push({ instruction: cased, output });
  });
  return found;
}

/** The questions about a common noun, in the singular. */
const NOUN_QUESTIONS = [
  (noun: string) => `What is ${article(noun)} ${noun}?`,
  (noun: string) => `Tell me about the ${noun}.`,
];

/** "a" or "an", by the sound of the word's start (an apple, a universe, an hour is not needed). */
function article(noun: string): string {
  return /^(?:[aio]|e(?!u)|u(?!ni|s[eu]))/.test(noun) ? "an" : "a";
}

function howTo(pair: SourcedPair): SourcedPair[] {
  const question = pair.instruction.trim();
  const task = question.match(/^How (?:do|can|should) I (.+)\?$/)?.[1];
  if (!task) return [];
  // A guide's answer is its opening paragraph; later ones are steps and sign-offs.
  const answer = leadingProse(paragraphs(pair.output)[0] ?? "", keyWords(task));
  return answer ? [{ instruction: question, output: answer }] : [];
}

/** The questions asking for an example sentence with `word`. */
const SENTENCE_QUESTIONS = [
  (w: string) => `Use the word '${w}' in a sentence.`,
  (w: string) => `Write a sentence with the word '${w}'.`,
  (w: string) => `Give me an example sentence using '${w}'.`,
  (w: string) => `Make up a sentence that uses the word '${w}'.`,
];

/** One pair: the list's first example sentence that uses the word. */
function exampleSentences(pair: SourcedPair): SourcedPair[] {
  const word = pair.instruction.match(/using the word '([^']+)'/)?.[1];
  if (!word) return [];
  const uses = wordPattern(word);
  const examples = listItems(pair.output)
    .map((item) => unquote(item.replace(/^\*\*[^*]+\*\*:?\s*/, "")))
    .filter((sentence) => isCleanSentence(sentence) && uses.test(sentence));
  return examples.slice(0, 1).map((sentence) => ({
    instruction: pick(SENTENCE_QUESTIONS, word)(word),
    output: sentence,
  }));
}

/** The questions asking for a synonym of `word`, each with the answer it takes. */
const SYNONYM_QUESTIONS = [
  {
    ask: (w: string) => `What is another word for ${w}?`,
    answer: (w: string, s: string) => `Another word for ${w} is ${s}.`,
  },
  {
    ask: (w: string) => `What is a synonym for ${w}?`,
    answer: (w: string, s: string) => `A synonym for ${w} is ${s}.`,
  },
  {
    ask: (w: string) => `Give me a word that means the same as ${w}.`,
    answer: (w: string, s: string) => `A word that means the same as ${w} is ${s}.`,
  },
];

/** Words a synonym list uses as labels, not synonyms. */
const LIST_LABELS = new Set(["synonym", "synonyms", "antonym", "antonyms", "meaning", "example"]);

/**
 * One pair: the list's first one-word synonym in a sentence, and the next two after it. A list
 * grouped by sense ("Synonyms: ...") is skipped: its heads are the senses' labels, not synonyms.
 */
function synonyms(pair: SourcedPair): SourcedPair[] {
  const word = pair.instruction.match(/for the word '([^']+)'/)?.[1];
  if (!word || !/^[a-z]+$/.test(word) || /synonyms?:/i.test(pair.output)) return [];
  const found: string[] = [];
  for (const item of listItems(pair.output)) {
    const bold = item.match(/^\*\*([^*]+)\*\*\s*(.?)/);
    // "**Een** (Dutch)": a word of another language, or a note on the word, follows in brackets.
    if (bold?.[2] === "(") continue;
    const synonym = (bold?.[1] ?? item).replace(/[:.]$/, "").trim().toLowerCase();
    if (!/^[a-z]{3,}$/.test(synonym) || LIST_LABELS.has(synonym)) continue;
    if (synonym.startsWith(word) || found.includes(synonym)) continue; // early → earlier
    found.push(synonym);
  }
  if (found.length === 0) return [];
  const question = pick(SYNONYM_QUESTIONS, word);
  let output = question.answer(word, found[0]);
  if (found.length >= 3) output += ` You could also say ${found[1]} or ${found[2]}.`;
  return [{ instruction: question.ask(word), output }];
}

/** The requests for a short story about a tale's hero. */
const STORY_REQUESTS = [
  (hero: string) => `Tell me a short story about ${hero}.`,
  (hero: string) => `Write a short story about ${hero}.`,
  (hero: string) => `Can you tell me a story about ${hero}?`,
];

/** The tale's first paragraphs (60-150 words), asked for by its hero's name. */
function shortTale(pair: SourcedPair): SourcedPair[] {
  const title = pair.instruction.match(/called `([^`]+)`/)?.[1];
  const hero = title?.match(/^(?!(?:The|A|An)\b)([A-Z][a-z]+)\b/)?.[1];
  if (!title || !hero || !new RegExp(`\\b${hero}\\b`).test(pair.output)) return [];
  const kept: string[] = [];
  let words = 0;
  for (const paragraph of paragraphs(pair.output)) {
    const count = wordCount(paragraph);
    if (words + count > STORY_MAX_WORDS || !sentences(paragraph).every(isCleanSentence)) break;
    kept.push(paragraph);
    words += count;
    if (words >= STORY_MIN_WORDS) {
      return [{ instruction: pick(STORY_REQUESTS, title)(hero), output: kept.join("\n\n") }];
    }
  }
  return [];
}

/**
 * The answer's first run of clean prose sentences that starts with one naming a key word: at most
 * {@linkcode MAX_ANSWER_SENTENCES} sentences and {@linkcode MAX_ANSWER_WORDS} words, all in one
 * paragraph of prose (headings and list items are skipped). Empty when none names the subject.
 */
function leadingProse(answer: string, keys: RegExp[]): string {
  for (const paragraph of paragraphs(answer)) {
    if (isMarkup(paragraph)) continue;
    const all = sentences(paragraph);
    const start = all.findIndex((s) =>
      isCleanSentence(s) && !REFERS_BACK.test(s) && opensOnSubject(s, keys)
    );
    if (start >= 0) return cleanOpening(all.slice(start));
  }
  return "";
}

/**
 * The leading clean sentences of `sentences`, at most {@linkcode MAX_ANSWER_SENTENCES} and
 * {@linkcode MAX_ANSWER_WORDS} words, the first a statement; empty when the first is not clean.
 */
function cleanOpening(sentences: string[]): string {
  if (!sentences[0]?.endsWith(".") || REFERS_BACK.test(sentences[0])) return "";
  const kept: string[] = [];
  let words = 0;
  for (const sentence of sentences.slice(0, MAX_ANSWER_SENTENCES)) {
    if (!isCleanSentence(sentence) || words + wordCount(sentence) > MAX_ANSWER_WORDS) break;
    kept.push(sentence);
    words += wordCount(sentence);
  }
  return kept.join(" ");
}

/** A statement that names the subject in its first five words ("Clouds are made of..."). */
function opensOnSubject(sentence: string, keys: RegExp[]): boolean {
  const opening = sentence.split(/\s+/).slice(0, 5).join(" ");
  return sentence.endsWith(".") && keys.some((key) => key.test(opening));
}

/**
 * Openings that lean on a sentence before ("These stars are called black holes.", "But when we
 * sleep..."): an answer cannot start with them.
 */
const REFERS_BACK =
  /^(?:But|And|So|Then|Just|This|That|That's|These|Those|It|It's|They|They're|Well)\b/;

/** Openings of chatter rather than answer, and first-person asides. */
const CHATTER = new RegExp(
  [
    "^(?:Here(?:'s| is| are)|Let(?:'s| me| us)|Congratulations|Great question|Oh|Wow|So,|Okay",
    "|Ok,|Hey|Remember|By following|In (?:summary|conclusion)|Overall|Finally)",
    "|\\b(?:I|I'm|I'll|I'd|I've)\\b",
  ].join(""),
);

/**
 * A sentence worth keeping: 5-40 words, a capital first, a full stop, question or exclamation
 * mark last, no markup and no chatter.
 */
export function isCleanSentence(sentence: string): boolean {
  const words = wordCount(sentence);
  return words >= 5 && words <= 40 && /^["“]?[A-Z]/.test(sentence) &&
    /[.!?]["”]?$/.test(sentence) && !/[*#_`|\[\]{}<>]|:$|\.\.\./.test(sentence) &&
    !CHATTER.test(sentence);
}

/** Splits prose into sentences at a full stop, question or exclamation mark before a capital. */
export function sentences(text: string): string[] {
  return text.replace(/\s+/g, " ").trim().split(/(?<=[.!?]["”]?)\s+(?=["“]?[A-Z])/)
    .filter((s) => s !== "");
}

function paragraphs(text: string): string[] {
  return text.split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p !== "");
}

/** A heading, list or table rather than prose. */
function isMarkup(paragraph: string): boolean {
  return /^(?:#|\*|-|\d+\.|\|)/.test(paragraph);
}

/** A list's items (numbered, starred or dashed), each without its marker, in order. */
function listItems(text: string): string[] {
  return text.split("\n").map((line) => line.trim())
    .map((line) => line.match(/^(?:\d+\.|[*\-•])\s+(.+)$/)?.[1]?.trim())
    .filter((item): item is string => item !== undefined && item !== "");
}

function unquote(text: string): string {
  const quoted = text.match(/^["“](.+)["”]$/);
  return (quoted ? quoted[1] : text).trim();
}

const STOP_WORDS = new Set(
  ("the and for with from into that this your about what make good better more some when how " +
    "does work works you can get use own new are way ways").split(" "),
);

/** Patterns for the subject's words of three letters or more (any ending), or its whole text. */
function keyWords(subject: string): RegExp[] {
  const words = subject.toLowerCase().match(/[a-z]{3,}/g)?.filter((w) => !STOP_WORDS.has(w));
  const stems = words && words.length > 0 ? words : [subject];
  return stems.map((word) => wordPattern(word.replace(/(?:es|s)$/, "")));
}

/** Matches `word` with any ending (burn, burns, burned) as a whole word; in any case by default. */
function wordPattern(word: string, flags = "i"): RegExp {
  const escaped = word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`\\b${escaped}\\w*`, flags);
}

function wordCount(text: string): number {
  return text.split(/\s+/).filter((w) => w !== "").length;
}

/** One of `choices`, chosen by a hash of `key`, so every run picks the same. */
function pick<T>(choices: readonly T[], key: string): T {
  let hash = 2166136261; // FNV-1a
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 16777619);
  return choices[(hash >>> 0) % choices.length];
}
