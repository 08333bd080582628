/**
 * Fused causal self-attention, forward and backward (FlashAttention-style): the T x T score
 * matrix is never written to memory, so the extra memory is O(T) per head (one log-sum-exp per
 * row, plus one float per row during the backward) instead of O(T^2).
 *
 * Layout: q, k, v, o and their gradients are (B, NH, T, HS) row-major float32, i.e. each head's
 * T rows of HS are contiguous (see `attention_layout.ts` for the permutes from and to the qkv
 * matmul's (B, T, 3C)). `lse` is (B, NH, T): row i's log-sum-exp L_i = m_i + ln(l_i) of its
 * scaled scores S_ij = q_i . k_j / sqrt(HS), j <= i.
 *
 * - Forward: each invocation owns a few query rows of one (batch, head) and walks the keys
 *   0..(the workgroup's last row) with an online softmax: per key (per block of keys in the
 *   texture kernels) a row computes its scores, raises its running max m, rescales its running
 *   sum l and its HS-vector accumulator, and adds p_j v_j; the row's L is saved at the end.
 *   Keys after the workgroup's last row are never visited (causal skipping halves the work);
 *   within the workgroup's rows, later keys score MASKED_SCORE.
 * - Backward (FlashAttention-2 split, deterministic, no atomics): D_i = dO_i . O_i per row, then
 *   one kernel owns key rows and loops over the query rows i >= (its first key) accumulating
 *   dK_j and dV_j, and another owns query rows and loops over keys j <= (its last row)
 *   accumulating dQ_i. Both recompute P_ij = exp(S_ij - L_i); dS_ij = P_ij (dP_ij - D_i) with
 *   dP_ij = dO_i . V_j. Every gradient element is written by exactly one invocation.
 *
 * Gradients dq, dk, dv are activation gradients: written (`=`), never accumulated.
 *
 * Two sets of kernels compute this. On a hardware GPU, storage-buffer kernels: one row per
 * invocation, up to 64 invocations per workgroup, and the streamed rows (keys and values;
 * queries and output gradients for dK/dV) staged tile by tile in workgroup memory, loaded once
 * per workgroup instead of once per invocation; {@linkcode gpuTiles} sizes both from the
 * adapter's limits. On a CPU adapter (lavapipe), texture kernels (`_attention_texture.ts`):
 * q, k, v (and dO) are first staged into `rgba32float` array textures, one layer per
 * (batch, head) (a buffer-to-texture copy when HS is a multiple of 64, else a pack kernel), and
 * read as read-only storage textures.
 *
 * Why (read off lavapipe's generated code, Mesa 25.0, `GALLIVM_DEBUG=asm`; see
 * `kernels/matmul.ts`): an invocation is one lane of an 8-wide SIMD vector; a storage-buffer
 * load is scalarized per lane with a bounds check (~80 instructions for one float on all 8
 * lanes, even at an address shared by all lanes), while a read-only storage texel load is a
 * ~48-instruction call that brings four floats to all 8 lanes. Each invocation owns several
 * rows (strided by the 8 lanes), so a streamed texel serves all of them, and takes the streamed
 * rows a block at a time: one max, one rescale of the accumulators (which live in memory: rows
 * of HS floats are more than 16 vector registers) and one load and store of each accumulator
 * per block instead of per key; the loads of a block are grouped (a call spills every live
 * vector register). The HS loop is unrolled at compile time (HS is a constant). Scores are kept
 * in base 2 (q is pre-scaled by log2(e) / sqrt(HS)). The storage-buffer kernels still run on a
 * CPU adapter when T is over a texture's height ({@linkcode CPU_TILES}: 4 rows an invocation).
 *
 * Measured on the 2-core development machine, lavapipe (LLVM 15, 256 bits), B=4 NH=12 T=1024
 * HS=64, best of 3, the two versions alternated, with another long training run on the same
 * cores (so about one core free; the FMA-ceiling shader, bench/fma_ceiling.ts, gave ~31 GFLOP/s
 * at the time; GFLOP per CPU-second of the process in brackets):
 *
 * | kernels                                  | forward                 | backward                 |
 * | ---------------------------------------- | ----------------------- | ------------------------ |
 * | storage buffers, 4 rows (before)         | 1074-1252 ms, 5.1-6.0   | 2733-2865 ms, 5.6-5.9    |
 * |                                          | (5.0-5.4)               | (5.5-5.7)                |
 * | textures, fwd 8 rows, bwd 4, blocks of 4 | 278-302 ms, 21.3-23.2   | 870-1044 ms, 15.4-18.1   |
 * |                                          | (21.9-22.6)             | (15.4-17.8)              |
 *
 * (GFLOP/s of useful causal work; the backward counts 2.5 x the forward, but runs 7 products
 * per (query, key) pair against the forward's 2, because both its kernels recompute the scores
 * and dP; per product all three kernels run at ~0.75-0.8 of the FMA ceiling: dK/dV 530 ms,
 * dQ 383 ms, D 8 ms, staging copies ~12 ms.) Tiles hardly matter: forward rows 4, 8, 16 with
 * blocks of 2, 4, 8, backward rows 2-16 with blocks of 2-8, all within 5% (noise); the cost
 * is the unrolled arithmetic and its spills (most multiplies take an operand from the stack),
 * and more rows cost compile time (cold, the three kernels at HS=64: all at 8 rows 17 s, all
 * at 4 rows 6 s, these defaults 7 s; the storage-buffer kernels 12 s). In the ctx1024 train step (V8192 L6 H4
 * C256 T1024 B2, the train bench's config then, run back to back): attention
 * 1159 + 2740 ms (forward + backward) of a 7564 ms step, 271 tokens/s, before; 293 + 963 ms
 * of 5011 ms, 409 tokens/s, after.
 *
 * @module
 */

