/**
 * Where the main job's pretraining text comes from, and about how many tokens it holds before it
 * is tokenized (the plan is made first).
 *
 * @module
 */

import { BRIEF_KINDS } from "./brief_pairs.ts";
import { BUNDLED_INSTRUCT_DIR, BUNDLED_STORIES } from "./bundled_data.ts";
import { readRecordBatches } from "./text_source.ts";
import type { HubDataset } from "./hub.ts";
import { FINEWEB_SAMPLE_10BT, type MixtureSource } from "./prepare_dataset.ts";

/** Documents a hub sample takes by default: the seed's 10k rows of FineWeb. */
export const HUB_ROWS = 10_000;

/**
 * The bundled pretraining text's shares: mostly simple stories, since models this small write
 * grammatical English from simple, clean text and not yet from web pages (TinyStories, Eldan &
 * Li, 2023), and the instruction pairs as ChatML conversations, so that the model learns to
 * answer and to stop with its whole budget rather than in the few minutes of tuning (the
 * "midtraining" of nanochat, the instruction data of phi-1's pretraining). The bundled FineWeb
 * pages are not in the default mix: link-grammar links 65% of their sentences, against 87-93%
 * for the stories kept (`scripts/data_grammar.ts`), and a model learns the grammar of its data.
 * At these shares the stories kept (13 MB) run out a little before the pairs (6.3 MB).
 */
export const BUNDLED_SHARES = { stories: 0.7, chat: 0.3 } as const;

/**
 * The bundled stories the default mix reads, by their `source`: the kinds whose sentences
 * link-grammar links fully at least 85% of the time (children's tales 89.7%, Llama's stories
 * 86.5%, slice of life 92.6%; left out: bedtime 82.5%, food 78.0%, campfire tales 69.7%), as
 * `scripts/data_grammar.ts --per-kind 200` measured them (docs/recipe.md). 13 MB of the 35.
 */
export const CLEAN_STORY_SOURCES: readonly string[] = [
  "generated-child",
  "llama-stories",
  "llama-slice-of-life",
];

/**
 * The bundled instruction pairs of the default mix, by their `source`: the kinds whose answers
 * link-grammar links fully at least 85% of the time (example sentences 86.6%, explanations 89.3%,
 * children's tales 90.5%, explain-like-I'm-five 88.8%, wiki-style articles 91.4%, story requests
 * 89.1%), as `scripts/data_grammar.ts --per-kind 200` measured them; jokes (82.2%, short answers
 * that end); and the brief pairs derived from the long kinds (`pipeline/brief_pairs.ts`), which
 * start from their question's subject and end within a few sentences. Left out: synonyms 76.5%
 * (lists of words), paraphrases and summaries 71-74%, the Alpaca pairs (64.5%: lists and
 * fragments, no `source`), and trivia (73.6%): with trivia in the mix and the tuning, a 30-minute
 * model began 7 of 20 answers, whatever the question, with trivia's "The first televised..."
 * (docs/recipe.md). 3,446 of 11,987 pairs and the 2,008 brief ones, about 5.4 MB.
 */
export const CLEAN_ANSWER_SOURCES: readonly string[] = [
  "llama-sentences",
  "llama-explanations",
  "generated-child",
  "llama-eli5",
  "llama-wiki",
  "llama-stories",
  "generated-jokes",
  ...BRIEF_KINDS.map((kind) => `brief-${kind}`),
];

/**
 * The pairs the instruction tuning reads: the short ones only, each well inside a tuning row, so
 * that every answer it learns ends with `<|im_end|>` and starts from its question: the brief
 * pairs (`pipeline/brief_pairs.ts`: the first sentences of the long kinds' answers, under
 * everyday questions) and jokes. The long answers stay in pretraining, where their fluent prose
 * serves, but would teach the tuning to run past its rows.
 */
export const TUNING_ANSWER_SOURCES: readonly string[] = [
  ...BRIEF_KINDS.map((kind) => `brief-${kind}`),
  "generated-jokes",
];

/** The flags that choose the text. */
export interface SourceFlags {
  /** A local file or folder (`--data`). */
  data?: string;
  /** FineWeb `sample-10BT` from the Hugging Face hub (`--hub`). */
  hub?: boolean;
  /** Documents to take (`--rows`). */
  rows?: number;
  /** Instruction pairs whose conversations join the bundled mix (`--instruct-data`). */
  instructData?: string;
}

