import assert from "node:assert/strict";
import {
  argmax,
  guidedLogits,
  sampleToken,
  topIndices,
  validateSampling,
} from "../../nn/sampling.ts";
import { Random } from "../../nn/random.ts";

const logits = new Float32Array([0.1, 3, -1, 2.5, 0]);

Deno.test("sampleToken() at temperature 0 is greedy", () => {
  assert.equal(sampleToken(logits, { temperature: 0 }, new Random(1)), 1);
  assert.equal(argmax(logits), 1);
});

Deno.test("sampleToken() with top-k only draws the k most likely tokens", () => {
  const random = new Random(5);
  const seen = new Set<number>();
  for (let i = 0; i < 500; i++) seen.add(sampleToken(logits, { topK: 2 }, random));
  assert.deepEqual([...seen].sort(), [1, 3]);
});

Deno.test("sampleToken() follows softmax probabilities", () => {
  const random = new Random(9);
  const counts = new Array(logits.length).fill(0);
  const n = 20000;
  for (let i = 0; i < n; i++) counts[sampleToken(logits, {}, random)]++;
  const exps = [...logits].map(Math.exp);
  const total = exps.reduce((a, b) => a + b);
  exps.forEach((e, i) => assert.ok(Math.abs(counts[i] / n - e / total) < 0.015, `token ${i}`));
});

Deno.test("sampleToken() with top-p keeps the smallest set holding that mass", () => {
  // Probabilities about 0.57, 0.35, 0.05, ...: p = 0.6 keeps the first two.
  const random = new Random(2);
  const seen = new Set<number>();
  for (let i = 0; i < 500; i++) seen.add(sampleToken(logits, { topP: 0.6 }, random));
  assert.deepEqual([...seen].sort(), [1, 3]);
});

Deno.test("topIndices() gives a stable full sort's first k, ties by index", () => {
  const random = new Random(3);
  // Few distinct values, so that many tie.
  const values = Float32Array.from({ length: 5000 }, () => Math.round(random.normal() * 4));
  const sorted = Array.from(values.keys()).sort((a, b) => values[b] - values[a]);
  for (const k of [0, 1, 7, 40, 1249, 1250, 5000]) {
    assert.deepEqual(topIndices(values, k), sorted.slice(0, k), `k=${k}`);
  }
});

Deno.test("sampleToken() refuses NaN or infinite logits, greedy or sampled", () => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    const broken = Float32Array.from([0.5, bad, 1]);
    for (const temperature of [0, 1]) {
      assert.throws(
        () => sampleToken(broken, { temperature }, new Random(1)),
        /outputs are not finite \(logit of token 1 is .*Use an earlier checkpoint/,
        `logit ${bad} at temperature ${temperature}`,
      );
    }
  }
});

Deno.test("validateSampling() names the flag and its range", () => {
  validateSampling({ temperature: 0, topK: 1, topP: 1 });
  validateSampling({});
  assert.throws(
    () => validateSampling({ topP: 5 }),
    /--top-p must be above 0 and at most 1.*got 5/,
  );
  assert.throws(() => validateSampling({ topP: 0 }), /--top-p/);
  assert.throws(() => validateSampling({ topP: NaN }), /--top-p/);
  assert.throws(() => validateSampling({ topK: 0 }), /--top-k must be a whole number/);
  assert.throws(() => validateSampling({ temperature: -1 }), /--temperature must be/);
});

Deno.test("guidedLogits() mixes the two log-probabilities at the scale", () => {
  const conditioned = new Float32Array([2, 0, -1, 0.5]);
  const unconditioned = new Float32Array([0, 1, 3, 0.5]);
  const logSoftmax = (x: Float32Array) => {
    const log = Math.log([...x].reduce((s, v) => s + Math.exp(v), 0));
    return [...x].map((v) => v - log);
  };
  const c = logSoftmax(conditioned), u = logSoftmax(unconditioned);
  const close = (actual: Float32Array, expected: number[]) =>
    expected.forEach((e, i) => assert.ok(Math.abs(actual[i] - e) < 1e-5, `${actual[i]} vs ${e}`));
  close(guidedLogits(conditioned, unconditioned, 1), c);
  close(guidedLogits(conditioned, unconditioned, 0), u);
  // Scale 2: u + 2 (c - u) = 2c - u. Token 0 (likelier with the condition) gains on token 2.
  close(guidedLogits(conditioned, unconditioned, 2), c.map((v, i) => 2 * v - u[i]));
  // Large logits do not overflow.
  const big = guidedLogits(conditioned.map((v) => v + 1000), unconditioned, 1.5);
  assert.ok(big.every(Number.isFinite));
});
