/**
 * The compute-budget planner of the main job: given the wall-clock time a user grants
 * (`--budget 30m`) and this adapter's measured training throughput, it picks the model shape,
 * the number of training tokens and the batch.
 *
 * Chinchilla (Hoffmann et al., 2022): for a compute budget, loss is lowest when parameters N and
 * tokens D grow together, at about 20 tokens per parameter. N here counts the blocks' parameters,
 * not the embeddings (Kaplan et al., 2020, whose scaling laws are clean only without them): in the
 * small models a short budget buys, the token table is most of the parameters but little of the
 * model, and counting it would pick a one-layer model with a large vocabulary. Here compute is time × this adapter's
 * throughput, which depends on the shape, so the rule becomes: the largest model that still sees
 * 20 tokens per parameter in the time it gets. Repeating a small corpus many times overfits, so
 * when the data would be read more than `maxEpochs` times, the spare time goes into a larger
 * model instead (fewer tokens per parameter, a handful of epochs).
 *
 * Everything here is pure: the throughput comes in as measured samples (see
 * `pipeline/throughput_probe.ts`), so the choices are testable for any adapter.
 *
 * @module
 */

import { type GPT2Config, gpt2ParameterCount, MAX_PARAMETERS } from "../nn/config.ts";
import { meanSequenceLength, type SequenceWarmup } from "../nn/schedule.ts";

/** Chinchilla's compute-optimal ratio of training tokens to parameters. */
export const CHINCHILLA_TOKENS_PER_PARAMETER = 20;

/**
 * Model FLOPs per trained token: 6·N for the matmuls plus 12·L·C·T for attention (PaLM's count),
 * T the sequence length trained (default the context; shorter during a sequence warmup, while N
 * keeps the whole position table).
 */
export function trainingFlopsPerToken(
  config: GPT2Config,
  sequenceLength = config.contextLength,
): number {
  const { nLayer: L, nEmbd: C } = config;
  return 6 * gpt2ParameterCount(config).total + 12 * L * C * sequenceLength;
}

/** One measured training throughput. */
export interface ThroughputSample {
  /** The shape measured. */
  config: GPT2Config;
  /** Trained tokens per second (forward, backward and optimizer). */
  tokensPerSecond: number;
  /** Rows of the context per step it was measured at, when known. */
  rows?: number;
}

/** Seconds to train one token of a shape, fitted from samples. */
export interface ThroughputModel {
  /** Predicted seconds per trained token, on sequences of `sequenceLength` (default the context). */
  secondsPerToken(config: GPT2Config, sequenceLength?: number): number;
  /** The fit: seconds per token = `overhead + flopsPerToken / flopRate`. */
  overhead: number;
  /** The fitted rate of model FLOPs per second. */
  flopRate: number;
}

/**
 * Fits `seconds per token = overhead + FLOPs per token / rate` to measured samples by least
 * squares: the overhead stands for the work that does not scale with model FLOPs (launches,
 * memory-bound kernels), which dominates small models on every adapter. One sample gives a
 * pure rate; a fit that would make the overhead negative is refitted through the origin.
 */
export function fitThroughput(samples: readonly ThroughputSample[]): ThroughputModel {
  if (samples.length === 0) throw new Error("Fitting a throughput needs at least one sample.");
  const xs = samples.map((s) => trainingFlopsPerToken(s.config));
  const ys = samples.map((s) => 1 / s.tokensPerSecond);
  let overhead = 0, slope = 0;
  const n = xs.length;
  const meanX = xs.reduce((a, b) => a + b, 0) / n;
  const meanY = ys.reduce((a, b) => a + b, 0) / n;
  const sxx = xs.reduce((a, x) => a + (x - meanX) ** 2, 0);
  if (n > 1 && sxx > 0) {
    slope = xs.reduce((a, x, i) => a + (x - meanX) * (ys[i] - meanY), 0) / sxx;
    overhead = meanY - slope * meanX;
  }
  if (!(slope > 0) || overhead < 0) {
    // Through the origin: slope = Σxy / Σx².
    overhead = 0;
    slope = xs.reduce((a, x, i) => a + x * ys[i], 0) / xs.reduce((a, x) => a + x * x, 0);
  }
  return {
    overhead,
    flopRate: 1 / slope,
    secondsPerToken: (config, sequenceLength) =>
      overhead + trainingFlopsPerToken(config, sequenceLength) * slope,
  };
}

