/**
 * The train-step benchmark (`deno task bench --train`): whole GPT-2 training steps as the trainer
 * runs them (`nn/checked_step.ts` with one micro-batch: model.loss, tape.backward, the gradient
 * norm, the divergence check, clipped AdamW, the loss and norm read back; each step recorded
 * while the one before runs, as `pipeline/train_model.ts` does) on seeded random tokens, at three
 * configurations, with one step's profile by kernel family and phase, and the time spent outside
 * kernels. Beside it, the same steps waited for one by one (each readback before the next step
 * is recorded). Where PyTorch is installed, its peer (`bench/pytorch_peer.py`: the same model and
 * step on the CPU) runs after each configuration, so both figures come from one run; elsewhere
 * PyTorch's figures are printed as recorded earlier.
 *
 * Model FLOPs per step: 6·N·tokens (matmuls, forward and backward) + 12·L·C·T·tokens
 * (attention's scores and mixing), as in the PaLM paper's appendix.
 *
 * @module
 */

import type { Gpu, GpuProfile } from "../kernels/device.ts";
import { median } from "./_harness.ts";
import { type GPT2Config, gpt2ParameterCount } from "../nn/config.ts";
import { GPT2 } from "../nn/gpt2.ts";
import { AdamW, GPT_ADAMW } from "../nn/optimizer.ts";
import { Random } from "../nn/random.ts";
import type { MicroBatch } from "../nn/accumulated_step.ts";
import { checkedStep, recordCheckedStep, type RecordedStep } from "../nn/checked_step.ts";

/** A configuration the benchmark trains. */
export interface TrainBenchConfig {
  /** Short name, for `--filter`. */
  name: string;
  /** The model. */
  config: GPT2Config;
  /** Rows per step. */
  batch: number;
  /** PyTorch's figure on the development machine, recorded earlier (not measured here). */
  pytorch?: string;
}

/**
 * The configurations of issue 8: tiny, small, and the model the main job's default 30-minute
 * budget picks on the 2-core development machine (`deno task train`: 2 layers of width 96, the
 * 1024-token context, 4 rows a step).
 */
export const TRAIN_CONFIGS: TrainBenchConfig[] = [
  {
    name: "tiny",
    config: { vocabSize: 8192, contextLength: 256, nLayer: 4, nHead: 4, nEmbd: 128 },
    batch: 8,
    pytorch: "4,300-5,200 tokens/s",
  },
  {
    name: "small",
    config: { vocabSize: 8192, contextLength: 512, nLayer: 6, nHead: 6, nEmbd: 384 },
    batch: 4,
    pytorch: "~950 tokens/s",
  },
  {
    name: "budget",
    config: { vocabSize: 8192, contextLength: 1024, nLayer: 2, nHead: 3, nEmbd: 96 },
    batch: 4,
  },
];

/** Where PyTorch's figures come from. */
export const PYTORCH_REFERENCE =
  "PyTorch 1.13 + OpenBLAS (Debian python3-torch, libopenblas0-openmp), 2 threads, on the " +
  "2-core development machine; recorded in issue 8, not measured in this run";

/** Kernel name prefixes and the family each belongs to, first match wins. */
const FAMILIES: Array<[string, string]> = [
  ["matmul", "matmul"],
  ["attention_split_heads", "attention layout"],
  ["attention_merge_heads", "attention layout"],
  ["attention", "attention"],
  ["layernorm", "layernorm"],
  ["gelu", "gelu"],
  ["residual", "residual"],
  ["accumulate", "accumulate"],
  ["bias_grad", "bias grad"],
  ["cross_entropy", "cross_entropy"],
  ["embedding", "embedding"],
  ["adamw", "adamw"],
  ["grad_norm", "grad norm"],
  ["poison_norm", "grad norm"], // the divergence check, a pass over the step's losses
];

/** The family of a kernel, e.g. `matmul` for `matmul_pack`. */
export function kernelFamily(kernel: string): string {
  return FAMILIES.find(([prefix]) => kernel.startsWith(prefix))?.[1] ?? kernel;
}

/** One family's share of a profiled step. */
export interface FamilyTime {
  /** `forward`, `backward`, `optimizer` or `readback`. */
  phase: string;
  /** Kernel family, e.g. `matmul`. */
  family: string;
  /** GPU milliseconds. */
  ms: number;
  /** Share of the step's wall time, 0-1. */
  share: number;
  /** Dispatches. */
  dispatches: number;
  /**
   * GPU milliseconds between the previous kernel and this family's (copies and clears
   * recorded before it, such as the matmul's operand staging; barriers; driver).
   */
  gapBeforeMs: number;
}

