/**
 * Fused softmax and cross-entropy over the vocabulary, forward and backward in one pass over
 * the (N, V) logits (N = B·T positions):
 *
 * - `losses[n] = logsumexp(logits[n]) - logits[n, targets[n]]`, the per-position loss (N);
 * - `dlogits[n] = (softmax(logits[n]) - onehot(targets[n])) · dlossScale`, (N, V).
 *
 * `dlossScale` is the gradient of the mean loss with respect to each counted position's loss,
 * i.e. `1 / (number of counted positions)`; see {@linkcode countedPositions}.
 *
 * Masking: a position does not count when its target is negative (e.g. -1 for padding) or, when
 * a `mask` (N, u32) is given, when its mask entry is 0 (e.g. the prompt tokens of instruction
 * tuning). Such positions get loss 0 and dlogits 0. A target >= V is a caller bug: its loss is
 * NaN (so the mean loss shows it) and its dlogits are 0.
 *
 * Gradient convention: `dlogits` is WRITTEN (=). It may be the logits buffer itself (in place,
 * saving the (N, V) buffer, 206 MB at GPT-2's N=1024), or null for the loss alone.
 *
 * Numerics: a row is read by one invocation (on a CPU adapter) or by the strided invocations of
 * one workgroup (on a GPU), each keeping a running (max, sum of exp(x - max)) per component
 * (online softmax) that are then merged (in a tree across a workgroup); a second sweep writes
 * the gradient; no exp can overflow. The logits are read as `vec4f`: on a GPU when V is a
 * multiple of 4, on a CPU adapter whatever V (a row's whole vec4s, and single floats at its
 * ends). Logits over one binding (1024 × 50257 floats is 206 MB > 128 MiB) are processed in
 * parts of rows through {@linkcode bufferWindow}.
 *
 * @module
 */

import { bufferWindow, type Gpu, grid2d, type Kernel, uniforms } from "./device.ts";
import { assertFits, head, rowParts } from "./_parts.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of the cross-entropy kernels. */
export interface CrossEntropyConstants extends Record<string, number> {
  /** Invocations per workgroup; a power of two. */
  workgroupSize: number;
  /**
   * Floats per load: 4 (`vec4f`) or 1. A row per workgroup reads vec4s when V is a multiple of
   * 4 (every row starts on one); a row per invocation reads vec4s whatever V, and floats only
   * when a window cannot be widened to whole vec4s.
   */
  width: number;
  /**
   * 1: one invocation walks a whole row (no workgroup memory, no barrier: faster on lavapipe,
   * where every load is a scalar load per SIMD lane anyway and a barrier splits the shader into
   * resumable pieces). 0: one workgroup per row, its invocations strided over the row and merged
   * in a tree (on a GPU: coalesced loads, and a 50k-float row is not left to one thread).
   */
  invocationPerRow: number;
}

/** Where the gradient goes: a separate buffer, over the logits, or nowhere. */
type Mode = "separate" | "in_place" | "loss_only";

/** The bindings and uniform both layouts share; `T` is the logits' element type. */
function bindingsWgsl(mode: Mode, T: string): string {
  const logitsAccess = mode === "in_place" ? "read_write" : "read";
  const bindings = [
    "@group(0) @binding(0) var<storage, read_write> losses: array<f32>;  // (N)",
    ...(mode === "separate"
      ? [`var<storage, read_write> dlogits: array<${T}>;  // (rows, V) window`]
      : []),
    `var<storage, ${logitsAccess}> logits: array<${T}>;  // (rows, V) window`,
    "var<storage, read> targets: array<i32>;  // (N)",
    "var<storage, read> mask: array<u32>;  // (N), read when useMask is 1",
    "var<uniform> params: Params;",
  ].map((line, i) => i === 0 ? line : `@group(0) @binding(${i}) ${line}`).join("\n");
  return /* wgsl */ `
struct Params {
  rows: u32, v: u32, rowOffset: u32, logitsOffset: u32, dlogitsOffset: u32,
  scale: f32, useMask: u32, nanBits: u32,
}

${bindings}

/** Two (running max, sum of exp(x - max)) pairs as one. */
fn merge(a: vec2f, b: vec2f) -> vec2f {
  let mx = max(a.x, b.x);
  return vec2f(mx, a.y * exp(a.x - mx) + b.y * exp(b.x - mx));
}`;
}

/** Whole elements per step of the invocation-per-row loops (one rescale of the sum a step). */
const CHUNK = 4;

