import assert from "node:assert/strict";
import { countedPositions, crossEntropy, crossEntropyCpu } from "../../kernels/cross_entropy.ts";
import { assertGradientMatches } from "../_finite_diff.ts";
import {
  assertClose,
  countDispatches,
  randomArray,
  seededRandom,
  testGpu,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

/** Logits of spread ±8, with one row dominated by a huge value (a naive softmax overflows). */
function makeLogits(n: number, v: number, seed: number): Float32Array {
  const logits = randomArray(n * v, seed).map((x) => x * 8);
  if (n > 2) logits[2 * v + 5] = 1e4;
  return logits;
}

function makeTargets(n: number, v: number, seed: number): Int32Array {
  const random = seededRandom(seed);
  const targets = Int32Array.from({ length: n }, () => Math.floor(random() * v));
  for (let i = 3; i < n; i += 10) targets[i] = -1; // padding
  if (n > 2) targets[2] = 5; // the huge logit is the target: loss ~0
  return targets;
}

const N = 3 * 37;

// V = 1000 is read as vec4s, V = 997 as floats; each with a row per invocation (the CPU
// adapter's layout) and per workgroup (a GPU's).
for (const V of [1000, 997]) {
  for (const mode of ["separate", "in place", "loss only"] as const) {
    for (const masked of [false, true]) {
      Deno.test(
        `crossEntropy() matches its CPU reference (V=${V}, ${mode}${masked ? ", masked" : ""})`,
        async () => {
          const gpu = await testGpu();
          const logits = makeLogits(N, V, 1), targets = makeTargets(N, V, 2);
          // The first 40 positions are a "prompt" that does not count.
          const mask = masked ? Uint32Array.from({ length: N }, (_, i) => i < 40 ? 0 : 1) : null;
          const scale = 1 / countedPositions(targets, mask);
          const losses = new Float32Array(N), dlogits = new Float32Array(N * V);
          crossEntropyCpu(losses, dlogits, logits, targets, mask, scale, N, V);
          for (const perRow of ["invocation", "workgroup"] as const) {
            const logitsBuf = gpu.upload(logits), targetsBuf = gpu.upload(targets);
            const maskBuf = mask ? gpu.upload(mask) : null, lossesBuf = gpu.acquire(N * 4);
            const dBuf = mode === "separate"
              ? gpu.upload(randomArray(N * V, 3))
              : mode === "in place"
              ? logitsBuf
              : null;
            const buffers = {
              losses: lossesBuf,
              dlogits: dBuf,
              logits: logitsBuf,
              targets: targetsBuf,
              mask: maskBuf,
            };
            await crossEntropy(gpu, buffers, scale, N, V, { perRow });
            assertClose(await gpu.readF32(lossesBuf, N), losses, { atol: 2e-5, rtol: 1e-5 });
            if (dBuf) {
              assertClose(await gpu.readF32(dBuf, N * V), dlogits, { atol: 1e-8, rtol: 1e-4 });
            } else assertClose(await gpu.readF32(logitsBuf, N * V), logits, { atol: 0, rtol: 0 });
            for (const b of [logitsBuf, targetsBuf, lossesBuf, maskBuf, dBuf]) {
              if (b && b !== logitsBuf) gpu.release(b);
            }
            gpu.release(logitsBuf);
          }
        },
      );
    }
  }
}

Deno.test("crossEntropy() gives NaN loss and zero gradient for a target past the vocabulary", async () => {
  const gpu = await testGpu();
  const n = 2, v = 7;
  const logits = gpu.upload(randomArray(n * v, 4)), targets = gpu.upload(new Int32Array([3, 7]));
  const losses = gpu.acquire(n * 4), dlogits = gpu.acquire(n * v * 4);
  await crossEntropy(gpu, { losses, dlogits, logits, targets }, 0.5, n, v); // no mask
  const l = await gpu.readF32(losses, n), d = await gpu.readF32(dlogits, n * v);
  assert.ok(l[0] > 0 && Number.isNaN(l[1]), `losses were ${l}`);
  assert.deepEqual([...d.subarray(v)], new Array(v).fill(0));
  for (const b of [logits, targets, losses, dlogits]) gpu.release(b);
});

Deno.test("crossEntropy() backward matches finite differences of the masked mean loss", () => {
  const n = 5, v = 7;
  const logits = Float64Array.from(randomArray(n * v, 5), (x) => x * 3);
  const targets = new Int32Array([1, -1, 6, 0, 3]);
  const mask = new Uint32Array([1, 1, 1, 0, 1]);
  const scale = 1 / countedPositions(targets, mask);
  assert.equal(scale, 1 / 3);
  const losses = new Float64Array(n);
  const meanLoss = () => {
    crossEntropyCpu(losses, null, logits, targets, mask, scale, n, v);
    return losses.reduce((a, b) => a + b, 0) * scale;
  };
  const dlogits = new Float64Array(n * v);
  crossEntropyCpu(losses, dlogits, logits, targets, mask, scale, n, v);
  assertGradientMatches(dlogits, meanLoss, logits);
});

for (const v of [1000, 997]) {
  Deno.test(`crossEntropy() splits V=${v} logits over a 64 KiB binding limit in row parts`, async () => {
    const gpu = await testGpuWithBindingLimit(65536);
    // 111 rows of about 4 KB: 16 rows a binding, so 7 parts.
    const n = 111;
    const logits = makeLogits(n, v, 6), targets = makeTargets(n, v, 7);
    const scale = 1 / countedPositions(targets);
    const losses = new Float32Array(n), dlogits = new Float32Array(n * v);
    crossEntropyCpu(losses, dlogits, logits, targets, null, scale, n, v);
    for (const perRow of ["invocation", "workgroup"] as const) {
      const logitsBuf = gpu.upload(logits), targetsBuf = gpu.upload(targets);
      const lossesBuf = gpu.acquire(n * 4);
      const counts = await countDispatches(
        gpu,
        () =>
          crossEntropy(
            gpu,
            {
              losses: lossesBuf,
              dlogits: logitsBuf,
              logits: logitsBuf,
              targets: targetsBuf,
            },
            scale,
            n,
            v,
            { perRow },
          ),
      );
      assert.equal(counts.get("cross_entropy_in_place"), 7);
      assertClose(await gpu.readF32(lossesBuf, n), losses, { atol: 2e-5, rtol: 1e-5 });
      assertClose(await gpu.readF32(logitsBuf, n * v), dlogits, { atol: 1e-8, rtol: 1e-4 });
      for (const b of [logitsBuf, targetsBuf, lossesBuf]) gpu.release(b);
    }
  });
}

// A row per invocation reads whole vec4s and single floats at the ends of a row: rows shorter
// than a vec4, rows inside one vec4, rows that start at each offset within a vec4.
for (const v of [1, 2, 3, 5, 6, 13, 19]) {
  Deno.test(`crossEntropy() matches its CPU reference on rows of V=${v} at every vec4 offset`, async () => {
    const gpu = await testGpu();
    const n = 11;
    const logits = makeLogits(n, v, 8);
    const targets = Int32Array.from({ length: n }, (_, i) => i % 5 === 3 ? -1 : (i * 7) % v);
    const scale = 1 / countedPositions(targets);
    for (const mode of ["separate", "in place"] as const) {
      const losses = new Float32Array(n), dlogits = new Float32Array(n * v);
      crossEntropyCpu(losses, dlogits, logits, targets, null, scale, n, v);
      for (const perRow of ["invocation", "workgroup"] as const) {
        const logitsBuf = gpu.upload(logits), targetsBuf = gpu.upload(targets);
        const lossesBuf = gpu.acquire(n * 4);
        const dBuf = mode === "separate" ? gpu.upload(randomArray(n * v, 10)) : logitsBuf;
        const buffers = {
          losses: lossesBuf,
          dlogits: dBuf,
          logits: logitsBuf,
          targets: targetsBuf,
        };
        await crossEntropy(gpu, buffers, scale, n, v, { perRow });
        assertClose(await gpu.readF32(lossesBuf, n), losses, { atol: 2e-5, rtol: 1e-5 });
        assertClose(await gpu.readF32(dBuf, n * v), dlogits, { atol: 1e-8, rtol: 1e-4 });
        for (const b of new Set([logitsBuf, targetsBuf, lossesBuf, dBuf])) gpu.release(b);
      }
    }
  });
}

Deno.test("crossEntropy() reads floats when a buffer of exactly N·V floats cannot be read as vec4s", async () => {
  const gpu = await testGpu();
  const n = 9, v = 103; // N·V = 927 floats: the last vec4 would end past the buffer
  const logits = makeLogits(n, v, 11), targets = makeTargets(n, v, 12);
  const scale = 1 / countedPositions(targets);
  const losses = new Float32Array(n), dlogits = new Float32Array(n * v);
  crossEntropyCpu(losses, dlogits, logits, targets, null, scale, n, v);
  const exact = (data: Float32Array) => {
    const buffer = gpu.device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    gpu.write(buffer, data);
    return buffer;
  };
  for (const mode of ["separate", "in place"] as const) {
    const logitsBuf = exact(logits), targetsBuf = gpu.upload(targets);
    const lossesBuf = gpu.acquire(n * 4);
    const dBuf = mode === "separate" ? exact(new Float32Array(n * v)) : logitsBuf;
    const buffers = { losses: lossesBuf, dlogits: dBuf, logits: logitsBuf, targets: targetsBuf };
    await crossEntropy(gpu, buffers, scale, n, v, { perRow: "invocation" });
    assertClose(await gpu.readF32(lossesBuf, n), losses, { atol: 2e-5, rtol: 1e-5 });
    assertClose(await gpu.readF32(dBuf, n * v), dlogits, { atol: 1e-8, rtol: 1e-4 });
    await gpu.sync();
    for (const b of new Set([logitsBuf, dBuf])) b.destroy();
    gpu.release(targetsBuf);
    gpu.release(lossesBuf);
  }
});
