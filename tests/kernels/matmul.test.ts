import assert from "node:assert/strict";
import { biasGrad, biasGradCpu } from "../../kernels/bias_grad.ts";
import {
  linearBackward,
  linearBackwardCpu,
  linearForward,
  linearForwardCpu,
  matmul,
  MATMUL_TILE_CPU,
  matmulCpu,
  type MatmulLimits,
  type MatmulShape,
  type MatmulTile,
  matmulTile,
} from "../../kernels/matmul.ts";
import { Gpu } from "../../kernels/device.ts";
import { matmulNaive } from "../../kernels/matmul_naive.ts";
import { assertGradientMatches, projectedLoss } from "../_finite_diff.ts";
import { assertClose, randomArray, testGpu } from "../_gpu.ts";

// Float32 products of values in [-1, 1) summed over K <= ~300 terms: the GPU sums in a different
// order than the float64 reference, so errors stay below ~K · 2^-24 · (typical partial sum).
const TOLERANCE = { atol: 1e-4, rtol: 1e-4 };

/** Elements a matmul reads or writes, with its batch and strides. */
function extents(s: MatmulShape) {
  const batch = s.batch ?? 1;
  const strideA = s.strideA ?? s.m * s.k, strideB = s.strideB ?? s.k * s.n;
  const strideOut = s.strideOut ?? s.m * s.n;
  return {
    a: (s.offsetA ?? 0) + (batch - 1) * strideA + s.m * s.k,
    b: (s.offsetB ?? 0) + (batch - 1) * strideB + s.k * s.n,
    out: (s.offsetOut ?? 0) + (batch - 1) * strideOut + s.m * s.n,
  };
}

/** Runs `matmul` on random data (and a random previous output) and compares with matmulCpu. */
async function checkMatmul(
  shape: MatmulShape,
  { bias = false, pre = false, limits }: { bias?: boolean; pre?: boolean; limits?: MatmulLimits } =
    {},
) {
  const gpu = await testGpu();
  const size = extents(shape);
  const a = randomArray(size.a, 1), b = randomArray(size.b, 2);
  const biasData = bias ? randomArray(shape.n, 3) : undefined;
  const expected = randomArray(size.out, 4); // also the previous output when accumulating
  const expectedPre = pre ? new Float32Array(size.out) : undefined;
  const aBuf = gpu.upload(a), bBuf = gpu.upload(b), out = gpu.upload(expected);
  const biasBuf = biasData && gpu.upload(biasData);
  const preBuf = expectedPre && gpu.upload(expectedPre);
  matmulCpu(expected, a, b, { ...shape, bias: biasData, pre: expectedPre });
  await matmul(gpu, out, aBuf, bBuf, { ...shape, bias: biasBuf, pre: preBuf }, limits);
  assertClose(await gpu.readF32(out, size.out), expected, TOLERANCE);
  if (preBuf) assertClose(await gpu.readF32(preBuf, size.out), expectedPre!, TOLERANCE);
  for (const buffer of [aBuf, bBuf, out, biasBuf, preBuf]) if (buffer) gpu.release(buffer);
}

const LAYOUTS = [
  { name: "A·B", transA: false, transB: false },
  { name: "A·Bᵀ", transA: false, transB: true },
  { name: "Aᵀ·B", transA: true, transB: false },
];

// Awkward sizes (no multiple of the 64 x 64 workgroup tile, K not a multiple of 4) go through
// the pack kernel; the 64-multiples take the plain buffer-to-texture copy.
for (const { name, transA, transB } of LAYOUTS) {
  for (const [m, n, k] of [[67, 129, 33], [1, 1, 1], [130, 70, 257], [64, 192, 128]]) {
    Deno.test(`matmul() computes ${name} like its CPU reference for M,N,K = ${m},${n},${k}`, () =>
      checkMatmul({ m, n, k, transA, transB }));
  }
}

Deno.test("matmul() adds the bias and applies GELU, also storing the pre-activation", async () => {
  // N = 50 stores column by column; N = 36 and 128 four columns at a time (whole vec4 rows).
  await checkMatmul({ m: 37, n: 50, k: 48, transB: true, gelu: true }, { bias: true, pre: true });
  await checkMatmul({ m: 37, n: 36, k: 48, transB: true, gelu: true }, { bias: true, pre: true });
  await checkMatmul({ m: 64, n: 128, k: 64, transB: true }, { bias: true });
});

