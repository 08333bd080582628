/**
 * Export to the Hugging Face format (`deno task export`): a checkpoint and its tokenizer become a
 * folder that `transformers` loads as `GPT2LMHeadModel` (and `AutoTokenizer`), ready for the hub,
 * llama.cpp's or ONNX's converters, or PyTorch training:
 *
 * - `config.json`, `model.safetensors` (GPT-2's names and `Conv1D` layout; see `nn/hf_gpt2.ts`),
 *   `generation_config.json`;
 * - `tokenizer.json`, `tokenizer_config.json` (with the ChatML `chat_template` when the tokenizer
 *   has `<|im_start|>`), `special_tokens_map.json`.
 *
 *     deno task export --checkpoint runs/main/model/checkpoint.safetensors \
 *       --tokenizer runs/main/tokenizer --out out/hf-model [--dtype bfloat16]
 *
 * The folder is written under a temporary name and renamed when complete. float16 and bfloat16
 * halve the file; the logits they give are compared with float32's on a fixed prompt and the
 * difference printed. Every command that takes a checkpoint also takes such a folder.
 *
 * @module
 */

import { acquireGpu, type Gpu } from "../kernels/device.ts";
import { readCheckpoint } from "../nn/checkpoint.ts";
import type { GPT2Config } from "../nn/config.ts";
import { GPT2 } from "../nn/gpt2.ts";
import {
  HF_CONFIG_FILE,
  HF_WEIGHTS_FILE,
  type HfDtype,
  hfGpt2Config,
  hfTensorSpecs,
  type HfTokenIds,
  readHfGpt2,
  writeHfSafetensors,
} from "../nn/hf_gpt2.ts";
import { Tape } from "../nn/tape.ts";
import type { BpeTokenizer } from "../tokenizer/bpe.ts";
import { toHfTokenizerJson } from "../tokenizer/hf_json.ts";
import { FolderOutput } from "../util/files.ts";
import { IM_END, IM_START } from "./chatml.ts";
import { resolveTokenizer } from "./tokenize_dataset.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, parseFlags } from "../util/flags.ts";

/** The dtypes `--dtype` takes. */
export const HF_DTYPES: readonly HfDtype[] = ["float32", "float16", "bfloat16"];

/** The files of an exported folder, the one `from_pretrained` reads first last. */
export const HF_EXPORT_FILES: readonly string[] = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
  HF_WEIGHTS_FILE,
  HF_CONFIG_FILE,
];

/** The text whose logits measure a 16-bit export's precision loss. */
export const PRECISION_PROMPT: string =
  "Once upon a time, in a small village by the sea, there lived an old fisherman who " +
  "told stories to the children every evening. The quick brown fox jumps over the lazy dog.";

/**
 * ChatML as a `transformers` chat template (Jinja): each message `<|im_start|>{role}\n{content}
 * <|im_end|>\n`, the content trimmed as the tuning data's was, and `<|im_start|>assistant\n` to
 * prompt an answer; the same ids `chatPromptIds` builds.
 */
export const CHATML_TEMPLATE: string = "{% for message in messages %}" +
  "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' + '\\n' }}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Options of {@linkcode exportHuggingFace}. */
export interface ExportHuggingFaceOptions {
  /** The checkpoint (or a Hugging Face GPT-2 folder, to convert its dtype). */
  checkpoint: string;
  /** Its tokenizer: a folder holding `tokenizer.json`, or the file. */
  tokenizer: string;
  /** The folder to write. */
  out: string;
  /** The weights' dtype. Default `float32`. */
  dtype?: HfDtype;
  /** Write into an `out` that holds files the export did not write. */
  force?: boolean;
  /** The GPU that measures a 16-bit export's precision; acquired when needed if absent. */
  gpu?: Gpu;
}

