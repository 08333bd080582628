/**
 * The fused causal attention kernels for a CPU adapter (lavapipe), reading q, k, v and dO from
 * `rgba32float` array textures (one layer per (batch, head), `ceil(HS / 4)` x T texels, zero
 * past column HS) bound as read-only storage textures. Private to `attention.ts`, whose module
 * doc gives the algorithm (online softmax forward with a saved log-sum-exp; FlashAttention-2
 * backward as a dQ kernel and a dK, dV kernel) and the measurements.
 *
 * Why textures: on lavapipe an invocation is one lane of an 8-wide SIMD vector, and a storage
 * buffer load is scalarized per lane with a bounds check (~80 instructions for one float on
 * all 8 lanes), while a read-only storage texel load is a ~48-instruction call that brings four
 * floats to all 8 lanes (see `kernels/matmul.ts`). Each invocation owns `rows` rows (strided
 * by the 8 lanes), so a streamed texel serves `rows` rows; the streamed rows come `block` at a
 * time, so that the running max and the accumulators are rescaled once per block, and each
 * accumulator is loaded and stored (it lives in memory: `rows` rows of HS floats are far more
 * than 16 vector registers) once per block instead of once per key. All texel loads of a block
 * are grouped before the arithmetic: a call spills every live vector register.
 *
 * @module
 */

import { type Gpu, type Kernel } from "./device.ts";
import { createOperandTexture, stageBlock } from "./_matmul_texture.ts";
import { MASKED_SCORE, sumOf, unroll } from "./_wgsl.ts";

/** Compile-time constants of the texture kernels. */
export interface TextureAttentionConstants extends Record<string, number> {
  /** Head size HS (at most 128). */
  headSize: number;
  /** Rows (queries, or keys for dK/dV) each invocation owns, strided by the 8 lanes. */
  rows: number;
  /** Streamed rows (keys, or queries for dK/dV) per loop step. */
  block: number;
}

/** Invocations per workgroup: one SIMD vector of lavapipe. */
export const TEXTURE_LANES = 8;

const LOG2E = Math.LOG2E;

/** `max(f(0), max(f(1), ...))`. */
function maxOf(n: number, term: (i: number) => string): string {
  return n === 1 ? term(0) : `max(${term(0)}, ${maxOf(n - 1, (i) => term(i + 1))})`;
}

/** The dot product of two rows held as `texels` vec4 names. */
function rowDot(texels: number, a: (x: number) => string, b: (x: number) => string): string {
  return sumOf(texels, (x) => `dot(${a(x)}, ${b(x)})`);
}

function texelsOf(headSize: number): number {
  return Math.ceil(headSize / 4);
}

function check({ headSize, rows, block }: TextureAttentionConstants): void {
  if (!(Number.isInteger(headSize) && headSize >= 1 && headSize <= 128)) {
    throw new RangeError(`Head size ${headSize} is not an integer in 1..128.`);
  }
  for (const [name, value] of [["rows", rows], ["block", block]] as const) {
    if (!(Number.isInteger(value) && value >= 1)) {
      throw new RangeError(`Attention texture tile ${name}=${value} is not a positive integer.`);
    }
  }
}

const PARAMS = /* wgsl */ `
struct Params { T: u32, base: u32, baseL: u32, scale: f32, invSqrt: f32, hs: u32 }`;

/**
 * The prologue every kernel shares: invocation `lid` of workgroup `wid.x` owns rows
 * `r0 + t * 8 + lid`, t < rows (rows past T compute row T-1 and store nothing); `head` is the
 * texture layer and `hb` the element of the head's row 0 in the bound output windows.
 */
function prologue(rows: number, texels: number): string {
  return `  let T = params.T;
  let head = wid.y;
  let hb = params.base + head * T * params.hs;
  let r0 = wid.x * ${TEXTURE_LANES * rows}u;
${unroll(rows, (t) => `  let row${t} = min(r0 + ${t * TEXTURE_LANES}u + lid, T - 1u);`)}
  var buf: array<vec4f, ${texels}>;`;
}

/** Row `row` of texture `tex` into `let` names `${name}_0..` (times `scale`). */
function loadRow(tex: string, row: string, name: string, texels: number, scale = ""): string {
  return unroll(
    texels,
    (x) => `  let ${name}_${x} = textureLoad(${tex}, vec2u(${x}u, ${row}), head)${scale};`,
  );
}

