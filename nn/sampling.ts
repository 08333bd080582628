/**
 * Choosing the next token from the model's logits: greedy, or sampled with a temperature and
 * top-k / nucleus (top-p, Holtzman et al., 2019) truncation.
 *
 * @module
 */

import type { Random } from "./random.ts";

/** How to pick the next token. */
export interface SamplingOptions {
  /** 0 picks the most likely token; higher flattens the distribution. Default 1. */
  temperature?: number;
  /** Sample only among the k most likely tokens. Default: all. */
  topK?: number;
  /** Sample only among the most likely tokens whose probabilities sum to p. Default 1. */
  topP?: number;
}

/** Picks a token id from `logits` (V) under `options`, drawing from `random`. */
export function sampleToken(
  logits: Float32Array,
  options: SamplingOptions,
  random: Random,
): number {
  const temperature = options.temperature ?? 1;
  if (temperature <= 0) return argmax(logits);
  const topK = Math.min(options.topK ?? logits.length, logits.length);
  const topP = options.topP ?? 1;
  // Candidates in decreasing logit order (a full sort: V log V per token, small next to the
  // model's forward pass).
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, topK);
  const max = logits[order[0]];
  const weights = order.map((id) => Math.exp((logits[id] - max) / temperature));
  const total = weights.reduce((s, w) => s + w, 0);
  let kept = 0, mass = 0;
  while (kept < order.length && mass < topP * total) mass += weights[kept++];
  let draw = random.next() * mass;
  for (let i = 0; i < kept; i++) {
    draw -= weights[i];
    if (draw < 0) return order[i];
  }
  return order[kept - 1];
}

/** The index of the largest value. */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
