import assert from "node:assert/strict";
import { acquireRunLock, LOCK_FILE, ownerMayBeAlive } from "../../util/run_lock.ts";
import { isDenoTask, watchTaskParent } from "../../util/parent_watch.ts";

/** A PID that no process has now: one of a child that has exited. */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

Deno.test("acquireRunLock() lets one run in; a second fails naming the first PID; release frees it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lock = await acquireRunLock(dir);
    const owner = JSON.parse(await Deno.readTextFile(`${dir}/${LOCK_FILE}`));
    assert.equal(owner.pid, Deno.pid);
    assert.equal(owner.host, Deno.hostname());
    await assert.rejects(
      acquireRunLock(dir),
      new RegExp(
        `${dir} is in use by another run: PID ${Deno.pid}, since .* \\(kill ${Deno.pid}\\)`,
      ),
    );
    lock.release();
    lock.release(); // a second release does nothing
    assert.equal(await Deno.stat(`${dir}/${LOCK_FILE}`).catch(() => null), null);
    (await acquireRunLock(dir)).release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acquireRunLock() fails while another process holds the lock, and takes it over once that one is killed", async () => {
  const dir = await Deno.makeTempDir();
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { acquireRunLock } from "${new URL("../../util/run_lock.ts", import.meta.url)}";
       await acquireRunLock(${JSON.stringify(dir)});
       console.log("locked");
       setTimeout(() => {}, 60_000);`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const reader = holder.stdout.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /locked/);
    await assert.rejects(
      acquireRunLock(dir),
      new RegExp(`in use by another run: PID ${holder.pid}\\b`),
    );
    // kill -9 leaves the lock behind; the next run sees its owner is gone.
    holder.kill("SIGKILL");
    await holder.status;
    reader.releaseLock();
    await holder.stdout.cancel();
    const notes: string[] = [];
    const lock = await acquireRunLock(dir, { onTakeOver: (m) => notes.push(m) });
    assert.equal(notes.length, 1);
    assert.match(
      notes[0],
      new RegExp(`took over .*${LOCK_FILE} from PID ${holder.pid}.*no longer runs`),
    );
    assert.equal(JSON.parse(await Deno.readTextFile(lock.path)).pid, Deno.pid);
    lock.release();
  } finally {
    try {
      holder.kill("SIGKILL");
    } catch { /* already gone */ }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acquireRunLock() takes over a dead PID's lock, a reused PID's, and an old torn one, but not another host's", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/${LOCK_FILE}`;
  const notes: string[] = [];
  const onTakeOver = (m: string) => notes.push(m);
  try {
    const pid = await deadPid();
    await Deno.writeTextFile(path, JSON.stringify({ pid, host: Deno.hostname(), started: "x" }));
    (await acquireRunLock(dir, { onTakeOver })).release();
    assert.match(notes.at(-1)!, new RegExp(`from PID ${pid} `));

    if (Deno.build.os === "linux") {
      // A live PID whose start time is not the owner's: the owner died and the PID was reused.
      const reused = { pid: Deno.ppid, host: Deno.hostname(), started: "x", startTicks: 1 };
      assert.equal(ownerMayBeAlive(reused), false);
      await Deno.writeTextFile(path, JSON.stringify(reused));
      (await acquireRunLock(dir, { onTakeOver })).release();
      assert.match(notes.at(-1)!, new RegExp(`from PID ${Deno.ppid} `));
    }

    await Deno.writeTextFile(path, '{"pid": 12');
    await assert.rejects(acquireRunLock(dir, { onTakeOver }), /being locked by another run/);
    await Deno.utime(path, new Date(0), new Date(0));
    (await acquireRunLock(dir, { onTakeOver })).release();
    assert.match(notes.at(-1)!, /unreadable/);

    const elsewhere = { pid, host: "another-machine", started: "yesterday" };
    await Deno.writeTextFile(path, JSON.stringify(elsewhere));
    await assert.rejects(
      acquireRunLock(dir, { onTakeOver }),
      new RegExp(
        `in use by another run: PID ${pid} on another-machine, since yesterday.*remove ${path}`,
      ),
    );
    assert.equal(notes.length, Deno.build.os === "linux" ? 3 : 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("release() leaves alone a lock that is not its own", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lock = await acquireRunLock(dir);
    const other = JSON.stringify({ pid: 1, host: "elsewhere", started: "x" });
    await Deno.writeTextFile(lock.path, other);
    lock.release();
    assert.equal(await Deno.readTextFile(lock.path), other);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchTaskParent() watches only a deno task parent", () => {
  assert.ok(isDenoTask(["/usr/bin/deno", "task", "train-model", "--steps", "5"]));
  assert.ok(isDenoTask(["deno", "-q", "task", "train"]));
  assert.ok(!isDenoTask(["deno", "run", "-A", "pipeline/train_model.ts", "task"]));
  assert.ok(!isDenoTask(["bash", "-c", "deno task train"]));
  let gone = 0;
  // The parent of this test does not change, so nothing is reported; the timer does not hold
  // the test open.
  const stop = watchTaskParent(() => gone++, { parentCommand: ["deno", "task", "x"] });
  stop();
  watchTaskParent(() => gone++, { parentCommand: ["bash"] })();
  assert.equal(gone, 0);
});

Deno.test("watchTaskParent() reports a task parent that died", async () => {
  if (Deno.build.os !== "linux") return; // reparenting is told through Deno.ppid, read live
  const dir = await Deno.makeTempDir();
  try {
    const script = `import { watchTaskParent } from "${new URL(
      "../../util/parent_watch.ts",
      import.meta.url,
    )}";
      watchTaskParent(() => Deno.writeTextFileSync("${dir}/gone", "gone"),
        { intervalMs: 50, parentCommand: ["deno", "task", "x"] });
      Deno.writeTextFileSync("${dir}/watching", "");
      setTimeout(() => {}, 5_000);`;
    await Deno.writeTextFile(`${dir}/child.ts`, script);
    // The parent shell exits as soon as the child watches; the child then has a new parent.
    const shell = new Deno.Command("bash", {
      args: [
        "-c",
        `"${Deno.execPath()}" run -A "${dir}/child.ts" >/dev/null 2>&1 & echo $!; ` +
        `while [ ! -e "${dir}/watching" ]; do sleep 0.05; done`,
      ],
      stdout: "piped",
    });
    const childPid = Number(new TextDecoder().decode((await shell.output()).stdout).trim());
    try {
      for (let i = 0; i < 100 && !(await Deno.stat(`${dir}/gone`).catch(() => null)); i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(await Deno.readTextFile(`${dir}/gone`), "gone");
    } finally {
      try {
        Deno.kill(childPid, "SIGKILL");
      } catch { /* gone */ }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RunLock.release() warns, never throws, when the lock cannot be removed (the run's own error stays the one shown)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Without write permission the removal fails as in a folder made unwritable mid-run.
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { acquireRunLock } from "${new URL("../../util/run_lock.ts", import.meta.url)}";
         const lock = await acquireRunLock(${JSON.stringify(dir)});
         Deno.permissions.revokeSync({ name: "write" });
         try {
           throw new Error("the run's own error");
         } catch (error) {
           lock.release();
           console.log((error as Error).message);
         }`,
      ],
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    assert.equal(new TextDecoder().decode(output.stdout).trim(), "the run's own error");
    assert.match(stderr, new RegExp(`warning: could not remove the lock ${dir}/${LOCK_FILE}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
