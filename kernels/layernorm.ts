/**
 * Layer normalization over the last dimension C of an (N, C) tensor (N = B·T positions), as in
 * GPT-2: `out = (x - mean) · rstd · weight + bias` with `rstd = 1 / sqrt(var + 1e-5)` and the
 * biased variance. The forward saves `mean` and `rstd` (N) for the backward.
 *
 * Gradient convention (llm.c): every gradient the backward produces is ACCUMULATED:
 * `dinp +=`, `dweight +=`, `dbias +=`. `dinp` accumulates because in GPT-2 the layernorm input is
 * the residual stream, whose gradient already holds the residual branch's contribution; zero it
 * first when that is not wanted.
 *
 * Determinism: `dweight` and `dbias` are sums over N rows. WGSL has no float atomics, and a
 * reduction in a fixed order gives the same bits every run: per-block partial sums over fixed
 * blocks of rows (each column's rows added in order), then a second pass that adds the blocks in
 * order.
 *
 * Tensors over one binding (128 MiB on lavapipe) are processed in parts of rows through
 * {@linkcode bufferWindow}.
 *
 * {@linkcode residualLayernormForward} runs GPT-2's residual add in the same launch (llm.c's
 * fused residual forward): the forward kernels read `a + b`, write it (the residual stream) and
 * normalize it, one launch and one uniform fewer than the residual kernel and then the layernorm,
 * with the same bits. On lavapipe it saves little time: the sum is still written and read back
 * (by the column pass, in other lanes' rows), so it saves one read of the stream and a launch:
 * interleaved medians at four shapes from 1024x768 to 4096x96 gave 0.93-1.30 of the two
 * launches' time, within the noise of the host that day (2026-12-03).
 *
 * @module
 */

import {
  type BindingKind,
  bufferWindow,
  type Gpu,
  type GpuFloats,
  grid2d,
  type Kernel,
  uniforms,
} from "./device.ts";
import { assertFits, head, rowParts } from "./_parts.ts";
import type { Floats } from "./types.ts";
import { workgroupSumWgsl } from "./_wgsl.ts";

/** The epsilon GPT-2 adds to the variance. */
export const LAYERNORM_EPS = 1e-5;

/** Compile-time constants of the layernorm kernels. */
export interface LayernormConstants extends Record<string, number> {
  /** Invocations per workgroup; a power of two for the tree reductions. */
  workgroupSize: number;
  /** Floats per load: 4 (`vec4f`, when C is a multiple of 4) or 1. */
  width: number;
}

/** Compile-time constants of the layernorm forward kernels. */
export interface LayernormForwardConstants extends LayernormConstants {
  /**
   * 1 when the input is a residual sum `a + b` that the kernel adds and writes itself
   * ({@linkcode residualLayernormForward}), else 0.
   */
  residual: number;
}

/**
 * How a row is shared out; both layouts are shipped, each the default where it is the faster.
 *
 * `invocation` (a CPU adapter's): a workgroup of 8 invocations takes a block of 8 rows. The
 * forward takes each row's mean and variance a row per invocation, then writes the block
 * column-wise (invocation i takes columns i, i + 8, ... of all 8 rows); the backward goes
 * column-wise throughout, adding the invocations' parts of each row's sums in workgroup memory,
 * and writes the block's parts of the parameter sums itself (a last pass adds the blocks; when
 * those parts would not fit one binding, N·C over 128M floats on lavapipe, the backward takes
 * the `workgroup` layout instead). Column-wise, weight and bias are loaded once for
 * 8 rows: on lavapipe every storage load is a scalar load per SIMD lane with a bounds check,
 * even where every lane reads the same address, so a row per invocation that loaded them per
 * element paid as much for them as for the input. At 1024×768 the forward takes 0.79 ms and
 * the backward 1.85 ms this way, against 0.95 / 2.1 ms with a row per invocation throughout (and
 * its backward's separate pass over columns for the parameter sums), and 5.6 / 5.7 ms with a
 * workgroup a row. One barrier per block is cheap; a loop over several blocks with a barrier in
 * it was not (1 ms more), hence one block per workgroup.
 *
 * `workgroup` (a GPU's): the invocations of a workgroup stride over one row and reduce in a
 * tree; neighbouring invocations then read neighbouring floats (coalesced), and rows of
 * thousands of floats are not left to one thread.
 */
export type LayernormPerRow = "invocation" | "workgroup";

/** Invocations per workgroup of the `workgroup`-per-row kernels on a GPU (at most). */
const ROW_WORKGROUP = 128;
/** Rows per block of the `invocation` layout's kernels: one 8-wide SIMD vector on lavapipe. */
const ROWS_PER_WORKGROUP = 8;
const COLUMN_WORKGROUP = 64;

