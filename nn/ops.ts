/**
 * The differentiable operations GPT-2 is made of, each a forward that records its backward on
 * the tape, side by side (as tinygrad and micrograd register them). Shapes are given in the
 * comments; N = B·T positions. Parameters are bound by their `floats` (they may be windows of the
 * model's flat buffer, `nn/arena.ts`), activations by their own `buffer`.
 *
 * @module
 */

import { attentionBackward, attentionForward } from "../kernels/attention.ts";
import {
  mergeHeadsBackward,
  mergeHeadsForward,
  splitHeadsBackward,
  splitHeadsForward,
} from "../kernels/attention_layout.ts";
import { crossEntropy } from "../kernels/cross_entropy.ts";
import { linearBackward, linearForward } from "../kernels/matmul.ts";
import { embeddingBackward, embeddingForward } from "../kernels/embedding.ts";
import { geluBackward, geluForward } from "../kernels/gelu.ts";
import {
  layernormBackward,
  layernormForward,
  residualLayernormForward,
} from "../kernels/layernorm.ts";
import { residualForward } from "../kernels/residual.ts";
import type { Tape } from "./tape.ts";
import type { Tensor } from "./tensor.ts";

function lastDim(x: Tensor): number {
  return x.shape[x.shape.length - 1];
}

/** `out = a + b`, elementwise (the residual connection). */
export async function add(tape: Tape, a: Tensor, b: Tensor): Promise<Tensor> {
  checkSameShape("add", a, b);
  const out = tape.tensor(a.shape, "add");
  await residualForward(tape.gpu, out.buffer, a.buffer, b.buffer, a.size);
  tape.record("add", [a, b], out, () => addBackward(tape, out, a, b));
  return out;
}

/**
 * The residual add's backward: both inputs' gradients equal the output's, which is passed on,
 * shared where it can be (llm.c's residual stream keeps one gradient buffer), so it runs no
 * kernel.
 */
async function addBackward(tape: Tape, out: Tensor, a: Tensor, b: Tensor): Promise<void> {
  if (!out.hasGrad) return;
  await tape.passGrad(out, a);
  await tape.passGrad(out, b);
}

function checkSameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.size !== b.size) {
    throw new Error(`${op}() needs equal shapes, got [${a.shape}] and [${b.shape}].`);
  }
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
  const buffers = { out: out.buffer, mean, rstd, inp: x.buffer };
  await layernormForward(tape.gpu, { ...buffers, weight: weight.floats, bias: bias.floats }, n, c);
  tape.record("layernorm", [x, weight, bias], out, async () => {
    await layernormGrads(tape, { x, weight, bias, out, mean, rstd });
  });
  return out;
}

/**
 * The residual connection and the layernorm after it, in one forward launch (GPT-2's block
 * ends in both): `sum = a + b` (B, T, C), the residual stream, and `layernorm(sum)`, which
 * feeds the next branch. The same values as {@linkcode add} then {@linkcode layernorm}, bit for
 * bit, with one launch and one read of the stream fewer.
 */
export async function residualLayernorm(
  tape: Tape,
  a: Tensor,
  b: Tensor,
  weight: Tensor,
  bias: Tensor,
): Promise<{ sum: Tensor; out: Tensor }> {
  checkSameShape("residualLayernorm", a, b);
  const c = lastDim(a), n = a.size / c;
  const sum = tape.tensor(a.shape, "add"), out = tape.tensor(a.shape, "ln");
  const mean = tape.scratch(n, "ln.mean"), rstd = tape.scratch(n, "ln.rstd");
  await residualLayernormForward(
    tape.gpu,
    {
      out: out.buffer,
      mean,
      rstd,
      inp: sum.buffer,
      a: a.buffer,
      b: b.buffer,
      weight: weight.floats,
      bias: bias.floats,
    },
    n,
    c,
  );
  tape.record("residual_layernorm", [a, b, weight, bias], [sum, out], async () => {
    // The layernorm's input gradient adds into the sum's, then both pass on to a and b.
    await layernormGrads(tape, { x: sum, weight, bias, out, mean, rstd });
    await addBackward(tape, sum, a, b);
  });
  return { sum, out };
}

