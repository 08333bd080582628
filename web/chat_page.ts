/**
 * The chat page's script, bundled for the browser by `deno task serve` (pipeline/serve.ts): it
 * acquires a WebGPU device with the project's own device layer, fetches the served model files,
 * and answers each message on the page's GPU, streaming the tokens as they come
 * ({@linkcode streamChatReply}). It shows the adapter and the tokens per second; temperature and
 * top-k are set on the page; Stop ends an answer. A browser without WebGPU, or model files that
 * do not load, get a message that says so; so do the device layer's errors (no adapter, a kernel
 * whose WGSL does not compile, a lost device), with the same messages as in Deno and no stack.
 *
 * `globalThis.chatPage` lets the browser test drive the page: `ready`, `logits(ids)` and
 * `send(message, seed)`, which goes through the same form handling as a typed message.
 *
 * This file reaches the page through the DOM without the DOM's type library (the project is
 * type-checked with Deno's), so the few element members it uses are declared below.
 *
 * @module
 */

import { acquireGpu, DeviceLostError, type Gpu } from "../kernels/device.ts";
import type { ChatTurn } from "../pipeline/chatml.ts";
import type { HfTokenizerJson } from "../tokenizer/hf_json.ts";
import {
  type ChatModel,
  chatModelFromFiles,
  lastLogits,
  type Reply,
  streamChatReply,
} from "./chat_model.ts";

/** The members of the page's elements this script uses. */
interface PageElement {
  textContent: string | null;
  className: string;
  value: string;
  disabled: boolean;
  append(...nodes: PageElement[]): void;
  addEventListener(type: string, listener: (event: PageEvent) => void): void;
  scrollIntoView(options?: { block?: string }): void;
}

/** The members of DOM events this script uses. */
interface PageEvent {
  key?: string;
  shiftKey?: boolean;
  preventDefault(): void;
}

/** The document, as far as this script uses it. */
const page = (globalThis as unknown as {
  document: {
    getElementById(id: string): PageElement;
    createElement(tag: string): PageElement;
  };
}).document;

/** Where the server puts the model files, relative to the page. */
export const MODEL_FILES = {
  checkpoint: "model/checkpoint.safetensors",
  tokenizer: "model/tokenizer.json",
};

const element = (id: string) => page.getElementById(id);
const [status, adapterLine, log] = [element("status"), element("adapter"), element("log")];
const [messageBox, temperatureBox, topKBox] = [
  element("message"),
  element("temperature"),
  element("top-k"),
];
const [sendButton, stopButton] = [element("send"), element("stop")];

let chat: ChatModel | null = null;
const turns: ChatTurn[] = [];
let stopper: AbortController | null = null;
/** Set once the device is lost: the page cannot answer again until it is reloaded. */
let lostMessage: string | null = null;

/** The message shown in the status line, in red when something failed. */
function showStatus(text: string, isError = false): void {
  status.textContent = text;
  status.className = isError ? "error" : "";
}

/** A new bubble of the conversation. */
function addTurn(role: "user" | "assistant", text: string): PageElement {
  const bubble = page.createElement("div");
  bubble.className = `turn ${role}`;
  bubble.textContent = text;
  log.append(bubble);
  return bubble;
}

/** The bytes of a served file, or an error that names it and says what the server answered. */
async function fetchBytes(path: string): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(path);
  } catch (error) {
    throw new Error(`Could not fetch ${path} (${(error as Error).message}); is the server up?`);
  }
  if (!response.ok) {
    throw new Error(
      `The server answered ${response.status} for ${path}; check that deno task serve is ` +
        "still running, and reload.",
    );
  }
  return new Uint8Array(await response.arrayBuffer());
}

/** Acquires the GPU and loads the model; returns the adapter's name and the model's shape. */
async function start(): Promise<{ adapter: string; config: unknown }> {
  if (!(navigator as Navigator & { gpu?: unknown }).gpu) {
    const message = "This browser has no WebGPU (navigator.gpu is missing). Use a recent " +
      "Chrome, Edge or Safari, or Firefox with WebGPU on; over plain HTTP it works on localhost.";
    adapterLine.textContent = "No WebGPU";
    showStatus(message, true);
    throw new Error(message);
  }
  const gpu = await acquireGpu({ announce: false }).catch((error: Error) => {
    adapterLine.textContent = "No WebGPU adapter";
    showStatus(error.message, true);
    throw error;
  });
  // A lost device (driver reset, GPU taken back, tab in the background too long) is shown when it
  // happens, not at the next message; the page's GPU work is gone, so sending stops.
  gpu.device.lost.then((info) => {
    lostMessage = new DeviceLostError(info.reason, info.message).message;
    showStatus(lostMessage, true);
    messageBox.disabled = sendButton.disabled = true;
  });
  adapterLine.textContent = `Adapter: ${adapterName(gpu)}` +
    (gpu.adapter.isCpu ? " (runs on the CPU: expect slow answers)" : "");
  showStatus("Loading the model…");
  try {
    const [checkpoint, tokenizerBytes] = await Promise.all([
      fetchBytes(MODEL_FILES.checkpoint),
      fetchBytes(MODEL_FILES.tokenizer),
    ]);
    let tokenizerJson: HfTokenizerJson;
    try {
      tokenizerJson = JSON.parse(new TextDecoder().decode(tokenizerBytes));
    } catch {
      throw new Error(`${MODEL_FILES.tokenizer} is not JSON; serve the tokenizer folder again.`);
    }
    chat = chatModelFromFiles(gpu, checkpoint, tokenizerJson, MODEL_FILES);
  } catch (error) {
    const message = `The model files could not be loaded: ${(error as Error).message}`;
    showStatus(message, true);
    throw new Error(message);
  }
  const { config } = chat.model;
  showStatus(
    `Model: ${config.nLayer} layers, width ${config.nEmbd}, context ${config.contextLength}. ` +
      "Ready.",
  );
  messageBox.disabled = sendButton.disabled = false;
  return { adapter: adapterName(gpu), config };
}

