/**
 * ChatML, the conversation format of instruction tuning: each turn is
 * `<|im_start|>{role}\n{content}<|im_end|>\n`, and the model learns to write the assistant's turn
 * after `<|im_start|>assistant\n`. The two markers are added to the tokenizer as special tokens,
 * matched whole in the input.
 *
 * @module
 */

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

/** The prompt of a user's message: the user turn, then the opening of the assistant's. */
export function chatPrompt(instruction: string, input = ""): string {
  const content = input.trim() ? `${instruction.trim()}\n\n${input.trim()}` : instruction.trim();
  return `${IM_START}user\n${content}${IM_END}\n${IM_START}assistant\n`;
}

/** The assistant's answer as the model must write it: the text, then the end marker. */
export function chatResponse(output: string): string {
  return `${output.trim()}${IM_END}`;
}

/** A whole exchange as one document of text: the user's turn, then the assistant's. */
export function chatDocument(pair: InstructionPair): string {
  return chatPrompt(pair.instruction, pair.input) + chatResponse(pair.output) + "\n";
}
