/**
 * Autoregressive generation: the model reads the prompt, the next token is chosen from the last
 * position's logits, appended, and the model reads it in turn.
 *
 * Generation keeps a key-value cache ({@linkcode KvCache}): the prompt is read once (the
 * prefill), then each new token costs one position's work, attending over the cached keys and
 * values, instead of a forward pass over the whole context. {@linkcode generateBatch} advances
 * several sequences in the same forward passes, each with its own sampling and its own stop.
 *
 * Sliding window: the model has learned positions 0..contextLength-1 only. When a sequence
 * outgrows its context, the model sees its last `contextLength` tokens, re-read from position 0
 * (a fresh prefill of that row, every step from then on: the positions of the cached keys would
 * all shift by one). That is exactly what the uncached loop does, so both give the same tokens.
 * A prompt already longer than the context loses its start before anything is generated; the
 * `onPromptCut` option hears of it once per call ({@linkcode promptCutWarning} words it).
 *
 * @module
 */

import { uploadTokens } from "./batch.ts";
import type { GPT2 } from "./gpt2.ts";
import { KvCache } from "./kv_cache.ts";
import { Random } from "./random.ts";
import { sampleToken, type SamplingOptions, validateSampling } from "./sampling.ts";
import { Tape } from "./tape.ts";

/** Options of {@linkcode generateTokens}. */
export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to add. Default 100. */
  maxNewTokens?: number;
  /** Stop after producing any of these ids (e.g. `</s>`, `<|im_end|>`). */
  stopIds?: readonly number[];
  /** Seed of the sampling. Default 0. */
  seed?: number;
  /** Called with each new token id as it is chosen (for streaming output). */
  onToken?: (id: number) => void;
  /**
   * Called once, before generating, when the prompt is longer than the model's context (its
   * start is cut: the model sees only its last `contextLength` tokens).
   */
  onPromptCut?: (cuts: readonly PromptCut[], contextLength: number) => void;
}

/** A prompt longer than the context, of which the model sees only the last tokens. */
export interface PromptCut {
  /** The prompt's index in the caller's list (0 for a single prompt). */
  index: number;
  /** Its length in tokens. */
  length: number;
}

/**
 * A one-line warning for prompts cut to the context, with both lengths: "the prompt is 330
 * tokens, longer than the model's context of 32; the model sees only its last 32 tokens".
 * `what` names the prompt ("the prompt", "the conversation").
 */
export function promptCutWarning(
  cuts: readonly PromptCut[],
  contextLength: number,
  what = "the prompt",
): string {
  const tail = `the model sees only the last ${contextLength} tokens`;
  if (cuts.length === 1) {
    return `${what} is ${cuts[0].length} tokens, longer than the model's context of ` +
      `${contextLength}; ${tail}.`;
  }
  const longest = Math.max(...cuts.map((cut) => cut.length));
  return `${cuts.length} prompts (${cuts.map((cut) => cut.index).join(", ")}) are longer than ` +
    `the model's context of ${contextLength} tokens, the longest ${longest} tokens; ${tail} of ` +
    "each.";
}

/** Options of {@linkcode generateBatch}: those of {@linkcode generateTokens}, per row. */
export interface GenerateBatchOptions extends Omit<GenerateOptions, "onToken"> {
  /**
   * The sampling seed of each prompt; default `seed` for every one. A row with seed s draws
   * exactly what {@linkcode generateTokens} draws with seed s.
   */
  seeds?: readonly number[];
  /** Called with each new token id of prompt `row` as it is chosen. */
  onToken?: (row: number, id: number) => void;
}

/**
 * Continues `prompt` (token ids) with up to `maxNewTokens` tokens; returns only the new ones.
 * Uses the key-value cache; see the module doc for what happens past the context length.
 */
export async function generateTokens(
  model: GPT2,
  prompt: readonly number[],
  options: GenerateOptions = {},
): Promise<number[]> {
  const { onToken, ...rest } = options;
  const [generated] = await generateBatch(model, [prompt], {
    ...rest,
    onToken: onToken && ((_, id) => onToken(id)),
  });
  return generated;
}

/**
 * Continues each of `prompts` (token ids, of any lengths) with up to `maxNewTokens` tokens;
 * returns the new tokens of each. The prompts advance together, one forward pass per step for
 * all of them (in groups of as many rows as a cache of the adapter holds); each is sampled
 * with its own seeded generator and stops at its own stop token or length, and gets the tokens
 * {@linkcode generateTokens} would give it alone with its seed.
 */
export async function generateBatch(
  model: GPT2,
  prompts: readonly (readonly number[])[],
  options: GenerateBatchOptions = {},
): Promise<number[][]> {
  if (prompts.some((prompt) => prompt.length === 0)) {
    throw new Error("Generation needs a prompt of at least one token.");
  }
  if (options.seeds && options.seeds.length !== prompts.length) {
    throw new Error(`Give one seed per prompt: ${options.seeds.length} for ${prompts.length}.`);
  }
  validateSampling(options);
  const { contextLength } = model.config;
  const cuts = prompts.flatMap((prompt, index) =>
    prompt.length > contextLength ? [{ index, length: prompt.length }] : []
  );
  if (cuts.length > 0) options.onPromptCut?.(cuts, contextLength);
  // Cache rows as long as the longest sequence can grow (the whole context when one reaches it).
  const longest = Math.max(...prompts.map((prompt) => Math.min(prompt.length, contextLength)));
  const maxTime = Math.min(contextLength, longest + Math.max(0, options.maxNewTokens ?? 100));
  const groupSize = Math.max(1, KvCache.maxRows(model.gpu, model.config, maxTime));
  const results: number[][] = [];
  for (let first = 0; first < prompts.length; first += groupSize) {
    const count = Math.min(groupSize, prompts.length - first);
    const indices = Array.from({ length: count }, (_, i) => first + i);
    results.push(...await generateGroup(model, prompts, indices, maxTime, options));
  }
  return results;
}