/**
 * Stores the names `${name}_0..` (times `scale`) to row `row` of `out` (HS floats), when the
 * row exists. The copy loop runs to the uniform `params.hs`, so the driver does not unroll HS
 * branchy per-lane stores (compile time); it runs once per row.
 */
function storeRow(
  out: string,
  t: number,
  name: string,
  texels: number,
  scale = "",
): string {
  return `    ${unroll(texels, (x) => `buf[${x}] = ${name}_${x}${scale};`)}
    for (var c = 0u; c < params.hs; c++) { ${out}[hb + row${t} * params.hs + c] = buf[c / 4u][c % 4u]; }`;
}

/** Whether the row `t` exists (is not a clamped copy of row T-1). */
function owned(t: number): string {
  return `r0 + ${t * TEXTURE_LANES}u + lid < T`;
}

/** The forward: o and lse from q, k, v textures. */
export const attentionForwardTextureKernel: Kernel<TextureAttentionConstants> = {
  name: "attention_forward_texture",
  bindings: [
    "write",
    "write",
    "read-storage-texture",
    "read-storage-texture",
    "read-storage-texture",
    "uniform",
  ],
  wgsl: (constants) => {
    check(constants);
    const { headSize, rows: R, block: K } = constants;
    const N = texelsOf(headSize);
    return /* wgsl */ `${PARAMS}

@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;
@group(0) @binding(2) var qt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(3) var kt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(4) var vt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(${TEXTURE_LANES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
${prologue(R, N)}
${unroll(R, (t) => loadRow("qt", `row${t}`, `q${t}`, N, " * params.scale"))}
${unroll(R, (t) => unroll(N, (x) => `  var a${t}_${x} = vec4f(0.0);`))}
${unroll(R, (t) => `  var m${t} = ${MASKED_SCORE};\n  var l${t} = 0.0;`)}
  // Keys up to the workgroup's last row; later keys are skipped entirely (causal). Block 0
  // holds key 0, which every row sees, so each row's max is a real score from then on.
  let end = min(r0 + ${TEXTURE_LANES * R}u, T);
  for (var j0 = 0u; j0 < end; j0 += ${K}u) {
${unroll(K, (b) => `    let j${b} = min(j0 + ${b}u, T - 1u);`)}
${
      unroll(K, (b) =>
        unroll(N, (x) => `    let k${b}_${x} = textureLoad(kt, vec2u(${x}u, j${b}), head);`))
    }
${
      unroll(R, (t) =>
        unroll(K, (b) =>
          `    let s${t}_${b} = select(${
            rowDot(N, (x) =>
              `q${t}_${x}`, (x) =>
              `k${b}_${x}`)
          }, ${MASKED_SCORE}, j0 + ${b}u > row${t});`))
    }
${
      unroll(K, (b) =>
        unroll(N, (x) => `    let v${b}_${x} = textureLoad(vt, vec2u(${x}u, j${b}), head);`))
    }
${
      unroll(R, (t) =>
        `    {
      let mx = max(m${t}, ${maxOf(K, (b) => `s${t}_${b}`)});
      let alpha = exp2(m${t} - mx);
${unroll(K, (b) => `      let p${b} = exp2(s${t}_${b} - mx);`)}
      l${t} = l${t} * alpha + ${sumOf(K, (b) => `p${b}`)};
      m${t} = mx;
${
          unroll(N, (x) =>
            `      a${t}_${x} = a${t}_${x} * alpha + ${
              sumOf(K, (b) => `p${b} * v${b}_${x}`)
            };`)
        }
    }`)
    }
  }
${
      unroll(R, (t) =>
        `  if (${owned(t)}) {
    let inv = 1.0 / l${t};
${storeRow("o", t, `a${t}`, N, " * inv")}
    lse[params.baseL + head * T + row${t}] = (m${t} + log2(l${t})) * ${Math.LN2};
  }`)
    }
}
`;
  },
};

const BACKWARD_BINDINGS = [
  "read-storage-texture",
  "read-storage-texture",
  "read-storage-texture",
  "read-storage-texture",
  "read",
  "read",
  "uniform",
] as const;

