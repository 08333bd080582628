/**
 * Matrix multiply, the products a linear layer needs forward and backward, row-major float32:
 *
 * - `out = A · B`, `A · Bᵀ` or `Aᵀ · B` (flags `transA`, `transB`), batched over `batch` layers
 *   with element strides (attention-style batched products; a stride of 0 broadcasts);
 * - epilogues fused into the store: `+ bias` (one per output column), GPT-2's tanh GELU, and
 *   `accumulate` (`out += ...`, for parameter gradients: llm.c's convention is that parameter
 *   gradients accumulate (+=) and activation gradients are written (=));
 * - operands and outputs larger than one binding (GPT-2's wte, 50257 x 768 = 154 MB, and the
 *   1024 x 50257 logits, 206 MB): the launch is split into parts.
 *
 * Layout convention (llm.c): a weight is `(OC, C)` row-major and a linear layer computes
 * `out (BT, OC) = inp (BT, C) · weightᵀ + bias` (GELU fused into the store with `gelu`); see
 * {@linkcode linearForward} and {@linkcode linearBackward}, which take the same option. GPT-2's
 * tied lm head is `logits (BT, V) = x (BT, C) · wteᵀ`.
 *
 * How it is fast on lavapipe (Mesa's Vulkan driver on the CPU, where a workgroup runs as a loop
 * over SIMD groups of 8 invocations, one per AVX lane, so every scalar an invocation keeps live
 * is a whole 256-bit register). Read off the generated code (`GALLIVM_DEBUG=asm`,
 * `MESA_SHADER_CACHE_DISABLE=true`) and measured against the FMA-ceiling shader
 * (bench/fma_ceiling.ts: independent multiply-adds, no loads, ~60 GFLOP/s on the 2-core
 * development machine when idle; llvmpipe emits a multiply and an add, never an FMA):
 *
 * - Operands come from `rgba32float` array textures read as read-only storage textures. A
 *   storage-buffer load is scalarized per lane with a bounds check and a branch (~10
 *   instructions per float, even for an address shared by all lanes: Mesa 25.0 treats only
 *   constant addresses as uniform), so a storage-buffer matmul is load-bound at 3-4.5 GFLOP/s.
 *   A texel load brings four floats to each of the 8 lanes; as a sampled texture
 *   (`texture_2d_array`) it is a call into a ~200-instruction sampler routine (per-lane mip
 *   level, lod clamping), as a read-only storage texture a call into a 48-instruction image
 *   load (bounds, 8 loads, a transpose): twice the loads per second. The operands are staged
 *   into the textures first (a buffer-to-texture copy when rows are a multiple of 64 floats,
 *   else a small pack kernel; a few percent of a 1024³ product), into textures only as wide as
 *   the operand (to a cache line): rows of 512 bytes in a texture twice as wide made the
 *   reduction that walks them up to 30% slower.
 * - Each invocation holds a 16 x 16 register tile (256 accumulators: they live in memory, not
 *   in registers, but so do the FMA-ceiling shader's). Per texel step of the reduction (4
 *   steps) it makes tm + tn = 32 texel loads for 1024 multiply-adds; an 8 x 16 tile makes 24 for
 *   512, and the calls (each spills every live vector register) then cost as much as the
 *   arithmetic. Each accumulator takes all of a loop trip's updates in a row (one load and one
 *   store of it per trip), and a trip covers two texel steps (the loop's per-trip mask blends
 *   are halved); a remainder loop takes the odd texel step.
 * - The epilogue (bias, pre-activation, GELU, accumulate) is compiled in per use, one store per
 *   output, row by row (see the kernel). Its former form, a loop over a private copy of the tile,
 *   is a per-lane gather on lavapipe and cost more than a reduction of 128. Every store is a
 *   per-lane loop, so where the output's rows are whole vec4s a launch stores four columns at
 *   a time: the forward products with K = 128 ran 5-7% faster. Accumulating launches keep the
 *   scalar stores, which measured 2-5% faster for them.
 * - Eight invocations (one SIMD group) along the columns per workgroup: the lanes share their
 *   rows, so the A texels they load are the same. No workgroup memory and no barriers (on a
 *   CPU workgroup memory is just memory, and a barrier switches coroutines). For `Aᵀ·B` with
 *   N > M they run along the rows instead (`alongMWhenWide`): the `mlp.c_proj` weight
 *   gradients of the three configs ran 4-12% faster, the products with N < M slower (which
 *   orientation suits a shape was measured, not derived).
 *
 * Measured on a busy machine as GFLOP per CPU-second of the process (lavapipe's threads: robust
 * to the other load), at 1024³: 8 x 16 tile with sampled textures (the former kernel) 10.8 =
 * 0.36 of the ceiling's 30.4 per CPU-second; with storage textures about 0.5; 16 x 16 with two
 * texel steps a trip 0.73-0.79; 12 x 16, 20 x 16, 16 x 20, 24 x 16, 16 x 24 and workgroups of
 * 4 x 2, 2 x 4, 8 x 4 all within 5% of it; 8 x 16 0.62. Over the products of the three training
 * configs of bench/matmul.ts: 0.54-1.0 of the ceiling (2.2-2.5x the former kernel). Long
 * reductions were the slow ones: Aᵀ·B (weight gradients, K = B·T = 2048) at 0.54-0.75, A·B with
 * K = 8192 (the lm head's dinp) at 0.48, A·Bᵀ with K = 3072 at 0.71: the same instructions as
 * a short reduction (0.95), but every launch walks a whole operand texture (up to 12 MB, rows
 * of up to 32 kB). Split into reduction parts of 512 that accumulate (`kPart`), they run at
 * 0.82-0.98 (parts of 256 for Aᵀ·B: 0.77-0.83; of 1024: 0.74-0.89). On a quiet machine the
 * ceiling is ~60-70 GFLOP/s.
 *
 * A part has a fixed cost, a dispatch and two staging copies on one thread (0.1-0.2 ms), and
 * each part after the first reads the output back: the small weight gradients of the tiny
 * config paid it most (128 x 128 x 2048 in four parts of 512 ran at 40 GFLOP/s, in two of 1024
 * at 46, in one at 47). So the part length follows a cache budget (`kPartBytes`, see
 * `reductionPartLength`) rather than a fixed 512: longer where the blocks of the operands a
 * part walks are small, shorter for the weight gradients of wide layers. With the exact-width
 * textures and the vec4 stores, the three configs' 45 products went from 31.1-65.4 to
 * 47.2-67.7 GFLOP/s (2026-12-02, wall clock, best of 4 runs of each kernel interleaved).
 *
 * On a hardware GPU the tile is a conventional 4 x 4 per thread on a 16 x 16 workgroup, within
 * the adapter's limits ({@linkcode matmulTile}).
 *
 * @module
 */

