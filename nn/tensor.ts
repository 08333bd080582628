/**
 * A float32 tensor on the GPU, with the gradient buffer the autograd tape fills.
 *
 * @module
 */

import {
  type BufferAt,
  bufferOf,
  byteOffsetOf,
  type Gpu,
  type GpuFloats,
} from "../kernels/device.ts";
import type { TapeNode } from "./tape.ts";

/**
 * A float32 tensor in a GPU buffer, row-major, and (lazily) its gradient. An activation has a
 * buffer of its own; a model's parameter may be a window of a buffer it shares with the others
 * (`nn/arena.ts`), its gradient a window of a shared gradient buffer, so that the optimizer can
 * update every parameter in one launch.
 */
export class Tensor {
  /** Elements: the product of the shape. */
  readonly size: number;
  /** The operation that made it; null for inputs and parameters. Set by the tape. */
  producer: TapeNode | null = null;
  /** The values, wherever they live: bind these (launchers take {@linkcode GpuFloats}). */
  readonly floats: GpuFloats;
  /** For a tensor in a shared buffer: its gradient's window, made on first use. */
  readonly #sharedGrad: (() => BufferAt) | null;
  #grad: GpuFloats | null = null;
  #gradHasValues = false;
  /** The gradient lives in the value buffer (see {@linkcode Tensor.gradInPlace}). */
  #gradIsValue = false;
  /** Set while the gradient buffer is held by other tensors too (see {@linkcode Tensor.shareGradOf}). */
  #gradHolders: GradHolders | null = null;

