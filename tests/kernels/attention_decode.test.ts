import assert from "node:assert/strict";
import { attentionForwardCpu } from "../../kernels/attention.ts";
import { splitHeadsForwardCpu } from "../../kernels/attention_layout.ts";
import {
  attentionDecode,
  attentionDecodeCpu,
  type DecodeShape,
  kvCacheWrite,
  kvCacheWriteCpu,
} from "../../kernels/attention_decode.ts";
import type { Gpu } from "../../kernels/device.ts";
import {
  assertClose,
  countDispatches,
  randomArray,
  testGpuUncapped,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

interface Case {
  shape: DecodeShape;
  /** (R, 2): cache row and start of each step row. */
  slots: number[];
}

const label = ({ shape: s, slots }: Case) =>
  `R=${s.rows}, Tq=${s.time}, C=${s.channels}, NH=${s.heads}, maxT=${s.maxTime}, ` +
  `cache rows=${s.cacheRows}, slots=[${slots}]`;

/** The step's inputs (a cache already holding earlier positions) and the CPU's results. */
function reference({ shape, slots }: Case, seed: number) {
  const { rows: R, time: Tq, channels: C, maxTime, cacheRows } = shape;
  // Scores of a few units, so softmax rows are neither uniform nor one-hot.
  const qkv = randomArray(R * Tq * 3 * C, seed).map((x) => 2 * x);
  const k = randomArray(cacheRows * maxTime * C, seed + 1).map((x) => 2 * x);
  const v = randomArray(cacheRows * maxTime * C, seed + 2);
  const kAfter = k.slice(), vAfter = v.slice(), y = new Float32Array(R * Tq * C);
  const cache = { kCache: kAfter, vCache: vAfter, qkv, slots };
  kvCacheWriteCpu(cache, shape);
  attentionDecodeCpu({ y, ...cache }, shape);
  return { qkv, k, v, kAfter, vAfter, y };
}

async function onGpu(gpu: Gpu, { shape, slots }: Case, ref: ReturnType<typeof reference>) {
  const { rows: R, time: Tq, channels: C, maxTime, cacheRows } = shape;
  const [qkv, k, v] = [ref.qkv, ref.k, ref.v].map((a) => gpu.upload(a));
  const slotBuffer = gpu.upload(Uint32Array.from(slots));
  const y = gpu.acquire(R * Tq * C * 4);
  const cache = { kCache: k, vCache: v, qkv, slots: slotBuffer };
  await kvCacheWrite(gpu, cache, shape);
  await attentionDecode(gpu, { y, ...cache }, shape);
  const n = cacheRows * maxTime * C;
  const result = {
    y: await gpu.readF32(y, R * Tq * C),
    k: await gpu.readF32(k, n),
    v: await gpu.readF32(v, n),
  };
  for (const buffer of [qkv, k, v, slotBuffer, y]) gpu.release(buffer);
  return result;
}

const shape = (
  rows: number,
  time: number,
  channels: number,
  heads: number,
  maxTime: number,
  cacheRows: number,
): DecodeShape => ({ rows, time, channels, heads, maxTime, cacheRows });

// Head sizes 6 (scalar rows), 12 and 20 (vec4 rows, not powers of two), 64; one-token decode
// steps at scattered positions, prefills of odd lengths, rows out of cache order, a step that
// runs past maxT (the extra positions are dropped, their queries clamped to the last).
const cases: Case[] = [
  { shape: shape(3, 1, 18, 3, 37, 4), slots: [2, 0, 0, 17, 3, 36] },
  { shape: shape(2, 13, 24, 2, 29, 3), slots: [1, 0, 0, 9] },
  { shape: shape(1, 7, 60, 3, 33, 1), slots: [0, 30] },
  { shape: shape(5, 1, 128, 2, 70, 5), slots: [4, 69, 0, 0, 1, 40, 3, 1, 2, 63] },
  { shape: shape(2, 3, 36, 6, 9, 2), slots: [0, 2, 1, 6] },
];

for (const [index, c] of cases.entries()) {
  Deno.test(`kvCacheWrite() and attentionDecode() match their CPU references: ${label(c)}`, async () => {
    // A cache must fit one binding (generateBatch groups rows so it does; a test below checks
    // the refusal): these shapes are checked at the device's own limit, whatever the cap.
    const gpu = await testGpuUncapped();
    const ref = reference(c, 10 * index);
    const out = await onGpu(gpu, c, ref);
    assertClose(out.k, ref.kAfter, { atol: 0, rtol: 0 });
    assertClose(out.v, ref.vAfter, { atol: 0, rtol: 0 });
    assertClose(out.y, ref.y, { atol: 2e-5, rtol: 1e-4 });
  });
}

Deno.test("attentionDecodeCpu() of a prefill from position 0 is causal self-attention", () => {
  // The reference's meaning, checked against the fused attention's reference: a prompt written
  // into an empty cache row and attended over gives what full causal attention gives.
  const B = 2, T = 11, NH = 3, HS = 5, C = NH * HS, maxT = 16;
  const s = shape(B, T, C, NH, maxT, B), slots = [0, 0, 1, 0];
  const qkv = randomArray(B * T * 3 * C, 7).map((x) => 2 * x);
  const k = new Float64Array(B * maxT * C), v = new Float64Array(B * maxT * C);
  const y = new Float64Array(B * T * C);
  const cache = { kCache: k, vCache: v, qkv: Float64Array.from(qkv), slots };
  kvCacheWriteCpu(cache, s);
  attentionDecodeCpu({ y, ...cache }, s);

  const n = B * NH * T * HS;
  const [q, kh, vh, o] = [0, 1, 2, 3].map(() => new Float64Array(n));
  splitHeadsForwardCpu(q, kh, vh, Float64Array.from(qkv), B, T, C, NH);
  attentionForwardCpu(o, new Float64Array(B * NH * T), q, kh, vh, B, NH, T, HS);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        for (let d = 0; d < HS; d++) {
          const got = y[(b * T + t) * C + h * HS + d];
          const want = o[((b * NH + h) * T + t) * HS + d];
          assert.ok(Math.abs(got - want) < 1e-12, `b=${b} t=${t} h=${h} d=${d}: ${got} vs ${want}`);
        }
      }
    }
  }
});

