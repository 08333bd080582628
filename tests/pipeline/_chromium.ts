/**
 * A headless Chromium for the browser test, driven over the DevTools protocol (CDP) with Deno's
 * own WebSocket: launch it, open a page, evaluate expressions in it, take a screenshot, close
 * it. Chromium runs WebGPU headless on its SwiftShader adapter (`--enable-unsafe-webgpu`), so
 * the test needs no GPU; scripts/setup.sh installs Debian's `chromium`.
 */

/** The browser's path: `CHROMIUM` from the environment, else `chromium` on the PATH. */
const CHROMIUM = Deno.env.get("CHROMIUM") ?? "chromium";

/** How long the browser may take to start and print its DevTools address. */
const START_TIMEOUT_MS = 30_000;

/** A page open in the browser. */
export interface BrowserPage {
  /**
   * The value of `expression` in the page, awaited when it is a promise.
   *
   * @throws with the page's exception text when the expression throws or rejects.
   */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the page's viewport. */
  screenshot(): Promise<Uint8Array>;
}

/** A running headless Chromium. */
export interface Browser {
  /**
   * Opens `url` in a new tab; `beforeLoad` (a script) runs in the page before the page's own
   * scripts, to take something away from the page (WebGPU, a file).
   */
  open(url: string, beforeLoad?: string): Promise<BrowserPage>;
  /** Ends the browser and removes its profile. */
  close(): Promise<void>;
}

/** Options of {@linkcode launchChromium}. */
export interface LaunchOptions {
  /** The window (and so the screenshot) size in CSS pixels, `[width, height]`. Default 900×700. */
  windowSize?: [number, number];
}

/**
 * Starts a headless Chromium with WebGPU on, at the lowest CPU priority (the test shares the
 * machine), with a fresh profile.
 *
 * @throws saying how to install Chromium when it is not found, or with its output when it does
 *   not start.
 */
export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  const [width, height] = options.windowSize ?? [900, 700];
  const profile = await Deno.makeTempDir({ prefix: "chromium_profile_" });
  const args = [
    "-n",
    "19",
    CHROMIUM,
    "--headless=new",
    "--enable-unsafe-webgpu",
    "--remote-debugging-port=0",
    `--user-data-dir=${profile}`,
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu-sandbox",
    `--window-size=${width},${height}`,
    // Chromium refuses to run as root with its sandbox on (CI containers run as root).
    ...(Deno.uid() === 0 ? ["--no-sandbox"] : []),
    "about:blank",
  ];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("nice", { args, stdout: "null", stderr: "piped" }).spawn();
  } catch (error) {
    await Deno.remove(profile, { recursive: true });
    throw error;
  }
  let output = "";
  const kill = async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already ended */ }
    await child.status;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };
  // The browser prints "DevTools listening on ws://…" on stderr once it is up; the rest of its
  // stderr (warnings about D-Bus and the like) is kept for the error message, then drained.
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const address = await (async () => {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      output += value;
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(output);
      if (match) return match[1];
    }
    return null;
  })();
  if (!address) {
    await kill();
    const installed = output.includes("No such file") || output.includes("not found");
    throw new Error(
      installed
        ? `${CHROMIUM} is not installed; run bash scripts/setup.sh (it installs Debian's chromium).`
        : `Chromium did not start within ${START_TIMEOUT_MS / 1000} s:\n${output.slice(-2000)}`,
    );
  }
  (async () => {
    while (!(await reader.read()).done) { /* drained so the browser never blocks on stderr */ }
  })().catch(() => {});
  const cdp = await connect(address);
  return {
    async open(url: string, beforeLoad?: string): Promise<BrowserPage> {
      // The tab starts blank and is then sent to `url`: Page.navigate answers once the page's
      // document is committed, so nothing is evaluated in the blank one it replaces.
      const { targetId } = await cdp.send<{ targetId: string }>("Target.createTarget", {
        url: "about:blank",
      });
      const { sessionId } = await cdp.send<{ sessionId: string }>("Target.attachToTarget", {
        targetId,
        flatten: true,
      });
      if (beforeLoad) {
        // The script is only injected into new documents while the Page domain is on.
        await cdp.send("Page.enable", {}, sessionId);
        await cdp.send("Page.addScriptToEvaluateOnNewDocument", { source: beforeLoad }, sessionId);
      }
      await cdp.send("Page.navigate", { url }, sessionId);
      return {
        async evaluate<T>(expression: string): Promise<T> {
          const { result, exceptionDetails } = await cdp.send<{
            result: { value?: T };
            exceptionDetails?: { text: string; exception?: { description?: string } };
          }>("Runtime.evaluate", {
            expression,
            awaitPromise: true,
            returnByValue: true,
          }, sessionId);
          if (exceptionDetails) {
            throw new Error(
              `In the page: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`,
            );
          }
          return result.value as T;
        },
        async screenshot(): Promise<Uint8Array> {
          const { data } = await cdp.send<{ data: string }>(
            "Page.captureScreenshot",
            { format: "png" },
            sessionId,
          );
          return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        },
      };
    },
    async close() {
      await cdp.send("Browser.close").catch(() => {});
      cdp.close();
      await kill();
    },
  };
}

/** A DevTools protocol connection: commands by id, answers matched to them. */
interface Cdp {
  send<T = unknown>(method: string, params?: unknown, sessionId?: string): Promise<T>;
  close(): void;
}

/** Opens the DevTools WebSocket at `address`. */
async function connect(address: string): Promise<Cdp> {
  const socket = new WebSocket(address);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`Could not connect to Chromium at ${address}.`));
  });
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let nextId = 1;
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data as string);
    const waiter = pending.get(message.id);
    if (!waiter) return; // an event, not an answer
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(`CDP: ${message.error.message}`));
    else waiter.resolve(message.result);
  };
  socket.onclose = () => {
    for (const waiter of pending.values()) waiter.reject(new Error("Chromium closed."));
    pending.clear();
  };
  return {
    send<T>(method: string, params: unknown = {}, sessionId?: string): Promise<T> {
      const id = nextId++;
      socket.send(JSON.stringify({ id, method, params, sessionId }));
      return new Promise<T>((resolve, reject) =>
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      );
    },
    close: () => socket.close(),
  };
}
