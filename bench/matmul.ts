/**
 * Matmul benchmarks: the FMA ceiling first (bench/fma_ceiling.ts; every later line gives its
 * ratio to it), then 1024³, then every product of a training step of the four configs the
 * project trains (forward `inp · Wᵀ`, backward `dinp = dout · W` and `dW += doutᵀ · inp`, the
 * tied lm head included), then GPT-2 small's shapes (B·T = 1024 rows, C = 768) beside the naive
 * kernel and TensorFlow.js's WebGPU matmul. GFLOP/s = 2·M·N·K / time. Run through
 * `bench/main.ts` (`deno task bench --filter matmul`).
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import { matmul, type MatmulShape } from "../kernels/matmul.ts";
import { matmulNaive } from "../kernels/matmul_naive.ts";
import type { BenchCase } from "./_harness.ts";
import { fmaCeilingCases } from "./fma_ceiling.ts";
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

/** A training configuration's sizes, as far as its matmuls go. */
interface StepConfig {
  /** Short name shown in the shape column. */
  name: string;
  /** Vocabulary size (the lm head's width). */
  vocab: number;
  /** Embedding width C. */
  embd: number;
  /** Rows of every linear layer: batch · context. */
  rows: number;
}

/**
 * The three configs of issue 8: tiny (V8192 L4 H4 C128 T256 B8), small (V8192 L6 H6 C384
 * T512 B4), and a context-1024 one of 7.1M parameters (V8192 L6 H4 C256 T1024 B2); and the
 * model the main job's 30-minute budget picks on the development machine, `deno task bench
 * --train`'s budget config (V8192 L2 H3 C96 T1024 B4).
 */
const STEP_CONFIGS: StepConfig[] = [
  { name: "tiny", vocab: 8192, embd: 128, rows: 8 * 256 },
  { name: "small", vocab: 8192, embd: 384, rows: 4 * 512 },
  { name: "ctx1024", vocab: 8192, embd: 256, rows: 2 * 1024 },
  { name: "budget", vocab: 8192, embd: 96, rows: 4 * 1024 },
];

/**
 * Every distinct product of one training step of `config`: for each linear layer
 * `out (BT, OC) = inp (BT, IC) · W (OC, IC)ᵀ`, its forward, `dinp = dout · W` and
 * `dW += doutᵀ · inp` (K = BT, the thin-output, long-reduction one).
 */
function stepCases({ name, vocab, embd: C, rows: BT }: StepConfig): BenchCase[] {
  const layers: [string, number, number][] = [
    ["qkv", C, 3 * C],
    ["attn.proj", C, C],
    ["fc", C, 4 * C],
    ["fc.proj", 4 * C, C],
    ["lm_head", C, vocab],
  ];
  const cases: BenchCase[] = [];
  const seen = new Set<string>();
  const add = (shape: string, s: MatmulShape) => {
    const key = JSON.stringify(s);
    if (seen.has(key)) return;
    seen.add(key);
    // About 4 GFLOP of runs per case (0.06-0.2 s), at least 2: a product of the tiny config
    // takes ~1.5 ms, and 3 runs of it were timed to within 10-30% only.
    const flops = 2 * s.m * s.n * s.k;
    cases.push(matmulCase("matmul", shape, s, Math.max(2, Math.min(30, Math.round(4e9 / flops)))));
  };
  for (const [layer, IC, OC] of layers) {
    add(`${name} ${layer} ${BT}x${IC}·(${OC}x${IC})ᵀ`, { m: BT, n: OC, k: IC, transB: true });
    add(`${name} ${layer} dinp ${BT}x${OC}·${OC}x${IC}`, { m: BT, n: IC, k: OC });
    add(`${name} ${layer} dW (${BT}x${OC})ᵀ·${BT}x${IC}`, {
      m: OC,
      n: IC,
      k: BT,
      transA: true,
      accumulate: true,
    });
  }
  return cases;
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
  ...fmaCeilingCases,
  matmulCase("matmul", SQUARE, { m: 1024, n: 1024, k: 1024 }),
  matmulCase("matmul (naive)", SQUARE, { m: 1024, n: 1024, k: 1024 }, 1, true),
  tfjsMatmulCase(SQUARE, 1024, 1024, 1024),
  // The products of a training step of each config, each config after the ceiling again (the
  // machine's load drifts over a long run; ratios are to the best ceiling so far).
  ...STEP_CONFIGS.flatMap((config) => [...fmaCeilingCases, ...stepCases(config)]),
  ...fmaCeilingCases,
  // GPT-2 small. Forward of the linear layers: out = inp · Wᵀ.
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
