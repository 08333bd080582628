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

const settings = { nLayer: 1, nHead: 2, nEmbd: 16, batchSize: 4, lr: 1e-2, quiet: true };

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

    // Interrupt a run of the same settings after 25 steps, then run it again: it resumes.
    const interrupted = { ...settings, gpu, data, out: `${dir}/split`, steps: 100 };
    const stop = new AbortController();
    const first = await trainModel({
      ...interrupted,
      signal: stop.signal,
      onStep: ({ step }) => step === 25 && stop.abort(),
    });
    assert.equal(first.steps, 25);
    const resumed = await trainModel(interrupted);
    assert.deepEqual(first.losses, whole.losses.slice(0, 25));
    assert.deepEqual(resumed.losses, whole.losses.slice(25));
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
