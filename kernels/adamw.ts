/**
 * AdamW (Loshchilov & Hutter, decoupled weight decay), one fused elementwise update over all
 * parameters, with global-norm gradient clipping folded in:
 *
 *     s  = min(1, maxNorm / (‖g‖ + 1e-6))       (1 when maxNorm <= 0: no clipping)
 *     m  = β1·m + (1 − β1)·g·s
 *     v  = β2·v + (1 − β2)·(g·s)²
 *     p -= lr · (m̂ / (√v̂ + eps) + wd·p)         m̂ = m / (1 − β1ᵗ), v̂ = v / (1 − β2ᵗ)
 *
 * `‖g‖` is read by the kernel from a 1-element GPU buffer written by `globalNorm`
 * (`kernels/grad_norm.ts`), so clipping costs neither a CPU readback nor an extra pass over the
 * gradients. The 1e-6 is PyTorch's `clip_grad_norm_` guard against a zero norm. Given a norm,
 * the kernel also skips the whole update (parameters and moments) when the norm is NaN or
 * infinite: a diverged step then changes nothing, and the CPU can check the norm after the step
 * was recorded rather than wait for it before recording the update (`nn/checked_step.ts`).
 *
 * Weight decay is decoupled and applied per range: GPT-2 decays the matrices (and embeddings)
 * but not biases and layernorm parameters, so each range says whether it decays. Parameters may
 * live in per-tensor buffers or one flat buffer (124M floats = 496 MB for GPT-2) given as
 * ranges; ranges over one binding are processed in windows ({@linkcode bufferWindow}). One
 * launch covers a decayed range and the undecayed range right after it (the kernel decays the
 * elements before a boundary in its uniform), so a flat buffer laid out decayed-first, as a
 * model's parameters are (`nn/arena.ts`, `gpt2ArenaOrder`), takes one launch per binding window
 * for the whole model (`nn/optimizer.ts`).
 *
 * `params`, `m` and `v` are updated in place; `grads` is only read (zero it for the next step).
 * The fast kernel handles four floats per invocation as a `vec4<f32>`; the scalar kernel handles
 * ranges that do not start on a multiple of 4, tails, and is the benchmark's naive baseline.
 *
 * @module
 */

import { bufferWindow, type Gpu, type GpuFloats, grid2d, type Kernel, uniforms } from "./device.ts";
import { assertFits, head, rowParts } from "./_parts.ts";
import { IS_FINITE_WGSL, rangeTableWgsl } from "./_wgsl.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of the AdamW kernels. */
export interface AdamWConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
}

const WORKGROUP_SIZE = 256;

function adamwWgsl(type: "f32" | "vec4f", wg: number): string {
  // Which of the invocation's floats decay: by their index within the launch.
  const decays = type === "f32"
    ? "i < params.decayEnd"
    : "vec4u(i * 4u) + vec4u(0u, 1u, 2u, 3u) < vec4u(params.decayEnd)";
  return /* wgsl */ `
struct Params {
  n: u32, pOffset: u32, mOffset: u32, vOffset: u32, gOffset: u32,
  lr: f32, beta1: f32, beta2: f32, eps: f32, weightDecay: f32,
  biasCorrection1: f32, biasCorrection2: f32, maxNorm: f32,
  decayEnd: u32,  // floats [0, decayEnd) of this launch decay; the rest do not
  guard: u32,     // 1: gradNorm is the step's norm, and a non-finite one skips the update
}

@group(0) @binding(0) var<storage, read_write> p: array<${type}>;
@group(0) @binding(1) var<storage, read_write> m: array<${type}>;
@group(0) @binding(2) var<storage, read_write> v: array<${type}>;
@group(0) @binding(3) var<storage, read> g: array<${type}>;
@group(0) @binding(4) var<storage, read> gradNorm: array<f32>;  // (1); unread without one
@group(0) @binding(5) var<uniform> params: Params;
${IS_FINITE_WGSL}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * groups.x) * ${wg}u + lid;
  if (i >= params.n || (params.guard != 0u && !isFinite(gradNorm[0]))) { return; }
  var scale = 1.0;
  if (params.maxNorm > 0.0) { scale = min(1.0, params.maxNorm / (gradNorm[0] + 1e-6)); }
  let grad = g[params.gOffset + i] * scale;
  let mNew = params.beta1 * m[params.mOffset + i] + (1.0 - params.beta1) * grad;
  let vNew = params.beta2 * v[params.vOffset + i] + (1.0 - params.beta2) * grad * grad;
  m[params.mOffset + i] = mNew;
  v[params.vOffset + i] = vNew;
  let mHat = mNew * params.biasCorrection1;
  let vHat = vNew * params.biasCorrection2;
  let old = p[params.pOffset + i];
  let weightDecay = select(${type}(0.0), ${type}(params.weightDecay), ${decays});
  p[params.pOffset + i] = old - params.lr * (mHat / (sqrt(vHat) + params.eps) + weightDecay * old);
}
`;
}

