/**
 * The adapter's copy ceiling: an elementwise kernel that only copies (`out = src`), in the
 * shape every elementwise kernel here takes on the adapter (`kernels/_parts.ts`,
 * `elementwiseShape`): the rate a memory-bound kernel reaches when it does nothing but move
 * its bytes. The bench prints each later memory-bound case's GB/s as a ratio to the best copy
 * ceiling measured in the same run (`BenchCase.ceiling`), as the matmul's GFLOP/s are to the
 * FMA ceiling: on a busy or slow host both figures move together.
 *
 * Measured at the sizes of the op cases (bench/ops.ts: 1024 x 768 and 1024 x 3072 floats) and
 * at 32 MiB, where a launch's fixed cost no longer counts. A kernel can beat it by a little:
 * its bytes are counted once however it moves them (an in-place update, a read of the same
 * rows by neighbours).
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import { elementwiseKernel, runElementwise } from "../kernels/_parts.ts";
import type { BenchCase } from "./_harness.ts";

/** `out = src`, elementwise. */
export const copyKernel = elementwiseKernel(
  "copy_ceiling",
  [{ name: "out", access: "write" }, { name: "src", access: "read" }],
  (at) => `${at("out")} = ${at("src")};`,
);

function copyCase(rows: number, cols: number): BenchCase {
  const floats = rows * cols;
  return {
    kernel: "copy ceiling (memory bound)",
    shape: `${rows}x${cols}`,
    bytes: 2 * floats * 4,
    ceiling: true,
    setup: (gpu: Gpu) => {
      const src = gpu.acquire(floats * 4), out = gpu.acquire(floats * 4);
      return {
        run: () => runElementwise(gpu, copyKernel, { out, src }, floats),
        dispose: () => [src, out].forEach((b) => gpu.release(b)),
      };
    },
  };
}

/** The copy-ceiling cases; each memory-bound line's ratio is to the best of these in the run. */
export const copyCeilingCases: BenchCase[] = [
  copyCase(1024, 768),
  copyCase(1024, 3072),
  copyCase(2048, 4096),
];
