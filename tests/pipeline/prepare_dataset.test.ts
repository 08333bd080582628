import assert from "node:assert/strict";
import { parquetWriteBuffer } from "hyparquet-writer";
import { prepareDataset } from "../../pipeline/prepare_dataset.ts";
import { seededRandom } from "../_gpu.ts";
import { serveFakeHub } from "./_fake_hub.ts";

/** A Parquet file shaped like FineWeb's: an `id` column, then `text`. */
function fineWebLike(texts: string[], rowGroupSize = texts.length): Uint8Array {
  return new Uint8Array(parquetWriteBuffer({
    columnData: [
      { name: "id", data: texts.map((_, i) => `<urn:${i}>`), type: "STRING" },
      { name: "text", data: texts, type: "STRING" },
    ],
    rowGroupSize,
  }));
}

async function readJsonLines(path: string): Promise<string[]> {
  const lines = (await Deno.readTextFile(path)).split("\n").filter((l) => l);
  return lines.map((line) => JSON.parse(line).text);
}

Deno.test("prepareDataset() samples the hub's Parquet files in order, by byte ranges", async () => {
  const dir = await Deno.makeTempDir();
  // Long, incompressible later row groups (4 MB) that a 5-row sample must not download.
  const random = seededRandom(7);
  const big = Array.from(
    { length: 400 },
    () => Array.from({ length: 1000 }, () => (random() * 1e9).toString(36)).join(" "),
  );
  const first = fineWebLike(["One.", "Two.", "Three."]);
  const second = fineWebLike(["Four.", "Five.", "Six.", ...big], 3);
  const hub = serveFakeHub("HuggingFaceFW/fineweb", {
    "sample/10BT/000_00000.parquet": first,
    "sample/10BT/001_00000.parquet": second,
    "sample/100BT/000_00000.parquet": fineWebLike(["Not this subset."]),
  });
  try {
    const result = await prepareDataset({
      hub: { repo: "HuggingFaceFW/fineweb", folder: "sample/10BT", hubUrl: hub.url },
      rows: 5,
      out: `${dir}/sample.jsonl`,
      quiet: true,
    });
    assert.equal(result.rows, 5);
    assert.deepEqual(await readJsonLines(`${dir}/sample.jsonl`), [
      "One.",
      "Two.",
      "Three.",
      "Four.",
      "Five.",
    ]);
    assert.ok(
      hub.bytesServed() < (first.length + second.length) / 4,
      `served ${hub.bytesServed()} bytes of ${first.length + second.length}`,
    );
  } finally {
    await hub.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareDataset() reads local Parquet, JSON Lines, JSON and text files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/a.parquet`, fineWebLike(["From Parquet."]));
    await Deno.writeTextFile(`${dir}/b.jsonl`, '{"text": "From JSON Lines."}\n\n{"text": ""}\n');
    await Deno.writeTextFile(`${dir}/c.json`, '[{"text": "From JSON."}]');
    await Deno.writeTextFile(`${dir}/d.txt`, "From text, line one.\r\n\nLine two.\n");
    const result = await prepareDataset({ data: dir, out: `${dir}/out/all.jsonl`, quiet: true });
    assert.equal(result.rows, 5);
    assert.deepEqual(await readJsonLines(`${dir}/out/all.jsonl`), [
      "From Parquet.",
      "From JSON Lines.",
      "From JSON.",
      "From text, line one.",
      "Line two.",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareDataset() names a missing path and says what it accepts", async () => {
  await assert.rejects(
    prepareDataset({ data: "/no/such/corpus.parquet", out: "/tmp/unused.jsonl", quiet: true }),
    /No such file or folder: \/no\/such\/corpus\.parquet\. Pass a Parquet, JSON Lines/,
  );
});

Deno.test("prepareDataset() rejects a corrupt Parquet file and leaves no output behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const truncated = fineWebLike(["Some text."]).slice(0, 40);
    await Deno.writeFile(`${dir}/bad.parquet`, truncated);
    await assert.rejects(
      prepareDataset({ data: `${dir}/bad.parquet`, out: `${dir}/out.jsonl`, quiet: true }),
      /bad\.parquet is not a readable Parquet file .* download it again/,
    );
    const left = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(left, ["bad.parquet"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareDataset() says which column to pick when the text column is missing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(
      `${dir}/other.parquet`,
      new Uint8Array(parquetWriteBuffer({
        columnData: [{ name: "content", data: ["x"], type: "STRING" }],
      })),
    );
    await assert.rejects(
      prepareDataset({ data: `${dir}/other.parquet`, out: `${dir}/o.jsonl`, quiet: true }),
      /has no column "text" \(it has: content\); choose the text column with --text-field/,
    );
    const result = await prepareDataset({
      data: `${dir}/other.parquet`,
      out: `${dir}/o.jsonl`,
      textField: "content",
      quiet: true,
    });
    assert.equal(result.rows, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareDataset() interleaves a mixture by share and ends with its scarcest source", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const doc = (tag: string, i: number) =>
      JSON.stringify({ text: `${tag}${i} `.padEnd(100, tag) });
    await Deno.writeTextFile(
      `${dir}/a.jsonl`,
      Array.from({ length: 30 }, (_, i) => doc("a", i)).join("\n"),
    );
    await Deno.writeTextFile(
      `${dir}/b.jsonl`,
      Array.from({ length: 50 }, (_, i) => doc("b", i)).join("\n"),
    );
    await prepareDataset({
      mixture: [{ data: `${dir}/a.jsonl`, share: 3 }, { data: `${dir}/b.jsonl`, share: 1 }],
      rows: Infinity,
      out: `${dir}/out.jsonl`,
      quiet: true,
    });
    const tags = (await Deno.readTextFile(`${dir}/out.jsonl`)).trim().split("\n")
      .map((line) => (JSON.parse(line).text as string)[0]);
    // All 30 of a (the scarce one at its share), 10 of b, mixed all along: every window of 4
    // documents has 3 of a and 1 of b.
    assert.equal(tags.filter((t) => t === "a").length, 30);
    assert.equal(tags.filter((t) => t === "b").length, 10);
    for (let i = 0; i + 4 <= tags.length; i += 4) {
      assert.equal(tags.slice(i, i + 4).filter((t) => t === "b").length, 1);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareDataset() writes a chat source's pairs as ChatML conversations", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/pairs.json`,
      JSON.stringify([
        { instruction: "Name a colour.", input: "", output: "Blue." },
        { instruction: "Add the numbers.", input: "2 and 3", output: "5" },
      ]),
    );
    const page = JSON.stringify({ text: "A plain page." });
    await Deno.writeTextFile(`${dir}/text.jsonl`, Array(20).fill(page).join("\n"));
    await prepareDataset({
      mixture: [
        { data: `${dir}/pairs.json`, share: 1, chat: true },
        { data: `${dir}/text.jsonl`, share: 1 },
      ],
      rows: Infinity,
      out: `${dir}/out.jsonl`,
      quiet: true,
    });
    const texts = (await Deno.readTextFile(`${dir}/out.jsonl`)).trim().split("\n")
      .map((line) => JSON.parse(line).text);
    // The mixture ends when the pairs run out (the scarce source), with pages between them.
    assert.ok(texts.includes("A plain page."));
    assert.deepEqual(texts.filter((text: string) => text !== "A plain page.").sort(), [
      "<|im_start|>user\nAdd the numbers.\n\n2 and 3<|im_end|>\n<|im_start|>assistant\n5<|im_end|>\n",
      "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareDataset() refuses an empty source, naming the stage and the input", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    await Deno.writeTextFile(`${dir}/blank.jsonl`, '{"text": "  "}\n\n');
    for (const name of ["empty.txt", "blank.jsonl"]) {
      await assert.rejects(
        prepareDataset({ data: `${dir}/${name}`, out: `${dir}/out.jsonl`, quiet: true }),
        new RegExp(
          `prepare: .*${name.replace(".", "\\.")} gave no documents .*nothing was written`,
        ),
      );
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "blank.jsonl",
      "empty.txt",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareDataset() never overwrites its input or a file it did not write", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const corpus = '{"text": "One."}\n{"text": "Two."}\n{"text": "Three."}\n';
    await Deno.writeTextFile(`${dir}/corpus.jsonl`, corpus);
    const prepare = (out: string, force = false) =>
      prepareDataset({ data: `${dir}/corpus.jsonl`, rows: 2, out, force, quiet: true });
    // --out == --data: refused even with --force, so the third document is not lost.
    await assert.rejects(prepare(`${dir}/corpus.jsonl`, true), /would overwrite the input/);
    assert.equal(await Deno.readTextFile(`${dir}/corpus.jsonl`), corpus);
    // An existing folder: a clear error, and no .partial left behind.
    await Deno.mkdir(`${dir}/folder`);
    await assert.rejects(
      prepare(`${dir}/folder`),
      /--out .*folder is a folder, but prepare writes one file; pass a file path/,
    );
    // A file prepare did not write.
    await Deno.writeTextFile(`${dir}/notes.txt`, "mine");
    await assert.rejects(
      prepare(`${dir}/notes.txt`),
      /notes\.txt already exists and was not written by prepare; .*--force to replace it/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/notes.txt`), "mine");
    // Its own earlier output is replaced; --force replaces another file.
    assert.equal((await prepare(`${dir}/out.jsonl`)).rows, 2);
    assert.equal((await prepare(`${dir}/out.jsonl`)).rows, 2);
    await prepare(`${dir}/notes.txt`, true);
    assert.deepEqual(await readJsonLines(`${dir}/notes.txt`), ["One.", "Two."]);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      ".notes.txt.written-by",
      ".out.jsonl.written-by",
      "corpus.jsonl",
      "folder",
      "notes.txt",
      "out.jsonl",
    ]);
    assert.deepEqual([...Deno.readDirSync(`${dir}/folder`)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