import { bufferWindow, type Gpu, grid2d, type Kernel, uniforms } from "./device.ts";
import { rowParts } from "./_parts.ts";
import { MASKED_SCORE, rowType, sumOf, unroll } from "./_wgsl.ts";
import {
  attentionForwardTextureKernel,
  attentionKeyValueTextureKernel,
  attentionQueryTextureKernel,
  maxTextureHeads,
  stageHeads,
  TEXTURE_LANES,
  texturesFit,
} from "./_attention_texture.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of the fused attention kernels. */
export interface AttentionConstants extends Record<string, number> {
  /** Head size HS (at most 128); the per-row vectors are unrolled over it. */
  headSize: number;
  /** Invocations per workgroup. */
  lanes: number;
  /** Rows (queries, or keys for dK/dV) each invocation owns, strided by `lanes`. */
  perLane: number;
  /**
   * Rows of the streamed operand (keys and values; queries and output gradients for dK/dV)
   * staged in workgroup memory per step, loaded once for the whole workgroup; 0 reads them
   * straight from storage (on lavapipe, where workgroup memory is plain memory and a barrier
   * costs a coroutine switch).
   */
  tile: number;
}

/**
 * The tile sizes of the fused kernels: invocations per workgroup, and rows per invocation for
 * each kernel (see {@linkcode AttentionConstants}).
 */
export interface AttentionTiles {
  /** Invocations per workgroup. */
  lanes: number;
  /** Query rows per invocation in the forward. */
  forward: number;
  /** Query rows per invocation in the dQ kernel. */
  query: number;
  /** Key rows per invocation in the dK, dV kernel. */
  keyValue: number;
  /** Rows staged in workgroup memory per step (see {@linkcode AttentionConstants}); 0 for none. */
  tile: number;
}

/** The largest head size: q, the accumulator and friends live in registers per invocation. */
export const MAX_HEAD_SIZE = 128;

const LOG2E = Math.LOG2E;

/**
 * Storage-buffer tile sizes for a CPU adapter (lavapipe), measured at B=4, NH=12, T=1024,
 * HS=64: one 8-wide SIMD vector of invocations. Every load from a storage buffer there costs a
 * scalar load per lane, so each invocation owns several rows and a key (or query) row loaded
 * once serves all of them; more rows than these spilled too much to gain, and took minutes to
 * compile. Used only when T is over a texture's height (see the module doc).
 */
export const CPU_TILES: AttentionTiles = {
  lanes: 8,
  forward: 4,
  query: 4,
  keyValue: 4,
  tile: 0,
};

/**
 * Tile sizes for a real GPU, from its limits: one row per invocation keeps the register count
 * of HS=64 rows reasonable; 64 invocations a workgroup (fewer if the adapter allows fewer); and
 * as many streamed rows staged in workgroup memory per step as two (HS) rows each, plus two
 * floats, fit in `maxComputeWorkgroupStorageSize` (at most one per invocation, at least 4): at
 * WebGPU's minimum of 16 KiB and HS=64, 31 rows, at 32 KiB 62.
 */
export function gpuTiles(
  limits: Pick<
    GPUSupportedLimits,
    | "maxComputeInvocationsPerWorkgroup"
    | "maxComputeWorkgroupSizeX"
    | "maxComputeWorkgroupStorageSize"
  >,
  headSize: number,
): AttentionTiles {
  const lanes = Math.max(
    1,
    Math.min(64, limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX),
  );
  const rowBytes = 2 * headSize * 4 + 2 * 4;
  const tile = Math.max(
    4,
    Math.min(lanes, Math.floor(limits.maxComputeWorkgroupStorageSize / rowBytes)),
  );
  return { lanes, forward: 1, query: 1, keyValue: 1, tile };
}

/** Rows per invocation and streamed rows per step of one texture kernel (CPU adapters). */
export interface TextureTile {
  /** Rows (queries, or keys for dK/dV) each invocation owns. */
  rows: number;
  /** Streamed rows (keys, or queries for dK/dV) per loop step. */
  block: number;
}

/** The tiles of the three texture kernels a CPU adapter runs (see the module doc). */
export interface TextureTiles {
  /** The forward's tile. */
  forward: TextureTile;
  /** The dQ kernel's tile. */
  query: TextureTile;
  /** The dK, dV kernel's tile. */
  keyValue: TextureTile;
}

/** Texture-kernel tiles for lavapipe, measured at B=4, NH=12, T=1024, HS=64 (module doc). */
export const CPU_TEXTURE_TILES: TextureTiles = {
  forward: { rows: 8, block: 4 },
  query: { rows: 4, block: 4 },
  keyValue: { rows: 4, block: 4 },
};

