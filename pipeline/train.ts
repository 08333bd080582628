/**
 * The main job, `deno task train`: every pretraining stage in order, from raw text to a model
 * that completes a prompt. Each stage writes into the work folder and is skipped when its output
 * is already there, so an interrupted run picks up where it stopped (training itself resumes
 * from its checkpoint).
 *
 *     deno task train                                       # FineWeb sample-10BT from the hub
 *     deno task train --data ../shared/data/simple-stories.txt --context 128 --steps 2000
 *
 * @module
 */

import { parseArgs } from "node:util";
import { acquireGpu } from "../kernels/device.ts";
import { gpt2ParameterCount } from "../nn/config.ts";
import { formatSizing, suggestModel } from "./compute_params.ts";
import { FINEWEB_SAMPLE_10BT, prepareDataset } from "./prepare_dataset.ts";
import { testPretrained } from "./test_pretrained.ts";
import { type DocumentMethod, tokenizeDataset } from "./tokenize_dataset.ts";
import { loadTokenizedDataset } from "./token_rows.ts";
import { trainModel } from "./train_model.ts";
import { trainTokenizer } from "./train_tokenizer.ts";
import { interruptSignal, intFlag, numberFlag, runCli } from "./_cli.ts";

/** Options of {@linkcode runPretraining}. */
export interface PretrainingOptions {
  /** A local corpus (file or folder); FineWeb `sample-10BT` from the hub when absent. */
  data?: string;
  /** The work folder every stage writes into. Default `runs/main`. */
  work?: string;
  /** Documents to take. Default 10,000. */
  rows?: number;
  /** Tokenizer vocabulary. Default 8192. */
  vocabSize?: number;
  /** Tokens per row and the model's context. Default 1024. */
  context?: number;
  /** How documents become rows. Default `concat`. */
  method?: DocumentMethod;
  /** Transformer blocks; by default the shape Chinchilla's rule suggests for the data. */
  nLayer?: number;
  /** Attention heads; by default as suggested. */
  nHead?: number;
  /** Residual width, a multiple of `nHead`; by default as suggested. */
  nEmbd?: number;
  /** Rows per step. Default 8. */
  batchSize?: number;
  /** Training steps. Default: one pass over the data. */
  steps?: number;
  /** Peak learning rate. Default 1e-3. */
  lr?: number;
  /** The prompt completed at the end. */
  prompt?: string;
  /** Stops after the running stage (training: after its step, saving a checkpoint). */
  signal?: AbortSignal;
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

/** Runs prepare → tokenizer → tokenize → size → train → complete; see the module doc. */
export async function runPretraining(options: PretrainingOptions = {}): Promise<string> {
  const work = options.work ?? "runs/main";
  const paths = {
    dataset: `${work}/dataset.jsonl`,
    tokenizer: `${work}/tokenizer`,
    tokenized: `${work}/tokenized`,
    model: `${work}/model`,
  };
  const stage = (name: string, skipped: boolean) =>
    console.error(`\n== ${name}${skipped ? " (done already, skipped)" : ""}`);
  // Ctrl-C lets the running stage finish (training: its step and a checkpoint), then stops here.
  const stopped = () => {
    if (!options.signal?.aborted) return false;
    console.error("stopped; run the same command again to resume");
    return true;
  };

  const haveDataset = await exists(paths.dataset);
  stage(`prepare_dataset: ${options.data ?? "FineWeb sample-10BT from the hub"}`, haveDataset);
  if (!haveDataset) {
    await prepareDataset({
      data: options.data,
      hub: FINEWEB_SAMPLE_10BT,
      rows: options.rows ?? 10_000,
      out: paths.dataset,
    });
  }

  if (stopped()) return "";
  const haveTokenizer = await exists(`${paths.tokenizer}/tokenizer.json`);
  stage("train_tokenizer", haveTokenizer);
  if (!haveTokenizer) {
    await trainTokenizer({
      data: paths.dataset,
      vocabSize: options.vocabSize ?? 8192,
      out: paths.tokenizer,
    });
  }

  if (stopped()) return "";
  const haveTokenized = await exists(`${paths.tokenized}/meta.json`);
  stage("tokenize_dataset", haveTokenized);
  if (!haveTokenized) {
    await tokenizeDataset({
      data: paths.dataset,
      tokenizer: paths.tokenizer,
      method: options.method ?? "concat",
      contextLength: options.context ?? 1024,
      out: paths.tokenized,
    });
  }
  const { meta } = await loadTokenizedDataset(paths.tokenized);

  if (stopped()) return "";
  stage("compute_params", false);
  const sizing = suggestModel(meta.tokens, {
    vocabSize: meta.vocabSize,
    contextLength: meta.contextLength,
  });
  console.error(formatSizing(meta.tokens, sizing));
  const shape = {
    nLayer: options.nLayer ?? sizing.config.nLayer,
    nHead: options.nHead ?? sizing.config.nHead,
    nEmbd: options.nEmbd ?? sizing.config.nEmbd,
  };
  const parameters = gpt2ParameterCount({ ...sizing.config, ...shape }).total;
  console.error(
    `training: n_layer=${shape.nLayer} n_head=${shape.nHead} n_embd=${shape.nEmbd} ` +
      `(${(parameters / 1e6).toFixed(2)}M parameters)`,
  );

  stage("train_model", false);
  const batchSize = options.batchSize ?? 8;
  const gpu = await acquireGpu();
  const result = await trainModel({
    gpu,
    data: paths.tokenized,
    out: paths.model,
    ...shape,
    batchSize,
    steps: options.steps ?? Math.max(1, Math.floor(meta.rows / batchSize)),
    lr: options.lr,
    signal: options.signal,
  });

  if (stopped()) return "";
  const prompt = options.prompt ?? "Once upon a time";
  stage(`test_pretrained: "${prompt}"`, false);
  const completion = await testPretrained({
    gpu,
    checkpoint: result.checkpoint,
    tokenizer: paths.tokenizer,
    prompt,
    maxNewTokens: 60,
    temperature: 0.8,
    topK: 50,
  });
  console.log(prompt + completion);
  return completion;
}

if (import.meta.main) {
  await runCli(async () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        data: { type: "string" },
        work: { type: "string", default: "runs/main" },
        rows: { type: "string", default: "10000" },
        "vocab-size": { type: "string", default: "8192" },
        context: { type: "string", default: "1024" },
        method: { type: "string", default: "concat" },
        layers: { type: "string" },
        heads: { type: "string" },
        embd: { type: "string" },
        "batch-size": { type: "string", default: "8" },
        steps: { type: "string" },
        lr: { type: "string", default: "1e-3" },
        prompt: { type: "string", default: "Once upon a time" },
      },
    });
    const optional = (name: string, value: string | undefined) =>
      value === undefined ? undefined : intFlag(name, value);
    const signal = interruptSignal();
    await runPretraining({
      data: values.data,
      work: values.work,
      rows: intFlag("rows", values.rows),
      vocabSize: intFlag("vocab-size", values["vocab-size"]),
      context: intFlag("context", values.context, 2),
      method: values.method as DocumentMethod,
      nLayer: optional("layers", values.layers),
      nHead: optional("heads", values.heads),
      nEmbd: optional("embd", values.embd),
      batchSize: intFlag("batch-size", values["batch-size"]),
      steps: optional("steps", values.steps),
      lr: numberFlag("lr", values.lr),
      prompt: values.prompt,
      signal,
    });
  });
}
