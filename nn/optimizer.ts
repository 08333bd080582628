/**
 * AdamW over a model's parameters (Loshchilov & Hutter, 2019), with GPT-style settings:
 * β = (0.9, 0.95), decoupled weight decay on matrices and embeddings only, and the gradient's
 * global norm clipped to 1. The norm is computed on the GPU and read there by the update, so
 * clipping costs no readback.
 *
 * @module
 */

import {
  type AdamWHyperparameters,
  type AdamWSettings,
  adamwUpdate,
  adamwUpdateTensors,
} from "../kernels/adamw.ts";
import { bufferOf, byteOffsetOf, type Gpu } from "../kernels/device.ts";
import { globalNorm } from "../kernels/grad_norm.ts";
import { alignUp, arenaAlignment } from "./arena.ts";
import type { Tensor } from "./tensor.ts";

/** GPT-3's (and nanoGPT's) settings. */
export const GPT_ADAMW: AdamWSettings = {
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  maxNorm: 1,
};

/**
 * AdamW state for a set of named parameters: the two moments, each in one flat buffer. A step
 * takes the gradient's global norm and updates every tensor, the parameters and gradients read
 * where the model keeps them. When they are one run of neighbouring windows of the model's flat
 * buffers (`nn/arena.ts`), the decayed ones first, the moments mirror that run, gaps included,
 * and one launch per binding window updates them all (the gaps are zeros and stay zeros);
 * otherwise each tensor's moments start at a multiple of 4 and the tensors take as few launches
 * as the adapter's storage-buffer limit allows (see `adamwUpdateTensors`). Either way each float
 * gets the same arithmetic, so the same bits. Checkpoints hold the moments per tensor
 * (`adam.m.<name>`, `adam.v.<name>`).
 */
export class AdamW {
  /** Updates done so far; the next update is step `steps + 1`. */
  steps = 0;
  /** Where each parameter's moments start in the flat buffers, by name. */
  readonly #first = new Map<string, number>();
  /** Floats in each flat moment buffer. */
  readonly #length: number;
  /**
   * The parameters as one run of the model's flat buffer: its first float and where its
   * decayed floats end; null when they are not such a run.
   */
  readonly #run: { first: number; decayEnd: number } | null;
  readonly #m: GPUBuffer;
  readonly #v: GPUBuffer;
  readonly #norm: GPUBuffer;

