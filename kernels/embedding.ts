/**
 * GPT-2's input embedding, token plus position: `out[b, t] = wte[tokens[b, t]] + wpe[t]`.
 *
 * Gradient convention: both parameter gradients ACCUMULATE (`dwte +=`, `dwpe +=`).
 *
 * Determinism (same bits every run, with no float atomics): `dwpe[t] += dout[0, t] + ... +
 * dout[B-1, t]`, each element added in order of b by the one invocation that owns it. For
 * `dwte`, several positions can hold the same token; the tokens are on the CPU, so the launcher
 * groups positions by token there ({@linkcode groupPositionsByToken}: a CSR of distinct tokens,
 * offsets and positions in ascending order), uploads it, and the invocation that owns an
 * element of `dwte[token]` adds its positions' rows in that order. Both sums are then the same
 * float32 sequence as the CPU reference's plain loop over positions, whatever the split into
 * parts. When dout fits one binding, one launch does both (the `dwpe` rows take the workgroups
 * after the tokens'), one dispatch fewer.
 *
 * Tensors over one binding (GPT-2's wte is 50257 × 768 floats = 154 MB) are processed in parts:
 * vocabulary ranges of `wte`/`dwte` and row ranges of `out`/`dout`, through
 * {@linkcode bufferWindow}.
 *
 * @module
 */

import { bufferWindow, type Gpu, type GpuFloats, grid2d, type Kernel, uniforms } from "./device.ts";
import { assertFits, head, rowParts } from "./_parts.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of the embedding kernels. */
export interface EmbeddingConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
  /** Floats per load: 4 (`vec4f`, when C is a multiple of 4) or 1. */
  width: number;
  /**
   * How the kernels share out a row of C (an output row, a distinct token's `dwte` row, a `dwpe`
   * row): 1, one invocation walks the whole row (on lavapipe every load is a scalar load per SIMD
   * lane anyway, a row's token and offsets are then read once, with no division per element, and
   * a long walk pays once for starting the invocation); 0, the invocations of one workgroup
   * stride over the row (on a GPU: neighbouring invocations read neighbouring floats).
   */
  invocationPerRow: number;
}

/** Invocations per workgroup on a GPU, and rows per workgroup on a CPU adapter (one SIMD vector). */
const GPU_WORKGROUP = 64;
const CPU_ROWS_PER_WORKGROUP = 8;

/**
 * The row walk of a kernel: which row an invocation serves (from `flat`, its workgroup's linear
 * index), and its loop over the row.
 */
function rowWalk(wg: number, invocationPerRow: number) {
  return invocationPerRow
    ? { row: `flat * ${wg}u + lid`, from: "0u", step: "1u" }
    : { row: "flat", from: "lid", step: `${wg}u` };
}

/**
 * WGSL of the forward for one part of rows and one vocabulary range: each position's row is
 * written when its token lies in the range. A token outside [0, V) writes NaN (in the launch of
 * the first range), so a bad token shows in the loss. Sizes and offsets count `width` floats.
 */
export const embeddingForwardKernel: Kernel<EmbeddingConstants> = {
  name: "embedding_forward",
  bindings: ["write", "read", "read", "read", "uniform"],
  wgsl: ({ workgroupSize: wg, width, invocationPerRow }) => {
    const { row, from, step } = rowWalk(wg, invocationPerRow);
    const T = width === 4 ? "vec4f" : "f32";
    return /* wgsl */ `
struct Params {
  n: u32, t: u32, c: u32, v: u32, rowOffset: u32, outOffset: u32,
  vocabStart: u32, vocabEnd: u32, wteOffset: u32, nanBits: u32,
}

@group(0) @binding(0) var<storage, read_write> out: array<${T}>;  // (rows, C) window of (B*T, C)
@group(0) @binding(1) var<storage, read> tokens: array<i32>;     // (B*T)
@group(0) @binding(2) var<storage, read> wte: array<${T}>;        // (vocabEnd - vocabStart, C) window
@group(0) @binding(3) var<storage, read> wpe: array<${T}>;        // (maxT, C)
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let flat = wid.x + wid.y * groups.x;
  let row = ${row};
  if (row >= params.n) { return; }
  let c = params.c;
  let pos = params.rowOffset + row;
  let token = tokens[pos];
  let y = params.outOffset + row * c;
  if (token < 0 || u32(token) >= params.v) {
    if (params.vocabStart == 0u) {
      for (var i = ${from}; i < c; i += ${step}) { out[y + i] = ${T}(bitcast<f32>(params.nanBits)); }
    }
    return;
  }
  let tok = u32(token);
  if (tok < params.vocabStart || tok >= params.vocabEnd) { return; }
  let w = params.wteOffset + (tok - params.vocabStart) * c;
  let p = (pos % params.t) * c;
  for (var i = ${from}; i < c; i += ${step}) { out[y + i] = wte[w + i] + wpe[p + i]; }
}
`;
  },
};

