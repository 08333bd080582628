/**
 * Checkpoints: a model's weights (and, for resuming, the optimizer's moments and the training
 * position) in one safetensors file, written atomically. The metadata carries the model
 * configuration, so a checkpoint is all `test_pretrained` needs besides the tokenizer.
 *
 * What is kept safe: a checkpoint never holds a NaN or an infinity (saving refuses, naming the
 * tensor); the one it replaces stays beside it as `<name>.prev.safetensors`, and a kill at any
 * moment leaves at least one loadable checkpoint; the data's checksum is verified on load, and a
 * checkpoint that fails to load points to the previous one.
 *
 * Loading also takes a Hugging Face GPT-2 folder in place of a checkpoint file
 * ({@linkcode readCheckpoint}), so public GPT-2 weights and exported models start a run too.
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import type { GPT2Config } from "./config.ts";
import { GPT2 } from "./gpt2.ts";
import { isHfModelFolder, readHfGpt2 } from "./hf_gpt2.ts";
import {
  type NamedTensor,
  parseSafetensors,
  readSafetensors,
  type SafetensorsFile,
  writeSafetensors,
} from "./safetensors.ts";

/** What a checkpoint holds besides tensors. */
export interface CheckpointInfo {
  /** The model's shape, stored in the file's metadata. */
  config: GPT2Config;
  /** Optimizer steps taken. */
  step: number;
  /** Anything else the trainer needs to resume (sampler position, settings), as JSON. */
  training?: Record<string, unknown>;
}

