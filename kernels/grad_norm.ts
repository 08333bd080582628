/**
 * The global L2 norm of the gradients, `sqrt(sum over all tensors of sum(g²))`, for gradient
 * clipping. The norm stays on the GPU (a 1-element buffer) so that AdamW can read it and scale
 * the gradients without a CPU readback (see `kernels/adamw.ts`).
 *
 * Determinism: no float atomics; two passes with a fixed partition. Pass 1: each workgroup sums
 * the squares of a fixed chunk of 4096 elements of one tensor (strided by invocation, then a
 * tree) into its slot of a partials buffer. Pass 2: one workgroup adds the partials in a fixed
 * order and writes the square root. The partition depends only on the tensor sizes, so the bits
 * are the same every run, and also whether or not a tensor is split into binding-sized parts.
 *
 * @module
 */

import { bufferWindow, type Gpu, grid2d, type Kernel, uniforms } from "./device.ts";
import { assertFits, reductionWorkgroup, rowParts } from "./_parts.ts";
import { rangeTableWgsl, workgroupSumWgsl } from "./_wgsl.ts";

/** Compile-time constants of the norm kernels. */
export interface GradNormConstants extends Record<string, number> {
  /** Invocations per workgroup; a power of two for the tree reduction. */
  workgroupSize: number;
}

/** Invocations per workgroup on a GPU; see `reductionWorkgroup` for CPU adapters. */
const WORKGROUP_SIZE = 256;
/** Elements per pass-1 workgroup, whatever the workgroup size (16 per invocation on a GPU). */
const CHUNK = 4096;

/** WGSL of pass 1: `partials[partialOffset + w] = sum of x² over chunk w`. */
export const gradNormPartialsKernel: Kernel<GradNormConstants & { chunk: number }> = {
  name: "grad_norm_partials",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize: wg, chunk }) => /* wgsl */ `
struct Params { n: u32, xOffset: u32, partialOffset: u32 }

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;  // (total chunks)
@group(0) @binding(1) var<storage, read> x: array<f32>;               // (n) window
@group(0) @binding(2) var<uniform> params: Params;
${workgroupSumWgsl(wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * groups.x;
  let start = w * ${chunk}u;
  if (start >= params.n) { return; }
  let end = min(start + ${chunk}u, params.n);
  var sum = 0.0;
  for (var i = start + lid; i < end; i += ${wg}u) {
    let g = x[params.xOffset + i];
    sum += g * g;
  }
  let total = workgroupSum(lid, sum);
  if (lid == 0u) { partials[params.partialOffset + w] = total; }
}
`,
};

/**
 * WGSL of pass 1 over up to `tensors` tensors in one launch, each bound as its own buffer: the
 * uniform's range table gives each tensor's first workgroup, size, first partial and element
 * offset in its window, and a `switch` picks the binding (WGSL cannot index bindings). Each
 * workgroup sums its chunk exactly as {@linkcode gradNormPartialsKernel} does, so the partials
 * have the same bits.
 */
export const gradNormPartialsTensorsKernel: Kernel<
  GradNormConstants & { chunk: number; tensors: number }
> = {
  name: "grad_norm_partials_tensors",
  bindings: ({ tensors }) => ["write", "uniform", ...Array(tensors).fill("read")],
  wgsl: ({ workgroupSize: wg, chunk, tensors: K }) => /* wgsl */ `
// Per tensor: (first workgroup, size, first partial, element offset in its window).
struct Params { table: array<vec4u, ${K}> }

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;  // (total chunks)
@group(0) @binding(1) var<uniform> params: Params;
${
    Array.from({ length: K }, (_, k) =>
      `@group(0) @binding(${2 + k}) var<storage, read> x${k}: array<f32>;`).join("\n")
  }
${workgroupSumWgsl(wg)}

${rangeTableWgsl(K)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * groups.x;
  let t = tableIndex(w);
  let entry = params.table[t];
  let start = (w - entry.x) * ${chunk}u;
  if (start >= entry.y) { return; }
  let end = min(start + ${chunk}u, entry.y);
  var sum = 0.0;
  switch t {${
    Array.from({ length: K }, (_, k) => `
    case ${k}u: {
      for (var i = start + lid; i < end; i += ${wg}u) { let g = x${k}[entry.w + i]; sum += g * g; }
    }`).join("")
  }
    default: {}
  }
  let total = workgroupSum(lid, sum);
  if (lid == 0u) { partials[entry.z + w - entry.x] = total; }
}
`,
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
  buffer: GPUBuffer;
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
  const wg = reductionWorkgroup(gpu, WORKGROUP_SIZE, 16);
  const storageLimit = gpu.device.limits.maxStorageBuffersPerShaderStage;
  const perLaunch = Math.max(1, Math.min(MAX_TENSORS_PER_LAUNCH, storageLimit - 1));
  const slack = gpu.device.limits.minStorageBufferOffsetAlignment;
  let partialOffset = 0;
  // Consecutive tensors that fit one binding, with their first partials: one launch.
  let group: Array<{ window: ReturnType<typeof bufferWindow>; count: number; partial: number }> =
    [];
  const launchGroup = async () => {
    if (group.length === 0) return;
    const table = new Uint32Array(4 * group.length);
    let workgroups = 0;
    group.forEach(({ window, count, partial }, k) => {
      table.set([workgroups, count, partial, window.elementOffset], 4 * k);
      workgroups += Math.ceil(count / CHUNK);
    });
    await gpu.run(
      gradNormPartialsTensorsKernel,
      { workgroupSize: wg, chunk: CHUNK, tensors: group.length },
      [partials, gpu.uniform(table.buffer), ...group.map((g) => g.window.binding)],
      grid2d(workgroups),
    );
    group = [];
  };
  for (const { buffer, first = 0, count } of tensors) {
    if (count === 0) continue;
    if (count * 4 + slack <= gpu.maxBinding) {
      group.push({
        window: bufferWindow(gpu, buffer, first, count),
        count,
        partial: partialOffset,
      });
      partialOffset += Math.ceil(count / CHUNK);
      if (group.length === perLaunch) await launchGroup();
      continue;
    }
    await launchGroup();
    for (const part of rowParts(gpu, count, 1, CHUNK)) {
      const x = bufferWindow(gpu, buffer, first + part.first, part.count);
      const groups = Math.ceil(part.count / CHUNK);
      const params = gpu.uniform(uniforms({
        n: ["u32", part.count],
        xOffset: ["u32", x.elementOffset],
        partialOffset: ["u32", partialOffset],
      }));
      await gpu.run(
        gradNormPartialsKernel,
        { workgroupSize: wg, chunk: CHUNK },
        [partials, x.binding, params],
        grid2d(groups),
      );
      partialOffset += groups;
    }
  }
  await launchGroup();
  const params = gpu.uniform(uniforms({ count: ["u32", chunks] }));
  await gpu.run(
    gradNormFinalKernel,
    { workgroupSize: wg },
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
