import assert from "node:assert/strict";
import { probeThroughput } from "../../pipeline/budget.ts";
import { type BudgetPlan, candidateShapes, type ThroughputSample } from "../../pipeline/plan.ts";
import { measureTrainThroughput } from "../../pipeline/throughput_probe.ts";
import { testGpu } from "../_gpu.ts";

const config = { vocabSize: 64, contextLength: 16, nLayer: 1, nHead: 2, nEmbd: 16 };

Deno.test("measureTrainThroughput() times training steps of a shape on random ids", async () => {
  const gpu = await testGpu();
  const measured = await measureTrainThroughput(gpu, config, { batchSize: 4, steps: 2 });
  assert.equal(measured.tokensPerStep, 4 * 16);
  assert.ok(measured.tokensPerSecond > 0 && Number.isFinite(measured.tokensPerSecond));
  assert.ok(
    Math.abs(measured.tokensPerSecond * measured.msPerStep / 1000 - measured.tokensPerStep) < 1e-6,
  );
  const cut = await measureTrainThroughput(gpu, config, {
    batchSize: 2,
    gradAccum: 3,
    seqLength: 4,
    steps: 1,
  });
  assert.equal(cut.tokensPerStep, 3 * 2 * 16);
  await assert.rejects(
    measureTrainThroughput(gpu, config, { batchSize: 2, seqLength: 5 }),
    /A sequence length of 5 does not divide the context of 16/,
  );
});

Deno.test("probeThroughput() measures the plan's choice at the plan's micro-batch until it holds", async () => {
  const gpu = await testGpu();
  const [smallest] = candidateShapes(64, 64);
  const asked: number[] = [];
  // A plan that always picks the smallest shape, stepping 2 rows.
  const plan = (samples: ThroughputSample[]) => {
    asked.push(samples.length);
    return { config: smallest, batchSize: 2 } as BudgetPlan;
  };
  const samples = await probeThroughput(gpu, plan, { vocabSize: 64, contextLength: 64 });
  // First a shape of real width at this adapter's first rows, then the choice, which then holds.
  assert.equal(samples.length, 2);
  assert.ok(samples[0].config.nEmbd >= 128 && samples[0].rows! >= 1);
  assert.deepEqual([samples[1].config, samples[1].rows], [smallest, 2]);
  assert.deepEqual(asked, [1, 2]);
  for (const { tokensPerSecond } of samples) assert.ok(tokensPerSecond > 0);
});
