/**
 * The adapter's FMA ceiling: a shader of independent multiply-adds and no memory traffic in its
 * loop, the rate no matmul on this adapter can beat. The bench prints each later product's
 * ratio to the best ceiling measured in the same run (`BenchCase.ceiling`), so a busy machine
 * moves both figures. (On lavapipe the "FMA" compiles to a multiply and an add: llvmpipe does
 * not fuse them; the matmul's inner loop compiles the same way, so the comparison is fair.)
 *
 * On lavapipe an invocation is one lane of an 8-wide AVX vector, so each scalar an invocation
 * keeps live is a whole vector register: the ceiling depends on how many independent
 * accumulators hide the FMA latency without spilling. Two shapes are measured (the issue's
 * "6-24 vec4 accumulators at workgroup size 64" and "64 scalars at workgroup size 8").
 *
 * @module
 */

import type { Gpu, Kernel } from "../kernels/device.ts";
import type { BenchCase } from "./_harness.ts";

/** Compile-time constants of {@linkcode fmaKernel}. */
export interface FmaConstants extends Record<string, number> {
  /** Independent vec4 accumulators per invocation. */
  accumulators: number;
  /** Components per accumulator: 1 (f32) or 4 (vec4f). */
  width: number;
  /** Invocations per workgroup. */
  workgroupSize: number;
}

/**
 * `iterations` rounds of `acc_i = acc_i * x + y` for every accumulator, with `x` and `y` read
 * from a uniform (so nothing folds), then one store of the sum (so nothing is dead).
 */
export const fmaKernel: Kernel<FmaConstants> = {
  name: "fma_ceiling",
  bindings: ["write", "uniform"],
  wgsl: ({ accumulators, width, workgroupSize }) => {
    const type = width === 1 ? "f32" : `vec${width}f`;
    const ids = Array.from({ length: accumulators }, (_, i) => i);
    return /* wgsl */ `
struct Params { iterations: u32, x: f32, y: f32 }
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let seed = f32(gid.x) * 1e-9;
${ids.map((i) => `  var acc${i} = ${type}(seed + ${i}.0);`).join("\n")}
  let x = ${type}(p.x);
  let y = ${type}(p.y);
  for (var i = 0u; i < p.iterations; i++) {
${ids.map((i) => `    acc${i} = fma(acc${i}, x, y);`).join("\n")}
  }
  let total = ${ids.map((i) => `acc${i}`).join(" + ")};
  out[gid.x + gid.y * groups.x * ${workgroupSize}u] = ${
      width === 1 ? "total" : `dot(total, ${type}(1.0))`
    };
}
`;
  },
};

/** Invocations launched per run: enough workgroups to fill every core several times. */
const INVOCATIONS = 8192;
/** Loop rounds per invocation. */
const ITERATIONS = 4096;

function fmaCase(accumulators: number, width: number, workgroupSize: number): BenchCase {
  const type = width === 1 ? "f32" : `vec${width}f`;
  return {
    kernel: "fma ceiling (matmul bound)",
    shape: `${accumulators} ${type} acc, workgroup ${workgroupSize}`,
    flops: 2 * width * accumulators * ITERATIONS * INVOCATIONS,
    reps: 3,
    ceiling: true,
    setup: (gpu: Gpu) => {
      const out = gpu.acquire(INVOCATIONS * 4);
      const params = new ArrayBuffer(16);
      new Uint32Array(params, 0, 1)[0] = ITERATIONS;
      new Float32Array(params, 4, 2).set([0.999, 1e-3]);
      return {
        run: async () => {
          await gpu.run(
            fmaKernel,
            { accumulators, width, workgroupSize },
            [out, gpu.uniform(params)],
            [INVOCATIONS / workgroupSize, 1, 1],
          );
        },
        dispose: () => gpu.release(out),
      };
    },
  };
}

/** The FMA-ceiling cases; each matmul line's ratio is to the best of these in the same run. */
export const fmaCeilingCases: BenchCase[] = [
  fmaCase(12, 4, 64),
  fmaCase(64, 1, 8),
];
