import assert from "node:assert/strict";
import { uploadTokens } from "../../nn/batch.ts";
import { loadCheckpoint, readCheckpoint } from "../../nn/checkpoint.ts";
import type { GPT2Config } from "../../nn/config.ts";
import { Tape } from "../../nn/tape.ts";
import { assertClose, seededRandom, testGpu } from "../_gpu.ts";

// A GPT-2 small enough for a float64 CPU forward, with a square c_proj (C, C) whose transpose
// has the right shape: only the values can tell the two apart.
const config: GPT2Config = { vocabSize: 301, contextLength: 16, nLayer: 2, nHead: 2, nEmbd: 16 };
const C = config.nEmbd;

/** One tensor of a hand-written safetensors file. */
interface RawTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/**
 * GPT-2's tensors in the documented Hugging Face layout, from values chosen here: Conv1D weights
 * `(in, out)`, names without `transformer.` (as OpenAI's GPT-2 on the hub has them). Every value
 * is a multiple of 2^-10 below 1 in magnitude, so float16 holds it exactly.
 */
function handMadeGpt2(seed: number): RawTensor[] {
  const random = seededRandom(seed);
  const values = (n: number, scale: number, offset = 0) =>
    Float32Array.from(
      { length: n },
      () => offset + Math.round((random() * 2 - 1) * scale * 1024) / 1024,
    );
  const tensors: RawTensor[] = [
    { name: "wte.weight", shape: [config.vocabSize, C], data: values(config.vocabSize * C, 0.5) },
    {
      name: "wpe.weight",
      shape: [config.contextLength, C],
      data: values(config.contextLength * C, 0.3),
    },
  ];
  const norm = (name: string) =>
    tensors.push(
      { name: `${name}.weight`, shape: [C], data: values(C, 0.25, 1) },
      { name: `${name}.bias`, shape: [C], data: values(C, 0.25) },
    );
  const conv1d = (name: string, inputs: number, outputs: number) =>
    tensors.push(
      { name: `${name}.weight`, shape: [inputs, outputs], data: values(inputs * outputs, 0.4) },
      { name: `${name}.bias`, shape: [outputs], data: values(outputs, 0.2) },
    );
  for (let i = 0; i < config.nLayer; i++) {
    norm(`h.${i}.ln_1`);
    conv1d(`h.${i}.attn.c_attn`, C, 3 * C);
    conv1d(`h.${i}.attn.c_proj`, C, C);
    norm(`h.${i}.ln_2`);
    conv1d(`h.${i}.mlp.c_fc`, C, 4 * C);
    conv1d(`h.${i}.mlp.c_proj`, 4 * C, C);
  }
  norm("ln_f");
  return tensors;
}

/** Float32 to float16 bits, for values float16 holds exactly (multiples of 2^-10 below 1). */
function exactHalf(value: number): number {
  if (value === 0) return 0;
  const sign = value < 0 ? 0x8000 : 0, magnitude = Math.abs(value);
  const exponent = Math.floor(Math.log2(magnitude));
  if (exponent < -14) return sign | Math.round(magnitude / 2 ** -24); // subnormal
  return sign | ((exponent + 15) << 10) | Math.round((magnitude / 2 ** exponent - 1) * 1024);
}

/** Writes a safetensors file by hand: F32 or F16 tensors, and the metadata transformers writes. */
async function writeRaw(path: string, tensors: RawTensor[], dtype: "F32" | "F16" = "F32") {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const { name, shape, data } of tensors) {
    const bytes = dtype === "F32"
      ? new Uint8Array(data.slice().buffer)
      : new Uint8Array(Uint16Array.from(data, exactHalf).buffer);
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(json.length), true);
  const file = new Uint8Array(8 + json.length + offset);
  file.set(prefix);
  file.set(json, 8);
  let at = 8 + json.length;
  for (const chunk of chunks) {
    file.set(chunk, at);
    at += chunk.length;
  }
  await Deno.writeFile(path, file);
}