/** The WGSL type of `width` floats, and the sum of its components. */
function vector(width: number) {
  return width === 4
    ? { T: "vec4f", total: (x: string) => `dot(${x}, vec4f(1.0))` }
    : { T: "f32", total: (x: string) => x };
}

/** What a per-row kernel's body is written from: the constants, and `total` of a `T`. */
interface RowBody {
  /** Invocations per workgroup. */
  wg: number;
  /** Floats per element of `T`. */
  width: number;
  /** WGSL of the sum of the components of a `T` expression. */
  total: (x: string) => string;
  /** The input is the residual sum `a + b`, written to `inp` by the kernel. */
  residual: boolean;
}

/**
 * The WGSL builder of a workgroup-per-row kernel: around its `body`, the element type `T`, the
 * bindings, any module-scope `declarations`, and the row workgroup w works on (`row`, of `c`
 * elements of `width` floats; rows past the end return).
 */
function perRowWgsl(
  bindings: string | ((residual: boolean) => string),
  body: (row: RowBody) => string,
  declarations: (wg: number) => string = () => "",
): (constants: LayernormConstants & { residual?: number }) => string {
  return ({ workgroupSize: wg, width, residual = 0 }) => /* wgsl */ `
alias T = ${vector(width).T};
${typeof bindings === "string" ? bindings : bindings(residual === 1)}
${declarations(wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * groups.x;
  if (row >= params.rows) { return; }
  let c = params.c;
${body({ wg, width, total: vector(width).total, residual: residual === 1 })}
}
`;
}

/**
 * The forward's bindings; with `residual`, the input `inp` is the sum `resA + resB`, which the
 * kernel writes (the residual stream) and then normalizes.
 */
function forwardBindings(residual: boolean): string {
  const [access, sums] = residual ? ["read_write", 2] : ["read", 0];
  return /* wgsl */ `
struct Params {
  rows: u32, c: u32, rowOffset: u32, inOffset: u32, outOffset: u32, eps: f32,
  aOffset: u32, bOffset: u32,
}

@group(0) @binding(0) var<storage, read_write> out: array<T>;   // (rows, C) window
@group(0) @binding(1) var<storage, read_write> mean: array<f32>;  // (N)
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;  // (N)
@group(0) @binding(3) var<storage, ${access}> inp: array<T>;  // (rows, C) window
${
    residual
      ? `@group(0) @binding(4) var<storage, read> resA: array<T>;       // (rows, C) window
@group(0) @binding(5) var<storage, read> resB: array<T>;       // (rows, C) window`
      : ""
  }
@group(0) @binding(${4 + sums}) var<storage, read> weight: array<T>;      // (C)
@group(0) @binding(${5 + sums}) var<storage, read> bias: array<T>;        // (C)
@group(0) @binding(${6 + sums}) var<uniform> params: Params;`;
}

/**
 * The forward kernels' binding kinds, in {@linkcode forwardBindings}' order: with the residual,
 * `inp` (the sum) is written and a, b are read.
 */
function forwardBindingKinds({ residual }: LayernormForwardConstants): BindingKind[] {
  const sums: BindingKind[] = residual === 1 ? ["write", "read", "read"] : ["read"];
  return ["write", "write", "write", ...sums, "read", "read", "uniform"];
}

/**
 * WGSL of the forward, one workgroup per row: two tree reductions (mean, then variance). Kept as
 * the default on a GPU, where its loads coalesce (see {@linkcode LayernormPerRow}). The `c` and
 * offsets of its uniform count elements of `width` floats.
 */
export const layernormForwardKernel: Kernel<LayernormForwardConstants> = {
  name: "layernorm_forward",
  bindings: forwardBindingKinds,
  wgsl: perRowWgsl(
    forwardBindings,
    ({ wg, width, total, residual }) => /* wgsl */ `
  let floats = f32(c * ${width}u);
  let x = params.inOffset + row * c;
  let y = params.outOffset + row * c;
  var sum = T(0.0);
  for (var i = lid; i < c; i += ${wg}u) {
${
      residual
        // Each invocation reads back only the elements it wrote: no barrier needed.
        ? `    let v = resA[params.aOffset + row * c + i] + resB[params.bOffset + row * c + i];
    inp[x + i] = v;
    sum += v;`
        : "    sum += inp[x + i];"
    }
  }
  let m = workgroupSum(lid, ${total("sum")}) / floats;
  // Two passes (mean, then squared deviations) rather than E[x^2] - m^2, which cancels badly.
  var sq = T(0.0);
  for (var i = lid; i < c; i += ${wg}u) { let d = inp[x + i] - m; sq += d * d; }
  let s = inverseSqrt(workgroupSum(lid, ${total("sq")}) / floats + params.eps);
  for (var i = lid; i < c; i += ${wg}u) {
    out[y + i] = (inp[x + i] - m) * s * weight[i] + bias[i];
  }
  if (lid == 0u) {
    mean[params.rowOffset + row] = m;
    rstd[params.rowOffset + row] = s;
  }`,
    workgroupSumWgsl,
  ),
};

/**
 * WGSL of the forward on a CPU adapter, a block of 8 rows per workgroup (see
 * {@linkcode LayernormPerRow}): first a row per invocation, one pass for the row's sums shifted
 * by its first element (so that `Σd² - (Σd)²/C` does not cancel for rows far from zero); then,
 * after one barrier, columns per invocation: each loads a column's weight and bias once and
 * writes it for all 8 rows. Rows past the end are clamped to the last (written again with the
 * same values by the same invocation), so every invocation reaches the barrier.
 */
export const layernormForwardRowsKernel: Kernel<LayernormForwardConstants> = {
  name: "layernorm_forward_rows",
  bindings: forwardBindingKinds,
  wgsl: ({ workgroupSize: wg, width, residual }) => {
    const { T, total } = vector(width);
    const rows = Array.from({ length: wg }, (_, r) => r);
    // With the residual, the input element is a + b, written once (by the row's own lane).
    const element = residual
      ? (at: string) => `resA[params.aOffset + ${at}] + resB[params.bOffset + ${at}]`
      : (at: string) => `inp[params.inOffset + ${at}]`;
    return /* wgsl */ `
