/**
 * The global L2 norm of the gradients, `sqrt(sum over all tensors of sum(g²))`, for gradient
 * clipping. The norm stays on the GPU (a 1-element buffer) so that AdamW can read it and scale
 * the gradients without a CPU readback (see `kernels/adamw.ts`).
 *
 * Determinism: no float atomics; two passes with a fixed partition. Pass 1: the squares of each
 * fixed chunk of 4096 elements of one tensor are summed into its slot of a partials buffer. Pass
 * 2: one workgroup adds the partials in a fixed order and writes the square root. The partition
 * depends only on the tensor sizes, so the bits are the same every run, and also whether or not
 * a tensor is split into binding-sized parts.
 *
 * Who sums a chunk depends on the adapter. On a CPU adapter (lavapipe) one invocation sums a
 * whole chunk, four floats a load, with no barrier: measured at 124.4M parameters, 3.1 GB/s when
 * a workgroup of 16 shared each chunk (one float a load, then a tree), 11-14 GB/s so. On a GPU a
 * workgroup of 256 shares it (each invocation four floats a load, neighbours reading neighbours)
 * and adds with a tree.
 *
 * @module
 */

import { bufferWindow, type Gpu, type GpuFloats, grid2d, type Kernel, uniforms } from "./device.ts";
import { assertFits, reductionWorkgroup, rowParts } from "./_parts.ts";
import { rangeTableWgsl, workgroupSumWgsl } from "./_wgsl.ts";

/** Compile-time constants of the norm kernels. */
export interface GradNormConstants extends Record<string, number> {
  /** Invocations per workgroup; a power of two for the tree reduction. */
  workgroupSize: number;
}

/** Compile-time constants of the pass-1 kernels: how a chunk is summed, and how it is loaded. */
export interface GradNormPartialsConstants extends GradNormConstants {
  /**
   * 1: one invocation sums a whole chunk alone, four floats a load, with no barrier (a CPU
   * adapter: on lavapipe a barrier splits the shader into resumable pieces, and one SIMD lane
   * reading 16 KiB in a row keeps the loads streaming); 0: the invocations of a workgroup share
   * a chunk and add their sums with a tree (a GPU: neighbouring invocations read neighbouring
   * 16 bytes).
   */
  invocationPerChunk: number;
  /**
   * Bit k set: tensor k is bound as `array<vec4f>` (it starts on a multiple of 4 floats in its
   * buffer and has a multiple of 4 of them); clear: as `array<f32>`, four scalar loads a group
   * with the floats past the end read as zeros. Both add the same values in the same order.
   */
  vec4Mask: number;
}

/** Invocations per workgroup on a GPU (one chunk a workgroup). */
const GPU_WORKGROUP = 256;
/** Invocations per workgroup on a CPU adapter (one chunk an invocation): one SIMD vector. */
const CPU_WORKGROUP = 8;
/** Floats per chunk, each summed into one partial, whichever invocations sum it. */
const CHUNK = 4096;

/**
 * WGSL of `sumSquares<k>(start, end, lane)`: `lane`'s share of the sum of squares of the floats
 * `[start, end)` (indices in the bound window of `x<k>`, at most one chunk), four floats at a
 * time into one `vec4f` accumulator: every group of four with `invocationPerChunk` (the caller's
 * invocation sums the chunk alone, `lane` 0), else groups `lane`, `lane + wg`, ... A scalar-bound
 * tensor reads its groups as four loads, the floats past `end` as zeros (adding nothing), so
 * both bindings add the same values in the same order.
 */
function sumSquaresWgsl(k: number, vec4: boolean, invocationPerChunk: number, wg: number) {
  const group = vec4
    ? `x${k}[i / 4u]`
    : `vec4f(${[0, 1, 2, 3].map((j) => `at${k}(i + ${j}u, end)`).join(", ")})`;
  const scalarAt = vec4 ? "" : /* wgsl */ `
fn at${k}(i: u32, end: u32) -> f32 {
  if (i < end) { return x${k}[i]; }
  return 0.0;
}`;
  return /* wgsl */ `${scalarAt}
fn sumSquares${k}(start: u32, end: u32, lane: u32) -> f32 {
  var s = vec4f(0.0);
  for (var i = start + 4u * lane; i < end; i += ${invocationPerChunk ? 4 : 4 * wg}u) {
    let g = ${group};
    s = fma(g, g, s);
  }
  return (s.x + s.y) + (s.z + s.w);
}`;
}

/** The chunk an invocation or workgroup sums, and the store of its partial, in either layout. */
function chunkWgsl(invocationPerChunk: number, wg: number) {
  return invocationPerChunk
    ? {
      /** Index of the chunk within the launch. */
      chunk: `(wid.x + wid.y * groups.x) * ${wg}u + lid`,
      /** The caller's share of its chunk: all of it. */
      lane: "0u",
      /** Stores the invocation's sum (no barrier: on lavapipe the shader stays whole). */
      store: (target: string) => `${target} = sum;`,
      tree: "",
    }
    : {
      chunk: "wid.x + wid.y * groups.x",
      lane: "lid",
      store: (target: string) =>
        `let total = workgroupSum(lid, sum);\n  if (lid == 0u) { ${target} = total; }`,
      tree: workgroupSumWgsl(wg),
    };
}

