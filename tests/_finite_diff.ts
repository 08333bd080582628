/**
 * Central finite differences in float64, for checking CPU backward passes on tiny shapes.
 */

import { assertClose } from "./_gpu.ts";

/**
 * The gradient of the scalar `loss()` with respect to every entry of `x`, by central differences:
 * `(loss(x + h) - loss(x - h)) / 2h`. `x` is perturbed in place and restored.
 */
export function finiteDifferenceGradient(
  loss: () => number,
  x: Float64Array,
  h = 1e-6,
): Float64Array {
  const gradient = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const saved = x[i];
    x[i] = saved + h;
    const up = loss();
    x[i] = saved - h;
    const down = loss();
    x[i] = saved;
    gradient[i] = (up - down) / (2 * h);
  }
  return gradient;
}

/**
 * Asserts that `analytic` (from a backward pass) matches the finite-difference gradient of
 * `loss` with respect to `x`.
 */
export function assertGradientMatches(
  analytic: ArrayLike<number>,
  loss: () => number,
  x: Float64Array,
  { atol = 1e-6, rtol = 1e-5 }: { atol?: number; rtol?: number } = {},
): void {
  assertClose(analytic, finiteDifferenceGradient(loss, x), { atol, rtol });
}

/** A random projection of an output, `sum(out * weights)`: a scalar loss that sees every entry. */
export function projectedLoss(out: ArrayLike<number>, weights: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < out.length; i++) sum += out[i] * weights[i];
  return sum;
}
