/**
 * Schedules of a training run, each a pure function of the step:
 *
 * - the learning rate: a linear warmup from 0, then either a cosine decay to a floor
 *   (Loshchilov & Hutter, 2017; as in GPT-3 and nanoGPT) or warmup-stable-decay (constant, then
 *   a linear decay to about 0 over the last steps; Hu et al., 2024, MiniCPM), whose end can be
 *   moved earlier while the rate is still constant, so a run cut short by a time limit still
 *   ends decayed;
 * - the sequence length: a warmup that starts on short sequences and doubles them in stages up
 *   to the full context (Li et al., 2022), so early steps, which learn mostly short-range
 *   statistics, cost less.
 *
 * @module
 */

/** The shape of the decay after warmup: `cosine` to a floor, or `wsd` (warmup-stable-decay). */
export type ScheduleKind = "cosine" | "wsd";

/** The schedule when none is named. */
export const DEFAULT_SCHEDULE: ScheduleKind = "cosine";

/** The share of the steps a `wsd` schedule spends decaying when none is given. */
export const DEFAULT_DECAY_FRACTION = 0.2;

/** Settings of {@linkcode learningRate}. */
export interface ScheduleOptions {
  /** The peak rate, reached at the end of warmup. */
  maxLr: number;
  /** The floor the decay ends at. Default `maxLr / 10` for `cosine`, 0 for `wsd`. */
  minLr?: number;
  /** Steps of linear warmup. */
  warmupSteps: number;
  /** The step at which decay reaches `minLr` (usually the last step). */
  totalSteps: number;
  /** `cosine` (default) or `wsd`. */
  kind?: ScheduleKind;
  /** For `wsd`: the share of `totalSteps` the linear decay takes. Default 0.2. */
  decayFraction?: number;
}

/** The learning rate at `step` (counted from 0). */
export function learningRate(step: number, options: ScheduleOptions): number {
  const { maxLr, warmupSteps, totalSteps } = options;
  const kind = options.kind ?? DEFAULT_SCHEDULE;
  const minLr = options.minLr ?? (kind === "wsd" ? 0 : maxLr / 10);
  if (step < warmupSteps) return maxLr * (step + 1) / warmupSteps;
  if (step >= totalSteps) return minLr;
  if (kind === "wsd") {
    const decaySteps = wsdDecaySteps(totalSteps, options.decayFraction);
    const left = totalSteps - step; // from decaySteps down to 1 over the decay
    if (left >= decaySteps) return maxLr;
    return minLr + (maxLr - minLr) * left / decaySteps;
  }
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  return minLr + 0.5 * (maxLr - minLr) * (1 + Math.cos(Math.PI * progress));
}

/** Steps of a `wsd` schedule's final decay: a `decayFraction` of the steps, at least one. */
export function wsdDecaySteps(
  totalSteps: number,
  decayFraction = DEFAULT_DECAY_FRACTION,
): number {
  return Math.max(1, Math.round(totalSteps * decayFraction));
}

/** What {@linkcode stepsThatFit} needs to know about a run in progress. */
export interface TimeLeft {
  /** The next step to take (steps taken so far). */
  step: number;
  /** The step count the schedule aims at now. */
  totalSteps: number;
  /** Seconds left before the time limit. */
  secondsLeft: number;
  /** Recent wall-clock seconds per step. */
  secondsPerStep: number;
  /** The share of the steps a `wsd` decay takes. Default 0.2. */
  decayFraction?: number;
}

/**
 * The shorter step count a `wsd` schedule must switch to now so that its decay ends within the
 * time left, or null while the planned count still fits or the decay need not start yet. While
 * the rate is constant the end of the schedule can move without changing any step taken so far;
 * once this returns a count, the caller keeps it (and saves it with a checkpoint).
 */
