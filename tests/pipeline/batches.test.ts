import assert from "node:assert/strict";
import { batchOfRows, BatchSampler, cutSequences, splitRows } from "../../pipeline/batches.ts";
import type { TokenizedDataset } from "../../pipeline/token_rows.ts";

/** 5 rows of 4 tokens: row r holds 10r, 10r+1, ...; row 4 has only 2 real tokens. */
function dataset(): TokenizedDataset {
  const T = 4, rows = 5, padId = 1;
  const tokens = new Uint16Array(rows * T);
  const lengths = new Uint32Array([4, 4, 4, 4, 2]);
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < T; t++) tokens[r * T + t] = t < lengths[r] ? 10 * r + t : padId;
  }
  return {
    meta: {
      method: "truncate",
      contextLength: T,
      rows,
      tokens: 18,
      documents: 5,
      vocabSize: 100,
      dtype: "uint16",
      padId,
      eosId: 2,
    },
    tokens,
    lengths,
  };
}

Deno.test("BatchSampler shifts targets by one and masks row ends and padding", () => {
  const sampler = new BatchSampler(dataset(), 5, 0);
  const { inputs, targets, mask } = sampler.next();
  for (let b = 0; b < 5; b++) {
    const r = Math.floor(inputs[b * 4] / 10);
    const length = r === 4 ? 2 : 4;
    for (let t = 0; t < 4; t++) {
      assert.equal(mask[b * 4 + t], t + 1 < length ? 1 : 0);
      if (mask[b * 4 + t]) assert.equal(targets[b * 4 + t], inputs[b * 4 + t] + 1);
    }
  }
});

Deno.test("BatchSampler covers every row once per epoch and resumes exactly", () => {
  const sampler = new BatchSampler(dataset(), 2, 7);
  const firsts = [sampler.next(), sampler.next()].flatMap((b) => [b.inputs[0], b.inputs[4]]);
  assert.equal(new Set(firsts).size, 4);
  const saved = sampler.state;
  const resumed = new BatchSampler(dataset(), 2, 7, saved);
  // One row is left over, so the next batch starts epoch 1 in both.
  assert.deepEqual(resumed.next().inputs, sampler.next().inputs);
  assert.equal(sampler.state.epoch, 1);
});

Deno.test("BatchSampler refuses a batch larger than the dataset", () => {
  assert.throws(
    () => new BatchSampler(dataset(), 6, 0),
    /has 5 rows to train on, fewer than a batch of 6/,
  );
});

Deno.test("BatchSampler masks the targets a loss mask leaves out", () => {
  const data = dataset();
  // Learn only tokens 2 and 3 of every row (an answer after a two-token prompt).
  data.lossMask = Uint8Array.from({ length: 20 }, (_, i) => i % 4 >= 2 ? 1 : 0);
  const { inputs, mask } = new BatchSampler(data, 5, 0).next();
  for (let b = 0; b < 5; b++) {
    const length = inputs[b * 4] === 40 ? 2 : 4;
    // Position t predicts token t + 1: only t = 1 (token 2) and t = 2 (token 3) may count.
    assert.deepEqual([...mask.subarray(b * 4, b * 4 + 4)], [
      0,
      length > 2 ? 1 : 0,
      length > 3 ? 1 : 0,
      0,
    ]);
  }
});

Deno.test("splitRows() holds out the last rows, at least a batch of them, or none", () => {
  assert.deepEqual(splitRows(100, 0.05, 4), {
    train: { first: 0, count: 95 },
    validation: { first: 95, count: 5 },
  });
  assert.deepEqual(splitRows(100, 0.01, 4).validation, { first: 96, count: 4 });
  assert.equal(splitRows(100, 0, 4).validation, null);
  assert.equal(splitRows(6, 0.05, 4).validation, null); // holding out 4 would leave 2 to train
});

Deno.test("BatchSampler draws only from its rows", () => {
  const sampler = new BatchSampler(dataset(), 2, 3, undefined, { first: 1, count: 3 });
  for (let i = 0; i < 6; i++) {
    const { inputs } = sampler.next();
    for (const first of [inputs[0], inputs[4]]) assert.ok([10, 20, 30].includes(first), `${first}`);
  }
});

Deno.test("cutSequences() reads a batch's rows as shorter sequences, keeping every target", () => {
  const data = dataset();
  const whole = batchOfRows(data, [0, 2]);
  const cut = cutSequences(whole, 4, 2);
  assert.equal(cut.batch, 4);
  assert.equal(cut.time, 2);
  // Row 0 (ids 0..3) becomes sequences [0, 1] and [2, 3]; the first's last target is 2, the
  // token after it in the row.
  assert.deepEqual([...cut.inputs.subarray(0, 4)], [0, 1, 2, 3]);
  assert.deepEqual([...cut.targets.subarray(0, 2)], [1, 2]);
  assert.deepEqual([...cut.inputs.subarray(4, 6)], [20, 21]);
  assert.throws(() => cutSequences(whole, 4, 3), /cannot be cut into sequences of 3/);
});

Deno.test("BatchSampler.nextRows() serves the rows next() would batch", () => {
  const a = new BatchSampler(dataset(), 2, 5), b = new BatchSampler(dataset(), 2, 5);
  for (let i = 0; i < 4; i++) {
    assert.deepEqual(batchOfRows(dataset(), a.nextRows()), b.next());
  }
});
