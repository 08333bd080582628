import assert from "node:assert/strict";
import {
  fractionFlag,
  HELP_FLAG,
  helpText,
  intFlag,
  nonNegativeFlag,
  numberFlag,
  parseFlags,
} from "../../util/flags.ts";

Deno.test("intFlag() accepts whole numbers at or above the minimum, naming the flag otherwise", () => {
  assert.equal(intFlag("steps", "300"), 300);
  assert.equal(intFlag("seed", "0", 0), 0);
  assert.throws(
    () => intFlag("steps", "0"),
    /--steps must be a whole number of at least 1, got "0"/,
  );
  assert.throws(() => intFlag("steps", "1.5"), /--steps must be a whole number/);
  assert.throws(() => intFlag("steps", "ten"), /got "ten"/);
});

Deno.test("numberFlag(), nonNegativeFlag() and fractionFlag() check their ranges", () => {
  assert.equal(numberFlag("lr", "3e-4"), 3e-4);
  assert.throws(() => numberFlag("lr", "0"), /--lr must be a number above 0, got "0"/);
  assert.throws(() => numberFlag("lr", "Infinity"), /--lr must be a number above 0/);
  assert.equal(fractionFlag("val-fraction", "0"), 0);
  assert.equal(fractionFlag("val-fraction", "0.05"), 0.05);
  assert.throws(() => fractionFlag("val-fraction", "1"), /from 0 up to \(not including\) 1/);
  assert.throws(() => fractionFlag("val-fraction", "-0.1"), /got "-0.1"/);
  assert.equal(nonNegativeFlag("temperature", "0"), 0);
  assert.throws(
    () => nonNegativeFlag("temperature", "-1"),
    /--temperature must be a number of 0 or more, got "-1"/,
  );
  assert.throws(() => nonNegativeFlag("guidance", "1e400"), /--guidance must be a number/);
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

/** A command's flags, one of each kind, for parseFlags. */
const FLAGS = {
  context: { type: "string", default: "1024", help: "tokens per row" },
  rows: { type: "string", help: "most rows to take" },
  question: { type: "string", multiple: true, help: "a question; repeat for more" },
  quiet: { type: "boolean", default: false, help: "no progress output" },
  ...HELP_FLAG,
} as const;

/** What `body` printed with console.log, and what it returned. */
function printed<T>(body: () => T): { result: T; output: string[] } {
  const output: string[] = [];
  const log = console.log;
  console.log = (...values: unknown[]) => output.push(values.join(" "));
  try {
    return { result: body(), output };
  } finally {
    console.log = log;
  }
}

Deno.test("parseFlags() gives the values with the defaults filled in, and prints nothing", () => {
  const { result, output } = printed(() =>
    parseFlags("deno task example", FLAGS, ["--rows", "5", "--question", "a", "--question=b"])
  );
  assert.deepEqual(output, []);
  assert.deepEqual({ ...result }, {
    context: "1024",
    rows: "5",
    question: ["a", "b"],
    quiet: false,
    help: false,
  });
});

Deno.test("parseFlags() answers --help with helpText and returns undefined", () => {
  const { result, output } = printed(() =>
    parseFlags("deno task example [options]", FLAGS, ["--rows", "5", "--help"])
  );
  assert.equal(result, undefined);
  assert.deepEqual(output, [helpText("deno task example [options]", FLAGS)]);
});

Deno.test("parseFlags() accepts exactly the flags its help names", () => {
  const help = helpText("deno task example", FLAGS);
  const named = [...help.matchAll(/^ {2}--([\w-]+)/gm)].map((match) => match[1]);
  assert.deepEqual(named, Object.keys(FLAGS));
  for (const [name, flag] of Object.entries(FLAGS)) {
    const args = flag.type === "boolean" ? [`--${name}`] : [`--${name}`, "1"];
    const { result } = printed(() => parseFlags("deno task example", FLAGS, args));
    if (name !== "help") assert.ok(result, `--${name} was refused`);
  }
  assert.throws(
    () => parseFlags("deno task example [options]", FLAGS, ["--row", "5"]),
    /Unknown option '--row'.*Run `deno task example --help` for the options\./,
  );
});

Deno.test("parseFlags() refuses stray arguments and a value flag given no value", () => {
  assert.throws(() => parseFlags("deno task example", FLAGS, ["runs/main"]), /positional/);
  assert.throws(() => parseFlags("deno task example", FLAGS, ["--rows"]), /argument missing/);
});