/** Options of the fused attention launchers. */
export interface AttentionOptions {
  /**
   * Tile sizes of the storage-buffer kernels, which then run whatever the adapter (default:
   * {@linkcode defaultTiles}; tests and benchmarks pass others).
   */
  tiles?: AttentionTiles;
  /**
   * Tiles of the texture kernels, which then run whatever the adapter (default on a CPU
   * adapter without `tiles`: {@linkcode CPU_TEXTURE_TILES}).
   */
  textureTiles?: TextureTiles;
  /** Heads one texture launch may stage, one layer each (default: the adapter's limit); tests pass less. */
  textureLayers?: number;
  /** Bytes one binding may hold (default: the adapter's limit); tests pass less. */
  bindingLimit?: number;
}

/** The tile sizes for `gpu`'s adapter and head size `headSize`. */
export function defaultTiles(gpu: Gpu, headSize: number): AttentionTiles {
  return gpu.adapter.isCpu ? CPU_TILES : gpuTiles(gpu.device.limits, headSize);
}

function checkConstants({ headSize, lanes, perLane, tile }: AttentionConstants): void {
  if (!(Number.isInteger(tile) && tile >= 0)) {
    throw new RangeError(`Attention tile=${tile} is invalid; use 0 or a positive integer.`);
  }
  if (!(headSize >= 1 && headSize <= MAX_HEAD_SIZE && Number.isInteger(headSize))) {
    throw new RangeError(`Head size ${headSize} is not an integer in 1..${MAX_HEAD_SIZE}.`);
  }
  if (!(Number.isInteger(lanes) && lanes >= 1 && Number.isInteger(perLane) && perLane >= 1)) {
    throw new RangeError(
      `Attention tiles lanes=${lanes}, perLane=${perLane} are invalid; use positive integers.`,
    );
  }
}

/**
 * WGSL that reads row `row` of a head-major tensor into `let` names `${name}_0..` (times
 * `scale`), through the private array `buf`. The copy loop runs to `params.vecs` (= HS / width,
 * a uniform) rather than a constant so that the driver cannot unroll it: unrolled, each of the
 * HS per-lane loads becomes branchy code, and lavapipe took minutes instead of seconds to
 * compile the backward kernels. Rows are read once per invocation, so the loop costs nothing.
 */
function loadRow(tensor: string, row: string, name: string, n: number, scale = ""): string {
  return `  for (var n = 0u; n < params.vecs; n++) { buf[n] = ${tensor}[hb + ${row} * ${n}u + n]; }
${unroll(n, (x) => `  let ${name}_${x} = buf[${x}]${scale};`)}`;
}

/** WGSL that writes `let`/`var` names `${name}_0..` (times `scale`) to row `row` of `tensor`. */
function storeRow(tensor: string, row: string, name: string, n: number, scale = ""): string {
  return `${unroll(n, (x) => `    buf[${x}] = ${name}_${x}${scale};`)}
    for (var n = 0u; n < params.vecs; n++) { ${tensor}[hb + ${row} * ${n}u + n] = buf[n]; }`;
}

/**
 * The prologue every fused kernel shares: which head, which rows. Invocation `lid` owns rows
 * `r0 + t * lanes + lid`, t < perLane; rows past T compute row T-1 and store nothing.
 */
function rowsPrologue(n: number, lanes: number, perLane: number, type: string): string {
  return `  let T = params.T;
  let head = wid.y;  // (batch, head) within this part of heads
  let hb = params.base + head * T * ${n}u;  // first vector of this head
  let r0 = wid.x * ${lanes * perLane}u;
${unroll(perLane, (t) => `  let row${t} = min(r0 + ${t * lanes}u + lid, T - 1u);`)}
  var buf: array<${type}, ${n}>;`;
}

/** A row streamed through the loop of {@linkcode streamRows}: `${name}_x = tensor[row's x]`. */
interface StreamedRow {
  name: string;
  tensor: string;
}

/** A float per streamed row: `let ${name} = ${load(index)}`. */
interface StreamedScalar {
  name: string;
  load: (index: string) => string;
}

/**
 * WGSL of the loop `for (index = from; index < end; index++) { body }` where each step first
 * reads row `index` of every `rows` tensor into `${name}_0..` and each scalar. With `tile` > 0
 * the rows are staged `tile` at a time in workgroup memory, loaded once by the whole workgroup
 * (`from` and `end` must then be uniform across it: they are, from the workgroup's first row).
 */
