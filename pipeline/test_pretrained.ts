/**
 * Stage 5b of the pipeline: complete a prompt with a pretrained model, to see what it learned.
 *
 *     deno task test-pretrained --checkpoint runs/gpt2/checkpoint.safetensors \
 *       --tokenizer out/tokenizer --prompt "Once upon a time"
 *
 * @module
 */

import { parseArgs } from "node:util";
import { acquireGpu, type Gpu } from "../kernels/device.ts";
import { loadCheckpoint } from "../nn/checkpoint.ts";
import type { GPT2 } from "../nn/gpt2.ts";
import { generateTokens } from "../nn/generate.ts";
import type { SamplingOptions } from "../nn/sampling.ts";
import type { BpeTokenizer } from "../tokenizer/bpe.ts";
import { resolveTokenizer } from "./tokenize_dataset.ts";
import { intFlag, numberFlag, runCli } from "./_cli.ts";

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
}

/** Continues `prompt` with `model`; returns the new text (special tokens left out). */
export async function completePrompt(
  model: GPT2,
  tokenizer: BpeTokenizer,
  prompt: string,
  options: CompleteOptions = {},
): Promise<string> {
  if (model.config.vocabSize < tokenizer.vocabSize) {
    throw new Error(
      `The tokenizer has ${tokenizer.vocabSize} tokens but the model only ` +
        `${model.config.vocabSize}; pass the tokenizer the model was trained with.`,
    );
  }
  const stopIds = (options.stopTokens ?? ["</s>"])
    .map((token) => tokenizer.tokenToId(token))
    .filter((id): id is number => id !== undefined);
  const ids: number[] = [];
  // An end of document the model writes but was not told to stop at shows as a line break.
  const eos = tokenizer.tokenToId("</s>");
  const render = () =>
    splitAt(ids, eos).map((part) => tokenizer.decode(part, { skipSpecialTokens: true }))
      .join("\n");
  let shown = "";
  await generateTokens(model, tokenizer.encode(prompt), {
    ...options,
    stopIds,
    onToken: (id) => {
      options.onToken?.(id);
      ids.push(id);
      // Decode the whole completion each time: a character may span several byte tokens.
      const text = render();
      if (text.length > shown.length && !text.endsWith("\uFFFD")) {
        options.onText?.(text.slice(shown.length));
        shown = text;
      }
    },
  });
  return render();
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

/** Completes `prompt` with the checkpoint's model; returns the completion (without the prompt). */
export async function testPretrained(options: TestPretrainedOptions): Promise<string> {
  const gpu = options.gpu ?? await acquireGpu();
  const tokenizer = await resolveTokenizer(options.tokenizer);
  const { model } = await loadCheckpoint(gpu, options.checkpoint);
  try {
    return await completePrompt(model, tokenizer, options.prompt, options);
  } finally {
    model.dispose();
  }
}

if (import.meta.main) {
  await runCli(async () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        checkpoint: { type: "string", default: "runs/gpt2/checkpoint.safetensors" },
        tokenizer: { type: "string", default: "out/tokenizer" },
        prompt: { type: "string", default: "Once upon a time" },
        "max-new-tokens": { type: "string", default: "100" },
        temperature: { type: "string", default: "0.8" },
        "top-k": { type: "string", default: "50" },
        "top-p": { type: "string", default: "0.95" },
        seed: { type: "string", default: "0" },
      },
    });
    const sampling = {
      maxNewTokens: intFlag("max-new-tokens", values["max-new-tokens"]),
      temperature: numberFlag("temperature", values.temperature, -1e-9),
      topK: intFlag("top-k", values["top-k"]),
      topP: numberFlag("top-p", values["top-p"]),
      seed: intFlag("seed", values.seed, 0),
    };
    const tokenizer = await resolveTokenizer(values.tokenizer);
    const { model } = await loadCheckpoint(await acquireGpu(), values.checkpoint);
    // The prompt is printed once everything loaded, then the completion as it is generated.
    const encoder = new TextEncoder();
    await Deno.stdout.write(encoder.encode(values.prompt));
    await completePrompt(model, tokenizer, values.prompt, {
      ...sampling,
      onText: (text) => Deno.stdout.writeSync(encoder.encode(text)),
    });
    await Deno.stdout.write(encoder.encode("\n"));
    model.dispose();
  });
}
