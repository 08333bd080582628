/**
 * The report card the main job writes at its end, as nanochat writes one: `report.md` in the work
 * folder with the plan, the time each stage took, the training and validation loss curves (SVG
 * plots beside it: `loss.svg`, and `loss_instruct.svg` when instruction tuning ran), the eval
 * figures, and a few unedited completions and answers.
 *
 * `writeReport` also saves what it was given (all but the logs, which it reads from disk) as
 * `report.json`, so the report can be rebuilt from the work folder alone, for example after the
 * logs grew or this file's layout changed:
 *
 *     deno task report --work runs/main
 *
 * @module
 */

import { writeTextFileAtomic } from "../util/files.ts";
import { type PlotSeries, svgLinePlot } from "./_svg_plot.ts";
import { escapeMarkdown, fenced, table } from "./_markdown.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, parseFlags } from "../util/flags.ts";

/** How long one stage took (or, in a plan, is predicted to take). */
export interface ReportStage {
  /** The stage's name, e.g. `pretrain`; a plan's and a run's stages pair up by name. */
  stage: string;
  /** Wall-clock seconds. */
  seconds: number;
}

/** The plan the planner chose, as the report shows it. */
export interface ReportPlan {
  /**
   * Named figures, shown in the order given: parameters, shape, tokens, tokens per parameter,
   * epochs, batch, steps, budget... camelCase names are spelled out ("tokensPerParameter" →
   * "tokens per parameter"); numbers get thousands separators.
   */
  figures: Record<string, string | number>;
  /** The predicted time of each stage, shown beside the time it took. */
  stages?: ReportStage[];
}

/** One eval figure with its own wording, for figures the report does not know by name. */
export interface ReportFigure {
  /** The measured value; a share is a fraction from 0 to 1. */
  value: number;
  /** What it measures, in a few words. */
  description?: string;
  /** Show the value as a percentage. */
  share?: boolean;
  /** The bar it should reach: at least this value. */
  atLeast?: number;
}

/** A prompt and what the model wrote after it, unedited. */
export interface ReportSample {
  /** The prompt or question as given. */
  prompt: string;
  /** The model's text after the prompt (for a chat answer: up to its end marker). */
  text: string;
}

/** What {@linkcode writeReport} puts in the report; every part but `work` is optional. */
export interface ReportOptions {
  /** The work folder: `report.md`, its plots and `report.json` are written here. */
  work: string;
  /** The report's heading. Default: `Report card: <work>`. */
  title?: string;
  /** The plan the run followed. */
  plan?: ReportPlan;
  /** The time each stage took, in order. */
  stageTimes?: ReportStage[];
  /** Pretraining's `log.jsonl` (see {@linkcode LoggedStep}). Default `<work>/model/log.jsonl`. */
  pretrainLog?: string;
  /** Instruction tuning's `log.jsonl`. Default `<work>/instruct/model/log.jsonl`. */
  instructLog?: string;
  /**
   * Eval figures by name. The report knows `valLoss`, `bitsPerByte`, `grammar`,
   * `sentencesPerCompletion`, `distinctBigrams`, `onTopic`, `endsByThemselves` and
   * `answerGrammar` (shares as fractions from 0 to 1) and describes them; others can bring their
   * own wording as a {@linkcode ReportFigure}.
   */
  evals?: Record<string, number | ReportFigure>;
  /** Completions of prompts, shown unedited. */
  completions?: ReportSample[];
  /** Answers to questions from the tuned model, shown unedited. */
  answers?: ReportSample[];
  /** The most completions and answers shown of each. Default 8. */
  maxSamples?: number;
  /** Facts about the machine (adapter, ...), added to the Deno version, OS and CPU count. */
  environment?: Record<string, string | number>;
  /** When the report is dated. Default now. */
  date?: Date;
}

/** The files {@linkcode writeReport} wrote. */
export interface ReportFiles {
  /** `<work>/report.md`. */
  report: string;
  /** The SVG plots written beside it (none when no log had a step). */
  plots: string[];
  /** `<work>/report.json`: the options, for `deno task report` to rebuild from. */
  inputs: string;
}

/**
 * One line of a training log (train_model's `StepLog`) as the report reads it: a step and its
 * loss are all it needs; the other fields are used where present, so logs of older runs still
 * report. Declared here rather than borrowed so the report reads any version of the log.
 */
