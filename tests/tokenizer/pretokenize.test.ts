import assert from "node:assert/strict";
import { AddedTokenSplitter, pretokenize } from "../../tokenizer/pretokenize.ts";

Deno.test("pretokenize() splits like GPT-2: contractions, leading spaces, digits, punctuation", () => {
  assert.deepEqual(pretokenize("Hello world, it's 2024!!"), [
    "Hello",
    " world",
    ",",
    " it",
    "'s",
    " 2024",
    "!!",
  ]);
});

Deno.test("pretokenize() leaves the last whitespace of a run to the next word", () => {
  // "\n\nc": the run gives up its last "\n", which cannot join "c" (only a space can).
  assert.deepEqual(pretokenize("a   b\n\nc  "), ["a", "  ", " b", "\n", "\n", "c", "  "]);
});

Deno.test("pretokenize() treats U+0085 as whitespace and U+FEFF as a symbol, like HF and tiktoken", () => {
  assert.deepEqual(pretokenize("a\u0085b"), ["a", "\u0085", "b"]);
  assert.deepEqual(pretokenize("a\ufeffb"), ["a", "\ufeff", "b"]);
});

Deno.test("pretokenize() pieces always concatenate back to the input", () => {
  const text = "Ünïcödé 東京 😀 \t mixed\r\n 12ab'll '";
  assert.equal(pretokenize(text).join(""), text);
});

Deno.test("AddedTokenSplitter keeps added tokens whole and prefers the longest at one place", () => {
  const splitter = new AddedTokenSplitter(["<s>", "<|im_start|>", "<|im_start|>x"]);
  assert.deepEqual(splitter.split("a<s>b<|im_start|>xy"), [
    { text: "a", isAddedToken: false },
    { text: "<s>", isAddedToken: true },
    { text: "b", isAddedToken: false },
    { text: "<|im_start|>x", isAddedToken: true },
    { text: "y", isAddedToken: false },
  ]);
});
