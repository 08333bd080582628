import assert from "node:assert/strict";
import { escapeControlCharacters } from "../../pipeline/_terminal.ts";

Deno.test("escapeControlCharacters() shows control characters, keeps text, tabs and newlines", () => {
  assert.equal(
    escapeControlCharacters("a\x1b[2Jb\x00c\rd\x7f\x9be"),
    "a\\x1b[2Jb\\x00c\\x0dd\\x7f\\x9be",
  );
  const text = "Café 東京 😀\tnext\nline";
  assert.equal(escapeControlCharacters(text), text);
});
