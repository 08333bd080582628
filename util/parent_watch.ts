/**
 * Noticing that the `deno task` process that started this one has died. `deno task X` runs the
 * command as a child; `kill -9` on the task process cannot be forwarded, so the child would go
 * on alone, writing into a folder that a restarted task then shares. A child that watches its
 * parent can stop cleanly instead. Only a `deno task` parent is watched: a run started by hand
 * from a shell keeps running when that shell goes (as `nohup` users expect).
 *
 * @module
 */

/** Options of {@linkcode watchTaskParent}. */
export interface ParentWatchOptions {
  /** How often to look, in milliseconds. Default 1000. */
  intervalMs?: number;
  /** The parent's command line (test seam). Default: read from /proc/PPID/cmdline. */
  parentCommand?: string[] | null;
}

/**
 * Calls `onGone` once when the parent process, if it is a `deno task`, exits (this process is
 * then reparented, so its parent PID changes). Does nothing where the parent is something else
 * or cannot be told (no /proc). The timer does not keep the process alive.
 *
 * @returns a function that stops watching.
 */
export function watchTaskParent(
  onGone: () => void,
  options: ParentWatchOptions = {},
): () => void {
  const parent = Deno.ppid;
  const command = options.parentCommand === undefined
    ? commandLineOf(parent)
    : options.parentCommand;
  if (command === null || !isDenoTask(command)) return () => {};
  const timer = setInterval(() => {
    if (Deno.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, options.intervalMs ?? 1000);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}

/** Whether a command line is `deno [flags] task ...` (any path to the deno binary). */
export function isDenoTask(command: readonly string[]): boolean {
  const program = command[0]?.split("/").at(-1) ?? "";
  const subcommand = command.slice(1).find((arg) => !arg.startsWith("-"));
  return /^deno(\.exe)?$/.test(program) && subcommand === "task";
}

/** A process's command line (Linux), or null where it cannot be read. */
function commandLineOf(pid: number): string[] | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    return text.split("\0").filter((arg) => arg !== "");
  } catch {
    return null;
  }
}