/** The inputs every backward kernel binds after its outputs. */
function backwardInputs(first: number): string {
  return `@group(0) @binding(${first}) var qt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(${first + 1}) var kt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(${first + 2}) var vt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(${first + 3}) var dtex: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(${first + 4}) var<storage, read> lse: array<f32>;
@group(0) @binding(${first + 5}) var<storage, read> dsum: array<f32>;
@group(0) @binding(${first + 6}) var<uniform> params: Params;`;
}

/** dQ: each invocation owns query rows and loops over keys j <= i, a block at a time. */
export const attentionQueryTextureKernel: Kernel<TextureAttentionConstants> = {
  name: "attention_backward_query_texture",
  bindings: ["write", ...BACKWARD_BINDINGS],
  wgsl: (constants) => {
    check(constants);
    const { headSize, rows: R, block: K } = constants;
    const N = texelsOf(headSize);
    return /* wgsl */ `${PARAMS}

@group(0) @binding(0) var<storage, read_write> dq: array<f32>;
${backwardInputs(1)}

@compute @workgroup_size(${TEXTURE_LANES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
${prologue(R, N)}
${unroll(R, (t) => loadRow("qt", `row${t}`, `q${t}`, N, " * params.scale"))}
${unroll(R, (t) => loadRow("dtex", `row${t}`, `do${t}`, N))}
${
      unroll(R, (t) =>
        `  let li${t} = lse[params.baseL + head * T + row${t}] * ${LOG2E};  // base 2, like s
  let di${t} = dsum[head * T + row${t}];`)
    }
${unroll(R, (t) => unroll(N, (x) => `  var g${t}_${x} = vec4f(0.0);`))}
  let end = min(r0 + ${TEXTURE_LANES * R}u, T);
  for (var j0 = 0u; j0 < end; j0 += ${K}u) {
${unroll(K, (b) => `    let j${b} = min(j0 + ${b}u, T - 1u);`)}
${
      unroll(K, (b) =>
        unroll(N, (x) => `    let k${b}_${x} = textureLoad(kt, vec2u(${x}u, j${b}), head);`))
    }
${
      unroll(K, (b) =>
        unroll(N, (x) => `    let v${b}_${x} = textureLoad(vt, vec2u(${x}u, j${b}), head);`))
    }
${
      unroll(R, (t) =>
        unroll(K, (b) =>
          `    let ds${t}_${b} = select(exp2(${
            rowDot(N, (x) =>
              `q${t}_${x}`, (x) =>
              `k${b}_${x}`)
          } - li${t}) * (${
            rowDot(N, (x) => `do${t}_${x}`, (x) => `v${b}_${x}`)
          } - di${t}), 0.0, j0 + ${b}u > row${t});`))
    }
${
      unroll(R, (t) =>
        unroll(N, (x) => `    g${t}_${x} += ${sumOf(K, (b) => `ds${t}_${b} * k${b}_${x}`)};`))
    }
  }
${
      unroll(R, (t) =>
        `  if (${owned(t)}) {\n${storeRow("dq", t, `g${t}`, N, " * params.invSqrt")}\n  }`)
    }
}
`;
  },
};

