import assert from "node:assert/strict";
import { AdamW } from "../../nn/optimizer.ts";
import { accumulatedStep } from "../../nn/accumulated_step.ts";
import { saveCheckpoint } from "../../nn/checkpoint.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { chatPromptIds, chatResponseIds, IM_END, IM_START } from "../../pipeline/chatml.ts";
import { serveChat } from "../../pipeline/serve.ts";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import { saveHfTokenizer, toHfTokenizerJson } from "../../tokenizer/hf_json.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { chatModelFromFiles, lastLogits, streamChatReply } from "../../web/chat_model.ts";
import { testGpu } from "../_gpu.ts";
import { launchChromium } from "./_chromium.ts";

const QUESTION = "what do cats like";
/** Where the test leaves its screenshot of the page, for CI to keep. */
const SCREENSHOT = "out/browser_test/chat_page.png";
/** The page's status line, as an expression evaluated in the page. */
const STATUS = `document.getElementById("status").textContent`;
const ANSWER = "cats like warm naps";

/**
 * A tiny chat model (1 layer, width 32) trained on one repeated ChatML exchange until it answers
 * QUESTION with ANSWER and `<|im_end|>`, written with its tokenizer to a temporary folder.
 */
async function tinyChatModel(): Promise<{ folder: string; checkpoint: string }> {
  const gpu = await testGpu();
  const text = [QUESTION, ANSWER, "the dog ran in the park", "birds sing at dawn"];
  const tokenizer = BpeTokenizer.fromTrained(
    trainBpe(await countWords([text]), { vocabSize: 290 }),
  );
  tokenizer.addTokens([IM_START, IM_END], { special: true });
  const config = {
    vocabSize: tokenizer.vocabSize,
    contextLength: 64,
    nLayer: 1,
    nHead: 2,
    nEmbd: 32,
  };
  const model = GPT2.init(gpu, config, 7);
  const exchange = [
    ...chatPromptIds(tokenizer, QUESTION),
    ...chatResponseIds(tokenizer, ANSWER),
  ];
  const T = exchange.length - 1;
  const batch = {
    inputs: Int32Array.from(exchange.slice(0, -1)),
    targets: Int32Array.from(exchange.slice(1)),
    batch: 1,
    time: T,
  };
  const optimizer = new AdamW(gpu, model.params, model.decayed);
  for (let step = 0; step < 80; step++) {
    const { loss } = await accumulatedStep(model, optimizer, [batch], 1e-2);
    model.zeroGrad();
    if (loss < 0.02) break;
  }
  const folder = await Deno.makeTempDir({ prefix: "serve_test_" });
  const checkpoint = `${folder}/checkpoint.safetensors`;
  await Deno.mkdir(`${folder}/tokenizer`);
  await saveCheckpoint(checkpoint, model, { config, step: 80 });
  await saveHfTokenizer(tokenizer, `${folder}/tokenizer/tokenizer.json`);
  model.dispose();
  return { folder, checkpoint };
}

