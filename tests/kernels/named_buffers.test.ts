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

/** The types a launcher takes GPU floats as: a whole buffer, or a buffer or a window of one. */
const BUFFER_TYPES = ["GPUBuffer", "GpuFloats"];

/**
 * Whether `type` is `GPUBuffer` or `GpuFloats`, or a union holding one (`GPUBuffer | null`).
 * `aliases` names type parameters that default to one of them (an interface shared with a CPU
 * reference, whose fields are arrays there).
 */
function isBuffer(type: DocType | undefined, aliases: string[] = []): boolean {
  if (!type) return false;
  if (type.kind === "typeRef") {
    return BUFFER_TYPES.includes(type.repr!) || aliases.includes(type.repr!);
  }
  if (type.kind === "union") return (type.value as DocType[]).some((t) => isBuffer(t, aliases));
  return false;
}

/** What `deno doc --json` says kernels/*.ts exports (only what this test reads). */
interface KernelExports {
  /** Each exported function, named `file name`, with its parameters. */
  launchers: { name: string; params: DocParam[] }[];
  /** Each exported interface, with its properties and the type parameters meaning GPUBuffer. */
  interfaces: { name: string; properties: DocProperty[]; bufferParams: string[] }[];
}

async function kernelExports(): Promise<KernelExports> {
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
  const found: KernelExports = { launchers: [], interfaces: [] };
  for (const [file, module] of Object.entries(doc.nodes)) {
    for (const symbol of (module as { symbols?: unknown[] }).symbols ?? []) {
      const { name, declarations } = symbol as {
        name: string;
        declarations: {
          kind: string;
          def: {
            params?: DocParam[];
            properties?: DocProperty[];
            typeParams?: { name: string; default?: DocType }[];
          };
        }[];
      };
      const qualified = `${file.split("/").pop()} ${name}`;
      for (const { kind, def } of declarations) {
        if (kind === "function") found.launchers.push({ name: qualified, params: def.params! });
        if (kind === "interface") {
          const bufferParams = (def.typeParams ?? []).filter((t) => isBuffer(t.default));
          found.interfaces.push({
            name: qualified,
            properties: def.properties!,
            bufferParams: bufferParams.map((t) => t.name),
          });
        }
      }
    }
  }
  return found;
}

/** The fields written out in a `buffers` parameter's type, also inside an intersection. */
function literalFields(type: DocType | undefined): DocProperty[] {
  if (type?.kind === "typeLiteral") return (type.value as { properties: DocProperty[] }).properties;
  if (type?.kind === "intersection") return (type.value as DocType[]).flatMap(literalFields);
  return [];
}

Deno.test("no exported launcher takes more than four positional GPUBuffers", async () => {
  const { launchers } = await kernelExports();
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
  const { launchers, interfaces } = await kernelExports();
  const fields: { where: string; property: DocProperty; aliases: string[] }[] = [];
  for (const { name, params } of launchers) {
    // The buffers object, not an options bag that happens to hold a buffer.
    const buffers = params.map((p) => p.left ?? p).find((p) => p.name === "buffers");
    for (const property of literalFields(buffers?.tsType)) {
      fields.push({ where: name, property, aliases: [] });
    }
  }
  // Fields shared by several launchers live in an interface named for them.
  for (const { name, properties, bufferParams } of interfaces) {
    if (!name.endsWith("Buffers")) continue;
    for (const property of properties) {
      fields.push({ where: name, property, aliases: bufferParams });
    }
  }
  const buffers = fields.filter(({ property, aliases }) => isBuffer(property.tsType, aliases));
  assert.ok(buffers.length >= 50, `found only ${buffers.length} named buffer fields`);
  // A shape is written in parentheses: (N, C), (B, NH, T, HS), (OC).
  const undocumented = buffers
    .filter(({ property }) => !/\([^)]*[A-Za-z0-9]\)/.test(property.jsDoc?.doc ?? ""))
    .map(({ where, property }) => `${where} ${property.name}`);
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
