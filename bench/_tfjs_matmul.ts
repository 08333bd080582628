/**
 * TensorFlow.js's WebGPU matmul as a benchmark baseline, on the same device (and so the same
 * adapter and queue) as our kernels. A benchmark-only dependency: tfjs is loaded lazily, the
 * first time a case is set up, and nothing in the library or the tests imports this file.
 *
 * tfjs-backend-webgpu would request its own adapter; instead its `WebGPUBackend` is registered
 * under the name "webgpu" with our `GPUDevice`. Timing goes through `Gpu.time` like every other
 * case: each run first flushes our encoder (so the timer's start stamp is in the queue before
 * tfjs's work), then has tfjs end its compute pass and submit at once (it otherwise batches up to
 * 15 dispatches); the end stamp follows in the queue.
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import type { BenchCase } from "./_harness.ts";

type Tf = typeof import("npm:@tensorflow/tfjs-core@4.22.0");
type Backend = import("npm:@tensorflow/tfjs-backend-webgpu@4.22.0").WebGPUBackend;

let loaded: Promise<{ tf: Tf; backend: Backend }> | null = null;
let loadedFor: Gpu | null = null;

/** tfjs with its WebGPU backend running on `gpu`'s device. */
function tfjsOn(gpu: Gpu): Promise<{ tf: Tf; backend: Backend }> {
  if (loaded && loadedFor !== gpu) {
    throw new Error("The tfjs baseline is bound to the first GPU it ran on; use one GPU per run.");
  }
  loadedFor = gpu;
  return loaded ??= (async () => {
    // Pinned inline rather than in deno.json's import map: only this benchmark may use tfjs.
    // deno-lint-ignore no-import-prefix
    const tf = await import("npm:@tensorflow/tfjs-core@4.22.0");
    // deno-lint-ignore no-import-prefix
    const { WebGPUBackend } = await import("npm:@tensorflow/tfjs-backend-webgpu@4.22.0");
    tf.removeBackend("webgpu");
    tf.registerBackend("webgpu", () => new WebGPUBackend(gpu.device), 10);
    if (!(await tf.setBackend("webgpu"))) {
      throw new Error("TensorFlow.js could not start its WebGPU backend on this device.");
    }
    return { tf, backend: tf.backend() as unknown as Backend };
  })();
}

/**
 * A benchmark case of `tf.matMul` for `op(A) (m, k) · op(B) (k, n)`, `transB` meaning B is
 * stored `(n, k)` (the linear layer's layout).
 */
export function tfjsMatmulCase(
  shape: string,
  m: number,
  n: number,
  k: number,
  transB = false,
): BenchCase {
  return {
    kernel: "tfjs-webgpu matmul",
    shape,
    flops: 2 * m * n * k,
    reps: 2,
    setup: async (gpu) => {
      const { tf, backend } = await tfjsOn(gpu);
      const a = tf.randomUniform([m, k], -1, 1);
      const b = tf.randomUniform(transB ? [n, k] : [k, n], -1, 1);
      return {
        run: async () => {
          await gpu.flush();
          const c = tf.matMul(a, b, false, transB);
          backend.endComputePassEncoder();
          backend.submitQueue();
          c.dispose();
        },
        dispose: () => {
          a.dispose();
          b.dispose();
        },
      };
    },
  };
}