/** WGSL of pass 1 over one window: `partials[partialOffset + c] = sum of x² over chunk c`. */
export const gradNormPartialsKernel: Kernel<GradNormPartialsConstants> = {
  name: "grad_norm_partials",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize: wg, invocationPerChunk, vec4Mask }) => {
    const { chunk, lane, store, tree } = chunkWgsl(invocationPerChunk, wg);
    return /* wgsl */ `
struct Params { n: u32, xOffset: u32, partialOffset: u32 }

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;  // (total chunks)
@group(0) @binding(1) var<storage, read> x0: array<${
      vec4Mask & 1 ? "vec4f" : "f32"
    }>;  // (n) window
@group(0) @binding(2) var<uniform> params: Params;
${tree}
${sumSquaresWgsl(0, (vec4Mask & 1) === 1, invocationPerChunk, wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let c = ${chunk};
  let start = c * ${CHUNK}u;
  if (start >= params.n) { return; }
  let end = min(start + ${CHUNK}u, params.n);
  let sum = sumSquares0(params.xOffset + start, params.xOffset + end, ${lane});
  ${store("partials[params.partialOffset + c]")}
}
`;
  },
};

/**
 * WGSL of pass 1 over up to `tensors` tensors in one launch, each bound as its own buffer: the
 * uniform's range table gives each tensor's first chunk in the launch, size, first partial and
 * element offset in its window, and a `switch` picks the binding (WGSL cannot index bindings).
 * Each chunk is summed exactly as {@linkcode gradNormPartialsKernel} sums it, so the partials
 * have the same bits.
 */
export const gradNormPartialsTensorsKernel: Kernel<
  GradNormPartialsConstants & { tensors: number }
> = {
  name: "grad_norm_partials_tensors",
  bindings: ({ tensors }) => ["write", "uniform", ...Array(tensors).fill("read")],
  wgsl: ({ workgroupSize: wg, invocationPerChunk, vec4Mask, tensors: K }) => {
    const { chunk, lane, store, tree } = chunkWgsl(invocationPerChunk, wg);
    const vec4 = (k: number) => ((vec4Mask >> k) & 1) === 1;
    return /* wgsl */ `
// Per tensor: (first chunk, size, first partial, element offset in its window).
struct Params { table: array<vec4u, ${K}> }

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;  // (total chunks)
@group(0) @binding(1) var<uniform> params: Params;
${
      Array.from({ length: K }, (_, k) =>
        `@group(0) @binding(${2 + k}) var<storage, read> x${k}: array<${
          vec4(k) ? "vec4f" : "f32"
        }>;`).join("\n")
    }
${tree}
${rangeTableWgsl(K)}
${
      Array.from({ length: K }, (_, k) => sumSquaresWgsl(k, vec4(k), invocationPerChunk, wg)).join(
        "\n",
      )
    }

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let c = ${chunk};
  let t = tableIndex(c);
  let entry = params.table[t];
  let start = (c - entry.x) * ${CHUNK}u;
  if (start >= entry.y) { return; }
  let first = entry.w + start;
  let end = entry.w + min(start + ${CHUNK}u, entry.y);
  var sum = 0.0;
  switch t {${
      Array.from({ length: K }, (_, k) => `
    case ${k}u: { sum = sumSquares${k}(first, end, ${lane}); }`).join("")
    }
    default: {}
  }
  ${store("partials[entry.z + c - entry.x]")}
}
`;
  },
};

/** Most tensors one pass-1 launch binds. */
const MAX_TENSORS_PER_LAUNCH = 16;

/** WGSL of pass 2: one workgroup, `out[0] = sqrt(sum of partials)`. */
export const gradNormFinalKernel: Kernel<GradNormConstants> = {
  name: "grad_norm_final",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize: wg }) => /* wgsl */ `
struct Params { count: u32 }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;    // (1)
@group(0) @binding(1) var<storage, read> partials: array<f32>;     // (count)
@group(0) @binding(2) var<uniform> params: Params;
${workgroupSumWgsl(wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) lid: u32) {
  var sum = 0.0;
  for (var i = lid; i < params.count; i += ${wg}u) { sum += partials[i]; }
  let total = workgroupSum(lid, sum);
  if (lid == 0u) { out[0] = sqrt(total); }
}
`,
};

/** A range of float32 elements in a buffer: `[first, first + count)`. */
export interface TensorRange {
  /** The buffer holding the tensor. */
  buffer: GpuFloats;
  /** Index of the tensor's first element in the buffer. Default 0. */
  first?: number;
  /** Number of elements. */
  count: number;
}

