/**
 * What every command-line entry point shares, in pipeline/, bench/ and scripts/: one error line
 * instead of a stack trace for the mistakes a user can fix, a non-zero exit status, and a signal
 * that Ctrl-C aborts so long work can stop and save. Flags are described and parsed in
 * `util/flags.ts`.
 *
 * @module
 */

import { watchTaskParent } from "./parent_watch.ts";

/**
 * Runs `main`, printing `error: <message>` and exiting with status 1 if it throws. Set
 * `DEBUG=1` to see the stack trace too. When Ctrl-C stopped the work ({@linkcode interruptSignal})
 * it exits with status 130, as an interrupted program does, so `train-model && next` stops.
 */
export async function runCli(main: () => Promise<void> | void): Promise<void> {
  try {
    await main();
    if (interrupted) Deno.exit(130);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`error: ${flagValueMessage(message, Deno.args) ?? message}`);
    if (Deno.env.get("DEBUG") && error instanceof Error) console.error(error.stack);
    Deno.exit(1);
  }
}

/**
 * A clearer message for parseArgs' complaint about a flag's value, or null for other errors:
 * `--rows -5` is "ambiguous" to parseArgs (a value that starts with a dash may be a flag), and
 * the flags that take such values here are positive numbers.
 */
export function flagValueMessage(message: string, args: readonly string[]): string | null {
  const flag = /^Option '(?:-\w, )?(--[\w-]+)[^']*' argument (is ambiguous|missing)/.exec(message);
  if (!flag) return null;
  const [, name, problem] = flag;
  if (problem === "missing") return `${name} needs a value (${name} VALUE).`;
  const value = args[args.indexOf(name) + 1] ?? "";
  return `${name} got "${value}", which starts with a dash like a flag: numbers here must be ` +
    `positive (for example ${name} 5); text that starts with a dash goes as ${name}=${value}.`;
}

/** Set when Ctrl-C stopped the work, for {@linkcode runCli}'s exit status. */
let interrupted = false;

/**
 * A signal that the first Ctrl-C aborts, so long work can stop after its current step and save
 * what it has; a second Ctrl-C quits at once (status 130). It also aborts when the `deno task`
 * process that started this one dies (`kill -9` on it cannot be forwarded here), so the run stops
 * and saves rather than going on alone beside a restarted one.
 */
export function interruptSignal(): AbortSignal {
  const interrupt = new AbortController();
  Deno.addSignalListener("SIGINT", () => {
    interrupted = true;
    if (interrupt.signal.aborted) Deno.exit(130);
    console.error(
      "\nstopping at the next safe point (training saves a checkpoint first); Ctrl-C again quits",
    );
    interrupt.abort();
  });
  watchTaskParent(() => {
    if (interrupt.signal.aborted) return;
    console.error(
      "\nthe deno task that started this run has exited; stopping at the next safe point " +
        "(training saves a checkpoint first)",
    );
    interrupt.abort();
  });
  return interrupt.signal;
}