export interface LoggedStep {
  /** Optimizer steps taken, counting this one. */
  step: number;
  /** Mean training cross-entropy of the step, in nats (NaN where the log has none). */
  loss: number;
  /** Wall-clock milliseconds of the step. */
  ms?: number;
  /** Token positions trained on up to and including this step. */
  totalTokens?: number;
  /** The step's sequence length (below the context during a sequence-length warmup). */
  seqLength?: number;
  /** Mean loss on the held-out rows, on the steps that measured it. */
  valLoss?: number;
  /** With `valLoss`: the held-out loss of positions 1–128, 129–256, ...; null for none. */
  valLossByPosition?: (number | null)[];
}

/** A training log as read from disk. */
export interface StepLogFile {
  /** The records with a finite step, in step order (a repeated step keeps its last record). */
  records: LoggedStep[];
  /** Lines that were not a JSON record with a `step` (a line cut short by a crash, say). */
  skippedLines: number;
}

/**
 * Writes `report.md`, its loss plots and `report.json` into `options.work`; see the module
 * documentation. A missing or empty log gives a note in the report instead of a curve.
 *
 * @example
 * ```ts ignore
 * await writeReport({
 *   work: "runs/main",
 *   plan: { figures: { parameters: 9_400_000, tokens: 190_000_000 }, stages: [] },
 *   stageTimes: [{ stage: "pretrain", seconds: 1500 }],
 *   evals: { valLoss: 3.1, grammar: 0.87 },
 *   completions: [{ prompt: "Once upon a time", text: " there was a cat." }],
 * });
 * ```
 */
export async function writeReport(options: ReportOptions): Promise<ReportFiles> {
  const work = options.work;
  await Deno.mkdir(work, { recursive: true });
  const date = options.date ?? new Date();
  const pretrainLog = options.pretrainLog ?? `${work}/model/log.jsonl`;
  const instructLog = options.instructLog ?? `${work}/instruct/model/log.jsonl`;

  const inputs = `${work}/report.json`;
  // Default log paths are left out, so a rebuild of a moved work folder finds its logs.
  const saved = { ...options, date: date.toISOString() };
  await writeTextFileAtomic(inputs, JSON.stringify(saved, null, 2) + "\n");

  const plots: string[] = [];
  const lossSection = async (name: string, log: string, file: string, heading: string) => {
    const read = await readStepLog(log);
    const shown = displayPath(log, work);
    const lines = [`### ${heading}`, ""];
    if (read === undefined) {
      lines.push(`No log at \`${shown}\`: ${name} has not run, or its log was removed.`);
    } else if (read.records.length === 0) {
      lines.push(`The log \`${shown}\` has no steps yet.`);
    } else {
      await writeTextFileAtomic(`${work}/${file}`, lossPlot(read.records, heading));
      plots.push(`${work}/${file}`);
      lines.push(`![${heading.toLowerCase()}](${file})`, "", ...logSummary(read, shown));
    }
    if (read === undefined || read.records.length === 0) {
      // A plot from an earlier report would no longer match its log.
      await Deno.remove(`${work}/${file}`).catch(() => {});
    }
    return lines;
  };

  const environment: Record<string, string | number> = {
    deno: Deno.version.deno,
    platform: `${Deno.build.os} ${Deno.build.arch}`,
    "CPU cores": navigator.hardwareConcurrency,
    ...options.environment,
  };
  const maxSamples = options.maxSamples ?? 8;
  const sections: string[][] = [
    [
      `# ${escapeMarkdown(options.title ?? `Report card: ${work}`)}`,
      "",
      `Written ${date.toISOString().replace(/\.\d+Z$/, "Z")}. Rebuild it from the work folder ` +
      `with \`deno task report --work ${work}\`.`,
    ],
    ["## Environment", "", ...table(["", "value"], Object.entries(environment).map(figureRow))],
    planSection(options.plan),
    stageSection(options.plan?.stages, options.stageTimes),
    [
      "## Loss curves",
      "",
      "Training loss per step, raw (faint) and smoothed by an exponential moving average; " +
      "validation loss (dots) on held-out rows at the steps that measured it. In nats per token.",
      "",
      ...await lossSection("pretraining", pretrainLog, "loss.svg", "Pretraining loss"),
      "",
      ...await lossSection(
        "instruction tuning",
        instructLog,
        "loss_instruct.svg",
        "Instruction-tuning loss",
      ),
    ],
    evalSection(options.evals),
    sampleSection(
      "Completions",
      "Each prompt, then what the model wrote after it, unedited.",
      "No completions were given.",
      options.completions,
      maxSamples,
    ),
    sampleSection(
      "Answers",
      "Each question, then the tuned model's answer, unedited.",
      "No answers were given.",
      options.answers,
      maxSamples,
    ),
  ];
  const report = `${work}/report.md`;
  await writeTextFileAtomic(report, sections.map((s) => s.join("\n")).join("\n\n") + "\n");
  return { report, plots, inputs };
}

