/**
 * Measured quality (`deno task eval`): the validation loss of the pretrained model (and the same
 * in bits per byte, which compares across tokenizers), its completions of a fixed set of prompts,
 * and the tuned model's answers to a fixed set of questions, scored for grammar (link-grammar),
 * sentences per completion, repetition (distinct bigrams), staying on topic, and answers that end
 * by themselves. Every completion and answer is written as JSON Lines with its scores, the
 * figures as `eval.json`.
 *
 *     deno task eval --work runs/main
 *     deno task eval --pretrained runs/main/model/checkpoint.safetensors \
 *       --tokenizer runs/main/tokenizer --validation runs/main/tokenized --out runs/main/eval
 *
 * The grammar score needs link-grammar's parser (`sudo apt-get install link-grammar` on
 * Debian/Ubuntu); `--skip-grammar` leaves it out.
 *
 * @module
 */

import { acquireGpu, type Gpu } from "../kernels/device.ts";
import { loadCheckpoint } from "../nn/checkpoint.ts";
import type { GPT2 } from "../nn/gpt2.ts";
import type { SamplingOptions } from "../nn/sampling.ts";
import type { BpeTokenizer } from "../tokenizer/bpe.ts";
import { batchOfRows, type RowRange, splitRows } from "./batches.ts";
import { CHAT_GUIDANCE, chatReplies } from "./chat.ts";
import { IM_END } from "./chatml.ts";
import { EVAL_PROMPTS, EVAL_QUESTIONS, type EvalQuestion } from "./eval_prompts.ts";
import {
  type AnswerRecord,
  type AnswerSample,
  type CompletionRecord,
  type CompletionSample,
  type EvalFigures,
  scoreSamples,
} from "./eval_scores.ts";
import { LINK_PARSER_INSTALL, linkParserAvailable } from "./_link_grammar.ts";
import { completePrompts } from "./test_pretrained.ts";
import { loadTokenizedDataset, type TokenizedDataset } from "./token_rows.ts";
import { resolveTokenizer } from "./tokenize_dataset.ts";
import { validationLosses } from "./validation_loss.ts";
import { writeTextFileAtomic } from "../util/files.ts";
import { ProgressBar } from "./_progress.ts";
import { runCli } from "../util/cli.ts";
import { fractionFlag, HELP_FLAG, intFlag, nonNegativeFlag, parseFlags } from "../util/flags.ts";

export {
  grammarScore,
  LINK_PARSER_INSTALL,
  type LinkGrammarOptions,
  linkGrammarVerdicts,
  linkParserAvailable,
  type LinkVerdict,
} from "./_link_grammar.ts";

/** The defaults of {@linkcode evaluateModel}'s options, which its command line shows too. */
export const EVAL_DEFAULTS = {
  /** Share of the validation set's rows held out in training, as train_model holds them out. */
  valFraction: 0.05,
  /** Rows per validation batch. */
  batchSize: 8,
  /** The most validation batches read. */
  valBatches: 16,
  /** New tokens per completion of a prompt. */
  maxNewTokens: 120,
  /** The most tokens of a chat answer; one that reaches it did not end by itself. */
  maxAnswerTokens: 200,
  /** Sampling temperature. */
  temperature: 0.7,
  /** Sample among the k likeliest tokens. */
  topK: 40,
  /** Sample within this share of the probability mass (1: all of it). */
  topP: 1,
  /** Classifier-free guidance of the answers (1: none); chat's default. */
  guidance: CHAT_GUIDANCE,
  /** Seed of the sampling; prompt i uses `seed + i` in the first draw. */
  seed: 0,
  /**
   * Draws per prompt and question: twenty of each leave the shares within ±10-25 points of
   * noise (four seeds on one model, docs/recipe.md), three draws narrow it at little cost.
   */
  samples: 3,
} as const;

