/**
 * Writing files so that no data is lost: a file or folder appears under its name only once it is
 * complete, so an interrupted run leaves either the old version or the new one, never half of
 * one. A pipeline stage's output also never replaces what the stage did not write: it is built
 * under a fresh temporary name, and an existing path at `--out` is replaced only when a marker
 * shows it is the same stage's earlier output (or when `--force` says to).
 *
 * @module
 */

/** Writes every byte of `bytes` to `file` (one `write` may take fewer). */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await file.write(bytes.subarray(written));
  }
}

/**
 * Writes `path` atomically: `write` fills a new file at `path.partial`, which is synced to disk
 * and renamed over `path`; if `write` throws, the partial file is removed and `path` is left as
 * it was.
 */
export async function writeFileAtomic(
  path: string,
  write: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const partial = `${path}.partial`;
  const file = await Deno.open(partial, { write: true, create: true, truncate: true });
  try {
    await write(file);
    await file.syncData();
  } catch (error) {
    file.close();
    await Deno.remove(partial).catch(() => {});
    throw error;
  }
  file.close();
  try {
    await Deno.rename(partial, path);
  } catch (error) {
    // `path` may be a folder, or its directory gone: the partial file is ours to clean up.
    await Deno.remove(partial).catch(() => {});
    throw error;
  }
}

/** Writes a text file atomically (see {@linkcode writeFileAtomic}). */
export function writeTextFileAtomic(path: string, text: string): Promise<void> {
  return writeFileAtomic(path, (file) => writeAll(file, new TextEncoder().encode(text)));
}

/** Where a stage's output goes and what it must not overwrite; see {@linkcode writeOutputFile}. */
export interface StageOutput {
  /** The stage, as messages and the marker name it: `prepare`, `tokenize`. */
  stage: string;
  /** The flag that named the output, for messages. Default `--out`. */
  flag?: string;
  /**
   * Use a path that holds something the stage did not write: a file is replaced, a folder gets
   * the stage's files beside what it holds (nothing else in it is removed).
   */
  force?: boolean;
  /** The paths the stage reads: the output may never be one of them, even with `force`. */
  inputs?: readonly (string | undefined)[];
}

/** Options of {@linkcode FolderOutput.start}: a {@linkcode StageOutput} and the files it writes. */
export interface FolderOutputOptions extends StageOutput {
  /**
   * Every file name the stage writes into the folder, the one that marks it complete last (it
   * is moved in last when the folder is shared). A folder holding only these names is taken
   * for the stage's earlier output even without a marker (one written before markers were).
   */
  files: readonly string[];
}

/** The marker a stage leaves in its output folder, or beside its output file, naming itself. */
export const OUTPUT_MARKER = ".written-by";

/** The marker of an output file: hidden, beside it (`data/.dataset.jsonl.written-by`). */
function fileMarker(path: string): string {
  const slash = path.lastIndexOf("/");
  return `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}${OUTPUT_MARKER}`;
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** The path with links resolved, or null where nothing is there. */
export async function realPathOrNull(path: string): Promise<string | null> {
  return await Deno.realPath(path).catch(() => null);
}

async function markedBy(marker: string, stage: string): Promise<boolean> {
  const text = await Deno.readTextFile(marker).catch(() => null);
  return text?.trim() === stage;
}

/** A fresh name beside `path` for building its next version; nothing else uses it. */
function freshName(path: string, suffix: string): string {
  return `${path}.${suffix}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Refuses an output that is (or, inside a folder output, would overwrite) one of the inputs. */
async function refuseInputs(
  path: string,
  output: StageOutput,
  names: readonly string[] = [],
): Promise<void> {
  const flag = output.flag ?? "--out";
  const targets = await Promise.all(
    [path, ...names.map((n) => `${path}/${n}`)].map(realPathOrNull),
  );
  for (const input of output.inputs ?? []) {
    if (input === undefined) continue;
    const real = await realPathOrNull(input);
    if (real !== null && targets.includes(real)) {
      throw new Error(
        `${flag} ${path} would overwrite the input ${input}; ${output.stage} never writes over ` +
          `what it reads: pass another ${flag}.`,
      );
    }
  }
}

/**
 * Checks that a stage may write its output file at `path`, before any work is done: the path is
 * new, or a file the same stage wrote (its marker says so), or `force` is set; never a folder,
 * never one of the stage's inputs.
 *
 * @throws an error naming the flag and the path and saying what to do.
 */
export async function checkOutputFile(path: string, output: StageOutput): Promise<void> {
  const flag = output.flag ?? "--out";
  await refuseInputs(path, output);
  const info = await statOrNull(path);
  if (info === null) return;
  if (info.isDirectory) {
    throw new Error(
      `${flag} ${path} is a folder, but ${output.stage} writes one file; pass a file path ` +
        `(such as ${path.replace(/\/$/, "")}/out.jsonl).`,
    );
  }
  if (output.force || await markedBy(fileMarker(path), output.stage)) return;
  throw new Error(
    `${flag} ${path} already exists and was not written by ${output.stage}; pass another ` +
      `${flag}, or add --force to replace it.`,
  );
}

/**
 * Writes a stage's output file: {@linkcode checkOutputFile} first, then `write` fills a file
 * under a fresh temporary name, which is synced and renamed to `path` only when complete; a
 * hidden marker beside it (`.<name>.written-by`) lets the next run of the stage replace it. If
 * `write` throws, only the temporary file is removed.
 */
export async function writeOutputFile(
  path: string,
  output: StageOutput,
  write: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  await checkOutputFile(path, output);
  const temporary = freshName(path, "partial");
  const file = await Deno.open(temporary, { write: true, createNew: true });
  try {
    await write(file);
    await file.syncData();
  } catch (error) {
    file.close();
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
  file.close();
  try {
    // The marker first: a crash between the two leaves a marker beside the old version, which
    // was new, the stage's own or forced, never someone else's file claimed without consent.
    await Deno.writeTextFile(fileMarker(path), output.stage + "\n");
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/** How a finished output folder takes its place; see {@linkcode FolderOutput}. */
export type OutputPlacement = "create" | "replace" | "share";

/**
 * Checks that a stage may write its output folder at `path`, before any work is done, and says
 * how the folder will take its place: `create` (nothing there), `replace` (the stage's earlier
 * output, swapped out whole), or `share` (an empty folder, or with `force` one holding other
 * files: the stage's files are moved into it, nothing else is touched).
 *
 * @throws an error naming the flag and the path and saying what to do.
 */
export async function checkOutputFolder(
  path: string,
  output: FolderOutputOptions,
): Promise<OutputPlacement> {
  const flag = output.flag ?? "--out";
  await refuseInputs(path, output, output.files);
  const info = await statOrNull(path);
  if (info === null) return "create";
  if (!info.isDirectory) {
    if (output.force) return "create"; // the file is removed when the folder is published
    throw new Error(
      `${flag} ${path} is a file, but ${output.stage} writes a folder; pass another ${flag}, ` +
        "or add --force to replace the file.",
    );
  }
  const names: string[] = [];
  for await (const entry of Deno.readDir(path)) names.push(entry.name);
  if (names.length === 0) return "share";
  const own = new Set([...output.files, OUTPUT_MARKER]);
  const foreign = names.filter((name) => !own.has(name)).sort();
  if (foreign.length === 0) return "replace";
  // The stage's own folder that someone added files to: its files are renewed, theirs stay.
  if (output.force || await markedBy(`${path}/${OUTPUT_MARKER}`, output.stage)) return "share";
  const shown = foreign.slice(0, 3).join(", ") + (foreign.length > 3 ? ", ..." : "");
  throw new Error(
    `${flag} ${path} is a folder holding files ${output.stage} did not write (${shown}); pass ` +
      `another ${flag} (a new or empty folder), or add --force to write ${output.stage}'s files ` +
      "into it beside them.",
  );
}