import { biasGrad, biasGradCpu } from "./bias_grad.ts";
import { geluBackward, geluBackwardCpu, geluScalar, geluWgsl } from "./gelu.ts";
import {
  type BindingKind,
  bufferWindow,
  type Gpu,
  type GpuFloats,
  type Kernel,
  uniforms,
} from "./device.ts";
import { type MatrixBlock, scratchTexture, stageBlock } from "./_matmul_texture.ts";
import { head } from "./_parts.ts";

/** The shape and epilogue of a (batched) matmul; shared by the GPU launcher and CPU reference. */
export interface MatmulShape {
  /** Rows of the output (and of `op(A)`). */
  m: number;
  /** Columns of the output (and of `op(B)`). */
  n: number;
  /** The reduction length: columns of `op(A)`, rows of `op(B)`. */
  k: number;
  /** A is stored `(K, M)` and used transposed. Default false: stored `(M, K)`. */
  transA?: boolean;
  /** B is stored `(N, K)` and used transposed. Default false: stored `(K, N)`. */
  transB?: boolean;
  /** Number of independent products. Default 1. */
  batch?: number;
  /** Elements between consecutive A matrices; 0 uses one A for all. Default `M·K`. */
  strideA?: number;
  /** Elements between consecutive B matrices; 0 uses one B for all. Default `K·N`. */
  strideB?: number;
  /** Elements between consecutive outputs. Default `M·N`. */
  strideOut?: number;
  /** Element index where A starts in its buffer. Default 0. */
  offsetA?: number;
  /** Element index where B starts in its buffer. Default 0. */
  offsetB?: number;
  /** Element index where the output starts in its buffer. Default 0. */
  offsetOut?: number;
  /** `out += op(A)·op(B) (+ bias)` instead of `out = ...`. Not with `gelu`. */
  accumulate?: boolean;
  /** Apply GPT-2's tanh GELU to `op(A)·op(B) + bias` before storing. */
  gelu?: boolean;
}

/** Options of {@linkcode matmul}: the shape, plus the epilogue's buffers. */
export interface MatmulOptions extends MatmulShape {
  /** `(N)`: added to every row of the output. */
  bias?: GpuFloats;
  /** With `gelu`: also store the pre-activation (same layout as the output) for the backward. */
  pre?: GpuFloats;
}

/** The register tile, workgroup and unrolling of {@linkcode matmulKernel}. */
export interface MatmulTile {
  /** Output rows per invocation (a multiple of 4). */
  tm: number;
  /** Output columns per invocation (a multiple of 4). */
  tn: number;
  /** Workgroup size along columns. */
  wx: number;
  /** Workgroup size along rows. */
  wy: number;
  /** Texels of the reduction (4 steps each) per trip of the main reduction loop. */
  ku: number;
  /**
   * The longest reduction one launch takes (but see `kPartBytes`); longer ones are split into
   * parts that accumulate, so that the part of each operand texture a launch walks through
   * stays in cache. 0: no limit.
   */
  kPart: number;
  /**
   * With `kPart`, a cache budget in bytes for the operand blocks of one part (see
   * `reductionPartLength`): parts are longer than `kPart` while they fit it, and with `transA`
   * shorter, down to half of `kPart`, where they would not. 0: parts of `kPart`.
   */
  kPartBytes: number;
  /**
   * For `Aᵀ·B` with N > M, swap `wx` and `wy`: the workgroup runs along M (lavapipe's weight
   * gradients of layers that narrow, such as GPT-2's `mlp.c_proj`: 6-13% faster).
   */
  alongMWhenWide: boolean;
  /**
   * A narrower tile for the dimension the workgroup's invocations run along (`tn` along N,
   * `tm` along M), taken where it leaves fewer of them idle; 0: none. See `fitLaneTile`.
   */
  narrowTile: number;
}

/** Compile-time constants of {@linkcode matmulKernel}. */
export interface MatmulConstants extends MatmulTile, Record<string, number | boolean> {
  /** A's texture holds A stored `(K, M)`; else `(M, K)`. */
  transA: boolean;
  /** B's texture holds B stored `(N, K)`; else `(K, N)`. */
  transB: boolean;
  /** A bias buffer is bound. */
  bias: boolean;
  /** A pre-activation output buffer is bound (only with \`gelu\`). */
  pre: boolean;
  /** Add the output's previous value (\`accumulate\`, or a later part of a split reduction). */
  accumulate: boolean;
  /** Apply GELU after the bias. */
  gelu: boolean;
  /**
   * The output (and bias, pre-activation) is written four columns at a time: N is a multiple
   * of 4 and every output row starts on a multiple of 4 floats. Not with `accumulate`.
   */
  vec4: boolean;
}

