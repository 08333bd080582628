/**
 * The corpus shipped in this repository's `data/` folder, so that the main job runs offline on a
 * fresh clone: pretraining text (FineWeb web pages and simple stories) and instruction pairs, all
 * gzip-compressed JSON Lines or JSON that {@linkcode readRecordBatches} reads as they are.
 * `data/README.md` gives each set's origin, licence and size, and
 * `scripts/make_bundled_data.ts` remakes the files from their sources.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** The repository's `data/` folder, found from this module's location (not the working folder). */
export const BUNDLED_DATA_DIR: string = fileURLToPath(new URL("../data", import.meta.url));

/**
 * The bundled pretraining corpus: a folder of two JSON Lines files of `{"text"}` documents,
 * read in name order (FineWeb first, then the stories) when the folder is passed as `--data`.
 */
export const BUNDLED_PRETRAIN_DIR: string = `${BUNDLED_DATA_DIR}/pretrain`;

/**
 * Ordinary web pages (`score` 0) of FineWeb `sample-10BT`, text only: `{"text"}` per line.
 * ODC-By 1.0.
 */
export const BUNDLED_FINEWEB: string = `${BUNDLED_PRETRAIN_DIR}/fineweb-sample-10BT.jsonl.gz`;

/**
 * Fluent, simple English stories (children's tales, bedtime, campfire, slice of life), written
 * by Llama 3.1 for the `erikhyrkas/snakes` project: `{"text", "source"}` per line. MIT.
 */
export const BUNDLED_STORIES: string = `${BUNDLED_PRETRAIN_DIR}/stories.jsonl.gz`;

/**
 * The bundled instruction pairs: a folder of the three files below, in Alpaca's fields
 * (`instruction`, `input`, `output`), which `prepare_dataset_instruct` reads as one set.
 */
export const BUNDLED_INSTRUCT_DIR: string = `${BUNDLED_DATA_DIR}/instruct`;

/** 1,100 short, clean Alpaca-style pairs (a JSON array), `rasbt/LLMs-from-scratch`. Apache-2.0. */
export const BUNDLED_ALPACA: string = `${BUNDLED_INSTRUCT_DIR}/alpaca-style-1100.json.gz`;

/**
 * Question / instruction and answer pairs of `erikhyrkas/snakes` (trivia, explanations,
 * explain-like-I'm-five, how-to, word tasks, story requests, ...; no spelling or fill-in-the-blank
 * drills) whose text is at most 2,000
 * characters, so each fits a short context: JSON Lines with Alpaca's fields and `source`. MIT;
 * generated with Llama 3.1, so facts are often wrong.
 */
export const BUNDLED_SNAKES_QA: string = `${BUNDLED_INSTRUCT_DIR}/snakes-qa-short.jsonl.gz`;

/**
 * Brief pairs derived from the long snakes-qa answers of every length (explanations, how-to
 * guides, example sentences, synonyms, children's tales): the few sentences of each answer that
 * answer it, under an everyday question (`pipeline/brief_pairs.ts`); at most 400 of a kind.
 * Alpaca's fields and `source` (`brief-<kind>`). MIT, as the pairs they come from.
 */
export const BUNDLED_SNAKES_QA_BRIEF: string = `${BUNDLED_INSTRUCT_DIR}/snakes-qa-brief.jsonl.gz`;
