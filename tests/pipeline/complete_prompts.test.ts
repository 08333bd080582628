import assert from "node:assert/strict";
import { GPT2 } from "../../nn/gpt2.ts";
import { chatReplies, chatReply } from "../../pipeline/chat.ts";
import { completePrompt, completePrompts } from "../../pipeline/test_pretrained.ts";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { testGpu } from "../_gpu.ts";

Deno.test("completePrompts() and chatReplies() give each prompt what it gets alone", async () => {
  const gpu = await testGpu();
  const text = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn"];
  const tokenizer = BpeTokenizer.fromTrained(
    trainBpe(await countWords([text]), { vocabSize: 300 }),
  );
  const model = GPT2.init(gpu, {
    vocabSize: tokenizer.vocabSize,
    contextLength: 32,
    nLayer: 1,
    nHead: 2,
    nEmbd: 16,
  }, 1);
  try {
    const prompts = ["the cat", "a dog ran in", "birds"];
    const sampling = { temperature: 1, topK: 30, maxNewTokens: 12 };
    const seeds = [3, 4, 5];
    const pieces: string[] = prompts.map(() => "");
    const tokens: number[][] = prompts.map(() => []);
    const together = await completePrompts(model, tokenizer, prompts, {
      ...sampling,
      seeds,
      onText: (i, piece) => pieces[i] += piece,
      onToken: (i, id) => tokens[i].push(id),
    });
    for (const [i, prompt] of prompts.entries()) {
      const alone = await completePrompt(model, tokenizer, prompt, { ...sampling, seed: seeds[i] });
      assert.equal(together[i], alone, `prompt ${i}`);
      // The stream holds back a trailing partial character (shown as U+FFFD) until it completes.
      assert.equal(pieces[i], alone.replace(/\uFFFD+$/, ""), `streamed text of prompt ${i}`);
      assert.equal(tokens[i].length, 12);
    }
    assert.notEqual(together[0], together[2]);
    // Questions as first messages of their own conversations, likewise.
    const replies = await chatReplies(model, tokenizer, prompts, { ...sampling, seeds });
    for (const [i, message] of prompts.entries()) {
      const alone = await chatReply(model, tokenizer, [], message, { ...sampling, seed: seeds[i] });
      assert.equal(replies[i], alone, `reply ${i}`);
    }
  } finally {
    model.dispose();
  }
});
