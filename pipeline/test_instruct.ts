/**
 * Stage 6c of the pipeline: the pretrained and the instruction-tuned model side by side on the
 * same questions. The pretrained model continues the bare question as text (past any end of
 * document); the tuned one answers it as the assistant of a ChatML conversation and stops at
 * `<|im_end|>`. A question is plain text in both (`</s>` or `<|im_end|>` in it stays text).
 *
 *     deno task test-instruct --pretrained runs/main/model/checkpoint.safetensors \
 *       --tokenizer runs/main/tokenizer --tuned runs/instruct/model/checkpoint.safetensors \
 *       --tuned-tokenizer runs/instruct/data/tokenizer --question "What is the capital of France?"
 *
 * @module
 */

import { acquireGpu, type Gpu } from "../kernels/device.ts";
import { loadCheckpoint } from "../nn/checkpoint.ts";
import type { GPT2 } from "../nn/gpt2.ts";
import { validateSampling } from "../nn/sampling.ts";
import { chatMarkerIds, chatPromptIds, IM_END } from "./chatml.ts";
import { type CompleteOptions, completePrompt } from "./test_pretrained.ts";
import { resolveTokenizer } from "./tokenize_dataset.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, nonNegativeFlag, parseFlags } from "../util/flags.ts";
import { escapeControlCharacters } from "./_terminal.ts";

/** Options of {@linkcode testInstruct}. */
export interface TestInstructOptions extends Omit<CompleteOptions, "stopTokens" | "onText"> {
  /** The pretrained model's checkpoint, from train_model. */
  pretrained: string;
  /** The pretrained model's tokenizer. */
  tokenizer: string;
  /** The instruction-tuned model's checkpoint, from finetune_instruct. */
  tuned: string;
  /** The tuned model's tokenizer (with the ChatML tokens). */
  tunedTokenizer: string;
  /** The questions, asked as bare text of the pretrained model and as ChatML of the tuned one. */
  questions: readonly string[];
  /** The GPU to use; acquired when absent. */
  gpu?: Gpu;
}

/** One question's two answers. */
export interface SideBySide {
  /** The question as given. */
  question: string;
  /** The pretrained model's continuation of the bare question. */
  pretrained: string;
  /** The tuned model's answer, up to `<|im_end|>` (left out). */
  tuned: string;
}

/** Asks both models every question; see the module documentation. */
export async function testInstruct(options: TestInstructOptions): Promise<SideBySide[]> {
  validateSampling(options);
  const gpu = options.gpu ?? await acquireGpu();
  const loaded: GPT2[] = [];
  const load = async (checkpoint: string, tokenizer: string) => {
    const { model } = await loadCheckpoint(gpu, checkpoint);
    loaded.push(model);
    return { model, tokenizer: await resolveTokenizer(tokenizer) };
  };
  const results: SideBySide[] = [];
  try {
    const pretrained = await load(options.pretrained, options.tokenizer);
    const tuned = await load(options.tuned, options.tunedTokenizer);
    chatMarkerIds(tuned.tokenizer); // refuses a tokenizer without the ChatML tokens
    for (const question of options.questions) {
      results.push({
        question,
        // The pretrained model just continues the text, across document ends: that is the
        // contrast instruction tuning makes.
        pretrained: await completePrompt(pretrained.model, pretrained.tokenizer, question, {
          ...options,
          stopTokens: [],
        }),
        tuned: await completePrompt(
          tuned.model,
          tuned.tokenizer,
          chatPromptIds(tuned.tokenizer, question),
          { ...options, stopTokens: [IM_END, "</s>"] },
        ),
      });
    }
  } finally {
    for (const model of loaded) model.dispose();
  }
  return results;
}

/** The side-by-side as text, one block per question. */
export function formatSideBySide(results: readonly SideBySide[]): string {
  const indent = (text: string) => text.trim().replace(/\n/g, " / ") || "(nothing)";
  return results.map(({ question, pretrained, tuned }) =>
    `Q: ${question}\n  pretrained: ${indent(pretrained)}\n  tuned:      ${indent(tuned)}\n`
  ).join("\n");
}

/** The questions asked when `--question` is not given. */
const DEFAULT_QUESTIONS = [
  "What is the capital of France?",
  "Give three tips for staying healthy.",
  "Write a short story about a cat.",
];

/** The flags of `deno task test-instruct`, with their defaults and help. */
const FLAGS = {
  pretrained: {
    type: "string",
    default: "runs/main/model/checkpoint.safetensors",
    help: "the pretrained checkpoint (from train-model)",
  },
  tokenizer: { type: "string", default: "runs/main/tokenizer", help: "its tokenizer" },
  tuned: {
    type: "string",
    default: "runs/instruct/model/checkpoint.safetensors",
    help: "the instruction-tuned checkpoint (from finetune-instruct)",
  },
  "tuned-tokenizer": {
    type: "string",
    default: "runs/instruct/data/tokenizer",
    help: "its tokenizer, with the ChatML tokens",
  },
  question: {
    type: "string",
    multiple: true,
    help: `a question for both models; repeat for more (default ${DEFAULT_QUESTIONS.length} ` +
      "sample questions)",
  },
  "max-new-tokens": { type: "string", default: "60", help: "most tokens per answer" },
  temperature: { type: "string", default: "0.7", help: "sampling temperature; 0 is greedy" },
  "top-k": { type: "string", default: "40", help: "sample among the k likeliest tokens" },
  seed: { type: "string", default: "0", help: "seed of the sampling" },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task test-instruct [options]", FLAGS);
    if (!values) return;
    if (values.question?.some((question) => question.trim() === "")) {
      throw new Error("--question needs some text: an empty question has nothing to answer.");
    }
    const results = await testInstruct({
      pretrained: values.pretrained,
      tokenizer: values.tokenizer,
      tuned: values.tuned,
      tunedTokenizer: values["tuned-tokenizer"],
      questions: values.question ?? DEFAULT_QUESTIONS,
      maxNewTokens: intFlag("max-new-tokens", values["max-new-tokens"]),
      temperature: nonNegativeFlag("temperature", values.temperature),
      topK: intFlag("top-k", values["top-k"]),
      seed: intFlag("seed", values.seed, 0),
    });
    const text = formatSideBySide(results);
    console.log(Deno.stdout.isTerminal() ? escapeControlCharacters(text) : text);
  });
}
