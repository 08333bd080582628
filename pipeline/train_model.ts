/**
 * Stage 5 of the pipeline: pretrain a GPT-2 on a tokenized dataset, on WebGPU. AdamW with
 * GPT-3's settings, linear warmup then a cosine decay (or warmup-stable-decay), gradient clipping
 * at norm 1; optionally gradient accumulation over micro-batches, a sequence-length warmup and a
 * time limit. A checkpoint every `--checkpoint-every` steps and at the end, written atomically; a
 * run resumes from its checkpoint when started again with the same `--out`; the same seed gives
 * the same run. The run folder is locked while a run uses it (`run.lock`); the checkpoint before
 * the last stays as `checkpoint.prev.safetensors`; a NaN or infinite loss, gradient norm or
 * validation loss stops the run before that step is applied or saved. Ctrl-C saves a checkpoint
 * after the current step and exits with status 130.
 *
 *     deno task train-model --data data/tokenized --out runs/small --layers 4 --heads 4 \
 *       --embd 128 --batch-size 8 --steps 2000
 *
 * @module
 */

import { acquireGpu, type Gpu } from "../kernels/device.ts";
import { type GPT2Config, gpt2ParameterCount, validateConfig } from "../nn/config.ts";
import {
  loadCheckpoint,
  NonFiniteCheckpointError,
  readCheckpoint,
  saveCheckpoint,
} from "../nn/checkpoint.ts";
import { GPT2, growVocabulary } from "../nn/gpt2.ts";
import { realPathOrNull, writeAll, writeTextFileAtomic } from "../util/files.ts";
import { acquireRunLock } from "../util/run_lock.ts";
import { AdamW, GPT_ADAMW } from "../nn/optimizer.ts";
import { MuonAdamW, type OptimizerKind } from "../nn/muon_adamw.ts";
import type { AccumulatedStepResult } from "../nn/accumulated_step.ts";
import { NonFiniteStepError, recordCheckedStep } from "../nn/checked_step.ts";
import {
  DEFAULT_DECAY_FRACTION,
  DEFAULT_SCHEDULE,
  learningRate,
  type ScheduleKind,
  sequenceLength,
  sequenceStages,
  type SequenceWarmup,
  stepsThatFit,
} from "../nn/schedule.ts";
import {
  batchOfRows,
  BatchSampler,
  concatBatches,
  cutSequences,
  rowsOfBatch,
  type SamplerState,
  splitRows,
} from "./batches.ts";
import { loadTokenizedDataset, type TokenizedDataset } from "./token_rows.ts";
import { validationLosses } from "./validation_loss.ts";
import { ProgressBar } from "./_progress.ts";
import { interruptSignal, runCli } from "../util/cli.ts";
import {
  fractionFlag,
  HELP_FLAG,
  intFlag,
  numberFlag,
  type OptionalFlag,
  parseFlags,
  type SwitchFlag,
  type ValueFlag,
} from "../util/flags.ts";

export type { OptionalFlag, SwitchFlag, ValueFlag } from "../util/flags.ts";

/** The defaults of {@linkcode trainModel}'s options, which its command line shows too. */
export const TRAIN_DEFAULTS = {
  /** Transformer blocks. */
  nLayer: 4,
  /** Attention heads. */
  nHead: 4,
  /** Residual width. */
  nEmbd: 128,
  /** Rows per micro-batch. */
  batchSize: 8,
  /** Micro-batches per optimizer step. */
  gradAccum: 1,
  /** Peak learning rate of pretraining. */
  lr: 1e-3,
  /** Steps between checkpoints. */
  checkpointEvery: 100,
  /** Share of the rows held out for validation. */
  valFraction: 0.05,
  /** Steps between validations. */
  evalEvery: 100,
  /** Batches of held-out rows per validation. */
  evalBatches: 4,
  /** Seed of the initialization and the batch order. */
  seed: 1337,
  /** AdamW on every parameter, or Muon on the blocks' matrices and AdamW on the rest. */
  optimizer: "adamw" as OptimizerKind,
  /** The learning-rate schedule's shape. */
  schedule: DEFAULT_SCHEDULE,
  /** The share of the steps a `wsd` schedule decays over. */
  decayFraction: DEFAULT_DECAY_FRACTION,
  /** The share of the steps a sequence-length warmup lasts when only its start is given. */
  seqWarmupFraction: 0.5,
  /** The share of each step's rows a final-phase mix takes when only its data is given. */
  mixShare: 0.1,
  /** The share of the steps after which a final-phase mix joins, when only its data is given. */
  mixFrom: 0.8,
} as const;

/** A second dataset joined to the last part of training; see {@linkcode TrainModelOptions}. */
export interface FinalMix {
  /** A tokenized dataset folder with rows of the main data's context length. */
  data: string;
  /** The share of each step's rows drawn from it (0 to 1, at least one row, not all). */
  share: number;
  /** The share of the steps after which it joins (0 to 1). */
  fromFraction: number;
}

