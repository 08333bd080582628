/**
 * Every command answers `--help`: each `deno task` of deno.json (read from the file, so a new task
 * is covered without touching this test) is run with `--help` and must exit 0 with a usage line
 * that names the task. `helpText`, which most commands build their help with, is checked apart.
 */

import assert from "node:assert/strict";
import { HELP_FLAG, helpText } from "../../pipeline/_flags.ts";

const ROOT = new URL("../../", import.meta.url);

/** Tasks that are not commands of this project's code (shell scripts, the checks themselves). */
const NOT_COMMANDS = new Set(["setup", "check", "test"]);

/** A task's script and the `deno run` flags before it, from its command line in deno.json. */
function taskScript(command: string): { flags: string[]; script: string } {
  const words = command.trim().split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run") {
    throw new Error(`"${command}" is not "deno run <flags> <script>"; list it in NOT_COMMANDS.`);
  }
  const script = words.slice(2).find((word) => !word.startsWith("-"));
  if (!script) throw new Error(`"${command}" names no script.`);
  return { flags: words.slice(2, words.indexOf(script)), script };
}

/** The tasks of deno.json that run one of this project's commands. */
async function commandTasks(): Promise<[string, string][]> {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  return Object.entries(config.tasks as Record<string, string>)
    .filter(([name]) => !NOT_COMMANDS.has(name));
}

/** `--help` of one task: its exit code and what it printed. */
async function runHelp(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const { flags, script } = taskScript(command);
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, script, "--help"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

Deno.test("every deno task answers --help with exit code 0 and a usage line", async () => {
  const tasks = await commandTasks();
  assert.ok(tasks.length >= 10, `deno.json lists only ${tasks.length} command tasks`);
  // A few at a time: each is a Deno process that loads its module graph.
  const failures: string[] = [];
  for (let start = 0; start < tasks.length; start += 4) {
    await Promise.all(
      tasks.slice(start, start + 4).map(async ([name, command]) => {
        const { code, stdout, stderr } = await runHelp(command);
        const usage = new RegExp(`deno task ${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\b`);
        if (code !== 0) failures.push(`${name}: exit code ${code}\n${stderr}`);
        else if (!usage.test(stdout)) {
          failures.push(`${name}: no "deno task ${name}" in\n${stdout}`);
        }
      }),
    );
  }
  assert.deepEqual(failures, []);
});

Deno.test("taskScript() finds the script after the deno run flags, and refuses other commands", () => {
  assert.deepEqual(taskScript("deno run --allow-all --no-lock bench/tokenizer.ts"), {
    flags: ["--allow-all", "--no-lock"],
    script: "bench/tokenizer.ts",
  });
  assert.throws(() => taskScript("bash scripts/setup.sh"), /NOT_COMMANDS/);
  assert.throws(() => taskScript("deno run --allow-all"), /names no script/);
});

Deno.test("helpText() gives the usage line, then every flag with its help and its default", () => {
  const flags = {
    context: { type: "string", default: "1024", help: "tokens per row" },
    rows: { type: "string", help: "most rows to take" },
    question: { type: "string", multiple: true, help: "a question; repeat for more" },
    quiet: { type: "boolean", default: false, help: "no progress output" },
    ...HELP_FLAG,
  } as const;
  const lines = helpText("deno task example [options]", flags).split("\n");
  assert.equal(lines[0], "Usage: deno task example [options]");
  assert.equal(lines[2], "Options:");
  const options = lines.slice(3);
  assert.equal(options.length, Object.keys(flags).length);
  for (const [i, [name, flag]] of Object.entries(flags).entries()) {
    assert.match(options[i], new RegExp(`^  --${name}\\b`));
    assert.ok(options[i].includes(flag.help), `${options[i]} lacks "${flag.help}"`);
  }
  assert.match(options[0], /--context <value> +tokens per row \(default 1024\)$/);
  assert.match(options[1], /--rows <value> +most rows to take$/);
  assert.match(options[2], /--question <value>\.\.\. +a question; repeat for more$/);
  // A switch takes no value, and its default (false) goes without saying.
  assert.match(options[3], /--quiet +no progress output$/);
  // The help column starts at the same place on every line.
  const helpStarts = options.map((line, i) => line.indexOf(Object.values(flags)[i].help));
  assert.equal(new Set(helpStarts).size, 1, `help columns ${helpStarts}`);
});
