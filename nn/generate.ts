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
import { guidedLogits, sampleToken, type SamplingOptions, validateSampling } from "./sampling.ts";
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
   * The sampling seed of each prompt; default `seed` for every one. Without guidance, a row
   * with seed s draws exactly what {@linkcode generateTokens} draws with seed s.
   */
  seeds?: readonly number[];
  /** Called with each new token id of prompt `row` as it is chosen. */
  onToken?: (row: number, id: number) => void;
  /**
   * Classifier-free guidance ({@linkcode guidedLogits}): each prompt also advances without its
   * condition, as `unconditioned[i]` (a chat prompt with an empty question, say), in the same
   * forward passes, and each token is sampled from the two distributions combined at `scale`.
   * Scale 1 is plain sampling (no second row is run).
   */
  guidance?: Guidance;
}

/** Classifier-free guidance's settings (see {@linkcode GenerateBatchOptions.guidance}). */
export interface Guidance {
  /** How far the tokens are pushed towards what the condition made likelier; 1 is none. */
  scale: number;
  /**
   * Each prompt's unconditioned twin (token ids): the same prompt without what it is conditioned
   * on. A twin longer than the context is cut to its last tokens like a prompt, but
   * `onPromptCut` hears only of the prompts.
   */
  unconditioned: readonly (readonly number[])[];
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
 * with its own seeded generator and stops at its own stop token or length, and (without
 * guidance, which generateTokens lacks) gets the tokens {@linkcode generateTokens} would give it
 * alone with its seed.
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
  const guidance = activeGuidance(options.guidance, prompts.length);
  const { contextLength } = model.config;
  const cuts = prompts.flatMap((prompt, index) =>
    prompt.length > contextLength ? [{ index, length: prompt.length }] : []
  );
  if (cuts.length > 0) options.onPromptCut?.(cuts, contextLength);
  // Cache rows as long as the longest sequence can grow (the whole context when one reaches it).
  const everyPrompt = [...prompts, ...guidance?.unconditioned ?? []];
  const longest = Math.max(...everyPrompt.map((prompt) => Math.min(prompt.length, contextLength)));
  const maxTime = Math.min(contextLength, longest + Math.max(0, options.maxNewTokens ?? 100));
  // A guided prompt takes two cache rows: itself and its unconditioned twin.
  const rowsPerPrompt = guidance ? 2 : 1;
  const groupSize = Math.floor(KvCache.maxRows(model.gpu, model.config, maxTime) / rowsPerPrompt);
  if (groupSize < 1) {
    throw new Error(
      `${rowsPerPrompt} key-value cache rows of ${maxTime} positions do not fit this adapter's ` +
        "binding limit; ask for fewer new tokens, give a shorter prompt" +
        (guidance ? ", or turn guidance off (it takes a second row)." : "."),
    );
  }
  const results: number[][] = [];
  for (let first = 0; first < prompts.length; first += groupSize) {
    const count = Math.min(groupSize, prompts.length - first);
    const indices = Array.from({ length: count }, (_, i) => first + i);
    results.push(...await generateGroup(model, prompts, indices, maxTime, options, guidance));
  }
  return results;
}

/** The guidance to apply: none at scale 1; checked against the prompts. */
function activeGuidance(guidance: Guidance | undefined, prompts: number): Guidance | undefined {
  if (!guidance) return undefined;
  const { scale, unconditioned } = guidance;
  if (!(Number.isFinite(scale) && scale >= 0)) {
    throw new Error(`--guidance must be a number of 0 or more (1: none), got ${scale}.`);
  }
  if (unconditioned.length !== prompts) {
    throw new Error(
      `Give one unconditioned prompt per prompt: ${unconditioned.length} for ${prompts}.`,
    );
  }
  if (unconditioned.some((prompt) => prompt.length === 0)) {
    throw new Error("An unconditioned prompt needs at least one token.");
  }
  return scale === 1 ? undefined : guidance;
}

/** One state of {@linkcode generateGroup}: a prompt's tokens so far and how it samples. */
interface Sequence {
  /** Index of the prompt in the caller's list (for seeds and onToken). */
  index: number;
  tokens: number[];
  generated: number[];
  random: Random;
  done: boolean;
  /** The cache row of this prompt's unconditioned twin, when guided. */
  twin?: number;
  /** Whether this row is an unconditioned twin, which takes its prompt's tokens. */
  isTwin: boolean;
}

/**
 * {@linkcode generateBatch} for the prompts `indices`, which share one cache of rows of
 * `maxTime` positions (row i: prompt `indices[i]`; with guidance, row `indices.length + i` its
 * unconditioned twin).
 */
async function generateGroup(
  model: GPT2,
  prompts: readonly (readonly number[])[],
  indices: readonly number[],
  maxTime: number,
  options: GenerateBatchOptions,
  guidance: Guidance | undefined,
): Promise<number[][]> {
  const { contextLength, vocabSize } = model.config;
  const maxNewTokens = options.maxNewTokens ?? 100;
  const stop = new Set(options.stopIds ?? []);
  const sequence = (index: number, prompt: readonly number[], isTwin: boolean): Sequence => ({
    index,
    tokens: [...prompt],
    generated: [],
    random: new Random(options.seeds?.[index] ?? options.seed ?? 0),
    done: maxNewTokens <= 0,
    isTwin,
  });
  const sequences = indices.map((index) => sequence(index, prompts[index], false));
  if (guidance) {
    indices.forEach((index, i) => {
      sequences[i].twin = sequences.length;
      sequences.push(sequence(index, guidance.unconditioned[index], true));
    });
  }
  const results = () => sequences.filter((s) => !s.isTwin).map((s) => s.generated);
  const scale = guidance?.scale ?? 1;
  if (sequences.every((s) => s.done)) return results();
  const cache = new KvCache(model.gpu, model.config, sequences.length, maxTime);
  try {
    // The prefill: every prompt (its last contextLength tokens) read in one forward pass.
    let rows = sequences.map((_, row) => row);
    let logits = await forward(model, cache, rows, rows.map((row) => window(sequences[row])));
    while (true) {
      const position = new Map(rows.map((row, r) => [row, r]));
      const logitsOf = (row: number) => {
        const r = position.get(row)!;
        return logits.subarray(r * vocabSize, (r + 1) * vocabSize);
      };
      for (const row of rows) {
        const s = sequences[row];
        if (s.isTwin) continue;
        const scores = s.twin === undefined
          ? logitsOf(row)
          : guidedLogits(logitsOf(row), logitsOf(s.twin), scale);
        const next = sampleToken(scores, options, s.random);
        s.tokens.push(next);
        s.generated.push(next);
        options.onToken?.(s.index, next);
        s.done = stop.has(next) || s.generated.length >= maxNewTokens;
        if (s.twin !== undefined) {
          const twin = sequences[s.twin];
          twin.tokens.push(next);
          twin.done = s.done;
        }
      }
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
  return results();

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
