import assert from "node:assert/strict";
import type { Gpu } from "../../kernels/device.ts";
import { uploadTokens } from "../../nn/batch.ts";
import type { GPT2Config } from "../../nn/config.ts";
import {
  generateBatch,
  generateTokens,
  generateTokensUncached,
  type PromptCut,
  promptCutWarning,
} from "../../nn/generate.ts";
import { GPT2, gpt2ParameterSpecs } from "../../nn/gpt2.ts";
import { KvCache } from "../../nn/kv_cache.ts";
import { Random } from "../../nn/random.ts";
import { argmax, guidedLogits, sampleToken } from "../../nn/sampling.ts";
import { Tape } from "../../nn/tape.ts";
import { assertClose, testGpu, testGpuWithBindingLimit } from "../_gpu.ts";

// Head sizes 6 (scalar rows in the decode kernel) and 12 (vec4 rows); short contexts, so the
// sliding window is reached.
const CONFIGS: GPT2Config[] = [
  { vocabSize: 53, contextLength: 16, nLayer: 2, nHead: 3, nEmbd: 18 },
  { vocabSize: 61, contextLength: 24, nLayer: 2, nHead: 2, nEmbd: 24 },
];

const label = (c: GPT2Config) =>
  `V=${c.vocabSize}, T=${c.contextLength}, L=${c.nLayer}, NH=${c.nHead}, C=${c.nEmbd}`;

/**
 * A model whose attention is sharp: GPT-2's initialization (std 0.02) gives near-uniform
 * softmax rows, under which a wrong scale, mask or position would go unseen. Matrices here have
 * std 1.5/sqrt(fan-in), embeddings std 1, and the layernorm and bias parameters are random too.
 */
function sharpModel(gpu: Gpu, config: GPT2Config, seed: number): GPT2 {
  const random = new Random(seed);
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const spec of gpt2ParameterSpecs(config)) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const std = spec.shape.length === 2
      ? (spec.name === "wte" || spec.name === "wpe" ? 1 : 1.5 / Math.sqrt(spec.shape[1]))
      : 0.2;
    const base = spec.init === "ones" ? 1 : 0;
    const data = Float32Array.from({ length: size }, () => base + std * random.normal());
    weights.set(spec.name, { shape: spec.shape, data });
  }
  return GPT2.fromWeights(gpu, config, weights);
}

/** A prompt of `n` tokens from `seed`. */
function prompt(n: number, seed: number, vocabSize: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 17 + seed * 29 + 3) % vocabSize);
}

/** The training forward's logits (V) at the last position of `tokens`. */
async function lastLogits(model: GPT2, tokens: readonly number[]): Promise<Float32Array> {
  const ids = Int32Array.from(tokens), tape = new Tape(model.gpu);
  try {
    const logits = await model.forward(tape, uploadTokens(tape, ids, 1, ids.length));
    const V = model.config.vocabSize;
    return await model.gpu.readF32(logits.buffer, V, (ids.length - 1) * V);
  } finally {
    tape.dispose();
  }
}

async function cachedLogits(
  model: GPT2,
  cache: KvCache,
  rows: number[],
  tokens: number[][],
): Promise<Float32Array[]> {
  const logits = await model.forwardCached(cache, { rows, tokens });
  const values = await logits.read();
  logits.dispose();
  const V = model.config.vocabSize;
  return rows.map((_, r) => values.subarray(r * V, (r + 1) * V));
}

