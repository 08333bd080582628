/**
 * What every kernel benchmark shares: a case (set up buffers, record one run), timing on the
 * GPU, and the two output formats (a human table, or one JSON record per line).
 */

import { acquireGpu, type Gpu } from "../kernels/device.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, parseFlags } from "../util/flags.ts";

/** One benchmark: a kernel at one shape, with the work it does to turn time into a rate. */
export interface BenchCase {
  /** Kernel name as shown, e.g. `matmul` or `matmul (naive)` for a baseline. */
  kernel: string;
  /** The shape, e.g. `1024x768 @ 768x2304`. */
  shape: string;
  /** Floating-point operations per run, for compute-bound kernels (GFLOP/s). */
  flops?: number;
  /** Bytes moved to or from memory per run, for memory-bound kernels (GB/s). */
  bytes?: number;
  /** Tokens generated per run, for generation benchmarks (tokens/s). */
  tokens?: number;
  /** Allocates inputs; returns how to record one run and how to free what it made. */
  setup: (gpu: Gpu) => Promise<BenchRun> | BenchRun;
  /** Runs to average over in one trial; slow cases on a CPU adapter want few. Default 5. */
  reps?: number;
  /**
   * A ceiling case: with `flops` the FMA ceiling (bench/fma_ceiling.ts), with `bytes` the copy
   * ceiling (bench/copy_ceiling.ts). Every later case with the same kind of rate in the same
   * run also reports its rate over the best ceiling of that kind measured so far.
   */
  ceiling?: boolean;
}

/** A set-up benchmark case. */
export interface BenchRun {
  /** Records one run of the kernel(s) into the GPU's encoder. */
  run: () => Promise<void> | void;
  /** Frees the buffers `setup` made. */
  dispose: () => void;
}

/** One measurement, as printed with `--json`. */
export interface BenchRecord {
  kernel: string;
  shape: string;
  ms: number;
  gflops?: number;
  gbps?: number;
  /** Tokens generated per second, for generation benchmarks. */
  tokensPerSecond?: number;
  /** `gflops` over the best FMA ceiling measured earlier in the same run. */
  ofCeiling?: number;
  /** `gbps` over the best copy ceiling measured earlier in the same run. */
  ofCopyCeiling?: number;
  /** Trials taken; `ms` is their median. */
  trials: number;
  adapter: string;
}

/**
 * Trials of `reps` runs each per case, of which the median is reported: on lavapipe the first
 * trial after the warm-up run is often slow (a kernel of about 1 ms measured 1.16 ms, then
 * 0.79-0.87 ms in seven more), and a single trial made that the figure.
 */
const TRIALS = 5;
/** No further trials once a case has been timed this long: slow baselines get one or two. */
const TRIALS_BUDGET_MS = 2000;

/** The middle value of `xs` (the upper middle of an even count). */
export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The best ceiling rates measured so far in this run, per device: FMA (GFLOP/s), copy (GB/s). */
const bestCeilings = new WeakMap<Gpu, { flops?: number; bytes?: number }>();

/**
 * With `ceiling`, keeps `rate` if it is the best of its kind so far; else returns `rate` over
 * that best, if one was measured.
 */
function overCeiling(
  gpu: Gpu,
  kind: "flops" | "bytes",
  rate: number | undefined,
  ceiling: boolean,
): number | undefined {
  if (rate === undefined) return undefined;
  const best = bestCeilings.get(gpu) ?? {};
  bestCeilings.set(gpu, best);
  if (ceiling) {
    best[kind] = Math.max(best[kind] ?? 0, rate);
    return undefined;
  }
  return best[kind] ? round(rate / best[kind], 2) : undefined;
}