/** dK and dV: each invocation owns key rows and loops over queries i >= j, a block at a time. */
export const attentionKeyValueTextureKernel: Kernel<TextureAttentionConstants> = {
  name: "attention_backward_key_value_texture",
  bindings: ["write", "write", ...BACKWARD_BINDINGS],
  wgsl: (constants) => {
    check(constants);
    const { headSize, rows: R, block: K } = constants;
    const N = texelsOf(headSize);
    return /* wgsl */ `${PARAMS}

@group(0) @binding(0) var<storage, read_write> dk: array<f32>;
@group(0) @binding(1) var<storage, read_write> dv: array<f32>;
${backwardInputs(2)}

@compute @workgroup_size(${TEXTURE_LANES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
${prologue(R, N)}
${unroll(R, (t) => loadRow("kt", `row${t}`, `k${t}`, N, " * params.scale"))}
${unroll(R, (t) => loadRow("vt", `row${t}`, `v${t}`, N))}
${
      unroll(R, (t) =>
        unroll(N, (x) => `  var gk${t}_${x} = vec4f(0.0);\n  var gv${t}_${x} = vec4f(0.0);`))
    }
  // Queries from the workgroup's first key row on; earlier queries never see these keys.
  for (var i0 = r0; i0 < T; i0 += ${K}u) {
${unroll(K, (b) => `    let i${b} = min(i0 + ${b}u, T - 1u);`)}
${
      unroll(K, (b) =>
        `    let li${b} = lse[params.baseL + head * T + i${b}] * ${LOG2E};
    let di${b} = dsum[head * T + i${b}];`)
    }
${
      unroll(K, (b) =>
        unroll(N, (x) => `    let q${b}_${x} = textureLoad(qt, vec2u(${x}u, i${b}), head);`))
    }
${
      unroll(K, (b) =>
        unroll(N, (x) =>
          `    let do${b}_${x} = textureLoad(dtex, vec2u(${x}u, i${b}), head);`))
    }
${
      unroll(R, (t) =>
        unroll(K, (b) =>
          `    let p${t}_${b} = select(exp2(${
            rowDot(N, (x) =>
              `k${t}_${x}`, (x) =>
              `q${b}_${x}`)
          } - li${b}), 0.0, i0 + ${b}u < row${t} || i0 + ${b}u >= T);
    let ds${t}_${b} = p${t}_${b} * (${
            rowDot(N, (x) => `v${t}_${x}`, (x) => `do${b}_${x}`)
          } - di${b});`))
    }
${
      unroll(R, (t) =>
        unroll(N, (x) =>
          `    gv${t}_${x} += ${
            sumOf(K, (b) => `p${t}_${b} * do${b}_${x}`)
          };
    gk${t}_${x} += ${sumOf(K, (b) => `ds${t}_${b} * q${b}_${x}`)};`))
    }
  }
${
      unroll(R, (t) =>
        `  if (${owned(t)}) {
${storeRow("dk", t, `gk${t}`, N, " * params.invSqrt")}
${storeRow("dv", t, `gv${t}`, N)}
  }`)
    }
}
`;
  },
};

// ---------------------------------------------------------------------------------------------
// Staging

const pools = new WeakMap<Gpu, Map<string, GPUTexture>>();

/**
 * A scratch texture of at least `texels` x `height` texels and `layers` layers for `role` ("q",
 * "k", ...). One texture a role is kept and reused by later launches that fit in it (safe:
 * every use is recorded in order into the command stream); a launch that does not fit replaces
 * it with one as large as both (heights rounded up to 64 rows), so that prefills of growing
 * lengths do not pile up textures.
 */
function scratch(gpu: Gpu, role: string, texels: number, height: number, layers: number) {
  let pool = pools.get(gpu);
  if (!pool) pools.set(gpu, pool = new Map());
  const old = pool.get(role);
  if (old && old.width >= texels && old.height >= height && old.depthOrArrayLayers >= layers) {
    return old;
  }
  const w = Math.max(texels, old?.width ?? 0);
  const h = Math.min(
    gpu.device.limits.maxTextureDimension2D,
    Math.max(Math.ceil(height / 64) * 64, old?.height ?? 0),
  );
  const d = Math.max(layers, old?.depthOrArrayLayers ?? 0);
  const texture = createOperandTexture(gpu, `attention ${role}`, [w, h, d]);
  pool.set(role, texture);
  return texture;
}

/**
 * Whether the texture kernels can take heads of T rows: T within a texture's height. (Parts of
 * heads are also kept within `maxTextureArrayLayers`, see {@linkcode maxTextureHeads}.)
 */
export function texturesFit(gpu: Gpu, T: number): boolean {
  return T <= gpu.device.limits.maxTextureDimension2D;
}

/** The most heads one launch can stage (one texture layer each). */
export function maxTextureHeads(gpu: Gpu): number {
  return gpu.device.limits.maxTextureArrayLayers;
}

/**
 * Records the staging of heads `first..first+count` of the (B, NH, T, HS) tensor `buffer` into
 * the scratch texture of `role`, one layer per head, and returns the texture.
 */
export async function stageHeads(
  gpu: Gpu,
  role: string,
  buffer: GPUBuffer,
  first: number,
  count: number,
  T: number,
  HS: number,
  maxBinding: number,
): Promise<GPUTexture> {
  const texture = scratch(gpu, role, texelsOf(HS), T, count);
  await stageBlock(
    gpu,
    texture,
    {
      buffer,
      offset: first * T * HS,
      ld: HS,
      batchStride: T * HS,
      row0: 0,
      rows: T,
      col0: 0,
      cols: HS,
      layer0: 0,
      layers: count,
    },
    T,
    maxBinding,
  );
  return texture;
}
