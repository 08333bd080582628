import assert from "node:assert/strict";
import { accumulateGradients, type MicroBatch } from "../../nn/accumulated_step.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { Random } from "../../nn/random.ts";
import { testGpu } from "../_gpu.ts";

/** `rows` rows of 8 random ids and their shifted targets; the mask drops every third target. */
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

/** Rows `[first, first + count)` of a batch. */
function rowsOf(batch: MicroBatch, first: number, count: number): MicroBatch {
  const T = batch.time,
    part = (a: Int32Array | Uint32Array) => a.slice(first * T, (first + count) * T);
  return {
    inputs: part(batch.inputs) as Int32Array,
    targets: part(batch.targets) as Int32Array,
    mask: part(batch.mask!) as Uint32Array,
    batch: count,
    time: T,
  };
}

Deno.test("accumulateGradients() over micro-batches gives the gradient of the whole batch", async () => {
  const gpu = await testGpu();
  const model = GPT2.init(
    gpu,
    { vocabSize: 50, contextLength: 8, nLayer: 1, nHead: 2, nEmbd: 16 },
    3,
  );
  try {
    const whole = batchOf(new Random(5), 5);
    const gradients = async (batches: MicroBatch[]) => {
      const { counted, readLosses } = await accumulateGradients(model, batches);
      const losses = await readLosses();
      const grads = new Map<string, Float32Array>();
      for (const [name, param] of model.params) grads.set(name, await param.readGrad());
      model.zeroGrad();
      return { counted, loss: losses.reduce((s, l) => s + l, 0) / counted, grads };
    };
    const one = await gradients([whole]);
    // Uneven micro-batches (2 rows and 3), whose counted positions differ.
    const split = await gradients([rowsOf(whole, 0, 2), rowsOf(whole, 2, 3)]);
    assert.equal(split.counted, one.counted);
    assert.ok(Math.abs(split.loss - one.loss) < 1e-6);
    for (const [name, expected] of one.grads) {
      const actual = split.grads.get(name)!;
      const scale = expected.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      const worst = expected.reduce((m, x, i) => Math.max(m, Math.abs(x - actual[i])), 0);
      assert.ok(
        worst <= 1e-5 * Math.max(1, scale * 100),
        `${name}: off by ${worst} (max ${scale})`,
      );
    }
  } finally {
    model.dispose();
  }
});
