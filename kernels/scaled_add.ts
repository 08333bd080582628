/**
 * Scaled add, `out[i] = a[i] + alpha * b[i]`: the smallest real kernel, and the pattern every
 * kernel file follows: the WGSL builder (compile-time constants only), its launcher (runtime
 * sizes in a uniform), and a plain-TypeScript CPU reference that tests compare against.
 *
 * @module
 */

import { type Gpu, grid2d, type Kernel, uniforms } from "./device.ts";

/** Compile-time constants of {@linkcode scaledAddKernel}. */
export interface ScaledAddConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
}

/** WGSL of the scaled add; each invocation handles one element. */
export const scaledAddKernel: Kernel<ScaledAddConstants> = {
  name: "scaled_add",
  bindings: ["read", "read", "write", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { n: u32, alpha: f32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * groups.x) * ${workgroupSize}u + lid;
  if (i < params.n) {
    out[i] = a[i] + params.alpha * b[i];
  }
}
`,
};

const WORKGROUP_SIZE = 256;

/**
 * Records `out = a + alpha * b` over the first `n` float32 elements of each buffer.
 *
 * @example
 * ```ts
 * const gpu = await acquireGpu();
 * const a = gpu.upload(new Float32Array([1, 2])), b = gpu.upload(new Float32Array([3, 4]));
 * const out = gpu.acquire(8);
 * await scaledAdd(gpu, out, a, b, 0.5, 2);
 * console.log(await gpu.readF32(out, 2)); // [2.5, 4]
 * ```
 */
export async function scaledAdd(
  gpu: Gpu,
  out: GPUBuffer,
  a: GPUBuffer,
  b: GPUBuffer,
  alpha: number,
  n: number,
): Promise<void> {
  if (n === 0) return;
  const params = gpu.uniform(uniforms({ n: ["u32", n], alpha: ["f32", alpha] }));
  await gpu.run(
    scaledAddKernel,
    { workgroupSize: WORKGROUP_SIZE },
    [a, b, out, params],
    grid2d(Math.ceil(n / WORKGROUP_SIZE)),
  );
}

/** CPU reference of {@linkcode scaledAdd}: `out[i] = a[i] + alpha * b[i]`. */
export function scaledAddCpu(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  alpha: number,
): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i] + Math.fround(alpha) * b[i];
}
