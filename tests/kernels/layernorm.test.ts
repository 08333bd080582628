import assert from "node:assert/strict";
import {
  layernormBackward,
  layernormBackwardCpu,
  layernormForward,
  layernormForwardCpu,
  residualLayernormForward,
  residualLayernormForwardCpu,
} from "../../kernels/layernorm.ts";
import type { Gpu } from "../../kernels/device.ts";
import { assertGradientMatches, projectedLoss } from "../_finite_diff.ts";
import { assertClose, randomArray, testGpu, testGpuWithBindingLimit } from "../_gpu.ts";

/** Inputs with a per-row offset and scale, so mean and variance matter. */
function layernormInput(n: number, c: number, seed: number): Float32Array {
  const x = randomArray(n * c, seed);
  for (let row = 0; row < n; row++) {
    for (let i = 0; i < c; i++) x[row * c + i] = x[row * c + i] * (1 + row % 5) + (row % 7) - 3;
  }
  return x;
}

/** Uploads each array under its own name, for a launcher that takes its buffers by name. */
function uploadEach<K extends string>(gpu: Gpu, arrays: Record<K, Float32Array>) {
  const entries = Object.entries<Float32Array>(arrays).map(([k, a]) => [k, gpu.upload(a)]);
  return Object.fromEntries(entries) as Record<K, GPUBuffer>;
}

function releaseEach(gpu: Gpu, buffers: Record<string, GPUBuffer>): void {
  for (const buffer of Object.values(buffers)) gpu.release(buffer);
}

/** Runs `layernormBackward` on uploads of `inputs` and checks the three gradients it adds to. */
async function assertBackwardMatches(
  gpu: Gpu,
  inputs: Record<
    "dinp" | "dweight" | "dbias" | "dout" | "inp" | "weight" | "mean" | "rstd",
    Float32Array
  >,
  [eInp, eWeight, eBias]: Float32Array[],
  n: number,
  c: number,
  perRow: "invocation" | "workgroup",
): Promise<void> {
  const b = uploadEach(gpu, inputs);
  await layernormBackward(gpu, b, n, c, { perRow });
  assertClose(await gpu.readF32(b.dinp, n * c), eInp, { atol: 1e-4, rtol: 1e-4 });
  assertClose(await gpu.readF32(b.dweight, c), eWeight, { atol: 1e-4, rtol: 1e-4 });
  assertClose(await gpu.readF32(b.dbias, c), eBias, { atol: 1e-4, rtol: 1e-4 });
  releaseEach(gpu, b);
}

/**
 * Runs `residualLayernormForward` on random a, b (N, C) and checks the sum (exactly), the
 * outputs against the CPU reference, and that they are `layernormForward`'s of the sum, bit for
 * bit.
 */
async function assertResidualForwardMatches(
  gpu: Gpu,
  n: number,
  c: number,
  perRow: "invocation" | "workgroup",
): Promise<void> {
  const a = layernormInput(n, c, 41), b = randomArray(n * c, 42);
  const weight = randomArray(c, 43), bias = randomArray(c, 44);
  const sum = new Float32Array(n * c), out = new Float32Array(n * c);
  const mean = new Float32Array(n), rstd = new Float32Array(n);
  residualLayernormForwardCpu(sum, out, mean, rstd, a, b, weight, bias, n, c);
  // NaN before the launch: every element must be written.
  const nan = { inp: sum.map(() => NaN), out: out.map(() => NaN) };
  const fused = uploadEach(gpu, { ...nan, mean: mean.map(() => NaN), rstd, a, b, weight, bias });
  await residualLayernormForward(gpu, fused, n, c, { perRow });
  assert.deepEqual(await gpu.readF32(fused.inp, n * c), sum);
  const fusedOut = await gpu.readF32(fused.out, n * c);
  assertClose(fusedOut, out, { atol: 1e-5, rtol: 1e-4 });
  assertClose(await gpu.readF32(fused.mean, n), mean, { atol: 1e-5, rtol: 1e-5 });
  const plain = uploadEach(gpu, { out: nan.out, mean, rstd, inp: sum, weight, bias });
  await layernormForward(gpu, plain, n, c, { perRow });
  assert.deepEqual(fusedOut, await gpu.readF32(plain.out, n * c));
  assert.deepEqual(await gpu.readF32(fused.rstd, n), await gpu.readF32(plain.rstd, n));
  releaseEach(gpu, fused);
  releaseEach(gpu, plain);
}