/**
 * Reads a `log.jsonl` of {@linkcode LoggedStep} records; `undefined` when the file does not exist.
 * Malformed lines are counted and skipped rather than fatal: the report should not fail because
 * a crash cut the last line short.
 */
export async function readStepLog(path: string): Promise<StepLogFile | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const byStep = new Map<number, LoggedStep>();
  let skippedLines = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const record = JSON.parse(line);
      if (typeof record?.step !== "number" || !Number.isFinite(record.step)) throw new Error();
      // A loss written as null (JSON has no NaN) stays in: the plot passes over it.
      if (typeof record.loss !== "number") record.loss = NaN;
      byStep.set(record.step, record);
    } catch {
      skippedLines++;
    }
  }
  const records = [...byStep.values()].sort((a, b) => a.step - b.step);
  return { records, skippedLines };
}

/**
 * A debiased exponential moving average of `values` over about `window` of them (β = 1 −
 * 1/window), as nanoGPT-style loggers smooth a noisy loss; non-finite values are passed over.
 */
export function emaSmooth(values: readonly number[], window: number): number[] {
  const beta = 1 - 1 / Math.max(1, window);
  let ema = 0, weight = 0;
  return values.map((value) => {
    if (Number.isFinite(value)) {
      ema = beta * ema + (1 - beta) * value;
      weight = beta * weight + (1 - beta);
    }
    return weight > 0 ? ema / weight : NaN;
  });
}

/** About 1/50 of the run, 1 to 50 steps: smooth enough to read, short enough to follow. */
function smoothingWindow(steps: number): number {
  return Math.min(50, Math.max(1, Math.round(steps / 50)));
}

/** The loss plot of one log: raw training loss, its EMA, and validation loss. */
function lossPlot(records: readonly LoggedStep[], title: string): string {
  const window = smoothingWindow(records.length);
  const smoothed = emaSmooth(records.map((r) => r.loss), window);
  const validation = records.filter((r) => typeof r.valLoss === "number");
  const series: PlotSeries[] = [
    {
      name: "training (raw)",
      points: records.map((r) => [r.step, r.loss]),
      color: "#1f77b4",
      width: 1,
      opacity: 0.25,
    },
    {
      name: window > 1 ? `training (EMA, ~${window} steps)` : "training",
      points: records.map((r, i) => [r.step, smoothed[i]]),
      color: "#1f77b4",
      width: 2,
    },
  ];
  if (validation.length > 0) {
    series.push({
      name: "validation",
      points: validation.map((r) => [r.step, r.valLoss as number]),
      color: "#d62728",
      width: 1.5,
      markers: true,
    });
  }
  return svgLinePlot({ title, xLabel: "step", yLabel: "loss (nats per token)", series });
}

/** The figures under a loss plot: steps, tokens, losses, time, and loss by position. */
function logSummary(read: StepLogFile, shown: string): string[] {
  const records = read.records;
  const last = records[records.length - 1];
  const smoothed = emaSmooth(records.map((r) => r.loss), smoothingWindow(records.length));
  const validation = records.filter((r) => typeof r.valLoss === "number");
  const seconds = records.reduce((sum, r) => sum + (Number.isFinite(r.ms) ? r.ms! : 0), 0) / 1000;
  const rows: string[][] = [["steps", `${records.length} (last: ${last.step})`]];
  if (typeof last.totalTokens === "number") {
    rows.push(["tokens trained on", formatNumber(last.totalTokens)]);
  }
  // A sequence-length warmup shows as the length it started at and the step the full one began.
  const lengths = records.map((r) => r.seqLength).filter((t) => typeof t === "number");
  if (lengths.length > 0) {
    const first = lengths[0], full = lengths[lengths.length - 1];
    const lastShort = records.findLastIndex((r) =>
      r.seqLength !== undefined && r.seqLength !== full
    );
    rows.push([
      "sequence length",
      lastShort < 0
        ? `${full}`
        : `${first} → ${full} (${full} from step ${records[lastShort + 1].step})`,
    ]);
  }
  rows.push(["last training loss (smoothed)", formatNumber(smoothed[smoothed.length - 1])]);
  if (validation.length > 0) {
    const best = validation.reduce((a, b) => (b.valLoss! < a.valLoss! ? b : a));
    const lastVal = validation[validation.length - 1];
    rows.push(
      ["last validation loss", `${formatNumber(lastVal.valLoss!)} (step ${lastVal.step})`],
      ["best validation loss", `${formatNumber(best.valLoss!)} (step ${best.step})`],
    );
  } else {
    rows.push(["validation loss", "not measured in this log"]);
  }
  rows.push(
    ["time in steps", formatDuration(seconds)],
    ["mean step", `${formatNumber(seconds * 1000 / records.length)} ms`],
  );
  const lines = table(["", "value"], rows.map(([k, v]) => [k, escapeMarkdown(v)]));
  lines.push("", `From \`${shown}\`.`);
  if (read.skippedLines > 0) {
    lines.push(
      `${read.skippedLines} line(s) of it were not step records and were skipped ` +
        `(a line cut short when a run was killed, say).`,
    );
  }
  const byPosition = [...validation].reverse().find((r) => r.valLossByPosition?.length);
  if (byPosition) {
    lines.push(
      "",
      `Validation loss by position in the row, at step ${byPosition.step}: a model that learned ` +
        "every position is no worse late in the row than early.",
      "",
      ...table(
        ["positions", "loss"],
        byPosition.valLossByPosition!.map((loss, i) => [
          `${i * POSITION_BUCKET + 1}–${(i + 1) * POSITION_BUCKET}`,
          loss === null ? "no positions counted" : formatNumber(loss),
        ]),
      ),
    );
  }
  return lines;
}