/** WGSL of the update, four parameters per invocation. */
export const adamwKernel: Kernel<AdamWConstants> = {
  name: "adamw_vec4",
  bindings: ["write", "write", "write", "read", "read", "uniform"],
  wgsl: ({ workgroupSize }) => adamwWgsl("vec4f", workgroupSize),
};

/** WGSL of the update, one parameter per invocation (tails, misaligned ranges, baseline). */
export const adamwScalarKernel: Kernel<AdamWConstants> = {
  name: "adamw_scalar",
  bindings: adamwKernel.bindings,
  wgsl: ({ workgroupSize }) => adamwWgsl("f32", workgroupSize),
};

/** AdamW's settings: the hyperparameters that stay the same from step to step. */
export interface AdamWSettings {
  /** Decay of the first moment (the gradient's running mean), e.g. 0.9. */
  beta1: number;
  /** Decay of the second moment (the squared gradient's running mean), e.g. 0.95 or 0.999. */
  beta2: number;
  /** Added to √v̂ in the denominator, for stability, e.g. 1e-8. */
  eps: number;
  /** Decoupled weight decay, `p -= lr·wd·p`, of the decayed parameters only, e.g. 0.1. */
  weightDecay: number;
  /** Clip the global gradient norm to this; 0 or absent for no clipping. */
  maxNorm?: number;
}

/** AdamW's hyperparameters for one step: the settings, and this step's learning rate and number. */
export interface AdamWHyperparameters extends AdamWSettings {
  /** Learning rate of this step (after any schedule). */
  lr: number;
  /** The step number t, from 1, for the bias corrections. */
  step: number;
}

/** A range of the parameter buffers updated with one decay setting. */
export interface ParameterRange {
  /** Index of the first parameter. */
  first: number;
  /** Number of parameters. */
  count: number;
  /** Whether weight decay applies (matrices and embeddings: yes; biases, layernorms: no). */
  decay: boolean;
}

/** Options of {@linkcode adamwUpdate}. */
export interface AdamWOptions {
  /** Use the one-float-per-invocation kernel everywhere (the benchmark baseline). */
  scalar?: boolean;
  /**
   * Where parameter 0 of the ranges sits in `m` and `v` (a multiple of 4): the moments of one
   * tensor inside flat moment buffers. Negative when the moments start with the first range, which
   * starts past parameter 0 (the parameters AdamW updates in a model's flat buffer, after those
   * Muon updates). Default 0.
   */
  momentsFirst?: number;
}

/** A run of parameters one launch updates: the first `decayed` of them decay. */
interface Span {
  first: number;
  count: number;
  decayed: number;
}

/**
 * Joins neighbouring ranges into spans of one launch each: ranges with the same decay, and a
 * decayed range with the undecayed one right after it.
 */
function spansOf(ranges: readonly ParameterRange[]): Span[] {
  const spans: Span[] = [];
  for (const range of mergeRanges(ranges)) {
    const last = spans.at(-1);
    const joins = last && last.first + last.count === range.first && last.decayed === last.count;
    if (joins && !range.decay) last.count += range.count;
    else spans.push({ ...range, decayed: range.decay ? range.count : 0 });
  }
  return spans;
}

/** Joins neighbouring ranges with the same decay, and checks that none overlap. */
function mergeRanges(ranges: readonly ParameterRange[]): ParameterRange[] {
  const sorted = [...ranges].filter((r) => r.count > 0).sort((a, b) => a.first - b.first);
  const merged: ParameterRange[] = [];
  for (const range of sorted) {
    const last = merged.at(-1);
    if (last && last.first + last.count > range.first) {
      throw new RangeError(
        `Parameter ranges [${last.first}, ${last.first + last.count}) and ` +
          `[${range.first}, ${range.first + range.count}) overlap; give each parameter once.`,
      );
    }
    if (last && last.decay === range.decay && last.first + last.count === range.first) {
      last.count += range.count;
    } else merged.push({ ...range });
  }
  return merged;
}