/** The pretraining text, as `prepareDataset` takes it. */
export interface PretrainingSource {
  /** A local file or folder, with `--data`. */
  data?: string;
  /** The bundled corpus's sources and their shares, by default. */
  mixture?: MixtureSource[];
  /** The hub dataset, with `--hub`. */
  hub?: HubDataset;
  /** Documents to take; `Infinity` for all. */
  rows: number;
  /** What the job says it reads. */
  label: string;
}

/**
 * The pretraining text for the job's flags: the corpus bundled in `data/` by default, so a
 * fresh clone trains offline; `--hub` for the seed's FineWeb sample, `--data` for local text.
 */
export function pretrainingSource(flags: SourceFlags): PretrainingSource {
  if (flags.hub && flags.data) throw new Error("Pass --data or --hub, not both.");
  if (flags.hub) {
    return {
      hub: FINEWEB_SAMPLE_10BT,
      rows: flags.rows ?? HUB_ROWS,
      label: `FineWeb sample-10BT from the Hugging Face hub (${FINEWEB_SAMPLE_10BT.repo})`,
    };
  }
  if (flags.data) return { data: flags.data, rows: flags.rows ?? Infinity, label: flags.data };
  const shares = BUNDLED_SHARES;
  const percent = (share: number) => `${Math.round(share * 100)}%`;
  const chat = flags.instructData
    ? { data: flags.instructData, share: shares.chat, chat: true }
    : { data: BUNDLED_INSTRUCT_DIR, share: shares.chat, chat: true, sources: CLEAN_ANSWER_SOURCES };
  return {
    mixture: [{ data: BUNDLED_STORIES, share: shares.stories, sources: CLEAN_STORY_SOURCES }, chat],
    rows: flags.rows ?? Infinity,
    label: `the corpus bundled in data/, offline: ${percent(shares.stories)} simple stories, ` +
      `${percent(shares.chat)} instruction pairs as ChatML (--hub reads FineWeb from the hub, ` +
      "--data your own text)",
  };
}

/** Bytes of English per token of a byte-level BPE of a few thousand tokens, about. */
const BYTES_PER_TOKEN = 4;

/**
 * About how many tokens `source` holds: its bytes (a gzip file's uncompressed size, from its
 * last four bytes; the characters of the records kept, for a source that keeps some) at 4 a
 * token; a mixture as much as its scarcest source allows at its share; 3,000 bytes a document
 * from the hub.
 */
export async function estimateSourceTokens(source: PretrainingSource): Promise<number> {
  let bytes: number;
  if (source.hub) bytes = source.rows * 3000;
  else if (source.mixture) {
    const total = source.mixture.reduce((sum, s) => sum + s.share, 0);
    const limits = await Promise.all(
      source.mixture.filter((s) => s.share > 0)
        .map(async (s) => await mixtureSourceBytes(s) / (s.share / total)),
    );
    bytes = Math.min(...limits);
  } else bytes = await textBytes(source.data!);
  return Math.max(1, Math.round(bytes / BYTES_PER_TOKEN));
}

/** About the bytes of text a mixture's source gives: its records' characters, when it keeps some. */
async function mixtureSourceBytes(source: MixtureSource): Promise<number> {
  if (!source.sources) return await textBytes(source.data);
  const fields = source.chat ? ["instruction", "output"] : ["text"];
  let characters = 0;
  const records = readRecordBatches(source.data, {
    fields,
    optionalFields: ["input"],
    sources: source.sources,
  });
  for await (const batch of records) {
    for (const record of batch) {
      for (const field of [...fields, "input"]) characters += record[field]?.length ?? 0;
    }
  }
  return characters;
}

/** Uncompressed bytes of a file, or of the files of a folder. */
async function textBytes(path: string): Promise<number> {
  const info = await Deno.stat(path).catch(() => {
    throw new Error(`No such file or folder: ${path}. Pass a text, JSON Lines or Parquet file.`);
  });
  const files: string[] = [];
  if (!info.isDirectory) files.push(path);
  else {
    for await (const entry of Deno.readDir(path)) {
      if (entry.isFile) files.push(`${path}/${entry.name}`);
    }
  }
  let bytes = 0;
  for (const file of files) {
    if (!file.endsWith(".gz")) {
      bytes += (await Deno.stat(file)).size;
      continue;
    }
    using handle = await Deno.open(file);
    const size = (await handle.stat()).size;
    const tail = new Uint8Array(4);
    await handle.seek(size - 4, Deno.SeekMode.Start);
    await handle.read(tail);
    bytes += new DataView(tail.buffer).getUint32(0, true); // ISIZE: the size mod 2^32
  }
  return bytes;
}