Deno.test("matmul() accumulates into the output with accumulate", async () => {
  for (const { transA, transB } of LAYOUTS) {
    await checkMatmul({ m: 45, n: 70, k: 37, transA, transB, accumulate: true }, { bias: true });
    await checkMatmul({ m: 45, n: 68, k: 37, transA, transB, accumulate: true }, { bias: true });
  }
});

Deno.test("matmul() stores whole vec4 rows only where the output window is aligned", async () => {
  // N a multiple of 4, but the output starting mid-vec4, or batches a stride of 2 apart: these
  // take the column-by-column stores (as every accumulating launch does).
  await checkMatmul({ m: 19, n: 24, k: 20, offsetOut: 2, transA: true }, { bias: true });
  await checkMatmul({ m: 9, n: 12, k: 20, batch: 3, strideOut: 9 * 12 + 2, transB: true });
  await checkMatmul({ m: 9, n: 12, k: 20, batch: 3, strideOut: 9 * 12 + 4, offsetOut: 4 });
});

Deno.test("matmul() splits long reductions into equal parts that accumulate", async () => {
  // The lavapipe tile's budget, scaled down. Aᵀ·B counts M + N = 60 floats a reduction step:
  // 8000 bytes allow 33 steps, so K = 290 runs in 10 parts, of 32 steps but the last (2, a
  // partial texel). A·B counts 2N = 60 floats a step too: K = 70 runs as 24, 24 and 22.
  const tile = { ...MATMUL_TILE_CPU, kPart: 4, kPartBytes: 8000 };
  await checkMatmul({ m: 20, n: 40, k: 290, transA: true, accumulate: true }, {
    limits: { tile },
  });
  await checkMatmul({ m: 50, n: 30, k: 70, gelu: true }, {
    bias: true,
    pre: true,
    limits: { tile },
  });
});

Deno.test("matmul() runs batched products with strides, offsets and a shared operand", async () => {
  // Attention-like: (B·NH) products of (T, hs) · (T, hs)ᵀ, with gaps between the matrices.
  await checkMatmul({
    m: 37,
    n: 37,
    k: 16,
    transB: true,
    batch: 6,
    strideA: 37 * 16 + 5,
    strideB: 37 * 16 + 3,
    strideOut: 37 * 37 + 7,
    offsetA: 2,
    offsetB: 9,
    offsetOut: 1,
  });
  // One B for every batch entry (stride 0), and the aligned copy path with batches.
  await checkMatmul({ m: 20, n: 64, k: 64, batch: 3, strideB: 0 });
  await checkMatmul({ m: 64, n: 64, k: 64, batch: 4, transA: true });
});

Deno.test("matmul() splits along M, N and K when textures and bindings are limited", async () => {
  // Textures of at most 64 texels a side and 64 KiB bindings force several parts along every
  // dimension (K parts accumulate; bias and GELU apply once, in the last K part).
  const limits = { maxTextureDimension: 64, maxBinding: 65536 };
  for (const { transA, transB } of LAYOUTS) {
    await checkMatmul({ m: 200, n: 300, k: 290, transA, transB }, { limits });
  }
  await checkMatmul({ m: 150, n: 270, k: 300, transB: true, gelu: true }, {
    bias: true,
    pre: true,
    limits,
  });
  await checkMatmul({ m: 70, n: 260, k: 260, transA: true, accumulate: true }, { limits });
  await checkMatmul({ m: 20, n: 30, k: 20, batch: 3 }, { limits: { maxBinding: 4096 } });
});

