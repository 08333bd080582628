import assert from "node:assert/strict";
import { fnv1aWords } from "../../util/checksum.ts";

Deno.test("fnv1aWords() changes with any flipped bit, and pieces checksum as their concatenation", () => {
  const bytes = new Uint8Array(64).map((_, i) => i * 7);
  const whole = fnv1aWords([bytes]);
  assert.equal(fnv1aWords([bytes.subarray(0, 16), bytes.subarray(16)]), whole);
  for (let bit = 0; bit < bytes.length * 8; bit += 13) {
    const flipped = bytes.slice();
    flipped[bit >> 3] ^= 1 << (bit & 7);
    assert.notEqual(fnv1aWords([flipped]), whole, `bit ${bit}`);
  }
  // An unaligned view reads the same words.
  const shifted = new Uint8Array(65);
  shifted.set(bytes, 1);
  assert.equal(fnv1aWords([shifted.subarray(1)]), whole);
  // A lost trailing zero byte is seen through the length.
  assert.notEqual(fnv1aWords([new Uint8Array(5)]), fnv1aWords([new Uint8Array(4)]));
  assert.throws(() => fnv1aWords([new Uint8Array(3), bytes]), /Only the last chunk/);
});
