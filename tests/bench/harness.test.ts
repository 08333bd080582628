import assert from "node:assert/strict";
import { type BenchCase, measure } from "../../bench/_harness.ts";
import { copyCeilingCases, copyKernel } from "../../bench/copy_ceiling.ts";
import { runElementwise } from "../../kernels/_parts.ts";
import { testGpu } from "../_gpu.ts";

Deno.test("the copy ceiling copies, and later memory-bound cases report their ratio to it", async () => {
  const gpu = await testGpu();
  // 1,027 floats: vec4s and a scalar tail.
  const src = Float32Array.from({ length: 1027 }, (_, i) => i * 0.5 - 7);
  const input = gpu.upload(src), out = gpu.acquire(src.length * 4);
  await runElementwise(gpu, copyKernel, { out, src: input }, src.length);
  assert.deepEqual(await gpu.readF32(out, src.length), src);
  gpu.release(input);
  gpu.release(out);

  const ceiling = await measure(gpu, copyCeilingCases[0]);
  assert.ok(ceiling.gbps! > 0);
  assert.equal(ceiling.ofCopyCeiling, undefined, "a ceiling is not rated against itself");
  // The same copy as an ordinary case: rated against the best ceiling so far, this one.
  const plain: BenchCase = { ...copyCeilingCases[0], kernel: "copy", ceiling: false };
  const record = await measure(gpu, plain);
  assert.equal(record.ofCopyCeiling, Math.round((record.gbps! / ceiling.gbps!) * 100) / 100);
  assert.equal(record.ofCeiling, undefined, "no FMA ceiling was measured, nor has it GFLOP/s");
});
