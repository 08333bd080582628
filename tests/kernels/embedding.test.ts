import assert from "node:assert/strict";
import {
  embeddingBackward,
  embeddingBackwardCpu,
  embeddingForward,
  embeddingForwardCpu,
  groupPositionsByToken,
} from "../../kernels/embedding.ts";
import { assertGradientMatches, projectedLoss } from "../_finite_diff.ts";
import { assertClose, randomArray, seededRandom, testGpu } from "../_gpu.ts";

const B = 3, T = 37, C = 48, V = 1000, MAX_T = 40;

/** Tokens with many repeats (most from 0..19), so several positions share a dwte row. */
function makeTokens(n: number, v: number, seed: number): Int32Array {
  const random = seededRandom(seed);
  return Int32Array.from(
    { length: n },
    () => Math.floor(random() * (random() < 0.7 ? 20 : v)),
  );
}

Deno.test("embeddingForward() matches its CPU reference exactly", async () => {
  const gpu = await testGpu();
  const tokens = makeTokens(B * T, V, 1);
  const wte = randomArray(V * C, 2), wpe = randomArray(MAX_T * C, 3);
  const expected = new Float32Array(B * T * C);
  embeddingForwardCpu(expected, tokens, wte, wpe, B, T, C);
  const bufs = [tokens, wte, wpe].map((a) => gpu.upload(a));
  const out = gpu.acquire(B * T * C * 4);
  await embeddingForward(gpu, out, bufs[0], bufs[1], bufs[2], B, T, C, V, MAX_T);
  assertClose(await gpu.readF32(out, B * T * C), expected, { atol: 0, rtol: 0 });
  for (const b of [...bufs, out]) gpu.release(b);
});

Deno.test("embeddingForward() writes NaN for a token outside the vocabulary", async () => {
  const gpu = await testGpu();
  const tokens = gpu.upload(new Int32Array([1, V, -1])), out = gpu.acquire(3 * C * 4);
  const wte = gpu.upload(randomArray(V * C, 4)), wpe = gpu.upload(randomArray(3 * C, 5));
  await embeddingForward(gpu, out, tokens, wte, wpe, 1, 3, C, V);
  const got = await gpu.readF32(out, 3 * C);
  assert.ok(got.subarray(0, C).every(Number.isFinite));
  assert.ok(got.subarray(C).every(Number.isNaN));
  for (const b of [tokens, out, wte, wpe]) gpu.release(b);
});

/** One GPU backward from the given starting gradients; returns (dwte, dwpe). */
async function gpuBackward(
  tokens: Int32Array,
  dout: Float32Array,
  dwte: Float32Array,
  dwpe: Float32Array,
): Promise<[Float32Array, Float32Array]> {
  const gpu = await testGpu();
  const [dwteBuf, dwpeBuf, doutBuf] = [dwte, dwpe, dout].map((a) => gpu.upload(a));
  await embeddingBackward(gpu, dwteBuf, dwpeBuf, doutBuf, tokens, B, T, C, V, MAX_T);
  const result: [Float32Array, Float32Array] = [
    await gpu.readF32(dwteBuf, V * C),
    await gpu.readF32(dwpeBuf, MAX_T * C),
  ];
  for (const b of [dwteBuf, dwpeBuf, doutBuf]) gpu.release(b);
  return result;
}

Deno.test("embeddingBackward() accumulates exactly like its CPU reference", async () => {
  const tokens = makeTokens(B * T, V, 6), dout = randomArray(B * T * C, 7);
  const dwte = randomArray(V * C, 8), dwpe = randomArray(MAX_T * C, 9);
  const [gotDwte, gotDwpe] = await gpuBackward(tokens, dout, dwte, dwpe);
  // Same additions in the same order, so the same float32 bits.
  embeddingBackwardCpu(dwte, dwpe, dout, tokens, B, T, C);
  assertClose(gotDwte, dwte, { atol: 0, rtol: 0 });
  assertClose(gotDwpe, dwpe, { atol: 0, rtol: 0 });
});

