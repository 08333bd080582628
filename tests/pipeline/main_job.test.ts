import assert from "node:assert/strict";
import { runMainJob } from "../../pipeline/main_job.ts";

Deno.test("the main job refuses bad flags before its first stage, and leaves no work folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const work = `${dir}/work`;
    const cases: [Parameters<typeof runMainJob>[0], RegExp][] = [
      [{ context: 2048 }, /--context must be a whole number from 2 to 1024.*got 2048/],
      [{ vocabSize: 100 }, /--vocab-size must be a whole number from 263 .*got 100/],
      [{ data: `${dir}/missing.txt` }, /--data .*missing\.txt: no such file or folder/],
      [{ instructData: `${dir}/missing.json` }, /--instruct-data .*missing\.json: no such/],
      [{ budget: "soon" }, /budget|duration/i],
      [
        { budget: "1s" },
        /A budget of 1s leaves .* for training .*; give at least \d+m\d+s \(--budget\)/,
      ],
      [{ tuneShare: 0.9 }, /--tune-share must be above 0 and at most 0\.5, got 0\.9/],
    ];
    for (const [options, message] of cases) {
      await assert.rejects(runMainJob({ ...options, work }), message);
      await assert.rejects(Deno.stat(work), Deno.errors.NotFound);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the main job refuses a work folder made with other flags, naming the flag and folder", async () => {
  const work = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${work}/job.json`,
      JSON.stringify({
        data: "elsewhere.txt",
        rows: null,
        instructData: "bundled",
        vocabSize: 4096,
        context: 512,
        budgetSeconds: 1800,
      }),
    );
    await assert.rejects(
      runMainJob({ work, data: "README.md", vocabSize: 2048, context: 512, budget: "30m" }),
      (error: Error) => {
        assert.match(error.message, new RegExp(`${work}/job.json`));
        assert.match(error.message, /data elsewhere\.txt → README\.md/);
        assert.match(error.message, /vocabSize 4096 → 2048/);
        assert.doesNotMatch(error.message, /context|budget/);
        return true;
      },
    );
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
