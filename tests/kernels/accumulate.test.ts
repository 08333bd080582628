import { accumulate, accumulateCpu } from "../../kernels/accumulate.ts";
import assert from "node:assert/strict";
import {
  assertClose,
  countDispatches,
  randomArray,
  testGpu,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

for (const n of [1, 255, 1000, 70_001]) {
  Deno.test(`accumulate() matches its CPU reference for n=${n}`, async () => {
    const gpu = await testGpu();
    const dst = randomArray(n, 3), src = randomArray(n, 4);
    const dstBuffer = gpu.upload(dst), srcBuffer = gpu.upload(src);
    await accumulate(gpu, dstBuffer, srcBuffer, n);
    accumulateCpu(dst, src);
    assertClose(await gpu.readF32(dstBuffer, n), dst, { atol: 0, rtol: 0 });
    gpu.release(dstBuffer);
    gpu.release(srcBuffer);
  });
}

Deno.test("accumulate() splits over a 4 KiB binding limit", async () => {
  const gpu = await testGpuWithBindingLimit(4096);
  const n = 1923; // 1920 floats in two parts of 960, then a 3-float tail
  const dst = randomArray(n, 5), src = randomArray(n, 6);
  const dstBuffer = gpu.upload(dst), srcBuffer = gpu.upload(src);
  const counts = await countDispatches(gpu, () => accumulate(gpu, dstBuffer, srcBuffer, n));
  assert.equal(counts.get("accumulate"), 3);
  accumulateCpu(dst, src);
  assertClose(await gpu.readF32(dstBuffer, n), dst, { atol: 0, rtol: 0 });
  gpu.release(dstBuffer);
  gpu.release(srcBuffer);
});
