/**
 * The bias gradient of a linear layer: `dbias (OC) += column sums of dout (BT, OC)`. A parameter
 * gradient, so it accumulates (+=), as in llm.c.
 *
 * Deterministic: every column's rows are added in an order fixed by the shape alone (no atomics,
 * nothing that depends on scheduling), so the result is the same bits on every run. Rows are
 * processed in parts whose window fits one binding; each part adds to `dbias` in turn (in the GPU
 * layout below, each part with its own blocks and second pass).
 *
 * Two layouts, by adapter:
 * - A CPU adapter (lavapipe), one pass: each invocation owns up to four columns of four floats
 *   (`vec4f`), the 8 invocations of a workgroup (one SIMD vector) neighbouring ones, and walks
 *   every row of the part, even rows into one accumulator and odd rows into another, then adds
 *   both to `dbias`. Two cores need only a few workgroups, and one invocation walking a column
 *   keeps its loads streaming; what cost time before was one float a load and a single chain of
 *   adds (measured: 2048×1536, 4.1 GB/s with one float column an invocation, 13 GB/s so).
 * - A GPU, two passes: a workgroup of 64 invocations sums a block of 64 rows of 64 neighbouring
 *   columns into a partials buffer (the work spread over rows as well as columns: 2048×384 is
 *   3072 invocations, not 96), then one invocation per column adds its blocks' partials in
 *   order to `dbias`.
 *
 * @module
 */

import { head, rowParts } from "./_parts.ts";
import { bufferWindow, type Gpu, type GpuFloats, grid2d, type Kernel, uniforms } from "./device.ts";

/** Compile-time constants of {@linkcode biasGradKernel}. */
export interface BiasGradConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
  /** Floats per load: 4 (`vec4f`, when OC is a multiple of 4) or 1. */
  width: number;
  /** Columns (of `width` floats) per invocation, `workgroupSize` apart. */
  columnsPerInvocation: number;
}

/** The WGSL element type of `width` floats. */
function elementType(width: number): string {
  return width === 4 ? "vec4f" : "f32";
}

/**
 * WGSL of the one-pass column sums (a CPU adapter): invocation `i` of workgroup `w` owns columns
 * `w·wg·J + i + j·wg` for `j < J`, and adds the even rows and the odd rows of each apart.
 */
export const biasGradKernel: Kernel<BiasGradConstants> = {
  name: "bias_grad",
  bindings: ["read", "write", "uniform"],
  wgsl: ({ workgroupSize: wg, width, columnsPerInvocation: J }) => {
    const T = elementType(width);
    const each = (line: (j: number) => string) =>
      Array.from({ length: J }, (_, j) => line(j)).join("\n  ");
    return /* wgsl */ `
struct Params { rows: u32, cols: u32, offset: u32 }

@group(0) @binding(0) var<storage, read> dout: array<${T}>;         // (rows, cols) window
@group(0) @binding(1) var<storage, read_write> dbias: array<${T}>;  // (cols)
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wid.x + wid.y * groups.x) * ${wg * J}u + lid;
  if (first >= p.cols) { return; }
  // A column past the end reads the last one instead (its sums are not stored): the row loop
  // has no branch.
  ${each((j) => `let c${j} = min(first + ${j * wg}u, p.cols - 1u);`)}
  ${each((j) => `var even${j} = ${T}(0.0);\n  var odd${j} = ${T}(0.0);`)}
  var at = p.offset;
  var r = 0u;
  for (; r + 2u <= p.rows; r += 2u) {
    ${each((j) => `even${j} += dout[at + c${j}];\n    odd${j} += dout[at + p.cols + c${j}];`)}
    at += 2u * p.cols;
  }
  if (r < p.rows) {
    ${each((j) => `even${j} += dout[at + c${j}];`)}
  }
  ${each((j) => `if (first + ${j * wg}u < p.cols) { dbias[c${j}] += even${j} + odd${j}; }`)}
}
`;
  },
};

/** Compile-time constants of the two GPU passes. */
export interface BiasGradPassConstants extends Record<string, number> {
  /** Invocations (columns) per workgroup. */
  workgroupSize: number;
  /** Floats per load: 4 (`vec4f`, when OC is a multiple of 4) or 1. */
  width: number;
}

/** Rows per block of the GPU layout's first pass. */
const GPU_ROW_BLOCK = 64;

/**
 * WGSL of the GPU layout's first pass: workgroup (block b, column group g) sums rows
 * `[b·64, b·64 + 64)` of columns `g·wg ..` into `partials[b, col]`, the rows in order.
 */
