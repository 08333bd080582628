import assert from "node:assert/strict";
import {
  attentionBackward,
  attentionBackwardCpu,
  attentionForward,
  attentionForwardCpu,
  type AttentionOptions,
  CPU_TILES,
  gpuTiles,
  type TextureTiles,
} from "../../kernels/attention.ts";
import {
  mergeHeadsBackward,
  mergeHeadsBackwardCpu,
  mergeHeadsForward,
  mergeHeadsForwardCpu,
  splitHeadsBackward,
  splitHeadsBackwardCpu,
  splitHeadsForward,
  splitHeadsForwardCpu,
} from "../../kernels/attention_layout.ts";
import { attentionNaiveBackward, attentionNaiveForward } from "../../kernels/attention_naive.ts";
import type { Gpu } from "../../kernels/device.ts";
import { assertGradientMatches, projectedLoss } from "../_finite_diff.ts";
import {
  assertClose,
  countDispatches,
  randomArray,
  testGpu,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

interface Shape {
  B: number;
  NH: number;
  T: number;
  HS: number;
}

const label = ({ B, NH, T, HS }: Shape) => `B=${B}, NH=${NH}, T=${T}, HS=${HS}`;

/** Random q, k, v and dout of `shape`, and the CPU reference's outputs and gradients. */
function reference(shape: Shape, seed: number) {
  const { B, NH, T, HS } = shape;
  const n = B * NH * T * HS;
  // Scores of a few units, as trained attention has: softmax rows are neither uniform nor
  // one-hot, so the online rescaling is exercised.
  const q = randomArray(n, seed).map((x) => 2 * x);
  const k = randomArray(n, seed + 1).map((x) => 2 * x);
  const v = randomArray(n, seed + 2);
  const dout = randomArray(n, seed + 3);
  const o = new Float32Array(n), lse = new Float32Array(B * NH * T);
  attentionForwardCpu(o, lse, q, k, v, B, NH, T, HS);
  const dq = new Float32Array(n), dk = new Float32Array(n), dv = new Float32Array(n);
  attentionBackwardCpu(dq, dk, dv, dout, q, k, v, B, NH, T, HS);
  return { q, k, v, dout, o, lse, dq, dk, dv };
}

/** Runs the fused forward and backward on the GPU; returns o, lse, dq, dk, dv. */
async function fused(
  gpu: Gpu,
  shape: Shape,
  ref: ReturnType<typeof reference>,
  options: AttentionOptions = {},
) {
  const { B, NH, T, HS } = shape;
  const n = B * NH * T * HS;
  const [q, k, v, dout] = [ref.q, ref.k, ref.v, ref.dout].map((a) => gpu.upload(a));
  const [o, dq, dk, dv] = [0, 1, 2, 3].map(() => gpu.acquire(n * 4));
  const lse = gpu.acquire(B * NH * T * 4);
  await attentionForward(gpu, { o, lse, q, k, v }, B, NH, T, HS, options);
  await attentionBackward(gpu, { dq, dk, dv, dout, q, k, v, o, lse }, B, NH, T, HS, options);
  const result = {
    o: await gpu.readF32(o, n),
    lse: await gpu.readF32(lse, B * NH * T),
    dq: await gpu.readF32(dq, n),
    dk: await gpu.readF32(dk, n),
    dv: await gpu.readF32(dv, n),
  };
  for (const buffer of [q, k, v, dout, o, dq, dk, dv, lse]) gpu.release(buffer);
  return result;
}

// float32 on the GPU against float64 sums on the CPU, over up to 130 keys of |score| < ~8.
const VALUE_TOLERANCE = { atol: 2e-5, rtol: 1e-4 };
const GRADIENT_TOLERANCE = { atol: 5e-5, rtol: 2e-4 };

function assertMatches(
  actual: Awaited<ReturnType<typeof fused>>,
  ref: ReturnType<typeof reference>,
) {
  assertClose(actual.o, ref.o, VALUE_TOLERANCE);
  assertClose(actual.lse, ref.lse, VALUE_TOLERANCE);
  assertClose(actual.dq, ref.dq, GRADIENT_TOLERANCE);
  assertClose(actual.dk, ref.dk, GRADIENT_TOLERANCE);
  assertClose(actual.dv, ref.dv, GRADIENT_TOLERANCE);
}

Deno.test("attentionBackwardCpu() matches finite differences", () => {
  const [B, NH, T, HS] = [2, 2, 5, 3];
  const n = B * NH * T * HS;
  const q = Float64Array.from(randomArray(n, 11)), k = Float64Array.from(randomArray(n, 12));
  const v = Float64Array.from(randomArray(n, 13)), weights = randomArray(n, 14);
  const o = new Float64Array(n), lse = new Float64Array(B * NH * T);
  const loss = () => {
    attentionForwardCpu(o, lse, q, k, v, B, NH, T, HS);
    return projectedLoss(o, weights);
  };
  const dq = new Float64Array(n), dk = new Float64Array(n), dv = new Float64Array(n);
  attentionBackwardCpu(dq, dk, dv, Float64Array.from(weights), q, k, v, B, NH, T, HS);
  assertGradientMatches(dq, loss, q);
  assertGradientMatches(dk, loss, k);
  assertGradientMatches(dv, loss, v);
});

Deno.test("attentionForwardCpu() keeps each row's log-sum-exp and is causal", () => {
  const shape = { B: 1, NH: 2, T: 6, HS: 4 };
  const ref = reference(shape, 20);
  // Row 0 sees only key 0: its output is v_0 and its L is its one score.
  for (let h = 0; h < 2; h++) {
    const base = h * 6 * 4;
    assertClose(ref.o.subarray(base, base + 4), ref.v.subarray(base, base + 4), { atol: 1e-6 });
    let s = 0;
    for (let d = 0; d < 4; d++) s += ref.q[base + d] * ref.k[base + d];
    assertClose([ref.lse[h * 6]], [s / 2], { atol: 1e-6 });
  }
  // Changing the last key and value leaves every earlier row alone.
  const k2 = ref.k.slice(), v2 = ref.v.slice();
  for (let d = 0; d < 4; d++) k2[5 * 4 + d] += 1, v2[5 * 4 + d] -= 1;
  const o2 = new Float32Array(ref.o.length), lse2 = new Float32Array(ref.lse.length);
  attentionForwardCpu(o2, lse2, ref.q, k2, v2, 1, 2, 6, 4);
  assert.deepEqual(o2.subarray(0, 5 * 4), ref.o.subarray(0, 5 * 4));
  assert.notDeepEqual(o2.subarray(5 * 4, 6 * 4), ref.o.subarray(5 * 4, 6 * 4));
});

// Awkward shapes: T not a multiple of the 32 rows a workgroup owns, C=48; HS=64 with T=130;
// a single token; and HS=6, not a multiple of 4, which takes the scalar path.
const SHAPES: Shape[] = [
  { B: 3, NH: 3, T: 37, HS: 16 },
  { B: 1, NH: 2, T: 130, HS: 64 },
  { B: 2, NH: 3, T: 1, HS: 16 },
  { B: 1, NH: 2, T: 9, HS: 6 },
];

for (const shape of SHAPES) {
  Deno.test(`attentionForward() and attentionBackward() match the CPU for ${label(shape)}`, async () => {
    const gpu = await testGpu();
    const ref = reference(shape, 1);
    assertMatches(await fused(gpu, shape, ref), ref);
  });
}

// The texture kernels (a CPU adapter's default) on any adapter, with tiles that leave partial
// blocks and workgroups: 2 or 3 rows an invocation (16 or 24 rows a workgroup), blocks of 3 or
// 5 streamed rows. Head sizes 6 and 24 are not multiples of 16 floats (the pack kernel stages
// them, zero-padded to whole texels); 64 and 96 are (a buffer-to-texture copy).
const ODD_TEXTURE_TILES: TextureTiles = {
  forward: { rows: 3, block: 5 },
  query: { rows: 2, block: 3 },
  keyValue: { rows: 3, block: 2 },
};
for (
  const shape of [
    { B: 2, NH: 2, T: 37, HS: 24 },
    { B: 1, NH: 2, T: 9, HS: 6 },
    { B: 1, NH: 1, T: 70, HS: 96 },
    { B: 1, NH: 2, T: 41, HS: 64 },
  ]
) {
  Deno.test(`attention texture kernels match the CPU with odd tiles for ${label(shape)}`, async () => {
    const gpu = await testGpu();
    const ref = reference(shape, 6);
    assertMatches(await fused(gpu, shape, ref, { textureTiles: ODD_TEXTURE_TILES }), ref);
  });
}

Deno.test("attention texture kernels match the CPU when heads are split over texture layers", async () => {
  // 9 heads, at most 2 a texture: 5 launches of each kernel, the last of one head.
  const gpu = await testGpu();
  const shape = { B: 3, NH: 3, T: 21, HS: 8 };
  const ref = reference(shape, 8);
  let result: Awaited<ReturnType<typeof fused>> | undefined;
  const counts = await countDispatches(gpu, async () => {
    result = await fused(gpu, shape, ref, { textureTiles: ODD_TEXTURE_TILES, textureLayers: 2 });
  });
  assert.equal(counts.get("attention_forward_texture"), 5);
  assert.equal(counts.get("attention_backward_key_value_texture"), 5);
  assertMatches(result!, ref);
});

Deno.test("attention storage-buffer kernels match the CPU with the CPU tiles", async () => {
  // A CPU adapter runs them only when T is over a texture's height; test them on any adapter.
  const gpu = await testGpu();
  for (const shape of [{ B: 2, NH: 2, T: 37, HS: 16 }, { B: 1, NH: 2, T: 9, HS: 6 }]) {
    const ref = reference(shape, 7);
    assertMatches(await fused(gpu, shape, ref, { tiles: CPU_TILES }), ref);
  }
});

// A GPU's tiles, from its limits: this adapter's, and WebGPU's minimum of 16 KiB of workgroup
// storage (31 staged rows at HS=64) and a small 2 KiB (staging 4 rows at HS=64, 15 at HS=16),
// so the last tile of keys is partial; HS=6 stages rows of floats.
for (const storage of [undefined, 16384, 2048]) {
  // HS=64 (slow to compile here) at WebGPU's minimum storage only.
  const shapes = storage === 16384 ? [SHAPES[1]] : [];
  for (const shape of [{ B: 2, NH: 2, T: 70, HS: 16 }, SHAPES[3], ...shapes]) {
    Deno.test(
      `attention kernels match the CPU with a GPU's tiles (${
        storage ? `${storage} B of workgroup storage` : "this adapter's limits"
      }, ${label(shape)})`,
      async () => {
        const gpu = await testGpu();
        const limits = gpu.device.limits;
        const tiles = gpuTiles({
          maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
          maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
          maxComputeWorkgroupStorageSize: storage ?? limits.maxComputeWorkgroupStorageSize,
        }, shape.HS);
        assert.ok(tiles.tile >= 4 && tiles.tile <= tiles.lanes);
        const ref = reference(shape, 2);
        assertMatches(await fused(gpu, shape, ref, { tiles }), ref);
      },
    );
  }
}

for (const path of ["texture", "storage-buffer"] as const) {
  Deno.test(`attention ${path} kernels match the CPU when batches are split over bindings`, async () => {
    // One head of q is 37*16 floats = 2368 bytes: a 15000-byte limit makes parts of 6 heads (of
    // 9), and the second part's window starts mid-way into a 256-byte block.
    const gpu = await testGpuWithBindingLimit(15_000);
    const shape = { B: 3, NH: 3, T: 37, HS: 16 };
    const ref = reference(shape, 3);
    const options: AttentionOptions = path === "texture"
      ? { textureTiles: ODD_TEXTURE_TILES }
      : { tiles: CPU_TILES };
    let result: Awaited<ReturnType<typeof fused>> | undefined;
    const counts = await countDispatches(gpu, async () => {
      result = await fused(gpu, shape, ref, options);
    });
    const suffix = path === "texture" ? "_texture" : "";
    assert.equal(counts.get(`attention_forward${suffix}`), 2);
    assert.equal(counts.get(`attention_backward_query${suffix}`), 2);
    assert.equal(counts.get(`attention_backward_key_value${suffix}`), 2);
    assertMatches(result!, ref);
  });
}

Deno.test("attentionForward() rejects a head size over 128", async () => {
  const gpu = await testGpu();
  const buffer = gpu.acquire(1024);
  await assert.rejects(
    attentionForward(
      gpu,
      { o: buffer, lse: buffer, q: buffer, k: buffer, v: buffer },
      1,
      1,
      1,
      129,
    ),
    /Head size 129 is over the fused attention's maximum of 128/,
  );
  gpu.release(buffer);
});

Deno.test("attentionNaiveForward() and attentionNaiveBackward() match the CPU", async () => {
  const gpu = await testGpu();
  for (const [shape, bindingLimit] of [[SHAPES[0], 35_000], [SHAPES[2], undefined]] as const) {
    const { B, NH, T, HS } = shape;
    const n = B * NH * T * HS;
    const ref = reference(shape, 4);
    const [q, k, v, dout] = [ref.q, ref.k, ref.v, ref.dout].map((a) => gpu.upload(a));
    const [o, dq, dk, dv] = [0, 1, 2, 3].map(() => gpu.acquire(n * 4));
    const att = gpu.acquire(B * NH * T * T * 4);
    await attentionNaiveForward(gpu, { o, att, q, k, v }, B, NH, T, HS, { bindingLimit });
    const grads = { dq, dk, dv, dout, q, k, v, att };
    await attentionNaiveBackward(gpu, grads, B, NH, T, HS, { bindingLimit });
    assertClose(await gpu.readF32(o, n), ref.o, VALUE_TOLERANCE);
    assertClose(await gpu.readF32(dq, n), ref.dq, GRADIENT_TOLERANCE);
    assertClose(await gpu.readF32(dk, n), ref.dk, GRADIENT_TOLERANCE);
    assertClose(await gpu.readF32(dv, n), ref.dv, GRADIENT_TOLERANCE);
    for (const buffer of [q, k, v, dout, o, dq, dk, dv, att]) gpu.release(buffer);
  }
});

// The head permutes move values without arithmetic: they must match exactly. Heads of 16 take
// vec4 copies, heads of 6 scalar ones. A qkv batch of the first shape is 37*144 floats = 21312
// bytes and a (B, T, C) batch 7104: 25000 bytes splits the split into 3 parts, 15000 the merge
// into 2; the second shape's batches are 3240 and 1080 bytes: 4000 and 1500 give a part each.
const HEAD_LAYOUT_CASES = [
  { shape: [3, 37, 48, 3], limits: [25_000, 15_000] },
  { shape: [2, 9, 30, 5], limits: [4_000, 1_500] },
];
for (const { shape, limits } of HEAD_LAYOUT_CASES) {
  for (const bindingLimit of [undefined, limits[0]]) {
    const [B, T, C, NH] = shape;
    const split = bindingLimit ? " when batches are split over bindings" : "";
    const name = `splitHeads and mergeHeads match the CPU, forward and backward, HS=${
      C / NH
    }${split}`;
    Deno.test(
      name,
      () => assertHeadLayoutMatches(B, T, C, NH, bindingLimit && limits[1], bindingLimit),
    );
  }
}

async function assertHeadLayoutMatches(
  B: number,
  T: number,
  C: number,
  NH: number,
  mergeLimit: number | undefined,
  bindingLimit: number | undefined,
) {
  const gpu = await testGpu();
  const options = { bindingLimit };
  const mergeOptions = { bindingLimit: mergeLimit };
  const n = B * T * C;
  const qkv = randomArray(3 * n, 5);
  const cpu = [0, 1, 2].map(() => new Float32Array(n));
  splitHeadsForwardCpu(cpu[0], cpu[1], cpu[2], qkv, B, T, C, NH);
  const qkvBuf = gpu.upload(qkv);
  const heads = [0, 1, 2].map(() => gpu.acquire(n * 4));
  await splitHeadsForward(gpu, heads[0], heads[1], heads[2], qkvBuf, B, T, C, NH, options);
  for (let s = 0; s < 3; s++) assert.deepEqual(await gpu.readF32(heads[s], n), cpu[s]);

  // Backward of the split: gradients of q, k, v back into (B, T, 3C).
  const grads = [6, 7, 8].map((seed) => randomArray(n, seed));
  const dqkv = new Float32Array(3 * n);
  splitHeadsBackwardCpu(dqkv, grads[0], grads[1], grads[2], B, T, C, NH);
  const gradBufs = grads.map((g) => gpu.upload(g));
  const dqkvBuf = gpu.acquire(3 * n * 4);
  await splitHeadsBackward(
    gpu,
    dqkvBuf,
    gradBufs[0],
    gradBufs[1],
    gradBufs[2],
    B,
    T,
    C,
    NH,
    options,
  );
  assert.deepEqual(await gpu.readF32(dqkvBuf, 3 * n), dqkv);
  // A permutation: the backward of the split undoes the split.
  const roundTrip = new Float32Array(3 * n);
  splitHeadsBackwardCpu(roundTrip, cpu[0], cpu[1], cpu[2], B, T, C, NH);
  assert.deepEqual(roundTrip, qkv);

  // Merge of the output heads, and its backward.
  const y = new Float32Array(n), dout = new Float32Array(n);
  mergeHeadsForwardCpu(y, grads[0], B, T, C, NH);
  mergeHeadsBackwardCpu(dout, grads[1], B, T, C, NH);
  const yBuf = gpu.acquire(n * 4), doutBuf = gpu.acquire(n * 4);
  await mergeHeadsForward(gpu, yBuf, gradBufs[0], B, T, C, NH, mergeOptions);
  await mergeHeadsBackward(gpu, doutBuf, gradBufs[1], B, T, C, NH, mergeOptions);
  assert.deepEqual(await gpu.readF32(yBuf, n), y);
  assert.deepEqual(await gpu.readF32(doutBuf, n), dout);
  for (const b of [qkvBuf, ...heads, ...gradBufs, dqkvBuf, yBuf, doutBuf]) gpu.release(b);
}

Deno.test("splitHeadsForward() says when C does not split into NH heads", async () => {
  const gpu = await testGpu();
  const buffer = gpu.acquire(1024);
  await assert.rejects(
    splitHeadsForward(gpu, buffer, buffer, buffer, buffer, 1, 2, 10, 3),
    /Channels C=10 do not split into NH=3 heads/,
  );
  gpu.release(buffer);
});
