/**
 * Checkpoints: a model's weights (and, for resuming, the optimizer's moments and the training
 * position) in one safetensors file, written atomically. The metadata carries the model
 * configuration, so a checkpoint is all `test_pretrained` needs besides the tokenizer.
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import type { GPT2Config } from "./config.ts";
import { GPT2 } from "./gpt2.ts";
import { type NamedTensor, readSafetensors, writeSafetensors } from "./safetensors.ts";

/** What a checkpoint holds besides tensors. */
export interface CheckpointInfo {
  /** The model's shape, stored in the file's metadata. */
  config: GPT2Config;
  /** Optimizer steps taken. */
  step: number;
  /** Anything else the trainer needs to resume (sampler position, settings), as JSON. */
  training?: Record<string, unknown>;
}

/** A loaded checkpoint. */
export interface LoadedCheckpoint extends CheckpointInfo {
  /** The model, its weights uploaded to the GPU; the caller disposes it. */
  model: GPT2;
  /** Every tensor of the file (weights and optimizer moments), for the optimizer's `load`. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

/** Writes the model (and the optimizer's moments, if given) to `path`, atomically. */
export async function saveCheckpoint(
  path: string,
  model: GPT2,
  info: CheckpointInfo,
  optimizer?: { state(): Promise<NamedTensor[]> },
): Promise<void> {
  const tensors: NamedTensor[] = [];
  for (const [name, param] of model.params) {
    tensors.push({ name, shape: [...param.shape], data: await param.read() });
  }
  if (optimizer) tensors.push(...await optimizer.state());
  await writeSafetensors(path, tensors, {
    format: "webgpu-llm gpt2",
    layout: "weights (out, in) as in llm.c",
    config: JSON.stringify(info.config),
    step: String(info.step),
    training: JSON.stringify(info.training ?? {}),
  });
}

/** Loads a checkpoint written by {@linkcode saveCheckpoint} onto the GPU. */
export async function loadCheckpoint(gpu: Gpu, path: string): Promise<LoadedCheckpoint> {
  const file = await readSafetensors(path);
  const { metadata } = file;
  if (!metadata.config) {
    throw new Error(`${path} has no model configuration; it was not written by train_model.`);
  }
  const config = JSON.parse(metadata.config) as GPT2Config;
  return {
    config,
    step: Number(metadata.step ?? 0),
    training: JSON.parse(metadata.training ?? "{}"),
    model: GPT2.fromWeights(gpu, config, file.tensors),
    tensors: file.tensors,
  };
}
