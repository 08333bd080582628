import assert from "node:assert/strict";
import {
  learningRate,
  meanSequenceLength,
  sequenceLength,
  sequenceStages,
  stepsThatFit,
} from "../../nn/schedule.ts";

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

Deno.test("learningRate() with wsd holds the peak, then decays linearly over the last fifth", () => {
  const options = { maxLr: 1e-3, warmupSteps: 10, totalSteps: 100, kind: "wsd" as const };
  assertNear(learningRate(0, options), 1e-4);
  assertNear(learningRate(10, options), 1e-3);
  assertNear(learningRate(80, options), 1e-3); // the decay's 20 steps are 80..99
  assertNear(learningRate(81, options), 1e-3 * 19 / 20);
  assertNear(learningRate(99, options), 1e-3 / 20); // the last step still learns a little
  assertNear(learningRate(100, options), 0);
  assertNear(learningRate(90, { ...options, decayFraction: 0.5 }), 1e-3 * 10 / 50);
  assertNear(learningRate(99, { ...options, minLr: 1e-4 }), 1e-4 + 9e-4 / 20);
});

Deno.test("stepsThatFit() moves a wsd schedule's end earlier only once its decay must start", () => {
  const run = { totalSteps: 1000, secondsPerStep: 1, decayFraction: 0.2 };
  // Time for every planned step: nothing changes.
  assert.equal(stepsThatFit({ ...run, step: 100, secondsLeft: 900 }), null);
  // 500 steps fit: the decay of a 500-step schedule (100 steps) starts at step 400, not yet.
  assert.equal(stepsThatFit({ ...run, step: 100, secondsLeft: 400 }), null);
  // At step 400 with 100 seconds left, the decay must start now; the schedule ends at 500.
  assert.equal(stepsThatFit({ ...run, step: 400, secondsLeft: 100 }), 500);
  // Out of time: at least the step about to run.
  assert.equal(stepsThatFit({ ...run, step: 400, secondsLeft: 0 }), 401);
});

Deno.test("sequenceStages() doubles the length from the start up to the context by the fraction", () => {
  assert.deepEqual(sequenceStages(100, 1024, { startLength: 256, untilFraction: 0.3 }), [
    { length: 256, firstStep: 0, steps: 15 },
    { length: 512, firstStep: 15, steps: 15 },
    { length: 1024, firstStep: 30, steps: 70 },
  ]);
  assert.deepEqual(sequenceStages(100, 1024), [{ length: 1024, firstStep: 0, steps: 100 }]);
  // Starting at the context is no warmup.
  assert.deepEqual(sequenceStages(10, 16, { startLength: 16, untilFraction: 0.5 }), [
    { length: 16, firstStep: 0, steps: 10 },
  ]);
  const lengths = Array.from(
    { length: 100 },
    (_, step) => sequenceLength(step, 100, 1024, { startLength: 128, untilFraction: 0.6 }),
  );
  assert.deepEqual([...new Set(lengths)], [128, 256, 512, 1024]);
  assert.equal(lengths.filter((l) => l === 1024).length, 40, "the last 40% run at 1024");
  assert.throws(
    () => sequenceStages(100, 1000, { startLength: 128, untilFraction: 0.5 }),
    /from 128 reaches 128, which does not divide the context of 1000/,
  );
  assert.throws(
    () => sequenceStages(100, 1024, { startLength: 128, untilFraction: 1.5 }),
    /fraction must be from 0 to 1/,
  );
});

Deno.test("meanSequenceLength() weights each stage's length by its share of the steps", () => {
  // 15% at 256, 15% at 512, 70% at 1024.
  const mean = meanSequenceLength(1024, { startLength: 256, untilFraction: 0.3 });
  assert.ok(Math.abs(mean - (0.15 * 256 + 0.15 * 512 + 0.7 * 1024)) < 1e-3, `got ${mean}`);
  assert.equal(meanSequenceLength(1024), 1024);
  assert.equal(meanSequenceLength(16, { startLength: 16, untilFraction: 0.5 }), 16);
});
