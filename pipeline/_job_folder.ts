/**
 * The main job's work folder as a record of what it did: the flags that shaped it (`job.json`),
 * each stage's seconds and whether it finished (`stages.json`), and JSON files read back with a
 * message that names them. Private to the main job.
 *
 * @module
 */

import { writeTextFileAtomic } from "../util/files.ts";
import type { StageTime } from "./plan.ts";

/** The flags that decide what the stages write; a work folder keeps the ones it was made with. */
export type JobIdentity = Record<string, string | number | boolean | null>;

/** A stage's seconds as recorded in `stages.json`, and whether it finished. */
export interface JobStageTime extends StageTime {
  /** The stage ran to its end (a stage cut short by Ctrl-C resumes next time). */
  done: boolean;
}

/** A work folder and the stages recorded in it. */
export class JobFolder {
  private constructor(
    /** The folder. */
    readonly path: string,
    /** Every stage that ran, in the order they first ran. */
    readonly stages: JobStageTime[],
    readonly signal?: AbortSignal,
  ) {}

  /**
   * Opens (or makes) a work folder for a job of `identity`.
   *
   * @throws when the folder records a job made with other flags.
   */
  static async open(path: string, identity: JobIdentity, signal?: AbortSignal): Promise<JobFolder> {
    const existing = await Deno.stat(path).catch(() => null);
    if (existing && !existing.isDirectory) {
      throw new Error(`--work ${path} is a file; the job needs a folder: pass another --work.`);
    }
    await Deno.mkdir(path, { recursive: true });
    await checkJobIdentity(`${path}/job.json`, identity);
    return new JobFolder(path, await readJson(`${path}/stages.json`) ?? [], signal);
  }

  /** Whether `stage` ran to its end. */
  done(stage: string): boolean {
    return this.stages.some((s) => s.stage === stage && s.done);
  }

  /** Seconds spent in `stage` so far, over every run of the job. */
  spentOn(stage: string): number {
    return this.stages.find((s) => s.stage === stage)?.seconds ?? 0;
  }

  /** Seconds spent in every stage but `except`. */
  spentBesides(except: string): number {
    return this.stages.filter((s) => s.stage !== except).reduce((sum, s) => sum + s.seconds, 0);
  }

  /**
   * Runs `stage` under a heading unless it is done, adding its seconds to the record; a stage
   * that Ctrl-C cut short is recorded as not done, and runs (resumes) next time.
   */
  async run(stage: string, note: string, work: () => Promise<unknown>): Promise<void> {
    const done = this.done(stage);
    console.error(`\n== ${stage}${done ? " (done already, skipped)" : note}`);
    if (done) return;
    const started = performance.now();
    await work();
    const record = {
      stage,
      seconds: (performance.now() - started) / 1000 + this.spentOn(stage),
      done: !this.signal?.aborted,
    };
    this.stages.splice(0, this.stages.length, ...this.stages.filter((s) => s.stage !== stage));
    this.stages.push(record);
    await writeTextFileAtomic(`${this.path}/stages.json`, JSON.stringify(this.stages, null, 2));
  }

  /** True (and says how to resume) once Ctrl-C asked the job to stop. */
  stopped(): boolean {
    if (!this.signal?.aborted) return false;
    console.error("stopped; run the same command again to resume");
    return true;
  }
}

/**
 * Checks that the work folder's `job.json` records the same output-shaping flags, recording them
 * on first use.
 *
 * @throws when it records other ones, naming each and what to do.
 */
export async function checkJobIdentity(path: string, identity: JobIdentity): Promise<void> {
  const recorded: JobIdentity | null = await readJson(path);
  if (!recorded) {
    await writeTextFileAtomic(path, JSON.stringify(identity, null, 2) + "\n");
    return;
  }
  // A setting the folder does not record was added since it was made: it reads as null, the
  // value that means "as before".
  const changed = Object.keys(identity).filter((key) => (recorded[key] ?? null) !== identity[key]);
  if (changed.length > 0) {
    const list = changed.map((key) => `${key} ${recorded[key]} → ${identity[key]}`).join(", ");
    throw new Error(
      `${path} records a job made with other settings (${list}); run with the same flags to ` +
        "resume it, or pass another --work for a new job.",
    );
  }
}

/** A JSON file's value, or null when it does not exist; a broken one is an error naming it. */
export async function readJson<T>(path: string): Promise<T | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(
      `${path} is not valid JSON (an interrupted write?); delete it to redo that step.`,
    );
  }
}