/** The profile of one step. */
export interface StepProfile {
  /** `timestamp` or `wall` (timed submits), as {@linkcode GpuProfile.source}. */
  source: string;
  /** Wall milliseconds of the profiled step. */
  stepMs: number;
  /** GPU milliseconds in kernels, all dispatches. */
  kernelMs: number;
  /** Dispatches in the step. */
  dispatches: number;
  /** Command buffers submitted in the step. */
  submits: number;
  /** Kernel milliseconds by phase. */
  phases: Record<string, number>;
  /** Kernel time by phase and family, largest first within each phase. */
  families: FamilyTime[];
  /**
   * Time outside kernels: `gpuGaps` (on the GPU between kernels: copies, clears, barriers,
   * per-pass driver cost), and the host's `encode` (bind groups, passes), `upload` (queue
   * writes), `readback` (waits included), and `rest` = step − kernels − gaps − encode − upload;
   * on a CPU adapter the host and the "GPU" share the cores, so host work that overlaps
   * kernels makes `rest` smaller (even negative).
   */
  outside: Record<"gpuGaps" | "encode" | "upload" | "readback" | "rest", number>;
}

/** One configuration's record, as printed with `--json`. */
export interface TrainStepRecord {
  bench: "train_step";
  config: string;
  shape: string;
  parameters: number;
  tokensPerStep: number;
  /**
   * Mean wall milliseconds per step as the trainer runs them: each step recorded while the one
   * before runs, its loss and norm read back after.
   */
  ms: number;
  tokensPerSecond: number;
  /** Model GFLOP/s: (6·N + 12·L·C·T)·tokens / time. */
  modelGflops: number;
  /** Median wall milliseconds per step when each step is waited for before the next is recorded. */
  msWaited: number;
  /** The fastest of those, in wall milliseconds (the least disturbed by other work). */
  msWaitedMin: number;
  tokensPerSecondWaited: number;
  /** PyTorch's figure, recorded (see {@linkcode PYTORCH_REFERENCE}); absent when none. */
  pytorchRecorded?: string;
  /** PyTorch's peer measured in this run, right after ours; absent without PyTorch. */
  pytorchMeasured?: PeerRecord;
  profile: StepProfile;
  adapter: string;
}

/** What `bench/pytorch_peer.py` prints for one configuration. */
export interface PeerRecord {
  /** `PyTorch 1.13.1, 2 threads`. */
  peer: string;
  /** Its model's parameter count: ours, or the two models differ. */
  parameters: number;
  msPerStep: number;
  tokensPerSecond: number;
}

/** The command that installs the peer on Debian. */
const PEER_INSTALL = "apt-get install python3-torch libopenblas0-openmp";

/** Whether `python3` can import PyTorch here. */
export async function pytorchAvailable(): Promise<boolean> {
  try {
    const check = new Deno.Command("python3", {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "null",
    });
    return (await check.output()).success;
  } catch {
    return false; // no python3 at all
  }
}

/**
 * Runs `bench/pytorch_peer.py` on `shape` (`V8192 L4 H4 C128 T256 B8`) with a thread per core,
 * as lavapipe takes.
 *
 * @throws with the peer's own error output when it fails.
 */
export async function measurePytorchPeer(shape: string): Promise<PeerRecord> {
  const script = decodeURIComponent(new URL("./pytorch_peer.py", import.meta.url).pathname);
  const threads = String(navigator.hardwareConcurrency);
  const run = new Deno.Command("python3", {
    args: [script, "--shape", shape.replaceAll(" ", ","), "--threads", threads],
    stdout: "piped",
    stderr: "piped",
  });
  const { success, stdout, stderr } = await run.output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
  if (!success) throw new Error(`bench/pytorch_peer.py failed: ${decode(stderr)}`);
  return JSON.parse(decode(stdout).split("\n").at(-1)!) as PeerRecord;
}

/** The peer's figures for `record`'s configuration; a failure is reported, not fatal. */
async function peerOf(record: TrainStepRecord): Promise<PeerRecord | undefined> {
  try {
    const peer = await measurePytorchPeer(record.shape);
    if (peer.parameters !== record.parameters) {
      throw new Error(
        `its model has ${peer.parameters} parameters, ours ${record.parameters}: not the same model`,
      );
    }
    return peer;
  } catch (error) {
    console.error(`warning: no PyTorch figure for ${record.config}: ${(error as Error).message}`);
    return undefined;
  }
}

/** Seeded random next-token rows: ids in [0, V), every position counted. */
export function syntheticBatch(random: Random, B: number, T: number, V: number): MicroBatch {
  const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let next = Math.floor(random.next() * V);
    for (let t = 0; t < T; t++) {
      inputs[b * T + t] = next;
      next = Math.floor(random.next() * V);
      targets[b * T + t] = next;
    }
  }
  return { inputs, targets, mask: new Uint32Array(B * T).fill(1), batch: B, time: T };
}