// N = B*T = 3*37 with C = 48 (below one workgroup), C = 769 (straddles six workgroup strides),
// C = 772 (vec4 loads over several strides).
for (const [n, c] of [[111, 48], [1, 3], [37, 769], [19, 772]]) {
  Deno.test(`layernormForward() matches its CPU reference for N=${n}, C=${c}`, async () => {
    const gpu = await testGpu();
    const inp = layernormInput(n, c, 1), weight = randomArray(c, 2), bias = randomArray(c, 3);
    const out = new Float32Array(n * c), mean = new Float32Array(n), rstd = new Float32Array(n);
    layernormForwardCpu(out, mean, rstd, inp, weight, bias, n, c);
    for (const perRow of ["invocation", "workgroup"] as const) {
      // NaN before the launch: every element must be written.
      const outputs = {
        out: out.map(() => NaN),
        mean: mean.map(() => NaN),
        rstd: rstd.map(() => NaN),
      };
      const b = uploadEach(gpu, { ...outputs, inp, weight, bias });
      await layernormForward(gpu, b, n, c, { perRow });
      assertClose(await gpu.readF32(b.out, n * c), out, { atol: 1e-5, rtol: 1e-4 });
      assertClose(await gpu.readF32(b.mean, n), mean, { atol: 1e-5, rtol: 1e-5 });
      assertClose(await gpu.readF32(b.rstd, n), rstd, { atol: 1e-5, rtol: 1e-4 });
      releaseEach(gpu, b);
    }
  });

  Deno.test(`residualLayernormForward() writes a + b and its layernorm for N=${n}, C=${c}`, async () => {
    const gpu = await testGpu();
    for (const perRow of ["invocation", "workgroup"] as const) {
      await assertResidualForwardMatches(gpu, n, c, perRow);
    }
  });

  Deno.test(`layernormBackward() accumulates like its CPU reference for N=${n}, C=${c}`, async () => {
    const gpu = await testGpu();
    const inp = layernormInput(n, c, 4), weight = randomArray(c, 5), bias = randomArray(c, 6);
    const dout = randomArray(n * c, 7);
    const out = new Float32Array(n * c), mean = new Float32Array(n), rstd = new Float32Array(n);
    layernormForwardCpu(out, mean, rstd, inp, weight, bias, n, c);
    // Non-zero starting gradients: every output must be accumulated into, not overwritten.
    const dinp = randomArray(n * c, 8), dweight = randomArray(c, 9), dbias = randomArray(c, 10);
    const expected = [dinp.slice(), dweight.slice(), dbias.slice()];
    const [eInp, eWeight, eBias] = expected;
    layernormBackwardCpu(eInp, eWeight, eBias, dout, inp, weight, mean, rstd, n, c);
    for (const perRow of ["invocation", "workgroup"] as const) {
      const inputs = { dinp, dweight, dbias, dout, inp, weight, mean, rstd };
      await assertBackwardMatches(gpu, inputs, expected, n, c, perRow);
    }
  });
}

