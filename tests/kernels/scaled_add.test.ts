import { scaledAdd, scaledAddCpu } from "../../kernels/scaled_add.ts";
import { assertClose, randomArray, testGpu } from "../_gpu.ts";

// 1 and 7 are below one workgroup, 255/257 straddle it, and the last needs a second grid row
// (more than 65535 workgroups of 256).
for (const n of [1, 7, 255, 257, 100_003, 65_535 * 256 + 300]) {
  Deno.test(`scaledAdd() matches its CPU reference for n=${n}`, async () => {
    const gpu = await testGpu();
    const a = randomArray(n, 1), b = randomArray(n, 2);
    const expected = new Float32Array(n);
    scaledAddCpu(expected, a, b, -0.75);
    const aBuf = gpu.upload(a), bBuf = gpu.upload(b), out = gpu.acquire(n * 4);
    await scaledAdd(gpu, out, aBuf, bBuf, -0.75, n);
    assertClose(await gpu.readF32(out, n), expected, { atol: 1e-6, rtol: 1e-6 });
    for (const buffer of [aBuf, bBuf, out]) gpu.release(buffer);
  });
}
