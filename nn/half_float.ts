/**
 * Float32 to the two 16-bit float formats of model files, rounding to nearest with ties to even
 * (as PyTorch's `.half()` and `.bfloat16()` do): IEEE float16 (5 exponent bits, 10 fraction
 * bits, largest finite 65504) and bfloat16 (float32's 8 exponent bits, 7 fraction bits). The way
 * back, 16 bits to float32, is in `safetensors.ts`, which reads either.
 *
 * @module
 */

/** A 16-bit float format of a model file. */
export type HalfFormat = "float16" | "bfloat16";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The float16 bits nearest `value` (ties to even). Magnitudes past float16's range become
 * infinity, below half its smallest subnormal (2^-25) zero; NaN stays NaN.
 */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let fraction = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (fraction ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 31) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // A float16 subnormal: the 24-bit significand (implicit 1 included) shifted to units of
    // 2^-24. Below 2^-25 even the rounding cannot reach the smallest subnormal.
    if (halfExponent < -10) return sign;
    fraction |= 0x800000;
    const shift = 14 - halfExponent;
    return sign | roundShift(fraction, shift);
  }
  // A carry out of the fraction moves into the exponent, up to infinity: what rounding wants.
  return sign | roundShift((halfExponent << 23) | fraction, 13);
}

/** The bfloat16 bits nearest `value` (ties to even): float32's upper half, rounded. */
export function float32ToBfloat16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40; // NaN stays quiet NaN
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** `value >> shift`, rounded to nearest with ties to even. */
function roundShift(value: number, shift: number): number {
  const kept = value >>> shift;
  const rest = value & ((1 << shift) - 1), half = 1 << (shift - 1);
  return rest > half || (rest === half && (kept & 1)) ? kept + 1 : kept;
}

/** Every value of `data` as 16-bit floats of `format`. */
export function toHalfBits(data: Float32Array, format: HalfFormat): Uint16Array {
  const convert = format === "float16" ? float32ToFloat16Bits : float32ToBfloat16Bits;
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = convert(data[i]);
  return out;
}
