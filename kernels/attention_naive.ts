/**
 * Unfused causal self-attention: the baseline that the fused kernels of `attention.ts` are
 * benchmarked against, in the shape of llm.c's `attention_forward` / `attention_backward`
 * split into kernels. It writes the scores to memory: `att` (B, NH, T, T) holds the
 * probabilities (kept for the backward) and the backward uses a second T x T scratch per batch
 * part, so its extra memory is O(T^2) per head.
 *
 * - Forward: scores = q k^T / sqrt(HS) into `att` (only j <= i), causal softmax of each row in
 *   place, o = att v.
 * - Backward: dP = dO v^T into the scratch, dS = P (dP - rowsum(P dP)) in place,
 *   dq = dS k / sqrt(HS), dk = dS^T q / sqrt(HS), dv = att^T dO.
 *
 * Layout as in `attention.ts`: q, k, v, o (B, NH, T, HS) row-major. Entries of `att` above the
 * diagonal are never written nor read. Gradients dq, dk, dv are activation gradients: written
 * (`=`), never accumulated. Each kernel is the plain one: one output element per invocation,
 * runtime sizes, no tiling.
 *
 * @module
 */

import { type Binding, bufferWindow, type Gpu, grid2d, type Kernel, uniforms } from "./device.ts";
import { type Part, rowParts } from "./_parts.ts";
import type { AttentionGradientBuffers, AttentionInputBuffers } from "./attention.ts";

const WORKGROUP_SIZE = 64;

/** Options of the naive attention launchers. */
export interface NaiveAttentionOptions {
  /** Bytes one binding may hold (default: the adapter's limit); tests pass less. */
  bindingLimit?: number;
}

/** No compile-time constants: the naive kernels take every size at run time. */
export type NaiveConstants = Record<string, never>;

const HEADER = /* wgsl */ `
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {`;

/**
 * `out[h, i, j] = scale * a[h, i] . b[h, j]` for j <= i: the causal scores (or dP). x: j in
 * blocks of 64, y: i, z: head.
 */
export const causalScoresKernel: Kernel<NaiveConstants> = {
  name: "attention_naive_scores",
  bindings: ["write", "read", "read", "uniform"],
  wgsl: () => /* wgsl */ `
struct Params { T: u32, HS: u32, scale: f32, baseOut: u32, baseA: u32, baseB: u32 }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
${HEADER}
  let T = params.T;
  let j = wid.x * ${WORKGROUP_SIZE}u + lid;
  let i = wid.y;
  if (j > i) { return; }
  let head = wid.z;
  let ai = params.baseA + (head * T + i) * params.HS;
  let bj = params.baseB + (head * T + j) * params.HS;
  var s = 0.0;
  for (var d = 0u; d < params.HS; d++) { s += a[ai + d] * b[bj + d]; }
  out[params.baseOut + (head * T + i) * T + j] = s * params.scale;
}
`,
};

/** Causal softmax of each row of `att` in place, over j <= i; one invocation per row. */
export const causalSoftmaxKernel: Kernel<NaiveConstants> = {
  name: "attention_naive_softmax",
  bindings: ["write", "uniform"],
  wgsl: () => /* wgsl */ `
struct Params { rows: u32, T: u32, base: u32 }

@group(0) @binding(0) var<storage, read_write> att: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
${HEADER}
  let r = (wid.x + wid.y * groups.x) * ${WORKGROUP_SIZE}u + lid;
  if (r >= params.rows) { return; }
  let i = r % params.T;
  let row = params.base + r * params.T;
  var m = att[row];
  for (var j = 1u; j <= i; j++) { m = max(m, att[row + j]); }
  var sum = 0.0;
  for (var j = 0u; j <= i; j++) {
    let e = exp(att[row + j] - m);
    att[row + j] = e;
    sum += e;
  }
  let inv = 1.0 / sum;
  for (var j = 0u; j <= i; j++) { att[row + j] *= inv; }
}
`,
};

/**
 * Softmax backward in place: `dpds[i, j] = att[i, j] * (dpds[i, j] - sum_k att[i, k] dpds[i, k])`
 * over j <= i; one invocation per row.
 */
