import assert from "node:assert/strict";
import {
  type AdamWHyperparameters,
  adamwUpdate,
  adamwUpdateCpu,
  adamwUpdateTensors,
  type ParameterRange,
} from "../../kernels/adamw.ts";
import type { Gpu } from "../../kernels/device.ts";
import { globalNorm, globalNormCpu } from "../../kernels/grad_norm.ts";
import {
  assertClose,
  countDispatches,
  randomArray,
  testGpu,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

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
  const [params, m1, v1, grads, gradNorm] = bufs;
  await adamwUpdate(gpu, { params, m: m1, v: v1, grads, gradNorm }, [
    { first: 0, count: 1, decay: true },
  ], { ...hyper, maxNorm: 1 });
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
      const [paramsB, mB, vB, gradsB] = bufs;
      const named = { params: paramsB, m: mB, v: vB, grads: gradsB, gradNorm: norm };
      await adamwUpdate(gpu, named, RANGES, hyper, { scalar });
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
  const named = { params: b, m: b, v: b, grads: b };
  await assert.rejects(adamwUpdate(gpu, named, overlapping, HYPER), /overlap/);
  await assert.rejects(
    adamwUpdate(gpu, named, [{ first: 0, count: 4, decay: true }], { ...HYPER, maxNorm: 1 }),
    /without a gradient-norm buffer/,
  );
  gpu.release(b);
});

Deno.test("adamwUpdate() splits buffers over the binding limit into windows", async () => {
  // A 64 KiB binding limit: 16128 floats a window, so 40003 floats take three windows, the
  // decay ending inside a vec4 of the third and the range ending off a multiple of 4 (a scalar
  // tail). The moments start at zero (a first step).
  const gpu = await testGpuWithBindingLimit(64 * 1024);
  const n = 40_003, decayed = 33_001;
  const params = randomArray(n, 5), grads = randomArray(n, 6);
  const m = new Float32Array(n), v = new Float32Array(n);
  const bufs = [params, m, v, grads].map((x) => gpu.upload(x));
  const ranges = [
    { first: 0, count: decayed, decay: true },
    { first: decayed, count: n - decayed, decay: false },
  ];
  const hyper = { ...HYPER, step: 1 };
  const counts = await countDispatches(gpu, async () => {
    const [paramsB, mB, vB, gradsB] = bufs;
    await adamwUpdate(gpu, { params: paramsB, m: mB, v: vB, grads: gradsB }, ranges, hyper);
  });
  assert.deepEqual(Object.fromEntries(counts), { adamw_vec4: 3, adamw_scalar: 1 });
  for (const { first, count, decay } of ranges) {
    const at = (x: Float32Array) => x.subarray(first, first + count);
    adamwUpdateCpu(at(params), at(m), at(v), at(grads), hyper, decay);
  }
  assertClose(await gpu.readF32(bufs[0], n), params, { atol: 1e-6, rtol: 1e-5 });
  assertClose(await gpu.readF32(bufs[1], n), m, { atol: 1e-7, rtol: 1e-5 });
  assertClose(await gpu.readF32(bufs[2], n), v, { atol: 1e-7, rtol: 1e-5 });
  for (const buffer of bufs) gpu.release(buffer);
});

/** Tensor sizes of a small model: matrices, biases, and sizes off a multiple of 4. */
const SIZES = [
  10000,
  64,
  64,
  768,
  192,
  256,
  64,
  1024,
  256,
  1024,
  64,
  7,
  1001,
  3,
  64,
  64,
  512,
  128,
  2048,
  96,
  33,
];

/** Tensors in their own buffers, their moments flat at offsets that are multiples of 4. */
function modelTensors(gpu: Gpu, sizes: readonly number[]) {
  let end = 0;
  const tensors = sizes.map((count, i) => {
    const first = end;
    end += Math.ceil(count / 4) * 4;
    return {
      count,
      first,
      decay: i % 3 !== 1,
      params: randomArray(count, 100 + i),
      grads: randomArray(count, 200 + i),
    };
  });
  const m = randomArray(end, 7).map((x) => x * 0.1), v = randomArray(end, 8).map(Math.abs);
  const buffers = tensors.map((t) => ({ param: gpu.upload(t.params), grad: gpu.upload(t.grads) }));
  return { tensors, m, v, buffers };
}

