import assert from "node:assert/strict";
import { learningRate } from "../../nn/schedule.ts";

function assertNear(actual: number, expected: number): void {
  assert.ok(Math.abs(actual - expected) < 1e-12, `${actual} is not ${expected}`);
}

Deno.test("learningRate() warms up linearly, then decays by a cosine to the floor", () => {
  const options = { maxLr: 6e-4, minLr: 6e-5, warmupSteps: 10, totalSteps: 110 };
  assertNear(learningRate(0, options), 6e-5);
  assertNear(learningRate(9, options), 6e-4);
  assertNear(learningRate(60, options), 3.3e-4); // halfway: the mean of max and min
  assertNear(learningRate(110, options), 6e-5);
  assertNear(learningRate(500, options), 6e-5);
  for (let step = 10; step < 110; step++) {
    assert.ok(learningRate(step + 1, options) <= learningRate(step, options));
  }
});
