/**
 * Stage 6a of the pipeline: instruction pairs (Alpaca's `instruction`, `input`, `output`, from a
 * JSON, JSON Lines or Parquet file) become ChatML conversations, tokenized for fine-tuning. The
 * tokenizer gains `<|im_start|>` and `<|im_end|>`; each row is one conversation (or several,
 * packed), and its loss mask keeps only the answers' tokens, so the model learns to answer, not to
 * ask. The pairs' text is plain text: a `<|im_end|>` or `</s>` written in a pair stays text and
 * cannot cut a turn short.
 *
 * The output folder holds `chat.jsonl` (the formatted conversations), `tokenizer/` (the
 * pretrained tokenizer plus the ChatML tokens) and `tokenized/` (rows with a loss mask).
 *
 *     deno task prepare-instruct --data ../shared/data/instruct/alpaca-style-1100.json \
 *       --tokenizer runs/main/tokenizer --context 256 --out runs/instruct/data
 *
 * @module
 */

import { checkContextLength } from "../nn/config.ts";
import { saveHfTokenizer } from "../tokenizer/hf_json.ts";
import {
  chatPrompt,
  chatPromptIds,
  chatResponse,
  chatResponseIds,
  IM_END,
  IM_START,
  userMessage,
} from "./chatml.ts";
import { readRecordBatches } from "./text_source.ts";
import { type TokenizedDatasetMeta, TokenRowWriter } from "./token_rows.ts";
import { resolveTokenizer } from "./tokenize_dataset.ts";
import { writeAll, writeFileAtomic } from "../util/files.ts";
import { ProgressBar } from "./_progress.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";

/** Tokens per conversation when {@linkcode PrepareInstructOptions.contextLength} is not given. */
export const INSTRUCT_CONTEXT = 1024;

/** Options of {@linkcode prepareDatasetInstruct}. */
export interface PrepareInstructOptions {
  /** Instruction pairs: a JSON array, JSON Lines or Parquet file (or a folder of them). */
  data: string;
  /** The pretrained model's tokenizer (folder or `tokenizer.json`). */
  tokenizer: string;
  /** The output folder. */
  out: string;
  /** Tokens per row, at most the model's context. Default {@linkcode INSTRUCT_CONTEXT}. */
  contextLength?: number;
  /** Most pairs to take. Default all. */
  rows?: number;
  /** Only the pairs whose `source` is one of these (the bundled files name it). Default all. */
  sources?: readonly string[];
  /**
   * Pack several conversations into each row, as pretraining packs documents, instead of one a
   * row padded to the context: short pairs then fill their rows, and a tuning step trains on as
   * many answers as its tokens hold. A conversation that does not fit what is left of a row
   * starts the next one. Default false.
   */
  pack?: boolean;
  /** No progress output. */
  quiet?: boolean;
}

/** What {@linkcode prepareDatasetInstruct} wrote. */
export interface PreparedInstruct {
  /** The `meta.json` of the tokenized rows (`documents` counts the pairs read). */
  meta: TokenizedDatasetMeta;
  /** Pairs whose prompt alone fills the context, left out. */
  skipped: number;
  /** Pairs whose answer was cut at the context length. */
  truncated: number;
  /** Conversations written (the rows hold several each when packed). */
  conversations: number;
}