for (const [index, config] of CONFIGS.entries()) {
  Deno.test(`forwardCached() gives forward()'s logits at every step: ${label(config)}`, async () => {
    const gpu = await testGpu();
    const model = sharpModel(gpu, config, 1 + index);
    const V = config.vocabSize;
    // Three prompts of different lengths in one batch, in cache rows out of order.
    const sequences = [prompt(11, 1, V), prompt(1, 2, V), prompt(5, 3, V)];
    const rows = [2, 0, 1];
    const cache = new KvCache(gpu, config, 3);
    try {
      let logits = await cachedLogits(model, cache, rows, sequences);
      for (let step = 0;; step++) {
        for (const [r, sequence] of sequences.entries()) {
          assertClose(logits[r], await lastLogits(model, sequence), { atol: 2e-5, rtol: 1e-3 });
          assert.equal(cache.lengths[rows[r]], sequence.length);
        }
        if (sequences[0].length === config.contextLength) break;
        const next = logits.map((l) => argmax(l));
        next.forEach((id, r) => sequences[r].push(id));
        logits = await cachedLogits(model, cache, rows, next.map((id) => [id]));
      }
      // Appending to a full row is refused, with what to do instead.
      await assert.rejects(
        () => model.forwardCached(cache, { rows: [2], tokens: [[1]] }),
        /reset a full row/,
      );
    } finally {
      cache.dispose();
      model.dispose();
    }
  });

  Deno.test(`generateTokens() gives the uncached loop's greedy tokens: ${label(config)}`, async () => {
    const gpu = await testGpu();
    const model = sharpModel(gpu, config, 7 + index);
    const T = config.contextLength;
    try {
      // Short, mid-length, one token under the context, and longer than the context; each
      // runs past the context, into the sliding window.
      for (const [i, length] of [1, 6, T - 1, T + 4].entries()) {
        const tokens = prompt(length, 10 + i, config.vocabSize);
        const options = { temperature: 0, maxNewTokens: T - 4 };
        const cached = await generateTokens(model, tokens, options);
        assert.deepEqual(cached, await generateTokensUncached(model, tokens, options));
        assert.equal(cached.length, options.maxNewTokens);
      }
    } finally {
      model.dispose();
    }
  });
}

Deno.test("generateBatch() gives each prompt what generateTokens() gives it alone", async () => {
  const gpu = await testGpu();
  const config = CONFIGS[0];
  const model = sharpModel(gpu, config, 3);
  const V = config.vocabSize;
  const prompts = [prompt(3, 1, V), prompt(9, 2, V), prompt(1, 3, V), prompt(14, 4, V)];
  const seeds = [5, 6, 7, 8];
  const sampling = { temperature: 1, topK: 20, topP: 0.9, maxNewTokens: 20 };
  try {
    // A stop token that prompt 0 draws at its fourth step, so rows end at different times.
    const free = await generateTokens(model, prompts[0], { ...sampling, seed: seeds[0] });
    const stopIds = [free[3]];
    const alone = [];
    for (const [i, p] of prompts.entries()) {
      alone.push(await generateTokens(model, p, { ...sampling, stopIds, seed: seeds[i] }));
    }
    const streamed: number[][] = prompts.map(() => []);
    const batch = await generateBatch(model, prompts, {
      ...sampling,
      stopIds,
      seeds,
      onToken: (row, id) => streamed[row].push(id),
    });
    assert.deepEqual(batch, alone);
    assert.deepEqual(streamed, alone);
    assert.ok(batch[0].length <= 4 && batch[0].at(-1) === stopIds[0], `row 0: ${batch[0]}`);
    // The same tokens again under greedy choice, where the uncached loop is the reference.
    const greedy = await generateBatch(model, prompts, { temperature: 0, maxNewTokens: 15 });
    for (const [i, p] of prompts.entries()) {
      const reference = await generateTokensUncached(model, p, {
        temperature: 0,
        maxNewTokens: 15,
      });
      assert.deepEqual(greedy[i], reference, `prompt ${i}`);
    }
  } finally {
    model.dispose();
  }
});

Deno.test("generateBatch() splits prompts into groups when one cache cannot hold them all", async () => {
  // Rows sized to the longest prompt (7) plus 6 new tokens: 13 positions x 18 channels x 4
  // bytes = 936 bytes per cache row, four per 4 KiB: two groups for five prompts.
  const gpu: Gpu = await testGpuWithBindingLimit(4096);
  const config = CONFIGS[0];
  assert.equal(KvCache.maxRows(gpu, config, 13), 4);
  assert.equal(KvCache.maxRows(gpu, config), 3);
  const model = sharpModel(gpu, config, 4);
  try {
    const prompts = [1, 4, 2, 7, 3].map((n, i) => prompt(n, i, config.vocabSize));
    const options = { temperature: 0, maxNewTokens: 6 };
    const batch = await generateBatch(model, prompts, options);
    for (const [i, p] of prompts.entries()) {
      assert.deepEqual(batch[i], await generateTokensUncached(model, p, options), `prompt ${i}`);
    }
    assert.throws(() => new KvCache(gpu, config, 4), /1 to 3 rows/);
  } finally {
    model.dispose();
  }
});