/** Options of {@linkcode trainModel}. */
export interface TrainModelOptions {
  /** A tokenized dataset folder from tokenize_dataset. */
  data: string;
  /** The run folder: `checkpoint.safetensors` and `log.jsonl`. */
  out: string;
  /** Transformer blocks. Default 4. */
  nLayer?: number;
  /** Attention heads. Default 4. */
  nHead?: number;
  /** Residual width. Default 128. */
  nEmbd?: number;
  /** Rows per micro-batch (what the GPU holds at once). Default 8. */
  batchSize?: number;
  /**
   * Micro-batches per optimizer step, their gradients summed: a step learns from
   * `gradAccum · batchSize` rows, its loss the mean over all their counted positions, as one
   * batch of that many rows would. Default 1.
   */
  gradAccum?: number;
  /**
   * Optimizer steps in all (a resumed run continues to this; a `wsd` run that a time limit
   * shortens ends earlier).
   */
  steps: number;
  /** Peak learning rate. Default 1e-3. */
  lr?: number;
  /** Warmup steps. Default a tenth of the steps, at most 200. */
  warmupSteps?: number;
  /**
   * The learning rate after warmup: `cosine` decays to a tenth of the peak by the last step;
   * `wsd` stays at the peak, then decays linearly to about 0 over the last `decayFraction` of the
   * steps. Default `cosine`.
   */
  schedule?: ScheduleKind;
  /**
   * `adamw` (default) for every parameter, or `muon`: Muon for the blocks' matrices (Moonshot's
   * update scale, so it shares AdamW's learning rate) and AdamW for the rest.
   */
  optimizer?: OptimizerKind;
  /** The share of the steps a `wsd` schedule decays over. Default 0.2. */
  decayFraction?: number;
  /**
   * Train on shorter sequences first: rows are cut into sequences of `startLength` tokens (more
   * sequences per micro-batch, so the tokens per step stay the same), the length doubling in
   * stages up to the dataset's context, which is reached after `untilFraction` of the steps and
   * kept to the end. The model always has the full context. Default none.
   */
  seqWarmup?: SequenceWarmup;
  /**
   * Join rows of a second tokenized dataset to the last part of training, such as instruction
   * conversations in the last phase of pretraining: from `fromFraction` of the steps on, `share`
   * of each step's rows come from `data` (in its own shuffled order), the rest from the main
   * data. The model's vocabulary covers both datasets'. Validation reads the main data only.
   * Default none.
   */
  finalMix?: FinalMix;
  /**
   * Stop at the end of the step during which this many seconds have passed since the run
   * started (this run, not counting one it resumes), saving a checkpoint. With `schedule: "wsd"`
   * the decay starts early when the steps left would not fit, so the rate still ends decayed.
   */
  maxSeconds?: number;
  /** Save every this many steps (and at the end). Default 100. */
  checkpointEvery?: number;
  /** Share of the rows held out for validation (the last ones). Default 0.05; 0 for none. */
  valFraction?: number;
  /** Measure the validation loss every this many steps (and at the end). Default 100. */
  evalEvery?: number;
  /** Batches of held-out rows each validation reads. Default 4. */
  evalBatches?: number;
  /** Seed of the initialization and batch order. Default 1337. */
  seed?: number;
  /** Continue from `out/checkpoint.safetensors` when it exists. Default true. */
  resume?: boolean;
  /**
   * Start a new run from this checkpoint's weights (fine-tuning) instead of a fresh
   * initialization; its vocabulary grows to the data's when tokens were added.
   */
  initFrom?: string;
  /** No progress output. */
  quiet?: boolean;
  /** The GPU to use; acquired when absent. */
  gpu?: Gpu;
  /** Stops training after the current step, saving a checkpoint (Ctrl-C in the CLI). */
  signal?: AbortSignal;
  /** Called after every step. */
  onStep?: (record: StepLog) => void;
}

/** Why a training run ended. */
export type StopReason = "steps" | "time" | "signal";

/** What a training run did. */
export interface TrainResult {
  /** The trained model's shape. */
  config: GPT2Config;
  /** The model's parameter count (the output head is tied to `wte`, counted once). */
  parameters: number;
  /** Steps taken in all, including those before a resume. */
  steps: number;
  /** Mean training loss of each step this run took. */
  losses: number[];
  /** The last validation loss this run measured, if any. */
  valLoss?: number;
  /** The same validation's loss by bucket of 128 positions (see {@linkcode StepLog}). */
  valLossByPosition?: (number | null)[];
  /** Token positions trained on in all, including before a resume. */
  tokens: number;
  /** Wall-clock seconds this run took (not counting a run it resumed). */
  seconds: number;
  /** `steps` when the planned steps were done, `time` at the time limit, `signal` when stopped. */
  stopReason: StopReason;
  /** The step the learning-rate schedule ended at: `steps`, or fewer when a time limit cut it. */
  scheduleSteps: number;
  /** The path of the last checkpoint saved: `out/checkpoint.safetensors`. */
  checkpoint: string;
}

/** Per-step record appended to `log.jsonl`. */
export interface StepLog {
  /** Optimizer steps taken, counting this one: the first step is 1. */
  step: number;
  /** Mean cross-entropy over the step's counted positions, in nats. */
  loss: number;
  /** The learning rate this step used (after warmup and decay). */
  lr: number;
  /** The gradient's global L2 norm, before clipping. */
  gradNorm: number;
  /**
   * Wall-clock milliseconds since the step before ended (steps overlap: the next is recorded
   * while the GPU runs this one), batch preparation included.
   */
  ms: number;
  /** Token positions this step trained on (`gradAccum · batchSize · context`). */
  tokens: number;
  /** Token positions trained on up to and including this step, over resumes. */
  totalTokens: number;
  /** The sequence length of this step (below the context during a sequence-length warmup). */
  seqLength: number;
  /** Seconds since this run started (not counting a run it resumed), at the end of the step. */
  seconds: number;
  /** Mean loss on the held-out rows, on the steps that measured it. */
  valLoss?: number;
  /**
   * With `valLoss`: the mean held-out loss of positions 1–128, 129–256, ... of a row (fewer
   * buckets for a shorter context); null for a bucket with no counted position.
   */
  valLossByPosition?: (number | null)[];
}

