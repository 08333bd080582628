/**
 * Writing files so that no data is lost: a file or folder appears under its name only once it is
 * complete, so an interrupted run leaves either the old version or the new one, never half of
 * one.
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
  await Deno.rename(partial, path);
}

/** Writes a text file atomically (see {@linkcode writeFileAtomic}). */
export function writeTextFileAtomic(path: string, text: string): Promise<void> {
  return writeFileAtomic(path, (file) => writeAll(file, new TextEncoder().encode(text)));
}

/**
 * Puts the finished folder `partial` at `path`. An older folder at `path` is first renamed
 * aside and removed only after the new one is in place, so `path` is never missing a complete
 * version for long.
 */
export async function replaceFolder(partial: string, path: string): Promise<void> {
  const old = `${path}.old`;
  await Deno.remove(old, { recursive: true }).catch(() => {});
  const hadOld = await Deno.rename(path, old).then(() => true, () => false);
  await Deno.rename(partial, path);
  if (hadOld) await Deno.remove(old, { recursive: true });
}