function streamRows(
  { index, from, end, rows, scalars, body, n, lanes, tile }: {
    index: string;
    from: string;
    end: string;
    rows: StreamedRow[];
    scalars: StreamedScalar[];
    body: string;
    n: number;
    lanes: number;
    tile: number;
  },
): string {
  if (tile === 0) {
    return `  for (var ${index} = ${from}; ${index} < ${end}; ${index}++) {
    let rb = hb + ${index} * ${n}u;
${rows.map((r) => unroll(n, (x) => `    let ${r.name}_${x} = ${r.tensor}[rb + ${x}u];`)).join("\n")}
${scalars.map((c) => `    let ${c.name} = ${c.load(index)};`).join("\n")}
${body}
  }`;
  }
  return `  for (var first = ${from}; first < ${end}; first += ${tile}u) {
    let count = min(${tile}u, ${end} - first);
    workgroupBarrier();  // the previous tile is no longer read
    for (var e = lid; e < count * ${n}u; e += ${lanes}u) {
${rows.map((r) => `      tile_${r.name}[e] = ${r.tensor}[hb + first * ${n}u + e];`).join("\n")}
    }
    for (var e = lid; e < count; e += ${lanes}u) {
${scalars.map((c) => `      tile_${c.name}[e] = ${c.load("(first + e)")};`).join("\n")}
    }
    workgroupBarrier();
    for (var t = 0u; t < count; t++) {
      let ${index} = first + t;
${
    rows.map((r) =>
      unroll(n, (x) => `      let ${r.name}_${x} = tile_${r.name}[t * ${n}u + ${x}u];`)
    ).join("\n")
  }
${scalars.map((c) => `      let ${c.name} = tile_${c.name}[t];`).join("\n")}
${body}
    }
  }`;
}

/** The workgroup arrays {@linkcode streamRows} stages rows and scalars in, when `tile` > 0. */
function tileArrays(
  rows: StreamedRow[],
  scalars: StreamedScalar[],
  n: number,
  type: string,
  tile: number,
): string {
  if (tile === 0) return "";
  return [
    ...rows.map((r) => `var<workgroup> tile_${r.name}: array<${type}, ${tile * n}>;`),
    ...scalars.map((c) => `var<workgroup> tile_${c.name}: array<f32, ${tile}>;`),
  ].join("\n");
}

/** WGSL of the fused forward; see the module doc. */
export const attentionForwardKernel: Kernel<AttentionConstants> = {
  name: "attention_forward",
  bindings: ["write", "write", "read", "read", "read", "uniform"],
  wgsl: (constants) => {
    checkConstants(constants);
    const { headSize, lanes, perLane: R, tile } = constants;
    const { n: N, type, zero, dot } = rowType(headSize);
    const rows = [{ name: "k", tensor: "k" }, { name: "v", tensor: "v" }];
    return /* wgsl */ `
struct Params { T: u32, base: u32, baseL: u32, scale: f32, invSqrt: f32, vecs: u32 }
${tileArrays(rows, [], N, type, tile)}

@group(0) @binding(0) var<storage, read_write> o: array<${type}>;
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<${type}>;
@group(0) @binding(3) var<storage, read> k: array<${type}>;
@group(0) @binding(4) var<storage, read> v: array<${type}>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
${rowsPrologue(N, lanes, R, type)}
${unroll(R, (t) => loadRow("q", `row${t}`, `q${t}`, N, " * params.scale"))}
${unroll(R, (t) => unroll(N, (x) => `  var a${t}_${x} = ${zero};`))}
${unroll(R, (t) => `  var m${t} = ${MASKED_SCORE};\n  var l${t} = 0.0;`)}
  // Keys up to the workgroup's last row; later keys are skipped entirely (causal).
  let end = min(r0 + ${lanes * R}u, T);
${
      streamRows({
        index: "j",
        from: "0u",
        end: "end",
        rows,
        scalars: [],
        n: N,
        lanes,
        tile,
        body: unroll(R, (t) =>
          `    {
      let s = select(${sumOf(N, (x) => dot(`q${t}_${x}`, `k_${x}`))}, ${MASKED_SCORE}, j > row${t});
      // Online softmax with one exp2: whichever of s and m is larger gets weight 1.
      let e = exp2(-abs(s - m${t}));
      let up = s > m${t};
      let alpha = select(1.0, e, up);
      let p = select(e, 1.0, up);
      m${t} = max(m${t}, s);
      l${t} = l${t} * alpha + p;
${unroll(N, (x) => `      a${t}_${x} = a${t}_${x} * alpha + p * v_${x};`)}
    }`),
      })
    }
${
      unroll(R, (t) =>
        `  if (r0 + ${t * lanes}u + lid < T) {
    let inv = 1.0 / l${t};
${storeRow("o", `row${t}`, `a${t}`, N, " * inv")}
    lse[params.baseL + head * T + row${t}] = (m${t} + log2(l${t})) * ${Math.LN2};
  }`)
    }
}
`;
  },
};

/** WGSL of the backward's first step: D_i = dO_i . O_i per row, into a (rows) scratch. */
export const attentionBackwardDotKernel: Kernel<Pick<AttentionConstants, "headSize">> = {
  name: "attention_backward_dot",
  bindings: ["write", "read", "read", "uniform"],
  wgsl: ({ headSize }) => {
    const { n: N, type, zero, sum } = rowType(headSize);
    return /* wgsl */ `
struct Params { rows: u32, base: u32 }

@group(0) @binding(0) var<storage, read_write> dsum: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<${type}>;
@group(0) @binding(2) var<storage, read> o: array<${type}>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let r = (wid.x + wid.y * groups.x) * 64u + lid;
  if (r >= params.rows) { return; }
  let b = params.base + r * ${N}u;
  var acc = ${zero};
  for (var n = 0u; n < ${N}u; n++) { acc += dout[b + n] * o[b + n]; }
  dsum[r] = ${sum("acc")};
}
`;
  },
};

