/**
 * Causal self-attention at GPT-2 small's shape (B=4, NH=12, T=1024, HS=64): the fused kernels
 * of `kernels/attention.ts` beside the unfused three-kernel path of `kernels/attention_naive.ts`,
 * forward, backward, and both, in the same run.
 *
 *     deno run --allow-all bench/attention.ts          # a human table
 *     deno run --allow-all bench/attention.ts --json   # one JSON record per line
 *
 * FLOPs count the useful causal work only, the same for both paths: the forward's two matmuls
 * (QK^T and PV) over the T(T+1)/2 ~ T^2/2 score entries at 2 FLOPs per multiply-add,
 * 2 * 2 * B * NH * (T^2 / 2) * HS; the backward does five such matmuls (dP, dV, dQ, dK, and
 * the recomputed S), counted as 2.5 x the forward. Softmax and exp are not counted.
 */

import {
  attentionBackward,
  attentionForward,
  type AttentionOptions,
  defaultTiles,
} from "../kernels/attention.ts";
import { attentionNaiveBackward, attentionNaiveForward } from "../kernels/attention_naive.ts";
import type { Gpu } from "../kernels/device.ts";
import { type BenchCase, type BenchRun, runBenchCli } from "./_harness.ts";

const [B, NH, T, HS] = [4, 12, 1024, 64];
const SHAPE = `B=${B} NH=${NH} T=${T} HS=${HS}`;
const FORWARD_FLOPS = 2 * 2 * B * NH * (T * T / 2) * HS;
const BACKWARD_FLOPS = 2.5 * FORWARD_FLOPS;

/** Deterministic values in [-1, 1) (a xorshift generator), so runs compare like for like. */
function values(n: number, seed: number): Float32Array {
  let state = (seed * 0x9e3779b9) >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    state ^= state << 13, state ^= state >>> 17, state ^= state << 5;
    return (state >>> 0) / 2 ** 31 - 1;
  });
}

/**
 * "fused": the default fused kernels (texture kernels on a CPU adapter); "buffers": the fused
 * storage-buffer kernels with the adapter's tiles (on a GPU the same as "fused"); "naive": the
 * unfused path.
 */
type Path = "fused" | "buffers" | "naive";
type Pass = "forward" | "backward" | "both";

/**
 * Allocates one path's tensors; `run` records the chosen pass. For a backward alone, the
 * forward runs once in setup to produce what the backward reads (o and L, or att).
 */
async function setup(gpu: Gpu, path: Path, pass: Pass): Promise<BenchRun> {
  const n = B * NH * T * HS;
  const [q, k, v, dout] = [1, 2, 3, 4].map((seed) => gpu.upload(values(n, seed)));
  const [o, dq, dk, dv] = [0, 1, 2, 3].map(() => gpu.acquire(n * 4));
  // The fused path keeps L (B, NH, T); the naive one the probabilities (B, NH, T, T).
  const saved = gpu.acquire(path === "naive" ? B * NH * T * T * 4 : B * NH * T * 4);
  const options: AttentionOptions = path === "buffers" ? { tiles: defaultTiles(gpu, HS) } : {};
  const forward = () =>
    path === "naive"
      ? attentionNaiveForward(gpu, { o, att: saved, q, k, v }, B, NH, T, HS)
      : attentionForward(gpu, { o, lse: saved, q, k, v }, B, NH, T, HS, options);
  const grads = { dq, dk, dv, dout, q, k, v };
  const backward = () =>
    path === "naive"
      ? attentionNaiveBackward(gpu, { ...grads, att: saved }, B, NH, T, HS)
      : attentionBackward(gpu, { ...grads, o, lse: saved }, B, NH, T, HS, options);
  if (pass === "backward") await forward();
  return {
    run: async () => {
      if (pass !== "backward") await forward();
      if (pass !== "forward") await backward();
    },
    dispose: () => {
      for (const buffer of [q, k, v, dout, o, dq, dk, dv, saved]) gpu.release(buffer);
    },
  };
}

function benchCase(path: Path, pass: Pass): BenchCase {
  const name = { forward: "attention fwd", backward: "attention bwd", both: "attention fwd+bwd" };
  return {
    kernel: path === "fused" ? name[pass] : `${name[pass]} (${path})`,
    shape: SHAPE,
    flops: pass === "forward"
      ? FORWARD_FLOPS
      : pass === "backward"
      ? BACKWARD_FLOPS
      : FORWARD_FLOPS + BACKWARD_FLOPS,
    setup: (gpu) => setup(gpu, path, pass),
    // Each run takes from a fraction of a second (fused) to seconds (naive) on lavapipe.
    reps: path === "naive" ? 1 : 2,
  };
}

/**
 * The attention cases: fused (default and storage-buffer kernels) and unfused, forward,
 * backward, and both.
 */
export const attentionCases: BenchCase[] = (["forward", "backward", "both"] as const).flatMap((
  pass,
) => [benchCase("fused", pass), benchCase("buffers", pass), benchCase("naive", pass)]);

if (import.meta.main) await runBenchCli(attentionCases);
