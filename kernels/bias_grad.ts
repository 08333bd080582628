/**
 * The bias gradient of a linear layer: `dbias (OC) += column sums of dout (BT, OC)`. A parameter
 * gradient, so it accumulates (+=), as in llm.c.
 *
 * Deterministic: each invocation owns one column and sums its rows in order, so the result is
 * the same bits on every run (no atomics, no order that depends on scheduling). Rows are
 * processed in parts whose window fits one binding; each part adds to `dbias` in turn.
 *
 * @module
 */

import { rowParts } from "./_parts.ts";
import { bufferWindow, type Gpu, grid2d, type Kernel, uniforms } from "./device.ts";

/** Compile-time constants of {@linkcode biasGradKernel}. */
export interface BiasGradConstants extends Record<string, number> {
  /** Invocations (columns) per workgroup. */
  workgroupSize: number;
}

/** WGSL of the column sums; invocation `i` owns column `i` and loops over the rows. */
export const biasGradKernel: Kernel<BiasGradConstants> = {
  name: "bias_grad",
  bindings: ["read", "write", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { rows: u32, cols: u32, offset: u32 }

@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let col = (wid.x + wid.y * groups.x) * ${workgroupSize}u + lid;
  if (col >= p.cols) {
    return;
  }
  var sum = 0.0;
  for (var r = 0u; r < p.rows; r++) {
    sum += dout[p.offset + r * p.cols + col];
  }
  dbias[col] += sum;
}
`,
};

const WORKGROUP_SIZE = 64;

/**
 * Records `dbias (cols) += column sums of dout (rows, cols)`.
 *
 * @param maxBinding lowers the window limit (tests use it to exercise the split).
 */
export async function biasGrad(
  gpu: Gpu,
  dbias: GPUBuffer,
  dout: GPUBuffer,
  rows: number,
  cols: number,
  maxBinding = gpu.maxBinding,
): Promise<void> {
  if (rows === 0 || cols === 0) return;
  for (const { first, count } of rowParts(gpu, rows, cols, 1, maxBinding)) {
    const window = bufferWindow(gpu, dout, first * cols, count * cols);
    const params = gpu.uniform(uniforms({
      rows: ["u32", count],
      cols: ["u32", cols],
      offset: ["u32", window.elementOffset],
    }));
    await gpu.run(
      biasGradKernel,
      { workgroupSize: WORKGROUP_SIZE },
      [window.binding, dbias, params],
      grid2d(Math.ceil(cols / WORKGROUP_SIZE)),
    );
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