alias T = ${T};
${forwardBindings(residual === 1)}

var<workgroup> stats: array<vec2f, ${wg}>;  // (mean, rstd) of the block's rows

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wid.x + wid.y * groups.x) * ${wg}u;
  let last = params.rows - 1u;
  let c = params.c;
  let floats = f32(c * ${width}u);
  {
    let row = min(first + lid, last);
    let shift = (${element("row * c")})${width === 4 ? ".x" : ""};
    var sum = T(0.0);
    var sq = T(0.0);
    for (var i = 0u; i < c; i++) {
      let v = ${element("row * c + i")};
${
      residual
        ? `      if (first + lid <= last) { inp[params.inOffset + row * c + i] = v; }
`
        : ""
    }      let d = v - shift;
      sum += d;
      sq += d * d;
    }
    let dm = ${total("sum")} / floats;
    let m = shift + dm;
    let s = inverseSqrt(max(${total("sq")} / floats - dm * dm, 0.0) + params.eps);
    stats[lid] = vec2f(m, s);
    if (first + lid <= last) {
      mean[params.rowOffset + row] = m;
      rstd[params.rowOffset + row] = s;
    }
  }
  ${
      residual
        ? "storageBarrier(); // the sums, written by the rows' lanes, are read by columns"
        : ""
    }
  workgroupBarrier();
${rows.map((r) => `  let st${r} = stats[${r}u];`).join("\n")}
${
      rows.map((r) =>
        `  let x${r} = params.inOffset + min(first + ${r}u, last) * c;\n` +
        `  let y${r} = params.outOffset + min(first + ${r}u, last) * c;`
      ).join("\n")
    }
  for (var j = lid; j < c; j += ${wg}u) {
    let w = weight[j];
    let b = bias[j];
${
      rows.map((r) => `    out[y${r} + j] = (inp[x${r} + j] - st${r}.x) * st${r}.y * w + b;`).join(
        "\n",
      )
    }
  }
}
`;
  },
};

const BACKWARD_INPUT_BINDINGS = /* wgsl */ `
struct Params { rows: u32, c: u32, rowOffset: u32, inOffset: u32, doutOffset: u32, dinpOffset: u32 }

