/** Shared helpers for the tokenizer tests: fixture paths and the seeded random source. */

export { seededRandom } from "../_gpu.ts";

/** Absolute path of a file in tests/tokenizer/fixtures. */
export function fixturePath(name: string): string {
  return new URL(`./fixtures/${name}`, import.meta.url).pathname;
}

/** The lines of a text file, each with its line ending, as HF's file trainer reads them. */
export function linesWithEndings(text: string): string[] {
  return text.split(/(?<=\n)/).filter((line) => line.length > 0);
}
