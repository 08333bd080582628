/**
 * The chat page's model, in code that runs in a browser and in Deno alike: a checkpoint and a
 * tokenizer from their bytes (a page fetches files, it has no paths), the last position's logits
 * of a prompt, and a streamed ChatML reply. Everything underneath is the project's own
 * `kernels/`, `nn/` and `tokenizer/` code; nothing here touches `Deno`, so the page bundles it.
 * The browser test compares this module's logits in the page with the same call in Deno.
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import { uploadTokens } from "../nn/batch.ts";
import { parseCheckpoint } from "../nn/checkpoint.ts";
import { generateTokens } from "../nn/generate.ts";
import { GPT2 } from "../nn/gpt2.ts";
import type { SamplingOptions } from "../nn/sampling.ts";
import { Tape } from "../nn/tape.ts";
import { chatMarkerIds, chatPromptIds, type ChatTurn } from "../pipeline/chatml.ts";
import type { BpeTokenizer } from "../tokenizer/bpe.ts";
import { fromHfTokenizerJson, type HfTokenizerJson } from "../tokenizer/hf_json.ts";

/** A tuned model and its tokenizer, ready to chat. */
export interface ChatModel {
  /** The model, its weights on the GPU; the caller disposes it. */
  model: GPT2;
  /** Its tokenizer, with the ChatML tokens. */
  tokenizer: BpeTokenizer;
  /** The ids that end the assistant's turn: `<|im_end|>`, and `</s>` where the tokenizer has it. */
  stopIds: number[];
}

/**
 * A chat model from the bytes of a checkpoint (as `saveCheckpoint` writes it) and the parsed
 * `tokenizer.json`; `names` name the two files in the errors.
 *
 * @throws naming the file, when the checkpoint is damaged or not a model, the tokenizer is not a
 *   byte-level BPE or lacks the ChatML tokens, or it has more tokens than the model.
 */
export function chatModelFromFiles(
  gpu: Gpu,
  checkpoint: Uint8Array,
  tokenizerJson: HfTokenizerJson,
  names = { checkpoint: "checkpoint.safetensors", tokenizer: "tokenizer.json" },
): ChatModel {
  const { config, tensors } = parseCheckpoint(checkpoint, names.checkpoint);
  let tokenizer: BpeTokenizer;
  try {
    tokenizer = fromHfTokenizerJson(tokenizerJson);
  } catch (error) {
    throw new Error(`${names.tokenizer}: ${(error as Error).message}`);
  }
  const { imEnd } = chatMarkerIds(tokenizer);
  if (config.vocabSize < tokenizer.vocabSize) {
    throw new Error(
      `${names.tokenizer} has ${tokenizer.vocabSize} tokens but the model of ` +
        `${names.checkpoint} only ${config.vocabSize}; serve the tokenizer the model was ` +
        "trained with.",
    );
  }
  const eos = tokenizer.tokenToId("</s>");
  const model = GPT2.fromWeights(gpu, config, tensors);
  return { model, tokenizer, stopIds: eos === undefined ? [imEnd] : [imEnd, eos] };
}

/**
 * The logits (V) of the token after `ids`: one forward pass over the prompt's last
 * `contextLength` ids, the last position read back.
 */
export async function lastLogits(model: GPT2, ids: readonly number[]): Promise<Float32Array> {
  if (ids.length === 0) throw new Error("The logits need a prompt of at least one token.");
  const { contextLength, vocabSize } = model.config;
  const window = Int32Array.from(ids.slice(-contextLength));
  const T = window.length;
  const tape = new Tape(model.gpu);
  try {
    const logits = await model.forward(tape, uploadTokens(tape, window, 1, T)); // (1, T, V)
    return await model.gpu.readF32(logits.buffer, vocabSize, (T - 1) * vocabSize);
  } finally {
    tape.dispose();
  }
}

/** Options of {@linkcode streamChatReply}. */
export interface ReplyOptions extends SamplingOptions {
  /** Most tokens of the answer. Default 200. */
  maxNewTokens?: number;
  /** Seed of the sampling. Default 0. */
  seed?: number;
  /** Called with the whole answer so far each time a token adds to it. */
  onText?: (text: string) => void;
  /** Ends the answer at the next token when aborted (the stop button). */
  signal?: AbortSignal;
}

/** How an answer ended. */
export type ReplyEnd = "im_end" | "length" | "stopped";

/** An answer of {@linkcode streamChatReply}. */
export interface Reply {
  /** The answer's text, without the end marker. */
  text: string;
  /** Its token ids, the stop token included when it ended with one. */
  tokens: number[];
  /** Why it ended: the model closed its turn, it reached `maxNewTokens`, or it was stopped. */
  end: ReplyEnd;
  /** Tokens of the prompt (the whole conversation so far). */
  promptTokens: number;
  /** Generated tokens per second of wall time, the prompt's reading included. */
  tokensPerSecond: number;
}

/** Thrown from the token callback to leave the generation loop when the stop button is hit. */
class Stopped extends Error {}

/**
 * The assistant's answer to `message` after the earlier `turns`, the conversation given to the
 * model as ChatML ids (`chatPromptIds`: messages are plain text) and the answer generated with
 * the key-value cache, streamed through `onText`, until `<|im_end|>`, `maxNewTokens` or `signal`.
 */
export async function streamChatReply(
  chat: ChatModel,
  turns: readonly ChatTurn[],
  message: string,
  options: ReplyOptions = {},
): Promise<Reply> {
  const { model, tokenizer, stopIds } = chat;
  const prompt = chatPromptIds(tokenizer, message, turns);
  const tokens: number[] = [];
  const textOf = (ids: readonly number[]) =>
    tokenizer.decode(ids.filter((id) => !stopIds.includes(id)), { skipSpecialTokens: true });
  const started = performance.now();
  let end: ReplyEnd = "length";
  try {
    await generateTokens(model, prompt, {
      temperature: options.temperature,
      topK: options.topK,
      topP: options.topP,
      seed: options.seed ?? 0,
      maxNewTokens: options.maxNewTokens ?? 200,
      stopIds,
      onToken: (id) => {
        if (options.signal?.aborted) throw new Stopped();
        tokens.push(id);
        if (stopIds.includes(id)) end = "im_end";
        // A character cut between tokens decodes as U+FFFD until its last byte comes.
        else options.onText?.(textOf(tokens).replace(/\uFFFD+$/, ""));
      },
    });
  } catch (error) {
    if (!(error instanceof Stopped)) throw error;
    end = "stopped";
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    text: textOf(tokens),
    tokens,
    end,
    promptTokens: prompt.length,
    tokensPerSecond: tokens.length / Math.max(seconds, 1e-6),
  };
}