Deno.test({
  name: "the chat page in headless Chromium gives Deno's logits and streams a reply to im_end",
  // The browser's process and socket end in close(); Deno's sanitizers cannot see that they do.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { folder, checkpoint } = await tinyChatModel();
    const tokenizerFolder = `${folder}/tokenizer`;
    // Deno's side: the same module the page runs, on the same checkpoint.
    const chat = chatModelFromFiles(
      await testGpu(),
      await Deno.readFile(checkpoint),
      JSON.parse(await Deno.readTextFile(`${tokenizerFolder}/tokenizer.json`)),
    );
    const prompt = chatPromptIds(chat.tokenizer, QUESTION);
    const expected = await lastLogits(chat.model, prompt);
    const denoReply = await streamChatReply(chat, [], QUESTION, { temperature: 0 });
    assert.equal(denoReply.end, "im_end", `Deno's reply "${denoReply.text}" did not end`);
    assert.equal(denoReply.text, ANSWER);
    chat.model.dispose();

    const server = await serveChat({ checkpoint, tokenizer: tokenizerFolder, port: 0 });
    const browser = await launchChromium();
    try {
      const page = await browser.open(server.url);
      // The page's script defines chatPage once it has run; its `ready` settles once the model
      // is on the page's GPU (or rejects with the message the page shows).
      const ready = await page.evaluate<{ adapter: string; config: { nEmbd: number } }>(
        `new Promise((resolve) => {
          const poll = () => globalThis.chatPage ? resolve(globalThis.chatPage.ready)
            : setTimeout(poll, 50);
          poll();
        })`,
      );
      assert.equal(ready.config.nEmbd, 32);
      assert.equal(
        await page.evaluate<string>(`document.getElementById("adapter").textContent`),
        `Adapter: ${ready.adapter} (runs on the CPU: expect slow answers)`,
      );
      console.log(`the page runs on ${ready.adapter}`);

      const logits = await page.evaluate<number[]>(
        `chatPage.logits(${JSON.stringify(prompt)})`,
      );
      assert.equal(logits.length, expected.length);
      // Same kernels and weights; the adapters (lavapipe here, SwiftShader in the page) round
      // differently, so the logits agree to a float32 tolerance, not bit for bit.
      let worst = 0;
      for (let i = 0; i < logits.length; i++) {
        worst = Math.max(worst, Math.abs(logits[i] - expected[i]) / (1 + Math.abs(expected[i])));
      }
      assert.ok(worst < 1e-3, `page and Deno logits differ by up to ${worst} (relative)`);

      // A greedy answer, through the page's form handling, streamed into its answer bubble.
      await page.evaluate(`document.getElementById("temperature").value = "0"`);
      const reply = await page.evaluate<
        { text: string; end: string; updates: number; shown: string; tokensPerSecond: number }
      >(`chatPage.send(${JSON.stringify(QUESTION)}, 1)`);
      assert.equal(reply.end, "im_end");
      assert.equal(reply.text, denoReply.text);
      assert.ok(reply.updates >= 2, `the answer came in ${reply.updates} update(s), not streamed`);
      assert.ok(reply.shown.includes(ANSWER), `the page shows "${reply.shown}"`);
      assert.match(reply.shown, /tokens\/s/);
      assert.ok(reply.tokensPerSecond > 0);

      // Stop, hit as the answer starts, ends it at the next token.
      const stopped = await page.evaluate<{ end: string; tokens: number[] }>(`(() => {
        const reply = chatPage.send(${JSON.stringify(QUESTION)}, 2);
        document.getElementById("stop").click();
        return reply;
      })()`);
      assert.equal(stopped.end, "stopped");
      assert.deepEqual(stopped.tokens, []);

      // Kept for CI's artifacts (out/ is git-ignored): what the page looked like. The line names
      // the file so that a CI log says where to find it.
      await Deno.mkdir(SCREENSHOT.slice(0, SCREENSHOT.lastIndexOf("/")), { recursive: true });
      await Deno.writeFile(SCREENSHOT, await page.screenshot());
      console.log(`artifact: ${SCREENSHOT}`);

      // A browser without WebGPU, and model files that do not load, are told so on the page.
      const failure = `new Promise((resolve) => {
        const poll = () => globalThis.chatPage
          ? globalThis.chatPage.ready.then(() => resolve("loaded"), () => resolve(
            document.getElementById("status").textContent))
          : setTimeout(poll, 50);
        poll();
      })`;
      const noWebGpu = await browser.open(
        server.url,
        `Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined });`,
      );
      assert.match(await noWebGpu.evaluate<string>(failure), /^This browser has no WebGPU/);
      const noTokenizer = await browser.open(
        server.url,
        `const fetchFile = globalThis.fetch;
        globalThis.fetch = (url, init) => String(url).endsWith("tokenizer.json")
          ? Promise.resolve(new Response("gone", { status: 404 })) : fetchFile(url, init);`,
      );
      assert.match(
        await noTokenizer.evaluate<string>(failure),
        /^The model files could not be loaded: The server answered 404 for model\/tokenizer\.json/,
      );

      // The device layer's errors, in the page as in Deno: no adapter, ...
      const noAdapter = await browser.open(
        server.url,
        `GPU.prototype.requestAdapter = () => Promise.resolve(null);`,
      );
      assert.match(
        await noAdapter.evaluate<string>(failure),
        /^The browser offered no WebGPU adapter: .*chrome:\/\/gpu/,
      );
      // ... a kernel whose WGSL does not compile (the first one the page builds, broken on its
      // way to the browser's compiler), then a lost device (destroyed from the test).
      const broken = await browser.open(
        server.url,
        `const createShaderModule = GPUDevice.prototype.createShaderModule;
        GPUDevice.prototype.createShaderModule = function (descriptor) {
          if (globalThis.brokenKernel === undefined) {
            globalThis.brokenKernel = descriptor.label;
            descriptor = { ...descriptor, code: descriptor.code + "\\nfn broken( {" };
          }
          return createShaderModule.call(this, descriptor);
        };
        const requestDevice = GPUAdapter.prototype.requestDevice;
        GPUAdapter.prototype.requestDevice = async function (descriptor) {
          return globalThis.pageDevice = await requestDevice.call(this, descriptor);
        };`,
      );
      assert.equal(await broken.evaluate<string>(failure), "loaded");
      await assert.rejects(broken.evaluate(`chatPage.send("hi", 1)`), /failed to compile/);
      const kernel = await broken.evaluate<string>("globalThis.brokenKernel");
      const compileStatus = await broken.evaluate<string>(STATUS);
      assert.match(
        compileStatus,
        new RegExp(`^The answer failed: Kernel "${kernel}" failed to compile at WGSL line [1-9]`),
      );
      assert.doesNotMatch(compileStatus, /\n\s+at /, "the page shows a stack trace");
      const lost = await broken.evaluate<string>(`(() => {
        globalThis.pageDevice.destroy();
        // The status as soon as it tells of the loss, or as it is after 10 s.
        const deadline = Date.now() + 10000;
        return new Promise((resolve) => {
          const poll = () => /lost/.test(${STATUS}) || Date.now() > deadline
            ? resolve(${STATUS})
            : setTimeout(poll, 20);
          poll();
        });
      })()`);
      assert.match(
        lost,
        /^The WebGPU device was lost \(destroyed\): .*reload the page to start again\.$/,
      );
      assert.equal(await broken.evaluate(`document.getElementById("send").disabled`), true);
      await assert.rejects(
        broken.evaluate(`chatPage.send("hi", 1)`),
        /The WebGPU device was lost \(destroyed\)/,
      );
    } finally {
      await browser.close();
      await server.close();
      await Deno.remove(folder, { recursive: true });
    }
  },
});

