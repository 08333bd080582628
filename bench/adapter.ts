/**
 * Prints the WebGPU adapter this machine offers and the device limits the project asked for.
 *
 *     deno task adapter
 */

import { acquireGpu } from "../kernels/device.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, parseFlags } from "../util/flags.ts";

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task adapter", HELP_FLAG);
    if (!values) return;
    const gpu = await acquireGpu({ announce: false });
    console.log(`adapter: ${gpu.adapter.name}`);
    console.log(`cpu fallback: ${gpu.adapter.isCpu}`);
    console.log(`features: ${gpu.adapter.features.join(", ") || "none"}`);
    const limits = gpu.device.limits;
    for (
      const name of [
        "maxStorageBufferBindingSize",
        "maxBufferSize",
        "maxComputeWorkgroupStorageSize",
        "maxComputeInvocationsPerWorkgroup",
      ] as const
    ) console.log(`${name}: ${limits[name]}`);
    gpu.destroy();
  });
}