/** What a checkpoint records besides weights and moments, to resume the same run. */
/** A training step recorded on the GPU, and what its log record needs. */
interface InFlightStep {
  /** Settles once the GPU has run the step (`nn/checked_step.ts`). */
  finished: Promise<AccumulatedStepResult>;
  lr: number;
  seqLength: number;
}

interface TrainingState {
  sampler: SamplerState;
  seed: number;
  batchSize: number;
  gradAccum: number;
  valFraction: number;
  seqWarmup?: SequenceWarmup;
  finalMix?: FinalMix;
  /** Where the final mix's sampler is, once it has joined. */
  mixSampler?: SamplerState;
  /** Set when a time limit moved the end of a `wsd` schedule earlier. */
  scheduleSteps?: number;
  /** Checkpoints from before Muon existed used AdamW. */
  optimizer?: OptimizerKind;
}

/** The flags that must match to resume, as the command line spells them. */
function runSignature(state: Partial<TrainingState>): string {
  const warmup = state.seqWarmup
    ? ` --seq-start ${state.seqWarmup.startLength} --seq-warmup ${state.seqWarmup.untilFraction}`
    : "";
  const mix = state.finalMix
    ? ` --mix-data ${state.finalMix.data} --mix-share ${state.finalMix.share} --mix-from ` +
      state.finalMix.fromFraction
    : "";
  return `--seed ${state.seed} --batch-size ${state.batchSize} --grad-accum ` +
    `${state.gradAccum ?? 1} --val-fraction ${state.valFraction}${warmup}${mix}` +
    (state.optimizer === "muon" ? " --optimizer muon" : "");
}

/**
 * Trains (or resumes training) a GPT-2 model; see the module documentation. The run folder is
 * locked while it runs (see `util/run_lock.ts`): a second run on the same `out` fails at once,
 * naming the first one's PID.
 *
 * @throws when a loss, gradient norm or validation loss is not finite: that step is not applied
 *   and nothing is saved after it, and the error says which value, at which step, and from
 *   which step to resume with a lower `--lr`.
 */
export async function trainModel(options: TrainModelOptions): Promise<TrainResult> {
  const runStarted = performance.now();
  const gpu = options.gpu ?? await acquireGpu();
  const dataset = await loadTokenizedDataset(options.data);
  const T = dataset.meta.contextLength;
  // Checked before anything is loaded: a warmup whose lengths do not divide the context throws.
  const stages = sequenceStages(options.steps, T, options.seqWarmup);
  if (options.seqWarmup && options.seqWarmup.startLength > T) {
    throw new Error(
      `--seq-start ${options.seqWarmup.startLength} is longer than the data's rows of ${T} ` +
        `tokens, so there would be no warmup; give a shorter start (such as ${
          Math.max(1, T / 8)
        }), or leave --seq-start out.`,
    );
  }
  const mix = options.finalMix ? await loadMix(options.finalMix, T) : null;
  await checkRunFolder(options, T, dataset.meta.vocabSize);
  await Deno.mkdir(options.out, { recursive: true });
  const lock = await acquireRunLock(options.out);
  try {
    return await trainInRunFolder(options, { runStarted, gpu, dataset, stages, mix });
  } finally {
    lock.release();
  }
}

/**
 * Refuses, before the run folder is made, an `out` that is a file or the dataset itself, and a
 * new model's shape that cannot be built (so a refused run leaves nothing behind).
 */
async function checkRunFolder(options: TrainModelOptions, T: number, vocabSize: number) {
  const existing = await Deno.stat(options.out).catch(() => null);
  if (existing && await realPathOrNull(options.out) === await realPathOrNull(options.data)) {
    throw new Error(
      `--out ${options.out} is the dataset the run reads (--data); a training run never writes ` +
        "into its input: pass another --out.",
    );
  }
  if (existing && !existing.isDirectory) {
    throw new Error(
      `--out ${options.out} is a file; a training run writes a folder (checkpoint, log). ` +
        "Pass another --out, or move the file away.",
    );
  }
  const resumes = existing !== null && (options.resume ?? true) &&
    await Deno.stat(`${options.out}/checkpoint.safetensors`).then(() => true, () => false);
  if (!resumes && !options.initFrom) {
    const D = TRAIN_DEFAULTS;
    validateConfig({
      vocabSize,
      contextLength: T,
      nLayer: options.nLayer ?? D.nLayer,
      nHead: options.nHead ?? D.nHead,
      nEmbd: options.nEmbd ?? D.nEmbd,
    });
  }
}

/** What {@linkcode trainModel} checked and loaded before it took the run folder. */
interface RunInputs {
  runStarted: number;
  gpu: Gpu;
  dataset: TokenizedDataset;
  stages: ReturnType<typeof sequenceStages>;
  mix: TokenizedDataset | null;
}