/**
 * Records one AdamW step over `ranges` of the parameter buffers, updating `params`, `m` and `v`
 * in place.
 *
 * @param buffers the tensors, by name (so that two swapped buffers do not type-check)
 * @param ranges which parameters to update and whether each decays; for per-tensor buffers, one
 *   range `{ first: 0, count, decay }`.
 */
export async function adamwUpdate(
  gpu: Gpu,
  buffers: {
    /** (P) parameters, updated. */
    params: GpuFloats;
    /** (momentsFirst + P) first moments, updated (zeros before step 1). */
    m: GPUBuffer;
    /** (momentsFirst + P) second moments, updated (zeros before step 1). */
    v: GPUBuffer;
    /** (P) gradients, read. */
    grads: GpuFloats;
    /**
     * (1) the global gradient norm from `globalNorm`: clipped by when `hyper.maxNorm > 0`, and
     * the update is skipped when it is NaN or infinite.
     */
    gradNorm?: GPUBuffer | null;
  },
  ranges: readonly ParameterRange[],
  hyper: AdamWHyperparameters,
  options: AdamWOptions = {},
): Promise<void> {
  const { params, m, v, grads } = buffers, gradNorm = buffers.gradNorm ?? null;
  const clip = checkHyperparameters(hyper, gradNorm);
  const spans = spansOf(ranges);
  const end = spans.reduce((e, r) => Math.max(e, r.first + r.count), 0);
  const momentsFirst = options.momentsFirst ?? 0;
  if (momentsFirst % 4 !== 0) {
    throw new RangeError(`momentsFirst must be a multiple of 4, got ${momentsFirst}.`);
  }
  for (const [name, buffer] of [["params", params], ["grads", grads]] as const) {
    assertFits(name, buffer, end);
  }
  assertFits("m", m, momentsFirst + end);
  assertFits("v", v, momentsFirst + end);
  const common: Record<string, ["f32", number]> = {
    lr: ["f32", hyper.lr],
    beta1: ["f32", hyper.beta1],
    beta2: ["f32", hyper.beta2],
    eps: ["f32", hyper.eps],
  };
  const biasCorrection1 = 1 / (1 - hyper.beta1 ** hyper.step);
  const biasCorrection2 = 1 / (1 - hyper.beta2 ** hyper.step);

  /**
   * Records one kernel over `count` elements of `bytes` each from element `first`, whose first
   * `decayed` floats decay.
   */
  const launch = async (first: number, count: number, decayed: number, vec4: boolean) => {
    const bytes = vec4 ? 16 : 4;
    // Parts in multiples of 256 bytes, so every window after the first starts aligned.
    for (const part of rowParts(gpu, count, bytes / 4, 256 / bytes)) {
      const at = first + part.first;
      const momentsAt = at + momentsFirst / (bytes / 4);
      const window = (buffer: GpuFloats, start: number) =>
        bufferWindow(gpu, buffer, start, part.count, bytes);
      const [pw, mw, vw, gw] = [
        window(params, at),
        window(m, momentsAt),
        window(v, momentsAt),
        window(grads, at),
      ];
      const uniform = gpu.uniform(uniforms({
        n: ["u32", part.count],
        pOffset: ["u32", pw.elementOffset],
        mOffset: ["u32", mw.elementOffset],
        vOffset: ["u32", vw.elementOffset],
        gOffset: ["u32", gw.elementOffset],
        ...common,
        weightDecay: ["f32", hyper.weightDecay],
        biasCorrection1: ["f32", biasCorrection1],
        biasCorrection2: ["f32", biasCorrection2],
        maxNorm: ["f32", clip ? hyper.maxNorm! : 0],
        decayEnd: ["u32", Math.max(0, decayed - part.first * (bytes / 4))],
        guard: ["u32", gradNorm ? 1 : 0],
      }));
      // Without a norm none is read; the gradient window stands in for its binding.
      const norm = gradNorm ? { buffer: gradNorm, offset: 0, size: 4 } : gw.binding;
      await gpu.run(
        vec4 ? adamwKernel : adamwScalarKernel,
        { workgroupSize: WORKGROUP_SIZE },
        [pw.binding, mw.binding, vw.binding, gw.binding, norm, uniform],
        grid2d(Math.ceil(part.count / WORKGROUP_SIZE)),
      );
    }
  };

  for (const { first, count, decayed } of spans) {
    const vectors = options.scalar || first % 4 !== 0 ? 0 : Math.floor(count / 4);
    if (vectors > 0) await launch(first / 4, vectors, decayed, true);
    const rest = vectors * 4;
    if (count > rest) {
      await launch(first + rest, count - rest, Math.max(0, decayed - rest), false);
    }
  }
}

