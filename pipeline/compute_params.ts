/**
 * Stage 4 of the pipeline: size a GPT-2 model to its data. Chinchilla (Hoffmann et al., 2022)
 * found compute-optimal training at about 20 tokens per parameter, so a dataset of D tokens
 * wants a model of about D / 20 parameters; training costs about 6·N·D floating-point
 * operations (forward 2ND, backward 4ND).
 *
 *     deno task params --tokens 20000000
 *     deno task params --tokens 20000000 --vocab-size 16384 --context 512
 *     deno task params --budget 30m --vocab-size 8192   # the main job's plan, measured here
 *
 * @module
 */

import { acquireGpu } from "../kernels/device.ts";
import {
  checkContextLength,
  type GPT2Config,
  gpt2ParameterCount,
  MAX_CONTEXT_LENGTH,
  MAX_PARAMETERS,
  validateConfig,
} from "../nn/config.ts";
import { planForBudget, STAGE_ESTIMATES } from "./budget.ts";
import { estimateSourceTokens, pretrainingSource } from "./pretraining_source.ts";
import { CHINCHILLA_TOKENS_PER_PARAMETER, formatPlan, parseDuration } from "./plan.ts";
import { DEFAULT_SPECIAL_TOKENS } from "../tokenizer/train_bpe.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";

/** Head size of every suggested model, as in GPT-2. */
const HEAD_SIZE = 64;

/** A model suggested for a dataset, with the numbers behind the choice. */
export interface ModelSizing {
  /** The suggested shape, with the vocabulary and context it was sized for. */
  config: GPT2Config;
  /** The suggested model's parameter count (the output head is tied to `wte`, counted once). */
  parameters: number;
  /** The parameter count Chinchilla's rule asks for. */
  targetParameters: number;
  /** Dataset tokens per model parameter (20 is compute-optimal). */
  tokensPerParameter: number;
  /** Training FLOPs for one pass over the data, 6·N·D. */
  trainingFlops: number;
}

/**
 * Suggests the GPT-2 shape whose parameter count is nearest (in ratio) to `tokens / 20`.
 * Candidates keep GPT-2's proportions: heads of 64, width between 32 and 128 times the depth
 * (GPT-2 small is 64x; deeper-and-narrower or wide-and-shallow models train worse), and at most
 * one billion parameters.
 */
export function suggestModel(
  tokens: number,
  { vocabSize = 50257, contextLength = MAX_CONTEXT_LENGTH } = {},
): ModelSizing {
  if (!(tokens > 0)) throw new Error(`The dataset must have tokens, got ${tokens}.`);
  const target = tokens / CHINCHILLA_TOKENS_PER_PARAMETER;
  let best: { config: GPT2Config; parameters: number; score: number } | null = null;
  for (let nLayer = 1; nLayer <= 48; nLayer++) {
    for (let nHead = 1; nHead <= 32; nHead++) {
      const nEmbd = nHead * HEAD_SIZE;
      if (nEmbd < 32 * nLayer || nEmbd > 128 * nLayer) continue;
      const config = { vocabSize, contextLength, nLayer, nHead, nEmbd };
      const parameters = gpt2ParameterCount(config).total;
      if (parameters > MAX_PARAMETERS) continue;
      // Distance in log-ratio, then prefer GPT-2's own aspect ratio (C = 64 L).
      const score = Math.abs(Math.log(parameters / target)) +
        0.01 * Math.abs(Math.log(nEmbd / (64 * nLayer)));
      if (!best || score < best.score) best = { config, parameters, score };
    }
  }
  const { config, parameters } = best!;
  validateConfig(config);
  return {
    config,
    parameters,
    targetParameters: Math.round(target),
    tokensPerParameter: tokens / parameters,
    trainingFlops: 6 * parameters * tokens,
  };
}

/** A human summary of a sizing, one fact per line. */
export function formatSizing(tokens: number, sizing: ModelSizing): string {
  const { config, parameters } = sizing;
  const breakdown = gpt2ParameterCount(config);
  return [
    `dataset tokens:        ${tokens.toLocaleString("en-US")}`,
    `Chinchilla target:     ${sizing.targetParameters.toLocaleString("en-US")} parameters ` +
    `(${CHINCHILLA_TOKENS_PER_PARAMETER} tokens each)`,
    `suggested model:       n_layer=${config.nLayer} n_head=${config.nHead} ` +
    `n_embd=${config.nEmbd} vocab=${config.vocabSize} context=${config.contextLength}`,
    `parameters:            ${parameters.toLocaleString("en-US")} ` +
    `(embeddings ${(breakdown.wte + breakdown.wpe).toLocaleString("en-US")}, ` +
    `blocks ${(config.nLayer * breakdown.perBlock).toLocaleString("en-US")})`,
    `tokens per parameter:  ${sizing.tokensPerParameter.toFixed(1)}`,
    `training compute:      ${sizing.trainingFlops.toExponential(2)} FLOPs per epoch (6·N·D)`,
    ...(sizing.tokensPerParameter < CHINCHILLA_TOKENS_PER_PARAMETER / 2
      ? [
        "warning: the dataset has fewer tokens than even the smallest model wants; expect " +
        "overfitting: gather more text, or use a smaller vocabulary or context.",
      ]
      : []),
  ].join("\n");
}

if (import.meta.main) {
  await runCli(async () => {
    const flags = {
      tokens: {
        type: "string",
        help: "dataset tokens (with --budget, the bundled corpus's estimate when absent)",
      },
      "vocab-size": { type: "string", default: "50257", help: "tokenizer vocabulary" },
      context: { type: "string", default: String(MAX_CONTEXT_LENGTH), help: "context length" },
      budget: {
        type: "string",
        help: "also the main job's plan for this much time, measured on this adapter: 30m, 2h",
      },
      ...HELP_FLAG,
    } as const;
    const values = parseFlags("deno task params [options]", flags);
    if (!values) return;
    if (!values.tokens && !values.budget) throw new Error("Pass the dataset size with --tokens N.");
    // The byte alphabet and the special tokens come before any merge.
    const vocabSize = intFlag(
      "vocab-size",
      values["vocab-size"],
      256 + DEFAULT_SPECIAL_TOKENS.length,
    );
    const contextLength = intFlag("context", values.context);
    checkContextLength(contextLength, "--context");
    const tokens = values.tokens
      ? intFlag("tokens", values.tokens)
      : await estimateSourceTokens(pretrainingSource({}));
    console.log(formatSizing(tokens, suggestModel(tokens, { vocabSize, contextLength })));
    if (values.budget) {
      const budgetSeconds = parseDuration(values.budget);
      const { plan } = await planForBudget(await acquireGpu(), {
        budgetSeconds,
        vocabSize,
        contextLength,
        dataTokens: tokens,
        estimates: STAGE_ESTIMATES,
      }, (line) => console.error(line));
      console.log(`\nthe main job's plan for ${values.budget} on this adapter:`);
      console.log(formatPlan(plan, budgetSeconds));
    }
  });
}
