/**
 * Command-line flags described once: each flag's type, default and one line of help, given to
 * `parseArgs` as they are (it ignores the `help` field) and turned into the `--help` text, so a
 * default shown in the help is the default used.
 */

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
