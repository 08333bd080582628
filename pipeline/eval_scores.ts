/**
 * The eval's figures from the text the models wrote: each completion and answer scored (its
 * sentences, how many link-grammar links fully, its distinct bigrams, the topic words it used),
 * then the summary figures over all of them. No model is needed: the texts can come from
 * anywhere, which is how the tests check the scoring on fixed text.
 *
 * Grammar is given twice: the share of sentences link-grammar links fully (the mission's
 * measure), and the share it links without guessing a lower-case word its dictionary lacks, so
 * that invented words ("soming canting") count against a model.
 *
 * Sentences are counted and parsed only when finished (ending in `.`, `!` or `?`): the piece a
 * completion was cut in at its token limit is left out, and so is the prompt's own text (the
 * sentence the prompt begins is scored with the completion's end of it).
 *
 * @module
 */

import { completeSentences, distinctBigramRatio, meanOf, topicWordsUsed } from "./_eval_scoring.ts";
import { linkGrammarVerdicts, type LinkVerdict } from "./_link_grammar.ts";

/** A prompt and the pretrained model's continuation of it. */
export interface CompletionSample {
  /** The prompt as given. */
  prompt: string;
  /** The text the model added after the prompt. */
  text: string;
  /** The sampling seed it was drawn with, where known (it reproduces the draw). */
  seed?: number;
}

/** A question and the tuned model's answer to it. */
export interface AnswerSample {
  /** The question as asked. */
  question: string;
  /** The words any on-topic answer would use. */
  topicWords: readonly string[];
  /** The answer, without its end marker. */
  answer: string;
  /** True when the model ended the answer itself with `<|im_end|>` (not at the token cap). */
  endedByItself: boolean;
  /** The sampling seed it was drawn with, where known (it reproduces the draw). */
  seed?: number;
}

/** A completion with its scores, as written to `completions.jsonl`. */
export interface CompletionRecord extends CompletionSample {
  /** The finished sentences it wrote (the prompt's unfinished one completed by it included). */
  sentences: string[];
  /** Whether link-grammar links each of `sentences` fully; absent without the grammar check. */
  linked?: boolean[];
  /** Lower-case words of linked sentences that link-grammar's dictionary lacks (guessed). */
  guessedWords?: string[];
  /** Distinct word bigrams over all of the completion's bigrams; null under two words. */
  distinctBigrams: number | null;
}

/** An answer with its scores, as written to `answers.jsonl`. */
export interface AnswerRecord extends AnswerSample {
  /** The topic words the answer used; none means off topic. */
  topicWordsUsed: string[];
  /** The answer's finished sentences. */
  sentences: string[];
  /** Whether link-grammar links each of `sentences` fully; absent without the grammar check. */
  linked?: boolean[];
  /** Lower-case words of linked sentences that link-grammar's dictionary lacks (guessed). */
  guessedWords?: string[];
}

/**
 * The summary figures, named as the report card knows them (shares are fractions from 0 to 1).
 * A figure is absent when its inputs were: no validation set, no tuned model, no grammar check,
 * or no sentence to score.
 */
export interface EvalFigures {
  /** Validation loss, nats per token. */
  valLoss?: number;
  /** The same loss in bits per UTF-8 byte of the validation text. */
  bitsPerByte?: number;
  /** The share of the completions' sentences that link-grammar links fully. */
  grammar?: number;
  /**
   * The share of the completions' sentences that link-grammar links fully without guessing a
   * lower-case word its dictionary lacks: invented words count against it.
   */
  grammarKnownWords?: number;
  /** Finished sentences per completion, on average. */
  sentencesPerCompletion?: number;
  /** The completions' distinct word bigrams over their bigrams, averaged over completions. */
  distinctBigrams?: number;
  /** The share of answers that use one of their question's topic words. */
  onTopic?: number;
  /** The share of answers the model ended itself with `<|im_end|>`. */
  endsByThemselves?: number;
  /** The share of the answers' sentences that link-grammar links fully. */
  answerGrammar?: number;
  /** As `grammarKnownWords`, for the answers' sentences. */
  answerGrammarKnownWords?: number;
}

