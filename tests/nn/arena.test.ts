import assert from "node:assert/strict";
import { bufferOf, byteOffsetOf } from "../../kernels/device.ts";
import { arenaAlignment, ParameterArena } from "../../nn/arena.ts";
import { GPT2, gpt2ArenaOrder, gpt2ParameterSpecs } from "../../nn/gpt2.ts";
import { muonParameterNames } from "../../nn/muon.ts";
import { randomArray, testGpu } from "../_gpu.ts";

/** Awkward sizes: not multiples of 4, of 64, nor of the alignment. */
const ENTRIES = [
  { name: "a", shape: [7, 13] },
  { name: "b", shape: [1] },
  { name: "c", shape: [18] },
  { name: "d", shape: [64] },
  { name: "e", shape: [3, 5, 7] },
];

Deno.test("ParameterArena lays tensors out at aligned offsets of one buffer, gaps zero", async () => {
  const gpu = await testGpu();
  const arena = new ParameterArena(gpu, ENTRIES);
  try {
    const alignment = arenaAlignment(gpu);
    assert.equal(alignment % gpu.device.limits.minStorageBufferOffsetAlignment, 0);
    const written = new Map<string, Float32Array>();
    let end = 0;
    ENTRIES.forEach(({ name }, i) => {
      const tensor = arena.tensors.get(name)!;
      const at = byteOffsetOf(tensor.floats);
      assert.equal(bufferOf(tensor.floats), arena.values);
      assert.equal(at % alignment, 0, `${name} starts at ${at}`);
      assert.ok(at >= end, `${name} overlaps the tensor before it`);
      end = at + tensor.size * 4;
      assert.ok(tensor.shared);
      assert.throws(() => tensor.buffer, /shared with other tensors.*use floats/);
      const data = randomArray(tensor.size, i + 1);
      tensor.write(data);
      written.set(name, data);
    });
    assert.ok(arena.bytes >= end && arena.bytes % alignment === 0);
    // Exactly the bytes laid out, not the buffer pool's next size class above them.
    assert.equal(arena.values.size, arena.bytes);
    const all = await gpu.readF32(arena.values, arena.bytes / 4);
    const expected = new Float32Array(arena.bytes / 4); // zeros in the gaps
    for (const [name, data] of written) {
      const tensor = arena.tensors.get(name)!;
      assert.deepEqual(await tensor.read(), data);
      expected.set(data, byteOffsetOf(tensor.floats) / 4);
    }
    assert.deepEqual(all, expected);
  } finally {
    arena.dispose();
  }
});

Deno.test("ParameterArena keeps each gradient in a zeroed window at its tensor's offset", async () => {
  const gpu = await testGpu();
  const arena = new ParameterArena(gpu, ENTRIES);
  try {
    const [a, c] = [arena.tensors.get("a")!, arena.tensors.get("c")!];
    const ga = a.gradForAccumulate(), gc = c.gradForAccumulate();
    assert.equal(bufferOf(ga), bufferOf(gc));
    assert.notEqual(bufferOf(ga), arena.values);
    assert.equal(bufferOf(ga).size, arena.bytes);
    assert.equal(byteOffsetOf(ga), byteOffsetOf(a.floats));
    assert.equal(byteOffsetOf(gc), byteOffsetOf(c.floats));
    assert.deepEqual(await a.readGrad(), new Float32Array(a.size));
    // A writing kernel cannot take a window: it writes elsewhere, then the tape accumulates.
    assert.equal(arena.tensors.get("d")!.gradForWrite(), null);
    assert.throws(() => a.grad, /shared with other tensors.*use gradFloats/);
    gpu.write(bufferOf(gc), new Float32Array(c.size).fill(2), byteOffsetOf(gc));
    c.zeroGrad();
    c.gradForAccumulate(); // zeroed again before its next use
    assert.deepEqual(await c.readGrad(), new Float32Array(c.size));
  } finally {
    arena.dispose();
  }
});

Deno.test("a GPT-2's parameters are one arena, the blocks' matrices first and the undecayed last", async () => {
  const gpu = await testGpu();
  const config = { vocabSize: 50, contextLength: 8, nLayer: 2, nHead: 2, nEmbd: 18 };
  const model = GPT2.init(gpu, config, 3);
  try {
    const specs = gpt2ParameterSpecs(config);
    assert.deepEqual([...model.params.keys()], specs.map((s) => s.name)); // checkpoint order
    const order = gpt2ArenaOrder(specs).map((s) => s.name);
    const offsets = order.map((name) => byteOffsetOf(model.params.get(name)!.floats));
    // Strictly rising: every tensor is a window of the one buffer (separate buffers would all
    // start at 0).
    offsets.slice(1).forEach((offset, i) => assert.ok(offset > offsets[i], `${order[i + 1]}`));
    const matrices = muonParameterNames(config);
    assert.deepEqual(order.slice(0, matrices.length).sort(), [...matrices].sort());
    const rest = order.slice(matrices.length);
    const firstUndecayed = rest.findIndex((name) => !model.decayed.has(name));
    assert.ok(rest.slice(firstUndecayed).every((name) => !model.decayed.has(name)));
    assert.deepEqual(rest.slice(0, firstUndecayed), ["wte", "wpe"]);
  } finally {
    model.dispose();
  }
});