  /**
   * Wraps a buffer, or a window of one; {@linkcode Tensor.empty} and {@linkcode Tensor.from}
   * also allocate one.
   *
   * @param values holds at least `4 · size` bytes: the float32 values, row-major.
   * @param name labels the buffer and errors, e.g. `h.0.ln_1.weight`.
   * @param sharedGrad for a tensor in a shared buffer, the window its gradient goes in (called
   *   once, when the gradient is first needed); a tensor of its own buffer gets one of its own.
   * @throws {RangeError} when the buffer is smaller than the shape needs.
   */
  constructor(
    readonly gpu: Gpu,
    readonly shape: readonly number[],
    values: GpuFloats,
    readonly name = "",
    sharedGrad: (() => BufferAt) | null = null,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
    this.floats = values;
    this.#sharedGrad = sharedGrad;
    if (bufferOf(values).size - byteOffsetOf(values) < this.size * 4) {
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
    gpu.writeNew(tensor.buffer, data);
    return tensor;
  }

  /** Whether the values are a window of a buffer shared with other tensors. */
  get shared(): boolean {
    return isWindow(this.floats);
  }

  /**
   * The tensor's own buffer, for launchers that take a whole one (activations). A tensor in a
   * shared buffer has none: bind {@linkcode Tensor.floats}.
   */
  get buffer(): GPUBuffer {
    if (this.shared) throw this.#sharedError("buffer", "floats");
    return bufferOf(this.floats);
  }

  /** True once a backward pass has put values in the gradient. */
  get hasGrad(): boolean {
    return this.#gradHasValues;
  }

  /**
   * The gradient for a kernel that ACCUMULATES into it: zero-filled when first made.
   * Marks the gradient as holding values.
   */
  gradForAccumulate(): GpuFloats {
    if (this.#gradHolders) this.#ownSharedGrad();
    const grad = this.#grad ??= this.#newGrad();
    if (!this.#gradHasValues) {
      this.gpu.encoder.clearBuffer(bufferOf(grad), byteOffsetOf(grad), this.size * 4);
    }
    this.#gradHasValues = true;
    return grad;
  }

  /**
   * Makes `source`'s gradient this tensor's too, the same buffer and no copy, when this tensor
   * has none yet: the residual connection's backward, whose inputs' gradients both equal its
   * output's (llm.c keeps one gradient buffer for the whole residual stream). Whoever adds to
   * a gradient held by other tensors first gets a copy of its own (copy on write), so the
   * holders never see each other's additions. False, with nothing done, where it cannot share:
   * this tensor already has values, either gradient is a window of a shared buffer (parameters
   * keep theirs in the optimizer's flat buffer), or `source`'s is its value buffer
   * ({@linkcode Tensor.gradInPlace}).
   */
  shareGradOf(source: Tensor): boolean {
    const grad = source.gradFloats;
    if (this.#gradHasValues || this.#sharedGrad || source.#gradIsValue || isWindow(grad)) {
      return false;
    }
    if (source.size !== this.size) {
      throw new RangeError(
        `Cannot share the gradient of ${source.name || `[${source.shape}]`} with ` +
          `${this.name || `[${this.shape}]`}: ${source.size} and ${this.size} elements.`,
      );
    }
    this.disposeGrad();
    const holders = source.#gradHolders ??= { count: 1 };
    holders.count++;
    this.#gradHolders = holders;
    this.#grad = grad;
    this.#gradHasValues = true;
    return true;
  }

  /**
   * The gradient, this tensor's alone, for a backward that rewrites it in place (the GELU
   * layer's turns it into the pre-activation's gradient): where the buffer is shared with other
   * tensors ({@linkcode Tensor.shareGradOf}), this tensor first gets a copy, so they keep theirs.
   */
  gradForInPlace(): GPUBuffer {
    if (this.#gradHolders) this.#ownSharedGrad();
    return this.grad;
  }

  /** Copy on write: a gradient buffer of this tensor's own, holding the shared one's values. */
  #ownSharedGrad(): void {
    const holders = this.#gradHolders!;
    this.#gradHolders = null;
    if (holders.count === 1) return; // the others are gone: it is ours alone
    holders.count--;
    const shared = this.#grad as GPUBuffer;
    this.#grad = this.#newGrad();
    this.gpu.encoder.copyBufferToBuffer(shared, 0, bufferOf(this.#grad), 0, this.size * 4);
  }

  /**
   * The gradient buffer for a kernel that WRITES it, when nothing has been added to it yet;
   * null when it already holds other contributions, or is a window of a shared buffer (writing
   * kernels take whole buffers): write elsewhere, then accumulate.
   */
  gradForWrite(): GPUBuffer | null {
    if (this.#gradHasValues) return null;
    const grad = this.#grad ??= this.#newGrad();
    if (isWindow(grad)) return null;
    this.#gradHasValues = true;
    return grad;
  }

  /**
   * Makes the tensor's own buffer its gradient, for a kernel that overwrites the values with
   * their gradient in one pass (the fused cross-entropy: nothing reads the logits after the
   * loss, and they are the largest activation). The values are gone afterwards. Null when the
   * gradient already holds contributions.
   */
  gradInPlace(): GPUBuffer | null {
    if (this.#gradHasValues) return null;
    const buffer = this.buffer;
    if (this.#grad && !isWindow(this.#grad)) this.gpu.release(this.#grad);
    this.#grad = buffer;
    this.#gradIsValue = true;
    this.#gradHasValues = true;
    return buffer;
  }

  /** The gradient, wherever it lives, for reading; throws when no backward reached this tensor. */
  get gradFloats(): GpuFloats {
    if (!this.#grad || !this.#gradHasValues) {
      throw new Error(
        `Tensor ${this.name || `[${this.shape}]`} has no gradient yet; call backward.`,
      );
    }
    return this.#grad;
  }

  /**
   * The gradient's own buffer, for reading by launchers that take a whole one (activations'
   * gradients); throws when no backward reached this tensor, and for a tensor in a shared
   * buffer (read {@linkcode Tensor.gradFloats}).
   */
  get grad(): GPUBuffer {
    const grad = this.gradFloats;
    if (isWindow(grad)) throw this.#sharedError("grad", "gradFloats");
    return grad;
  }

  /** Forgets the gradient's values (the buffer is zeroed before its next use). */
  zeroGrad(): void {
    if (this.#gradIsValue) this.#unaliasGrad();
    if (this.#gradHolders) this.disposeGrad(); // the buffer's other holders keep their values
    this.#gradHasValues = false;
  }

  #unaliasGrad(): void {
    this.#grad = null;
    this.#gradIsValue = false;
  }

  #newGrad(): GpuFloats {
    if (this.#sharedGrad) return this.#sharedGrad();
    return this.gpu.acquire(Math.max(1, this.size) * 4, undefined, `d${this.name}`);
  }

  #sharedError(accessor: string, instead: string): Error {
    return new Error(
      `Tensor ${this.name} is a window of a buffer shared with other tensors, so it has no ` +
        `${accessor} of its own; use ${instead}.`,
    );
  }

  /** Copies the values back to the CPU. */
  read(): Promise<Float32Array> {
    return this.gpu.readF32(bufferOf(this.floats), this.size, byteOffsetOf(this.floats) / 4);
  }

  /** Copies the gradient back to the CPU. */
  readGrad(): Promise<Float32Array> {
    const grad = this.gradFloats;
    return this.gpu.readF32(bufferOf(grad), this.size, byteOffsetOf(grad) / 4);
  }

  /** Overwrites the first `data.length` values (at most `size`) with `data`. */
  write(data: Float32Array): void {
    if (data.length > this.size) {
      throw new RangeError(
        `Tensor ${this.name || `[${this.shape}]`} holds ${this.size} floats, not ${data.length}.`,
      );
    }
    this.gpu.write(bufferOf(this.floats), data, byteOffsetOf(this.floats));
  }

  /**
   * Gives the buffers back to the pool. A tensor in a shared buffer owns neither: the shared
   * buffers' owner frees them.
   */
  dispose(): void {
    if (!this.shared) this.gpu.release(this.buffer);
    this.disposeGrad();
  }

  /** Gives the gradient buffer back to the pool (a shared one only forgets its values). */
  disposeGrad(): void {
    if (this.#gradIsValue) this.#unaliasGrad();
    const held = this.#gradHolders !== null && --this.#gradHolders.count > 0;
    if (this.#grad && !isWindow(this.#grad) && !held) this.gpu.release(this.#grad);
    this.#grad = null;
    this.#gradHolders = null;
    this.#gradHasValues = false;
  }
}

/** How many tensors hold one gradient buffer ({@linkcode Tensor.shareGradOf}). */
interface GradHolders {
  count: number;
}

/** Whether `floats` are a window of a shared buffer rather than a buffer of their own. */
function isWindow(floats: GpuFloats): floats is BufferAt {
  return "buffer" in floats;
}
