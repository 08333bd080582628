/**
 * Profiles the kernels at GPT-2 shapes (B*T = 1024 rows unless said), each beside a naive
 * baseline in the same run, on whatever adapter this machine offers.
 *
 *     deno task bench                  # a human table
 *     deno task bench --json           # one JSON record per line
 *     deno task bench --filter matmul  # only kernels whose name contains "matmul"
 */

import { parseArgs } from "node:util";
import { acquireGpu } from "../kernels/device.ts";
import { runCli } from "../pipeline/_cli.ts";
import { type BenchCase, formatHeader, formatRow, measure } from "./_harness.ts";
import { attentionCases } from "./attention.ts";
import { matmulCases } from "./matmul.ts";
import { opsCases } from "./ops.ts";

/** Every benchmark case, in the order printed. */
export const allCases: BenchCase[] = [...matmulCases, ...attentionCases, ...opsCases];

if (import.meta.main) {
  await runCli(async () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: { json: { type: "boolean", default: false }, filter: { type: "string" } },
    });
    const cases = allCases.filter((c) => !values.filter || c.kernel.includes(values.filter));
    if (cases.length === 0) throw new Error(`No benchmark matches --filter "${values.filter}".`);
    const gpu = await acquireGpu({ announce: !values.json });
    if (!values.json) console.log(formatHeader(gpu.adapter.name));
    for (const bench of cases) {
      const record = await measure(gpu, bench);
      console.log(values.json ? JSON.stringify(record) : formatRow(record));
    }
  });
}
