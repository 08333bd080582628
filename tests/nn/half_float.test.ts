import assert from "node:assert/strict";
import { float32ToBfloat16Bits, float32ToFloat16Bits, toHalfBits } from "../../nn/half_float.ts";

/** The value of float16 bits, from the format's definition. */
function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

Deno.test("float32ToFloat16Bits() gives back every float16 value's own bits", () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    const value = float16Value(bits);
    if (Number.isNaN(value)) {
      assert.ok((float32ToFloat16Bits(value) & 0x7fff) > 0x7c00);
      continue;
    }
    assert.equal(float32ToFloat16Bits(value), bits, `bits 0x${bits.toString(16)} (${value})`);
  }
});

Deno.test("float32ToFloat16Bits() rounds to nearest, ties to even, overflow to infinity", () => {
  // Between 1 (0x3c00) and its successor 1 + 2^-10 (0x3c01).
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00); // tie: to the even 0x3c00
  assert.equal(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie: to the even 0x3c02
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01); // past the tie
  assert.equal(float32ToFloat16Bits(1 + 2 ** -10 - 2 ** -20), 0x3c01);
  assert.equal(float32ToFloat16Bits(1 + 2 ** -10 - 2 ** -11 - 2 ** -20), 0x3c00);
  // The largest finite value, and the tie above it, which rounds to infinity.
  assert.equal(float32ToFloat16Bits(65504), 0x7bff);
  assert.equal(float32ToFloat16Bits(65519), 0x7bff);
  assert.equal(float32ToFloat16Bits(65520), 0x7c00);
  assert.equal(float32ToFloat16Bits(-1e6), 0xfc00);
  // Subnormals: the smallest is 2^-24; half of it is a tie to zero, a bit more rounds up.
  assert.equal(float32ToFloat16Bits(2 ** -25), 0);
  assert.equal(float32ToFloat16Bits(2 ** -25 * 1.0001), 1);
  assert.equal(float32ToFloat16Bits(3 * 2 ** -25), 2); // tie between 1 and 2: to the even 2
  assert.equal(float32ToFloat16Bits(-(2 ** -30)), 0x8000);
  // The largest subnormal rounds up into the smallest normal.
  assert.equal(float32ToFloat16Bits(2 ** -14 - 2 ** -26), 0x0400);
  assert.equal(float32ToFloat16Bits(Infinity), 0x7c00);
});

Deno.test("float32ToBfloat16Bits() keeps float32's upper half, rounded to nearest even", () => {
  assert.equal(float32ToBfloat16Bits(1), 0x3f80);
  assert.equal(float32ToBfloat16Bits(-2), 0xc000);
  assert.equal(float32ToBfloat16Bits(1 + 2 ** -8), 0x3f80); // tie: to the even 0x3f80
  assert.equal(float32ToBfloat16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie: to the even 0x3f82
  assert.equal(float32ToBfloat16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.equal(float32ToBfloat16Bits(3e38), 0x7f62);
  assert.equal(float32ToBfloat16Bits(3.4028234e38), 0x7f80); // float32's max rounds to infinity
  assert.equal(float32ToBfloat16Bits(-Infinity), 0xff80);
  const nan = float32ToBfloat16Bits(NaN);
  assert.ok((nan & 0x7f80) === 0x7f80 && (nan & 0x7f) !== 0, `NaN became 0x${nan.toString(16)}`);
  // Every bfloat16 value gives back its own bits.
  const words = new Uint32Array(1), floats = new Float32Array(words.buffer);
  for (let bits = 0; bits < 0x10000; bits++) {
    words[0] = bits << 16;
    if (Number.isNaN(floats[0])) continue;
    assert.equal(float32ToBfloat16Bits(floats[0]), bits);
  }
});

Deno.test("toHalfBits() converts a whole array in either format", () => {
  const data = Float32Array.of(0, 1, -0.5, 65504);
  assert.deepEqual([...toHalfBits(data, "float16")], [0, 0x3c00, 0xb800, 0x7bff]);
  assert.deepEqual([...toHalfBits(data, "bfloat16")], [0, 0x3f80, 0xbf00, 0x4780]);
});
