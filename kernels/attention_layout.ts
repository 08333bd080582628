/**
 * The head layout permutes around attention, forward and backward.
 *
 * The qkv matmul writes tokens-major rows, `qkv` (B, T, 3C) with C = NH * HS: for token t the
 * row holds q (C), then k (C), then v (C), and each of those is NH heads of HS. Attention wants
 * head-major tensors, (B, NH, T, HS) row-major, so that one head's T rows of HS are contiguous:
 *
 * - {@linkcode splitHeadsForward}: qkv (B, T, 3C) -> q, k, v (B, NH, T, HS), and
 *   {@linkcode splitHeadsBackward}: dq, dk, dv (B, NH, T, HS) -> dqkv (B, T, 3C).
 * - {@linkcode mergeHeadsForward}: y (B, NH, T, HS) -> (B, T, C), the input of the projection, and
 *   {@linkcode mergeHeadsBackward}: dy (B, T, C) -> (B, NH, T, HS).
 *
 * All four are pure permutations, so their gradients are activation gradients: written (`=`),
 * never accumulated. Tensors larger than one binding (e.g. qkv at B=16, T=1024, C=768 is 144 MiB,
 * over lavapipe's 128 MiB) are processed in batch parts through buffer windows; see
 * `rowParts`.
 *
 * @module
 */

import { bufferWindow, type Gpu, type Kernel, uniforms } from "./device.ts";
import { rowParts } from "./_parts.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of the head permutes. */
export interface HeadLayoutConstants extends Record<string, number> {
  /** Head size HS; a constant so `c / HS` compiles to a multiply, not a per-lane division. */
  headSize: number;
}

const WORKGROUP_SIZE = 64;

/**
 * One invocation per element: `c` indexes the C channels of one token (x), the token is y and
 * the batch z. The tokens tensor is (B, T, width) and the channels sit at columns
 * [slot, slot + C); the heads tensor is (B, NH, T, HS).
 */
function headPermuteWgsl(headSize: number, toHeads: boolean): string {
  const tokens = `tokens[params.baseTokens + (b * params.T + t) * params.width + params.slot + c]`;
  const heads = `heads[params.baseHeads + ((b * params.NH + h) * params.T + t) * ${headSize}u + d]`;
  return /* wgsl */ `
struct Params { T: u32, NH: u32, width: u32, slot: u32, baseTokens: u32, baseHeads: u32 }

@group(0) @binding(0) var<storage, read_write> ${toHeads ? "heads" : "tokens"}: array<f32>;
@group(0) @binding(1) var<storage, read> ${toHeads ? "tokens" : "heads"}: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x * ${WORKGROUP_SIZE}u + lid;
  if (c >= params.NH * ${headSize}u) { return; }
  let t = wid.y;
  let b = wid.z;
  let h = c / ${headSize}u;
  let d = c % ${headSize}u;
  ${toHeads ? `${heads} = ${tokens};` : `${tokens} = ${heads};`}
}
`;
}

/**
 * WGSL of the split into heads: tokens-major (B, T, width) -> head-major (B, NH, T, HS). It runs
 * {@linkcode splitHeadsForward} and {@linkcode mergeHeadsBackward}.
 */
export const splitHeadsKernel: Kernel<HeadLayoutConstants> = {
  name: "attention_split_heads",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ headSize }) => headPermuteWgsl(headSize, true),
};

/**
 * WGSL of the merge of heads: head-major (B, NH, T, HS) -> tokens-major (B, T, width). It runs
 * {@linkcode mergeHeadsForward} and {@linkcode splitHeadsBackward}.
 */
export const mergeHeadsKernel: Kernel<HeadLayoutConstants> = {
  name: "attention_merge_heads",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ headSize }) => headPermuteWgsl(headSize, false),
};

/** Options of the head permutes. */
export interface HeadLayoutOptions {
  /** Bytes one binding may hold (default: the adapter's limit); tests pass less. */
  bindingLimit?: number;
}

/** Checks that C splits into NH heads; returns the head size. */
export function headSizeOf(C: number, NH: number): number {
  const headSize = C / NH;
  if (!Number.isInteger(headSize) || headSize < 1) {
    throw new RangeError(
      `Channels C=${C} do not split into NH=${NH} heads; C must be a multiple of NH.`,
    );
  }
  return headSize;
}

/**
 * Records one permute between the tokens tensor (B, T, width), columns [slot, slot + C), and the
 * heads tensor (B, NH, T, HS), in the direction `kernel` says.
 */
async function permuteHeads(
  gpu: Gpu,
  kernel: Kernel<HeadLayoutConstants>,
  tokens: GPUBuffer,
  heads: GPUBuffer,
  B: number,
  T: number,
  C: number,
  NH: number,
  width: number,
  slot: number,
  bindingLimit?: number,
): Promise<void> {
  const headSize = headSizeOf(C, NH);
  if (T > 65535) {
    throw new RangeError(`Sequence length T=${T} is over the 65535 the head permutes take.`);
  }
  if (B === 0 || T === 0) return;
  for (const { first, count } of rowParts(gpu, B, T * width, 1, bindingLimit)) {
    const tok = bufferWindow(gpu, tokens, first * T * width, count * T * width);
    const hd = bufferWindow(gpu, heads, first * T * C, count * T * C);
    const params = gpu.uniform(uniforms({
      T: ["u32", T],
      NH: ["u32", NH],
      width: ["u32", width],
      slot: ["u32", slot],
      baseTokens: ["u32", tok.elementOffset],
      baseHeads: ["u32", hd.elementOffset],
    }));
    const [out, input] = kernel === splitHeadsKernel
      ? [hd.binding, tok.binding]
      : [tok.binding, hd.binding];
    await gpu.run(kernel, { headSize }, [out, input, params], [
      Math.ceil(C / WORKGROUP_SIZE),
      T,
      count,
    ]);
  }
}

