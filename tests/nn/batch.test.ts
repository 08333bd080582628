import assert from "node:assert/strict";
import {
  countedTargets,
  meanLoss,
  type MicroBatch,
  uploadBatch,
  uploadTokens,
} from "../../nn/batch.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { Random } from "../../nn/random.ts";
import { Tape } from "../../nn/tape.ts";
import { testGpu } from "../_gpu.ts";
import { gpt2LossCpu } from "./_gpt2_cpu.ts";

const config = { vocabSize: 13, contextLength: 8, nLayer: 1, nHead: 2, nEmbd: 8 };

/** 2 rows of 5 random ids and targets; the mask drops every fourth position. */
function batchOf(seed: number): MicroBatch & { mask: Uint32Array } {
  const random = new Random(seed), n = 10;
  return {
    inputs: Int32Array.from({ length: n }, () => random.int(config.vocabSize)),
    targets: Int32Array.from({ length: n }, () => random.int(config.vocabSize)),
    mask: Uint32Array.from({ length: n }, (_, i) => i % 4 === 3 ? 0 : 1),
    batch: 2,
    time: 5,
  };
}

/** The parameters of `model` in float64, for the CPU reference. */
async function paramsOf(model: GPT2): Promise<Map<string, Float64Array>> {
  const params = new Map<string, Float64Array>();
  for (const [name, tensor] of model.params) {
    params.set(name, Float64Array.from(await tensor.read()));
  }
  return params;
}

Deno.test("countedTargets() counts the targets that are not negative and not masked", () => {
  const batch = batchOf(1);
  batch.targets[0] = -1; // not masked, but negative: a pad
  batch.targets[3] = -1; // masked and negative: counted once as not counting
  assert.equal(countedTargets([batch]), 10 - 2 - 1);
  assert.equal(countedTargets([batch, { ...batch, mask: null }]), 7 + 8);
  assert.equal(countedTargets([]), 0);
});

Deno.test("meanLoss() averages over the counted positions, and is 0 when none counts", () => {
  assert.equal(meanLoss(Float32Array.of(1, 0, 2), 2), 1.5);
  assert.equal(meanLoss(new Float32Array(3), 0), 0);
});

Deno.test("uploadBatch() puts ids, targets and mask on the GPU with the positions that count", async () => {
  const gpu = await testGpu();
  const batch = batchOf(2), tape = new Tape(gpu);
  try {
    const { tokens, targets } = uploadBatch(tape, batch);
    assert.deepEqual([tokens.batch, tokens.time, tokens.ids], [2, 5, batch.inputs]);
    const read = async (buffer: GPUBuffer) => new Uint8Array(await gpu.read(buffer, 0, 40));
    assert.deepEqual(await read(tokens.buffer), new Uint8Array(batch.inputs.buffer));
    assert.deepEqual(await read(targets.targets), new Uint8Array(batch.targets.buffer));
    assert.deepEqual(await read(targets.mask!), new Uint8Array(batch.mask.buffer));
    assert.equal(targets.counted, 8);
    // A step of several micro-batches passes the count of all of them; no mask, no mask buffer.
    const all = uploadBatch(tape, { ...batch, mask: undefined }, 17).targets;
    assert.deepEqual([all.counted, all.mask], [17, null]);
  } finally {
    tape.dispose();
  }
});

Deno.test("uploadBatch() and uploadTokens() refuse arrays that do not match the batch's shape", async () => {
  const gpu = await testGpu();
  const batch = batchOf(3), tape = new Tape(gpu);
  try {
    assert.throws(
      () => uploadTokens(tape, batch.inputs, 3, 5),
      /A batch of 3×5 tokens needs 15 ids, got 10/,
    );
    assert.throws(
      () => uploadBatch(tape, { ...batch, targets: batch.targets.subarray(1) }),
      /targets \(9\) and mask \(10\) must have one entry per input \(10\)/,
    );
    assert.throws(
      () => uploadBatch(tape, { ...batch, mask: batch.mask.subarray(2) }),
      /targets \(10\) and mask \(8\)/,
    );
  } finally {
    tape.dispose();
  }
});

Deno.test("GPT2.loss() gives the masked mean loss of the CPU reference, with or without a gradient", async () => {
  const gpu = await testGpu();
  const model = GPT2.init(gpu, config, 4);
  const batch = batchOf(4);
  const expected = gpt2LossCpu(
    config,
    await paramsOf(model),
    batch.inputs,
    batch.targets,
    batch.mask,
    2,
    5,
  );
  try {
    for (const withGrad of [true, false]) {
      const tape = new Tape(gpu);
      try {
        const loss = await model.loss(tape, batch, { withGrad });
        assert.equal(loss.counted, 8);
        assert.deepEqual(loss.perPosition.shape, [10]);
        const perPosition = await loss.perPosition.read();
        assert.deepEqual([perPosition[3], perPosition[7]], [0, 0]); // masked out
        const mean = await loss.mean();
        assert.ok(Math.abs(mean - expected) < 1e-5, `GPU ${mean}, CPU ${expected}`);
        if (withGrad) {
          await tape.backward(loss.perPosition);
          const grad = await model.params.get("wte")!.readGrad();
          assert.ok(grad.some((g) => g !== 0), "the backward reached wte");
        } else {
          await assert.rejects(tape.backward(loss.perPosition), /computed without its gradient/);
        }
      } finally {
        tape.dispose();
        model.zeroGrad();
      }
    }
  } finally {
    model.dispose();
  }
});

Deno.test("GPT2.loss() with a step's count scales the mean by it, and counts every position without a mask", async () => {
  const gpu = await testGpu();
  const model = GPT2.init(gpu, config, 5);
  const batch = batchOf(5);
  const tape = new Tape(gpu);
  try {
    const own = await model.loss(tape, batch, { withGrad: false });
    const step = await model.loss(tape, batch, { counted: 16, withGrad: false });
    assert.equal(step.counted, 16);
    assert.ok(Math.abs(await step.mean() - (await own.mean()) / 2) < 1e-6);
    const unmasked = await model.loss(tape, { ...batch, mask: null }, { withGrad: false });
    assert.equal(unmasked.counted, 10);
    assert.ok((await unmasked.perPosition.read()).every((l) => l > 0));
  } finally {
    tape.dispose();
    model.dispose();
  }
});