Deno.test("attentionDecode() splits a step too large for one binding into row parts", async () => {
  // qkv rows of 5 x 3 x 24 floats = 1440 bytes: a 4096-byte binding holds two step rows.
  const gpu = await testGpuWithBindingLimit(4096);
  const c: Case = { shape: shape(5, 5, 24, 2, 8, 5), slots: [4, 0, 3, 2, 2, 3, 1, 1, 0, 0] };
  const ref = reference(c, 99);
  let out: Awaited<ReturnType<typeof onGpu>> | undefined;
  const counts = await countDispatches(gpu, async () => {
    out = await onGpu(gpu, c, ref);
  });
  assert.ok((counts.get("attention_decode") ?? 0) >= 3, `dispatches: ${[...counts]}`);
  assert.ok((counts.get("kv_cache_write") ?? 0) >= 3, `dispatches: ${[...counts]}`);
  assertClose(out!.k, ref.kAfter, { atol: 0, rtol: 0 });
  assertClose(out!.y, ref.y, { atol: 2e-5, rtol: 1e-4 });
});

Deno.test("kvCacheWrite() and attentionDecode() refuse a cache larger than one binding, saying what to do", async () => {
  const gpu = await testGpuWithBindingLimit(4096);
  const s = shape(1, 1, 64, 2, 32, 1); // 8 KiB per cache tensor
  const buffers = [64 * 3, 64, 64 * 32, 64 * 32, 2].map((n) => gpu.acquire(n * 4));
  const [qkv, y, k, v, slots] = buffers;
  await assert.rejects(
    () => attentionDecode(gpu, { y, qkv, kCache: k, vCache: v, slots }, s),
    /fewer rows per cache/,
  );
  await assert.rejects(
    () => kvCacheWrite(gpu, { qkv, kCache: k, vCache: v, slots }, s),
    /fewer rows per cache/,
  );
  for (const buffer of buffers) gpu.release(buffer);
});
