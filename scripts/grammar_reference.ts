/**
 * Measures what the eval's grammar score gives human-written text and the same words shuffled:
 * the complete sentences (4 to 40 words) of the first documents of the bundled FineWeb sample
 * and of the bundled stories, each beside its own words in a random order.
 *
 *     deno run --allow-all scripts/grammar_reference.ts [--sentences 400]
 *
 * @module
 */

import { BUNDLED_FINEWEB, BUNDLED_STORIES } from "../pipeline/bundled_data.ts";
import { readTextBatches } from "../pipeline/text_source.ts";
import { completeSentences, shuffleWords, words } from "../pipeline/_eval_scoring.ts";
import { linkGrammarVerdicts, type LinkVerdict } from "../pipeline/_link_grammar.ts";
import { runCli } from "../util/cli.ts";
import { HELP_FLAG, intFlag, parseFlags } from "../util/flags.ts";

async function sentencesOf(path: string, wanted: number): Promise<string[]> {
  const sentences: string[] = [];
  for await (const batch of readTextBatches(path, { batchSize: 50 })) {
    for (const text of batch) {
      for (const sentence of completeSentences(text)) {
        const n = words(sentence).length;
        if (n >= 4 && n <= 40) sentences.push(sentence);
      }
      if (sentences.length >= wanted) return sentences.slice(0, wanted);
    }
  }
  return sentences;
}

if (import.meta.main) {
  await runCli(async () => {
    const values = parseFlags("deno run --allow-all scripts/grammar_reference.ts [options]", {
      sentences: { type: "string", default: "400", help: "sentences of each corpus to parse" },
      ...HELP_FLAG,
    });
    if (!values) return;
    const wanted = intFlag("sentences", values.sentences);
    for (const [name, path] of [["FineWeb", BUNDLED_FINEWEB], ["stories", BUNDLED_STORIES]]) {
      const sentences = await sentencesOf(path, wanted);
      const start = performance.now();
      const written = await linkGrammarVerdicts(sentences);
      const shuffled = await linkGrammarVerdicts(sentences.map((s, i) => shuffleWords(s, i + 1)));
      const seconds = (performance.now() - start) / 1000;
      const pct = (verdicts: LinkVerdict[], knownWords: boolean) =>
        (100 * verdicts.filter((v) => v.linked && (!knownWords || !v.guessedWords.length))
          .length /
          verdicts.length).toFixed(1) + "%";
      console.log(
        `${name}: ${sentences.length} sentences; linked ${pct(written, false)} as written, ` +
          `${pct(shuffled, false)} shuffled; with known words only ${pct(written, true)} and ` +
          `${pct(shuffled, true)} (${seconds.toFixed(1)} s to parse)`,
      );
    }
  });
}
