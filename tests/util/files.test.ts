import assert from "node:assert/strict";
import {
  checkOutputFolder,
  FolderOutput,
  OUTPUT_MARKER,
  readJsonFile,
  writeAll,
  writeFileAtomic,
  writeOutputFile,
  writeTextFileAtomic,
} from "../../util/files.ts";

Deno.test("writeFileAtomic() leaves the old file whole when writing fails", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeTextFileAtomic(`${dir}/data.txt`, "old contents");
    await assert.rejects(
      writeFileAtomic(`${dir}/data.txt`, async (file) => {
        await file.write(new TextEncoder().encode("half of the new"));
        throw new Error("disk full");
      }),
      /disk full/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/data.txt`), "old contents");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["data.txt"]);
    await writeTextFileAtomic(`${dir}/data.txt`, "new contents");
    assert.equal(await Deno.readTextFile(`${dir}/data.txt`), "new contents");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() removes its partial file when the rename fails", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/taken`);
    await Deno.writeTextFile(`${dir}/taken/keep.txt`, "theirs");
    await assert.rejects(writeTextFileAtomic(`${dir}/taken`, "new"));
    assert.deepEqual(names(dir), ["taken"]);
    assert.equal(await Deno.readTextFile(`${dir}/taken/keep.txt`), "theirs");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The entries of a folder, sorted. */
function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

const text = (t: string) => (file: Deno.FsFile) => writeAll(file, new TextEncoder().encode(t));

Deno.test("writeOutputFile() replaces its own earlier output, never another file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const output = { stage: "prepare" };
    await writeOutputFile(`${dir}/out.jsonl`, output, text("first"));
    await writeOutputFile(`${dir}/out.jsonl`, output, text("second"));
    assert.equal(await Deno.readTextFile(`${dir}/out.jsonl`), "second");
    assert.deepEqual(names(dir), [".out.jsonl.written-by", "out.jsonl"]);
    // Another stage's marker, or none, is not this stage's.
    await assert.rejects(
      writeOutputFile(`${dir}/out.jsonl`, { stage: "other" }, text("x")),
      /--out .*out\.jsonl already exists and was not written by other; pass another --out, or add --force/,
    );
    await Deno.writeTextFile(`${dir}/notes.txt`, "mine");
    await assert.rejects(writeOutputFile(`${dir}/notes.txt`, output, text("x")), /--force/);
    assert.equal(await Deno.readTextFile(`${dir}/notes.txt`), "mine");
    await writeOutputFile(`${dir}/notes.txt`, { ...output, force: true }, text("forced"));
    assert.equal(await Deno.readTextFile(`${dir}/notes.txt`), "forced");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeOutputFile() refuses a folder and an input, even with force", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/folder`);
    await assert.rejects(
      writeOutputFile(`${dir}/folder`, { stage: "prepare", force: true }, text("x")),
      /folder is a folder, but prepare writes one file; pass a file path/,
    );
    await Deno.writeTextFile(`${dir}/in.jsonl`, "input");
    await assert.rejects(
      writeOutputFile(
        `${dir}/in.jsonl`,
        { stage: "prepare", force: true, inputs: [`${dir}/./in.jsonl`] },
        text("x"),
      ),
      /would overwrite the input .*in\.jsonl; prepare never writes over what it reads/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/in.jsonl`), "input");
    // A failed write leaves nothing behind.
    await assert.rejects(
      writeOutputFile(
        `${dir}/new.jsonl`,
        { stage: "prepare" },
        () => Promise.reject(new Error("no")),
      ),
      /no/,
    );
    assert.deepEqual(names(dir), ["folder", "in.jsonl"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function writeFolder(path: string, stage: string, files: Record<string, string>) {
  const output = await FolderOutput.start(path, { stage, files: Object.keys(files) });
  for (const [name, content] of Object.entries(files)) {
    await Deno.writeTextFile(`${output.temporary}/${name}`, content);
  }
  await output.publish();
}

Deno.test("FolderOutput replaces its own earlier folder whole and leaves no temporary", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeFolder(`${dir}/out`, "tokenize", { "a.bin": "1", "meta.json": "{}" });
    assert.deepEqual(names(`${dir}/out`), [OUTPUT_MARKER, "a.bin", "meta.json"]);
    await writeFolder(`${dir}/out`, "tokenize", { "a.bin": "2", "meta.json": "{}" });
    assert.equal(await Deno.readTextFile(`${dir}/out/a.bin`), "2");
    assert.deepEqual(names(dir), ["out"]);
    // An unfinished folder is abandoned without touching the published one.
    const output = await FolderOutput.start(`${dir}/out`, { stage: "tokenize", files: ["a.bin"] });
    await output.abandon();
    assert.deepEqual(names(dir), ["out"]);
    assert.equal(await Deno.readTextFile(`${dir}/out/a.bin`), "2");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FolderOutput refuses a folder of other files; with force it adds its files beside them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/data`);
    await Deno.writeTextFile(`${dir}/data/corpus.jsonl`, "corpus");
    await Deno.writeTextFile(`${dir}/data/NOTES.txt`, "notes");
    const options = { stage: "tokenize", files: ["a.bin", "meta.json"] };
    await assert.rejects(
      checkOutputFolder(`${dir}/data`, options),
      /data is a folder holding files tokenize did not write \(NOTES\.txt, corpus\.jsonl\); pass another --out \(a new or empty folder\), or add --force/,
    );
    await writeFolder(`${dir}/data`, "tokenize", { "a.bin": "1", "meta.json": "{}" }).then(
      () => assert.fail("wrote into a foreign folder"),
      () => {},
    );
    const forced = await FolderOutput.start(`${dir}/data`, { ...options, force: true });
    await Deno.writeTextFile(`${forced.temporary}/a.bin`, "1");
    await Deno.writeTextFile(`${forced.temporary}/meta.json`, "{}");
    await forced.publish();
    assert.deepEqual(names(`${dir}/data`), ["NOTES.txt", "a.bin", "corpus.jsonl", "meta.json"]);
    assert.equal(await Deno.readTextFile(`${dir}/data/corpus.jsonl`), "corpus");
    assert.deepEqual(names(dir), ["data"]);
    // An empty folder is used as it is.
    await Deno.mkdir(`${dir}/empty`);
    assert.equal(await checkOutputFolder(`${dir}/empty`, options), "share");
    await writeFolder(`${dir}/empty`, "tokenize", { "a.bin": "1" });
    assert.deepEqual(names(`${dir}/empty`), ["a.bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FolderOutput refuses a file at its path unless forced, and an input always", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/out`, "a file");
    const options = { stage: "train_tokenizer", files: ["tokenizer.json"] };
    await assert.rejects(
      checkOutputFolder(`${dir}/out`, options),
      /out is a file, but train_tokenizer writes a folder; pass another --out, or add --force/,
    );
    await assert.rejects(
      checkOutputFolder(`${dir}/out`, { ...options, force: true, inputs: [`${dir}/out`] }),
      /would overwrite the input/,
    );
    await writeFolder(`${dir}/out`, "train_tokenizer", { "tokenizer.json": "{}" }).catch(() => {});
    assert.equal(await Deno.readTextFile(`${dir}/out`), "a file");
    assert.equal(await checkOutputFolder(`${dir}/out`, { ...options, force: true }), "create");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readJsonFile() names the file in a parse error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/meta.json`, '{"rows": 3,');
    await assert.rejects(
      readJsonFile(`${dir}/meta.json`, "write it again."),
      /meta\.json is not valid JSON \(.*\); write it again\./,
    );
    await Deno.writeTextFile(`${dir}/meta.json`, '{"rows": 3}');
    assert.deepEqual(await readJsonFile(`${dir}/meta.json`, ""), { rows: 3 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