/**
 * Options of {@linkcode evaluateModel}; give a pretrained model, a tuned one, or both. The
 * sampling (temperature, top-k, top-p) defaults to {@linkcode EVAL_DEFAULTS}.
 */
export interface EvaluateOptions extends SamplingOptions {
  /** The pretrained checkpoint: validation loss and completions. */
  pretrained?: string;
  /** The pretrained model's tokenizer (folder or `tokenizer.json`). */
  tokenizer?: BpeTokenizer | string;
  /** A tokenized dataset folder of the pretrained tokenizer, for the validation loss. */
  validation?: string;
  /**
   * The rows of `validation` to measure. Default: the rows train_model holds out for
   * `valFraction` and `batchSize` (the last ones), or every row when that split leaves none.
   */
  validationRows?: RowRange;
  /** Share of `validation`'s rows held out, as in training. Default in {@linkcode EVAL_DEFAULTS}. */
  valFraction?: number;
  /** Rows per validation batch. Default in {@linkcode EVAL_DEFAULTS}. */
  batchSize?: number;
  /** The most validation batches read. Default in {@linkcode EVAL_DEFAULTS}. */
  valBatches?: number;
  /** The instruction-tuned checkpoint: answers in ChatML. */
  tuned?: string;
  /** The tuned model's tokenizer (with the ChatML tokens). */
  tunedTokenizer?: BpeTokenizer | string;
  /** Prompts to complete. Default {@linkcode EVAL_PROMPTS}. */
  prompts?: readonly string[];
  /** Questions to answer. Default {@linkcode EVAL_QUESTIONS}. */
  questions?: readonly EvalQuestion[];
  /** Classifier-free guidance's scale for the answers. Default in {@linkcode EVAL_DEFAULTS}. */
  guidance?: number;
  /** New tokens per completion. Default in {@linkcode EVAL_DEFAULTS}. */
  maxNewTokens?: number;
  /** The most tokens of an answer. Default in {@linkcode EVAL_DEFAULTS}. */
  maxAnswerTokens?: number;
  /**
   * Seed of the sampling: draw j of prompt i (of n) uses `seed + j·n + i`, so the first draw is
   * prompt i at `seed + i`. Default in {@linkcode EVAL_DEFAULTS}.
   */
  seed?: number;
  /**
   * Completions per prompt and answers per question, each drawn with its own seed; the records
   * come draw by draw (every prompt's first, then every prompt's second...). Default in
   * {@linkcode EVAL_DEFAULTS}.
   */
  samples?: number;
  /** Score grammar with link-grammar. Default true; throws early when the parser is missing. */
  grammar?: boolean;
  /** Where to write `completions.jsonl`, `answers.jsonl` and `eval.json`; nothing when absent. */
  out?: string;
  /** The GPU to use; acquired when absent. */
  gpu?: Gpu;
  /** No progress output. */
  quiet?: boolean;
}

/** What the validation set gave. */
export interface ValidationFigures {
  /** Mean loss per counted token, in nats. */
  loss: number;
  /** Bits per UTF-8 byte of the text of the counted tokens. */
  bitsPerByte: number;
  /** Tokens counted. */
  tokens: number;
  /** UTF-8 bytes of their text (special tokens count none). */
  bytes: number;
  /** Mean loss by position bucket (positions 1–128, 129–256, ...); null for an empty bucket. */
  lossByPosition: (number | null)[];
  /** Positions per bucket. */
  bucketSize: number;
}

/** What {@linkcode evaluateModel} measured; also written as `eval.json`. */
export interface EvalSummary {
  /** The figures, named as the report card knows them. */
  figures: EvalFigures;
  /** The validation details, when a validation set was given. */
  validation?: ValidationFigures;
  /** Every completion with its scores. */
  completions: CompletionRecord[];
  /** Every answer with its scores. */
  answers: AnswerRecord[];
  /** The settings used: the sampling, guidance, seed, draws, token limits and grammar check. */
  settings: Record<string, number | boolean>;
}