/** Compile-time constants of the many-tensor AdamW kernel. */
export interface AdamWTensorsConstants extends Record<string, number | boolean> {
  /** Invocations per workgroup. */
  workgroupSize: number;
  /** Tensors per launch, each bound as its own parameter and gradient buffers. */
  tensors: number;
  /** Four floats per invocation (every tensor's size a multiple of 4). */
  vec4: boolean;
}

/**
 * WGSL of the many-tensor update: one launch over up to `tensors` parameter tensors, each in its
 * own buffer (as the model keeps them) with its gradient, the moments in one flat buffer. The
 * uniform holds a range table: each tensor's first workgroup, size, offset in the moments and
 * whether it decays. A workgroup finds its tensor in the table, and a `switch` picks the
 * tensor's bindings (WGSL cannot index bindings).
 */
export const adamwTensorsKernel: Kernel<AdamWTensorsConstants> = {
  name: "adamw_tensors",
  bindings: ({ tensors }) => [
    "write",
    "write",
    "read",
    "uniform",
    ...Array.from({ length: tensors }, () => ["write", "read"] as const).flat(),
  ],
  wgsl: ({ workgroupSize: wg, tensors: K, vec4 }) => {
    const T = vec4 ? "vec4f" : "f32";
    const bindings = Array.from({ length: K }, (_, k) => `
@group(0) @binding(${4 + 2 * k}) var<storage, read_write> p${k}: array<${T}>;
@group(0) @binding(${5 + 2 * k}) var<storage, read> g${k}: array<${T}>;`).join("");
    const cases = Array.from({ length: K }, (_, k) => `
    case ${k}u: { p${k}[i] = updated(p${k}[i], g${k}[i] * scale, mi, decays); }`).join("");
    return /* wgsl */ `
struct Params {
  lr: f32, beta1: f32, beta2: f32, eps: f32,
  weightDecay: f32, biasCorrection1: f32, biasCorrection2: f32, maxNorm: f32,
  guard: u32,  // 1: gradNorm is the step's norm, and a non-finite one skips the update
  // Per tensor: (first workgroup, size, offset in m and v, 1 when it decays), in ${T}s.
  table: array<vec4u, ${K}>,
}

@group(0) @binding(0) var<storage, read_write> m: array<${T}>;
@group(0) @binding(1) var<storage, read_write> v: array<${T}>;
@group(0) @binding(2) var<storage, read> gradNorm: array<f32>;  // (1); unread without one
@group(0) @binding(3) var<uniform> params: Params;${bindings}
${IS_FINITE_WGSL}

/** Updates the moments at mi and returns the new parameter. */
fn updated(old: ${T}, grad: ${T}, mi: u32, decays: bool) -> ${T} {
  let mNew = params.beta1 * m[mi] + (1.0 - params.beta1) * grad;
  let vNew = params.beta2 * v[mi] + (1.0 - params.beta2) * grad * grad;
  m[mi] = mNew;
  v[mi] = vNew;
  let mHat = mNew * params.biasCorrection1;
  let vHat = vNew * params.biasCorrection2;
  let weightDecay = select(0.0, params.weightDecay, decays);
  return old - params.lr * (mHat / (sqrt(vHat) + params.eps) + weightDecay * old);
}

${rangeTableWgsl(K)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * groups.x;
  let t = tableIndex(w);
  let entry = params.table[t];
  let i = (w - entry.x) * ${wg}u + lid;
  if (i >= entry.y || (params.guard != 0u && !isFinite(gradNorm[0]))) { return; }
  var scale = 1.0;
  if (params.maxNorm > 0.0) { scale = min(1.0, params.maxNorm / (gradNorm[0] + 1e-6)); }
  let mi = entry.z + i;
  let decays = entry.w != 0u;
  switch t {${cases}
    default: {}
  }
}
`;
  },
};

