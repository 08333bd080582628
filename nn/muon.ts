/**
 * Muon (Keller Jordan, 2024; Liu et al., "Muon is scalable for LLM training", Moonshot AI, 2025)
 * for the blocks' 2-D weights: SGD with Nesterov momentum whose update direction is replaced by
 * the nearest semi-orthogonal matrix, found by a Newton-Schulz iteration. For a weight `W`
 * `(rows, cols)` with gradient `G`:
 *
 *     M = μ·M + G                          (μ = 0.95)
 *     U = G + μ·M                          (Nesterov; U = M without)
 *     O = NewtonSchulz5(U)                 (≈ U·(UᵀU)^(-1/2): U's singular values set to ≈1)
 *     W -= lr · (scale·O + wd·W)
 *
 * NewtonSchulz5 normalizes `X = U / (‖U‖_F + 1e-7)` (so every singular value is at most 1), then
 * iterates `X ← a·X + (b·A + c·A²)·X` with `A = X·Xᵀ` on the small side (`(a, b, c)` = (3.4445,
 * −4.7750, 2.0315): a quintic tuned to push singular values in (0, 1] quickly into ~[0.7, 1.2],
 * not to converge to exactly 1). Here the polynomial is folded into one small matrix,
 * `B = a·I + b·A + c·A²`, so each iteration is three products, `X·Xᵀ`, `A·A` and `B·X`, and one
 * elementwise pass over a small `(s, s)` matrix. A tall matrix (rows > cols) is not transposed:
 * its iteration is written on the other side, `A = XᵀX`, `X ← X·B` (the transpose of the wide
 * case, since B is symmetric), and the transposes are matmul flags.
 *
 * Matrices of one shape (say every layer's `mlp.c_fc.weight`) are stacked in one buffer, so each
 * product of the iteration is one batched matmul for all layers. Embeddings (`wte`, also the tied
 * output head), `wpe`, biases and layernorm parameters are not for Muon; keep them on AdamW
 * (`nn/optimizer.ts`), as Keller Jordan and Moonshot do.
 *
 * @module
 */

import { bufferOf, byteOffsetOf, type Gpu } from "../kernels/device.ts";
import { globalNorm } from "../kernels/grad_norm.ts";
import { matmul } from "../kernels/matmul.ts";
import {
  muonInverseNorms,
  muonMomentum,
  muonMomentumCpu,
  muonPolynomial,
  muonScale,
  muonUpdate,
  muonUpdateCpu,
  type NewtonSchulzCoefficients,
} from "../kernels/muon.ts";
import type { GPT2Config } from "./config.ts";
import type { NamedTensor } from "./safetensors.ts";
import type { Tensor } from "./tensor.ts";

/** Keller Jordan's quintic Newton-Schulz coefficients. */
export const NEWTON_SCHULZ_5: NewtonSchulzCoefficients = { a: 3.4445, b: -4.775, c: 2.0315 };

/**
 * How the orthogonalized update `O` (singular values ≈ 1, so its RMS is `1/√max(rows, cols)`) is
 * scaled for a `(rows, cols)` weight:
 *
 * - `moonshot`: `0.2·√max(rows, cols)`, so the update's RMS is 0.2 for every shape, about that of
 *   an AdamW update. Muon then shares AdamW's learning rate, schedule and weight decay: the default,
 *   because the trainer has one learning-rate schedule for the whole model, and because an AdamW
 *   vs Muon comparison at one learning rate then compares the directions, not the step sizes.
 * - `keller`: `√max(1, rows/cols)` (modded-nanogpt), which wants its own, larger learning rate
 *   (about 0.02-0.05) and usually no weight decay.
 */
export type MuonScaleRule = "moonshot" | "keller";