/** Measures the given models; see the module documentation. */
export async function evaluateModel(options: EvaluateOptions): Promise<EvalSummary> {
  if (!options.pretrained && !options.tuned) {
    throw new Error("Nothing to evaluate: give a pretrained checkpoint, a tuned one, or both.");
  }
  const grammar = options.grammar ?? true;
  // Checked first, so a missing parser fails before minutes of generation, not after.
  if (grammar && !await linkParserAvailable()) {
    throw new Error(
      `The grammar score needs link-grammar's link-parser, which is missing: ${LINK_PARSER_INSTALL}` +
        "; or leave the score out (--skip-grammar).",
    );
  }
  const D = EVAL_DEFAULTS;
  const sampling = {
    temperature: options.temperature ?? D.temperature,
    topK: options.topK ?? D.topK,
    topP: options.topP ?? D.topP,
  };
  const seed = options.seed ?? D.seed;
  const guidance = options.guidance ?? D.guidance;
  const samples = options.samples ?? D.samples;
  if (!(Number.isInteger(samples) && samples >= 1)) {
    throw new Error(`--samples must be a whole number of at least 1, got ${samples}.`);
  }
  const maxNewTokens = options.maxNewTokens ?? D.maxNewTokens;
  const maxAnswerTokens = options.maxAnswerTokens ?? D.maxAnswerTokens;
  const prompts = draws(options.pretrained ? options.prompts ?? EVAL_PROMPTS : [], samples);
  const questions = draws(options.tuned ? options.questions ?? EVAL_QUESTIONS : [], samples);
  const progress = new ProgressBar("eval", prompts.length + questions.length, {
    unit: "texts",
    silent: options.quiet,
  });
  const gpu = options.gpu ?? await acquireGpu();

  let validation: ValidationFigures | undefined;
  const completions: CompletionSample[] = [];
  if (options.pretrained) {
    if (!options.tokenizer) throw new Error("Give the pretrained model's tokenizer.");
    const tokenizer = await resolveTokenizer(options.tokenizer);
    const { model } = await loadCheckpoint(gpu, options.pretrained);
    try {
      if (options.validation) {
        progress.update(0, undefined, "validation loss");
        validation = await measureValidation(model, tokenizer, options);
      }
      // All draws advance together (one forward pass per token for all of them); draw i of
      // the list gets what it would alone with seed + i.
      progress.update(0, undefined, "completions");
      const texts = await completePrompts(model, tokenizer, prompts, {
        ...sampling,
        maxNewTokens,
        seeds: prompts.map((_, i) => seed + i),
      });
      prompts.forEach((prompt, i) => completions.push({ prompt, text: texts[i], seed: seed + i }));
      progress.update(completions.length, undefined, "completions");
    } finally {
      model.dispose();
    }
  }

  const answers: AnswerSample[] = [];
  if (options.tuned) {
    if (!options.tunedTokenizer) throw new Error("Give the tuned model's tokenizer.");
    const tokenizer = await resolveTokenizer(options.tunedTokenizer);
    const imEnd = tokenizer.tokenToId(IM_END);
    if (imEnd === undefined) {
      throw new Error(
        `The tuned model's tokenizer has no ${IM_END} token; pass the tokenizer that ` +
          "prepare-instruct wrote (its data folder's tokenizer/).",
      );
    }
    const { model } = await loadCheckpoint(gpu, options.tuned);
    try {
      const last = questions.map(() => -1);
      const replies = await chatReplies(model, tokenizer, questions.map((q) => q.question), {
        ...sampling,
        maxNewTokens: maxAnswerTokens,
        seeds: questions.map((_, i) => seed + i),
        guidance,
        onToken: (i, id) => (last[i] = id),
      });
      questions.forEach(({ question, topicWords }, i) =>
        answers.push({
          question,
          topicWords,
          answer: replies[i],
          endedByItself: last[i] === imEnd,
          seed: seed + i,
        })
      );
      progress.update(completions.length + answers.length, undefined, "answers");
    } finally {
      model.dispose();
    }
  }
  progress.finish();

  const scored = await scoreSamples(completions, answers, { grammar });
  const figures: EvalFigures = validation
    ? { valLoss: validation.loss, bitsPerByte: validation.bitsPerByte, ...scored.figures }
    : scored.figures;
  const summary: EvalSummary = {
    figures,
    validation,
    completions: scored.completions,
    answers: scored.answers,
    settings: { ...sampling, guidance, seed, samples, maxNewTokens, maxAnswerTokens, grammar },
  };
  if (options.out) await writeEval(options.out, summary);
  return summary;
}

