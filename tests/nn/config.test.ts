import assert from "node:assert/strict";
import { GPT2_PRESETS, gpt2ParameterCount, validateConfig } from "../../nn/config.ts";

Deno.test("gpt2ParameterCount() gives GPT-2's published sizes", () => {
  // Counts of the Hugging Face checkpoints, whose lm_head is tied to wte.
  assert.equal(gpt2ParameterCount(GPT2_PRESETS["gpt2"]).total, 124_439_808);
  assert.equal(gpt2ParameterCount(GPT2_PRESETS["gpt2-medium"]).total, 354_823_168);
  assert.equal(gpt2ParameterCount(GPT2_PRESETS["gpt2-large"]).total, 774_030_080);
});

Deno.test("validateConfig() accepts every preset", () => {
  for (const config of Object.values(GPT2_PRESETS)) validateConfig(config);
});

Deno.test("validateConfig() refuses a model over one billion parameters", () => {
  const xl = { vocabSize: 50257, contextLength: 1024, nLayer: 48, nHead: 25, nEmbd: 1600 };
  assert.throws(() => validateConfig(xl), /1\.56B parameters, over the 1B limit/);
});

Deno.test("validateConfig() refuses a context longer than 1024 tokens", () => {
  const config = { ...GPT2_PRESETS["gpt2"], contextLength: 2048 };
  assert.throws(() => validateConfig(config), /2048 tokens is longer than the 1024/);
});

Deno.test("validateConfig() refuses a width that heads cannot share", () => {
  const config = { ...GPT2_PRESETS["gpt2"], nHead: 7 };
  assert.throws(() => validateConfig(config), /must be divisible by nHead/);
});
