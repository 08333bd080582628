/**
 * The elementwise and per-matrix kernels of the Muon optimizer (`nn/muon.ts`); its products
 * (`X·Xᵀ`, `A·A`, `B·X`) go through `matmul`. Each kernel works on a stack of `count` matrices of
 * one shape laid out back to back in one buffer (`nn/muon.ts` stacks a shape's matrices from all
 * layers), so one launch serves every layer:
 *
 * - {@linkcode muonMomentum}: `m = μ·m + s·g`, then `g ← s·g + μ·m` (Nesterov) or `g ← m`, in
 *   place of the gradient; `s` is the clipping scale `min(1, maxNorm / (‖g‖ + 1e-6))` read from the
 *   GPU-computed global norm, exactly as AdamW reads it (`kernels/adamw.ts`);
 * - {@linkcode muonInverseNorms}: `1 / (‖X_j‖_F + eps)` of each matrix of the stack;
 * - {@linkcode muonScale}: `X_j ← X_j / (‖X_j‖_F + eps)` from those, in place;
 * - {@linkcode muonPolynomial}: `B = a·I + b·A + c·A²` of each small-side Gram matrix, so that one
 *   Newton-Schulz iteration `X ← a·X + (b·A + c·A²)·X` is a single product `B·X`;
 * - {@linkcode muonUpdate}: `w ← w − lr·(scale·o + wd·w)`.
 *
 * A stack must fit one binding (`nn/muon.ts` splits larger ones), so no kernel here windows.
 *
 * @module
 */

import { type Binding, type Gpu, grid2d, type Kernel, uniforms } from "./device.ts";
import { assertFits, head, reductionWorkgroup } from "./_parts.ts";
import { IS_FINITE_WGSL, workgroupSumWgsl } from "./_wgsl.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of the Muon kernels. */
export interface MuonConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
}

/**
 * Records an elementwise kernel over `n` floats, one invocation each (made with
 * {@linkcode elementwiseMain}), in workgroups of 64 on a CPU adapter and 256 on a GPU.
 *
 * @param bindings the kernel's buffers, then its uniform.
 */
async function runPerFloat(
  gpu: Gpu,
  kernel: Kernel<MuonConstants>,
  n: number,
  bindings: readonly Binding[],
): Promise<void> {
  const workgroupSize = gpu.adapter.isCpu ? 64 : 256;
  await gpu.run(kernel, { workgroupSize }, bindings, grid2d(Math.ceil(n / workgroupSize)));
}

/** Throws when `n` floats would not fit one binding. */
function assertOneBinding(gpu: Gpu, what: string, n: number): void {
  if (n * 4 > gpu.maxBinding) {
    throw new RangeError(
      `A Muon ${what} of ${n} floats exceeds one binding (${gpu.maxBinding} bytes); ` +
        "stack fewer matrices per launch.",
    );
  }
}

/** The elementwise kernels' entry: invocation `i` of a 2-D grid, bound-checked against `n`. */
function elementwiseMain(wg: number, body: string): string {
  return /* wgsl */ `
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * groups.x) * ${wg}u + lid;
  if (i >= params.n) { return; }
  ${body}
}`;
}