/** `items` listed `samples` times over, whole list after whole list. */
function draws<T>(items: readonly T[], samples: number): T[] {
  return Array.from({ length: samples }, () => items).flat();
}

/**
 * The validation loss of `model` on the held-out rows, and the same in bits per byte: the
 * summed loss in nats over ln 2, divided by the UTF-8 bytes of the counted target tokens' text.
 */
async function measureValidation(
  model: GPT2,
  tokenizer: BpeTokenizer,
  options: EvaluateOptions,
): Promise<ValidationFigures> {
  const dataset = await loadTokenizedDataset(options.validation!);
  if (dataset.meta.vocabSize > model.config.vocabSize) {
    throw new Error(
      `${options.validation} was tokenized with ${dataset.meta.vocabSize} tokens but the model ` +
        `has ${model.config.vocabSize}; pass the validation set of the model's tokenizer.`,
    );
  }
  if (dataset.meta.contextLength > model.config.contextLength) {
    throw new Error(
      `${options.validation} has rows of ${dataset.meta.contextLength} tokens, longer than the ` +
        `model's context of ${model.config.contextLength}; pass a validation set tokenized with ` +
        `--context ${model.config.contextLength} or less.`,
    );
  }
  const batchSize = options.batchSize ?? EVAL_DEFAULTS.batchSize;
  const valFraction = options.valFraction ?? EVAL_DEFAULTS.valFraction;
  const held = options.validationRows ??
    splitRows(dataset.meta.rows, valFraction, batchSize).validation ??
    { first: 0, count: dataset.meta.rows };
  // Whole batches only, so the bytes below are counted over exactly the rows the loss reads.
  const batches = Math.min(
    options.valBatches ?? EVAL_DEFAULTS.valBatches,
    Math.floor(held.count / batchSize),
  );
  if (batches === 0) {
    throw new Error(
      `${options.validation} holds ${held.count} validation rows, fewer than one batch of ` +
        `${batchSize}; use a smaller batch size.`,
    );
  }
  const rows = { first: held.first, count: batches * batchSize };
  const losses = await validationLosses(model, dataset, rows, batchSize, { batches });
  const { tokens, bytes } = countedText(dataset, tokenizer, rows);
  return {
    loss: losses.loss,
    bitsPerByte: (losses.loss * tokens) / (Math.LN2 * Math.max(1, bytes)),
    tokens,
    bytes,
    lossByPosition: losses.byPosition,
    bucketSize: losses.bucketSize,
  };
}

/** The target tokens the loss counts over `rows`, and the UTF-8 bytes of their text. */
function countedText(
  dataset: TokenizedDataset,
  tokenizer: BpeTokenizer,
  rows: RowRange,
): { tokens: number; bytes: number } {
  const T = dataset.meta.contextLength, encoder = new TextEncoder();
  let tokens = 0, bytes = 0;
  for (let row = rows.first; row < rows.first + rows.count; row++) {
    const { targets, mask } = batchOfRows(dataset, [row]);
    const counted: number[] = [];
    for (let t = 0; t < T; t++) if (mask[t]) counted.push(targets[t]);
    tokens += counted.length;
    bytes += encoder.encode(tokenizer.decode(counted, { skipSpecialTokens: true })).length;
  }
  return { tokens, bytes };
}

