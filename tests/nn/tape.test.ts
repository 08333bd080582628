import assert from "node:assert/strict";
import { crossEntropyCpu } from "../../kernels/cross_entropy.ts";
import { geluForwardCpu } from "../../kernels/gelu.ts";
import { layernormForwardCpu } from "../../kernels/layernorm.ts";
import {
  add,
  crossEntropyLoss,
  gelu,
  layernorm,
  linear,
  linearGelu,
  residualLayernorm,
} from "../../nn/ops.ts";
import { Tape } from "../../nn/tape.ts";
import { Tensor } from "../../nn/tensor.ts";
import { assertClose, randomArray, testGpu } from "../_gpu.ts";
import { finiteDifferenceGradient } from "../_finite_diff.ts";

const N = 3, C = 7;
const targets = new Int32Array([2, 0, 6]);
const mask = new Uint32Array([1, 0, 1]); // the middle position does not count

/** The mean cross-entropy of `logits` (N, C) over the counted positions (2 of 3). */
function meanLossCpu(logits: Float64Array): number {
  const losses = new Float64Array(N);
  crossEntropyCpu(losses, null, logits, targets, mask, 1, N, C);
  return losses.reduce((s, l) => s + l, 0) / 2;
}

/** mean over counted positions of CE(gelu(layernorm(x)) + x): x feeds two branches. */
function lossCpu(x: Float64Array, weight: Float64Array, bias: Float64Array): number {
  const h = new Float64Array(N * C), g = new Float64Array(N * C);
  layernormForwardCpu(h, new Float64Array(N), new Float64Array(N), x, weight, bias, N, C);
  geluForwardCpu(g, h);
  for (let i = 0; i < N * C; i++) g[i] += x[i];
  return meanLossCpu(g);
}

Deno.test("Tape.backward() gives finite-difference gradients through a branching graph", async () => {
  const gpu = await testGpu();
  const x64 = Float64Array.from(randomArray(N * C, 11));
  const w64 = Float64Array.from(randomArray(C, 12), (w) => 1 + 0.5 * w);
  const b64 = Float64Array.from(randomArray(C, 13));
  const x = Tensor.from(gpu, Float32Array.from(x64), [N, C], "x");
  const weight = Tensor.from(gpu, Float32Array.from(w64), [C], "weight");
  const bias = Tensor.from(gpu, Float32Array.from(b64), [C], "bias");
  const tape = new Tape(gpu);
  const logits = await add(tape, await gelu(tape, await layernorm(tape, x, weight, bias)), x);
  const losses = await crossEntropyLoss(tape, logits, {
    targets: gpu.upload(targets),
    mask: gpu.upload(mask),
    counted: 2,
  });
  await tape.backward(losses);

  const meanLoss = (await losses.read()).reduce((s, l) => s + l, 0) / 2;
  assert.ok(Math.abs(meanLoss - lossCpu(x64, w64, b64)) < 1e-5);
  const tolerance = { atol: 2e-4, rtol: 1e-3 };
  const loss = () => lossCpu(x64, w64, b64);
  assertClose(await x.readGrad(), finiteDifferenceGradient(loss, x64), tolerance);
  assertClose(await weight.readGrad(), finiteDifferenceGradient(loss, w64), tolerance);
  assertClose(await bias.readGrad(), finiteDifferenceGradient(loss, b64), tolerance);
  tape.dispose();
  for (const t of [x, weight, bias]) t.dispose();
});

/** mean over counted positions of CE(gelu(2·(x + layernorm(x)))), as `add(s, s)` of `s = x + ln(x)`. */
function sharedLossCpu(x: Float64Array, weight: Float64Array, bias: Float64Array): number {
  const h = new Float64Array(N * C), g = new Float64Array(N * C);
  layernormForwardCpu(h, new Float64Array(N), new Float64Array(N), x, weight, bias, N, C);
  for (let i = 0; i < N * C; i++) h[i] = 2 * (x[i] + h[i]);
  geluForwardCpu(g, h);
  return meanLossCpu(g);
}

// The residual add passes its output's gradient buffer on to both inputs. Here the layernorm
// then adds into x's gradient while its own output still holds the same buffer (x must get a
// copy first), and add(s, s) passes one gradient to the same tensor twice.
Deno.test("gradients passed on by the residual add stay right where tensors share a buffer", async () => {
  const gpu = await testGpu();
  const x64 = Float64Array.from(randomArray(N * C, 31));
  const w64 = Float64Array.from(randomArray(C, 32), (w) => 1 + 0.5 * w);
  const b64 = Float64Array.from(randomArray(C, 33));
  const x = Tensor.from(gpu, Float32Array.from(x64), [N, C], "x");
  const weight = Tensor.from(gpu, Float32Array.from(w64), [C], "weight");
  const bias = Tensor.from(gpu, Float32Array.from(b64), [C], "bias");
  const tape = new Tape(gpu);
  const s = await add(tape, x, await layernorm(tape, x, weight, bias));
  const logits = await gelu(tape, await add(tape, s, s));
  const losses = await crossEntropyLoss(tape, logits, {
    targets: gpu.upload(targets),
    mask: gpu.upload(mask),
    counted: 2,
  });
  await tape.backward(losses);
  const tolerance = { atol: 2e-4, rtol: 1e-3 };
  const loss = () => sharedLossCpu(x64, w64, b64);
  assertClose(await x.readGrad(), finiteDifferenceGradient(loss, x64), tolerance);
  assertClose(await weight.readGrad(), finiteDifferenceGradient(loss, w64), tolerance);
  assertClose(await bias.readGrad(), finiteDifferenceGradient(loss, b64), tolerance);
  // Only leaves keep their gradients once the backward is done.
  assert.throws(() => s.grad, /has no gradient yet/);
  tape.dispose();
  // x still holds its gradient after the tape's tensors are gone.
  assertClose(await x.readGrad(), finiteDifferenceGradient(loss, x64), tolerance);
  for (const t of [x, weight, bias]) t.dispose();
});