export const biasGradPartialsKernel: Kernel<BiasGradPassConstants> = {
  name: "bias_grad_partials",
  bindings: ["read", "write", "uniform"],
  wgsl: ({ workgroupSize: wg, width }) => {
    const T = elementType(width);
    return /* wgsl */ `
struct Params { rows: u32, cols: u32, offset: u32, columnGroups: u32 }

@group(0) @binding(0) var<storage, read> dout: array<${T}>;            // (rows, cols) window
@group(0) @binding(1) var<storage, read_write> partials: array<${T}>;  // (blocks, cols)
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * groups.x;
  let block = w / p.columnGroups;
  let col = (w % p.columnGroups) * ${wg}u + lid;
  let first = block * ${GPU_ROW_BLOCK}u;
  if (col >= p.cols || first >= p.rows) { return; }
  let end = min(first + ${GPU_ROW_BLOCK}u, p.rows);
  var sum = ${T}(0.0);
  for (var r = first; r < end; r++) { sum += dout[p.offset + r * p.cols + col]; }
  partials[block * p.cols + col] = sum;
}
`;
  },
};

/** WGSL of the GPU layout's second pass: `dbias[col] += partials[0, col] + partials[1, col] ...`. */
export const biasGradFinalKernel: Kernel<BiasGradPassConstants> = {
  name: "bias_grad_final",
  bindings: ["read", "write", "uniform"],
  wgsl: ({ workgroupSize: wg, width }) => {
    const T = elementType(width);
    return /* wgsl */ `
struct Params { blocks: u32, cols: u32 }

@group(0) @binding(0) var<storage, read> partials: array<${T}>;     // (blocks, cols)
@group(0) @binding(1) var<storage, read_write> dbias: array<${T}>;  // (cols)
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let col = (wid.x + wid.y * groups.x) * ${wg}u + lid;
  if (col >= p.cols) { return; }
  var sum = partials[col];
  for (var b = 1u; b < p.blocks; b++) { sum += partials[b * p.cols + col]; }
  dbias[col] += sum;
}
`;
  },
};

/** Invocations per workgroup: one SIMD vector on a CPU adapter; 64 columns on a GPU. */
const CPU_WORKGROUP = 8;
const GPU_WORKGROUP = 64;
/** Most columns (of `width` floats) one invocation owns on a CPU adapter. */
const CPU_MAX_COLUMNS = 4;
/**
 * Workgroups a CPU adapter's launch should have at least, so that lavapipe's threads (one a
 * core) share the columns: fewer columns an invocation for narrow layers.
 */
const CPU_MIN_WORKGROUPS = 4;

/**
 * Records `dbias (cols) += column sums of dout (rows, cols)`.
 *
 * @param maxBinding lowers the window limit (tests use it to exercise the split).
 */
export async function biasGrad(
  gpu: Gpu,
  dbias: GpuFloats,
  dout: GpuFloats,
  rows: number,
  cols: number,
  maxBinding = gpu.maxBinding,
): Promise<void> {
  if (rows === 0 || cols === 0) return;
  const width = cols % 4 === 0 ? 4 : 1;
  const columns = cols / width;
  for (const { first, count } of rowParts(gpu, rows, cols, 1, maxBinding)) {
    const window = bufferWindow(gpu, dout, first * cols, count * cols);
    const offset = window.elementOffset / width;
    if (gpu.adapter.isCpu) {
      const perInvocation = Math.max(
        1,
        Math.min(CPU_MAX_COLUMNS, Math.floor(columns / (CPU_WORKGROUP * CPU_MIN_WORKGROUPS))),
      );
      const params = gpu.uniform(uniforms({ rows: count, cols: columns, offset }));
      await gpu.run(
        biasGradKernel,
        { workgroupSize: CPU_WORKGROUP, width, columnsPerInvocation: perInvocation },
        [window.binding, head(dbias, cols), params],
        grid2d(Math.ceil(columns / (CPU_WORKGROUP * perInvocation))),
      );
      continue;
    }
    const blocks = Math.ceil(count / GPU_ROW_BLOCK);
    const columnGroups = Math.ceil(columns / GPU_WORKGROUP);
    const partials = gpu.acquire(blocks * cols * 4);
    const constants = { workgroupSize: GPU_WORKGROUP, width };
    await gpu.run(
      biasGradPartialsKernel,
      constants,
      [
        window.binding,
        head(partials, blocks * cols),
        gpu.uniform(uniforms({ rows: count, cols: columns, offset, columnGroups })),
      ],
      grid2d(blocks * columnGroups),
    );
    await gpu.run(
      biasGradFinalKernel,
      constants,
      [
        head(partials, blocks * cols),
        head(dbias, cols),
        gpu.uniform(uniforms({ blocks, cols: columns })),
      ],
      grid2d(columnGroups),
    );
    gpu.release(partials);
  }
}

/** CPU reference of {@linkcode biasGrad}: `dbias[c] += Σ_r dout[r, c]`. */
export function biasGradCpu<T extends Float32Array | Float64Array>(
  dbias: T,
  dout: T,
  rows: number,
  cols: number,
): void {
  for (let c = 0; c < cols; c++) {
    let sum = 0;
    for (let r = 0; r < rows; r++) sum += dout[r * cols + c];
    dbias[c] += sum;
  }
}