/** A layernorm's backward: adds into the gradients of its input `x`, `weight` and `bias`. */
async function layernormGrads(
  tape: Tape,
  { x, weight, bias, out, mean, rstd }: {
    x: Tensor;
    weight: Tensor;
    bias: Tensor;
    out: Tensor;
    mean: GPUBuffer;
    rstd: GPUBuffer;
  },
): Promise<void> {
  if (!out.hasGrad) return;
  const c = lastDim(x), n = x.size / c;
  await layernormBackward(
    tape.gpu,
    {
      dinp: x.gradForAccumulate(),
      dweight: weight.gradForAccumulate(),
      dbias: bias.gradForAccumulate(),
      dout: out.grad,
      inp: x.buffer,
      weight: weight.floats,
      mean,
      rstd,
    },
    n,
    c,
  );
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
  /** Rows in the batch, B. */
  batch: number;
  /** Positions per row, T; at most the model's context length. */
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
    wte.floats,
    wpe.floats,
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
 * position does not count. With `withGrad`, the fused kernel also overwrites the logits with
 * d(mean loss)/dlogits in the same pass (so the logits cannot be read afterwards), and the loss
 * must be the root of {@linkcode Tape.backward}.
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
  // In place: the logits (B·T·V floats, the largest activation) become their gradient.
  const dlogits = withGrad ? logits.gradInPlace() : null;
  if (withGrad && !dlogits) throw new Error("The logits already have a gradient; use them once.");
  await crossEntropy(
    tape.gpu,
    {
      losses: losses.buffer,
      dlogits,
      logits: logits.buffer,
      targets: targets.targets,
      mask: targets.mask,
    },
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

/**
 * A linear layer, `out (..., OC) = x (..., C) · weightᵀ + bias`, with `weight (OC, C)` and
 * `bias (OC)` or none (GPT-2's tied lm head).
 */
export async function linear(
  tape: Tape,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null,
): Promise<Tensor> {
  const { out, BT, C, OC } = linearOutput(tape, x, weight, "linear");
  const buffers = { inp: x.buffer, weight: weight.floats, bias: bias?.floats };
  await linearForward(tape.gpu, { out: out.buffer, ...buffers }, BT, C, OC);
  tape.record("linear", bias ? [x, weight, bias] : [x, weight], out, async () => {
    await linearInputGrads(tape, x, weight, bias, out.grad);
  });
  return out;
}

/**
 * `out = GELU(x · weightᵀ + bias)` (GPT-2's `mlp.c_fc`), forward and backward side by side: the
 * forward fuses GELU into the product's store and keeps the pre-activation, the backward (with
 * the same `gelu` option) turns dout into the pre-activation's gradient in place, then runs the
 * linear layer's backward.
 */
export async function linearGelu(
  tape: Tape,
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
): Promise<Tensor> {
  const { out, BT, C, OC } = linearOutput(tape, x, weight, "linear_gelu");
  const pre = tape.scratch(BT * OC, "pre_gelu"); // (..., OC) before GELU
  const buffers = { inp: x.buffer, weight: weight.floats, bias: bias.floats, pre };
  await linearForward(tape.gpu, { out: out.buffer, ...buffers }, BT, C, OC, { gelu: true });
  tape.record("linear_gelu", [x, weight, bias], out, async () => {
    // The backward turns dout into the pre-activation's gradient in place.
    await linearInputGrads(tape, x, weight, bias, out.gradForInPlace(), pre);
  });
  return out;
}

/** The output of a linear layer of `weight (OC, C)` on `x (..., C)`, checked: `(..., OC)`. */
function linearOutput(tape: Tape, x: Tensor, weight: Tensor, name: string) {
  const [OC, C] = weight.shape, BT = x.size / C;
  if (lastDim(x) !== C) {
    throw new Error(`${name}() got input [${x.shape}] for a weight of [${weight.shape}].`);
  }
  return { out: tape.tensor([...x.shape.slice(0, -1), OC], name), BT, C, OC };
}

/**
 * A linear layer's backward from `dout (..., OC)`: dx written, dweight and dbias added. With the
 * GELU layer's `pre`, dout is first turned into the pre-activation's gradient, in place.
 */
async function linearInputGrads(
  tape: Tape,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  dout: GPUBuffer,
  pre?: GPUBuffer,
): Promise<void> {
  const [OC, C] = weight.shape, BT = x.size / C;
  const dweight = weight.gradForAccumulate(), dbias = bias?.gradForAccumulate() ?? null;
  const rest = { dweight, dbias, dout, inp: x.buffer, weight: weight.floats, pre };
  const options = { gelu: pre !== undefined };
  await tape.writeGrad(
    x,
    (dinp) => linearBackward(tape.gpu, { dinp, ...rest }, BT, C, OC, options),
  );
}

/**
 * Causal multi-head self-attention from the fused `qkv (B, T, 3C)` projection to `y (B, T, C)`:
 * split into heads (B, NH, T, HS), FlashAttention-style fused attention (no T×T matrix in
 * memory), and heads merged back.
 */
export async function causalSelfAttention(tape: Tape, qkv: Tensor, nHead: number): Promise<Tensor> {
  const [B, T, C3] = qkv.shape, C = C3 / 3, NH = nHead, HS = C / NH;
  const gpu = tape.gpu, n = B * T * C;
  const q = tape.scratch(n, "q"), k = tape.scratch(n, "k"), v = tape.scratch(n, "v");
  const o = tape.scratch(n, "attn_o"), lse = tape.scratch(B * NH * T, "attn_lse");
  await splitHeadsForward(gpu, q, k, v, qkv.buffer, B, T, C, NH);
  await attentionForward(gpu, { o, lse, q, k, v }, B, NH, T, HS);
  const y = tape.tensor([B, T, C], "attn_y");
  await mergeHeadsForward(gpu, y.buffer, o, B, T, C, NH);
  tape.record("causal_self_attention", [qkv], y, async () => {
    const dO = gpu.acquire(n * 4), dq = gpu.acquire(n * 4), dk = gpu.acquire(n * 4);
    const dv = gpu.acquire(n * 4);
    await mergeHeadsBackward(gpu, dO, y.grad, B, T, C, NH);
    await attentionBackward(gpu, { dq, dk, dv, dout: dO, q, k, v, o, lse }, B, NH, T, HS);
    await tape.writeGrad(qkv, (dqkv) => splitHeadsBackward(gpu, dqkv, dq, dk, dv, B, T, C, NH));
    for (const buffer of [dO, dq, dk, dv]) gpu.release(buffer);
  });
  return y;
}