/** The training run itself, in a run folder this process holds the lock of. */
async function trainInRunFolder(
  options: TrainModelOptions,
  { runStarted, gpu, dataset, stages, mix }: RunInputs,
): Promise<TrainResult> {
  const secondsSinceStart = () => (performance.now() - runStarted) / 1000;
  const D = TRAIN_DEFAULTS;
  const seed = options.seed ?? D.seed;
  const batchSize = options.batchSize ?? D.batchSize;
  const gradAccum = options.gradAccum ?? D.gradAccum;
  const valFraction = options.valFraction ?? D.valFraction;
  const T = dataset.meta.contextLength;
  const vocabSize = Math.max(dataset.meta.vocabSize, mix?.meta.vocabSize ?? 0);
  const checkpoint = `${options.out}/checkpoint.safetensors`;
  const wanted: TrainingState = {
    sampler: { epoch: 0, position: 0 },
    seed,
    batchSize,
    gradAccum,
    valFraction,
    seqWarmup: options.seqWarmup,
    finalMix: options.finalMix,
    optimizer: options.optimizer ?? D.optimizer,
  };

  const resumable = (options.resume ?? true) &&
    (await Deno.stat(checkpoint).then(() => true, () => false));
  let model: GPT2, step = 0, samplerState: SamplerState | undefined;
  let mixState: SamplerState | undefined;
  let scheduleSteps = options.steps;
  let moments: Map<string, { data: Float32Array }> | null = null;
  if (resumable) {
    const loaded = await loadCheckpoint(gpu, checkpoint);
    model = loaded.model;
    step = loaded.step;
    moments = loaded.tensors;
    if (step > options.steps) {
      model.dispose();
      throw new Error(
        `${checkpoint} is at step ${step}, past --steps ${options.steps}; pass --steps above ` +
          `${step} to train on, or --fresh to start over.`,
      );
    }
    const saved = (loaded.training ?? {}) as Partial<TrainingState>;
    samplerState = saved.sampler;
    mixState = saved.mixSampler;
    scheduleSteps = saved.scheduleSteps ?? scheduleSteps;
    // Checkpoints from before gradient accumulation and the warmup existed ran without them.
    const was = { ...wanted, ...saved, gradAccum: saved.gradAccum ?? 1 };
    if (runSignature(was) !== runSignature(wanted)) {
      model.dispose();
      throw new Error(
        `${checkpoint} was trained with ${runSignature(was)}; pass the same to resume it, ` +
          "or --fresh to start over.",
      );
    }
    if (model.config.vocabSize < vocabSize) {
      model.dispose();
      throw new Error(
        `${checkpoint} has a vocabulary of ${model.config.vocabSize} but the data has ` +
          `${vocabSize}; use another --out to start a new run.`,
      );
    }
    if (model.config.contextLength < T) {
      model.dispose();
      refuseLongerRows(
        checkpoint,
        model.config.contextLength,
        T,
        "use another --out to start a new run",
      );
    }
    const asked = { nLayer: options.nLayer, nHead: options.nHead, nEmbd: options.nEmbd };
    for (const [key, value] of Object.entries(asked)) {
      if (value !== undefined && value !== model.config[key as keyof typeof asked]) {
        console.error(
          `note: resuming the checkpoint's model (${key}=${
            model.config[key as keyof typeof asked]
          }); ${key}=${value} is ignored. Use --fresh to start a new model.`,
        );
      }
    }
  } else if (options.initFrom) {
    model = await modelFrom(gpu, options.initFrom, T, vocabSize);
  } else {
    model = GPT2.init(gpu, {
      vocabSize,
      contextLength: T,
      nLayer: options.nLayer ?? D.nLayer,
      nHead: options.nHead ?? D.nHead,
      nEmbd: options.nEmbd ?? D.nEmbd,
    }, seed);
  }
  // A resumed run keeps the log up to its checkpoint (later steps are trained again); a new run
  // starts a new log.
  await truncateLog(`${options.out}/log.jsonl`, step);
  const optimizer = (options.optimizer ?? D.optimizer) === "muon"
    ? new MuonAdamW(gpu, model)
    : new AdamW(gpu, model.params, model.decayed, GPT_ADAMW);
  if (moments) optimizer.load(moments, step);
  moments = null; // the checkpoint's CPU copies are no longer needed
  const split = splitRows(dataset.meta.rows, valFraction, batchSize);
  // The sampler serves a whole step's rows, which the step splits into micro-batches: the rows
  // of a step are the same whatever the split, so accumulation changes no batch's contents.
  const sampler = new BatchSampler(dataset, batchSize * gradAccum, seed, samplerState, split.train);
  const tokensPerStep = gradAccum * batchSize * T;
  const mixRows = mix ? mixRowsPerStep(options.finalMix!.share, batchSize * gradAccum) : 0;
  const mixSampler = mix ? new BatchSampler(mix, mixRows, seed, mixState) : null;
  const mixFrom = Math.floor((options.finalMix?.fromFraction ?? 1) * options.steps);
  const schedule = {
    maxLr: options.lr ?? D.lr,
    warmupSteps: options.warmupSteps ?? Math.min(200, Math.ceil(options.steps / 10)),
    kind: options.schedule ?? D.schedule,
    decayFraction: options.decayFraction ?? D.decayFraction,
  };
  const parameters = gpt2ParameterCount(model.config).total;
  if (!options.quiet) {
    const { nLayer, nHead, nEmbd } = model.config;
    const accumulation = gradAccum > 1 ? ` x ${gradAccum} micro-batches` : "";
    const warmup = stages.length > 1
      ? `; sequence warmup ${stages.map((s) => `${s.length} from step ${s.firstStep}`).join(", ")}`
      : "";
    console.error(
      `model: ${(parameters / 1e6).toFixed(2)}M parameters (n_layer=${nLayer} n_head=${nHead} ` +
        `n_embd=${nEmbd}), batch ${batchSize}x${T} tokens${accumulation}${warmup}` +
        (resumable ? `, resuming at step ${step}` : ""),
    );
  }

  // The step of the last checkpoint in the folder, to resume from after a non-finite value.
  let lastSaved: number | null = resumable ? step : null;
  const save = () =>
    saveCheckpoint(checkpoint, model, {
      config: model.config,
      step,
      training: {
        ...wanted,
        sampler: sampler.state,
        ...(mixSampler ? { mixSampler: mixSampler.state } : {}),
        ...(scheduleSteps !== options.steps ? { scheduleSteps } : {}),
      },
    }, optimizer).then(() => {
      lastSaved = step;
    }, (error) => {
      if (!(error instanceof NonFiniteCheckpointError)) {
        // A full disk or a folder made read-only: the write went to a temporary file, so the
        // checkpoint already there is whole.
        const kept = lastSaved === null ? "" : ` The checkpoint of step ${lastSaved} is intact.`;
        throw new Error(
          `Could not save ${checkpoint} at step ${step}: ${(error as Error).message}.${kept} ` +
            "Free space or fix the folder's permissions, then run the same command to resume.",
        );
      }
      throw diverged(
        `value of ${error.tensor}`,
        error.value,
        step,
        ", so this step's checkpoint was not saved",
      );
    });
  const logPath = `${options.out}/log.jsonl`;
  const log = await Deno.open(logPath, { append: true, create: true });
  // A non-finite value stops the run: nothing after it is applied, logged or saved.
  const diverged = (which: string, value: number, atStep: number, detail = "") =>
    new Error(
      `The ${which} became ${value} at step ${atStep}${detail}. ` +
        (lastSaved === null
          ? `No checkpoint was saved yet: start again with a lower --lr (this run's peak was ` +
            `${schedule.maxLr}).`
          : `Lower --lr (this run's peak was ${schedule.maxLr}) and run again with the same ` +
            `--out to resume from step ${lastSaved}, the last checkpoint (${checkpoint}).`),
    );
  const progress = new ProgressBar("train", scheduleSteps, {
    unit: "steps",
    silent: options.quiet,
    start: step,
  });
  const losses: number[] = [];
  const evalEvery = options.evalEvery ?? D.evalEvery;
  const checkpointEvery = options.checkpointEvery ?? D.checkpointEvery;
  let lastVal: { loss: number; byPosition: (number | null)[] } | undefined;
  let stopReason: StopReason = "steps";
  // When recent steps ended (ms), to project how many more fit in the time left.
  const stepEnds: number[] = [];
  // With a time limit, a wsd schedule moves its end earlier (once) when the steps left would not
  // fit, so that its decay still runs to the end.
  const fitScheduleToTimeLimit = () => {
    if (
      options.maxSeconds === undefined || schedule.kind !== "wsd" ||
      scheduleSteps !== options.steps || step < schedule.warmupSteps || stepEnds.length < 5
    ) return;
    const fit = stepsThatFit({
      step,
      totalSteps: scheduleSteps,
      secondsLeft: options.maxSeconds - secondsSinceStart(),
      secondsPerStep: (stepEnds.at(-1)! - stepEnds[0]) / (stepEnds.length - 1) / 1000,
      decayFraction: schedule.decayFraction,
    });
    if (fit === null) return;
    scheduleSteps = fit;
    progress.update(step, scheduleSteps);
    if (!options.quiet) {
      console.error(`\nnote: decaying now to end at step ${fit} within --max-seconds`);
    }
  };
  const stepEnded = () => {
    stepEnds.push(performance.now());
    if (stepEnds.length > 21) stepEnds.shift();
  };
  // X, Y: the next step's rows (the main data's, and the final mix's once it joins), cut into
  // micro-batches of this step's sequence length.
  const nextBatches = () => {
    const seqLength = sequenceLength(recorded, options.steps, T, options.seqWarmup);
    const mixing = mixSampler !== null && recorded >= mixFrom;
    const rows = concatBatches([ // (gradAccum · batchSize, T)
      batchOfRows(dataset, sampler.nextRows(batchSize * gradAccum - (mixing ? mixRows : 0))),
      ...(mixing ? [batchOfRows(mix!, mixSampler.nextRows())] : []),
    ]);
    const microBatches = Array.from({ length: gradAccum }, (_, i) => {
      const batch = rowsOfBatch(rows, T, i * batchSize, batchSize);
      return cutSequences(batch, T, seqLength); // (batchSize · T/seqLength, seqLength)
    });
    return { microBatches, seqLength };
  };
  // Steps recorded on the GPU so far: one more than `step` while a step is in flight.
  let recorded = step;
  // Loss, backward, clip, update, zero_grad, recorded without waiting for the GPU; a NaN or
  // infinite loss or norm is not applied (the GPU skips the update).
  const recordStep = async (): Promise<InFlightStep> => {
    const { microBatches, seqLength } = nextBatches();
    const lr = learningRate(recorded, { ...schedule, totalSteps: scheduleSteps });
    const { finished } = await recordCheckedStep(model, optimizer, microBatches, lr);
    recorded++;
    return { finished, lr, seqLength };
  };
  // Waits for a recorded step and counts it.
  const finish = async ({ finished, lr, seqLength }: InFlightStep) => {
    const { loss, gradNorm } = await finished.catch((error) => {
      if (!(error instanceof NonFiniteStepError)) throw error;
      const detail = error.which === "loss"
        ? ", so that step was not applied"
        : ` (its loss was ${error.loss.toFixed(3)}), so that step was not applied`;
      throw diverged(error.which, error.value, step + 1, detail);
    });
    step++;
    return stepLog({ loss, gradNorm, lr, seqLength });
  };
  // When the last step ended, or when the GPU went idle after a validation or a checkpoint.
  let lastStepEnd = performance.now();
  const msSinceLastStep = () => {
    const now = performance.now(), ms = now - lastStepEnd;
    lastStepEnd = now;
    return ms;
  };
  const stepLog = (
    { loss, gradNorm, lr, seqLength }: Pick<StepLog, "loss" | "gradNorm" | "lr" | "seqLength">,
  ): StepLog => ({
    step,
    loss,
    lr,
    gradNorm,
    ms: msSinceLastStep(),
    tokens: tokensPerStep,
    totalTokens: step * tokensPerStep,
    seqLength,
    seconds: secondsSinceStart(),
  });
  // Whether the time limit has passed, and whether this is the run's last step.
  const endOf = (record: StepLog) => {
    const timeUp = options.maxSeconds !== undefined && record.seconds >= options.maxSeconds;
    return { timeUp, last: step >= scheduleSteps || timeUp };
  };
  // The held-out loss, into the step's record; a NaN or infinite one stops the run unsaved.
  const validate = async (record: StepLog) => {
    lastVal = await validationLosses(model, dataset, split.validation!, batchSize, {
      batches: options.evalBatches ?? D.evalBatches,
    });
    if (!Number.isFinite(lastVal.loss)) {
      throw diverged(
        "validation loss",
        lastVal.loss,
        step,
        ` (its training loss was ${record.loss.toFixed(3)}), so this step's weights are not saved`,
      );
    }
    record.valLoss = lastVal.loss;
    record.valLossByPosition = lastVal.byPosition;
  };
  // The step into the run's losses, log.jsonl, the progress bar and onStep.
  const report = async (record: StepLog) => {
    losses.push(record.loss);
    await writeAll(log, new TextEncoder().encode(JSON.stringify(record) + "\n")).catch(
      (error: Error) => {
        throw new Error(`Could not append to ${logPath}: ${error.message}.`);
      },
    );
    const val = lastVal === undefined ? "" : ` val ${lastVal.loss.toFixed(3)}`;
    progress.update(step, scheduleSteps, `loss ${record.loss.toFixed(3)}${val}`);
    options.onStep?.(record);
  };
  try {
    // The step in flight, recorded while the one before ran: the GPU never waits for the CPU to
    // prepare and encode a step, nor the CPU for a readback before encoding the next.
    let next: InFlightStep | null = null;
    let ending = false; // a stop was asked for while a step was in flight: it is the last
    while (step < scheduleSteps || next) {
      fitScheduleToTimeLimit();
      const current = next ?? await recordStep();
      next = null;
      // A step whose end reads or saves the weights (a validation, a checkpoint, the last step)
      // is finished before the next is recorded, which would change them.
      const n = step + 1;
      const readsWeights = ending || n >= scheduleSteps || n % checkpointEvery === 0 ||
        (split.validation !== undefined && n % evalEvery === 0);
      if (!readsWeights) next = await recordStep();
      const record = await finish(current);
      const { timeUp, last } = endOf(record);
      if (split.validation && !next && (step % evalEvery === 0 || last)) await validate(record);
      await report(record);
      const stopping = options.signal?.aborted ?? false; // read after onStep, which may abort
      if (next && (timeUp || stopping)) { // the step in flight ends the run, and is saved
        ending = true;
        stepEnded();
        continue;
      }
      if (step % checkpointEvery === 0 || last || stopping) await save();
      stopReason = stopping ? "signal" : timeUp && step < scheduleSteps ? "time" : "steps";
      if (stopReason !== "steps") break;
      stepEnded();
      if (!next) lastStepEnd = performance.now(); // the GPU waited for this step's end
    }
    progress.finish();
  } finally {
    log.close();
    optimizer.dispose();
    model.dispose();
  }
  return {
    config: model.config,
    parameters,
    steps: step,
    losses,
    valLoss: lastVal?.loss,
    valLossByPosition: lastVal?.byPosition,
    tokens: step * tokensPerStep,
    seconds: secondsSinceStart(),
    stopReason,
    scheduleSteps,
    checkpoint,
  };
}

