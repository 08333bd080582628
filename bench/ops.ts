/**
 * Benchmarks of the smaller training kernels at GPT-2 small shapes (B·T = 1024 positions,
 * C = 768, V = 50257, 124M parameters), with naive baselines for layernorm and AdamW in the
 * same run. All are memory-bound, so each case reports GB/s: the bytes the op must move at
 * least (every input read once, every output written once), over its time. A kernel that reads
 * a tensor twice (the layernorm backward's two passes, cross-entropy's two sweeps) is charged
 * only once, so its rate is an effective bandwidth. The copy-ceiling cases come first
 * (bench/copy_ceiling.ts), and every later line gives its ratio to the best of them.
 *
 * `opsCases` is meant for `bench/main.ts`'s list; alone:
 *
 *     deno run --allow-all bench/ops.ts            # a human table
 *     deno run --allow-all bench/ops.ts --json     # one JSON record per line
 *
 * @module
 */

import { adamwUpdate, type ParameterRange } from "../kernels/adamw.ts";
import { mergeHeadsForward, splitHeadsForward } from "../kernels/attention_layout.ts";
import { biasGrad } from "../kernels/bias_grad.ts";
import { crossEntropy } from "../kernels/cross_entropy.ts";
import type { Gpu } from "../kernels/device.ts";
import { embeddingBackward, embeddingForward } from "../kernels/embedding.ts";
import { geluBackward, geluForward } from "../kernels/gelu.ts";
import { globalNorm } from "../kernels/grad_norm.ts";
import {
  layernormBackward,
  layernormForward,
  type LayernormOptions,
  residualLayernormForward,
} from "../kernels/layernorm.ts";
import { residualBackward, residualForward } from "../kernels/residual.ts";
import { alignUp } from "../nn/arena.ts";
import { gpt2ArenaOrder, gpt2ParameterSpecs } from "../nn/gpt2.ts";
import { type BenchCase, runBenchCli } from "./_harness.ts";
import { copyCeilingCases } from "./copy_ceiling.ts";

const N = 1024, C = 768, V = 50257, MAX_T = 1024;

/** Deterministic values in [-1, 1) without a generator per element. */
function pattern(n: number, period = 1009): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < Math.min(period, n); i++) x[i] = (2 * i) / period - 1;
  for (let filled = period; filled < n; filled *= 2) x.copyWithin(filled, 0, filled);
  return x;
}

/** Buffers made by a case, freed by its `dispose`. */
function owned(gpu: Gpu, buffers: GPUBuffer[]): () => void {
  return () => buffers.forEach((b) => gpu.release(b));
}

function layernormCases(): BenchCase[] {
  const bytes = (2 * N * C + 2 * C + 2 * N) * 4;
  // The default layout for the adapter, and the other one as the baseline (one line each on
  // why both exist: kernels/layernorm.ts, LayernormPerRow).
  const variants: [string, LayernormOptions][] = [["", {}], [" (workgroup per row)", {
    perRow: "workgroup",
  }], [" (invocation per row)", { perRow: "invocation" }]];
  const forward = ([label, options]: [string, LayernormOptions]): BenchCase => ({
    kernel: `layernorm fwd${label}`,
    shape: `${N}x${C}`,
    bytes,
    setup: (gpu) => {
      const inp = gpu.upload(pattern(N * C)), w = gpu.upload(pattern(C, 7));
      const b = gpu.upload(pattern(C, 11)), out = gpu.acquire(N * C * 4);
      const mean = gpu.acquire(N * 4), rstd = gpu.acquire(N * 4);
      return {
        run: () =>
          layernormForward(gpu, { out, mean, rstd, inp, weight: w, bias: b }, N, C, options),
        dispose: owned(gpu, [inp, w, b, out, mean, rstd]),
      };
    },
  });
  const backward = ([label, options]: [string, LayernormOptions]): BenchCase => ({
    kernel: `layernorm bwd${label}`,
    shape: `${N}x${C}`,
    // Read dout, inp, dinp; write dinp; the (C) and (N) vectors.
    bytes: (4 * N * C + 5 * C + 2 * N) * 4,
    setup: async (gpu) => {
      const inp = gpu.upload(pattern(N * C)), w = gpu.upload(pattern(C, 7));
      const b = gpu.upload(pattern(C, 11)), out = gpu.acquire(N * C * 4);
      const mean = gpu.acquire(N * 4), rstd = gpu.acquire(N * 4);
      await layernormForward(gpu, { out, mean, rstd, inp, weight: w, bias: b }, N, C);
      const dout = gpu.upload(pattern(N * C, 613)), dinp = gpu.acquire(N * C * 4);
      const dw = gpu.acquire(C * 4), db = gpu.acquire(C * 4);
      for (const x of [dinp, dw, db]) gpu.encoder.clearBuffer(x);
      const buffers = { dinp, dweight: dw, dbias: db, dout, inp, weight: w, mean, rstd };
      return {
        run: () => layernormBackward(gpu, buffers, N, C, options),
        dispose: owned(gpu, [inp, w, b, out, mean, rstd, dout, dinp, dw, db]),
      };
    },
  });
  // The residual add fused into the forward (what a GPT-2 block runs, nn/ops.ts
  // residualLayernorm): read a and b, write the sum and the normalized output.
  const fused = ([label, options]: [string, LayernormOptions]): BenchCase => ({
    kernel: `residual + layernorm fwd${label}`,
    shape: `${N}x${C}`,
    bytes: (4 * N * C + 2 * C + 2 * N) * 4,
    setup: (gpu) => {
      const a = gpu.upload(pattern(N * C)), b = gpu.upload(pattern(N * C, 31));
      const w = gpu.upload(pattern(C, 7)), bias = gpu.upload(pattern(C, 11));
      const sum = gpu.acquire(N * C * 4), out = gpu.acquire(N * C * 4);
      const mean = gpu.acquire(N * 4), rstd = gpu.acquire(N * 4);
      const buffers = { out, mean, rstd, inp: sum, a, b, weight: w, bias };
      return {
        run: () => residualLayernormForward(gpu, buffers, N, C, options),
        dispose: owned(gpu, [a, b, w, bias, sum, out, mean, rstd]),
      };
    },
  });
  return [...variants.map(forward), fused(variants[0]), ...variants.map(backward)];
}