/** `n` WGSL statements `line(k)`, k = 0..n-1, joined for a loop body. */
function lines(n: number, line: (k: number) => string): string {
  return Array.from({ length: n }, (_, k) => line(k)).join("\n    ");
}

/**
 * The invocation-per-row kernel (a CPU adapter's). A row's floats `[f0, f0 + V)` are read as
 * the whole vec4s inside them and up to 3 single floats at each end, so rows need not start on
 * a vec4 (V = 50257): on lavapipe a float read alone costs about as much as a vec4 (a row of
 * floats took 94 ms at 1024×50257, a row of vec4s 62 ms at 1024×50304). The ends are read and
 * written a float at a time because the vec4 that holds them is shared with the neighbouring
 * row, which another invocation overwrites in place. Here `params.logitsOffset` counts floats,
 * and serves dlogits too: both windows start at the same row, so at the same offset.
 *
 * The sweep over the row takes CHUNK vec4s a step and rescales its running sum once a step, so
 * it costs about one exp per float, not two (the sweep took 93 ms so, 22 ms this way); the
 * gradient sweep writes `exp(x - max) / sum · scale` everywhere and then the target's float
 * alone, with no per-element one-hot select.
 */
function rowPerInvocationWgsl(mode: Mode, wg: number, width: number): string {
  const T = width === 4 ? "vec4f" : "f32";
  // The float at index f (a component of a vec4 when width is 4).
  const at = (buffer: string, f: string) =>
    width === 4 ? `${buffer}[(${f}) / 4u][(${f}) % 4u]` : `${buffer}[${f}]`;
  const grad = mode === "separate" ? "dlogits" : "logits";
  // The single floats at the ends of a row; none when rows are read as floats.
  const ends = (body: string) =>
    width === 4
      ? /* wgsl */ `
  for (var f = f0; f < h1; f++) { ${body} }
  for (var f = t0; f < f1; f++) { ${body} }`
      : "";
  const chunkMax = Array.from({ length: CHUNK }, (_, k) => `x${k}`)
    .reduce((a, b) => `max(${a}, ${b})`);
  const chunkExps = Array.from({ length: CHUNK }, (_, k) => `exp(x${k} - mx)`).join(" + ");
  const components = width === 4
    ? "merge(merge(vec2f(m.x, s.x), vec2f(m.y, s.y)), merge(vec2f(m.z, s.z), vec2f(m.w, s.w)))"
    : "vec2f(m, s)";
  const gradient = /* wgsl */ `
  // (softmax - onehot) · scale: exp(x - rowMax) / sum · scale everywhere, then the target's
  // float alone, as p - 1 with p = exp(x - rowMax) / sum (the reference's rounding).
  let scale = select(0.0, params.scale, counted);
  let g = scale / sum;
${ends(`${at(grad, "f")} = exp(${at("logits", "f")} - rowMax) * g;`)}
  var i = q0;
  for (; i + ${CHUNK}u <= q1; i += ${CHUNK}u) {
    ${lines(CHUNK, (k) => `let y${k} = logits[i + ${k}u];`)}
    ${lines(CHUNK, (k) => `${grad}[i + ${k}u] = exp(y${k} - rowMax) * g;`)}
  }
  for (; i < q1; i++) { ${grad}[i] = exp(logits[i] - rowMax) * g; }
  if (counted) {
    ${at(grad, "f0 + u32(tgt)")} = (exp(targetLogit - rowMax) / sum - 1.0) * scale;
  }`;
  return /* wgsl */ `
${bindingsWgsl(mode, T)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = (wid.x + wid.y * groups.x) * ${wg}u + lid;
  if (row >= params.rows) { return; }
  let v = params.v;
  let n = params.rowOffset + row;
  let tgt = targets[n];
  let valid = tgt < 0 || u32(tgt) < v;
  let counted = tgt >= 0 && valid && (params.useMask == 0u || mask[n] != 0u);
  // The row's floats [f0, f1): whole elements [q0, q1), single floats [f0, h1) and [t0, f1).
  let f0 = params.logitsOffset + row * v;
  let f1 = f0 + v;
  let q0 = (f0 + ${width - 1}u) / ${width}u;
  let q1 = max(f1 / ${width}u, q0);
  let h1 = min(q0 * ${width}u, f1);
  let t0 = max(q1 * ${width}u, h1);
  // Read before the gradient sweep overwrites it (in place).
  var targetLogit = 0.0;
  if (counted) { targetLogit = ${at("logits", "f0 + u32(tgt)")}; }

  // Online softmax: per component a running max m and sum s of exp(x - m), rescaled once a
  // step of ${CHUNK} elements; the single floats at the ends keep their own pair.
  var ends = vec2f(-3.0e38, 0.0);
${ends(`ends = merge(ends, vec2f(${at("logits", "f")}, 1.0));`)}
  var m = ${T}(-3.0e38);
  var s = ${T}(0.0);
  var q = q0;
  for (; q + ${CHUNK}u <= q1; q += ${CHUNK}u) {
    ${lines(CHUNK, (k) => `let x${k} = logits[q + ${k}u];`)}
    let mx = max(m, ${chunkMax});
    s = s * exp(m - mx) + ${chunkExps};
    m = mx;
  }
  for (; q < q1; q++) {
    let x = logits[q];
    let mx = max(m, x);
    s = s * exp(m - mx) + exp(x - mx);
    m = mx;
  }
  let ms = merge(${components}, ends);
  let rowMax = ms.x;
  let sum = ms.y;
  let loss = select(0.0, log(sum) + rowMax - targetLogit, counted);
  losses[n] = select(bitcast<f32>(params.nanBits), loss, valid);
${mode === "loss_only" ? "" : gradient}
}
`;
}