/**
 * The guided tokens the slow way: each step runs the training forward over the prompt's window
 * and its unconditioned twin's, mixes their last logits, and samples as generateBatch does.
 */
async function guidedReference(
  model: GPT2,
  prompt: readonly number[],
  unconditioned: readonly number[],
  scale: number,
  options: { temperature: number; topK?: number; maxNewTokens: number; seed: number },
): Promise<number[]> {
  const T = model.config.contextLength;
  const random = new Random(options.seed);
  const tokens = [...prompt], twin = [...unconditioned], generated: number[] = [];
  while (generated.length < options.maxNewTokens) {
    const c = await lastLogits(model, tokens.slice(-T));
    const u = await lastLogits(model, twin.slice(-T));
    const next = sampleToken(guidedLogits(c, u, scale), options, random);
    tokens.push(next);
    twin.push(next);
    generated.push(next);
  }
  return generated;
}

Deno.test("generateBatch() with guidance samples from the prompt and its twin mixed", async () => {
  const gpu = await testGpu();
  const config = CONFIGS[1];
  const model = sharpModel(gpu, config, 11);
  const V = config.vocabSize;
  // Twins of other lengths than their prompts (context 24): with 20 new tokens, prompts 0 and 2
  // and twins 1 and 2 reach the sliding window, twin 2 cut from the start.
  const prompts = [prompt(9, 1, V), prompt(2, 2, V), prompt(30, 3, V)];
  const unconditioned = [prompt(3, 4, V), prompt(13, 5, V), prompt(27, 6, V)];
  const sampling = { temperature: 0.9, topK: 30, maxNewTokens: 20 };
  try {
    const seeds = [3, 4, 5];
    const guided = await generateBatch(model, prompts, {
      ...sampling,
      seeds,
      guidance: { scale: 2.5, unconditioned },
      onPromptCut: () => {},
    });
    for (const [i, p] of prompts.entries()) {
      const expected = await guidedReference(model, p, unconditioned[i], 2.5, {
        ...sampling,
        seed: seeds[i],
      });
      assert.deepEqual(guided[i], expected, `prompt ${i}`);
    }
    // Scale 1 is plain sampling; a large scale changes what is drawn.
    const plain = await generateBatch(model, prompts, { ...sampling, seeds, onPromptCut() {} });
    const one = await generateBatch(model, prompts, {
      ...sampling,
      seeds,
      guidance: { scale: 1, unconditioned },
      onPromptCut() {},
    });
    assert.deepEqual(one, plain);
    assert.notDeepEqual(guided, plain);
  } finally {
    model.dispose();
  }
});

Deno.test("generateBatch() with guidance splits groups by two cache rows a prompt", async () => {
  // 13 positions a row (as in the test above): 4 rows per 4 KiB cache, so 2 guided prompts a
  // group and three groups for five prompts.
  const gpu: Gpu = await testGpuWithBindingLimit(4096);
  const config = CONFIGS[0];
  const model = sharpModel(gpu, config, 12);
  const V = config.vocabSize;
  try {
    const prompts = [1, 4, 2, 7, 3].map((n, i) => prompt(n, i, V));
    const unconditioned = prompts.map((_, i) => prompt(2, 9 + i, V));
    const options = { temperature: 0, maxNewTokens: 6 };
    const batch = await generateBatch(model, prompts, {
      ...options,
      guidance: { scale: 3, unconditioned },
    });
    for (const [i, p] of prompts.entries()) {
      const expected = await guidedReference(model, p, unconditioned[i], 3, {
        ...options,
        seed: 0,
      });
      assert.deepEqual(batch[i], expected, `prompt ${i}`);
    }
    await assert.rejects(
      () => generateBatch(model, prompts, { guidance: { scale: 2, unconditioned: [[1]] } }),
      /one unconditioned prompt per prompt: 1 for 5/,
    );
    await assert.rejects(
      () => generateBatch(model, [[1]], { guidance: { scale: -1, unconditioned: [[1]] } }),
      /--guidance must be a number of 0 or more/,
    );
  } finally {
    model.dispose();
  }
});