  /**
   * An optimizer whose moments start at zero, for every parameter.
   *
   * @param params the parameters to update, by name; {@linkcode AdamW.step} reads their
   *   gradients.
   * @param decayed the names of the parameters that weight decay applies to.
   */
  constructor(
    readonly gpu: Gpu,
    readonly params: Map<string, Tensor>,
    readonly decayed: Set<string>,
    readonly settings: AdamWSettings = GPT_ADAMW,
  ) {
    this.#run = flatRun(gpu, params, decayed);
    let end = 0;
    if (this.#run) {
      const first = this.#run.first;
      for (const [name, param] of params) {
        const at = byteOffsetOf(param.floats) / 4 - first;
        this.#first.set(name, at);
        end = Math.max(end, Math.ceil((at + param.size) / 4) * 4); // whole vec4s
      }
    } else {
      for (const [name, param] of params) {
        this.#first.set(name, end);
        end += Math.ceil(param.size / 4) * 4; // aligned for the vec4 kernel
      }
    }
    this.#length = Math.max(4, end);
    // Exact sizes, outside the pool: the moments live as long as the model, and a size class
    // would round them up as it would the parameters (`nn/arena.ts`).
    [this.#m, this.#v] = ["adam.m", "adam.v"].map((label) => {
      const buffer = gpu.createExact(this.#length * 4, label);
      gpu.encoder.clearBuffer(buffer, 0, this.#length * 4);
      return buffer;
    });
    this.#norm = gpu.acquire(4, undefined, "grad_norm");
  }

  /**
   * Records one update with learning rate `lr` from the parameters' gradients, and returns a
   * function that reads the gradient's global norm (before clipping) once the work is done.
   *
   * @param gradNorm a norm to clip by instead of this optimizer's parameters' own (when another
   *   optimizer updates the rest of the model, both clip by the norm over all of it).
   */
  async step(lr: number, gradNorm?: GPUBuffer): Promise<() => Promise<number>> {
    const gpu = this.gpu;
    gpu.profilePhase = "optimizer";
    const norm = gradNorm ?? this.#norm;
    if (!gradNorm) {
      const params = [...this.params.values()];
      await globalNorm(gpu, norm, params.map((p) => ({ buffer: p.gradFloats, count: p.size })));
    }
    this.steps++;
    const hyper = { ...this.settings, lr, step: this.steps };
    if (!await this.#updateRun(hyper, norm)) {
      await adamwUpdateTensors(
        gpu,
        [...this.params].map(([name, param]) => ({
          param: param.floats,
          grad: param.gradFloats,
          first: this.#first.get(name)!,
          count: param.size,
          decay: this.decayed.has(name),
        })),
        this.#m,
        this.#v,
        hyper,
        norm,
      );
    }
    return async () => (await gpu.readF32(norm, 1))[0];
  }

  /**
   * Records the update of the parameters as one run of the flat buffers, in one launch per
   * binding window; false (nothing recorded) when they are not one run, or their gradients are
   * not at the same offsets of one buffer.
   */
  async #updateRun(hyper: AdamWHyperparameters, norm: GPUBuffer): Promise<boolean> {
    const run = this.#run;
    if (!run) return false;
    const params = [...this.params.values()];
    const grads = bufferOf(params[0].gradFloats);
    const aligned = params.every((p) =>
      bufferOf(p.gradFloats) === grads && byteOffsetOf(p.gradFloats) === byteOffsetOf(p.floats)
    );
    if (!aligned) return false;
    // The moments mirror the run, gaps and the last window's whole vec4s included.
    const end = run.first + this.#length, decayEnd = Math.min(run.decayEnd, end);
    await adamwUpdate(
      this.gpu,
      { params: bufferOf(params[0].floats), m: this.#m, v: this.#v, grads, gradNorm: norm },
      [
        { first: run.first, count: decayEnd - run.first, decay: true },
        { first: decayEnd, count: end - decayEnd, decay: false },
      ],
      hyper,
      { momentsFirst: -run.first },
    );
    return true;
  }

  /** The moments as named tensors (`adam.m.<name>`, `adam.v.<name>`), for a checkpoint. */
  async state(): Promise<Array<{ name: string; shape: number[]; data: Float32Array }>> {
    const m = await this.gpu.readF32(this.#m, this.#length);
    const v = await this.gpu.readF32(this.#v, this.#length);
    const out = [];
    for (const [name, param] of this.params) {
      const first = this.#first.get(name)!;
      for (const [kind, moments] of [["m", m], ["v", v]] as const) {
        const data = moments.slice(first, first + param.size);
        out.push({ name: `adam.${kind}.${name}`, shape: [...param.shape], data });
      }
    }
    return out;
  }

  /** Restores moments saved by {@linkcode AdamW.state}. */
  load(tensors: Map<string, { data: Float32Array }>, steps: number): void {
    for (const [name, param] of this.params) {
      for (const [kind, moments] of [["m", this.#m], ["v", this.#v]] as const) {
        const saved = tensors.get(`adam.${kind}.${name}`);
        if (!saved || saved.data.length !== param.size) {
          throw new Error(`The checkpoint lacks adam.${kind}.${name}; it cannot resume training.`);
        }
        this.gpu.write(moments, saved.data, this.#first.get(name)! * 4);
      }
    }
    this.steps = steps;
  }

  /** Frees the moments. */
  dispose(): void {
    this.gpu.destroyExact(this.#m);
    this.gpu.destroyExact(this.#v);
    this.gpu.release(this.#norm);
  }
}

/**
 * Where `params` lie as one run of windows of one flat buffer (`nn/arena.ts`): each window right
 * after the one before, at the next aligned offset (so nothing else lies between them), the
 * decayed ones first. Returns the run's first float and the end of its decayed floats (the start
 * of the first undecayed window); null when the parameters are not so laid out.
 */
function flatRun(
  gpu: Gpu,
  params: Map<string, Tensor>,
  decayed: Set<string>,
): { first: number; decayEnd: number } | null {
  const tensors = [...params].sort(([, a], [, b]) =>
    byteOffsetOf(a.floats) - byteOffsetOf(b.floats)
  );
  if (tensors.length === 0 || !tensors.every(([, t]) => t.shared)) return null;
  const buffer = bufferOf(tensors[0][1].floats);
  const alignment = arenaAlignment(gpu);
  let end = byteOffsetOf(tensors[0][1].floats);
  let decayEnd = end;
  let decaying = true;
  for (const [name, tensor] of tensors) {
    const at = byteOffsetOf(tensor.floats);
    if (bufferOf(tensor.floats) !== buffer || at !== end) return null;
    if (decayed.has(name) && !decaying) return null;
    decaying = decayed.has(name);
    end = alignUp(at + tensor.size * 4, alignment);
    if (decaying) decayEnd = end;
  }
  return { first: byteOffsetOf(tensors[0][1].floats) / 4, decayEnd: decayEnd / 4 };
}