/** A checkpoint read into memory (nothing on the GPU yet). */
export interface CheckpointWeights extends CheckpointInfo {
  /**
   * Every tensor of the file (weights and optimizer moments), by this project's names, weights
   * `(out, in)`, float32.
   */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

/** A loaded checkpoint. */
export interface LoadedCheckpoint extends CheckpointWeights {
  /** The model, its weights uploaded to the GPU; the caller disposes it. */
  model: GPT2;
}

/** Thrown by {@linkcode saveCheckpoint}, which writes nothing, when a tensor is not finite. */
export class NonFiniteCheckpointError extends Error {
  /** The checkpoint not written, its step, and the first non-finite value found. */
  constructor(
    readonly path: string,
    readonly step: number,
    readonly tensor: string,
    readonly index: number,
    readonly value: number,
  ) {
    super(
      `Not saving the checkpoint of step ${step}: ${tensor}[${index}] is ${value}; ${path} ` +
        "still holds the last good one, if there was one.",
    );
    this.name = "NonFiniteCheckpointError";
  }
}

/** Options of {@linkcode saveCheckpoint}. */
export interface SaveCheckpointOptions {
  /**
   * Keep the checkpoint being replaced as {@linkcode previousCheckpointPath} (the one before it
   * is dropped). Default true.
   */
  keepPrevious?: boolean;
}

/** Where the checkpoint before `path` is kept: `checkpoint.safetensors` → `checkpoint.prev.safetensors`. */
export function previousCheckpointPath(path: string): string {
  return path.endsWith(".safetensors")
    ? `${path.slice(0, -".safetensors".length)}.prev.safetensors`
    : `${path}.prev`;
}

/**
 * Writes the model (and the optimizer's moments, if given) to `path`, atomically, keeping the
 * checkpoint it replaces as {@linkcode previousCheckpointPath}.
 *
 * @throws {NonFiniteCheckpointError} when a weight or moment is not finite (NaN or infinite):
 *   such a checkpoint could only spread the NaN to every run that resumed from it, so nothing is
 *   written and the last good checkpoint stays.
 */
export async function saveCheckpoint(
  path: string,
  model: GPT2,
  info: CheckpointInfo,
  optimizer?: { state(): Promise<NamedTensor[]> },
  options: SaveCheckpointOptions = {},
): Promise<void> {
  const tensors: NamedTensor[] = [];
  for (const [name, param] of model.params) {
    tensors.push({ name, shape: [...param.shape], data: await param.read() });
  }
  if (optimizer) tensors.push(...await optimizer.state());
  for (const { name, data } of tensors) {
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new NonFiniteCheckpointError(path, info.step, name, bad, data[bad]);
  }
  if (options.keepPrevious ?? true) await keepAsPrevious(path);
  await writeSafetensors(path, tensors, {
    format: "webgpu-llm gpt2",
    layout: "weights (out, in) as in llm.c",
    config: JSON.stringify(info.config),
    step: String(info.step),
    training: JSON.stringify(info.training ?? {}),
  });
}

/**
 * Makes the file at `path` (if any) also the previous checkpoint, before a new one is renamed
 * over `path`: a hard link (no copy) under a temporary name, renamed over the old previous one.
 * `path` itself is never absent, so a kill at any moment leaves a loadable checkpoint there.
 */
async function keepAsPrevious(path: string): Promise<void> {
  const previous = previousCheckpointPath(path);
  const temporary = `${previous}.partial`;
  await Deno.remove(temporary).catch(() => {});
  try {
    await Deno.link(path, temporary);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return; // the first checkpoint
    // A file system without hard links: a copy does the same, slower.
    await Deno.copyFile(path, temporary);
  }
  await Deno.rename(temporary, previous);
}

/**
 * Reads a checkpoint into memory: a file written by {@linkcode saveCheckpoint}, or a Hugging Face
 * GPT-2 folder (`config.json` and `model.safetensors`, as `deno task export` or `transformers`'
 * `save_pretrained` write it), converted to this project's names and layout at step 0. Every
 * command that takes a checkpoint reads it here, so each takes either.
 *
 * @throws an error naming the file when it cannot be read, is corrupt (its checksum does not
 *   match) or was not written by train_model; when a previous checkpoint lies beside it, the
 *   message says which step that one holds and how to resume from it. For a folder, an error
 *   naming the file and the tensor or field when it is not a GPT-2 this project can run.
 */
export async function readCheckpoint(path: string): Promise<CheckpointWeights> {
  if (await isHfModelFolder(path)) {
    const { config, tensors } = await readHfGpt2(path);
    return { config, step: 0, training: {}, tensors };
  }
  if ((await Deno.stat(path).catch(() => null))?.isDirectory) {
    throw new Error(
      `${path} is a folder without config.json; pass a checkpoint file (such as ` +
        `${path.replace(/\/$/, "")}/checkpoint.safetensors) or a Hugging Face GPT-2 folder ` +
        "(config.json and model.safetensors).",
    );
  }
  let file;
  try {
    file = await readSafetensors(path);
  } catch (error) {
    throw new Error(`${(error as Error).message}${await previousOffer(path)}`);
  }
  return checkpointOf(file, path);
}

/**
 * A checkpoint from the bytes of its file (as {@linkcode saveCheckpoint} writes it), for a
 * browser page, which fetches bytes rather than opening a path; `path` names the file in the
 * errors, which are those of {@linkcode readCheckpoint} for a file.
 */
export function parseCheckpoint(bytes: Uint8Array, path: string): CheckpointWeights {
  return checkpointOf(parseSafetensors(bytes, path), path);
}

/** The checkpoint a parsed safetensors file holds; throws when its metadata has no model. */
function checkpointOf(file: SafetensorsFile, path: string): CheckpointWeights {
  const { metadata } = file;
  if (!metadata.config) {
    throw new Error(`${path} has no model configuration; it was not written by train_model.`);
  }
  return {
    config: parseMetadata<GPT2Config>(path, "config", metadata.config),
    step: Number(metadata.step ?? 0),
    training: parseMetadata(path, "training", metadata.training ?? "{}"),
    tensors: file.tensors,
  };
}

/**
 * Loads a checkpoint onto the GPU: a file written by {@linkcode saveCheckpoint} or a Hugging Face
 * GPT-2 folder; see {@linkcode readCheckpoint}, which throws the same errors.
 */
export async function loadCheckpoint(gpu: Gpu, path: string): Promise<LoadedCheckpoint> {
  const checkpoint = await readCheckpoint(path);
  return { ...checkpoint, model: GPT2.fromWeights(gpu, checkpoint.config, checkpoint.tensors) };
}

/** A metadata entry's JSON, its parse error naming the file and the entry. */
function parseMetadata<T>(path: string, key: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new Error(
      `${path} has a damaged "${key}" entry in its metadata (${(error as Error).message}); ` +
        "use an intact copy of the checkpoint.",
    );
  }
}

/**
 * The sentence offering the previous checkpoint of `path`, when one lies beside it and loads;
 * empty otherwise.
 */
async function previousOffer(path: string): Promise<string> {
  const previous = previousCheckpointPath(path);
  if (!(await Deno.stat(previous).then((info) => info.isFile, () => false))) return "";
  try {
    const { metadata } = await readSafetensors(previous);
    const step = metadata.step === undefined ? "" : ` (step ${metadata.step})`;
    return ` The previous checkpoint ${previous}${step} is intact: to go on from it, move it ` +
      `over the damaged one (mv ${previous} ${path}) and run again.`;
  } catch {
    return ` The previous checkpoint ${previous} is damaged too.`;
  }
}
