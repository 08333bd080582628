import assert from "node:assert/strict";
import { formatSizing, suggestModel } from "../../pipeline/compute_params.ts";
import { gpt2ParameterCount } from "../../nn/config.ts";

Deno.test("suggestModel() lands near 20 tokens per parameter", () => {
  for (const tokens of [5e7, 3e8, 2.5e9]) {
    const sizing = suggestModel(tokens, { vocabSize: 16384 });
    assert.ok(
      sizing.tokensPerParameter > 15 && sizing.tokensPerParameter < 27,
      `${tokens} tokens gave ${sizing.tokensPerParameter} tokens per parameter`,
    );
    assert.equal(sizing.parameters, gpt2ParameterCount(sizing.config).total);
    assert.equal(sizing.trainingFlops, 6 * sizing.parameters * tokens);
    assert.equal(sizing.config.nEmbd / sizing.config.nHead, 64);
  }
});

Deno.test("suggestModel() picks GPT-2 small's size for GPT-2 small's Chinchilla budget", () => {
  const sizing = suggestModel(20 * 124_439_808);
  assert.ok(Math.abs(sizing.parameters / 124_439_808 - 1) < 0.05, `${sizing.parameters}`);
});

Deno.test("suggestModel() never exceeds one billion parameters", () => {
  const sizing = suggestModel(1e12);
  assert.ok(sizing.parameters <= 1e9);
  assert.ok(sizing.tokensPerParameter > 20);
});

Deno.test("suggestModel() falls back to the smallest model, and says so, for tiny data", () => {
  const sizing = suggestModel(2e6, { vocabSize: 16384 });
  assert.deepEqual([sizing.config.nLayer, sizing.config.nEmbd], [1, 64]);
  assert.ok(sizing.tokensPerParameter < 20);
  assert.match(formatSizing(2e6, sizing), /fewer tokens than even the smallest model wants/);
});