/** Parameters outside the token and position tables: the count the planner's ratio uses. */
export function nonEmbeddingParameters(config: GPT2Config): number {
  const count = gpt2ParameterCount(config);
  return count.total - count.wte - count.wpe;
}

/**
 * The shapes the planner chooses from, smallest first: two layers or more, GPT-2's proportions
 * (width 32 to 128 times the depth), heads of 32 below a width of 256 and of 64 from there
 * (small models keep at least two heads), under one billion parameters. Ordered by
 * non-embedding parameters, and of two shapes the slower-and-smaller one is dropped: along the
 * list both the size and the cost per token grow, so a larger budget can only move up it.
 */
export function candidateShapes(vocabSize: number, contextLength: number): GPT2Config[] {
  const widths = [64, 96, 128, 160, 192, 256, 320, 384, 448, 512, 640, 768, 1024, 1280, 1536];
  const shapes: GPT2Config[] = [];
  for (const nEmbd of widths) {
    // Two layers at least: copying from the context (a name from the prompt, the question's
    // words in an answer) needs an induction head, which takes two (Olsson et al., 2022).
    for (let nLayer = 2; nLayer <= 48; nLayer++) {
      if (nEmbd < 32 * nLayer || nEmbd > 128 * nLayer) continue;
      const config = shapeConfig({ nLayer, nEmbd }, vocabSize, contextLength);
      if (gpt2ParameterCount(config).total <= MAX_PARAMETERS) shapes.push(config);
    }
  }
  shapes.sort((a, b) => nonEmbeddingParameters(a) - nonEmbeddingParameters(b));
  // Keep a chain where both size and cost grow: a shape that costs more per token than a
  // larger one is never the better buy.
  const chain: GPT2Config[] = [];
  for (const shape of shapes) {
    const flops = trainingFlopsPerToken(shape);
    while (chain.length && trainingFlopsPerToken(chain[chain.length - 1]) >= flops) chain.pop();
    chain.push(shape);
  }
  return chain;
}

/** A model's depth and width, the rest of its shape following from them. */
export interface ModelShape {
  /** Layers. */
  nLayer: number;
  /** Width; a multiple of 32. */
  nEmbd: number;
}

/**
 * The GPT-2 configuration of a shape: heads of 64 dimensions from width 256 when they divide it,
 * else of 32.
 */
export function shapeConfig(
  shape: ModelShape,
  vocabSize: number,
  contextLength: number,
): GPT2Config {
  const headSize = shape.nEmbd >= 256 && shape.nEmbd % 64 === 0 ? 64 : 32;
  return { vocabSize, contextLength, ...shape, nHead: Math.max(1, shape.nEmbd / headSize) };
}

/** `3x96` (layers x width) → a shape; refuses anything else with what to write instead. */
export function parseShape(text: string): ModelShape {
  const match = /^\s*(\d+)\s*x\s*(\d+)\s*$/i.exec(text);
  const shape = match ? { nLayer: Number(match[1]), nEmbd: Number(match[2]) } : undefined;
  if (!shape || shape.nLayer < 1 || shape.nEmbd < 32 || shape.nEmbd % 32 !== 0) {
    throw new Error(
      `A shape is layers x width, the width a multiple of 32, like 3x96 or 6x384; got "${text}".`,
    );
  }
  return shape;
}

/** A stage of the main job and the seconds it takes (planned or measured). */
export interface StageTime {
  /** The stage's name, e.g. `train_tokenizer`. */
  stage: string;
  /** Seconds. */
  seconds: number;
}

