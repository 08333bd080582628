/**
 * A fast 32-bit checksum of binary data, to tell a file that changed on disk (a flipped bit, a
 * lost block) from the one that was written. Not cryptographic: it guards against accidents.
 *
 * @module
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
/** Whether typed arrays are little-endian here (they are on x86 and ARM). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * FNV-1a over the concatenated `chunks` read as little-endian 32-bit words, the total length
 * mixed in last (a final partial word is padded with zeros, which the length tells apart).
 * Taking words, not bytes, makes it about four times faster over a checkpoint of gigabytes; each
 * word's step is a bijection of the running hash, so a change confined to one word always
 * changes the result, and other changes go unnoticed with a chance of about 1 in 2³².
 *
 * @param chunks the data in pieces (a file's tensors, say); every piece but the last must be a
 *   multiple of 4 bytes long.
 * @returns the checksum as an unsigned 32-bit number.
 */
export function fnv1aWords(chunks: readonly Uint8Array[]): number {
  let hash = FNV_OFFSET, length = 0;
  chunks.forEach((bytes, index) => {
    const whole = bytes.length & ~3;
    if (whole !== bytes.length && index < chunks.length - 1) {
      throw new RangeError("Only the last chunk of checksummed data may end mid-word.");
    }
    if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
      const words = new Uint32Array(bytes.buffer, bytes.byteOffset, whole / 4);
      for (let i = 0; i < words.length; i++) hash = Math.imul(hash ^ words[i], FNV_PRIME);
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, whole);
      for (let i = 0; i < whole; i += 4) {
        hash = Math.imul(hash ^ view.getUint32(i, true), FNV_PRIME);
      }
    }
    if (whole < bytes.length) {
      let tail = 0;
      for (let i = whole; i < bytes.length; i++) tail |= bytes[i] << (8 * (i - whole));
      hash = Math.imul(hash ^ tail, FNV_PRIME);
    }
    length += bytes.length;
  });
  return Math.imul(hash ^ (length >>> 0), FNV_PRIME) >>> 0;
}
