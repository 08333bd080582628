import assert from "node:assert/strict";
import { BUNDLED_INSTRUCT_DIR, BUNDLED_STORIES } from "../../pipeline/bundled_data.ts";
import { prepareDataset } from "../../pipeline/prepare_dataset.ts";
import {
  CLEAN_ANSWER_SOURCES,
  CLEAN_STORY_SOURCES,
  estimateSourceTokens,
  HUB_ROWS,
  pretrainingSource,
} from "../../pipeline/pretraining_source.ts";

Deno.test("the main job trains on the bundled corpus by default, offline", async () => {
  const source = pretrainingSource({});
  assert.deepEqual(
    source.mixture?.map((s) => s.data),
    [BUNDLED_STORIES, BUNDLED_INSTRUCT_DIR],
  );
  assert.deepEqual(source.mixture?.map((s) => s.chat ?? false), [false, true]);
  assert.deepEqual(source.mixture?.map((s) => s.sources), [
    CLEAN_STORY_SOURCES,
    CLEAN_ANSWER_SOURCES,
  ]);
  assert.equal(source.hub, undefined);
  assert.match(source.label, /bundled/);
  // The bundled files are in the checkout and read without a network.
  const dir = await Deno.makeTempDir();
  try {
    const result = await prepareDataset({
      mixture: source.mixture,
      rows: 20,
      out: `${dir}/dataset.jsonl`,
      quiet: true,
    });
    assert.equal(result.rows, 20);
    assert.ok(result.characters > 100);
    // The instruction pairs come in as ChatML conversations among the stories and pages.
    const texts = (await Deno.readTextFile(`${dir}/dataset.jsonl`)).trim().split("\n")
      .map((line) => JSON.parse(line).text as string);
    const chats = texts.filter((text) => text.startsWith("<|im_start|>user\n"));
    assert.ok(
      chats.length > 0 && chats.length < texts.length,
      `${chats.length} of ${texts.length}`,
    );
    for (const chat of chats) {
      assert.match(chat, /<\|im_end\|>\n<\|im_start\|>assistant\n.+<\|im_end\|>\n$/s);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // About 4 bytes a token: millions of tokens, counted over the stories and pairs kept (13 MB and
  // 6.3 MB).
  const tokens = await estimateSourceTokens(source);
  assert.ok(tokens > 3e6 && tokens < 6e6, `${tokens}`);
});

Deno.test("--hub takes the seed's FineWeb sample, and cannot be mixed with --data", () => {
  const hub = pretrainingSource({ hub: true });
  assert.equal(hub.data, undefined);
  assert.equal(hub.hub?.repo, "HuggingFaceFW/fineweb");
  assert.equal(hub.rows, HUB_ROWS);
  assert.equal(pretrainingSource({ data: "corpus.txt", rows: 7 }).rows, 7);
  assert.throws(() => pretrainingSource({ hub: true, data: "corpus.txt" }), /--data or --hub/);
});

Deno.test("estimateSourceTokens() reads a gzip file's uncompressed size, and a mixture's limit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = JSON.stringify({ text: "word ".repeat(20_000) }) + "\n";
    const gz = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
    await Deno.writeFile(`${dir}/a.jsonl.gz`, new Uint8Array(await new Response(gz).arrayBuffer()));
    await Deno.writeTextFile(`${dir}/b.txt`, "x".repeat(4000));
    const source = (data: string) => pretrainingSource({ data });
    assert.equal(
      await estimateSourceTokens(source(dir)),
      Math.round((text.length + 4000) / 4),
    );
    // 4,000 bytes at a quarter share allow 16,000 bytes of mixture, less than the other's limit.
    const mixture = [{ data: `${dir}/a.jsonl.gz`, share: 3 }, { data: `${dir}/b.txt`, share: 1 }];
    assert.equal(
      await estimateSourceTokens({ mixture, rows: Infinity, label: "" }),
      Math.round(Math.min(text.length / 0.75, 4000 / 0.25) / 4),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--instruct-data also gives the bundled mix its conversations", () => {
  const source = pretrainingSource({ instructData: "my-pairs.jsonl" });
  assert.deepEqual(source.mixture?.filter((s) => s.chat).map((s) => s.data), ["my-pairs.jsonl"]);
});
