/**
 * AdamW over a model's parameters (Loshchilov & Hutter, 2019), with GPT-style settings:
 * β = (0.9, 0.95), decoupled weight decay on matrices and embeddings only, and the gradient's
 * global norm clipped to 1. The norm is computed on the GPU and read there by the update, so
 * clipping costs no readback.
 *
 * @module
 */

import { type AdamWSettings, adamwUpdateTensors } from "../kernels/adamw.ts";
import type { Gpu } from "../kernels/device.ts";
import { globalNorm } from "../kernels/grad_norm.ts";
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
 * AdamW state for a set of named parameters: the two moments, each in one flat buffer (every
 * tensor's at an offset that is a multiple of 4). A step takes the gradient's global norm and
 * updates every tensor in as few launches as the adapter's storage-buffer limit allows (see
 * `adamwUpdateTensors`), the parameters and gradients read where the model keeps them.
 * Checkpoints hold the moments per tensor (`adam.m.<name>`, `adam.v.<name>`).
 */
export class AdamW {
  /** Updates done so far; the next update is step `steps + 1`. */
  steps = 0;
  /** Where each parameter's moments start in the flat buffers, by name. */
  readonly #first = new Map<string, number>();
  /** Floats in each flat moment buffer. */
  readonly #length: number;
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
    let end = 0;
    for (const [name, param] of params) {
      this.#first.set(name, end);
      end += Math.ceil(param.size / 4) * 4; // aligned for the vec4 kernel
    }
    this.#length = Math.max(4, end);
    [this.#m, this.#v] = ["adam.m", "adam.v"].map((label) => {
      const buffer = gpu.acquire(this.#length * 4, undefined, label);
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
      await globalNorm(gpu, norm, params.map((p) => ({ buffer: p.grad, count: p.size })));
    }
    this.steps++;
    await adamwUpdateTensors(
      gpu,
      [...this.params].map(([name, param]) => ({
        param: param.buffer,
        grad: param.grad,
        first: this.#first.get(name)!,
        count: param.size,
        decay: this.decayed.has(name),
      })),
      this.#m,
      this.#v,
      { ...this.settings, lr, step: this.steps },
      norm,
    );
    return async () => (await gpu.readF32(norm, 1))[0];
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
    for (const buffer of [this.#m, this.#v, this.#norm]) this.gpu.release(buffer);
  }
}
