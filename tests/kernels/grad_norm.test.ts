import assert from "node:assert/strict";
import { globalNorm, globalNormCpu } from "../../kernels/grad_norm.ts";
import {
  assertClose,
  countDispatches,
  randomArray,
  testGpu,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

Deno.test("globalNorm() matches its CPU reference over several tensors and ranges", async () => {
  const gpu = await testGpu();
  // Sizes below, at and past one 4096-element chunk; one tensor is a range of a flat buffer.
  const a = randomArray(111 * 48, 1), b = randomArray(1, 2), c = randomArray(4096, 3);
  const flat = randomArray(10_007, 4);
  const [aBuf, bBuf, cBuf, flatBuf] = [a, b, c, flat].map((x) => gpu.upload(x));
  const out = gpu.acquire(4);
  await globalNorm(gpu, out, [
    { buffer: aBuf, count: a.length },
    { buffer: bBuf, count: 1 },
    { buffer: cBuf, count: c.length },
    { buffer: flatBuf, first: 5, count: 10_000 },
  ]);
  const expected = globalNormCpu([a, b, c, flat.subarray(5, 10_005)]);
  assertClose(await gpu.readF32(out, 1), [expected], { atol: 0, rtol: 1e-5 });
  for (const buffer of [aBuf, bBuf, cBuf, flatBuf, out]) gpu.release(buffer);
});

Deno.test("globalNorm() gives the same bits on every run", async () => {
  const gpu = await testGpu();
  const x = gpu.upload(randomArray(300_001, 5)), out = gpu.acquire(4);
  const runs: number[] = [];
  for (let run = 0; run < 3; run++) {
    await globalNorm(gpu, out, [{ buffer: x, count: 300_001 }]);
    runs.push(new Uint32Array(await gpu.read(out, 0, 4))[0]);
  }
  assert.deepEqual(runs, [runs[0], runs[0], runs[0]]);
  gpu.release(x);
  gpu.release(out);
});

Deno.test("globalNorm() gives the same bits for a tensor read four floats a load or one", async () => {
  // The same 10_003 values as a buffer of their own (four floats a load, but for the last 3) and
  // a range starting at float 1 of another (one float a load): the same sum, bit for bit.
  const gpu = await testGpu();
  for (const n of [10_000, 10_003, 4096 * 3]) {
    const x = randomArray(n, 7), shifted = new Float32Array(n + 1);
    shifted.set(x, 1);
    const [xBuf, shiftedBuf] = [x, shifted].map((a) => gpu.upload(a));
    const out = gpu.acquire(4);
    const bits = [];
    for (const range of [{ buffer: xBuf, count: n }, { buffer: shiftedBuf, first: 1, count: n }]) {
      await globalNorm(gpu, out, [range]);
      bits.push(new Uint32Array(await gpu.read(out, 0, 4))[0]);
    }
    assert.equal(bits[0], bits[1], `n = ${n}`);
    assertClose(await gpu.readF32(out, 1), [globalNormCpu([x])], { atol: 0, rtol: 1e-5 });
    for (const buffer of [xBuf, shiftedBuf, out]) gpu.release(buffer);
  }
});

Deno.test("globalNorm() of nothing is zero", async () => {
  const gpu = await testGpu();
  const out = gpu.upload(new Float32Array([7]));
  await globalNorm(gpu, out, []);
  assert.deepEqual([...await gpu.readF32(out, 1)], [0]);
  gpu.release(out);
});

Deno.test("globalNorm() takes many tensors in few launches, with the bits of split launches", async () => {
  // 40 tensors, some ranges of one flat buffer, sizes below and past a 4096-element chunk.
  const sizes = Array.from({ length: 40 }, (_, i) => [384, 1, 4096, 4097, 77, 10_000][i % 6]);
  const data = sizes.map((n, i) => randomArray(n, 10 + i));
  const flat = randomArray(20_000, 99);
  const norms = [];
  for (const limit of [0, 16 * 1024 + 1024]) {
    const gpu = await (limit ? testGpuWithBindingLimit(limit) : testGpu());
    const buffers = data.map((x) => gpu.upload(x));
    const flatBuffer = gpu.upload(flat);
    const ranges = [
      ...buffers.map((buffer, i) => ({ buffer, count: sizes[i] })),
      { buffer: flatBuffer, first: 3, count: 5000 },
      { buffer: flatBuffer, first: 5003, count: 14_000 },
    ];
    const out = gpu.acquire(4);
    const counts = await countDispatches(gpu, () => globalNorm(gpu, out, ranges));
    if (!limit) {
      const perLaunch = Math.min(16, gpu.device.limits.maxStorageBuffersPerShaderStage - 1);
      assert.deepEqual(Object.fromEntries(counts), {
        grad_norm_partials_tensors: Math.ceil(42 / perLaunch),
        grad_norm_final: 1,
      });
    } else assert.ok((counts.get("grad_norm_partials") ?? 0) > 10, JSON.stringify([...counts]));
    const expected = globalNormCpu([...data, flat.subarray(3, 5003), flat.subarray(5003, 19_003)]);
    assertClose(await gpu.readF32(out, 1), [expected], { atol: 0, rtol: 1e-5 });
    norms.push(new Uint32Array(await gpu.read(out, 0, 4))[0]);
    for (const buffer of [...buffers, flatBuffer, out]) gpu.release(buffer);
  }
  assert.equal(norms[0], norms[1], "split launches gave other bits");
});
