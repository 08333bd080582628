import assert from "node:assert/strict";
import {
  emaSmooth,
  type LoggedStep,
  readStepLog,
  type ReportOptions,
  writeReport,
} from "../../pipeline/report.ts";
import { escapeMarkdown, fenced } from "../../pipeline/_markdown.ts";
import { escapeXml, svgLinePlot } from "../../pipeline/_svg_plot.ts";

/** An element of a parsed XML document. */
interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const ENTITY = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g;

/**
 * A strict little XML reader, enough to prove an SVG well-formed: one root, every tag closed in
 * order, attributes quoted, no bare `<` or `&` in text or attribute values. Throws otherwise.
 */
function parseXml(source: string): XmlElement {
  const token =
    /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[A-Za-z][\w:.-]*="[^"]*")*)\s*(\/?)>|<!--[\s\S]*?-->|([^<]+)/y;
  const root: XmlElement = { name: "#document", attributes: {}, children: [], text: "" };
  const stack = [root];
  const checkText = (text: string) => {
    if (/[<&]/.test(text.replace(ENTITY, ""))) throw new Error(`bare < or & in ${text}`);
  };
  let at = 0;
  while (at < source.length) {
    token.lastIndex = at;
    const m = token.exec(source);
    if (!m) throw new Error(`not XML at ${at}: ${source.slice(at, at + 40)}`);
    at = token.lastIndex;
    const [, closing, name, attributeText, selfClosing, text] = m;
    const top = stack[stack.length - 1];
    if (text !== undefined) {
      if (top === root && text.trim() !== "") throw new Error("text outside the root");
      checkText(text);
      top.text += text;
    } else if (name === undefined) {
      continue; // a comment
    } else if (closing) {
      if (top.name !== name) throw new Error(`</${name}> closes <${top.name}>`);
      stack.pop();
    } else {
      const attributes: Record<string, string> = {};
      for (const a of attributeText.matchAll(/([A-Za-z][\w:.-]*)="([^"]*)"/g)) {
        if (a[1] in attributes) throw new Error(`attribute ${a[1]} twice`);
        checkText(a[2]);
        attributes[a[1]] = a[2];
      }
      const element: XmlElement = { name, attributes, children: [], text: "" };
      if (top === root && root.children.length > 0) throw new Error("two root elements");
      top.children.push(element);
      if (!selfClosing) stack.push(element);
    }
  }
  if (stack.length !== 1) throw new Error(`<${stack[stack.length - 1].name}> is never closed`);
  if (root.children.length !== 1) throw new Error("no root element");
  return root.children[0];
}

function all(element: XmlElement, name: string): XmlElement[] {
  return [
    ...(element.name === name ? [element] : []),
    ...element.children.flatMap((c) => all(c, name)),
  ];
}

function unescapeXml(text: string): string {
  const map: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
  return text.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => map[e]);
}

/** The polyline of the series named `name`, as its points. */
function seriesPoints(svg: XmlElement, name: string): Array<[number, number]> {
  const found = all(svg, "polyline").filter((p) =>
    unescapeXml(p.attributes["data-series"]) === name
  );
  assert.equal(found.length, 1, `one polyline for series "${name}"`);
  const points = found[0].attributes.points.trim();
  if (points === "") return [];
  return points.split(/\s+/).map((pair) => {
    const [x, y] = pair.split(",").map(Number);
    assert.ok(Number.isFinite(x) && Number.isFinite(y), `a numeric point, got "${pair}"`);
    return [x, y];
  });
}

function textOf(svg: XmlElement, className: string): string {
  const found = all(svg, "text").filter((t) => t.attributes.class === className);
  assert.equal(found.length, 1, `one ${className}`);
  return unescapeXml(found[0].text);
}

/** A log of `steps` steps whose loss falls from ~9 with noise, validation every `every`. */
function syntheticLog(steps: number, every: number): LoggedStep[] {
  return Array.from({ length: steps }, (_, i) => {
    const step = i + 1;
    const loss = 3 + 6 * Math.exp(-step / 15) + 0.2 * Math.sin(step * 1.7);
    const record: LoggedStep & { lr: number; gradNorm: number } = {
      step,
      loss,
      lr: 1e-3,
      gradNorm: 1.2,
      ms: 250,
    };
    if (step % every === 0 || step === steps) record.valLoss = loss + 0.1;
    return record;
  });
}

async function writeLog(path: string, records: LoggedStep[], extra = ""): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, records.map((r) => JSON.stringify(r) + "\n").join("") + extra);
}

const REPORT_CLI = new URL("../../pipeline/report.ts", import.meta.url).pathname;

