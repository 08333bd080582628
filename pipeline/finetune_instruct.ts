/**
 * Stage 6b of the pipeline: instruction tuning. The pretrained model's embeddings grow to the
 * ChatML tokens, and training continues on the conversations of prepare_dataset_instruct with the
 * loss on the answers only; a lower learning rate than pretraining keeps what the model knew.
 * Checkpoints, resuming, the run folder's lock, the stop on a non-finite value and Ctrl-C (exit
 * status 130 after the checkpoint is saved) work as in train_model.
 *
 *     deno task finetune-instruct --pretrained runs/main/model/checkpoint.safetensors \
 *       --data runs/instruct/data/tokenized --out runs/instruct/model --steps 300
 *
 * @module
 */

import {
  meanOfLast,
  runFlags,
  runOptions,
  trainModel,
  type TrainModelOptions,
  type TrainResult,
} from "./train_model.ts";
import { interruptSignal, runCli } from "../util/cli.ts";
import { parseFlags } from "../util/flags.ts";

/** The peak learning rate of instruction tuning: lower than pretraining's, to keep what the model knew. */
export const FINETUNE_LR = 3e-4;

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
    lr: options.lr ?? FINETUNE_LR,
    warmupSteps: options.warmupSteps ?? Math.min(50, Math.ceil(options.steps / 10)),
    initFrom: options.pretrained,
  });
}

if (import.meta.main) {
  await runCli(async () => {
    const flags = {
      pretrained: {
        type: "string",
        default: "runs/main/model/checkpoint.safetensors",
        help: "the pretrained checkpoint to start from",
      },
      data: {
        type: "string",
        default: "runs/instruct/data/tokenized",
        help: "the tokenized conversations (from prepare-instruct)",
      },
      out: { type: "string", default: "runs/instruct/model", help: "the run folder" },
      ...runFlags({ steps: "300", lr: String(FINETUNE_LR) }),
    } as const;
    const values = parseFlags("deno task finetune-instruct [options]", flags);
    if (!values) return;
    const signal = interruptSignal();
    const result = await finetuneInstruct({
      ...runOptions(values),
      signal,
      pretrained: values.pretrained,
      data: values.data,
      out: values.out,
    });
    if (signal.aborted) console.error("stopped; run the same command again to resume");
    console.log(
      result.losses.length === 0
        ? `nothing to train: ${result.checkpoint} is at step ${result.steps} of ` +
          `${result.scheduleSteps}; pass a larger --steps to train on`
        : `fine-tuned to step ${result.steps}; mean answer loss of the last 10 steps: ` +
          `${meanOfLast(result.losses).toFixed(3)}; checkpoint ${result.checkpoint}`,
    );
  });
}