/** WGSL of the momentum step; the gradient buffer is overwritten by the update's direction. */
export const muonMomentumKernel: Kernel<MuonConstants> = {
  name: "muon_momentum",
  bindings: ["write", "write", "read", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { n: u32, momentum: f32, nesterov: u32, maxNorm: f32, guard: u32 }

@group(0) @binding(0) var<storage, read_write> m: array<f32>;      // (n) momentum buffer
@group(0) @binding(1) var<storage, read_write> g: array<f32>;      // (n) gradient in, direction out
@group(0) @binding(2) var<storage, read> gradNorm: array<f32>;     // (1); unread without one
@group(0) @binding(3) var<uniform> params: Params;
${IS_FINITE_WGSL}
${
    elementwiseMain(
      workgroupSize,
      /* wgsl */ `
  if (params.guard != 0u && !isFinite(gradNorm[0])) { return; }  // a diverged step: no change
  var scale = 1.0;
  if (params.maxNorm > 0.0) { scale = min(1.0, params.maxNorm / (gradNorm[0] + 1e-6)); }
  let grad = g[i] * scale;
  let mNew = params.momentum * m[i] + grad;
  m[i] = mNew;
  g[i] = select(mNew, grad + params.momentum * mNew, params.nesterov != 0u);`,
    )
  }
`,
};

/** Muon's momentum settings for one step. */
export interface MuonMomentumHyperparameters {
  /** μ, e.g. 0.95. */
  momentum: number;
  /** Step along `g + μ·m` (Nesterov) rather than `m`. */
  nesterov: boolean;
  /** Clip the global gradient norm to this; 0 for no clipping. */
  maxNorm: number;
}

/**
 * Records `m = μ·m + s·g` and `g ← s·g + μ·m` (Nesterov) or `g ← m`, over `n` floats, where `s` is
 * the clipping scale from `gradNorm` (when `maxNorm > 0`). Nothing changes when the norm is given
 * and is NaN or infinite (a diverged step).
 *
 * @param m (n) momentum, updated (zeros before the first step).
 * @param g (n) the gradient, OVERWRITTEN by the direction to orthogonalize.
 * @param gradNorm (1) the global gradient norm from `globalNorm`; clipped by when `maxNorm > 0`.
 */
export async function muonMomentum(
  gpu: Gpu,
  m: GPUBuffer,
  g: GPUBuffer,
  n: number,
  hyper: MuonMomentumHyperparameters,
  gradNorm: GPUBuffer | null = null,
): Promise<void> {
  if (n === 0) return;
  if (hyper.maxNorm > 0 && !gradNorm) {
    throw new Error(
      "Muon was asked to clip (maxNorm > 0) without a gradient-norm buffer; pass the buffer " +
        "globalNorm() wrote, or maxNorm 0.",
    );
  }
  assertOneBinding(gpu, "momentum", n);
  assertFits("m", m, n);
  assertFits("g", g, n);
  const params = gpu.uniform(uniforms({
    n: ["u32", n],
    momentum: ["f32", hyper.momentum],
    nesterov: ["u32", hyper.nesterov ? 1 : 0],
    maxNorm: ["f32", hyper.maxNorm > 0 ? hyper.maxNorm : 0],
    guard: ["u32", gradNorm ? 1 : 0],
  }));
  // Without a norm none is read; a scratch float stands in for its binding (a window
  // of m or g cannot: a buffer bound read-write may not also be bound read-only).
  const norm = gradNorm ?? gpu.acquire(4, undefined, "muon.no_norm");
  await runPerFloat(gpu, muonMomentumKernel, n, [head(m, n), head(g, n), head(norm, 1), params]);
  if (!gradNorm) gpu.release(norm);
}

/** CPU reference of {@linkcode muonMomentum}: updates `m` and overwrites `g` in place. */
export function muonMomentumCpu(
  m: Floats,
  g: Floats,
  hyper: MuonMomentumHyperparameters,
  gradNorm = 0,
): void {
  if (!Number.isFinite(gradNorm)) return; // the kernel skips a diverged step
  const scale = hyper.maxNorm > 0 ? Math.min(1, hyper.maxNorm / (gradNorm + 1e-6)) : 1;
  for (let i = 0; i < m.length; i++) {
    const grad = g[i] * scale;
    m[i] = hyper.momentum * m[i] + grad;
    g[i] = hyper.nesterov ? grad + hyper.momentum * m[i] : m[i];
  }
}

/**
 * WGSL of the per-matrix inverse Frobenius norm: workgroup `j` sums the squares of matrix `j`
 * (strided by invocation, then a tree: a fixed order, so the same bits every run). One workgroup
 * per matrix is enough: the stacks are a few dozen matrices, and this pass is small beside the
 * Newton-Schulz products that follow.
 */
export const muonInverseNormKernel: Kernel<MuonConstants> = {
  name: "muon_inverse_norm",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize: wg }) => /* wgsl */ `
struct Params { count: u32, size: u32, eps: f32 }

@group(0) @binding(0) var<storage, read_write> inverseNorms: array<f32>;  // (count)
@group(0) @binding(1) var<storage, read> x: array<f32>;                   // (count, size)
@group(0) @binding(2) var<uniform> params: Params;
${workgroupSumWgsl(wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let j = wid.x;
  let first = j * params.size;
  var sum = 0.0;
  for (var i = lid; i < params.size; i += ${wg}u) {
    let v = x[first + i];
    sum += v * v;
  }
  let total = workgroupSum(lid, sum);
  if (lid == 0u) { inverseNorms[j] = 1.0 / (sqrt(total) + params.eps); }
}
`,
};

/**
 * Records `inverseNorms[j] = 1 / (‖x_j‖_F + eps)` for each of `count` matrices of `size` floats.
 *
 * @param inverseNorms (count) WRITTEN.
 * @param x (count, size) the stacked matrices.
 */
export async function muonInverseNorms(
  gpu: Gpu,
  inverseNorms: GPUBuffer,
  x: GPUBuffer,
  count: number,
  size: number,
  eps: number,
): Promise<void> {
  if (count === 0) return;
  if (count > 65535) {
    throw new RangeError(`Muon stacks at most 65535 matrices per launch, got ${count}.`);
  }
  assertOneBinding(gpu, "stack", count * size);
  assertFits("inverseNorms", inverseNorms, count);
  assertFits("x", x, count * size);
  const wg = reductionWorkgroup(gpu, 256, 16);
  const params = gpu.uniform(uniforms({
    count: ["u32", count],
    size: ["u32", size],
    eps: ["f32", eps],
  }));
  await gpu.run(
    muonInverseNormKernel,
    { workgroupSize: wg },
    [head(inverseNorms, count), head(x, count * size), params],
    [count],
  );
}

/** CPU reference of {@linkcode muonInverseNorms}, summed in float64. */
export function muonInverseNormsCpu(x: Floats, size: number, eps: number): Float64Array {
  const count = x.length / size;
  const out = new Float64Array(count);
  for (let j = 0; j < count; j++) {
    let sum = 0;
    for (let i = j * size; i < (j + 1) * size; i++) sum += x[i] * x[i];
    out[j] = 1 / (Math.sqrt(sum) + eps);
  }
  return out;
}

/** WGSL of the per-matrix scaling, in place: `x[i] *= scales[i / size]`. */
export const muonScaleKernel: Kernel<MuonConstants> = {
  name: "muon_scale",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { n: u32, size: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;    // (count, size)
@group(0) @binding(1) var<storage, read> scales: array<f32>;     // (count)
@group(0) @binding(2) var<uniform> params: Params;
${elementwiseMain(workgroupSize, "x[i] *= scales[i / params.size];")}
`,
};

/**
 * Records `x_j ← scales[j] · x_j` for each of `count` matrices of `size` floats, in place.
 *
 * @param x (count, size) scaled in place.
 * @param scales (count) one factor per matrix, e.g. from {@linkcode muonInverseNorms}.
 */
export async function muonScale(
  gpu: Gpu,
  x: GPUBuffer,
  scales: GPUBuffer,
  count: number,
  size: number,
): Promise<void> {
  const n = count * size;
  if (n === 0) return;
  assertOneBinding(gpu, "stack", n);
  assertFits("x", x, n);
  assertFits("scales", scales, count);
  const params = gpu.uniform(uniforms({ n: ["u32", n], size: ["u32", size] }));
  await runPerFloat(gpu, muonScaleKernel, n, [head(x, n), head(scales, count), params]);
}

/** CPU reference of {@linkcode muonScale}. */
export function muonScaleCpu(x: Floats, scales: ArrayLike<number>, size: number): void {
  for (let i = 0; i < x.length; i++) x[i] *= scales[Math.floor(i / size)];
}

/** The Newton-Schulz quintic's coefficients `(a, b, c)`: `φ(σ) = aσ + bσ³ + cσ⁵`. */
export interface NewtonSchulzCoefficients {
  /** Linear coefficient, e.g. 3.4445. */
  a: number;
  /** Cubic coefficient, e.g. -4.7750. */
  b: number;
  /** Quintic coefficient, e.g. 2.0315. */
  c: number;
}

/** WGSL of `out = a·I + b·A + c·AA` over a stack of `(s, s)` matrices. */
export const muonPolynomialKernel: Kernel<MuonConstants> = {
  name: "muon_polynomial",
  bindings: ["write", "read", "read", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { n: u32, s: u32, a: f32, b: f32, c: f32 }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;  // (count, s, s)
@group(0) @binding(1) var<storage, read> gram: array<f32>;       // (count, s, s) A
@group(0) @binding(2) var<storage, read> gram2: array<f32>;      // (count, s, s) A·A
@group(0) @binding(3) var<uniform> params: Params;
${
    elementwiseMain(
      workgroupSize,
      /* wgsl */ `
  let within = i % (params.s * params.s);
  let diagonal = select(0.0, params.a, within / params.s == within % params.s);
  out[i] = diagonal + params.b * gram[i] + params.c * gram2[i];`,
    )
  }
`,
};

/**
 * Records `out_j = a·I + b·A_j + c·(A_j·A_j)` for each of `count` `(s, s)` matrices: the matrix
 * that one Newton-Schulz iteration multiplies `X` by.
 *
 * @param out (count, s, s) WRITTEN; a different buffer from the inputs.
 * @param gram (count, s, s) A = X·Xᵀ.
 * @param gram2 (count, s, s) A·A.
 */
export async function muonPolynomial(
  gpu: Gpu,
  out: GPUBuffer,
  gram: GPUBuffer,
  gram2: GPUBuffer,
  count: number,
  s: number,
  coefficients: NewtonSchulzCoefficients,
): Promise<void> {
  const n = count * s * s;
  if (n === 0) return;
  assertOneBinding(gpu, "Gram stack", n);
  for (const [name, buffer] of [["out", out], ["gram", gram], ["gram2", gram2]] as const) {
    assertFits(name, buffer, n);
  }
  const params = gpu.uniform(uniforms({
    n: ["u32", n],
    s: ["u32", s],
    a: ["f32", coefficients.a],
    b: ["f32", coefficients.b],
    c: ["f32", coefficients.c],
  }));
  await runPerFloat(gpu, muonPolynomialKernel, n, [
    head(out, n),
    head(gram, n),
    head(gram2, n),
    params,
  ]);
}

/** CPU reference of {@linkcode muonPolynomial}. */
export function muonPolynomialCpu(
  out: Floats,
  gram: Floats,
  gram2: Floats,
  s: number,
  { a, b, c }: NewtonSchulzCoefficients,
): void {
  for (let i = 0; i < out.length; i++) {
    const within = i % (s * s);
    const diagonal = Math.floor(within / s) === within % s ? a : 0;
    out[i] = diagonal + b * gram[i] + c * gram2[i];
  }
}

/** WGSL of the weight update, `w ← w − lr·(scale·o + wd·w)`. */
export const muonUpdateKernel: Kernel<MuonConstants> = {
  name: "muon_update",
  bindings: ["write", "read", "read", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { n: u32, lr: f32, scale: f32, weightDecay: f32, guard: u32 }

@group(0) @binding(0) var<storage, read_write> w: array<f32>;  // (n) weights
@group(0) @binding(1) var<storage, read> o: array<f32>;        // (n) orthogonalized direction
@group(0) @binding(2) var<storage, read> gradNorm: array<f32>; // (1); unread without one
@group(0) @binding(3) var<uniform> params: Params;
${IS_FINITE_WGSL}
${
    elementwiseMain(
      workgroupSize,
      /* wgsl */ `
  if (params.guard != 0u && !isFinite(gradNorm[0])) { return; }  // a diverged step: no change
  let old = w[i];
  w[i] = old - params.lr * (params.scale * o[i] + params.weightDecay * old);`,
    )
  }
`,
};

/** The weight update's settings for one step. */
export interface MuonUpdateHyperparameters {
  /** Learning rate of this step (after any schedule). */
  lr: number;
  /** Multiplies the orthogonalized direction (depends on the matrix's shape; `nn/muon.ts`). */
  scale: number;
  /** Decoupled weight decay, `w -= lr·wd·w`. */
  weightDecay: number;
}

/**
 * Records `w ← w − lr·(scale·o + wd·w)` over `n` floats; nothing changes when `gradNorm` is given
 * and holds NaN or infinity (a diverged step).
 *
 * @param w (n) weights, updated in place.
 * @param o (n) the orthogonalized direction.
 * @param gradNorm (1) the step's global gradient norm, or null not to check one.
 */
export async function muonUpdate(
  gpu: Gpu,
  w: GPUBuffer,
  o: GPUBuffer,
  n: number,
  hyper: MuonUpdateHyperparameters,
  gradNorm: GPUBuffer | null = null,
): Promise<void> {
  if (n === 0) return;
  assertOneBinding(gpu, "update", n);
  assertFits("w", w, n);
  assertFits("o", o, n);
  const params = gpu.uniform(uniforms({
    n: ["u32", n],
    lr: ["f32", hyper.lr],
    scale: ["f32", hyper.scale],
    weightDecay: ["f32", hyper.weightDecay],
    guard: ["u32", gradNorm ? 1 : 0],
  }));
  // Without a norm none is read; the direction's first float stands in for its binding.
  const norm = head(gradNorm ?? o, 1);
  await runPerFloat(gpu, muonUpdateKernel, n, [head(w, n), head(o, n), norm, params]);
}

/** CPU reference of {@linkcode muonUpdate}. */
export function muonUpdateCpu(w: Floats, o: Floats, hyper: MuonUpdateHyperparameters): void {
  for (let i = 0; i < w.length; i++) {
    w[i] -= hyper.lr * (hyper.scale * o[i] + hyper.weightDecay * w[i]);
  }
}
