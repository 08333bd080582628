import assert from "node:assert/strict";
import type { GPT2Config } from "../../nn/config.ts";
import type { SequenceWarmup } from "../../nn/schedule.ts";
import {
  type BudgetPlanOptions,
  candidateShapes,
  expectedQuality,
  fitThroughput,
  formatDuration,
  nonEmbeddingParameters,
  parseDuration,
  parseShape,
  planBudget,
  type StageTime,
  type ThroughputModel,
  trainingFlopsPerToken,
} from "../../pipeline/plan.ts";

const VOCAB = 8192, CONTEXT = 1024;

/** An adapter that spends `overhead` s per token plus the FLOPs at `flopRate`. */
function adapter(overhead: number, flopRate: number): ThroughputModel {
  const sample = (nLayer: number, nEmbd: number) => {
    const config = { vocabSize: VOCAB, contextLength: CONTEXT, nLayer, nHead: 2, nEmbd };
    return {
      config,
      tokensPerSecond: 1 / (overhead + trainingFlopsPerToken(config) / flopRate),
    };
  };
  return fitThroughput([sample(2, 128), sample(6, 384)]);
}

const LAVAPIPE = adapter(2e-4, 15e9), GPU = adapter(2e-6, 100e12);

function stages(seconds = 20): StageTime[] {
  return ["prepare_dataset", "train_tokenizer", "probe", "train_model", "finetune_instruct", "eval"]
    .map((stage) => ({
      stage,
      seconds: stage.includes("train_model") || stage.startsWith("fine") ? 0 : seconds,
    }));
}

function plan(
  budgetSeconds: number,
  throughput: ThroughputModel,
  dataTokens = 20e6,
  more: Partial<BudgetPlanOptions> = {},
) {
  return planBudget({
    budgetSeconds,
    throughput,
    vocabSize: VOCAB,
    contextLength: CONTEXT,
    dataTokens,
    stages: stages(),
    ...more,
  });
}

Deno.test("parseDuration() reads hours, minutes and seconds and refuses a bare number", () => {
  assert.equal(parseDuration("30m"), 1800);
  assert.equal(parseDuration("2h"), 7200);
  assert.equal(parseDuration("1h30m"), 5400);
  assert.equal(parseDuration("90s"), 90);
  assert.throws(() => parseDuration("30"), /unit/);
  assert.throws(() => parseDuration("0m"), /unit/);
  assert.equal(formatDuration(5400), "1h30m");
  assert.equal(formatDuration(750), "12m30s");
});

Deno.test("fitThroughput() recovers the overhead and FLOP rate of its samples", () => {
  const fit = adapter(3e-4, 20e9);
  assert.ok(Math.abs(fit.overhead - 3e-4) / 3e-4 < 1e-6);
  assert.ok(Math.abs(fit.flopRate - 20e9) / 20e9 < 1e-6);
});

Deno.test("candidateShapes() grow in size and in cost together", () => {
  const shapes = candidateShapes(VOCAB, CONTEXT);
  for (let i = 1; i < shapes.length; i++) {
    assert.ok(nonEmbeddingParameters(shapes[i]) > nonEmbeddingParameters(shapes[i - 1]));
    assert.ok(trainingFlopsPerToken(shapes[i]) > trainingFlopsPerToken(shapes[i - 1]));
    assert.equal(shapes[i].nEmbd % shapes[i].nHead, 0);
  }
});

Deno.test("planBudget(): a larger budget never gets a smaller model, and the plan fits", () => {
  for (const throughput of [LAVAPIPE, GPU]) {
    let previous = 0;
    for (const minutes of [5, 10, 30, 60, 90, 180, 600, 2400]) {
      const budget = minutes * 60;
      const p = plan(budget, throughput);
      assert.ok(p.nonEmbeddingParameters >= previous, `${minutes} min gave a smaller model`);
      previous = p.nonEmbeddingParameters;
      assert.ok(Math.abs(p.totalSeconds - budget) < 1e-6 * budget, "the stages fill the budget");
      // Whole steps: within half a step of the planned tokens.
      assert.ok(Math.abs(p.steps * p.tokensPerStep - p.tokens) <= p.tokensPerStep / 2 + 1);
      assert.equal(p.tokensPerStep, p.batchSize * p.gradAccum * CONTEXT);
    }
  }
});

