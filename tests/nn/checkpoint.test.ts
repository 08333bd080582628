import assert from "node:assert/strict";
import {
  loadCheckpoint,
  NonFiniteCheckpointError,
  previousCheckpointPath,
  saveCheckpoint,
} from "../../nn/checkpoint.ts";
import { checkedStep, NonFiniteStepError } from "../../nn/checked_step.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { AdamW } from "../../nn/optimizer.ts";
import { readSafetensors } from "../../nn/safetensors.ts";
import { testGpu } from "../_gpu.ts";

const config = { vocabSize: 40, contextLength: 8, nLayer: 1, nHead: 2, nEmbd: 16 };

Deno.test("saveCheckpoint() keeps the previous one; a corrupted checkpoint is refused, naming it and offering the previous", async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  const model = GPT2.init(gpu, config, 1);
  try {
    const path = `${dir}/checkpoint.safetensors`;
    await saveCheckpoint(path, model, { config, step: 10 });
    assert.equal(await Deno.stat(previousCheckpointPath(path)).catch(() => null), null);
    await saveCheckpoint(path, model, { config, step: 20 });
    assert.equal(previousCheckpointPath(path), `${dir}/checkpoint.prev.safetensors`);
    assert.equal((await readSafetensors(previousCheckpointPath(path))).metadata.step, "10");
    assert.equal((await readSafetensors(path)).metadata.step, "20");

    // Four bytes flipped in the middle of the data (an Adam moment or a weight).
    const bytes = await Deno.readFile(path);
    for (let i = 0; i < 4; i++) bytes[bytes.length - 1000 + i] ^= 0xff;
    await Deno.writeFile(path, bytes);
    await assert.rejects(
      loadCheckpoint(gpu, path),
      (error: Error) => {
        assert.match(error.message, new RegExp(`^${path} is corrupt`));
        assert.match(
          error.message,
          new RegExp(
            `previous checkpoint ${dir}/checkpoint.prev.safetensors \\(step 10\\) is intact`,
          ),
        );
        return true;
      },
    );
    // Cut short, too: the same offer.
    await Deno.writeFile(path, bytes.subarray(0, 200));
    await assert.rejects(
      loadCheckpoint(gpu, path),
      /not a valid safetensors.*\(step 10\) is intact/,
    );
    const previous = await loadCheckpoint(gpu, previousCheckpointPath(path));
    assert.equal(previous.step, 10);
    previous.model.dispose();
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saveCheckpoint() refuses a NaN and writes nothing", async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  const model = GPT2.init(gpu, config, 1);
  try {
    const path = `${dir}/checkpoint.safetensors`;
    await saveCheckpoint(path, model, { config, step: 1 });
    const before = await Deno.readFile(path);
    model.params.get("h.0.mlp.c_fc.weight")!.write(new Float32Array([1, NaN]));
    await assert.rejects(
      saveCheckpoint(path, model, { config, step: 2 }),
      (error: Error) =>
        error instanceof NonFiniteCheckpointError &&
        /step 2: h\.0\.mlp\.c_fc\.weight\[1\] is NaN/.test(error.message),
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.equal(await Deno.stat(previousCheckpointPath(path)).catch(() => null), null);
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkedStep() stops before the update on a non-finite gradient norm: weights and moments unchanged", async () => {
  const gpu = await testGpu();
  const model = GPT2.init(gpu, config, 2);
  const optimizer = new AdamW(gpu, model.params, model.decayed);
  try {
    const T = 8, inputs = new Int32Array(2 * T).map((_, i) => i % 40);
    const batch = {
      inputs,
      targets: inputs.map((x) => (x + 1) % 40),
      mask: new Uint32Array(2 * T).fill(1),
      batch: 2,
      time: T,
    };
    const first = await checkedStep(model, optimizer, [batch], 1e-2);
    assert.ok(Number.isFinite(first.loss) && Number.isFinite(first.gradNorm));
    const weights = async () => {
      const all = new Map<string, Float32Array>();
      for (const [name, param] of model.params) all.set(name, await param.read());
      return all;
    };
    const before = await weights(), moments = await optimizer.state();
    // A huge final layernorm gain: the logits are about 1e29, their loss still finite, but the
    // squares of the gradients overflow float32, so the norm is infinite.
    const gain = model.params.get("ln_f.weight")!;
    const goodGain = await gain.read();
    gain.write(new Float32Array(goodGain.length).fill(1e30));
    const poisoned = await weights();
    await assert.rejects(
      checkedStep(model, optimizer, [batch], 1e-2),
      (error: Error) =>
        error instanceof NonFiniteStepError && error.which === "gradient norm" &&
        !Number.isFinite(error.value) && Number.isFinite(error.loss),
    );
    assert.deepEqual(await weights(), poisoned, "no weight moved");
    gain.write(goodGain);
    assert.deepEqual(await weights(), before);
    assert.deepEqual(await optimizer.state(), moments);
    // The gradients were zeroed: the next step goes on from the good weights.
    const next = await checkedStep(model, optimizer, [batch], 1e-2);
    assert.ok(Number.isFinite(next.gradNorm) && next.loss < first.loss);
  } finally {
    optimizer.dispose();
    model.dispose();
  }
});
