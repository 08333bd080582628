import assert from "node:assert/strict";
import {
  type AdamWHyperparameters,
  adamwUpdate,
  adamwUpdateCpu,
  type ParameterRange,
} from "../../kernels/adamw.ts";
import { globalNorm, globalNormCpu } from "../../kernels/grad_norm.ts";
import { assertClose, randomArray, testGpu } from "../_gpu.ts";

const HYPER: AdamWHyperparameters = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  step: 3,
};

Deno.test("adamwUpdateCpu() takes the hand-computed first step", () => {
  const hyper = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 };
  const p = new Float64Array([1, 1]), m = new Float64Array(2), v = new Float64Array(2);
  adamwUpdateCpu(p, m, v, new Float64Array([0.5, -2]), hyper, true);
  // Step 1: m = 0.1·g, v = 0.001·g², m̂ = g, v̂ = g², so m̂/√v̂ = sign(g) up to eps.
  assertClose(m, [0.05, -0.2], { atol: 1e-15, rtol: 0 });
  assertClose(v, [0.00025, 0.004], { atol: 1e-15, rtol: 0 });
  assertClose(p, [1 - 0.1 * (0.5 / (0.5 + 1e-8) + 0.01), 1 - 0.1 * (-2 / (2 + 1e-8) + 0.01)], {
    atol: 1e-15,
    rtol: 0,
  });
  assertClose(p, [0.899, 1.099], { atol: 1e-8, rtol: 0 });
});

Deno.test("adamwUpdate() takes the hand-computed clipped second step", async () => {
  const gpu = await testGpu();
  // State after a first step; gradient norm 2 clipped to 1 halves the gradient (up to 1e-6).
  const hyper = { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.5, step: 2 };
  const s = 1 / (2 + 1e-6), g = 0.4 * s;
  const m = 0.9 * 0.1 + 0.1 * g, v = 0.99 * 0.01 + 0.01 * g * g;
  const mHat = m / (1 - 0.81), vHat = v / (1 - 0.9801);
  const expected = [1 - 0.1 * (mHat / (Math.sqrt(vHat) + 1e-8) + 0.5), m, v];
  const bufs = [[1], [0.1], [0.01], [0.4], [2]].map((x) => gpu.upload(new Float32Array(x)));
  await adamwUpdate(
    gpu,
    bufs[0],
    bufs[1],
    bufs[2],
    bufs[3],
    [{ first: 0, count: 1, decay: true }],
    {
      ...hyper,
      maxNorm: 1,
    },
    bufs[4],
  );
  const got = [];
  for (const buffer of bufs.slice(0, 3)) got.push((await gpu.readF32(buffer, 1))[0]);
  assertClose(got, expected, { atol: 1e-7, rtol: 1e-6 });
  for (const buffer of bufs) gpu.release(buffer);
});

/** A flat buffer of tensors with alternating decay, some starting off a multiple of 4. */
const RANGES: ParameterRange[] = [
  { first: 0, count: 111 * 48, decay: true },
  { first: 5328, count: 48, decay: false },
  { first: 5376, count: 1001, decay: true },
  { first: 6377, count: 7, decay: false }, // starts off a multiple of 4
  { first: 6384, count: 2307, decay: true }, // merges with the next
  { first: 8691, count: 9, decay: true },
];
const TOTAL = 8700;

for (const scalar of [false, true]) {
  for (const clip of [false, true]) {
    const what = `${scalar ? "the scalar kernel" : "the vec4 kernel"}, ${
      clip ? "" : "not "
    }clipped`;
    Deno.test(`adamwUpdate() matches its CPU reference over a flat buffer (${what})`, async () => {
      const gpu = await testGpu();
      const params = randomArray(TOTAL, 1), grads = randomArray(TOTAL, 2);
      const m = randomArray(TOTAL, 3).map((x) => x * 0.1), v = randomArray(TOTAL, 4).map(Math.abs);
      const hyper = { ...HYPER, maxNorm: clip ? 1 : 0 };
      const bufs = [params, m, v, grads].map((x) => gpu.upload(x));
      const norm = gpu.acquire(4);
      await globalNorm(gpu, norm, [{ buffer: bufs[3], count: TOTAL }]);
      await adamwUpdate(gpu, bufs[0], bufs[1], bufs[2], bufs[3], RANGES, hyper, norm, { scalar });
      const gradNorm = globalNormCpu([grads]);
      for (const { first, count, decay } of RANGES) {
        const at = (x: Float32Array) => x.subarray(first, first + count);
        adamwUpdateCpu(at(params), at(m), at(v), at(grads), hyper, decay, gradNorm);
      }
      assertClose(await gpu.readF32(bufs[0], TOTAL), params, { atol: 1e-6, rtol: 1e-5 });
      assertClose(await gpu.readF32(bufs[1], TOTAL), m, { atol: 1e-7, rtol: 1e-5 });
      assertClose(await gpu.readF32(bufs[2], TOTAL), v, { atol: 1e-7, rtol: 1e-5 });
      for (const buffer of [...bufs, norm]) gpu.release(buffer);
    });
  }
}