/** WGSL of dQ: each invocation owns query rows and loops over keys j <= i. */
export const attentionBackwardQueryKernel: Kernel<AttentionConstants> = {
  name: "attention_backward_query",
  bindings: ["write", "read", "read", "read", "read", "read", "read", "uniform"],
  wgsl: (constants) => {
    checkConstants(constants);
    const { headSize, lanes, perLane: R, tile } = constants;
    const { n: N, type, zero, dot } = rowType(headSize);
    const rows = [{ name: "k", tensor: "k" }, { name: "v", tensor: "v" }];
    return /* wgsl */ `
struct Params { T: u32, base: u32, baseL: u32, scale: f32, invSqrt: f32, vecs: u32 }
${tileArrays(rows, [], N, type, tile)}

@group(0) @binding(0) var<storage, read_write> dq: array<${type}>;
@group(0) @binding(1) var<storage, read> q: array<${type}>;
@group(0) @binding(2) var<storage, read> k: array<${type}>;
@group(0) @binding(3) var<storage, read> v: array<${type}>;
@group(0) @binding(4) var<storage, read> dout: array<${type}>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> dsum: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;

@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
${rowsPrologue(N, lanes, R, type)}
${unroll(R, (t) => loadRow("q", `row${t}`, `q${t}`, N, " * params.scale"))}
${unroll(R, (t) => loadRow("dout", `row${t}`, `do${t}`, N))}
${
      unroll(R, (t) =>
        `  let li${t} = lse[params.baseL + head * T + row${t}] * ${LOG2E};  // base 2, like s\n` +
        `  let di${t} = dsum[head * T + row${t}];`)
    }
${unroll(R, (t) => unroll(N, (x) => `  var g${t}_${x} = ${zero};`))}
  let end = min(r0 + ${lanes * R}u, T);
${
      streamRows({
        index: "j",
        from: "0u",
        end: "end",
        rows,
        scalars: [],
        n: N,
        lanes,
        tile,
        body: unroll(R, (t) =>
          `    {
      let s = ${sumOf(N, (x) => dot(`q${t}_${x}`, `k_${x}`))};
      let dp = ${sumOf(N, (x) => dot(`do${t}_${x}`, `v_${x}`))};
      let p = select(exp2(s - li${t}), 0.0, j > row${t});
      let ds = p * (dp - di${t});
${unroll(N, (x) => `      g${t}_${x} += ds * k_${x};`)}
    }`),
      })
    }
${
      unroll(R, (t) =>
        `  if (r0 + ${t * lanes}u + lid < T) {
${storeRow("dq", `row${t}`, `g${t}`, N, " * params.invSqrt")}
  }`)
    }
}
`;
  },
};

/** WGSL of dK and dV: each invocation owns key rows and loops over queries i >= j. */
export const attentionBackwardKeyValueKernel: Kernel<AttentionConstants> = {
  name: "attention_backward_key_value",
  bindings: ["write", "write", "read", "read", "read", "read", "read", "read", "uniform"],
  wgsl: (constants) => {
    checkConstants(constants);
    const { headSize, lanes, perLane: R, tile } = constants;
    const { n: N, type, zero, dot } = rowType(headSize);
    const rows = [{ name: "q", tensor: "q" }, { name: "do", tensor: "dout" }];
    const scalars = [
      { name: "li", load: (i: string) => `lse[params.baseL + head * T + ${i}] * ${LOG2E}` },
      { name: "di", load: (i: string) => `dsum[head * T + ${i}]` },
    ];
    return /* wgsl */ `
struct Params { T: u32, base: u32, baseL: u32, scale: f32, invSqrt: f32, vecs: u32 }
${tileArrays(rows, scalars, N, type, tile)}

@group(0) @binding(0) var<storage, read_write> dk: array<${type}>;
@group(0) @binding(1) var<storage, read_write> dv: array<${type}>;
@group(0) @binding(2) var<storage, read> q: array<${type}>;
@group(0) @binding(3) var<storage, read> k: array<${type}>;
@group(0) @binding(4) var<storage, read> v: array<${type}>;
@group(0) @binding(5) var<storage, read> dout: array<${type}>;
@group(0) @binding(6) var<storage, read> lse: array<f32>;
@group(0) @binding(7) var<storage, read> dsum: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
${rowsPrologue(N, lanes, R, type)}
${unroll(R, (t) => loadRow("k", `row${t}`, `k${t}`, N, " * params.scale"))}
${unroll(R, (t) => loadRow("v", `row${t}`, `v${t}`, N))}
${unroll(R, (t) => unroll(N, (x) => `  var gk${t}_${x} = ${zero};\n  var gv${t}_${x} = ${zero};`))}
  // Queries from the workgroup's first key row on; earlier queries never see these keys.
${
      streamRows({
        index: "i",
        from: "r0",
        end: "T",
        rows,
        scalars,
        n: N,
        lanes,
        tile,
        body: unroll(R, (t) =>
          `    {
      let s = ${sumOf(N, (x) => dot(`k${t}_${x}`, `q_${x}`))};
      let dp = ${sumOf(N, (x) => dot(`v${t}_${x}`, `do_${x}`))};
      let p = select(exp2(s - li), 0.0, i < row${t});
      let ds = p * (dp - di);
${unroll(N, (x) => `      gv${t}_${x} += p * do_${x};\n      gk${t}_${x} += ds * q_${x};`)}
    }`),
      })
    }