/**
 * The adapter as the browser describes it: vendor, architecture and device (a browser often
 * leaves the description, which names the adapter in Deno, empty).
 */
function adapterName(gpu: Gpu): string {
  const info = (gpu.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const parts = [info?.vendor, info?.architecture, info?.device, info?.description]
    .filter((part): part is string => Boolean(part));
  return parts.length > 0 ? [...new Set(parts)].join(" ") : gpu.adapter.name;
}

/** A setting of the page, checked: the value, or an error naming the setting. */
function setting(box: PageElement, name: string, min: number, whole: boolean): number {
  const value = Number(box.value);
  if (!Number.isFinite(value) || value < min || (whole && !Number.isInteger(value))) {
    throw new Error(`${name} must be ${whole ? "a whole number" : "a number"} of ${min} or more.`);
  }
  return value;
}

/** Sends `message` and streams the answer into a new bubble; returns the answer. */
async function send(message: string, seed = Math.floor(Math.random() * 2 ** 31)): Promise<Reply> {
  if (lostMessage) throw new Error(lostMessage);
  if (!chat) throw new Error("The model is not loaded yet.");
  if (stopper) throw new Error("An answer is still being written; stop it first.");
  const text = message.trim();
  if (!text) throw new Error("The message is empty.");
  const temperature = setting(temperatureBox, "temperature", 0, false);
  const topK = setting(topKBox, "top-k", 1, true);
  addTurn("user", text);
  const bubble = addTurn("assistant", "");
  stopper = new AbortController();
  messageBox.disabled = sendButton.disabled = true;
  stopButton.disabled = false;
  showStatus("Writing…");
  try {
    const reply = await streamChatReply(chat, turns, text, {
      temperature,
      topK,
      seed,
      signal: stopper.signal,
      onText: (soFar) => {
        bubble.textContent = soFar;
        streamedUpdates++;
        bubble.scrollIntoView({ block: "end" });
      },
    });
    bubble.textContent = reply.text;
    const meta = page.createElement("span");
    meta.className = "meta";
    meta.textContent = `${reply.tokens.length} tokens, ${reply.tokensPerSecond.toFixed(1)} ` +
      `tokens/s${reply.end === "stopped" ? ", stopped" : reply.end === "length" ? ", cut" : ""}`;
    bubble.append(meta);
    turns.push({ user: text, assistant: reply.text });
    showStatus(`Ready. Last answer: ${reply.tokensPerSecond.toFixed(1)} tokens/s.`);
    return reply;
  } catch (error) {
    // The device layer's errors say what failed and name the kernel; the message is enough.
    showStatus(`The answer failed: ${error instanceof Error ? error.message : error}`, true);
    throw error;
  } finally {
    stopper = null;
    messageBox.disabled = sendButton.disabled = lostMessage !== null;
    stopButton.disabled = true;
  }
}

/** Times the answer bubble changed while streaming (the browser test checks it streams). */
let streamedUpdates = 0;

element("compose").addEventListener("submit", (event) => {
  event.preventDefault();
  const message = messageBox.value;
  messageBox.value = "";
  send(message).catch(() => {}); // the status line shows the error
});
messageBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    const message = messageBox.value;
    messageBox.value = "";
    send(message).catch(() => {});
  }
});
stopButton.addEventListener("click", () => stopper?.abort());

const ready = start();
ready.catch(() => {}); // shown on the page; the test reads the rejection from `ready`

(globalThis as unknown as { chatPage: unknown }).chatPage = {
  ready,
  /** The logits after `ids`, as a plain array (what the DevTools protocol returns by value). */
  logits: async (ids: number[]) => {
    await ready;
    return Array.from(await lastLogits(chat!.model, ids));
  },
  /** Sends a message as the form does, with a fixed seed; the reply and the stream's updates. */
  send: async (message: string, seed: number) => {
    const before = streamedUpdates;
    const reply = await send(message, seed);
    return { ...reply, updates: streamedUpdates - before, shown: log.textContent };
  },
};
