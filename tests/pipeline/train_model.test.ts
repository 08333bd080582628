import assert from "node:assert/strict";
import { type StepLog, trainModel } from "../../pipeline/train_model.ts";
import { validationLosses } from "../../pipeline/validation_loss.ts";
import { batchOfRows } from "../../pipeline/batches.ts";
import { Tape } from "../../nn/tape.ts";
import { uploadTokens } from "../../nn/batch.ts";
import { tokenizeDataset } from "../../pipeline/tokenize_dataset.ts";
import { loadTokenizedDataset, TokenRowWriter } from "../../pipeline/token_rows.ts";
import { loadCheckpoint } from "../../nn/checkpoint.ts";
import { generateTokens } from "../../nn/generate.ts";
import { testPretrained } from "../../pipeline/test_pretrained.ts";
import { readSafetensors } from "../../nn/safetensors.ts";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { testGpu } from "../_gpu.ts";

const story = "the cat sat on the mat. the dog ran to the cat. the cat ran away.";

/** A tokenized dataset of one story repeated, and its tokenizer, in a temporary folder. */
async function fixture() {
  const dir = await Deno.makeTempDir();
  const documents = Array.from({ length: 40 }, () => story);
  await Deno.writeTextFile(`${dir}/docs.txt`, documents.join("\n"));
  const tokenizer = BpeTokenizer.fromTrained(
    trainBpe(await countWords([documents]), { vocabSize: 300 }),
  );
  await tokenizeDataset({
    data: `${dir}/docs.txt`,
    tokenizer,
    contextLength: 16,
    out: `${dir}/tokenized`,
    quiet: true,
  });
  return { dir, tokenizer };
}

const settings = {
  nLayer: 1,
  nHead: 2,
  nEmbd: 16,
  batchSize: 4,
  lr: 1e-2,
  evalEvery: 50,
  quiet: true,
};

