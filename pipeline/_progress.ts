/**
 * A one-line progress bar on stderr with rate and time left, for any
 * pipeline stage. On a terminal it redraws in place at most every 100 ms; when
 * stderr is not a terminal (CI logs, pipes) it prints a line at most every few
 * seconds, so logs stay short.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Options for {@link ProgressBar}. */
export interface ProgressBarOptions {
  /** Unit for the rate, e.g. `"merges"` → `1234 merges/s`. */
  unit?: string;
  /** Print nothing at all (tests, `--quiet`). */
  silent?: boolean;
  /** Bar width in characters. Default 30. */
  width?: number;
  /** Work already done before this run (a resumed run); it does not count in the rate. */
  start?: number;
}

/** Tracks work done out of a total and draws it with rate and ETA. */
export class ProgressBar {
  readonly #label: string;
  #total: number;
  readonly #unit: string;
  readonly #silent: boolean;
  readonly #width: number;
  readonly #interactive: boolean;
  readonly #start = performance.now();
  #lastDraw = -Infinity;
  #done = 0;
  readonly #startDone: number;
  #status = "";

  /** @param total the amount of work; 0 when unknown (no bar, no ETA) */
  constructor(label: string, total: number, options: ProgressBarOptions = {}) {
    this.#label = label;
    this.#total = total;
    this.#unit = options.unit ?? "items";
    this.#silent = options.silent ?? false;
    this.#width = options.width ?? 30;
    this.#interactive = Deno.stderr.isTerminal();
    this.#startDone = this.#done = options.start ?? 0;
  }

  /**
   * Sets the amount done (and, optionally, a revised total and a short status such as the
   * current loss) and redraws if due.
   */
  update(done: number, total: number = this.#total, status?: string): void {
    this.#done = done;
    this.#total = total;
    if (status !== undefined) this.#status = status;
    const now = performance.now();
    if (now - this.#lastDraw < (this.#interactive ? 100 : 5000)) return;
    this.#lastDraw = now;
    this.#draw(now, false);
  }

  /** Adds to the amount done. */
  increment(amount = 1): void {
    this.update(this.#done + amount);
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    this.#draw(performance.now(), true);
  }

  #draw(now: number, final: boolean): void {
    if (this.#silent) return;
    const seconds = (now - this.#start) / 1000;
    const rate = seconds > 0 ? (this.#done - this.#startDone) / seconds : 0;
    let line = `${this.#label} `;
    if (this.#total > 0) {
      const fraction = Math.min(1, this.#done / this.#total);
      const filled = Math.round(fraction * this.#width);
      line += `[${"#".repeat(filled)}${".".repeat(this.#width - filled)}] ` +
        `${this.#done}/${this.#total} `;
    } else {
      line += `${this.#done} `;
    }
    line += `${formatCount(rate)} ${this.#unit}/s`;
    if (this.#status) line += ` ${this.#status}`;
    if (final) {
      line += ` in ${formatDuration(seconds)}`;
    } else if (this.#total > 0 && rate > 0) {
      line += ` ETA ${formatDuration(Math.max(0, this.#total - this.#done) / rate)}`;
    }
    const text = this.#interactive ? `\r${line}\x1b[K${final ? "\n" : ""}` : `${line}\n`;
    Deno.stderr.writeSync(encoder.encode(text));
  }
}

function formatCount(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)}M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(x >= 10 ? 0 : 1);
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}
