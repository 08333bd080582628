import assert from "node:assert/strict";
import { uploadTokens } from "../../nn/batch.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { Tape } from "../../nn/tape.ts";
import { Random } from "../../nn/random.ts";
import { assertClose, testGpu } from "../_gpu.ts";
import { finiteDifferenceGradient } from "../_finite_diff.ts";
import { gpt2LossCpu } from "./_gpt2_cpu.ts";

const config = { vocabSize: 13, contextLength: 8, nLayer: 2, nHead: 2, nEmbd: 8 };
const B = 2, T = 6;

Deno.test("GPT2 matches the CPU reference in loss and in every parameter's gradient", async () => {
  const gpu = await testGpu();
  const random = new Random(5);
  const tokens = Int32Array.from({ length: B * T }, () => random.int(config.vocabSize));
  const targets = Int32Array.from({ length: B * T }, () => random.int(config.vocabSize));
  const mask = Uint32Array.from({ length: B * T }, (_, i) => i % 5 === 4 ? 0 : 1);
  const counted = mask.reduce((s, m) => s + m, 0);

  const model = GPT2.init(gpu, config, 3);
  const params = new Map<string, Float64Array>();
  for (const [name, tensor] of model.params) {
    params.set(name, Float64Array.from(await tensor.read()));
  }

  const tape = new Tape(gpu);
  const loss = await model.loss(tape, { inputs: tokens, targets, mask, batch: B, time: T });
  assert.equal(loss.counted, counted);
  await tape.backward(loss.perPosition);
  const gpuLoss = await loss.mean();
  const cpuLoss = () => gpt2LossCpu(config, params, tokens, targets, mask, B, T);
  assert.ok(Math.abs(gpuLoss - cpuLoss()) < 1e-5, `GPU loss ${gpuLoss}, CPU ${cpuLoss()}`);
  // A random model predicts about uniformly: the loss is near ln(V).
  assert.ok(Math.abs(gpuLoss - Math.log(config.vocabSize)) < 0.1);

  // Central differences on 8 random entries of every parameter tensor (all entries take ~40 s).
  for (const [name, tensor] of model.params) {
    const values = params.get(name)!, gradient = await tensor.readGrad();
    const picked = [...random.permutation(values.length).subarray(0, 8)];
    const probe = Float64Array.from(picked, (i) => values[i]);
    const loss = () => {
      picked.forEach((i, j) => values[i] = probe[j]);
      return cpuLoss();
    };
    const expected = finiteDifferenceGradient(loss, probe, 1e-5);
    picked.forEach((i, j) => values[i] = probe[j]);
    assertClose(picked.map((i) => gradient[i]), expected, { atol: 3e-5, rtol: 2e-3 });
  }
  tape.dispose();
  model.dispose();
});

Deno.test("GPT2 refuses a sequence longer than its context", async () => {
  const gpu = await testGpu();
  const model = GPT2.init(gpu, config, 1);
  const tape = new Tape(gpu);
  await assert.rejects(
    model.forward(tape, uploadTokens(tape, new Int32Array(9), 1, 9)),
    /A sequence of 9 tokens is longer than the model's context of 8/,
  );
  tape.dispose();
  model.dispose();
});