Deno.test("trainModel() learns a repeated story, and a resumed run equals an unbroken one", async () => {
  const gpu = await testGpu();
  const { dir, tokenizer } = await fixture();
  try {
    const data = `${dir}/tokenized`;
    const whole = await trainModel({ ...settings, gpu, data, out: `${dir}/whole`, steps: 100 });
    assert.equal(whole.steps, 100);
    assert.ok(
      whole.losses.at(-1)! < whole.losses[0] / 3,
      `loss went from ${whole.losses[0]} to ${whole.losses.at(-1)}`,
    );
    // The held-out rows (the same story, so learnable) are measured at steps 50 and 100.
    const validated = (await Deno.readTextFile(`${dir}/whole/log.jsonl`)).trim().split("\n")
      .map((line) => JSON.parse(line)).filter((record) => record.valLoss !== undefined);
    assert.deepEqual(validated.map((record) => record.step), [50, 100]);
    assert.ok(validated[1].valLoss < validated[0].valLoss, JSON.stringify(validated));
    assert.equal(whole.valLoss, validated[1].valLoss);

    // Crash a run of the same settings at step 25 (its last checkpoint is step 20), then run
    // it again: it resumes from step 20, exactly as the unbroken run went on.
    const crashing = {
      ...settings,
      gpu,
      data,
      out: `${dir}/split`,
      steps: 100,
      checkpointEvery: 20,
    };
    await assert.rejects(
      trainModel({
        ...crashing,
        onStep: ({ step }) => {
          if (step === 25) throw new Error("simulated crash");
        },
      }),
      /simulated crash/,
    );
    const resumed = await trainModel(crashing);
    assert.deepEqual(resumed.losses, whole.losses.slice(20));
    const logged = (await Deno.readTextFile(`${dir}/split/log.jsonl`)).trim().split("\n");
    assert.deepEqual(
      logged.map((line) => JSON.parse(line).step),
      Array.from({ length: 100 }, (_, i) => i + 1),
      "the log holds every step once",
    );
    await assert.rejects(
      trainModel({ ...crashing, seed: 7 }),
      /was trained with --seed 1337 --batch-size 4 --grad-accum 1 --val-fraction 0.05; pass the same to resume/,
    );
    const a = await readSafetensors(whole.checkpoint),
      b = await readSafetensors(resumed.checkpoint);
    for (const [name, tensor] of a.tensors) {
      assert.deepEqual(tensor.data, b.tensors.get(name)!.data, `${name} differs after resuming`);
    }

    // The model has memorized its data: from the first 8 tokens of a row, greedy decoding
    // gives the row's next 4.
    const { tokens } = await loadTokenizedDataset(data);
    const { model } = await loadCheckpoint(gpu, whole.checkpoint);
    const next = await generateTokens(model, [...tokens.subarray(0, 8)], {
      maxNewTokens: 4,
      temperature: 0,
    });
    assert.deepEqual(next, [...tokens.subarray(8, 12)]);
    model.dispose();

    // And test_pretrained turns it into text.
    const completion = await testPretrained({
      gpu,
      checkpoint: whole.checkpoint,
      tokenizer,
      prompt: tokenizer.decode([...tokens.subarray(0, 8)]),
      maxNewTokens: 4,
      temperature: 0,
    });
    assert.equal(completion, tokenizer.decode([...tokens.subarray(8, 12)]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainModel() stops after the step in flight when signalled, and saves it", async () => {
  const gpu = await testGpu();
  const { dir } = await fixture();
  try {
    const stop = new AbortController();
    const run = await trainModel({
      ...settings,
      gpu,
      data: `${dir}/tokenized`,
      out: `${dir}/run`,
      steps: 50,
      signal: stop.signal,
      onStep: ({ step }) => step === 3 && stop.abort(),
    });
    // Step 4 was already recorded on the GPU when step 3's record came: it ends the run.
    assert.equal(run.steps, 4);
    assert.equal(run.stopReason, "signal");
    const saved = await readSafetensors(run.checkpoint);
    assert.equal(saved.metadata.step, "4");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The weights of a checkpoint, by name. */
async function weights(path: string) {
  return (await readSafetensors(path)).tensors;
}

Deno.test("trainModel() with 2 micro-batches of 2 rows takes the steps of batches of 4 rows", async () => {
  const gpu = await testGpu();
  const { dir } = await fixture();
  try {
    const run = { ...settings, gpu, data: `${dir}/tokenized`, steps: 3, valFraction: 0 };
    const whole = await trainModel({ ...run, out: `${dir}/whole`, batchSize: 4 });
    const records: StepLog[] = [];
    const accumulated = await trainModel({
      ...run,
      out: `${dir}/accumulated`,
      batchSize: 2,
      gradAccum: 2,
      onStep: (record) => records.push(record),
    });
    for (let i = 0; i < 3; i++) {
      assert.ok(Math.abs(whole.losses[i] - accumulated.losses[i]) < 1e-5, `step ${i + 1} loss`);
    }
    assert.deepEqual(records.map((r) => [r.tokens, r.totalTokens]), [[64, 64], [64, 128], [
      64,
      192,
    ]]);
    const a = await weights(whole.checkpoint), b = await weights(accumulated.checkpoint);
    for (const [name, tensor] of a) {
      const other = b.get(name)!.data;
      const worst = tensor.data.reduce((m, x, i) => Math.max(m, Math.abs(x - other[i])), 0);
      assert.ok(worst < 1e-5, `${name} differs by ${worst}`);
    }
    // The accumulation is part of what a resumed run must match.
    await assert.rejects(
      trainModel({ ...run, out: `${dir}/accumulated`, batchSize: 2, steps: 4 }),
      /was trained with --seed 1337 --batch-size 2 --grad-accum 2 --val-fraction 0/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainModel() warms the sequence length up to the context and resumes across a change", async () => {
  const gpu = await testGpu();
  const { dir } = await fixture();
  try {
    const run = {
      ...settings,
      gpu,
      data: `${dir}/tokenized`,
      steps: 12,
      seqWarmup: { startLength: 4, untilFraction: 0.5 },
    };
    const records: StepLog[] = [];
    const whole = await trainModel({
      ...run,
      out: `${dir}/whole`,
      onStep: (record) => records.push(record),
    });
    assert.deepEqual(records.map((r) => r.seqLength), [4, 4, 4, 8, 8, 8, ...Array(6).fill(16)]);
    assert.ok(records.every((r) => r.tokens === 4 * 16), "the tokens per step stay the same");
    // The model has the full context whatever the warmup.
    assert.deepEqual((await weights(whole.checkpoint)).get("wpe")!.shape, [16, 16]);

    // Crash at step 7 (the last checkpoint is step 4, at length 8) and resume past the change.
    const crashing = { ...run, out: `${dir}/split`, checkpointEvery: 4 };
    await assert.rejects(
      trainModel({
        ...crashing,
        onStep: ({ step }) => {
          if (step === 7) throw new Error("simulated crash");
        },
      }),
      /simulated crash/,
    );
    const resumed = await trainModel(crashing);
    assert.deepEqual(resumed.losses, whole.losses.slice(4));
    const a = await weights(whole.checkpoint), b = await weights(resumed.checkpoint);
    for (const [name, tensor] of a) assert.deepEqual(tensor.data, b.get(name)!.data, name);
    await assert.rejects(
      trainModel({ ...crashing, steps: 20, seqWarmup: undefined }),
      /--grad-accum 1 --val-fraction 0.05 --seq-start 4 --seq-warmup 0.5; pass the same/,
    );
    // A start past the context would be no warmup at all.
    await assert.rejects(
      trainModel({
        ...run,
        out: `${dir}/long-start`,
        seqWarmup: { startLength: 64, untilFraction: 0.5 },
      }),
      /--seq-start 64 is longer than the data's rows of 16 tokens, so there would be no warmup/,
    );
    await assert.rejects(Deno.stat(`${dir}/long-start`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validationLosses() averages the loss by position bucket, as computed position by position", async () => {
  const gpu = await testGpu();
  const { dir } = await fixture();
  try {
    const data = `${dir}/tokenized`;
    const trained = await trainModel({ ...settings, gpu, data, out: `${dir}/run`, steps: 10 });
    const dataset = await loadTokenizedDataset(data);
    const { model } = await loadCheckpoint(gpu, trained.checkpoint);
    const rows = { first: 2, count: 6 }, T = 16, V = model.config.vocabSize;
    const measured = await validationLosses(model, dataset, rows, 3, { batches: 2, bucketSize: 5 });

    // The same rows, one forward each, and each position's cross-entropy from the logits.
    const sums = [0, 0, 0, 0], counts = [0, 0, 0, 0];
    for (let r = rows.first; r < rows.first + rows.count; r++) {
      const batch = batchOfRows(dataset, [r]);
      const tape = new Tape(gpu);
      const logits = await (await model.forward(tape, uploadTokens(tape, batch.inputs, 1, T)))
        .read();
      tape.dispose();
      for (let t = 0; t < T; t++) {
        if (!batch.mask[t]) continue;
        const row = logits.subarray(t * V, (t + 1) * V);
        const max = row.reduce((m, x) => Math.max(m, x), -Infinity);
        const logSum = Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0)) + max;
        sums[Math.floor(t / 5)] += logSum - row[batch.targets[t]];
        counts[Math.floor(t / 5)]++;
      }
    }
    assert.equal(measured.byPosition.length, 4); // positions 1-5, 6-10, 11-15, 16
    for (let k = 0; k < 4; k++) {
      const expected = counts[k] ? sums[k] / counts[k] : null;
      if (expected === null) assert.equal(measured.byPosition[k], null, `bucket ${k}`);
      else assert.ok(Math.abs(measured.byPosition[k]! - expected) < 1e-4, `bucket ${k}`);
    }
    const total = sums.reduce((s, x) => s + x) / counts.reduce((s, x) => s + x);
    assert.ok(Math.abs(measured.loss - total) < 1e-4);
    model.dispose();

    // Training logs one bucket of 128 positions here (the context is 16), equal to the loss.
    const logged = JSON.parse(
      (await Deno.readTextFile(`${dir}/run/log.jsonl`)).trim().split("\n").at(-1)!,
    );
    assert.equal(logged.valLossByPosition.length, 1);
    assert.ok(Math.abs(logged.valLossByPosition[0] - logged.valLoss) < 1e-5);
    assert.deepEqual(trained.valLossByPosition, logged.valLossByPosition);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainModel() stops at --max-seconds, saved, and a wsd schedule still ends decayed", async () => {
  const gpu = await testGpu();
  const { dir } = await fixture();
  try {
    const run = { ...settings, gpu, data: `${dir}/tokenized`, steps: 100_000, warmupSteps: 2 };
    const cosine = await trainModel({ ...run, out: `${dir}/cosine`, maxSeconds: 1 });
    assert.equal(cosine.stopReason, "time");
    assert.ok(cosine.steps > 1 && cosine.steps < 100_000);
    assert.equal((await readSafetensors(cosine.checkpoint)).metadata.step, String(cosine.steps));
    assert.ok(cosine.valLoss !== undefined, "the last step is validated");

    const records: StepLog[] = [];
    const wsd = await trainModel({
      ...run,
      out: `${dir}/wsd`,
      maxSeconds: 3,
      schedule: "wsd",
      onStep: (record) => records.push(record),
    });
    // The decay began early enough to end by the time limit (give or take a slow step).
    assert.ok(wsd.scheduleSteps < 100_000, `${wsd.scheduleSteps}`);
    const lrs = records.map((r) => r.lr);
    assert.ok(lrs.some((lr) => lr === settings.lr), "a stable phase at the peak");
    assert.ok(lrs.at(-1)! < settings.lr / 2, `the last rate ${lrs.at(-1)} has decayed`);
    assert.ok(wsd.seconds < 3 + 1, `${wsd.seconds} s`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainModel() joins a second dataset's rows to the last phase, resumably", async () => {
  const gpu = await testGpu();
  const { dir } = await fixture();
  try {
    // 12 rows of tokens 300..319, which the main data's vocabulary of 300 lacks.
    const writer = await TokenRowWriter.create(`${dir}/mix`, {
      method: "chat",
      contextLength: 16,
      vocabSize: 320,
      padId: 0,
      eosId: 1,
    });
    await writer.write(
      Array.from(
        { length: 12 },
        (_, r) => Array.from({ length: 16 }, (_, t) => 300 + (r + t) % 20),
      ),
    );
    await writer.finish();
    const run = {
      ...settings,
      gpu,
      data: `${dir}/tokenized`,
      steps: 8,
      finalMix: { data: `${dir}/mix`, share: 0.25, fromFraction: 0.5 },
    };
    const whole = await trainModel({ ...run, out: `${dir}/whole` });
    assert.equal(whole.config.vocabSize, 320, "the vocabulary covers the mix");
    // Steps 5 to 8 each took 1 of their 4 rows from the mix, 3 from the main data.
    const { training, model } = await loadCheckpoint(gpu, whole.checkpoint);
    model.dispose();
    assert.deepEqual(training?.mixSampler, { epoch: 0, position: 4 });
    assert.equal((training?.sampler as { position: number }).position, 4 * 4 + 4 * 3);

    const crashing = { ...run, out: `${dir}/split`, checkpointEvery: 3 };
    await assert.rejects(
      trainModel({
        ...crashing,
        onStep: ({ step }) => {
          if (step === 7) throw new Error("simulated crash");
        },
      }),
      /simulated crash/,
    );
    const resumed = await trainModel(crashing);
    assert.deepEqual(resumed.losses, whole.losses.slice(6));
    await assert.rejects(
      trainModel({ ...crashing, steps: 9, finalMix: undefined }),
      /--mix-data .*mix --mix-share 0.25 --mix-from 0.5; pass the same/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainModel() with Muon learns, resumes exactly, and will not resume as AdamW", async () => {
  const gpu = await testGpu();
  const { dir } = await fixture();
  try {
    const run = { ...settings, gpu, data: `${dir}/tokenized`, optimizer: "muon" as const };
    const whole = await trainModel({ ...run, out: `${dir}/whole`, steps: 30 });
    assert.ok(whole.losses.at(-1)! < whole.losses[0] / 2, `${whole.losses}`);
    await assert.rejects(
      trainModel({
        ...run,
        out: `${dir}/split`,
        steps: 30,
        checkpointEvery: 10,
        onStep: ({ step }) => {
          if (step === 15) throw new Error("simulated crash");
        },
      }),
      /simulated crash/,
    );
    await assert.rejects(
      trainModel({ ...run, optimizer: "adamw", out: `${dir}/split`, steps: 30 }),
      /--optimizer muon/,
    );
    const resumed = await trainModel({ ...run, out: `${dir}/split`, steps: 30 });
    assert.deepEqual(resumed.losses, whole.losses.slice(10));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