/**
 * WGSL of `addPositionRow(row, lid, batches, t, c, doutOffset)`: `dwpe[row] += dout[0, row] +
 * ... + dout[batches - 1, row]`, each element adding the batch rows in order of b, `width`
 * floats at a time. The caller's invocation walks the row as the forward does: alone on a CPU
 * adapter (measured at B·T = 1024, C = 768: 0.75 ms, against 1.4-3 ms with one `vec4f` an
 * invocation: lavapipe pays for every invocation it starts), or with its workgroup on a GPU.
 */
function positionRowWgsl(wg: number, invocationPerRow: number): string {
  const { from, step } = rowWalk(wg, invocationPerRow);
  return /* wgsl */ `
fn addPositionRow(row: u32, lid: u32, batches: u32, t: u32, c: u32, doutOffset: u32) {
  let tc = t * c;
  let first = row * c;
  for (var i = first + ${from}; i < first + c; i += ${step}) {
    var acc = dwpe[i];
    for (var b = 0u; b < batches; b++) { acc += dout[doutOffset + b * tc + i]; }
    dwpe[i] = acc;
  }
}`;
}

/**
 * WGSL of `dwpe += sum over b of dout[b]` over one part of whole batch rows of dout, row by row
 * of (T, C). Launched alone when dout takes more than one binding; else the token kernel does
 * this work in the same launch.
 */
export const embeddingBackwardPositionKernel: Kernel<EmbeddingConstants> = {
  name: "embedding_backward_position",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize: wg, width, invocationPerRow }) => {
    const { row } = rowWalk(wg, invocationPerRow);
    const T = width === 4 ? "vec4f" : "f32";
    return /* wgsl */ `
struct Params { batches: u32, t: u32, c: u32, doutOffset: u32 }

@group(0) @binding(0) var<storage, read_write> dwpe: array<${T}>;  // (maxT, C)
@group(0) @binding(1) var<storage, read> dout: array<${T}>;        // (batches, T, C) window
@group(0) @binding(2) var<uniform> params: Params;
${positionRowWgsl(wg, invocationPerRow)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let flat = wid.x + wid.y * groups.x;
  let row = ${row};
  if (row >= params.t) { return; }
  addPositionRow(row, lid, params.batches, params.t, params.c, params.doutOffset);
}
`;
  },
};

/** Compile-time constants of {@linkcode embeddingBackwardTokenKernel}. */
export interface EmbeddingTokenConstants extends EmbeddingConstants {
  /**
   * 1: the launch also adds the position rows (binding 6 is `dwpe`, and the workgroups after
   * `tokenWorkgroups` each take position rows as {@linkcode embeddingBackwardPositionKernel}
   * does), saving a dispatch when all of dout fits one binding; 0: tokens only.
   */
  withPositions: number;
}

/**
 * WGSL of `dwte[token] += dout[positions of token]`: the row of distinct token u gets the rows
 * listed in `positions[offsets[u] .. offsets[u + 1]]` added in order; with `withPositions`, also
 * `dwpe += sum over b of dout[b]`. On a CPU adapter a frequent token's invocation walks its many
 * positions while the other lanes of its SIMD vector have finished; lavapipe skips an idle lane's
 * loads and stores, so that costs little (measured: giving frequent tokens a workgroup each, or
 * ordering the tokens by count, changed nothing at B·T = 1024 or 2048).
 */
