/**
 * Stage 5b of the pipeline: complete a prompt with a pretrained model, to see what it learned.
 *
 *     deno task test-pretrained --checkpoint runs/gpt2/checkpoint.safetensors \
 *       --tokenizer out/tokenizer --prompt "Once upon a time"
 *
 * The prompt is plain text: `</s>` in it is those four characters, not the end of a document
 * (`--allow-special-tokens` makes such text control tokens). A prompt longer than the model's
 * context is cut to its last tokens, with a warning that gives both lengths. On a terminal,
 * control characters the model writes are shown escaped (`\x1b`).
 *
 * @module
 */

import { acquireGpu, type Gpu } from "../kernels/device.ts";
import { loadCheckpoint } from "../nn/checkpoint.ts";
import type { GPT2 } from "../nn/gpt2.ts";
import { generateBatch, type Guidance, type PromptCut, promptCutWarning } from "../nn/generate.ts";
import { type SamplingOptions, validateSampling } from "../nn/sampling.ts";
import type { BpeTokenizer } from "../tokenizer/bpe.ts";
import { resolveTokenizer } from "./tokenize_dataset.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, nonNegativeFlag, numberFlag, parseFlags } from "../util/flags.ts";
import { stdoutWriter, warn } from "./_terminal.ts";

/** Options of {@linkcode testPretrained}. */
export interface TestPretrainedOptions extends CompleteOptions {
  /** A checkpoint written by train_model. */
  checkpoint: string;
  /** The tokenizer the model was trained with (folder or `tokenizer.json`). */
  tokenizer: BpeTokenizer | string;
  /** The text to continue; the returned completion leaves it out. */
  prompt: string;
  /** The GPU to use; acquired when absent. */
  gpu?: Gpu;
}

/** Options of {@linkcode completePrompt}. */
export interface CompleteOptions extends SamplingOptions {
  /** Most tokens to add. Default 100. */
  maxNewTokens?: number;
  /** Seed of the sampling. Default 0. */
  seed?: number;
  /** Stop at any of these tokens (default `</s>`); they are left out of the text. */
  stopTokens?: readonly string[];
  /** Called with each new piece of text as it is generated. */
  onText?: (text: string) => void;
  /** Called with each new token id, a stop token included (to tell how generation ended). */
  onToken?: (id: number) => void;
  /**
   * Let the text of added tokens in a prompt given as text (`</s>`, `<|im_start|>`) become
   * control tokens. Default false: a prompt is plain text.
   */
  allowSpecialTokens?: boolean;
  /**
   * Called once when a prompt is longer than the model's context and is cut to its last
   * tokens. Default: a warning on standard error, with both lengths.
   */
  onPromptCut?: (cuts: readonly PromptCut[], contextLength: number) => void;
  /**
   * Classifier-free guidance: the scale, and each prompt's unconditioned twin as token ids (also
   * for prompts given as text). None by default.
   */
  guidance?: Guidance;
}

/** A prompt: text, or token ids built by the caller (a ChatML conversation). */
export type Prompt = string | readonly number[];

/** Continues `prompt` with `model`; returns the new text (special tokens left out). */
export async function completePrompt(
  model: GPT2,
  tokenizer: BpeTokenizer,
  prompt: Prompt,
  options: CompleteOptions = {},
): Promise<string> {
  const { onText, onToken, seed, ...rest } = options;
  const [text] = await completePrompts(model, tokenizer, [prompt], {
    ...rest,
    seeds: [seed ?? 0],
    onText: onText && ((_, piece) => onText(piece)),
    onToken: onToken && ((_, id) => onToken(id)),
  });
  return text;
}

/** Options of {@linkcode completePrompts}: those of {@linkcode completePrompt}, per prompt. */
export interface CompleteManyOptions extends Omit<CompleteOptions, "seed" | "onText" | "onToken"> {
  /** The sampling seed of each prompt. Default 0 for every one. */
  seeds?: readonly number[];
  /** Called with each new piece of prompt `index`'s text as it is generated. */
  onText?: (index: number, text: string) => void;
  /** Called with each new token id of prompt `index`, a stop token included. */
  onToken?: (index: number, id: number) => void;
}

/**
 * Continues every one of `prompts` with `model`, all advancing in the same forward passes
 * (`generateBatch`); returns each new text. Prompt i gets what {@linkcode completePrompt} gives
 * it with seed `seeds[i]`.
 */