/** Summarizes a profile of one step that took `stepMs` of wall time. */
export function summarizeProfile(profile: GpuProfile, stepMs: number): StepProfile {
  const byKey = new Map<string, FamilyTime>();
  const phases: Record<string, number> = {};
  let kernelMs = 0;
  for (const { kernel, phase, ms, gapBeforeMs } of profile.dispatches) {
    const family = kernelFamily(kernel);
    const key = `${phase}/${family}`;
    const entry = byKey.get(key) ??
      { phase, family, ms: 0, share: 0, dispatches: 0, gapBeforeMs: 0 };
    entry.ms += ms;
    entry.gapBeforeMs += gapBeforeMs;
    entry.dispatches++;
    byKey.set(key, entry);
    phases[phase] = (phases[phase] ?? 0) + ms;
    kernelMs += ms;
  }
  const order = ["forward", "backward", "optimizer", "readback"];
  const families = [...byKey.values()]
    .map((f) => ({ ...f, share: f.ms / stepMs }))
    .sort((a, b) => order.indexOf(a.phase) - order.indexOf(b.phase) || b.ms - a.ms);
  const stamped = profile.source === "timestamp";
  const gaps = profile.gpuGapMs, encode = profile.encodeMs, upload = profile.uploadMs;
  return {
    source: profile.source,
    stepMs,
    kernelMs,
    dispatches: profile.dispatches.length,
    submits: profile.submits,
    phases,
    families,
    outside: {
      gpuGaps: gaps,
      encode,
      upload,
      readback: profile.readMs,
      // Timed submits serialize everything, so only the timestamp profile has a meaningful rest.
      rest: stamped ? stepMs - kernelMs - gaps - encode - upload : NaN,
    },
  };
}

/** Options of {@linkcode benchTrainStep}. */
export interface TrainBenchOptions {
  /** Timed steps at least (after one warm-up step), more while under 2 s in all. Default 3. */
  steps?: number;
  /** Profile with timed submits even where timestamp queries exist. */
  wallProfile?: boolean;
}

/** Trains `bench`'s model for a few steps and profiles one; see the module documentation. */
export async function benchTrainStep(
  gpu: Gpu,
  bench: TrainBenchConfig,
  options: TrainBenchOptions = {},
): Promise<TrainStepRecord> {
  const { config, batch: B } = bench;
  const T = config.contextLength;
  const model = GPT2.init(gpu, config, 1337);
  const optimizer = new AdamW(gpu, model.params, model.decayed, GPT_ADAMW);
  const random = new Random(42);
  const next = () => syntheticBatch(random, B, T, config.vocabSize);
  const lr = 1e-4;
  try {
    const step = async (batch: MicroBatch) => void await checkedStep(model, optimizer, [batch], lr);
    await step(next()); // compiles the pipelines
    // At least `steps` steps, more while they take under 2 s in all (fast adapters), at most 50.
    const stepTimes: number[] = [];
    for (let total = 0; stepTimes.length < (options.steps ?? 3) || total < 2000;) {
      if (stepTimes.length === 50) break;
      const batch = next(); // made before the clock starts: data preparation is not the step's
      const started = performance.now();
      await step(batch);
      stepTimes.push(performance.now() - started);
      total += stepTimes.at(-1)!;
    }
    const steps = stepTimes.length;
    const timed = async (run: (batches: MicroBatch[]) => Promise<void>) => {
      const batches = Array.from({ length: steps }, next);
      await gpu.sync();
      const started = performance.now();
      await run(batches);
      await gpu.sync();
      return (performance.now() - started) / steps;
    };
    const msWaited = median(stepTimes);
    const ms = await timed(async (batches) => {
      let previous: RecordedStep | null = null;
      for (const batch of batches) {
        const current = await recordCheckedStep(model, optimizer, [batch], lr);
        await previous?.finished;
        previous = current;
      }
      await previous?.finished;
    });

    const batch = next();
    await gpu.sync();
    gpu.startProfile({ timestamps: !options.wallProfile });
    const started = performance.now();
    await step(batch);
    const stepMs = performance.now() - started;
    const profile = summarizeProfile(await gpu.stopProfile(), stepMs);

    const tokens = B * T;
    const N = gpt2ParameterCount(config).total;
    const flops = (6 * N + 12 * config.nLayer * config.nEmbd * T) * tokens;
    const { vocabSize: V, nLayer: L, nHead: H, nEmbd: C } = config;
    return {
      bench: "train_step",
      config: bench.name,
      shape: `V${V} L${L} H${H} C${C} T${T} B${B}`,
      parameters: N,
      tokensPerStep: tokens,
      ms: round(ms),
      tokensPerSecond: round(tokens / ms * 1000),
      modelGflops: round(flops / ms / 1e6),
      msWaited: round(msWaited),
      msWaitedMin: round(Math.min(...stepTimes)),
      tokensPerSecondWaited: round(tokens / msWaited * 1000),
      ...(bench.pytorch ? { pytorchRecorded: bench.pytorch } : {}),
      profile,
      adapter: gpu.adapter.name,
    };
  } finally {
    optimizer.dispose();
    model.dispose();
    await gpu.flush();
  }
}

