/**
 * The Hugging Face `transformers` GPT-2 format (`GPT2LMHeadModel`), in and out: a folder holding
 * `config.json` (`model_type: "gpt2"`) and `model.safetensors`.
 *
 * The file names the tensors `transformer.wte.weight`, `transformer.h.0.attn.c_attn.weight`, ...,
 * `transformer.ln_f.bias` (checkpoints saved from `GPT2Model`, and OpenAI's GPT-2 on the hub, have
 * no `transformer.` prefix). The linear layers are `Conv1D` modules, whose weight is stored
 * `(in, out)`: `c_attn` `(C, 3C)`, `attn.c_proj` `(C, C)`, `c_fc` `(C, 4C)`, `mlp.c_proj`
 * `(4C, C)`; this project stores `(out, in)` as llm.c does, so each is transposed on the way. The
 * output head `lm_head.weight` is tied to `wte` (`tie_word_embeddings`), and `save_pretrained`
 * leaves it out of the file; old files also hold the attention mask buffers `attn.bias` and
 * `attn.masked_bias`, which are not weights.
 *
 * @module
 */

import { LAYERNORM_EPS } from "../kernels/layernorm.ts";
import { writeAll, writeFileAtomic } from "../util/files.ts";
import { type GPT2Config, validateConfig } from "./config.ts";
import { gpt2ParameterSpecs } from "./gpt2.ts";
import { type HalfFormat, toHalfBits } from "./half_float.ts";
import { readSafetensors, safetensorsHeaderBytes } from "./safetensors.ts";

/** The weights file of a Hugging Face model folder. */
export const HF_WEIGHTS_FILE = "model.safetensors";
/** The configuration file of a Hugging Face model folder. */
export const HF_CONFIG_FILE = "config.json";

/** The prefix `GPT2LMHeadModel` puts before the names of its `GPT2Model`'s tensors. */
const PREFIX = "transformer.";

/** Tensors of a file that are not weights of the model: GPT-2's causal-mask buffers. */
const BUFFER_NAME = /^h\.\d+\.attn\.(bias|masked_bias)$/;

/** Float data types of the exported weights. */
export type HfDtype = "float32" | HalfFormat;

/** The safetensors dtype tag of each {@linkcode HfDtype}. */
const SAFETENSORS_DTYPE: Record<HfDtype, string> = {
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
};

/** One tensor of the Hugging Face layout and where it comes from in this project's layout. */
export interface HfTensorSpec {
  /** The name in `model.safetensors`, e.g. `transformer.h.0.attn.c_attn.weight`. */
  name: string;
  /** Its shape there: `Conv1D` weights `(in, out)`. */
  shape: number[];
  /** This project's parameter, e.g. `h.0.attn.c_attn.weight`, stored `(out, in)`. */
  ours: string;
  /** Whether the two layouts are transposes of each other (the `Conv1D` weights). */
  transposed: boolean;
}

/** The tensors of a GPT-2 folder as `save_pretrained` writes them, in this project's order. */
export function hfTensorSpecs(config: GPT2Config): HfTensorSpec[] {
  return gpt2ParameterSpecs(config).map(({ name, shape }) => {
    // The Conv1D weights are the 2-D ones inside the blocks; wte and wpe are (rows, C) in both.
    const transposed = name.startsWith("h.") && shape.length === 2;
    const hfName = name === "wte" || name === "wpe" ? `${name}.weight` : name;
    return {
      name: PREFIX + hfName,
      shape: transposed ? [shape[1], shape[0]] : [...shape],
      ours: name,
      transposed,
    };
  });
}

/** A row-major `(rows, cols)` matrix transposed to `(cols, rows)`. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  }
  return out;
}

/** The token ids `config.json` and `generation_config.json` name. */
export interface HfTokenIds {
  /** Beginning of text, when the tokenizer has one. */
  bos?: number;
  /** End of text: the model stops after it; a chat model's `<|im_end|>` first. */
  eos: number[];
  /** Padding, when the tokenizer has one. */
  pad?: number;
}

/**
 * `config.json` for a `GPT2LMHeadModel` of `config`: GPT-2's documented fields, with this
 * project's numerics (`gelu_new`, the tanh GELU; layernorm epsilon 1e-5; attention scaled by
 * 1/√head size; a tied output head). Dropout is 0, as the model was trained.
 */
export function hfGpt2Config(
  config: GPT2Config,
  ids: HfTokenIds,
  dtype: HfDtype,
): Record<string, unknown> {
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    vocab_size: config.vocabSize,
    n_positions: config.contextLength,
    n_ctx: config.contextLength,
    n_embd: config.nEmbd,
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_inner: null,
    activation_function: "gelu_new",
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    layer_norm_epsilon: LAYERNORM_EPS,
    initializer_range: 0.02,
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: false,
    tie_word_embeddings: true,
    use_cache: true,
    bos_token_id: ids.bos ?? null,
    eos_token_id: ids.eos[0],
    pad_token_id: ids.pad ?? null,
    torch_dtype: dtype,
  };
}

