import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { flagValueMessage } from "../../util/cli.ts";

/** parseArgs' own complaint about `args`, as runCli receives it. */
function parseError(args: string[]): string {
  try {
    parseArgs({ args, options: { rows: { type: "string" }, quiet: { type: "boolean" } } });
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("parseArgs accepted the arguments");
}

Deno.test("flagValueMessage() explains a negative number that parseArgs takes for a flag", () => {
  const args = ["--quiet", "--rows", "-5"];
  assert.equal(
    flagValueMessage(parseError(args), args),
    '--rows got "-5", which starts with a dash like a flag: numbers here must be positive ' +
      "(for example --rows 5); text that starts with a dash goes as --rows=-5.",
  );
});

Deno.test("flagValueMessage() names a flag given no value, and leaves other errors alone", () => {
  const args = ["--rows"];
  assert.equal(flagValueMessage(parseError(args), args), "--rows needs a value (--rows VALUE).");
  assert.equal(flagValueMessage(parseError(["--epochs", "3"]), ["--epochs", "3"]), null);
  assert.equal(flagValueMessage("No such file or folder: x", []), null);
});
