import assert from "node:assert/strict";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { fixturePath, linesWithEndings, seededRandom } from "./_helpers.ts";

async function trainedOnFixture(vocabSize = 400): Promise<BpeTokenizer> {
  const corpus = await Deno.readTextFile(fixturePath("hf_corpus.txt"));
  const counts = await countWords([linesWithEndings(corpus)]);
  return BpeTokenizer.fromTrained(trainBpe(counts, { vocabSize }));
}

function randomUnicode(random: () => number, length: number): string {
  const ranges = [
    [0x20, 0x7e],
    [0x09, 0x0d],
    [0xa0, 0x24f],
    [0x370, 0x4ff],
    [0x3040, 0x30ff],
    [
      0x4e00,
      0x9fff,
    ],
    [0x1f300, 0x1faff],
    [0xe000, 0xf8ff],
    [0x10000, 0x10ffff],
  ];
  let text = "";
  for (let i = 0; i < length; i++) {
    const [lo, hi] = ranges[Math.floor(random() * ranges.length)];
    text += String.fromCodePoint(lo + Math.floor(random() * (hi - lo + 1)));
  }
  return text;
}

Deno.test("encode() applies the merges: a word of the corpus becomes one token", async () => {
  const tokenizer = await trainedOnFixture();
  const ids = tokenizer.encode(" sea shells");
  assert.deepEqual(ids.map((id) => tokenizer.idToToken(id)), ["Ġsea", "Ġshells"]);
});

Deno.test("decode(encode(text)) returns random Unicode text exactly", async () => {
  const tokenizer = await trainedOnFixture();
  const random = seededRandom(1);
  for (let trial = 0; trial < 200; trial++) {
    const text = randomUnicode(random, Math.floor(random() * 80));
    assert.equal(tokenizer.decode(tokenizer.encode(text)), text);
  }
});

Deno.test("decode(encode(text)) returns random bytes decoded leniently exactly", async () => {
  const tokenizer = await trainedOnFixture();
  const random = seededRandom(2);
  for (let trial = 0; trial < 200; trial++) {
    const bytes = Uint8Array.from({ length: Math.floor(random() * 120) }, () => random() * 256);
    const text = new TextDecoder().decode(bytes);
    assert.equal(tokenizer.decode(tokenizer.encode(text)), text);
  }
});

Deno.test("a long word is merged the same way as by the short-word path", async () => {
  const tokenizer = await trainedOnFixture();
  const word = "repeat".repeat(30);
  const short = tokenizer.encode("repeat");
  assert.deepEqual(tokenizer.encode(word), Array(30).fill(short).flat());
});

Deno.test("special tokens are matched whole in the input and can be skipped when decoding", async () => {
  const tokenizer = await trainedOnFixture();
  const ids = tokenizer.encode("<s>the sea</s>");
  assert.equal(ids[0], 0);
  assert.equal(ids[ids.length - 1], 2);
  assert.equal(tokenizer.decode(ids), "<s>the sea</s>");
  assert.equal(tokenizer.decode(ids, { skipSpecialTokens: true }), "the sea");
});

Deno.test("addTokens() gives ChatML tokens the next ids and matches them whole", async () => {
  const tokenizer = await trainedOnFixture();
  const size = tokenizer.vocabSize;
  const [start, end] = tokenizer.addTokens(["<|im_start|>", "<|im_end|>"]);
  assert.deepEqual([start, end], [size, size + 1]);
  assert.deepEqual(tokenizer.addTokens(["<|im_end|>", "<s>"]), [size + 1, 0]);
  const text = "<|im_start|>user\nhi<|im_end|>";
  const ids = tokenizer.encode(text);
  assert.equal(ids[0], start);
  assert.equal(ids[ids.length - 1], end);
  assert.equal(tokenizer.decode(ids), text);
});

Deno.test("encode() with plain special tokens keeps their text as ordinary text", async () => {
  const tokenizer = await trainedOnFixture();
  const [start, end] = tokenizer.addTokens(["<|im_start|>", "<|im_end|>"]);
  const text = "<|im_start|>user\nhi<|im_end|></s>";
  const ids = tokenizer.encode(text, { specialTokens: "plain" });
  for (const control of [start, end, tokenizer.tokenToId("</s>")]) {
    assert.ok(!ids.includes(control!), `control id ${control} in ${ids}`);
  }
  assert.equal(tokenizer.decode(ids), text);
  assert.deepEqual(tokenizer.encodeBatch([text], { specialTokens: "plain" }), [ids]);
});

Deno.test("encodeBatch() and decodeBatch() agree with encode() and decode()", async () => {
  const tokenizer = await trainedOnFixture();
  const texts = ["the sea", "", "Café 😀", "<s>x</s>"];
  const batch = tokenizer.encodeBatch(texts);
  assert.deepEqual(batch, texts.map((text) => tokenizer.encode(text)));
  assert.deepEqual(tokenizer.decodeBatch(batch), texts);
});

Deno.test("decode() refuses an id outside the vocabulary", async () => {
  const tokenizer = await trainedOnFixture();
  assert.throws(() => tokenizer.decode([1_000_000]), /not in the vocabulary/);
});

/** A tokenizer of only the characters of a few words (`--alphabet seen`), `é` among them. */
async function seenAlphabetTokenizer(specialTokens?: readonly string[]): Promise<BpeTokenizer> {
  const counts = await countWords([["hello world café", "the cat sat"]]);
  return BpeTokenizer.fromTrained(
    trainBpe(counts, { vocabSize: 60, alphabet: "seen", specialTokens }),
  );
}

Deno.test("alphabet seen: an unseen character becomes one <unk>, never nothing", async () => {
  const tokenizer = await seenAlphabetTokenizer();
  const unk = tokenizer.tokenToId("<unk>")!;
  // 🦊 (4 bytes), 你 and 好 (3 each) and ã (its lead byte 0xC3 is in the alphabet through é,
  // its second byte is not) are one <unk> each; the rest is spelled as before.
  const ids = tokenizer.encode("café 🦊 你好 hello ã");
  assert.equal(ids.filter((id) => id === unk).length, 4);
  assert.equal(tokenizer.decode(ids), "café <unk> <unk><unk> hello <unk>");
  assert.equal(tokenizer.decode(ids, { skipSpecialTokens: true }), "café   hello ");
  // Unseen characters inside a word: its seen characters are kept around the <unk>.
  assert.equal(tokenizer.decode(tokenizer.encode("hexlo")), "he<unk>lo");
  // A long word takes the heap path; same result.
  assert.equal(
    tokenizer.decode(tokenizer.encode("helloq".repeat(10))),
    "hello<unk>".repeat(10),
  );
});

Deno.test("alphabet seen without an <unk> token leaves the character out with one warning", async () => {
  const tokenizer = await seenAlphabetTokenizer(["<s>", "</s>"]);
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (message: string) => warnings.push(message);
  try {
    assert.equal(tokenizer.decode(tokenizer.encode("hello")), "hello");
    assert.equal(warnings.length, 0);
    // As HF does without an unk_token (its parity is tested in hf_json.test.ts), but not silently.
    assert.equal(tokenizer.decode(tokenizer.encode("hello 🦊 Ω")), "hello  ");
    assert.equal(tokenizer.decode(tokenizer.encode("hello Ω")), "hello ");
  } finally {
    console.warn = warn;
  }
  assert.equal(warnings.length, 1);
  assert.match(
    warnings[0],
    /"🦊" \(U\+1F98A\) is not in this tokenizer's alphabet.*no <unk> token.*--alphabet bytes/,
  );
});
