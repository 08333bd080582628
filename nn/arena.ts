/**
 * A model's parameters in one flat GPU buffer and their gradients in another, each tensor a
 * window at the same aligned offset of both, so that an optimizer can update a run of
 * neighbouring tensors in one launch (`nn/optimizer.ts`) instead of one per tensor or per few.
 *
 * Each window starts on a multiple of {@linkcode arenaAlignment} bytes, so every launcher binds
 * a parameter exactly as it would a buffer of its own (the same windows, the same element
 * offsets inside them, so the same bits). The gaps between windows are zeros in both buffers and
 * stay zeros: nothing binds them but the optimizer, and AdamW moves a zero parameter with a zero
 * gradient and zero moments by nothing.
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import { Tensor } from "./tensor.ts";

/**
 * Where windows of a shared buffer start: a multiple of this many bytes. The adapter's
 * `minStorageBufferOffsetAlignment` (a binding must start there), and at least 256 so that a
 * window's split parts start where those of a buffer of its own would (`kernels/_parts.ts`).
 */
export function arenaAlignment(gpu: Gpu): number {
  return Math.max(256, gpu.device.limits.minStorageBufferOffsetAlignment);
}

/** Rounds `bytes` up to a multiple of `alignment`. */
export function alignUp(bytes: number, alignment: number): number {
  return Math.ceil(bytes / alignment) * alignment;
}

/** One tensor of an arena: its name and shape. */
export interface ArenaEntry {
  /** The name, e.g. `h.0.ln_1.weight`. */
  name: string;
  /** The dimensions. */
  shape: readonly number[];
}

/** Parameters in one flat buffer, gradients in another (allocated by the first backward). */
export class ParameterArena {
  /** The tensors, by name, windows of {@linkcode ParameterArena.values} laid out in order. */
  readonly tensors = new Map<string, Tensor>();
  /** The values of every tensor; zeros until written. */
  readonly values: GPUBuffer;
  /** Bytes the windows span, gaps included (a multiple of the alignment). */
  readonly bytes: number;
  #grads: GPUBuffer | null = null;

  /**
   * Lays `entries` out in the given order, each from an aligned offset.
   *
   * @throws {RangeError} when the arena is larger than one buffer may be (see
   *   {@linkcode ParameterArena.fits}).
   */
  constructor(readonly gpu: Gpu, entries: readonly ArenaEntry[]) {
    const { offsets, bytes } = layout(gpu, entries);
    this.bytes = bytes;
    if (!ParameterArena.fits(gpu, entries)) {
      throw new RangeError(
        `The parameters need a buffer of ${this.bytes} bytes, over this adapter's ` +
          `maxBufferSize (${gpu.device.limits.maxBufferSize}); keep a buffer per tensor.`,
      );
    }
    this.values = gpu.createExact(this.bytes, "params");
    gpu.encoder.clearBuffer(this.values, 0, this.bytes);
    entries.forEach(({ name, shape }, i) => {
      const at = { buffer: this.values, offset: offsets[i] };
      const grad = () => ({ buffer: this.#gradBuffer(), offset: offsets[i] });
      this.tensors.set(name, new Tensor(gpu, shape, at, name, grad));
    });
  }

  /** Whether an arena of `entries` fits one buffer on `gpu` (else keep a buffer per tensor). */
  static fits(gpu: Gpu, entries: readonly ArenaEntry[]): boolean {
    return layout(gpu, entries).bytes <= gpu.device.limits.maxBufferSize;
  }

  /** The gradients' buffer, zero-filled when first made (the gaps stay zeros). */
  #gradBuffer(): GPUBuffer {
    if (!this.#grads) {
      this.#grads = this.gpu.createExact(this.bytes, "grads");
      this.gpu.encoder.clearBuffer(this.#grads, 0, this.bytes);
    }
    return this.#grads;
  }

  /** Frees both buffers. */
  dispose(): void {
    this.gpu.destroyExact(this.values);
    if (this.#grads) this.gpu.destroyExact(this.#grads);
    this.#grads = null;
  }
}

/** Each entry's byte offset, one after the other from aligned offsets, and the bytes in all. */
function layout(gpu: Gpu, entries: readonly ArenaEntry[]): { offsets: number[]; bytes: number } {
  const alignment = arenaAlignment(gpu);
  const offsets: number[] = [];
  let end = 0;
  for (const { shape } of entries) {
    offsets.push(end);
    end = alignUp(end + shape.reduce((a, b) => a * b, 1) * 4, alignment);
  }
  return { offsets, bytes: Math.max(alignment, end) };
}
