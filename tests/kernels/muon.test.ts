import assert from "node:assert/strict";
import {
  muonInverseNorms,
  muonInverseNormsCpu,
  muonMomentum,
  muonMomentumCpu,
  muonPolynomial,
  muonPolynomialCpu,
  muonScale,
  muonScaleCpu,
  muonUpdate,
  muonUpdateCpu,
} from "../../kernels/muon.ts";
import { assertClose, randomArray, testGpuUncapped } from "../_gpu.ts";

Deno.test("muonMomentumCpu() takes the hand-computed Nesterov step, clipped", () => {
  const m = new Float64Array([1, -2]), g = new Float64Array([4, 2]);
  // Norm 4 clipped to 2 halves the gradient (up to the 1e-6 guard).
  muonMomentumCpu(m, g, { momentum: 0.5, nesterov: true, maxNorm: 2 }, 4);
  const s = 2 / (4 + 1e-6);
  const mNew = [0.5 + 4 * s, -1 + 2 * s];
  assertClose(m, mNew, { atol: 1e-15, rtol: 0 });
  assertClose(g, [4 * s + 0.5 * mNew[0], 2 * s + 0.5 * mNew[1]], { atol: 1e-15, rtol: 0 });
});

for (
  const [n, nesterov, clip] of [[1, true, 0], [1003, true, 3], [4096 + 5, false, 0.5]] as const
) {
  Deno.test(`muonMomentum() matches its CPU reference (n=${n}, nesterov ${nesterov}, clip ${clip})`, async () => {
    const gpu = await testGpuUncapped();
    const m = randomArray(n, 1), g = randomArray(n, 2);
    const gradNorm = 7.25;
    const hyper = { momentum: 0.95, nesterov, maxNorm: clip };
    const mBuf = gpu.upload(m),
      gBuf = gpu.upload(g),
      normBuf = gpu.upload(new Float32Array([gradNorm]));
    await muonMomentum(gpu, mBuf, gBuf, n, hyper, clip > 0 ? normBuf : null);
    muonMomentumCpu(m, g, hyper, gradNorm);
    assertClose(await gpu.readF32(mBuf, n), m, { atol: 1e-6, rtol: 1e-5 });
    assertClose(await gpu.readF32(gBuf, n), g, { atol: 1e-6, rtol: 1e-5 });
    for (const buffer of [mBuf, gBuf, normBuf]) gpu.release(buffer);
  });
}

Deno.test("muonMomentum() refuses to clip without a norm buffer", async () => {
  const gpu = await testGpuUncapped();
  const buffer = gpu.acquire(16);
  await assert.rejects(
    () => muonMomentum(gpu, buffer, buffer, 4, { momentum: 0.9, nesterov: true, maxNorm: 1 }),
    /gradient-norm buffer/,
  );
  gpu.release(buffer);
});

for (const [count, rows, cols] of [[1, 1, 1], [3, 7, 13], [2, 96, 384], [5, 48, 48]]) {
  Deno.test(`muonInverseNorms() and muonScale() match their CPU references (${count} x ${rows}x${cols})`, async () => {
    const gpu = await testGpuUncapped();
    const size = rows * cols;
    const x = randomArray(count * size, count + rows);
    // One matrix of zeros: its inverse norm is 1/eps, and it stays zero.
    if (count > 2) x.fill(0, size, 2 * size);
    const xBuf = gpu.upload(x), norms = gpu.acquire(count * 4);
    await muonInverseNorms(gpu, norms, xBuf, count, size, 1e-7);
    const expected = muonInverseNormsCpu(x, size, 1e-7);
    const got = await gpu.readF32(norms, count);
    assertClose(got, expected, { atol: 0, rtol: 2e-6 });
    await muonScale(gpu, xBuf, norms, count, size);
    muonScaleCpu(x, got, size);
    assertClose(await gpu.readF32(xBuf, count * size), x, { atol: 1e-7, rtol: 1e-6 });
    gpu.release(xBuf);
    gpu.release(norms);
  });
}

for (const [count, s] of [[1, 1], [3, 7], [2, 48]]) {
  Deno.test(`muonPolynomial() matches its CPU reference (${count} x ${s}x${s})`, async () => {
    const gpu = await testGpuUncapped();
    const n = count * s * s;
    const gram = randomArray(n, 3), gram2 = randomArray(n, 4);
    const coefficients = { a: 3.4445, b: -4.775, c: 2.0315 };
    const bufs = [gpu.acquire(n * 4), gpu.upload(gram), gpu.upload(gram2)];
    await muonPolynomial(gpu, bufs[0], bufs[1], bufs[2], count, s, coefficients);
    const expected = new Float64Array(n);
    muonPolynomialCpu(expected, gram, gram2, s, coefficients);
    assertClose(await gpu.readF32(bufs[0], n), expected, { atol: 1e-6, rtol: 1e-6 });
    for (const buffer of bufs) gpu.release(buffer);
  });
}

for (const n of [1, 4099]) {
  Deno.test(`muonUpdate() matches its CPU reference (n=${n})`, async () => {
    const gpu = await testGpuUncapped();
    const w = randomArray(n, 5), o = randomArray(n, 6);
    const hyper = { lr: 0.03, scale: 3.9, weightDecay: 0.1 };
    const wBuf = gpu.upload(w), oBuf = gpu.upload(o);
    await muonUpdate(gpu, wBuf, oBuf, n, hyper);
    muonUpdateCpu(w, o, hyper);
    assertClose(await gpu.readF32(wBuf, n), w, { atol: 1e-7, rtol: 1e-6 });
    gpu.release(wBuf);
    gpu.release(oBuf);
  });
}

Deno.test("muonMomentum() and muonUpdate() change nothing when the norm is NaN or infinite", async () => {
  const gpu = await testGpuUncapped();
  const n = 515;
  for (const bad of [NaN, Infinity]) {
    const state = [randomArray(n, 1), randomArray(n, 2), randomArray(n, 3)];
    const [m, g, w] = state.map((x) => gpu.upload(x));
    const norm = gpu.upload(new Float32Array([bad]));
    for (const maxNorm of [0, 1]) {
      await muonMomentum(gpu, m, g, n, { momentum: 0.95, nesterov: true, maxNorm }, norm);
    }
    await muonUpdate(gpu, w, g, n, { lr: 0.03, scale: 1, weightDecay: 0.1 }, norm);
    for (const [i, buffer] of [m, g, w].entries()) {
      assert.deepEqual(await gpu.readF32(buffer, n), state[i], `norm ${bad}, buffer ${i}`);
    }
    for (const buffer of [m, g, w, norm]) gpu.release(buffer);
  }
});