Deno.test("planBudget() picks the shape nearest 20 tokens per non-embedding parameter", () => {
  const p = plan(3 * 3600, GPU, 1e12);
  const shapes = candidateShapes(VOCAB, CONTEXT);
  const ratio = (c: GPT2Config) =>
    p.pretrainSeconds / GPU.secondsPerToken(c) / nonEmbeddingParameters(c);
  const at = shapes.findIndex((s) => s.nLayer === p.config.nLayer && s.nEmbd === p.config.nEmbd);
  assert.ok(Math.abs(ratio(shapes[at]) - p.tokensPerParameter) < 1e-6 * p.tokensPerParameter);
  // Its neighbours are further from 20 in ratio: one above it, one below.
  const off = (c: GPT2Config) => Math.abs(Math.log(ratio(c) / 20));
  assert.ok(off(shapes[at]) <= off(shapes[at - 1]) && off(shapes[at]) <= off(shapes[at + 1]));
  assert.ok(ratio(shapes[at - 1]) > 20 && ratio(shapes[at + 1]) < 20);
  assert.equal(
    p.nonEmbeddingParameters,
    p.parameters - VOCAB * p.config.nEmbd - CONTEXT * p.config.nEmbd,
  );
});

Deno.test("planBudget() picks a larger model on a faster adapter", () => {
  assert.ok(plan(1800, GPU).parameters > 10 * plan(1800, LAVAPIPE).parameters);
});

Deno.test("planBudget() spends spare time on a larger model when the data is small", () => {
  const plenty = plan(4 * 3600, LAVAPIPE, 1e12), scarce = plan(4 * 3600, LAVAPIPE, 1e6);
  assert.ok(scarce.parameters > plenty.parameters);
  assert.ok(scarce.tokensPerParameter < 20);
  assert.match(scarce.notes.join(), /data/);
});

Deno.test("planBudget() refuses a budget that leaves no time to train", () => {
  assert.throws(() => plan(100, LAVAPIPE), /--budget/);
});

Deno.test("planBudget() keeps a pinned shape and sizes its tokens from its speed", () => {
  assert.deepEqual(parseShape("3x96"), { nLayer: 3, nEmbd: 96 });
  const pinnedPlan = (shape: string) => plan(1800, LAVAPIPE, 20e6, { shape: parseShape(shape) });
  const chosen = plan(1800, LAVAPIPE), pinned = pinnedPlan("6x384");
  assert.deepEqual(
    [pinned.config.nLayer, pinned.config.nEmbd, pinned.config.nHead],
    [6, 384, 6],
  );
  // The same time buys the larger model fewer tokens.
  assert.equal(pinned.pretrainSeconds, chosen.pretrainSeconds);
  assert.ok(pinned.tokens < chosen.tokens / 4, `${pinned.tokens} vs ${chosen.tokens}`);
  // Heads of 64 only where they divide the width: 288 takes nine of 32.
  const odd = pinnedPlan("6x288");
  assert.equal(odd.config.nHead, 9);
  assert.match(odd.notes.join(), /pinned shape/);
  for (const bad of ["3", "3x100", "0x96", "three by 96"]) {
    assert.throws(() => parseShape(bad), /layers x width/);
  }
});

Deno.test("planBudget() prices a sequence warmup's shorter sequences into the speed", () => {
  const pinned = (seqWarmup?: SequenceWarmup) =>
    plan(1800, LAVAPIPE, 20e6, { shape: { nLayer: 2, nEmbd: 96 }, seqWarmup });
  const full = pinned(), warmed = pinned({ startLength: 128, untilFraction: 0.5 });
  // Half the steps at 128, 256 and 512 tokens a sequence (a sixth each), half at 1024.
  const meanLength = (128 + 256 + 512) / 6 + 1024 / 2;
  // The attention term at the mean length; the parameters keep the whole position table.
  const expected = 1 / LAVAPIPE.secondsPerToken(full.config, meanLength);
  const flops = trainingFlopsPerToken(full.config, meanLength);
  const attentionSaved = trainingFlopsPerToken(full.config) - flops;
  assert.ok(Math.abs(attentionSaved - 12 * 2 * 96 * (1024 - meanLength)) < 1e-6);
  assert.ok(Math.abs(warmed.tokensPerSecond / expected - 1) < 1e-4);
  assert.ok(warmed.tokensPerSecond > full.tokensPerSecond);
  assert.equal(full.tokensPerSecond, 1 / LAVAPIPE.secondsPerToken(full.config));
  assert.ok(warmed.tokens > full.tokens);
});

Deno.test("expectedQuality() quotes the measured runs nearest the planned tokens", () => {
  assert.match(
    expectedQuality(4.5e6),
    /^this plan trains 4\.5M tokens; .*about 5M.*68-81%.*0-35%.*12M.*80% and 50%/,
  );
  assert.match(expectedQuality(15.3e6), /^this plan trains 15\.3M tokens; .*12M tokens.*80% .*50%/);
  assert.match(expectedQuality(60e6), /^this plan trains 60\.0M tokens, beyond the runs measured/);
});
