/**
 * GPT-2 (Radford et al., 2019) on the autograd tape. Parameter names follow the GPT-2
 * checkpoint (`wte`, `wpe`, `h.N.attn.c_attn.weight`, `ln_f.bias`, ...), so loading and exporting
 * are name maps; weights are stored `(out, in)` as in llm.c (Hugging Face's Conv1D stores the
 * transpose). The output head is tied to `wte`.
 *
 * @module
 */

import type { DecodeShape } from "../kernels/attention_decode.ts";
import { bufferOf, byteOffsetOf, type Gpu, type GpuFloats } from "../kernels/device.ts";
import { embeddingForward } from "../kernels/embedding.ts";
import { layernormForward } from "../kernels/layernorm.ts";
import { matmul, MATMUL_TILE_CPU, type MatmulLimits } from "../kernels/matmul.ts";
import { ParameterArena } from "./arena.ts";
import { type GPT2Config, validateConfig } from "./config.ts";
import { cachedSelfAttention, type KvCache } from "./kv_cache.ts";
import { type BatchLoss, meanLoss, type MicroBatch, uploadBatch } from "./batch.ts";
import {
  causalSelfAttention,
  crossEntropyLoss,
  embed,
  layernorm,
  linear,
  linearGelu,
  residualLayernorm,
  type TokenBatch,
} from "./ops.ts";
import { Random } from "./random.ts";
import type { Tape } from "./tape.ts";
import { Tensor } from "./tensor.ts";

/** How a parameter is initialized, and whether AdamW decays it. */
export interface ParameterSpec {
  /** The GPT-2 checkpoint name, e.g. `h.0.attn.c_attn.weight`. */
  name: string;
  /** Dimensions, weights `(out, in)` as in llm.c: `wte` is `(V, C)`, `c_attn.weight` `(3C, C)`. */
  shape: number[];
  /** Drawn from a normal distribution of mean 0 and deviation `std`, or the constant 0 or 1. */
  init: "normal" | "zeros" | "ones";
  /** Standard deviation of a normal initialization. */
  std?: number;
  /** Matrices and embeddings decay; biases and layernorm parameters do not. */
  decay: boolean;
}

/** Every parameter of a GPT-2 model, in checkpoint order. */
export function gpt2ParameterSpecs(config: GPT2Config): ParameterSpec[] {
  const { vocabSize: V, contextLength: T, nLayer: L, nEmbd: C } = config;
  // GPT-2 scales the init of projections into the residual stream by 1/sqrt(2L): each block adds
  // two of them, and the stream's variance would otherwise grow with depth.
  const residualStd = 0.02 / Math.sqrt(2 * L);
  const specs: ParameterSpec[] = [
    { name: "wte", shape: [V, C], init: "normal", std: 0.02, decay: true },
    { name: "wpe", shape: [T, C], init: "normal", std: 0.01, decay: true },
  ];
  const norm = (name: string) => [
    { name: `${name}.weight`, shape: [C], init: "ones" as const, decay: false },
    { name: `${name}.bias`, shape: [C], init: "zeros" as const, decay: false },
  ];
  const dense = (name: string, out: number, inp: number, std: number) => [
    { name: `${name}.weight`, shape: [out, inp], init: "normal" as const, std, decay: true },
    { name: `${name}.bias`, shape: [out], init: "zeros" as const, decay: false },
  ];
  for (let i = 0; i < L; i++) {
    specs.push(
      ...norm(`h.${i}.ln_1`),
      ...dense(`h.${i}.attn.c_attn`, 3 * C, C, 0.02),
      ...dense(`h.${i}.attn.c_proj`, C, C, residualStd),
      ...norm(`h.${i}.ln_2`),
      ...dense(`h.${i}.mlp.c_fc`, 4 * C, C, 0.02),
      ...dense(`h.${i}.mlp.c_proj`, C, 4 * C, residualStd),
    );
  }
  specs.push(...norm("ln_f"));
  return specs;
}

/**
 * The order of the parameters in the model's flat buffer: the blocks' matrices, then the other
 * decayed parameters (the embeddings), then the undecayed ones (biases, layer norms), each group
 * in checkpoint order. Whichever set AdamW updates, all of them or all but the blocks' matrices
 * (which Muon takes), it is then one run of neighbouring tensors, the decayed ones first: one
 * AdamW launch per binding window (`nn/optimizer.ts`).
 */
