/**
 * Matmul benchmarks at GPT-2 small's shapes (B·T = 1024 rows, C = 768), each with the naive
 * kernel and TensorFlow.js's WebGPU matmul in the same run where they finish in reasonable time.
 * GFLOP/s = 2·M·N·K / time. Run through `bench/main.ts` (`deno task bench --filter matmul`).
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import { matmul, type MatmulShape } from "../kernels/matmul.ts";
import { matmulNaive } from "../kernels/matmul_naive.ts";
import type { BenchCase } from "./_harness.ts";
import { tfjsMatmulCase } from "./_tfjs_matmul.ts";

/** A buffer of `n` deterministic values in [-1, 1). */
function filled(gpu: Gpu, n: number, seed: number): GPUBuffer {
  const data = new Float32Array(n);
  let state = seed;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = state / 2 ** 31 - 1;
  }
  return gpu.upload(data);
}

function matmulCase(
  kernel: string,
  shape: string,
  s: MatmulShape,
  reps = 3,
  naive = false,
): BenchCase {
  return {
    kernel,
    shape,
    flops: 2 * s.m * s.n * s.k,
    reps,
    setup: (gpu) => {
      const a = filled(gpu, s.m * s.k, 1), b = filled(gpu, s.k * s.n, 2);
      const out = gpu.acquire(s.m * s.n * 4);
      return {
        run: () => naive ? matmulNaive(gpu, out, a, b, s) : matmul(gpu, out, a, b, s),
        dispose: () => [a, b, out].forEach((buffer) => gpu.release(buffer)),
      };
    },
  };
}

const SQUARE = "1024x1024 @ 1024x1024";
const QKV = "1024x768 @ (2304x768)ᵀ";
const QKV_DINP = "1024x2304 @ 2304x768";
const QKV_DW = "(1024x2304)ᵀ @ 1024x768";
const FC = "1024x768 @ (3072x768)ᵀ";
const PROJ = "1024x3072 @ (768x3072)ᵀ";
const LM_HEAD = "1024x768 @ (50257x768)ᵀ";

/** The matmul benchmark cases, in the order printed. */
export const matmulCases: BenchCase[] = [
  matmulCase("matmul", SQUARE, { m: 1024, n: 1024, k: 1024 }),
  matmulCase("matmul (naive)", SQUARE, { m: 1024, n: 1024, k: 1024 }, 1, true),
  tfjsMatmulCase(SQUARE, 1024, 1024, 1024),
  // Forward of the linear layers: out = inp · Wᵀ.
  matmulCase("matmul", QKV, { m: 1024, n: 2304, k: 768, transB: true }),
  matmulCase("matmul (naive)", QKV, { m: 1024, n: 2304, k: 768, transB: true }, 1, true),
  tfjsMatmulCase(QKV, 1024, 2304, 768, true),
  matmulCase("matmul", FC, { m: 1024, n: 3072, k: 768, transB: true }),
  tfjsMatmulCase(FC, 1024, 3072, 768, true),
  matmulCase("matmul", PROJ, { m: 1024, n: 768, k: 3072, transB: true }),
  tfjsMatmulCase(PROJ, 1024, 768, 3072, true),
  // Backward of the qkv layer: dinp = dout · W and dW += doutᵀ · inp.
  matmulCase("matmul", QKV_DINP, { m: 1024, n: 768, k: 2304 }),
  matmulCase("matmul", QKV_DW, { m: 2304, n: 768, k: 1024, transA: true, accumulate: true }),
  // The tied lm head: wte (154 MB) and the logits (206 MB) are over the 128 MiB binding limit.
  matmulCase("matmul", LM_HEAD, { m: 1024, n: 50257, k: 768, transB: true }, 1),
];