/** Muon's settings. */
export interface MuonSettings {
  /** μ, the momentum's decay, e.g. 0.95. */
  momentum: number;
  /** Step along `G + μ·M` (Nesterov momentum) rather than `M`. */
  nesterov: boolean;
  /** Newton-Schulz iterations, e.g. 5. */
  nsSteps: number;
  /** The Newton-Schulz quintic; {@linkcode NEWTON_SCHULZ_5}. */
  coefficients: NewtonSchulzCoefficients;
  /** Added to `‖U‖_F` before the normalization, e.g. 1e-7. */
  eps: number;
  /** How the update is scaled for the matrix's shape; see {@linkcode MuonScaleRule}. */
  scaleRule: MuonScaleRule;
  /** Decoupled weight decay, `W -= lr·wd·W`, e.g. 0.1 (AdamW's, with the `moonshot` rule). */
  weightDecay: number;
  /**
   * Clip the gradient's global norm to this before the momentum, as AdamW does; 0 for none. The
   * orthogonalization makes each step's size independent of the gradient's scale, so clipping
   * here only decides how much one large gradient weighs in the momentum against its neighbours.
   */
  maxNorm: number;
}

/**
 * Muon's defaults: μ 0.95 with Nesterov, five Newton-Schulz iterations, Moonshot's update scale
 * with AdamW's weight decay (0.1) and clipping (1), so one learning rate serves both optimizers.
 */
export const DEFAULT_MUON: MuonSettings = {
  momentum: 0.95,
  nesterov: true,
  nsSteps: 5,
  coefficients: NEWTON_SCHULZ_5,
  eps: 1e-7,
  scaleRule: "moonshot",
  weightDecay: 0.1,
  maxNorm: 1,
};

/** The factor the orthogonalized update of a `(rows, cols)` weight is multiplied by. */
export function muonUpdateScale(rows: number, cols: number, rule: MuonScaleRule): number {
  return rule === "moonshot"
    ? 0.2 * Math.sqrt(Math.max(rows, cols))
    : Math.sqrt(Math.max(1, rows / cols));
}

/**
 * The GPT-2 parameters Muon updates: each block's four matrices (`attn.c_attn.weight`,
 * `attn.c_proj.weight`, `mlp.c_fc.weight`, `mlp.c_proj.weight`). The rest (`wte`, `wpe`, biases,
 * layernorms) stay on AdamW.
 */
export function muonParameterNames(config: GPT2Config): string[] {
  const names: string[] = [];
  for (let i = 0; i < config.nLayer; i++) {
    for (const matrix of ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]) {
      names.push(`h.${i}.${matrix}.weight`);
    }
  }
  return names;
}

/** `count` matrices of `(rows, cols)` floats each, back to back in one buffer. */
export interface MatrixStack {
  /** Rows of each matrix. */
  rows: number;
  /** Columns of each matrix. */
  cols: number;
  /** Matrices in the stack. */
  count: number;
}

/** The Newton-Schulz iteration's settings. */
export interface NewtonSchulzSettings {
  /** Iterations, e.g. 5. */
  steps: number;
  /** The quintic, e.g. {@linkcode NEWTON_SCHULZ_5}. */
  coefficients: NewtonSchulzCoefficients;
  /** Added to the Frobenius norm before the normalization, e.g. 1e-7. */
  eps: number;
}

/**
 * Records the Newton-Schulz orthogonalization of each matrix of a stack, in place: `x_j` becomes
 * `NewtonSchulz(x_j / (‖x_j‖_F + eps))`, whose singular values lie near 1 (in ~[0.7, 1.2] for
 * the quintic of {@linkcode NEWTON_SCHULZ_5}). The stack must fit one binding.
 *
 * @param x (count, rows, cols) orthogonalized in place.
 */
