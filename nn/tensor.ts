/**
 * A float32 tensor on the GPU, with the gradient buffer the autograd tape fills.
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import type { TapeNode } from "./tape.ts";

/** A float32 tensor in a GPU buffer, row-major, and (lazily) its gradient. */
export class Tensor {
  /** Elements: the product of the shape. */
  readonly size: number;
  /** The operation that made it; null for inputs and parameters. Set by the tape. */
  producer: TapeNode | null = null;
  #grad: GPUBuffer | null = null;
  #gradHasValues = false;
  /** The gradient lives in the value buffer (see {@linkcode Tensor.gradInPlace}). */
  #gradIsValue = false;

  /**
   * Wraps a buffer; {@linkcode Tensor.empty} and {@linkcode Tensor.from} also allocate one.
   *
   * @param buffer holds at least `4 · size` bytes: the float32 values, row-major.
   * @param name labels the buffer and errors, e.g. `h.0.ln_1.weight`.
   * @throws {RangeError} when the buffer is smaller than the shape needs.
   */
  constructor(
    readonly gpu: Gpu,
    readonly shape: readonly number[],
    readonly buffer: GPUBuffer,
    readonly name = "",
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
    if (buffer.size < this.size * 4) {
      throw new RangeError(`Tensor ${name} of shape [${shape}] needs a larger buffer.`);
    }
  }

  /** A tensor with undefined contents, from the GPU's buffer pool. */
  static empty(gpu: Gpu, shape: readonly number[], name = ""): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    return new Tensor(gpu, shape, gpu.acquire(Math.max(1, size) * 4, undefined, name), name);
  }

  /** A tensor holding `data`. */
  static from(gpu: Gpu, data: Float32Array, shape: readonly number[], name = ""): Tensor {
    const tensor = Tensor.empty(gpu, shape, name);
    gpu.write(tensor.buffer, data);
    return tensor;
  }

  /** True once a backward pass has put values in the gradient. */
  get hasGrad(): boolean {
    return this.#gradHasValues;
  }

  /**
   * The gradient buffer for a kernel that ACCUMULATES into it: zero-filled when first made.
   * Marks the gradient as holding values.
   */
  gradForAccumulate(): GPUBuffer {
    if (!this.#grad) this.#grad = this.#newGrad();
    if (!this.#gradHasValues) this.gpu.encoder.clearBuffer(this.#grad, 0, this.size * 4);
    this.#gradHasValues = true;
    return this.#grad;
  }

  /**
   * The gradient buffer for a kernel that WRITES it, when nothing has been added to it yet;
   * null when it already holds other contributions (write elsewhere, then accumulate).
   */
  gradForWrite(): GPUBuffer | null {
    if (this.#gradHasValues) return null;
    this.#grad ??= this.#newGrad();
    this.#gradHasValues = true;
    return this.#grad;
  }

  /**
   * Makes the tensor's own buffer its gradient, for a kernel that overwrites the values with
   * their gradient in one pass (the fused cross-entropy: nothing reads the logits after the
   * loss, and they are the largest activation). The values are gone afterwards. Null when the
   * gradient already holds contributions.
   */
  gradInPlace(): GPUBuffer | null {
    if (this.#gradHasValues) return null;
    if (this.#grad) this.gpu.release(this.#grad);
    this.#grad = this.buffer;
    this.#gradIsValue = true;
    this.#gradHasValues = true;
    return this.buffer;
  }

  /** The gradient, for reading; throws when no backward reached this tensor. */
  get grad(): GPUBuffer {
    if (!this.#grad || !this.#gradHasValues) {
      throw new Error(
        `Tensor ${this.name || `[${this.shape}]`} has no gradient yet; call backward.`,
      );
    }
    return this.#grad;
  }

  /** Forgets the gradient's values (the buffer is zeroed before its next use). */
  zeroGrad(): void {
    if (this.#gradIsValue) this.#unaliasGrad();
    this.#gradHasValues = false;
  }

  #unaliasGrad(): void {
    this.#grad = null;
    this.#gradIsValue = false;
  }

  #newGrad(): GPUBuffer {
    return this.gpu.acquire(Math.max(1, this.size) * 4, undefined, `d${this.name}`);
  }

  /** Copies the values back to the CPU. */
  read(): Promise<Float32Array> {
    return this.gpu.readF32(this.buffer, this.size);
  }

  /** Copies the gradient back to the CPU. */
  readGrad(): Promise<Float32Array> {
    return this.gpu.readF32(this.grad, this.size);
  }

  /** Gives the buffers back to the pool. */
  dispose(): void {
    this.gpu.release(this.buffer);
    this.disposeGrad();
  }

  /** Gives the gradient buffer back to the pool. */
  disposeGrad(): void {
    if (this.#gradIsValue) this.#unaliasGrad();
    if (this.#grad) this.gpu.release(this.#grad);
    this.#grad = null;
    this.#gradHasValues = false;
  }
}