/**
 * The tile on a CPU adapter (lavapipe): 16 x 16 outputs per invocation, 8 invocations (one
 * SIMD group) per workgroup, two texels of the reduction per loop trip, reduction parts sized
 * for a 2 MiB L2 cache per core (less room for the rest). See the module comment for the
 * measurements behind it.
 */
export const MATMUL_TILE_CPU: MatmulTile = {
  tm: 16,
  tn: 16,
  wx: 8,
  wy: 1,
  ku: 2,
  kPart: 512,
  kPartBytes: 1.75 * 1024 * 1024,
  alongMWhenWide: true,
  narrowTile: 12,
};

/**
 * The tile on a hardware GPU: a 4 x 4 register tile (16 floats of accumulators per thread,
 * which leaves room for occupancy), on the largest square workgroup of at most 16 x 16 that
 * the adapter's limits allow; a 64 x 64 output tile per workgroup at 16 x 16.
 */
export function matmulTile(gpu: Gpu): MatmulTile {
  if (gpu.adapter.isCpu) return MATMUL_TILE_CPU;
  const limits = gpu.device.limits;
  let side = 16;
  while (
    side > 1 &&
    (side * side > limits.maxComputeInvocationsPerWorkgroup ||
      side > limits.maxComputeWorkgroupSizeX || side > limits.maxComputeWorkgroupSizeY)
  ) side /= 2;
  return {
    tm: 4,
    tn: 4,
    wx: side,
    wy: side,
    ku: 1,
    kPart: 0,
    kPartBytes: 0,
    alongMWhenWide: false,
    narrowTile: 0,
  };
}

/**
 * The tile with `narrowTile` along the invocations' dimension where that pads the dimension
 * less: 8 invocations of 16 columns cover 128, so N = 96 (the main job's model width) left two
 * of the eight idle, and N = 288 (its qkv) a quarter of the last workgroup's columns; 8 of 12
 * cover 96. Ties keep the tile's own. On lavapipe (2-core development machine, 2026-12-03,
 * interleaved medians of 5), 16 x 12 against 16 x 16 at the main job's model's products with
 * N = 96 or 288: 21.8 -> 25.8, 32.1 -> 39.9, 32.7 -> 40.8, 27.3 -> 33.1, 25.2 -> 29.2 GFLOP/s;
 * where 16 pads nothing (N = 384) it stays: 33.0 against 31.6 for 12.
 */
function fitLaneTile(tile: MatmulTile, m: number, n: number): MatmulTile {
  if (tile.narrowTile === 0) return tile;
  const padded = (size: number, invocations: number, t: number) =>
    Math.ceil(size / (invocations * t)) * invocations * t;
  const narrower = (size: number, invocations: number, t: number) =>
    invocations > 1 && padded(size, invocations, tile.narrowTile) < padded(size, invocations, t);
  if (narrower(n, tile.wx, tile.tn)) return { ...tile, tn: tile.narrowTile };
  if (narrower(m, tile.wy, tile.tm)) return { ...tile, tm: tile.narrowTile };
  return tile;
}

/** The bindings of {@linkcode matmulKernel}: A and B textures, the output, then the optional ones. */
function matmulBindings(c: MatmulConstants): BindingKind[] {
  return [
    "read-storage-texture",
    "read-storage-texture",
    "write",
    ...(c.bias ? ["read" as const] : []),
    ...(c.pre ? ["write" as const] : []),
    "uniform",
  ];
}

/**
 * Emits the body of one trip of the reduction loop: `steps` texel steps (4·steps reduction
 * steps) from `kb0`. All texel loads come first, then the multiply-adds, each accumulator
 * taking all of its 4·steps updates in a row (so that a spilled accumulator is loaded and
 * stored once per trip, not once per update).
 */
function reductionStep(c: MatmulConstants, steps: number, emit: (line: string) => void): void {
  const { tm, tn, transA, transB } = c;
  const tn4 = tn / 4;
  const as: ((i: number, kk: number) => string)[] = [];
  const bs: ((j4: number, kk: number) => string)[] = [];
  for (let u = 0; u < steps; u++) {
    emit(`    let kb${u} = kb0 + ${u}u;`);
    // a(i, kk): element (row i, reduction step 4·kb + kk) of this block of op(A).
    if (transA) {
      for (let kk = 0; kk < 4; kk++) {
        for (let i = 0; i < tm / 4; i++) {
          emit(
            `    let a${u}_${i}_${kk} = textureLoad(ta, vec2u(xa${i}, 4u * kb${u} + ${kk}u), la);`,
          );
        }
      }
      as.push((i, kk) => `a${u}_${i >> 2}_${kk}[${i & 3}]`);
    } else {
      for (let i = 0; i < tm; i++) {
        emit(`    let a${u}_${i} = textureLoad(ta, vec2u(kb${u}, ya${i}), la);`);
      }
      as.push((i, kk) => `a${u}_${i}[${kk}]`);
    }
    // b(j4, kk): columns 4·j4 .. 4·j4+3 of reduction step 4·kb + kk of op(B), as a vec4.
    if (transB) {
      for (let j = 0; j < tn; j++) {
        emit(`    let b${u}_${j} = textureLoad(tb, vec2u(kb${u}, yb${j}), lb);`);
      }
      bs.push((j4, kk) => {
        const texel = (q: number) => `b${u}_${4 * j4 + q}[${kk}]`;
        return `vec4f(${texel(0)}, ${texel(1)}, ${texel(2)}, ${texel(3)})`;
      });
    } else {
      for (let kk = 0; kk < 4; kk++) {
        for (let j = 0; j < tn4; j++) {
          emit(
            `    let b${u}_${j}_${kk} = textureLoad(tb, vec2u(xb${j}, 4u * kb${u} + ${kk}u), lb);`,
          );
        }
      }
      bs.push((j4, kk) => `b${u}_${j4}_${kk}`);
    }
  }
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn4; j++) {
      for (let u = 0; u < steps; u++) {
        for (let kk = 0; kk < 4; kk++) {
          emit(`    acc${i}_${j} += ${as[u](i, kk)} * ${bs[u](j, kk)};`);
        }
      }
    }
  }
}