@group(0) @binding(0) var<storage, read_write> dinp: array<T>;  // (rows, C) window
@group(0) @binding(1) var<storage, read> dout: array<T>;        // (rows, C) window
@group(0) @binding(2) var<storage, read> inp: array<T>;         // (rows, C) window
@group(0) @binding(3) var<storage, read> weight: array<T>;      // (C)
@group(0) @binding(4) var<storage, read> mean: array<f32>;      // (N)
@group(0) @binding(5) var<storage, read> rstd: array<f32>;      // (N)
@group(0) @binding(6) var<uniform> params: Params;`;

/**
 * WGSL of the backward's `dinp +=`, one workgroup per row: one paired tree reduction. The
 * default on a GPU (see {@linkcode LayernormPerRow}).
 */
export const layernormBackwardInputKernel: Kernel<LayernormConstants> = {
  name: "layernorm_backward_input",
  bindings: ["write", "read", "read", "read", "read", "read", "uniform"],
  wgsl: perRowWgsl(
    BACKWARD_INPUT_BINDINGS,
    ({ wg, width, total }) => /* wgsl */ `
  let m = mean[params.rowOffset + row];
  let s = rstd[params.rowOffset + row];
  let x = params.inOffset + row * c;
  let g = params.doutOffset + row * c;
  // Both row means the input gradient needs: of dnorm = dout * weight, and of dnorm * norm.
  var dnormSum = T(0.0);
  var dnormNormSum = T(0.0);
  for (var i = lid; i < c; i += ${wg}u) {
    let dnorm = dout[g + i] * weight[i];
    dnormSum += dnorm;
    dnormNormSum += dnorm * (inp[x + i] - m) * s;
  }
  partial[lid] = vec2f(${total("dnormSum")}, ${total("dnormNormSum")});
  workgroupBarrier();
  for (var stride = ${wg / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
  let means = partial[0] / f32(c * ${width}u);
  let d = params.dinpOffset + row * c;
  for (var i = lid; i < c; i += ${wg}u) {
    let norm = (inp[x + i] - m) * s;
    let dnorm = dout[g + i] * weight[i];
    dinp[d + i] += (dnorm - means.x - norm * means.y) * s;
  }`,
    (wg) => `var<workgroup> partial: array<vec2f, ${wg}>;`,
  ),
};

/**
 * WGSL of the backward but its final parameter sum, on a CPU adapter: a block of 8 rows per
 * workgroup (see {@linkcode LayernormPerRow}).
 *
 * 1. A row per invocation: the row sums `dinp` needs, `Σ dnorm` and `Σ dnorm·norm` (dnorm =
 *    dout·weight), shared through workgroup memory after one barrier. Walking a row, every
 *    invocation reads the same `weight[j]`, which lavapipe loads once for the SIMD vector.
 * 2. Column layout (invocation `lid` takes columns lid, lid + 8, ... of all 8 rows, loading a
 *    column's weight once for 8 rows): `dinp += (dnorm - mean(dnorm) - norm · mean(dnorm·norm))
 *    · rstd`, and the block's `(Σ dout·norm, Σ dout)` per column into `partials[block]`, which
 *    {@linkcode layernormBackwardParamsKernel} adds over the blocks in order.
 *
 * Each element is read 5 times and written once (dout and inp twice, dinp once). The first
 * pass in column layout as well (each invocation holding 16 partial row sums, added in
 * workgroup memory) took 3-11% longer (1024×768: 1.94 against 1.88 ms; 8192×96: 2.44 against
 * 2.17 ms). Rows past the end are clamped to the last, with an rstd of 0 and no part in dbias,
 * so they add nothing and every invocation reaches the barrier.
 */
export const layernormBackwardInputRowsKernel: Kernel<LayernormConstants> = {
  name: "layernorm_backward_rows",
  bindings: ["write", "write", "read", "read", "read", "read", "read", "uniform"],
  wgsl: ({ workgroupSize: wg, width }) => {
    const { T, total } = vector(width);
    const each = (indent: string, line: (r: number) => string) =>
      Array.from({ length: wg }, (_, r) => line(r).replaceAll("\n", `\n${indent}`))
        .map((l) => indent + l).join("\n");
    return /* wgsl */ `
alias T = ${T};
struct Params {
  rows: u32, c: u32, rowOffset: u32, inOffset: u32, doutOffset: u32, dinpOffset: u32,
  blockOffset: u32,
}

@group(0) @binding(0) var<storage, read_write> dinp: array<T>;      // (rows, C) window
@group(0) @binding(1) var<storage, read_write> partials: array<T>;  // (blocks, 2, C)
@group(0) @binding(2) var<storage, read> dout: array<T>;            // (rows, C) window
@group(0) @binding(3) var<storage, read> inp: array<T>;             // (rows, C) window
@group(0) @binding(4) var<storage, read> weight: array<T>;          // (C)
@group(0) @binding(5) var<storage, read> mean: array<f32>;          // (N)
@group(0) @binding(6) var<storage, read> rstd: array<f32>;          // (N)
@group(0) @binding(7) var<uniform> params: Params;

// Row lid's (Σ dnorm, Σ dnorm·norm).
var<workgroup> sums: array<vec2f, ${wg}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let block = wid.x + wid.y * groups.x;
  let first = block * ${wg}u;
  let last = params.rows - 1u;
  let c = params.c;
  let p = (params.blockOffset + block) * 2u * c;
${
      each("  ", (r) =>
        `let row${r} = min(first + ${r}u, last);
let on${r} = select(0.0, 1.0, first + ${r}u <= last);
let m${r} = mean[params.rowOffset + row${r}];
let s${r} = rstd[params.rowOffset + row${r}] * on${r};`)
    }
  {
    let row = min(first + lid, last);
    let m = mean[params.rowOffset + row];
    let s = rstd[params.rowOffset + row];
    let g0 = params.doutOffset + row * c;
    let x0 = params.inOffset + row * c;
    var a = T(0.0);
    var b = T(0.0);
    for (var j = 0u; j < c; j++) {
      let dnorm = dout[g0 + j] * weight[j];
      a += dnorm;
      b = fma(dnorm, (inp[x0 + j] - m) * s, b);
    }
    sums[lid] = vec2f(${total("a")}, ${total("b")});
  }
  workgroupBarrier();
  let floats = f32(c * ${width}u);
${each("  ", (r) => `let t${r} = sums[${r}u] / floats;`)}
  for (var j = lid; j < c; j += ${wg}u) {
    let w = weight[j];
    var dw = T(0.0);
    var db = T(0.0);
${
      each("    ", (r) =>
        `{
  let g = dout[params.doutOffset + row${r} * c + j];
  let norm = (inp[params.inOffset + row${r} * c + j] - m${r}) * s${r};
  let d = params.dinpOffset + row${r} * c + j;
  dinp[d] += (g * w - t${r}.x - norm * t${r}.y) * s${r};
  dw += g * norm;
  db = fma(g, T(on${r}), db);
}`)
    }
    partials[p + j] = dw;
    partials[p + c + j] = db;
  }
}
`;
  },
};

/**
 * WGSL of the backward's parameter partial sums: invocation (block, column) walks the rows of
 * its block in order and writes `partials[block] = (sum dout·norm, sum dout)` for its column
 * (`width` floats).
 */
export const layernormBackwardPartialsKernel: Kernel<LayernormConstants> = {
  name: "layernorm_backward_partials",
  bindings: ["write", "read", "read", "read", "read", "uniform"],
  wgsl: ({ workgroupSize: wg, width }) => /* wgsl */ `
alias T = ${vector(width).T};
struct Params {
  rows: u32, c: u32, rowOffset: u32, inOffset: u32, doutOffset: u32,
  rowsPerBlock: u32, blockOffset: u32,
}

@group(0) @binding(0) var<storage, read_write> partials: array<T>;  // (blocks, 2, C)
@group(0) @binding(1) var<storage, read> dout: array<T>;            // (rows, C) window
@group(0) @binding(2) var<storage, read> inp: array<T>;             // (rows, C) window
@group(0) @binding(3) var<storage, read> mean: array<f32>;          // (N)
@group(0) @binding(4) var<storage, read> rstd: array<f32>;          // (N)
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let col = gid.x;
  let c = params.c;
  if (col >= c) { return; }
  let block = gid.y;
  let start = block * params.rowsPerBlock;
  let end = min(start + params.rowsPerBlock, params.rows);
  var dw = T(0.0);
  var db = T(0.0);
  for (var row = start; row < end; row++) {
    let n = params.rowOffset + row;
    let g = dout[params.doutOffset + row * c + col];
    dw += g * (inp[params.inOffset + row * c + col] - mean[n]) * rstd[n];
    db += g;
  }
  let p = (params.blockOffset + block) * 2u * c + col;
  partials[p] = dw;
  partials[p + c] = db;
}
`,
};

/** WGSL of the backward's final pass: adds the blocks' partial sums in block order. */
export const layernormBackwardParamsKernel: Kernel<LayernormConstants> = {
  name: "layernorm_backward_params",
  bindings: ["write", "write", "read", "uniform"],
  wgsl: ({ workgroupSize: wg, width }) => /* wgsl */ `
