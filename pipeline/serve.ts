/**
 * Chat in the browser: serves a page that runs the tuned model on the visitor's own GPU, with
 * this project's kernels, model and tokenizer code bundled for the browser (`deno bundle` of
 * web/chat_page.ts, which imports nothing that needs Deno), and the model's two files.
 *
 *     deno task serve --checkpoint runs/main/instruct/model/checkpoint.safetensors \
 *       --tokenizer runs/main/instruct/data/tokenizer --port 8000
 *
 * @module
 */

import { readCheckpoint } from "../nn/checkpoint.ts";
import { chatMarkerIds } from "./chatml.ts";
import { resolveTokenizer } from "./tokenize_dataset.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";

/** Options of {@linkcode serveChat}. */
export interface ServeChatOptions {
  /** A checkpoint file written by train_model or finetune-instruct. */
  checkpoint: string;
  /** Its tokenizer: the folder holding tokenizer.json, or the file. */
  tokenizer: string;
  /** The port; 0 picks a free one. Default 8000. */
  port?: number;
  /** The address to listen on. Default 127.0.0.1 (this machine only). */
  hostname?: string;
}

/** A running chat server. */
export interface ChatServer {
  /** The page's address, e.g. `http://127.0.0.1:8000/`. */
  url: string;
  /** Stops the server. */
  close(): Promise<void>;
}

/** The page's own files, beside the page script. */
const PAGE_FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

const WEB_FOLDER = new URL("../web/", import.meta.url);

/**
 * The chat page's script: web/chat_page.ts and everything it imports bundled for the browser by
 * `deno bundle`, run by this Deno.
 *
 * @throws with the bundler's output when it fails (e.g. a module that needs Deno was imported).
 */
export async function bundleChatPage(): Promise<string> {
  const folder = await Deno.makeTempDir({ prefix: "chat_page_" });
  try {
    const output = `${folder}/chat.js`;
    const { success, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--platform=browser",
        "--output",
        output,
        new URL("chat_page.ts", WEB_FOLDER).pathname,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!success) {
      throw new Error(
        `Bundling web/chat_page.ts for the browser failed:\n${new TextDecoder().decode(stderr)}`,
      );
    }
    return await Deno.readTextFile(output);
  } finally {
    await Deno.remove(folder, { recursive: true }).catch(() => {});
  }
}

/**
 * Serves the chat page and the model's files on `hostname:port` until closed. The checkpoint and
 * the tokenizer are read and checked first (a model file, a tokenizer with the ChatML tokens, no
 * more tokens than the model has), so a bad path fails here rather than in the page.
 *
 * @throws naming the file or flag, when a model file is missing, damaged or does not fit.
 */
export async function serveChat(options: ServeChatOptions): Promise<ChatServer> {
  if ((await Deno.stat(options.checkpoint).catch(() => null))?.isDirectory) {
    throw new Error(
      `--checkpoint ${options.checkpoint} is a folder; the page loads one checkpoint file ` +
        "(such as runs/main/instruct/model/checkpoint.safetensors).",
    );
  }
  const { config } = await readCheckpoint(options.checkpoint);
  const tokenizer = await resolveTokenizer(options.tokenizer);
  chatMarkerIds(tokenizer);
  if (config.vocabSize < tokenizer.vocabSize) {
    throw new Error(
      `--tokenizer ${options.tokenizer} has ${tokenizer.vocabSize} tokens but the model of ` +
        `${options.checkpoint} only ${config.vocabSize}; pass the tokenizer it was trained with.`,
    );
  }
  const tokenizerFile = (await Deno.stat(options.tokenizer)).isDirectory
    ? `${options.tokenizer}/tokenizer.json`
    : options.tokenizer;
  const files = new Map<string, { body: Uint8Array; type: string }>();
  for (const [route, { file, type }] of Object.entries(PAGE_FILES)) {
    files.set(route, { body: await Deno.readFile(new URL(file, WEB_FOLDER)), type });
  }
  const script = new TextEncoder().encode(await bundleChatPage());
  files.set("/chat.js", { body: script, type: "text/javascript; charset=utf-8" });
  files.set("/model/checkpoint.safetensors", {
    body: await Deno.readFile(options.checkpoint),
    type: "application/octet-stream",
  });
  files.set("/model/tokenizer.json", {
    body: await Deno.readFile(tokenizerFile),
    type: "application/json",
  });
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 8000;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ port, hostname, onListen: () => {} }, (request) => {
      const file = files.get(new URL(request.url).pathname);
      if (!file) return new Response("Not found", { status: 404 });
      // The model files change when a run writes them again: never a stale copy.
      return new Response(file.body.slice(), {
        headers: { "content-type": file.type, "cache-control": "no-store" },
      });
    });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    throw new Error(`Port ${port} is in use; pass another one with --port.`);
  }
  return {
    url: `http://${hostname}:${server.addr.port}/`,
    close: () => server.shutdown(),
  };
}

/** The model flags of `deno task serve` (also the screenshot script's), with defaults and help. */
export const SERVE_MODEL_FLAGS = {
  checkpoint: {
    type: "string",
    default: "runs/main/instruct/model/checkpoint.safetensors",
    help: "the instruction-tuned checkpoint file the page runs",
  },
  tokenizer: {
    type: "string",
    default: "runs/main/instruct/data/tokenizer",
    help: "its tokenizer (folder with tokenizer.json, or the file), with the ChatML tokens",
  },
} as const;

/** The flags of `deno task serve`, with their defaults and help. */
const FLAGS = {
  ...SERVE_MODEL_FLAGS,
  port: { type: "string", default: "8000", help: "the port of the page on localhost" },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task serve [options]", FLAGS);
    if (!values) return;
    const port = intFlag("port", values.port, 1);
    if (port > 65535) throw new Error(`--port must be from 1 to 65535, got ${port}.`);
    const server = await serveChat({
      checkpoint: values.checkpoint,
      tokenizer: values.tokenizer,
      port,
    });
    console.log(`Chat page at ${server.url} (Ctrl-C stops the server).`);
    console.log("Open it in a browser with WebGPU: the model runs on the browser's GPU.");
  });
}