/**
 * WGSL of the product of two staged operands (see `_matmul_texture.ts`: an operand stored
 * `(R, C)` is a texture of `C/4` x `R` texels). Invocation `(x, y)` of layer `z` computes the
 * `tm x tn` output block at rows `y·tm`, columns `x·tn`; coordinates past the edge are clamped
 * (so loads stay in range and unconditional) and the store is bounds-checked.
 */
export const matmulKernel: Kernel<MatmulConstants> = {
  name: "matmul",
  bindings: matmulBindings,
  wgsl: (c) => {
    const { tm, tn, wx, wy, transA, transB } = c;
    const tn4 = tn / 4;
    const lines: string[] = [];
    const emit = (s: string) => lines.push(s);
    // Loop-invariant, clamped texel coordinates of this invocation's rows and columns.
    if (transA) {
      for (let i = 0; i < tm / 4; i++) {
        emit(`  let xa${i} = min(r0 / 4u + ${i}u, (p.m - 1u) / 4u);`);
      }
    } else {
      for (let i = 0; i < tm; i++) emit(`  let ya${i} = min(r0 + ${i}u, p.m - 1u);`);
    }
    if (transB) {
      for (let j = 0; j < tn; j++) emit(`  let yb${j} = min(c0 + ${j}u, p.n - 1u);`);
    } else {
      for (let j = 0; j < tn4; j++) emit(`  let xb${j} = min(c0 / 4u + ${j}u, (p.n - 1u) / 4u);`);
    }
    for (let i = 0; i < tm; i++) {
      for (let j = 0; j < tn4; j++) emit(`  var acc${i}_${j} = vec4f(0.0);`);
    }
    // The reduction: `ku` texel steps (4·ku reduction steps) per trip of the main loop, then
    // the remaining texel steps one per trip.
    emit(`  let kb_main = p.kb - p.kb % ${c.ku}u;`);
    emit(`  for (var kb0 = 0u; kb0 < kb_main; kb0 += ${c.ku}u) {`);
    reductionStep(c, c.ku, emit);
    emit(`  }`);
    if (c.ku > 1) {
      emit(`  for (var kb0 = kb_main; kb0 < p.kb; kb0++) {`);
      reductionStep(c, 1, emit);
      emit(`  }`);
    }
    // Epilogue: one bounds-checked scalar store per output (N need not be a multiple of 4),
    // row by row. Row i of the tile is picked with a chain of selects on the loop counter:
    // on lavapipe a private array indexed by it (the simple way) is a per-lane gather, which
    // made the epilogue cost more than a 128-long reduction; fully unrolled (256 stores) it
    // runs as fast as this but takes LLVM 5-60 s to compile, this 1-2 s.
    emit(`  for (var i = 0u; i < ${tm}u; i++) {`);
    for (let j4 = 0; j4 < tn4; j4++) {
      let pick = `acc${tm - 1}_${j4}`;
      for (let i = tm - 2; i >= 0; i--) pick = `select(${pick}, acc${i}_${j4}, i == ${i}u)`;
      emit(`    let row_${j4} = ${pick};`);
    }
    emit(`    let at = p.c_offset + wid.z * p.c_batch + (r0 + i) * p.ldc + c0;`);
    if (c.vec4) {
      for (let j4 = 0; j4 < tn4; j4++) {
        emit(`    if (r0 + i < p.m && c0 + ${4 * j4}u < p.n) {`);
        emit(`      store4(at / 4u + ${j4}u, c0 / 4u + ${j4}u, row_${j4});`);
        emit(`    }`);
      }
    } else {
      for (let j = 0; j < tn; j++) {
        emit(`    if (r0 + i < p.m && c0 + ${j}u < p.n) {`);
        emit(`      store(at + ${j}u, c0 + ${j}u, row_${j >> 2}[${j & 3}]);`);
        emit(`    }`);
      }
    }
    emit(`  }`);
    const bindings = matmulBindings(c);
    const at = (kind: string, nth = 0) => {
      let seen = 0;
      return bindings.findIndex((k) => k === kind && seen++ === nth);
    };
    const t = c.vec4 ? "vec4f" : "f32";
    return /* wgsl */ `
struct Params {
  m: u32,           // rows of this part of the output
  n: u32,           // columns of this part of the output
  kb: u32,          // reduction length of this part in texels (ceil(K / 4); zero-padded)
  ldc: u32,         // elements between output rows
  c_offset: u32,    // element of output (row 0, col 0, layer 0) in the bound window
  c_batch: u32,     // elements between output layers
  pre_offset: u32,  // as c_offset, for the pre-activation window
  bias_offset: u32, // element of bias[col 0]
  a_layer: u32,     // 1 when A has a layer per batch entry, 0 when one A is shared
  b_layer: u32,     // as a_layer, for B
}

@group(0) @binding(0) var ta: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(1) var tb: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> c: array<${t}>;
${c.bias ? `@group(0) @binding(${at("read")}) var<storage, read> bias: array<${t}>;` : ""}
${c.pre ? `@group(0) @binding(${at("write", 1)}) var<storage, read_write> pre: array<${t}>;` : ""}
@group(0) @binding(${bindings.length - 1}) var<uniform> p: Params;

${c.gelu ? geluWgsl(t) : ""}

${c.vec4 ? vec4Epilogue(c) : scalarEpilogue(c)}
@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let r0 = gid.y * ${tm}u;
  let c0 = gid.x * ${tn}u;
  let la = wid.z * p.a_layer;
  let lb = wid.z * p.b_layer;
${lines.join("\n")}
}
`;
  },
};