for (const limit of [0, 32 * 1024]) {
  const what = limit ? ", over a binding limit of 32 KiB" : "";
  Deno.test(`adamwUpdateTensors() matches its CPU reference and adamwUpdate's bits${what}`, async () => {
    const gpu = await (limit ? testGpuWithBindingLimit(limit) : testGpu());
    const { tensors, m, v, buffers } = modelTensors(gpu, SIZES);
    const hyper = { ...HYPER, maxNorm: 1 };
    const norm = gpu.acquire(4);
    await globalNorm(gpu, norm, buffers.map((b, i) => ({ buffer: b.grad, count: SIZES[i] })));
    const [mBuffer, vBuffer] = [m, v].map((x) => gpu.upload(x));
    const counts = await countDispatches(gpu, async () => {
      await adamwUpdateTensors(
        gpu,
        tensors.map((t, i) => ({ ...buffers[i], first: t.first, count: t.count, decay: t.decay })),
        mBuffer,
        vBuffer,
        hyper,
        norm,
      );
    });
    // One launch per group of tensors whose sizes are multiples of 4 (the vec4 kernel), and
    // per group of the others; under the limit, the tensor of 40 kB goes through adamwUpdate's
    // windows, and the groups are cut where their moments would not fit one binding.
    const perLaunch = Math.min(
      16,
      Math.floor((gpu.device.limits.maxStorageBuffersPerShaderStage - 3) / 2),
    );
    if (!limit) {
      const vec4 = SIZES.filter((n) => n % 4 === 0).length;
      const launches = Math.ceil(vec4 / perLaunch) + Math.ceil((SIZES.length - vec4) / perLaunch);
      assert.equal(counts.get("adamw_tensors"), launches, JSON.stringify([...counts]));
    } else assert.ok((counts.get("adamw_vec4") ?? 0) >= 2, JSON.stringify([...counts]));

    // The same step, tensor by tensor, with adamwUpdate on copies of the same state.
    const gradNorm = globalNormCpu(tensors.map((t) => t.grads));
    const reference = [m.slice(), v.slice()].map((x) => gpu.upload(x));
    for (const [i, t] of tensors.entries()) {
      const param = gpu.upload(t.params);
      const [mm, vv] = [m, v].map((x) => gpu.upload(x.slice(t.first, t.first + t.count)));
      const named = { params: param, m: mm, v: vv, grads: buffers[i].grad, gradNorm: norm };
      await adamwUpdate(gpu, named, [{ first: 0, count: t.count, decay: t.decay }], hyper);
      const expected = await gpu.readF32(param, t.count);
      const at = (x: Float32Array) => x.subarray(t.first, t.first + t.count);
      const mExpected = await gpu.readF32(mm, t.count), vExpected = await gpu.readF32(vv, t.count);
      adamwUpdateCpu(t.params, at(m), at(v), t.grads, hyper, t.decay, gradNorm);
      const got = await gpu.readF32(buffers[i].param, t.count);
      assertClose(got, t.params, { atol: 1e-6, rtol: 1e-5 });
      assert.deepEqual(got, expected, `tensor ${i}: not the bits of adamwUpdate`);
      assert.deepEqual(await gpu.readF32(mBuffer, t.count, t.first), mExpected);
      assert.deepEqual(await gpu.readF32(vBuffer, t.count, t.first), vExpected);
      for (const buffer of [param, mm, vv]) gpu.release(buffer);
    }
    assertClose(await gpu.readF32(mBuffer, m.length), m, { atol: 1e-7, rtol: 1e-5 });
    assertClose(await gpu.readF32(vBuffer, v.length), v, { atol: 1e-7, rtol: 1e-5 });
    for (
      const b of [
        ...buffers.flatMap((b) => [b.param, b.grad]),
        mBuffer,
        vBuffer,
        norm,
        ...reference,
      ]
    ) {
      gpu.release(b);
    }
  });
}

Deno.test("adamwUpdate() and adamwUpdateTensors() change nothing when the norm is NaN or infinite", async () => {
  const gpu = await testGpu();
  const n = 1031; // a vec4 body and a scalar tail
  for (const bad of [NaN, Infinity, -Infinity]) {
    const state = [randomArray(n, 1), randomArray(n, 2), randomArray(n, 3).map(Math.abs)];
    const [params, m, v] = state.map((x) => gpu.upload(x));
    const grads = gpu.upload(randomArray(n, 4)), gradNorm = gpu.upload(new Float32Array([bad]));
    for (const maxNorm of [0, 1]) {
      await adamwUpdate(gpu, { params, m, v, grads, gradNorm }, [{
        first: 0,
        count: n,
        decay: true,
      }], {
        ...HYPER,
        maxNorm,
      });
      const tensors = [{ param: params, grad: grads, first: 0, count: 7, decay: false }];
      await adamwUpdateTensors(gpu, tensors, m, v, { ...HYPER, maxNorm }, gradNorm);
    }
    for (const [i, buffer] of [params, m, v].entries()) {
      assert.deepEqual(await gpu.readF32(buffer, n), state[i], `norm ${bad}, buffer ${i}`);
    }
    for (const buffer of [params, m, v, grads, gradNorm]) gpu.release(buffer);
  }
  const p = new Float32Array([1]);
  adamwUpdateCpu(
    p,
    new Float32Array(1),
    new Float32Array(1),
    new Float32Array([1]),
    HYPER,
    true,
    NaN,
  );
  assert.deepEqual(p, new Float32Array([1]));
});
