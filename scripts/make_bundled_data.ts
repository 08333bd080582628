/**
 * Remakes the corpus bundled in `data/` (see `data/README.md`) from the offline copies of its
 * sources. Deterministic: the same sources give the same files, byte for byte.
 *
 *     deno run --allow-all scripts/make_bundled_data.ts [--source ../shared/data]
 *
 * - FineWeb: the `text` of rows with `score` 0 (ordinary web text, not legal text) of the
 *   Parquet shards, in shard and row order, until FINEWEB_CHARACTERS;
 * - stories: every story of `stories.jsonl`, as it is;
 * - Alpaca-style pairs: the JSON array, as it is;
 * - snakes-qa: the pairs whose instruction, input and output together are at most
 *   QA_MAX_CHARACTERS long, in file order, except the drills of QA_DRILLS;
 * - brief snakes-qa pairs: `briefPairs` of every pair of any length, in file order, at most
 *   MAX_BRIEF_PER_KIND of each kind.
 *
 * `simple-stories.txt` (non-commercial licence) is never read.
 *
 * @module
 */

import { readLines, readRecordBatches } from "../pipeline/text_source.ts";
import {
  BUNDLED_ALPACA,
  BUNDLED_FINEWEB,
  BUNDLED_INSTRUCT_DIR,
  BUNDLED_PRETRAIN_DIR,
  BUNDLED_SNAKES_QA,
  BUNDLED_SNAKES_QA_BRIEF,
  BUNDLED_STORIES,
} from "../pipeline/bundled_data.ts";
import { briefPairs, type SourcedPair } from "../pipeline/brief_pairs.ts";
import { writeAll, writeFileAtomic } from "../util/files.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, parseFlags } from "../util/flags.ts";

/**
 * The most FineWeb text kept, in UTF-16 code units: an upper bound (about 7 MB compressed); all
 * 2,494 score-0 rows of the offline copy (16.5M characters) fit under it.
 */
const FINEWEB_CHARACTERS = 19_000_000;
/** The longest instruction pair kept (instruction + input + output, in characters). */
const QA_MAX_CHARACTERS = 2000;

/**
 * Drills left out of the chat data: letter-by-letter spelling ("R-U-S-S-E-L-L The letter l is
 * found 2 times.") and step-by-step multiple choice. Together 40% of the short pairs, they
 * taught a small tuned model to answer every question in their formats, not in sentences.
 */
const QA_DRILLS = new Set(["generated-spelling", "generated-fill-in-the-blank"]);

/** Writes `lines` (each ending in a line break) gzip-compressed to `path`; returns the bytes. */
async function writeGzip(path: string, lines: Iterable<string> | AsyncIterable<string>) {
  const text = ReadableStream.from(lines).pipeThrough(new TextEncoderStream());
  const gzip = text.pipeThrough(new CompressionStream("gzip"));
  let bytes = 0;
  await writeFileAtomic(path, async (file) => {
    for await (const chunk of gzip) {
      await writeAll(file, chunk);
      bytes += chunk.length;
    }
  });
  return bytes;
}

async function* fineweb(source: string, counts: { rows: number; characters: number }) {
  // `score` is a number column: read as an optional field, which the reader writes as text.
  const batches = readRecordBatches(`${source}/fineweb`, {
    fields: ["text"],
    optionalFields: ["score"],
  });
  for await (const batch of batches) {
    for (const { text, score } of batch) {
      if (score !== "0" || text.trim() === "") continue;
      if (counts.characters + text.length > FINEWEB_CHARACTERS) return;
      counts.rows++;
      counts.characters += text.length;
      yield JSON.stringify({ text }) + "\n";
    }
  }
}

async function* linesKept(path: string, keep: (line: string) => boolean, counts: { rows: number }) {
  for await (const line of readLines(path)) {
    if (line.trim() === "" || !keep(line)) continue;
    counts.rows++;
    yield line + "\n";
  }
}

function shortPair(line: string): boolean {
  const pair = JSON.parse(line) as Record<string, string>;
  return !QA_DRILLS.has(pair.source) &&
    pair.instruction.length + (pair.input ?? "").length + pair.output.length <=
      QA_MAX_CHARACTERS;
}

/**
 * The most brief pairs of one kind: the word tasks and tales would otherwise outnumber the
 * explanations (under 1,000 in all) by 8 to 1, and a model tuned on them answered every question
 * with a synonym or a story (runs/brief3x96, docs/recipe.md). At 400 they are 1,200 of 2,008.
 */
const MAX_BRIEF_PER_KIND = 400;

/** The brief pairs of the snakes-qa pairs, in file order, at most MAX_BRIEF_PER_KIND a kind. */
async function* briefLines(path: string, counts: { rows: number }) {
  const kinds = new Map<string, number>();
  for await (const line of readLines(path)) {
    if (line.trim() === "") continue;
    for (const brief of briefPairs(JSON.parse(line) as SourcedPair)) {
      const count = kinds.get(brief.source!) ?? 0;
      if (count >= MAX_BRIEF_PER_KIND) continue;
      kinds.set(brief.source!, count + 1);
      counts.rows++;
      yield JSON.stringify(brief) + "\n";
    }
  }
}

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno run --allow-all scripts/make_bundled_data.ts [options]", {
      source: { type: "string", default: "../shared/data", help: "the downloaded source data" },
      ...HELP_FLAG,
    });
    if (!values) return;
    const source = values.source;
    await Deno.mkdir(BUNDLED_PRETRAIN_DIR, { recursive: true });
    await Deno.mkdir(BUNDLED_INSTRUCT_DIR, { recursive: true });
    // Rows are counted as the files are written, so the count is read after the write.
    const report = (path: string, bytes: number, counts: { rows: number }) =>
      console.log(`${path}: ${counts.rows} rows, ${(bytes / 1e6).toFixed(2)} MB`);

    const web = { rows: 0, characters: 0 };
    report(BUNDLED_FINEWEB, await writeGzip(BUNDLED_FINEWEB, fineweb(source, web)), web);
    console.log(`  FineWeb characters: ${web.characters}`);

    const stories = { rows: 0 };
    const storyLines = linesKept(`${source}/stories.jsonl`, () => true, stories);
    report(BUNDLED_STORIES, await writeGzip(BUNDLED_STORIES, storyLines), stories);

    const alpaca = await Deno.readTextFile(`${source}/instruct/alpaca-style-1100.json`);
    const alpacaRows = { rows: (JSON.parse(alpaca) as unknown[]).length };
    report(BUNDLED_ALPACA, await writeGzip(BUNDLED_ALPACA, [alpaca]), alpacaRows);

    const qa = { rows: 0 };
    const qaLines = linesKept(`${source}/instruct/snakes-qa.jsonl`, shortPair, qa);
    report(BUNDLED_SNAKES_QA, await writeGzip(BUNDLED_SNAKES_QA, qaLines), qa);

    const brief = { rows: 0 };
    const briefs = briefLines(`${source}/instruct/snakes-qa.jsonl`, brief);
    report(BUNDLED_SNAKES_QA_BRIEF, await writeGzip(BUNDLED_SNAKES_QA_BRIEF, briefs), brief);
  });
}
