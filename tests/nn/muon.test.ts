import assert from "node:assert/strict";
import { bufferOf, byteOffsetOf, type Gpu } from "../../kernels/device.ts";
import { GPT2, gpt2ParameterSpecs } from "../../nn/gpt2.ts";
import {
  DEFAULT_MUON,
  Muon,
  muonParameterNames,
  type MuonSettings,
  muonStepCpu,
  NEWTON_SCHULZ_5,
  newtonSchulz,
  newtonSchulzCpu,
} from "../../nn/muon.ts";
import { AdamW } from "../../nn/optimizer.ts";
import { Random } from "../../nn/random.ts";
import { Tape } from "../../nn/tape.ts";
import { Tensor } from "../../nn/tensor.ts";
import {
  assertClose,
  countDispatches,
  randomArray,
  testGpuUncapped,
  testGpuWithBindingLimit,
} from "../_gpu.ts";

const NS = { steps: 5, coefficients: NEWTON_SCHULZ_5, eps: 1e-7 };

/** Eigenvalues of a symmetric (n, n) matrix by cyclic Jacobi rotations, in float64. */
function symmetricEigenvalues(matrix: Float64Array, n: number): number[] {
  const a = Float64Array.from(matrix);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) { // columns p and q
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) { // rows p and q
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
      }
    }
  }
  return Array.from({ length: n }, (_, i) => a[i * n + i]);
}

/** Singular values of a (rows, cols) matrix: square roots of the eigenvalues on the small side. */
function singularValues(x: ArrayLike<number>, rows: number, cols: number): number[] {
  const tall = rows > cols, s = Math.min(rows, cols);
  const gram = new Float64Array(s * s);
  for (let i = 0; i < s; i++) {
    for (let j = 0; j < s; j++) {
      let sum = 0;
      for (let k = 0; k < Math.max(rows, cols); k++) {
        sum += tall ? x[k * cols + i] * x[k * cols + j] : x[i * cols + k] * x[j * cols + k];
      }
      gram[i * s + j] = sum;
    }
  }
  return symmetricEigenvalues(gram, s).map((e) => Math.sqrt(Math.max(0, e)));
}

const SHAPES: Array<[number, number]> = [[7, 13], [13, 7], [48, 48], [96, 384], [384, 96]];

Deno.test("symmetricEigenvalues() finds the singular values of a known matrix", () => {
  // (2, 3) with orthogonal rows of norms 3 and 2.
  const sv = singularValues([3, 0, 0, 0, 0, 2], 2, 3).sort();
  assertClose(sv, [2, 3], { atol: 1e-12, rtol: 0 });
});

for (const [rows, cols] of SHAPES) {
  Deno.test(`newtonSchulzCpu() sets the singular values of a ${rows}x${cols} matrix near 1`, () => {
    const u = randomArray(rows * cols, rows * 1000 + cols);
    const before = singularValues(u, rows, cols);
    const sv = singularValues(newtonSchulzCpu(u, rows, cols, NS), rows, cols);
    const [lo, hi] = [Math.min(...sv), Math.max(...sv)];
    // The quintic is tuned for speed, not convergence: its fixed band is about [0.7, 1.2].
    assert.ok(
      lo > 0.6 && hi < 1.25,
      `singular values in [${lo}, ${hi}] (input's spread ${
        Math.max(...before) / Math.min(...before)
      })`,
    );
  });
}

for (const [rows, cols] of SHAPES) {
  Deno.test(`newtonSchulz() matches its float64 CPU reference on a stack of ${rows}x${cols}`, async () => {
    const gpu = await testGpuUncapped();
    const count = 2, size = rows * cols;
    const u = randomArray(count * size, rows + 7 * cols);
    for (let i = size; i < 2 * size; i++) u[i] *= 1e-3; // a much smaller second matrix
    const x = gpu.upload(u);
    await newtonSchulz(gpu, x, { rows, cols, count }, NS);
    const got = await gpu.readF32(x, count * size);
    gpu.release(x);
    for (let j = 0; j < count; j++) {
      const expected = newtonSchulzCpu(u.subarray(j * size, (j + 1) * size), rows, cols, NS);
      // Entries are about 1/√max(rows, cols); float32 products of five iterations (measured: 5e-7 off).
      assertClose(got.subarray(j * size, (j + 1) * size), expected, { atol: 1e-5, rtol: 1e-4 });
    }
  });
}

/** A parameter map of `shapes`, named `p0`, `p1`, ..., with gradients from `seed`. */
function matrices(gpu: Gpu, shapes: Array<[number, number]>, seed: number): Map<string, Tensor> {
  const params = new Map<string, Tensor>();
  shapes.forEach((shape, i) => {
    const size = shape[0] * shape[1];
    params.set(`p${i}`, Tensor.from(gpu, randomArray(size, seed + i), shape, `p${i}`));
  });
  return params;
}

