/**
 * The differentiable operations GPT-2 is made of, each a forward that records its backward on
 * the tape, side by side (as tinygrad and micrograd register them). Shapes are given in the
 * comments; N = B·T positions.
 *
 * @module
 */

import { crossEntropy } from "../kernels/cross_entropy.ts";
import { embeddingBackward, embeddingForward } from "../kernels/embedding.ts";
import { geluBackward, geluForward } from "../kernels/gelu.ts";
import { layernormBackward, layernormForward } from "../kernels/layernorm.ts";
import { residualBackward, residualForward } from "../kernels/residual.ts";
import type { Tape } from "./tape.ts";
import type { Tensor } from "./tensor.ts";

function lastDim(x: Tensor): number {
  return x.shape[x.shape.length - 1];
}

/** `out = a + b`, elementwise (the residual connection). */
export async function add(tape: Tape, a: Tensor, b: Tensor): Promise<Tensor> {
  if (a.size !== b.size) {
    throw new Error(`add() needs equal shapes, got [${a.shape}] and [${b.shape}].`);
  }
  const out = tape.tensor(a.shape, "add");
  await residualForward(tape.gpu, out.buffer, a.buffer, b.buffer, a.size);
  tape.record("add", [a, b], out, async () => {
    if (a === b) throw new Error("add(x, x) is not supported; scale x by 2 instead.");
    await residualBackward(
      tape.gpu,
      a.gradForAccumulate(),
      b.gradForAccumulate(),
      out.grad,
      a.size,
    );
  });
  return out;
}

/** Layer normalization over the last dimension: (..., C) → (..., C). */
export async function layernorm(
  tape: Tape,
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
): Promise<Tensor> {
  const c = lastDim(x), n = x.size / c;
  const out = tape.tensor(x.shape, "ln");
  const mean = tape.scratch(n, "ln.mean"), rstd = tape.scratch(n, "ln.rstd");
  await layernormForward(
    tape.gpu,
    out.buffer,
    mean,
    rstd,
    x.buffer,
    weight.buffer,
    bias.buffer,
    n,
    c,
  );
  tape.record("layernorm", [x, weight, bias], out, async () => {
    await layernormBackward(
      tape.gpu,
      x.gradForAccumulate(),
      weight.gradForAccumulate(),
      bias.gradForAccumulate(),
      out.grad,
      x.buffer,
      weight.buffer,
      mean,
      rstd,
      n,
      c,
    );
  });
  return out;
}

/** GELU, tanh approximation, elementwise. */
export async function gelu(tape: Tape, x: Tensor): Promise<Tensor> {
  const out = tape.tensor(x.shape, "gelu");
  await geluForward(tape.gpu, out.buffer, x.buffer, x.size);
  tape.record("gelu", [x], out, async () => {
    await tape.writeGrad(x, (dx) => geluBackward(tape.gpu, dx, x.buffer, out.grad, x.size));
  });
  return out;
}

/** Token ids of a batch, on the CPU (to group them for the backward) and on the GPU. */
export interface TokenBatch {
  /** (B, T) ids. */
  ids: Int32Array;
  /** The same ids in a GPU buffer. */
  buffer: GPUBuffer;
  batch: number;
  time: number;
}

/** Token plus position embedding: ids (B, T) → (B, T, C) = wte[ids] + wpe[t]. */
export async function embed(
  tape: Tape,
  tokens: TokenBatch,
  wte: Tensor,
  wpe: Tensor,
): Promise<Tensor> {
  const [V, C] = wte.shape, maxT = wpe.shape[0];
  const { batch: B, time: T } = tokens;
  if (T > maxT) {
    throw new Error(`A sequence of ${T} tokens is longer than the model's context of ${maxT}.`);
  }
  const out = tape.tensor([B, T, C], "embed");
  await embeddingForward(
    tape.gpu,
    out.buffer,
    tokens.buffer,
    wte.buffer,
    wpe.buffer,
    B,
    T,
    C,
    V,
    maxT,
  );
  tape.record("embed", [wte, wpe], out, async () => {
    await embeddingBackward(
      tape.gpu,
      wte.gradForAccumulate(),
      wpe.gradForAccumulate(),
      out.grad,
      tokens.ids,
      B,
      T,
      C,
      V,
      maxT,
    );
  });
  return out;
}

/** Targets of a batch for the loss, on the GPU, with how many positions count. */
export interface LossTargets {
  /** (N) int32 target ids. */
  targets: GPUBuffer;
  /** (N) u32, 0 where a position does not count; null when all count. */
  mask: GPUBuffer | null;
  /** Positions that count, the mean's denominator. */
  counted: number;
}

/**
 * Per-position softmax cross-entropy of logits (N, V) against targets → losses (N), 0 where a
 * position does not count. With `withGrad`, the fused kernel also writes d(mean loss)/dlogits
 * in the same pass, so the loss must be the root of {@linkcode Tape.backward}.
 */
export async function crossEntropyLoss(
  tape: Tape,
  logits: Tensor,
  targets: LossTargets,
  { withGrad = true } = {},
): Promise<Tensor> {
  const v = lastDim(logits), n = logits.size / v;
  const losses = tape.tensor([n], "losses");
  const scale = 1 / Math.max(1, targets.counted);
  const dlogits = withGrad ? logits.gradForWrite() : null;
  if (withGrad && !dlogits) throw new Error("The logits already have a gradient; use them once.");
  await crossEntropy(
    tape.gpu,
    losses.buffer,
    dlogits,
    logits.buffer,
    targets.targets,
    targets.mask,
    scale,
    n,
    v,
  );
  tape.record("cross_entropy", [logits], losses, () => {
    if (!withGrad) {
      throw new Error("This loss was computed without its gradient (withGrad: false).");
    }
    return Promise.resolve(); // dlogits were written with the loss
  });
  return losses;
}
