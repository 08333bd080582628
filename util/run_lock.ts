/**
 * A run folder has one owner: an exclusive lock file (`run.lock`, holding the owner's PID and
 * host) that a training run creates before it reads or writes anything there, so a second run
 * on the same folder fails at once instead of mixing its steps and checkpoints into the first
 * one's. A lock whose process is gone (killed, or the machine restarted) is taken over with a
 * note; it is removed when the run ends, however it ends short of `kill -9`.
 *
 * @module
 */

/** The lock file's name inside a run folder. */
export const LOCK_FILE = "run.lock";

/** Who holds a lock: what the lock file records. */
export interface LockOwner {
  /** The owner's process id. */
  pid: number;
  /** The machine it runs on (`Deno.hostname()`): a PID means nothing on another machine. */
  host: string;
  /** When it took the lock, as an ISO date. */
  started: string;
  /**
   * Linux: the process's start time in clock ticks since boot (field 22 of /proc/PID/stat), so
   * a PID reused by a later process is not taken for the owner.
   */
  startTicks?: number;
}

/** A held lock; see {@linkcode acquireRunLock}. */
export interface RunLock {
  /** The lock file. */
  readonly path: string;
  /** Removes the lock file (once; later calls do nothing). */
  release(): void;
}

/** Options of {@linkcode acquireRunLock}. */
export interface RunLockOptions {
  /** Told when a dead owner's lock is taken over. Default: a `note:` line on stderr. */
  onTakeOver?: (message: string) => void;
}

/**
 * Takes the lock of the run folder `folder` (which must exist), or throws an error that names
 * the process holding it. A lock left by a process that no longer runs on this machine is taken
 * over, with a message. The lock is released by {@linkcode RunLock.release}, and also when the
 * process exits through `Deno.exit` (the second Ctrl-C).
 *
 * @throws an error naming the folder, the owner's PID and host, and what to do.
 */
export async function acquireRunLock(
  folder: string,
  options: RunLockOptions = {},
): Promise<RunLock> {
  const path = `${folder}/${LOCK_FILE}`;
  const me = currentOwner();
  const text = JSON.stringify(me) + "\n";
  // Three tries: a stale lock taken over, then a race with another run taking it over too.
  for (let attempt = 0; attempt < 3; attempt++) {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { createNew: true, write: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) {
        throw new Error(`Could not create the lock ${path}: ${(error as Error).message}.`);
      }
      await takeOverIfStale(path, options.onTakeOver ?? ((m) => console.error(`note: ${m}`)));
      continue;
    }
    try {
      await file.write(new TextEncoder().encode(text));
    } finally {
      file.close();
    }
    return heldLock(path, text);
  }
  throw new Error(`Could not take the lock ${path}: other runs keep taking it; try again.`);
}

/** The lock of this process, released once, on request or when the process exits. */
function heldLock(path: string, text: string): RunLock {
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    globalThis.removeEventListener("unload", release);
    // Only our own lock is removed: never one a later owner took over.
    const now = (() => {
      try {
        return Deno.readTextFileSync(path);
      } catch {
        return null;
      }
    })();
    if (now !== text) return;
    try {
      Deno.removeSync(path);
    } catch (error) {
      // Release runs in a `finally`: throwing here would hide the error that ended the run (a
      // folder made unwritable fails both). A lock left behind is taken over by the next run.
      console.error(
        `warning: could not remove the lock ${path} (${(error as Error).message}); the next ` +
          "run takes it over, or remove it by hand.",
      );
    }
  };
  globalThis.addEventListener("unload", release);
  return { path, release };
}

/**
 * Reads the lock at `path`: throws when its owner may be alive, removes it (with a message) when
 * the owner is gone. Returns normally when the caller should try to create the lock again.
 */
async function takeOverIfStale(path: string, onTakeOver: (message: string) => void) {
  const folder = path.slice(0, path.lastIndexOf("/"));
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return; // released meanwhile
    throw new Error(`Could not read the lock ${path}: ${(error as Error).message}.`);
  }
  const owner = parseOwner(text);
  if (owner === null) {
    // A lock being written right now is young; one torn by a crash is old.
    const age = Date.now() - ((await Deno.stat(path)).mtime?.getTime() ?? 0);
    if (age < 10_000) {
      throw new Error(`${folder} is being locked by another run right now (${path}); try again.`);
    }
  } else if (ownerMayBeAlive(owner)) {
    const where = owner.host === Deno.hostname() ? "" : ` on ${owner.host}`;
    const stop = owner.host === Deno.hostname() ? ` (kill ${owner.pid})` : "";
    throw new Error(
      `${folder} is in use by another run: PID ${owner.pid}${where}, since ${owner.started}. ` +
        `Wait for it to finish or stop it${stop}, or pass another --out. If no run uses the ` +
        `folder, remove ${path}.`,
    );
  }
  // Moved aside first and checked, so that of two runs taking over the same stale lock, the
  // second cannot remove the lock the first has just made.
  const aside = `${path}.stale-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.rename(path, aside);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (await Deno.readTextFile(aside) !== text) {
    await Deno.rename(aside, path).catch(() => {}); // someone else's fresh lock: put it back
    return;
  }
  await Deno.remove(aside);
  onTakeOver(
    owner === null
      ? `took over ${path}, which was unreadable (left by a crash)`
      : `took over ${path} from PID ${owner.pid} (since ${owner.started}), which no longer runs`,
  );
}

/** The lock file's owner, or null when the text is not one (torn by a crash). */
function parseOwner(text: string): LockOwner | null {
  try {
    const owner = JSON.parse(text);
    return Number.isInteger(owner?.pid) && typeof owner.host === "string" ? owner : null;
  } catch {
    return null;
  }
}

/** This process as a lock owner. */
function currentOwner(): LockOwner {
  const startTicks = processStartTicks(Deno.pid);
  return {
    pid: Deno.pid,
    host: Deno.hostname(),
    started: new Date().toISOString(),
    ...(startTicks === null ? {} : { startTicks }),
  };
}

/**
 * Whether the owner may still run: true on another machine (it cannot be checked from here);
 * on this one, whether its PID runs (and, on Linux, started when the owner did).
 */
export function ownerMayBeAlive(owner: LockOwner): boolean {
  if (owner.host !== Deno.hostname()) return true;
  if (owner.pid === Deno.pid) return true;
  if (hasProc()) {
    const ticks = processStartTicks(owner.pid);
    if (ticks === null) return false;
    return owner.startTicks === undefined || owner.startTicks === ticks;
  }
  if (Deno.build.os === "windows") return true; // no cheap check: the user decides
  try {
    // SIGCONT changes nothing for a running process and fails for a missing one.
    Deno.kill(owner.pid, "SIGCONT");
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound || /ESRCH|No such process/.test(`${error}`));
  }
}

function hasProc(): boolean {
  try {
    return Deno.statSync("/proc/self/stat").isFile;
  } catch {
    return false;
  }
}

/**
 * A live process's start time (Linux, /proc/PID/stat field 22), or null when it does not run
 * (a zombie counts as not running) or there is no /proc.
 */
function processStartTicks(pid: number): number | null {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // Fields after the command name, which is in parentheses and may hold spaces: state is
  // field 3, start time field 22.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return null;
  const ticks = Number(fields[19]);
  return Number.isFinite(ticks) ? ticks : null;
}
