/**
 * The on-disk form of a tokenized dataset: fixed-length rows of token ids. A folder holds
 * `tokens.bin` (rows x context ids, little-endian uint16 when the vocabulary fits, else uint32),
 * `lengths.bin` (uint32 real tokens per row; the rest of a row is `<pad>`), optionally
 * `loss_mask.bin` (one byte per token: 1 where the token is to be learned, e.g. only the answers
 * of instruction tuning), and `meta.json`. The folder appears only when complete, and never
 * replaces a folder that is not an earlier dataset (see `FolderOutput` in `util/files.ts`).
 *
 * @module
 */

import { FolderOutput, readJsonFile, type StageOutput, writeAll } from "../util/files.ts";

/** How documents became rows. */
export type TokenizeMethod = "truncate" | "split" | "concat" | "chat";

/** The `meta.json` of a tokenized dataset. */
export interface TokenizedDatasetMeta {
  /** How documents became rows: `truncate`, `split`, `concat`, or `chat` for instruction pairs. */
  method: TokenizeMethod;
  /** Tokens per row, T: every row has this many ids, padded with `padId`. */
  contextLength: number;
  /** Rows in `tokens.bin`. */
  rows: number;
  /** Real (non-padding) tokens over all rows. */
  tokens: number;
  /** Documents (or instruction pairs) read from the source, including any that gave no row. */
  documents: number;
  /** The tokenizer's vocabulary size; a model trained on the rows needs at least this many. */
  vocabSize: number;
  /** How `tokens.bin` stores ids: `uint16` when the vocabulary is at most 65536, else `uint32`. */
  dtype: "uint16" | "uint32";
  /** The id that fills each row after its real tokens, normally `<pad>`. */
  padId: number;
  /** The end-of-document id: `</s>` (`concat` puts it between documents), `<|im_end|>` in chat. */
  eosId: number;
  /** True when `loss_mask.bin` says which tokens are learned. */
  lossMask?: boolean;
}

/** A tokenized dataset in memory. */
export interface TokenizedDataset {
  /** The folder's `meta.json`. */
  meta: TokenizedDatasetMeta;
  /** (rows, contextLength) token ids. */
  tokens: Uint16Array | Uint32Array;
  /** (rows) real tokens per row. */
  lengths: Uint32Array;
  /** (rows, contextLength) 1 where a token is learned; absent when every real token is. */
  lossMask?: Uint8Array;
}

/** The files of a dataset folder, `meta.json` (which marks it complete) last. */
const DATASET_FILES = ["tokens.bin", "lengths.bin", "loss_mask.bin", "meta.json"];

/** Writes rows into a new dataset folder; {@linkcode TokenRowWriter.finish} publishes it. */
export class TokenRowWriter {
  readonly #output: FolderOutput;
  readonly #files: Deno.FsFile[];
  /** The dataset's `meta.json` so far: its counts grow as rows are written. */
  readonly meta: TokenizedDatasetMeta;

  private constructor(
    readonly out: string,
    output: FolderOutput,
    files: Deno.FsFile[],
    meta: TokenizedDatasetMeta,
  ) {
    this.#output = output;
    this.#files = files;
    this.meta = meta;
  }

  /**
   * Starts a dataset at `out`, written under a fresh temporary name until finished. `out` must
   * be new, empty or an earlier dataset, unless `output.force` is set (see `FolderOutput`);
   * `output.stage` (default `tokenize`) and `output.inputs` go into that check.
   */
  static async create(
    out: string,
    meta: Omit<TokenizedDatasetMeta, "rows" | "tokens" | "documents" | "dtype">,
    output: Partial<StageOutput> = {},
  ): Promise<TokenRowWriter> {
    const folder = await FolderOutput.start(out, {
      ...output,
      stage: output.stage ?? "tokenize",
      files: DATASET_FILES,
    });
    const names = ["tokens.bin", "lengths.bin", ...(meta.lossMask ? ["loss_mask.bin"] : [])];
    const files = await Promise.all(
      names.map((name) =>
        Deno.open(`${folder.temporary}/${name}`, { write: true, createNew: true })
      ),
    );
    const dtype = meta.vocabSize <= 65536 ? "uint16" : "uint32";
    return new TokenRowWriter(out, folder, files, {
      ...meta,
      rows: 0,
      tokens: 0,
      documents: 0,
      dtype,
    });
  }

