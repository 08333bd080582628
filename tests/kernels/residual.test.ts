import assert from "node:assert/strict";
import {
  residualBackward,
  residualBackwardCpu,
  residualForward,
  residualForwardCpu,
} from "../../kernels/residual.ts";
import { assertGradientMatches, projectedLoss } from "../_finite_diff.ts";
import {
  assertClose,
  countDispatches,
  randomArray,
  testGpu,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

// B*T*C = 3*37*48, one element, a count just past one workgroup, and a 2-float tail.
for (const n of [3 * 37 * 48, 1, 257, 1030]) {
  Deno.test(`residualForward() matches its CPU reference for n=${n}`, async () => {
    const gpu = await testGpu();
    const a = randomArray(n, 1), b = randomArray(n, 2), expected = new Float32Array(n);
    residualForwardCpu(expected, a, b);
    const [aBuf, bBuf] = [a, b].map((x) => gpu.upload(x)), out = gpu.acquire(n * 4);
    await residualForward(gpu, out, aBuf, bBuf, n);
    assertClose(await gpu.readF32(out, n), expected, { atol: 0, rtol: 0 });
    for (const buffer of [aBuf, bBuf, out]) gpu.release(buffer);
  });

  Deno.test(`residualBackward() accumulates into both inputs for n=${n}`, async () => {
    const gpu = await testGpu();
    const da = randomArray(n, 3), db = randomArray(n, 4), dout = randomArray(n, 5);
    const bufs = [da, db, dout].map((x) => gpu.upload(x));
    await residualBackward(gpu, bufs[0], bufs[1], bufs[2], n);
    residualBackwardCpu(da, db, dout);
    assertClose(await gpu.readF32(bufs[0], n), da, { atol: 0, rtol: 0 });
    assertClose(await gpu.readF32(bufs[1], n), db, { atol: 0, rtol: 0 });
    for (const buffer of bufs) gpu.release(buffer);
  });
}

Deno.test("residualBackward() matches finite differences", () => {
  const n = 9;
  const a = Float64Array.from(randomArray(n, 6)), b = Float64Array.from(randomArray(n, 7));
  const projection = Float64Array.from(randomArray(n, 8)), out = new Float64Array(n);
  const loss = () => {
    residualForwardCpu(out, a, b);
    return projectedLoss(out, projection);
  };
  const da = new Float64Array(n), db = new Float64Array(n);
  residualBackwardCpu(da, db, projection);
  assertGradientMatches(da, loss, a);
  assertGradientMatches(db, loss, b);
});

Deno.test("residualBackward() refuses the same buffer for both gradients", async () => {
  const gpu = await testGpu();
  const buffer = gpu.acquire(64);
  await assert.rejects(residualBackward(gpu, buffer, buffer, buffer, 16), /two different buffers/);
  gpu.release(buffer);
});

Deno.test("residualForward() and residualBackward() split over a 4 KiB binding limit", async () => {
  const gpu = await testGpuWithBindingLimit(4096);
  const n = 2002; // 2000 floats in parts of at most 960, then a 2-float tail
  const a = randomArray(n, 9), b = randomArray(n, 10), dout = randomArray(n, 11);
  const expected = new Float32Array(n);
  residualForwardCpu(expected, a, b);
  const [aBuf, bBuf, gBuf] = [a, b, dout].map((x) => gpu.upload(x)), out = gpu.acquire(n * 4);
  const counts = await countDispatches(gpu, async () => {
    await residualForward(gpu, out, aBuf, bBuf, n);
    await residualBackward(gpu, aBuf, bBuf, gBuf, n);
  });
  assert.equal(counts.get("residual_forward"), 4, "3 parts of vec4s and a tail");
  assert.equal(counts.get("residual_backward"), 4);
  assertClose(await gpu.readF32(out, n), expected, { atol: 0, rtol: 0 });
  residualBackwardCpu(a, b, dout);
  assertClose(await gpu.readF32(aBuf, n), a, { atol: 0, rtol: 0 });
  assertClose(await gpu.readF32(bBuf, n), b, { atol: 0, rtol: 0 });
  for (const buffer of [aBuf, bBuf, gBuf, out]) gpu.release(buffer);
});