const COMPLETION = " there was a cat | named `Tom`.\n\n*He* <liked> fish & ```chips```.";
const ANSWER = "The sky looks blue because air scatters blue light more.<|im_end|>";

function fullReport(work: string): ReportOptions {
  return {
    work,
    plan: {
      figures: {
        budget: "30m",
        parameters: 9_437_184,
        shape: "n_layer=6 n_head=6 n_embd=384",
        tokens: 188_743_680,
        tokensPerParameter: 20,
        epochs: 1.5,
      },
      stages: [{ stage: "pretrain", seconds: 1500 }, { stage: "finetune_instruct", seconds: 120 }],
    },
    stageTimes: [
      { stage: "prepare", seconds: 2.5 },
      { stage: "pretrain", seconds: 1534 },
      { stage: "finetune_instruct", seconds: 118 },
    ],
    evals: {
      valLoss: 3.1234,
      grammar: 0.871,
      onTopic: 0.6,
      "val loss, positions 897–1024": { value: 3.2, description: "the last bucket's loss" },
    },
    completions: [
      { prompt: "Once upon a time", text: COMPLETION },
      { prompt: "The weather | today", text: "" },
    ],
    answers: [{ prompt: "Why is the sky blue?", text: ANSWER }],
    date: new Date("2026-12-02T06:00:00Z"),
    environment: { adapter: "llvmpipe <lavapipe>" },
  };
}

