/**
 * The one GPU that GPU tests share, acquired on first use. A machine without an adapter fails
 * here, loudly, with the message that says what to install: GPU tests are never skipped.
 */

import { acquireGpu, Gpu } from "../kernels/device.ts";
import { Random } from "../nn/random.ts";

let shared: Promise<Gpu> | null = null;

/**
 * The shared test GPU; prints the adapter it runs on once per test file.
 *
 * With `TEST_KERNEL_SHAPES=gpu`, a CPU adapter is presented to the kernels as a hardware GPU, so
 * they choose their GPU workgroup and tile sizes: CI checks those code paths on lavapipe too.
 */
export function testGpu(): Promise<Gpu> {
  return shared ??= acquireGpu().then((gpu) => {
    const asGpu = Deno.env.get("TEST_KERNEL_SHAPES") === "gpu" && gpu.adapter.isCpu;
    const view = asGpu
      ? new Gpu(gpu.device, { ...gpu.adapter, isCpu: false }, gpu.maxBinding)
      : gpu;
    const capped = gpu.maxBinding < gpu.device.limits.maxStorageBufferBindingSize;
    console.log(
      `GPU tests run on ${gpu.adapter.name}` +
        (asGpu ? " (kernels shaped as for a hardware GPU)" : "") +
        (capped ? ` (binding limit capped at ${gpu.maxBinding} bytes)` : ""),
    );
    return view;
  });
}

const limited = new Map<number, Promise<Gpu>>();

/**
 * The shared test GPU seen through a binding limit of `bytes` (kernels shaped as for
 * {@linkcode testGpu}): every launcher then splits its work as on an adapter with that limit, so
 * the split paths are tested with small tensors whatever the adapter's own limit.
 */
export function testGpuWithBindingLimit(bytes: number): Promise<Gpu> {
  let view = limited.get(bytes);
  if (!view) {
    view = testGpu().then((gpu) => new Gpu(gpu.device, gpu.adapter, bytes));
    limited.set(bytes, view);
  }
  return view;
}

/**
 * The shared test GPU with the device's own binding limit, whatever `WEBGPU_MAX_BINDING` caps:
 * for code that refuses, rather than splits, work over one binding (Muon's stacks), whose
 * numerics are tested at sizes the cap would refuse.
 */
export async function testGpuUncapped(): Promise<Gpu> {
  const gpu = await testGpu();
  return testGpuWithBindingLimit(gpu.device.limits.maxStorageBufferBindingSize);
}

/**
 * Runs `work` and returns how many dispatches of each kernel (by name) it recorded on `gpu`:
 * tests assert with it that a launcher really split its work.
 */
export async function countDispatches(
  gpu: Gpu,
  work: () => Promise<void>,
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const original = gpu.dispatch;
  gpu.dispatch = function (name, ...rest) {
    counts.set(name, (counts.get(name) ?? 0) + 1);
    return original.call(this, name, ...rest);
  };
  try {
    await work();
  } finally {
    gpu.dispatch = original;
  }
  return counts;
}

/** A deterministic source of uniform numbers in [0, 1) for test data. */
export function seededRandom(seed: number): () => number {
  const random = new Random(seed);
  return () => random.next();
}

/** `n` uniform values in [-1, 1) from `seed`. */
export function randomArray(n: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  return Float32Array.from({ length: n }, () => random() * 2 - 1);
}

/**
 * Asserts `actual` is within `atol + rtol * |expected|` of `expected` everywhere, reporting
 * the worst element.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-5, rtol = 1e-5 }: { atol?: number; rtol?: number } = {},
): void {
  if (actual.length !== expected.length) {
    throw new Error(`Length ${actual.length} differs from the expected ${expected.length}.`);
  }
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const excess = Math.abs(actual[i] - expected[i]) - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `Element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(atol ${atol}, rtol ${rtol}).`,
    );
  }
}