/** The store of one output element with the epilogue (WGSL). */
function scalarEpilogue(c: MatmulConstants): string {
  return `
// Stores output element \`at\` (column \`col\` of this part) with the epilogue.
fn store(at: u32, col: u32, value: f32) {
  var x = value;
  ${c.accumulate ? "x += c[at];" : ""}
  ${c.bias ? "x += bias[p.bias_offset + col];" : ""}
  ${c.pre ? "pre[at - p.c_offset + p.pre_offset] = x;" : ""}
  ${c.gelu ? "x = gelu(x);" : ""}
  c[at] = x;
}`;
}

/** As {@linkcode scalarEpilogue}, four columns at a time (indices in vec4s). */
function vec4Epilogue(c: MatmulConstants): string {
  return `
// Stores output vec4 \`at\` (columns 4·col4 .. 4·col4+3 of this part) with the epilogue.
fn store4(at: u32, col4: u32, value: vec4f) {
  var x = value;
  ${c.accumulate ? "x += c[at];" : ""}
  ${c.bias ? "x += bias[p.bias_offset / 4u + col4];" : ""}
  ${c.pre ? "pre[at - p.c_offset / 4u + p.pre_offset / 4u] = x;" : ""}
  ${c.gelu ? "x = gelu(x);" : ""}
  c[at] = x;
}`;
}

interface Range {
  first: number;
  count: number;
}

function ranges(total: number, chunk: number): Range[] {
  const out: Range[] = [];
  for (let first = 0; first < total; first += chunk) {
    out.push({ first, count: Math.min(chunk, total - first) });
  }
  return out;
}

/**
 * A part length from a limit: a multiple of 64 (whole workgroup tiles) when the limit allows,
 * else of 4 (whole texels, which is what correctness needs).
 */
const chunkOf = (limit: number) =>
  limit >= 64 ? Math.floor(limit / 64) * 64 : Math.floor(limit / 4) * 4;

/**
 * The length of the reduction parts of a launch (before they are evened out), from the tile's
 * `kPart` and its cache budget `kPartBytes` (the L2 cache of one core on the CPU).
 *
 * B's block (part length x N floats) is walked again by every row of workgroups, so it must stay
 * cached while A's block streams past: it gets half the budget. With `transA` each workgroup
 * reads A's block one cache line per reduction step, a pattern the prefetchers do not follow, so
 * that block must still be in cache from its staging copy too: the two blocks share the budget,
 * and parts get shorter than `kPart` to fit it (weight gradients of wide layers: parts of 256
 * ran 5-12% faster than of 512). Without `transA` they do not: every part but the first adds
 * the output's load and store (parts of 192 for the 2048 x 8192 x 384 lm head ran 5% slower).
 */
function reductionPartLength(tile: MatmulTile, transA: boolean, m: number, n: number): number {
  const fit = Math.floor(tile.kPartBytes / (4 * (transA ? m + n : 2 * n)));
  return Math.max(transA && tile.kPartBytes > 0 ? tile.kPart / 2 : tile.kPart, fit);
}

function checkShape(shape: MatmulShape): void {
  for (const key of ["m", "n", "k"] as const) {
    if (!Number.isInteger(shape[key]) || shape[key] < 1) {
      throw new RangeError(`Matmul size ${key} is ${shape[key]}; give a positive integer.`);
    }
  }
  if (shape.gelu && shape.accumulate) {
    throw new Error(
      "Matmul with both gelu and accumulate is ambiguous; apply GELU in a separate pass.",
    );
  }
}

/** Tests lower the limits to exercise the split launch on small tensors. */
export interface MatmulLimits {
  /** Largest texture width or height, in texels. Default: the device's. */
  maxTextureDimension?: number;
  /** Largest binding window, in bytes. Default: the device's. */
  maxBinding?: number;
  /** The register tile and workgroup. Default {@linkcode matmulTile} of the device. */
  tile?: MatmulTile;
}

/**
 * Records `out = op(A) · op(B)` (+ bias, GELU; or `+=` with `accumulate`), where `op(A)` is
 * `(M, K)` and `op(B)` is `(K, N)`, for each of `batch` layers.
 *
 * Works for any sizes and for buffers larger than one binding: the work is split into parts
 * along M and N whose output window and operand textures fit the device's limits, and along K
 * when a texture would be too wide (later K parts accumulate).
 *
 * @example
 * ```ts
 * // out (2, 2) = A (2, 3) · B (3, 2)
 * const a = gpu.upload(new Float32Array([1, 2, 3, 4, 5, 6]));
 * const b = gpu.upload(new Float32Array([1, 0, 0, 1, 1, 1]));
 * const out = gpu.acquire(16);
 * await matmul(gpu, out, a, b, { m: 2, n: 2, k: 3 });
 * console.log(await gpu.readF32(out, 4)); // [4, 5, 10, 11]
 * ```
 */