function round(x: number, digits = 2): number {
  return Math.round(x * 10 ** digits) / 10 ** digits;
}

/** The human table of one record: the rates, then the profiled step's breakdown. */
export function formatTrainRecord(r: TrainStepRecord): string {
  const p = r.profile;
  const stamped = p.source === "timestamp";
  const pct = (ms: number) => `${(100 * ms / p.stepMs).toFixed(1).padStart(5)}%`;
  const row = (label: string, ms: number, extra = "") =>
    `    ${label.padEnd(30)} ${ms.toFixed(1).padStart(9)} ms ${pct(ms)}${extra}`;
  const lines = [
    `${r.config} (${r.shape}, ${(r.parameters / 1e6).toFixed(2)}M parameters, ` +
    `${r.tokensPerStep} tokens a step)`,
    `  ${r.ms.toFixed(0)} ms a step, ${r.tokensPerSecond.toFixed(0)} tokens/s, ` +
    `${r.modelGflops.toFixed(2)} model GFLOP/s (each step recorded while the one before runs); ` +
    `waiting for each step: ${r.msWaited.toFixed(0)} ms (median; fastest ` +
    `${r.msWaitedMin.toFixed(0)}), ${r.tokensPerSecondWaited.toFixed(0)} tokens/s`,
    r.pytorchMeasured
      ? `  PyTorch (measured in this run, right after ours): ` +
        `${r.pytorchMeasured.tokensPerSecond.toFixed(0)} tokens/s ` +
        `(${r.pytorchMeasured.msPerStep.toFixed(0)} ms a step; ${r.pytorchMeasured.peer})`
      : `  PyTorch (recorded, not measured in this run): ${r.pytorchRecorded ?? "none recorded"}`,
    `  one step profiled (${p.source === "timestamp" ? "timestamp queries" : "timed submits"}): ` +
    `${p.stepMs.toFixed(0)} ms, ${p.dispatches} dispatches, ${p.submits} submits`,
  ];
  for (const phase of Object.keys(p.phases)) {
    lines.push(row(`${phase} kernels`, p.phases[phase]));
    for (const f of p.families.filter((f) => f.phase === phase)) {
      const gap = stamped ? `, ${f.gapBeforeMs.toFixed(1).padStart(6)} ms GPU before them` : "";
      lines.push(
        row(`  ${f.family}`, f.ms, `  ${String(f.dispatches).padStart(5)} dispatches${gap}`),
      );
    }
  }
  lines.push(row("outside kernels", p.stepMs - p.kernelMs));
  lines.push(row("  GPU between kernels", p.outside.gpuGaps));
  lines.push(row("  host: encoding", p.outside.encode));
  lines.push(row("  host: uploads", p.outside.upload));
  lines.push(row("  host: readbacks (waits incl.)", p.outside.readback));
  if (Number.isFinite(p.outside.rest)) lines.push(row("  host: rest (JavaScript)", p.outside.rest));
  return lines.join("\n");
}

/**
 * `deno task bench --train`: benchmarks every configuration whose name contains `filter`, and
 * prints the human table or, with `json`, one record per line.
 */
export async function runTrainBench(
  gpu: Gpu,
  { json = false, filter }: { json?: boolean; filter?: string } = {},
): Promise<void> {
  const chosen = TRAIN_CONFIGS.filter((c) => !filter || c.name.includes(filter));
  if (chosen.length === 0) throw new Error(`No train-step configuration matches "${filter}".`);
  const peer = await pytorchAvailable();
  if (!json) {
    console.log(
      `adapter: ${gpu.adapter.name}\nPyTorch: ` +
        (peer
          ? "bench/pytorch_peer.py, the same steps on the CPU, run after each configuration"
          : `${PYTORCH_REFERENCE} (to measure it here: ${PEER_INSTALL})`) +
        "\n",
    );
  }
  for (const bench of chosen) {
    const record = await benchTrainStep(gpu, bench);
    // After ours, never beside it: two timings at once on the same cores are both wrong.
    if (peer) record.pytorchMeasured = await peerOf(record);
    console.log(json ? JSON.stringify(record) : formatTrainRecord(record) + "\n");
  }
}
