/**
 * Texture staging for the matmul: a pool of scratch `rgba32float` operand textures, and the
 * staging of a row-major matrix block into one. Private to the matmul.
 *
 * Why textures: on lavapipe (the CPU adapter) every storage-buffer load is scalarized per lane
 * with a bounds check and a branch (about ten instructions per float), while a `textureLoad` of an
 * `rgba32float` texel fetches four floats per lane at once (the matmul binds these textures as
 * read-only storage textures: a much shorter load routine than a sampled texture's). A matmul
 * whose operands are read as texels runs several times faster there; see `kernels/matmul.ts`.
 *
 * A staged operand is the stored matrix as rows of vec4s: element `(r, c)` of layer `l` is
 * component `c % 4` of texel `(c / 4, r)` in array layer `l`. Texels past the last column and rows
 * past the last are zero when `padRows` asks for it (the reduction dimension must be zero-padded
 * to a multiple of 4; the others are clamped by the kernel and need no padding).
 *
 * @module
 */

import {
  bufferOf,
  bufferWindow,
  byteOffsetOf,
  type Gpu,
  type GpuFloats,
  grid2d,
  type Kernel,
  uniforms,
} from "./device.ts";
import { elementwiseShape } from "./_parts.ts";

// ---------------------------------------------------------------------------------------------
// Scratch operand textures

const scratch = new WeakMap<Gpu, Map<string, GPUTexture>>();

/**
 * An `rgba32float` array texture for staged operands: written by copies and the pack kernel,
 * read by kernels as a (read-only storage) texture. Shared with the attention's staging.
 */
export function createOperandTexture(
  gpu: Gpu,
  label: string,
  [width, height, layers]: [number, number, number],
): GPUTexture {
  return gpu.device.createTexture({
    label: `${label} ${width}x${height}x${layers}`,
    size: [width, height, layers],
    format: "rgba32float",
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING |
      GPUTextureUsage.COPY_DST,
  });
}

/**
 * A scratch `rgba32float` array texture of at least `width` x `height` texels and `layers`
 * layers for `role` ("a" or "b"); one is reused by later matmuls, which is safe because every use
 * is recorded in order into the command stream (WebGPU orders copies and passes that touch the
 * same texture). Heights are rounded up to multiples of 64 so that few distinct textures exist.
 * Widths only to whole 64-byte cache lines (4 texels): a texture row is the row pitch the kernel
 * walks, and a staged operand narrower than its texture (rows of 512 bytes in a 1 KiB pitch, as
 * a rounding to 64 texels made them) ran the matmul's reduction up to 30% slower on lavapipe
 * and made its staging copy a copy per row.
 */
export function scratchTexture(
  gpu: Gpu,
  role: string,
  width: number,
  height: number,
  layers: number,
): GPUTexture {
  const max = gpu.device.limits.maxTextureDimension2D;
  const w = Math.min(max, Math.ceil(width / 4) * 4);
  const h = Math.min(max, Math.ceil(height / 64) * 64);
  let pool = scratch.get(gpu);
  if (!pool) scratch.set(gpu, pool = new Map());
  const key = `${role}:${w}x${h}x${layers}`;
  let texture = pool.get(key);
  if (!texture) {
    texture = createOperandTexture(gpu, `matmul operand ${role}`, [w, h, layers]);
    pool.set(key, texture);
  }
  return texture;
}

// ---------------------------------------------------------------------------------------------
// Staging: a block of a row-major matrix (or a batch of them) into a texture

/** A block of a row-major float32 matrix (per batch layer) in a buffer. */
export interface MatrixBlock {
  /** The buffer holding the matrix. */
  buffer: GpuFloats;
  /** Element index of element (0, 0) of layer 0. */
  offset: number;
  /** Elements between consecutive rows (the stored row length). */
  ld: number;
  /** Elements between consecutive batch layers. */
  batchStride: number;
  /** First row of the block. */
  row0: number;
  /** Rows of the block. */
  rows: number;
  /** First column of the block. */
  col0: number;
  /** Columns of the block. */
  cols: number;
  /** First layer of the block. */
  layer0: number;
  /** Layers of the block. */
  layers: number;
}

/** Compile-time constants of {@linkcode packKernel}. */
export interface PackConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
  /** Texels each invocation writes, `workgroupSize` apart. */
  perInvocation: number;
  /**
   * Floats per source load: 4 (a texel's four floats as one `vec4f`) when the block's columns,
   * row length, layer stride and start are all multiples of 4; else 1.
   */
  width: number;
}

/**
 * Writes a block of a row-major matrix into a texture, four columns per texel, with zeros past
 * the block's last column and row; `wid.z` is the layer. The uniform's counts are in floats.
 *
 * On lavapipe every storage load is a scalar load per lane with a bounds check, per float, and a
 * workgroup's start costs a division per lane, so the source is read as `vec4f`s where it is
 * aligned (a load per texel rather than four) and an invocation writes several texels (the
 * elementwise kernels' shape, `elementwiseShape`). The matmuls of width-96 models (the main job's,
 * whose rows of 96, 288 and 8192 x 96 are not whole 256-byte copies) stage most operands here.
 */
