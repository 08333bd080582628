import { accumulate, accumulateCpu } from "../../kernels/accumulate.ts";
import { assertClose, randomArray, testGpu } from "../_gpu.ts";

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
