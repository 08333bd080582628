import assert from "node:assert/strict";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import {
  fromHfTokenizerJson,
  type HfTokenizerJson,
  loadHfTokenizer,
  saveHfTokenizer,
  toHfTokenizerJson,
} from "../../tokenizer/hf_json.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { fixturePath } from "./_helpers.ts";

interface Expected {
  expected: Array<{ text: string; ids: number[] }>;
}

Deno.test("a tokenizer.json written by HF tokenizers loads and encodes to HF's ids", async () => {
  const tokenizer = await loadHfTokenizer(fixturePath("hf_bpe.json"));
  const { expected } = JSON.parse(
    await Deno.readTextFile(fixturePath("hf_bpe_expected.json")),
  ) as Expected;
  for (const { text, ids } of expected) {
    assert.deepEqual(tokenizer.encode(text), ids, `encoding ${JSON.stringify(text)}`);
  }
});

Deno.test('merges written as "a b" strings load like ["a", "b"] pairs', async () => {
  const json = JSON.parse(await Deno.readTextFile(fixturePath("hf_bpe.json"))) as HfTokenizerJson;
  const pairs = fromHfTokenizerJson(json);
  json.model.merges = json.model.merges.map((m) => (m as string[]).join(" "));
  const strings = fromHfTokenizerJson(json);
  assert.deepEqual(strings.merges, pairs.merges);
  assert.deepEqual(strings.encode("The quick brown fox"), pairs.encode("The quick brown fox"));
});

Deno.test("saving and loading a tokenizer.json keeps vocabulary, merges and added tokens", async () => {
  const counts = new Map([["hug", 10], [" hugs", 5], ["pun", 12]]);
  const tokenizer = BpeTokenizer.fromTrained(trainBpe(counts, { vocabSize: 270 }));
  tokenizer.addTokens(["<|im_start|>", "<|im_end|>"]);
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await saveHfTokenizer(tokenizer, path);
    const loaded = await loadHfTokenizer(path);
    // JSON objects list integer-like keys ("0".."9") first, so compare as sets of entries.
    assert.deepEqual(Object.fromEntries(loaded.vocab), Object.fromEntries(tokenizer.vocab));
    assert.deepEqual(loaded.merges, tokenizer.merges);
    assert.deepEqual(loaded.addedTokens, tokenizer.addedTokens);
    const text = "<s>hug hugs<|im_start|>pun</s>";
    assert.deepEqual(loaded.encode(text), tokenizer.encode(text));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("the saved tokenizer.json has HF's model, pre-tokenizer and decoder sections", () => {
  const tokenizer = BpeTokenizer.fromTrained(trainBpe(new Map([["ab", 2]]), { vocabSize: 262 }));
  const json = toHfTokenizerJson(tokenizer);
  assert.equal(json.model.type, "BPE");
  assert.deepEqual(json.model.merges, [["a", "b"]]);
  assert.deepEqual(json.pre_tokenizer, {
    type: "ByteLevel",
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: true,
  });
  assert.equal((json.decoder as { type: string }).type, "ByteLevel");
  assert.deepEqual(json.added_tokens.map((t) => [t.id, t.content, t.special]), [
    [0, "<s>", true],
    [1, "<pad>", true],
    [2, "</s>", true],
    [3, "<unk>", true],
    [4, "<mask>", true],
  ]);
});

Deno.test("loading refuses a tokenizer.json that is not byte-level BPE", async () => {
  const json = JSON.parse(await Deno.readTextFile(fixturePath("hf_bpe.json"))) as HfTokenizerJson;
  assert.throws(
    () => fromHfTokenizerJson({ ...json, model: { ...json.model, type: "WordPiece" } }),
    /does not support/,
  );
  assert.throws(() => fromHfTokenizerJson({ ...json, normalizer: { type: "NFC" } }), /normalizer/);
});

Deno.test("loading a tokenizer.json that is not valid JSON, or not BPE, names the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, '{"version": "1.0", "model": {');
    await assert.rejects(
      loadHfTokenizer(`${dir}/tokenizer.json`),
      /tokenizer\.json is not valid JSON \(.*\); .*train the tokenizer again or download it again/,
    );
    const json = JSON.parse(await Deno.readTextFile(fixturePath("hf_bpe.json")));
    json.model.type = "WordPiece";
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
    await assert.rejects(
      loadHfTokenizer(`${dir}/tokenizer.json`),
      /^Error: .*tokenizer\.json: This tokenizer\.json uses the model type "WordPiece"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loading refuses two tokens on one id, but not an added token that repeats its vocabulary entry", async () => {
  const json = JSON.parse(await Deno.readTextFile(fixturePath("hf_bpe.json"))) as HfTokenizerJson;
  const [first, second] = Object.entries(json.model.vocab);
  const added = [{ id: 900_000, content: "<a>", special: true }];
  // The same text on the same id, in the vocabulary and as an added token, is fine.
  fromHfTokenizerJson({
    ...json,
    added_tokens: [{ ...added[0], id: first[1], content: first[0] }],
  });
  assert.throws(
    () =>
      fromHfTokenizerJson({
        ...json,
        added_tokens: [...added, { id: 900_000, content: "<b>", special: true }],
      }),
    /The tokens "<a>" and "<b>" share the id 900000; every id must stand for one token/,
  );
  assert.throws(
    () => fromHfTokenizerJson({ ...json, added_tokens: [{ ...added[0], id: first[1] }] }),
    new RegExp(`share the id ${first[1]}`),
  );
  assert.throws(
    () =>
      fromHfTokenizerJson({
        ...json,
        model: { ...json.model, vocab: { ...json.model.vocab, [first[0]]: second[1] } },
      }),
    new RegExp(`share the id ${second[1]}`),
  );
});
