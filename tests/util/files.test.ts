import assert from "node:assert/strict";
import { replaceFolder, writeFileAtomic, writeTextFileAtomic } from "../../util/files.ts";

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

Deno.test("replaceFolder() swaps in the new folder and removes the old one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, text] of [["out", "old"], ["out.partial", "new"]]) {
      await Deno.mkdir(`${dir}/${name}`);
      await Deno.writeTextFile(`${dir}/${name}/meta.json`, text);
    }
    await replaceFolder(`${dir}/out.partial`, `${dir}/out`);
    assert.equal(await Deno.readTextFile(`${dir}/out/meta.json`), "new");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["out"]);
    // With no older folder, it is a rename.
    await Deno.mkdir(`${dir}/fresh.partial`);
    await replaceFolder(`${dir}/fresh.partial`, `${dir}/fresh`);
    assert.ok((await Deno.stat(`${dir}/fresh`)).isDirectory);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
