/**
 * The grammar check of the eval: the share of sentences that the link-grammar parser (Carnegie
 * Mellon's, Debian package `link-grammar`) links fully, i.e. finds a linkage of every word with
 * no null links and no post-processing violation. All sentences go through one `link-parser`
 * process (its dictionary loads once; a sentence takes milliseconds), one sentence per line.
 *
 * The parser is told `!null=0` (no linkage with skipped words is searched for), `!spell=0` (no
 * misspelt word is silently replaced by a dictionary word), `!echo=1` and `!links=1`: each
 * sentence is echoed, then followed by one or more status lines, `Found N linkages (M had no
 * P.P. violations)` (`M of K random linkages` when N is large) or `No complete linkages found.`
 * (a second try may follow a failed one), and the links of the first linkage. A sentence is
 * linked when a status line has M > 0.
 *
 * The parser guesses a part of speech for a word its dictionary lacks (marked `[!]` or `[?]` in
 * the links), so invented words ("the gloopy toy", "soming canting") can still link. The
 * verdict lists the lower-case, unhyphenated words it guessed (capitalized ones are taken to be
 * names, hyphenated ones compounds), so that a stricter score can count those sentences out.
 *
 * @module
 */

/** How to get the parser, for error messages. */
export const LINK_PARSER_INSTALL: string =
  "install link-grammar (Debian/Ubuntu: sudo apt-get install link-grammar; it is needed by the " +
  "eval only)";

/** Seconds after which the parser gives up on one sentence (counted as not linked). */
const SENTENCE_TIMEOUT_S = 5;

/**
 * Words above which a "sentence" is not sent to the parser and counts as not linked: link-parser
 * 5.12 exits on a line of a few hundred words (a FineWeb page's list of book titles, or a model's
 * run-on text without a full stop), which would lose every verdict of the batch.
 */
export const MAX_SENTENCE_WORDS = 120;

/** Options of {@linkcode linkGrammarVerdicts}. */
export interface LinkGrammarOptions {
  /** The parser's command. Default `link-parser` (on the PATH). */
  command?: string;
}

/** What link-grammar made of one sentence. */
export interface LinkVerdict {
  /** A complete linkage was found: every word linked, no post-processing violation. */
  linked: boolean;
  /**
   * Lower-case, unhyphenated words of the linkage that the dictionary lacks and the parser
   * guessed (an invented or misspelt word, or a rare one); empty when not linked.
   */
  guessedWords: string[];
}

/**
 * What link-grammar makes of each sentence. Each sentence must be one line of text; line breaks
 * inside one are read as spaces. A blank sentence is not linked.
 *
 * @throws when `link-parser` is missing (the message says how to install it) or its output
 * cannot be read.
 */
export async function linkGrammarVerdicts(
  sentences: readonly string[],
  { command = "link-parser" }: LinkGrammarOptions = {},
): Promise<LinkVerdict[]> {
  if (sentences.length === 0) return [];
  // Typographic quotes become ASCII ones: the dictionary splits "can't" but not "can’t". A
  // line starting with "!" would be a parser command: the mark is dropped.
  const lines = sentences.map((s) =>
    s.replace(/\s+/g, " ").replace(/[‘’]/g, "'").replace(/[“”]/g, '"').trim()
      .replace(/^[!*%]+\s*/, "")
  ).map((line) => line.split(" ").length > MAX_SENTENCE_WORDS ? "" : line);
  const sent = lines.filter((line) => line !== "");
  const input = [
    "!null=0",
    "!spell=0",
    "!graphics=0",
    "!links=1",
    "!verbosity=1",
    "!echo=1",
    `!timeout=${SENTENCE_TIMEOUT_S}`,
    ...sent,
    "",
  ].join("\n");
  let child;
  try {
    child = new Deno.Command(command, {
      args: ["en"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      // The dictionary is UTF-8; the parser warns (harmlessly) about any other locale.
      env: { LANG: "C.UTF-8", LC_ALL: "C.UTF-8" },
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`The grammar score needs link-grammar's ${command}: ${LINK_PARSER_INSTALL}.`);
    }
    throw error;
  }
  const writer = child.stdin.getWriter();
  const [output] = await Promise.all([
    child.output(),
    // A parser that exits early closes its input: its exit status says what went wrong.
    writer.write(new TextEncoder().encode(input)).then(() => writer.close()).catch(() => {}),
  ]);
  const verdicts = output.success
    ? verdictsOf(new TextDecoder().decode(output.stdout), sent)
    : null;
  if (verdicts === null) {
    const stderr = new TextDecoder().decode(output.stderr).trim().split("\n").slice(-3).join(" ");
    throw new Error(
      `The output of ${command} (exit status ${output.code}) does not give a verdict for each ` +
        `of the ${sent.length} sentences${stderr ? ` (${stderr})` : ""}; ${LINK_PARSER_INSTALL}.`,
    );
  }
  let next = 0;
  return lines.map((line) => line !== "" ? verdicts[next++] : { linked: false, guessedWords: [] });
}

/** Whether link-grammar links each sentence fully; see {@linkcode linkGrammarVerdicts}. */
export async function linkGrammarParses(
  sentences: readonly string[],
  options: LinkGrammarOptions = {},
): Promise<boolean[]> {
  return (await linkGrammarVerdicts(sentences, options)).map((v) => v.linked);
}

/**
 * Each sentence's verdict from link-parser's output with `!echo=1` and `!links=1`: the lines
 * between a sentence's echo and the next one's. Null when a sentence has no echo or no status.
 */
export function verdictsOf(stdout: string, sentences: readonly string[]): LinkVerdict[] | null {
  const found: (boolean | null)[] = [], guessed: Set<string>[] = [];
  for (const line of stdout.split("\n")) {
    const k = found.length;
    if (k < sentences.length && line.trim() === sentences[k]) {
      found.push(null);
      guessed.push(new Set());
      continue;
    }
    if (k === 0) continue; // the parser's settings, before the first sentence
    const status =
      /^Found (\d+) linkages? \((\d+)( of \d+ random linkages)? had no P\.P\. violations\)/
        .exec(line);
    if (status) {
      found[k - 1] = (found[k - 1] ?? false) || Number(status[2]) > 0;
    } else if (line.startsWith("No complete linkages found")) {
      found[k - 1] ??= false;
    } else {
      // A link line names its two words; a guessed one carries [!] or [?] (and a subscript).
      for (const [, word] of line.matchAll(/(?:^|\s)(\p{Ll}[^\s\[]*)\[[!?~]\]/gu)) {
        if (!word.includes("-")) guessed[k - 1].add(word);
      }
    }
  }
  if (found.length !== sentences.length || found.some((v) => v === null)) return null;
  return found.map((linked, k) => ({
    linked: linked === true,
    guessedWords: linked ? [...guessed[k]] : [],
  }));
}

/** The share of `sentences` that link-grammar links fully (0 for none). */
export async function grammarScore(
  sentences: readonly string[],
  options: LinkGrammarOptions = {},
): Promise<number> {
  if (sentences.length === 0) return 0;
  const parses = await linkGrammarParses(sentences, options);
  return parses.filter(Boolean).length / parses.length;
}

/** Whether link-grammar's parser can be run (`link-parser --version` succeeds). */
export async function linkParserAvailable(command = "link-parser"): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(command, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}