export const packKernel: Kernel<PackConstants> = {
  name: "matmul_pack",
  bindings: () => ["read", "storage-texture", "uniform"],
  wgsl: ({ workgroupSize: wg, perInvocation, width }) => /* wgsl */ `
struct Params {
  rows: u32,         // rows of the block with data
  cols: u32,         // columns of the block with data
  ld: u32,           // elements between source rows
  offset: u32,       // element of (row 0, col 0, layer 0) in the bound window
  batch_stride: u32, // elements between source layers
  width: u32,        // texels to write per row
  height: u32,       // rows to write (rows with data, then zero rows)
  row_base: u32,     // texture row of block row 0
  layer_base: u32,   // texture layer of block layer 0
}

@group(0) @binding(0) var<storage, read> src: array<${width === 4 ? "vec4f" : "f32"}>;
@group(0) @binding(1) var dst: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wid.x + wid.y * groups.x) * ${wg * perInvocation}u + lid;
  let layer = p.offset + wid.z * p.batch_stride;
  for (var t = 0u; t < ${perInvocation}u; t++) {
    let i = first + t * ${wg}u;
    if (i >= p.width * p.height) {
      return;
    }
    let x = i % p.width;
    let y = i / p.width;
    var v = vec4f(0.0);
    if (y < p.rows) {
${
    width === 4
      ? `      if (4u * x < p.cols) {
        v = src[(layer + y * p.ld) / 4u + x];
      }`
      : `      let base = layer + y * p.ld + 4u * x;
      for (var q = 0u; q < 4u; q++) {
        if (4u * x + q < p.cols) {
          v[q] = src[base + q];
        }
      }`
  }
    }
    textureStore(dst, vec2u(x, p.row_base + y), p.layer_base + wid.z, v);
  }
}
`,
};

/**
 * Records the staging of `block` into `texture` (rows at texture row 0, layers at layer 0). Rows
 * are padded with zero rows up to `paddedRows`. Uses a plain copy when the layout allows it
 * (row length a multiple of 256 bytes, aligned start, whole texels, no padding), else the pack
 * kernel, split so that each source window fits one binding.
 */
export async function stageBlock(
  gpu: Gpu,
  texture: GPUTexture,
  block: MatrixBlock,
  paddedRows = block.rows,
  maxBinding = gpu.maxBinding,
): Promise<void> {
  const { buffer, ld, batchStride, rows, cols, layers } = block;
  const first = block.offset + block.layer0 * batchStride + block.row0 * ld + block.col0;
  const texels = Math.ceil(cols / 4);
  const rowBytes = ld * 4;
  const imageRows = layers > 1 ? batchStride / ld : rows;
  const copyable = rowBytes % 256 === 0 && (first * 4) % 16 === 0 && cols % 4 === 0 &&
    paddedRows === rows && Number.isInteger(imageRows) && imageRows >= rows;
  if (copyable) {
    gpu.encoder.copyBufferToTexture(
      {
        buffer: bufferOf(buffer),
        offset: byteOffsetOf(buffer) + first * 4,
        bytesPerRow: rowBytes,
        rowsPerImage: imageRows,
      },
      { texture },
      [texels, rows, layers],
    );
    return;
  }
  // Pack: all layers in one dispatch when their window fits one binding, else layer by layer
  // and, within a layer, in row chunks.
  const span = (nLayers: number, nRows: number) =>
    (nLayers - 1) * batchStride + Math.max(0, nRows - 1) * ld + cols;
  const fits = (elements: number) => elements * 4 + 256 <= maxBinding;
  const jobs: { layer: number; layers: number; row: number; rows: number }[] = [];
  if (fits(span(layers, rows))) {
    jobs.push({ layer: 0, layers, row: 0, rows: paddedRows });
  } else {
    const chunk = Math.max(1, Math.floor((maxBinding - 256) / 4 / ld) - 1);
    for (let layer = 0; layer < layers; layer++) {
      for (let row = 0; row < paddedRows; row += chunk) {
        jobs.push({ layer, layers: 1, row, rows: Math.min(chunk, paddedRows - row) });
      }
    }
  }
  const { workgroupSize, perInvocation } = elementwiseShape(gpu);
  const aligned = (n: number) => n % 4 === 0;
  const vec4s = aligned(cols) && aligned(ld) && (layers === 1 || aligned(batchStride));
  for (const job of jobs) {
    const dataRows = Math.max(0, Math.min(job.rows, rows - job.row));
    // A chunk of only zero rows binds the block's start: any in-range window will do.
    const start = dataRows > 0 ? first + job.layer * batchStride + job.row * ld : first;
    const window = bufferWindow(
      gpu,
      buffer,
      start,
      Math.max(vec4s ? 4 : 1, span(job.layers, dataRows)),
    );
    const constants = {
      workgroupSize,
      perInvocation,
      width: vec4s && aligned(window.elementOffset) ? 4 : 1,
    };
    const params = gpu.uniform(uniforms({
      rows: ["u32", dataRows],
      cols: ["u32", cols],
      ld: ["u32", ld],
      offset: ["u32", window.elementOffset],
      batch_stride: ["u32", batchStride],
      width: ["u32", texels],
      height: ["u32", job.rows],
      row_base: ["u32", job.row],
      layer_base: ["u32", job.layer],
    }));
    const [x, y] = grid2d(Math.ceil(texels * job.rows / (workgroupSize * perInvocation)));
    await gpu.run(packKernel, constants, [window.binding, texture, params], [x, y, job.layers]);
  }
}