/** Gives every parameter the gradient `scale · random(seed + i)`. */
function setGradients(gpu: Gpu, params: Map<string, Tensor>, seed: number, scale: number) {
  let i = 0;
  const grads = new Map<string, Float32Array>();
  for (const [name, param] of params) {
    const g = randomArray(param.size, seed + i++).map((v) => v * scale);
    param.zeroGrad();
    const grad = param.gradForAccumulate();
    gpu.write(bufferOf(grad), g, byteOffsetOf(grad));
    grads.set(name, g);
  }
  return grads;
}

/**
 * Takes `scales.length` Muon steps of a few awkward shapes on the GPU and in float64 on the CPU,
 * the gradients of step `i` scaled by `scales[i]`, and compares the weights and momentum. With
 * `externalNorm`, each step clips by that norm, given in a GPU buffer, instead of Muon's own.
 */
async function checkAgainstCpu(
  settings: MuonSettings,
  scales: number[],
  externalNorm?: number,
): Promise<void> {
  const gpu = await testGpuUncapped();
  // Two 7x13 matrices share a stack; the others are stacks of one.
  const shapes: Array<[number, number]> = [[7, 13], ...SHAPES];
  const params = matrices(gpu, shapes, 10);
  const names = [...params.keys()];
  const muon = new Muon(gpu, params, names, settings);
  const cpu = new Map<string, { w: Float64Array; m: Float64Array }>();
  for (const [name, param] of params) {
    cpu.set(name, { w: Float64Array.from(await param.read()), m: new Float64Array(param.size) });
  }
  try {
    for (let step = 0; step < scales.length; step++) {
      const lr = 0.02 * (step + 1);
      const grads = setGradients(gpu, params, 100 * step, scales[step]);
      let norm = 0;
      for (const g of grads.values()) for (const v of g) norm += v * v;
      if (externalNorm === undefined) await muon.step(lr);
      else {
        const normBuffer = gpu.upload(new Float32Array([externalNorm]));
        await muon.step(lr, normBuffer);
        gpu.release(normBuffer);
        norm = externalNorm ** 2;
      }
      for (const [name, param] of params) {
        const { w, m } = cpu.get(name)!;
        muonStepCpu(
          w,
          m,
          grads.get(name)!,
          param.shape[0],
          param.shape[1],
          lr,
          settings,
          Math.sqrt(norm),
        );
      }
    }
    for (const [name, param] of params) {
      const { w } = cpu.get(name)!;
      assertClose(await param.read(), w, { atol: 2e-5, rtol: 1e-4 });
    }
    const state = await muon.state();
    assert.deepEqual(state.map((t) => t.name), names.map((n) => `muon.m.${n}`));
    for (const tensor of state) {
      const name = tensor.name.slice("muon.m.".length);
      assert.deepEqual(tensor.shape, [...params.get(name)!.shape]);
      assertClose(tensor.data, cpu.get(name)!.m, { atol: 1e-6, rtol: 1e-5 });
    }
  } finally {
    muon.dispose();
    for (const param of params.values()) param.dispose();
  }
}

Deno.test("Muon.step() matches the float64 CPU step over three steps, clipped (Moonshot scale)", async () => {
  // Global norms of about 16, 0.016 and 8: clipped, not clipped, clipped.
  await checkAgainstCpu(DEFAULT_MUON, [0.1, 1e-4, 0.05]);
});

Deno.test("Muon.step() matches the float64 CPU step with Keller's scale, no Nesterov, no clipping", async () => {
  await checkAgainstCpu(
    { ...DEFAULT_MUON, scaleRule: "keller", nesterov: false, maxNorm: 0, weightDecay: 0 },
    [1, 0.3],
  );
});

Deno.test("Muon.step() clips by a gradient norm it is given (e.g. the whole model's)", async () => {
  // Own norms of about 1.6, a given norm of 40: the step must scale by 1/40, not 1/1.6.
  await checkAgainstCpu(DEFAULT_MUON, [0.01, 0.01], 40);
});

Deno.test("Muon.load() restores the momentum that state() saved", async () => {
  const gpu = await testGpuUncapped();
  const shapes: Array<[number, number]> = [[7, 13], [13, 7], [7, 13]];
  const first = matrices(gpu, shapes, 1), second = matrices(gpu, shapes, 1);
  const names = [...first.keys()];
  const a = new Muon(gpu, first, names), b = new Muon(gpu, second, names);
  try {
    setGradients(gpu, first, 5, 0.1);
    await a.step(0.01);
    // The same weights and momentum, then the same step: the same result.
    for (const [name, param] of first) gpu.write(second.get(name)!.buffer, await param.read());
    b.load(new Map((await a.state()).map((t) => [t.name, t])));
    setGradients(gpu, first, 6, 0.1);
    setGradients(gpu, second, 6, 0.1);
    await a.step(0.01);
    await b.step(0.01);
    for (const [name, param] of first) {
      assert.deepEqual(await second.get(name)!.read(), await param.read());
    }
    assert.throws(() => b.load(new Map()), /lacks muon\.m\.p0/);
  } finally {
    a.dispose();
    b.dispose();
    for (const param of [...first.values(), ...second.values()]) param.dispose();
  }
});