/**
 * Writes the model's weights as a Hugging Face GPT-2 `model.safetensors` at `path`, atomically:
 * the names and `(in, out)` layout of {@linkcode hfTensorSpecs}, in `dtype` (16-bit formats
 * rounded to nearest even), with the `{"format": "pt"}` metadata `transformers` requires.
 */
export async function writeHfSafetensors(
  path: string,
  config: GPT2Config,
  weights: ReadonlyMap<string, { shape: number[]; data: Float32Array }>,
  dtype: HfDtype,
): Promise<void> {
  const specs = hfTensorSpecs(config);
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  const width = dtype === "float32" ? 4 : 2;
  let offset = 0;
  for (const spec of specs) {
    const elements = spec.shape.reduce((a, b) => a * b, 1);
    const weight = weights.get(spec.ours);
    if (!weight || weight.data.length !== elements) {
      throw new Error(`The model's ${spec.ours} is missing or not of shape [${spec.shape}].`);
    }
    header[spec.name] = {
      dtype: SAFETENSORS_DTYPE[dtype],
      shape: spec.shape,
      data_offsets: [offset, offset + elements * width],
    };
    offset += elements * width;
  }
  await writeFileAtomic(path, async (file) => {
    await writeAll(file, safetensorsHeaderBytes(header));
    // One tensor converted at a time: the 16-bit copy of GPT-2's embedding alone is 77 MB.
    for (const spec of specs) {
      const { shape, data } = weights.get(spec.ours)!;
      const values = spec.transposed ? transpose(data, shape[0], shape[1]) : data;
      const encoded = dtype === "float32" ? values : toHalfBits(values, dtype);
      await writeAll(file, new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength));
    }
  });
}

/** A Hugging Face GPT-2 folder read into this project's names and layout. */
export interface HfGpt2Weights {
  /** The model's shape, from `config.json`. */
  config: GPT2Config;
  /** The parameters by this project's names, weights `(out, in)`, float32. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

/** Whether `path` is a folder holding a `config.json` (a Hugging Face model folder, maybe). */
export async function isHfModelFolder(path: string): Promise<boolean> {
  const info = await Deno.stat(path).catch(() => null);
  if (!info?.isDirectory) return false;
  return (await Deno.stat(`${path}/${HF_CONFIG_FILE}`).catch(() => null))?.isFile ?? false;
}

/**
 * Reads a Hugging Face GPT-2 folder (`config.json` and `model.safetensors`, float32, float16 or
 * bfloat16; with or without the `transformer.` prefix and `lm_head.weight`) into this project's
 * names and `(out, in)` layout.
 *
 * @throws an error naming the file, and the tensor or field, when the folder is not a GPT-2 this
 *   project can run: another `model_type`, another activation or layernorm epsilon, an untied
 *   output head, a missing, unknown or misshapen tensor, a sharded or PyTorch-pickle checkpoint.
 */
export async function readHfGpt2(dir: string): Promise<HfGpt2Weights> {
  const configPath = `${dir}/${HF_CONFIG_FILE}`;
  const config = gpt2ConfigFrom(configPath, await readConfigJson(configPath));
  const weightsPath = `${dir}/${HF_WEIGHTS_FILE}`;
  if (!(await Deno.stat(weightsPath).catch(() => null))?.isFile) {
    throw new Error(await missingWeightsMessage(dir));
  }
  const file = await readSafetensors(weightsPath);
  // Names without the prefix, so files with and without it read alike.
  const byName = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, tensor] of file.tensors) {
    byName.set(name.startsWith(PREFIX) ? name.slice(PREFIX.length) : name, tensor);
  }
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const known = new Set<string>();
  for (const spec of hfTensorSpecs(config)) {
    const name = spec.name.slice(PREFIX.length);
    known.add(name);
    const tensor = byName.get(name);
    if (!tensor) {
      throw new Error(
        `${weightsPath} has no tensor ${spec.name} (nor ${name}), which a GPT-2 of ` +
          `${describe(config)} needs; the file is incomplete or of another model.`,
      );
    }
    if (tensor.shape.join() !== spec.shape.join()) {
      throw new Error(
        `${weightsPath}: tensor ${spec.name} has shape [${tensor.shape}], but ${configPath} ` +
          `(${describe(config)}) needs [${spec.shape}]` +
          (spec.transposed ? " (Conv1D weights are stored (in, out))" : "") +
          "; the weights and config.json do not belong together.",
      );
    }
    const [rows, cols] = tensor.shape;
    tensors.set(spec.ours, {
      shape: spec.transposed ? [cols, rows] : tensor.shape,
      data: spec.transposed ? transpose(tensor.data, rows, cols) : tensor.data,
    });
  }
  const head = byName.get("lm_head.weight");
  if (head) checkTiedHead(weightsPath, head, tensors.get("wte")!);
  const unknown = [...byName.keys()].filter((name) =>
    !known.has(name) && name !== "lm_head.weight" && !BUFFER_NAME.test(name)
  );
  if (unknown.length > 0) {
    const shown = unknown.slice(0, 3).join(", ") + (unknown.length > 3 ? ", ..." : "");
    throw new Error(
      `${weightsPath} holds tensors a GPT-2 language model does not have (${shown}); it is ` +
        "another architecture or a model with another head, which this project cannot run.",
    );
  }
  return { config, tensors };
}

