import assert from "node:assert/strict";
import { bufferOf, byteOffsetOf, type Gpu } from "../../kernels/device.ts";
import { ParameterArena } from "../../nn/arena.ts";
import { AdamW, GPT_ADAMW } from "../../nn/optimizer.ts";
import { Tensor } from "../../nn/tensor.ts";
import { countDispatches, randomArray, testGpu, testGpuWithBindingLimit } from "../_gpu.ts";

/**
 * Parameters laid out as a GPT-2's are (`gpt2ArenaOrder`): a matrix Muon would take, the decayed
 * ones, then the undecayed; awkward sizes, and over 64 KiB in all so that a 64 KiB binding limit
 * splits the run.
 */
const ENTRIES = [
  { name: "h.0.matrix", shape: [9, 7], decay: true },
  { name: "wte", shape: [601, 37], decay: true },
  { name: "wpe", shape: [5, 37], decay: true },
  { name: "ln.weight", shape: [37], decay: false },
  { name: "bias", shape: [3 * 37], decay: false },
  { name: "ln.bias", shape: [1], decay: false },
  { name: "fc.bias", shape: [1031], decay: false },
];

/** Gives each parameter the gradient `random(seed + i)`. */
function setGradients(gpu: Gpu, params: Map<string, Tensor>, seed: number): void {
  [...params.values()].forEach((param, i) => {
    param.zeroGrad();
    const grad = param.gradForAccumulate();
    gpu.write(bufferOf(grad), randomArray(param.size, seed + i), byteOffsetOf(grad));
  });
}

/**
 * Two AdamW steps over `names`, as windows of one arena and as tensors with buffers of their
 * own, from the same values and gradients: returns both runs' parameters and moments, and the
 * arena run's dispatches.
 */
async function stepBoth(gpu: Gpu, names: readonly string[]) {
  const arena = new ParameterArena(gpu, ENTRIES);
  const own = new Map<string, Tensor>();
  const shared = new Map<string, Tensor>();
  ENTRIES.forEach(({ name, shape }, i) => {
    const data = randomArray(shape.reduce((a, b) => a * b, 1), 100 + i);
    arena.tensors.get(name)!.write(data);
    if (names.includes(name)) {
      shared.set(name, arena.tensors.get(name)!);
      own.set(name, Tensor.from(gpu, data, shape, name));
    }
  });
  const decayed = new Set(ENTRIES.filter((e) => e.decay).map((e) => e.name));
  const results = [];
  let dispatches = new Map<string, number>();
  try {
    for (const params of [shared, own]) {
      const adamw = new AdamW(gpu, params, decayed, GPT_ADAMW);
      for (const seed of [1, 2]) {
        setGradients(gpu, params, seed);
        const counts = await countDispatches(gpu, async () => void await adamw.step(1e-2));
        if (params === shared) dispatches = counts;
      }
      const values = await Promise.all([...params.values()].map((p) => p.read()));
      results.push({ values, state: await adamw.state() });
      adamw.dispose();
    }
  } finally {
    for (const tensor of own.values()) tensor.dispose();
    arena.dispose();
  }
  return { flat: results[0], own: results[1], dispatches };
}

for (const limit of [0, 65536]) {
  const what = limit ? ", in windows under a binding limit of 64 KiB" : "";
  Deno.test(`AdamW over a flat buffer takes one launch per binding window and the bits of AdamW over a buffer per tensor${what}`, async () => {
    const gpu = await (limit ? testGpuWithBindingLimit(limit) : testGpu());
    // Everything, and everything but the leading matrix (the run starts past float 0, as when
    // Muon updates the blocks' matrices).
    for (const names of [ENTRIES.map((e) => e.name), ENTRIES.slice(1).map((e) => e.name)]) {
      const { flat, own, dispatches } = await stepBoth(gpu, names);
      assert.deepEqual(flat.values, own.values);
      assert.deepEqual(flat.state, own.state);
      const adamw = [...dispatches].filter(([kernel]) => kernel.startsWith("adamw"));
      assert.deepEqual(adamw.map(([kernel]) => kernel), ["adamw_vec4"]);
      // The run is about 95 kB: one launch, or one per window of at most 64 KiB.
      const launches = adamw[0][1];
      if (gpu.maxBinding <= 65536) assert.ok(launches >= 2, `${launches} launch`);
      else assert.equal(launches, 1);
    }
  });
}

Deno.test("AdamW over windows of a flat buffer that are not one run updates them tensor by tensor, with the same bits", async () => {
  const gpu = await testGpu();
  // wpe left out: the others are no longer one run (and with it, undecayed before decayed).
  const names = ENTRIES.map((e) => e.name).filter((name) => name !== "wpe");
  const { flat, own, dispatches } = await stepBoth(gpu, names);
  assert.deepEqual(flat.values, own.values);
  assert.deepEqual(flat.state, own.state);
  assert.ok(dispatches.has("adamw_tensors"), JSON.stringify([...dispatches]));
});
