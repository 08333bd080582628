/**
 * Stage 5 of the pipeline: pretrain a GPT-2 on a tokenized dataset, on WebGPU. AdamW with
 * GPT-3's settings, linear warmup then cosine decay, gradient clipping at norm 1; a checkpoint
 * every `--checkpoint-every` steps and at the end, written atomically; a run resumes from its
 * checkpoint when started again with the same `--out`; the same seed gives the same run.
 *
 *     deno task train-model --data data/tokenized --out runs/small --layers 4 --heads 4 \
 *       --embd 128 --batch-size 8 --steps 2000
 *
 * @module
 */

import { parseArgs } from "node:util";
import { acquireGpu, type Gpu } from "../kernels/device.ts";
import { countedPositions } from "../kernels/cross_entropy.ts";
import { type GPT2Config, gpt2ParameterCount } from "../nn/config.ts";
import { loadCheckpoint, saveCheckpoint } from "../nn/checkpoint.ts";
import { GPT2, growVocabulary } from "../nn/gpt2.ts";
import { readSafetensors } from "../nn/safetensors.ts";
import { writeTextFileAtomic } from "../util/files.ts";
import { AdamW, GPT_ADAMW } from "../nn/optimizer.ts";
import { learningRate } from "../nn/schedule.ts";
import { Tape } from "../nn/tape.ts";
import {
  batchOfRows,
  BatchSampler,
  type RowRange,
  type SamplerState,
  splitRows,
} from "./batches.ts";
import { loadTokenizedDataset, type TokenizedDataset } from "./token_rows.ts";
import { ProgressBar } from "./_progress.ts";
import { fractionFlag, interruptSignal, intFlag, numberFlag, runCli } from "./_cli.ts";

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
  /** Rows per step. Default 8. */
  batchSize?: number;
  /** Optimizer steps in all (a resumed run continues to this). */
  steps: number;
  /** Peak learning rate. Default 1e-3. */
  lr?: number;
  /** Warmup steps. Default a tenth of the steps, at most 200. */
  warmupSteps?: number;
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
  /** The path of the last checkpoint saved: `out/checkpoint.safetensors`. */
  checkpoint: string;
}

/** Per-step record appended to `log.jsonl`. */
export interface StepLog {
  /** Optimizer steps taken, counting this one: the first step is 1. */
  step: number;
  /** Mean cross-entropy over the batch's counted positions, in nats. */
  loss: number;
  /** The learning rate this step used (after warmup and decay). */
  lr: number;
  /** The gradient's global L2 norm, before clipping. */
  gradNorm: number;
  /** Wall-clock time of the step, in milliseconds, batch preparation and readback included. */
  ms: number;
  /** Mean loss on the held-out rows, on the steps that measured it. */
  valLoss?: number;
}

