import assert from "node:assert/strict";
import {
  acquireGpu,
  DeviceLostError,
  type Gpu,
  grid2d,
  type Kernel,
  KernelCompileError,
  KernelValidationError,
  NoAdapterError,
  sizeClass,
  uniforms,
} from "../../kernels/device.ts";
import { testGpu } from "../_gpu.ts";

/**
 * The smallest real kernel, `out[i] = a[i] + alpha · b[i]` over `n` floats: what these tests
 * run to exercise the device (no model code needs it, so it lives here).
 */
const scaledAddKernel: Kernel<{ workgroupSize: number }> = {
  name: "scaled_add",
  bindings: ["read", "read", "write", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { n: u32, alpha: f32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * groups.x) * ${workgroupSize}u + lid;
  if (i < params.n) { out[i] = a[i] + params.alpha * b[i]; }
}
`,
};

const brokenKernel: Kernel<Record<string, never>> = {
  name: "broken_on_purpose",
  bindings: [],
  // Line 3 lacks its semicolon.
  wgsl: () => "@compute @workgroup_size(1)\nfn main() {\n  let x = 1\n}\n",
};

Deno.test("a WGSL syntax error surfaces as an exception naming the kernel and line", async () => {
  const gpu = await testGpu();
  const error = await gpu.pipeline(brokenKernel, {}).then(() => null, (e) => e);
  assert.ok(error instanceof KernelCompileError, `expected KernelCompileError, got ${error}`);
  assert.equal(error.kernel, "broken_on_purpose");
  assert.equal(error.line, 4); // WGSL reports the error where the `;` was expected
  assert.match(error.message, /Kernel "broken_on_purpose" failed to compile at WGSL line 4/);
});

Deno.test("a buffer bound with the wrong usage is a validation error naming the kernel", async () => {
  const gpu = await testGpu();
  const storage = gpu.acquire(64);
  const notStorage = gpu.acquire(64, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  const params = gpu.uniform(uniforms({ n: ["u32", 4], alpha: ["f32", 1] }));
  await gpu.run(scaledAddKernel, { workgroupSize: 64 }, [storage, notStorage, storage, params], [
    1,
  ]);
  await assert.rejects(gpu.flush(), (e) => {
    assert.ok(e instanceof KernelValidationError);
    assert.match(e.message, /Kernel "scaled_add" was rejected by WebGPU/);
    return true;
  });
});

Deno.test("no adapter gives one error that says what to install", async () => {
  const noGpu = { requestAdapter: () => Promise.resolve(null) } as unknown as GPU;
  await assert.rejects(acquireGpu({ gpu: noGpu, announce: false }), (e) => {
    assert.ok(e instanceof NoAdapterError);
    assert.match(e.message, /No WebGPU adapter found/);
    assert.match(e.message, /scripts\/setup\.sh/);
    return true;
  });
});

Deno.test("a command run where no backend has an adapter exits non-zero with the message", async () => {
  // A backend this operating system does not have, so the real request finds nothing.
  const absent = Deno.build.os === "darwin" ? "dx12" : "metal";
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("../../bench/adapter.ts", import.meta.url).pathname],
    env: { DENO_WEBGPU_BACKEND: absent },
    stdout: "null",
    stderr: "piped",
  }).output();
  const message = new TextDecoder().decode(stderr);
  assert.equal(code, 1);
  assert.match(
    message,
    new RegExp(`^error: No WebGPU adapter found \\(backends tried: ${absent}\\)`),
  );
  assert.match(message, /install Mesa's lavapipe Vulkan driver/);
});

Deno.test("a lost device makes work throw DeviceLostError instead of hanging", async () => {
  const gpu = await acquireGpu({ announce: false });
  const buffer = gpu.upload(new Float32Array([1, 2, 3]));
  gpu.destroy();
  await assert.rejects(
    (async () => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      await gpu.readF32(buffer, 3);
    })(),
    DeviceLostError,
  );
});

Deno.test("the pipeline cache keys on kernel name and compile-time constants", async () => {
  const gpu = await testGpu();
  const a = await gpu.pipeline(scaledAddKernel, { workgroupSize: 64 });
  const b = await gpu.pipeline(scaledAddKernel, { workgroupSize: 64 });
  const c = await gpu.pipeline(scaledAddKernel, { workgroupSize: 128 });
  assert.equal(a, b);
  assert.notEqual(a, c);
});

Deno.test("the buffer pool reuses a released buffer only after the batch is submitted", async () => {
  const gpu = await testGpu();
  const first = gpu.acquire(1000);
  assert.equal(first.size, 1024);
  gpu.release(first);
  const during = gpu.acquire(1000);
  assert.notEqual(during, first, "a buffer released in this batch may still be read by it");
  await gpu.flush();
  assert.equal(gpu.acquire(1000), first);
  gpu.release(during);
});

Deno.test("an upload does not split the recorded batch, and reaches only the commands after it", async () => {
  const gpu = await testGpu();
  const before = gpu.upload(new Float32Array([1, 2, 3, 4]));
  await gpu.flush();
  const x = gpu.acquire(16), y = gpu.acquire(16);
  gpu.startProfile();
  gpu.encoder.copyBufferToBuffer(before, 0, x, 0, 16);
  const after = gpu.upload(new Float32Array([5, 6, 7, 8]));
  gpu.encoder.copyBufferToBuffer(after, 0, y, 0, 16);
  const profile = await gpu.stopProfile();
  assert.equal(profile.submits, 1, "the upload flushed the commands recorded before it");
  assert.deepEqual(await gpu.readF32(x, 4), new Float32Array([1, 2, 3, 4]));
  assert.deepEqual(await gpu.readF32(y, 4), new Float32Array([5, 6, 7, 8]));
  for (const b of [before, after, x, y]) gpu.release(b);
});

Deno.test("an exact buffer has its size and is destroyed only after the work recorded with it", async () => {
  const gpu = await testGpu();
  const exact = gpu.createExact(1000, "exact");
  assert.equal(exact.size, 1000);
  gpu.write(exact, Float32Array.from({ length: 250 }, (_, i) => i));
  const copy = gpu.acquire(1000);
  // Recorded, not yet submitted: destroying the source now would make the submit invalid.
  gpu.encoder.copyBufferToBuffer(exact, 0, copy, 0, 1000);
  gpu.destroyExact(exact);
  await gpu.flush(); // throws on a validation error
  assert.deepEqual(await gpu.readF32(copy, 250), Float32Array.from({ length: 250 }, (_, i) => i));
  gpu.release(copy);
  assert.throws(() => gpu.createExact(10), /whole floats/);
});

Deno.test("sizeClass() rounds up to powers of two and their 1.5 multiples", () => {
  assert.equal(sizeClass(1), 256);
  assert.equal(sizeClass(256), 256);
  assert.equal(sizeClass(257), 384);
  assert.equal(sizeClass(385), 512);
  assert.equal(sizeClass(3 << 20), 3 << 20);
  for (const bytes of [300, 5000, 123_456_789]) {
    assert.ok(sizeClass(bytes) >= bytes && sizeClass(bytes) <= bytes * 1.5);
  }
});

Deno.test("grid2d() covers every workgroup within the 65535 limit per dimension", () => {
  assert.deepEqual(grid2d(10), [10, 1]);
  const [x, y] = grid2d(200_000);
  assert.ok(x <= 65535 && x * y >= 200_000);
});

Deno.test("uniforms() packs u32, i32 and f32 fields in order, padded to 16 bytes", () => {
  const view = new DataView(uniforms({ n: ["u32", 7], k: ["i32", -2], a: ["f32", 0.5] }));
  assert.equal(view.byteLength, 16);
  assert.equal(view.getUint32(0, true), 7);
  assert.equal(view.getInt32(4, true), -2);
  assert.equal(view.getFloat32(8, true), 0.5);
});

Deno.test("the GPU timer measures a positive time per run", async () => {
  const gpu = await testGpu();
  const n = 1 << 16;
  const a = gpu.acquire(n * 4), out = gpu.acquire(n * 4);
  const timing = await gpu.time(async () => {
    const params = gpu.uniform(uniforms({ n: ["u32", n], alpha: ["f32", 2] }));
    await gpu.run(scaledAddKernel, { workgroupSize: 256 }, [a, a, out, params], [n / 256]);
  }, 5);
  assert.ok(timing.ms > 0 && Number.isFinite(timing.ms), `got ${timing.ms} ms`);
  console.log(`scaled add of 2^16 floats: ${timing.ms.toFixed(3)} ms (${timing.source})`);
});

/** Records `count` scaled adds of 2^12 floats under the GPU's current profile phase. */
async function scaledAdds(gpu: Gpu, a: GPUBuffer, out: GPUBuffer, count: number) {
  for (let i = 0; i < count; i++) {
    const params = gpu.uniform(uniforms({ n: ["u32", 4096], alpha: ["f32", 2] }));
    await gpu.run(scaledAddKernel, { workgroupSize: 64 }, [a, a, out, params], [64]);
  }
}

for (const timestamps of [true, false]) {
  const how = timestamps ? "with timestamp queries where offered" : "by timed submits";
  Deno.test(`a profile times every dispatch, by kernel and phase, ${how}`, async () => {
    const gpu = await testGpu();
    const a = gpu.upload(new Float32Array(4096).fill(1)), out = gpu.acquire(4096 * 4);
    await gpu.sync();
    gpu.startProfile({ timestamps });
    gpu.profilePhase = "first";
    await scaledAdds(gpu, a, out, 2);
    gpu.profilePhase = "second";
    await scaledAdds(gpu, a, out, 1);
    gpu.write(a, new Float32Array([3])); // an upload between the dispatches
    assert.equal((await gpu.readF32(out, 1))[0], 3); // a readback: 1 + 2·1
    const profile = await gpu.stopProfile();
    gpu.profilePhase = "";
    const stamped = timestamps && gpu.device.features.has("timestamp-query");
    assert.equal(profile.source, stamped ? "timestamp" : "wall");
    assert.deepEqual(
      profile.dispatches.map((d) => `${d.phase}/${d.kernel}`),
      ["first/scaled_add", "first/scaled_add", "second/scaled_add"],
    );
    for (const d of profile.dispatches) {
      assert.ok(d.ms >= 0 && d.ms < 1000 && d.gapBeforeMs >= 0, JSON.stringify(d));
    }
    assert.ok(profile.dispatches.some((d) => d.ms > 0), "no dispatch took any time");
    assert.ok(profile.uploadMs > 0 && profile.readMs > 0 && profile.encodeMs > 0);
    assert.ok(profile.submits >= 1);
    // Profiling is off again: nothing more is recorded, and a second stop is an error.
    await scaledAdds(gpu, a, out, 1);
    await assert.rejects(gpu.stopProfile(), /No profile is running/);
    gpu.release(a);
    gpu.release(out);
  });
}

Deno.test("a profile of more dispatches than one query set holds keeps them all", async () => {
  const gpu = await testGpu();
  const a = gpu.acquire(4096 * 4), out = gpu.acquire(4096 * 4);
  gpu.startProfile();
  assert.throws(() => gpu.startProfile(), /already running/);
  await scaledAdds(gpu, a, out, 2100); // 4200 timestamps: two query sets of 4096
  const profile = await gpu.stopProfile();
  assert.equal(profile.dispatches.length, 2100);
  assert.ok(profile.dispatches.every((d) => d.kernel === "scaled_add" && d.ms >= 0));
  gpu.release(a);
  gpu.release(out);
});

Deno.test("a dispatch with the bindings of an earlier one reuses its bind group", async () => {
  const gpu = await testGpu();
  const a = gpu.upload(new Float32Array(64).fill(1)), out = gpu.acquire(64 * 4);
  const other = gpu.acquire(64 * 4);
  let created = 0;
  const device = gpu.device, original = device.createBindGroup;
  device.createBindGroup = function (descriptor) {
    created++;
    return original.call(this, descriptor);
  };
  try {
    // One uniform buffer written before each run: the bind groups can be the same.
    const params = gpu.acquire(16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    const run = async (alpha: number, into: GPUBuffer) => {
      gpu.write(params, new Uint8Array(uniforms({ n: ["u32", 64], alpha: ["f32", alpha] })));
      await gpu.run(scaledAddKernel, { workgroupSize: 64 }, [a, a, into, params], [1]);
      return (await gpu.readF32(into, 1))[0];
    };
    assert.equal(await run(2, out), 3);
    const first = created;
    assert.equal(await run(3, out), 4, "the reused bind group sees the new uniform values");
    assert.equal(created, first, "the same bindings created a second bind group");
    assert.equal(await run(2, other), 3);
    assert.equal(created, first + 1, "other bindings need their own bind group");
    gpu.release(params);
  } finally {
    device.createBindGroup = original;
  }
  for (const buffer of [a, out, other]) gpu.release(buffer);
});
