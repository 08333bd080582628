/**
 * An LLM built from scratch on WebGPU, in TypeScript on Deno: hand-written WGSL kernels under a
 * small autograd engine, GPT-2 layers, a from-scratch byte-level BPE trainer, and the pipeline
 * from raw English text to a model one can chat with.
 *
 * @example
 * ```ts
 * import { acquireGpu, matmul } from "./mod.ts";
 *
 * // out (2, 2) = A (2, 3) · B (3, 2), on whatever WebGPU adapter the machine has.
 * const gpu = await acquireGpu();
 * const a = gpu.upload(new Float32Array([1, 2, 3, 4, 5, 6]));
 * const b = gpu.upload(new Float32Array([1, 0, 0, 1, 1, 1]));
 * const out = gpu.acquire(4 * 4);
 * await matmul(gpu, out, a, b, { m: 2, n: 2, k: 3 });
 * console.log(await gpu.readF32(out, 4)); // Float32Array [4, 5, 10, 11]
 * ```
 *
 * The pipeline from text to a chat model is a function per stage, from `prepareDataset` to
 * `testInstruct`; `runMainJob` runs them all within a time budget (`deno task train`).
 *
 * @module
 */

// Device: the WebGPU adapter and device, buffers, and reading results back.
export * from "./kernels/device.ts";

// Kernels: one WGSL kernel family per file, each launcher beside its CPU reference.
export type { ElementwiseConstants } from "./kernels/_parts.ts";
export * from "./kernels/accumulate.ts";
export * from "./kernels/adamw.ts";
export * from "./kernels/attention.ts";
export * from "./kernels/attention_decode.ts";
export * from "./kernels/attention_layout.ts";
export * from "./kernels/attention_naive.ts";
export * from "./kernels/bias_grad.ts";
export * from "./kernels/cross_entropy.ts";
export * from "./kernels/embedding.ts";
export * from "./kernels/gelu.ts";
export * from "./kernels/grad_norm.ts";
export * from "./kernels/layernorm.ts";
export * from "./kernels/matmul.ts";
export * from "./kernels/matmul_naive.ts";
export * from "./kernels/muon.ts";
export * from "./kernels/residual.ts";
export * from "./kernels/types.ts";

// Engine and model: tensors on a tape, the ops, GPT-2, optimizers, checkpoints, generation.
export * from "./nn/accumulated_step.ts";
export * from "./nn/batch.ts";
export * from "./nn/checked_step.ts";
export * from "./nn/checkpoint.ts";
export * from "./nn/config.ts";
export * from "./nn/generate.ts";
export * from "./nn/gpt2.ts";
export * from "./nn/kv_cache.ts";
export * from "./nn/muon.ts";
export * from "./nn/muon_adamw.ts";
export * from "./nn/ops.ts";
export * from "./nn/optimizer.ts";
export * from "./nn/random.ts";
export * from "./nn/safetensors.ts";
export * from "./nn/sampling.ts";
export * from "./nn/schedule.ts";
export * from "./nn/tape.ts";
export * from "./nn/tensor.ts";

// Tokenizer: byte-level BPE, trained from scratch, read and written as Hugging Face JSON.
export * from "./tokenizer/mod.ts";

// Pipeline: a function per stage, from raw text to a chat model, and the main job over them all.
export * from "./pipeline/batches.ts";
export * from "./pipeline/budget.ts";
export * from "./pipeline/bundled_data.ts";
export * from "./pipeline/chat.ts";
export * from "./pipeline/chatml.ts";
export * from "./pipeline/compute_params.ts";
export * from "./pipeline/eval.ts";
export * from "./pipeline/eval_prompts.ts";
export * from "./pipeline/eval_scores.ts";
export * from "./pipeline/finetune_instruct.ts";
export * from "./pipeline/hub.ts";
export * from "./pipeline/plan.ts";
export * from "./pipeline/prepare_dataset.ts";
export * from "./pipeline/prepare_dataset_instruct.ts";
export * from "./pipeline/pretraining_source.ts";
export * from "./pipeline/report.ts";
export * from "./pipeline/test_instruct.ts";
export * from "./pipeline/test_pretrained.ts";
export * from "./pipeline/text_source.ts";
export * from "./pipeline/throughput_probe.ts";
export * from "./pipeline/token_rows.ts";
export * from "./pipeline/tokenize_dataset.ts";
export * from "./pipeline/train.ts";
export {
  type FinalMix,
  meanOfLast,
  type StepLog,
  type StopReason,
  TRAIN_DEFAULTS,
  trainModel,
  type TrainModelOptions,
  type TrainResult,
} from "./pipeline/train_model.ts";
export * from "./pipeline/train_tokenizer.ts";
export * from "./pipeline/validation_loss.ts";

// Util: files written atomically, checksums, and the lock that gives a run folder one owner.
export * from "./util/checksum.ts";
export * from "./util/files.ts";
export * from "./util/run_lock.ts";

// The Hugging Face GPT-2 format: `deno task export` writes a folder; every loader takes one.
export * from "./nn/half_float.ts";
export * from "./nn/hf_gpt2.ts";
export * from "./pipeline/export_hf.ts";
