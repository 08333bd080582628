/**
 * Reading dataset files from the Hugging Face hub without downloading them whole: a hub file
 * becomes a hyparquet `AsyncBuffer` whose slices are HTTP range requests, so a 10k-row sample
 * of a 2 GB FineWeb shard fetches only the pages it reads.
 *
 * @module
 */

import { downloadFile, listFiles } from "@huggingface/hub";
import type { AsyncBuffer } from "./text_source.ts";

/** Where a dataset lives on the hub. */
export interface HubDataset {
  /** The dataset repository, e.g. `HuggingFaceFW/fineweb`. */
  repo: string;
  /** The folder of the subset, e.g. `sample/10BT` for FineWeb's `sample-10BT`. */
  folder: string;
  /** The revision (branch, tag or commit). Default `main`. */
  revision?: string;
  /** The hub's address; tests point it at a local server. Default the public hub. */
  hubUrl?: string;
  /** An access token for gated or private datasets. Default `$HF_TOKEN`. */
  accessToken?: string;
}

function credentials(dataset: HubDataset) {
  return {
    repo: { type: "dataset" as const, name: dataset.repo },
    revision: dataset.revision ?? "main",
    hubUrl: dataset.hubUrl,
    accessToken: dataset.accessToken ?? Deno.env.get("HF_TOKEN") ?? undefined,
  };
}

/** The Parquet files of a dataset folder on the hub, in name order. */
export async function listHubParquetFiles(dataset: HubDataset): Promise<string[]> {
  const paths: string[] = [];
  try {
    for await (
      const entry of listFiles({ ...credentials(dataset), path: dataset.folder, recursive: true })
    ) {
      if (entry.type === "file" && entry.path.endsWith(".parquet")) paths.push(entry.path);
    }
  } catch (e) {
    throw new Error(
      `Could not list ${dataset.repo}/${dataset.folder} on the Hugging Face hub ` +
        `(${(e as Error).message}). Check the network, the dataset name and HF_TOKEN, ` +
        "or pass a local file with --data.",
    );
  }
  if (paths.length === 0) {
    throw new Error(`The hub folder ${dataset.repo}/${dataset.folder} holds no Parquet files.`);
  }
  return paths.sort();
}

/** A hub file as an `AsyncBuffer`: its slices are fetched by HTTP range requests. */
export async function hubFileBuffer(dataset: HubDataset, path: string): Promise<AsyncBuffer> {
  const blob = await downloadFile({ ...credentials(dataset), path }).catch((e: Error) => {
    throw new Error(`Could not open ${dataset.repo}/${path} on the hub: ${e.message}.`);
  });
  if (!blob) throw new Error(`The hub has no file ${dataset.repo}/${path}.`);
  return {
    byteLength: blob.size,
    slice: (start: number, end?: number) => blob.slice(start, end ?? blob.size).arrayBuffer(),
  };
}
