import assert from "node:assert/strict";
import { sequenceStages } from "../../nn/schedule.ts";
import { planMainJob, pretrainingSeqWarmup, STAGE_ESTIMATES } from "../../pipeline/budget.ts";
import { trainingFlopsPerToken } from "../../pipeline/plan.ts";

Deno.test("the main job's tuning share moves training time between tuning and pretraining", () => {
  const sample = (nLayer: number, nEmbd: number) => {
    const config = { vocabSize: 8192, contextLength: 1024, nLayer, nHead: 2, nEmbd };
    return { config, tokensPerSecond: 1 / (2e-4 + trainingFlopsPerToken(config) / 15e9) };
  };
  const samples = [sample(2, 128), sample(6, 384)];
  const planFor = (finetuneShare?: number) =>
    planMainJob({
      budgetSeconds: 1800,
      vocabSize: 8192,
      contextLength: 1024,
      dataTokens: 20e6,
      estimates: STAGE_ESTIMATES,
      finetuneShare,
    }, samples);
  const usual = planFor(), short = planFor(0.05);
  const pretraining = (plan: typeof usual) =>
    plan.stages.find((s) => s.stage === "train_model")!.seconds;
  assert.ok(short.finetuneSeconds < usual.finetuneSeconds / 2);
  assert.ok(pretraining(short) > pretraining(usual));
  // The training time itself is the same: only its split changed.
  const total = (plan: typeof usual) => pretraining(plan) + plan.finetuneSeconds;
  assert.ok(Math.abs(total(short) - total(usual)) < 1e-6 * total(usual));
});

Deno.test("the main job's sequence warmup suits every context it accepts", () => {
  assert.deepEqual(pretrainingSeqWarmup(1024), { startLength: 128, untilFraction: 0.5 });
  assert.equal(pretrainingSeqWarmup(768).startLength, 192);
  assert.equal(pretrainingSeqWarmup(200).startLength, 200);
  assert.equal(pretrainingSeqWarmup(64).startLength, 64);
  for (let context = 2; context <= 1024; context++) {
    const warmup = pretrainingSeqWarmup(context);
    // Every stage's length divides the context (sequenceStages throws otherwise).
    const stages = sequenceStages(100, context, warmup);
    assert.ok(stages.every((s) => context % s.length === 0), `context ${context}`);
  }
});
