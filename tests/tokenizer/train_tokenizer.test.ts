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

Deno.test("trainTokenizer() refuses an empty corpus and warns when the vocabulary falls short", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/empty.jsonl`, "");
    await assert.rejects(
      trainTokenizer({
        data: `${dir}/empty.jsonl`,
        vocabSize: 300,
        out: `${dir}/tok`,
        quiet: true,
      }),
      /train_tokenizer: .*empty\.jsonl holds no text to learn from/,
    );
    // A vocabulary too small for the bytes fails before the corpus is even opened.
    await assert.rejects(
      trainTokenizer({ data: `${dir}/missing`, vocabSize: 100, out: `${dir}/tok`, quiet: true }),
      /needs at least 261 \(--vocab-size 261 or more\)/,
    );
    await Deno.writeTextFile(`${dir}/tiny.jsonl`, '{"text": "ab ab ab"}\n');
    await assert.rejects(
      trainTokenizer({ data: `${dir}/tiny.jsonl`, vocabSize: 100, out: `${dir}/tok`, quiet: true }),
      /needs at least 261 \(--vocab-size 261 or more\)/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "empty.jsonl",
      "tiny.jsonl",
    ]);
    const warnings: string[] = [];
    const tokenizer = await trainTokenizer({
      data: `${dir}/tiny.jsonl`,
      vocabSize: 512,
      out: `${dir}/tok`,
      quiet: true,
      warn: (message) => warnings.push(message),
    });
    assert.ok(tokenizer.vocabSize < 512);
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0],
      new RegExp(`the tokenizer has ${tokenizer.vocabSize} tokens, fewer than the 512 asked`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainTokenizer() never writes over a file or a folder of other files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/data.jsonl`, '{"text": "the cat sat on the mat"}\n');
    await Deno.writeTextFile(`${dir}/file`, "mine");
    await Deno.mkdir(`${dir}/gpt2`);
    await Deno.writeTextFile(`${dir}/gpt2/tokenizer.json`, "{}");
    await Deno.writeTextFile(`${dir}/gpt2/vocab.txt`, "theirs");
    const train = (out: string, force = false) =>
      trainTokenizer({ data: `${dir}/data.jsonl`, vocabSize: 270, out, force, quiet: true });
    await assert.rejects(
      train(`${dir}/file`),
      /file is a file, but train_tokenizer writes a folder/,
    );
    await assert.rejects(
      train(`${dir}/gpt2`),
      /holding files train_tokenizer did not write \(vocab\.txt\)/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/file`), "mine");
    assert.equal(await Deno.readTextFile(`${dir}/gpt2/tokenizer.json`), "{}");
    // Its own folder is replaced; with --force a file is replaced.
    await train(`${dir}/tok`);
    await train(`${dir}/tok`);
    await train(`${dir}/file`, true);
    assert.ok((await Deno.stat(`${dir}/file/tokenizer.json`)).isFile);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "data.jsonl",
      "file",
      "gpt2",
      "tok",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
