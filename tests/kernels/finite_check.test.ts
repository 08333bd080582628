import assert from "node:assert/strict";
import { poisonNormUnlessFinite, poisonNormUnlessFiniteCpu } from "../../kernels/finite_check.ts";
import { testGpu } from "../_gpu.ts";

Deno.test("poisonNormUnlessFinite() makes the norm NaN when any loss is NaN or infinite, and only then", async () => {
  const gpu = await testGpu();
  // 20,011 losses: several windows under the tests' forced 64 KiB binding limit, an odd tail.
  const n = 20011;
  const cases: Array<[string, number | null]> = [
    ["all finite", null],
    ["a NaN in the middle", NaN],
    ["+infinity last", Infinity],
    ["-infinity first", -Infinity],
  ];
  for (const [name, bad] of cases) {
    const losses = new Float32Array(n).map((_, i) => 1e30 * Math.sin(i)); // large but finite
    if (bad !== null) {
      const at = name.includes("last") ? n - 1 : name.includes("first") ? 0 : 12345;
      losses[at] = bad;
    }
    const lossBuffer = gpu.upload(losses);
    const norm = gpu.upload(new Float32Array([2.5]));
    try {
      await poisonNormUnlessFinite(gpu, norm, lossBuffer, n);
      const [got] = await gpu.readF32(norm, 1);
      const want = poisonNormUnlessFiniteCpu(2.5, losses);
      assert.ok(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)), name);
      assert.equal(Number.isNaN(got), bad !== null, name);
    } finally {
      gpu.release(lossBuffer);
      gpu.release(norm);
    }
  }
});
