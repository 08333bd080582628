import assert from "node:assert/strict";
import {
  completeSentences,
  distinctBigramRatio,
  shuffleWords,
  splitSentences,
  topicWordsUsed,
} from "../../pipeline/_eval_scoring.ts";
import {
  grammarScore,
  linkGrammarParses,
  MAX_SENTENCE_WORDS,
  verdictsOf,
} from "../../pipeline/_link_grammar.ts";
import { scoreSamples } from "../../pipeline/eval_scores.ts";
import { EVAL_PROMPTS, EVAL_QUESTIONS } from "../../pipeline/eval_prompts.ts";
import { evaluateModel } from "../../pipeline/eval.ts";
import { IM_END, IM_START } from "../../pipeline/chatml.ts";
import { tokenizeDataset } from "../../pipeline/tokenize_dataset.ts";
import { loadTokenizedDataset } from "../../pipeline/token_rows.ts";
import { splitRows } from "../../pipeline/batches.ts";
import { GPT2 } from "../../nn/gpt2.ts";
import { saveCheckpoint } from "../../nn/checkpoint.ts";
import { readSafetensors, writeSafetensors } from "../../nn/safetensors.ts";
import { BpeTokenizer } from "../../tokenizer/bpe.ts";
import { saveHfTokenizer } from "../../tokenizer/hf_json.ts";
import { countWords } from "../../tokenizer/word_counts.ts";
import { trainBpe } from "../../tokenizer/train_bpe.ts";
import { testGpu } from "../_gpu.ts";

/** A human-written paragraph (written for this test): plain, grammatical English. */
const REFERENCE = [
  "The village sat at the edge of a quiet lake.",
  "Every morning, the baker opened his shop before the sun came up.",
  "Children walked to school along the muddy road.",
  "Their mothers waved from the windows of the small houses.",
  "In the afternoon, the old fisherman mended his nets on the beach.",
  "He told stories about storms that he had seen as a young man.",
  "Nobody knew whether the stories were true.",
  "When winter came, the lake froze and the people skated on the ice.",
  "The baker sold hot bread and sweet cakes to the skaters.",
  "At night, the houses were warm and the windows glowed with yellow light.",
  "My sister wants to become a doctor because she likes helping people.",
  "We should leave early if we want to catch the first train.",
];

Deno.test("splitSentences() splits after end marks, keeps abbreviations and quotes, marks the cut end", () => {
  const text = 'Mr. Brown went out. "Hello!" said Tom. It was 5 p.m. at St. Mary\'s.\n\n' +
    "1. **Food**: rice is good.\n- Tea is hot\nThe story ended wi";
  assert.deepEqual(splitSentences(text), [
    { text: "Mr. Brown went out.", complete: true },
    { text: '"Hello!" said Tom.', complete: true },
    { text: "It was 5 p.m. at St. Mary's.", complete: true },
    { text: "Food: rice is good.", complete: true },
    { text: "Tea is hot", complete: false },
    { text: "The story ended wi", complete: false },
  ]);
  assert.deepEqual(completeSentences("Is it? Yes! No... 42. ."), ["Is it?", "Yes!", "No..."]);
  assert.deepEqual(completeSentences(""), []);
});

Deno.test("distinctBigramRatio() is near 1 for prose and low for a repetition loop", () => {
  assert.equal(distinctBigramRatio("The cat sat on the mat."), 1);
  // 8 bigrams, 2 distinct: "the cat", "cat the".
  assert.equal(distinctBigramRatio("the cat the cat the cat the cat the"), 2 / 8);
  assert.equal(distinctBigramRatio("Hello."), null);
  assert.ok(distinctBigramRatio(REFERENCE.join(" "))! > 0.95);
});

Deno.test("topicWordsUsed() matches whole words with common endings, not parts of words", () => {
  const words = ["sky", "blue", "light", "sun", "air"];
  assert.deepEqual(
    topicWordsUsed("Sunlight scatters in the SKIES, and the lights look bluish.", words),
    ["sky", "light"],
  );
  assert.deepEqual(topicWordsUsed("The chair is comfortable.", words), []);
  assert.deepEqual(topicWordsUsed("It is in Paris, the capital.", ["Paris", "capital"]), [
    "Paris",
    "capital",
  ]);
  assert.deepEqual(topicWordsUsed("They played ice hockey.", ["ice cream", "ice"]), ["ice"]);
  assert.deepEqual(topicWordsUsed("I love ice cream!", ["ice cream"]), ["ice cream"]);
});

