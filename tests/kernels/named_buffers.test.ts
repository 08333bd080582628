/**
 * Launchers take their buffers by name once there are more than four of them: two swapped
 * `GPUBuffer`s type-check when positional, and a named field cannot be swapped by accident.
 */
import assert from "node:assert/strict";
import { attentionBackward } from "../../kernels/attention.ts";
import { crossEntropy } from "../../kernels/cross_entropy.ts";
import type { Gpu } from "../../kernels/device.ts";
import { layernormBackward } from "../../kernels/layernorm.ts";

/** The most positional `GPUBuffer` parameters an exported launcher may take. */
const MAX_POSITIONAL_BUFFERS = 4;

/** A type as `deno doc --json` describes it (only what this test reads). */
interface DocType {
  kind: string;
  repr?: string;
  value?: unknown;
}

interface DocParam {
  kind: string;
  name?: string;
  tsType?: DocType;
  left?: DocParam;
}

interface DocProperty {
  name: string;
  jsDoc?: { doc?: string };
  tsType?: DocType;
}

/** Whether `type` is `GPUBuffer`, or a union holding it (`GPUBuffer | null`). */
function isBuffer(type: DocType | undefined): boolean {
  if (!type) return false;
  if (type.kind === "typeRef") return type.repr === "GPUBuffer";
  if (type.kind === "union") return (type.value as DocType[]).some(isBuffer);
  return false;
}

/** Each exported function of kernels/*.ts with its parameters, from `deno doc --json`. */
async function exportedLaunchers(): Promise<{ name: string; params: DocParam[] }[]> {
  const kernels = new URL("../../kernels/", import.meta.url);
  const files = [...Deno.readDirSync(kernels)]
    .filter((entry) => entry.isFile && entry.name.endsWith(".ts") && !entry.name.startsWith("_"))
    .map((entry) => new URL(entry.name, kernels).pathname);
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", ...files],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const doc = JSON.parse(new TextDecoder().decode(stdout));
  const launchers: { name: string; params: DocParam[] }[] = [];
  for (const [file, module] of Object.entries(doc.nodes)) {
    for (const symbol of (module as { symbols?: unknown[] }).symbols ?? []) {
      const { name, declarations } = symbol as {
        name: string;
        declarations: { kind: string; def: { params: DocParam[] } }[];
      };
      for (const declaration of declarations) {
        if (declaration.kind !== "function") continue;
        launchers.push({
          name: `${file.split("/").pop()} ${name}`,
          params: declaration.def.params,
        });
      }
    }
  }
  return launchers;
}

Deno.test("no exported launcher takes more than four positional GPUBuffers", async () => {
  const launchers = await exportedLaunchers();
  assert.ok(launchers.length > 20, `found only ${launchers.length} exported functions`);
  const tooMany = launchers
    .map(({ name, params }) => ({
      name,
      count: params.filter((p) => isBuffer((p.left ?? p).tsType)).length,
    }))
    .filter(({ count }) => count > MAX_POSITIONAL_BUFFERS)
    .map(({ name, count }) => `${name}: ${count}`);
  assert.deepEqual(tooMany, [], "take these buffers as one object with named fields");
});

Deno.test("every named buffer field of a launcher says its shape in JSDoc", async () => {
  const launchers = await exportedLaunchers();
  const undocumented: string[] = [];
  let fields = 0;
  for (const { name, params } of launchers) {
    for (const param of params.map((p) => p.left ?? p)) {
      // The buffers object, not an options bag that happens to hold a buffer.
      const type = param.tsType;
      if (param.name !== "buffers" || type?.kind !== "typeLiteral") continue;
      const { properties } = type.value as { properties: DocProperty[] };
      for (const property of properties.filter((p) => isBuffer(p.tsType))) {
        fields++;
        // A shape is written in parentheses: (N, C), (B, NH, T, HS), (OC).
        if (!/\([^)]*[A-Za-z0-9]\)/.test(property.jsDoc?.doc ?? "")) {
          undocumented.push(`${name} ${property.name}`);
        }
      }
    }
  }
  assert.ok(fields >= 50, `found only ${fields} named buffer fields`);
  assert.deepEqual(undocumented, [], "give each of these fields a JSDoc line with its shape");
});

/**
 * Compiled, never run: `deno test` type-checks this file, and each `@ts-expect-error` fails the
 * check if the call below it type-checks again.
 */
function callsThatMustNotTypeCheck(gpu: Gpu, b: GPUBuffer): void {
  // @ts-expect-error positional buffers, the mistake the object parameter prevents
  layernormBackward(gpu, b, b, b, b, b, b, b, b, 1, 1);
  // @ts-expect-error a buffer left out (lse)
  attentionBackward(gpu, { dq: b, dk: b, dv: b, dout: b, q: b, k: b, v: b, o: b }, 1, 1, 1, 1);
  // @ts-expect-error a misspelt name
  crossEntropy(gpu, { losses: b, dLogits: b, logits: b, targets: b }, 1, 1, 1);
}

Deno.test("launchers refuse positional, missing and misspelt buffers at type-check time", () => {
  assert.equal(typeof callsThatMustNotTypeCheck, "function");
});