/** Trains (or resumes training) a GPT-2 model; see the module documentation. */
export async function trainModel(options: TrainModelOptions): Promise<TrainResult> {
  const gpu = options.gpu ?? await acquireGpu();
  const dataset = await loadTokenizedDataset(options.data);
  const seed = options.seed ?? 1337;
  const batchSize = options.batchSize ?? 8;
  const valFraction = options.valFraction ?? 0.05;
  const T = dataset.meta.contextLength;
  const checkpoint = `${options.out}/checkpoint.safetensors`;
  await Deno.mkdir(options.out, { recursive: true });

  const resumable = (options.resume ?? true) &&
    (await Deno.stat(checkpoint).then(() => true, () => false));
  let model: GPT2, step = 0, samplerState: SamplerState | undefined;
  let moments: Map<string, { data: Float32Array }> | null = null;
  if (resumable) {
    const loaded = await loadCheckpoint(gpu, checkpoint);
    model = loaded.model;
    step = loaded.step;
    moments = loaded.tensors;
    samplerState = loaded.training?.sampler as SamplerState | undefined;
    const saved = (loaded.training ?? {}) as {
      seed?: number;
      batchSize?: number;
      valFraction?: number;
    };
    if (
      (saved.seed ?? seed) !== seed || (saved.batchSize ?? batchSize) !== batchSize ||
      (saved.valFraction ?? valFraction) !== valFraction
    ) {
      model.dispose();
      throw new Error(
        `${checkpoint} was trained with --seed ${saved.seed} --batch-size ${saved.batchSize} ` +
          `--val-fraction ${saved.valFraction}; pass the same to resume it, or --fresh to start over.`,
      );
    }
    if (model.config.vocabSize < dataset.meta.vocabSize) {
      model.dispose();
      throw new Error(
        `${checkpoint} has a vocabulary of ${model.config.vocabSize} but the data has ` +
          `${dataset.meta.vocabSize}; use another --out to start a new run.`,
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
    model = await modelFrom(gpu, options.initFrom, T, dataset.meta.vocabSize);
  } else {
    model = GPT2.init(gpu, {
      vocabSize: dataset.meta.vocabSize,
      contextLength: T,
      nLayer: options.nLayer ?? 4,
      nHead: options.nHead ?? 4,
      nEmbd: options.nEmbd ?? 128,
    }, seed);
  }
  // A resumed run keeps the log up to its checkpoint (later steps are trained again); a new run
  // starts a new log.
  await truncateLog(`${options.out}/log.jsonl`, step);
  const optimizer = new AdamW(gpu, model.params, model.decayed, GPT_ADAMW);
  if (moments) optimizer.load(moments, step);
  moments = null; // the checkpoint's CPU copies are no longer needed
  const split = splitRows(dataset.meta.rows, valFraction, batchSize);
  const sampler = new BatchSampler(dataset, batchSize, seed, samplerState, split.train);
  const schedule = {
    maxLr: options.lr ?? 1e-3,
    warmupSteps: options.warmupSteps ?? Math.min(200, Math.ceil(options.steps / 10)),
    totalSteps: options.steps,
  };
  const parameters = gpt2ParameterCount(model.config).total;
  if (!options.quiet) {
    const { nLayer, nHead, nEmbd } = model.config;
    console.error(
      `model: ${(parameters / 1e6).toFixed(2)}M parameters (n_layer=${nLayer} n_head=${nHead} ` +
        `n_embd=${nEmbd}), batch ${batchSize}x${T} tokens` +
        (resumable ? `, resuming at step ${step}` : ""),
    );
  }

  const save = () =>
    saveCheckpoint(checkpoint, model, {
      config: model.config,
      step,
      training: { sampler: sampler.state, seed, batchSize, valFraction },
    }, optimizer);
  const log = await Deno.open(`${options.out}/log.jsonl`, { append: true, create: true });
  const progress = new ProgressBar("train", options.steps, {
    unit: "steps",
    silent: options.quiet,
    start: step,
  });
  const losses: number[] = [];
  const evalEvery = options.evalEvery ?? 100;
  let lastValLoss: number | undefined;
  try {
    while (step < options.steps) {
      const started = performance.now();
      const batch = sampler.next();
      const tape = new Tape(gpu);
      const buffers = [
        gpu.upload(batch.inputs),
        gpu.upload(batch.targets),
        gpu.upload(batch.mask),
      ];
      const lr = learningRate(step, schedule);
      let loss: number, gradNorm: number;
      try {
        const counted = countedPositions(batch.targets, batch.mask);
        const lossPerPosition = await model.loss(
          tape,
          { ids: batch.inputs, buffer: buffers[0], batch: batchSize, time: T },
          { targets: buffers[1], mask: buffers[2], counted },
        );
        await tape.backward(lossPerPosition);
        const readNorm = await optimizer.step(lr);
        const perPosition = await lossPerPosition.read();
        loss = perPosition.reduce((s, l) => s + l, 0) / Math.max(1, counted);
        gradNorm = await readNorm();
      } finally {
        model.zeroGrad();
        tape.dispose();
        for (const buffer of buffers) gpu.release(buffer);
      }
      if (!Number.isFinite(loss)) {
        throw new Error(
          `The loss became ${loss} at step ${step + 1}; lower --lr and resume from the last ` +
            "checkpoint.",
        );
      }
      step++;
      losses.push(loss);
      const record: StepLog = { step, loss, lr, gradNorm, ms: performance.now() - started };
      if (split.validation && (step % evalEvery === 0 || step === options.steps)) {
        record.valLoss = await validationLoss(model, dataset, split.validation, batchSize, {
          batches: options.evalBatches ?? 4,
        });
        lastValLoss = record.valLoss;
      }
      await log.write(new TextEncoder().encode(JSON.stringify(record) + "\n"));
      const val = lastValLoss === undefined ? "" : ` val ${lastValLoss.toFixed(3)}`;
      progress.update(step, options.steps, `loss ${loss.toFixed(3)}${val}`);
      options.onStep?.(record);
      const stopping = options.signal?.aborted ?? false;
      if (step % (options.checkpointEvery ?? 100) === 0 || step === options.steps || stopping) {
        await save();
      }
      if (stopping) break;
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
    valLoss: lastValLoss,
    checkpoint,
  };
}

/**
 * The mean loss per counted position over the first `batches` batches of `rows` (in order, so
 * every measurement reads the same tokens), without gradients.
 */
export async function validationLoss(
  model: GPT2,
  dataset: TokenizedDataset,
  rows: RowRange,
  batchSize: number,
  { batches = 4 } = {},
): Promise<number> {
  const gpu = model.gpu, T = dataset.meta.contextLength;
  let total = 0, counted = 0;
  for (let b = 0; b < batches && (b + 1) * batchSize <= rows.count; b++) {
    const ids = Array.from({ length: batchSize }, (_, i) => rows.first + b * batchSize + i);
    const batch = batchOfRows(dataset, ids);
    const tape = new Tape(gpu);
    const buffers = [batch.inputs, batch.targets, batch.mask].map((a) => gpu.upload(a));
    try {
      const n = countedPositions(batch.targets, batch.mask);
      const losses = await model.loss(
        tape,
        { ids: batch.inputs, buffer: buffers[0], batch: batchSize, time: T },
        { targets: buffers[1], mask: buffers[2], counted: n },
        { withGrad: false },
      );
      total += (await losses.read()).reduce((s, l) => s + l, 0);
      counted += n;
    } finally {
      tape.dispose();
      for (const buffer of buffers) gpu.release(buffer);
    }
  }
  return total / Math.max(1, counted);
}

/** Starts a fine-tuning run from a checkpoint's weights, its vocabulary grown to the data's. */
async function modelFrom(gpu: Gpu, path: string, T: number, dataVocab: number): Promise<GPT2> {
  const pretrained = await readSafetensors(path);
  const config = JSON.parse(pretrained.metadata.config ?? "null") as GPT2Config | null;
  if (!config) throw new Error(`${path} is not a checkpoint written by train_model.`);
  if (T > config.contextLength) {
    throw new Error(
      `The data's rows of ${T} tokens are longer than the model's context of ` +
        `${config.contextLength}; tokenize with --context ${config.contextLength} or less.`,
    );
  }
  const vocabSize = Math.max(config.vocabSize, dataVocab);
  return GPT2.fromWeights(
    gpu,
    { ...config, vocabSize },
    growVocabulary(pretrained.tensors, vocabSize),
  );
}

/** Keeps the records of steps up to `step`: those after the checkpoint are trained again. */
async function truncateLog(path: string, step: number): Promise<void> {
  const text = await Deno.readTextFile(path).catch(() => null);
  if (text === null) return;
  const kept = text.split("\n").filter((line) => line && JSON.parse(line).step <= step);
  await writeTextFileAtomic(path, kept.map((line) => line + "\n").join(""));
}

/** The mean of the last `n` losses, for a one-line summary of a run. */
export function meanOfLast(losses: readonly number[], n = 10): number {
  const last = losses.slice(-n);
  return last.reduce((s, l) => s + l, 0) / Math.max(1, last.length);
}

/** The command-line flags every training command shares, with pretraining's defaults. */
export function runFlags(
  defaults: { steps: string; lr: string },
):
  & Record<
    "batch-size" | "steps" | "lr" | "checkpoint-every" | "val-fraction" | "seed",
    { type: "string"; default: string }
  >
  & Record<"fresh" | "quiet", { type: "boolean"; default: boolean }> {
  return {
    "batch-size": { type: "string", default: "8" },
    steps: { type: "string", default: defaults.steps },
    lr: { type: "string", default: defaults.lr },
    "checkpoint-every": { type: "string", default: "100" },
    "val-fraction": { type: "string", default: "0.05" },
    seed: { type: "string", default: "1337" },
    fresh: { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
  } as const;
}

/** The options of {@linkcode trainModel} that {@linkcode runFlags} set. */
export function runOptions(values: {
  "batch-size": string;
  steps: string;
  lr: string;
  "checkpoint-every": string;
  "val-fraction": string;
  seed: string;
  fresh: boolean;
  quiet: boolean;
}): Pick<
  TrainModelOptions,
  | "batchSize"
  | "steps"
  | "lr"
  | "checkpointEvery"
  | "evalEvery"
  | "valFraction"
  | "seed"
  | "resume"
  | "quiet"
> {
  const checkpointEvery = intFlag("checkpoint-every", values["checkpoint-every"]);
  return {
    batchSize: intFlag("batch-size", values["batch-size"]),
    steps: intFlag("steps", values.steps),
    lr: numberFlag("lr", values.lr),
    checkpointEvery,
    evalEvery: checkpointEvery,
    valFraction: fractionFlag("val-fraction", values["val-fraction"]),
    seed: intFlag("seed", values.seed, 0),
    resume: !values.fresh,
    quiet: values.quiet,
  };
}

if (import.meta.main) {
  await runCli(async () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        data: { type: "string", default: "data/tokenized" },
        out: { type: "string", default: "runs/gpt2" },
        layers: { type: "string", default: "4" },
        heads: { type: "string", default: "4" },
        embd: { type: "string", default: "128" },
        ...runFlags({ steps: "1000", lr: "1e-3" }),
      },
    });
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
    console.log(
      `trained ${result.steps} steps; mean loss of the last 10: ` +
        `${meanOfLast(result.losses).toFixed(3)}; checkpoint ${result.checkpoint}`,
    );
  });
}
