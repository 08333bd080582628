/**
 * A short probe of training throughput: a few optimizer steps of a model shape on random token
 * ids (seeded), timed after a warmup step that compiles the kernels and fills the buffer pool.
 * The budget planner runs it for each candidate shape on the adapter at hand; the steps are the
 * trainer's own ({@linkcode recordCheckedStep}, each recorded while the one before runs), so what
 * is measured is what training will do.
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import type { MicroBatch } from "../nn/accumulated_step.ts";
import { recordCheckedStep, type RecordedStep } from "../nn/checked_step.ts";
import type { GPT2Config } from "../nn/config.ts";
import { GPT2 } from "../nn/gpt2.ts";
import { AdamW, GPT_ADAMW } from "../nn/optimizer.ts";
import { Random } from "../nn/random.ts";
import { MuonAdamW, type OptimizerKind } from "../nn/muon_adamw.ts";

/** Settings of {@linkcode measureTrainThroughput}. */
export interface ThroughputProbeOptions {
  /** Rows of `config.contextLength` tokens per micro-batch. */
  batchSize: number;
  /** Timed steps, after the untimed warmup step. Default 3. */
  steps?: number;
  /** Micro-batches per step. Default 1. */
  gradAccum?: number;
  /**
   * Tokens per sequence, for a stage of a sequence-length warmup: each row is cut into
   * sequences of this length (it must divide the context). Default the context.
   */
  seqLength?: number;
  /** Seed of the weights and the token ids. Default 1. */
  seed?: number;
  /** The optimizer the steps use. Default `adamw`. */
  optimizer?: OptimizerKind;
}

/** What {@linkcode measureTrainThroughput} measured. */
export interface TrainThroughput {
  /** Token positions trained per second over the timed steps. */
  tokensPerSecond: number;
  /** Mean wall-clock milliseconds per timed step (readback of the loss included). */
  msPerStep: number;
  /** Token positions per step: `gradAccum · batchSize · contextLength`. */
  tokensPerStep: number;
  /** Milliseconds of the untimed first step (kernel compilation included). */
  warmupMs: number;
}

/**
 * Trains a fresh model of `config` for one warmup step and `steps` timed steps on random token
 * ids, and returns the throughput of the timed steps. The model and its optimizer are freed.
 */
export async function measureTrainThroughput(
  gpu: Gpu,
  config: GPT2Config,
  { batchSize, steps = 3, gradAccum = 1, seqLength, seed = 1, optimizer: kind = "adamw" }:
    ThroughputProbeOptions,
): Promise<TrainThroughput> {
  const T = config.contextLength, L = seqLength ?? T;
  if (T % L !== 0) {
    throw new RangeError(`A sequence length of ${L} does not divide the context of ${T}.`);
  }
  const random = new Random(seed);
  const microBatch = (): MicroBatch => {
    const ids = Int32Array.from(
      { length: batchSize * T + 1 },
      () => random.int(config.vocabSize),
    );
    return {
      inputs: ids.subarray(0, batchSize * T),
      targets: ids.slice(1),
      mask: new Uint32Array(batchSize * T).fill(1),
      batch: batchSize * T / L,
      time: L,
    };
  };
  const model = GPT2.init(gpu, config, seed);
  const optimizer = kind === "muon"
    ? new MuonAdamW(gpu, model)
    : new AdamW(gpu, model.params, model.decayed, GPT_ADAMW);
  try {
    const record = () =>
      recordCheckedStep(model, optimizer, Array.from({ length: gradAccum }, microBatch), 1e-4);
    const warmupStarted = performance.now();
    await (await record()).finished;
    const warmupMs = performance.now() - warmupStarted;
    const started = performance.now();
    let previous: RecordedStep | null = null;
    for (let i = 0; i < steps; i++) {
      const current = await record();
      await previous?.finished;
      previous = current;
    }
    await previous?.finished;
    const ms = performance.now() - started;
    const tokensPerStep = gradAccum * batchSize * T;
    return {
      tokensPerSecond: tokensPerStep * steps / (ms / 1000),
      msPerStep: ms / steps,
      tokensPerStep,
      warmupMs,
    };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}
