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
 * A head's row is HS contiguous floats in both layouts, so an invocation copies whole rows
 * (vec4s where HS is a multiple of 4), all three of q, k, v in one launch. Split plus merge, the
 * forward's two permutes, at GPT-2 small's shapes (T = 1024, 12 heads of 64) on lavapipe, 2-core
 * development machine, 2026-12-03, the former kernel (an invocation a float, a launch for each
 * of q, k, v) and this one interleaved, medians of 7: 21.0-22.1 -> 4.2-6.1 ms (1.1-1.2 -> 4.2-6.1
 * GB/s); at the tiny, budget and small configs' shapes 3.5-5.4x faster.
 *
 * @module
 */

import {
  type BindingKind,
  bufferWindow,
  type Gpu,
  grid2d,
  type Kernel,
  uniforms,
} from "./device.ts";
import { rowParts } from "./_parts.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of the head permutes. */
export interface HeadLayoutConstants extends Record<string, number> {
  /** Head size HS, in floats. */
  headSize: number;
  /** Head-major tensors permuted at once: 3 (q, k, v and their gradients) or 1. */
  parts: number;
  /** Floats per load and store: 4 (`vec4f`, when HS and the offsets allow it) or 1. */
  width: number;
  /** Invocations per workgroup. */
  workgroupSize: number;
}

/**
 * One invocation per (token, head): it copies that head's run of HS floats, contiguous in both
 * layouts, for each of the `parts` head-major tensors (part s at columns [s·C, (s + 1)·C) of the
 * token's row). An invocation a float, as these kernels were, spent more on its index arithmetic
 * and its launch than on the copy: a GPT-2 layer's four permutes ran at 1.6 GB/s on lavapipe.
 * Sizes and offsets in the uniform count `width`-float elements.
 */
function headPermuteWgsl(
  { headSize, parts, width, workgroupSize: wg }: HeadLayoutConstants,
  toHeads: boolean,
): string {
  const run = headSize / width; // elements of a head's row
  const partNames = Array.from({ length: parts }, (_, s) => `heads${s}`);
  const headsAccess = toHeads ? "read_write" : "read";
  const copies = partNames.map((name, s) => {
    const token = `tokens[tok + ${s}u * params.partStride + j]`;
    const head = `${name}[hd + j]`;
    return `  for (var j = 0u; j < ${run}u; j++) { ${
      toHeads ? `${head} = ${token}` : `${token} = ${head}`
    }; }`;
  });
  return /* wgsl */ `
alias V = ${width === 4 ? "vec4f" : "f32"};
struct Params {
  T: u32, NH: u32, runs: u32, width: u32, partStride: u32, baseTokens: u32, baseHeads: u32,
}

${
    partNames.map((name, s) =>
      `@group(0) @binding(${s}) var<storage, ${headsAccess}> ${name}: array<V>;  // (B, NH, T, HS)`
    ).join("\n")
  }
@group(0) @binding(${parts}) var<storage, ${toHeads ? "read" : "read_write"}> tokens: array<V>;
@group(0) @binding(${parts + 1}) var<uniform> params: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * groups.x) * ${wg}u + lid;
  if (i >= params.runs) { return; }
  let h = i % params.NH;
  let token = i / params.NH;  // b * T + t
  let t = token % params.T;
  let b = token / params.T;
  let tok = params.baseTokens + token * params.width + h * ${run}u;
  let hd = params.baseHeads + ((b * params.NH + h) * params.T + t) * ${run}u;
${copies.join("\n")}
}
`;
}

/** The binding kinds of a permute of `parts` head-major tensors. */
function permuteBindings(toHeads: boolean) {
  return ({ parts }: HeadLayoutConstants): BindingKind[] => [
    ...Array<BindingKind>(parts).fill(toHeads ? "write" : "read"),
    toHeads ? "read" : "write",
    "uniform",
  ];
}

/**
 * WGSL of the split into heads: tokens-major (B, T, width) -> head-major (B, NH, T, HS). It runs
 * {@linkcode splitHeadsForward} and {@linkcode mergeHeadsBackward}.
 */
export const splitHeadsKernel: Kernel<HeadLayoutConstants> = {
  name: "attention_split_heads",
  bindings: permuteBindings(true),
  wgsl: (constants) => headPermuteWgsl(constants, true),
};

/**
 * WGSL of the merge of heads: head-major (B, NH, T, HS) -> tokens-major (B, T, width). It runs
 * {@linkcode mergeHeadsForward} and {@linkcode splitHeadsBackward}.
 */
export const mergeHeadsKernel: Kernel<HeadLayoutConstants> = {
  name: "attention_merge_heads",
  bindings: permuteBindings(false),
  wgsl: (constants) => headPermuteWgsl(constants, false),
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
 * Records one permute between the tokens tensor (B, T, width) and the head-major tensors
 * `heads` (each (B, NH, T, HS), part s at columns [s·C, (s + 1)·C) of a token's row), in the
 * direction `kernel` says, in one launch per part of batches that fits a binding.
 */
async function permuteHeads(
  gpu: Gpu,
  kernel: Kernel<HeadLayoutConstants>,
  tokens: GPUBuffer,
  heads: readonly GPUBuffer[],
  B: number,
  T: number,
  C: number,
  NH: number,
  bindingLimit?: number,
): Promise<void> {
  const headSize = headSizeOf(C, NH);
  if (B === 0 || T === 0) return;
  const width = heads.length * C; // floats of a token's row
  const workgroupSize = gpu.adapter.isCpu ? 8 : 64;
  for (const { first, count } of rowParts(gpu, B, T * width, 1, bindingLimit)) {
    const tok = bufferWindow(gpu, tokens, first * T * width, count * T * width);
    const hds = heads.map((h) => bufferWindow(gpu, h, first * T * C, count * T * C));
    const offsets = [tok, ...hds].map((w) => w.elementOffset);
    // Whole vec4s where the head size and every window's start allow.
    const vector = headSize % 4 === 0 && offsets.every((o) => o % 4 === 0) ? 4 : 1;
    if (hds.some((w) => w.elementOffset !== hds[0].elementOffset)) {
      throw new Error("The head-major tensors of one permute must start at the same offset.");
    }
    const runs = count * T * NH;
    const params = gpu.uniform(uniforms({
      T: ["u32", T],
      NH: ["u32", NH],
      runs: ["u32", runs],
      width: ["u32", width / vector],
      partStride: ["u32", C / vector],
      baseTokens: ["u32", tok.elementOffset / vector],
      baseHeads: ["u32", hds[0].elementOffset / vector],
    }));
    await gpu.run(
      kernel,
      { headSize, parts: heads.length, width: vector, workgroupSize },
      [...hds.map((w) => w.binding), tok.binding, params],
      grid2d(Math.ceil(runs / workgroupSize)),
    );
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
  await permuteHeads(gpu, splitHeadsKernel, qkv, [q, k, v], B, T, C, NH, options.bindingLimit);
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
  await permuteHeads(gpu, mergeHeadsKernel, dqkv, [dq, dk, dv], B, T, C, NH, options.bindingLimit);
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
  await permuteHeads(gpu, mergeHeadsKernel, y, [o], B, T, C, NH, options.bindingLimit);
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
  await permuteHeads(gpu, splitHeadsKernel, dy, [dout], B, T, C, NH, options.bindingLimit);
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
