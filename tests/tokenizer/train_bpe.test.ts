import assert from "node:assert/strict";
import { DEFAULT_SPECIAL_TOKENS, trainBpe } from "../../tokenizer/train_bpe.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { fixturePath, linesWithEndings } from "./_helpers.ts";

// Worked by hand. Alphabet seen: b g h n p s u = ids 0..6. Pair counts:
// ug 20, pu 17, un 16, hu 15 → merge ug (7). Then un 16 → un (8); h+ug 15 → hug (9);
// p+un 12 → pun (10); then p+ug and hug+s tie at 5: (4, 7) < (9, 5), so pug (11)
// before hugs (12); last b+un 4 → bun (13).
const HAND_COUNTS = new Map([["hug", 10], ["pug", 5], ["pun", 12], ["bun", 4], ["hugs", 5]]);
const HAND_MERGES = [
  ["u", "g"],
  ["u", "n"],
  ["h", "ug"],
  ["p", "un"],
  ["p", "ug"],
  ["hug", "s"],
  ["b", "un"],
];

Deno.test("trainBpe() learns the merges worked out by hand, ties to the smallest pair of ids", () => {
  const trained = trainBpe(HAND_COUNTS, { vocabSize: 100, specialTokens: [], alphabet: "seen" });
  assert.deepEqual(trained.merges, HAND_MERGES);
  assert.deepEqual([...trained.vocab.keys()], [
    ..."bghnpsu",
    "ug",
    "un",
    "hug",
    "pun",
    "pug",
    "hugs",
    "bun",
  ]);
});

Deno.test("trainBpe() breaks a count tie by ids, not by the order words were seen", () => {
  const counts = new Map([["dc", 3], ["ba", 3]]);
  const trained = trainBpe(counts, { vocabSize: 100, specialTokens: [], alphabet: "seen" });
  assert.deepEqual(trained.merges, [["b", "a"], ["d", "c"]]);
});

Deno.test("trainBpe() stops at vocabSize", () => {
  const trained = trainBpe(HAND_COUNTS, { vocabSize: 10, specialTokens: [], alphabet: "seen" });
  assert.deepEqual(trained.merges, HAND_MERGES.slice(0, 3));
  assert.equal(trained.vocab.size, 10);
});

Deno.test("trainBpe() stops when the best count falls below minFrequency", () => {
  const trained = trainBpe(HAND_COUNTS, {
    vocabSize: 100,
    minFrequency: 5,
    specialTokens: [],
    alphabet: "seen",
  });
  assert.deepEqual(trained.merges, HAND_MERGES.slice(0, 6));
});

Deno.test("trainBpe() numbers special tokens first, then all 256 byte symbols, then merges", () => {
  const trained = trainBpe(HAND_COUNTS, { vocabSize: 262 });
  assert.deepEqual(trained.specialTokens, DEFAULT_SPECIAL_TOKENS);
  DEFAULT_SPECIAL_TOKENS.forEach((token, id) => assert.equal(trained.vocab.get(token), id));
  assert.equal(trained.vocab.get("!"), 5);
  assert.equal(trained.vocab.get("ug"), 261);
  assert.equal(trained.vocab.size, 262);
});

Deno.test("countWords() never splits special tokens into words, so they are never merged", async () => {
  const counts = await countWords([["<s>hug</s> hug<pad>", "<s>"]], DEFAULT_SPECIAL_TOKENS);
  assert.deepEqual(Object.fromEntries(counts), { hug: 1, " hug": 1 });
});

Deno.test("trainBpe() reproduces HF tokenizers' merges and vocabulary on the fixture corpus", async () => {
  const hf = JSON.parse(await Deno.readTextFile(fixturePath("hf_bpe.json")));
  const corpus = await Deno.readTextFile(fixturePath("hf_corpus.txt"));
  const counts = await countWords([linesWithEndings(corpus)]);
  const trained = trainBpe(counts, { vocabSize: 30000, specialTokens: [], alphabet: "seen" });
  assert.deepEqual(trained.merges, hf.model.merges);
  assert.deepEqual(Object.fromEntries(trained.vocab), hf.model.vocab);
});

Deno.test("trainBpe() refuses a vocabulary smaller than the special tokens and the alphabet", () => {
  assert.throws(
    () => trainBpe(HAND_COUNTS, { vocabSize: 100 }),
    /A vocabulary of 100 tokens cannot hold the 5 special tokens and the 256 byte symbols: it needs at least 261 \(--vocab-size 261 or more\)/,
  );
  assert.throws(
    () => trainBpe(HAND_COUNTS, { vocabSize: 8, specialTokens: ["<s>", "</s>"], alphabet: "seen" }),
    /cannot hold the 2 special tokens and the 7 characters of the corpus: it needs at least 9/,
  );
  // Exactly the minimum: no merges, but a valid tokenizer.
  assert.equal(trainBpe(HAND_COUNTS, { vocabSize: 261 }).merges.length, 0);
});