  /**
   * Appends rows (each at most `contextLength` ids), padded with `<pad>`; with a loss mask,
   * `masks[i][t]` says whether token t of row i is learned.
   */
  async write(rows: readonly number[][], masks?: readonly number[][]): Promise<void> {
    if (rows.length === 0) return;
    const { contextLength: T, padId } = this.meta;
    rows.forEach((row, i) => {
      if (row.length > T) {
        throw new RangeError(`Row ${i} has ${row.length} ids, over the context of ${T}; cut it.`);
      }
    });
    const ids = this.meta.dtype === "uint16"
      ? new Uint16Array(rows.length * T)
      : new Uint32Array(rows.length * T);
    const lengths = new Uint32Array(rows.length);
    const lossMask = new Uint8Array(this.meta.lossMask ? rows.length * T : 0);
    rows.forEach((row, i) => {
      ids.fill(padId, i * T, (i + 1) * T);
      ids.set(row, i * T);
      if (this.meta.lossMask) lossMask.set(masks![i], i * T);
      lengths[i] = row.length;
      this.meta.tokens += row.length;
    });
    await writeAll(this.#files[0], new Uint8Array(ids.buffer));
    await writeAll(this.#files[1], new Uint8Array(lengths.buffer));
    if (this.meta.lossMask) await writeAll(this.#files[2], lossMask);
    this.meta.rows += rows.length;
  }

  /** Closes the files and publishes the folder at `out`, replacing an earlier dataset there. */
  async finish(): Promise<TokenizedDatasetMeta> {
    for (const file of this.#files) file.close();
    try {
      await Deno.writeTextFile(
        `${this.#output.temporary}/meta.json`,
        JSON.stringify(this.meta, null, 2) + "\n",
      );
      await this.#output.publish();
    } catch (error) {
      await this.#output.abandon();
      throw error;
    }
    return this.meta;
  }

  /** Closes the files and removes the unfinished folder; `out` is left as it was. */
  async abandon(): Promise<void> {
    for (const file of this.#files) file.close();
    await this.#output.abandon();
  }
}

/** Loads a dataset folder, checking that its files agree with `meta.json`. */
export async function loadTokenizedDataset(folder: string): Promise<TokenizedDataset> {
  const meta = await readJsonFile<TokenizedDatasetMeta>(
    `${folder}/meta.json`,
    "tokenize the dataset again.",
  ).catch((error) => {
    // A file given for the folder reads as "not a directory" at its meta.json.
    if (error instanceof Deno.errors.NotADirectory) {
      throw new Error(
        `${folder} is a file; a tokenized dataset is the folder tokenize writes (meta.json, ` +
          "tokens.bin, lengths.bin): pass that folder.",
      );
    }
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error(`${folder} is not a tokenized dataset (no meta.json); run tokenize first.`);
  });
  const bytes = await Deno.readFile(`${folder}/tokens.bin`);
  const tokens = meta.dtype === "uint16"
    ? new Uint16Array(bytes.buffer, 0, bytes.byteLength / 2)
    : new Uint32Array(bytes.buffer, 0, bytes.byteLength / 4);
  const lengths = new Uint32Array((await Deno.readFile(`${folder}/lengths.bin`)).buffer);
  const lossMask = meta.lossMask ? await Deno.readFile(`${folder}/loss_mask.bin`) : undefined;
  const cells = meta.rows * meta.contextLength;
  if (
    tokens.length !== cells || lengths.length !== meta.rows ||
    (lossMask && lossMask.length !== cells)
  ) {
    throw new Error(
      `${folder} is inconsistent: meta.json says ${meta.rows} rows of ${meta.contextLength}, ` +
        `tokens.bin holds ${tokens.length} ids and lengths.bin ${lengths.length} rows; ` +
        "tokenize the dataset again.",
    );
  }
  return { meta, tokens, lengths, lossMask };
}
