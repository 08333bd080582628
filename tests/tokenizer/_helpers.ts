/** Shared helpers for the tokenizer tests: a seeded random source and fixture paths. */

/** A small deterministic PRNG (mulberry32) so random tests are reproducible. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Absolute path of a file in tests/tokenizer/fixtures. */
export function fixturePath(name: string): string {
  return new URL(`./fixtures/${name}`, import.meta.url).pathname;
}

/** The lines of a text file, each with its line ending, as HF's file trainer reads them. */
export function linesWithEndings(text: string): string[] {
  return text.split(/(?<=\n)/).filter((line) => line.length > 0);
}
