import assert from "node:assert/strict";

/** Runs `body` under runCli with an interruptSignal in a child, sends SIGINT once it is ready. */
async function interruptedChild(body: string, signals = 1) {
  const cli = new URL("../../util/cli.ts", import.meta.url);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { interruptSignal, runCli } from "${cli}";
       await runCli(async () => {
         const signal = interruptSignal();
         console.log("ready");
         ${body}
       });`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  assert.match(new TextDecoder().decode((await reader.read()).value), /ready/);
  reader.releaseLock();
  for (let i = 0; i < signals; i++) {
    child.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const { code, stdout } = await child.output();
  return { code, stdout: new TextDecoder().decode(stdout) };
}

Deno.test("runCli() exits 130 when Ctrl-C stopped the work, after it finished saving", async () => {
  const { code, stdout } = await interruptedChild(`
    await new Promise((resolve) => signal.addEventListener("abort", resolve));
    console.log("saved");`);
  assert.equal(code, 130);
  assert.match(stdout, /saved/, "the work finished before the exit");
});

Deno.test("a second Ctrl-C quits at once with 130", async () => {
  const { code, stdout } = await interruptedChild(
    `signal.addEventListener("abort", () => {}); await new Promise((r) => setTimeout(r, 20_000));`,
    2,
  );
  assert.equal(code, 130);
  assert.equal(stdout, "");
});

Deno.test("runCli() exits 0 when nothing interrupted the work", async () => {
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { interruptSignal, runCli } from "${new URL(
        "../../util/cli.ts",
        import.meta.url,
      )}"; await runCli(() => { interruptSignal(); });`,
    ],
  }).output();
  assert.equal(code, 0);
});