export const causalSoftmaxBackwardKernel: Kernel<NaiveConstants> = {
  name: "attention_naive_softmax_backward",
  bindings: ["write", "read", "uniform"],
  wgsl: () => /* wgsl */ `
struct Params { rows: u32, T: u32, baseD: u32, baseP: u32 }

@group(0) @binding(0) var<storage, read_write> dpds: array<f32>;
@group(0) @binding(1) var<storage, read> att: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
${HEADER}
  let r = (wid.x + wid.y * groups.x) * ${WORKGROUP_SIZE}u + lid;
  if (r >= params.rows) { return; }
  let i = r % params.T;
  let drow = params.baseD + r * params.T;
  let prow = params.baseP + r * params.T;
  var dot = 0.0;
  for (var j = 0u; j <= i; j++) { dot += att[prow + j] * dpds[drow + j]; }
  for (var j = 0u; j <= i; j++) { dpds[drow + j] = att[prow + j] * (dpds[drow + j] - dot); }
}
`,
};

function matmulWgsl(transposed: boolean): string {
  // Not transposed: out[i, d] = scale * sum_{j <= i} A[i, j] x[j, d].
  // Transposed:     out[i, d] = scale * sum_{r >= i} A[r, i] x[r, d].
  const loop = transposed
    ? `for (var r = i; r < T; r++) { s += m[params.baseA + (head * T + r) * T + i] * x[xh + r * params.HS + d]; }`
    : `for (var r = 0u; r <= i; r++) { s += m[params.baseA + (head * T + i) * T + r] * x[xh + r * params.HS + d]; }`;
  return /* wgsl */ `
struct Params { T: u32, HS: u32, scale: f32, baseOut: u32, baseA: u32, baseX: u32 }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
${HEADER}
  let T = params.T;
  let d = wid.x * ${WORKGROUP_SIZE}u + lid;
  if (d >= params.HS) { return; }
  let i = wid.y;
  let head = wid.z;
  let xh = params.baseX + head * T * params.HS;
  var s = 0.0;
  ${loop}
  out[params.baseOut + (head * T + i) * params.HS + d] = s * params.scale;
}
`;
}

/** `out = scale * A x` with A (T, T) lower triangular per head and x (T, HS). */
export const causalMatmulKernel: Kernel<NaiveConstants> = {
  name: "attention_naive_matmul",
  bindings: ["write", "read", "read", "uniform"],
  wgsl: () => matmulWgsl(false),
};

/** `out = scale * A^T x` with A (T, T) lower triangular per head and x (T, HS). */
export const causalMatmulTransposedKernel: Kernel<NaiveConstants> = {
  name: "attention_naive_matmul_transposed",
  bindings: ["write", "read", "read", "uniform"],
  wgsl: () => matmulWgsl(true),
};

/** A bound tensor and the index of its first element within the binding. */
type View = { binding: Binding; elementOffset: number };

/** The windows of one batch part: head tensors (B, NH, T, HS) and score tensors (B, NH, T, T). */
function partWindows(
  gpu: Gpu,
  heads: GPUBuffer[],
  scores: GPUBuffer[],
  first: number,
  count: number,
  NH: number,
  T: number,
  HS: number,
) {
  const h = heads.map((b) => bufferWindow(gpu, b, first * NH * T * HS, count * NH * T * HS));
  const s = scores.map((b) => bufferWindow(gpu, b, first * NH * T * T, count * NH * T * T));
  return { heads: h, scores: s };
}

/**
 * Records one of the per-head products (the scores, or a product with the scores), which share
 * one uniform: `out` from `a` and `b` over `heads` heads. Workgroups cover each of the T rows'
 * outputs (T scores, or HS channels) in blocks of 64, and the heads.
 */
async function product(
  gpu: Gpu,
  kernel: Kernel<NaiveConstants>,
  out: View,
  a: View,
  b: View,
  scale: number,
  heads: number,
  T: number,
  HS: number,
): Promise<void> {
  const params = gpu.uniform(uniforms({
    T: ["u32", T],
    HS: ["u32", HS],
    scale: ["f32", scale],
    baseOut: ["u32", out.elementOffset],
    baseA: ["u32", a.elementOffset],
    baseB: ["u32", b.elementOffset],
  }));
  const columns = kernel === causalScoresKernel ? T : HS;
  await gpu.run(kernel, {}, [out.binding, a.binding, b.binding, params], [
    Math.ceil(columns / WORKGROUP_SIZE),
    T,
    heads,
  ]);
}

function checkSizes(B: number, NH: number, T: number, HS: number): void {
  for (const [name, value] of [["B", B], ["NH", NH], ["T", T], ["HS", HS]] as const) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`Attention size ${name}=${value} is not a non-negative integer.`);
    }
  }
  if (T > 65535 || B * NH > 65535) {
    throw new RangeError(
      `Naive attention takes T and B*NH up to 65535, got T=${T}, B*NH=${B * NH}.`,
    );
  }
}

