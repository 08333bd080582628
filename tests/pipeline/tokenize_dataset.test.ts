import assert from "node:assert/strict";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { type DocumentMethod, tokenizeDataset } from "../../pipeline/tokenize_dataset.ts";
import { loadTokenizedDataset, TokenRowWriter } from "../../pipeline/token_rows.ts";

const documents = [
  "The cat sat on the mat.",
  "A dog ran.",
  "",
  "Birds sing in the morning, and the cats listen to the birds from the mat.",
];

async function tokenizerFor(texts: string[]): Promise<BpeTokenizer> {
  const counts = await countWords([texts]);
  return BpeTokenizer.fromTrained(trainBpe(counts, { vocabSize: 300 }));
}

async function tokenize(method: DocumentMethod, context: number) {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/docs.jsonl`,
    documents.map((text) => JSON.stringify({ text })).join("\n"),
  );
  const tokenizer = await tokenizerFor(documents);
  const meta = await tokenizeDataset({
    data: `${dir}/docs.jsonl`,
    tokenizer,
    method,
    contextLength: context,
    batchSize: 2, // several batches, so state carried between them is exercised
    out: `${dir}/tokenized`,
    quiet: true,
  });
  const dataset = await loadTokenizedDataset(`${dir}/tokenized`);
  await Deno.remove(dir, { recursive: true });
  const rows = Array.from(
    { length: dataset.meta.rows },
    (_, i) => [...dataset.tokens.subarray(i * context, i * context + dataset.lengths[i])],
  );
  return { tokenizer, meta, dataset, rows, encoded: tokenizer.encodeBatch(documents) };
}

Deno.test("tokenizeDataset() truncates each document to one padded row", async () => {
  const { meta, dataset, rows, encoded } = await tokenize("truncate", 8);
  const nonEmpty = encoded.filter((ids) => ids.length > 0);
  assert.deepEqual(rows, nonEmpty.map((ids) => ids.slice(0, 8)));
  assert.equal(meta.documents, documents.length);
  // "A dog ran." is shorter than 8 tokens: the rest of its row is <pad>.
  const short = nonEmpty.findIndex((ids) => ids.length < 8);
  assert.ok(short >= 0);
  const padding = dataset.tokens.subarray(short * 8 + nonEmpty[short].length, (short + 1) * 8);
  assert.ok(padding.every((id) => id === meta.padId));
});

Deno.test("tokenizeDataset() splits documents into full rows and drops remainders", async () => {
  const { rows, encoded } = await tokenize("split", 5);
  const expected = encoded.flatMap((ids) =>
    Array.from({ length: Math.floor(ids.length / 5) }, (_, i) => ids.slice(i * 5, i * 5 + 5))
  );
  assert.deepEqual(rows, expected);
  assert.ok(rows.every((row) => row.length === 5));
});

Deno.test("tokenizeDataset() concatenates documents with </s> between, then chunks", async () => {
  const { meta, rows, encoded } = await tokenize("concat", 6);
  // The empty document adds nothing, not even a separator.
  const stream = encoded.filter((ids) => ids.length > 0)
    .flatMap((ids, i) => i === 0 ? ids : [meta.eosId, ...ids]);
  const full = Math.floor(stream.length / 6);
  assert.equal(meta.rows, full);
  assert.deepEqual(rows.flat(), stream.slice(0, full * 6));
  assert.equal(meta.tokens, full * 6);
});

Deno.test("tokenizeDataset() refuses a context over 1024 and an unknown method", async () => {
  const tokenizer = await tokenizerFor(documents);
  const base = { data: "unused.jsonl", tokenizer, out: "/tmp/unused", quiet: true };
  await assert.rejects(
    tokenizeDataset({ ...base, contextLength: 2048 }),
    /context length must be a whole number from 2 to 1024/,
  );
  await assert.rejects(
    tokenizeDataset({ ...base, method: "pack" as DocumentMethod }),
    /Unknown method "pack"; use truncate, split or concat/,
  );
});

Deno.test("tokenizeDataset() explains when no full row comes out", async () => {
  await assert.rejects(
    tokenize("split", 1000),
    /tokenize: .*docs\.jsonl gave no full rows of 1000 tokens with method "split"; .*Nothing was written/,
  );
});

Deno.test("TokenRowWriter refuses a row longer than the context", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const writer = await TokenRowWriter.create(`${dir}/rows`, {
      method: "truncate",
      contextLength: 4,
      vocabSize: 10,
      padId: 0,
      eosId: 1,
    });
    await assert.rejects(writer.write([[1, 2, 3, 4, 5]]), /Row 0 has 5 ids, over the context of 4/);
    await writer.abandon();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A corpus file and a tokenizer for the tests of what tokenize may write over. */
async function corpusFolder(): Promise<{ dir: string; tokenizer: BpeTokenizer }> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/docs.jsonl`,
    documents.map((text) => JSON.stringify({ text })).join("\n"),
  );
  return { dir, tokenizer: await tokenizerFor(documents) };
}

const entries = (path: string) => [...Deno.readDirSync(path)].map((e) => e.name).sort();