/** How far a 16-bit export's logits are from float32's on {@linkcode PRECISION_PROMPT}. */
export interface PrecisionLoss {
  /** Tokens of the prompt the logits were taken at (cut to the context). */
  tokens: number;
  /** The largest absolute logit difference. */
  maxAbs: number;
  /** The mean absolute logit difference. */
  meanAbs: number;
  /** The largest absolute float32 logit, for scale. */
  maxLogit: number;
}

/** What {@linkcode exportHuggingFace} wrote. */
export interface ExportHuggingFaceResult {
  /** The folder. */
  out: string;
  /** The weights' dtype. */
  dtype: HfDtype;
  /** The model's shape. */
  config: GPT2Config;
  /** Bytes of `model.safetensors`. */
  weightBytes: number;
  /** The precision loss of a 16-bit export; absent for float32, which is exact. */
  precision?: PrecisionLoss;
}

/**
 * Writes a checkpoint and its tokenizer as a Hugging Face GPT-2 folder; see the module
 * documentation.
 *
 * @throws when the dtype is unknown, the tokenizer does not fit the model (more tokens than its
 *   vocabulary), a float16 weight is past float16's range, or `out` holds files the export did not
 *   write (without `force`).
 */
export async function exportHuggingFace(
  options: ExportHuggingFaceOptions,
): Promise<ExportHuggingFaceResult> {
  const dtype = options.dtype ?? "float32";
  if (!HF_DTYPES.includes(dtype)) {
    throw new Error(`--dtype must be one of ${HF_DTYPES.join(", ")}, got "${dtype}".`);
  }
  const tokenizer = await resolveTokenizer(options.tokenizer);
  const output = await FolderOutput.start(options.out, {
    stage: "export",
    files: HF_EXPORT_FILES,
    force: options.force,
    inputs: [options.checkpoint, options.tokenizer],
  });
  try {
    const { config, tensors } = await readCheckpoint(options.checkpoint);
    if (tokenizer.vocabSize > config.vocabSize) {
      throw new Error(
        `The tokenizer ${options.tokenizer} has ${tokenizer.vocabSize} tokens but the model ` +
          `${options.checkpoint} only ${config.vocabSize}; pass the tokenizer it was trained with.`,
      );
    }
    if (dtype === "float16") checkFloat16Range(config, tensors);
    const ids = tokenIds(tokenizer);
    const dir = output.temporary;
    const json = (name: string, value: unknown) =>
      Deno.writeTextFile(`${dir}/${name}`, JSON.stringify(value, null, 2) + "\n");
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(toHfTokenizerJson(tokenizer)));
    await json("tokenizer_config.json", tokenizerConfig(tokenizer, config));
    await json("special_tokens_map.json", specialTokensMap(tokenizer));
    await json("generation_config.json", generationConfig(ids));
    await writeHfSafetensors(`${dir}/${HF_WEIGHTS_FILE}`, config, tensors, dtype);
    await json(HF_CONFIG_FILE, hfGpt2Config(config, ids, dtype));
    const weightBytes = (await Deno.stat(`${dir}/${HF_WEIGHTS_FILE}`)).size;
    // Measured on the weights read back from the file, as a user of the folder gets them.
    const precision = dtype === "float32" ? undefined : await measurePrecisionLoss(
      options.gpu ?? await acquireGpu(),
      config,
      tensors,
      (await readHfGpt2(dir)).tensors,
      tokenizer.encode(PRECISION_PROMPT, { specialTokens: "plain" }),
    );
    await output.publish();
    return { out: options.out, dtype, config, weightBytes, precision };
  } catch (error) {
    await output.abandon();
    throw error;
  }
}

/** The first of `names` the tokenizer has, with its id. */
function firstToken(
  tokenizer: BpeTokenizer,
  names: readonly string[],
): { token: string; id: number } | undefined {
  for (const token of names) {
    const id = tokenizer.tokenToId(token);
    if (id !== undefined) return { token, id };
  }
  return undefined;
}