export async function newtonSchulz(
  gpu: Gpu,
  x: GPUBuffer,
  stack: MatrixStack,
  settings: NewtonSchulzSettings,
): Promise<void> {
  const { rows, cols, count } = stack;
  const size = rows * cols;
  // A tall matrix iterates on its (cols, cols) side: A = XᵀX and X ← X·B.
  const tall = rows > cols;
  const s = Math.min(rows, cols);
  const inverseNorms = gpu.acquire(count * 4, undefined, "muon.inverse_norms");
  const gram = gpu.acquire(count * s * s * 4, undefined, "muon.gram"); // (count, s, s) A
  const gram2 = gpu.acquire(count * s * s * 4, undefined, "muon.gram2"); // (count, s, s) A·A
  const poly = gpu.acquire(count * s * s * 4, undefined, "muon.poly"); // (count, s, s) B
  const other = gpu.acquire(count * size * 4, undefined, "muon.x"); // (count, rows, cols)
  await muonInverseNorms(gpu, inverseNorms, x, count, size, settings.eps);
  await muonScale(gpu, x, inverseNorms, count, size);
  let current = x, next = other;
  const batch = count;
  for (let step = 0; step < settings.steps; step++) {
    if (tall) {
      await matmul(gpu, gram, current, current, { m: s, n: s, k: rows, transA: true, batch });
    } else {
      await matmul(gpu, gram, current, current, { m: s, n: s, k: cols, transB: true, batch });
    }
    await matmul(gpu, gram2, gram, gram, { m: s, n: s, k: s, batch });
    await muonPolynomial(gpu, poly, gram, gram2, count, s, settings.coefficients);
    if (tall) await matmul(gpu, next, current, poly, { m: rows, n: s, k: s, batch });
    else await matmul(gpu, next, poly, current, { m: s, n: cols, k: s, batch });
    [current, next] = [next, current];
  }
  if (current !== x) gpu.encoder.copyBufferToBuffer(current, 0, x, 0, count * size * 4);
  for (const buffer of [inverseNorms, gram, gram2, poly, other]) gpu.release(buffer);
}

/**
 * CPU reference of {@linkcode newtonSchulz} for one `(rows, cols)` matrix, in float64, written
 * as Keller Jordan's reference is: transpose a tall matrix, iterate
 * `X ← a·X + (b·A + c·A·A)·X` with `A = X·Xᵀ`, transpose back.
 */
export function newtonSchulzCpu(
  u: ArrayLike<number>,
  rows: number,
  cols: number,
  settings: NewtonSchulzSettings,
): Float64Array {
  const { a, b, c } = settings.coefficients;
  let norm = 0;
  for (let i = 0; i < rows * cols; i++) norm += u[i] * u[i];
  norm = Math.sqrt(norm) + settings.eps;
  const tall = rows > cols;
  const [r, k] = tall ? [cols, rows] : [rows, cols]; // X is (r, k), r <= k
  let x = new Float64Array(r * k);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      x[tall ? j * rows + i : i * cols + j] = u[i * cols + j] / norm;
    }
  }
  for (let step = 0; step < settings.steps; step++) {
    const gram = product(x, x, r, r, k, true); // (r, r) X·Xᵀ
    const gram2 = product(gram, gram, r, r, r, false); // (r, r)
    const poly = new Float64Array(r * r).map((_, i) => b * gram[i] + c * gram2[i]);
    const px = product(poly, x, r, k, r, false); // (r, k)
    x = x.map((v, i) => a * v + px[i]);
  }
  if (!tall) return x;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = x[j * rows + i];
  return out;
}

/** `(m, n) = (m, k) · (k, n)`, or `· (n, k)ᵀ` when `transB`; float64. */
function product(
  a: Float64Array,
  b: Float64Array,
  m: number,
  n: number,
  k: number,
  transB: boolean,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += a[i * k + p] * (transB ? b[j * k + p] : b[p * n + j]);
      out[i * n + j] = sum;
    }
  }
  return out;
}

/**
 * CPU reference of one Muon step of one `(rows, cols)` weight, in float64: updates `w` and the
 * momentum `m` in place from the gradient `g`.
 *
 * @param gradNorm the global gradient norm the clipping reads, when `settings.maxNorm > 0`.
 */