/** One state of {@linkcode generateGroup}: a prompt's tokens so far and how it samples. */
interface Sequence {
  /** Index of the prompt in the caller's list (for seeds and onToken). */
  index: number;
  tokens: number[];
  generated: number[];
  random: Random;
  done: boolean;
}

/**
 * {@linkcode generateBatch} for the prompts `indices`, which share one cache of rows of
 * `maxTime` positions (row i: prompt `indices[i]`).
 */
async function generateGroup(
  model: GPT2,
  prompts: readonly (readonly number[])[],
  indices: readonly number[],
  maxTime: number,
  options: GenerateBatchOptions,
): Promise<number[][]> {
  const { contextLength, vocabSize } = model.config;
  const maxNewTokens = options.maxNewTokens ?? 100;
  const stop = new Set(options.stopIds ?? []);
  const sequences: Sequence[] = indices.map((index) => ({
    index,
    tokens: [...prompts[index]],
    generated: [],
    random: new Random(options.seeds?.[index] ?? options.seed ?? 0),
    done: maxNewTokens <= 0,
  }));
  if (sequences.every((s) => s.done)) return sequences.map((s) => s.generated);
  const cache = new KvCache(model.gpu, model.config, sequences.length, maxTime);
  try {
    // The prefill: every prompt (its last contextLength tokens) read in one forward pass.
    let rows = sequences.map((_, row) => row);
    let logits = await forward(model, cache, rows, rows.map((row) => window(sequences[row])));
    while (true) {
      rows.forEach((row, r) => {
        const s = sequences[row];
        const next = sampleToken(
          logits.subarray(r * vocabSize, (r + 1) * vocabSize),
          options,
          s.random,
        );
        s.tokens.push(next);
        s.generated.push(next);
        options.onToken?.(s.index, next);
        s.done = stop.has(next) || s.generated.length >= maxNewTokens;
      });
      rows = rows.filter((row) => !sequences[row].done);
      if (rows.length === 0) break;
      // Rows with room take their last token at their next position; a full row reads its
      // window again from position 0 (see the module doc).
      const full = rows.filter((row) => cache.lengths[row] >= contextLength);
      const decoding = rows.filter((row) => cache.lengths[row] < contextLength);
      const next = new Map<number, Float32Array>();
      if (decoding.length > 0) {
        const step = await forward(
          model,
          cache,
          decoding,
          decoding.map((row) => [sequences[row].tokens.at(-1)!]),
        );
        decoding.forEach((row, r) =>
          next.set(row, step.subarray(r * vocabSize, (r + 1) * vocabSize))
        );
      }
      for (const row of full) {
        cache.reset(row);
        next.set(row, await forward(model, cache, [row], [window(sequences[row])]));
      }
      logits = new Float32Array(rows.length * vocabSize);
      rows.forEach((row, r) => logits.set(next.get(row)!, r * vocabSize));
    }
  } finally {
    cache.dispose();
  }
  return sequences.map((s) => s.generated);

  function window(s: Sequence): number[] {
    return s.tokens.slice(-contextLength);
  }
}

/** One cached forward pass; its logits (rows, V) read back to the CPU. */
async function forward(
  model: GPT2,
  cache: KvCache,
  rows: readonly number[],
  tokens: readonly (readonly number[])[],
): Promise<Float32Array> {
  const logits = await model.forwardCached(cache, { rows, tokens });
  try {
    return await logits.read();
  } finally {
    logits.dispose();
  }
}

/**
 * {@linkcode generateTokens} without a cache: every step reads the whole context (its last
 * `contextLength` tokens) through the training forward. The reference the cached path is tested
 * against, and the baseline of the generation benchmark.
 */
export async function generateTokensUncached(
  model: GPT2,
  prompt: readonly number[],
  options: GenerateOptions = {},
): Promise<number[]> {
  if (prompt.length === 0) throw new Error("Generation needs a prompt of at least one token.");
  validateSampling(options);
  const { contextLength, vocabSize } = model.config;
  if (prompt.length > contextLength) {
    options.onPromptCut?.([{ index: 0, length: prompt.length }], contextLength);
  }
  const random = new Random(options.seed ?? 0);
  const stop = new Set(options.stopIds ?? []);
  const tokens = [...prompt];
  const generated: number[] = [];
  for (let i = 0; i < (options.maxNewTokens ?? 100); i++) {
    const window = Int32Array.from(tokens.slice(-contextLength));
    const T = window.length;
    const tape = new Tape(model.gpu);
    try {
      const logits = await model.forward(tape, uploadTokens(tape, window, 1, T)); // (1, T, V)
      const last = await model.gpu.readF32(logits.buffer, vocabSize, (T - 1) * vocabSize);
      const next = sampleToken(last, options, random);
      tokens.push(next);
      generated.push(next);
      options.onToken?.(next);
      if (stop.has(next)) break;
    } finally {
      tape.dispose();
    }
  }
  return generated;
}
