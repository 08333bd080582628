/**
 * Chatting with an instruction-tuned model: each user message is appended to the conversation
 * in ChatML, and the model writes the assistant's turn until `<|im_end|>`. The whole
 * conversation is the prompt (its last `contextLength` tokens, when it grows longer: a warning
 * says so). A message is plain text: typing `<|im_end|>` cannot end the user's turn
 * (`--allow-special-tokens` lets it). On a terminal, control characters in the model's answer
 * are shown escaped (`\x1b`).
 *
 *     deno task chat --checkpoint runs/instruct/model/checkpoint.safetensors \
 *       --tokenizer runs/instruct/data/tokenizer
 *
 * @module
 */

import { acquireGpu } from "../kernels/device.ts";
import { loadCheckpoint } from "../nn/checkpoint.ts";
import type { GPT2 } from "../nn/gpt2.ts";
import { type Guidance, promptCutWarning } from "../nn/generate.ts";
import { validateSampling } from "../nn/sampling.ts";
import type { BpeTokenizer } from "../tokenizer/bpe.ts";
import {
  type ChatEncodeOptions,
  chatMarkerIds,
  chatPromptIds,
  type ChatTurn,
  IM_END,
} from "./chatml.ts";
import {
  checkTokenizerMatches,
  type CompleteManyOptions,
  type CompleteOptions,
  completePrompt,
  completePrompts,
} from "./test_pretrained.ts";
import { linesOf } from "./text_source.ts";
import { resolveTokenizer } from "./tokenize_dataset.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, nonNegativeFlag, parseFlags } from "../util/flags.ts";
import { stdoutWriter, warn } from "./_terminal.ts";

export type { ChatTurn } from "./chatml.ts";

/** The tokens that end the assistant's turn. */
const CHAT_STOP_TOKENS = [IM_END, "</s>"];

/**
 * The default scale of classifier-free guidance in chat answers (`guidance` of
 * {@linkcode ChatOptions}): each token is sampled from the model's answer to the question pushed
 * away from its answer to an empty question (Sanchez et al., 2023), which keeps a small model's
 * answer about what was asked. Off by default (1): on the 90-minute main job's model, scale 1.5
 * raised the answers' on-topic share from 50% to 63% but lowered their sentences' grammar from
 * 61% to 55% (3: 68% and 43%), and on the 30-minute model it did not help (docs/recipe.md).
 */
export const CHAT_GUIDANCE = 1;

/** Options of {@linkcode chatReply}: the completion's, the encoding's, and the guidance. */
export interface ChatOptions
  extends Omit<CompleteOptions, "stopTokens" | "guidance">, ChatEncodeOptions {
  /**
   * Classifier-free guidance's scale: each answer is also written, token for token, after an
   * empty question, and its tokens are sampled from the two distributions combined at this
   * scale (1: plain sampling, at half the work). Default {@linkcode CHAT_GUIDANCE}.
   */
  guidance?: number;
}

/** {@linkcode chatReplies}' options: those of {@linkcode chatReply}, per message. */
export interface ChatManyOptions
  extends Omit<CompleteManyOptions, "stopTokens" | "guidance">, ChatEncodeOptions {
  /** Classifier-free guidance's scale; see {@linkcode ChatOptions.guidance}. */
  guidance?: number;
}

/**
 * The assistant's reply to `message` after the earlier `turns` of the conversation. The reply
 * streams through `options.onText` as it is written. The messages are plain text unless
 * `allowSpecialTokens`; a conversation longer than the context warns (`onPromptCut`).
 */
export function chatReply(
  model: GPT2,
  tokenizer: BpeTokenizer,
  turns: readonly ChatTurn[],
  message: string,
  options: ChatOptions = {},
): Promise<string> {
  const { guidance, ...rest } = options;
  return completePrompt(model, tokenizer, chatPromptIds(tokenizer, message, turns, options), {
    onPromptCut: (cuts, contextLength) =>
      warn(promptCutWarning(cuts, contextLength, "the conversation")),
    ...rest,
    stopTokens: CHAT_STOP_TOKENS,
    guidance: chatGuidance(tokenizer, [turns], guidance, options),
  });
}

