/**
 * The grammar of the bundled data itself, by kind (`source`): the share of sentences that
 * link-grammar links fully, the eval's grammar score (`pipeline/_link_grammar.ts`), for a seeded
 * sample of each kind's documents or answers. A model learns the grammar of its data, so this is
 * the ceiling of what training on a kind can give; `pipeline/pretraining_source.ts` keeps the
 * kinds that score at least 85%.
 *
 *     deno run --allow-all scripts/data_grammar.ts [--per-kind 40]
 *
 * Needs `link-parser` (Debian's `link-grammar`). A run takes about a minute on two cores.
 *
 * @module
 */

import { completeSentences } from "../pipeline/_eval_scoring.ts";
import { grammarScore } from "../pipeline/_link_grammar.ts";
import {
  BUNDLED_ALPACA,
  BUNDLED_FINEWEB,
  BUNDLED_SNAKES_QA,
  BUNDLED_STORIES,
} from "../pipeline/bundled_data.ts";
import { readRecordBatches, type TextRecord } from "../pipeline/text_source.ts";
import { Random } from "../nn/random.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";

const values = parseFlags(
  "deno run --allow-all scripts/data_grammar.ts [options]",
  {
    "per-kind": { type: "string", default: "40", help: "documents or answers sampled per kind" },
    ...HELP_FLAG,
  } as const,
);
if (values) {
  const perKind = intFlag("per-kind", values["per-kind"]);
  /** A file's records grouped by `source` (all under `name` when they have none). */
  const byKind = async (path: string, field: string, name: string) => {
    const kinds = new Map<string, string[]>();
    const records = readRecordBatches(path, { fields: [field], optionalFields: ["source"] });
    for await (const batch of records) {
      for (const record of batch as TextRecord[]) {
        const kind = record.source || name;
        if (!kinds.has(kind)) kinds.set(kind, []);
        kinds.get(kind)!.push(record[field]);
      }
    }
    return kinds;
  };
  const random = new Random(7);
  console.log("| data | kind | documents | sentences scored | words a sentence | linked fully |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  const files: Array<[string, string, string, number]> = [
    ["stories", BUNDLED_STORIES, "text", 10],
    ["FineWeb", BUNDLED_FINEWEB, "text", 8],
    ["snakes-qa answers", BUNDLED_SNAKES_QA, "output", 4],
    ["Alpaca answers", BUNDLED_ALPACA, "output", 4],
  ];
  for (const [label, path, field, sentencesEach] of files) {
    for (const [kind, texts] of await byKind(path, field, "all")) {
      if (texts.length < 30) continue; // too few to say
      const sample = Array.from({ length: perKind }, () => texts[random.int(texts.length)]);
      const sentences = sample.flatMap((t) => completeSentences(t).slice(0, sentencesEach));
      const words = sentences.reduce((n, s) => n + s.split(/\s+/).length, 0) / sentences.length;
      const score = await grammarScore(sentences);
      console.log(
        `| ${label} | ${kind} | ${texts.length} | ${sentences.length} | ${words.toFixed(1)} | ` +
          `${(100 * score).toFixed(1)}% |`,
      );
    }
  }
}