/** One parameter tensor for {@linkcode adamwUpdateTensors}. */
export interface AdamWTensor {
  /** The parameters, updated: `count` floats. */
  param: GpuFloats;
  /** The gradients, read: `count` floats. */
  grad: GpuFloats;
  /** Where the tensor's moments start in the flat `m` and `v` buffers, a multiple of 4. */
  first: number;
  /** Number of parameters. */
  count: number;
  /** Whether weight decay applies. */
  decay: boolean;
}

/** Most tensors one launch binds; more cost a larger `switch` for little. */
const MAX_TENSORS_PER_LAUNCH = 16;

/**
 * Tensors of at least this many floats get a launch of their own (the plain kernel): their
 * update takes far longer than a launch costs, and the plain kernel is the faster per float on
 * lavapipe (measured: AdamW over the 14M parameters of a 6-layer, 384-wide model took ~30% longer
 * with every tensor in the many-tensor kernel). Only the small ones (biases, layernorms: where
 * a launch costs more than the work) share launches.
 */
const OWN_LAUNCH_FROM = 16384;

/**
 * Checks a step's hyperparameters (the step counts from 1; clipping needs the norm buffer) and
 * returns whether the step clips.
 */
function checkHyperparameters(hyper: AdamWHyperparameters, gradNorm: GPUBuffer | null): boolean {
  const clip = (hyper.maxNorm ?? 0) > 0;
  if (clip && !gradNorm) {
    throw new Error(
      "AdamW was asked to clip (maxNorm > 0) without a gradient-norm buffer; pass the buffer " +
        "globalNorm() wrote, or maxNorm 0.",
    );
  }
  if (!(hyper.step >= 1)) {
    throw new RangeError(`AdamW's step counts from 1, got ${hyper.step}; pass the step number.`);
  }
  return clip;
}

/**
 * Records one AdamW step over parameter tensors bound one by one (buffers of their own, or
 * windows of a shared buffer that are not one run: see `nn/optimizer.ts`), the moments in flat
 * buffers. Tensors of 16384 floats or more (matrices, embeddings) get a launch each, of
 * {@linkcode adamwUpdate} (in windows when larger than a binding); the small ones share
 * launches, 16 a launch where the adapter's storage-buffer limit allows 35 bindings (lavapipe
 * allows 48): GPT-2 small's 148 tensors take 51 launches (wte in two windows) + 7, not 148.
 * The arithmetic is {@linkcode adamwUpdate}'s, so the bits are the same.
 *
 * @param m first moments, flat, updated (zeros before step 1).
 * @param v second moments, flat, updated.
 * @param gradNorm (1) the global gradient norm from `globalNorm`: clipped by when
 *   `hyper.maxNorm > 0`, and the update is skipped when it is NaN or infinite.
 */
