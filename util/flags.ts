/**
 * Command-line flags described once: each flag's type, default and one line of help.
 * {@linkcode parseFlags} gives the same description to `parseArgs` (which ignores the `help`
 * field) and to {@linkcode helpText}, so the help names every flag the parser accepts and a
 * default shown in the help is the default used. The checks below turn a flag's text into the
 * number it stands for, with an error that names the flag.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** A flag that takes a value, with its default. */
export interface ValueFlag {
  /** Always `string`: values are parsed and checked by the command. */
  type: "string";
  /** The value when the flag is absent. */
  default: string;
  /** One line for `--help`. */
  help: string;
}

/** A flag that takes a value and is unset when absent. */
export interface OptionalFlag {
  /** Always `string`: values are parsed and checked by the command. */
  type: "string";
  /** One line for `--help`. */
  help: string;
}

/** A flag that may be given more than once, each value kept (in a list); unset when absent. */
export interface RepeatedFlag {
  /** Always `string`: values are parsed and checked by the command. */
  type: "string";
  /** Always `true`: parseArgs keeps every value. */
  multiple: true;
  /** One line for `--help`. */
  help: string;
}

/** A switch. */
export interface SwitchFlag {
  /** Always `boolean`. */
  type: "boolean";
  /** The value when the flag is absent: `false`. */
  default: boolean;
  /** One line for `--help`. */
  help: string;
}

/** Any described flag. */
export type Flag = ValueFlag | OptionalFlag | RepeatedFlag | SwitchFlag;

/** The `--help` switch every command answers. */
export const HELP_FLAG: { help: SwitchFlag } = {
  help: { type: "boolean", default: false, help: "print this help and exit" },
};

/**
 * The `--help` text: `Usage: ` and `usage` (how the command is run, e.g.
 * `deno task chat [options]`), then one line per flag with its default. A flag that may be
 * repeated shows `<value>...`.
 */
export function helpText(usage: string, flags: Record<string, Flag>): string {
  const names = Object.entries(flags).map(([name, flag]) =>
    `--${name}${
      flag.type === "boolean"
        ? ""
        : "multiple" in flag && flag.multiple
        ? " <value>..."
        : " <value>"
    }`
  );
  const width = Math.max(...names.map((name) => name.length)) + 2;
  const lines = Object.values(flags).map((flag, i) => {
    const shown = flag.type === "string" && "default" in flag && flag.default !== ""
      ? ` (default ${flag.default})`
      : "";
    return `  ${names[i].padEnd(width)}${flag.help}${shown}`;
  });
  return `Usage: ${usage}\n\nOptions:\n${lines.join("\n")}`;
}

/**
 * The values of a command's flags: `args` (the command line) parsed by `parseArgs` with `flags`,
 * strictly (an unknown flag or a stray argument is an error). With `--help`, prints
 * {@linkcode helpText} of `usage` and `flags` and returns `undefined`, so the command returns
 * without doing its work. `flags` must include {@linkcode HELP_FLAG}.
 */
export function parseFlags<const F extends Record<string, Flag> & typeof HELP_FLAG>(
  usage: string,
  flags: F,
  args: readonly string[] = Deno.args,
): ParsedFlags<F> | undefined {
  let values;
  try {
    ({ values } = parseArgs({ args: [...args], options: flags, strict: true }));
  } catch (error) {
    // parseArgs names the bad flag or argument; say where the right ones are listed.
    const command = usage.split(/ (?:--|\[)/)[0];
    const message = (error as Error).message.replace(/\.?$/, ".");
    throw new Error(`${message} Run \`${command} --help\` for the options.`);
  }
  // parseArgs' type of `values` cannot be read while F is still generic.
  if ((values as { help?: boolean }).help) {
    console.log(helpText(usage, flags));
    return undefined;
  }
  return values as ParsedFlags<F>;
}

/** What {@linkcode parseFlags} returns for `flags`: as `parseArgs` types its `values`. */
export type ParsedFlags<F extends Record<string, Flag>> = ReturnType<
  typeof parseArgs<{ args: string[]; options: F; strict: true }>
>["values"];

/**
 * A whole-number flag: `--name value` parsed and checked to be at least `min`; the error names
 * the flag and what it got.
 */
export function intFlag(name: string, value: string, min = 1): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min) {
    throw new Error(`--${name} must be a whole number of at least ${min}, got "${value}".`);
  }
  return parsed;
}

/** A number flag that must be finite and greater than `above`. */
export function numberFlag(name: string, value: string, above = 0): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= above) {
    throw new Error(`--${name} must be a number above ${above}, got "${value}".`);
  }
  return parsed;
}

/** A number flag that must be finite and 0 or more (a temperature, a guidance scale). */
export function nonNegativeFlag(name: string, value: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) {
    throw new Error(`--${name} must be a number of 0 or more, got "${value}".`);
  }
  return parsed;
}

/** A fraction flag: a number from 0 (inclusive) to 1 (exclusive). */
export function fractionFlag(name: string, value: string): number {
  const parsed = Number(value);
  if (!(parsed >= 0 && parsed < 1)) {
    throw new Error(`--${name} must be a number from 0 up to (not including) 1, got "${value}".`);
  }
  return parsed;
}