function geluCases(): BenchCase[] {
  return [4 * C, C].flatMap((width) => {
    const n = N * width;
    return [{
      kernel: "gelu fwd",
      shape: `${N}x${width}`,
      bytes: 2 * n * 4,
      setup: (gpu: Gpu) => {
        const inp = gpu.upload(pattern(n)), out = gpu.acquire(n * 4);
        return { run: () => geluForward(gpu, out, inp, n), dispose: owned(gpu, [inp, out]) };
      },
    }, {
      kernel: "gelu bwd",
      shape: `${N}x${width}`,
      bytes: 3 * n * 4,
      setup: (gpu: Gpu) => {
        const inp = gpu.upload(pattern(n)), dout = gpu.upload(pattern(n, 313));
        const dinp = gpu.acquire(n * 4);
        return {
          run: () => geluBackward(gpu, dinp, inp, dout, n),
          dispose: owned(gpu, [inp, dout, dinp]),
        };
      },
    }];
  });
}

function residualCases(): BenchCase[] {
  const n = N * C;
  return [{
    kernel: "residual fwd",
    shape: `${N}x${C}`,
    bytes: 3 * n * 4,
    setup: (gpu) => {
      const a = gpu.upload(pattern(n)), b = gpu.upload(pattern(n, 31)), out = gpu.acquire(n * 4);
      return { run: () => residualForward(gpu, out, a, b, n), dispose: owned(gpu, [a, b, out]) };
    },
  }, {
    kernel: "residual bwd",
    shape: `${N}x${C}`,
    bytes: 5 * n * 4,
    setup: (gpu) => {
      const da = gpu.upload(pattern(n)), db = gpu.upload(pattern(n, 31));
      const dout = gpu.upload(pattern(n, 37));
      return {
        run: () => residualBackward(gpu, da, db, dout, n),
        dispose: owned(gpu, [da, db, dout]),
      };
    },
  }];
}

/** GPT-2's 12 heads of 64: the qkv split (and its backward's merge), the output merge. */
function headLayoutCases(): BenchCase[] {
  const NH = 12, n = N * C;
  return [{
    kernel: "attention split heads",
    shape: `${N}x${3 * C} -> 3 x ${NH}x${N}x${C / NH}`,
    bytes: 2 * 3 * n * 4,
    setup: (gpu) => {
      const qkv = gpu.upload(pattern(3 * n)), [q, k, v] = [0, 1, 2].map(() => gpu.acquire(n * 4));
      return {
        run: () => splitHeadsForward(gpu, q, k, v, qkv, 1, N, C, NH),
        dispose: owned(gpu, [qkv, q, k, v]),
      };
    },
  }, {
    kernel: "attention merge heads",
    shape: `${NH}x${N}x${C / NH} -> ${N}x${C}`,
    bytes: 2 * n * 4,
    setup: (gpu) => {
      const o = gpu.upload(pattern(n)), y = gpu.acquire(n * 4);
      return { run: () => mergeHeadsForward(gpu, y, o, 1, N, C, NH), dispose: owned(gpu, [o, y]) };
    },
  }];
}

