/**
 * Splitting work on tensors larger than one binding (`maxStorageBufferBindingSize`, 128 MiB on
 * lavapipe) into parts whose buffer windows each fit one binding. Private to the kernels.
 *
 * @module
 */

import { bufferWindow, type Gpu, grid2d, type Kernel, uniforms } from "./device.ts";

/** A run of rows `[first, first + count)` processed by one launch. */
export interface Part {
  /** The first row of the part. */
  first: number;
  /** How many rows the part has. */
  count: number;
}

/**
 * Splits `rows` rows of `rowElements` float32 values into parts whose windows fit one binding.
 * Every part but the last has a multiple of `multiple` rows, so that kernels whose work is
 * blocked (row blocks, reduction chunks) see the same blocks whether or not the tensor is split,
 * and so give the same bits.
 *
 * @param bindingLimit bytes one binding may hold; at most the adapter's (tests pass less, to
 *   exercise the split on small tensors).
 * @throws {RangeError} when a single block of rows is larger than one binding.
 */
export function rowParts(
  gpu: Gpu,
  rows: number,
  rowElements: number,
  multiple = 1,
  bindingLimit = gpu.maxBinding,
): Part[] {
  const limit = Math.min(bindingLimit, gpu.maxBinding);
  // A window starts at the aligned byte at or before its first element: leave room for that.
  const slack = gpu.device.limits.minStorageBufferOffsetAlignment;
  const rowBytes = Math.max(1, rowElements) * 4;
  const maxRows = Math.floor(Math.floor((limit - slack) / rowBytes) / multiple) * multiple;
  if (maxRows < 1) {
    throw new RangeError(
      `A block of ${multiple} rows of ${rowElements} floats does not fit one binding ` +
        `(${limit} bytes); use a smaller row width, a shorter sequence or a smaller model.`,
    );
  }
  const parts: Part[] = [];
  for (let first = 0; first < rows; first += maxRows) {
    parts.push({ first, count: Math.min(maxRows, rows - first) });
  }
  return parts;
}

/**
 * Splits `n` elements of an elementwise kernel into parts of at most one binding each, in
 * multiples of 64 elements so that every part's window starts 256-byte aligned.
 */
export function elementParts(gpu: Gpu, n: number): Part[] {
  return rowParts(gpu, n, 1, 64);
}

/**
 * Binds exactly the first `elements` float32 values of `buffer`, so that a small tensor in a
 * larger pooled buffer never asks for more than one binding may hold.
 */
export function head(buffer: GPUBuffer, elements: number): {
  buffer: GPUBuffer;
  offset: number;
  size: number;
} {
  return { buffer, offset: 0, size: Math.max(4, elements * 4) };
}

/** Throws a sentence-case error when a buffer is too small for the tensor said to be in it. */
export function assertFits(name: string, buffer: GPUBuffer, elements: number): void {
  if (buffer.size < elements * 4) {
    throw new RangeError(
      `The ${name} buffer holds ${buffer.size} bytes but the shape needs ${elements * 4}; ` +
        "pass a buffer of the right size.",
    );
  }
}

/**
 * Invocations per workgroup for a kernel that reduces with workgroup barriers: `gpuSize` on a
 * GPU, and `cpuSize` on a CPU adapter (lavapipe), where each barrier splits the shader into
 * resumable pieces and a small workgroup runs several times faster (measured: layernorm forward
 * at 1024×768 takes 20 ms with 128 invocations, 5 ms with 8). The size is a compile-time
 * constant, so results stay deterministic on one machine.
 */
export function reductionWorkgroup(gpu: Gpu, gpuSize: number, cpuSize = 8): number {
  return gpu.adapter.isCpu ? cpuSize : gpuSize;
}

/**
 * Records an elementwise kernel over the first `n` float32 elements of each of `buffers` (named
 * for error messages, in binding order), in parts whose windows fit one binding. The kernel's
 * uniform, its last binding, must be `struct Params { n: u32, <one u32 element offset per
 * buffer, in order> }`, and `workgroupSize` its one compile-time constant.
 */
export async function runElementwise(
  gpu: Gpu,
  kernel: Kernel<{ workgroupSize: number }>,
  buffers: Record<string, GPUBuffer>,
  n: number,
  workgroupSize = 256,
): Promise<void> {
  for (const [name, buffer] of Object.entries(buffers)) assertFits(name, buffer, n);
  for (const { first, count } of elementParts(gpu, n)) {
    const windows = Object.values(buffers).map((b) => bufferWindow(gpu, b, first, count));
    const offsets = Object.fromEntries(windows.map((w, i) => [`offset${i}`, w.elementOffset]));
    const params = gpu.uniform(uniforms({ n: count, ...offsets }));
    await gpu.run(
      kernel,
      { workgroupSize },
      [...windows.map((w) => w.binding), params],
      grid2d(Math.ceil(count / workgroupSize)),
    );
  }
}
