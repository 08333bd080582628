import assert from "node:assert/strict";
import {
  BYTE_ALPHABET,
  BYTE_TO_CHAR,
  bytesToSymbols,
  symbolsToBytes,
} from "../../tokenizer/byte_unicode.ts";

Deno.test("the byte map gives 256 distinct characters and keeps printable bytes as they are", () => {
  assert.equal(new Set(BYTE_TO_CHAR).size, 256);
  assert.equal(BYTE_TO_CHAR[0x41], "A");
  assert.equal(BYTE_TO_CHAR[0x20], "Ġ");
  assert.equal(BYTE_TO_CHAR[0x0a], "Ċ");
  assert.equal(BYTE_TO_CHAR[0x00], "Ā");
});

Deno.test("the byte alphabet in code-point order starts like GPT-2's vocabulary", () => {
  assert.deepEqual(BYTE_ALPHABET.slice(0, 3), ["!", '"', "#"]);
  assert.equal(BYTE_ALPHABET[188], "Ā");
  assert.equal(BYTE_ALPHABET[220], "Ġ");
});

Deno.test("bytesToSymbols() and symbolsToBytes() are inverse on every byte", () => {
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(symbolsToBytes(bytesToSymbols(bytes)), bytes);
});

Deno.test("symbolsToBytes() rejects a character that stands for no byte", () => {
  assert.throws(() => symbolsToBytes("héllo ☃"), /not a byte-level symbol/);
});
