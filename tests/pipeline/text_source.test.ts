import assert from "node:assert/strict";
import { parquetWriteBuffer } from "hyparquet-writer";
import {
  firstInvalidUtf8,
  linesOf,
  readRecordBatches,
  readTextBatches,
} from "../../pipeline/text_source.ts";
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
    // Plain text has lines, not pairs.
    await Deno.writeTextFile(`${dir}/pairs.txt`, "Name a colour. Blue.\n");
    await assert.rejects(
      read(`${dir}/pairs.txt`),
      /pairs\.txt is read as plain text, but each record needs the fields instruction, output; pass JSON Lines/,
    );
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

Deno.test("gzip data under a text name is read as what it is, never as binary text", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A compressed file without its .gz name, as a download might leave it.
    await writeGzip(`${dir}/web.jsonl.gz`, '{"text": "Hidden."}\n');
    await Deno.rename(`${dir}/web.jsonl.gz`, `${dir}/web.jsonl`);
    assert.deepEqual(await allTexts(`${dir}/web.jsonl`), ["Hidden."]);
    // A .gz that is not gzip, and gzip cut short.
    await Deno.writeTextFile(`${dir}/broken.txt.gz`, "plain text");
    await assert.rejects(
      allTexts(`${dir}/broken.txt.gz`),
      /broken\.txt\.gz is not a gzip file, though its name ends in \.gz/,
    );
    await writeGzip(`${dir}/cut.txt.gz`, "a long line of text ".repeat(500));
    const whole = await Deno.readFile(`${dir}/cut.txt.gz`);
    await Deno.writeFile(`${dir}/cut.txt.gz`, whole.subarray(0, whole.length - 12));
    await assert.rejects(
      allTexts(`${dir}/cut.txt.gz`),
      /cut\.txt\.gz is cut short or corrupt gzip/,
    );
    await Deno.writeFile(`${dir}/table.parquet.gz`, new Uint8Array([0x1f, 0x8b]));
    await assert.rejects(allTexts(`${dir}/table.parquet.gz`), /decompress it/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("zstd, xz, zip and Parquet bytes under a text name are refused with what to do", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases: Array<[string, number[], RegExp]> = [
      [
        "a.jsonl.zst",
        [0x28, 0xb5, 0x2f, 0xfd, 0, 0],
        /a\.jsonl\.zst is compressed with zstd, not text; decompress it first with zstd -d/,
      ],
      ["b.txt", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1], /b\.txt is compressed with xz/],
      ["c.txt", [0x42, 0x5a, 0x68, 0x39, 0x31], /c\.txt is compressed with bzip2/],
      ["d.jsonl", [0x50, 0x4b, 0x03, 0x04, 0x14], /d\.jsonl is a zip archive, not text; unzip it/],
      [
        "e.jsonl",
        [0x50, 0x41, 0x52, 0x31, 0x15],
        /e\.jsonl is a Parquet file, not text; give it a \.parquet name/,
      ],
    ];
    for (const [name, bytes, message] of cases) {
      await Deno.writeFile(`${dir}/${name}`, new Uint8Array(bytes));
      await assert.rejects(allTexts(`${dir}/${name}`), message);
    }
    // Text that merely starts with "BZh" is text.
    await Deno.writeTextFile(`${dir}/f.txt`, "BZh is how bzip2 files begin.\n");
    assert.deepEqual(await allTexts(`${dir}/f.txt`), ["BZh is how bzip2 files begin."]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("binary bytes and Latin-1 text are errors naming the file and the byte offset", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Random-looking bytes with a NUL early on: binary, not "documents".
    const binary = new Uint8Array(4096).map((_, i) => (i * 7919 + 13) % 256);
    await Deno.writeFile(`${dir}/noise.txt`, binary);
    await assert.rejects(
      allTexts(`${dir}/noise.txt`),
      /noise\.txt looks binary, not text \(a NUL byte at offset \d+\)/,
    );
    // Latin-1 é (0xe9) is not UTF-8: an error at its offset, not U+FFFD.
    const latin1 = new TextEncoder().encode('{"text": "caf?"}\n');
    latin1[latin1.indexOf(0x3f)] = 0xe9;
    await Deno.writeFile(`${dir}/latin1.jsonl`, latin1);
    await assert.rejects(
      allTexts(`${dir}/latin1.jsonl`),
      /latin1\.jsonl is not UTF-8 text: the byte at offset 13 \(0xe9\) starts no valid UTF-8 character\. Convert it to UTF-8 first \(for Latin-1 text: iconv -f latin1 -t utf-8\)/,
    );
    await Deno.writeFile(`${dir}/array.json`, new Uint8Array([0x5b, 0x22, 0xff, 0x22, 0x5d]));
    await assert.rejects(
      allTexts(`${dir}/array.json`),
      /array\.json is not UTF-8 text: the byte at offset 2/,
    );
    // A file that ends inside a character.
    await Deno.writeFile(`${dir}/cut.txt`, new Uint8Array([0x61, 0x0a, 0xe2, 0x82]));
    await assert.rejects(
      allTexts(`${dir}/cut.txt`),
      /cut\.txt is not UTF-8 text: it ends inside a character at offset 2/,
    );
    // Inside gzip, the offset counts decompressed bytes.
    const gzipped = new Uint8Array([...new TextEncoder().encode("ok\nbad "), 0xe9, 0x0a]);
    await Deno.writeFile(
      `${dir}/bad.txt.gz`,
      ReadableStream.from([gzipped]).pipeThrough(new CompressionStream("gzip")),
    );
    await assert.rejects(
      allTexts(`${dir}/bad.txt.gz`),
      /bad\.txt\.gz \(after gzip decompression\) is not UTF-8 text: the byte at offset 7/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("linesOf() decodes characters split across chunks and drops a leading byte-order mark", async () => {
  const bytes = new TextEncoder().encode("\uFEFFcafé 🦊\n你好\r\nend");
  // One byte per chunk: every multi-byte character is split.
  const stream = ReadableStream.from([...bytes].map((b) => new Uint8Array([b])));
  const lines: string[] = [];
  for await (const line of linesOf(stream)) lines.push(line);
  assert.deepEqual(lines, ["café 🦊", "你好", "end"]);
  const bad = ReadableStream.from([new Uint8Array([0x61, 0xf0, 0x9f]), new Uint8Array([0x41])]);
  await assert.rejects(
    (async () => {
      for await (const _ of linesOf(bad, false, "standard input")) { /* read all */ }
    })(),
    /standard input is not UTF-8 text: the byte at offset 1 \(0xf0\)/,
  );
});

Deno.test("firstInvalidUtf8() follows Unicode's table of well-formed sequences", () => {
  const at = (...bytes: number[]) => firstInvalidUtf8(new Uint8Array(bytes));
  assert.equal(at(0x61, 0xc3, 0xa9), 3); // "aé": valid
  assert.equal(at(0xf0, 0x9f, 0xa6, 0x8a), 4); // 🦊
  assert.equal(at(0x61, 0xc0, 0xaf), 1); // overlong "/"
  assert.equal(at(0xe0, 0x80, 0xaf), 0); // overlong, three bytes
  assert.equal(at(0xed, 0xa0, 0x80), 0); // a surrogate
  assert.equal(at(0xf4, 0x90, 0x80, 0x80), 0); // past U+10FFFF
  assert.equal(at(0x61, 0x80), 1); // a lone continuation byte
  assert.equal(at(0xe2, 0x82), 0); // cut short
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

Deno.test("readTextBatches() refuses a Parquet text column of numbers, naming the file, column and row", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = (name: string, data: unknown[], type: "STRING" | "INT32") =>
      Deno.writeFile(
        `${dir}/${name}`,
        new Uint8Array(parquetWriteBuffer({ columnData: [{ name: "text", data, type }] })),
      );
    await write("numbers.parquet", [7, 8, 9], "INT32");
    await write("texts.parquet", ["one", null, "three"], "STRING");
    await assert.rejects(
      allTexts(`${dir}/numbers.parquet`),
      new RegExp(
        `${dir}/numbers\\.parquet: column "text" of row 0 holds a number \\(7\\), not text; ` +
          "choose the text column with --text-field",
      ),
    );
    assert.deepEqual(await allTexts(`${dir}/texts.parquet`), ["one", "", "three"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readRecordBatches() with sources keeps only the records of those sources", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const records = [
      { text: "a tale", source: "child" },
      { text: "a page" },
      { text: "a fire", source: "campfire" },
      { text: "a nap", source: "child" },
    ];
    await Deno.writeTextFile(
      `${dir}/mixed.jsonl`,
      records.map((r) => JSON.stringify(r)).join("\n") + "\n",
    );
    const kept: string[] = [];
    for await (const batch of readTextBatches(`${dir}/mixed.jsonl`, { sources: ["child"] })) {
      kept.push(...batch);
    }
    assert.deepEqual(kept, ["a tale", "a nap"]);
    const all: string[] = [];
    for await (const batch of readTextBatches(`${dir}/mixed.jsonl`)) all.push(...batch);
    assert.equal(all.length, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