/**
 * Starts a fine-tuning run from a checkpoint's weights (or a Hugging Face GPT-2 folder's), its
 * vocabulary grown to the data's.
 */
async function modelFrom(gpu: Gpu, path: string, T: number, dataVocab: number): Promise<GPT2> {
  const { config, tensors } = await readCheckpoint(path);
  if (T > config.contextLength) refuseLongerRows(path, config.contextLength, T);
  const vocabSize = Math.max(config.vocabSize, dataVocab);
  return GPT2.fromWeights(gpu, { ...config, vocabSize }, growVocabulary(tensors, vocabSize));
}

/**
 * Refuses data rows of `T` tokens for the model of `checkpoint`, whose context is shorter:
 * says how to tokenize the data, or `otherwise` what else to do.
 */
function refuseLongerRows(
  checkpoint: string,
  context: number,
  T: number,
  otherwise?: string,
): never {
  throw new Error(
    `${checkpoint} has a context of ${context} but the data's rows are ${T} tokens; tokenize ` +
      `with --context ${context} or less${otherwise ? `, or ${otherwise}` : ""}.`,
  );
}

/** Loads a final-phase mix's rows, which must have the main data's context length. */
async function loadMix(mix: FinalMix, T: number): Promise<TokenizedDataset> {
  const dataset = await loadTokenizedDataset(mix.data);
  if (dataset.meta.contextLength !== T) {
    throw new Error(
      `The mix ${mix.data} has rows of ${dataset.meta.contextLength} tokens but the data has ` +
        `${T}; tokenize it with --context ${T}.`,
    );
  }
  return dataset;
}

