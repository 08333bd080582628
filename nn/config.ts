/**
 * The GPT-2 model configuration, its presets, and its exact parameter count.
 *
 * @module
 */

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

/**
 * Checks a configuration before anything is allocated.
 *
 * @throws with what to change when the shape is invalid, the context is longer than
 * {@linkcode MAX_CONTEXT_LENGTH}, or the model is over {@linkcode MAX_PARAMETERS}.
 */
export function validateConfig(config: GPT2Config): void {
  for (const key of ["vocabSize", "contextLength", "nLayer", "nHead", "nEmbd"] as const) {
    if (!Number.isInteger(config[key]) || config[key] <= 0) {
      throw new Error(`${key} must be a positive whole number, got ${config[key]}.`);
    }
  }
  if (config.nEmbd % config.nHead !== 0) {
    throw new Error(
      `nEmbd (${config.nEmbd}) must be divisible by nHead (${config.nHead}); ` +
        `try nHead = ${config.nEmbd / 64} (--heads) for heads of 64.`,
    );
  }
  if (config.nEmbd / config.nHead > 128) {
    throw new Error(`Head size ${config.nEmbd / config.nHead} is over 128; use more heads.`);
  }
  if (config.contextLength > MAX_CONTEXT_LENGTH) {
    throw new Error(
      `A context of ${config.contextLength} tokens is longer than the ${MAX_CONTEXT_LENGTH} ` +
        "this project supports; use --context 1024 or less.",
    );
  }
  const { total } = gpt2ParameterCount(config);
  if (total > MAX_PARAMETERS) {
    throw new Error(
      `This configuration has ${(total / 1e9).toFixed(2)}B parameters, over the 1B limit; ` +
        "reduce the depth or the width (nLayer or nEmbd; --layers or --embd on the command line).",
    );
  }
}
