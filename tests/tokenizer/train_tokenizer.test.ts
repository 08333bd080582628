import assert from "node:assert/strict";
import { trainingTextBatches, trainTokenizer } from "../../pipeline/train_tokenizer.ts";
import { loadHfTokenizer } from "../../tokenizer/hf_json.ts";

Deno.test("trainTokenizer() trains on JSON Lines and writes a loadable tokenizer.json", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const docs = ["the cat sat on the mat", "the dog sat on the log", "<s>cats and dogs</s>"];
    await Deno.writeTextFile(
      `${dir}/data.jsonl`,
      docs.map((text) => JSON.stringify({ text, id: 1 })).join("\n") + "\n",
    );
    const trained = await trainTokenizer({
      data: `${dir}/data.jsonl`,
      vocabSize: 280,
      out: `${dir}/tok`,
      quiet: true,
    });
    const loaded = await loadHfTokenizer(`${dir}/tok/tokenizer.json`);
    assert.equal(loaded.vocabSize, 280);
    assert.deepEqual(loaded.encode(docs[2]), trained.encode(docs[2]));
    assert.equal(loaded.decode(loaded.encode(docs[0])), docs[0]);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/tok/tokenizer_config.json`));
    assert.equal(config.eos_token, "</s>");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainingTextBatches() yields plain-text lines with their endings, in batches", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/data.txt`, "one\ntwo\n\nthree");
    const batches = [];
    for await (const batch of trainingTextBatches(`${dir}/data.txt`, 2)) batches.push(batch);
    assert.deepEqual(batches, [["one\n", "two\n"], ["\n", "three"]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainingTextBatches() refuses a JSON Lines record without a text field", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/data.jsonl`, '{"text": "ok"}\n{"body": "no"}\n');
    await assert.rejects(async () => {
      for await (const _ of trainingTextBatches(`${dir}/data.jsonl`)) { /* drain */ }
    }, /no string field "text"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
