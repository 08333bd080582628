import assert from "node:assert/strict";
import { parseCheckpoint, readCheckpoint, saveCheckpoint } from "../../nn/checkpoint.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { writeSafetensors } from "../../nn/safetensors.ts";
import { testGpu } from "../_gpu.ts";

Deno.test("parseCheckpoint() of a file's bytes, anywhere in a buffer, gives what readCheckpoint() gives", async () => {
  const gpu = await testGpu();
  const folder = await Deno.makeTempDir();
  try {
    const config = { vocabSize: 40, contextLength: 8, nLayer: 1, nHead: 2, nEmbd: 8 };
    const model = GPT2.init(gpu, config, 3);
    const path = `${folder}/checkpoint.safetensors`;
    await saveCheckpoint(path, model, { config, step: 12 });
    model.dispose();
    const bytes = await Deno.readFile(path);
    // A view that does not start at its buffer's first byte (as a slice of a download may not).
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes, 3);
    const parsed = parseCheckpoint(padded.subarray(3), "page/checkpoint.safetensors");
    const read = await readCheckpoint(path);
    assert.deepEqual(parsed.config, read.config);
    assert.equal(parsed.step, 12);
    assert.deepEqual([...parsed.tensors.keys()], [...read.tensors.keys()]);
    for (const [name, { data }] of read.tensors) {
      assert.deepEqual(parsed.tensors.get(name)!.data, data, name);
    }
    // Errors name the file as the caller named it.
    assert.throws(
      () => parseCheckpoint(bytes.subarray(0, 5), "page/checkpoint.safetensors"),
      /^Error: page\/checkpoint\.safetensors is not a valid safetensors file/,
    );
    await writeSafetensors(`${folder}/plain.safetensors`, [
      { name: "x", shape: [2], data: new Float32Array([1, 2]) },
    ]);
    assert.throws(
      () => parseCheckpoint(Deno.readFileSync(`${folder}/plain.safetensors`), "plain"),
      /plain has no model configuration/,
    );
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});
