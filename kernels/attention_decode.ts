/**
 * Attention of new query positions against a key-value cache, for generation: the keys and
 * values of every position a sequence has seen are kept, so each new token costs attention over
 * the cache instead of a forward pass over the whole context.
 *
 * Layout. The qkv matmul's output `qkv` (R, Tq, 3C) holds, for each of R step rows and Tq new
 * positions, q (C), then k (C), then v (C), each NH heads of HS (as in `attention_layout.ts`).
 * A layer's cache is two tensors `kCache`, `vCache` (rows, NH, maxT, HS): one head's maxT
 * positions of HS contiguous, as the fused attention wants them. `slots` (R, 2) u32 says, for
 * each step row r, which cache row it reads and writes (`slots[2r]`) and the position of its
 * first new token (`slots[2r + 1]`, the number of positions the cache row held before).
 *
 * - {@linkcode kvCacheWrite}: the new positions' k and v, from qkv, into the cache at
 *   positions start..start+Tq-1 of their cache row (positions at or past maxT are dropped).
 * - {@linkcode attentionDecode}: for each new query (start + i), causal softmax attention over
 *   cache positions 0..start+i, heads merged straight into `y` (R, Tq, C), the input of the
 *   output projection: no split or merge permutes (fewer dispatches per generated token).
 *
 * Both are one dispatch each per layer; the write must come first (a query attends to the new
 * positions before it, within the same step). Rows of a step may have different starts, so a
 * batch of sequences of different lengths decodes together; a row padded at the end (a shorter
 * prompt in a batched prefill) writes junk keys past its real tokens, which later steps
 * overwrite before any query reaches them (a query never looks past its own position).
 *
 * Why one query per invocation, with the online softmax of `attention.ts`: in decoding Tq = 1,
 * and the invocations of a workgroup are different (row, head) pairs, so they share no keys to
 * stage in workgroup memory or reuse in registers: each key is read once per step, so the kernel
 * is bound by those loads. A step from position 0 (a prefill) needs no cache, and
 * `nn/kv_cache.ts` sends it through the fused causal attention instead, where a key serves
 * several queries (7x faster at 1000 positions on lavapipe). On lavapipe a workgroup is one
 * 8-wide SIMD group, on a GPU 64 invocations.
 *
 * @module
 */

import {
  type BufferWindow,
  bufferWindow,
  type Gpu,
  grid2d,
  type Kernel,
  uniforms,
} from "./device.ts";
import { MAX_HEAD_SIZE } from "./attention.ts";
import { rowType } from "./_wgsl.ts";
import { headSizeOf } from "./attention_layout.ts";
import { head, rowParts } from "./_parts.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of the decode kernels. */
export interface AttentionDecodeConstants extends Record<string, number> {
  /** Head size HS, at most 128: the query and the accumulator are unrolled over it. */
  headSize: number;
  /** Invocations per workgroup. */
  lanes: number;
}

/** Options of the decode launchers. */
export interface AttentionDecodeOptions {
  /** Bytes one binding may hold (default: the adapter's limit); tests pass less. */
  bindingLimit?: number;
}

const CPU_LANES = 8;
const GPU_LANES = 64;
const WRITE_WORKGROUP = 64;
const LOG2E = Math.LOG2E;
// A score that loses every max and whose exp2 is 0; finite, as in attention.ts.
const MASKED = "-1e30f";

