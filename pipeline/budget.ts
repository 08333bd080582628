/**
 * The main job's budget, measured: a short probe of this adapter's training speed, and the plan
 * ({@linkcode planBudget}) that follows from it. Shared by `deno task train --budget` and
 * `deno task params --budget`, so both print the same plan.
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import { type GPT2Config, gpt2ParameterCount } from "../nn/config.ts";
import {
  type BudgetPlan,
  candidateShapes,
  fitThroughput,
  type ModelShape,
  planBudget,
  type StageTime,
  type ThroughputSample,
} from "./plan.ts";
import { measureTrainThroughput } from "./throughput_probe.ts";
import type { OptimizerKind } from "../nn/muon_adamw.ts";
import type { SequenceWarmup } from "../nn/schedule.ts";

/** The main job's default budget: 30 minutes. */
export const DEFAULT_BUDGET = "30m";

/**
 * The main job's pretraining optimizer, which the probe steps with too. Muon reached a held-out
 * loss 0.1 nats lower than AdamW in the same time (docs/recipe.md).
 */
export const PRETRAINING_OPTIMIZER: OptimizerKind = "muon";

/**
 * The main job's pretraining sequence-length warmup: sequences of about 128 tokens, doubling up
 * to the context over the first half of the steps. Every stage's length must divide the context
 * (rows are cut into whole sequences), so the start is the context halved as often as that stays
 * whole and not under 128: 128 for 1024, 192 for 768, the context itself (no warmup) for 200.
 */
export function pretrainingSeqWarmup(contextLength: number): SequenceWarmup {
  let startLength = contextLength;
  while (startLength % 2 === 0 && startLength / 2 >= 128) startLength /= 2;
  return { startLength, untilFraction: 0.5 };
}

/** The stages of the main job in order (`probe` is the throughput measurement). */
export const MAIN_JOB_STAGES = [
  "prepare_dataset",
  "train_tokenizer",
  "tokenize_dataset",
  "probe",
  "train_model",
  "test_pretrained",
  "prepare_dataset_instruct",
  "finetune_instruct",
  "test_instruct",
  "eval",
  "report",
] as const;

/** A stage of the main job. */
export type MainJobStage = typeof MAIN_JOB_STAGES[number];

/**
 * Measures training throughput for the budget: first a small shape, then the shape and
 * micro-batch the fit so far would choose, refitting after each, until the choice holds (at
 * most `maxProbes` probes). Every probe trains a few steps of full-context rows on random tokens
 * with the pretraining's optimizer: a step of the rows training will take, since a step's fixed
 * costs (the optimizer, launches) weigh less per token in a larger one (a probe of 2 rows
 * measured 10-15% under one of 4 on lavapipe, 2026-12-03).
 */
export async function probeThroughput(
  gpu: Gpu,
  plan: (samples: ThroughputSample[]) => BudgetPlan,
  { vocabSize, contextLength, maxProbes = 3, log = (_: string) => {} }: {
    vocabSize: number;
    contextLength: number;
    maxProbes?: number;
    log?: (line: string) => void;
  },
): Promise<ThroughputSample[]> {
  const shapes = candidateShapes(vocabSize, contextLength);
  const samples: ThroughputSample[] = [];
  const measure = async (config: GPT2Config, rows: number) => {
    const { tokensPerSecond } = await measureTrainThroughput(gpu, config, {
      batchSize: rows,
      steps: 2,
      optimizer: PRETRAINING_OPTIMIZER,
    });
    samples.push({ config, tokensPerSecond, rows });
    log(
      `probe: ${(gpt2ParameterCount(config).total / 1e6).toFixed(2)}M parameters ` +
        `(n_layer=${config.nLayer} n_embd=${config.nEmbd}), ${rows} x ${contextLength} tokens ` +
        `a step: ${Math.round(tokensPerSecond)} tokens/s`,
    );
  };
  // A small model near the bottom of the ladder, but with a few layers of real width, at the
  // rows a short run on this adapter takes (a 30-minute plan on lavapipe steps 4 x 1024).
  // At most the 8 rows a plan's micro-batch holds, so that a later probe can match it.
  const firstRows = gpu.adapter.isCpu ? Math.min(8, Math.ceil(4096 / contextLength)) : 8;
  await measure(shapes.find((s) => s.nEmbd >= 128 && s.nLayer >= 2) ?? shapes[0], firstRows);
  while (samples.length < maxProbes) {
    const { config, batchSize } = plan(samples);
    if (samples.some((s) => sameShape(s.config, config) && s.rows === batchSize)) break;
    await measure(config, batchSize);
  }
  return samples;
}

