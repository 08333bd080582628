/**
 * Every command answers `--help`: each `deno task` of deno.json (read from the file, so a new task
 * is covered without touching this test) is run with `--help` and must exit 0 with a usage line
 * that names the task and its options. That each help names every flag its parser accepts holds
 * because every command parses with `parseFlags` (util/flags.ts), which gives one description of
 * the flags to both; the last test here checks that no command parses its arguments another way,
 * and tests/util/flags.test.ts checks `parseFlags` itself.
 */

import assert from "node:assert/strict";

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

/** One task run with `args` (default `--help`): its exit code and what it printed. */
async function runHelp(
  command: string,
  args = ["--help"],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { flags, script } = taskScript(command);
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, script, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

Deno.test("every deno task answers --help with exit code 0 and a usage line, and an unknown flag with a pointer to it", async () => {
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
        } else if (!/^Options:$/m.test(stdout) || !/^ {2}--help +/m.test(stdout)) {
          failures.push(
            `${name}: its help is not helpText's (no "Options:" and "--help"):\n${stdout}`,
          );
        }
        // An unknown flag is an error that points to the help.
        const unknown = await runHelp(command, ["--no-such-flag"]);
        const pointer = `Run \`deno task ${name} --help\` for the options.`;
        if (unknown.code === 0 || !unknown.stderr.includes(pointer)) {
          failures.push(`${name} --no-such-flag: exit code ${unknown.code}\n${unknown.stderr}`);
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

/** Where commands live: every .ts file under these folders, but for util/flags.ts. */
const COMMAND_FOLDERS = ["pipeline", "bench", "scripts", "util", "kernels", "nn", "tokenizer"];

/** The .ts files under `folder`, relative to the repository root. */
async function sourceFiles(folder: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(new URL(`${folder}/`, ROOT))) {
    const path = `${folder}/${entry.name}`;
    if (entry.isDirectory) files.push(...await sourceFiles(path));
    else if (entry.name.endsWith(".ts")) files.push(path);
  }
  return files;
}

/**
 * A command that parsed `Deno.args` itself (with its own `parseArgs` or by hand) could accept a
 * flag its help does not name; one that calls parseFlags cannot. Comments are left out of the
 * search, so a file may still mention the words.
 */
function ownArgumentParsing(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  return ["parseArgs", "Deno.args"].filter((word) => code.includes(word));
}

Deno.test("no command parses its arguments but through parseFlags, so its help names every flag", async () => {
  const files = (await Promise.all(COMMAND_FOLDERS.map(sourceFiles))).flat();
  assert.ok(files.includes("pipeline/main_job.ts"), `the search missed pipeline/: ${files}`);
  const offenders: string[] = [];
  for (const file of files) {
    if (file === "util/flags.ts" || file === "util/cli.ts") continue;
    const found = ownArgumentParsing(await Deno.readTextFile(new URL(file, ROOT)));
    if (found.length > 0) offenders.push(`${file}: ${found.join(", ")}`);
  }
  assert.deepEqual(offenders, [], "parse flags with parseFlags from util/flags.ts");
});

Deno.test("ownArgumentParsing() finds parseArgs and Deno.args in code, not in comments", () => {
  assert.deepEqual(ownArgumentParsing("const { values } = parseArgs({ args: Deno.args });"), [
    "parseArgs",
    "Deno.args",
  ]);
  assert.deepEqual(ownArgumentParsing("const n = Deno.args.length;"), ["Deno.args"]);
  assert.deepEqual(
    ownArgumentParsing("/** Unlike parseArgs, */\n// reads Deno.args\nconst x = parseFlags(u, F);"),
    [],
  );
});