Deno.test("layernorm splits 150 rows of 769 floats over a 64 KiB binding limit", async () => {
  // Parts of at most 21 rows. On a CPU adapter the backward's partial sums (a block per 8
  // rows, 19 of 6 KB) would not fit one binding either, so the workgroup-per-row kernels take
  // over (the block kernel's split in parts is tested by N=37, C=769 under that limit).
  const gpu = await testGpuWithBindingLimit(65536);
  const n = 150, c = 769;
  const inp = layernormInput(n, c, 31), weight = randomArray(c, 32), bias = randomArray(c, 33);
  const dout = randomArray(n * c, 34);
  const out = new Float32Array(n * c), mean = new Float32Array(n), rstd = new Float32Array(n);
  layernormForwardCpu(out, mean, rstd, inp, weight, bias, n, c);
  const dinp = randomArray(n * c, 35), dweight = randomArray(c, 36), dbias = randomArray(c, 37);
  const [eInp, eWeight, eBias] = [dinp.slice(), dweight.slice(), dbias.slice()];
  layernormBackwardCpu(eInp, eWeight, eBias, dout, inp, weight, mean, rstd, n, c);
  for (const perRow of ["invocation", "workgroup"] as const) {
    const f = uploadEach(gpu, { out: out.map(() => NaN), mean, rstd, inp, weight, bias });
    await layernormForward(gpu, f, n, c, { perRow });
    assertClose(await gpu.readF32(f.out, n * c), out, { atol: 1e-5, rtol: 1e-4 });
    releaseEach(gpu, f);
    const inputs = { dinp, dweight, dbias, dout, inp, weight, mean, rstd };
    await assertBackwardMatches(gpu, inputs, [eInp, eWeight, eBias], n, c, perRow);
    await assertResidualForwardMatches(gpu, n, c, perRow);
  }
});

Deno.test("layernormBackward() gives the same parameter-gradient bits every run", async () => {
  const gpu = await testGpu();
  const n = 111, c = 48;
  const inp = layernormInput(n, c, 11), weight = randomArray(c, 12), bias = randomArray(c, 13);
  const dout = randomArray(n * c, 14);
  const out = new Float32Array(n * c), mean = new Float32Array(n), rstd = new Float32Array(n);
  layernormForwardCpu(out, mean, rstd, inp, weight, bias, n, c);
  const runs: Uint32Array[] = [];
  for (let run = 0; run < 2; run++) {
    const zeros = { dinp: new Float32Array(n * c), dweight: new Float32Array(c) };
    const b = uploadEach(gpu, {
      ...zeros,
      dbias: new Float32Array(c),
      dout,
      inp,
      weight,
      mean,
      rstd,
    });
    await layernormBackward(gpu, b, n, c);
    const dweight = await gpu.readF32(b.dweight, c), dbias = await gpu.readF32(b.dbias, c);
    runs.push(
      new Uint32Array([...new Uint32Array(dweight.buffer), ...new Uint32Array(dbias.buffer)]),
    );
    releaseEach(gpu, b);
  }
  assert.deepEqual(runs[0], runs[1]);
});

Deno.test("layernormBackward() matches finite differences", () => {
  const n = 3, c = 5;
  const inp = Float64Array.from(layernormInput(n, c, 21));
  const weight = Float64Array.from(randomArray(c, 22)),
    bias = Float64Array.from(randomArray(c, 23));
  const projection = Float64Array.from(randomArray(n * c, 24));
  const out = new Float64Array(n * c), mean = new Float64Array(n), rstd = new Float64Array(n);
  const loss = () => {
    layernormForwardCpu(out, mean, rstd, inp, weight, bias, n, c);
    return projectedLoss(out, projection);
  };
  loss();
  const dinp = new Float64Array(n * c), dweight = new Float64Array(c), dbias = new Float64Array(c);
  layernormBackwardCpu(dinp, dweight, dbias, projection, inp, weight, mean, rstd, n, c);
  assertGradientMatches(dinp, loss, inp);
  assertGradientMatches(dweight, loss, weight);
  assertGradientMatches(dbias, loss, bias);
});

Deno.test("layernormForward() rejects a buffer too small for the shape", async () => {
  const gpu = await testGpu();
  const small = gpu.acquire(16);
  await assert.rejects(
    layernormForward(
      gpu,
      {
        out: small,
        mean: small,
        rstd: small,
        inp: small,
        weight: small,
        bias: small,
      },
      10,
      48,
    ),
    /The out buffer holds 256 bytes but the shape needs 1920/,
  );
  gpu.release(small);
});
