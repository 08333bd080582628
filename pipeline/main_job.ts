/**
 * The main job, `deno task train`: from raw text to a model you can chat with, within a time
 * budget. It measures this adapter's training speed, prints the plan (model, tokens, the time of
 * every stage), then runs every stage: prepare → tokenizer → tokenize → probe → pretrain →
 * test_pretrained → prepare_instruct → finetune_instruct → test_instruct → eval → report.
 *
 * By default it trains on the corpus bundled in `data/` (offline); `--hub` takes a FineWeb
 * `sample-10BT` sample from the Hugging Face hub instead, and `--data` local text. Each stage
 * writes into the work folder and is skipped when its output is there; training resumes from
 * its checkpoint, so an interrupted job picks up where it stopped. The flags that shape the
 * outputs are recorded in `job.json`: running again in the same folder with other ones is an
 * error rather than a silent reuse.
 *
 *     deno task train                      # 30 minutes, bundled data
 *     deno task train --budget 2h          # a larger model
 *     deno task train --hub --rows 10000   # FineWeb from the hub
 *
 * @module
 */

import { acquireGpu, type Gpu } from "../kernels/device.ts";
import {
  DEFAULT_BUDGET,
  type MainJobPlanOptions,
  type MainJobStage,
  type MeasuredPlan,
  planForBudget,
  planMainJob,
  PRETRAINING_OPTIMIZER,
  pretrainingSeqWarmup,
  STAGE_ESTIMATES,
} from "./budget.ts";
import { BUNDLED_INSTRUCT_DIR } from "./bundled_data.ts";
import { JobFolder, readJson } from "./_job_folder.ts";
import {
  BUNDLED_SHARES,
  estimateSourceTokens,
  HUB_ROWS,
  pretrainingSource,
  TUNING_ANSWER_SOURCES,
} from "./pretraining_source.ts";
import {
  type BudgetPlan,
  checkTrainingTime,
  expectedQuality,
  formatDuration,
  formatPlan,
  type ModelShape,
  parseDuration,
  parseShape,
  shapeConfig,
  type StageTime,
} from "./plan.ts";
import { prepareDataset } from "./prepare_dataset.ts";
import { prepareDatasetInstruct } from "./prepare_dataset_instruct.ts";
import { finetuneInstruct } from "./finetune_instruct.ts";
import { testPretrained } from "./test_pretrained.ts";
import { formatSideBySide, testInstruct } from "./test_instruct.ts";
import { tokenizeDataset } from "./tokenize_dataset.ts";
import { loadTokenizedDataset } from "./token_rows.ts";
import { trainModel } from "./train_model.ts";
import {
  type EvalSummary,
  evaluateModel,
  formatEvalSummary,
  LINK_PARSER_INSTALL,
  linkParserAvailable,
} from "./eval.ts";
import type { EvalFigures } from "./eval_scores.ts";
import { type ReportFigure, writeReport } from "./report.ts";
import { trainTokenizer } from "./train_tokenizer.ts";
import { DEFAULT_SPECIAL_TOKENS } from "../tokenizer/train_bpe.ts";
import { checkContextLength, gpt2ParameterCount, MAX_PARAMETERS } from "../nn/config.ts";
import { IM_END, IM_START } from "./chatml.ts";
import { writeTextFileAtomic } from "../util/files.ts";
import { interruptSignal, runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";

/** The main job's settings, each default in one place: the CLI, `--help` and the JSDoc read it. */
export const MAIN_JOB_DEFAULTS = {
  budget: DEFAULT_BUDGET,
  work: "runs/main",
  hubRows: HUB_ROWS,
  vocabSize: 8192,
  context: 1024,
  instructContext: 256,
  /**
   * Share of the training time the instruction tuning gets; pretraining has the rest. 5%: in five
   * 30-minute jobs on lavapipe the completions' grammar was 81% at 0.05 (twice) and 68-72% at
   * 0.15 (three times), at either depth (docs/recipe.md); the pairs are in pretraining already.
   */
  tuneShare: 0.05,
  /** The shares of stories, FineWeb and ChatML conversations in the bundled pretraining text. */
  shares: BUNDLED_SHARES,
  prompt: "Once upon a time",
  questions: [
    "What is the capital of France?",
    "Why is the sky blue?",
    "Write a short story about a cat.",
  ],
} as const;

/** Options of {@linkcode runMainJob}; see {@linkcode MAIN_JOB_DEFAULTS} for the defaults. */
export interface MainJobOptions {
  /** The whole job's wall-clock budget, e.g. `30m`, `2h`. */
  budget?: string;
  /** A local corpus (file or folder) instead of the bundled one. */
  data?: string;
  /** Take FineWeb `sample-10BT` from the Hugging Face hub instead of the bundled corpus. */
  hub?: boolean;
  /** Documents to take: all of a local or bundled corpus by default, 10,000 from the hub. */
  rows?: number;
  /** Instruction pairs for the tuning (JSON, JSON Lines or Parquet); the bundled ones by default. */
  instructData?: string;
  /** The work folder every stage writes into. */
  work?: string;
  /** Tokenizer vocabulary. */
  vocabSize?: number;
  /** The model's context, and the length the last phase of pretraining trains at. */
  context?: number;
  /** The prompt completed after pretraining. */
  prompt?: string;
  /** Share of the training time given to instruction tuning, above 0 and at most 0.5. */
  tuneShare?: number;
  /** The model's shape, pinned (the plan then sizes its tokens); chosen by the plan by default. */
  shape?: ModelShape;
  /** Stops after the running stage (training: after its step, saving a checkpoint). */
  signal?: AbortSignal;
  /** The GPU to use; acquired when absent. */
  gpu?: Gpu;
}

/** What the main job made. */
export interface MainJobResult {
  /** The plan it followed. */
  plan: BudgetPlan;
  /** Every stage it ran with the seconds it took (a skipped stage takes 0). */
  stages: StageTime[];
  /** The work folder's report, `report.md`. */
  report: string;
  /** The tuned model's checkpoint and tokenizer, for `deno task chat`. */
  chat: { checkpoint: string; tokenizer: string };
}

/** Runs the whole pipeline within the budget; see the module documentation. */
export async function runMainJob(options: MainJobOptions = {}): Promise<MainJobResult | null> {
  const d = MAIN_JOB_DEFAULTS;
  const work = options.work ?? d.work;
  const budgetSeconds = parseDuration(options.budget ?? d.budget);
  const vocabSize = options.vocabSize ?? d.vocabSize;
  const context = options.context ?? d.context;
  const tuneShare = options.tuneShare ?? d.tuneShare;
  await checkMainJobInputs({ ...options, vocabSize, context, tuneShare, budgetSeconds });
  const paths = {
    job: `${work}/job.json`,
    plan: `${work}/plan.json`,
    stages: `${work}/stages.json`,
    dataset: `${work}/dataset.jsonl`,
    tokenizer: `${work}/tokenizer`,
    tokenized: `${work}/tokenized`,
    model: `${work}/model`,
    instruct: `${work}/instruct/data`,
    tuned: `${work}/instruct/model`,
  };
  const prompt = options.prompt ?? d.prompt;
  const source = pretrainingSource(options);
  const job = await JobFolder.open(work, {
    // The bundled mixture's shares are part of what the folder holds.
    data: options.data ?? (options.hub ? "hub" : `bundled ${JSON.stringify(d.shares)}`),
    rows: options.rows ?? null,
    instructData: options.instructData ?? "bundled",
    vocabSize,
    context,
    // The plan in the folder was made for this budget.
    budgetSeconds,
    tuneShare,
    // null when the plan chooses: a folder made before the flag existed records none, and
    // resumes as one whose plan chose.
    shape: options.shape ? `${options.shape.nLayer}x${options.shape.nEmbd}` : null,
  }, options.signal);

  const gpu = options.gpu ?? await acquireGpu();
  // Said first, not after the training: the eval's grammar score needs link-grammar.
  const grammar = await linkParserAvailable();
  if (!grammar) {
    console.error(
      `note: the eval will skip its grammar score: link-grammar is missing (${LINK_PARSER_INSTALL})`,
    );
  }

  // The plan comes first: probe the adapter, estimate the data, print what will happen.
  const planOptions: MainJobPlanOptions = {
    budgetSeconds,
    vocabSize,
    contextLength: context,
    dataTokens: await estimateSourceTokens(source),
    spent: job.stages,
    estimates: STAGE_ESTIMATES,
    finetuneShare: tuneShare,
    shape: options.shape,
  };
  let saved = await readJson<MeasuredPlan>(paths.plan);
  if (!saved) {
    await job.run(
      "probe",
      `: this adapter's training speed (${gpu.adapter.name})`,
      async () => {
        saved = await planForBudget(gpu, planOptions, (line) => console.error(line));
      },
    );
    if (job.stopped() || !saved) return null;
    await writeTextFileAtomic(paths.plan, JSON.stringify(saved, null, 2) + "\n");
  }
  console.error(`\n== plan for a budget of ${formatDuration(budgetSeconds)}`);
  console.error(formatPlan(saved.plan, budgetSeconds));
  // The measured quality is of the bundled mix; another corpus would write otherwise.
  if (source.mixture !== undefined) console.error(`expect: ${expectedQuality(saved.plan.tokens)}`);

  await job.run(
    "prepare_dataset",
    `: ${source.label}`,
    () => prepareDataset({ ...source, out: paths.dataset }),
  );
  if (job.stopped()) return null;
  await job.run(
    "train_tokenizer",
    `: byte-level BPE, ${vocabSize} tokens`,
    // ChatML's markers are special tokens from the start: the bundled text holds conversations,
    // and the tuning then needs no new embeddings.
    () =>
      trainTokenizer({
        data: paths.dataset,
        vocabSize,
        specialTokens: [...DEFAULT_SPECIAL_TOKENS, IM_START, IM_END],
        out: paths.tokenizer,
      }),
  );
  if (job.stopped()) return null;
  await job.run("tokenize_dataset", `: rows of ${context} tokens`, () =>
    tokenizeDataset({
      data: paths.dataset,
      tokenizer: paths.tokenizer,
      method: "concat",
      contextLength: context,
      // The bundled mix holds ChatML conversations whose markers must stay control tokens; in a
      // user's own text such markers stay plain text.
      specialTokensInText: source.mixture !== undefined,
      out: paths.tokenized,
    }));
  if (job.stopped()) return null;

  // With the data's real size and the stages' real times the plan is final; it is printed again
  // if that changed it.
  const { meta } = await loadTokenizedDataset(paths.tokenized);
  if (!job.done("train_model") && job.spentOn("train_model") === 0) {
    const final = planMainJob({ ...planOptions, dataTokens: meta.tokens }, saved.samples);
    if (
      !sameShape(final, saved.plan) ||
      Math.abs(final.steps - saved.plan.steps) > 0.05 * saved.plan.steps
    ) {
      console.error("\n== plan, with the data's measured size");
      console.error(formatPlan(final, budgetSeconds));
    }
    saved = { ...saved, plan: final };
    await writeTextFileAtomic(paths.plan, JSON.stringify(saved, null, 2) + "\n");
  }
  const plan = saved.plan;
  // A training stage gets what the budget has left once the stages before it took what they
  // took and the ones after it are given their planned time: early errors of the estimates are
  // absorbed by training, not added to the job's end.
  const secondsLeftFor = (name: MainJobStage) => {
    const at = plan.stages.findIndex((s) => s.stage === name);
    const after = plan.stages.slice(at + 1).reduce((sum, s) => sum + s.seconds, 0);
    return Math.max(1, budgetSeconds - job.spentBesides(name) - after - job.spentOn(name));
  };

  const pretrained = `${paths.model}/checkpoint.safetensors`;
  await job.run(
    "train_model",
    `: ${(plan.parameters / 1e6).toFixed(2)}M parameters`,
    () =>
      trainModel({
        gpu,
        data: paths.tokenized,
        out: paths.model,
        nLayer: plan.config.nLayer,
        nHead: plan.config.nHead,
        nEmbd: plan.config.nEmbd,
        batchSize: plan.batchSize,
        gradAccum: plan.gradAccum,
        // A quarter more steps than planned, with the time limit ending the run: a probe that
        // underrated the speed leaves no time unused, and wsd decays before the limit either way.
        steps: Math.ceil(plan.steps * 1.25),
        lr: pretrainingLearningRate(plan.parameters),
        optimizer: PRETRAINING_OPTIMIZER,
        schedule: "wsd",
        seqWarmup: pretrainingSeqWarmup(context),
        maxSeconds: secondsLeftFor("train_model"),
        signal: options.signal,
      }),
  );
  if (job.stopped()) return null;

  await job.run("test_pretrained", `: "${prompt}"`, async () => {
    const completion = await testPretrained({
      gpu,
      checkpoint: pretrained,
      tokenizer: paths.tokenizer,
      prompt,
      maxNewTokens: 60,
      temperature: 0.8,
      topK: 50,
    });
    console.log(prompt + completion);
  });
  if (job.stopped()) return null;

  await job.run(
    "prepare_dataset_instruct",
    `: ${options.instructData ?? "bundled pairs"}`,
    () =>
      prepareDatasetInstruct({
        data: options.instructData ?? BUNDLED_INSTRUCT_DIR,
        sources: options.instructData ? undefined : TUNING_ANSWER_SOURCES,
        tokenizer: paths.tokenizer,
        contextLength: Math.min(d.instructContext, context),
        pack: true,
        out: paths.instruct,
      }),
  );
  if (job.stopped()) return null;

  const tuned = `${paths.tuned}/checkpoint.safetensors`;
  const tunedTokenizer = `${paths.instruct}/tokenizer`;
  const tuneRows = 16, tuneLength = Math.min(d.instructContext, context);
  await job.run("finetune_instruct", "", () =>
    finetuneInstruct({
      gpu,
      pretrained,
      data: `${paths.instruct}/tokenized`,
      out: paths.tuned,
      batchSize: tuneRows,
      // Twice the steps the pretraining speed allows, with the time limit ending the run: rows
      // of 256 tokens train faster than rows of 1024, by how much the probe did not measure.
      steps: Math.max(
        10,
        Math.ceil(2 * plan.finetuneSeconds * plan.tokensPerSecond / (tuneRows * tuneLength)),
      ),
      // Half the pretraining peak: a small model tuned for a few minutes needs real steps to
      // learn the answer format and its end marker (at 3e-4 a 0.7M model kept its stories).
      lr: pretrainingLearningRate(plan.parameters) / 2,
      schedule: "wsd",
      maxSeconds: secondsLeftFor("finetune_instruct"),
      signal: options.signal,
    }));
  if (job.stopped()) return null;

  await job.run("test_instruct", "", async () => {
    const results = await testInstruct({
      gpu,
      pretrained,
      tokenizer: paths.tokenizer,
      tuned,
      tunedTokenizer,
      questions: d.questions,
      maxNewTokens: 60,
      temperature: 0.7,
      topK: 40,
    });
    console.log(formatSideBySide(results));
  });
  if (job.stopped()) return null;

  let summary: Pick<EvalSummary, "figures"> | null = await readJson(`${work}/eval/eval.json`);
  await job.run("eval", ": validation, completions, answers, grammar", async () => {
    const result = await evaluateModel({
      gpu,
      pretrained,
      tokenizer: paths.tokenizer,
      validation: paths.tokenized,
      tuned,
      tunedTokenizer,
      grammar,
      out: `${work}/eval`,
    });
    console.log(formatEvalSummary(result));
    summary = result;
  });
  if (job.stopped()) return null;

  // The report is remade on every run: it is cheap and shows the stages as they stand.
  console.error("\n== report");
  const samples = summary ? await readEvalSamples(`${work}/eval`) : null;
  const { report } = await writeReport({
    work,
    plan: { figures: planFigures(plan, budgetSeconds), stages: plan.stages },
    stageTimes: job.stages,
    pretrainLog: `${paths.model}/log.jsonl`,
    instructLog: `${paths.tuned}/log.jsonl`,
    evals: summary ? reportFigures(summary.figures) : undefined,
    completions: samples?.completions,
    answers: samples?.answers,
    environment: { adapter: gpu.adapter.name },
  });
  const total = job.spentBesides("");
  console.error(
    `the job took ${formatDuration(total)} of its ${formatDuration(budgetSeconds)} budget`,
  );
  return {
    plan,
    stages: job.stages,
    report,
    chat: { checkpoint: tuned, tokenizer: tunedTokenizer },
  };
}

/** The plan's figures as the report card shows them. */
function planFigures(plan: BudgetPlan, budgetSeconds: number): Record<string, string | number> {
  const { nLayer, nHead, nEmbd, vocabSize, contextLength } = plan.config;
  return {
    budget: formatDuration(budgetSeconds),
    shape:
      `n_layer=${nLayer} n_head=${nHead} n_embd=${nEmbd} vocab=${vocabSize} context=${contextLength}`,
    parameters: plan.parameters,
    tokens: plan.tokens,
    tokensPerParameter: Number(plan.tokensPerParameter.toFixed(1)),
    epochs: Number(plan.epochs.toFixed(2)),
    batch: `${plan.batchSize} rows x ${plan.gradAccum} accumulated = ${plan.tokensPerStep} tokens`,
    steps: plan.steps,
    tokensPerSecond: Math.round(plan.tokensPerSecond),
  };
}

/** The eval's figures for the report, with words for the two it does not know. */
function reportFigures(figures: EvalFigures): Record<string, number | ReportFigure> {
  const known = (value: number | undefined, of: string) =>
    value === undefined ? undefined : {
      value,
      share: true,
      description: `grammar of the ${of}, counting only sentences whose every word the parser ` +
        "knows (it guesses at unknown words, which lets made-up words pass)",
    };
  const entries = Object.entries({
    ...figures,
    grammarKnownWords: known(figures.grammarKnownWords, "completions"),
    answerGrammarKnownWords: known(figures.answerGrammarKnownWords, "answers"),
  }).filter(([, value]) => value !== undefined);
  return Object.fromEntries(entries) as Record<string, number | ReportFigure>;
}

/** The unedited completions and answers the eval wrote, as the report shows them. */
async function readEvalSamples(folder: string) {
  const lines = async <T>(path: string): Promise<T[]> =>
    (await Deno.readTextFile(path)).split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  const completions = await lines<{ prompt: string; text: string }>(`${folder}/completions.jsonl`);
  const answers = await lines<{ question: string; answer: string }>(`${folder}/answers.jsonl`);
  return {
    completions: completions.map(({ prompt, text }) => ({ prompt, text })),
    answers: answers.map(({ question, answer }) => ({ prompt: question, text: answer })),
  };
}

function sameShape(a: BudgetPlan, b: BudgetPlan): boolean {
  return a.config.nLayer === b.config.nLayer && a.config.nEmbd === b.config.nEmbd;
}

/**
 * The peak pretraining learning rate for a model size: GPT-3's table (Brown et al., 2020,
 * table 2.1: 6e-4 at 125M, 3e-4 at 350M, 2.5e-4 at 760M), rising for the smaller models a
 * short budget trains, which tolerate (and need) larger steps.
 */
export function pretrainingLearningRate(parameters: number): number {
  if (parameters >= 700e6) return 2.5e-4;
  if (parameters >= 300e6) return 3e-4;
  if (parameters >= 100e6) return 6e-4;
  if (parameters >= 20e6) return 1e-3;
  return 2e-3;
}

/** The largest vocabulary the main job trains: its token rows are stored as 16-bit ids. */
const MAX_VOCAB_SIZE = 65_536;

/**
 * Refuses settings that a later stage would refuse, before the first stage runs: a job that
 * fails after minutes of work for a flag it could have checked at once wastes the user's time.
 */
async function checkMainJobInputs(
  options: MainJobOptions & {
    vocabSize: number;
    context: number;
    tuneShare: number;
    budgetSeconds: number;
  },
): Promise<void> {
  const { vocabSize, context, tuneShare, budgetSeconds } = options;
  // Before the probe and the work folder: a budget with no time to train fails at once.
  const estimated = Object.values(STAGE_ESTIMATES).reduce((sum, s) => sum + (s ?? 0), 0);
  checkTrainingTime(budgetSeconds, estimated);
  if (!(tuneShare > 0 && tuneShare <= 0.5)) {
    throw new Error(`--tune-share must be above 0 and at most 0.5, got ${tuneShare}.`);
  }
  checkContextLength(context, "--context");
  // The byte alphabet, the special tokens and ChatML's two markers come before any merge.
  const smallest = 256 + DEFAULT_SPECIAL_TOKENS.length + 2;
  if (!Number.isInteger(vocabSize) || vocabSize < smallest || vocabSize > MAX_VOCAB_SIZE) {
    throw new Error(
      `--vocab-size must be a whole number from ${smallest} (the 256 bytes and the special ` +
        `tokens) to ${MAX_VOCAB_SIZE}, got ${vocabSize}.`,
    );
  }
  if (options.shape) {
    const parameters = gpt2ParameterCount(shapeConfig(options.shape, vocabSize, context)).total;
    if (parameters > MAX_PARAMETERS) {
      throw new Error(
        `--shape ${options.shape.nLayer}x${options.shape.nEmbd} makes a model of ` +
          `${(parameters / 1e9).toFixed(2)}B parameters, over the ${MAX_PARAMETERS / 1e9}B ` +
          "this project trains; pass fewer layers or a smaller width.",
      );
    }
  }
  for (
    const [flag, path] of [["--data", options.data], ["--instruct-data", options.instructData]]
  ) {
    if (path === undefined) continue;
    await Deno.stat(path).catch(() => {
      throw new Error(`${flag} ${path}: no such file or folder.`);
    });
  }
}

/** The main job's flags, their defaults and help read from {@linkcode MAIN_JOB_DEFAULTS}. */
function mainJobFlags() {
  const d = MAIN_JOB_DEFAULTS;
  return {
    budget: {
      type: "string",
      default: d.budget,
      help: "wall-clock time for the whole job: 30m, 2h, 1h30m",
    },
    data: {
      type: "string",
      help: "your own corpus (text, JSON Lines, Parquet; a file or folder) instead of data/",
    },
    hub: {
      type: "boolean",
      default: false,
      help: "FineWeb sample-10BT from the Hugging Face hub instead of the bundled corpus",
    },
    rows: { type: "string", help: `documents to take (default all; ${d.hubRows} from the hub)` },
    "instruct-data": {
      type: "string",
      help:
        "instruction pairs (Alpaca fields) for the tuning and the bundled mix's conversations, " +
        "instead of data/instruct",
    },
    work: { type: "string", default: d.work, help: "the work folder every stage writes into" },
    "vocab-size": { type: "string", default: String(d.vocabSize), help: "tokenizer vocabulary" },
    "tune-share": {
      type: "string",
      default: String(d.tuneShare),
      help: "share of the training time the instruction tuning gets (the rest pretrains)",
    },
    context: {
      type: "string",
      default: String(d.context),
      help: "the model's context in tokens (at most 1024)",
    },
    shape: {
      type: "string",
      help: "pin the model's shape as layers x width, like 3x96 (default: the plan chooses)",
    },
    prompt: { type: "string", default: d.prompt, help: "the prompt completed after pretraining" },
    ...HELP_FLAG,
  } as const;
}

if (import.meta.main) {
  await runCli(async () => {
    const flags = mainJobFlags();
    const values = parseFlags("deno task train [options]", flags);
    if (!values) return;
    const result = await runMainJob({
      budget: values.budget,
      data: values.data,
      hub: values.hub,
      rows: values.rows === undefined ? undefined : intFlag("rows", values.rows),
      instructData: values["instruct-data"],
      work: values.work,
      vocabSize: intFlag("vocab-size", values["vocab-size"], 1),
      tuneShare: Number(values["tune-share"]),
      shape: values.shape === undefined ? undefined : parseShape(values.shape),
      context: intFlag("context", values.context, 2),
      prompt: values.prompt,
      signal: interruptSignal(),
    });
    if (result) {
      console.error(`\nreport: ${result.report}`);
      console.error(
        `chat with the model: deno task chat --checkpoint ${result.chat.checkpoint} ` +
          `--tokenizer ${result.chat.tokenizer}`,
      );
    }
  });
}
