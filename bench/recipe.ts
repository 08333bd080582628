/**
 * The main job's recipe, chosen by measurement: short pretraining runs that differ in one
 * setting each (model size, learning rate, schedule, batch, optimizer, data mix), every one given
 * the same wall-clock time on this machine, compared by the loss they reach on the same held-out
 * text.
 *
 * Equal time is turned into a number of steps before each run, from that variant's throughput
 * measured just before it (`measureTrainThroughput`): the runs then stop at a step count, so a
 * busy machine slows them without changing what they learn.
 * The results are appended to `<work>/results.jsonl` and printed as a Markdown table for
 * `docs/recipe.md`.
 *
 *     deno run -A bench/recipe.ts --minutes 3                # every variant, 3 minutes each
 *     deno run -A bench/recipe.ts --minutes 3 --only base,lr4e-3
 *
 * @module
 */

import { acquireGpu, type Gpu } from "../kernels/device.ts";
import { loadCheckpoint } from "../nn/checkpoint.ts";
import { BUNDLED_FINEWEB, BUNDLED_STORIES } from "../pipeline/bundled_data.ts";
import { splitRows } from "../pipeline/batches.ts";
import { prepareDataset } from "../pipeline/prepare_dataset.ts";
import { tokenizeDataset } from "../pipeline/tokenize_dataset.ts";
import { loadTokenizedDataset } from "../pipeline/token_rows.ts";
import { trainModel, type TrainModelOptions } from "../pipeline/train_model.ts";
import { trainTokenizer } from "../pipeline/train_tokenizer.ts";
import { measureTrainThroughput, type TrainThroughput } from "../pipeline/throughput_probe.ts";
import { type GPT2Config, gpt2ParameterCount } from "../nn/config.ts";
import { validationLosses } from "../pipeline/validation_loss.ts";
import { HELP_FLAG, parseFlags } from "../util/flags.ts";

/** A pretraining setup: the base recipe with some settings changed. */
interface Variant {
  /** Short name for `--only` and the table. */
  name: string;
  /** What differs from the base, in words. */
  change: string;
  /** The FineWeb share of the pretraining text (the rest is stories). */
  finewebShare?: number;
  /** Settings of trainModel that differ from the base. */
  options?: Partial<TrainModelOptions>;
}

/** The base recipe: the main job's settings, at the shape its 30-minute plan picks on lavapipe. */
const BASE: Partial<TrainModelOptions> = {
  nLayer: 2,
  nHead: 3,
  nEmbd: 96,
  batchSize: 4,
  gradAccum: 1,
  lr: 2e-3,
  schedule: "wsd",
  seqWarmup: { startLength: 128, untilFraction: 0.5 },
};
const BASE_FINEWEB = 0.2;

const VARIANTS: Variant[] = [
  { name: "base", change: "the base recipe" },
  { name: "L2C64", change: "2 layers, width 64", options: { nLayer: 2, nHead: 2, nEmbd: 64 } },
  { name: "L4C128", change: "4 layers, width 128", options: { nLayer: 4, nHead: 4, nEmbd: 128 } },
  { name: "lr1e-3", change: "peak lr 1e-3", options: { lr: 1e-3 } },
  { name: "lr4e-3", change: "peak lr 4e-3", options: { lr: 4e-3 } },
  { name: "cosine", change: "cosine schedule (to lr/10)", options: { schedule: "cosine" } },
  { name: "batch2", change: "2 rows a step (2,048 tokens)", options: { batchSize: 2 } },
  {
    name: "batch8",
    change: "8 rows a step (4 x 2 accumulated, 8,192 tokens)",
    options: { gradAccum: 2 },
  },
  {
    name: "muon",
    change: "Muon on the blocks' matrices, AdamW on the rest",
    options: { optimizer: "muon" },
  },
  { name: "stories", change: "stories only (no FineWeb)", finewebShare: 0 },
  { name: "fineweb40", change: "40% FineWeb", finewebShare: 0.4 },
];

/** The shares whose data the runs and the comparison need. */
const SHARES = [0, BASE_FINEWEB, 0.4, 1];

/** Tokenized datasets by FineWeb share, all with one tokenizer (trained on the base mix). */
async function prepareData(work: string, vocabSize: number, context: number) {
  const folder = (share: number) => `${work}/data/fineweb${Math.round(share * 100)}`;
  const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
  for (const share of SHARES) {
    if (await exists(`${folder(share)}/dataset.jsonl`)) continue;
    await Deno.mkdir(folder(share), { recursive: true });
    await prepareDataset({
      mixture: [
        { data: BUNDLED_STORIES, share: 1 - share },
        { data: BUNDLED_FINEWEB, share },
      ],
      rows: Infinity,
      out: `${folder(share)}/dataset.jsonl`,
    });
  }
  const tokenizer = `${work}/data/tokenizer`;
  if (!await exists(`${tokenizer}/tokenizer.json`)) {
    await trainTokenizer({
      data: `${folder(BASE_FINEWEB)}/dataset.jsonl`,
      vocabSize,
      out: tokenizer,
    });
  }
  for (const share of SHARES) {
    if (await exists(`${folder(share)}/tokenized/meta.json`)) continue;
    await tokenizeDataset({
      data: `${folder(share)}/dataset.jsonl`,
      tokenizer,
      contextLength: context,
      out: `${folder(share)}/tokenized`,
    });
  }
  return (share: number) => `${folder(share)}/tokenized`;
}