/** Formats, tokenizes and masks instruction pairs; see the module documentation. */
export async function prepareDatasetInstruct(
  options: PrepareInstructOptions,
): Promise<PreparedInstruct> {
  const context = options.contextLength ?? INSTRUCT_CONTEXT;
  checkContextLength(context);
  const tokenizer = await resolveTokenizer(options.tokenizer);
  tokenizer.addTokens([IM_START, IM_END], { special: true });

  const writer = await TokenRowWriter.create(`${options.out}/tokenized`, {
    method: "chat",
    contextLength: context,
    vocabSize: tokenizer.vocabSize,
    padId: tokenizer.tokenToId("<pad>") ?? tokenizer.tokenToId(IM_END)!,
    eosId: tokenizer.tokenToId(IM_END)!,
    lossMask: true,
  });
  const progress = new ProgressBar("prepare instruct", options.rows ?? 0, {
    unit: "pairs",
    silent: options.quiet,
  });
  const limit = options.rows ?? Infinity;
  const encoder = new TextEncoder();
  let skipped = 0, truncated = 0;
  // The row being filled: a conversation starts a new one unless packing and it fits.
  let rowIds: number[] = [], rowMask: number[] = [];
  try {
    await writeFileAtomic(`${options.out}/chat.jsonl`, async (chat) => {
      const batches = readRecordBatches(options.data, {
        fields: ["instruction", "output"],
        optionalFields: ["input"],
        sources: options.sources,
      });
      for await (const batch of batches) {
        const rows: number[][] = [], masks: number[][] = [], lines: string[] = [];
        for (const pair of batch.slice(0, limit - writer.meta.documents)) {
          writer.meta.documents++;
          const prompt = chatPrompt(pair.instruction, pair.input);
          const response = chatResponse(pair.output);
          const promptIds = chatPromptIds(tokenizer, userMessage(pair.instruction, pair.input));
          if (promptIds.length >= context) {
            skipped++; // no room for a single answer token
            continue;
          }
          const responseIds = chatResponseIds(tokenizer, pair.output);
          const ids = [...promptIds, ...responseIds].slice(0, context);
          if (ids.length < promptIds.length + responseIds.length) truncated++;
          const mask = ids.map((_, i) => i < promptIds.length ? 0 : 1);
          lines.push(JSON.stringify({ prompt, response }) + "\n");
          if (rowIds.length > 0 && (!options.pack || rowIds.length + ids.length > context)) {
            rows.push(rowIds);
            masks.push(rowMask);
            rowIds = [];
            rowMask = [];
          }
          rowIds.push(...ids);
          rowMask.push(...mask);
        }
        await writer.write(rows, masks);
        await writeAll(chat, encoder.encode(lines.join("")));
        progress.update(writer.meta.documents);
        if (writer.meta.documents >= limit) break;
      }
      if (rowIds.length > 0) await writer.write([rowIds], [rowMask]);
      if (writer.meta.rows === 0) {
        throw new Error(
          `No instruction pair of ${options.data} fits a context of ${context} tokens; ` +
            "use a longer --context.",
        );
      }
    });
  } catch (error) {
    await writer.abandon();
    throw error;
  }
  progress.finish();
  const meta = await writer.finish();
  // Written last: pairs that cannot be read leave no tokenizer behind.
  await Deno.mkdir(`${options.out}/tokenizer`, { recursive: true });
  await saveHfTokenizer(tokenizer, `${options.out}/tokenizer/tokenizer.json`);
  return { meta, skipped, truncated, conversations: meta.documents - skipped };
}

/** The flags of `deno task prepare-instruct`, with their defaults and help. */
const FLAGS = {
  data: {
    type: "string",
    help: "instruction pairs (instruction, input, output): JSON, JSON Lines or Parquet",
  },
  tokenizer: {
    type: "string",
    default: "runs/main/tokenizer",
    help: "the pretrained model's tokenizer (folder or tokenizer.json)",
  },
  out: {
    type: "string",
    default: "runs/instruct/data",
    help: "the output folder (chat.jsonl, tokenizer/, tokenized/)",
  },
  context: {
    type: "string",
    default: String(INSTRUCT_CONTEXT),
    help: "tokens per conversation, at most the pretrained model's context",
  },
  rows: { type: "string", help: "most pairs to take (default all)" },
  pack: {
    type: "boolean",
    default: false,
    help: "pack several conversations into each row instead of one padded row each",
  },
  quiet: { type: "boolean", default: false, help: "no progress output" },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task prepare-instruct --data FILE [options]", FLAGS);
    if (!values) return;
    if (!values.data) throw new Error("Pass the instruction pairs with --data FILE (see --help).");
    const result = await prepareDatasetInstruct({
      data: values.data,
      tokenizer: values.tokenizer,
      out: values.out,
      contextLength: intFlag("context", values.context, 2),
      rows: values.rows === undefined ? undefined : intFlag("rows", values.rows),
      pack: values.pack,
      quiet: values.quiet,
    });
    console.log(
      `wrote ${result.conversations} conversations in ${result.meta.rows} rows ` +
        `(${result.meta.tokens} tokens) to ` +
        `${values.out}; ${result.skipped} left out (prompt too long), ${result.truncated} ` +
        "answers cut at the context length",
    );
  });
}