export const embeddingBackwardTokenKernel: Kernel<EmbeddingTokenConstants> = {
  name: "embedding_backward_token",
  bindings: ({ withPositions }) => [
    "write",
    "read",
    "read",
    "read",
    "read",
    "uniform",
    ...(withPositions ? ["write" as const] : []),
  ],
  wgsl: ({ workgroupSize: wg, width, invocationPerRow, withPositions }) => {
    const { row, from, step } = rowWalk(wg, invocationPerRow);
    const T = width === 4 ? "vec4f" : "f32";
    return /* wgsl */ `
struct Params {
  groupStart: u32, groupCount: u32, c: u32, vocabStart: u32, dwteOffset: u32, doutOffset: u32,
  tokenWorkgroups: u32, batches: u32, t: u32,  // the position rows' (withPositions)
}

@group(0) @binding(0) var<storage, read_write> dwte: array<${T}>;  // (vocab range, C) window
@group(0) @binding(1) var<storage, read> dout: array<${T}>;        // (rows, C) window
@group(0) @binding(2) var<storage, read> tokens: array<u32>;      // (U) distinct, ascending
@group(0) @binding(3) var<storage, read> offsets: array<u32>;     // (U + 1)
@group(0) @binding(4) var<storage, read> positions: array<u32>;   // (rows), relative to the part
@group(0) @binding(5) var<uniform> params: Params;
${
      withPositions
        ? `@group(0) @binding(6) var<storage, read_write> dwpe: array<${T}>;  // (maxT, C)
${positionRowWgsl(wg, invocationPerRow)}`
        : ""
    }

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  var flat = wid.x + wid.y * groups.x;
  ${
      withPositions
        ? `if (flat >= params.tokenWorkgroups) {
    flat -= params.tokenWorkgroups;
    let row = ${row};
    if (row < params.t) {
      addPositionRow(row, lid, params.batches, params.t, params.c, params.doutOffset);
    }
    return;
  }`
        : ""
    }
  let r = ${row};
  if (r >= params.groupCount) { return; }
  let c = params.c;
  let u = params.groupStart + r;
  let d = params.dwteOffset + (tokens[u] - params.vocabStart) * c;
  // Position by position: every element still adds its positions in order (the same bits).
  for (var k = offsets[u]; k < offsets[u + 1u]; k++) {
    let g = params.doutOffset + positions[k] * c;
    for (var i = ${from}; i < c; i += ${step}) { dwte[d + i] += dout[g + i]; }
  }
}
`;
  },
};

/** Positions grouped by token, as a CSR. */
export interface TokenGroups {
  /** (U) the distinct tokens, ascending. */
  tokens: Uint32Array;
  /** (U + 1) where each token's positions start in `positions`. */
  offsets: Uint32Array;
  /** (count) positions relative to `first`, grouped by token, ascending within a token. */
  positions: Uint32Array;
}

/**
 * Groups positions `[first, first + count)` of `tokens` by token value, on the CPU.
 *
 * @throws {RangeError} for a token outside `[0, v)`.
 */
export function groupPositionsByToken(
  tokens: Int32Array,
  v: number,
  first = 0,
  count = tokens.length - first,
): TokenGroups {
  // A counting sort by token: stable, so positions stay ascending within a token.
  const counts = new Map<number, number>();
  for (let p = first; p < first + count; p++) {
    const token = tokens[p];
    if (!(token >= 0 && token < v)) {
      throw new RangeError(
        `Token ${token} at position ${p} is outside the vocabulary [0, ${v}); check the ` +
          "tokenizer and the model's vocab size.",
      );
    }
    counts.set(token, (counts.get(token) ?? 0) + 1);
  }
  const distinct = Uint32Array.from(counts.keys()).sort();
  const offsets = new Uint32Array(distinct.length + 1);
  const start = new Map<number, number>();
  distinct.forEach((token, u) => {
    start.set(token, offsets[u]);
    offsets[u + 1] = offsets[u] + counts.get(token)!;
  });
  const positions = new Uint32Array(count);
  for (let p = first; p < first + count; p++) {
    const at = start.get(tokens[p])!;
    positions[at] = p - first;
    start.set(tokens[p], at + 1);
  }
  return { tokens: distinct, offsets, positions };
}