function crossEntropyCases(): BenchCase[] {
  // GPT-2's vocabulary (rows of floats), and llm.c's padding of it to a multiple of 64 (rows of
  // vec4s, as any V that is a multiple of 4: the trained models' 8192 and 16384 too).
  return [V, 50304].map((v) => ({
    kernel: "cross-entropy fwd+bwd",
    shape: `${N}x${v} in place`,
    // Read the logits, write dlogits over them, plus targets and losses.
    bytes: (2 * N * v + 2 * N) * 4,
    reps: 3,
    setup: (gpu: Gpu) => {
      const logits = gpu.upload(pattern(N * v, 4099).map((x) => x * 4));
      const targets = gpu.upload(Int32Array.from({ length: N }, (_, i) => (i * 7919) % v));
      const losses = gpu.acquire(N * 4);
      return {
        run: () => crossEntropy(gpu, { losses, dlogits: logits, logits, targets }, 1 / N, N, v),
        dispose: owned(gpu, [logits, targets, losses]),
      };
    },
  }));
}

function embeddingCases(): BenchCase[] {
  // GPT-2-like token ids: some repeats, spread over the vocabulary.
  const tokens = Int32Array.from({ length: N }, (_, i) => i % 5 === 0 ? 13 : (i * 7919) % V);
  // Each distinct token's row moves once (820 of them here, not 1024), as each wpe row (T = N).
  const distinct = new Set(tokens).size;
  return [{
    kernel: "embedding fwd",
    shape: `B*T=${N}, C=${C}`,
    // Read the tokens, the touched wte rows and the wpe rows; write out.
    bytes: ((distinct + N + N) * C + N) * 4,
    setup: (gpu) => {
      const tokensBuf = gpu.upload(tokens), wte = gpu.upload(pattern(V * C));
      const wpe = gpu.upload(pattern(MAX_T * C, 101)), out = gpu.acquire(N * C * 4);
      return {
        run: () => embeddingForward(gpu, out, tokensBuf, wte, wpe, 1, N, C, V, MAX_T),
        dispose: owned(gpu, [tokensBuf, wte, wpe, out]),
      };
    },
  }, {
    kernel: "embedding bwd",
    shape: `B*T=${N}, C=${C}`,
    // Read dout; read and write the touched dwte rows and the dwpe rows; read the positions
    // grouped by token (distinct tokens, offsets, positions).
    bytes: ((N + 2 * distinct + 2 * N) * C + 2 * distinct + 1 + N) * 4,
    setup: (gpu) => {
      const dout = gpu.upload(pattern(N * C)), dwte = gpu.acquire(V * C * 4);
      const dwpe = gpu.acquire(MAX_T * C * 4);
      gpu.encoder.clearBuffer(dwte);
      gpu.encoder.clearBuffer(dwpe);
      return {
        // Includes grouping the tokens on the CPU and uploading the groups, as in training.
        run: () => embeddingBackward(gpu, dwte, dwpe, dout, tokens, 1, N, C, V, MAX_T),
        dispose: owned(gpu, [dout, dwte, dwpe]),
      };
    },
  }];
}

function biasGradCases(): BenchCase[] {
  // Every linear layer's bias gradient in the backward: the small config's (B·T = 2048, C = 384:
  // attn.c_proj and mlp.c_proj, c_attn, c_fc) and GPT-2 small's c_fc.
  return [[2048, 384], [2048, 1152], [2048, 1536], [1024, 3072]].map(([rows, cols]) => ({
    kernel: "bias grad",
    shape: `${rows}x${cols} -> ${cols}`,
    // Read dout; read and write dbias.
    bytes: (rows * cols + 2 * cols) * 4,
    setup: (gpu: Gpu) => {
      const dout = gpu.upload(pattern(rows * cols)), dbias = gpu.acquire(cols * 4);
      gpu.encoder.clearBuffer(dbias);
      return {
        run: () => biasGrad(gpu, dbias, dout, rows, cols),
        dispose: owned(gpu, [dout, dbias]),
      };
    },
  }));
}

/** GPT-2 small's parameter tensors in checkpoint order, as ranges of one flat buffer. */
export function gpt2ParameterRanges(layers = 12, c = C, v = V, maxT = MAX_T): ParameterRange[] {
  const ranges: ParameterRange[] = [];
  let first = 0;
  const layer: [number, boolean][] = [
    [c, false],
    [c, false], // ln_1 weight, bias
    [c * 3 * c, true],
    [3 * c, false], // attn.c_attn
    [c * c, true],
    [c, false], // attn.c_proj
    [c, false],
    [c, false], // ln_2
    [c * 4 * c, true],
    [4 * c, false], // mlp.c_fc
    [4 * c * c, true],
    [c, false], // mlp.c_proj
  ];
  const tensors: [number, boolean][] = [
    [v * c, true], // wte
    [maxT * c, true], // wpe
    ...Array.from({ length: layers }, () => layer).flat(),
    [c, false],
    [c, false], // ln_f
  ];
  for (const [count, decay] of tensors) {
    ranges.push({ first, count, decay });
    first += count;
  }
  return ranges;
}