/** Inputs of {@linkcode planBudget}. */
export interface BudgetPlanOptions {
  /** The whole job's wall-clock budget, in seconds. */
  budgetSeconds: number;
  /** This adapter's training speed (from {@linkcode fitThroughput}). */
  throughput: ThroughputModel;
  /** Tokenizer vocabulary. */
  vocabSize: number;
  /** The model's context (and the last phase of training's sequence length). */
  contextLength: number;
  /** Pretraining tokens available (one epoch). */
  dataTokens: number;
  /**
   * Every stage of the job in order with its expected (or already spent) seconds; the planner
   * fills in the time of `train_model` and `finetune_instruct`, which must be in the list.
   */
  stages: readonly StageTime[];
  /** Share of the training time given to instruction tuning. Default 0.15. */
  finetuneShare?: number;
  /** Tokens per parameter the plan aims at. Default 20 (Chinchilla). */
  tokensPerParameter?: number;
  /** Most passes over the pretraining data before a larger model is preferred. Default 4. */
  maxEpochs?: number;
  /** Rows of `contextLength` tokens one micro-batch may hold (memory). Default 8. */
  maxMicroBatch?: number;
  /** The model's shape, pinned; the plan then sizes only its tokens and batch. Default: chosen. */
  shape?: ModelShape;
  /**
   * The pretraining's sequence-length warmup, if any: its shorter sequences make the
   * attention's cost per token lower than the throughput (measured at the full context) says.
   */
  seqWarmup?: SequenceWarmup;
}

/** What the main job will do, and how long each stage takes. */
export interface BudgetPlan {
  /** The chosen shape. */
  config: GPT2Config;
  /** Its parameter count (output head tied). */
  parameters: number;
  /** Pretraining tokens. */
  tokens: number;
  /** The parameters of the blocks and the final norm: all but `wte` and `wpe`. */
  nonEmbeddingParameters: number;
  /** `tokens / nonEmbeddingParameters`. */
  tokensPerParameter: number;
  /** Passes over the pretraining data. */
  epochs: number;
  /** Tokens per optimizer step. */
  tokensPerStep: number;
  /** Rows of `contextLength` tokens per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step. */
  gradAccum: number;
  /** Pretraining optimizer steps. */
  steps: number;
  /** Predicted pretraining throughput of the chosen shape (its mean, sequence warmup included). */
  tokensPerSecond: number;
  /** Seconds of pretraining. */
  pretrainSeconds: number;
  /** Seconds of instruction tuning. */
  finetuneSeconds: number;
  /** Every stage in order with its seconds; their sum is the job's time. */
  stages: StageTime[];
  /** Sum of the stages. */
  totalSeconds: number;
  /** Why the plan departs from the rule, if it does (too small a budget, too little data). */
  notes: string[];
}

/**
 * The seconds a budget leaves for training after the other stages' `otherSeconds`.
 *
 * @throws when that is under a minute, saying what budget would do.
 */
export function checkTrainingTime(budgetSeconds: number, otherSeconds: number): number {
  const trainSeconds = budgetSeconds - otherSeconds;
  if (trainSeconds < 60) {
    throw new Error(
      `A budget of ${formatDuration(budgetSeconds)} leaves ${Math.round(trainSeconds)} s for ` +
        `training after the other stages (${Math.round(otherSeconds)} s); give at least ` +
        `${formatDuration(otherSeconds + 120)} (--budget).`,
    );
  }
  return trainSeconds;
}

/**
 * Plans the main job for a budget; see the module documentation.
 *
 * @throws when the budget does not leave a minute of training after the other stages.
 */
