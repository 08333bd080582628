import assert from "node:assert/strict";
import {
  GPT2_PRESETS,
  gpt2ParameterCount,
  validateConfig,
  validHeadCounts,
} from "../../nn/config.ts";

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
  // The suggested depth fits, and one layer more does not.
  let suggested = 0;
  assert.throws(() => validateConfig(xl), (error: Error) => {
    suggested = Number(/--layers (\d+)\)/.exec(error.message)![1]);
    return true;
  });
  validateConfig({ ...xl, nLayer: suggested });
  assert.throws(() => validateConfig({ ...xl, nLayer: suggested + 1 }), /over the 1B limit/);
});

Deno.test("validateConfig() refuses a context longer than 1024 tokens", () => {
  const config = { ...GPT2_PRESETS["gpt2"], contextLength: 2048 };
  assert.throws(() => validateConfig(config), /2048 tokens is longer than the 1024/);
});

Deno.test("validateConfig() refuses a width that heads cannot share", () => {
  const config = { ...GPT2_PRESETS["gpt2"], nHead: 7 };
  assert.throws(() => validateConfig(config), /must be divisible by nHead/);
});

Deno.test("validateConfig() lists the head counts a width can take, not a fraction", () => {
  const config = { vocabSize: 300, contextLength: 32, nLayer: 1, nHead: 3, nEmbd: 32 };
  assert.throws(
    () => validateConfig(config),
    (error: Error) => {
      assert.match(error.message, /nEmbd \(32\) must be divisible by nHead \(3\)/);
      assert.match(
        error.message,
        /Head counts that fit a width of 32: 1, 2, 4, 8, 16, 32 \(--heads\)/,
      );
      assert.match(error.message, /a width that 3 heads share: 30 or 33 \(--embd\)/);
      assert.doesNotMatch(error.message, /0\.5/);
      return true;
    },
  );
});

Deno.test("validHeadCounts() gives the divisors whose heads are at most 128 wide", () => {
  assert.deepEqual(validHeadCounts(32), [1, 2, 4, 8, 16, 32]);
  assert.deepEqual(validHeadCounts(768).slice(0, 4), [6, 8, 12, 16]);
  for (const heads of validHeadCounts(96)) {
    validateConfig({ vocabSize: 10, contextLength: 8, nLayer: 1, nHead: heads, nEmbd: 96 });
  }
});

Deno.test("validateConfig() refuses heads over 128 wide and says which counts fit", () => {
  const config = { vocabSize: 300, contextLength: 32, nLayer: 1, nHead: 2, nEmbd: 512 };
  assert.throws(
    () => validateConfig(config),
    /Head size 256 .* over 128.*fit a width of 512: 4, 8, 16, 32, 64, 128, 256, 512 \(--heads\)\.$/,
  );
});

Deno.test("validateConfig() names the flag of a field that is not a positive whole number", () => {
  const config = { vocabSize: 300, contextLength: 32, nLayer: 0, nHead: 2, nEmbd: 32 };
  assert.throws(
    () => validateConfig(config),
    /nLayer \(--layers\) must be a positive whole number, got 0/,
  );
});
