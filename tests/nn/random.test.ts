import assert from "node:assert/strict";
import { Random } from "../../nn/random.ts";

Deno.test("Random repeats under a seed and resumes from its saved state", () => {
  const a = new Random(42), b = new Random(42);
  const first = Array.from({ length: 5 }, () => a.next());
  assert.deepEqual(first, Array.from({ length: 5 }, () => b.next()));
  const resumed = Random.fromState(a.state);
  assert.equal(resumed.next(), a.next());
  assert.notDeepEqual(first, Array.from({ length: 5 }, () => new Random(43).next()));
});

Deno.test("Random.permutation() holds every index exactly once", () => {
  const order = new Random(1).permutation(1000);
  assert.deepEqual([...order].sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
});

Deno.test("Random.normal() has mean 0 and variance 1", () => {
  const random = new Random(3);
  const xs = Array.from({ length: 20000 }, () => random.normal());
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(variance - 1) < 0.05, `${mean} ${variance}`);
});
