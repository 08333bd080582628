/**
 * Splitting work on tensors larger than one binding (`maxStorageBufferBindingSize`, 128 MiB on
 * lavapipe) into parts whose buffer windows each fit one binding. Private to the kernels.
 *
 * @module
 */

import {
  bufferOf,
  bufferWindow,
  byteOffsetOf,
  type Gpu,
  type GpuFloats,
  grid2d,
  type Kernel,
  uniforms,
} from "./device.ts";

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
 * Binds exactly the first `elements` float32 values of `floats`, so that a small tensor in a
 * larger pooled buffer (or a model's flat parameter buffer) never asks for more than one binding
 * may hold.
 */
export function head(floats: GpuFloats, elements: number): {
  buffer: GPUBuffer;
  offset: number;
  size: number;
} {
  return {
    buffer: bufferOf(floats),
    offset: byteOffsetOf(floats),
    size: Math.max(4, elements * 4),
  };
}

/** Throws a sentence-case error when a buffer is too small for the tensor said to be in it. */
export function assertFits(name: string, floats: GpuFloats, elements: number): void {
  const bytes = bufferOf(floats).size - byteOffsetOf(floats);
  if (bytes < elements * 4) {
    throw new RangeError(
      `The ${name} buffer holds ${bytes} bytes but the shape needs ${elements * 4}; ` +
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

/** Compile-time constants of an elementwise kernel made by {@linkcode elementwiseKernel}. */
export interface ElementwiseConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
  /** Floats per element: 4 (`vec4f`: four floats per load) or 1 (`f32`, for tails). */
  width: number;
  /** Elements per invocation, `workgroupSize` apart (so neighbours read neighbours). */
  perInvocation: number;
}

/** One buffer of an elementwise kernel: its WGSL name and whether the kernel writes it. */
export interface ElementwiseBuffer {
  /** The WGSL variable; `params.<name>Offset` is its element offset in the bound window. */
  name: string;
  /** `write` binds it `read_write`. */
  access: "read" | "write";
}

/**
 * An elementwise kernel over `buffers`: `body(at, T)` is the WGSL statement(s) for element `i`,
 * where `at(name)` is that buffer's element and `T` the element type (`f32` or `vec4f`);
 * `prelude(T)` adds functions. The uniform is `struct Params { n: u32, <name>Offset: u32 ... }`
 * (in elements of `width` floats); see {@linkcode runElementwise}.
 */
export function elementwiseKernel(
  name: string,
  buffers: readonly ElementwiseBuffer[],
  body: (at: (buffer: string) => string, T: string) => string,
  prelude: (T: string) => string = () => "",
): Kernel<ElementwiseConstants> {
  return {
    name,
    bindings: [...buffers.map((b) => b.access), "uniform"],
    wgsl: ({ workgroupSize: wg, width, perInvocation }) => {
      const T = width === 4 ? "vec4f" : "f32";
      const at = (buffer: string) => `${buffer}[params.${buffer}Offset + i]`;
      return /* wgsl */ `
struct Params { n: u32, ${buffers.map((b) => `${b.name}Offset: u32`).join(", ")} }
${prelude(T)}
${
        buffers.map((b, i) =>
          `@group(0) @binding(${i}) var<storage, ${
            b.access === "write" ? "read_write" : "read"
          }> ${b.name}: array<${T}>;`
        ).join("\n")
      }
@group(0) @binding(${buffers.length}) var<uniform> params: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wid.x + wid.y * groups.x) * ${wg * perInvocation}u + lid;
  for (var k = 0u; k < ${perInvocation}u; k++) {
    let i = first + k * ${wg}u;
    if (i >= params.n) { return; }
    ${body(at, T)}
  }
}
`;
    },
  };
}

/**
 * How an elementwise kernel is shaped on `gpu`. On a CPU adapter (lavapipe) every storage load
 * is a scalar load per SIMD lane with a bounds check and a branch, per float even in a `vec4f`,
 * so what helps is fewer loads' bookkeeping per float (`vec4f`s: 1.7 GB/s scalar, 5-6 GB/s so,
 * 1024×768 adds), and each workgroup starts with a costly prologue (a division per lane for its
 * ids), so what helps next is more elements per workgroup: one SIMD vector of 8 invocations
 * taking 64 `vec4f`s each (residual at 1024×768: forward 0.87 -> 0.70 ms, backward 1.15 ->
 * 0.95 ms against 64 invocations of 4, best of 5 interleaved; 8×32, 8×128 and 16×32 within
 * 5% of it). On a GPU, one `vec4f` per invocation and 256 invocations, so neighbouring
 * invocations read neighbouring 16 bytes.
 */
export function elementwiseShape(gpu: Gpu): { workgroupSize: number; perInvocation: number } {
  return gpu.adapter.isCpu
    ? { workgroupSize: 8, perInvocation: 64 }
    : { workgroupSize: 256, perInvocation: 1 };
}

/**
 * Records an elementwise kernel made by {@linkcode elementwiseKernel} over the first `n` float32
 * elements of each of `buffers` (in binding order), in parts whose windows fit one binding: the
 * first `n - n % 4` floats as `vec4f`, the last `n % 4` (if any) as `f32`.
 *
 * @param shape the launch shape; {@linkcode elementwiseShape} by default (a kernel whose work per
 *   float differs, such as GELU's, may measure another).
 */
export async function runElementwise(
  gpu: Gpu,
  kernel: Kernel<ElementwiseConstants>,
  buffers: Record<string, GpuFloats>,
  n: number,
  shape: { workgroupSize: number; perInvocation: number } = elementwiseShape(gpu),
): Promise<void> {
  for (const [name, buffer] of Object.entries(buffers)) assertFits(name, buffer, n);
  const body = n - n % 4;
  const launch = async (first: number, count: number, width: number) => {
    const windows = Object.values(buffers).map((b) => bufferWindow(gpu, b, first, count));
    const offsets = Object.fromEntries(
      windows.map((w, i) => [`offset${i}`, w.elementOffset / width]),
    );
    const elements = count / width;
    const params = gpu.uniform(uniforms({ n: elements, ...offsets }));
    const perWorkgroup = shape.workgroupSize * (width === 4 ? shape.perInvocation : 1);
    await gpu.run(
      kernel,
      { ...shape, width, perInvocation: width === 4 ? shape.perInvocation : 1 },
      [...windows.map((w) => w.binding), params],
      grid2d(Math.ceil(elements / perWorkgroup)),
    );
  };
  // Parts of multiples of 64 floats start 256-byte aligned: their windows' offsets are 0.
  for (const { first, count } of elementParts(gpu, body)) await launch(first, count, 4);
  if (n > body) await launch(body, n - body, 1);
}