export function muonStepCpu(
  w: Float64Array,
  m: Float64Array,
  g: ArrayLike<number>,
  rows: number,
  cols: number,
  lr: number,
  settings: MuonSettings,
  gradNorm = 0,
): void {
  const u = Float64Array.from(g); // becomes the direction to orthogonalize
  muonMomentumCpu(m, u, settings, gradNorm);
  const o = newtonSchulzCpu(u, rows, cols, {
    steps: settings.nsSteps,
    coefficients: settings.coefficients,
    eps: settings.eps,
  });
  const scale = muonUpdateScale(rows, cols, settings.scaleRule);
  muonUpdateCpu(w, o, { lr, scale, weightDecay: settings.weightDecay });
}

/** Weights of one shape that Muon updates together, and their momentum. */
interface Stack extends MatrixStack {
  names: string[];
  params: Tensor[];
  /** (count, rows, cols) the momentum buffers, back to back. */
  momentum: GPUBuffer;
}

/**
 * Muon over a set of named 2-D parameters (the others stay on AdamW). Each shape's matrices are
 * stacked: one step copies their gradients into one buffer, runs the momentum, the Newton-Schulz
 * iteration (batched matmuls over the stack) and the update on it, and copies the weights back,
 * so the number of launches does not grow with the number of layers.
 *
 * @example
 * ```ts
 * const names = muonParameterNames(model.config);
 * const muon = new Muon(gpu, model.params, names);
 * const rest = new Map([...model.params].filter(([name]) => !names.includes(name)));
 * const adamw = new AdamW(gpu, rest, new Set([...model.decayed].filter((n) => rest.has(n))));
 * // after backward:
 * await muon.step(lr);
 * await adamw.step(lr);
 * ```
 */
export class Muon {
  readonly #stacks: Stack[] = [];
  readonly #norm: GPUBuffer;