/** A mix's rows per step: its share of the step's rows, at least one, and not all of them. */
function mixRowsPerStep(share: number, rowsPerStep: number): number {
  if (rowsPerStep < 2 || !(share > 0 && share < 1)) {
    throw new RangeError(
      `A mix needs a share between 0 and 1 (got ${share}) of at least 2 rows per step ` +
        `(got ${rowsPerStep}).`,
    );
  }
  return Math.min(rowsPerStep - 1, Math.max(1, Math.round(share * rowsPerStep)));
}

/**
 * Keeps the records of steps up to `step`: those after the checkpoint are trained again. A torn
 * last line (a crash or a full disk in the middle of a write) is dropped with a warning; any
 * other line that is not JSON is an error naming the file and the line.
 */
async function truncateLog(path: string, step: number): Promise<void> {
  const text = await Deno.readTextFile(path).catch(() => null);
  if (text === null) return;
  const lines = text.split("\n");
  const kept: string[] = [];
  for (const [index, line] of lines.entries()) {
    if (!line) continue;
    let record: { step?: unknown };
    try {
      record = JSON.parse(line);
    } catch (error) {
      if (index === lines.length - 1) { // no newline after it: the write never finished
        console.error(`warning: dropped the torn last line of ${path} (a write cut short)`);
        continue;
      }
      throw new Error(
        `Line ${index + 1} of ${path} is not valid JSON (${(error as Error).message}); remove ` +
          "that line to resume, or pass --fresh to start over.",
      );
    }
    if (typeof record?.step === "number" && record.step <= step) kept.push(line);
  }
  await writeTextFileAtomic(path, kept.map((line) => line + "\n").join(""));
}