/**
 * A stage's output folder under construction: files are written into {@linkcode temporary} (a
 * fresh folder beside `path`) and {@linkcode publish} puts them at `path` as
 * {@linkcode checkOutputFolder} decided, so `path` never holds half an output and nothing the
 * stage did not write is removed.
 */
export class FolderOutput {
  readonly #placement: OutputPlacement;
  readonly #options: FolderOutputOptions;

  private constructor(
    /** Where the folder goes. */
    readonly path: string,
    /** The folder to write the files into. */
    readonly temporary: string,
    placement: OutputPlacement,
    options: FolderOutputOptions,
  ) {
    this.#placement = placement;
    this.#options = options;
  }

  /** Checks `path` (see {@linkcode checkOutputFolder}) and makes the temporary folder. */
  static async start(path: string, options: FolderOutputOptions): Promise<FolderOutput> {
    const placement = await checkOutputFolder(path, options);
    const parent = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
    if (parent) await Deno.mkdir(parent, { recursive: true });
    const temporary = freshName(path, "partial");
    await Deno.mkdir(temporary);
    await Deno.writeTextFile(`${temporary}/${OUTPUT_MARKER}`, options.stage + "\n");
    return new FolderOutput(path, temporary, placement, options);
  }

  /** Puts the finished files at `path`. */
  async publish(): Promise<void> {
    const { path, temporary } = this;
    if (this.#placement === "share") {
      const written = new Set<string>();
      for await (const entry of Deno.readDir(temporary)) written.add(entry.name);
      // The marker is not moved into a shared folder: it is not all the stage's.
      const order = this.#options.files.filter((name) => written.has(name));
      for (const name of order) await Deno.rename(`${temporary}/${name}`, `${path}/${name}`);
      await Deno.remove(temporary, { recursive: true });
      return;
    }
    const existing = await statOrNull(path);
    if (existing === null) {
      await Deno.rename(temporary, path);
    } else if (!existing.isDirectory) {
      await Deno.remove(path); // a file, replaced as --force asked
      await Deno.rename(temporary, path);
    } else {
      // The stage's earlier output: moved aside, and removed once the new one is in place.
      const old = freshName(path, "old");
      await Deno.rename(path, old);
      await Deno.rename(temporary, path);
      await Deno.remove(old, { recursive: true });
    }
  }

  /** Removes the temporary folder, leaving `path` as it was. */
  async abandon(): Promise<void> {
    await Deno.remove(this.temporary, { recursive: true }).catch(() => {});
  }
}

/**
 * Parses the JSON text of the file `path`; a syntax error names the file and says what to do
 * (`hint`), rather than giving a bare "position 29".
 */
export function parseJsonFile<T>(text: string, path: string, hint: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new Error(`${path} is not valid JSON (${(error as Error).message}); ${hint}`);
  }
}

/** Reads and parses a JSON file; see {@linkcode parseJsonFile}. A missing file throws NotFound. */
export async function readJsonFile<T>(path: string, hint: string): Promise<T> {
  return parseJsonFile<T>(await Deno.readTextFile(path), path, hint);
}