  /**
   * Zero momentum for every named parameter.
   *
   * @param params the model's parameters by name; {@linkcode Muon.step} reads their gradients.
   * @param names the 2-D parameters Muon updates, e.g. {@linkcode muonParameterNames}.
   * @throws when a name is missing or not a matrix, or one matrix does not fit one binding.
   */
  constructor(
    readonly gpu: Gpu,
    params: Map<string, Tensor>,
    names: readonly string[],
    readonly settings: MuonSettings = DEFAULT_MUON,
  ) {
    const byShape = new Map<string, { names: string[]; params: Tensor[] }>();
    for (const name of names) {
      const param = params.get(name);
      if (!param) throw new Error(`Muon was given ${name}, which is not among the parameters.`);
      if (param.shape.length !== 2) {
        throw new Error(
          `Muon updates matrices only, but ${name} has shape [${param.shape}]; leave it to AdamW.`,
        );
      }
      const key = param.shape.join("x");
      const group = byShape.get(key) ?? { names: [], params: [] };
      group.names.push(name);
      group.params.push(param);
      byShape.set(key, group);
    }
    for (const group of byShape.values()) {
      const [rows, cols] = group.params[0].shape;
      // Every stacked buffer must fit one binding: split a shape's matrices into stacks.
      const perStack = Math.min(65535, Math.floor(gpu.maxBinding / (rows * cols * 4)));
      if (perStack < 1) {
        throw new RangeError(
          `A ${rows}x${cols} matrix is larger than one binding (${gpu.maxBinding} bytes); ` +
            "Muon cannot update it: leave it to AdamW.",
        );
      }
      for (let first = 0; first < group.params.length; first += perStack) {
        const stackParams = group.params.slice(first, first + perStack);
        const bytes = stackParams.length * rows * cols * 4;
        const momentum = gpu.acquire(bytes, undefined, `muon.m.${rows}x${cols}`);
        gpu.encoder.clearBuffer(momentum, 0, bytes);
        this.#stacks.push({
          rows,
          cols,
          count: stackParams.length,
          names: group.names.slice(first, first + perStack),
          params: stackParams,
          momentum,
        });
      }
    }
    this.#norm = gpu.acquire(4, undefined, "muon.grad_norm");
  }

  /**
   * Records one update with learning rate `lr` of every named parameter from its gradient.
   *
   * @param gradNorm (1) a GPU buffer holding the gradient norm to clip by (e.g. the whole model's);
   *   by default, when `settings.maxNorm > 0`, the norm of the gradients of Muon's own parameters.
   *   A NaN or infinite norm leaves every weight and momentum as it was.
   */
  async step(lr: number, gradNorm?: GPUBuffer): Promise<void> {
    const gpu = this.gpu;
    const settings = this.settings;
    gpu.profilePhase = "optimizer";
    // A given norm is also checked: a NaN or infinite one leaves weights and momenta unchanged.
    let norm: GPUBuffer | null = gradNorm ?? null;
    if (!norm && settings.maxNorm > 0) {
      norm = this.#norm;
      const grads = this.#stacks.flatMap((s) =>
        s.params.map((p) => ({ buffer: p.gradFloats, count: p.size }))
      );
      await globalNorm(gpu, norm, grads);
    }
    for (const stack of this.#stacks) {
      const size = stack.rows * stack.cols;
      const n = stack.count * size;
      // (count, rows, cols) the gradients, then the direction, then the orthogonalized update.
      const u = gpu.acquire(n * 4, undefined, "muon.u");
      stack.params.forEach((param, j) => {
        const grad = param.gradFloats;
        gpu.encoder.copyBufferToBuffer(
          bufferOf(grad),
          byteOffsetOf(grad),
          u,
          j * size * 4,
          size * 4,
        );
      });
      await muonMomentum(gpu, stack.momentum, u, n, settings, norm);
      await newtonSchulz(gpu, u, stack, {
        steps: settings.nsSteps,
        coefficients: settings.coefficients,
        eps: settings.eps,
      });
      // (count, rows, cols) the weights, updated here and copied back.
      const w = gpu.acquire(n * 4, undefined, "muon.w");
      stack.params.forEach((param, j) => {
        const at = byteOffsetOf(param.floats);
        gpu.encoder.copyBufferToBuffer(bufferOf(param.floats), at, w, j * size * 4, size * 4);
      });
      await muonUpdate(gpu, w, u, n, {
        lr,
        scale: muonUpdateScale(stack.rows, stack.cols, settings.scaleRule),
        weightDecay: settings.weightDecay,
      }, norm);
      stack.params.forEach((param, j) => {
        const at = byteOffsetOf(param.floats);
        gpu.encoder.copyBufferToBuffer(w, j * size * 4, bufferOf(param.floats), at, size * 4);
      });
      gpu.release(u);
      gpu.release(w);
    }
  }

  /** The momentum buffers as named tensors (`muon.m.<name>`), for a checkpoint. */
  async state(): Promise<NamedTensor[]> {
    const out: NamedTensor[] = [];
    for (const stack of this.#stacks) {
      const size = stack.rows * stack.cols;
      const all = await this.gpu.readF32(stack.momentum, stack.count * size);
      stack.names.forEach((name, j) => {
        out.push({
          name: `muon.m.${name}`,
          shape: [stack.rows, stack.cols],
          data: all.slice(j * size, (j + 1) * size),
        });
      });
    }
    return out;
  }

  /** Restores momentum saved by {@linkcode Muon.state}. */
  load(tensors: Map<string, { data: Float32Array }>): void {
    for (const stack of this.#stacks) {
      const size = stack.rows * stack.cols;
      stack.names.forEach((name, j) => {
        const saved = tensors.get(`muon.m.${name}`);
        if (!saved || saved.data.length !== size) {
          throw new Error(`The checkpoint lacks muon.m.${name}; it cannot resume training.`);
        }
        this.gpu.write(stack.momentum, saved.data, j * size * 4);
      });
    }
  }

  /** Frees the momentum buffers. */
  dispose(): void {
    for (const stack of this.#stacks) this.gpu.release(stack.momentum);
    this.gpu.release(this.#norm);
  }
}