/** The mean of the last `n` losses, for a one-line summary of a run. */
export function meanOfLast(losses: readonly number[], n = 10): number {
  const last = losses.slice(-n);
  return last.reduce((s, l) => s + l, 0) / Math.max(1, last.length);
}

/** The names of {@linkcode runFlags} that take a value and have a default. */
export type RunValueFlag =
  | "batch-size"
  | "grad-accum"
  | "steps"
  | "lr"
  | "schedule"
  | "decay-fraction"
  | "optimizer"
  | "seq-warmup"
  | "mix-share"
  | "mix-from"
  | "checkpoint-every"
  | "val-fraction"
  | "seed";

/** The command-line flags every training command shares, with pretraining's defaults. */
export function runFlags(
  defaults: { steps: string; lr: string },
):
  & Record<RunValueFlag, ValueFlag>
  & Record<"seq-start" | "mix-data" | "max-seconds", OptionalFlag>
  & Record<"fresh" | "quiet" | "help", SwitchFlag> {
  const D = TRAIN_DEFAULTS;
  return {
    "batch-size": {
      type: "string",
      default: String(D.batchSize),
      help: "rows per micro-batch (what the GPU holds at once)",
    },
    "grad-accum": {
      type: "string",
      default: String(D.gradAccum),
      help: "micro-batches per optimizer step, their gradients summed",
    },
    steps: { type: "string", default: defaults.steps, help: "optimizer steps in all" },
    lr: { type: "string", default: defaults.lr, help: "peak learning rate" },
    schedule: {
      type: "string",
      default: D.schedule,
      help: "learning rate after warmup: cosine, or wsd (constant, then a linear decay)",
    },
    "decay-fraction": {
      type: "string",
      default: String(D.decayFraction),
      help: "share of the steps a wsd schedule decays over",
    },
    optimizer: {
      type: "string",
      default: D.optimizer,
      help: "adamw, or muon (Muon on the blocks' matrices, AdamW on the rest)",
    },
    "seq-start": {
      type: "string",
      help: "start on sequences of this many tokens, doubling up to the context (default off)",
    },
    "seq-warmup": {
      type: "string",
      default: String(D.seqWarmupFraction),
      help: "with --seq-start: share of the steps before the full context is reached",
    },
    "mix-data": {
      type: "string",
      help: "a tokenized dataset whose rows join the last phase of training (default none)",
    },
    "mix-share": {
      type: "string",
      default: String(D.mixShare),
      help: "with --mix-data: share of each step's rows drawn from it",
    },
    "mix-from": {
      type: "string",
      default: String(D.mixFrom),
      help: "with --mix-data: share of the steps after which it joins",
    },
    "max-seconds": {
      type: "string",
      help: "stop after the step during which this many seconds have passed (default none)",
    },
    "checkpoint-every": {
      type: "string",
      default: String(D.checkpointEvery),
      help: "steps between checkpoints and validations",
    },
    "val-fraction": {
      type: "string",
      default: String(D.valFraction),
      help: "share of the rows held out for validation (0 for none)",
    },
    seed: { type: "string", default: String(D.seed), help: "seed of the initialization and order" },
    fresh: { type: "boolean", default: false, help: "start over instead of resuming" },
    quiet: { type: "boolean", default: false, help: "no progress output" },
    ...HELP_FLAG,
  };
}