export async function adamwUpdateTensors(
  gpu: Gpu,
  tensors: readonly AdamWTensor[],
  m: GPUBuffer,
  v: GPUBuffer,
  hyper: AdamWHyperparameters,
  gradNorm: GPUBuffer | null = null,
): Promise<void> {
  const clip = checkHyperparameters(hyper, gradNorm);
  const storageLimit = gpu.device.limits.maxStorageBuffersPerShaderStage;
  const perLaunch = Math.min(MAX_TENSORS_PER_LAUNCH, Math.floor((storageLimit - 3) / 2));
  // A tensor and its moments must each fit one binding, with room for the window's alignment.
  const slack = gpu.device.limits.minStorageBufferOffsetAlignment;
  const fits = (count: number) => count * 4 + slack <= gpu.maxBinding;
  const large: AdamWTensor[] = [];
  const groups: AdamWTensor[][] = [];
  for (const tensor of tensors) {
    if (tensor.first % 4 !== 0) {
      throw new RangeError(
        `A tensor's moments start at ${tensor.first}, not a multiple of 4; align them.`,
      );
    }
    for (const [name, buffer] of [["param", tensor.param], ["grad", tensor.grad]] as const) {
      assertFits(name, buffer, tensor.count);
    }
    assertFits("m", m, tensor.first + tensor.count);
    assertFits("v", v, tensor.first + tensor.count);
  }
  // Tensors whose sizes are multiples of 4 take the vec4 kernel, in launches of their own.
  for (const vec4 of [true, false]) {
    let group: AdamWTensor[] = [];
    for (const tensor of tensors) {
      if (tensor.count === 0 || (tensor.count % 4 === 0) !== vec4) continue;
      if (tensor.count >= OWN_LAUNCH_FROM || !fits(tensor.count)) {
        large.push(tensor);
        continue;
      }
      // The group's moments are bound as one window: it must fit one binding too.
      const start = group.length ? Math.min(group[0].first, tensor.first) : tensor.first;
      const end = Math.max(tensor.first + tensor.count, ...group.map((t) => t.first + t.count));
      if (group.length === perLaunch || (group.length && !fits(end - start))) {
        groups.push(group);
        group = [];
      }
      group.push(tensor);
    }
    if (group.length) groups.push(group);
  }

  for (const { param, grad, first, count, decay } of large) {
    const buffers = { params: param, m, v, grads: grad, gradNorm };
    await adamwUpdate(gpu, buffers, [{ first: 0, count, decay }], hyper, { momentsFirst: first });
  }
  const wg = WORKGROUP_SIZE;
  for (const group of groups) {
    const vec4 = group[0].count % 4 === 0;
    const width = vec4 ? 4 : 1;
    const first = Math.min(...group.map((t) => t.first));
    const end = Math.max(...group.map((t) => t.first + t.count));
    const [mw, vw] = [m, v].map((b) => bufferWindow(gpu, b, first, end - first));
    // (8 f32 hyperparameters, the guard flag, padding to 48 bytes, then one vec4u table entry
    // per tensor)
    const bytes = new ArrayBuffer(48 + 16 * group.length);
    new Float32Array(bytes, 0, 8).set([
      hyper.lr,
      hyper.beta1,
      hyper.beta2,
      hyper.eps,
      hyper.weightDecay,
      1 / (1 - hyper.beta1 ** hyper.step),
      1 / (1 - hyper.beta2 ** hyper.step),
      clip ? hyper.maxNorm! : 0,
    ]);
    new Uint32Array(bytes, 32, 1)[0] = gradNorm ? 1 : 0;
    const table = new Uint32Array(bytes, 48);
    let workgroups = 0;
    group.forEach((tensor, k) => {
      const n = tensor.count / width;
      const offset = (mw.elementOffset + tensor.first - first) / width;
      table.set([workgroups, n, offset, tensor.decay ? 1 : 0], 4 * k);
      workgroups += Math.ceil(n / wg);
    });
    const norm = gradNorm ?? group[0].grad; // unread without a norm (any 4 bytes will do)
    await gpu.run(
      adamwTensorsKernel,
      { workgroupSize: wg, tensors: group.length, vec4 },
      [
        mw.binding,
        vw.binding,
        head(norm, 1),
        gpu.uniform(bytes),
        ...group.flatMap((t) => [head(t.param, t.count), head(t.grad, t.count)]),
      ],
      grid2d(workgroups),
    );
  }
}

/**
 * CPU reference of {@linkcode adamwUpdate} for one range: updates `params`, `m`, `v` in place.
 *
 * @param gradNorm the global gradient norm: clipped by when `hyper.maxNorm > 0`; a NaN or
 *   infinite one skips the update.
 */
export function adamwUpdateCpu(
  params: Floats,
  m: Floats,
  v: Floats,
  grads: Floats,
  hyper: AdamWHyperparameters,
  decay: boolean,
  gradNorm = 0,
): void {
  if (!Number.isFinite(gradNorm)) return; // the kernels skip a diverged step whole
  const { lr, beta1, beta2, eps, step } = hyper;
  const maxNorm = hyper.maxNorm ?? 0;
  const scale = maxNorm > 0 ? Math.min(1, maxNorm / (gradNorm + 1e-6)) : 1;
  const wd = decay ? hyper.weightDecay : 0;
  for (let i = 0; i < params.length; i++) {
    const g = grads[i] * scale;
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    const mHat = m[i] / (1 - beta1 ** step), vHat = v[i] / (1 - beta2 ** step);
    params[i] -= lr * (mHat / (Math.sqrt(vHat) + eps) + wd * params[i]);
  }
}