export async function completePrompts(
  model: GPT2,
  tokenizer: BpeTokenizer,
  prompts: readonly Prompt[],
  options: CompleteManyOptions = {},
): Promise<string[]> {
  validateSampling(options);
  if (model.config.vocabSize < tokenizer.vocabSize) {
    throw new Error(
      `The tokenizer has ${tokenizer.vocabSize} tokens but the model only ` +
        `${model.config.vocabSize}; pass the tokenizer the model was trained with.`,
    );
  }
  const stopIds = (options.stopTokens ?? ["</s>"])
    .map((token) => tokenizer.tokenToId(token))
    .filter((id): id is number => id !== undefined);
  // An end of document the model writes but was not told to stop at shows as a line break.
  const eos = tokenizer.tokenToId("</s>");
  const ids: number[][] = prompts.map(() => []);
  const shown: string[] = prompts.map(() => "");
  const render = (index: number) =>
    splitAt(ids[index], eos).map((part) => tokenizer.decode(part, { skipSpecialTokens: true }))
      .join("\n");
  const specialTokens = options.allowSpecialTokens ? "control" : "plain";
  const promptIds = prompts.map((prompt) =>
    typeof prompt === "string" ? tokenizer.encode(prompt, { specialTokens }) : prompt
  );
  await generateBatch(model, promptIds, {
    ...options,
    onPromptCut: options.onPromptCut ??
      ((cuts, contextLength) =>
        warn(promptCutWarning(
          cuts,
          contextLength,
          prompts.length === 1 ? "the prompt" : `prompt ${cuts[0].index}`,
        ))),
    seeds: options.seeds ?? prompts.map(() => 0),
    stopIds,
    onToken: (index, id) => {
      options.onToken?.(index, id);
      ids[index].push(id);
      if (!options.onText) return;
      // Decode the whole completion each time: a character may span several byte tokens.
      const text = render(index);
      if (text.length > shown[index].length && !text.endsWith("\uFFFD")) {
        options.onText(index, text.slice(shown[index].length));
        shown[index] = text;
      }
    },
  });
  return prompts.map((_, index) => render(index));
}

/** `ids` cut at every `separator` (which is dropped). */
function splitAt(ids: readonly number[], separator: number | undefined): number[][] {
  const parts: number[][] = [[]];
  for (const id of ids) {
    if (id === separator) parts.push([]);
    else parts.at(-1)!.push(id);
  }
  return parts;
}

/**
 * Checks that `tokenizer` has exactly the model's vocabulary. One of another size is not the
 * tokenizer the model was trained with: a smaller one fails on the first id it lacks, in the
 * middle of the printed text, and one of a different size gives text that means nothing.
 *
 * @throws an error naming the checkpoint and both sizes.
 */
export function checkTokenizerMatches(
  model: GPT2,
  tokenizer: BpeTokenizer,
  checkpoint: string,
): void {
  if (model.config.vocabSize === tokenizer.vocabSize) return;
  throw new Error(
    `${checkpoint} has a vocabulary of ${model.config.vocabSize} tokens but the tokenizer has ` +
      `${tokenizer.vocabSize}; pass the tokenizer the model was trained with (--tokenizer).`,
  );
}

/** Completes `prompt` with the checkpoint's model; returns the completion (without the prompt). */
export async function testPretrained(options: TestPretrainedOptions): Promise<string> {
  const gpu = options.gpu ?? await acquireGpu();
  const tokenizer = await resolveTokenizer(options.tokenizer);
  const { model } = await loadCheckpoint(gpu, options.checkpoint);
  try {
    checkTokenizerMatches(model, tokenizer, options.checkpoint);
    return await completePrompt(model, tokenizer, options.prompt, options);
  } finally {
    model.dispose();
  }
}

/** The flags of `deno task test-pretrained`, with their defaults and help. */
const FLAGS = {
  checkpoint: {
    type: "string",
    default: "runs/gpt2/checkpoint.safetensors",
    help: "a checkpoint written by train-model",
  },
  tokenizer: {
    type: "string",
    default: "out/tokenizer",
    help: "the tokenizer the model was trained with (folder or tokenizer.json)",
  },
  prompt: { type: "string", default: "Once upon a time", help: "the text to continue" },
  "max-new-tokens": { type: "string", default: "100", help: "most tokens to add" },
  temperature: { type: "string", default: "0.8", help: "sampling temperature; 0 is greedy" },
  "top-k": { type: "string", default: "50", help: "sample among the k likeliest tokens" },
  "top-p": {
    type: "string",
    default: "0.95",
    help: "sample within this share of the probability mass (above 0, at most 1)",
  },
  seed: { type: "string", default: "0", help: "seed of the sampling" },
  "allow-special-tokens": {
    type: "boolean",
    default: false,
    help: "text such as </s> in the prompt becomes a control token, not text",
  },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task test-pretrained [options]", FLAGS);
    if (!values) return;
    const sampling = {
      maxNewTokens: intFlag("max-new-tokens", values["max-new-tokens"]),
      temperature: nonNegativeFlag("temperature", values.temperature),
      topK: intFlag("top-k", values["top-k"]),
      topP: numberFlag("top-p", values["top-p"]),
      seed: intFlag("seed", values.seed, 0),
      allowSpecialTokens: values["allow-special-tokens"],
    };
    validateSampling(sampling);
    const tokenizer = await resolveTokenizer(values.tokenizer);
    const { model } = await loadCheckpoint(await acquireGpu(), values.checkpoint);
    checkTokenizerMatches(model, tokenizer, values.checkpoint);
    // A warning that the prompt is cut comes first, not in the middle of the text; then the
    // prompt, then the completion as it is generated.
    const { contextLength } = model.config;
    const length = tokenizer.encode(values.prompt, {
      specialTokens: sampling.allowSpecialTokens ? "control" : "plain",
    }).length;
    if (length > contextLength) warn(promptCutWarning([{ index: 0, length }], contextLength));
    const write = stdoutWriter();
    write(values.prompt);
    await completePrompt(model, tokenizer, values.prompt, {
      ...sampling,
      onPromptCut: () => {},
      onText: write,
    });
    write("\n");
    model.dispose();
  });
}
