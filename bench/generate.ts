/**
 * Generation speed: one new token at context positions 64 and 1000 for a small GPT-2 (V=8192,
 * L=4, NH=4, C=256, T=1024; 5.3M parameters, random weights), with the key-value cache
 * (`GPT2.forwardCached`, one position's work per token) and without (the training forward over
 * the whole context, as generation did before the cache), plus a batch of 20 sequences advanced
 * together (what `deno task eval` does). A run is one step as generation takes it: the forward
 * pass, the logits read back, a token sampled (top-k 40) per sequence.
 *
 *     deno run --allow-all bench/generate.ts          # a human table
 *     deno run --allow-all bench/generate.ts --json   # one JSON record per line
 *
 * Each cached run decodes the same position again (the row's length is set back first), so
 * every run measures the position it names. The decode attention kernel alone is measured too,
 * in GB/s of keys and values read (it reads each once per step, so loads bound it).
 */

import { attentionDecode, type DecodeShape } from "../kernels/attention_decode.ts";
import type { Gpu } from "../kernels/device.ts";
import type { GPT2Config } from "../nn/config.ts";
import { GPT2 } from "../nn/gpt2.ts";
import { KvCache } from "../nn/kv_cache.ts";
import { Random } from "../nn/random.ts";
import { sampleToken } from "../nn/sampling.ts";
import { Tape } from "../nn/tape.ts";
import { type BenchCase, type BenchRun, runBenchCli } from "./_harness.ts";

const CONFIG: GPT2Config = {
  vocabSize: 8192,
  contextLength: 1024,
  nLayer: 4,
  nHead: 4,
  nEmbd: 256,
};
const MODEL = "V8192 L4 C256 T1024";
const SAMPLING = { temperature: 0.8, topK: 40 };

/** `n` token ids of a made-up context. */
function context(n: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % CONFIG.vocabSize);
}

/** One cached step of `rows` sequences whose caches hold `position` tokens. */
async function cachedStep(gpu: Gpu, position: number, rows: number): Promise<BenchRun> {
  const model = GPT2.init(gpu, CONFIG, 1);
  const cache = new KvCache(gpu, CONFIG, rows);
  const indices = Array.from({ length: rows }, (_, r) => r);
  const prefill = await model.forwardCached(cache, {
    rows: indices,
    tokens: indices.map((r) => context(position, r)),
  });
  prefill.dispose();
  const random = new Random(1), V = CONFIG.vocabSize;
  const next = indices.map((r) => [r + 1]);
  return {
    run: async () => {
      for (const r of indices) cache.lengths[r] = position;
      const logits = await model.forwardCached(cache, { rows: indices, tokens: next });
      const values = await logits.read();
      logits.dispose();
      indices.forEach((r) => sampleToken(values.subarray(r * V, (r + 1) * V), SAMPLING, random));
    },
    dispose: () => {
      cache.dispose();
      model.dispose();
    },
  };
}

/** One uncached step: the training forward over `position` + 1 tokens, the last logits read. */
function uncachedStep(gpu: Gpu, position: number): BenchRun {
  const model = GPT2.init(gpu, CONFIG, 1);
  const ids = Int32Array.from(context(position + 1, 0));
  const random = new Random(1), V = CONFIG.vocabSize;
  return {
    run: async () => {
      const tape = new Tape(gpu), buffer = gpu.upload(ids);
      try {
        const logits = await model.forward(tape, { ids, buffer, batch: 1, time: ids.length });
        sampleToken(await gpu.readF32(logits.buffer, V, (ids.length - 1) * V), SAMPLING, random);
      } finally {
        tape.dispose();
        gpu.release(buffer);
      }
    },
    dispose: () => model.dispose(),
  };
}

/** One layer's decode attention for `rows` sequences at `position` (cache rows of 1024). */
function decodeAttention(gpu: Gpu, position: number, rows: number): BenchRun {
  const { nEmbd: C, nHead: NH, contextLength: maxT } = CONFIG;
  const shape: DecodeShape = {
    rows,
    time: 1,
    channels: C,
    heads: NH,
    maxTime: maxT,
    cacheRows: rows,
  };
  const buffers = [rows * 3 * C, rows * C, rows * maxT * C, rows * maxT * C].map((n) =>
    gpu.acquire(n * 4)
  );
  const [qkv, y, k, v] = buffers;
  const slots = gpu.upload(
    Uint32Array.from({ length: 2 * rows }, (_, i) => i % 2 ? position : i / 2),
  );
  return {
    run: () => attentionDecode(gpu, { y, qkv, kCache: k, vCache: v, slots }, shape),
    dispose: () => [...buffers, slots].forEach((b) => gpu.release(b)),
  };
}

/** Generation steps at positions 64 and 1000, cached and uncached, and a batch of 20. */
export const generateCases: BenchCase[] = [64, 1000].flatMap((position): BenchCase[] => [
  {
    kernel: "generate (cached)",
    shape: `${MODEL}, pos ${position}`,
    tokens: 1,
    reps: 10,
    setup: (gpu) => cachedStep(gpu, position, 1),
  },
  {
    kernel: "generate (uncached)",
    shape: `${MODEL}, pos ${position}`,
    tokens: 1,
    reps: position > 100 ? 2 : 5,
    setup: (gpu) => uncachedStep(gpu, position),
  },
  {
    kernel: "generate (cached, batch 20)",
    shape: `${MODEL}, pos ${position}`,
    tokens: 20,
    reps: 5,
    setup: (gpu) => cachedStep(gpu, position, 20),
  },
  {
    kernel: "attention_decode",
    shape: `B=20 NH=4 HS=64, pos ${position}`,
    bytes: 2 * 20 * (position + 1) * CONFIG.nEmbd * 4,
    setup: (gpu) => decodeAttention(gpu, position, 20),
  },
]);

if (import.meta.main) await runBenchCli(generateCases);