export function planBudget(options: BudgetPlanOptions): BudgetPlan {
  const {
    budgetSeconds,
    throughput,
    vocabSize,
    contextLength,
    dataTokens,
    finetuneShare = 0.15,
    tokensPerParameter: target = CHINCHILLA_TOKENS_PER_PARAMETER,
    maxEpochs = 4,
    maxMicroBatch = 8,
  } = options;
  const trained = new Set(["train_model", "finetune_instruct"]);
  for (const name of trained) {
    if (!options.stages.some((s) => s.stage === name)) {
      throw new Error(`The stages to plan must include ${name}.`);
    }
  }
  const otherSeconds = options.stages
    .filter((s) => !trained.has(s.stage))
    .reduce((sum, s) => sum + s.seconds, 0);
  const trainSeconds = checkTrainingTime(budgetSeconds, otherSeconds);
  const pretrainSeconds = trainSeconds * (1 - finetuneShare);
  const finetuneSeconds = trainSeconds - pretrainSeconds;

  const notes: string[] = [];
  const cap = maxEpochs * dataTokens;
  const shapes = options.shape
    ? [shapeConfig(options.shape, vocabSize, contextLength)]
    : candidateShapes(vocabSize, contextLength);
  // The attention term of the cost follows the run's mean sequence length.
  const meanLength = meanSequenceLength(contextLength, options.seqWarmup);
  const secondsPerToken = (c: GPT2Config) => throughput.secondsPerToken(c, meanLength);
  const tokensIn = (c: GPT2Config) => pretrainSeconds / secondsPerToken(c);
  const nonEmbedding = nonEmbeddingParameters;
  // The shape whose tokens per parameter come nearest the target (in ratio: IsoFLOP curves are
  // flat in log N near the optimum), or, when the data is the limit, the largest that can read
  // the whole capped corpus in the time. Along the list the ratio falls, and every shape's grows
  // with the budget, so both picks only move up the list as the budget grows.
  const distance = (c: GPT2Config) => Math.abs(Math.log(tokensIn(c) / (target * nonEmbedding(c))));
  let chosen = 0;
  shapes.forEach((shape, i) => {
    if (distance(shape) < distance(shapes[chosen])) chosen = i;
  });
  const computeOptimal = chosen;
  shapes.forEach((shape, i) => {
    if (tokensIn(shape) >= cap) chosen = Math.max(chosen, i);
  });
  const config = shapes[chosen];
  const parameters = gpt2ParameterCount(config).total;
  const blockParameters = nonEmbedding(config);
  const tokens = Math.floor(tokensIn(config));
  if (options.shape) {
    if (tokens < target * blockParameters / 2) {
      notes.push(
        `the pinned shape gets only ${(tokens / blockParameters).toFixed(1)} tokens per ` +
          "parameter in this budget; a smaller --shape, or no --shape, would learn more.",
      );
    }
  } else if (chosen === 0 && tokens < target * blockParameters / 2) {
    notes.push(
      `even the smallest model gets only ${(tokens / blockParameters).toFixed(1)} tokens per ` +
        "parameter in this budget; give more time (--budget) for a model that learns more.",
    );
  } else if (chosen > computeOptimal) {
    notes.push(
      `the data (${dataTokens.toLocaleString("en-US")} tokens) would be read over ${maxEpochs} ` +
        "times by the compute-optimal model, so a larger model trains on fewer tokens per " +
        "parameter; more text (--data) would let it train longer.",
    );
  }

  // About 1000 optimizer steps in all, in whole rows, as a power of two; steps below a few
  // hundred waste a short run on warmup, while a larger batch is what a GPU budget can afford.
  const rowsWanted = tokens / 1000 / contextLength;
  const rowsPerStep = 2 ** Math.max(0, Math.round(Math.log2(Math.max(1, rowsWanted))));
  const batchSize = Math.min(rowsPerStep, maxMicroBatch);
  const gradAccum = Math.max(1, rowsPerStep / batchSize);
  const tokensPerStep = batchSize * gradAccum * contextLength;
  const steps = Math.max(1, Math.round(tokens / tokensPerStep));

  const stages = options.stages.map((s) =>
    s.stage === "train_model"
      ? { stage: s.stage, seconds: pretrainSeconds }
      : s.stage === "finetune_instruct"
      ? { stage: s.stage, seconds: finetuneSeconds }
      : { ...s }
  );
  return {
    config,
    parameters,
    tokens,
    nonEmbeddingParameters: blockParameters,
    tokensPerParameter: tokens / blockParameters,
    epochs: tokens / dataTokens,
    tokensPerStep,
    batchSize,
    gradAccum,
    steps,
    tokensPerSecond: 1 / secondsPerToken(config),
    pretrainSeconds,
    finetuneSeconds,
    stages,
    totalSeconds: stages.reduce((sum, s) => sum + s.seconds, 0),
    notes,
  };
}

