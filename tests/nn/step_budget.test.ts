import assert from "node:assert/strict";
import type { Gpu } from "../../kernels/device.ts";
import type { MicroBatch } from "../../nn/batch.ts";
import { checkedStep } from "../../nn/checked_step.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { AdamW, GPT_ADAMW } from "../../nn/optimizer.ts";
import { Random } from "../../nn/random.ts";
import { countDispatches, testGpu } from "../_gpu.ts";

/**
 * What one checked training step of the tiny model below costs the GPU, measured before the
 * training step was moved behind `GPT2.loss` (nn/batch.ts) and the GPT-2 block into two residual
 * lines: the refactor added no dispatch, allocation, queue write or readback (nor did moving the
 * GELU backward into `linearBackward`'s `gelu` option: the same in-place kernel). Kernels shaped for
 * a CPU adapter pack more matmul operands (lavapipe's numbers; the 64 KiB binding limit of
 * `deno task test` splits nothing this small). A change that moves these numbers should say why:
 * the divergence check on the GPU (`kernels/finite_check.ts`, so that the update need not wait for
 * the loss's readback) added one dispatch and its uniform; the GPU layout's bias gradient in two
 * passes (rows in blocks, then the blocks' sums: kernels/bias_grad.ts) adds, for each of the 16
 * bias gradients, one dispatch and two allocations (its partials and the second uniform); the
 * embedding backward adding the position rows in its token launch (kernels/embedding.ts) saves
 * one dispatch and its uniform per micro-batch; on a CPU adapter the layernorm backward's block
 * kernel writes its parameter partial sums itself (kernels/layernorm.ts), which saves, for each
 * of the 10 layernorm backwards, one dispatch and its uniform; the parameters in one flat buffer
 * (nn/arena.ts) let AdamW update all 28 in one launch instead of two (16 tensors a launch), which
 * saves one dispatch and its uniform. The 12 queue writes (the batches' ids, targets and masks,
 * and the embedding backward's token groups) all go to buffers just acquired, so they are
 * `writeNew`, which does not flush the commands recorded before it, where `write` would: the
 * embedding backward's upload in the middle of the backward no longer splits the step's batch.
 * The residual add's backward passes its output's gradient buffer on to both inputs
 * (`Tape.passGrad`) instead of adding it into two new ones: for each of the 8 adds, one dispatch
 * and three allocations fewer (its uniform, the two gradients). Each add's forward then went
 * into the launch of the layernorm after it (`residualLayernorm`): one dispatch and its uniform
 * fewer for each of the 8. The head permutes around attention copy q, k and v (or their
 * gradients) in one launch instead of three (kernels/attention_layout.ts): for each of the 4
 * attentions, 4 dispatches and their uniforms fewer.
 */
const BUDGET = {
  cpuShapes: { dispatches: 259, acquire: 414, write: 0, writeNew: 12, read: 2 },
  gpuShapes: { dispatches: 257, acquire: 428, write: 0, writeNew: 12, read: 2 },
};

/** `rows` rows of 8 random ids and targets; every third target on average is masked out. */
function batchOf(random: Random, rows: number): MicroBatch {
  const T = 8, inputs = new Int32Array(rows * T), targets = new Int32Array(rows * T);
  const mask = new Uint32Array(rows * T);
  for (let i = 0; i < rows * T; i++) {
    inputs[i] = random.int(50);
    targets[i] = random.int(50);
    mask[i] = random.int(3) === 0 ? 0 : 1;
  }
  return { inputs, targets, mask, batch: rows, time: T };
}

/** Counts the calls of `gpu`'s allocation, write and readback methods while `work` runs. */
async function countCalls(gpu: Gpu, work: () => Promise<void>) {
  const calls = { acquire: 0, write: 0, writeNew: 0, read: 0 };
  const methods = gpu as unknown as Record<keyof typeof calls, (...args: unknown[]) => unknown>;
  const originals = { ...calls } as unknown as typeof methods;
  for (const name of Object.keys(calls) as (keyof typeof calls)[]) {
    originals[name] = methods[name];
    methods[name] = function (this: unknown, ...args: unknown[]) {
      calls[name]++;
      return originals[name].apply(this, args);
    };
  }
  try {
    await work();
  } finally {
    for (const name of Object.keys(calls) as (keyof typeof calls)[]) delete methods[name];
  }
  return calls;
}

Deno.test("a training step of a tiny GPT-2 makes the dispatches, allocations and readbacks it always made", async () => {
  const gpu = await testGpu();
  const model = GPT2.init(
    gpu,
    { vocabSize: 50, contextLength: 8, nLayer: 2, nHead: 2, nEmbd: 16 },
    3,
  );
  const optimizer = new AdamW(gpu, model.params, model.decayed, GPT_ADAMW);
  const random = new Random(5);
  // Two uneven micro-batches (2 rows and 3): accumulation is part of the step.
  const step = () => checkedStep(model, optimizer, [batchOf(random, 2), batchOf(random, 3)], 1e-3);
  try {
    await step(); // the first step also allocates the optimizer's moments
    let dispatches = new Map<string, number>();
    const calls = await countCalls(gpu, async () => {
      dispatches = await countDispatches(gpu, async () => void await step());
    });
    const total = [...dispatches.values()].reduce((a, b) => a + b, 0);
    const expected = gpu.adapter.isCpu ? BUDGET.cpuShapes : BUDGET.gpuShapes;
    assert.deepEqual(
      { dispatches: total, ...calls },
      expected,
      `dispatches by kernel: ${JSON.stringify(Object.fromEntries([...dispatches].sort()))}`,
    );
  } finally {
    optimizer.dispose();
    model.dispose();
  }
});
