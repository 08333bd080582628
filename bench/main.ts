/**
 * Profiles the kernels at GPT-2 shapes (B*T = 1024 rows unless said), each beside a naive
 * baseline in the same run, on whatever adapter this machine offers.
 *
 *     deno task bench                  # a human table
 *     deno task bench --json           # one JSON record per line
 *     deno task bench --filter matmul  # only kernels whose name contains "matmul"
 *     deno task bench --train          # whole training steps, profiled (bench/train_step.ts)
 *     deno task bench --help           # the flags
 */

import { type BenchCase, runBenchCli } from "./_harness.ts";
import { attentionCases } from "./attention.ts";
import { generateCases } from "./generate.ts";
import { matmulCases } from "./matmul.ts";
import { opsCases } from "./ops.ts";
import { runTrainBench } from "./train_step.ts";

/** Every benchmark case, in the order printed. */
export const allCases: BenchCase[] = [
  ...matmulCases,
  ...attentionCases,
  ...opsCases,
  ...generateCases,
];

if (import.meta.main) await runBenchCli(allCases, runTrainBench, "deno task bench [options]");
