/**
 * The GPT-2 model configuration, its presets, and its exact parameter count.
 *
 * @module
 */

import { MAX_HEAD_SIZE } from "../kernels/attention.ts";

/** The shape of a GPT-2 model (names follow nanoGPT's `GPTConfig`). */
export interface GPT2Config {
  /** Token vocabulary size (GPT-2: 50257). */
  vocabSize: number;
  /** Maximum context length in tokens, the size of the position table (GPT-2: 1024). */
  contextLength: number;
  /** Transformer blocks. */
  nLayer: number;
  /** Attention heads per block; `nEmbd` must divide evenly among them. */
  nHead: number;
  /** Width of the residual stream, C. */
  nEmbd: number;
}

/** The OpenAI GPT-2 sizes under one billion parameters (GPT-2 XL, 1.5B, is over the limit). */
export const GPT2_PRESETS: Record<string, GPT2Config> = {
  "gpt2": { vocabSize: 50257, contextLength: 1024, nLayer: 12, nHead: 12, nEmbd: 768 },
  "gpt2-medium": { vocabSize: 50257, contextLength: 1024, nLayer: 24, nHead: 16, nEmbd: 1024 },
  "gpt2-large": { vocabSize: 50257, contextLength: 1024, nLayer: 36, nHead: 20, nEmbd: 1280 },
};

/** The project's ceiling on model size. */
export const MAX_PARAMETERS = 1_000_000_000;

/** The longest context the project's kernels and models support. */
export const MAX_CONTEXT_LENGTH = 1024;

/**
 * Refuses a context length that is not a whole number from 2 to {@linkcode MAX_CONTEXT_LENGTH};
 * the error names `what` was given (a flag, such as `--context`).
 */
export function checkContextLength(context: number, what = "The context length"): void {
  if (!Number.isInteger(context) || context < 2 || context > MAX_CONTEXT_LENGTH) {
    throw new RangeError(
      `${what} must be a whole number from 2 to ${MAX_CONTEXT_LENGTH} (GPT-2's position ` +
        `table), got ${context}.`,
    );
  }
}

/** Parameters of a GPT-2 model by tensor group (the output head is tied to `wte`). */
export interface GPT2ParameterCount {
  /** Token embedding `wte` (V, C), shared with the output head. */
  wte: number;
  /** Position embedding `wpe` (T, C). */
  wpe: number;
  /** One block: ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj = 12C² + 13C. */
  perBlock: number;
  /** Final layer norm `ln_f`. */
  lnF: number;
  /** Everything. */
  total: number;
}

/**
 * The exact parameter count of a GPT-2 model with a tied output head:
 * `V·C + T·C + L·(12C² + 13C) + 2C` (124,439,808 for GPT-2 small).
 */
export function gpt2ParameterCount(config: GPT2Config): GPT2ParameterCount {
  const { vocabSize: V, contextLength: T, nLayer: L, nEmbd: C } = config;
  const wte = V * C;
  const wpe = T * C;
  const perBlock = 2 * C + // ln_1 weight and bias
    C * 3 * C + 3 * C + // attn.c_attn: (3C, C) and bias
    C * C + C + // attn.c_proj
    2 * C + // ln_2
    C * 4 * C + 4 * C + // mlp.c_fc
    4 * C * C + C; // mlp.c_proj
  const lnF = 2 * C;
  return { wte, wpe, perBlock, lnF, total: wte + wpe + L * perBlock + lnF };
}

/** The command-line flag of each configuration field, so an error says what to pass. */
const FLAG_OF: Record<keyof GPT2Config, string> = {
  vocabSize: "--vocab-size",
  contextLength: "--context",
  nLayer: "--layers",
  nHead: "--heads",
  nEmbd: "--embd",
};

/**
 * The head counts a width of `nEmbd` can take: the divisors of `nEmbd` whose heads are at most
 * {@linkcode MAX_HEAD_SIZE} wide, in increasing order (32 → 1, 2, 4, 8, 16, 32).
 */
export function validHeadCounts(nEmbd: number): number[] {
  const counts: number[] = [];
  for (let heads = 1; heads <= nEmbd; heads++) {
    if (nEmbd % heads === 0 && nEmbd / heads <= MAX_HEAD_SIZE) counts.push(heads);
  }
  return counts;
}

/**
 * Checks a configuration before anything is allocated.
 *
 * @throws with what to change, valid values included, when the shape is invalid (a field that
 * is not a positive whole number, a width the heads cannot share, heads over
 * {@linkcode MAX_HEAD_SIZE} wide), the context is longer than {@linkcode MAX_CONTEXT_LENGTH},
 * or the model is over {@linkcode MAX_PARAMETERS}.
 */
export function validateConfig(config: GPT2Config): void {
  for (const key of ["vocabSize", "contextLength", "nLayer", "nHead", "nEmbd"] as const) {
    if (!Number.isInteger(config[key]) || config[key] <= 0) {
      throw new Error(
        `${key} (${FLAG_OF[key]}) must be a positive whole number, got ${config[key]}.`,
      );
    }
  }
  const { nEmbd, nHead } = config;
  if (nEmbd % nHead !== 0 || nEmbd / nHead > MAX_HEAD_SIZE) {
    // Suggest both ways out: a head count for this width, or a width for this head count.
    const below = Math.floor(nEmbd / nHead) * nHead, above = below + nHead;
    const widths = [below, above].filter((width) => width > 0 && width / nHead <= MAX_HEAD_SIZE);
    const problem = nEmbd % nHead !== 0
      ? `nEmbd (${nEmbd}) must be divisible by nHead (${nHead}), so that every head gets an ` +
        "equal share of the width"
      : `Head size ${nEmbd / nHead} (nEmbd ${nEmbd} / nHead ${nHead}) is over ` +
        `${MAX_HEAD_SIZE}, the most the attention kernels take`;
    throw new Error(
      `${problem}. Head counts that fit a width of ${nEmbd}: ` +
        `${validHeadCounts(nEmbd).join(", ")} (--heads)` +
        (widths.length > 0 && nEmbd % nHead !== 0
          ? `; or a width that ${nHead} heads share: ${widths.join(" or ")} (--embd).`
          : "."),
    );
  }
  if (config.contextLength > MAX_CONTEXT_LENGTH) {
    throw new Error(
      `A context of ${config.contextLength} tokens is longer than the ${MAX_CONTEXT_LENGTH} ` +
        "this project supports; use --context 1024 or less.",
    );
  }
  const count = gpt2ParameterCount(config);
  if (count.total > MAX_PARAMETERS) {
    const maxLayers = Math.floor(
      (MAX_PARAMETERS - count.wte - count.wpe - count.lnF) / count.perBlock,
    );
    const depth = maxLayers >= 1
      ? `at most ${maxLayers} layers at this width (--layers ${maxLayers})`
      : "fewer layers (--layers)";
    throw new Error(
      `This configuration has ${(count.total / 1e9).toFixed(2)}B parameters, over the 1B ` +
        `limit; reduce the depth to ${depth}, or the width (--embd).`,
    );
  }
}