alias T = ${vector(width).T};
struct Params { c: u32, blocks: u32 }

@group(0) @binding(0) var<storage, read_write> dweight: array<T>;  // (C)
@group(0) @binding(1) var<storage, read_write> dbias: array<T>;    // (C)
@group(0) @binding(2) var<storage, read> partials: array<T>;       // (blocks, 2, C)
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let col = gid.x;
  let c = params.c;
  if (col >= c) { return; }
  var dw = T(0.0);
  var db = T(0.0);
  for (var b = 0u; b < params.blocks; b++) {
    dw += partials[b * 2u * c + col];
    db += partials[b * 2u * c + c + col];
  }
  dweight[col] += dw;
  dbias[col] += db;
}
`,
};

function checkShapes(n: number, c: number): void {
  if (!Number.isInteger(n) || !Number.isInteger(c) || n < 0 || c < 1) {
    throw new RangeError(
      `Layernorm needs whole sizes N >= 0 and C >= 1, got N=${n}, C=${c}; pass the shape of ` +
        "the (N, C) input.",
    );
  }
}

/** Options of {@linkcode layernormForward} and {@linkcode layernormBackward}. */
export interface LayernormOptions {
  /**
   * How a row is shared out; default `invocation` on a CPU adapter, `workgroup` on a GPU (see
   * {@linkcode LayernormPerRow}). Benchmarks and tests choose.
   */
  perRow?: LayernormPerRow;
}

/** The row layout, loads and launch shape of a layernorm over rows of `c` floats on `gpu`. */
function layout(gpu: Gpu, c: number, options: LayernormOptions) {
  const perRow = options.perRow ?? (gpu.adapter.isCpu ? "invocation" : "workgroup");
  const width = c % 4 === 0 ? 4 : 1;
  const vectors = c / width;
  // Enough invocations to cover the row once, at most ROW_WORKGROUP: a power of two >= 32.
  const rowWorkgroup = Math.min(ROW_WORKGROUP, Math.max(32, 2 ** Math.ceil(Math.log2(vectors))));
  const workgroupSize = perRow === "invocation" ? ROWS_PER_WORKGROUP : rowWorkgroup;
  return {
    perRow,
    width,
    vectors,
    constants: { workgroupSize, width },
    /** Workgroups for `rows` rows. */
    grid: (rows: number) =>
      grid2d(perRow === "invocation" ? Math.ceil(rows / ROWS_PER_WORKGROUP) : rows),
  };
}

/** The buffers of a layernorm forward, by name (so that two swapped buffers do not type-check). */
export interface LayernormForwardBuffers {
  /** (N, C) normalized, scaled and shifted output, written. */
  out: GPUBuffer;
  /** (N) row means, written, saved for the backward. */
  mean: GPUBuffer;
  /** (N) reciprocal standard deviations, written, saved for the backward. */
  rstd: GPUBuffer;
  /** (N, C) input. */
  inp: GPUBuffer;
  /** (C) scale. */
  weight: GpuFloats;
  /** (C) shift. */
  bias: GpuFloats;
}

/**
 * Records the layernorm forward over the last dim of `inp`.
 *
 * @param buffers the tensors, by name (so that two swapped buffers do not type-check)
 */
export async function layernormForward(
  gpu: Gpu,
  buffers: LayernormForwardBuffers,
  n: number,
  c: number,
  options: LayernormOptions = {},
): Promise<void> {
  await runForward(gpu, buffers, null, n, c, options);
}

/**
 * Records the residual connection and the layernorm after it in one launch (llm.c's fused
 * residual forward): `sum = a + b` is written, and `out = layernorm(sum)` as
 * {@linkcode layernormForward} makes it, bit for bit. GPT-2's block ends in both: the residual
 * stream goes on to the next block, and its normalization feeds the next branch. The sum is
 * read back once, by the normalization, instead of a second launch reading it again.
 *
 * @param buffers the tensors, by name; `inp` is where the sum is written.
 */
export async function residualLayernormForward(
  gpu: Gpu,
  buffers: LayernormForwardBuffers & {
    /** (N, C) residual stream before the branch. */
    a: GPUBuffer;
    /** (N, C) branch output. */
    b: GPUBuffer;
  },
  n: number,
  c: number,
  options: LayernormOptions = {},
): Promise<void> {
  const { a, b } = buffers;
  if (a === buffers.inp || b === buffers.inp) {
    throw new Error("The residual layernorm writes the sum to `inp`: give it a buffer of its own.");
  }
  await runForward(gpu, buffers, { a, b }, n, c, options);
}

/** The forward of {@linkcode layernormForward}, of the residual sum `a + b` where given. */
async function runForward(
  gpu: Gpu,
  buffers: LayernormForwardBuffers,
  residual: { a: GPUBuffer; b: GPUBuffer } | null,
  n: number,
  c: number,
  options: LayernormOptions,
): Promise<void> {
  const { out, mean, rstd, inp, weight, bias } = buffers;
  checkShapes(n, c);
  if (n === 0) return;
  assertFits("out", out, n * c);
  assertFits("inp", inp, n * c);
  if (residual) {
    assertFits("a", residual.a, n * c);
    assertFits("b", residual.b, n * c);
  }
  for (
    const [name, b, size] of [["mean", mean, n], ["rstd", rstd, n], ["weight", weight, c], [
      "bias",
      bias,
      c,
    ]] as const
  ) assertFits(name, b, size);
  const shape = layout(gpu, c, options);
  const kernel = shape.perRow === "invocation"
    ? layernormForwardRowsKernel
    : layernormForwardKernel;
  const constants = { ...shape.constants, residual: residual ? 1 : 0 };
  for (const { first, count } of rowParts(gpu, n, c)) {
    const window = (buffer: GPUBuffer) => bufferWindow(gpu, buffer, first * c, count * c);
    const x = window(inp), y = window(out);
    const sums = residual ? [window(residual.a), window(residual.b)] : [];
    const params = gpu.uniform(uniforms({
      rows: ["u32", count],
      c: ["u32", shape.vectors],
      rowOffset: ["u32", first],
      inOffset: ["u32", x.elementOffset / shape.width],
      outOffset: ["u32", y.elementOffset / shape.width],
      eps: ["f32", LAYERNORM_EPS],
      aOffset: ["u32", (sums[0]?.elementOffset ?? 0) / shape.width],
      bOffset: ["u32", (sums[1]?.elementOffset ?? 0) / shape.width],
    }));
    await gpu.run(
      kernel,
      constants,
      [
        y.binding,
        head(mean, n),
        head(rstd, n),
        x.binding,
        ...sums.map((w) => w.binding),
        head(weight, c),
        head(bias, c),
        params,
      ],
      shape.grid(count),
    );
  }
}

/**
 * Records the layernorm backward. Every output ACCUMULATES (llm.c): `dinp +=`, `dweight +=`,
 * `dbias +=`; the parameter sums are deterministic (fixed blocks, fixed order).
 *
 * @param buffers the tensors, by name (so that two swapped buffers do not type-check)
 */
export async function layernormBackward(
  gpu: Gpu,
  buffers: {
    /** (N, C) gradient of the input, accumulated. */
    dinp: GpuFloats;
    /** (C) gradient of the scale, accumulated. */
    dweight: GpuFloats;
    /** (C) gradient of the shift, accumulated. */
    dbias: GpuFloats;
    /** (N, C) gradient of the output. */
    dout: GPUBuffer;
    /** (N, C) the forward's input. */
    inp: GPUBuffer;
    /** (C) the forward's scale. */
    weight: GpuFloats;
    /** (N) row means, saved by the forward. */
    mean: GPUBuffer;
    /** (N) reciprocal standard deviations, saved by the forward. */
    rstd: GPUBuffer;
  },
  n: number,
  c: number,
  options: LayernormOptions = {},
): Promise<void> {
  const { dinp, dweight, dbias, dout, inp, weight, mean, rstd } = buffers;
  checkShapes(n, c);
  if (n === 0) return;
  for (const [name, b] of [["dinp", dinp], ["dout", dout], ["inp", inp]] as const) {
    assertFits(name, b, n * c);
  }
  for (const [name, b] of [["dweight", dweight], ["dbias", dbias], ["weight", weight]] as const) {
    assertFits(name, b, c);
  }
  assertFits("mean", mean, n);
  assertFits("rstd", rstd, n);

  const fit = Math.floor(
    (gpu.maxBinding - gpu.device.limits.minStorageBufferOffsetAlignment) / (c * 4),
  );
  let shape = layout(gpu, c, options);
  // The block kernel's partials (N/8 blocks of 2C floats) must fit one binding; past that (N·C
  // over 128M on lavapipe, or a small binding limit) the workgroup-per-row kernels do the work.
  if (
    shape.perRow === "invocation" &&
    (Math.ceil(n / ROWS_PER_WORKGROUP) * 2 * c * 4 > gpu.maxBinding || fit < ROWS_PER_WORKGROUP)
  ) {
    shape = layout(gpu, c, { perRow: "workgroup" });
  }
  const { width, vectors } = shape;
  // Column kernels: 8 invocations a workgroup on a CPU adapter, so that the final sum over the
  // blocks is shared out over more workgroups; 64 on a GPU.
  const columns = { workgroupSize: gpu.adapter.isCpu ? 8 : COLUMN_WORKGROUP, width };
  // Blocks of rows, each summed into its own slot of `partials`, then the slots added in order:
  // 8 rows for the block kernel; for a row per workgroup, 128 (at most 1024 blocks, so the
  // partials stay small for any N), fewer when a block would not fit one binding.
  const rowsPerBlock = shape.perRow === "invocation"
    ? ROWS_PER_WORKGROUP
    : Math.max(1, Math.min(Math.max(128, Math.ceil(n / 1024)), fit));
  const blocks = Math.ceil(n / rowsPerBlock);
  const partials = gpu.acquire(blocks * 2 * c * 4);
  for (const { first, count } of rowParts(gpu, n, c, rowsPerBlock)) {
    const x = bufferWindow(gpu, inp, first * c, count * c);
    const g = bufferWindow(gpu, dout, first * c, count * c);
    const d = bufferWindow(gpu, dinp, first * c, count * c);
    // The uniform's fields that both layouts' kernels start with (bare numbers are u32).
    const offsets = {
      rows: count,
      c: vectors,
      rowOffset: first,
      inOffset: x.elementOffset / width,
      doutOffset: g.elementOffset / width,
    };
    if (shape.perRow === "invocation") {
      const params = gpu.uniform(uniforms({
        ...offsets,
        dinpOffset: d.elementOffset / width,
        blockOffset: first / rowsPerBlock,
      }));
      await gpu.run(
        layernormBackwardInputRowsKernel,
        shape.constants,
        [
          d.binding,
          partials,
          g.binding,
          x.binding,
          head(weight, c),
          head(mean, n),
          head(rstd, n),
          params,
        ],
        grid2d(Math.ceil(count / rowsPerBlock)),
      );
      continue;
    }
    const inputParams = gpu.uniform(uniforms({ ...offsets, dinpOffset: d.elementOffset / width }));
    await gpu.run(
      layernormBackwardInputKernel,
      shape.constants,
      [d.binding, g.binding, x.binding, head(weight, c), head(mean, n), head(rstd, n), inputParams],
      shape.grid(count),
    );
    const partialParams = gpu.uniform(uniforms({
      ...offsets,
      rowsPerBlock,
      blockOffset: first / rowsPerBlock,
    }));
    await gpu.run(
      layernormBackwardPartialsKernel,
      columns,
      [partials, g.binding, x.binding, head(mean, n), head(rstd, n), partialParams],
      [Math.ceil(vectors / columns.workgroupSize), Math.ceil(count / rowsPerBlock)],
    );
  }
  const params = gpu.uniform(uniforms({ c: ["u32", vectors], blocks: ["u32", blocks] }));
  await gpu.run(
    layernormBackwardParamsKernel,
    columns,
    [head(dweight, c), head(dbias, c), partials, params],
    [Math.ceil(vectors / columns.workgroupSize)],
  );
  gpu.release(partials);
}

/** CPU reference of {@linkcode layernormForward}; arithmetic in float64, stored in `out`'s type. */
export function layernormForwardCpu(
  out: Floats,
  mean: Floats,
  rstd: Floats,
  inp: Floats,
  weight: Floats,
  bias: Floats,
  n: number,
  c: number,
): void {
  for (let row = 0; row < n; row++) {
    const x = row * c;
    let sum = 0;
    for (let i = 0; i < c; i++) sum += inp[x + i];
    const m = sum / c;
    let sq = 0;
    for (let i = 0; i < c; i++) sq += (inp[x + i] - m) ** 2;
    const s = 1 / Math.sqrt(sq / c + LAYERNORM_EPS);
    for (let i = 0; i < c; i++) out[x + i] = (inp[x + i] - m) * s * weight[i] + bias[i];
    mean[row] = m;
    rstd[row] = s;
  }
}

/** CPU reference of {@linkcode residualLayernormForward}: writes `sum = a + b`, then normalizes it. */
export function residualLayernormForwardCpu(
  sum: Floats,
  out: Floats,
  mean: Floats,
  rstd: Floats,
  a: Floats,
  b: Floats,
  weight: Floats,
  bias: Floats,
  n: number,
  c: number,
): void {
  for (let i = 0; i < n * c; i++) sum[i] = a[i] + b[i];
  layernormForwardCpu(out, mean, rstd, sum, weight, bias, n, c);
}

/**
 * CPU reference of {@linkcode layernormBackward}: accumulates into `dinp`, `dweight`, `dbias`.
 */
export function layernormBackwardCpu(
  dinp: Floats,
  dweight: Floats,
  dbias: Floats,
  dout: Floats,
  inp: Floats,
  weight: Floats,
  mean: Floats,
  rstd: Floats,
  n: number,
  c: number,
): void {
  for (let row = 0; row < n; row++) {
    const x = row * c, m = mean[row], s = rstd[row];
    let dnormMean = 0, dnormNormMean = 0;
    for (let i = 0; i < c; i++) {
      const dnorm = dout[x + i] * weight[i];
      dnormMean += dnorm;
      dnormNormMean += dnorm * (inp[x + i] - m) * s;
    }
    dnormMean /= c;
    dnormNormMean /= c;
    for (let i = 0; i < c; i++) {
      const norm = (inp[x + i] - m) * s;
      const dnorm = dout[x + i] * weight[i];
      dinp[x + i] += (dnorm - dnormMean - norm * dnormNormMean) * s;
      dweight[i] += dout[x + i] * norm;
      dbias[i] += dout[x + i];
    }
  }
}