/** The invocations per workgroup of {@linkcode attentionDecode} on `gpu`'s adapter. */
export function decodeLanes(gpu: Gpu): number {
  return gpu.adapter.isCpu ? CPU_LANES : GPU_LANES;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function checkHeadSize(headSize: number): void {
  if (!(Number.isInteger(headSize) && headSize >= 1 && headSize <= MAX_HEAD_SIZE)) {
    throw new RangeError(`Head size ${headSize} is not an integer in 1..${MAX_HEAD_SIZE}.`);
  }
}

/**
 * WGSL of the cache append: invocation (c, i, r) copies channel c of position i of step row r,
 * from the k and v thirds of qkv, to its head's row in the cache.
 */
export const kvCacheWriteKernel: Kernel<Pick<AttentionDecodeConstants, "headSize">> = {
  name: "kv_cache_write",
  bindings: ["write", "write", "read", "read", "uniform"],
  wgsl: ({ headSize }) => {
    checkHeadSize(headSize);
    return /* wgsl */ `
struct Params { Tq: u32, C: u32, maxT: u32, qkvBase: u32, slotBase: u32 }

@group(0) @binding(0) var<storage, read_write> kc: array<f32>;  // (rows, NH, maxT, HS)
@group(0) @binding(1) var<storage, read_write> vc: array<f32>;  // (rows, NH, maxT, HS)
@group(0) @binding(2) var<storage, read> qkv: array<f32>;       // (R, Tq, 3C) window
@group(0) @binding(3) var<storage, read> slots: array<u32>;     // (R, 2): cache row, start
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(${WRITE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x * ${WRITE_WORKGROUP}u + lid;
  if (c >= params.C) { return; }
  let i = wid.y;
  let r = wid.z;
  let slot = 2u * (params.slotBase + r);
  let pos = slots[slot + 1u] + i;
  if (pos >= params.maxT) { return; }
  let NH = params.C / ${headSize}u;
  let h = c / ${headSize}u;
  let d = c % ${headSize}u;
  let src = params.qkvBase + (r * params.Tq + i) * 3u * params.C + params.C + c;
  let dst = ((slots[slot] * NH + h) * params.maxT + pos) * ${headSize}u + d;
  kc[dst] = qkv[src];
  vc[dst] = qkv[src + params.C];
}
`;
  },
};

/** WGSL of the attention of new queries over the cache; see the module doc. */
export const attentionDecodeKernel: Kernel<AttentionDecodeConstants> = {
  name: "attention_decode",
  bindings: ["write", "read", "read", "read", "read", "uniform"],
  wgsl: ({ headSize, lanes }) => {
    checkHeadSize(headSize);
    const { n: N, type, zero, dot } = rowType(headSize);
    const unroll = (line: (x: number) => string) => range(N).map(line).join("\n");
    // Loops over HS / width vectors run to a uniform (`params.vecs`), not a constant, so the
    // driver does not unroll the per-lane loads they hold (see loadRow in attention.ts).
    return /* wgsl */ `
struct Params {
  Tq: u32, NH: u32, maxT: u32, queries: u32, qkvBase: u32, yBase: u32, slotBase: u32,
  scale: f32, vecs: u32,
}

@group(0) @binding(0) var<storage, read_write> y: array<${type}>;  // (R, Tq, C) window
@group(0) @binding(1) var<storage, read> qkv: array<${type}>;      // (R, Tq, 3C) window
@group(0) @binding(2) var<storage, read> kc: array<${type}>;       // (rows, NH, maxT, HS)
@group(0) @binding(3) var<storage, read> vc: array<${type}>;       // (rows, NH, maxT, HS)
@group(0) @binding(4) var<storage, read> slots: array<u32>;        // (R, 2): cache row, start
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let query = (wid.x + wid.y * groups.x) * ${lanes}u + lid;
  if (query >= params.queries) { return; }
  // Queries in (step row, head, position) order.
  let i = query % params.Tq;
  let h = (query / params.Tq) % params.NH;
  let r = query / (params.Tq * params.NH);
  let slot = 2u * (params.slotBase + r);
  let pos = min(slots[slot + 1u] + i, params.maxT - 1u);
  let C = params.NH * ${N}u;  // in vectors
  let token = r * params.Tq + i;
  let hb = (slots[slot] * params.NH + h) * params.maxT * ${N}u;  // this head's first key vector
  var buf: array<${type}, ${N}>;
  let qb = params.qkvBase + token * 3u * C + h * ${N}u;
  for (var n = 0u; n < params.vecs; n++) { buf[n] = qkv[qb + n]; }
  // Scores in base 2: q carries log2(e) / sqrt(HS), so each needs one exp2.
${unroll((x) => `  let q_${x} = buf[${x}] * params.scale;`)}
${unroll((x) => `  var a_${x} = ${zero};`)}
  var m = ${MASKED};
  var l = 0.0;
  for (var j = 0u; j <= pos; j++) {
    let kb = hb + j * ${N}u;
${unroll((x) => `    let k_${x} = kc[kb + ${x}u];`)}
${unroll((x) => `    let v_${x} = vc[kb + ${x}u];`)}
    let s = ${range(N).map((x) => dot(`q_${x}`, `k_${x}`)).join(" + ")};
    // Online softmax with one exp2: whichever of s and m is larger gets weight 1.
    let e = exp2(-abs(s - m));
    let up = s > m;
    let alpha = select(1.0, e, up);
    let p = select(e, 1.0, up);
    m = max(m, s);
    l = l * alpha + p;
${unroll((x) => `    a_${x} = a_${x} * alpha + p * v_${x};`)}
  }
  let inv = 1.0 / l;
${unroll((x) => `  buf[${x}] = a_${x} * inv;`)}
  let yb = params.yBase + token * C + h * ${N}u;
  for (var n = 0u; n < params.vecs; n++) { y[yb + n] = buf[n]; }
}
`;
  },
};

/** The sizes every decode launch shares. */
export interface DecodeShape {
  /** Step rows R: sequences advanced together. */
  rows: number;
  /** New positions per step row, Tq (1 when decoding, the prompt length in a prefill). */
  time: number;
  /** Channels C = NH · HS. */
  channels: number;
  /** Heads NH. */
  heads: number;
  /** Positions a cache row holds, maxT. */
  maxTime: number;
  /** Rows of the cache, at least 1 + the largest cache row in `slots`. */
  cacheRows: number;
}

function checkShape(shape: DecodeShape): number {
  for (const [name, value] of Object.entries(shape)) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`Decode size ${name}=${value} is not a non-negative integer.`);
    }
  }
  const headSize = headSizeOf(shape.channels, shape.heads);
  checkHeadSize(headSize);
  if (shape.time > 65535 || shape.rows > 65535) {
    throw new RangeError(
      `Decoding ${shape.rows} rows of ${shape.time} positions is over the 65535 a grid takes.`,
    );
  }
  return headSize;
}