Deno.test("matmul() handles operands and outputs larger than one binding", async () => {
  const gpu = await testGpu();
  // The lm head's layout, scaled down under a forced 16 KiB binding limit (the same code runs
  // for GPT-2's 154 MB wte over lavapipe's 128 MiB): B (300, 48) is 57.6 kB, staged by the pack
  // kernel in row chunks that each fit one binding.
  const limits = { maxBinding: 16384 };
  const N = 300, C = 48;
  const big = randomArray(N * C, 5);
  assert.ok(big.byteLength > limits.maxBinding, "the test tensor must exceed the binding limit");
  const bigBuf = gpu.upload(big);
  const x = randomArray(3 * C, 6), xBuf = gpu.upload(x);
  const logits = new Float32Array(3 * N), logitsBuf = gpu.acquire(logits.byteLength);
  matmulCpu(logits, x, big, { m: 3, n: N, k: C, transB: true });
  await matmul(gpu, logitsBuf, xBuf, bigBuf, { m: 3, n: N, k: C, transB: true }, limits);
  assertClose(await gpu.readF32(logitsBuf, 3 * N), logits, TOLERANCE);
  // The wte gradient's shape: dW (300, 48) += dlogitsᵀ (300, 3) · x (3, 48), an output over
  // the limit (written in row parts), from an A stored (3, 300) that is packed.
  const dlogits = randomArray(3 * N, 7), dlogitsBuf = gpu.upload(dlogits);
  matmulCpu(big, dlogits, x, { m: N, n: C, k: 3, transA: true, accumulate: true });
  await matmul(gpu, bigBuf, dlogitsBuf, xBuf, {
    m: N,
    n: C,
    k: 3,
    transA: true,
    accumulate: true,
  }, limits);
  assertClose(await gpu.readF32(bigBuf, N * C), big, TOLERANCE);
  for (const buffer of [bigBuf, xBuf, logitsBuf, dlogitsBuf]) gpu.release(buffer);
});

const GPU_LIKE = { alongMWhenWide: false, narrowTile: 0 };
const ALONG_M = { alongMWhenWide: true, narrowTile: 0 };

Deno.test("matmul() gives the same products with the CPU tile, the GPU tile and odd tiles", async () => {
  // Whatever tile the adapter picks, each one must be right: the reduction loop's unrolled
  // main part and its remainder (K = 33 is 9 texels: 4 trips of 2 and 1 left; 3 trips of 3),
  // outputs that end inside a tile, and reductions split into parts that accumulate.
  const tiles: MatmulTile[] = [
    MATMUL_TILE_CPU,
    { tm: 4, tn: 4, wx: 16, wy: 16, ku: 1, kPart: 0, kPartBytes: 0, ...GPU_LIKE },
    { tm: 4, tn: 8, wx: 2, wy: 4, ku: 3, kPart: 8, kPartBytes: 0, ...ALONG_M },
    { tm: 12, tn: 4, wx: 8, wy: 1, ku: 2, kPart: 12, kPartBytes: 0, ...GPU_LIKE },
    // The CPU tile without its narrow tile (the shapes below would all take 12 along N).
    { ...MATMUL_TILE_CPU, narrowTile: 0 },
    // Parts longer than kPart within a small budget: K = 50 over M + N = 50 floats a step at
    // 4000 bytes is 3 equal parts of 20, 20 and 10.
    { ...MATMUL_TILE_CPU, kPart: 8, kPartBytes: 4000 },
  ];
  for (const tile of tiles) {
    for (const { transA, transB } of LAYOUTS) {
      for (const [m, n, k] of [[67, 129, 33], [19, 20, 36], [5, 3, 2]]) {
        await checkMatmul({ m, n, k, transA, transB }, { limits: { tile } });
      }
    }
    await checkMatmul({ m: 37, n: 50, k: 45, transB: true, gelu: true }, {
      bias: true,
      pre: true,
      limits: { tile },
    });
    await checkMatmul({ m: 20, n: 30, k: 50, batch: 3, strideB: 0, transA: true }, {
      limits: { tile },
    });
  }
});

Deno.test("matmulTile() picks the CPU tile on a CPU adapter and fits a GPU's workgroup limits", async () => {
  const gpu = await testGpu();
  const cpu = new Gpu(gpu.device, { ...gpu.adapter, isCpu: true });
  assert.deepEqual(matmulTile(cpu), MATMUL_TILE_CPU);
  const hardware = new Gpu(gpu.device, { ...gpu.adapter, isCpu: false });
  const tile = matmulTile(hardware);
  const limits = gpu.device.limits;
  assert.ok(tile.wx * tile.wy <= limits.maxComputeInvocationsPerWorkgroup);
  assert.ok(
    tile.wx <= limits.maxComputeWorkgroupSizeX && tile.wy <= limits.maxComputeWorkgroupSizeY,
  );
  assert.equal(tile.tm % 4, 0);
  assert.equal(tile.tn % 4, 0);
});