/** The options of {@linkcode trainModel} that {@linkcode runFlags} set. */
export function runOptions(values: {
  "batch-size": string;
  "grad-accum": string;
  steps: string;
  lr: string;
  schedule: string;
  "decay-fraction": string;
  optimizer: string;
  "seq-start"?: string;
  "seq-warmup": string;
  "mix-data"?: string;
  "mix-share": string;
  "mix-from": string;
  "max-seconds"?: string;
  "checkpoint-every": string;
  "val-fraction": string;
  seed: string;
  fresh: boolean;
  quiet: boolean;
}): Pick<
  TrainModelOptions,
  | "batchSize"
  | "gradAccum"
  | "steps"
  | "lr"
  | "schedule"
  | "optimizer"
  | "decayFraction"
  | "seqWarmup"
  | "finalMix"
  | "maxSeconds"
  | "checkpointEvery"
  | "evalEvery"
  | "valFraction"
  | "seed"
  | "resume"
  | "quiet"
> {
  const checkpointEvery = intFlag("checkpoint-every", values["checkpoint-every"]);
  if (values.schedule !== "cosine" && values.schedule !== "wsd") {
    throw new Error(`--schedule must be cosine or wsd, got "${values.schedule}".`);
  }
  if (values.optimizer !== "adamw" && values.optimizer !== "muon") {
    throw new Error(`--optimizer must be adamw or muon, got "${values.optimizer}".`);
  }
  const seqStart = values["seq-start"];
  const maxSeconds = values["max-seconds"], mixData = values["mix-data"];
  return {
    batchSize: intFlag("batch-size", values["batch-size"]),
    gradAccum: intFlag("grad-accum", values["grad-accum"]),
    steps: intFlag("steps", values.steps),
    lr: numberFlag("lr", values.lr),
    schedule: values.schedule,
    optimizer: values.optimizer,
    decayFraction: fractionFlag("decay-fraction", values["decay-fraction"]),
    seqWarmup: seqStart === undefined ? undefined : {
      startLength: intFlag("seq-start", seqStart),
      untilFraction: fractionFlag("seq-warmup", values["seq-warmup"]),
    },
    finalMix: mixData === undefined ? undefined : {
      data: mixData,
      share: fractionFlag("mix-share", values["mix-share"]),
      fromFraction: fractionFlag("mix-from", values["mix-from"]),
    },
    maxSeconds: maxSeconds === undefined ? undefined : numberFlag("max-seconds", maxSeconds),
    checkpointEvery,
    evalEvery: checkpointEvery,
    valFraction: fractionFlag("val-fraction", values["val-fraction"]),
    seed: intFlag("seed", values.seed, 0),
    resume: !values.fresh,
    quiet: values.quiet,
  };
}

/** This command's flags: the model's shape and {@linkcode runFlags}. */
function trainModelFlags() {
  const D = TRAIN_DEFAULTS;
  return {
    data: {
      type: "string",
      default: "data/tokenized",
      help: "a tokenized dataset folder (from tokenize)",
    },
    out: { type: "string", default: "runs/gpt2", help: "the run folder (checkpoint, log.jsonl)" },
    layers: { type: "string", default: String(D.nLayer), help: "transformer blocks" },
    heads: { type: "string", default: String(D.nHead), help: "attention heads" },
    embd: { type: "string", default: String(D.nEmbd), help: "residual width" },
    ...runFlags({ steps: "1000", lr: String(D.lr) }),
  } as const;
}

if (import.meta.main) {
  await runCli(async () => {
    const flags = trainModelFlags();
    const values = parseFlags("deno task train-model [options]", flags);
    if (!values) return;
    // Ctrl-C finishes the current step and saves a checkpoint; a second Ctrl-C quits at once.
    const signal = interruptSignal();
    const result = await trainModel({
      ...runOptions(values),
      signal,
      data: values.data,
      out: values.out,
      nLayer: intFlag("layers", values.layers),
      nHead: intFlag("heads", values.heads),
      nEmbd: intFlag("embd", values.embd),
    });
    if (signal.aborted) console.error("stopped; run the same command again to resume");
    if (result.stopReason === "time") {
      console.error("stopped at --max-seconds; run the same command again to continue");
    }
    console.log(
      result.losses.length === 0
        ? `nothing to train: ${result.checkpoint} is at step ${result.steps} of ` +
          `${result.scheduleSteps}; pass a larger --steps to train on`
        : `trained ${result.steps} steps; mean loss of the last 10: ` +
          `${meanOfLast(result.losses).toFixed(3)}; checkpoint ${result.checkpoint}`,
    );
  });
}
