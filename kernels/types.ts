/**
 * Types shared by the kernels' plain-TypeScript CPU references.
 *
 * @module
 */

/**
 * The arrays a CPU reference reads and writes: `Float32Array` to check a kernel's output against,
 * `Float64Array` for the central finite-difference checks of the backward passes.
 */
export type Floats = Float32Array | Float64Array;