Deno.test("writeReport() writes report.md with the plan, stage times, evals and samples verbatim", async () => {
  const work = await Deno.makeTempDir();
  try {
    await writeLog(`${work}/model/log.jsonl`, syntheticLog(100, 20));
    await writeLog(`${work}/instruct/model/log.jsonl`, syntheticLog(15, 5));
    const files = await writeReport(fullReport(work));
    assert.equal(files.report, `${work}/report.md`);
    assert.deepEqual(files.plots, [`${work}/loss.svg`, `${work}/loss_instruct.svg`]);
    const md = await Deno.readTextFile(files.report);

    assert.match(md, /!\[pretraining loss\]\(loss\.svg\)/);
    assert.match(md, /!\[instruction-tuning loss\]\(loss_instruct\.svg\)/);
    assert.match(md, /\| parameters \| 9,437,184 \|/);
    assert.match(md, /\| tokens per parameter \| 20 \|/);
    assert.match(md, /\| shape \| n\\_layer=6 n\\_head=6 n\\_embd=384 \|/);
    assert.match(md, /\| pretrain \| 25m 00s \| 25m 34s \|/);
    assert.ok(md.includes("| prepare |  | 2.5s |"));
    assert.match(md, /\| \*\*total\*\* \| 27m 00s \| 27m 35s \|/);
    assert.match(md, /\| grammar \| 87\.1% \| ≥ 85% \(met\) \|/);
    assert.match(md, /\| on topic \| 60% \| ≥ 80% \(\*\*not met\*\*\) \|/);
    assert.match(md, /\| val loss \| 3\.123 \|/);
    assert.ok(md.includes("| val loss, positions 897–1024 | 3.2 |  | the last bucket's loss |"));
    assert.match(md, /\| adapter \| llvmpipe &lt;lavapipe&gt; \|/);
    assert.match(md, /\| best validation loss \| [\d.]+ \(step \d+\) \|/);

    // Samples appear unedited inside fences longer than any backtick run in them.
    assert.ok(md.includes("````text\n" + COMPLETION + "\n````"), "the completion verbatim");
    assert.ok(md.includes("```text\n" + ANSWER + "\n```"), "the answer verbatim");
    assert.match(md, /\*\*2\.\*\* The weather \\\| today\n\n\*\(the model wrote nothing\)\*/);
    assert.match(md, /\*\*1\.\*\* Why is the sky blue\?/);

    const saved = JSON.parse(await Deno.readTextFile(files.inputs));
    assert.equal(saved.completions[0].text, COMPLETION);
    assert.equal(saved.pretrainLog, undefined, "the default log path is not recorded");
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("writeReport()'s loss.svg is well-formed XML with a polyline per series and axis labels", async () => {
  const work = await Deno.makeTempDir();
  try {
    await writeLog(`${work}/model/log.jsonl`, syntheticLog(100, 20));
    await writeReport({ work });
    const svg = parseXml(await Deno.readTextFile(`${work}/loss.svg`));
    assert.equal(svg.name, "svg");
    assert.equal(svg.attributes.xmlns, "http://www.w3.org/2000/svg");
    assert.equal(all(svg, "polyline").length, 3);
    const raw = seriesPoints(svg, "training (raw)");
    const smooth = seriesPoints(svg, "training (EMA, ~2 steps)");
    const validation = seriesPoints(svg, "validation");
    assert.equal(raw.length, 100);
    assert.equal(smooth.length, 100);
    assert.equal(validation.length, 5);
    // Steps run left to right; a lower loss is drawn higher up (smaller y).
    for (let i = 1; i < raw.length; i++) assert.ok(raw[i][0] > raw[i - 1][0]);
    assert.ok(smooth[99][1] > smooth[0][1], "the falling loss ends lower on the plot");
    assert.equal(textOf(svg, "x-label"), "step");
    assert.equal(textOf(svg, "y-label"), "loss (nats per token)");
    const tickLabels = all(svg, "g").find((g) => g.attributes.class === "tick-labels")!;
    const labels = tickLabels.children.map((t) => t.text);
    assert.ok(labels.includes("20") && labels.includes("40"), `x ticks, got ${labels}`);
    const legend = all(svg, "g").find((g) => g.attributes.class === "legend")!;
    assert.deepEqual(
      all(legend, "text").map((t) => t.text),
      ["training (raw)", "training (EMA, ~2 steps)", "validation"],
    );
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("writeReport() notes missing and empty logs instead of failing, and drops stale plots", async () => {
  const work = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${work}/loss.svg`, "<svg/>"); // from an earlier report
    await writeLog(`${work}/instruct/model/log.jsonl`, []);
    const files = await writeReport({ work });
    assert.deepEqual(files.plots, []);
    const md = await Deno.readTextFile(files.report);
    assert.match(md, /No log at `model\/log\.jsonl`: pretraining has not run/);
    assert.match(md, /The log `instruct\/model\/log\.jsonl` has no steps yet\./);
    assert.match(md, /No plan was given\./);
    assert.match(md, /No stage times were given\./);
    assert.match(md, /No eval figures were given\./);
    assert.match(md, /No completions were given\./);
    assert.match(md, /No answers were given\./);
    assert.ok(!md.includes("loss.svg"));
    await assert.rejects(Deno.stat(`${work}/loss.svg`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("readStepLog() skips a cut-short line and keeps the last record of a repeated step", async () => {
  const work = await Deno.makeTempDir();
  try {
    const log = `${work}/log.jsonl`;
    const records = syntheticLog(4, 2);
    await writeLog(log, [...records, { ...records[3], loss: 1 }], '{"step": 5, "lo');
    const read = await readStepLog(log);
    assert.ok(read);
    assert.deepEqual(read.records.map((r) => r.step), [1, 2, 3, 4]);
    assert.equal(read.records[3].loss, 1);
    assert.equal(read.skippedLines, 1);
    assert.equal(await readStepLog(`${work}/absent.jsonl`), undefined);

    const files = await writeReport({ work, pretrainLog: log });
    const md = await Deno.readTextFile(files.report);
    assert.match(md, /1 line\(s\) of it were not step records/);
    assert.match(md, /\| steps \| 4 \(last: 4\) \|/);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("writeReport() shows the tokens, the sequence-length warmup and the loss by position when the log has them", async () => {
  const work = await Deno.makeTempDir();
  try {
    const records = syntheticLog(40, 20).map((r) => ({
      ...r,
      seqLength: r.step <= 30 ? 128 : 256,
      tokens: 8 * (r.step <= 30 ? 128 : 256),
      totalTokens: 8 * 128 * Math.min(r.step, 30) + 8 * 256 * Math.max(0, r.step - 30),
      seconds: r.step * 0.25,
      ...(r.valLoss === undefined ? {} : {
        valLossByPosition: r.step === 40 ? [3.5, 3.25] : [4.5, null],
      }),
    }));
    await writeLog(`${work}/model/log.jsonl`, records);
    const md = await Deno.readTextFile((await writeReport({ work })).report);
    assert.match(md, /\| tokens trained on \| 51,200 \|/);
    assert.match(md, /\| sequence length \| 128 → 256 \(256 from step 31\) \|/);
    assert.match(md, /by position in the row, at step 40/);
    assert.match(md, /\| 1–128 \| 3\.5 \|\n\| 129–256 \| 3\.25 \|/);

    // Without a warmup the length is one number; a bucket with no positions says so.
    await writeLog(
      `${work}/model/log.jsonl`,
      records.slice(0, 20).map((r) => ({ ...r, seqLength: 128 })),
    );
    const plain = await Deno.readTextFile((await writeReport({ work })).report);
    assert.match(plain, /\| sequence length \| 128 \|/);
    assert.match(plain, /\| 129–256 \| no positions counted \|/);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("svgLinePlot() escapes text, thins long series, skips non-finite points and draws a log x axis", () => {
  const source = svgLinePlot({
    title: `loss <"A&B">`,
    xLabel: "tokens",
    yLabel: "y's",
    logX: true,
    maxPoints: 50,
    series: [
      {
        name: "a <b> & c",
        color: "red",
        points: Array.from({ length: 1000 }, (_, i) => [i, 1 / (i + 1)] as const),
      },
      { name: "gaps", color: "blue", points: [[1, 1], [2, NaN], [3, Infinity], [10, 0.5]] },
      { name: "one", color: "green", points: [[100, 0.2]] },
    ],
  });
  const svg = parseXml(source);
  assert.equal(unescapeXml(all(svg, "title")[0].text), `loss <"A&B">`);
  // x = 0 has no place on a log axis; the remaining 999 points are thinned to 50.
  assert.equal(seriesPoints(svg, "a <b> & c").length, 50);
  assert.equal(seriesPoints(svg, "gaps").length, 2);
  assert.equal(seriesPoints(svg, "one").length, 1);
  assert.equal(all(svg, "circle").length, 1, "a lone point gets a dot");
  assert.equal(textOf(svg, "x-label"), "tokens (log scale)");
  assert.equal(textOf(svg, "y-label"), "y's");
  const tickLabels = all(svg, "g").find((g) => g.attributes.class === "tick-labels")!;
  const labels = tickLabels.children.map((t) => t.text);
  for (const decade of ["1", "10", "100"]) assert.ok(labels.includes(decade), `${labels}`);
  // Decades are evenly spaced on a log axis.
  const x = (label: string) =>
    Number(tickLabels.children.find((t) => t.text === label)!.attributes.x);
  assert.ok(Math.abs((x("10") - x("1")) - (x("100") - x("10"))) < 0.05);
});

Deno.test("svgLinePlot() draws an empty plot with a note rather than failing", () => {
  const svg = parseXml(svgLinePlot({ xLabel: "step", yLabel: "loss", series: [] }));
  assert.ok(all(svg, "text").some((t) => t.text === "no data"));
  assert.equal(all(svg, "polyline").length, 0);
});

Deno.test("emaSmooth() is debiased, follows a constant exactly and passes over gaps", () => {
  assert.deepEqual(emaSmooth([2, 2, 2], 10), [2, 2, 2]);
  const smoothed = emaSmooth([4, NaN, 0], 2);
  assert.equal(smoothed[0], 4);
  assert.equal(smoothed[1], 4);
  // β = 0.5: (0.5·0.5·4 + 0.5·0) / (1 − 0.25)
  assert.ok(Math.abs(smoothed[2] - 4 / 3) < 1e-12);
});

Deno.test("escapeMarkdown() and fenced() keep text from turning into markup", () => {
  assert.equal(escapeMarkdown("a|b *c* <d> & `e`"), "a\\|b \\*c\\* &lt;d&gt; &amp; \\`e\\`");
  assert.equal(escapeMarkdown("one\ntwo"), "one<br>two");
  assert.deepEqual(fenced("plain"), ["```text", "plain", "```"]);
  assert.deepEqual(fenced("a ```` b"), ["`````text", "a ```` b", "`````"]);
  assert.equal(
    escapeXml(`<a href="x">'&'</a>`),
    "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;",
  );
});

Deno.test("deno task report rebuilds the report from the work folder's report.json, and answers --help", async () => {
  const work = await Deno.makeTempDir();
  try {
    await writeLog(`${work}/model/log.jsonl`, syntheticLog(30, 10));
    await writeReport(fullReport(work));
    // A work folder moved after its run still finds its logs.
    const moved = `${work}/moved`;
    await Deno.mkdir(moved);
    for (const entry of ["model", "report.json"]) {
      await Deno.rename(`${work}/${entry}`, `${moved}/${entry}`);
    }
    const run = (...args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "--no-check", REPORT_CLI, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const rebuilt = await run("--work", moved);
    assert.equal(rebuilt.code, 0, new TextDecoder().decode(rebuilt.stderr));
    assert.match(new TextDecoder().decode(rebuilt.stdout), /report: .*report\.md/);
    const md = await Deno.readTextFile(`${moved}/report.md`);
    assert.ok(md.includes(COMPLETION));
    assert.match(md, /\| parameters \| 9,437,184 \|/);
    assert.match(md, /!\[pretraining loss\]\(loss\.svg\)/);
    await Deno.stat(`${moved}/loss.svg`);

    const help = await run("--help");
    assert.equal(help.code, 0);
    assert.match(new TextDecoder().decode(help.stdout), /Usage: deno task report/);

    // A work folder that is not there is refused, and not made.
    const missing = await run("--work", `${work}/missing`);
    assert.equal(missing.code, 1);
    assert.match(new TextDecoder().decode(missing.stderr), /--work .*missing is not there/);
    await assert.rejects(Deno.stat(`${work}/missing`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