export async function matmul(
  gpu: Gpu,
  out: GpuFloats,
  a: GpuFloats,
  b: GpuFloats,
  options: MatmulOptions,
  limits: MatmulLimits = {},
): Promise<void> {
  checkShape(options);
  const { m, n, k, transA = false, transB = false, batch = 1 } = options;
  if (options.pre && !options.gelu) {
    throw new Error("Matmul was given a pre-activation buffer without gelu; drop pre or set gelu.");
  }
  const strideA = options.strideA ?? m * k;
  const strideB = options.strideB ?? k * n;
  const strideOut = options.strideOut ?? m * n;
  if (batch > 1 && strideOut < m * n) {
    throw new RangeError(
      `Matmul output stride ${strideOut} is below one output (${m * n} elements); ` +
        "batched outputs must not overlap.",
    );
  }
  const chosen = limits.tile ?? matmulTile(gpu);
  const tile = fitLaneTile(
    chosen.alongMWhenWide && transA && n > m ? { ...chosen, wx: chosen.wy, wy: chosen.wx } : chosen,
    m,
    n,
  );
  const maxDim = limits.maxTextureDimension ?? gpu.device.limits.maxTextureDimension2D;
  const maxBinding = Math.min(limits.maxBinding ?? gpu.maxBinding, gpu.maxBinding);
  const maxLayers = gpu.device.limits.maxTextureArrayLayers;

  // Part sizes along each dimension. A dimension stored along a texture row (4 per texel) may be
  // 4x longer than one stored down a column. Parts are multiples of 64 so that every part starts
  // on a whole texel and (for M and N) on a whole tile.
  const dimLimit = (alongRow: boolean) => (alongRow ? 4 : 1) * maxDim;
  const mTex = dimLimit(transA);
  const nTex = dimLimit(!transB);
  const kTex = Math.min(dimLimit(!transA), dimLimit(transB));
  const maxElements = Math.floor((maxBinding - 256) / 4);
  let layersPerPart = Math.min(batch, maxLayers);
  if (layersPerPart > 1) {
    const fit = m * n <= maxElements ? Math.floor((maxElements - m * n) / strideOut) + 1 : 1;
    layersPerPart = Math.max(1, Math.min(layersPerPart, fit));
  }
  const mChunk = Math.min(m, chunkOf(Math.min(mTex, Math.floor(maxElements / n))));
  const nChunk = Math.min(n, chunkOf(nTex));
  // Reduction parts of equal length, as long as the texture allows and, on a CPU, as the cache
  // budget of the tile allows (see MatmulTile.kPartBytes). Multiples of 4: whole texels.
  const kTexChunk = chunkOf(kTex);
  const kLimit = tile.kPart > 0
    ? Math.min(kTexChunk, reductionPartLength(tile, transA, mChunk, nChunk))
    : kTexChunk;
  const kLimit4 = Math.floor(kLimit / 4) * 4;
  const kChunk = kLimit4 < 4 ? 0 : Math.ceil(k / Math.ceil(k / kLimit4) / 4) * 4;
  if (mChunk < 1 || nChunk < 1 || kChunk < 1) {
    throw new RangeError(
      `A matmul output row of ${n} floats leaves no room for a 4-row part within one binding ` +
        `(${maxBinding} bytes); split the product along N yourself.`,
    );
  }
  const layerParts = ranges(batch, layersPerPart);
  const mParts = ranges(m, m <= mChunk ? m : mChunk);
  const nParts = ranges(n, n <= nChunk ? n : nChunk);
  const kParts = ranges(k, k <= kChunk ? k : kChunk);

  // The epilogue is compiled in: bias, pre-activation and GELU in the last part of the
  // reduction only, accumulation into the output in every later part.
  // Whole vec4 rows of the output: then the epilogue moves four columns per access (on lavapipe
  // each access is a per-lane loop), if this launch's window also starts on a vec4.
  const vec4Rows = n % 4 === 0 && (batch === 1 || strideOut % 4 === 0);
  const constantsOf = (kIndex: number, vec4: boolean): MatmulConstants => {
    const last = kIndex === kParts.length - 1;
    const accumulate = !!options.accumulate || kIndex > 0;
    return {
      ...tile,
      transA,
      transB,
      bias: last && !!options.bias,
      pre: last && !!options.pre,
      gelu: last && !!options.gelu,
      accumulate,
      vec4: vec4 && !accumulate,
    };
  };
  const staged: Record<string, string> = {};
  const stage = async (role: string, block: MatrixBlock, kRows: boolean) => {
    const rows = kRows ? Math.ceil(block.rows / 4) * 4 : block.rows;
    const texture = scratchTexture(gpu, role, Math.ceil(block.cols / 4), rows, block.layers);
    // Within one call a role always reads the same buffer, so the block's numbers identify it.
    const key = `${texture.label}:${JSON.stringify({ ...block, buffer: undefined })}`;
    if (staged[role] !== key) {
      await stageBlock(gpu, texture, block, rows, maxBinding);
      staged[role] = key;
    }
    return texture;
  };

  // N parts outermost: when both M and N are split (the lm head), the big B part (a slice of
  // wte) is staged once and the small A part is restaged for each M part.
  for (const lp of layerParts) {
    for (const np of nParts) {
      for (const mp of mParts) {
        // The output window: rows mp of layers lp, whole rows (columns np are inside).
        const outFirst = (options.offsetOut ?? 0) + lp.first * strideOut + mp.first * n;
        const outCount = (lp.count - 1) * strideOut + mp.count * n;
        const outWindow = bufferWindow(gpu, out, outFirst, outCount);
        const preWindow = options.pre ? bufferWindow(gpu, options.pre, outFirst, outCount) : null;
        const cOffset = outWindow.elementOffset + np.first;
        const preOffset = (preWindow?.elementOffset ?? 0) + np.first;
        const vec4 = vec4Rows && cOffset % 4 === 0 && (!preWindow || preOffset % 4 === 0);
        for (const [kIndex, kp] of kParts.entries()) {
          const aBlock = operandBlock(a, options.offsetA ?? 0, strideA, lp, mp, m, kp, k, transA);
          const bBlock = operandBlock(b, options.offsetB ?? 0, strideB, lp, np, n, kp, k, !transB);
          const ta = await stage("a", aBlock, transA);
          const tb = await stage("b", bBlock, !transB);
          const params = gpu.uniform(uniforms({
            m: mp.count,
            n: np.count,
            kb: Math.ceil(kp.count / 4),
            ldc: n,
            c_offset: cOffset,
            c_batch: strideOut,
            pre_offset: preOffset,
            bias_offset: np.first,
            a_layer: strideA === 0 ? 0 : 1,
            b_layer: strideB === 0 ? 0 : 1,
          }));
          const constants = constantsOf(kIndex, vec4);
          const bindings = [
            ta,
            tb,
            outWindow.binding,
            ...(constants.bias ? [head(options.bias!, n)] : []),
            ...(constants.pre ? [preWindow!.binding] : []),
            params,
          ];
          await gpu.run(matmulKernel, constants, bindings, [
            Math.ceil(np.count / (tile.tn * tile.wx)),
            Math.ceil(mp.count / (tile.tm * tile.wy)),
            lp.count,
          ]);
        }
      }
    }
  }
}

