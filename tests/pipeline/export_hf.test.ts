import assert from "node:assert/strict";
import { uploadTokens } from "../../nn/batch.ts";
import { loadCheckpoint, saveCheckpoint } from "../../nn/checkpoint.ts";
import type { GPT2Config } from "../../nn/config.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { Tape } from "../../nn/tape.ts";
import { IM_END, IM_START } from "../../pipeline/chatml.ts";
import { CHATML_TEMPLATE, exportHuggingFace } from "../../pipeline/export_hf.ts";
import { tokenizeDataset } from "../../pipeline/tokenize_dataset.ts";
import { trainModel } from "../../pipeline/train_model.ts";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import { loadHfTokenizer, saveHfTokenizer } from "../../tokenizer/hf_json.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { assertClose, testGpu } from "../_gpu.ts";

const config: GPT2Config = { vocabSize: 320, contextLength: 32, nLayer: 2, nHead: 2, nEmbd: 32 };
const C = config.nEmbd;
const text = "The cat sat on the mat. The dog ran to the park. A bird sang in the tree.";

/** A small tokenizer (special tokens <s>, <pad>, </s>, <unk>, <mask>), with ChatML if asked. */
async function tokenizer(chat: boolean): Promise<BpeTokenizer> {
  const trained = BpeTokenizer.fromTrained(
    trainBpe(await countWords([[text]]), { vocabSize: 300 }),
  );
  if (chat) trained.addTokens([IM_START, IM_END], { special: true });
  return trained;
}

/** A checkpoint of a randomly initialized model, and its tokenizer, in `dir`. */
async function checkpointIn(dir: string, chat = true): Promise<GPT2> {
  const model = GPT2.init(await testGpu(), config, 7);
  await saveCheckpoint(`${dir}/checkpoint.safetensors`, model, { config, step: 12 });
  await saveHfTokenizer(await tokenizer(chat), `${dir}/tokenizer.json`);
  return model;
}

async function logitsOf(model: GPT2, ids: number[]): Promise<Float32Array> {
  const gpu = model.gpu, tape = new Tape(gpu), tokens = Int32Array.from(ids);
  try {
    const logits = await model.forward(tape, uploadTokens(tape, tokens, 1, tokens.length));
    return await logits.read();
  } finally {
    tape.dispose();
  }
}

/** The header of a safetensors file. */
async function headerOf(path: string): Promise<Record<string, Record<string, unknown>>> {
  const bytes = await Deno.readFile(path);
  const length = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  return JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
}

const readJson = async (path: string) => JSON.parse(await Deno.readTextFile(path));
const ids = [0, 5, 250, 17, 311, 42, 99, 3];