function checkShapes(b: number, t: number, c: number, v: number, maxT: number): void {
  if ([b, t, c, v, maxT].some((x) => !Number.isInteger(x) || x < 0) || c < 1 || t > maxT) {
    throw new RangeError(
      `Embedding needs whole sizes with C >= 1 and T <= maxT, got B=${b}, T=${t}, C=${c}, ` +
        `V=${v}, maxT=${maxT}; pass the shapes of tokens (B, T), wte (V, C) and wpe (maxT, C).`,
    );
  }
}

/** The loads and row layout of the row kernels for rows of `c` floats on `gpu`. */
function layout(gpu: Gpu, c: number) {
  const width = c % 4 === 0 ? 4 : 1;
  const invocationPerRow = gpu.adapter.isCpu ? 1 : 0;
  const workgroupSize = invocationPerRow ? CPU_ROWS_PER_WORKGROUP : GPU_WORKGROUP;
  return {
    width,
    constants: { workgroupSize, width, invocationPerRow },
    /** Workgroups for `rows` rows. */
    workgroups: (rows: number) => invocationPerRow ? Math.ceil(rows / workgroupSize) : rows,
  };
}

/** Index of the first distinct token `>= value` in the ascending `tokens`. */
function lowerBound(tokens: Uint32Array, value: number): number {
  let lo = 0, hi = tokens.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (tokens[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Records the embedding forward, `out[b, t] = wte[tokens[b, t]] + wpe[t]`, WRITTEN.
 *
 * @param out (B, T, C) output.
 * @param tokens (B, T) int32 token ids on the GPU.
 * @param wte (V, C) token embeddings.
 * @param wpe (maxT, C) position embeddings, maxT >= T.
 */
export async function embeddingForward(
  gpu: Gpu,
  out: GPUBuffer,
  tokens: GPUBuffer,
  wte: GpuFloats,
  wpe: GpuFloats,
  b: number,
  t: number,
  c: number,
  v: number,
  maxT: number = t,
): Promise<void> {
  checkShapes(b, t, c, v, maxT);
  const n = b * t;
  if (n === 0) return;
  assertFits("out", out, n * c);
  assertFits("tokens", tokens, n);
  assertFits("wte", wte, v * c);
  assertFits("wpe", wpe, maxT * c);
  const shape = layout(gpu, c);
  const vocabParts = rowParts(gpu, v, c);
  for (const rows of rowParts(gpu, n, c)) {
    const y = bufferWindow(gpu, out, rows.first * c, rows.count * c);
    for (const vocab of vocabParts) {
      const w = bufferWindow(gpu, wte, vocab.first * c, vocab.count * c);
      const params = gpu.uniform(uniforms({
        n: ["u32", rows.count],
        t: ["u32", t],
        c: ["u32", c / shape.width],
        v: ["u32", v],
        rowOffset: ["u32", rows.first],
        outOffset: ["u32", y.elementOffset / shape.width],
        vocabStart: ["u32", vocab.first],
        vocabEnd: ["u32", vocab.first + vocab.count],
        wteOffset: ["u32", w.elementOffset / shape.width],
        nanBits: ["u32", 0x7fc00000],
      }));
      await gpu.run(
        embeddingForwardKernel,
        shape.constants,
        [y.binding, head(tokens, n), w.binding, head(wpe, maxT * c), params],
        grid2d(shape.workgroups(rows.count)),
      );
    }
  }
}

/**
 * Records the embedding backward, ACCUMULATING into `dwte` and `dwpe`, deterministically.
 * Uploads the positions grouped by token (built here on the CPU from `tokens`).
 *
 * @param dwte (V, C) gradient of the token embeddings, accumulated.
 * @param dwpe (maxT, C) gradient of the position embeddings, accumulated (rows < T).
 * @param dout (B, T, C) gradient of the output.
 * @param tokens (B, T) the forward's token ids, on the CPU.
 * @throws {RangeError} for a token outside `[0, V)`.
 */
export async function embeddingBackward(
  gpu: Gpu,
  dwte: GpuFloats,
  dwpe: GpuFloats,
  dout: GPUBuffer,
  tokens: Int32Array,
  b: number,
  t: number,
  c: number,
  v: number,
  maxT: number = t,
): Promise<void> {
  checkShapes(b, t, c, v, maxT);
  const n = b * t;
  if (n === 0) return;
  if (tokens.length < n) {
    throw new RangeError(`Got ${tokens.length} tokens for B*T = ${n}; pass all B*T tokens.`);
  }
  assertFits("dwte", dwte, v * c);
  assertFits("dwpe", dwpe, maxT * c);
  assertFits("dout", dout, n * c);

  const shape = layout(gpu, c);
  const { width } = shape;
  const rowPartsOfDout = rowParts(gpu, n, c);
  // dwpe walks dout in parts of whole batch rows, so that each part adds its b's in order after
  // the previous part. When dout fits one binding, the first token launch does that walk too.
  const batchParts = rowParts(gpu, b, t * c);
  let positionsPending = rowPartsOfDout.length === 1 && batchParts.length === 1;
  if (!positionsPending) {
    for (const batches of batchParts) {
      const g = bufferWindow(gpu, dout, batches.first * t * c, batches.count * t * c);
      const params = gpu.uniform(uniforms({
        batches: ["u32", batches.count],
        t: ["u32", t],
        c: ["u32", c / width],
        doutOffset: ["u32", g.elementOffset / width],
      }));
      await gpu.run(
        embeddingBackwardPositionKernel,
        shape.constants,
        [head(dwpe, t * c), g.binding, params],
        grid2d(shape.workgroups(t)),
      );
    }
  }

  // dwte: per part of dout rows, the CSR of that part; per vocabulary range, its tokens.
  const vocabParts = rowParts(gpu, v, c);
  for (const rows of rowPartsOfDout) {
    const groups = groupPositionsByToken(tokens, v, rows.first, rows.count);
    const g = bufferWindow(gpu, dout, rows.first * c, rows.count * c);
    const csr = [groups.tokens, groups.offsets, groups.positions].map((a) => gpu.upload(a));
    for (const vocab of vocabParts) {
      const groupStart = lowerBound(groups.tokens, vocab.first);
      const groupCount = lowerBound(groups.tokens, vocab.first + vocab.count) - groupStart;
      if (groupCount === 0 && !positionsPending) continue;
      const withPositions = positionsPending ? 1 : 0;
      positionsPending = false;
      const w = bufferWindow(gpu, dwte, vocab.first * c, vocab.count * c);
      const tokenWorkgroups = shape.workgroups(groupCount);
      const params = gpu.uniform(uniforms({
        groupStart: ["u32", groupStart],
        groupCount: ["u32", groupCount],
        c: ["u32", c / width],
        vocabStart: ["u32", vocab.first],
        dwteOffset: ["u32", w.elementOffset / width],
        doutOffset: ["u32", g.elementOffset / width],
        tokenWorkgroups: ["u32", tokenWorkgroups],
        batches: ["u32", b],
        t: ["u32", t],
      }));
      await gpu.run(
        embeddingBackwardTokenKernel,
        { ...shape.constants, withPositions },
        [w.binding, g.binding, ...csr, params, ...(withPositions ? [head(dwpe, t * c)] : [])],
        grid2d(tokenWorkgroups + (withPositions ? shape.workgroups(t) : 0)),
      );
    }
    for (const buffer of csr) gpu.release(buffer);
  }
}

/** CPU reference of {@linkcode embeddingForward}: WRITES `out`. */
export function embeddingForwardCpu(
  out: Floats,
  tokens: Int32Array,
  wte: Floats,
  wpe: Floats,
  b: number,
  t: number,
  c: number,
): void {
  for (let pos = 0; pos < b * t; pos++) {
    const token = tokens[pos], time = pos % t;
    for (let i = 0; i < c; i++) out[pos * c + i] = wte[token * c + i] + wpe[time * c + i];
  }
}

/**
 * CPU reference of {@linkcode embeddingBackward}: ACCUMULATES into `dwte` and `dwpe`, position
 * by position in order (the order the GPU kernels add in).
 */
export function embeddingBackwardCpu(
  dwte: Floats,
  dwpe: Floats,
  dout: Floats,
  tokens: Int32Array,
  b: number,
  t: number,
  c: number,
): void {
  for (let pos = 0; pos < b * t; pos++) {
    const token = tokens[pos], time = pos % t;
    for (let i = 0; i < c; i++) {
      dwte[token * c + i] += dout[pos * c + i];
      dwpe[time * c + i] += dout[pos * c + i];
    }
  }
}