Deno.test("tokenizeDataset() never deletes a folder of other files or its own input", async () => {
  const { dir, tokenizer } = await corpusFolder();
  try {
    const run = (out: string, force = false) =>
      tokenizeDataset({
        data: `${dir}/docs.jsonl`,
        tokenizer,
        contextLength: 4,
        out,
        force,
        quiet: true,
      });
    await Deno.writeTextFile(`${dir}/NOTES.txt`, "notes");
    // --out is the folder holding the corpus and notes: refused, nothing removed.
    await assert.rejects(
      run(dir),
      /is a folder holding files tokenize did not write \(NOTES\.txt, docs\.jsonl\); pass another --out/,
    );
    // --out is the corpus file itself: refused even with --force.
    await assert.rejects(run(`${dir}/docs.jsonl`, true), /would overwrite the input .*docs\.jsonl/);
    // --out is another file: refused unless --force.
    await assert.rejects(
      run(`${dir}/NOTES.txt`),
      /NOTES\.txt is a file, but tokenize writes a folder/,
    );
    assert.deepEqual(entries(dir), ["NOTES.txt", "docs.jsonl"]);
    assert.equal(await Deno.readTextFile(`${dir}/NOTES.txt`), "notes");
    // With --force into the corpus folder, the rows go beside the files, which stay.
    const meta = await run(dir, true);
    assert.deepEqual(entries(dir), [
      "NOTES.txt",
      "docs.jsonl",
      "lengths.bin",
      "meta.json",
      "tokens.bin",
    ]);
    assert.equal((await loadTokenizedDataset(dir)).meta.rows, meta.rows);
    // Its own earlier output is replaced without --force.
    await run(`${dir}/rows`);
    await run(`${dir}/rows`);
    assert.deepEqual(entries(`${dir}/rows`), [
      ".written-by",
      "lengths.bin",
      "meta.json",
      "tokens.bin",
    ]);
    assert.equal((await loadTokenizedDataset(`${dir}/rows`)).meta.rows, meta.rows);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizeDataset() encodes special-token text as plain text unless told otherwise", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = "a story</s> with <pad> and <s> in it";
    await Deno.writeTextFile(`${dir}/docs.jsonl`, JSON.stringify({ text }) + "\n");
    const tokenizer = await tokenizerFor([text]);
    const special = ["<s>", "<pad>", "</s>"].map((t) => tokenizer.tokenToId(t)!);
    const ids = async (specialTokensInText: boolean) => {
      const out = `${dir}/out-${specialTokensInText}`;
      await tokenizeDataset({
        data: `${dir}/docs.jsonl`,
        tokenizer,
        method: "truncate",
        contextLength: 64,
        specialTokensInText,
        out,
        quiet: true,
      });
      const { tokens, lengths } = await loadTokenizedDataset(out);
      return [...tokens.subarray(0, lengths[0])];
    };
    const plain = await ids(false);
    assert.ok(plain.every((id) => !special.includes(id)), "no control ids from corpus text");
    assert.equal(tokenizer.decode(plain), text);
    const control = await ids(true);
    assert.deepEqual(special.map((id) => control.includes(id)), [true, true, true]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizeDataset() refuses a corpus with no documents or no text, naming it", async () => {
  const { dir, tokenizer } = await corpusFolder();
  try {
    await Deno.writeTextFile(`${dir}/none.jsonl`, "\n");
    await Deno.writeTextFile(`${dir}/blank.jsonl`, '{"text": ""}\n{"text": ""}\n');
    const run = (data: string) =>
      tokenizeDataset({ data, tokenizer, contextLength: 4, out: `${dir}/rows`, quiet: true });
    await assert.rejects(run(`${dir}/none.jsonl`), /tokenize: .*none\.jsonl holds no documents/);
    await assert.rejects(
      run(`${dir}/blank.jsonl`),
      /tokenize: .*blank\.jsonl holds 2 documents but no text/,
    );
    assert.deepEqual(entries(dir), ["blank.jsonl", "docs.jsonl", "none.jsonl"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a broken meta.json or tokenizer.json, or a file for the dataset folder, is an error naming it", async () => {
  const { dir, tokenizer } = await corpusFolder();
  try {
    await tokenizeDataset({
      data: `${dir}/docs.jsonl`,
      tokenizer,
      contextLength: 4,
      out: `${dir}/rows`,
      quiet: true,
    });
    await Deno.writeTextFile(`${dir}/rows/meta.json`, '{"rows": 3,');
    await assert.rejects(
      loadTokenizedDataset(`${dir}/rows`),
      /rows\/meta\.json is not valid JSON \(.*\); tokenize the dataset again/,
    );
    await assert.rejects(
      loadTokenizedDataset(`${dir}/docs.jsonl`),
      /docs\.jsonl is a file; a tokenized dataset is the folder tokenize writes/,
    );
    await assert.rejects(
      loadTokenizedDataset(`${dir}/missing`),
      /missing is not a tokenized dataset \(no meta\.json\); run tokenize first/,
    );
    await Deno.writeTextFile(`${dir}/tokenizer.json`, '{"model": {');
    await assert.rejects(
      tokenizeDataset({ data: `${dir}/docs.jsonl`, tokenizer: dir, out: `${dir}/x`, quiet: true }),
      /tokenizer\.json is not valid JSON/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