export function stepsThatFit(run: TimeLeft): number | null {
  const fit = run.step + Math.max(0, Math.floor(run.secondsLeft / run.secondsPerStep));
  if (fit >= run.totalSteps) return null;
  // Decay must start now if the fitting schedule's decay would already have begun.
  if (run.step < fit - wsdDecaySteps(fit, run.decayFraction)) return null;
  return Math.max(run.step + 1, fit);
}

/** A sequence-length warmup: rows are cut into shorter sequences early in training. */
export interface SequenceWarmup {
  /** The first stage's sequence length; it doubles each stage while below the context. */
  startLength: number;
  /**
   * The share of the steps after which every step trains on the full context (0 to 1; the
   * stages split the steps before it evenly).
   */
  untilFraction: number;
}

/** One stage of a sequence-length warmup. */
export interface SequenceStage {
  /** Tokens per sequence during the stage. */
  length: number;
  /** The stage's first step (counted from 0). */
  firstStep: number;
  /** Steps in the stage; the last stage (the full context) runs to the end. */
  steps: number;
}

/**
 * The stages of a run of `totalSteps` with rows of `contextLength` tokens: `startLength`,
 * twice that, ... while below the context, then the context itself from
 * `untilFraction · totalSteps` on. Without a warmup, one stage at the full context.
 *
 * @throws {RangeError} when a stage's length does not divide the context (rows are cut into
 *   whole sequences), or the fraction is outside [0, 1].
 */
export function sequenceStages(
  totalSteps: number,
  contextLength: number,
  warmup?: SequenceWarmup,
): SequenceStage[] {
  const lengths: number[] = [];
  if (warmup) {
    const { startLength, untilFraction } = warmup;
    if (!(untilFraction >= 0 && untilFraction <= 1)) {
      throw new RangeError(
        `The sequence warmup's fraction must be from 0 to 1, got ${untilFraction}.`,
      );
    }
    if (!Number.isInteger(startLength) || startLength < 1) {
      throw new RangeError(
        `The sequence warmup's start length must be a whole number, got ${startLength}.`,
      );
    }
    for (let length = startLength; length < contextLength; length *= 2) {
      if (contextLength % length !== 0) {
        throw new RangeError(
          `A sequence warmup from ${startLength} reaches ${length}, which does not divide the ` +
            `context of ${contextLength}; start at a power of two, such as ${
              contextLength / 2 ** Math.floor(Math.log2(contextLength / startLength))
            }.`,
        );
      }
      lengths.push(length);
    }
  }
  const warmupSteps = lengths.length ? Math.floor((warmup?.untilFraction ?? 0) * totalSteps) : 0;
  const stages: SequenceStage[] = [];
  lengths.forEach((length, i) => {
    const firstStep = Math.floor(i * warmupSteps / lengths.length);
    const steps = Math.floor((i + 1) * warmupSteps / lengths.length) - firstStep;
    if (steps > 0) stages.push({ length, firstStep, steps });
  });
  stages.push({
    length: contextLength,
    firstStep: warmupSteps,
    steps: Math.max(0, totalSteps - warmupSteps),
  });
  return stages;
}

/**
 * The mean tokens per sequence over a whole run under {@linkcode sequenceStages} (every step
 * trains the same tokens, cut shorter early on): what the attention's cost per token follows.
 */
export function meanSequenceLength(contextLength: number, warmup?: SequenceWarmup): number {
  // Stages split steps in whole numbers; a long nominal run gives their shares to 1e-6.
  const steps = 1_000_000;
  return sequenceStages(steps, contextLength, warmup)
    .reduce((sum, stage) => sum + stage.length * stage.steps, 0) / steps;
}

/** The sequence length of `step` (counted from 0) under {@linkcode sequenceStages}. */
export function sequenceLength(
  step: number,
  totalSteps: number,
  contextLength: number,
  warmup?: SequenceWarmup,
): number {
  const stages = sequenceStages(totalSteps, contextLength, warmup);
  return stages.findLast((stage) => stage.firstStep <= step)?.length ?? contextLength;
}
