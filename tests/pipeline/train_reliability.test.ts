import assert from "node:assert/strict";
import { trainModel } from "../../pipeline/train_model.ts";
import { tokenizeDataset } from "../../pipeline/tokenize_dataset.ts";
import { loadCheckpoint } from "../../nn/checkpoint.ts";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { acquireRunLock, LOCK_FILE } from "../../util/run_lock.ts";
import { testGpu } from "../_gpu.ts";

const story = "the cat sat on the mat. the dog ran to the cat. the cat ran away.";
const STORIES = Array.from({ length: 40 }, () => story);

/** A tokenized dataset of one story repeated, in a temporary folder. */
async function fixture(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/docs.txt`, STORIES.join("\n"));
  await tokenizeStories(dir, "tokenized", 16);
  return dir;
}

/** The fixture's stories tokenized into `dir/name` in rows of `contextLength`. */
async function tokenizeStories(dir: string, name: string, contextLength: number) {
  await tokenizeDataset({
    data: `${dir}/docs.txt`,
    tokenizer: BpeTokenizer.fromTrained(trainBpe(await countWords([STORIES]), { vocabSize: 300 })),
    contextLength,
    out: `${dir}/${name}`,
    quiet: true,
  });
}

const settings = { nLayer: 1, nHead: 2, nEmbd: 16, batchSize: 4, lr: 1e-2, quiet: true };

/** Runs `body` with console.error captured. */
async function capturingErrors<T>(body: () => Promise<T>): Promise<{ result: T; errors: string }> {
  const original = console.error, lines: string[] = [];
  console.error = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    return { result: await body(), errors: lines.join("\n") };
  } finally {
    console.error = original;
  }
}

Deno.test("trainModel() refuses a run folder another run holds, and frees its own however it ends", async () => {
  const gpu = await testGpu();
  const dir = await fixture();
  try {
    const run = { ...settings, gpu, data: `${dir}/tokenized`, out: `${dir}/run`, steps: 2 };
    await Deno.mkdir(run.out);
    const lock = await acquireRunLock(run.out);
    await assert.rejects(trainModel(run), new RegExp(`in use by another run: PID ${Deno.pid}\\b`));
    assert.equal(await Deno.stat(`${run.out}/checkpoint.safetensors`).catch(() => null), null);
    lock.release();
    await trainModel(run);
    assert.equal(await Deno.stat(`${run.out}/${LOCK_FILE}`).catch(() => null), null);
    await assert.rejects(trainModel({ ...run, steps: 4, seed: 5 }), /was trained with --seed/);
    assert.equal(await Deno.stat(`${run.out}/${LOCK_FILE}`).catch(() => null), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainModel() stops on a diverging run before a non-finite value reaches a checkpoint", async () => {
  const gpu = await testGpu();
  const dir = await fixture();
  try {
    const out = `${dir}/run`;
    const error = await trainModel({
      ...settings,
      gpu,
      data: `${dir}/tokenized`,
      out,
      steps: 40,
      lr: 1e4,
      warmupSteps: 1,
      checkpointEvery: 1,
      evalEvery: 1,
    }).then(() => null, (e: Error) => e);
    assert.ok(error, "a learning rate of 1e4 diverges");
    const said =
      /^The (loss|gradient norm|validation loss|value of \S+) became (NaN|-?Infinity) at step (\d+)/
        .exec(error.message);
    assert.ok(said, error.message);
    assert.match(
      error.message,
      /Lower --lr \(this run's peak was 10000\)|No checkpoint was saved yet/,
    );
    const resumeFrom = /resume from step (\d+), the last checkpoint/.exec(error.message);
    if (resumeFrom) {
      // The last checkpoint is the step before the bad value, loads, and holds only finite values.
      assert.equal(Number(resumeFrom[1]), Number(said[3]) - 1, "saved every step until then");
      const loaded = await loadCheckpoint(gpu, `${out}/checkpoint.safetensors`);
      loaded.model.dispose();
      assert.equal(loaded.step, Number(resumeFrom[1]));
      for (const [name, tensor] of loaded.tensors) {
        assert.ok(tensor.data.every(Number.isFinite), `${name} holds a non-finite value`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainModel() drops a torn last log line with a warning and resumes; --steps below the checkpoint is an error", async () => {
  const gpu = await testGpu();
  const dir = await fixture();
  try {
    const run = {
      ...settings,
      gpu,
      data: `${dir}/tokenized`,
      out: `${dir}/run`,
      steps: 6,
      checkpointEvery: 2,
    };
    await assert.rejects(
      trainModel({
        ...run,
        onStep: ({ step }) => {
          if (step === 3) throw new Error("simulated crash");
        },
      }),
      /simulated crash/,
    );
    const log = `${run.out}/log.jsonl`;
    // A full disk cut the last record short.
    await Deno.writeTextFile(log, '{"step":4,"loss":2.5', { append: true });
    const { result, errors } = await capturingErrors(() => trainModel(run));
    assert.match(errors, new RegExp(`warning: dropped the torn last line of ${log}`));
    assert.equal(result.steps, 6);
    const steps = (await Deno.readTextFile(log)).trim().split("\n").map((l) => JSON.parse(l).step);
    assert.deepEqual(steps, [1, 2, 3, 4, 5, 6]);

    // A damaged line that is not the last is not guessed at: the file and line are named.
    const lines = (await Deno.readTextFile(log)).split("\n");
    lines[1] = lines[1].slice(0, 10);
    await Deno.writeTextFile(log, lines.join("\n"));
    await assert.rejects(
      trainModel({ ...run, steps: 8 }),
      new RegExp(`Line 2 of ${log} is not valid JSON`),
    );

    await assert.rejects(
      trainModel({ ...run, steps: 4 }),
      /checkpoint.safetensors is at step 6, past --steps 4; pass --steps above 6/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainModel() refuses an --out that is a file or its dataset, and a shape it cannot build, before making a folder", async () => {
  const gpu = await testGpu();
  const dir = await fixture();
  try {
    const run = { ...settings, gpu, data: `${dir}/tokenized`, steps: 2 };
    await Deno.writeTextFile(`${dir}/notes.txt`, "keep me");
    await assert.rejects(
      trainModel({ ...run, out: `${dir}/notes.txt` }),
      /--out .*notes\.txt is a file; a training run writes a folder/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/notes.txt`), "keep me");
    const dataset = [...Deno.readDirSync(`${dir}/tokenized`)].map((e) => e.name).sort();
    await assert.rejects(
      trainModel({ ...run, out: `${dir}/tokenized/` }),
      /--out .*tokenized\/ is the dataset the run reads \(--data\)/,
    );
    assert.deepEqual([...Deno.readDirSync(`${dir}/tokenized`)].map((e) => e.name).sort(), dataset);
    await assert.rejects(trainModel({ ...run, nHead: 3, out: `${dir}/run` }), /[Hh]ead/);
    assert.equal(await Deno.stat(`${dir}/run`).catch(() => null), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainModel() will not resume a checkpoint on rows longer than its context", async () => {
  const gpu = await testGpu();
  const dir = await fixture();
  try {
    await trainModel({ ...settings, gpu, data: `${dir}/tokenized`, out: `${dir}/run`, steps: 1 });
    await tokenizeStories(dir, "longer", 32);
    await assert.rejects(
      trainModel({ ...settings, gpu, data: `${dir}/longer`, out: `${dir}/run`, steps: 2 }),
      /has a context of 16 but the data's rows are 32 tokens; tokenize with --context 16 or less/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