/** GPT-2's documented config.json for `config`. */
function configJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    vocab_size: config.vocabSize,
    n_positions: config.contextLength,
    n_embd: C,
    n_layer: config.nLayer,
    n_head: config.nHead,
    activation_function: "gelu_new",
    layer_norm_epsilon: 1e-5,
    ...overrides,
  };
}

async function writeFolder(
  dir: string,
  tensors: RawTensor[],
  options: { dtype?: "F32" | "F16"; config?: Record<string, unknown> } = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(options.config ?? configJson()));
  await writeRaw(`${dir}/model.safetensors`, tensors, options.dtype);
}

/**
 * GPT-2's logits (T, V) for one row of ids, in float64, straight from the Hugging Face layout:
 * `y = x W + b` with W `(in, out)`, as `Conv1D` computes; heads are the consecutive slices of
 * q, k and v; the tanh GELU; layernorm epsilon 1e-5; the head tied to wte.
 */
function logitsCpu(tensors: RawTensor[], ids: number[]): Float64Array {
  const p = (name: string) => tensors.find((t) => t.name === name)!.data;
  const T = ids.length, V = config.vocabSize, H = config.nHead, D = C / H;
  const conv1d = (x: Float64Array, name: string, inputs: number, outputs: number) => {
    const w = p(`${name}.weight`), b = p(`${name}.bias`), y = new Float64Array(T * outputs);
    for (let t = 0; t < T; t++) {
      for (let o = 0; o < outputs; o++) {
        let sum = b[o];
        for (let i = 0; i < inputs; i++) sum += x[t * inputs + i] * w[i * outputs + o];
        y[t * outputs + o] = sum;
      }
    }
    return y;
  };
  const layernorm = (x: Float64Array, name: string) => {
    const w = p(`${name}.weight`), b = p(`${name}.bias`), y = new Float64Array(T * C);
    for (let t = 0; t < T; t++) {
      const row = x.subarray(t * C, (t + 1) * C);
      const mean = row.reduce((s, v) => s + v, 0) / C;
      const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / C;
      for (let c = 0; c < C; c++) {
        y[t * C + c] = (row[c] - mean) / Math.sqrt(variance + 1e-5) * w[c] + b[c];
      }
    }
    return y;
  };
  const gelu = (v: number) =>
    0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

  const x = new Float64Array(T * C);
  ids.forEach((id, t) => {
    for (let c = 0; c < C; c++) {
      x[t * C + c] = p("wte.weight")[id * C + c] + p("wpe.weight")[t * C + c];
    }
  });
  for (let l = 0; l < config.nLayer; l++) {
    const qkv = conv1d(layernorm(x, `h.${l}.ln_1`), `h.${l}.attn.c_attn`, C, 3 * C); // (T, 3C)
    const y = new Float64Array(T * C);
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const q = (d: number) => qkv[t * 3 * C + h * D + d];
        const k = (s: number, d: number) => qkv[s * 3 * C + C + h * D + d];
        const v = (s: number, d: number) => qkv[s * 3 * C + 2 * C + h * D + d];
        const scores = Array.from({ length: t + 1 }, (_, s) => {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q(d) * k(s, d);
          return dot / Math.sqrt(D);
        });
        const top = Math.max(...scores);
        const weights = scores.map((score) => Math.exp(score - top));
        const total = weights.reduce((a, b) => a + b, 0);
        for (let d = 0; d < D; d++) {
          y[t * C + h * D + d] = weights.reduce((sum, w, s) => sum + w / total * v(s, d), 0);
        }
      }
    }
    const attn = conv1d(y, `h.${l}.attn.c_proj`, C, C);
    for (let i = 0; i < x.length; i++) x[i] += attn[i];
    const hidden = conv1d(layernorm(x, `h.${l}.ln_2`), `h.${l}.mlp.c_fc`, C, 4 * C).map(gelu);
    const mlp = conv1d(hidden, `h.${l}.mlp.c_proj`, 4 * C, C);
    for (let i = 0; i < x.length; i++) x[i] += mlp[i];
  }
  const final = layernorm(x, "ln_f"), wte = p("wte.weight");
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < V; v++) {
      let sum = 0;
      for (let c = 0; c < C; c++) sum += final[t * C + c] * wte[v * C + c];
      logits[t * V + v] = sum;
    }
  }
  return logits;
}

