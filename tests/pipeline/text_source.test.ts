import assert from "node:assert/strict";
import { readRecordBatches, readTextBatches } from "../../pipeline/text_source.ts";
import { prepareDataset } from "../../pipeline/prepare_dataset.ts";
import {
  BUNDLED_ALPACA,
  BUNDLED_DATA_DIR,
  BUNDLED_FINEWEB,
  BUNDLED_INSTRUCT_DIR,
  BUNDLED_PRETRAIN_DIR,
  BUNDLED_SNAKES_QA,
  BUNDLED_STORIES,
} from "../../pipeline/bundled_data.ts";

async function writeGzip(path: string, text: string): Promise<void> {
  const stream = ReadableStream.from([new TextEncoder().encode(text)])
    .pipeThrough(new CompressionStream("gzip"));
  await Deno.writeFile(path, stream);
}

async function allTexts(path: string, textField = "text"): Promise<string[]> {
  const texts: string[] = [];
  for await (const batch of readTextBatches(path, { textField, batchSize: 2 })) {
    texts.push(...batch);
  }
  return texts;
}

Deno.test("readTextBatches() decompresses .jsonl.gz, .json.gz and .txt.gz files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeGzip(`${dir}/a.jsonl.gz`, '{"text": "One é."}\n\n{"text": "Two."}\n{"text": "3"}');
    await writeGzip(`${dir}/b.json.gz`, '[{"text": "Four."}, "Five."]');
    await writeGzip(`${dir}/c.txt.gz`, "Six.\r\n\nSeven.\n");
    assert.deepEqual(await allTexts(`${dir}/a.jsonl.gz`), ["One é.", "Two.", "3"]);
    assert.deepEqual(await allTexts(`${dir}/b.json.gz`), ["Four.", "Five."]);
    assert.deepEqual(await allTexts(`${dir}/c.txt.gz`), ["Six.", "Seven."]);
    // A folder mixing compressed and plain files is read in name order.
    await Deno.writeTextFile(`${dir}/d.jsonl`, '{"text": "Eight."}\n');
    assert.deepEqual(await allTexts(dir), [
      "One é.",
      "Two.",
      "3",
      "Four.",
      "Five.",
      "Six.",
      "Seven.",
      "Eight.",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readRecordBatches() reads instruction pairs from a .jsonl.gz as from the plain file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lines = [
      { instruction: "Name a colour.", input: "", output: "Blue." },
      { instruction: "Add the numbers.", input: "2 and 3", output: "5" },
    ].map((pair) => JSON.stringify(pair) + "\n").join("");
    await Deno.writeTextFile(`${dir}/pairs.jsonl`, lines);
    await writeGzip(`${dir}/pairs.jsonl.gz`, lines);
    const read = async (path: string) => {
      const records = [];
      const options = { fields: ["instruction", "output"], optionalFields: ["input"] };
      for await (const batch of readRecordBatches(path, options)) records.push(...batch);
      return records;
    };
    const plain = await read(`${dir}/pairs.jsonl`);
    assert.equal(plain.length, 2);
    assert.deepEqual(await read(`${dir}/pairs.jsonl.gz`), plain);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareDataset() reads a .jsonl.gz file into plain JSON Lines", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeGzip(`${dir}/in.jsonl.gz`, '{"text": "Alpha."}\n{"text": "Beta."}\n');
    const result = await prepareDataset({
      data: `${dir}/in.jsonl.gz`,
      out: `${dir}/out.jsonl`,
      quiet: true,
    });
    assert.equal(result.rows, 2);
    assert.equal(
      await Deno.readTextFile(`${dir}/out.jsonl`),
      '{"text":"Alpha."}\n{"text":"Beta."}\n',
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gzip bytes under a text name are an error naming the file, never text", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A compressed file without its .gz name, as a download might leave it.
    await writeGzip(`${dir}/web.jsonl.gz`, '{"text": "Hidden."}\n');
    await Deno.rename(`${dir}/web.jsonl.gz`, `${dir}/web.txt`);
    await assert.rejects(allTexts(`${dir}/web.txt`), (e: Error) => {
      assert.match(e.message, /web\.txt is not UTF-8 text/);
      assert.match(e.message, /\.gz name/);
      return true;
    });
    // Latin-1 text is not UTF-8 either: an error, not replacement characters.
    const latin1 = new TextEncoder().encode('{"text": "caf?"}\n');
    latin1[latin1.indexOf(0x3f)] = 0xe9; // é in Latin-1
    await Deno.writeFile(`${dir}/latin1.jsonl`, latin1);
    await assert.rejects(allTexts(`${dir}/latin1.jsonl`), /latin1\.jsonl is not UTF-8 text/);
    await Deno.writeFile(`${dir}/array.json`, new Uint8Array([0x5b, 0x22, 0xff, 0x22, 0x5d]));
    await assert.rejects(allTexts(`${dir}/array.json`), /array\.json is not UTF-8 text/);
    // A .gz that is not gzip.
    await Deno.writeTextFile(`${dir}/broken.txt.gz`, "plain text");
    await assert.rejects(allTexts(`${dir}/broken.txt.gz`), /broken\.txt\.gz is not a gzip file/);
    await Deno.writeFile(`${dir}/table.parquet.gz`, new Uint8Array([0x1f, 0x8b]));
    await assert.rejects(allTexts(`${dir}/table.parquet.gz`), /decompress it/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the bundled corpus is in the repository, readable, and at most 25 MB", async () => {
  let bytes = 0;
  for (const path of [BUNDLED_FINEWEB, BUNDLED_STORIES, BUNDLED_ALPACA, BUNDLED_SNAKES_QA]) {
    assert.ok(path.startsWith(BUNDLED_DATA_DIR), path);
    bytes += (await Deno.stat(path)).size;
  }
  assert.ok(bytes <= 25e6, `${bytes} bytes`);
  // The first batch of each folder, as the pipeline reads them.
  const first = async (path: string, fields: string[]) => {
    for await (const batch of readRecordBatches(path, { fields, batchSize: 5 })) return batch;
    return [];
  };
  const pretrain = await first(BUNDLED_PRETRAIN_DIR, ["text"]);
  assert.equal(pretrain.length, 5);
  assert.ok(pretrain.every((record) => record.text.length > 0));
  const instruct = await first(BUNDLED_INSTRUCT_DIR, ["instruction", "output"]);
  assert.equal(instruct.length, 5);
  assert.ok(instruct.every((pair) => pair.instruction.length > 0 && pair.output.length > 0));
});
