import assert from "node:assert/strict";
import {
  embeddingBackward,
  embeddingBackwardCpu,
  embeddingForward,
  embeddingForwardCpu,
  groupPositionsByToken,
} from "../../kernels/embedding.ts";
import { assertGradientMatches, projectedLoss } from "../_finite_diff.ts";
import type { Gpu } from "../../kernels/device.ts";
import {
  assertClose,
  countDispatches,
  randomArray,
  seededRandom,
  testGpu,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

const B = 3, T = 37, V = 1000, MAX_T = 40;

/** Tokens with many repeats (most from 0..19), so several positions share a dwte row. */
function makeTokens(n: number, v: number, seed: number): Int32Array {
  const random = seededRandom(seed);
  return Int32Array.from(
    { length: n },
    () => Math.floor(random() * (random() < 0.7 ? 20 : v)),
  );
}

/** One GPU backward from the given starting gradients; returns (dwte, dwpe). */
async function gpuBackward(
  gpu: Gpu,
  C: number,
  tokens: Int32Array,
  dout: Float32Array,
  dwte: Float32Array,
  dwpe: Float32Array,
): Promise<[Float32Array, Float32Array]> {
  const [dwteBuf, dwpeBuf, doutBuf] = [dwte, dwpe, dout].map((a) => gpu.upload(a));
  await embeddingBackward(gpu, dwteBuf, dwpeBuf, doutBuf, tokens, B, T, C, V, MAX_T);
  const result: [Float32Array, Float32Array] = [
    await gpu.readF32(dwteBuf, V * C),
    await gpu.readF32(dwpeBuf, MAX_T * C),
  ];
  for (const b of [dwteBuf, dwpeBuf, doutBuf]) gpu.release(b);
  return result;
}

// C = 48 is read as vec4s, C = 45 as floats.
for (const C of [48, 45]) {
  Deno.test(`embeddingForward() matches its CPU reference exactly (C=${C})`, async () => {
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

  Deno.test(`embeddingForward() writes NaN for a token outside the vocabulary (C=${C})`, async () => {
    const gpu = await testGpu();
    const tokens = gpu.upload(new Int32Array([1, V, -1])), out = gpu.acquire(3 * C * 4);
    const wte = gpu.upload(randomArray(V * C, 4)), wpe = gpu.upload(randomArray(3 * C, 5));
    await embeddingForward(gpu, out, tokens, wte, wpe, 1, 3, C, V);
    const got = await gpu.readF32(out, 3 * C);
    assert.ok(got.subarray(0, C).every(Number.isFinite));
    assert.ok(got.subarray(C).every(Number.isNaN));
    for (const b of [tokens, out, wte, wpe]) gpu.release(b);
  });

  Deno.test(`embeddingBackward() accumulates exactly like its CPU reference (C=${C})`, async () => {
    const tokens = makeTokens(B * T, V, 6), dout = randomArray(B * T * C, 7);
    const dwte = randomArray(V * C, 8), dwpe = randomArray(MAX_T * C, 9);
    const gpu = await testGpu();
    let got: [Float32Array, Float32Array] = [dwte, dwpe];
    const counts = await countDispatches(gpu, async () => {
      got = await gpuBackward(gpu, C, tokens, dout, dwte, dwpe);
    });
    const [gotDwte, gotDwpe] = got;
    // dout fits one binding: the position rows ride along with the first token launch.
    assert.equal(counts.get("embedding_backward_position"), undefined);
    // Same additions in the same order, so the same float32 bits.
    embeddingBackwardCpu(dwte, dwpe, dout, tokens, B, T, C);
    assertClose(gotDwte, dwte, { atol: 0, rtol: 0 });
    assertClose(gotDwpe, dwpe, { atol: 0, rtol: 0 });
  });

  Deno.test(`embeddingBackward() gives the same bits on every run (C=${C})`, async () => {
    const tokens = makeTokens(B * T, V, 10), dout = randomArray(B * T * C, 11);
    const zerosWte = new Float32Array(V * C), zerosWpe = new Float32Array(MAX_T * C);
    const first = await gpuBackward(await testGpu(), C, tokens, dout, zerosWte, zerosWpe);
    const second = await gpuBackward(await testGpu(), C, tokens, dout, zerosWte, zerosWpe);
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(new Uint32Array(first[i].buffer), new Uint32Array(second[i].buffer));
    }
  });
}

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

for (const c of [48, 45]) {
  Deno.test(`embedding forward and backward split over a 16 KiB binding limit (C=${c})`, async () => {
    const gpu = await testGpuWithBindingLimit(16384);
    // wte: 84 rows a binding, so 12 vocabulary ranges; out and dout: 2 parts of rows; dout as
    // (B, T*C) batch rows: 2 parts.
    const tokens = makeTokens(B * T, V, 15);
    tokens.set([0, 83, 84, 999, 84, 83], 50);
    const wte = randomArray(V * c, 16), wpe = randomArray(MAX_T * c, 17);
    const dout = randomArray(B * T * c, 18);
    const expected = new Float32Array(B * T * c);
    embeddingForwardCpu(expected, tokens, wte, wpe, B, T, c);
    const [tokensBuf, wteBuf, wpeBuf, doutBuf] = [tokens, wte, wpe, dout].map((a) => gpu.upload(a));
    const out = gpu.acquire(B * T * c * 4);
    const forward = await countDispatches(
      gpu,
      () => embeddingForward(gpu, out, tokensBuf, wteBuf, wpeBuf, B, T, c, V, MAX_T),
    );
    assert.equal(forward.get("embedding_forward"), 2 * 12);
    assertClose(await gpu.readF32(out, B * T * c), expected, { atol: 0, rtol: 0 });

    // The wte buffer as dwte: the backward adds dout rows onto it.
    const dwpe = gpu.upload(new Float32Array(MAX_T * c));
    const backward = await countDispatches(
      gpu,
      () => embeddingBackward(gpu, wteBuf, dwpe, doutBuf, tokens, B, T, c, V, MAX_T),
    );
    assert.equal(backward.get("embedding_backward_position"), 2);
    assert.ok(backward.get("embedding_backward_token")! > 2, "token ranges were split");
    const dwpeExpected = new Float32Array(MAX_T * c);
    embeddingBackwardCpu(wte, dwpeExpected, dout, tokens, B, T, c);
    assertClose(await gpu.readF32(wteBuf, V * c), wte, { atol: 0, rtol: 0 });
    assertClose(await gpu.readF32(dwpe, MAX_T * c), dwpeExpected, { atol: 0, rtol: 0 });
    for (const buffer of [tokensBuf, wteBuf, wpeBuf, doutBuf, out, dwpe]) gpu.release(buffer);
  });
}