${
      unroll(R, (t) =>
        `  if (r0 + ${t * lanes}u + lid < T) {
${storeRow("dk", `row${t}`, `gk${t}`, N, " * params.invSqrt")}
${storeRow("dv", `row${t}`, `gv${t}`, N)}
  }`)
    }
}
`;
  },
};

function checkShapes(
  gpu: Gpu,
  B: number,
  NH: number,
  T: number,
  HS: number,
  tiles: AttentionTiles,
  bindingLimit?: number,
) {
  for (const [name, value] of [["B", B], ["NH", NH], ["T", T], ["HS", HS]] as const) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`Attention size ${name}=${value} is not a non-negative integer.`);
    }
  }
  if (HS > MAX_HEAD_SIZE) {
    throw new RangeError(
      `Head size ${HS} is over the fused attention's maximum of ${MAX_HEAD_SIZE}; use more heads.`,
    );
  }
  const fewestRows = tiles.lanes * Math.min(tiles.forward, tiles.query, tiles.keyValue);
  if (NH > 65535 || Math.ceil(T / fewestRows) > 65535) {
    throw new RangeError(`Attention with NH=${NH}, T=${T} needs more than 65535 workgroups a row.`);
  }
  // Parts of whole heads, at most 65535 (a grid dimension) each.
  return rowParts(gpu, B * NH, T * HS, 1, bindingLimit).flatMap(({ first, count }) =>
    Array.from(
      { length: Math.ceil(count / 65535) },
      (_, i) => ({ first: first + i * 65535, count: Math.min(65535, count - i * 65535) }),
    )
  );
}

/** How a launch runs: storage-buffer kernels with `tiles`, or texture kernels, over `parts`. */
function planFor(
  gpu: Gpu,
  B: number,
  NH: number,
  T: number,
  HS: number,
  options: AttentionOptions,
) {
  const tiles = options.tiles ?? defaultTiles(gpu, HS);
  const useTextures = options.textureTiles !== undefined ||
    (options.tiles === undefined && gpu.adapter.isCpu && texturesFit(gpu, T));
  const textures = useTextures ? options.textureTiles ?? CPU_TEXTURE_TILES : undefined;
  if (textures && !texturesFit(gpu, T)) {
    throw new RangeError(`Attention with T=${T} does not fit a texture's height.`);
  }
  let parts = checkShapes(gpu, B, NH, T, HS, tiles, options.bindingLimit);
  if (textures) {
    // One texture layer a head: parts of at most maxTextureArrayLayers heads.
    const most = Math.min(options.textureLayers ?? Infinity, maxTextureHeads(gpu));
    parts = parts.flatMap(({ first, count }) =>
      Array.from(
        { length: Math.ceil(count / most) },
        (_, i) => ({ first: first + i * most, count: Math.min(most, count - i * most) }),
      )
    );
  }
  return { tiles, textures, parts, maxBinding: options.bindingLimit ?? gpu.maxBinding };
}

/** The uniform of the texture kernels; `base` is the element of the output windows' head 0. */
function textureParams(
  gpu: Gpu,
  T: number,
  HS: number,
  base: number,
  l: { elementOffset: number },
) {
  return gpu.uniform(uniforms({
    T: ["u32", T],
    base: ["u32", base],
    baseL: ["u32", l.elementOffset],
    scale: ["f32", LOG2E / Math.sqrt(HS)],
    invSqrt: ["f32", 1 / Math.sqrt(HS)],
    hs: ["u32", HS],
  }));
}

/** Binds the same element window of several (B, NH, T, HS) tensors. */
function windows(gpu: Gpu, buffers: GPUBuffer[], first: number, count: number) {
  const views = buffers.map((b) => bufferWindow(gpu, b, first, count));
  return { bindings: views.map((w) => w.binding), elementOffset: views[0].elementOffset };
}

/**
 * The inputs of an attention forward (fused or naive), which its backward reads again, each
 * (B, NH, T, HS).
 */
export interface AttentionInputBuffers {
  /** Queries (B, NH, T, HS). */
  q: GPUBuffer;
  /** Keys (B, NH, T, HS). */
  k: GPUBuffer;
  /** Values (B, NH, T, HS). */
  v: GPUBuffer;
}

/**
 * Records the fused causal attention forward: `o` = softmax(q k^T / sqrt(HS), causal) v per head,
 * and `lse` (B, NH, T) the log-sum-exp of each row's scores, for the backward.
 *
 * @param buffers the tensors, by name (so that two swapped buffers do not type-check)
 * @param options tile sizes and binding limit, for benchmarks and tests
 */
