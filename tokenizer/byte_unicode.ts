/**
 * GPT-2's reversible map between bytes and printable Unicode characters.
 *
 * Byte-level BPE works on bytes, but vocabularies are stored as strings
 * (tokenizer.json keys, merge lines). GPT-2 therefore gives every byte a
 * visible character: bytes that are already printable and not whitespace keep
 * their Latin-1 code point, and the other 68 bytes (controls, space, 0x7F-0xA0,
 * 0xAD) are moved, in byte order, to U+0100 onwards. A space becomes `Ġ`
 * (U+0120) and a newline `Ċ` (U+010A).
 *
 * @module
 */

function isPrintableByte(byte: number): boolean {
  return (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) ||
    (byte >= 0xae && byte <= 0xff);
}

function buildByteToChar(): string[] {
  const table = new Array<string>(256);
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    const codePoint = isPrintableByte(byte) ? byte : 256 + shifted++;
    table[byte] = String.fromCharCode(codePoint);
  }
  return table;
}

/** The character that stands for each byte: `BYTE_TO_CHAR[0x20] === "Ġ"`. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/**
 * The byte each byte-level character stands for, indexed by UTF-16 code unit
 * (all 256 characters are below U+0144); -1 for characters that stand for no byte.
 */
export const CHAR_CODE_TO_BYTE: Int16Array = (() => {
  const table = new Int16Array(0x144).fill(-1);
  BYTE_TO_CHAR.forEach((char, byte) => table[char.charCodeAt(0)] = byte);
  return table;
})();

/**
 * The 256 byte-level characters sorted by code point, the order in which a
 * trainer with the full byte alphabet numbers them (and GPT-2's first 256 ids).
 */
export const BYTE_ALPHABET: readonly string[] = [...BYTE_TO_CHAR].sort((a, b) =>
  a.charCodeAt(0) - b.charCodeAt(0)
);

/** Spells bytes with their byte-level characters: `[0x20, 0x68, 0x69]` → `"Ġhi"`. */
export function bytesToSymbols(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += BYTE_TO_CHAR[bytes[i]];
  return out;
}

/**
 * Reads a byte-level string back into bytes; throws on a character that stands
 * for no byte, since that means the string was not produced by {@link bytesToSymbols}.
 */
export function symbolsToBytes(symbols: string): Uint8Array {
  const bytes = new Uint8Array(symbols.length);
  for (let i = 0; i < symbols.length; i++) {
    const code = symbols.charCodeAt(i);
    const byte = code < CHAR_CODE_TO_BYTE.length ? CHAR_CODE_TO_BYTE[code] : -1;
    if (byte < 0) {
      throw new Error(
        `The character ${JSON.stringify(symbols[i])} in ${
          JSON.stringify(symbols)
        } is not a byte-level symbol; ` +
          "byte-level tokens may only use GPT-2's 256 byte characters.",
      );
    }
    bytes[i] = byte;
  }
  return bytes;
}
