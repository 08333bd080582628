/**
 * GPT-2's forward and mean loss on the CPU in float64, composed from the kernels' CPU
 * references: the independent reference the GPU model is checked against (llm.c's golden test).
 */

import { attentionForwardCpu } from "../../kernels/attention.ts";
import { mergeHeadsForwardCpu, splitHeadsForwardCpu } from "../../kernels/attention_layout.ts";
import { crossEntropyCpu } from "../../kernels/cross_entropy.ts";
import { embeddingForwardCpu } from "../../kernels/embedding.ts";
import { layernormForwardCpu } from "../../kernels/layernorm.ts";
import { matmulCpu } from "../../kernels/matmul.ts";
import type { GPT2Config } from "../../nn/config.ts";

/** Mean cross-entropy over the counted positions of a GPT-2 with `params` (float64). */
export function gpt2LossCpu(
  config: GPT2Config,
  params: Map<string, Float64Array>,
  tokens: Int32Array,
  targets: Int32Array,
  mask: Uint32Array,
  B: number,
  T: number,
): number {
  const { vocabSize: V, nLayer: L, nHead: NH, nEmbd: C } = config;
  const N = B * T, p = (name: string) => params.get(name)!;
  const linear = (x: Float64Array, name: string, OC: number, IC: number, gelu = false) => {
    const out = new Float64Array(N * OC);
    matmulCpu(out, x, p(`${name}.weight`), {
      m: N,
      n: OC,
      k: IC,
      transB: true,
      bias: p(`${name}.bias`),
      gelu,
    });
    return out;
  };
  const layernorm = (x: Float64Array, name: string) => {
    const out = new Float64Array(N * C);
    layernormForwardCpu(
      out,
      new Float64Array(N),
      new Float64Array(N),
      x,
      p(`${name}.weight`),
      p(`${name}.bias`),
      N,
      C,
    );
    return out;
  };
  const addInto = (x: Float64Array, y: Float64Array) => {
    for (let i = 0; i < x.length; i++) x[i] += y[i];
  };

  const x = new Float64Array(N * C);
  embeddingForwardCpu(x, tokens, p("wte"), p("wpe"), B, T, C);
  for (let l = 0; l < L; l++) {
    const qkv = linear(layernorm(x, `h.${l}.ln_1`), `h.${l}.attn.c_attn`, 3 * C, C);
    const [q, k, v, o] = [0, 1, 2, 3].map(() => new Float64Array(N * C));
    splitHeadsForwardCpu(q, k, v, qkv, B, T, C, NH);
    attentionForwardCpu(o, new Float64Array(B * NH * T), q, k, v, B, NH, T, C / NH);
    const y = new Float64Array(N * C);
    mergeHeadsForwardCpu(y, o, B, T, C, NH);
    addInto(x, linear(y, `h.${l}.attn.c_proj`, C, C));
    const hidden = linear(layernorm(x, `h.${l}.ln_2`), `h.${l}.mlp.c_fc`, 4 * C, C, true);
    addInto(x, linear(hidden, `h.${l}.mlp.c_proj`, C, 4 * C));
  }
  const logits = new Float64Array(N * V);
  matmulCpu(logits, layernorm(x, "ln_f"), p("wte"), { m: N, n: V, k: C, transB: true });
  const losses = new Float64Array(N);
  crossEntropyCpu(losses, null, logits, targets, mask, 1, N, V);
  const counted = mask.reduce((s, m) => s + m, 0);
  return losses.reduce((s, l) => s + l, 0) / counted;
}