Deno.test("Muon splits a shape's matrices into stacks that fit a binding, and refuses one over it", async () => {
  const uncapped = await testGpuUncapped(), capped = await testGpuWithBindingLimit(4096);
  // Three 24x24 matrices (2,304 bytes each): one stack uncapped, three under a 4 KiB binding.
  const shapes: Array<[number, number]> = [[24, 24], [24, 24], [24, 24]];
  const results: Float32Array[][] = [];
  for (const gpu of [uncapped, capped]) {
    const params = matrices(gpu, shapes, 3);
    const muon = new Muon(gpu, params, [...params.keys()]);
    try {
      setGradients(gpu, params, 7, 0.1);
      const counts = await countDispatches(gpu, () => muon.step(0.01));
      assert.equal(counts.get("muon_update"), gpu === capped ? 3 : 1);
      results.push(await Promise.all([...params.values()].map((p) => p.read())));
    } finally {
      muon.dispose();
      for (const param of params.values()) param.dispose();
    }
  }
  assert.deepEqual(results[1], results[0]);
  const big = matrices(capped, [[40, 40]], 1); // 6,400 bytes
  assert.throws(() => new Muon(capped, big, ["p0"]), /larger than one binding/);
  for (const param of big.values()) param.dispose();
});

Deno.test("Muon refuses vectors and unknown names", async () => {
  const gpu = await testGpuUncapped();
  const bias = Tensor.from(gpu, new Float32Array(3), [3], "bias");
  const params = new Map([["bias", bias]]);
  assert.throws(() => new Muon(gpu, params, ["bias"]), /matrices only.*leave it to AdamW/);
  assert.throws(() => new Muon(gpu, params, ["nope"]), /not among the parameters/);
  bias.dispose();
});

Deno.test("muonParameterNames() names each block's four matrices, all 2-D GPT-2 weights", () => {
  const config = { vocabSize: 50, contextLength: 8, nLayer: 2, nHead: 2, nEmbd: 16 };
  const names = muonParameterNames(config);
  assert.equal(names.length, 8);
  const specs = new Map(gpt2ParameterSpecs(config).map((s) => [s.name, s]));
  for (const name of names) assert.equal(specs.get(name)?.shape.length, 2, name);
  assert.ok(!names.includes("wte") && !names.includes("wpe"));
  assert.ok(names.includes("h.1.mlp.c_proj.weight"));
});

/** Trains a tiny GPT-2 on one repeated batch; returns the loss before each step. */
async function trainTiny(useMuon: boolean, steps: number, lr: number): Promise<number[]> {
  const gpu = await testGpuUncapped();
  const config = { vocabSize: 64, contextLength: 16, nLayer: 2, nHead: 2, nEmbd: 32 };
  const model = GPT2.init(gpu, config, 7);
  const random = new Random(11);
  const B = 4, T = 16;
  const ids = Int32Array.from({ length: B * T }, () => random.int(config.vocabSize));
  const targets = Int32Array.from({ length: B * T }, () => random.int(config.vocabSize));
  const muonNames = useMuon ? muonParameterNames(config) : [];
  const rest = new Map([...model.params].filter(([name]) => !muonNames.includes(name)));
  const adamw = new AdamW(gpu, rest, new Set([...model.decayed].filter((n) => rest.has(n))));
  const muon = useMuon ? new Muon(gpu, model.params, muonNames) : null;
  const losses: number[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const tape = new Tape(gpu);
      try {
        const loss = await model.loss(tape, { inputs: ids, targets, batch: B, time: T });
        await tape.backward(loss.perPosition);
        await muon?.step(lr);
        await adamw.step(lr);
        losses.push(await loss.mean());
      } finally {
        tape.dispose();
        model.zeroGrad();
      }
    }
  } finally {
    muon?.dispose();
    adamw.dispose();
    model.dispose();
  }
  return losses;
}

Deno.test("a tiny GPT-2 with Muon on its matrices and AdamW on the rest learns a repeated batch", async () => {
  const steps = 30, lr = 1e-2;
  const muon = await trainTiny(true, steps, lr);
  const adamw = await trainTiny(false, steps, lr);
  const fmt = (l: number[]) => [0, 9, 19, steps - 1].map((i) => l[i].toFixed(3)).join(" → ");
  console.log(`loss, Muon + AdamW: ${fmt(muon)}; AdamW alone: ${fmt(adamw)}`);
  for (const loss of muon) assert.ok(Number.isFinite(loss), `loss ${loss}`);
  // Random targets over 64 tokens start near ln 64 = 4.16; memorizing them drives it down.
  assert.ok(Math.abs(muon[0] - Math.log(64)) < 0.3, `first loss ${muon[0]}`);
  assert.ok(muon.at(-1)! < 0.5 * muon[0], `Muon's loss went ${muon[0]} → ${muon.at(-1)}`);
});