function sameShape(a: GPT2Config, b: GPT2Config): boolean {
  return a.nLayer === b.nLayer && a.nEmbd === b.nEmbd && a.nHead === b.nHead;
}

/** Inputs of {@linkcode planMainJob}. */
export interface MainJobPlanOptions {
  /** The whole job's wall-clock budget, in seconds. */
  budgetSeconds: number;
  /** Tokenizer vocabulary. */
  vocabSize: number;
  /** The model's context. */
  contextLength: number;
  /** Pretraining tokens (measured after tokenizing, or estimated before). */
  dataTokens: number;
  /** Stages already done, with the seconds they took; the rest are estimated. */
  spent?: readonly StageTime[];
  /** Seconds each remaining non-training stage is expected to take. */
  estimates: Partial<Record<MainJobStage, number>>;
  /** Share of the training time given to instruction tuning; {@linkcode planBudget}'s default. */
  finetuneShare?: number;
  /** The model's shape, pinned; chosen by the plan when absent. */
  shape?: ModelShape;
}

/** The stage list for {@linkcode planBudget}: spent stages as measured, the rest estimated. */
export function mainJobStages(options: MainJobPlanOptions): StageTime[] {
  return MAIN_JOB_STAGES.map((stage) => ({
    stage,
    seconds: options.spent?.find((s) => s.stage === stage)?.seconds ??
      options.estimates[stage] ?? 0,
  }));
}

/** Plans the main job from throughput samples; see {@linkcode planBudget}. */
export function planMainJob(
  options: MainJobPlanOptions,
  samples: readonly ThroughputSample[],
): BudgetPlan {
  return planBudget({
    budgetSeconds: options.budgetSeconds,
    throughput: fitThroughput(samples),
    vocabSize: options.vocabSize,
    contextLength: options.contextLength,
    dataTokens: options.dataTokens,
    stages: mainJobStages(options),
    finetuneShare: options.finetuneShare,
    shape: options.shape,
    seqWarmup: pretrainingSeqWarmup(options.contextLength),
  });
}

/**
 * Seconds each stage other than the trainings takes, before it has run, with a margin: from
 * 30-minute jobs on lavapipe (probe 6-11 s, text stages 3 s, test_instruct 6-8 s, eval 19-25 s
 * with its 40 generations and their grammar; four runs of 2026-12-02 ended 110 s under the
 * budget with the eval estimated at 120 s).
 */
export const STAGE_ESTIMATES: Partial<Record<MainJobStage, number>> = {
  prepare_dataset: 3,
  train_tokenizer: 5,
  tokenize_dataset: 5,
  probe: 30,
  test_pretrained: 5,
  prepare_dataset_instruct: 5,
  test_instruct: 15,
  eval: 50,
  report: 2,
};

/** A plan and the throughput samples it came from (the main job's `plan.json`). */
export interface MeasuredPlan {
  /** The plan. */
  plan: BudgetPlan;
  /** What the probe measured. */
  samples: ThroughputSample[];
}

/** Probes this adapter's throughput and plans the main job for the budget. */
export async function planForBudget(
  gpu: Gpu,
  options: MainJobPlanOptions,
  log: (line: string) => void = () => {},
): Promise<MeasuredPlan> {
  const samples = await probeThroughput(gpu, (s) => planMainJob(options, s), {
    vocabSize: options.vocabSize,
    contextLength: options.contextLength,
    log,
  });
  return { plan: planMainJob(options, samples), samples };
}
