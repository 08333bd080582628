import assert from "node:assert/strict";
import { globalNorm, globalNormCpu } from "../../kernels/grad_norm.ts";
import { assertClose, randomArray, testGpu } from "../_gpu.ts";

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

Deno.test("globalNorm() of nothing is zero", async () => {
  const gpu = await testGpu();
  const out = gpu.upload(new Float32Array([7]));
  await globalNorm(gpu, out, []);
  assert.deepEqual([...await gpu.readF32(out, 1)], [0]);
  gpu.release(out);
});
