/**
 * The optimizer pair Muon is used in: Muon for the blocks' matrices, AdamW for everything else
 * (the embeddings, which are also the tied output head, the position table, biases and layer
 * norms), as in Keller Jordan's and Moonshot's recipes. One global gradient norm, over every
 * parameter, clips both halves alike and is what a step reports.
 *
 * @module
 */

import type { AdamWSettings } from "../kernels/adamw.ts";
import type { Gpu } from "../kernels/device.ts";
import { globalNorm } from "../kernels/grad_norm.ts";
import type { GPT2 } from "./gpt2.ts";
import { DEFAULT_MUON, Muon, muonParameterNames, type MuonSettings } from "./muon.ts";
import { AdamW, GPT_ADAMW } from "./optimizer.ts";
import type { NamedTensor } from "./safetensors.ts";

/** The optimizers a training run can use. */
export type OptimizerKind = "adamw" | "muon";

/** Muon on the blocks' matrices and AdamW on the rest of a GPT-2. */
export class MuonAdamW {
  readonly #muon: Muon;
  readonly #adamw: AdamW;
  readonly #norm: GPUBuffer;
  readonly #model: GPT2;

  /** Both optimizers' state starts at zero. */
  constructor(
    readonly gpu: Gpu,
    model: GPT2,
    settings: { muon?: MuonSettings; adamw?: AdamWSettings } = {},
  ) {
    const matrices = muonParameterNames(model.config);
    const rest = new Map([...model.params].filter(([name]) => !matrices.includes(name)));
    this.#model = model;
    this.#muon = new Muon(gpu, model.params, matrices, settings.muon ?? DEFAULT_MUON);
    this.#adamw = new AdamW(gpu, rest, model.decayed, settings.adamw ?? GPT_ADAMW);
    this.#norm = gpu.acquire(4, undefined, "grad_norm");
  }

  /** Updates done so far. */
  get steps(): number {
    return this.#adamw.steps;
  }

  /**
   * Records one update of every parameter; the result reads the global norm before clipping.
   *
   * @param gradNorm the global norm over every parameter's gradient, when the caller computed
   *   it already (to check it before updating); computed here when absent.
   */
  async step(lr: number, gradNorm?: GPUBuffer): Promise<() => Promise<number>> {
    const norm = gradNorm ?? this.#norm;
    if (!gradNorm) {
      const grads = [...this.#model.params.values()].map((p) => ({
        buffer: p.gradFloats,
        count: p.size,
      }));
      await globalNorm(this.gpu, norm, grads);
    }
    await this.#adamw.step(lr, norm);
    await this.#muon.step(lr, norm);
    return async () => (await this.gpu.readF32(norm, 1))[0];
  }

  /** Both optimizers' state as named tensors (`adam.*` and `muon.m.*`), for a checkpoint. */
  async state(): Promise<NamedTensor[]> {
    return [...await this.#adamw.state(), ...await this.#muon.state()];
  }

  /** Restores the state saved by {@linkcode MuonAdamW.state}. */
  load(tensors: Map<string, { data: Float32Array }>, steps: number): void {
    this.#adamw.load(tensors, steps);
    this.#muon.load(tensors);
  }

  /** Frees both optimizers' state. */
  dispose(): void {
    this.#adamw.dispose();
    this.#muon.dispose();
    this.gpu.release(this.#norm);
  }
}