Deno.test("export then import gives the same logits, bit for bit, in float32", async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  const model = await checkpointIn(dir);
  try {
    const result = await exportHuggingFace({
      checkpoint: `${dir}/checkpoint.safetensors`,
      tokenizer: `${dir}/tokenizer.json`,
      out: `${dir}/hf`,
      gpu,
    });
    assert.equal(result.dtype, "float32");
    assert.equal(result.precision, undefined);
    const imported = await loadCheckpoint(gpu, `${dir}/hf`);
    try {
      assert.deepEqual(imported.config, config);
      assert.equal(imported.step, 0);
      for (const [name, param] of model.params) {
        assert.deepEqual(await imported.model.params.get(name)!.read(), await param.read(), name);
      }
      assert.deepEqual(await logitsOf(imported.model, ids), await logitsOf(model, ids));
    } finally {
      imported.model.dispose();
    }
    // Exporting the folder again (a folder is a checkpoint too) gives the same weights file.
    await exportHuggingFace({
      checkpoint: `${dir}/hf`,
      tokenizer: `${dir}/hf`,
      out: `${dir}/again`,
      gpu,
    });
    assert.deepEqual(
      await Deno.readFile(`${dir}/again/model.safetensors`),
      await Deno.readFile(`${dir}/hf/model.safetensors`),
    );
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

/** The tensors of GPT2LMHeadModel.save_pretrained for 2 layers, written out by hand. */
function documentedLayout(V: number, T: number): Record<string, number[]> {
  const layout: Record<string, number[]> = {
    "transformer.wte.weight": [V, C],
    "transformer.wpe.weight": [T, C],
    "transformer.ln_f.weight": [C],
    "transformer.ln_f.bias": [C],
  };
  for (const i of [0, 1]) {
    Object.assign(layout, {
      [`transformer.h.${i}.ln_1.weight`]: [C],
      [`transformer.h.${i}.ln_1.bias`]: [C],
      [`transformer.h.${i}.attn.c_attn.weight`]: [C, 3 * C],
      [`transformer.h.${i}.attn.c_attn.bias`]: [3 * C],
      [`transformer.h.${i}.attn.c_proj.weight`]: [C, C],
      [`transformer.h.${i}.attn.c_proj.bias`]: [C],
      [`transformer.h.${i}.ln_2.weight`]: [C],
      [`transformer.h.${i}.ln_2.bias`]: [C],
      [`transformer.h.${i}.mlp.c_fc.weight`]: [C, 4 * C],
      [`transformer.h.${i}.mlp.c_fc.bias`]: [4 * C],
      [`transformer.h.${i}.mlp.c_proj.weight`]: [4 * C, C],
      [`transformer.h.${i}.mlp.c_proj.bias`]: [C],
    });
  }
  return layout;
}

Deno.test("an exported folder holds exactly GPT-2's documented tensors, config and tokenizer files", async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  const model = await checkpointIn(dir);
  try {
    await exportHuggingFace({
      checkpoint: `${dir}/checkpoint.safetensors`,
      tokenizer: `${dir}/tokenizer.json`,
      out: `${dir}/hf`,
      gpu,
    });
    const files = [];
    for await (const entry of Deno.readDir(`${dir}/hf`)) files.push(entry.name);
    assert.deepEqual(files.sort(), [
      ".written-by",
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "special_tokens_map.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);

    const header = await headerOf(`${dir}/hf/model.safetensors`);
    assert.deepEqual(header.__metadata__, { format: "pt" });
    const shapes = Object.fromEntries(
      Object.entries(header).filter(([name]) => name !== "__metadata__").map((
        [name, entry],
      ) => [name, entry.shape]),
    );
    assert.deepEqual(shapes, documentedLayout(config.vocabSize, config.contextLength));
    assert.ok(Object.entries(header).every(([n, e]) => n === "__metadata__" || e.dtype === "F32"));
    // Conv1D (in, out): the file's c_fc is the transpose of the model's (out, in) weight.
    const bytes = await Deno.readFile(`${dir}/hf/model.safetensors`);
    const dataStart = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const [begin] = header["transformer.h.1.mlp.c_fc.weight"].data_offsets as number[];
    const fileCfc = new Float32Array(bytes.slice(dataStart + begin).buffer, 0, C * 4 * C);
    const ours = await model.params.get("h.1.mlp.c_fc.weight")!.read(); // (4C, C)
    assert.equal(fileCfc[5 * 4 * C + 70], ours[70 * C + 5]);

    const tokens = await tokenizer(true);
    const id = (token: string) => tokens.tokenToId(token)!;
    const hfConfig = await readJson(`${dir}/hf/config.json`);
    assert.deepEqual(hfConfig.architectures, ["GPT2LMHeadModel"]);
    for (
      const [key, value] of Object.entries({
        model_type: "gpt2",
        n_layer: 2,
        n_head: 2,
        n_embd: C,
        n_positions: 32,
        vocab_size: 320,
        activation_function: "gelu_new",
        layer_norm_epsilon: 1e-5,
        tie_word_embeddings: true,
        bos_token_id: id("<s>"),
        eos_token_id: id(IM_END),
        pad_token_id: id("<pad>"),
      })
    ) assert.equal(hfConfig[key], value, key);

    const generation = await readJson(`${dir}/hf/generation_config.json`);
    assert.deepEqual(generation.eos_token_id, [id(IM_END), id("</s>")]);
    const tokenizerConfig = await readJson(`${dir}/hf/tokenizer_config.json`);
    assert.equal(tokenizerConfig.chat_template, CHATML_TEMPLATE);
    assert.equal(tokenizerConfig.eos_token, IM_END);
    assert.equal(tokenizerConfig.added_tokens_decoder[String(id(IM_START))].content, IM_START);
    assert.deepEqual(await readJson(`${dir}/hf/special_tokens_map.json`), {
      bos_token: "<s>",
      eos_token: IM_END,
      unk_token: "<unk>",
      pad_token: "<pad>",
      additional_special_tokens: [IM_START, IM_END],
    });
    // The exported tokenizer encodes as the original does.
    const exported = await loadHfTokenizer(`${dir}/hf/tokenizer.json`);
    const chat = `${IM_START}user\nThe cat sat.${IM_END}\n`;
    assert.deepEqual(exported.encode(chat), tokens.encode(chat));
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a base model's tokenizer gets no chat template, and ends texts with </s>", async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  const model = await checkpointIn(dir, false);
  try {
    await exportHuggingFace({
      checkpoint: `${dir}/checkpoint.safetensors`,
      tokenizer: `${dir}/tokenizer.json`,
      out: `${dir}/hf`,
      gpu,
    });
    const tokenizerConfig = await readJson(`${dir}/hf/tokenizer_config.json`);
    assert.equal("chat_template" in tokenizerConfig, false);
    assert.equal(tokenizerConfig.eos_token, "</s>");
    const eos = (await tokenizer(false)).tokenToId("</s>");
    assert.equal((await readJson(`${dir}/hf/generation_config.json`)).eos_token_id, eos);
    assert.equal((await readJson(`${dir}/hf/config.json`)).eos_token_id, eos);
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("float16 and bfloat16 exports are half the size, and their logits stay close to float32's", async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  const model = await checkpointIn(dir);
  try {
    const exported = async (dtype: "float32" | "float16" | "bfloat16") =>
      await exportHuggingFace({
        checkpoint: `${dir}/checkpoint.safetensors`,
        tokenizer: `${dir}/tokenizer.json`,
        out: `${dir}/${dtype}`,
        dtype,
        gpu,
      });
    const full = await exported("float32");
    const expected = await logitsOf(model, ids);
    for (
      const [dtype, tag, bound] of [["float16", "F16", 0.01], ["bfloat16", "BF16", 0.1]] as const
    ) {
      const result = await exported(dtype);
      // The header is the same length but for the dtype tags; the data is half.
      assert.ok(Math.abs(result.weightBytes - full.weightBytes / 2) < 4096, `${dtype} size`);
      const header = await headerOf(`${dir}/${dtype}/model.safetensors`);
      assert.equal(header["transformer.wte.weight"].dtype, tag);
      assert.equal((await readJson(`${dir}/${dtype}/config.json`)).torch_dtype, dtype);
      const { precision } = result;
      assert.ok(precision && precision.tokens > 10, `${dtype} measured on the prompt`);
      assert.ok(precision.maxAbs > 0 && precision.maxAbs < bound, `${dtype}: ${precision.maxAbs}`);
      assert.ok(precision.meanAbs <= precision.maxAbs);
      const loaded = await loadCheckpoint(gpu, `${dir}/${dtype}`);
      try {
        assertClose(await logitsOf(loaded.model, ids), expected, { atol: bound, rtol: 0 });
      } finally {
        loaded.model.dispose();
      }
    }
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exportHuggingFace() refuses a wrong dtype, a mismatched tokenizer, float16 overflow and a foreign folder", async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  const model = await checkpointIn(dir);
  const options = {
    checkpoint: `${dir}/checkpoint.safetensors`,
    tokenizer: `${dir}/tokenizer.json`,
    gpu,
  };
  try {
    await assert.rejects(
      // @ts-expect-error: a dtype the CLI could pass
      exportHuggingFace({ ...options, out: `${dir}/a`, dtype: "int8" }),
      /--dtype must be one of float32, float16, bfloat16, got "int8"/,
    );
    const big = BpeTokenizer.fromTrained(trainBpe(await countWords([[text]]), { vocabSize: 300 }));
    big.addTokens(Array.from({ length: 30 }, (_, i) => `<extra_${i}>`));
    await saveHfTokenizer(big, `${dir}/big.json`);
    await assert.rejects(
      exportHuggingFace({ ...options, tokenizer: `${dir}/big.json`, out: `${dir}/b` }),
      /The tokenizer .*big\.json has 3\d\d tokens but the model .*checkpoint\.safetensors only 320/,
    );
    await Deno.stat(`${dir}/b`).then(() => assert.fail("b was written"), () => {});

    // A weight past float16's range: refused for float16, named; bfloat16 holds it.
    const weights = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, param] of model.params) {
      weights.set(name, { shape: [...param.shape], data: await param.read() });
    }
    weights.get("h.1.mlp.c_proj.bias")!.data[3] = 1e5;
    const loud = GPT2.fromWeights(gpu, config, weights);
    await saveCheckpoint(`${dir}/loud.safetensors`, loud, { config, step: 1 });
    loud.dispose();
    await assert.rejects(
      exportHuggingFace({
        ...options,
        checkpoint: `${dir}/loud.safetensors`,
        out: `${dir}/c`,
        dtype: "float16",
      }),
      /h\.1\.mlp\.c_proj\.bias\[3\] is 100000, past float16's largest value 65504; export with --dtype bfloat16/,
    );

    await Deno.mkdir(`${dir}/mine`);
    await Deno.writeTextFile(`${dir}/mine/notes.txt`, "keep");
    await assert.rejects(
      exportHuggingFace({ ...options, out: `${dir}/mine` }),
      /--out .*mine is a folder holding files export did not write \(notes\.txt\)/,
    );
    await exportHuggingFace({ ...options, out: `${dir}/mine`, force: true });
    assert.equal(await Deno.readTextFile(`${dir}/mine/notes.txt`), "keep");
    assert.ok((await Deno.stat(`${dir}/mine/model.safetensors`)).isFile);
    // No temporary folder is left beside the outputs.
    const left = [];
    for await (const entry of Deno.readDir(dir)) left.push(entry.name);
    assert.deepEqual(left.filter((name) => name.includes(".partial")), []);
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train_model's --init-from takes an exported Hugging Face folder", async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  const model = await checkpointIn(dir);
  try {
    await exportHuggingFace({
      checkpoint: `${dir}/checkpoint.safetensors`,
      tokenizer: `${dir}/tokenizer.json`,
      out: `${dir}/hf`,
      gpu,
    });
    await Deno.writeTextFile(`${dir}/text.txt`, Array(40).fill(text).join("\n"));
    await tokenizeDataset({
      data: `${dir}/text.txt`,
      tokenizer: await tokenizer(true),
      contextLength: 16,
      out: `${dir}/tokenized`,
      quiet: true,
    });
    const run = await trainModel({
      data: `${dir}/tokenized`,
      out: `${dir}/run`,
      initFrom: `${dir}/hf`,
      steps: 1,
      batchSize: 2,
      quiet: true,
      gpu,
    });
    const trained = await loadCheckpoint(gpu, run.checkpoint);
    try {
      assert.deepEqual(trained.config, config);
      // One step from the exported weights, not from a fresh initialization: close to them.
      const wpe = await trained.model.params.get("wpe")!.read();
      assertClose(wpe, await model.params.get("wpe")!.read(), { atol: 0.01, rtol: 0 });
    } finally {
      trained.model.dispose();
    }
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task export answers --help and asks for --out", async () => {
  const run = async (...args: string[]) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../../pipeline/export_hf.ts", import.meta.url).pathname,
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
  };
  const help = await run("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task export --out DIR/);
  assert.match(help.stdout, /--dtype <value> +the weights' dtype: float32, float16, bfloat16/);
  const missing = await run("--checkpoint", "x.safetensors");
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^error: --out is required/);
});