export async function attentionForward(
  gpu: Gpu,
  buffers: AttentionInputBuffers & {
    /** Output (B, NH, T, HS), written. */
    o: GPUBuffer;
    /** Output (B, NH, T), written: each row's log-sum-exp of scores, for the backward. */
    lse: GPUBuffer;
  },
  B: number,
  NH: number,
  T: number,
  HS: number,
  options: AttentionOptions = {},
): Promise<void> {
  const { o, lse, q, k, v } = buffers;
  const plan = planFor(gpu, B, NH, T, HS, options);
  if (B * NH * T * HS === 0) return;
  const { tiles, textures, parts, maxBinding } = plan;
  const { width } = rowType(HS);
  for (const { first, count } of parts) {
    const n = T * HS; // floats of a head
    const l = bufferWindow(gpu, lse, first * T, count * T);
    if (textures) {
      const ow = bufferWindow(gpu, o, first * n, count * n);
      const staged: GPUTexture[] = [];
      for (const [role, buffer] of [["q", q], ["k", k], ["v", v]] as const) {
        staged.push(await stageHeads(gpu, role, buffer, first, count, T, HS, maxBinding));
      }
      const { rows, block } = textures.forward;
      await gpu.run(
        attentionForwardTextureKernel,
        { headSize: HS, rows, block },
        [ow.binding, l.binding, ...staged, textureParams(gpu, T, HS, ow.elementOffset, l)],
        [Math.ceil(T / (TEXTURE_LANES * rows)), count],
      );
      continue;
    }
    const w = windows(gpu, [o, q, k, v], first * n, count * n);
    const params = gpu.uniform(uniforms({
      T: ["u32", T],
      base: ["u32", w.elementOffset / width],
      baseL: ["u32", l.elementOffset],
      scale: ["f32", LOG2E / Math.sqrt(HS)],
      invSqrt: ["f32", 1 / Math.sqrt(HS)],
      vecs: ["u32", HS / width],
    }));
    const [ow, qw, kw, vw] = w.bindings;
    await gpu.run(
      attentionForwardKernel,
      { headSize: HS, lanes: tiles.lanes, perLane: tiles.forward, tile: tiles.tile },
      [ow, l.binding, qw, kw, vw, params],
      [Math.ceil(T / (tiles.lanes * tiles.forward)), count],
    );
  }
}

/**
 * The tensors an attention backward (fused or naive) reads and writes beside what its forward
 * saved: the gradients it writes and the forward's inputs, each (B, NH, T, HS).
 */
export interface AttentionGradientBuffers extends AttentionInputBuffers {
  /** Gradient of the queries (B, NH, T, HS), written. */
  dq: GPUBuffer;
  /** Gradient of the keys (B, NH, T, HS), written. */
  dk: GPUBuffer;
  /** Gradient of the values (B, NH, T, HS), written. */
  dv: GPUBuffer;
  /** Gradient of the loss with respect to the forward's output, (B, NH, T, HS). */
  dout: GPUBuffer;
}

/**
 * Records the fused causal attention backward. Needs the forward's `o` and `lse`; writes (`=`)
 * `dq`, `dk`, `dv`. Uses a (B, NH, T) float scratch for D_i = dO_i . O_i.
 *
 * @param buffers the tensors, by name (so that two swapped buffers do not type-check)
 * @param options tile sizes and binding limit, for benchmarks and tests
 */
export async function attentionBackward(
  gpu: Gpu,
  buffers: AttentionGradientBuffers & {
    /** The forward's output (B, NH, T, HS). */
    o: GPUBuffer;
    /** The forward's log-sum-exps (B, NH, T). */
    lse: GPUBuffer;
  },
  B: number,
  NH: number,
  T: number,
  HS: number,
  options: AttentionOptions = {},
): Promise<void> {
  const { dq, dk, dv, dout, q, k, v, o, lse } = buffers;
  const { tiles, textures, parts, maxBinding } = planFor(gpu, B, NH, T, HS, options);
  if (B * NH * T * HS === 0) return;
  const { width } = rowType(HS);
  for (const { first, count } of parts) {
    const n = T * HS; // floats of a head
    const w = windows(gpu, [dq, dk, dv, dout, q, k, v, o], first * n, count * n);
    const [dqw, dkw, dvw, dow, qw, kw, vw, ow] = w.bindings;
    const l = bufferWindow(gpu, lse, first * T, count * T);
    const rows = count * T;
    const dsum = gpu.acquire(rows * 4, undefined, "attention D");
    const base = w.elementOffset / width;
    await gpu.run(
      attentionBackwardDotKernel,
      { headSize: HS },
      [dsum, dow, ow, gpu.uniform(uniforms({ rows: ["u32", rows], base: ["u32", base] }))],
      grid2d(Math.ceil(rows / 64)),
    );
    if (textures) {
      const staged: GPUTexture[] = [];
      for (const [role, buffer] of [["q", q], ["k", k], ["v", v], ["dout", dout]] as const) {
        staged.push(await stageHeads(gpu, role, buffer, first, count, T, HS, maxBinding));
      }
      const inputs = [...staged, l.binding, dsum, textureParams(gpu, T, HS, w.elementOffset, l)];
      const kv = textures.keyValue, qt = textures.query;
      await gpu.run(
        attentionKeyValueTextureKernel,
        { headSize: HS, rows: kv.rows, block: kv.block },
        [dkw, dvw, ...inputs],
        [Math.ceil(T / (TEXTURE_LANES * kv.rows)), count],
      );
      await gpu.run(
        attentionQueryTextureKernel,
        { headSize: HS, rows: qt.rows, block: qt.block },
        [dqw, ...inputs],
        [Math.ceil(T / (TEXTURE_LANES * qt.rows)), count],
      );
      gpu.release(dsum);
      continue;
    }
    const params = gpu.uniform(uniforms({
      T: ["u32", T],
      base: ["u32", base],
      baseL: ["u32", l.elementOffset],
      scale: ["f32", LOG2E / Math.sqrt(HS)],
      invSqrt: ["f32", 1 / Math.sqrt(HS)],
      vecs: ["u32", HS / width],
    }));
    const { lanes, keyValue, query, tile } = tiles;
    await gpu.run(
      attentionBackwardKeyValueKernel,
      { headSize: HS, lanes, perLane: keyValue, tile },
      [dkw, dvw, qw, kw, vw, dow, l.binding, dsum, params],
      [Math.ceil(T / (lanes * keyValue)), count],
    );
    await gpu.run(
      attentionBackwardQueryKernel,
      { headSize: HS, lanes, perLane: query, tile },
      [dqw, qw, kw, vw, dow, l.binding, dsum, params],
      [Math.ceil(T / (lanes * query)), count],
    );
    gpu.release(dsum);
  }
}

