import assert from "node:assert/strict";
import { generateBatch, type PromptCut } from "../../nn/generate.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { chatReplies, chatReply } from "../../pipeline/chat.ts";
import { chatPromptIds, IM_END, IM_START } from "../../pipeline/chatml.ts";
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
  tokenizer.addTokens([IM_START, IM_END], { special: true });
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
    // Guided replies: each question's twin is the same conversation with an empty question.
    const guided = await chatReplies(model, tokenizer, prompts, {
      ...sampling,
      seeds,
      guidance: 3,
    });
    const ids = await generateBatch(model, prompts.map((m) => chatPromptIds(tokenizer, m)), {
      ...sampling,
      seeds,
      stopIds: [tokenizer.tokenToId(IM_END)!, tokenizer.tokenToId("</s>")!],
      guidance: { scale: 3, unconditioned: prompts.map(() => chatPromptIds(tokenizer, "")) },
    });
    assert.deepEqual(
      guided,
      ids.map((reply) => tokenizer.decode(reply, { skipSpecialTokens: true })),
    );
    assert.notDeepEqual(guided, replies);
    const turns = [{ user: "the cat", assistant: "sat" }];
    assert.equal(
      await chatReply(model, tokenizer, turns, "birds", {
        ...sampling,
        seed: 1,
        guidance: 3,
        onPromptCut() {},
      }),
      tokenizer.decode(
        (await generateBatch(model, [chatPromptIds(tokenizer, "birds", turns)], {
          ...sampling,
          seed: 1,
          stopIds: [tokenizer.tokenToId(IM_END)!, tokenizer.tokenToId("</s>")!],
          guidance: { scale: 3, unconditioned: [chatPromptIds(tokenizer, "", turns)] },
        }))[0],
        { skipSpecialTokens: true },
      ),
    );
  } finally {
    model.dispose();
  }
});

Deno.test("completePrompt() warns once that a prompt is cut to the context, with both lengths", async () => {
  const gpu = await testGpu();
  const text = ["the cat sat on the mat", "a dog ran in the park"];
  const tokenizer = BpeTokenizer.fromTrained(
    trainBpe(await countWords([text]), { vocabSize: 300 }),
  );
  tokenizer.addTokens([IM_START, IM_END], { special: true });
  const config = { vocabSize: tokenizer.vocabSize, contextLength: 32, nLayer: 1, nHead: 2 };
  const model = GPT2.init(gpu, { ...config, nEmbd: 16 }, 1);
  const warnings: string[] = [];
  const error = console.error;
  console.error = (message: string) => warnings.push(message);
  try {
    const long = "the cat sat on the mat. ".repeat(10);
    const length = tokenizer.encode(long).length;
    assert.ok(length > 32);
    const sampling = { temperature: 0, maxNewTokens: 40 };
    // A prompt that fits gives no warning, even when the completion outgrows the context.
    await completePrompt(model, tokenizer, "the cat", sampling);
    assert.deepEqual(warnings, []);
    await completePrompt(model, tokenizer, long, sampling);
    assert.deepEqual(warnings, [
      `warning: the prompt is ${length} tokens, longer than the model's context of 32; the ` +
      "model sees only the last 32 tokens.",
    ]);
    // Many prompts: one warning for the call, naming them.
    await completePrompts(model, tokenizer, [long, "a dog", long], sampling);
    assert.equal(warnings.length, 2);
    assert.match(
      warnings[1],
      /^warning: 2 prompts \(0, 2\) are longer than the model's context of 32 tokens, the longest \d+ tokens/,
    );
    // A chat whose conversation outgrew the context says so.
    const turns = [{ user: long, assistant: "a dog ran" }];
    await chatReply(model, tokenizer, turns, "the cat", { ...sampling, maxNewTokens: 2 });
    assert.match(
      warnings[2],
      /^warning: the conversation is \d+ tokens, longer than the model's context of 32/,
    );
    // Text of a control token in a text prompt stays text, unless allowed: 40 × "</s>" is 40
    // ids as control tokens and more as text (the cut reports the length that was encoded).
    const prompt = "</s>".repeat(40);
    const lengths: number[] = [];
    const spy = {
      ...sampling,
      maxNewTokens: 1,
      onPromptCut: (cuts: readonly PromptCut[]) => lengths.push(cuts[0].length),
    };
    await completePrompt(model, tokenizer, prompt, spy);
    await completePrompt(model, tokenizer, prompt, { ...spy, allowSpecialTokens: true });
    assert.deepEqual(lengths, [tokenizer.encode(prompt, { specialTokens: "plain" }).length, 40]);
    assert.ok(lengths[0] > 40);
  } finally {
    console.error = error;
    model.dispose();
  }
  assert.equal(warnings.length, 3);
});
