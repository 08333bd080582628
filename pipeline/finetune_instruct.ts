/**
 * Stage 6b of the pipeline: instruction tuning. The pretrained model's embeddings grow to the
 * ChatML tokens, and training continues on the conversations of prepare_dataset_instruct with the
 * loss on the answers only; a lower learning rate than pretraining keeps what the model knew.
 * Checkpoints, resuming and Ctrl-C work as in train_model.
 *
 *     deno task finetune-instruct --pretrained runs/main/model/checkpoint.safetensors \
 *       --data runs/instruct/data/tokenized --out runs/instruct/model --steps 300
 *
 * @module
 */

import { parseArgs } from "node:util";
import { meanOfLast, trainModel, type TrainModelOptions, type TrainResult } from "./train_model.ts";
import { interruptSignal, intFlag, numberFlag, runCli } from "./_cli.ts";

/** Options of {@linkcode finetuneInstruct}. */
export interface FinetuneInstructOptions
  extends Omit<TrainModelOptions, "initFrom" | "nLayer" | "nHead" | "nEmbd"> {
  /** The pretrained checkpoint to start from. */
  pretrained: string;
}

/** Fine-tunes a pretrained model on instruction conversations; see the module documentation. */
export function finetuneInstruct(options: FinetuneInstructOptions): Promise<TrainResult> {
  return trainModel({
    ...options,
    lr: options.lr ?? 3e-4,
    warmupSteps: options.warmupSteps ?? Math.min(50, Math.ceil(options.steps / 10)),
    initFrom: options.pretrained,
  });
}

if (import.meta.main) {
  await runCli(async () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        pretrained: { type: "string", default: "runs/main/model/checkpoint.safetensors" },
        data: { type: "string", default: "runs/instruct/data/tokenized" },
        out: { type: "string", default: "runs/instruct/model" },
        "batch-size": { type: "string", default: "8" },
        steps: { type: "string", default: "300" },
        lr: { type: "string", default: "3e-4" },
        "checkpoint-every": { type: "string", default: "100" },
        seed: { type: "string", default: "1337" },
        fresh: { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
      },
    });
    const signal = interruptSignal();
    const result = await finetuneInstruct({
      pretrained: values.pretrained,
      data: values.data,
      out: values.out,
      batchSize: intFlag("batch-size", values["batch-size"]),
      steps: intFlag("steps", values.steps),
      lr: numberFlag("lr", values.lr),
      checkpointEvery: intFlag("checkpoint-every", values["checkpoint-every"]),
      seed: intFlag("seed", values.seed, 0),
      resume: !values.fresh,
      quiet: values.quiet,
      signal,
    });
    console.log(
      `fine-tuned to step ${result.steps}; mean answer loss of the last 10 steps: ` +
        `${meanOfLast(result.losses).toFixed(3)}; checkpoint ${result.checkpoint}`,
    );
  });
}
