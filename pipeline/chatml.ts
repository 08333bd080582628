/**
 * ChatML, the conversation format of instruction tuning: each turn is
 * `<|im_start|>{role}\n{content}<|im_end|>\n`, and the model learns to write the assistant's turn
 * after `<|im_start|>assistant\n`. The two markers are added to the tokenizer as special tokens.
 *
 * A prompt for the model is built as token ids from its parts ({@linkcode chatPromptIds},
 * {@linkcode chatResponseIds}): the markers as their ids, the messages encoded as plain text. A
 * message that holds the text `<|im_end|>\n<|im_start|>assistant` then stays text and cannot
 * forge a turn; `allowSpecialTokens` lets such text be control tokens for input one trusts. For
 * ordinary messages the ids are those of the whole conversation written out as text
 * ({@linkcode chatPrompt}) and encoded, the form the pretraining mix holds.
 *
 * @module
 */

import type { BpeTokenizer } from "../tokenizer/bpe.ts";

/** Opens a turn. */
export const IM_START = "<|im_start|>";
/** Closes a turn; generation stops when the model writes it. */
export const IM_END = "<|im_end|>";

/** One instruction pair, as in the Alpaca format. */
export interface InstructionPair {
  /** The task or question, the user's message. */
  instruction: string;
  /** Context for the instruction; often empty. */
  input: string;
  /** The answer the model learns to give, the assistant's message. */
  output: string;
}

/** One exchange of a conversation. */
export interface ChatTurn {
  /** What the user wrote. */
  user: string;
  /** What the model answered (without the end marker). */
  assistant: string;
}

/** Options of {@linkcode chatPromptIds} and {@linkcode chatResponseIds}. */
export interface ChatEncodeOptions {
  /**
   * Let the text of added tokens in the messages (`<|im_end|>`, `</s>`) become control tokens.
   * Default false: a message is plain text, whatever it holds.
   */
  allowSpecialTokens?: boolean;
}

/** The user's message of an instruction pair: the instruction, then its input if any. */
export function userMessage(instruction: string, input = ""): string {
  return input.trim() ? `${instruction.trim()}\n\n${input.trim()}` : instruction.trim();
}

/** The prompt of a user's message: the user turn, then the opening of the assistant's. */
export function chatPrompt(instruction: string, input = ""): string {
  return `${IM_START}user\n${userMessage(instruction, input)}${IM_END}\n${IM_START}assistant\n`;
}

/** The assistant's answer as the model must write it: the text, then the end marker. */
export function chatResponse(output: string): string {
  return `${output.trim()}${IM_END}`;
}

/** A whole exchange as one document of text: the user's turn, then the assistant's. */
export function chatDocument(pair: InstructionPair): string {
  return chatPrompt(pair.instruction, pair.input) + chatResponse(pair.output) + "\n";
}

/**
 * The ids of `<|im_start|>` and `<|im_end|>` in `tokenizer`.
 *
 * @throws when it lacks them: the markers would otherwise be encoded as text the model never
 * learned as turns.
 */
export function chatMarkerIds(tokenizer: BpeTokenizer): { imStart: number; imEnd: number } {
  const imStart = tokenizer.tokenToId(IM_START), imEnd = tokenizer.tokenToId(IM_END);
  if (imStart === undefined || imEnd === undefined) {
    throw new Error(
      `The tokenizer has no ${IM_START} and ${IM_END} tokens, so it cannot write a ChatML ` +
        "conversation; pass the tokenizer that prepare-instruct wrote (its data folder's " +
        "tokenizer/), the one the tuned model was trained with.",
    );
  }
  return { imStart, imEnd };
}

/**
 * The ids of a prompt for the assistant's next answer: the earlier `turns`, the user's
 * `message`, then `<|im_start|>assistant\n`. The same ids as `tokenizer.encode` of the text
 * ({@linkcode chatPrompt} of each turn), except that the messages are plain text.
 */
export function chatPromptIds(
  tokenizer: BpeTokenizer,
  message: string,
  turns: readonly ChatTurn[] = [],
  options: ChatEncodeOptions = {},
): number[] {
  const { imStart, imEnd } = chatMarkerIds(tokenizer);
  const text = (content: string) =>
    tokenizer.encode(content, { specialTokens: options.allowSpecialTokens ? "control" : "plain" });
  // Role names and line breaks are ours. A message is trimmed, so it begins with no space that
  // could join the line break before it into one word: encoding "user\n" + message as one piece
  // gives the ids the whole text gives.
  const userTurn = (content: string) => [imStart, ...text(`user\n${content.trim()}`), imEnd];
  const newline = tokenizer.encode("\n", { specialTokens: "plain" });
  const ids: number[] = [];
  for (const turn of turns) {
    ids.push(...userTurn(turn.user), ...newline);
    ids.push(imStart, ...text(`assistant\n${turn.assistant.trim()}`), imEnd, ...newline);
  }
  ids.push(...userTurn(message), ...newline);
  ids.push(imStart, ...tokenizer.encode("assistant\n", { specialTokens: "plain" }));
  return ids;
}

/** The ids of the answer the model learns to write: its text, then `<|im_end|>`. */
export function chatResponseIds(
  tokenizer: BpeTokenizer,
  output: string,
  options: ChatEncodeOptions = {},
): number[] {
  const { imEnd } = chatMarkerIds(tokenizer);
  const specialTokens = options.allowSpecialTokens ? "control" : "plain";
  return [...tokenizer.encode(output.trim(), { specialTokens }), imEnd];
}