/**
 * The guidance of replies after each of `conversations` (their earlier turns): the unconditioned
 * prompt keeps the earlier turns and leaves the new question empty. None at scale 1, where no
 * twin prompt is needed.
 */
function chatGuidance(
  tokenizer: BpeTokenizer,
  conversations: readonly (readonly ChatTurn[])[],
  scale = CHAT_GUIDANCE,
  options: ChatEncodeOptions,
): Guidance | undefined {
  if (scale === 1) return undefined;
  return {
    scale,
    unconditioned: conversations.map((turns) => chatPromptIds(tokenizer, "", turns, options)),
  };
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
  options: ChatManyOptions = {},
): Promise<string[]> {
  const { guidance, ...rest } = options;
  const prompts = messages.map((message) => chatPromptIds(tokenizer, message, [], options));
  return completePrompts(model, tokenizer, prompts, {
    ...rest,
    stopTokens: CHAT_STOP_TOKENS,
    guidance: chatGuidance(tokenizer, messages.map(() => []), guidance, options),
  });
}

/** The flags of `deno task chat`, with their defaults and help. */
const FLAGS = {
  checkpoint: {
    type: "string",
    default: "runs/instruct/model/checkpoint.safetensors",
    help: "an instruction-tuned checkpoint (from finetune-instruct)",
  },
  tokenizer: {
    type: "string",
    default: "runs/instruct/data/tokenizer",
    help: "its tokenizer, with the ChatML tokens (from prepare-instruct)",
  },
  "max-new-tokens": { type: "string", default: "120", help: "most tokens per answer" },
  temperature: { type: "string", default: "0.7", help: "sampling temperature; 0 is greedy" },
  "top-k": { type: "string", default: "40", help: "sample among the k likeliest tokens" },
  seed: { type: "string", default: "0", help: "seed of the sampling" },
  guidance: {
    type: "string",
    default: String(CHAT_GUIDANCE),
    help: "classifier-free guidance: above 1 pushes answers towards the question; 1 is none",
  },
  "allow-special-tokens": {
    type: "boolean",
    default: false,
    help: "text such as <|im_end|> in a message becomes a control token, not text",
  },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task chat [options]", FLAGS);
    if (!values) return;
    const sampling = {
      maxNewTokens: intFlag("max-new-tokens", values["max-new-tokens"]),
      temperature: nonNegativeFlag("temperature", values.temperature),
      topK: intFlag("top-k", values["top-k"]),
      seed: intFlag("seed", values.seed, 0),
      guidance: nonNegativeFlag("guidance", values.guidance),
      allowSpecialTokens: values["allow-special-tokens"],
    };
    validateSampling(sampling);
    const tokenizer = await resolveTokenizer(values.tokenizer);
    chatMarkerIds(tokenizer); // a tokenizer without the ChatML tokens fails before the model loads
    const { model } = await loadCheckpoint(await acquireGpu(), values.checkpoint);
    checkTokenizerMatches(model, tokenizer, values.checkpoint);
    const turns: ChatTurn[] = [];
    console.log("Type a message and press Enter; an empty line or Ctrl-D ends the chat.");
    const write = stdoutWriter();
    write("you> ");
    for await (const line of linesOf(Deno.stdin.readable)) {
      const message = line.trim();
      if (!message) break;
      // A warning that the conversation outgrew the context goes before the answer.
      const { contextLength } = model.config;
      const length = chatPromptIds(tokenizer, message, turns, sampling).length;
      if (length > contextLength) {
        warn(promptCutWarning([{ index: 0, length }], contextLength, "the conversation"));
      }
      write("model> ");
      const reply = await chatReply(model, tokenizer, turns, message, {
        ...sampling,
        onPromptCut: () => {},
        onText: write,
      });
      write("\nyou> ");
      turns.push({ user: message, assistant: reply });
    }
    write("\n");
    model.dispose();
  });
}
