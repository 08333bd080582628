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

/**
 * Checks sampling options before a model is loaded: a temperature of 0 or more, a whole top-k of
 * at least 1, a top-p above 0 and at most 1 (a share of the probability mass).
 *
 * @throws naming the command-line flag and the range, for a value outside it.
 */
export function validateSampling(options: SamplingOptions): void {
  const { temperature, topK, topP } = options;
  if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0)) {
    throw new Error(
      `--temperature must be a number of 0 (greedy) or more, got ${temperature}.`,
    );
  }
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 1)) {
    throw new Error(`--top-k must be a whole number of at least 1, got ${topK}.`);
  }
  if (topP !== undefined && !(topP > 0 && topP <= 1)) {
    throw new Error(
      `--top-p must be above 0 and at most 1 (the share of probability mass kept), got ${topP}.`,
    );
  }
}

/**
 * Picks a token id from `logits` (V) under `options`, drawing from `random`.
 *
 * @throws when a logit is NaN or infinite: no choice would mean anything (greedy would pick id
 * 0, sampling no id at all), and it means the model's weights are broken.
 */
export function sampleToken(
  logits: Float32Array,
  options: SamplingOptions,
  random: Random,
): number {
  assertFinite(logits);
  const temperature = options.temperature ?? 1;
  if (temperature <= 0) return argmax(logits);
  const topK = Math.min(options.topK ?? logits.length, logits.length);
  const topP = options.topP ?? 1;
  const order = topIndices(logits, topK);
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

/**
 * Classifier-free guidance's scores (Sanchez et al., 2023, "Stay on topic with classifier-free
 * guidance"): the log-probabilities given the prompt pushed away from those without it,
 * `log p(w) + scale * (log p(w | prompt) - log p(w))`. Scale 1 gives the conditioned
 * distribution back; above 1, a token gains by how much the prompt raised its probability, which
 * keeps a small model's answer on its question. The result is a vector of logits for
 * {@linkcode sampleToken}.
 */
export function guidedLogits(
  conditioned: Float32Array,
  unconditioned: Float32Array,
  scale: number,
): Float32Array {
  const logC = logSumExp(conditioned), logU = logSumExp(unconditioned);
  const guided = new Float32Array(conditioned.length);
  for (let id = 0; id < guided.length; id++) {
    const u = unconditioned[id] - logU;
    guided[id] = u + scale * (conditioned[id] - logC - u);
  }
  return guided;
}

/** log Σ exp(values), without overflow. */
function logSumExp(values: Float32Array): number {
  let max = -Infinity;
  for (const v of values) if (v > max) max = v;
  let sum = 0;
  for (const v of values) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/** Throws the error of a model whose outputs are not finite numbers. */
function assertFinite(logits: Float32Array): void {
  for (let id = 0; id < logits.length; id++) {
    if (!Number.isFinite(logits[id])) {
      throw new Error(
        `The model's outputs are not finite (logit of token ${id} is ${logits[id]}): its ` +
          "weights hold NaN or infinite values. Use an earlier checkpoint (one saved before " +
          "training diverged), or train again with a lower --lr.",
      );
    }
  }
}

/**
 * The indices of the `k` largest values, in decreasing order (ties: the lower index first, as a
 * stable sort gives). A full sort when k is most of the array; otherwise one pass that keeps the
 * best k in order, since a sort of V logits per token (2.7 ms at V = 8192) cost as much as a
 * cached forward pass of a small model in batched generation.
 */
export function topIndices(values: Float32Array, k: number): number[] {
  if (k >= values.length / 4) {
    return Array.from(values.keys()).sort((a, b) => values[b] - values[a]).slice(0, k);
  }
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (best.length === k) {
      // Only strictly larger than the k-th enters: a later index never passes an equal value.
      if (!(v > values[best[k - 1]])) continue;
      best.pop();
    }
    let at = best.length;
    while (at > 0 && v > values[best[at - 1]]) at--;
    best.splice(at, 0, i);
  }
  return best;
}

/** The index of the largest value. */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