export function gpt2ArenaOrder(specs: readonly ParameterSpec[]): ParameterSpec[] {
  const blockMatrix = (s: ParameterSpec) => s.name.startsWith("h.") && s.shape.length === 2;
  return [
    ...specs.filter(blockMatrix),
    ...specs.filter((s) => s.decay && !blockMatrix(s)),
    ...specs.filter((s) => !s.decay && !blockMatrix(s)),
  ];
}

/** A GPT-2 model: its configuration and its parameters on the GPU. */
export class GPT2 {
  /** Parameters by checkpoint name, in checkpoint order. */
  readonly params: Map<string, Tensor>;
  /** Names of the parameters AdamW decays. */
  readonly decayed: Set<string>;
  /** The flat buffers the parameters and gradients live in; null where they do not fit one. */
  readonly #arena: ParameterArena | null;

  private constructor(
    readonly gpu: Gpu,
    readonly config: GPT2Config,
    values: (spec: ParameterSpec) => Float32Array,
  ) {
    validateConfig(config);
    const specs = gpt2ParameterSpecs(config);
    const order = gpt2ArenaOrder(specs);
    this.#arena = ParameterArena.fits(gpu, order) ? new ParameterArena(gpu, order) : null;
    this.params = new Map();
    for (const spec of specs) {
      const data = values(spec);
      const shared = this.#arena?.tensors.get(spec.name);
      shared?.write(data);
      this.params.set(spec.name, shared ?? Tensor.from(gpu, data, spec.shape, spec.name));
    }
    this.decayed = new Set(specs.filter((s) => s.decay).map((s) => s.name));
  }

  /** A new model with GPT-2's initialization, repeatable under `seed`. */
  static init(gpu: Gpu, config: GPT2Config, seed: number): GPT2 {
    const random = new Random(seed);
    return new GPT2(gpu, config, (spec) => {
      const data = new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
      if (spec.init === "ones") data.fill(1);
      if (spec.init === "normal") {
        for (let i = 0; i < data.length; i++) data[i] = random.normal() * spec.std!;
      }
      return data;
    });
  }

  /**
   * A model holding the given weights (from a checkpoint); every parameter must be present with
   * its shape.
   */
  static fromWeights(
    gpu: Gpu,
    config: GPT2Config,
    weights: Map<string, { shape: number[]; data: Float32Array }>,
  ): GPT2 {
    validateConfig(config);
    for (const spec of gpt2ParameterSpecs(config)) {
      const weight = weights.get(spec.name);
      if (!weight || weight.shape.join() !== spec.shape.join()) {
        throw new Error(
          `The checkpoint's ${spec.name} is ${weight ? `[${weight.shape}]` : "missing"}, but the ` +
            `configuration needs [${spec.shape}]; check the model settings.`,
        );
      }
    }
    return new GPT2(gpu, config, (spec) => weights.get(spec.name)!.data);
  }

