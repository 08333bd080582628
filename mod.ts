/**
 * An LLM built from scratch on WebGPU, in TypeScript on Deno: hand-written WGSL kernels under a
 * small autograd engine, GPT-2 layers, a from-scratch byte-level BPE trainer, and the pipeline
 * from raw English text to a model one can chat with.
 *
 * @example
 * ```ts
 * import { acquireGpu, scaledAdd } from "./mod.ts";
 *
 * const gpu = await acquireGpu();
 * const a = gpu.upload(new Float32Array([1, 2, 3]));
 * const b = gpu.upload(new Float32Array([10, 20, 30]));
 * const out = gpu.acquire(3 * 4);
 * await scaledAdd(gpu, out, a, b, 0.5, 3);
 * console.log(await gpu.readF32(out, 3)); // Float32Array [6, 12, 18]
 * ```
 *
 * @module
 */

export * from "./kernels/device.ts";
export * from "./kernels/scaled_add.ts";

export * from "./pipeline/text_source.ts";
export * from "./pipeline/hub.ts";
export * from "./pipeline/prepare_dataset.ts";
export * from "./nn/config.ts";
export * from "./pipeline/compute_params.ts";
export * from "./tokenizer/mod.ts";
export * from "./pipeline/train_tokenizer.ts";
export * from "./pipeline/tokenize_dataset.ts";
export * from "./nn/random.ts";
export * from "./nn/safetensors.ts";
export * from "./nn/schedule.ts";
export * from "./nn/sampling.ts";
export * from "./pipeline/batches.ts";
export * from "./nn/tensor.ts";
export * from "./nn/tape.ts";
export * from "./nn/ops.ts";
export * from "./nn/gpt2.ts";
export * from "./nn/optimizer.ts";
export * from "./nn/checkpoint.ts";
export * from "./nn/generate.ts";
export * from "./pipeline/train_model.ts";
export * from "./pipeline/test_pretrained.ts";
export * from "./pipeline/train.ts";
export * from "./pipeline/token_rows.ts";
export * from "./pipeline/chatml.ts";
export * from "./pipeline/prepare_dataset_instruct.ts";
export * from "./pipeline/finetune_instruct.ts";
export * from "./pipeline/test_instruct.ts";