/**
 * GPT-2 small's parameters as the model lays them out in its flat buffer (`nn/arena.ts`): in
 * `gpt2ArenaOrder`, each from a 256-byte aligned offset, the decayed ones first. As
 * `nn/optimizer.ts` updates them: a decayed range then an undecayed one, gaps included.
 */
export function gpt2ArenaRanges(): { ranges: ParameterRange[]; floats: number } {
  const config = { vocabSize: V, contextLength: MAX_T, nLayer: 12, nHead: 12, nEmbd: C };
  let end = 0, decayEnd = 0;
  for (const spec of gpt2ArenaOrder(gpt2ParameterSpecs(config))) {
    end = alignUp(end + spec.shape.reduce((a, b) => a * b, 1) * 4, 256);
    if (spec.decay) decayEnd = end;
  }
  const ranges = [
    { first: 0, count: decayEnd / 4, decay: true },
    { first: decayEnd / 4, count: (end - decayEnd) / 4, decay: false },
  ];
  return { ranges, floats: end / 4 };
}

function optimizerCases(): BenchCase[] {
  const ranges = gpt2ParameterRanges();
  const total = ranges.reduce((n, r) => n + r.count, 0);
  const millions = `${(total / 1e6).toFixed(1)}M params`;
  const arena = gpt2ArenaRanges();
  const adamw = (scalar: boolean): BenchCase => ({
    kernel: scalar ? "adamw (naive scalar)" : "adamw",
    shape: `${millions}, 148 tensors, the model's flat buffer`,
    // Read params, grads, m, v; write params, m, v.
    bytes: 7 * total * 4,
    reps: 2,
    setup: (gpu) => {
      // One flat buffer each (496 MB, windowed); grads filled, the rest zeros.
      const bytes = arena.floats * 4;
      const params = gpu.acquire(bytes), m = gpu.acquire(bytes);
      const v = gpu.acquire(bytes), grads = gpu.acquire(bytes);
      for (const b of [params, m, v, grads]) gpu.encoder.clearBuffer(b);
      const hyper = { lr: 6e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1 };
      const norm = gpu.upload(new Float32Array([2]));
      return {
        run: () =>
          adamwUpdate(gpu, { params, m, v, grads, gradNorm: norm }, arena.ranges, {
            ...hyper,
            maxNorm: 1,
          }, { scalar }),
        dispose: owned(gpu, [params, m, v, grads, norm]),
      };
    },
  });
  return [adamw(false), adamw(true), {
    kernel: "grad norm",
    shape: `${millions}, flat`,
    // Read every gradient once; the partials (one float per 4096) are under 0.03% more.
    bytes: total * 4,
    reps: 3,
    setup: (gpu) => {
      const grads = gpu.acquire(total * 4), out = gpu.acquire(4);
      gpu.encoder.clearBuffer(grads);
      return {
        run: () => globalNorm(gpu, out, [{ buffer: grads, count: total }]),
        dispose: owned(gpu, [grads, out]),
      };
    },
  }, {
    // As training calls it: a buffer per gradient (wte's 154 MB split into windows, the rest
    // 16 tensors a launch).
    kernel: "grad norm",
    shape: `${millions}, ${ranges.length} tensors`,
    bytes: total * 4,
    reps: 3,
    setup: (gpu) => {
      const grads = ranges.map((r) => gpu.acquire(r.count * 4)), out = gpu.acquire(4);
      for (const g of grads) gpu.encoder.clearBuffer(g);
      const tensors = grads.map((buffer, i) => ({ buffer, count: ranges[i].count }));
      return {
        run: () => globalNorm(gpu, out, tensors),
        dispose: owned(gpu, [...grads, out]),
      };
    },
  }];
}

/** The smaller training kernels at GPT-2 small shapes, with naive baselines. */
export const opsCases: BenchCase[] = [
  ...copyCeilingCases,
  ...layernormCases(),
  ...geluCases(),
  ...residualCases(),
  ...headLayoutCases(),
  ...crossEntropyCases(),
  ...embeddingCases(),
  ...biasGradCases(),
  ...optimizerCases(),
];

if (import.meta.main) await runBenchCli(opsCases);
