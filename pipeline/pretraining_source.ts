/**
 * Where the main job's pretraining text comes from, and about how many tokens it holds before it
 * is tokenized (the plan is made first).
 *
 * @module
 */

import { BUNDLED_FINEWEB, BUNDLED_INSTRUCT_DIR, BUNDLED_STORIES } from "./bundled_data.ts";
import type { HubDataset } from "./hub.ts";
import { FINEWEB_SAMPLE_10BT, type MixtureSource } from "./prepare_dataset.ts";

/** Documents a hub sample takes by default: the seed's 10k rows of FineWeb. */
export const HUB_ROWS = 10_000;

/**
 * The bundled pretraining text's shares: mostly simple stories, since models this small write
 * grammatical English from simple, clean text and not yet from web pages (TinyStories, Eldan &
 * Li, 2023); FineWeb pages for the words of the wider world; and the instruction pairs as ChatML
 * conversations, so that the model learns to answer and to stop with its whole budget rather
 * than in the few minutes of tuning (the "midtraining" of nanochat, the instruction data of
 * phi-1's pretraining).
 */
export const BUNDLED_SHARES = { stories: 0.6, fineweb: 0.15, chat: 0.25 } as const;

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
  return {
    mixture: [
      { data: BUNDLED_STORIES, share: shares.stories },
      { data: BUNDLED_FINEWEB, share: shares.fineweb },
      { data: flags.instructData ?? BUNDLED_INSTRUCT_DIR, share: shares.chat, chat: true },
    ],
    rows: flags.rows ?? Infinity,
    label: `the corpus bundled in data/, offline: ${percent(shares.stories)} simple stories, ` +
      `${percent(shares.fineweb)} FineWeb sample-10BT pages, ${percent(shares.chat)} ` +
      "instruction pairs as ChatML (--hub reads FineWeb from the hub, --data your own text)",
  };
}

/** Bytes of English per token of a byte-level BPE of a few thousand tokens, about. */
const BYTES_PER_TOKEN = 4;

/**
 * About how many tokens `source` holds: its bytes (a gzip file's uncompressed size, from its
 * last four bytes) at 4 a token; a mixture as much as its scarcest source allows at its share;
 * 3,000 bytes a document from the hub.
 */
export async function estimateSourceTokens(source: PretrainingSource): Promise<number> {
  let bytes: number;
  if (source.hub) bytes = source.rows * 3000;
  else if (source.mixture) {
    const total = source.mixture.reduce((sum, s) => sum + s.share, 0);
    const limits = await Promise.all(
      source.mixture.filter((s) => s.share > 0)
        .map(async (s) => await textBytes(s.data) / (s.share / total)),
    );
    bytes = Math.min(...limits);
  } else bytes = await textBytes(source.data!);
  return Math.max(1, Math.round(bytes / BYTES_PER_TOKEN));
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
