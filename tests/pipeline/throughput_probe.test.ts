import assert from "node:assert/strict";
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