Deno.test("generateBatch() rejects an empty prompt and adds nothing for maxNewTokens 0", async () => {
  const gpu = await testGpu();
  const model = GPT2.init(gpu, CONFIGS[0], 5);
  try {
    await assert.rejects(() => generateBatch(model, [[1], []]), /at least one token/);
    await assert.rejects(() => generateBatch(model, [[1]], { seeds: [1, 2] }), /one seed/);
    assert.deepEqual(await generateBatch(model, [[1], [2, 3]], { maxNewTokens: 0 }), [[], []]);
  } finally {
    model.dispose();
  }
});

Deno.test("generateBatch() reports prompts longer than the context once, with both lengths", async () => {
  const gpu = await testGpu();
  const config = CONFIGS[0]; // context 16
  const model = GPT2.init(gpu, config, 6);
  const V = config.vocabSize;
  try {
    const calls: [readonly PromptCut[], number][] = [];
    const onPromptCut = (cuts: readonly PromptCut[], T: number) => calls.push([cuts, T]);
    const options = { temperature: 0, maxNewTokens: 20, onPromptCut };
    // Prompts that fit are not reported, even when generation runs past the context.
    await generateBatch(model, [prompt(16, 1, V), prompt(3, 2, V)], options);
    await generateTokens(model, prompt(5, 3, V), options);
    assert.equal(calls.length, 0);
    await generateBatch(model, [prompt(3, 1, V), prompt(40, 2, V), prompt(17, 3, V)], options);
    assert.deepEqual(calls, [[[{ index: 1, length: 40 }, { index: 2, length: 17 }], 16]]);
    await generateTokens(model, prompt(33, 4, V), options);
    await generateTokensUncached(model, prompt(33, 4, V), { ...options, maxNewTokens: 2 });
    assert.deepEqual(calls.slice(1), [[[{ index: 0, length: 33 }], 16], [
      [{ index: 0, length: 33 }],
      16,
    ]]);
  } finally {
    model.dispose();
  }
  assert.equal(
    promptCutWarning([{ index: 0, length: 330 }], 32),
    "the prompt is 330 tokens, longer than the model's context of 32; the model sees only the " +
      "last 32 tokens.",
  );
  assert.match(
    promptCutWarning([{ index: 1, length: 40 }, { index: 4, length: 70 }], 32),
    /^2 prompts \(1, 4\) are longer than the model's context of 32 tokens, the longest 70/,
  );
});

Deno.test("generateBatch() refuses sampling options out of range before any work", async () => {
  const gpu = await testGpu();
  const model = GPT2.init(gpu, CONFIGS[0], 5);
  try {
    await assert.rejects(() => generateBatch(model, [[1]], { topP: 5 }), /--top-p must be above 0/);
    await assert.rejects(() => generateTokensUncached(model, [1], { topK: 0 }), /--top-k/);
  } finally {
    model.dispose();
  }
});

Deno.test("generation from a model with NaN weights stops with a clear error", async () => {
  const gpu = await testGpu();
  const config = CONFIGS[0];
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const spec of gpt2ParameterSpecs(config)) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    weights.set(spec.name, { shape: spec.shape, data: new Float32Array(size).fill(NaN) });
  }
  const model = GPT2.fromWeights(gpu, config, weights);
  try {
    for (const temperature of [0, 0.8]) {
      await assert.rejects(
        () => generateTokens(model, [1, 2], { temperature, maxNewTokens: 3 }),
        /outputs are not finite.*Use an earlier checkpoint/,
      );
    }
  } finally {
    model.dispose();
  }
});