/** The bytes of one layer's key (or value) cache of `shape`. */
function cacheElements({ cacheRows, maxTime, channels }: DecodeShape): number {
  return cacheRows * maxTime * channels;
}

/** Throws unless a whole cache tensor fits one binding (step rows may use any cache row). */
function checkCacheFits(gpu: Gpu, shape: DecodeShape, bindingLimit = gpu.maxBinding): void {
  const bytes = cacheElements(shape) * 4;
  if (bytes > Math.min(bindingLimit, gpu.maxBinding)) {
    throw new RangeError(
      `A key-value cache of ${shape.cacheRows} rows of ${shape.maxTime} positions x ` +
        `${shape.channels} channels (${bytes} bytes) is over one binding ` +
        `(${Math.min(bindingLimit, gpu.maxBinding)} bytes); use fewer rows per cache.`,
    );
  }
}

/** A part of a step's rows that one launch of either decode kernel takes. */
interface DecodePart {
  /** First step row of the part. */
  first: number;
  /** Step rows in the part. */
  count: number;
  /** The part's rows of `qkv` (R, Tq, 3C). */
  qkv: BufferWindow;
}

/**
 * What both decode launchers check and split alike: the head size, the floats of one cache
 * tensor, and the parts of the step rows whose `qkv` rows fit one binding (none when the step is
 * empty). Throws when the shape is not whole or the cache does not fit one binding.
 */
function decodeParts(
  gpu: Gpu,
  qkv: GPUBuffer,
  shape: DecodeShape,
  bindingLimit?: number,
): { headSize: number; cache: number; parts: DecodePart[] } {
  const headSize = checkShape(shape);
  const { rows: R, time: Tq, channels: C } = shape;
  if (R * Tq * C === 0) return { headSize, cache: 0, parts: [] };
  checkCacheFits(gpu, shape, bindingLimit);
  const row = Tq * 3 * C;
  const parts = rowParts(gpu, R, row, 1, bindingLimit).map(({ first, count }) => ({
    first,
    count,
    qkv: bufferWindow(gpu, qkv, first * row, count * row),
  }));
  return { headSize, cache: cacheElements(shape), parts };
}

/**
 * The tensors both decode launchers take, by name (so that two swapped buffers do not
 * type-check): `GPUBuffer`s on the GPU; the CPU references take float arrays and `slots` as
 * numbers (`KvCacheBuffers<Floats, ArrayLike<number>>`).
 */
export interface KvCacheBuffers<F = GPUBuffer, S = GPUBuffer> {
  /** The key cache (cacheRows, NH, maxT, HS). */
  kCache: F;
  /** The value cache (cacheRows, NH, maxT, HS). */
  vCache: F;
  /** The step's fused projection (R, Tq, 3C). */
  qkv: F;
  /** (R, 2) u32: the cache row and start position of each step row. */
  slots: S;
}

/**
 * Records the append of the step's new keys and values to the cache: for step row r and new
 * position i, `kCache[slots[r].row, h, slots[r].start + i] = k` of `qkv[r, i]` (and v likewise);
 * positions at or past maxT are dropped.
 *
 * @param buffers the caches (written at the new positions), the step's `qkv` (only k and v are
 *   read) and its `slots`
 */
export async function kvCacheWrite(
  gpu: Gpu,
  buffers: KvCacheBuffers,
  shape: DecodeShape,
  options: AttentionDecodeOptions = {},
): Promise<void> {
  const { kCache, vCache, qkv, slots } = buffers;
  const { rows: R, time: Tq, channels: C, maxTime } = shape;
  const { headSize, cache, parts } = decodeParts(gpu, qkv, shape, options.bindingLimit);
  for (const { first, count, qkv: window } of parts) {
    const params = gpu.uniform(uniforms({
      Tq,
      C,
      maxT: maxTime,
      qkvBase: window.elementOffset,
      slotBase: first,
    }));
    await gpu.run(
      kvCacheWriteKernel,
      { headSize },
      [head(kCache, cache), head(vCache, cache), window.binding, head(slots, 2 * R), params],
      [Math.ceil(C / WRITE_WORKGROUP), Tq, count],
    );
  }
}

