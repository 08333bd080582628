import assert from "node:assert/strict";
import { CHECKSUM_KEY, readSafetensors, writeSafetensors } from "../../nn/safetensors.ts";

Deno.test("writeSafetensors() and readSafetensors() round-trip tensors and metadata", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tensors = [
      { name: "wte", shape: [3, 2], data: new Float32Array([1, 2, 3, 4, 5, -6.5]) },
      { name: "h.0.ln_1.bias", shape: [1], data: new Float32Array([0.25]) },
    ];
    await writeSafetensors(`${dir}/model.safetensors`, tensors, { step: "7" });
    const bytes = await Deno.readFile(`${dir}/model.safetensors`);
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal((8 + headerLength) % 8, 0, "tensor data starts 8-byte aligned");
    const file = await readSafetensors(`${dir}/model.safetensors`);
    assert.deepEqual(Object.keys(file.metadata), ["step", CHECKSUM_KEY]);
    assert.equal(file.metadata.step, "7");
    assert.match(file.metadata[CHECKSUM_KEY], /^fnv1a32w:[0-9a-f]{8}$/);
    for (const { name, shape, data } of tensors) {
      assert.deepEqual(file.tensors.get(name)?.shape, shape);
      assert.deepEqual([...file.tensors.get(name)!.data], [...data]);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["model.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSafetensors() converts F16 and BF16 tensors to float32", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // 1.0, -2.0, 0.5 in IEEE half and in bfloat16.
    const half = new Uint16Array([0x3c00, 0xc000, 0x3800]);
    const bf16 = new Uint16Array([0x3f80, 0xc000, 0x3f00]);
    const header = JSON.stringify({
      h: { dtype: "F16", shape: [3], data_offsets: [0, 6] },
      b: { dtype: "BF16", shape: [3], data_offsets: [6, 12] },
    });
    const headerBytes = new TextEncoder().encode(header);
    const file = new Uint8Array(8 + headerBytes.length + 12);
    new DataView(file.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
    file.set(headerBytes, 8);
    file.set(new Uint8Array(half.buffer), 8 + headerBytes.length);
    file.set(new Uint8Array(bf16.buffer), 8 + headerBytes.length + 6);
    await Deno.writeFile(`${dir}/x.safetensors`, file);
    const read = await readSafetensors(`${dir}/x.safetensors`);
    assert.deepEqual([...read.tensors.get("h")!.data], [1, -2, 0.5]);
    assert.deepEqual([...read.tensors.get("b")!.data], [1, -2, 0.5]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSafetensors() says a truncated file is not valid", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeSafetensors(`${dir}/m.safetensors`, [
      { name: "w", shape: [4], data: new Float32Array(4) },
    ]);
    const bytes = await Deno.readFile(`${dir}/m.safetensors`);
    await Deno.writeFile(`${dir}/m.safetensors`, bytes.subarray(0, bytes.length - 3));
    await assert.rejects(readSafetensors(`${dir}/m.safetensors`), /not a valid safetensors file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSafetensors() refuses a file whose data no longer matches its checksum", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/m.safetensors`;
    await writeSafetensors(path, [
      { name: "w", shape: [4], data: new Float32Array([1, 2, 3, 4]) },
    ]);
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 5] ^= 0x01; // one bit of the last-but-one float
    await Deno.writeFile(path, bytes);
    await assert.rejects(
      readSafetensors(path),
      new RegExp(`${path} is corrupt: its tensor data does not match the checksum`),
    );
    bytes[bytes.length - 5] ^= 0x01;
    await Deno.writeFile(path, bytes);
    assert.deepEqual([...(await readSafetensors(path)).tensors.get("w")!.data], [1, 2, 3, 4]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