  #p(name: string): Tensor {
    return this.params.get(name)!;
  }

  /** Logits (B, T, V) for token ids (B, T) on the GPU (`uploadTokens` puts them there). */
  async forward(tape: Tape, tokens: TokenBatch): Promise<Tensor> {
    let x = await embed(tape, tokens, this.#p("wte"), this.#p("wpe")); // (B, T, C)
    let h = await this.#ln(tape, x, "h.0.ln_1");
    // x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)), each (B, T, C). Each residual add runs in
    // one launch with the layernorm after it: ln_2, the next block's ln_1, or ln_f.
    const L = this.config.nLayer;
    for (let i = 0; i < L; i++) {
      const b = `h.${i}`;
      ({ sum: x, out: h } = await this.#addLn(tape, x, await this.#attn(tape, h, b), `${b}.ln_2`));
      const next = i + 1 < L ? `h.${i + 1}.ln_1` : "ln_f";
      ({ sum: x, out: h } = await this.#addLn(tape, x, await this.#mlp(tape, h, b), next));
    }
    return await linear(tape, h, this.#p("wte"), null); // (B, T, V), the tied output head
  }

  /** Layer norm `name` (`h.N.ln_1`, `ln_f`, ...): (B, T, C) → (B, T, C). */
  async #ln(tape: Tape, x: Tensor, name: string): Promise<Tensor> {
    return await layernorm(tape, x, this.#p(`${name}.weight`), this.#p(`${name}.bias`));
  }

  /** The residual `x + branch` and layer norm `name` of it: `{ sum, out }`, each (B, T, C). */
  #addLn(tape: Tape, x: Tensor, branch: Tensor, name: string) {
    return residualLayernorm(tape, x, branch, this.#p(`${name}.weight`), this.#p(`${name}.bias`));
  }

  /** Block `b`'s (`h.N`) causal self-attention: (B, T, C) → (B, T, C). */
  async #attn(tape: Tape, x: Tensor, b: string): Promise<Tensor> {
    const p = (name: string) => this.#p(`${b}.attn.${name}`);
    const qkv = await linear(tape, x, p("c_attn.weight"), p("c_attn.bias")); // (B, T, 3C)
    const y = await causalSelfAttention(tape, qkv, this.config.nHead); // (B, T, C)
    return await linear(tape, y, p("c_proj.weight"), p("c_proj.bias")); // (B, T, C)
  }

  /** Block `b`'s (`h.N`) MLP: (B, T, C) → (B, T, 4C) through GELU → (B, T, C). */
  async #mlp(tape: Tape, x: Tensor, b: string): Promise<Tensor> {
    const p = (name: string) => this.#p(`${b}.mlp.${name}`);
    const hidden = await linearGelu(tape, x, p("c_fc.weight"), p("c_fc.bias")); // (B, T, 4C)
    return await linear(tape, hidden, p("c_proj.weight"), p("c_proj.bias")); // (B, T, C)
  }

  /**
   * Inference with a key-value cache: logits (R, V) at the last new position of each of the R
   * step rows. Each row's new tokens take positions `cache.lengths[row]` on (a whole prompt in
   * a prefill, then one token per step), their keys and values are appended to the cache row,
   * and each attends over its row's cache; `cache.lengths` then counts them. Rows with fewer new
   * tokens than the longest are padded at the end: causal attention keeps the pads out of the
   * real positions, and the pads' cache entries are overwritten before any query reaches them.
   * No tape: nothing is kept for a backward. The same blocks as {@linkcode GPT2.forward}, with
   * each residual add fused into the projection's store (`x += y·Wᵀ + b`), and the attention
   * of {@linkcode cachedSelfAttention}.
   */
  async forwardCached(cache: KvCache, step: CachedStep): Promise<Tensor> {
    const gpu = this.gpu;
    const { nEmbd: C, nHead: NH, vocabSize: V, nLayer } = this.config;
    const maxT = cache.maxTime;
    const { rows, tokens } = checkStep(cache, step);
    const R = rows.length, Tq = Math.max(...tokens.map((t) => t.length)), N = R * Tq;
    const starts = rows.map((row) => cache.lengths[row]);
    const prefill = starts.every((start) => start === 0);
    const ids = new Int32Array(N); // (R, Tq), pads 0
    tokens.forEach((row, r) => ids.set(row, r * Tq));
    const scratch: GPUBuffer[] = [];
    const buffer = (n: number, name: string) => {
      scratch.push(gpu.acquire(Math.max(1, n) * 4, undefined, name));
      return scratch.at(-1)!;
    };
    const upload = (data: Int32Array | Uint32Array, name: string) => {
      scratch.push(gpu.upload(data, name));
      return scratch.at(-1)!;
    };
    const idBuffer = upload(ids, "cached.ids");
    const slots = upload(Uint32Array.from(rows.flatMap((row, r) => [row, starts[r]])), "slots");
    const shape: DecodeShape = {
      rows: R,
      time: Tq,
      channels: C,
      heads: NH,
      maxTime: maxT,
      cacheRows: cache.rows,
    };
    const x = buffer(N * C, "cached.x"), h = buffer(N * C, "cached.h");
    const qkv = buffer(N * 3 * C, "cached.qkv"), y = buffer(N * C, "cached.y");
    const hidden = buffer(N * 4 * C, "cached.hidden");
    const mean = buffer(N, "cached.mean"), rstd = buffer(N, "cached.rstd");
    try {
      await this.#embedAt(x, idBuffer, starts, R, Tq, buffer); // (R, Tq, C)
      for (let i = 0; i < nLayer; i++) {
        const p = (name: string) => this.#p(`h.${i}.${name}`).floats;
        // out (N, OC) = inp (N, IC) · weightᵀ + bias, with GELU, or added into out (residual).
        const dense = (
          out: GPUBuffer,
          inp: GPUBuffer,
          name: string,
          IC: number,
          OC: number,
          epilogue: { gelu?: boolean; accumulate?: boolean } = {},
        ) =>
          matmul(gpu, out, inp, p(`${name}.weight`), {
            m: N,
            n: OC,
            k: IC,
            transB: true,
            bias: p(`${name}.bias`),
            ...epilogue,
          }, inferenceLimits(gpu, N));
        const [kCache, vCache] = [cache.keys[i], cache.values[i]];
        // x = x + attn(ln_1(x))
        const ln1 = { weight: p("ln_1.weight"), bias: p("ln_1.bias") };
        await layernormForward(gpu, { out: h, mean, rstd, inp: x, ...ln1 }, N, C);
        await dense(qkv, h, "attn.c_attn", C, 3 * C); // (R, Tq, 3C)
        const attnBuffers = { y, qkv, kCache, vCache, slots };
        await cachedSelfAttention(gpu, attnBuffers, shape, prefill); // (R, Tq, C)
        await dense(x, y, "attn.c_proj", C, C, { accumulate: true });
        // x = x + mlp(ln_2(x))
        const ln2 = { weight: p("ln_2.weight"), bias: p("ln_2.bias") };
        await layernormForward(gpu, { out: h, mean, rstd, inp: x, ...ln2 }, N, C);
        await dense(hidden, h, "mlp.c_fc", C, 4 * C, { gelu: true }); // (R, Tq, 4C)
        await dense(x, hidden, "mlp.c_proj", 4 * C, C, { accumulate: true });
      }
      // Only each row's last real position is read out: the head is V wide.
      const last = Tq === 1 ? x : buffer(R * C, "cached.last"); // (R, C)
      if (Tq > 1) {
        tokens.forEach((row, r) => {
          const from = (r * Tq + row.length - 1) * C * 4;
          gpu.encoder.copyBufferToBuffer(x, from, last, r * C * 4, C * 4);
        });
      }
      const lnF = { weight: this.#p("ln_f.weight").floats, bias: this.#p("ln_f.bias").floats };
      await layernormForward(gpu, { out: h, mean, rstd, inp: last, ...lnF }, R, C);
      const logits = Tensor.empty(gpu, [R, V], "cached.logits");
      const wte = this.#p("wte").floats; // the tied output head
      await matmul(
        gpu,
        logits.buffer,
        h,
        wte,
        { m: R, n: V, k: C, transB: true },
        inferenceLimits(gpu, R),
      );
      rows.forEach((row, r) => cache.lengths[row] = starts[r] + tokens[r].length);
      return logits;
    } finally {
      for (const b of scratch) gpu.release(b);
    }
  }

  /**
   * Token plus position embedding of the step's new tokens `ids` (R, Tq) at positions
   * `starts[r] + t` into `out` (R, Tq, C). From position 0 (a prefill) that is the embedding
   * kernel as in training; otherwise each row's position rows of `wpe` are first copied into a
   * (R·Tq, C) table, row by row, which the same kernel then reads as the positions of one
   * sequence of R·Tq tokens (positions past the context, pads only, are left out).
   */
  async #embedAt(
    out: GPUBuffer,
    ids: GPUBuffer,
    starts: readonly number[],
    R: number,
    Tq: number,
    buffer: (n: number, name: string) => GPUBuffer,
  ): Promise<void> {
    const { nEmbd: C, vocabSize: V, contextLength: maxT } = this.config;
    const [wte, wpe]: GpuFloats[] = [this.#p("wte").floats, this.#p("wpe").floats];
    if (starts.every((s) => s === 0)) {
      return await embeddingForward(this.gpu, out, ids, wte, wpe, R, Tq, C, V, maxT);
    }
    const table = buffer(R * Tq * C, "cached.positions");
    starts.forEach((start, r) => {
      const count = Math.min(Tq, maxT - start);
      const from = byteOffsetOf(wpe) + start * C * 4;
      this.gpu.encoder.copyBufferToBuffer(
        bufferOf(wpe),
        from,
        table,
        r * Tq * C * 4,
        count * C * 4,
      );
    });
    await embeddingForward(this.gpu, out, ids, wte, table, 1, R * Tq, C, V, R * Tq);
  }

  /**
   * The next-token loss on `batch`, nanoGPT's `logits, loss = model(X, Y)`: uploads the batch
   * (into buffers the tape frees), runs the forward and the fused softmax cross-entropy, and
   * returns the per-position losses with the positions that count. The gradient is that of the
   * mean over `counted` positions (default the batch's own; a step of several micro-batches
   * passes the count of all of them) and is readied for {@linkcode Tape.backward} on
   * `perPosition`, unless `withGrad` is false (validation), which keeps the logits intact.
   */
  async loss(
    tape: Tape,
    batch: MicroBatch,
    options: { counted?: number; withGrad?: boolean } = {},
  ): Promise<BatchLoss> {
    const { tokens, targets } = uploadBatch(tape, batch, options.counted);
    const logits = await this.forward(tape, tokens); // (B, T, V)
    const withGrad = options.withGrad ?? true;
    const perPosition = await crossEntropyLoss(tape, logits, targets, { withGrad }); // (B·T)
    const counted = targets.counted;
    return { perPosition, counted, mean: async () => meanLoss(await perPosition.read(), counted) };
  }

  /** Forgets every parameter gradient (after an optimizer step). */
  zeroGrad(): void {
    for (const param of this.params.values()) param.zeroGrad();
  }

  /** Frees the parameters and their gradients. */
  dispose(): void {
    for (const param of this.params.values()) param.dispose();
    this.#arena?.dispose();
  }
}

/** The new tokens of one {@linkcode GPT2.forwardCached}: which cache rows advance, and by what. */
export interface CachedStep {
  /** The cache row each step row reads and appends to; distinct. */
  rows: readonly number[];
  /** Each step row's new tokens (at least one): a prompt, or the token chosen last. */
  tokens: readonly (readonly number[])[];
}

/** Checks a cached step against its cache; returns it. */
function checkStep(cache: KvCache, step: CachedStep): CachedStep {
  const { rows, tokens } = step;
  if (rows.length === 0 || rows.length !== tokens.length) {
    throw new Error(
      `A cached step needs one token list per row, got ${rows.length} rows and ` +
        `${tokens.length} token lists.`,
    );
  }
  if (new Set(rows).size !== rows.length) throw new Error(`Cached step rows [${rows}] repeat.`);
  rows.forEach((row, r) => {
    if (!(Number.isInteger(row) && row >= 0 && row < cache.rows)) {
      throw new RangeError(`Cache row ${row} is not in 0..${cache.rows - 1}.`);
    }
    const end = cache.lengths[row] + tokens[r].length;
    if (tokens[r].length === 0 || end > cache.maxTime) {
      throw new RangeError(
        `Cache row ${row} holds ${cache.lengths[row]} positions; adding ${tokens[r].length} ` +
          `would not fit its ${cache.maxTime} (give 1 or more tokens; reset a full row and ` +
          "prefill its last positions again).",
      );
    }
  });
  return step;
}

/**
 * The matmul tile of inference on `rows` rows. On a CPU adapter the training tile computes
 * 16 rows per invocation, so a one-token step (R rows) would do up to 16 times the work it
 * needs; 4 rows per invocation (the smallest: texels hold 4) cut the time of a one-row step's
 * matmuls about threefold. Each output is summed in the same order whatever the tile.
 */
function inferenceLimits(gpu: Gpu, rows: number): MatmulLimits | undefined {
  return gpu.adapter.isCpu && rows <= 8 ? { tile: { ...MATMUL_TILE_CPU, tm: 4 } } : undefined;
}

/**
 * Weights with the vocabulary grown to `vocabSize`: `wte` gets new rows (for tokens added to the
 * tokenizer, such as ChatML's `<|im_start|>` and `<|im_end|>`) initialized to the mean of the
 * existing rows, a neutral start that keeps the output head's logits for them moderate.
 */
export function growVocabulary(
  weights: Map<string, { shape: number[]; data: Float32Array }>,
  vocabSize: number,
): Map<string, { shape: number[]; data: Float32Array }> {
  const wte = weights.get("wte");
  if (!wte) throw new Error("The weights have no wte to grow.");
  const [V, C] = wte.shape;
  if (vocabSize < V) {
    throw new Error(`Cannot shrink the vocabulary from ${V} to ${vocabSize} tokens.`);
  }
  const mean = new Float64Array(C);
  for (let v = 0; v < V; v++) for (let c = 0; c < C; c++) mean[c] += wte.data[v * C + c] / V;
  const grown = new Float32Array(vocabSize * C);
  grown.set(wte.data);
  for (let v = V; v < vocabSize; v++) grown.set(mean, v * C);
  return new Map(weights).set("wte", { shape: [vocabSize, C], data: grown });
}
