/**
 * The naive matmul, one output per invocation straight from storage buffers: the baseline the
 * benchmark compares `matmul` (kernels/matmul.ts) against, like llm.c's "kernel 1". Same layouts
 * as the tiled matmul (`transA`, `transB`); no batching, no epilogue, no split launch (each
 * operand must fit one binding). Not for training.
 *
 * @module
 */

import { type Gpu, type Kernel, uniforms } from "./device.ts";

/** Compile-time constants of {@linkcode matmulNaiveKernel}. */
export interface MatmulNaiveConstants extends Record<string, number | boolean> {
  /** A is stored `(K, M)`; else `(M, K)`. */
  transA: boolean;
  /** B is stored `(N, K)`; else `(K, N)`. */
  transB: boolean;
}

const WG = 8;

/** WGSL of the naive product: invocation `(x, y)` computes `out[y, x]` with a loop over K. */
export const matmulNaiveKernel: Kernel<MatmulNaiveConstants> = {
  name: "matmul_naive",
  bindings: ["read", "read", "write", "uniform"],
  wgsl: ({ transA, transB }) => /* wgsl */ `
struct Params { m: u32, n: u32, k: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(${WG}, ${WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let row = gid.y;
  let col = gid.x;
  if (row >= p.m || col >= p.n) {
    return;
  }
  var sum = 0.0;
  for (var k = 0u; k < p.k; k++) {
    sum += a[${transA ? "k * p.m + row" : "row * p.k + k"}] * b[${
    transB ? "col * p.k + k" : "k * p.n + col"
  }];
  }
  out[row * p.n + col] = sum;
}
`,
};

/**
 * Records `out (M, N) = op(A) · op(B)` with the naive kernel; see `matmul` for the layouts.
 */
export async function matmulNaive(
  gpu: Gpu,
  out: GPUBuffer,
  a: GPUBuffer,
  b: GPUBuffer,
  { m, n, k, transA = false, transB = false }: {
    m: number;
    n: number;
    k: number;
    transA?: boolean;
    transB?: boolean;
  },
): Promise<void> {
  const params = gpu.uniform(uniforms({ m: ["u32", m], n: ["u32", n], k: ["u32", k] }));
  await gpu.run(matmulNaiveKernel, { transA, transB }, [a, b, out, params], [
    Math.ceil(n / WG),
    Math.ceil(m / WG),
  ]);
}
