/**
 * Makes the README's screenshot of the chat page: serves a tuned model (`serveChat`, as
 * `deno task serve` does) on a free port, opens the page in headless Chromium (WebGPU on its
 * SwiftShader adapter) over the DevTools protocol, sends one question through the page, waits
 * for the answer to end, and saves a PNG of the page. The answer is the model's, unedited; the
 * seed makes a rerun on the same adapter give the same one. The server and the browser are
 * stopped before it returns.
 *
 *     deno run -A scripts/screenshot_chat.ts \
 *       --checkpoint runs/chat25/instruct/model/checkpoint.safetensors \
 *       --tokenizer runs/chat25/instruct/data/tokenizer --out docs/chat_page.png
 *
 * @module
 */

import { SERVE_MODEL_FLAGS, serveChat } from "../pipeline/serve.ts";
import { launchChromium } from "../tests/pipeline/_chromium.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";

const FLAGS = {
  ...SERVE_MODEL_FLAGS,
  question: { type: "string", default: "Why is the sky blue?", help: "the message sent" },
  seed: { type: "string", default: "1", help: "the seed of the answer's sampling" },
  out: { type: "string", default: "docs/chat_page.png", help: "where the PNG is written" },
  width: { type: "string", default: "900", help: "the browser window's width in CSS pixels" },
  height: {
    type: "string",
    default: "600",
    help: "the browser window's height (the screenshot, its page area, is less)",
  },
  ...HELP_FLAG,
} as const;

/** How long the model may take to load in the page and to answer, on a CPU adapter. */
const ANSWER_TIMEOUT_MS = 5 * 60_000;

await runCli(async () => {
  const values = parseFlags("deno run -A scripts/screenshot_chat.ts [options]", FLAGS);
  if (!values) return;
  const seed = intFlag("seed", values.seed, 0);
  const windowSize: [number, number] = [
    intFlag("width", values.width, 200),
    intFlag("height", values.height, 200),
  ];
  const server = await serveChat({
    checkpoint: values.checkpoint,
    tokenizer: values.tokenizer,
    port: 0,
  });
  try {
    const browser = await launchChromium({ windowSize });
    try {
      const page = await browser.open(server.url);
      // chatPage is defined once the page's script has run; `ready` once the model is loaded.
      const loaded = page.evaluate<{ adapter: string }>(
        `new Promise((resolve) => {
          const poll = () => globalThis.chatPage ? resolve(globalThis.chatPage.ready)
            : setTimeout(poll, 50);
          poll();
        })`,
      );
      const { adapter } = await withTimeout(loaded, "load the model");
      // The message goes through the page's own form handling, with a fixed seed.
      const reply = await withTimeout(
        page.evaluate<{ text: string; end: string; tokens: number[] }>(
          `chatPage.send(${JSON.stringify(values.question)}, ${seed})`,
        ),
        "answer",
      );
      await Deno.writeFile(values.out, await page.screenshot());
      console.log(`adapter: ${adapter}`);
      console.log(`question: ${values.question}`);
      console.log(`answer (${reply.tokens.length} tokens, ended by ${reply.end}): ${reply.text}`);
      console.log(`screenshot: ${values.out}`);
    } finally {
      await browser.close();
    }
  } finally {
    await server.close();
  }
});

/** `promise`, or an error naming what the page did not finish in time. */
function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`The page did not ${what} within ${ANSWER_TIMEOUT_MS / 1000} s.`)),
      ANSWER_TIMEOUT_MS,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