Deno.test("verdictsOf() reads link-parser's echoed output, second tries and all", () => {
  const output = [
    "null set to 0",
    "The cat sat.",
    "Found 2 linkages (2 had no P.P. violations)",
    "\tLinkage 1, cost vector = (UNUSED=0 DIS= 0.00 LEN=4)",
    " (m)   the     D     ----Ds----  Ds     cat.n",
    "Zip saw the gloopy toy.",
    "Found 6 linkages (6 had no P.P. violations)",
    " (m)   LEFT-WALL   hWd   >---Wd-----  Wd   Zip[!]",
    " (m) (e)   the   D   ----D*u----  D*u   gloopy[?].n",
    " (m) (e)   saw.v-d   O   ----Os----  Os   sun-drenched[!]",
    "Cat the sat.",
    "No complete linkages found.",
    "Indeed, many trips are sponsored.",
    "No complete linkages found.",
    "Found 1980 linkages (0 of 1000 random linkages had no P.P. violations)",
    "A long sentence.",
    "Found 5000 linkages (12 of 1000 random linkages had no P.P. violations)",
    "Bye.",
  ].join("\n");
  const sentences = [
    "The cat sat.",
    "Zip saw the gloopy toy.",
    "Cat the sat.",
    "Indeed, many trips are sponsored.",
    "A long sentence.",
  ];
  // Guessed words: a name (capitalized) and a compound (hyphenated) are not listed.
  assert.deepEqual(verdictsOf(output, sentences), [
    { linked: true, guessedWords: [] },
    { linked: true, guessedWords: ["gloopy"] },
    { linked: false, guessedWords: [] },
    { linked: false, guessedWords: [] },
    { linked: true, guessedWords: [] },
  ]);
  // A sentence without a verdict (the parser stopped early) is an error, not a guess.
  assert.equal(verdictsOf(output, [...sentences, "Never parsed."]), null);
});

Deno.test("link-grammar links a human-written paragraph and rejects its words shuffled", async () => {
  const written = await grammarScore(REFERENCE);
  const shuffled = await grammarScore(REFERENCE.map((s, i) => shuffleWords(s, i + 1)));
  assert.ok(written >= 0.9, `written: ${written}`);
  assert.ok(shuffled <= 0.25, `shuffled: ${shuffled}`);
  // Agreement errors are rejected; blanks are not sentences; a "!" cannot become a command.
  assert.deepEqual(
    await linkGrammarParses([
      "The dogs is happy.",
      "",
      "!The dog runs fast.",
      "’Tis a cat’s toy.",
    ]),
    [false, false, true, true],
  );
});

Deno.test("a run-on line of hundreds of words is not linked, and the lines around it still are", async () => {
  // Such a line made link-parser exit, which lost every verdict of the batch.
  const runOn = Array.from({ length: 60 }, (_, i) => `Book ${i} / 978-08155${i} / Title`).join(" ");
  assert.ok(runOn.split(" ").length > MAX_SENTENCE_WORDS);
  assert.deepEqual(
    await linkGrammarParses(["The cat sat on the mat.", runOn, "The dog barked at the door."]),
    [true, false, true],
  );
});

Deno.test("a missing link-parser is an error that says how to install it", async () => {
  await assert.rejects(
    linkGrammarParses(["The cat sat."], { command: "link-parser-not-installed" }),
    /apt-get install link-grammar/,
  );
});

