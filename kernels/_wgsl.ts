/**
 * WGSL snippets shared by several kernels. Private to the kernels.
 *
 * @module
 */

/**
 * `isFinite(x)`: whether `x` is neither NaN nor infinite, read from its exponent bits. WGSL lets
 * a compiler assume floats are finite, so `x == x` or a comparison with infinity may fold away.
 */
export const IS_FINITE_WGSL = /* wgsl */ `
fn isFinite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }`;

/**
 * `workgroupSum(lid, value)`: the sum of `value` over a workgroup of `wg` invocations (a power
 * of two), by a tree in workgroup memory: a fixed order, so the same bits every run. Every
 * invocation gets the total, and the trailing barrier lets the caller sum again at once.
 */
export function workgroupSumWgsl(wg: number): string {
  return /* wgsl */ `
var<workgroup> partial: array<f32, ${wg}>;

fn workgroupSum(lid: u32, value: f32) -> f32 {
  partial[lid] = value;
  workgroupBarrier();
  for (var stride = ${wg / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}`;
}

/**
 * `tableIndex(w)`: which of the `k` entries of the uniform range table `params.table` (each an
 * `vec4u` whose `x` is its first workgroup, in increasing order) workgroup `w` belongs to. Kernels
 * that update or reduce many tensors in one launch find their tensor with it.
 */
export function rangeTableWgsl(k: number): string {
  return /* wgsl */ `
fn tableIndex(w: u32) -> u32 {
  var t = 0u;
  for (var k = 1u; k < ${k}u; k++) {
    if (w >= params.table[k].x) { t = k; }
  }
  return t;
}`;
}

/**
 * How a row of HS floats is held: as HS/4 vec4s when HS is a multiple of 4 (then every row and
 * every batch window start on a vec4), else as HS scalars.
 */
export function rowType(headSize: number): {
  width: number;
  n: number;
  type: string;
  zero: string;
  dot: (a: string, b: string) => string;
  sum: (a: string) => string;
} {
  const width = headSize % 4 === 0 ? 4 : 1;
  return {
    width,
    n: headSize / width,
    type: width === 4 ? "vec4f" : "f32",
    zero: width === 4 ? "vec4f(0.0)" : "0.0",
    dot: (a: string, b: string) => (width === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`),
    sum: (a: string) => (width === 4 ? `dot(${a}, vec4f(1.0))` : a),
  };
}

/**
 * A score that loses every max and whose exp2 is 0: the masked entries of causal attention.
 * Finite, since WGSL leaves inf arithmetic to the implementation.
 */
export const MASKED_SCORE = "-1e30f";

/** `n` lines of `line(i)`, for unrolling. */
export function unroll(n: number, line: (i: number) => string): string {
  return Array.from({ length: n }, (_, i) => line(i)).join("\n");
}

/** `f(0) + f(1) + ... + f(n - 1)`. */
export function sumOf(n: number, term: (i: number) => string): string {
  return Array.from({ length: n }, (_, i) => term(i)).join(" + ");
}