/** The width of `StepLog.valLossByPosition`'s buckets: positions 1–128, 129–256, ... */
const POSITION_BUCKET = 128;

function planSection(plan: ReportPlan | undefined): string[] {
  const lines = ["## Plan", ""];
  const figures = Object.entries(plan?.figures ?? {});
  if (figures.length === 0) return [...lines, "No plan was given."];
  return [...lines, ...table(["", "value"], figures.map(figureRow))];
}

function stageSection(
  predicted: readonly ReportStage[] | undefined,
  took: readonly ReportStage[] | undefined,
): string[] {
  const lines = ["## Time per stage", ""];
  if (!took?.length && !predicted?.length) return [...lines, "No stage times were given."];
  const names = [...(took ?? []), ...(predicted ?? [])].map((s) => s.stage)
    .filter((name, i, all) => all.indexOf(name) === i);
  const sum = (list: readonly ReportStage[] | undefined) =>
    list?.length ? list.reduce((total, s) => total + s.seconds, 0) : undefined;
  const seconds = (list: readonly ReportStage[] | undefined, stage: string) =>
    list?.find((s) => s.stage === stage)?.seconds;
  const cell = (s: number | undefined) => (s === undefined ? "" : formatDuration(s));
  const rows = names.map((name) => [
    escapeMarkdown(name),
    cell(seconds(predicted, name)),
    cell(seconds(took, name)),
  ]);
  rows.push(["**total**", cell(sum(predicted)), cell(sum(took))]);
  return [...lines, ...table(["stage", "planned", "took"], rows)];
}

interface KnownFigure {
  description: string;
  share?: boolean;
  atLeast?: number;
}

/** The eval figures the report describes by name (those `deno task eval` reports). */
const KNOWN_FIGURES: Record<string, KnownFigure> = {
  valLoss: { description: "cross-entropy on held-out text, nats per token (lower is better)" },
  bitsPerByte: {
    description: "the same loss in bits per byte of text: compares across tokenizers",
  },
  grammar: {
    description: "completions' sentences that link-grammar parses fully",
    share: true,
    atLeast: 0.85,
  },
  sentencesPerCompletion: { description: "mean sentences per completion", atLeast: 3 },
  distinctBigrams: {
    description: "distinct word pairs among all pairs written: low means repetition loops",
    share: true,
  },
  onTopic: {
    description: "answers that use a word any on-topic answer would use",
    share: true,
    atLeast: 0.8,
  },
  endsByThemselves: {
    // A `|` splits a table cell even inside a code span, unless escaped.
    description: "chat answers that end with `<\\|im_end\\|>` by themselves",
    share: true,
    atLeast: 0.95,
  },
  answerGrammar: {
    description: "answers' sentences that link-grammar parses fully",
    share: true,
    atLeast: 0.8,
  },
};

