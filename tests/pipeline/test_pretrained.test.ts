import assert from "node:assert/strict";
import { saveCheckpoint } from "../../nn/checkpoint.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { testPretrained } from "../../pipeline/test_pretrained.ts";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { testGpu } from "../_gpu.ts";

Deno.test("testPretrained() refuses a tokenizer whose vocabulary differs from the model's, before generating", async () => {
  const gpu = await testGpu();
  const words = await countWords([["the cat sat on the mat", "a dog ran in the park"]]);
  const small = BpeTokenizer.fromTrained(trainBpe(words, { vocabSize: 270 }));
  const large = BpeTokenizer.fromTrained(trainBpe(words, { vocabSize: 280 }));
  const config = { vocabSize: 280, contextLength: 16, nLayer: 1, nHead: 2, nEmbd: 16 };
  const dir = await Deno.makeTempDir();
  const model = GPT2.init(gpu, config, 1);
  try {
    const checkpoint = `${dir}/checkpoint.safetensors`;
    await saveCheckpoint(checkpoint, model, { config, step: 1 });
    const options = { gpu, checkpoint, prompt: "the cat", maxNewTokens: 3, temperature: 0 };
    assert.equal(large.vocabSize, 280);
    assert.equal(typeof await testPretrained({ ...options, tokenizer: large }), "string");
    await assert.rejects(
      testPretrained({ ...options, tokenizer: small }),
      new RegExp(
        `${checkpoint} has a vocabulary of 280 tokens but the tokenizer has ${small.vocabSize}; ` +
          "pass the tokenizer the model was trained with",
      ),
    );
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