Deno.test("matmul() rejects gelu with accumulate, and pre without gelu", async () => {
  const gpu = await testGpu();
  const buf = gpu.acquire(64);
  await assert.rejects(
    () => matmul(gpu, buf, buf, buf, { m: 2, n: 2, k: 2, gelu: true, accumulate: true }),
    /gelu and accumulate is ambiguous/,
  );
  await assert.rejects(
    () => matmul(gpu, buf, buf, buf, { m: 2, n: 2, k: 2, pre: buf }),
    /pre-activation buffer without gelu/,
  );
  await assert.rejects(() => matmul(gpu, buf, buf, buf, { m: 0, n: 2, k: 2 }), /size m is 0/);
  gpu.release(buf);
});

Deno.test("matmulNaive() matches the CPU reference in all three layouts", async () => {
  const gpu = await testGpu();
  const [m, n, k] = [33, 45, 19];
  for (const { transA, transB } of LAYOUTS) {
    const a = randomArray(m * k, 1), b = randomArray(k * n, 2);
    const expected = new Float32Array(m * n);
    matmulCpu(expected, a, b, { m, n, k, transA, transB });
    const aBuf = gpu.upload(a), bBuf = gpu.upload(b), out = gpu.acquire(m * n * 4);
    await matmulNaive(gpu, out, aBuf, bBuf, { m, n, k, transA, transB });
    assertClose(await gpu.readF32(out, m * n), expected, TOLERANCE);
    for (const buffer of [aBuf, bBuf, out]) gpu.release(buffer);
  }
});

for (const gelu of [false, true]) {
  Deno.test(`linearBackwardCpu() matches finite differences${gelu ? ", with gelu" : ""}`, () => {
    const [BT, C, OC] = [3, 4, 5];
    const inp = Float64Array.from(randomArray(BT * C, 1));
    const weight = Float64Array.from(randomArray(OC * C, 2));
    const bias = Float64Array.from(randomArray(OC, 3));
    const weights = Float64Array.from(randomArray(BT * OC, 4)); // dloss/dout
    const pre = gelu ? new Float64Array(BT * OC) : undefined;
    const forward = (keepPre?: Float64Array) => {
      const out = new Float64Array(BT * OC);
      linearForwardCpu({ out, inp, weight, bias, pre: keepPre }, BT, C, OC, { gelu });
      return out;
    };
    const loss = () => projectedLoss(forward(), weights);
    forward(pre);
    const dinp = new Float64Array(BT * C);
    const dweight = new Float64Array(OC * C).fill(0.25); // accumulates onto what is there
    const dbias = new Float64Array(OC).fill(-0.5);
    const dout = weights.slice(); // with gelu, overwritten by dpre
    linearBackwardCpu({ dinp, dweight, dbias, dout, inp, weight, pre }, BT, C, OC, { gelu });
    assertGradientMatches(dinp, loss, inp);
    assertGradientMatches(dweight.map((g) => g - 0.25), loss, weight);
    assertGradientMatches(dbias.map((g) => g + 0.5), loss, bias);
  });
}

/**
 * Runs linearForward and linearBackward on random data and compares every output, and with
 * `gelu` the pre-activation and dout (overwritten by dpre), with the CPU references.
 */