/** What one run reached. */
interface RecipeResult {
  name: string;
  change: string;
  parameters: number;
  /** Measured just before the run, on this machine. */
  tokensPerSecond: number;
  seconds: number;
  steps: number;
  tokens: number;
  /** Held-out loss (nats per token) on stories only, the base mix, and FineWeb only. */
  valStories: number;
  valMix: number;
  valFineweb: number;
}

async function runVariant(
  gpu: Gpu,
  variant: Variant,
  data: (share: number) => string,
  work: string,
  seconds: number,
): Promise<RecipeResult> {
  const out = `${work}/runs/${variant.name}`;
  await Deno.remove(out, { recursive: true }).catch(() => {});
  const options = { ...BASE, ...variant.options };
  const dataset = data(variant.finewebShare ?? BASE_FINEWEB);
  const { meta } = await loadTokenizedDataset(dataset);
  const config = {
    vocabSize: meta.vocabSize,
    contextLength: meta.contextLength,
    nLayer: options.nLayer!,
    nHead: options.nHead!,
    nEmbd: options.nEmbd!,
  };
  const { tokensPerSecond, tokensPerStep } = await probe(gpu, config, options);
  const steps = Math.max(20, Math.round(tokensPerSecond * seconds / tokensPerStep));
  const result = await trainModel({
    ...options,
    gpu,
    data: dataset,
    out,
    steps,
    warmupSteps: Math.min(50, Math.ceil(steps / 10)),
    evalEvery: 1_000_000,
    quiet: true,
  });
  // The same held-out rows for every variant: the last 5% of each share's dataset.
  const { model } = await loadCheckpoint(gpu, result.checkpoint);
  const heldOut = async (share: number) => {
    const dataset = await loadTokenizedDataset(data(share));
    const rows = splitRows(dataset.meta.rows, 0.05, 4).validation!;
    return (await validationLosses(model, dataset, rows, 4, { batches: 8 })).loss;
  };
  try {
    return {
      name: variant.name,
      change: variant.change,
      parameters: gpt2ParameterCount(config).total,
      tokensPerSecond,
      seconds: result.seconds,
      steps: result.steps,
      tokens: result.tokens,
      valStories: await heldOut(0),
      valMix: await heldOut(BASE_FINEWEB),
      valFineweb: await heldOut(1),
    };
  } finally {
    model.dispose();
  }
}

const probes = new Map<string, Promise<TrainThroughput>>();

/**
 * The throughput of a shape, batch and optimizer, measured once: variants that differ only in
 * settings that cost nothing (learning rate, schedule, data) run the same number of steps.
 */
function probe(
  gpu: Gpu,
  config: GPT2Config,
  options: Partial<TrainModelOptions>,
): Promise<TrainThroughput> {
  const settings = {
    batchSize: options.batchSize!,
    gradAccum: options.gradAccum,
    optimizer: options.optimizer,
    steps: 3,
  };
  const key = JSON.stringify({ config, settings });
  if (!probes.has(key)) probes.set(key, measureTrainThroughput(gpu, config, settings));
  return probes.get(key)!;
}

function formatRow(r: RecipeResult): string {
  return `| ${r.name} | ${r.change} | ${(r.parameters / 1e6).toFixed(2)}M | ` +
    `${Math.round(r.tokensPerSecond)} | ${r.steps} | ${(r.tokens / 1e6).toFixed(2)}M | ` +
    `${r.valStories.toFixed(3)} | ${r.valMix.toFixed(3)} | ${r.valFineweb.toFixed(3)} |`;
}

if (import.meta.main) {
  const flags = {
    minutes: { type: "string", default: "3", help: "wall-clock minutes of each run" },
    only: { type: "string", help: "comma-separated variant names (default all)" },
    work: { type: "string", default: "runs/recipe", help: "where data, runs and results go" },
    "vocab-size": { type: "string", default: "8192", help: "tokenizer vocabulary" },
    context: { type: "string", default: "1024", help: "context length" },
    ...HELP_FLAG,
  } as const;
  const values = parseFlags("deno run -A bench/recipe.ts [options]", flags);
  if (!values) Deno.exit(0);
  const only = values.only?.split(",");
  const work = values.work;
  const context = Number(values.context);
  const gpu = await acquireGpu();
  const data = await prepareData(work, Number(values["vocab-size"]), context);
  console.log(
    "| variant | change | parameters | tokens/s | steps | tokens | held-out loss: stories | " +
      "20% FineWeb mix | FineWeb |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const variant of VARIANTS.filter((v) => !only || only.includes(v.name))) {
    const result = await runVariant(gpu, variant, data, work, Number(values.minutes) * 60);
    await Deno.writeTextFile(`${work}/results.jsonl`, JSON.stringify(result) + "\n", {
      append: true,
    });
    console.log(formatRow(result));
  }
}
