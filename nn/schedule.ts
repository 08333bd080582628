/**
 * The learning-rate schedule of GPT-style pretraining: a linear warmup from 0, then a cosine
 * decay to a floor (Loshchilov & Hutter, 2017; as in GPT-3 and nanoGPT).
 *
 * @module
 */

/** Settings of {@linkcode learningRate}. */
export interface ScheduleOptions {
  /** The peak rate, reached at the end of warmup. */
  maxLr: number;
  /** The floor the cosine decays to. Default `maxLr / 10`. */
  minLr?: number;
  /** Steps of linear warmup. */
  warmupSteps: number;
  /** The step at which decay reaches `minLr` (usually the last step). */
  totalSteps: number;
}

/** The learning rate at `step` (counted from 0). */
export function learningRate(step: number, options: ScheduleOptions): number {
  const { maxLr, warmupSteps, totalSteps } = options;
  const minLr = options.minLr ?? maxLr / 10;
  if (step < warmupSteps) return maxLr * (step + 1) / warmupSteps;
  if (step >= totalSteps) return minLr;
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  return minLr + 0.5 * (maxLr - minLr) * (1 + Math.cos(Math.PI * progress));
}