function evalSection(evals: ReportOptions["evals"]): string[] {
  const lines = ["## Eval figures", ""];
  const entries = Object.entries(evals ?? {});
  if (entries.length === 0) return [...lines, "No eval figures were given."];
  const rows = entries.map(([name, given]) => {
    const figure: ReportFigure = typeof given === "number" ? { value: given } : given;
    const known = KNOWN_FIGURES[name];
    const share = figure.share ?? known?.share ?? false;
    const atLeast = figure.atLeast ?? known?.atLeast;
    const show = (v: number) => (share ? `${formatNumber(v * 100, 3)}%` : formatNumber(v));
    const bar = atLeast === undefined
      ? ""
      : `≥ ${show(atLeast)} ${figure.value >= atLeast ? "(met)" : "(**not met**)"}`;
    const description = figure.description ?? known?.description ?? "";
    return [
      escapeMarkdown(spellOut(name)),
      show(figure.value),
      bar,
      // Known descriptions carry their own Markdown (code spans); given ones are escaped.
      figure.description === undefined ? description : escapeMarkdown(description),
    ];
  });
  return [...lines, ...table(["figure", "value", "bar", "what it measures"], rows)];
}

function sampleSection(
  heading: string,
  intro: string,
  none: string,
  samples: readonly ReportSample[] | undefined,
  max: number,
): string[] {
  const lines = [`## ${heading}`, ""];
  if (!samples?.length) return [...lines, none];
  const shown = samples.slice(0, max);
  lines.push(
    intro +
      (shown.length < samples.length ? ` The first ${shown.length} of ${samples.length}.` : ""),
  );
  shown.forEach((sample, i) => {
    lines.push("", `**${i + 1}.** ${escapeMarkdown(sample.prompt)}`, "");
    lines.push(...(sample.text === "" ? ["*(the model wrote nothing)*"] : fenced(sample.text)));
  });
  return lines;
}

function figureRow([name, value]: [string, string | number]): string[] {
  return [
    escapeMarkdown(spellOut(name)),
    escapeMarkdown(typeof value === "number" ? formatNumber(value) : value),
  ];
}

/** `tokensPerParameter` → `tokens per parameter`; names with spaces are kept as they are. */
function spellOut(name: string): string {
  if (/\s/.test(name)) return name;
  return name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/([A-Z])([A-Z][a-z])/g, "$1 $2")
    .replace(/\b([A-Z])([a-z])/g, (_, a: string, b: string) => a.toLowerCase() + b);
}

/** Whole numbers with thousands separators; others to `digits` significant digits. */
function formatNumber(value: number, digits = 4): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  return Number(value.toPrecision(digits)).toLocaleString("en-US", { maximumFractionDigits: 10 });
}

/** 41.2s, 12m 05s, 1h 02m. */
function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}h ${pad(m)}m` : `${m}m ${pad(rest)}s`;
}

/** A log's path as the report shows it: relative to the work folder when inside it. */
function displayPath(path: string, work: string): string {
  const prefix = work.endsWith("/") ? work : `${work}/`;
  return path.startsWith(prefix) ? path.slice(prefix.length) : path;
}

/** The command line: rebuilds the report card (report.md, loss.svg) of a main-job work folder. */
const FLAGS = {
  work: {
    type: "string",
    default: "runs/main",
    help: "the work folder; its report.json gives the plan, stage times, eval figures and " +
      "samples that the main job recorded",
  },
  "pretrain-log": {
    type: "string",
    help: "pretraining's log.jsonl (default: as recorded, or WORK/model/log.jsonl)",
  },
  "instruct-log": {
    type: "string",
    help: "instruction tuning's log.jsonl (default: as recorded, or WORK/instruct/model/log.jsonl)",
  },
  ...HELP_FLAG,
} as const;

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno task report [options]", FLAGS);
    if (!values) return;
    const work = values.work;
    const folder = await Deno.stat(work).catch(() => null);
    if (!folder?.isDirectory) {
      throw new Error(
        `--work ${work} is ${folder ? "a file" : "not there"}; pass the work folder of a job ` +
          "(deno task train --work ...) or of a training run.",
      );
    }
    let recorded: Partial<ReportOptions> & { date?: string } = {};
    try {
      recorded = JSON.parse(await Deno.readTextFile(`${work}/report.json`));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new Error(
          `Could not read ${work}/report.json (${error}); it is damaged: move it away to ` +
            "rebuild the report from the training logs alone.",
        );
      }
      console.error(
        `note: no ${work}/report.json, so the report has the loss curves only; ` +
          "deno task train records the plan, stage times and eval figures there.",
      );
    }
    const files = await writeReport({
      ...recorded,
      work,
      date: undefined,
      pretrainLog: values["pretrain-log"] ?? recorded.pretrainLog,
      instructLog: values["instruct-log"] ?? recorded.instructLog,
    });
    console.log(`report: ${files.report}` + files.plots.map((p) => `\nplot: ${p}`).join(""));
  });
}