Deno.test("serveChat() refuses a missing checkpoint, a folder, and a tokenizer without ChatML", async () => {
  const folder = await Deno.makeTempDir({ prefix: "serve_test_" });
  try {
    const tokenizer = BpeTokenizer.fromTrained(
      trainBpe(await countWords([["a small text"]]), { vocabSize: 270 }),
    );
    await saveHfTokenizer(tokenizer, `${folder}/tokenizer.json`);
    await assert.rejects(
      serveChat({ checkpoint: `${folder}/none.safetensors`, tokenizer: folder, port: 0 }),
      /No file at .*none\.safetensors/,
    );
    await assert.rejects(
      serveChat({ checkpoint: folder, tokenizer: folder, port: 0 }),
      /--checkpoint .* is a folder; the page loads one checkpoint file/,
    );
    const gpu = await testGpu();
    const config = { vocabSize: 300, contextLength: 8, nLayer: 1, nHead: 1, nEmbd: 8 };
    const model = GPT2.init(gpu, config, 1);
    await saveCheckpoint(`${folder}/model.safetensors`, model, { config, step: 0 });
    model.dispose();
    await assert.rejects(
      serveChat({ checkpoint: `${folder}/model.safetensors`, tokenizer: folder, port: 0 }),
      /no <\|im_start\|> and <\|im_end\|> tokens/,
    );
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("chatModelFromFiles() names the file that does not load, and why", async () => {
  const gpu = await testGpu();
  const tokenizer = BpeTokenizer.fromTrained(
    trainBpe(await countWords([["a small text"]]), { vocabSize: 270 }),
  );
  const withoutChatMl = toHfTokenizerJson(tokenizer);
  tokenizer.addTokens([IM_START, IM_END], { special: true });
  const json = toHfTokenizerJson(tokenizer);
  const folder = await Deno.makeTempDir({ prefix: "serve_test_" });
  try {
    const config = { vocabSize: 270, contextLength: 8, nLayer: 1, nHead: 1, nEmbd: 8 };
    const model = GPT2.init(gpu, config, 1);
    await saveCheckpoint(`${folder}/model.safetensors`, model, { config, step: 0 });
    model.dispose();
    const bytes = await Deno.readFile(`${folder}/model.safetensors`);
    assert.throws(
      () => chatModelFromFiles(gpu, new Uint8Array([1, 2, 3]), json),
      /checkpoint\.safetensors is not a valid safetensors file/,
    );
    assert.throws(
      () => chatModelFromFiles(gpu, bytes, { model: {} } as never),
      /^Error: tokenizer\.json: /,
    );
    assert.throws(() => chatModelFromFiles(gpu, bytes, withoutChatMl), /no <\|im_start\|>/);
    assert.throws(
      () => chatModelFromFiles(gpu, bytes, json),
      /tokenizer\.json has 272 tokens but the model of checkpoint\.safetensors only 270/,
    );
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});