/**
 * The workgroup-per-row kernel (a GPU's): the invocations of a workgroup stride over the row,
 * each keeping a running (max, sum) per component, merged in a tree in workgroup memory.
 * `params.logitsOffset` and `dlogitsOffset` count elements of `width` floats.
 */
function rowPerWorkgroupWgsl(mode: Mode, wg: number, width: number): string {
  const T = width === 4 ? "vec4f" : "f32";
  const gradOut = mode === "separate" ? "dlogits" : "logits";
  const gradOffset = mode === "separate" ? "params.dlogitsOffset" : "params.logitsOffset";
  // The target's logit: a component of the vec4 that holds it.
  const targetLoad = width === 4
    ? "logits[base + u32(tgt) / 4u][u32(tgt) % 4u]"
    : "logits[base + u32(tgt)]";
  // The (running max, sum) of the row: its 4 components merged.
  const components = width === 4
    ? `let ms = merge(merge(vec2f(m.x, s.x), vec2f(m.y, s.y)), merge(vec2f(m.z, s.z), vec2f(m.w, s.w)));`
    : "let ms = vec2f(m, s);";
  const onehot = width === 4
    ? "select(vec4f(0.0), vec4f(1.0), vec4u(i * 4u) + vec4u(0u, 1u, 2u, 3u) == vec4u(t))"
    : "select(0.0, 1.0, i == t)";
  return /* wgsl */ `
${bindingsWgsl(mode, T)}

var<workgroup> partial: array<vec2f, ${wg}>;  // (running max, sum)

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * groups.x;
  if (row >= params.rows) { return; }
  let v = params.v;          // floats per row
  let vecs = v / ${width}u;  // loads per row
  let n = params.rowOffset + row;
  let tgt = targets[n];
  let valid = tgt < 0 || u32(tgt) < v;
  let counted = tgt >= 0 && valid && (params.useMask == 0u || mask[n] != 0u);
  let base = params.logitsOffset + row * vecs;
  // Read before the barriers below: in place, another invocation later overwrites it.
  var targetLogit = 0.0;
  if (lid == 0u && counted) { targetLogit = ${targetLoad}; }

  // Online softmax, branch-free: per component a running max m and sum s of exp(x - m).
  var m = ${T}(-3.0e38);
  var s = ${T}(0.0);
  for (var i = lid; i < vecs; i += ${wg}u) {
    let x = logits[base + i];
    let mx = max(m, x);
    s = s * exp(m - mx) + exp(x - mx);
    m = mx;
  }
  ${components}
  partial[lid] = ms;
  workgroupBarrier();
  for (var stride = ${wg / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { partial[lid] = merge(partial[lid], partial[lid + stride]); }
    workgroupBarrier();
  }
  let rowMax = partial[0].x;
  let sum = partial[0].y;
  if (lid == 0u) {
    let loss = select(0.0, log(sum) + rowMax - targetLogit, counted);
    losses[n] = select(bitcast<f32>(params.nanBits), loss, valid);
  }
${
    mode === "loss_only" ? "" : /* wgsl */ `
  let inv = 1.0 / sum;
  let g = ${gradOffset} + row * vecs;
  let t = u32(tgt);
  for (var i = lid; i < vecs; i += ${wg}u) {
    var d = ${T}(0.0);
    if (counted) {
      let p = exp(logits[base + i] - rowMax) * inv;
      d = (p - ${onehot}) * params.scale;
    }
    ${gradOut}[g + i] = d;
  }`
  }
}
`;
}

