/**
 * Chatting with an instruction-tuned model: each user message is appended to the conversation
 * in ChatML, and the model writes the assistant's turn until `<|im_end|>`. The whole
 * conversation is the prompt (its last `contextLength` tokens, when it grows longer).
 *
 *     deno task chat --checkpoint runs/instruct/model/checkpoint.safetensors \
 *       --tokenizer runs/instruct/data/tokenizer
 *
 * @module
 */

import { parseArgs } from "node:util";
import { acquireGpu } from "../kernels/device.ts";
import { loadCheckpoint } from "../nn/checkpoint.ts";
import type { GPT2 } from "../nn/gpt2.ts";
import type { BpeTokenizer } from "../tokenizer/bpe.ts";
import { chatPrompt, chatResponse, IM_END } from "./chatml.ts";
import {
  type CompleteManyOptions,
  type CompleteOptions,
  completePrompt,
  completePrompts,
} from "./test_pretrained.ts";
import { linesOf } from "./text_source.ts";
import { resolveTokenizer } from "./tokenize_dataset.ts";
import { intFlag, numberFlag, runCli } from "./_cli.ts";

/** One exchange of a conversation. */
export interface ChatTurn {
  /** What the user wrote. */
  user: string;
  /** What the model answered (without the end marker). */
  assistant: string;
}

/** The tokens that end the assistant's turn. */
const CHAT_STOP_TOKENS = [IM_END, "</s>"];

/**
 * The assistant's reply to `message` after the earlier `turns` of the conversation. The reply
 * streams through `options.onText` as it is written.
 */
export function chatReply(
  model: GPT2,
  tokenizer: BpeTokenizer,
  turns: readonly ChatTurn[],
  message: string,
  options: Omit<CompleteOptions, "stopTokens"> = {},
): Promise<string> {
  const history = turns.map((turn) => chatPrompt(turn.user) + chatResponse(turn.assistant) + "\n");
  return completePrompt(model, tokenizer, history.join("") + chatPrompt(message), {
    ...options,
    stopTokens: CHAT_STOP_TOKENS,
  });
}

/**
 * The assistant's replies to each of `messages`, each the first message of its own
 * conversation, generated together (`completePrompts`): reply i is what
 * {@linkcode chatReply} gives with no earlier turns and seed `seeds[i]`.
 */
export function chatReplies(
  model: GPT2,
  tokenizer: BpeTokenizer,
  messages: readonly string[],
  options: Omit<CompleteManyOptions, "stopTokens"> = {},
): Promise<string[]> {
  const prompts = messages.map((message) => chatPrompt(message));
  return completePrompts(model, tokenizer, prompts, { ...options, stopTokens: CHAT_STOP_TOKENS });
}

if (import.meta.main) {
  await runCli(async () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        checkpoint: { type: "string", default: "runs/instruct/model/checkpoint.safetensors" },
        tokenizer: { type: "string", default: "runs/instruct/data/tokenizer" },
        "max-new-tokens": { type: "string", default: "120" },
        temperature: { type: "string", default: "0.7" },
        "top-k": { type: "string", default: "40" },
        seed: { type: "string", default: "0" },
      },
    });
    const sampling = {
      maxNewTokens: intFlag("max-new-tokens", values["max-new-tokens"]),
      temperature: numberFlag("temperature", values.temperature, -1e-9),
      topK: intFlag("top-k", values["top-k"]),
      seed: intFlag("seed", values.seed, 0),
    };
    const tokenizer = await resolveTokenizer(values.tokenizer);
    const { model } = await loadCheckpoint(await acquireGpu(), values.checkpoint);
    const encoder = new TextEncoder();
    const turns: ChatTurn[] = [];
    console.log("Type a message and press Enter; an empty line or Ctrl-D ends the chat.");
    const write = (text: string) => Deno.stdout.writeSync(encoder.encode(text));
    write("you> ");
    for await (const line of linesOf(Deno.stdin.readable)) {
      const message = line.trim();
      if (!message) break;
      write("model> ");
      const reply = await chatReply(model, tokenizer, turns, message, {
        ...sampling,
        onText: write,
      });
      write("\nyou> ");
      turns.push({ user: message, assistant: reply });
    }
    write("\n");
    model.dispose();
  });
}