/**
 * Records `out[0] = sqrt(sum of squares over every element of every range)`, deterministically.
 * Tensors that fit one binding share pass-1 launches (16 a launch where the adapter's
 * storage-buffer limit allows; GPT-2 small's 148 gradients take 10 launches and pass 2); larger
 * ones are split into windows. Either way the partials, and so the bits, are the same.
 *
 * @param out (1) the global norm, WRITTEN.
 * @param tensors the gradient tensors: per-tensor buffers, or ranges of one flat buffer.
 *
 * @example
 * ```ts
 * await globalNorm(gpu, norm, [{ buffer: grads, count: numParameters }]);
 * const buffers = { params, m, v, grads, gradNorm: norm };
 * await adamwUpdate(gpu, buffers, ranges, { ...hyper, maxNorm: 1 });
 * ```
 */
export async function globalNorm(
  gpu: Gpu,
  out: GPUBuffer,
  tensors: readonly TensorRange[],
): Promise<void> {
  assertFits("out", out, 1);
  let chunks = 0;
  for (const { buffer, first = 0, count } of tensors) {
    assertFits("gradient", buffer, first + count);
    chunks += Math.ceil(count / CHUNK);
  }
  const partials = gpu.acquire(Math.max(1, chunks) * 4);
  const invocationPerChunk = gpu.adapter.isCpu ? 1 : 0;
  const wg = invocationPerChunk ? CPU_WORKGROUP : GPU_WORKGROUP;
  /** Workgroups for `count` chunks. */
  const grid = (count: number) => grid2d(invocationPerChunk ? Math.ceil(count / wg) : count);
  const storageLimit = gpu.device.limits.maxStorageBuffersPerShaderStage;
  const perLaunch = Math.max(1, Math.min(MAX_TENSORS_PER_LAUNCH, storageLimit - 1));
  const slack = gpu.device.limits.minStorageBufferOffsetAlignment;
  let partialOffset = 0;
  // Consecutive tensors that fit one binding, with their first partials: one launch.
  let group: Array<
    { window: ReturnType<typeof bufferWindow>; count: number; partial: number; vec4: boolean }
  > = [];
  const launchGroup = async () => {
    if (group.length === 0) return;
    const table = new Uint32Array(4 * group.length);
    let launchChunks = 0, vec4Mask = 0;
    group.forEach(({ window, count, partial, vec4 }, k) => {
      table.set([launchChunks, count, partial, window.elementOffset], 4 * k);
      launchChunks += Math.ceil(count / CHUNK);
      if (vec4) vec4Mask |= 1 << k;
    });
    await gpu.run(
      gradNormPartialsTensorsKernel,
      { workgroupSize: wg, invocationPerChunk, vec4Mask, tensors: group.length },
      [partials, gpu.uniform(table.buffer), ...group.map((g) => g.window.binding)],
      grid(launchChunks),
    );
    group = [];
  };
  for (const { buffer, first = 0, count } of tensors) {
    if (count === 0) continue;
    // Four floats a load where every chunk starts and ends on a multiple of 4 in the buffer.
    const vec4 = first % 4 === 0 && count % 4 === 0;
    if (count * 4 + slack <= gpu.maxBinding) {
      group.push({
        window: bufferWindow(gpu, buffer, first, count),
        count,
        partial: partialOffset,
        vec4,
      });
      partialOffset += Math.ceil(count / CHUNK);
      if (group.length === perLaunch) await launchGroup();
      continue;
    }
    await launchGroup();
    for (const part of rowParts(gpu, count, 1, CHUNK)) {
      const x = bufferWindow(gpu, buffer, first + part.first, part.count);
      const partChunks = Math.ceil(part.count / CHUNK);
      const params = gpu.uniform(uniforms({
        n: ["u32", part.count],
        xOffset: ["u32", x.elementOffset],
        partialOffset: ["u32", partialOffset],
      }));
      await gpu.run(
        gradNormPartialsKernel,
        { workgroupSize: wg, invocationPerChunk, vec4Mask: vec4 ? 1 : 0 },
        [partials, x.binding, params],
        grid(partChunks),
      );
      partialOffset += partChunks;
    }
  }
  await launchGroup();
  const params = gpu.uniform(uniforms({ count: ["u32", chunks] }));
  await gpu.run(
    gradNormFinalKernel,
    { workgroupSize: reductionWorkgroup(gpu, GPU_WORKGROUP, 16) },
    [{ buffer: out, offset: 0, size: 4 }, partials, params],
    [1],
  );
  gpu.release(partials);
}

/** CPU reference of {@linkcode globalNorm}, in float64. */
export function globalNormCpu(tensors: readonly ArrayLike<number>[]): number {
  let sum = 0;
  for (const tensor of tensors) {
    for (let i = 0; i < tensor.length; i++) sum += tensor[i] * tensor[i];
  }
  return Math.sqrt(sum);
}