Deno.test("embeddingBackward() gives the same bits on every run", async () => {
  const tokens = makeTokens(B * T, V, 10), dout = randomArray(B * T * C, 11);
  const zerosWte = new Float32Array(V * C), zerosWpe = new Float32Array(MAX_T * C);
  const first = await gpuBackward(tokens, dout, zerosWte, zerosWpe);
  const second = await gpuBackward(tokens, dout, zerosWte, zerosWpe);
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(new Uint32Array(first[i].buffer), new Uint32Array(second[i].buffer));
  }
});

Deno.test("embeddingBackward() matches finite differences", () => {
  const b = 2, t = 3, c = 4, v = 5;
  const tokens = new Int32Array([1, 3, 1, 1, 0, 3]);
  const wte = Float64Array.from(randomArray(v * c, 12)),
    wpe = Float64Array.from(randomArray(t * c, 13));
  const projection = Float64Array.from(randomArray(b * t * c, 14));
  const out = new Float64Array(b * t * c);
  const loss = () => {
    embeddingForwardCpu(out, tokens, wte, wpe, b, t, c);
    return projectedLoss(out, projection);
  };
  const dwte = new Float64Array(v * c), dwpe = new Float64Array(t * c);
  embeddingBackwardCpu(dwte, dwpe, projection, tokens, b, t, c);
  assertGradientMatches(dwte, loss, wte);
  assertGradientMatches(dwpe, loss, wpe);
});

Deno.test("groupPositionsByToken() lists each token's positions in order", () => {
  const groups = groupPositionsByToken(new Int32Array([7, 2, 7, 9, 2, 7]), 10, 1, 5);
  assert.deepEqual([...groups.tokens], [2, 7, 9]);
  assert.deepEqual([...groups.offsets], [0, 2, 4, 5]);
  assert.deepEqual([...groups.positions], [0, 3, 1, 4, 2]);
  assert.throws(
    () => groupPositionsByToken(new Int32Array([3, 10]), 10),
    /Token 10 at position 1 is outside the vocabulary \[0, 10\)/,
  );
});

Deno.test("embedding forward and backward handle a wte over the 128 MiB binding limit", async () => {
  const gpu = await testGpu();
  // GPT-2's 50257 × 768 wte is 154 MB: two vocabulary ranges (43690 rows fit one binding).
  const v = 50257, c = 768, b = 2, t = 4;
  const tokens = new Int32Array([0, 43689, 43690, 50256, 43690, 17, 50256, 43689]);
  const wte = new Float32Array(v * c);
  for (let i = 0; i < wte.length; i++) wte[i] = (i % 9973) / 9973 - 0.5;
  const wpe = randomArray(t * c, 15), dout = randomArray(b * t * c, 16);
  const expected = new Float32Array(b * t * c);
  embeddingForwardCpu(expected, tokens, wte, wpe, b, t, c);
  const [tokensBuf, wteBuf, wpeBuf, doutBuf] = [tokens, wte, wpe, dout].map((a) => gpu.upload(a));
  const out = gpu.acquire(b * t * c * 4);
  await embeddingForward(gpu, out, tokensBuf, wteBuf, wpeBuf, b, t, c, v);
  assertClose(await gpu.readF32(out, b * t * c), expected, { atol: 0, rtol: 0 });

  // Reuse the wte buffer as dwte: the backward adds dout rows onto it.
  const dwpe = gpu.upload(new Float32Array(t * c));
  await embeddingBackward(gpu, wteBuf, dwpe, doutBuf, tokens, b, t, c, v);
  const dwpeExpected = new Float32Array(t * c);
  embeddingBackwardCpu(wte, dwpeExpected, dout, tokens, b, t, c);
  for (const token of new Set(tokens)) {
    assertClose(
      await gpu.readF32(wteBuf, c, token * c),
      wte.subarray(token * c, (token + 1) * c),
      { atol: 0, rtol: 0 },
    );
  }
  assertClose(await gpu.readF32(wteBuf, c, 18 * c), wte.subarray(18 * c, 19 * c), {
    atol: 0,
    rtol: 0,
  });
  assertClose(await gpu.readF32(dwpe, t * c), dwpeExpected, { atol: 0, rtol: 0 });
  for (const buffer of [tokensBuf, wteBuf, wpeBuf, doutBuf, out, dwpe]) gpu.release(buffer);
});
