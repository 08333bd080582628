import assert from "node:assert/strict";
import { BRIEF_KINDS, briefPairs, isCleanSentence, sentences } from "../../pipeline/brief_pairs.ts";
import { BUNDLED_SNAKES_QA_BRIEF } from "../../pipeline/bundled_data.ts";
import { readRecordBatches } from "../../pipeline/text_source.ts";

Deno.test("briefPairs() keeps an explanation's first sentences about its subject, and its questions", () => {
  const [brief, section, ...rest] = briefPairs({
    instruction: "Explain clouds in simple terms.",
    output: "Clouds! They're like big puffy pillows.\n\n**What are clouds made of?**\n\n" +
      "Clouds are made up of tiny water droplets that float in the air. These droplets are so " +
      "small you can't see them one by one. When there are many, they form a cloud. A fourth " +
      "sentence is never kept.\n\n1. **Evaporation**: The sun heats the water.\n\n" +
      "### Why do clouds float?\n\nThe droplets are so light that rising air holds them up.\n\n" +
      "**How does it work?**\n\nA heading without the subject is not a question to keep.",
    source: "llama-explanations",
  });
  assert.equal(rest.length, 0);
  assert.equal(brief.source, "brief-llama-explanations");
  assert.match(brief.instruction, /clouds/);
  assert.equal(
    brief.output,
    "Clouds are made up of tiny water droplets that float in the air. These droplets are so " +
      "small you can't see them one by one. When there are many, they form a cloud.",
  );
  // "What are clouds made of?" answers with the same paragraph, so only the next one is new.
  assert.deepEqual([section.instruction, section.output], [
    "Why do clouds float?",
    "The droplets are so light that rising air holds them up.",
  ]);
});

Deno.test("briefPairs() answers a word task with one example, or a synonym in a sentence", () => {
  const examples = briefPairs({
    instruction: "Generate example sentences using the word 'burn'.",
    output: 'Here are some example sentences using the word "burn":\n\n' +
      "1. **Physical harm**: The fire made everything burn to ashes in minutes.\n" +
      "\t* In this context, it means to destroy.\n" +
      '2. **Pain**: "Her eyes burned with tears as she waved goodbye."\n' +
      "3. **Energy**: We burn calories when we run around the park.\n",
    source: "llama-sentences",
  });
  assert.deepEqual(examples.map((p) => p.output), [
    "The fire made everything burn to ashes in minutes.",
  ]);
  assert.match(examples[0].instruction, /'burn'/);

  const [synonym] = briefPairs({
    instruction: "Provide synonyms for the word 'help'.",
    output: 'Here are some synonyms for the word "help":\n\n1. **Aid**: To give support.\n' +
      "2. **Support**: To hold up.\n3. **Help**: the word itself.\n4. **Assistance**: Help.",
    source: "llama-synonyms",
  });
  assert.match(synonym.instruction, /help/);
  // Labels, other languages and the word's own forms are not synonyms; a list by sense is skipped.
  const [labelled] = briefPairs({
    instruction: "Provide synonyms for the word 'one'.",
    output:
      "1. **Synonyms**: words.\n2. **Een** (Dutch)\n3. **Ones**: plural.\n4. **Single**: one.",
    source: "llama-synonyms",
  });
  assert.match(labelled.output, / one is single\.$/);
  assert.deepEqual(
    briefPairs({
      instruction: "Provide synonyms for the word 'key'.",
      output: "**Meaning 1**\n\nSynonyms: main, chief\n\n1. **Main**: first.",
      source: "llama-synonyms",
    }),
    [],
  );
  assert.match(
    synonym.output,
    /^(?:Another word|A synonym|A word that means the same as) .*help is aid\. You could also say support or assistance\.$/,
  );
});

Deno.test("briefPairs() asks for a tale by its hero and keeps its first paragraphs", () => {
  const paragraph = (n: number) =>
    `Paragraph ${n} tells how Winnie played in the garden with her friends all day long.`;
  const output = [1, 2, 3, 4, 5, 6, 7, 8].map(paragraph).join("\n\n");
  const [tale] = briefPairs({
    instruction: "Tell the child-appropriate tale called `Winnie and the Sunshine Surprise`.",
    output,
    source: "generated-child",
  });
  assert.match(tale.instruction, /Winnie\b/);
  // 15 words a paragraph: the first four reach 60 words.
  assert.equal(tale.output, [1, 2, 3, 4].map(paragraph).join("\n\n"));
  // No hero to ask for ("The ..."): no pair.
  assert.deepEqual(
    briefPairs({
      instruction: "Tell the child-appropriate tale called `The Big Day`.",
      output,
      source: "generated-child",
    }),
    [],
  );
});

Deno.test("briefPairs() gives nothing for other kinds, inputs, or answers without clean prose", () => {
  assert.deepEqual(briefPairs({ instruction: "Who?", output: "Nobody at all.", source: "x" }), []);
  assert.deepEqual(briefPairs({ instruction: "Explain x in simple terms.", output: "" }), []);
  assert.deepEqual(
    briefPairs({
      instruction: "Explain tides in simple terms.",
      input: "some context",
      output: "Tides are the rise and fall of the sea level every day.",
      source: "llama-explanations",
    }),
    [],
  );
  assert.deepEqual(
    briefPairs({
      instruction: "Explain tides in simple terms.",
      output: "**Tides**\n\n* Rise\n* Fall\n\nHere's what I think about tides, friends!",
      source: "llama-explanations",
    }),
    [],
  );
  // An opening that leans on a sentence before it is no answer.
  assert.deepEqual(
    briefPairs({
      instruction: "Explain black holes in simple terms.",
      output: "Stars can collapse.\n\nThese stars are called black holes by the scientists.",
      source: "llama-explanations",
    }),
    [],
  );
  assert.ok(BRIEF_KINDS.includes("llama-eli5"));
});

Deno.test("sentences() and isCleanSentence() split prose and refuse chatter and markup", () => {
  assert.deepEqual(sentences('It rains. Why? "Water falls," she said.\nThe end!'), [
    "It rains.",
    "Why?",
    '"Water falls," she said.',
    "The end!",
  ]);
  assert.ok(isCleanSentence("The sky looks blue because of the air."));
  assert.ok(!isCleanSentence("Too short."));
  assert.ok(!isCleanSentence("Here are some facts about the sky:"));
  assert.ok(!isCleanSentence("The **sky** is blue because of the air."));
  assert.ok(!isCleanSentence("I think the sky is blue because of air."));
  assert.ok(!isCleanSentence("the sky is blue because of the air."));
});

Deno.test("the bundled brief pairs are short, tagged by kind, and each fits a tuning row", async () => {
  const kinds = new Map<string, number>();
  for await (
    const batch of readRecordBatches(BUNDLED_SNAKES_QA_BRIEF, {
      fields: ["instruction", "output", "source"],
    })
  ) {
    for (const pair of batch) {
      kinds.set(pair.source, (kinds.get(pair.source) ?? 0) + 1);
      // About 4 characters a token: under 200 tokens, inside the tuning's 256-token rows.
      assert.ok(pair.instruction.length + pair.output.length < 700, pair.output);
    }
  }
  assert.deepEqual([...kinds.keys()].sort(), BRIEF_KINDS.map((k) => `brief-${k}`).sort());
  assert.ok([...kinds.values()].every((n) => n >= 50), JSON.stringify([...kinds]));
});