/**
 * The batch parts of a launch, each a whole number of batch rows whose head and score windows fit
 * one binding; none when there is nothing to do. Throws when a size is not whole.
 */
function batchParts(
  gpu: Gpu,
  B: number,
  NH: number,
  T: number,
  HS: number,
  bindingLimit?: number,
): Part[] {
  checkSizes(B, NH, T, HS);
  if (B * NH * T * HS === 0) return [];
  return rowParts(gpu, B, NH * T * Math.max(T, HS), 1, bindingLimit);
}

/**
 * Records the unfused causal attention forward: `att` (B, NH, T, T) gets the probabilities
 * (below and on the diagonal), `o` (B, NH, T, HS) = att v.
 *
 * @param buffers the tensors, by name (so that two swapped buffers do not type-check)
 */
export async function attentionNaiveForward(
  gpu: Gpu,
  buffers: AttentionInputBuffers & {
    /** Output (B, NH, T, HS), written. */
    o: GPUBuffer;
    /** Attention probabilities (B, NH, T, T), written, for the backward. */
    att: GPUBuffer;
  },
  B: number,
  NH: number,
  T: number,
  HS: number,
  options: NaiveAttentionOptions = {},
): Promise<void> {
  const { o, att, q, k, v } = buffers;
  for (const { first, count } of batchParts(gpu, B, NH, T, HS, options.bindingLimit)) {
    const w = partWindows(gpu, [o, q, k, v], [att], first, count, NH, T, HS);
    const [ow, qw, kw, vw] = w.heads;
    const [aw] = w.scores;
    const heads = count * NH;
    await product(gpu, causalScoresKernel, aw, qw, kw, 1 / Math.sqrt(HS), heads, T, HS);
    const rows = heads * T;
    await gpu.run(causalSoftmaxKernel, {}, [
      aw.binding,
      gpu.uniform(
        uniforms({ rows: ["u32", rows], T: ["u32", T], base: ["u32", aw.elementOffset] }),
      ),
    ], grid2d(Math.ceil(rows / WORKGROUP_SIZE)));
    await product(gpu, causalMatmulKernel, ow, aw, vw, 1, heads, T, HS);
  }
}

/**
 * Records the unfused causal attention backward from the forward's `att`; writes (`=`) `dq`,
 * `dk`, `dv` (B, NH, T, HS). Uses a T x T scratch per head of a batch part.
 *
 * @param buffers the tensors, by name (so that two swapped buffers do not type-check)
 */
export async function attentionNaiveBackward(
  gpu: Gpu,
  buffers: AttentionGradientBuffers & {
    /** The forward's attention probabilities (B, NH, T, T). */
    att: GPUBuffer;
  },
  B: number,
  NH: number,
  T: number,
  HS: number,
  options: NaiveAttentionOptions = {},
): Promise<void> {
  const { dq, dk, dv, dout, q, k, v, att } = buffers;
  for (const { first, count } of batchParts(gpu, B, NH, T, HS, options.bindingLimit)) {
    const w = partWindows(gpu, [dq, dk, dv, dout, q, k, v], [att], first, count, NH, T, HS);
    const [dqw, dkw, dvw, dow, qw, kw, vw] = w.heads;
    const [aw] = w.scores;
    const heads = count * NH;
    const scratch = gpu.acquire(heads * T * T * 4, undefined, "attention dP");
    const dp: View = { binding: scratch, elementOffset: 0 };
    const scale = 1 / Math.sqrt(HS);
    await product(gpu, causalScoresKernel, dp, dow, vw, 1, heads, T, HS);
    const rows = heads * T;
    await gpu.run(causalSoftmaxBackwardKernel, {}, [
      scratch,
      aw.binding,
      gpu.uniform(uniforms({
        rows: ["u32", rows],
        T: ["u32", T],
        baseD: ["u32", 0],
        baseP: ["u32", aw.elementOffset],
      })),
    ], grid2d(Math.ceil(rows / WORKGROUP_SIZE)));
    await product(gpu, causalMatmulKernel, dqw, dp, kw, scale, heads, T, HS);
    await product(gpu, causalMatmulTransposedKernel, dkw, dp, qw, scale, heads, T, HS);
    await product(gpu, causalMatmulTransposedKernel, dvw, aw, dow, 1, heads, T, HS);
    gpu.release(scratch);
  }
}
