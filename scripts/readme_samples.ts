/**
 * Prints the README's sample blocks for a main-job work folder, unedited: the first N
 * completions (prompt, then the model's text) and the first N chat answers of its eval, exactly
 * as `deno task eval` wrote them to `eval/completions.jsonl` and `eval/answers.jsonl`.
 *
 *     deno run --allow-read scripts/readme_samples.ts --work runs/main --count 10
 *
 * @module
 */

import { HELP_FLAG, parseFlags } from "../util/flags.ts";

const values = parseFlags("deno run --allow-read scripts/readme_samples.ts [options]", {
  work: { type: "string", default: "runs/main", help: "a main-job work folder that eval ran in" },
  count: { type: "string", default: "10", help: "completions and answers to print" },
  ...HELP_FLAG,
});
if (!values) Deno.exit(0);
const count = Number(values.count);
const read = async (name: string) =>
  (await Deno.readTextFile(`${values.work}/eval/${name}`)).trim().split("\n")
    .map((line) => JSON.parse(line));

const completions = await read("completions.jsonl");
const answers = await read("answers.jsonl");
const fence = "```";
console.log(
  `Completions, each the prompt followed by the model's 120 tokens exactly as written to\n` +
    `\`${values.work}/eval/completions.jsonl\` (the first ${count} of ${completions.length}; ` +
    "`---` separates them):\n",
);
console.log(`${fence}text`);
console.log(completions.slice(0, count).map((c) => c.prompt + c.text).join("\n---\n"));
console.log(`${fence}\n`);
console.log(
  `The tuned model's answers, exactly as written to \`${values.work}/eval/answers.jsonl\` ` +
    `(the first ${count} of ${answers.length};\n\`[ended]\` marks an answer the model ended ` +
    "with `<|im_end|>`):\n",
);
console.log(`${fence}text`);
console.log(
  answers.slice(0, count)
    .map((a) => `Q: ${a.question}\nA: ${a.answer}${a.endedByItself ? " [ended]" : ""}`)
    .join("\n---\n"),
);
console.log(fence);