/** This project's special tokens (`tokenizer/train_bpe.ts`), then GPT-2's own. */
const BOS = ["<s>", "<|endoftext|>"], EOS = ["</s>", "<|endoftext|>"];
const PAD = ["<pad>"], UNK = ["<unk>", "<|endoftext|>"];

/** Whether the tokenizer writes ChatML (it has the markers chat tuning added). */
function hasChatMl(tokenizer: BpeTokenizer): boolean {
  return tokenizer.tokenToId(IM_START) !== undefined && tokenizer.tokenToId(IM_END) !== undefined;
}

/** The ids of the special tokens; a chat model's end of turn is its first end. */
function tokenIds(tokenizer: BpeTokenizer): HfTokenIds {
  const eos = [
    ...(hasChatMl(tokenizer) ? [tokenizer.tokenToId(IM_END)!] : []),
    ...(firstToken(tokenizer, EOS) ? [firstToken(tokenizer, EOS)!.id] : []),
  ];
  if (eos.length === 0) {
    throw new Error(
      `The tokenizer has none of ${[...EOS, IM_END].join(", ")} to end a text; export the ` +
        "tokenizer the model was trained with.",
    );
  }
  return {
    bos: firstToken(tokenizer, BOS)?.id,
    eos,
    pad: (firstToken(tokenizer, PAD) ?? firstToken(tokenizer, EOS))?.id,
  };
}

/** The named special tokens `transformers` knows, as text. */
function specialTokensMap(tokenizer: BpeTokenizer): Record<string, unknown> {
  const chat = hasChatMl(tokenizer);
  const eos = chat ? IM_END : firstToken(tokenizer, EOS)?.token;
  const map: Record<string, unknown> = {
    bos_token: firstToken(tokenizer, BOS)?.token,
    eos_token: eos,
    unk_token: firstToken(tokenizer, UNK)?.token,
    pad_token: (firstToken(tokenizer, PAD) ?? firstToken(tokenizer, EOS))?.token,
  };
  if (chat) map.additional_special_tokens = [IM_START, IM_END];
  for (const key of Object.keys(map)) if (map[key] === undefined) delete map[key];
  return map;
}

/** `tokenizer_config.json`: the fast tokenizer of `tokenizer.json`, and the chat template. */
function tokenizerConfig(tokenizer: BpeTokenizer, config: GPT2Config): Record<string, unknown> {
  return {
    tokenizer_class: "PreTrainedTokenizerFast",
    model_max_length: config.contextLength,
    // Decoding gives back the text's bytes, spaces as they were.
    clean_up_tokenization_spaces: false,
    add_prefix_space: tokenizer.addPrefixSpace,
    ...specialTokensMap(tokenizer),
    added_tokens_decoder: Object.fromEntries(
      tokenizer.addedTokens.map((token) => [String(token.id), {
        content: token.content,
        lstrip: false,
        normalized: false,
        rstrip: false,
        single_word: false,
        special: token.special,
      }]),
    ),
    ...(hasChatMl(tokenizer) ? { chat_template: CHATML_TEMPLATE } : {}),
  };
}

/** `generation_config.json`: the token ids, and the sampling `test_pretrained` uses. */
function generationConfig(ids: HfTokenIds): Record<string, unknown> {
  return {
    bos_token_id: ids.bos ?? null,
    eos_token_id: ids.eos.length === 1 ? ids.eos[0] : ids.eos,
    pad_token_id: ids.pad ?? null,
    do_sample: true,
    temperature: 0.8,
    top_k: 50,
    top_p: 0.95,
  };
}

/** Refuses a weight float16 cannot hold (it would become infinity), naming it. */
function checkFloat16Range(
  config: GPT2Config,
  tensors: ReadonlyMap<string, { data: Float32Array }>,
): void {
  for (const { ours: name } of hfTensorSpecs(config)) {
    const { data } = tensors.get(name)!;
    const index = data.findIndex((value) => Math.abs(value) > 65504);
    if (index >= 0) {
      throw new Error(
        `${name}[${index}] is ${data[index]}, past float16's largest value 65504; export with ` +
          "--dtype bfloat16 (float32's range) or float32.",
      );
    }
  }
}