/**
 * Records the permutes between `qkv` (B, T, 3C) and its three head-major parts (B, NH, T, HS),
 * in the direction `kernel` says: part s sits at columns [s·C, (s + 1)·C) of each token's row.
 */
async function permuteQkv(
  gpu: Gpu,
  kernel: Kernel<HeadLayoutConstants>,
  qkv: GPUBuffer,
  parts: readonly GPUBuffer[],
  B: number,
  T: number,
  C: number,
  NH: number,
  bindingLimit?: number,
): Promise<void> {
  for (const [s, part] of parts.entries()) {
    await permuteHeads(gpu, kernel, qkv, part, B, T, C, NH, 3 * C, s * C, bindingLimit);
  }
}

/**
 * Records the split of the qkv matmul's output into heads: `qkv` (B, T, 3C) -> `q`, `k`, `v`
 * (B, NH, T, HS), HS = C / NH.
 */
export async function splitHeadsForward(
  gpu: Gpu,
  q: GPUBuffer,
  k: GPUBuffer,
  v: GPUBuffer,
  qkv: GPUBuffer,
  B: number,
  T: number,
  C: number,
  NH: number,
  options: HeadLayoutOptions = {},
): Promise<void> {
  await permuteQkv(gpu, splitHeadsKernel, qkv, [q, k, v], B, T, C, NH, options.bindingLimit);
}

/**
 * Records the backward of {@linkcode splitHeadsForward}: `dq`, `dk`, `dv` (B, NH, T, HS) ->
 * `dqkv` (B, T, 3C), written (`=`).
 */
export async function splitHeadsBackward(
  gpu: Gpu,
  dqkv: GPUBuffer,
  dq: GPUBuffer,
  dk: GPUBuffer,
  dv: GPUBuffer,
  B: number,
  T: number,
  C: number,
  NH: number,
  options: HeadLayoutOptions = {},
): Promise<void> {
  await permuteQkv(gpu, mergeHeadsKernel, dqkv, [dq, dk, dv], B, T, C, NH, options.bindingLimit);
}

/** Records the merge of attention's output heads: `o` (B, NH, T, HS) -> `y` (B, T, C). */
export async function mergeHeadsForward(
  gpu: Gpu,
  y: GPUBuffer,
  o: GPUBuffer,
  B: number,
  T: number,
  C: number,
  NH: number,
  options: HeadLayoutOptions = {},
): Promise<void> {
  await permuteHeads(gpu, mergeHeadsKernel, y, o, B, T, C, NH, C, 0, options.bindingLimit);
}

/**
 * Records the backward of {@linkcode mergeHeadsForward}: `dy` (B, T, C) -> `dout`
 * (B, NH, T, HS), written (`=`).
 */
export async function mergeHeadsBackward(
  gpu: Gpu,
  dout: GPUBuffer,
  dy: GPUBuffer,
  B: number,
  T: number,
  C: number,
  NH: number,
  options: HeadLayoutOptions = {},
): Promise<void> {
  await permuteHeads(gpu, splitHeadsKernel, dy, dout, B, T, C, NH, C, 0, options.bindingLimit);
}

/** Visits every (token-tensor index, head-tensor index) pair of the permute. */
function forEachHeadElement(
  B: number,
  T: number,
  C: number,
  NH: number,
  width: number,
  slot: number,
  visit: (tokenIndex: number, headIndex: number) => void,
): void {
  const HS = headSizeOf(C, NH);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        for (let d = 0; d < HS; d++) {
          visit((b * T + t) * width + slot + h * HS + d, ((b * NH + h) * T + t) * HS + d);
        }
      }
    }
  }
}

/** CPU reference of {@linkcode splitHeadsForward}. */
export function splitHeadsForwardCpu(
  q: Floats,
  k: Floats,
  v: Floats,
  qkv: Floats,
  B: number,
  T: number,
  C: number,
  NH: number,
): void {
  [q, k, v].forEach((out, s) =>
    forEachHeadElement(B, T, C, NH, 3 * C, s * C, (ti, hi) => out[hi] = qkv[ti])
  );
}

/** CPU reference of {@linkcode splitHeadsBackward}. */
export function splitHeadsBackwardCpu(
  dqkv: Floats,
  dq: Floats,
  dk: Floats,
  dv: Floats,
  B: number,
  T: number,
  C: number,
  NH: number,
): void {
  [dq, dk, dv].forEach((grad, s) =>
    forEachHeadElement(B, T, C, NH, 3 * C, s * C, (ti, hi) => dqkv[ti] = grad[hi])
  );
}

/** CPU reference of {@linkcode mergeHeadsForward}. */
export function mergeHeadsForwardCpu(
  y: Floats,
  o: Floats,
  B: number,
  T: number,
  C: number,
  NH: number,
): void {
  forEachHeadElement(B, T, C, NH, C, 0, (ti, hi) => y[ti] = o[hi]);
}

/** CPU reference of {@linkcode mergeHeadsBackward}. */
export function mergeHeadsBackwardCpu(
  dout: Floats,
  dy: Floats,
  B: number,
  T: number,
  C: number,
  NH: number,
): void {
  forEachHeadElement(B, T, C, NH, C, 0, (ti, hi) => dout[hi] = dy[ti]);
}