/**
 * The causal softmax of one head's scaled scores into `att` (T, T) (zeros above the diagonal),
 * and each row's log-sum-exp into `lse` at `lseBase`. Computed in float64.
 */
function causalSoftmax(
  att: Float64Array,
  lse: Floats | null,
  lseBase: number,
  q: Floats,
  k: Floats,
  base: number,
  T: number,
  HS: number,
): void {
  const scale = 1 / Math.sqrt(HS);
  att.fill(0);
  for (let i = 0; i < T; i++) {
    let max = -Infinity;
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let d = 0; d < HS; d++) s += q[base + i * HS + d] * k[base + j * HS + d];
      att[i * T + j] = s * scale;
      max = Math.max(max, s * scale);
    }
    let sum = 0;
    for (let j = 0; j <= i; j++) sum += Math.exp(att[i * T + j] - max);
    for (let j = 0; j <= i; j++) att[i * T + j] = Math.exp(att[i * T + j] - max) / sum;
    if (lse) lse[lseBase + i] = max + Math.log(sum);
  }
}

/**
 * CPU reference of {@linkcode attentionForward}, naive: materializes each head's T x T
 * probabilities, in float64 whatever the array type.
 */
export function attentionForwardCpu(
  o: Floats,
  lse: Floats,
  q: Floats,
  k: Floats,
  v: Floats,
  B: number,
  NH: number,
  T: number,
  HS: number,
): void {
  const att = new Float64Array(T * T);
  for (let bh = 0; bh < B * NH; bh++) {
    const base = bh * T * HS;
    causalSoftmax(att, lse, bh * T, q, k, base, T, HS);
    for (let i = 0; i < T; i++) {
      for (let d = 0; d < HS; d++) {
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += att[i * T + j] * v[base + j * HS + d];
        o[base + i * HS + d] = sum;
      }
    }
  }
}

/**
 * CPU reference of {@linkcode attentionBackward}, naive (llm.c's formulation, independent of the
 * GPU's): recomputes each head's probabilities P, then dP = dO V^T, dV = P^T dO,
 * dS = P (dP - rowsum(P dP)), dQ = dS K / sqrt(HS), dK = dS^T Q / sqrt(HS). Writes (`=`).
 */
export function attentionBackwardCpu(
  dq: Floats,
  dk: Floats,
  dv: Floats,
  dout: Floats,
  q: Floats,
  k: Floats,
  v: Floats,
  B: number,
  NH: number,
  T: number,
  HS: number,
): void {
  const scale = 1 / Math.sqrt(HS);
  const att = new Float64Array(T * T), dAtt = new Float64Array(T * T);
  // One head's gradients, summed in float64 and then written out.
  const gq = new Float64Array(T * HS), gk = new Float64Array(T * HS), gv = new Float64Array(T * HS);
  for (let bh = 0; bh < B * NH; bh++) {
    const base = bh * T * HS;
    causalSoftmax(att, null, 0, q, k, base, T, HS);
    gq.fill(0), gk.fill(0), gv.fill(0);
    for (let i = 0; i < T; i++) {
      let rowDot = 0;
      for (let j = 0; j <= i; j++) {
        let dp = 0;
        for (let d = 0; d < HS; d++) {
          dp += dout[base + i * HS + d] * v[base + j * HS + d];
          gv[j * HS + d] += att[i * T + j] * dout[base + i * HS + d];
        }
        dAtt[i * T + j] = dp;
        rowDot += att[i * T + j] * dp;
      }
      for (let j = 0; j <= i; j++) {
        const ds = att[i * T + j] * (dAtt[i * T + j] - rowDot) * scale;
        for (let d = 0; d < HS; d++) {
          gq[i * HS + d] += ds * k[base + j * HS + d];
          gk[j * HS + d] += ds * q[base + i * HS + d];
        }
      }
    }
    dq.set(gq, base), dk.set(gk, base), dv.set(gv, base);
  }
}
