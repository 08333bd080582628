import assert from "node:assert/strict";
import { trainModel } from "../../pipeline/train_model.ts";
import { tokenizeDataset } from "../../pipeline/tokenize_dataset.ts";
import { loadTokenizedDataset } from "../../pipeline/token_rows.ts";
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
      /was trained with --seed 1337 --batch-size 4 --val-fraction 0.05; pass the same to resume/,
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

Deno.test("trainModel() stops after the current step when signalled, and saves it", async () => {
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
    assert.equal(run.steps, 3);
    const saved = await readSafetensors(run.checkpoint);
    assert.equal(saved.metadata.step, "3");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