/** Options of {@linkcode scoreSamples}. */
export interface ScoreOptions {
  /** Run the link-grammar check. Default true (it needs `link-parser`). */
  grammar?: boolean;
  /** The parser's command. Default `link-parser`. */
  linkParser?: string;
}

/** What {@linkcode scoreSamples} found. */
export interface ScoredSamples {
  /** Each completion with its scores. */
  completions: CompletionRecord[];
  /** Each answer with its scores. */
  answers: AnswerRecord[];
  /** The summary figures over them (no validation figures: those come from the model). */
  figures: EvalFigures;
}

/**
 * Scores completions and answers; all sentences go through one link-grammar process.
 *
 * @throws when the grammar check is asked for and `link-parser` is missing (the message says
 * how to install it).
 */
export async function scoreSamples(
  completions: readonly CompletionSample[],
  answers: readonly AnswerSample[],
  { grammar = true, linkParser }: ScoreOptions = {},
): Promise<ScoredSamples> {
  const completionSentences = completions.map(({ prompt, text }) =>
    // The prompt's finished sentences are its own text, not the model's.
    completeSentences(prompt + text).slice(completeSentences(prompt).length)
  );
  const answerSentences = answers.map(({ answer }) => completeSentences(answer));
  const all = [...completionSentences.flat(), ...answerSentences.flat()];
  const parses = grammar ? await linkGrammarVerdicts(all, { command: linkParser }) : null;
  let next = 0;
  // The verdicts of the next record's sentences, in order.
  const grammarOf = (sentences: string[]) => {
    if (!parses) return {};
    const verdicts = parses.slice(next, next += sentences.length);
    return {
      linked: verdicts.map((v) => v.linked),
      guessedWords: [...new Set(verdicts.flatMap((v) => v.guessedWords))],
      verdicts,
    };
  };
  const completionVerdicts: LinkVerdict[] = [], answerVerdicts: LinkVerdict[] = [];

  const completionRecords = completions.map((sample, i): CompletionRecord => {
    const { verdicts = [], ...linkage } = grammarOf(completionSentences[i]);
    completionVerdicts.push(...verdicts);
    return {
      ...sample,
      sentences: completionSentences[i],
      ...linkage,
      distinctBigrams: distinctBigramRatio(sample.text),
    };
  });
  const answerRecords = answers.map((sample, i): AnswerRecord => {
    const { verdicts = [], ...linkage } = grammarOf(answerSentences[i]);
    answerVerdicts.push(...verdicts);
    return {
      ...sample,
      topicWordsUsed: topicWordsUsed(sample.answer, sample.topicWords),
      sentences: answerSentences[i],
      ...linkage,
    };
  });

  const figures: EvalFigures = {};
  if (completionRecords.length > 0) {
    figures.grammar = linkedShare(completionVerdicts, false);
    figures.grammarKnownWords = linkedShare(completionVerdicts, true);
    figures.sentencesPerCompletion = completionSentences.flat().length / completions.length;
    figures.distinctBigrams = meanOf(completionRecords.map((r) => r.distinctBigrams)) ??
      undefined;
  }
  if (answerRecords.length > 0) {
    figures.onTopic = share(answerRecords, (r) => r.topicWordsUsed.length > 0);
    figures.endsByThemselves = share(answerRecords, (r) => r.endedByItself);
    figures.answerGrammar = linkedShare(answerVerdicts, false);
    figures.answerGrammarKnownWords = linkedShare(answerVerdicts, true);
  }
  for (const key of Object.keys(figures) as (keyof EvalFigures)[]) {
    if (figures[key] === undefined) delete figures[key];
  }
  return { completions: completionRecords, answers: answerRecords, figures };
}

function share<T>(items: readonly T[], test: (item: T) => boolean): number {
  return items.filter(test).length / items.length;
}

/**
 * The share of the sentences that were linked (with no guessed word, when `knownWords`);
 * undefined when none was parsed.
 */
function linkedShare(verdicts: readonly LinkVerdict[], knownWords: boolean): number | undefined {
  if (verdicts.length === 0) return undefined;
  return share(verdicts, (v) => v.linked && (!knownWords || v.guessedWords.length === 0));
}