Deno.test("adamwUpdate() refuses overlapping ranges and clipping without a norm", async () => {
  const gpu = await testGpu();
  const b = gpu.acquire(64);
  const overlapping = [{ first: 0, count: 8, decay: true }, { first: 4, count: 8, decay: false }];
  await assert.rejects(adamwUpdate(gpu, b, b, b, b, overlapping, HYPER), /overlap/);
  await assert.rejects(
    adamwUpdate(gpu, b, b, b, b, [{ first: 0, count: 4, decay: true }], { ...HYPER, maxNorm: 1 }),
    /without a gradient-norm buffer/,
  );
  gpu.release(b);
});

Deno.test("adamwUpdate() updates 134 MB buffers, over the binding limit, in windows", async () => {
  const gpu = await testGpu();
  // 33.6M floats = 134.4 MB per buffer, just over the 128 MiB binding: two windows; the range
  // ends off a multiple of 4 (a scalar tail). The moments start at zero (a first step). One
  // launch covers both ranges: the decay ends inside a vec4 of the second window.
  const n = 33_600_003, decayed = 33_555_001;
  /** A periodic pattern, doubled with copyWithin: far faster than a loop over 33.6M floats. */
  const make = (period: number) => {
    const x = new Float32Array(n);
    for (let i = 0; i < period; i++) x[i] = i / period - 0.5;
    for (let filled = period; filled < n; filled *= 2) x.copyWithin(filled, 0, filled);
    return x;
  };
  const params = make(1013), grads = make(97);
  const m = new Float32Array(n), v = new Float32Array(n);
  const bufs = [gpu.upload(params), gpu.acquire(n * 4), gpu.acquire(n * 4), gpu.upload(grads)];
  gpu.encoder.clearBuffer(bufs[1]);
  gpu.encoder.clearBuffer(bufs[2]);
  await adamwUpdate(gpu, bufs[0], bufs[1], bufs[2], bufs[3], [
    { first: 0, count: decayed, decay: true },
    { first: decayed, count: n - decayed, decay: false },
  ], { ...HYPER, step: 1 });
  // Elements around the window boundary (33554368 floats fit one binding), around the end of
  // the decay, and at both ends.
  for (const start of [0, 33_554_300, 33_554_980, 33_555_400, n - 40]) {
    const at = (x: Float32Array) => x.slice(start, start + 40);
    const [p, mm, vv] = [at(params), at(m), at(v)];
    const split = Math.max(0, Math.min(40, decayed - start));
    adamwUpdateCpu(
      p.subarray(0, split),
      mm.subarray(0, split),
      vv.subarray(0, split),
      at(grads).subarray(0, split),
      { ...HYPER, step: 1 },
      true,
    );
    adamwUpdateCpu(
      p.subarray(split),
      mm.subarray(split),
      vv.subarray(split),
      at(grads).subarray(split),
      { ...HYPER, step: 1 },
      false,
    );
    assertClose(await gpu.readF32(bufs[0], 40, start), p, { atol: 1e-6, rtol: 1e-5 });
    assertClose(await gpu.readF32(bufs[1], 40, start), mm, { atol: 1e-7, rtol: 1e-5 });
    assertClose(await gpu.readF32(bufs[2], 40, start), vv, { atol: 1e-7, rtol: 1e-5 });
  }
  for (const buffer of bufs) gpu.release(buffer);
});