async function checkLinear(
  [BT, C, OC]: number[],
  { gelu = false, bias = true, limits }: { gelu?: boolean; bias?: boolean; limits?: MatmulLimits },
) {
  const gpu = await testGpu();
  const inp = randomArray(BT * C, 1), weight = randomArray(OC * C, 2);
  const biasData = bias ? randomArray(OC, 3) : null;
  const dout = randomArray(BT * OC, 4);
  const out = new Float32Array(BT * OC), pre = gelu ? new Float32Array(BT * OC) : undefined;
  const dinp = new Float32Array(BT * C);
  const dweight = randomArray(OC * C, 5), dbias = bias ? randomArray(OC, 6) : null;
  const bufs = {
    inp: gpu.upload(inp),
    weight: gpu.upload(weight),
    bias: biasData && gpu.upload(biasData),
    pre: pre && gpu.acquire(pre.byteLength),
    dout: gpu.upload(dout),
    out: gpu.acquire(out.byteLength),
    dinp: gpu.acquire(dinp.byteLength),
    dweight: gpu.upload(dweight),
    dbias: dbias && gpu.upload(dbias),
  };
  linearForwardCpu({ out, inp, weight, bias: biasData, pre }, BT, C, OC, { gelu });
  linearBackwardCpu({ dinp, dweight, dbias, dout, inp, weight, pre }, BT, C, OC, { gelu });
  await linearForward(gpu, bufs, BT, C, OC, { gelu, limits }); // ignores the gradients
  await linearBackward(gpu, bufs, BT, C, OC, { gelu, limits }); // ignores out and bias
  assertClose(await gpu.readF32(bufs.out, BT * OC), out, TOLERANCE);
  if (pre) assertClose(await gpu.readF32(bufs.pre!, BT * OC), pre, TOLERANCE);
  assertClose(await gpu.readF32(bufs.dout, BT * OC), dout, TOLERANCE);
  assertClose(await gpu.readF32(bufs.dinp, BT * C), dinp, TOLERANCE);
  assertClose(await gpu.readF32(bufs.dweight, OC * C), dweight, TOLERANCE);
  if (dbias) assertClose(await gpu.readF32(bufs.dbias!, OC), dbias, TOLERANCE);
  for (const buffer of Object.values(bufs)) if (buffer) gpu.release(buffer);
}

// Awkward shapes: no multiple of the tile, C and OC not multiples of 4, a single row.
for (const shape of [[37, 48, 50], [5, 7, 13], [1, 3, 9]]) {
  for (const gelu of [false, true]) {
    Deno.test(`linearForward() and linearBackward() match their CPU references for BT,C,OC = ${shape}${gelu ? ", with gelu" : ""}`, () =>
      checkLinear(shape, { gelu }));
  }
}

Deno.test("linearForward() and linearBackward() with gelu match their CPU references when split and without bias", async () => {
  await checkLinear([70, 33, 90], { gelu: true, limits: { maxTextureDimension: 16 } });
  await checkLinear([37, 48, 50], { gelu: false, bias: false });
});

Deno.test("linearBackward() refuses gelu without the pre-activation, and pre without gelu", async () => {
  const gpu = await testGpu();
  const buf = gpu.acquire(64);
  const buffers = { dinp: buf, dweight: buf, dout: buf, inp: buf, weight: buf };
  await assert.rejects(
    () => linearBackward(gpu, buffers, 2, 2, 2, { gelu: true }),
    /with gelu needs the pre-activation/,
  );
  await assert.rejects(
    () => linearBackward(gpu, { ...buffers, pre: buf }, 2, 2, 2),
    /pre without gelu/,
  );
  const arrays = { dinp: new Float32Array(4), dweight: new Float32Array(4) };
  assert.throws(
    () =>
      linearBackwardCpu(
        { ...arrays, dout: arrays.dinp, inp: arrays.dinp, weight: arrays.dinp },
        2,
        2,
        2,
        {
          gelu: true,
        },
      ),
    /with gelu needs the pre-activation/,
  );
  gpu.release(buf);
});

Deno.test("biasGrad() accumulates column sums like its CPU reference, also in row parts", async () => {
  const gpu = await testGpu();
  for (const [rows, cols, maxBinding] of [[37, 50, undefined], [300, 70, 4096]]) {
    const dout = randomArray(rows! * cols!, 1);
    const dbias = randomArray(cols!, 2);
    const doutBuf = gpu.upload(dout), dbiasBuf = gpu.upload(dbias);
    biasGradCpu(dbias, dout, rows!, cols!);
    await biasGrad(gpu, dbiasBuf, doutBuf, rows!, cols!, maxBinding);
    assertClose(await gpu.readF32(dbiasBuf, cols!), dbias, TOLERANCE);
    gpu.release(doutBuf);
    gpu.release(dbiasBuf);
  }
});
