import { geluBackward, geluBackwardCpu, geluForward, geluForwardCpu } from "../../kernels/gelu.ts";
import { assertGradientMatches, projectedLoss } from "../_finite_diff.ts";
import assert from "node:assert/strict";
import {
  assertClose,
  countDispatches,
  randomArray,
  testGpu,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

/** Values over [-6, 6), plus extremes where a naive tanh overflows. */
function geluInput(n: number, seed: number): Float32Array {
  const x = randomArray(n, seed).map((v) => v * 6);
  const extremes = [-100, -20, -9.5, 0, 9.5, 20, 100];
  for (let i = 0; i < Math.min(n, extremes.length); i++) x[i] = extremes[i];
  return x;
}

// B*T*4C = 3*37*192 (the MLP hidden of C=48), a single element, a non-multiple of 256, and a
// tail of 3 floats after the vec4s.
for (const n of [3 * 37 * 192, 1, 1000, 1027]) {
  Deno.test(`geluForward() matches its CPU reference for n=${n}`, async () => {
    const gpu = await testGpu();
    const inp = geluInput(n, 1);
    const expected = new Float32Array(n);
    geluForwardCpu(expected, inp);
    const x = gpu.upload(inp), out = gpu.acquire(n * 4);
    await geluForward(gpu, out, x, n);
    assertClose(await gpu.readF32(out, n), expected, { atol: 1e-6, rtol: 1e-5 });
    gpu.release(x);
    gpu.release(out);
  });

  Deno.test(`geluBackward() writes like its CPU reference for n=${n}, apart and in place`, async () => {
    const gpu = await testGpu();
    const inp = geluInput(n, 2), dout = randomArray(n, 3);
    const expected = new Float32Array(n);
    geluBackwardCpu(expected, inp, dout);
    const x = gpu.upload(inp), g = gpu.upload(dout);
    // A garbage-filled dinp: the backward must overwrite it.
    const d = gpu.upload(randomArray(n, 4));
    await geluBackward(gpu, d, x, g, n);
    assertClose(await gpu.readF32(d, n), expected, { atol: 1e-6, rtol: 1e-5 });
    await geluBackward(gpu, g, x, g, n);
    assertClose(await gpu.readF32(g, n), expected, { atol: 1e-6, rtol: 1e-5 });
    for (const b of [x, g, d]) gpu.release(b);
  });
}

Deno.test("geluBackward() matches finite differences", () => {
  const n = 23;
  const inp = Float64Array.from(randomArray(n, 5), (v) => v * 4);
  const projection = Float64Array.from(randomArray(n, 6));
  const out = new Float64Array(n);
  const loss = () => {
    geluForwardCpu(out, inp);
    return projectedLoss(out, projection);
  };
  const dinp = new Float64Array(n);
  geluBackwardCpu(dinp, inp, projection);
  assertGradientMatches(dinp, loss, inp);
});

Deno.test("geluForward() and geluBackward() split over a 4 KiB binding limit", async () => {
  const gpu = await testGpuWithBindingLimit(4096);
  const n = 3001; // 3000 floats in parts of at most 960, then a 1-float tail
  const inp = geluInput(n, 7), dout = randomArray(n, 8);
  const expected = new Float32Array(n), expectedGrad = new Float32Array(n);
  geluForwardCpu(expected, inp);
  geluBackwardCpu(expectedGrad, inp, dout);
  const x = gpu.upload(inp), g = gpu.upload(dout), out = gpu.acquire(n * 4);
  const counts = await countDispatches(gpu, async () => {
    await geluForward(gpu, out, x, n);
    await geluBackward(gpu, g, x, g, n);
  });
  assert.equal(counts.get("gelu_forward"), 5, "4 parts of vec4s and a tail");
  assert.equal(counts.get("gelu_backward_in_place"), 5);
  assertClose(await gpu.readF32(out, n), expected, { atol: 1e-6, rtol: 1e-5 });
  assertClose(await gpu.readF32(g, n), expectedGrad, { atol: 1e-6, rtol: 1e-5 });
  for (const b of [x, g, out]) gpu.release(b);
});
