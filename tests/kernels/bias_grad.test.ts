import assert from "node:assert/strict";
import { biasGrad, biasGradCpu } from "../../kernels/bias_grad.ts";
import { assertGradientMatches, projectedLoss } from "../_finite_diff.ts";
import { assertClose, countDispatches, randomArray, testGpu } from "../_gpu.ts";

const TOLERANCE = { atol: 1e-4, rtol: 1e-5 };

/** Checks `biasGrad` against its reference on `rows × cols`, ACCUMULATING onto a random `dbias`. */
async function checkShape(rows: number, cols: number, maxBinding?: number) {
  const gpu = await testGpu();
  const dout = randomArray(rows * cols, rows + cols);
  const dbias = randomArray(cols, 2);
  const expected = Float64Array.from(dbias);
  biasGradCpu(expected, Float64Array.from(dout), rows, cols);
  const doutBuf = gpu.upload(dout), dbiasBuf = gpu.upload(dbias);
  const counts = await countDispatches(
    gpu,
    () => biasGrad(gpu, dbiasBuf, doutBuf, rows, cols, maxBinding),
  );
  assertClose(await gpu.readF32(dbiasBuf, cols), expected, TOLERANCE);
  gpu.release(doutBuf);
  gpu.release(dbiasBuf);
  return counts;
}

Deno.test("biasGrad() accumulates column sums like its CPU reference on awkward shapes", async () => {
  // Widths of four floats and of one, narrow and wide (columns past a workgroup's, several
  // columns an invocation), rows odd and even, fewer and more than a 64-row block.
  for (
    const [rows, cols] of [
      [1, 1],
      [1, 4],
      [2, 3],
      [37, 50],
      [64, 36],
      [65, 388],
      [130, 1028],
      [203, 129],
      [512, 1152],
    ]
  ) {
    await checkShape(rows, cols);
  }
});

Deno.test("biasGrad() sums in row parts when dout is over the binding limit", async () => {
  for (const [rows, cols] of [[300, 70], [301, 96]]) {
    const counts = await checkShape(rows, cols, 4096);
    const dispatches = [...counts.values()].reduce((a, b) => a + b, 0);
    assert.ok(dispatches >= Math.ceil((rows * cols * 4) / 4096), JSON.stringify([...counts]));
  }
});

Deno.test("biasGrad() gives the same bits on every run", async () => {
  const gpu = await testGpu();
  const rows = 777, cols = 388;
  const doutBuf = gpu.upload(randomArray(rows * cols, 3));
  const runs: number[][] = [];
  for (let run = 0; run < 3; run++) {
    const dbiasBuf = gpu.upload(new Float32Array(cols));
    await biasGrad(gpu, dbiasBuf, doutBuf, rows, cols);
    runs.push([...new Uint32Array(await gpu.read(dbiasBuf, 0, cols * 4))]);
    gpu.release(dbiasBuf);
  }
  assert.deepEqual(runs[1], runs[0]);
  assert.deepEqual(runs[2], runs[0]);
  gpu.release(doutBuf);
});

Deno.test("biasGradCpu() matches finite differences of a linear layer's output in its bias", () => {
  // out = x + bias broadcast over rows; loss = sum(out * dout), so dL/dbias = column sums of dout.
  const rows = 5, cols = 3;
  const x = Float64Array.from(randomArray(rows * cols, 4));
  const dout = Float64Array.from(randomArray(rows * cols, 5));
  const bias = Float64Array.from(randomArray(cols, 6));
  const loss = () => {
    const out = x.map((v, i) => v + bias[i % cols]);
    return projectedLoss(out, dout);
  };
  const dbias = new Float64Array(cols);
  biasGradCpu(dbias, dout, rows, cols);
  assertGradientMatches(dbias, loss, bias);
});