// The GELU layer's backward rewrites its output's gradient in place; when the residual add shared
// that buffer with its other input, that input must keep the add's gradient (here z, whose
// backward runs after the GELU layer's).
Deno.test("a shared gradient rewritten in place by the GELU layer stays right for its sharers", async () => {
  const gpu = await testGpu();
  const dims = 8;
  const tensor = (seed: number, shape: number[]) =>
    Tensor.from(gpu, randomArray(shape.reduce((a, b) => a * b), seed), shape);
  const run = async (fused: boolean) => {
    const [x, w1, b1, w2, b2] = [[N, dims], [dims, dims], [dims], [dims, dims], [dims]]
      .map((shape, i) => tensor(41 + i, shape));
    const tape = new Tape(gpu);
    const z = await linear(tape, x, w1, b1);
    const y = fused
      ? await linearGelu(tape, x, w2, b2)
      : await gelu(tape, await linear(tape, x, w2, b2));
    const logits = await gelu(tape, await add(tape, z, y));
    await tape.backward(
      await crossEntropyLoss(tape, logits, {
        targets: gpu.upload(targets),
        mask: gpu.upload(mask),
        counted: 2,
      }),
    );
    const grads = await Promise.all([x, w1, b1, w2, b2].map((t) => t.readGrad()));
    tape.dispose();
    for (const t of [x, w1, b1, w2, b2]) t.dispose();
    return grads;
  };
  const fused = await run(true), unfused = await run(false);
  fused.forEach((grad, i) => assertClose(grad, unfused[i], { atol: 1e-5, rtol: 1e-4 }));
});

/** mean over counted positions of CE(gelu(ln(x + y)) + (x + y)). */
function residualLossCpu(
  x: Float64Array,
  y: Float64Array,
  weight: Float64Array,
  bias: Float64Array,
): number {
  const sum = x.map((v, i) => v + y[i]);
  const h = new Float64Array(N * C), g = new Float64Array(N * C);
  layernormForwardCpu(h, new Float64Array(N), new Float64Array(N), sum, weight, bias, N, C);
  geluForwardCpu(g, h);
  for (let i = 0; i < N * C; i++) g[i] += sum[i];
  return meanLossCpu(g);
}

// Both outputs of the fused op feed the loss: the sum's gradient and the layernorm's add up
// before they pass on to x and y.
Deno.test("residualLayernorm() gives finite-difference gradients through both outputs", async () => {
  const gpu = await testGpu();
  const [x64, y64] = [41, 42].map((seed) => Float64Array.from(randomArray(N * C, seed)));
  const w64 = Float64Array.from(randomArray(C, 43), (w) => 1 + 0.5 * w);
  const b64 = Float64Array.from(randomArray(C, 44));
  const x = Tensor.from(gpu, Float32Array.from(x64), [N, C], "x");
  const y = Tensor.from(gpu, Float32Array.from(y64), [N, C], "y");
  const weight = Tensor.from(gpu, Float32Array.from(w64), [C], "weight");
  const bias = Tensor.from(gpu, Float32Array.from(b64), [C], "bias");
  const tape = new Tape(gpu);
  const { sum, out } = await residualLayernorm(tape, x, y, weight, bias);
  const losses = await crossEntropyLoss(tape, await add(tape, await gelu(tape, out), sum), {
    targets: gpu.upload(targets),
    mask: gpu.upload(mask),
    counted: 2,
  });
  await tape.backward(losses);
  const tolerance = { atol: 2e-4, rtol: 1e-3 };
  const loss = () => residualLossCpu(x64, y64, w64, b64);
  for (const [tensor, values] of [[x, x64], [y, y64], [weight, w64], [bias, b64]] as const) {
    assertClose(await tensor.readGrad(), finiteDifferenceGradient(loss, values), tolerance);
  }
  tape.dispose();
  for (const t of [x, y, weight, bias]) t.dispose();
});

Deno.test("a tensor's gradient must exist before it is read", async () => {
  const gpu = await testGpu();
  const x = Tensor.from(gpu, new Float32Array(4), [4], "x");
  assert.throws(() => x.grad, /Tensor x has no gradient yet; call backward/);
  x.dispose();
});

Deno.test("a profile files a tape's forward and backward kernels under those phases", async () => {
  const gpu = await testGpu();
  const x = Tensor.from(gpu, Float32Array.from(randomArray(N * C, 21)), [N, C], "x");
  gpu.startProfile();
  const tape = new Tape(gpu);
  const logits = await gelu(tape, x);
  const losses = await crossEntropyLoss(tape, logits, {
    targets: gpu.upload(targets),
    mask: null,
    counted: N,
  });
  await tape.backward(losses);
  const profile = await gpu.stopProfile();
  // Kernel names and part counts are the kernels' business; the phases come in order.
  const phases = profile.dispatches.map((d) => d.phase);
  const backwardFrom = phases.indexOf("backward");
  assert.ok(backwardFrom > 0, phases.join());
  assert.ok(phases.every((phase, i) => phase === (i < backwardFrom ? "forward" : "backward")));
  const kernels = (phase: string) =>
    new Set(profile.dispatches.filter((d) => d.phase === phase).map((d) => d.kernel));
  assert.ok(kernels("forward").has("gelu_forward") && !kernels("forward").has("gelu_backward"));
  assert.ok(kernels("backward").has("gelu_backward"));
  tape.dispose();
  x.dispose();
});
