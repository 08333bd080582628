/**
 * Writing Markdown that shows text as it is: escaping for prose and table cells, and code fences
 * that no text can close early.
 *
 * @module
 */

import { escapeXml } from "./_svg_plot.ts";

/** `text` verbatim in a code fence longer than any run of backticks inside it. */
export function fenced(text: string): string[] {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = "`".repeat(Math.max(3, longest + 1));
  return [`${fence}text`, text.replace(/\r\n?/g, "\n").replace(/\n$/, ""), fence];
}

/**
 * Escapes `text` for Markdown prose or a table cell: HTML's `& < >` as entities, the
 * characters of Markdown's inline markup (and the table's `|`) with a backslash (none of this
 * text starts a line, so line-start markers like `#` need nothing), line breaks as `<br>`.
 */
export function escapeMarkdown(text: string): string {
  return escapeXml(text).replace(/&apos;/g, "'").replace(/&quot;/g, '"')
    .replace(/[\\`*_[\]|~]/g, (c) => `\\${c}`)
    .replace(/\r\n?|\n/g, "<br>");
}

/** A Markdown table; the cells must already be escaped. */
export function table(header: string[], rows: string[][]): string[] {
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => " --- ").join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ];
}
