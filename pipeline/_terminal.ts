/**
 * Text a model writes, shown on a terminal. An untrained or broken model writes any bytes,
 * control characters among them: ESC sequences would move the cursor, change colours or the
 * window title. On a terminal they are shown escaped; files and pipes get the text unchanged.
 */

/** C0 controls but tab and line feed, DEL, and the C1 controls: escaped as `\x1b`, `\x9b`. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/** `text` with every control character but tab and line feed written as `\xNN`. */
export function escapeControlCharacters(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/**
 * A writer of text to standard output, synchronous (for streaming): escaped with
 * {@linkcode escapeControlCharacters} when standard output is a terminal, as is otherwise.
 */
export function stdoutWriter(): (text: string) => void {
  const encoder = new TextEncoder();
  const terminal = Deno.stdout.isTerminal();
  return (text) => {
    const bytes = encoder.encode(terminal ? escapeControlCharacters(text) : text);
    // writeSync may write part of the buffer; write the rest.
    for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
  };
}

/** A warning line on standard error (`warning: ...`). */
export function warn(message: string): void {
  console.error(`warning: ${message}`);
}
