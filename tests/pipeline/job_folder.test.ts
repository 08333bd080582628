import assert from "node:assert/strict";
import { checkJobIdentity, JobFolder } from "../../pipeline/_job_folder.ts";

Deno.test("a work folder refuses a job with other data or shape flags, and a file is no work folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const identity = { data: "bundled", rows: null, vocabSize: 8192, context: 1024 };
    await checkJobIdentity(`${dir}/job.json`, identity);
    await checkJobIdentity(`${dir}/job.json`, identity); // the same flags resume
    await assert.rejects(
      () => checkJobIdentity(`${dir}/job.json`, { ...identity, vocabSize: 4096 }),
      /vocabSize 8192 → 4096.*--work/,
    );
    // A setting added since the folder was made reads as null there: a folder without `shape`
    // resumes when the plan chooses the shape, and refuses a pinned one.
    await checkJobIdentity(`${dir}/job.json`, { ...identity, shape: null });
    await assert.rejects(
      () => checkJobIdentity(`${dir}/job.json`, { ...identity, shape: "3x96" }),
      /shape undefined → 3x96/,
    );
    // A pinned folder refuses to resume as one whose plan chooses.
    await checkJobIdentity(`${dir}/pinned.json`, { ...identity, shape: "3x96" });
    await assert.rejects(
      () => checkJobIdentity(`${dir}/pinned.json`, { ...identity, shape: null }),
      /shape 3x96 → null/,
    );
    // A file is no work folder.
    await Deno.writeTextFile(`${dir}/notes.txt`, "keep me");
    await assert.rejects(
      () => JobFolder.open(`${dir}/notes.txt`, identity),
      /--work .*notes\.txt is a file; the job needs a folder: pass another --work/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/notes.txt`), "keep me");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("JobFolder runs a stage once, and again when Ctrl-C cut it short", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const interrupt = new AbortController();
    const job = await JobFolder.open(dir, { data: "bundled" }, interrupt.signal);
    let runs = 0;
    await job.run("prepare_dataset", "", () => Promise.resolve(runs++));
    await job.run("prepare_dataset", "", () => Promise.resolve(runs++));
    assert.equal(runs, 1);
    await job.run("train_model", "", () => {
      interrupt.abort(); // Ctrl-C during the stage
      return Promise.resolve();
    });
    assert.ok(job.stopped());
    // The folder remembers: the first stage is done, the cut one is not.
    const again = await JobFolder.open(dir, { data: "bundled" });
    assert.ok(again.done("prepare_dataset"));
    assert.ok(!again.done("train_model"));
    assert.deepEqual(again.stages.map((s) => s.stage), ["prepare_dataset", "train_model"]);
    await again.run("train_model", "", () => Promise.resolve(runs++));
    assert.equal(runs, 2);
    assert.ok(again.done("train_model"));
    assert.ok(again.spentBesides("train_model") === again.spentOn("prepare_dataset"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
