/**
 * Reading and writing the safetensors format (Hugging Face's file of named tensors): an 8-byte
 * little-endian header length, a JSON header of `{name: {dtype, shape, data_offsets}}` (plus
 * string `__metadata__`), then the tensors' bytes. Checkpoints use it, so Hugging Face tools
 * can read the weights, and GPT-2's own `model.safetensors` can be loaded. A file written here
 * carries a checksum of its tensor data in the metadata ({@linkcode CHECKSUM_KEY}), which reading
 * verifies, so a flipped bit is an error rather than a model that quietly gives NaN.
 *
 * @module
 */

import { fnv1aWords } from "../util/checksum.ts";
import { writeAll, writeFileAtomic } from "../util/files.ts";

/**
 * The metadata key of the tensor data's checksum: `fnv1a32w:` and 8 hex digits, FNV-1a over the
 * data (every byte after the header) as 32-bit words (see `util/checksum.ts`). Other tools ignore
 * it; files without it (Hugging Face's, or written before it existed) load unchecked.
 */
export const CHECKSUM_KEY = "checksum";
const CHECKSUM_PREFIX = "fnv1a32w:";

/** The checksum metadata value of tensor data given in pieces. */
function checksumValue(chunks: readonly Uint8Array[]): string {
  return CHECKSUM_PREFIX + fnv1aWords(chunks).toString(16).padStart(8, "0");
}

/** A named float32 tensor. */
export interface NamedTensor {
  /** The key in the file's header, e.g. `h.0.attn.c_attn.weight`. */
  name: string;
  /** Dimensions; their product must equal `data.length`. */
  shape: number[];
  /** The values, row-major. */
  data: Float32Array;
}

/** A safetensors file read into memory, every tensor converted to float32. */
export interface SafetensorsFile {
  /** The header's `__metadata__` strings; empty when the file has none. */
  metadata: Record<string, string>;
  /** Every tensor by name, its values row-major, in the order of the header. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

/**
 * The bytes a safetensors file starts with for `header` (its tensors' dtypes, shapes and offsets,
 * and `__metadata__`): the header's length as a little-endian u64, then its JSON, padded with
 * spaces so that the tensor data starts 8-aligned.
 */
export function safetensorsHeaderBytes(header: Record<string, unknown>): Uint8Array {
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length + 8) % 8) % 8);
  const text = new TextEncoder().encode(json);
  const bytes = new Uint8Array(8 + text.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(text.length), true);
  bytes.set(text, 8);
  return bytes;
}

/**
 * Writes tensors (float32) and string metadata (plus the data's checksum, under
 * {@linkcode CHECKSUM_KEY}) to `path`. The file is written under a temporary name and renamed
 * when complete, so a crash mid-write never corrupts an existing checkpoint.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly NamedTensor[],
  metadata: Record<string, string> = {},
): Promise<void> {
  const bytesOf = (data: Float32Array) =>
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const checksum = checksumValue(tensors.map(({ data }) => bytesOf(data)));
  const header: Record<string, unknown> = {
    __metadata__: { ...metadata, [CHECKSUM_KEY]: checksum },
  };
  let offset = 0;
  for (const { name, shape, data } of tensors) {
    const elements = shape.reduce((a, b) => a * b, 1);
    if (elements !== data.length) {
      throw new Error(`Tensor ${name} has ${data.length} values but shape [${shape}].`);
    }
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  await writeFileAtomic(path, async (file) => {
    await writeAll(file, safetensorsHeaderBytes(header));
    for (const { data } of tensors) await writeAll(file, bytesOf(data));
  });
}

/**
 * Reads a safetensors file; F32, F16 and BF16 tensors become float32. When the metadata holds a
 * checksum ({@linkcode CHECKSUM_KEY}), the data must match it.
 *
 * @throws an error naming the file when it is missing, cut short, or its data does not match
 *   its checksum.
 */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const bytes = await Deno.readFile(path).catch((e: Error) => {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`No file at ${path}; check the path (train_model writes checkpoints).`);
    }
    throw new Error(`Could not read ${path}: ${e.message}.`);
  });
  return parseSafetensors(bytes, path);
}

/**
 * A safetensors file's contents from its bytes, as {@linkcode readSafetensors} reads them (a
 * browser page has bytes, not a path); `path` names the file in the errors.
 *
 * @throws an error naming `path` when the bytes are cut short or do not match their checksum.
 */
export function parseSafetensors(bytes: Uint8Array, path: string): SafetensorsFile {
  const corrupt = (why: string) =>
    new Error(`${path} is not a valid safetensors file (${why}); write it again.`);
  if (bytes.length < 8) throw corrupt("shorter than its 8-byte header length");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (8 + headerLength > bytes.length) throw corrupt("the header runs past the end");
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  } catch {
    throw corrupt("its header is not JSON");
  }
  const data = bytes.subarray(8 + headerLength);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const { dtype, shape, data_offsets: [begin, end] } = entry as {
      dtype: string;
      shape: number[];
      data_offsets: [number, number];
    };
    if (end > data.length || begin > end) throw corrupt(`tensor ${name} lies past the end`);
    tensors.set(name, { shape, data: toFloat32(data.slice(begin, end), dtype, name, path) });
  }
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const expected = metadata[CHECKSUM_KEY];
  if (expected?.startsWith(CHECKSUM_PREFIX) && expected !== checksumValue([data])) {
    throw new Error(
      `${path} is corrupt: its tensor data does not match the checksum in its header ` +
        "(bytes changed on disk or in a copy); use an intact copy, or write it again.",
    );
  }
  return { metadata, tensors };
}

function toFloat32(raw: Uint8Array, dtype: string, name: string, path: string): Float32Array {
  if (dtype === "F32") return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const halves = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  const out = new Float32Array(halves.length);
  if (dtype === "BF16") {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < halves.length; i++) bits[i] = halves[i] << 16;
  } else if (dtype === "F16") {
    for (let i = 0; i < halves.length; i++) out[i] = halfToFloat(halves[i]);
  } else {
    throw new Error(`Tensor ${name} of ${path} has dtype ${dtype}; only F32, F16, BF16 load.`);
  }
  return out;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}