/**
 * The block of one operand a launch stages: the `outer` part of its outer dimension (A's rows M,
 * or B's columns N; `outerSize` in all) by the `kp` part of the inner dimension K, in batch
 * layers `lp` (layer 0 only when `stride` is 0, an operand shared by every layer).
 *
 * @param kMajor the operand is stored (K, outer), row-major: A transposed, or B not transposed.
 */
function operandBlock(
  buffer: GpuFloats,
  offset: number,
  stride: number,
  lp: Range,
  outer: Range,
  outerSize: number,
  kp: Range,
  k: number,
  kMajor: boolean,
): MatrixBlock {
  const [rows, cols] = kMajor ? [kp, outer] : [outer, kp];
  return {
    buffer,
    offset,
    ld: kMajor ? outerSize : k,
    batchStride: stride,
    row0: rows.first,
    rows: rows.count,
    col0: cols.first,
    cols: cols.count,
    layer0: stride === 0 ? 0 : lp.first,
    layers: stride === 0 ? 1 : lp.count,
  };
}

/**
 * CPU reference of {@linkcode matmul}, summing in float64. `bias` and `pre` are arrays here.
 */
export function matmulCpu<T extends Float32Array | Float64Array>(
  out: T,
  a: T,
  b: T,
  shape: MatmulShape & { bias?: T; pre?: T },
): void {
  checkShape(shape);
  const { m, n, k, transA = false, transB = false, batch = 1 } = shape;
  const strideA = shape.strideA ?? m * k;
  const strideB = shape.strideB ?? k * n;
  const strideOut = shape.strideOut ?? m * n;
  for (let l = 0; l < batch; l++) {
    const oa = (shape.offsetA ?? 0) + l * strideA;
    const ob = (shape.offsetB ?? 0) + l * strideB;
    const oc = (shape.offsetOut ?? 0) + l * strideOut;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let p = 0; p < k; p++) {
          const av = transA ? a[oa + p * m + i] : a[oa + i * k + p];
          const bv = transB ? b[ob + j * k + p] : b[ob + p * n + j];
          sum += av * bv;
        }
        if (shape.accumulate) sum += out[oc + i * n + j];
        if (shape.bias) sum += shape.bias[j];
        if (shape.pre) shape.pre[oc + i * n + j] = sum;
        out[oc + i * n + j] = shape.gelu ? geluScalar(sum) : sum;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The linear layer (llm.c's matmul_forward / matmul_backward)

/**
 * The tensors of a linear layer's forward, by name (so that two swapped buffers do not
 * type-check): `GpuFloats` for {@linkcode linearForward}, arrays for its CPU reference.
 */
export interface LinearForwardBuffers<B = GpuFloats> {
  /** (BT, OC) the output, written: GELU of the product with `gelu`. */
  out: B;
  /** (BT, C) the input. */
  inp: B;
  /** (OC, C) the weight. */
  weight: B;
  /** (OC) the bias; null or absent for a layer without one (GPT-2's tied lm head). */
  bias?: B | null;
  /** (BT, OC), with `gelu`: the pre-activation, written, for the backward. */
  pre?: B;
}

/**
 * The tensors of a linear layer's backward, by name: `GpuFloats` for
 * {@linkcode linearBackward}, arrays for its CPU reference.
 */
export interface LinearBackwardBuffers<B = GpuFloats> {
  /** (BT, C) gradient of the input, written. */
  dinp: B;
  /** (OC, C) gradient of the weight, accumulated. */
  dweight: B;
  /** (OC) gradient of the bias, accumulated; null or absent for a layer without bias. */
  dbias?: B | null;
  /** (BT, OC) gradient of the output; with `gelu`, overwritten by the pre-activation's. */
  dout: B;
  /** (BT, C) the forward's input. */
  inp: B;
  /** (OC, C) the forward's weight. */
  weight: B;
  /** (BT, OC), with `gelu`: the pre-activation the forward kept. */
  pre?: B;
}

/** Options of {@linkcode linearForward} and {@linkcode linearBackward}. */
export interface LinearOptions {
  /** The layer is `GELU(inp · weightᵀ + bias)` (GPT-2's `mlp.c_fc`). Default false. */
  gelu?: boolean;
  /** Lowered device limits, for tests of the split launch. */
  limits?: MatmulLimits;
}

/**
 * The three products of a linear layer of `weight (OC, C)` on `inp (BT, C)`, for the launchers
 * and their CPU references alike: the forward `inp · weightᵀ`, and the backward's
 * `dinp = dpre · weight` (written) and `dweight += dpreᵀ · inp` (accumulated).
 */
function linearProducts(BT: number, C: number, OC: number) {
  return {
    forward: { m: BT, n: OC, k: C, transB: true },
    dinp: { m: BT, n: C, k: OC },
    dweight: { m: OC, n: C, k: BT, transA: true, accumulate: true },
  } satisfies Record<string, MatmulShape>;
}

/**
 * Records a linear layer, `out (BT, OC) = inp (BT, C) · weightᵀ + bias`, with `weight (OC, C)`
 * and `bias (OC)` (or none). With `gelu` the product's store applies GELU and, when `pre` is
 * given, keeps the pre-activation for {@linkcode linearBackward}.
 */
export async function linearForward(
  gpu: Gpu,
  buffers: LinearForwardBuffers,
  BT: number,
  C: number,
  OC: number,
  options: LinearOptions = {},
): Promise<void> {
  const { out, inp, weight, bias, pre } = buffers;
  const { forward } = linearProducts(BT, C, OC);
  const epilogue = { bias: bias ?? undefined, gelu: options.gelu, pre };
  await matmul(gpu, out, inp, weight, { ...forward, ...epilogue }, options.limits);
}

/**
 * Records the backward of {@linkcode linearForward}: `dinp (BT, C) = dpre · weight` (written),
 * `dweight (OC, C) += dpreᵀ · inp` and `dbias (OC) += column sums of dpre` (accumulated), where
 * `dpre` is `dout`, or with `gelu` `gelu'(pre) · dout`, written over `dout` (in place: no
 * (BT, OC) buffer more; `dout` is the gradient of the layer's output, which nothing reads after).
 *
 * The GELU derivative is its own elementwise pass, not fused into the products' operand loads:
 * `dpre` feeds three consumers (both products and the bias sums), the matmul stages its operands
 * into textures by a plain copy where it can, and an operand texel is loaded once per output
 * tile column, so a fused derivative (an `exp`) would be computed many times over per element.
 *
 * @throws {Error} with `gelu` but no `pre`, or `pre` without `gelu`.
 */
export async function linearBackward(
  gpu: Gpu,
  buffers: LinearBackwardBuffers,
  BT: number,
  C: number,
  OC: number,
  options: LinearOptions = {},
): Promise<void> {
  const { dinp, dweight, dbias, dout, inp, weight } = buffers;
  const pre = checkLinearGelu(buffers, options);
  if (pre) await geluBackward(gpu, dout, pre, dout, BT * OC);
  const products = linearProducts(BT, C, OC);
  await matmul(gpu, dinp, dout, weight, products.dinp, options.limits);
  await matmul(gpu, dweight, dout, inp, products.dweight, options.limits);
  if (dbias) await biasGrad(gpu, dbias, dout, BT, OC);
}

/** The pre-activation a GELU layer's backward reads, null without GELU; refuses a mismatch. */
function checkLinearGelu<B>(buffers: { pre?: B }, options: LinearOptions): B | null {
  if (options.gelu && !buffers.pre) {
    throw new Error(
      "linearBackward with gelu needs the pre-activation; pass as pre the buffer the forward kept.",
    );
  }
  if (!options.gelu && buffers.pre) {
    throw new Error("linearBackward was given pre without gelu; drop pre or set gelu.");
  }
  return buffers.pre ?? null;
}

/** CPU reference of {@linkcode linearForward}. */
export function linearForwardCpu<T extends Float32Array | Float64Array>(
  buffers: LinearForwardBuffers<T>,
  BT: number,
  C: number,
  OC: number,
  options: Pick<LinearOptions, "gelu"> = {},
): void {
  const { out, inp, weight, bias, pre } = buffers;
  const { forward } = linearProducts(BT, C, OC);
  matmulCpu(out, inp, weight, { ...forward, bias: bias ?? undefined, gelu: options.gelu, pre });
}

/**
 * CPU reference of {@linkcode linearBackward}: `dinp =`, `dweight +=`, `dbias +=`; with `gelu`,
 * `dout` is overwritten by `gelu'(pre) · dout` as on the GPU.
 */
export function linearBackwardCpu<T extends Float32Array | Float64Array>(
  buffers: LinearBackwardBuffers<T>,
  BT: number,
  C: number,
  OC: number,
  options: Pick<LinearOptions, "gelu"> = {},
): void {
  const { dinp, dweight, dbias, dout, inp, weight } = buffers;
  const pre = checkLinearGelu(buffers, options);
  if (pre) geluBackwardCpu(dout, pre, dout);
  const products = linearProducts(BT, C, OC);
  matmulCpu(dinp, dout, weight, products.dinp);
  matmulCpu(dweight, dout, inp, products.dweight);
  if (dbias) biasGradCpu(dbias, dout, BT, OC);
}