/** Writes `completions.jsonl`, `answers.jsonl` and `eval.json` into `out`. */
async function writeEval(out: string, summary: EvalSummary): Promise<void> {
  await Deno.mkdir(out, { recursive: true });
  const lines = (records: readonly object[]) => records.map((r) => JSON.stringify(r) + "\n");
  await writeTextFileAtomic(`${out}/completions.jsonl`, lines(summary.completions).join(""));
  await writeTextFileAtomic(`${out}/answers.jsonl`, lines(summary.answers).join(""));
  const { completions: _c, answers: _a, ...figures } = summary;
  await writeTextFileAtomic(`${out}/eval.json`, JSON.stringify(figures, null, 2) + "\n");
}

/** The figures as a few lines of text, each with the bar the mission sets where it has one. */
export function formatEvalSummary(summary: EvalSummary): string {
  const f = summary.figures, lines: string[] = [];
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const bar = (x: number, atLeast: number, show = pct) =>
    ` (bar ≥ ${show(atLeast)}: ${x >= atLeast ? "met" : "not met"})`;
  if (summary.validation) {
    const v = summary.validation;
    lines.push(
      `validation loss        ${v.loss.toFixed(3)} nats/token, ${v.bitsPerByte.toFixed(3)} ` +
        `bits/byte (${v.tokens} tokens, ${v.bytes} bytes)`,
      `  by position          ${
        v.lossByPosition.map((l, k) =>
          `${k * v.bucketSize + 1}-${(k + 1) * v.bucketSize}: ${l === null ? "-" : l.toFixed(2)}`
        ).join("  ")
      }`,
    );
  }
  const n = summary.completions.length, a = summary.answers.length;
  if (f.sentencesPerCompletion !== undefined) {
    const s = f.sentencesPerCompletion;
    lines.push(`sentences/completion   ${s.toFixed(2)}${bar(s, 3, (x) => String(x))}`);
  }
  if (f.grammar !== undefined) {
    lines.push(`grammar (completions)  ${pct(f.grammar)}${bar(f.grammar, 0.85)}`);
  }
  if (f.grammarKnownWords !== undefined) {
    lines.push(`  with known words only ${pct(f.grammarKnownWords)} (no invented word guessed)`);
  }
  if (f.distinctBigrams !== undefined) {
    lines.push(`distinct bigrams       ${pct(f.distinctBigrams)} (mean over ${n} completions)`);
  }
  if (f.onTopic !== undefined) {
    lines.push(`on topic               ${pct(f.onTopic)}${bar(f.onTopic, 0.8)}`);
  }
  if (f.endsByThemselves !== undefined) {
    lines.push(`ends by itself         ${pct(f.endsByThemselves)}${bar(f.endsByThemselves, 0.95)}`);
  }
  if (f.answerGrammar !== undefined) {
    lines.push(`grammar (answers)      ${pct(f.answerGrammar)}${bar(f.answerGrammar, 0.8)}`);
  }
  if (f.answerGrammarKnownWords !== undefined) {
    lines.push(`  with known words only ${pct(f.answerGrammarKnownWords)}`);
  }
  if (a > 0) lines.push(`(${a} answers)`);
  return lines.join("\n");
}

