/**
 * Autoregressive generation: the model reads the context, the next token is chosen from the
 * last position's logits, appended, and the model reads again (no key-value cache: simple, and
 * the context is at most 1024 tokens).
 *
 * @module
 */

import type { GPT2 } from "./gpt2.ts";
import { Random } from "./random.ts";
import { sampleToken, type SamplingOptions } from "./sampling.ts";
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
}

/**
 * Continues `prompt` (token ids) with up to `maxNewTokens` tokens; returns only the new ones.
 * When the sequence outgrows the model's context, the model sees its last `contextLength`
 * tokens.
 */
export async function generateTokens(
  model: GPT2,
  prompt: readonly number[],
  options: GenerateOptions = {},
): Promise<number[]> {
  if (prompt.length === 0) throw new Error("Generation needs a prompt of at least one token.");
  const { contextLength, vocabSize } = model.config;
  const random = new Random(options.seed ?? 0);
  const stop = new Set(options.stopIds ?? []);
  const tokens = [...prompt];
  const generated: number[] = [];
  for (let i = 0; i < (options.maxNewTokens ?? 100); i++) {
    const window = Int32Array.from(tokens.slice(-contextLength));
    const T = window.length;
    const tape = new Tape(model.gpu);
    const buffer = model.gpu.upload(window);
    try {
      const logits = await model.forward(tape, { ids: window, buffer, batch: 1, time: T });
      const last = await model.gpu.readF32(logits.buffer, vocabSize, (T - 1) * vocabSize);
      const next = sampleToken(last, options, random);
      tokens.push(next);
      generated.push(next);
      options.onToken?.(next);
      if (stop.has(next)) break;
    } finally {
      tape.dispose();
      model.gpu.release(buffer);
    }
  }
  return generated;
}