/** `90s`, `30m`, `2h`, `1h30m` → seconds. */
export function parseDuration(text: string): number {
  const match = /^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$/i
    .exec(text);
  const seconds = match && (match[1] || match[2] || match[3])
    ? Number(match[1] ?? 0) * 3600 + Number(match[2] ?? 0) * 60 + Number(match[3] ?? 0)
    : NaN;
  if (!(seconds > 0)) {
    throw new Error(
      `A duration is a number with a unit, like 90s, 30m, 2h or 1h30m; got "${text}".`,
    );
  }
  return seconds;
}

/** Seconds as `1h05m`, `12m30s` or `45s`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m${String(rest).padStart(2, "0")}s`;
  return `${rest}s`;
}

/** The plan as the lines the main job prints before it starts. */
export function formatPlan(plan: BudgetPlan, budgetSeconds: number): string {
  const { config: c } = plan;
  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  return [
    `model:        n_layer=${c.nLayer} n_head=${c.nHead} n_embd=${c.nEmbd} ` +
    `vocab=${c.vocabSize} context=${c.contextLength}: ${(plan.parameters / 1e6).toFixed(2)}M ` +
    `parameters (${(plan.nonEmbeddingParameters / 1e6).toFixed(2)}M outside the embeddings)`,
    `pretraining:  ${n(plan.tokens)} tokens (${plan.tokensPerParameter.toFixed(1)} per ` +
    `non-embedding parameter, ${plan.epochs.toFixed(2)} epochs) in ${n(plan.steps)} steps of ` +
    `${n(plan.tokensPerStep)} tokens (${plan.batchSize} rows x ${plan.gradAccum} accumulated), ` +
    `~${n(plan.tokensPerSecond)} tokens/s`,
    "stages:",
    ...plan.stages.map((s) => `  ${s.stage.padEnd(26)} ${formatDuration(s.seconds).padStart(7)}`),
    `  ${"total".padEnd(26)} ${formatDuration(plan.totalSeconds).padStart(7)} ` +
    `(budget ${formatDuration(budgetSeconds)})`,
    ...plan.notes.map((note) => `note: ${note}`),
  ].join("\n");
}

/**
 * What the bundled recipe's models wrote in measured main-job runs (`deno task eval`,
 * docs/recipe.md) planned at about as many pretraining tokens as `tokens`, so that a user knows
 * what a budget buys before spending it: runs planned at about 5M tokens (30 minutes on the
 * 2-core development machine) gave completions whose sentences parse 68-81% of the time and
 * answers on topic 0-35% of the time; one planned at 12M (90 minutes; 15M trained) gave 80% and
 * 50%. Beyond the runs measured it says so.
 */
export function expectedQuality(tokens: number): string {
  const planned = `this plan trains ${(tokens / 1e6).toFixed(1)}M tokens`;
  if (tokens < 10e6) {
    return `${planned}; measured runs of the bundled recipe planned at about 5M tokens (30 ` +
      "minutes on a 2-core CPU) wrote sentences that parse 68-81% of the time and answered on " +
      "topic 0-35% of the time; one planned at 12M (90 minutes) gave 80% and 50% " +
      "(docs/recipe.md).";
  }
  if (tokens < 25e6) {
    return `${planned}; a measured run of the bundled recipe planned at 12M tokens (90 minutes ` +
      "on a 2-core CPU) wrote sentences that parse 80% of the time and answered on topic 50% " +
      "of the time (docs/recipe.md).";
  }
  return `${planned}, beyond the runs measured (at most 12M planned: sentences that parse 80% ` +
    "of the time, answers on topic 50%; docs/recipe.md).";
}