Deno.test("scoreSamples() scores completions and answers on fixed text", async () => {
  const { completions, answers, figures } = await scoreSamples(
    [
      // The prompt's own finished sentence is not the model's; its unfinished one is completed.
      {
        prompt: "The old man walked to the bus stop. He",
        text: " sat down on the bench. The bus was late. He waited and",
      },
      { prompt: "Once upon a time", text: " the cat the cat the cat the cat the cat." },
      { prompt: "The toy", text: " was very gloopy. It fell." },
    ],
    [
      {
        question: "Why is the sky blue?",
        topicWords: ["sky", "blue", "light"],
        answer: "Sunlight is scattered by the air. Blue light is scattered the most.",
        endedByItself: true,
      },
      {
        question: "What do bees do?",
        topicWords: ["bee", "honey"],
        answer: "The train leaves at noon and",
        endedByItself: false,
      },
    ],
  );
  assert.deepEqual(completions[0].sentences, ["He sat down on the bench.", "The bus was late."]);
  assert.deepEqual(completions[0].linked, [true, true]);
  assert.deepEqual(completions[1].sentences, [
    "Once upon a time the cat the cat the cat the cat the cat.",
  ]);
  assert.deepEqual(completions[1].linked, [false]);
  // An invented word links, but not among known words only.
  assert.deepEqual(completions[2].linked, [true, true]);
  assert.deepEqual(completions[2].guessedWords, ["gloopy"]);
  assert.equal(figures.sentencesPerCompletion, 5 / 3);
  assert.equal(figures.grammar, 4 / 5);
  assert.equal(figures.grammarKnownWords, 3 / 5);
  assert.equal(completions[1].distinctBigrams, 2 / 9);
  assert.deepEqual(answers[0].topicWordsUsed, ["blue", "light"]);
  assert.deepEqual(answers[1].topicWordsUsed, []);
  assert.equal(figures.onTopic, 1 / 2);
  assert.equal(figures.endsByThemselves, 1 / 2);
  assert.equal(figures.answerGrammar, 1); // the unfinished answer has no sentence to parse
  assert.equal(figures.answerGrammarKnownWords, 1);
  assert.equal(figures.valLoss, undefined);

  const noGrammar = await scoreSamples([{ prompt: "A", text: " b." }], [], { grammar: false });
  assert.equal(noGrammar.figures.grammar, undefined);
  assert.equal(noGrammar.completions[0].linked, undefined);
});

Deno.test("the fixed prompts and questions are varied and every question has topic words", () => {
  assert.ok(EVAL_PROMPTS.length >= 20 && EVAL_QUESTIONS.length >= 20);
  assert.equal(new Set(EVAL_PROMPTS).size, EVAL_PROMPTS.length);
  for (const { question, topicWords } of EVAL_QUESTIONS) {
    assert.ok(topicWords.length >= 3, question);
  }
});