function crossEntropyWgsl(mode: Mode, wg: number, width: number, perInvocation: boolean): string {
  return perInvocation
    ? rowPerInvocationWgsl(mode, wg, width)
    : rowPerWorkgroupWgsl(mode, wg, width);
}

function crossEntropyKernel(mode: Mode): Kernel<CrossEntropyConstants> {
  const bindings: Kernel["bindings"] = mode === "separate"
    ? ["write", "write", "read", "read", "read", "uniform"]
    : [
      "write",
      mode === "in_place" ? "write" : "read",
      "read",
      "read",
      "uniform",
    ];
  return {
    name: `cross_entropy_${mode}`,
    bindings,
    wgsl: ({ workgroupSize, width, invocationPerRow }) =>
      crossEntropyWgsl(mode, workgroupSize, width, invocationPerRow === 1),
  };
}

/** WGSL of the fused forward and backward, the gradient into a separate buffer. */
export const crossEntropyKernelSeparate: Kernel<CrossEntropyConstants> = crossEntropyKernel(
  "separate",
);
/** WGSL of the fused forward and backward, the gradient over the logits. */
export const crossEntropyKernelInPlace: Kernel<CrossEntropyConstants> = crossEntropyKernel(
  "in_place",
);
/** WGSL of the forward alone (evaluation). */
export const crossEntropyKernelLossOnly: Kernel<CrossEntropyConstants> = crossEntropyKernel(
  "loss_only",
);

/** Invocations per workgroup of the workgroup-per-row layout (a GPU's). */
const WORKGROUP_SIZE = 256;
/** Rows per workgroup of the invocation-per-row layout: one 8-wide SIMD vector on lavapipe. */
const ROWS_PER_WORKGROUP = 8;
const NAN_BITS = 0x7fc00000;

/**
 * How many positions count towards the mean loss: a non-negative target and, with a mask, a
 * non-zero mask entry. The gradient scale of a mean loss is `1 / countedPositions(...)`.
 */
export function countedPositions(targets: Int32Array, mask?: Uint32Array | null): number {
  let count = 0;
  for (let n = 0; n < targets.length; n++) {
    if (targets[n] >= 0 && (!mask || mask[n] !== 0)) count++;
  }
  return count;
}

/** Options of {@linkcode crossEntropy}. */
export interface CrossEntropyOptions {
  /**
   * One `invocation` per row (the default on a CPU adapter) or one `workgroup` per row (on a
   * GPU); see {@linkcode CrossEntropyConstants}. Benchmarks and tests choose.
   */
  perRow?: "invocation" | "workgroup";
}

/**
 * Records the fused softmax + cross-entropy forward and backward.
 *
 * @param buffers the tensors, by name (so that two swapped buffers do not type-check)
 * @param dlossScale gradient of the mean loss per counted position, `1 / counted`.
 * @param options the row layout (benchmarks and tests).
 *
 * @example
 * ```ts
 * const scale = 1 / countedPositions(targetIds, maskBits);
 * const buffers = { losses, dlogits: logits, logits, targets, mask }; // in place
 * await crossEntropy(gpu, buffers, scale, B * T, V);
 * ```
 */