const ids = [5, 300, 17, 0, 42, 128, 7, 99, 250, 3, 64];

/** The logits of the model loaded from `dir` through the checkpoint loader. */
async function importedLogits(dir: string): Promise<Float32Array> {
  const gpu = await testGpu();
  const { model, config: loaded, step } = await loadCheckpoint(gpu, dir);
  assert.deepEqual(loaded, config);
  assert.equal(step, 0);
  const tape = new Tape(gpu);
  const tokens = Int32Array.from(ids);
  try {
    const logits = await model.forward(tape, uploadTokens(tape, tokens, 1, tokens.length));
    return await logits.read();
  } finally {
    tape.dispose();
    model.dispose();
  }
}

Deno.test("a hand-made Hugging Face GPT-2 folder gives the logits a CPU forward of its Conv1D (in, out) weights gives", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tensors = handMadeGpt2(1);
    // As OpenAI's GPT-2 on the hub: no prefix, the causal-mask buffers beside the weights.
    const buffers = [0, 1].flatMap((i) => [
      { name: `h.${i}.attn.bias`, shape: [1, 1, 16, 16], data: new Float32Array(256).fill(1) },
      { name: `h.${i}.attn.masked_bias`, shape: [], data: Float32Array.of(-1e4) },
    ]);
    await writeFolder(`${dir}/plain`, [...tensors, ...buffers]);
    const expected = logitsCpu(tensors, ids);
    const plain = await importedLogits(`${dir}/plain`);
    assertClose(plain, expected, { atol: 2e-4, rtol: 1e-4 });

    // The same model transposed as this project stores it must not pass for it: the test can fail.
    const swapped = tensors.map((t) =>
      t.name === "h.0.attn.c_proj.weight"
        ? {
          ...t,
          data: Float32Array.from(t.data, (_, i) => t.data[(i % C) * C + Math.floor(i / C)]),
        }
        : t
    );
    assert.throws(() => assertClose(plain, logitsCpu(swapped, ids), { atol: 2e-4, rtol: 1e-4 }));

    // As save_pretrained writes it: the transformer. prefix, and lm_head.weight (the tied head).
    const prefixed = tensors.map((t) => ({ ...t, name: `transformer.${t.name}` }));
    const head = { name: "lm_head.weight", shape: tensors[0].shape, data: tensors[0].data };
    await writeFolder(`${dir}/prefixed`, [...prefixed, head]);
    assert.deepEqual(await importedLogits(`${dir}/prefixed`), plain);

    // Float16 (every value here is exact in it) loads as the same float32 model.
    await writeFolder(`${dir}/half`, prefixed, { dtype: "F16" });
    assert.deepEqual(await importedLogits(`${dir}/half`), plain);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readCheckpoint() converts a Hugging Face folder to this project's names and (out, in) layout", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tensors = handMadeGpt2(2);
    await writeFolder(dir, tensors);
    const read = await readCheckpoint(dir);
    assert.deepEqual(read.config, config);
    const ours = read.tensors.get("h.1.mlp.c_fc.weight")!;
    const theirs = tensors.find((t) => t.name === "h.1.mlp.c_fc.weight")!;
    assert.deepEqual(ours.shape, [4 * C, C]);
    // ours[o][i] = theirs[i][o]
    assert.equal(ours.data[3 * C + 5], theirs.data[5 * 4 * C + 3]);
    assert.deepEqual(read.tensors.get("wte")!.data, tensors[0].data);
    assert.equal(read.tensors.has("wte.weight"), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a folder that is not a GPT-2 this project can run is refused, naming the file and the tensor or field", async () => {
  const dir = await Deno.makeTempDir();
  const tensors = handMadeGpt2(3);
  const refused = async (
    name: string,
    pattern: RegExp,
    folder: RawTensor[] = tensors,
    json?: Record<string, unknown>,
  ) => {
    await writeFolder(`${dir}/${name}`, folder, { config: json });
    await assert.rejects(readCheckpoint(`${dir}/${name}`), pattern);
  };
  try {
    await refused(
      "llama",
      /llama\/config\.json has model_type "llama"; only GPT-2 \("gpt2"\)/,
      tensors,
      configJson({ model_type: "llama" }),
    );
    await refused(
      "relu",
      /relu\/config\.json: activation_function is "relu"/,
      tensors,
      configJson({ activation_function: "relu" }),
    );
    await refused(
      "eps",
      /eps\/config\.json: layer_norm_epsilon is 0\.001/,
      tensors,
      configJson({ layer_norm_epsilon: 1e-3 }),
    );
    await refused(
      "heads",
      /heads\/config\.json: n_head must be a positive whole number, got null/,
      tensors,
      configJson({ n_head: null }),
    );
    await refused(
      "missing",
      /missing\/model\.safetensors has no tensor transformer\.h\.1\.mlp\.c_fc\.weight \(nor h\.1\.mlp\.c_fc\.weight\)/,
      tensors.filter((t) => t.name !== "h.1.mlp.c_fc.weight"),
    );
    // c_attn stored (out, in) as this project does, not Conv1D's (in, out).
    const c_attn = tensors.map((t) =>
      t.name === "h.0.attn.c_attn.weight" ? { ...t, shape: [3 * C, C] } : t
    );
    await refused(
      "shape",
      /shape\/model\.safetensors: tensor transformer\.h\.0\.attn\.c_attn\.weight has shape \[48,16\], but .*needs \[16,48\] \(Conv1D weights are stored \(in, out\)\)/,
      c_attn,
    );
    await refused(
      "vocab",
      /vocab\/model\.safetensors: tensor transformer\.wte\.weight has shape \[301,16\], but .*needs \[500,16\]/,
      tensors,
      configJson({ vocab_size: 500 }),
    );
    await refused(
      "extra",
      /extra\/model\.safetensors holds tensors a GPT-2 language model does not have \(score\.weight\)/,
      [...tensors, { name: "score.weight", shape: [2, C], data: new Float32Array(2 * C) }],
    );
    await refused(
      "untied",
      /untied\/model\.safetensors: tensor lm_head\.weight is not transformer\.wte\.weight/,
      [...tensors, {
        name: "lm_head.weight",
        shape: tensors[0].shape,
        data: tensors[0].data.map((v) => v + 1),
      }],
    );

    await Deno.mkdir(`${dir}/sharded`);
    await Deno.writeTextFile(`${dir}/sharded/config.json`, JSON.stringify(configJson()));
    await Deno.writeTextFile(`${dir}/sharded/model.safetensors.index.json`, "{}");
    await assert.rejects(
      readCheckpoint(`${dir}/sharded`),
      /sharded has no model\.safetensors, only shards/,
    );
    await Deno.writeTextFile(`${dir}/sharded/config.json`, "{ not json");
    await assert.rejects(
      readCheckpoint(`${dir}/sharded`),
      /sharded\/config\.json is not valid JSON/,
    );

    await Deno.mkdir(`${dir}/run`);
    await assert.rejects(
      readCheckpoint(`${dir}/run`),
      /run is a folder without config\.json; pass a checkpoint file \(such as .*run\/checkpoint\.safetensors\) or a Hugging Face GPT-2 folder/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