async function readConfigJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`Could not read ${path}: ${(error as Error).message}.`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(
      `${path} is not valid JSON (${(error as Error).message}); use an intact copy of the folder.`,
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`${path} is not a JSON object; a model's config.json is one.`);
  }
  return json as Record<string, unknown>;
}

/**
 * This project's configuration from a GPT-2 `config.json`, after checking that its numerics are
 * this project's (a GPT-2 with other settings would load and quietly compute something else).
 */
function gpt2ConfigFrom(path: string, json: Record<string, unknown>): GPT2Config {
  if (json.model_type !== "gpt2") {
    throw new Error(
      `${path} has model_type ${JSON.stringify(json.model_type ?? null)}; only GPT-2 ` +
        `("gpt2") folders load here.`,
    );
  }
  const field = (name: string, fallback?: string): number => {
    const value = json[name] ?? (fallback === undefined ? undefined : json[fallback]);
    if (!(Number.isInteger(value) && (value as number) > 0)) {
      throw new Error(
        `${path}: ${name} must be a positive whole number, got ${JSON.stringify(value ?? null)}.`,
      );
    }
    return value as number;
  };
  const config: GPT2Config = {
    vocabSize: field("vocab_size"),
    contextLength: field("n_positions", "n_ctx"),
    nLayer: field("n_layer"),
    nHead: field("n_head"),
    nEmbd: field("n_embd"),
  };
  const refuse = (name: string, why: string): never => {
    throw new Error(
      `${path}: ${name} is ${JSON.stringify(json[name])}; ${why}, so this project cannot run ` +
        "the model as trained.",
    );
  };
  const activation = json.activation_function ?? "gelu_new";
  if (activation !== "gelu_new" && activation !== "gelu_pytorch_tanh") {
    refuse("activation_function", "the MLP here uses the tanh GELU (gelu_new)");
  }
  const epsilon = json.layer_norm_epsilon ?? LAYERNORM_EPS;
  if (typeof epsilon !== "number" || Math.abs(epsilon - LAYERNORM_EPS) > 1e-12) {
    refuse("layer_norm_epsilon", `the layernorm here adds ${LAYERNORM_EPS}`);
  }
  if (json.n_inner != null && json.n_inner !== 4 * config.nEmbd) {
    refuse("n_inner", `the MLP here is 4 × n_embd (${4 * config.nEmbd}) wide`);
  }
  if (json.scale_attn_weights === false) {
    refuse("scale_attn_weights", "attention here is scaled by 1/√head size");
  }
  if (json.scale_attn_by_inverse_layer_idx === true) {
    refuse("scale_attn_by_inverse_layer_idx", "attention here is not scaled by layer");
  }
  if (json.add_cross_attention === true) {
    refuse("add_cross_attention", "the blocks here have no cross-attention");
  }
  try {
    validateConfig(config);
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message}`);
  }
  return config;
}

/** The error for a folder without `model.safetensors`, saying what it holds instead. */
async function missingWeightsMessage(dir: string): Promise<string> {
  const has = async (name: string) =>
    (await Deno.stat(`${dir}/${name}`).catch(() => null)) !== null;
  const start = `${dir} has no ${HF_WEIGHTS_FILE}`;
  if (await has("model.safetensors.index.json")) {
    return `${start}, only shards (model.safetensors.index.json): save it as one file ` +
      '(save_pretrained(folder, max_shard_size="10GB")).';
  }
  if (await has("pytorch_model.bin")) {
    return `${start}, only pytorch_model.bin: convert it with transformers ` +
      "(GPT2LMHeadModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)).";
  }
  return `${start}; a Hugging Face model folder holds config.json and ${HF_WEIGHTS_FILE}.`;
}

/** Refuses an output head that is not `wte`: the model here has only the tied one. */
function checkTiedHead(
  path: string,
  head: { shape: number[]; data: Float32Array },
  wte: { shape: number[]; data: Float32Array },
): void {
  const differs = head.shape.join() !== wte.shape.join() ||
    head.data.some((value, i) => value !== wte.data[i]);
  if (differs) {
    throw new Error(
      `${path}: tensor lm_head.weight is not transformer.wte.weight; this project's GPT-2 ties ` +
        "its output head to the token embedding and cannot run a separate head.",
    );
  }
}

function describe(config: GPT2Config): string {
  return `${config.nLayer} layers, width ${config.nEmbd}, vocabulary ${config.vocabSize}, ` +
    `context ${config.contextLength}`;
}