/**
 * Records the attention of the step's new queries over the cache: for step row r and new
 * position i at p = start + i, head h, `y[r, i, h] = softmax_j<=p(q . k_j / sqrt(HS)) v_j`
 * over the cache row's positions 0..p. Run {@linkcode kvCacheWrite} for the step first.
 *
 * @param buffers the caches, the step's `qkv` (only q is read) and `slots`, and the output `y`
 */
export async function attentionDecode(
  gpu: Gpu,
  buffers: KvCacheBuffers & {
    /** Output (R, Tq, C), heads merged, written. */
    y: GPUBuffer;
  },
  shape: DecodeShape,
  options: AttentionDecodeOptions = {},
): Promise<void> {
  const { y, qkv, kCache, vCache, slots } = buffers;
  const { rows: R, time: Tq, channels: C, heads: NH, maxTime } = shape;
  const { headSize, cache, parts } = decodeParts(gpu, qkv, shape, options.bindingLimit);
  const { width } = rowType(headSize);
  const lanes = decodeLanes(gpu);
  for (const { first, count, qkv: qkvWindow } of parts) {
    const yWindow = bufferWindow(gpu, y, first * Tq * C, count * Tq * C);
    const queries = count * NH * Tq;
    const params = gpu.uniform(uniforms({
      Tq,
      NH,
      maxT: maxTime,
      queries,
      qkvBase: qkvWindow.elementOffset / width,
      yBase: yWindow.elementOffset / width,
      slotBase: first,
      scale: ["f32", LOG2E / Math.sqrt(headSize)],
      vecs: headSize / width,
    }));
    await gpu.run(
      attentionDecodeKernel,
      { headSize, lanes },
      [
        yWindow.binding,
        qkvWindow.binding,
        head(kCache, cache),
        head(vCache, cache),
        head(slots, 2 * R),
        params,
      ],
      grid2d(Math.ceil(queries / lanes)),
    );
  }
}

/** CPU reference of {@linkcode kvCacheWrite}. `slots` holds (R, 2) numbers: cache row, start. */
export function kvCacheWriteCpu(
  buffers: KvCacheBuffers<Floats, ArrayLike<number>>,
  shape: DecodeShape,
): void {
  const { kCache, vCache, qkv, slots } = buffers;
  const HS = checkShape(shape);
  const { rows: R, time: Tq, channels: C, heads: NH, maxTime } = shape;
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < Tq; i++) {
      const pos = slots[2 * r + 1] + i;
      if (pos >= maxTime) continue;
      for (let h = 0; h < NH; h++) {
        for (let d = 0; d < HS; d++) {
          const src = (r * Tq + i) * 3 * C + h * HS + d;
          const dst = ((slots[2 * r] * NH + h) * maxTime + pos) * HS + d;
          kCache[dst] = qkv[src + C];
          vCache[dst] = qkv[src + 2 * C];
        }
      }
    }
  }
}

/**
 * CPU reference of {@linkcode attentionDecode}, naive: each query's scores over its cache row's
 * positions 0..start+i, a softmax and a weighted sum, in float64 whatever the array type.
 */
export function attentionDecodeCpu(
  buffers: KvCacheBuffers<Floats, ArrayLike<number>> & { y: Floats },
  shape: DecodeShape,
): void {
  const { y, qkv, kCache, vCache, slots } = buffers;
  const HS = checkShape(shape);
  const { rows: R, time: Tq, channels: C, heads: NH, maxTime } = shape;
  const scale = 1 / Math.sqrt(HS);
  const scores = new Float64Array(maxTime);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < Tq; i++) {
      const pos = Math.min(slots[2 * r + 1] + i, maxTime - 1);
      for (let h = 0; h < NH; h++) {
        const q = (r * Tq + i) * 3 * C + h * HS;
        const hb = (slots[2 * r] * NH + h) * maxTime * HS;
        let max = -Infinity;
        for (let j = 0; j <= pos; j++) {
          let s = 0;
          for (let d = 0; d < HS; d++) s += qkv[q + d] * kCache[hb + j * HS + d];
          scores[j] = s * scale;
          max = Math.max(max, scores[j]);
        }
        let sum = 0;
        for (let j = 0; j <= pos; j++) sum += scores[j] = Math.exp(scores[j] - max);
        for (let d = 0; d < HS; d++) {
          let acc = 0;
          for (let j = 0; j <= pos; j++) acc += scores[j] * vCache[hb + j * HS + d];
          y[(r * Tq + i) * C + h * HS + d] = acc / sum;
        }
      }
    }
  }
}