/**
 * How far the logits of the `exported` weights (as read back from a 16-bit file) are from those
 * of the `reference` float32 weights, on `ids` (cut to the context).
 */
export async function measurePrecisionLoss(
  gpu: Gpu,
  config: GPT2Config,
  reference: Map<string, { shape: number[]; data: Float32Array }>,
  exported: Map<string, { shape: number[]; data: Float32Array }>,
  ids: readonly number[],
): Promise<PrecisionLoss> {
  const prompt = Int32Array.from(ids.slice(0, config.contextLength));
  const exact = await logitsOf(gpu, config, reference, prompt);
  const half = await logitsOf(gpu, config, exported, prompt);
  let maxAbs = 0, sum = 0, maxLogit = 0;
  for (let i = 0; i < exact.length; i++) {
    const difference = Math.abs(exact[i] - half[i]);
    maxAbs = Math.max(maxAbs, difference);
    sum += difference;
    maxLogit = Math.max(maxLogit, Math.abs(exact[i]));
  }
  return { tokens: prompt.length, maxAbs, meanAbs: sum / exact.length, maxLogit };
}

/** The logits (T, V) of a model holding `tensors` for one row of ids. */
async function logitsOf(
  gpu: Gpu,
  config: GPT2Config,
  tensors: Map<string, { shape: number[]; data: Float32Array }>,
  ids: Int32Array,
): Promise<Float32Array> {
  const model = GPT2.fromWeights(gpu, config, tensors);
  const tape = new Tape(gpu);
  try {
    const logits = await model.forward(tape, {
      ids,
      buffer: gpu.upload(ids),
      batch: 1,
      time: ids.length,
    });
    return await logits.read();
  } finally {
    tape.dispose();
    model.dispose();
  }
}

const FLAGS = {
  checkpoint: {
    type: "string",
    default: "runs/main/model/checkpoint.safetensors",
    help: "the checkpoint to export (or a Hugging Face GPT-2 folder, to change its dtype)",
  },
  tokenizer: {
    type: "string",
    default: "runs/main/tokenizer",
    help: "its tokenizer: a folder holding tokenizer.json, or the file",
  },
  out: { type: "string", help: "the folder to write (required), such as out/hf-model" },
  dtype: {
    type: "string",
    default: "float32",
    help: `the weights' dtype: ${HF_DTYPES.join(", ")} (16-bit: half the size)`,
  },
  force: {
    type: "boolean",
    default: false,
    help: "write into an --out folder that holds other files (they stay)",
  },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task export --out DIR [options]", FLAGS);
    if (!values) return;
    if (!values.out) {
      throw new Error("--out is required: the folder to write, such as --out out/hf-model.");
    }
    const result = await exportHuggingFace({
      checkpoint: values.checkpoint,
      tokenizer: values.tokenizer,
      out: values.out,
      dtype: values.dtype as HfDtype,
      force: values.force,
    });
    const { config, precision } = result;
    console.log(
      `Wrote ${result.out} (${result.dtype}; ${config.nLayer} layers, width ${config.nEmbd}, ` +
        `vocabulary ${config.vocabSize}; model.safetensors ` +
        `${(result.weightBytes / 1e6).toFixed(1)} MB): ${HF_EXPORT_FILES.join(", ")}.`,
    );
    if (precision) {
      console.log(
        `${result.dtype} vs float32 logits on a fixed prompt of ${precision.tokens} tokens: ` +
          `max |difference| ${precision.maxAbs.toPrecision(3)}, mean ` +
          `${precision.meanAbs.toPrecision(3)} (largest logit ${precision.maxLogit.toFixed(2)}).`,
      );
    }
    console.log(`Load it with GPT2LMHeadModel.from_pretrained("${result.out}").`);
  });
}