Deno.test("evaluateModel() measures a checkpoint end to end and writes JSON Lines", async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  try {
    const text = REFERENCE.join("\n");
    const tokenizer = BpeTokenizer.fromTrained(
      trainBpe(await countWords([REFERENCE]), { vocabSize: 300 }),
    );
    await Deno.mkdir(`${dir}/tokenizer`);
    await saveHfTokenizer(tokenizer, `${dir}/tokenizer/tokenizer.json`);
    await Deno.writeTextFile(`${dir}/text.txt`, Array(8).fill(text).join("\n"));
    await tokenizeDataset({
      data: `${dir}/text.txt`,
      tokenizer,
      contextLength: 32,
      out: `${dir}/tokenized`,
      quiet: true,
    });
    const shape = { contextLength: 32, nLayer: 1, nHead: 2, nEmbd: 16 };
    const pretrained = GPT2.init(gpu, { ...shape, vocabSize: tokenizer.vocabSize }, 1);
    await saveCheckpoint(`${dir}/pretrained.safetensors`, pretrained, {
      config: pretrained.config,
      step: 0,
    });
    pretrained.dispose();

    // A "tuned" model that always says <|im_end|> at once: the final layer norm outputs the same
    // vector c everywhere, and only <|im_end|>'s (tied) embedding points along it.
    const tunedTokenizer = BpeTokenizer.fromTrained(
      trainBpe(await countWords([REFERENCE]), { vocabSize: 300 }),
    );
    tunedTokenizer.addTokens([IM_START, IM_END], { special: true });
    await Deno.mkdir(`${dir}/tuned-tokenizer`);
    await saveHfTokenizer(tunedTokenizer, `${dir}/tuned-tokenizer/tokenizer.json`);
    const tuned = GPT2.init(gpu, { ...shape, vocabSize: tunedTokenizer.vocabSize }, 2);
    await saveCheckpoint(`${dir}/tuned.safetensors`, tuned, { config: tuned.config, step: 0 });
    tuned.dispose();
    const file = await readSafetensors(`${dir}/tuned.safetensors`);
    const imEnd = tunedTokenizer.tokenToId(IM_END)!;
    const wte = file.tensors.get("wte")!.data.fill(0);
    wte.fill(1, imEnd * 16, (imEnd + 1) * 16);
    file.tensors.get("ln_f.weight")!.data.fill(0);
    file.tensors.get("ln_f.bias")!.data.fill(10);
    await writeSafetensors(
      `${dir}/tuned.safetensors`,
      [...file.tensors].map(([name, t]) => ({ name, ...t })),
      file.metadata,
    );

    const questions = EVAL_QUESTIONS.slice(0, 2);
    const summary = await evaluateModel({
      gpu,
      pretrained: `${dir}/pretrained.safetensors`,
      tokenizer: `${dir}/tokenizer`,
      validation: `${dir}/tokenized`,
      batchSize: 2,
      tuned: `${dir}/tuned.safetensors`,
      tunedTokenizer: `${dir}/tuned-tokenizer`,
      prompts: ["The village", "Every morning"],
      questions,
      maxNewTokens: 6,
      maxAnswerTokens: 4,
      samples: 2,
      out: `${dir}/eval`,
      quiet: true,
    });

    // Validation: the held-out rows (the last 5%, at least one batch), in nats and bits per byte.
    const dataset = await loadTokenizedDataset(`${dir}/tokenized`);
    const v = summary.validation!;
    let tokens = 0, bytes = 0;
    const held = splitRows(dataset.meta.rows, 0.05, 2).validation!;
    const read = held.count - (held.count % 2); // whole batches of 2
    assert.ok(read >= 2);
    for (let row = held.first; row < held.first + read; row++) {
      const ids = [...dataset.tokens.subarray(row * 32 + 1, row * 32 + dataset.lengths[row])];
      tokens += ids.length;
      bytes += new TextEncoder().encode(tokenizer.decode(ids, { skipSpecialTokens: true })).length;
    }
    assert.equal(v.tokens, tokens);
    assert.equal(v.bytes, bytes);
    // An untrained model is near uniform: about ln(300) nats per token.
    assert.ok(Math.abs(v.loss - Math.log(300)) < 1, `loss ${v.loss}`);
    assert.ok(Math.abs(v.bitsPerByte - (v.loss * tokens) / (Math.LN2 * bytes)) < 1e-9);
    assert.equal(summary.figures.valLoss, v.loss);
    assert.equal(summary.figures.bitsPerByte, v.bitsPerByte);

    // Two draws of each, draw by draw; the first draw is what one draw alone gives.
    assert.deepEqual(summary.completions.map((c) => c.prompt), [
      "The village",
      "Every morning",
      "The village",
      "Every morning",
    ]);
    assert.ok(summary.completions.every((c) => c.text.length > 0));
    assert.notEqual(summary.completions[0].text, summary.completions[2].text);
    const once = await evaluateModel({
      gpu,
      pretrained: `${dir}/pretrained.safetensors`,
      tokenizer: `${dir}/tokenizer`,
      prompts: ["The village", "Every morning"],
      maxNewTokens: 6,
      samples: 1,
      grammar: false,
      quiet: true,
    });
    assert.deepEqual(
      once.completions.map((c) => c.text),
      [0, 1].map((i) => summary.completions[i].text),
    );
    assert.deepEqual(
      summary.answers.map((a) => [a.answer, a.endedByItself]),
      Array(4).fill(["", true]),
    );
    assert.equal(summary.figures.endsByThemselves, 1);
    assert.equal(summary.figures.onTopic, 0);

    // Rows longer than the model's context are refused, saying how to tokenize them.
    await tokenizeDataset({
      data: `${dir}/text.txt`,
      tokenizer,
      contextLength: 64,
      out: `${dir}/tokenized64`,
      quiet: true,
    });
    await assert.rejects(
      evaluateModel({
        gpu,
        pretrained: `${dir}/pretrained.safetensors`,
        tokenizer: `${dir}/tokenizer`,
        validation: `${dir}/tokenized64`,
        batchSize: 2,
        prompts: [],
        quiet: true,
      }),
      /rows of 64 tokens, longer than the model's context of 32; pass a validation set tokenized with --context 32 or less/,
    );

    const lines = async (name: string) =>
      (await Deno.readTextFile(`${dir}/eval/${name}`)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(await lines("completions.jsonl"), summary.completions);
    assert.deepEqual(await lines("answers.jsonl"), summary.answers);
    const written = JSON.parse(await Deno.readTextFile(`${dir}/eval/eval.json`));
    assert.deepEqual(written.figures, summary.figures);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