/** The command line; the defaults shown are {@linkcode EVAL_DEFAULTS}. */
const FLAGS = {
  work: {
    type: "string",
    default: "runs/main",
    help: "a main-job work folder; each path below defaults to its file there, if it exists",
  },
  pretrained: {
    type: "string",
    help: "pretrained checkpoint (completions, validation loss); must exist when given",
  },
  tokenizer: { type: "string", help: "the pretrained model's tokenizer" },
  validation: { type: "string", help: "a tokenized dataset folder for the validation loss" },
  "val-fraction": {
    type: "string",
    default: String(EVAL_DEFAULTS.valFraction),
    help: "share of its rows held out in training",
  },
  "batch-size": {
    type: "string",
    default: String(EVAL_DEFAULTS.batchSize),
    help: "validation rows per batch",
  },
  "val-batches": {
    type: "string",
    default: String(EVAL_DEFAULTS.valBatches),
    help: "most validation batches",
  },
  tuned: { type: "string", help: "instruction-tuned checkpoint (answers in ChatML)" },
  "tuned-tokenizer": { type: "string", help: "the tuned model's tokenizer" },
  out: { type: "string", help: "where completions.jsonl, answers.jsonl and eval.json go" },
  "max-new-tokens": {
    type: "string",
    default: String(EVAL_DEFAULTS.maxNewTokens),
    help: "tokens per completion",
  },
  "max-answer-tokens": {
    type: "string",
    default: String(EVAL_DEFAULTS.maxAnswerTokens),
    help: "most tokens per answer",
  },
  temperature: {
    type: "string",
    default: String(EVAL_DEFAULTS.temperature),
    help: "sampling temperature; 0 is greedy",
  },
  "top-k": {
    type: "string",
    default: String(EVAL_DEFAULTS.topK),
    help: "sample among the k likeliest tokens",
  },
  guidance: {
    type: "string",
    default: String(EVAL_DEFAULTS.guidance),
    help: "classifier-free guidance of the answers; 1 is none",
  },
  seed: {
    type: "string",
    default: String(EVAL_DEFAULTS.seed),
    help: "seed of the sampling; prompt i uses seed + i in the first draw",
  },
  samples: {
    type: "string",
    default: String(EVAL_DEFAULTS.samples),
    help: "completions per prompt and answers per question",
  },
  "skip-grammar": {
    type: "boolean",
    default: false,
    help: "leave out the grammar score, which needs link-grammar's parser",
  },
  quiet: { type: "boolean", default: false, help: "no progress bar" },
  ...HELP_FLAG,
} as const;

/** Whether a file or folder exists. */
async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task eval [options]", FLAGS);
    if (!values) return;
    const work = values.work;
    // A path from --work is used when present; one given explicitly must exist (or it errors).
    const pick = async (given: string | undefined, fallback: string) =>
      given ?? (await exists(fallback) ? fallback : undefined);
    const pretrained = await pick(values.pretrained, `${work}/model/checkpoint.safetensors`);
    const tuned = await pick(values.tuned, `${work}/instruct/model/checkpoint.safetensors`);
    if (!pretrained && !tuned) {
      throw new Error(
        `No checkpoint in ${work} (model/ or instruct/model/); run deno task train, or pass ` +
          "--pretrained and/or --tuned. See --help.",
      );
    }
    const summary = await evaluateModel({
      pretrained,
      tokenizer: values.tokenizer ?? `${work}/tokenizer`,
      validation: pretrained ? await pick(values.validation, `${work}/tokenized`) : undefined,
      valFraction: fractionFlag("val-fraction", values["val-fraction"]),
      batchSize: intFlag("batch-size", values["batch-size"]),
      valBatches: intFlag("val-batches", values["val-batches"]),
      tuned,
      tunedTokenizer: values["tuned-tokenizer"] ?? `${work}/instruct/data/tokenizer`,
      out: values.out ?? `${work}/eval`,
      maxNewTokens: intFlag("max-new-tokens", values["max-new-tokens"]),
      maxAnswerTokens: intFlag("max-answer-tokens", values["max-answer-tokens"]),
      temperature: nonNegativeFlag("temperature", values.temperature),
      topK: intFlag("top-k", values["top-k"]),
      guidance: nonNegativeFlag("guidance", values.guidance),
      seed: intFlag("seed", values.seed, 0),
      samples: intFlag("samples", values.samples),
      grammar: !values["skip-grammar"],
      quiet: values.quiet,
    });
    console.log(formatEvalSummary(summary));
    console.log(
      `wrote ${values.out ?? `${work}/eval`}/{completions.jsonl,answers.jsonl,eval.json}`,
    );
  });
}