export async function crossEntropy(
  gpu: Gpu,
  buffers: {
    /** (N) per-position loss, WRITTEN; 0 where the position does not count. */
    losses: GPUBuffer;
    /**
     * (N, V) WRITTEN `(softmax - onehot) · dlossScale`, 0 where the position does not count;
     * may be `logits` itself (in place). Null or absent to compute the losses alone.
     */
    dlogits?: GPUBuffer | null;
    /** (N, V) unnormalized scores. */
    logits: GPUBuffer;
    /** (N) int32 next-token ids; negative means the position does not count. */
    targets: GPUBuffer;
    /** (N) u32, 0 where the position does not count; null or absent to count every position. */
    mask?: GPUBuffer | null;
  },
  dlossScale: number,
  n: number,
  v: number,
  options: CrossEntropyOptions = {},
): Promise<void> {
  const { losses, logits, targets } = buffers;
  const dlogits = buffers.dlogits ?? null, mask = buffers.mask ?? null;
  if (!Number.isInteger(n) || !Number.isInteger(v) || n < 0 || v < 1) {
    throw new RangeError(
      `Cross-entropy needs whole sizes N >= 0 and V >= 1, got N=${n}, V=${v}; pass the shape ` +
        "of the (N, V) logits.",
    );
  }
  if (n === 0) return;
  assertFits("losses", losses, n);
  assertFits("logits", logits, n * v);
  assertFits("targets", targets, n);
  if (dlogits) assertFits("dlogits", dlogits, n * v);
  if (mask) assertFits("mask", mask, n);
  const mode: Mode = !dlogits ? "loss_only" : dlogits === logits ? "in_place" : "separate";
  const kernel = mode === "separate"
    ? crossEntropyKernelSeparate
    : mode === "in_place"
    ? crossEntropyKernelInPlace
    : crossEntropyKernelLossOnly;
  const invocationPerRow = options.perRow ? options.perRow === "invocation" : gpu.adapter.isCpu;
  const workgroupSize = invocationPerRow ? ROWS_PER_WORKGROUP : WORKGROUP_SIZE;
  for (const { first, count } of rowParts(gpu, n, v)) {
    const x = bufferWindow(gpu, logits, first * v, count * v);
    const d = dlogits && mode === "separate"
      ? bufferWindow(gpu, dlogits, first * v, count * v)
      : null;
    const windows = d ? [x, d] : [x];
    // A row per invocation reads vec4s whatever V (see rowPerInvocationWgsl); its windows are
    // widened to whole vec4s where the buffers allow, else (a buffer of exactly N·V floats,
    // N·V not a multiple of 4) it reads floats. A row per workgroup reads vec4s when V allows.
    const width = invocationPerRow
      ? windows.every((w) => vec4Window(gpu, w.binding)) ? 4 : 1
      : v % 4 === 0
      ? 4
      : 1;
    const bind = (w: typeof x) =>
      invocationPerRow && width === 4 ? vec4Window(gpu, w.binding)! : w.binding;
    // Offsets count floats for a row per invocation, elements of `width` floats otherwise.
    const unit = invocationPerRow ? 1 : width;
    const params = gpu.uniform(uniforms({
      rows: ["u32", count],
      v: ["u32", v],
      rowOffset: ["u32", first],
      logitsOffset: ["u32", x.elementOffset / unit],
      dlogitsOffset: ["u32", (d?.elementOffset ?? 0) / unit],
      scale: ["f32", dlossScale],
      useMask: ["u32", mask ? 1 : 0],
      nanBits: ["u32", NAN_BITS],
    }));
    // Without a mask the targets stand in for it: the kernel does not read it then.
    const tail = [head(targets, n), head(mask ?? targets, n), params];
    await gpu.run(
      kernel,
      { workgroupSize, width, invocationPerRow: invocationPerRow ? 1 : 0 },
      d ? [head(losses, n), bind(d), bind(x), ...tail] : [head(losses, n), bind(x), ...tail],
      grid2d(invocationPerRow ? Math.ceil(count / ROWS_PER_WORKGROUP) : count),
    );
  }
}

/**
 * `binding` widened to a whole number of vec4s (its offset is 256-byte aligned already), or null
 * when its buffer or the binding limit has no room for that.
 */
function vec4Window(
  gpu: Gpu,
  binding: { buffer: GPUBuffer; offset: number; size: number },
): { buffer: GPUBuffer; offset: number; size: number } | null {
  const size = Math.ceil(binding.size / 16) * 16;
  return binding.offset + size <= binding.buffer.size && size <= gpu.maxBinding
    ? { ...binding, size }
    : null;
}

/**
 * CPU reference of {@linkcode crossEntropy}: WRITES `losses` and, unless null, `dlogits`
 * (which may be `logits` itself).
 */
export function crossEntropyCpu(
  losses: Floats,
  dlogits: Floats | null,
  logits: Floats,
  targets: Int32Array,
  mask: Uint32Array | null,
  dlossScale: number,
  n: number,
  v: number,
): void {
  for (let row = 0; row < n; row++) {
    const base = row * v, target = targets[row];
    const valid = target < v;
    const counted = target >= 0 && valid && (!mask || mask[row] !== 0);
    let max = -Infinity;
    for (let i = 0; i < v; i++) max = Math.max(max, logits[base + i]);
    let sum = 0;
    for (let i = 0; i < v; i++) sum += Math.exp(logits[base + i] - max);
    losses[row] = !valid ? NaN : counted ? Math.log(sum) + max - logits[base + target] : 0;
    if (!dlogits) continue;
    for (let i = 0; i < v; i++) {
      const p = Math.exp(logits[base + i] - max) / sum;
      dlogits[base + i] = counted ? (p - (i === target ? 1 : 0)) * dlossScale : 0;
    }
  }
}