/** Runs one case and returns its measurement. */
export async function measure(gpu: Gpu, bench: BenchCase): Promise<BenchRecord> {
  const { run, dispose } = await bench.setup(gpu);
  try {
    const times: number[] = [];
    const start = performance.now();
    do {
      times.push((await gpu.time(run, bench.reps ?? 5)).ms);
    } while (times.length < TRIALS && performance.now() - start < TRIALS_BUDGET_MS);
    const ms = median(times);
    const record: BenchRecord = {
      kernel: bench.kernel,
      shape: bench.shape,
      ms: round(ms, 3),
      trials: times.length,
      adapter: gpu.adapter.name,
    };
    if (bench.flops) record.gflops = round(bench.flops / ms / 1e6, 2);
    if (bench.bytes) record.gbps = round(bench.bytes / ms / 1e6, 2);
    if (bench.tokens) record.tokensPerSecond = round(bench.tokens / ms * 1e3, 1);
    const ceiling = bench.ceiling ?? false;
    const ofCeiling = overCeiling(gpu, "flops", record.gflops, ceiling);
    if (ofCeiling !== undefined) record.ofCeiling = ofCeiling;
    const ofCopyCeiling = overCeiling(gpu, "bytes", record.gbps, ceiling);
    if (ofCopyCeiling !== undefined) record.ofCopyCeiling = ofCopyCeiling;
    return record;
  } finally {
    dispose();
    await gpu.flush();
  }
}

function round(x: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(x * scale) / scale;
}

/** One line of the human table. */
export function formatRow(r: BenchRecord): string {
  const rate = r.gflops !== undefined
    ? `${r.gflops.toFixed(2)} GFLOP/s`
    : r.gbps !== undefined
    ? `${r.gbps.toFixed(2)} GB/s`
    : r.tokensPerSecond !== undefined
    ? `${r.tokensPerSecond.toFixed(1)} tokens/s`
    : "";
  const ofCeiling = r.ofCeiling !== undefined
    ? `  ${r.ofCeiling.toFixed(2)} of FMA ceiling`
    : r.ofCopyCeiling !== undefined
    ? `  ${r.ofCopyCeiling.toFixed(2)} of copy ceiling`
    : "";
  return `${r.kernel.padEnd(28)} ${r.shape.padEnd(34)} ${r.ms.toFixed(3).padStart(10)} ms ` +
    rate.padStart(16) + ofCeiling;
}

/** Header of the human table. */
export function formatHeader(adapter: string): string {
  return `adapter: ${adapter}\n${"kernel".padEnd(28)} ${"shape".padEnd(34)} ${
    "time".padStart(13)
  } ${"rate".padStart(16)}`;
}

/** The flags of every benchmark entry point, with their defaults and help. */
const BENCH_FLAGS = {
  json: { type: "boolean", default: false, help: "one JSON record per line, not a table" },
  filter: { type: "string", help: "only kernels whose name contains this (default all)" },
  train: {
    type: "boolean",
    default: false,
    help: "whole training steps instead (bench/main.ts; --filter picks configs)",
  },
  ...HELP_FLAG,
} as const;

/**
 * The command line of every benchmark entry point: measures `cases` (those whose kernel name
 * contains `--filter`) and prints a human table, or one JSON record per line with `--json`.
 * With `--train`, runs `train` instead (the train-step benchmark; `--filter` picks configs).
 * `--help` prints `usage` (default: `deno run -A` and the entry point's path) and the flags.
 */
export async function runBenchCli(
  cases: readonly BenchCase[],
  train?: (gpu: Gpu, options: { json: boolean; filter?: string }) => Promise<void>,
  usage = `deno run -A bench/${Deno.mainModule.split("/").at(-1)} [options]`,
): Promise<void> {
  await runCli(async () => {
    const values = parseFlags(usage, BENCH_FLAGS);
    if (!values) return;
    if (values.train) {
      if (!train) throw new Error("This benchmark has no train-step mode; run bench/main.ts.");
      const gpu = await acquireGpu({ announce: !values.json });
      return await train(gpu, { json: values.json, filter: values.filter });
    }
    const chosen = cases.filter((c) => !values.filter || c.kernel.includes(values.filter));
    if (chosen.length === 0) throw new Error(`No benchmark matches --filter "${values.filter}".`);
    const gpu = await acquireGpu({ announce: !values.json });
    if (!values.json) console.log(formatHeader(gpu.adapter.name));
    for (const bench of chosen) {
      const record = await measure(gpu, bench);
      console.log(values.json ? JSON.stringify(record) : formatRow(record));
    }
  });
}
