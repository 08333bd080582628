/**
 * The WebGPU device layer every kernel goes through.
 *
 * - {@linkcode acquireGpu} finds an adapter headlessly (a real GPU, or Mesa's lavapipe Vulkan
 *   driver on the CPU), asks for the adapter's maxima of the limits that matter for training,
 *   and says once which adapter it runs on.
 * - {@linkcode Gpu} owns the device: a pipeline cache keyed by kernel name and compile-time
 *   constants, a buffer pool by size class, one command encoder that many dispatches are
 *   recorded into and submitted together, readback, and a GPU timer for benchmarks.
 * - Errors become exceptions that name the kernel: {@linkcode KernelCompileError} (with the
 *   WGSL line), {@linkcode KernelValidationError}, {@linkcode DeviceLostError} (never a hang),
 *   and {@linkcode NoAdapterError} (with what to install).
 *
 * @module
 */

/**
 * How a kernel binds one resource, in binding order within group 0: a read-only or writable
 * storage buffer, a uniform buffer, or an `rgba32float` 2-D array texture to load from or store
 * to (the matmul reads its operands as texels: four floats per load on every adapter).
 */
export type BindingKind =
  | "read"
  | "write"
  | "uniform"
  | "texture"
  | "storage-texture"
  | "read-storage-texture";

/**
 * A compute kernel: its name, how it binds buffers, and a WGSL builder that takes only
 * compile-time constants (workgroup and tile sizes, head size). Runtime sizes go in a uniform.
 */
export interface Kernel<C extends KernelConstants = KernelConstants> {
  /** Unique name; it labels the pipeline and every error about it. */
  readonly name: string;
  /** One entry per `@binding(i)` of `@group(0)`, in order; may depend on the constants. */
  readonly bindings: readonly BindingKind[] | ((constants: C) => readonly BindingKind[]);
  /** Builds the WGSL source from the compile-time constants. */
  readonly wgsl: (constants: C) => string;
}

/** The binding kinds of `kernel` for `constants`. */
function bindingKinds<C extends KernelConstants>(kernel: Kernel<C>, constants: C) {
  return typeof kernel.bindings === "function" ? kernel.bindings(constants) : kernel.bindings;
}

/** Compile-time constants of a kernel; they and the name form the pipeline cache key. */
export type KernelConstants = Record<string, number | string | boolean>;

/**
 * A buffer bound whole, a window of one (for tensors larger than the binding limit), or a 2-D
 * array texture (bound as a `2d-array` view).
 */
export type Binding =
  | GPUBuffer
  | { buffer: GPUBuffer; offset?: number; size?: number }
  | GPUTexture;

/** What the adapter is, as said once at start. */
export interface AdapterSummary {
  /** One line naming backend and adapter, e.g. `Vulkan lavapipe: llvmpipe (LLVM 15.0.6, 256 bits)`. */
  name: string;
  /** The adapter's own description, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`. */
  description: string;
  /** The graphics backend the adapter was found on: `vulkan`, `metal`, `dx12` or `gl`. */
  backend: string;
  /** True for a software adapter running on the CPU. */
  isCpu: boolean;
  /** Optional features the device was created with. */
  features: string[];
}

/** No WebGPU adapter could be found; the message says what to install. */
export class NoAdapterError extends Error {
  /** `"NoAdapterError"`, so that the error's class survives in logs and stack traces. */
  override name = "NoAdapterError";
}

/** A kernel's WGSL failed to compile; names the kernel and the first bad line. */
export class KernelCompileError extends Error {
  /** `"KernelCompileError"`, so that the error's class survives in logs and stack traces. */
  override name = "KernelCompileError";
  /**
   * An error naming the kernel and the WGSL line, with the compiler's message.
   *
   * @param kernel the kernel's name, as given to the pipeline cache.
   * @param line the 1-based line of the generated WGSL of the first compiler error; 0 when WebGPU
   *   gave no line.
   * @param detail the compiler's message.
   */
  constructor(readonly kernel: string, readonly line: number, detail: string) {
    super(`Kernel "${kernel}" failed to compile at WGSL line ${line}: ${detail}`);
  }
}

/** WebGPU rejected a binding, dispatch or submission; names the kernel(s) involved. */
export class KernelValidationError extends Error {
  /** `"KernelValidationError"`, so that the error's class survives in logs and stack traces. */
  override name = "KernelValidationError";
  /**
   * An error naming the kernel, with WebGPU's message.
   *
   * @param kernel the name of the kernel whose binding or dispatch was rejected.
   * @param detail WebGPU's validation message.
   */
  constructor(readonly kernel: string, detail: string) {
    super(`Kernel "${kernel}" was rejected by WebGPU: ${detail}`);
  }
}

/** The device was lost (driver reset, out of memory, destroyed); pending work is gone. */
export class DeviceLostError extends Error {
  /** `"DeviceLostError"`, so that the error's class survives in logs and stack traces. */
  override name = "DeviceLostError";
  /**
   * An error with WebGPU's reason and message, and what to do: in Deno restart from the last
   * checkpoint, in a browser page reload it.
   *
   * @param reason WebGPU's reason: `destroyed` or `unknown`.
   * @param detail WebGPU's message; empty when it gave none.
   */
  constructor(readonly reason: string, readonly detail: string) {
    super(
      `The WebGPU device was lost (${reason}): ${detail || "no detail"}. Pending GPU work is ` +
        `gone; ${deno ? "restart from the last checkpoint" : "reload the page to start again"}.`,
    );
  }
}

/** The limits asked for at their adapter maxima: training needs big buffers and workgroups. */
const MAXED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxStorageBuffersPerShaderStage",
  "maxTextureDimension2D",
  "maxTextureArrayLayers",
] as const;

const WANTED_FEATURES: GPUFeatureName[] = ["shader-f16", "timestamp-query"];

/** Backends tried when the user has not chosen: the native ones, not the slower GL path. */
const DEFAULT_BACKENDS = "vulkan,metal,dx12";

/** Options of {@linkcode acquireGpu}. */
export interface AcquireOptions {
  /** The WebGPU entry point; tests pass a stand-in to force the no-adapter path. */
  gpu?: GPU;
  /** Print the adapter line (once per process). Default true. */
  announce?: boolean;
  /**
   * Caps {@linkcode Gpu.maxBinding} below the adapter's binding limit, so that every launcher
   * splits its work as it would on a smaller adapter (tests force the split paths with small
   * tensors). Default: `WEBGPU_MAX_BINDING` from the environment (bytes), else no cap.
   */
  maxBinding?: number;
}

let announced = false;

/**
 * Deno's namespace, or undefined in a browser page (the chat page runs these kernels too): the
 * environment variables and the platform are read through it only when it is there.
 */
const deno = (globalThis as { Deno?: typeof Deno }).Deno;

/**
 * Acquires a headless WebGPU adapter and device.
 *
 * The backends come from `DENO_WEBGPU_BACKEND` (e.g. `gl` for the OpenGL path); by default only
 * the native ones (Vulkan, Metal, D3D12), so that a machine without a GPU uses lavapipe, which is
 * 4-5x faster than llvmpipe through GL.
 *
 * @throws {NoAdapterError} when no adapter is found; its message says what to install.
 * @example
 * ```ts
 * const gpu = await acquireGpu();
 * console.log(gpu.adapter.description);
 * ```
 */
export async function acquireGpu(options: AcquireOptions = {}): Promise<Gpu> {
  if (deno && !deno.env.get("DENO_WEBGPU_BACKEND")) {
    deno.env.set("DENO_WEBGPU_BACKEND", DEFAULT_BACKENDS);
  }
  const backends = deno?.env.get("DENO_WEBGPU_BACKEND") ?? "browser";
  const entry = options.gpu ?? (navigator as Navigator & { gpu?: GPU }).gpu;
  const adapter = entry
    ? await entry.requestAdapter({ powerPreference: "high-performance" })
    : null;
  if (!adapter) throw new NoAdapterError(noAdapterMessage(backends));
  const cap = options.maxBinding ?? Number(deno?.env.get("WEBGPU_MAX_BINDING") || Infinity);
  if (!(cap >= 4096)) {
    throw new RangeError(
      `A binding limit of ${cap} bytes is too small or not a number; give at least 4096 ` +
        "(WEBGPU_MAX_BINDING or AcquireOptions.maxBinding).",
    );
  }

  const requiredLimits: Record<string, number> = {};
  for (const name of MAXED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });

  const info = adapter.info;
  const description = info.description || info.device || info.vendor || "unknown adapter";
  const backend = backendOf(backends);
  // Mesa's Vulkan driver on the CPU is lavapipe; its device is named after llvmpipe.
  const driver = backend === "vulkan" && /llvmpipe/.test(description) ? "Vulkan lavapipe" : backend;
  const summary: AdapterSummary = {
    name: `${driver}: ${description}`,
    description,
    backend,
    isCpu: info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader|software/i.test(description),
    features: requiredFeatures,
  };
  if ((options.announce ?? true) && !announced) {
    announced = true;
    const features = summary.features.length ? ` [${summary.features.join(", ")}]` : "";
    console.error(`webgpu: ${summary.name}${features}`);
    if (summary.isCpu) {
      console.error(
        "webgpu: warning: this adapter runs on the CPU (no GPU found); kernels will be slow.",
      );
    }
  }
  return new Gpu(device, summary, cap);
}

function noAdapterMessage(backends: string): string {
  if (!deno) {
    // A page cannot install drivers: say where the browser tells why it has no adapter.
    return "The browser offered no WebGPU adapter: WebGPU is turned off, or the GPU or its " +
      "driver is blocklisted (chrome://gpu says which in Chrome and Edge). Try another " +
      "browser, or turn WebGPU on in its settings.";
  }
  return `No WebGPU adapter found (backends tried: ${backends}). ` +
    "On Debian or Ubuntu without a GPU, run `bash scripts/setup.sh` to install Mesa's lavapipe " +
    "Vulkan driver (a WebGPU adapter on the CPU); with a GPU, install its Vulkan driver. " +
    "Set DENO_WEBGPU_BACKEND=gl to try the slower OpenGL path instead.";
}

/** Names the backend an adapter came from: exact when one was asked for, else by platform. */
function backendOf(backends: string): string {
  const asked = backends.split(",").map((b) => b.trim().toLowerCase()).filter((b) => b);
  if (asked.length === 1) return asked[0];
  const native = deno?.build.os === "darwin"
    ? "metal"
    : deno?.build.os === "windows"
    ? "dx12"
    : "vulkan";
  return asked.includes(native) ? native : asked.join("/");
}

/** Bytes of a binding: the window's size, or the rest of the buffer from its offset. */
function bindingEntry(binding: Binding, index: number): GPUBindGroupEntry {
  if (binding instanceof GPUTexture) {
    return { binding: index, resource: binding.createView({ dimension: "2d-array" }) };
  }
  if ("buffer" in binding) {
    const { buffer, offset = 0, size } = binding;
    return { binding: index, resource: { buffer, offset, size: size ?? buffer.size - offset } };
  }
  return { binding: index, resource: { buffer: binding } };
}

/**
 * Size classes of the buffer pool: 256 B, then powers of two and their 1.5 multiples, so a
 * pooled buffer wastes at most a third of its bytes.
 */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const pow = 2 ** Math.ceil(Math.log2(bytes));
  return bytes <= pow * 0.75 ? pow * 0.75 : pow;
}

/** The bind-group layout entry of each binding kind. */
const LAYOUT_ENTRY: Record<BindingKind, Omit<GPUBindGroupLayoutEntry, "binding" | "visibility">> = {
  read: { buffer: { type: "read-only-storage" } },
  write: { buffer: { type: "storage" } },
  uniform: { buffer: { type: "uniform" } },
  texture: { texture: { sampleType: "unfilterable-float", viewDimension: "2d-array" } },
  "storage-texture": {
    storageTexture: { access: "write-only", format: "rgba32float", viewDimension: "2d-array" },
  },
  "read-storage-texture": {
    storageTexture: { access: "read-only", format: "rgba32float", viewDimension: "2d-array" },
  },
};

/** Bind groups kept at most; the cache starts over when full (a step uses a few hundred). */
const BIND_GROUP_CACHE_SIZE = 8192;

const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const UNIFORM_USAGE = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
const READBACK_USAGE = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;

interface PendingCheck {
  kernel: string;
  error: Promise<GPUError | null>;
}

/**
 * A WebGPU device with the services kernels need. Get one from {@linkcode acquireGpu}.
 *
 * Dispatches are recorded into one command encoder and submitted together by
 * {@linkcode Gpu.flush} (which {@linkcode Gpu.read} calls). Buffers come from a pool of size
 * classes ({@linkcode Gpu.acquire}); those given back with {@linkcode Gpu.release} are reused
 * only after the work that used them was submitted. The few long-lived buffers that rounding
 * would waste most on are made at their exact size ({@linkcode Gpu.createExact}) and destroyed,
 * likewise after that submit.
 */
export class Gpu {
  /**
   * The largest buffer window one binding may cover: the adapter's limit (128 MiB on lavapipe),
   * or less when capped (`WEBGPU_MAX_BINDING`); every launcher splits its work by this.
   */
  readonly maxBinding: number;
  readonly #pipelines = new Map<string, Promise<GPUComputePipeline>>();
  readonly #layouts = new Map<string, GPUBindGroupLayout>();
  readonly #free = new Map<string, GPUBuffer[]>();
  #releasedThisBatch: GPUBuffer[] = [];
  /** Exact-size buffers to destroy once this batch is submitted. */
  #destroyedThisBatch: GPUBuffer[] = [];
  #encoder: GPUCommandEncoder | null = null;
  #checks: PendingCheck[] = [];
  #kernelsThisBatch = new Set<string>();
  #submits = 0;
  #lost: GPUDeviceLostInfo | null = null;
  readonly #lostPromise: Promise<never>;
  #timestamps: { query: GPUQuerySet; resolve: GPUBuffer } | null = null;
  /**
   * Bind groups by pipeline and bound resources: a training step's dispatches often bind the
   * same pooled buffers as the step before, and then find their bind groups here instead of
   * creating them (about 15 µs each on lavapipe, where a small dispatch costs about 50 µs).
   */
  readonly #bindGroups = new Map<string, GPUBindGroup>();
  readonly #ids = new WeakMap<object, number>();
  #nextId = 1;
  #profile: ProfileRecorder | null = null;
  /**
   * The phase a profile files the dispatches recorded from now on under: a new tape sets
   * `forward`, its backward `backward`, an AdamW step `optimizer`. Only read while
   * {@linkcode Gpu.startProfile} is on.
   */
  profilePhase = "";

  /**
   * Wraps a device; {@linkcode acquireGpu} is the usual way to get one.
   *
   * @param device the WebGPU device; the kernels expect the adapter's maxima of the storage,
   *   buffer and workgroup limits, as {@linkcode acquireGpu} requests.
   * @param adapter what the device runs on, for logs and benchmark records.
   * @param maxBinding caps {@linkcode Gpu.maxBinding} (bytes) below the device's limit.
   */
  constructor(readonly device: GPUDevice, readonly adapter: AdapterSummary, maxBinding = Infinity) {
    this.maxBinding = Math.min(device.limits.maxStorageBufferBindingSize, maxBinding);
    this.#lostPromise = device.lost.then((info) => {
      this.#lost = info;
      throw this.#lostError();
    });
    this.#lostPromise.catch(() => {}); // observed by whoever awaits work; never unhandled
  }

  #lostError(): DeviceLostError {
    const info = this.#lost!;
    return new DeviceLostError(info.reason, info.message);
  }

  #assertAlive(): void {
    if (this.#lost) throw this.#lostError();
  }

  /** Awaits `promise`, or throws {@linkcode DeviceLostError} if the device is lost first. */
  #unlessLost<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.#lostPromise]);
  }

  /**
   * The compute pipeline of `kernel` for `constants`, compiled once and cached by name and
   * constants.
   *
   * @throws {KernelCompileError} naming the kernel and WGSL line when the source is invalid.
   */
  pipeline<C extends KernelConstants>(
    kernel: Kernel<C>,
    constants: C,
  ): Promise<GPUComputePipeline> {
    this.#assertAlive();
    const key = `${kernel.name}${JSON.stringify(constants)}`;
    let pipeline = this.#pipelines.get(key);
    if (!pipeline) {
      pipeline = this.#compile(kernel, constants);
      this.#pipelines.set(key, pipeline);
      pipeline.catch(() => this.#pipelines.delete(key));
    }
    return pipeline;
  }

  async #compile<C extends KernelConstants>(kernel: Kernel<C>, constants: C) {
    const code = kernel.wgsl(constants);
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ label: kernel.name, code });
    const scope = this.device.popErrorScope();
    const info = await this.#unlessLost(module.getCompilationInfo());
    const firstError = info.messages.find((m) => m.type === "error");
    const scopeError = await this.#unlessLost(scope);
    if (firstError || scopeError) {
      const detail = firstError?.message ?? scopeError!.message;
      throw new KernelCompileError(kernel.name, firstError?.lineNum ?? 0, detail.trim());
    }
    const layout = this.device.createPipelineLayout({
      label: kernel.name,
      bindGroupLayouts: [this.#layoutOf(bindingKinds(kernel, constants))],
    });
    try {
      return await this.#unlessLost(this.device.createComputePipelineAsync({
        label: kernel.name,
        layout,
        compute: { module, entryPoint: "main" },
      }));
    } catch (e) {
      if (e instanceof DeviceLostError) throw e;
      throw new KernelValidationError(kernel.name, (e as Error).message);
    }
  }

  #layoutOf(kinds: readonly BindingKind[]): GPUBindGroupLayout {
    const key = kinds.join(",");
    let layout = this.#layouts.get(key);
    if (!layout) {
      layout = this.device.createBindGroupLayout({
        label: key,
        entries: kinds.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          ...LAYOUT_ENTRY[kind],
        })),
      });
      this.#layouts.set(key, layout);
    }
    return layout;
  }

  /**
   * Records one dispatch of `kernel` into the current command encoder. Nothing runs until
   * {@linkcode Gpu.flush}; a bad binding is reported then, naming the kernel.
   *
   * @param bindings one per `kernel.bindings` entry, in order.
   * @param workgroups the grid, `[x, y?, z?]`; see {@linkcode grid2d} for more than 65535.
   */
  dispatch(
    name: string,
    kinds: readonly BindingKind[],
    pipeline: GPUComputePipeline,
    bindings: readonly Binding[],
    workgroups: readonly [number, number?, number?],
  ): void {
    this.#assertAlive();
    if (bindings.length !== kinds.length) {
      throw new KernelValidationError(
        name,
        `expected ${kinds.length} bindings, got ${bindings.length}`,
      );
    }
    const profile = this.#profile;
    const started = profile ? performance.now() : 0;
    const key = this.#bindGroupKey(pipeline, bindings);
    let bindGroup = this.#bindGroups.get(key);
    if (!bindGroup) {
      this.device.pushErrorScope("validation");
      bindGroup = this.device.createBindGroup({
        label: name,
        layout: pipeline.getBindGroupLayout(0),
        entries: bindings.map(bindingEntry),
      });
      this.#checks.push({ kernel: name, error: this.device.popErrorScope() });
      if (this.#bindGroups.size >= BIND_GROUP_CACHE_SIZE) this.#bindGroups.clear();
      this.#bindGroups.set(key, bindGroup);
    }
    this.#kernelsThisBatch.add(name);
    // One labelled pass per dispatch: WebGPU orders passes, and errors name the kernel.
    const pass = this.encoder.beginComputePass({
      label: name,
      timestampWrites: profile?.timestampWrites(
        this.device,
        name,
        this.profilePhase,
        this.#submits,
      ),
    });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
    pass.end();
    if (profile) profile.encodeMs += performance.now() - started;
  }

  #idOf(object: object): number {
    let id = this.#ids.get(object);
    if (id === undefined) this.#ids.set(object, id = this.#nextId++);
    return id;
  }

  /** The bind-group cache key: the pipeline and each binding's resource, offset and size. */
  #bindGroupKey(pipeline: GPUComputePipeline, bindings: readonly Binding[]): string {
    let key = `${this.#idOf(pipeline)}`;
    for (const binding of bindings) {
      if (binding instanceof GPUTexture || !("buffer" in binding)) {
        key += `|${this.#idOf(binding)}`;
      } else {
        key += `|${this.#idOf(binding.buffer)}:${binding.offset ?? 0}:${binding.size ?? "*"}`;
      }
    }
    return key;
  }

  /**
   * Compiles (or takes from the cache) and records `kernel` in one call: the usual way a
   * launcher runs its kernel.
   */
  async run<C extends KernelConstants>(
    kernel: Kernel<C>,
    constants: C,
    bindings: readonly Binding[],
    workgroups: readonly [number, number?, number?],
  ): Promise<void> {
    const pipeline = await this.pipeline(kernel, constants);
    const profile = this.#profile;
    if (profile && !profile.timestamps) {
      // No timestamp queries: time this dispatch alone, between two waits for an idle queue.
      await this.sync();
      const started = performance.now();
      this.dispatch(kernel.name, bindingKinds(kernel, constants), pipeline, bindings, workgroups);
      await this.sync();
      profile.walls.push({
        kernel: kernel.name,
        phase: this.profilePhase,
        ms: performance.now() - started,
        gapBeforeMs: 0,
      });
      return;
    }
    this.dispatch(kernel.name, bindingKinds(kernel, constants), pipeline, bindings, workgroups);
  }

  /**
   * Starts timing every dispatch, each filed under its kernel's name and the current
   * {@linkcode Gpu.profilePhase}, and counting the host's time spent recording, uploading and
   * waiting for readbacks. Per-dispatch timestamp queries where the device has them (no change
   * to what runs, or when); else each dispatch is submitted and waited for alone (slower, and
   * it hides the overlap of encoding with GPU work). Without a profile none of this is paid.
   *
   * @param options `timestamps: false` forces the timed-submit fallback.
   */
  startProfile(options: { timestamps?: boolean } = {}): void {
    if (this.#profile) throw new Error("A profile is already running; stop it first.");
    const timestamps = (options.timestamps ?? true) && this.device.features.has("timestamp-query");
    this.#profile = new ProfileRecorder(timestamps, this.#submits);
  }

  /** Stops the profile started by {@linkcode Gpu.startProfile}: waits for the work, reads the times. */
  async stopProfile(): Promise<GpuProfile> {
    const profile = this.#profile;
    if (!profile) throw new Error("No profile is running; call startProfile() first.");
    await this.sync();
    this.#profile = null;
    const profileResult: GpuProfile = {
      source: profile.timestamps ? "timestamp" : "wall",
      dispatches: profile.walls,
      encodeMs: profile.encodeMs,
      uploadMs: profile.uploadMs,
      readMs: profile.readMs,
      submits: this.#submits - profile.firstSubmit,
      gpuGapMs: 0,
    };
    for (const set of profile.sets) {
      const resolve = this.device.createBuffer({
        size: set.used * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      this.encoder.resolveQuerySet(set.query, 0, set.used, resolve, 0);
      const ticks = new BigInt64Array(await this.read(resolve, 0, set.used * 8));
      resolve.destroy();
      set.query.destroy();
      set.labels.forEach(({ kernel, phase, submit }, i) => {
        const begin = ticks[2 * i], end = ticks[2 * i + 1];
        profile.stamps.push({ kernel, phase, submit, begin, end });
      });
    }
    // Time between two kernels of one submission: copies, clears, barriers, the driver.
    profile.stamps.forEach(({ kernel, phase, submit, begin, end }, i) => {
      const previous = profile.stamps[i - 1];
      const gap = previous?.submit === submit && begin >= previous.end
        ? Number(begin - previous.end) / 1e6
        : 0;
      profileResult.dispatches.push({
        kernel,
        phase,
        ms: Number(end - begin) / 1e6,
        gapBeforeMs: gap,
      });
      profileResult.gpuGapMs += gap;
    });
    return profileResult;
  }

  /** The command encoder that dispatches and copies are recorded into until the next flush. */
  get encoder(): GPUCommandEncoder {
    this.#assertAlive();
    return this.#encoder ??= this.device.createCommandEncoder();
  }

  /**
   * Submits everything recorded since the last flush, and reports any validation error of that
   * batch as a {@linkcode KernelValidationError} naming the kernel.
   */
  async flush(): Promise<void> {
    this.#assertAlive();
    if (this.#encoder) this.#submit();
    else this.#recycleReleased();
    const checks = this.#checks;
    this.#checks = [];
    for (const check of checks) {
      const error = await this.#unlessLost(check.error);
      if (error) {
        this.#bindGroups.clear(); // an invalid bind group must not be reused
        throw new KernelValidationError(check.kernel, error.message);
      }
    }
  }

  /** Submits the recorded commands; their validation result is checked by the next flush. */
  #submit(): void {
    const kernels = [...this.#kernelsThisBatch].join(", ") || "(copies only)";
    this.#kernelsThisBatch = new Set();
    this.device.pushErrorScope("validation");
    this.device.queue.submit([this.#encoder!.finish()]);
    this.#encoder = null;
    this.#submits++;
    this.#checks.push({ kernel: kernels, error: this.device.popErrorScope() });
    this.#recycleReleased();
  }

  /** What was released in this batch may be reused once the batch is in the queue. */
  #recycleReleased(): void {
    // Pushed last-released first, so that they are handed out again in the order they were
    // released: a training step then gets more of the buffers the step before used in the same
    // places, and finds more of its bind groups cached (measured: 40% of them, not 25-45%).
    for (let i = this.#releasedThisBatch.length - 1; i >= 0; i--) {
      const buffer = this.#releasedThisBatch[i];
      this.#poolOf(buffer).push(buffer);
    }
    this.#releasedThisBatch = [];
    for (const buffer of this.#destroyedThisBatch) buffer.destroy();
    this.#destroyedThisBatch = [];
  }

  /** Flushes, then waits until the GPU has finished all submitted work. */
  async sync(): Promise<void> {
    await this.flush();
    await this.#unlessLost(this.device.queue.onSubmittedWorkDone());
  }

  #poolOf(buffer: GPUBuffer): GPUBuffer[] {
    const key = `${buffer.usage}:${buffer.size}`;
    let pool = this.#free.get(key);
    if (!pool) this.#free.set(key, pool = []);
    return pool;
  }

  /**
   * A storage buffer of at least `bytes` bytes from the pool (its contents are undefined).
   * Give it back with {@linkcode Gpu.release}.
   */
  acquire(bytes: number, usage: GPUBufferUsageFlags = STORAGE_USAGE, label?: string): GPUBuffer {
    this.#assertAlive();
    const size = sizeClass(bytes);
    const reused = this.#free.get(`${usage}:${size}`)?.pop();
    if (reused) return reused;
    if (size > this.device.limits.maxBufferSize) {
      throw new RangeError(
        `A buffer of ${bytes} bytes exceeds this adapter's maxBufferSize ` +
          `(${this.device.limits.maxBufferSize}); use a smaller model or batch.`,
      );
    }
    return this.device.createBuffer({ label, size, usage });
  }

  /** Gives a buffer back to the pool; it is reused after the current batch is submitted. */
  release(buffer: GPUBuffer): void {
    this.#releasedThisBatch.push(buffer);
  }

  /**
   * A storage buffer of exactly `bytes` bytes, outside the pool: for the few long-lived buffers
   * that the pool's size classes would round up by hundreds of megabytes (the parameter arena
   * of GPT-2 small, 497 MB, would take a 537 MB class, and its gradients as much again). Free
   * it with {@linkcode Gpu.destroyExact}.
   */
  createExact(bytes: number, label?: string): GPUBuffer {
    this.#assertAlive();
    if (!(Number.isInteger(bytes) && bytes > 0 && bytes % 4 === 0)) {
      throw new RangeError(`An exact buffer holds whole floats: ${bytes} bytes is not that.`);
    }
    if (bytes > this.device.limits.maxBufferSize) {
      throw new RangeError(
        `A buffer of ${bytes} bytes exceeds this adapter's maxBufferSize ` +
          `(${this.device.limits.maxBufferSize}); use a smaller model or batch.`,
      );
    }
    return this.device.createBuffer({ label, size: bytes, usage: STORAGE_USAGE });
  }

  /**
   * Destroys a buffer of {@linkcode Gpu.createExact} once the commands recorded so far are
   * submitted (they may still read it).
   */
  destroyExact(buffer: GPUBuffer): void {
    this.#destroyedThisBatch.push(buffer);
  }

  /** A new pooled storage buffer holding `data`. */
  upload(data: ArrayBufferView, label?: string): GPUBuffer {
    const buffer = this.acquire(data.byteLength, STORAGE_USAGE, label);
    this.writeNew(buffer, data);
    return buffer;
  }

  /**
   * Writes `data` into `buffer` at `byteOffset`. Recorded work is flushed first when there is
   * any, because a queue write takes effect before unsubmitted commands run.
   */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.#assertAlive();
    if (this.#encoder) this.#submit();
    this.writeNew(buffer, data, byteOffset);
  }

  /**
   * Writes `data` into a buffer that no recorded command uses: one just taken from
   * {@linkcode Gpu.acquire} (a released buffer goes back to the pool only once the commands that
   * used it are submitted). Unlike {@linkcode Gpu.write} it does not flush recorded work first,
   * which would split the batch in two (the embedding backward uploads its token groups in the
   * middle of a training step's backward). A buffer that recorded commands still use would see
   * the new data too early.
   */
  writeNew(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.#assertAlive();
    const started = this.#profile ? performance.now() : 0;
    // writeBuffer wants a multiple of 4 bytes; pad the tail of odd-sized data.
    let bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(buffer, byteOffset, bytes);
    if (this.#profile) this.#profile.uploadMs += performance.now() - started;
  }

  /**
   * A uniform buffer holding `data` for one dispatch; it returns to the pool after the batch.
   * Build `data` with {@linkcode uniforms}.
   */
  uniform(data: ArrayBuffer): GPUBuffer {
    const started = this.#profile ? performance.now() : 0;
    const buffer = this.acquire(data.byteLength, UNIFORM_USAGE, "uniform");
    this.device.queue.writeBuffer(buffer, 0, data);
    this.release(buffer);
    if (this.#profile) this.#profile.uploadMs += performance.now() - started;
    return buffer;
  }

  /**
   * Copies `byteLength` bytes of `buffer` from `byteOffset` back to the CPU. Flushes recorded
   * work first; throws {@linkcode DeviceLostError} rather than hang if the device is lost.
   */
  async read(
    buffer: GPUBuffer,
    byteOffset = 0,
    byteLength = buffer.size - byteOffset,
  ): Promise<ArrayBuffer> {
    const profile = this.#profile;
    const started = profile ? performance.now() : 0;
    const padded = Math.ceil(byteLength / 4) * 4;
    const staging = this.acquire(padded, READBACK_USAGE, "readback");
    this.encoder.copyBufferToBuffer(buffer, byteOffset, staging, 0, padded);
    await this.flush();
    await this.#unlessLost(staging.mapAsync(GPUMapMode.READ, 0, padded));
    const copy = staging.getMappedRange(0, padded).slice(0, byteLength);
    staging.unmap();
    this.#poolOf(staging).push(staging);
    if (profile) profile.readMs += performance.now() - started;
    return copy;
  }

  /** Reads a buffer of float32 values (the first `length` of them). */
  async readF32(buffer: GPUBuffer, length: number, offsetElements = 0): Promise<Float32Array> {
    return new Float32Array(await this.read(buffer, offsetElements * 4, length * 4));
  }

  /**
   * Times `record` on the GPU: runs it once to warm up (compiling pipelines), then `reps` times
   * in one submission, and returns the mean milliseconds per run. Uses timestamp queries where
   * the device has them, else wall time around `onSubmittedWorkDone`.
   */
  async time(record: () => Promise<void> | void, reps = 10): Promise<GpuTiming> {
    await record();
    await this.sync();
    const stamps = this.#timestampQueries();
    if (stamps) {
      this.encoder.beginComputePass({
        label: "timer start",
        timestampWrites: { querySet: stamps.query, beginningOfPassWriteIndex: 0 },
      }).end();
    }
    const start = performance.now();
    for (let i = 0; i < reps; i++) await record();
    if (stamps) {
      this.encoder.beginComputePass({
        label: "timer end",
        timestampWrites: { querySet: stamps.query, endOfPassWriteIndex: 1 },
      }).end();
      this.encoder.resolveQuerySet(stamps.query, 0, 2, stamps.resolve, 0);
    }
    await this.sync();
    const wallMs = (performance.now() - start) / reps;
    if (!stamps) return { ms: wallMs, source: "wall" };
    const ticks = new BigInt64Array(await this.read(stamps.resolve, 0, 16));
    const gpuMs = Number(ticks[1] - ticks[0]) / 1e6 / reps;
    // Some drivers return zeros or garbage for timestamps; trust the wall clock then.
    return gpuMs > 0 && gpuMs <= wallMs * 1.5 ? { ms: gpuMs, source: "timestamp" } : {
      ms: wallMs,
      source: "wall",
    };
  }

  #timestampQueries() {
    if (!this.device.features.has("timestamp-query")) return null;
    return this.#timestamps ??= {
      query: this.device.createQuerySet({ type: "timestamp", count: 2 }),
      resolve: this.device.createBuffer({
        size: 16,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      }),
    };
  }

  /** Destroys the device; later calls throw {@linkcode DeviceLostError}. */
  destroy(): void {
    this.device.destroy();
  }
}

/** One timed dispatch of a {@linkcode GpuProfile}. */
export interface DispatchTime {
  /** The kernel's name, e.g. `matmul_texture`. */
  kernel: string;
  /** The {@linkcode Gpu.profilePhase} current when it was recorded. */
  phase: string;
  /** Milliseconds it ran on the GPU. */
  ms: number;
  /**
   * GPU milliseconds since the previous kernel of the same submission ended: the copies and
   * clears recorded between them, barriers, the driver's per-dispatch cost. 0 for a
   * submission's first kernel, and without timestamps.
   */
  gapBeforeMs: number;
}

/** What {@linkcode Gpu.stopProfile} measured since {@linkcode Gpu.startProfile}. */
export interface GpuProfile {
  /** `timestamp`: per-dispatch timestamp queries; `wall`: each dispatch submitted and awaited. */
  source: "timestamp" | "wall";
  /** Every dispatch, in recording order. */
  dispatches: DispatchTime[];
  /** Host milliseconds spent recording dispatches (bind groups, passes). */
  encodeMs: number;
  /** Host milliseconds spent writing to the queue (uploads and uniforms). */
  uploadMs: number;
  /** Host milliseconds spent in readbacks, waiting for the GPU included. */
  readMs: number;
  /** Command buffers submitted. */
  submits: number;
  /**
   * GPU milliseconds between consecutive kernels of one submission (copies, clears, barriers,
   * the driver's per-pass cost); 0 without timestamps.
   */
  gpuGapMs: number;
}

interface StampLabel {
  kernel: string;
  phase: string;
  submit: number;
}

/** Timestamp query sets of a running profile, and the host times it adds up. */
class ProfileRecorder {
  /** WebGPU's cap on queries per set. */
  static readonly QUERIES_PER_SET = 4096;
  readonly sets: Array<{ query: GPUQuerySet; used: number; labels: StampLabel[] }> = [];
  readonly stamps: Array<StampLabel & { begin: bigint; end: bigint }> = [];
  readonly walls: DispatchTime[] = [];
  encodeMs = 0;
  uploadMs = 0;
  readMs = 0;

  constructor(readonly timestamps: boolean, readonly firstSubmit: number) {}

  /** The pass's timestamp writes for one dispatch; undefined without timestamp queries. */
  timestampWrites(
    device: GPUDevice,
    kernel: string,
    phase: string,
    submit: number,
  ): GPUComputePassTimestampWrites | undefined {
    if (!this.timestamps) return undefined;
    let set = this.sets.at(-1);
    if (!set || set.used === ProfileRecorder.QUERIES_PER_SET) {
      const query = device.createQuerySet({
        type: "timestamp",
        count: ProfileRecorder.QUERIES_PER_SET,
      });
      this.sets.push(set = { query, used: 0, labels: [] });
    }
    set.labels.push({ kernel, phase, submit });
    set.used += 2;
    return {
      querySet: set.query,
      beginningOfPassWriteIndex: set.used - 2,
      endOfPassWriteIndex: set.used - 1,
    };
  }
}

/** The result of {@linkcode Gpu.time}. */
export interface GpuTiming {
  /** Mean milliseconds per run. */
  ms: number;
  /** `timestamp` when measured with GPU timestamp queries, `wall` for wall-clock time. */
  source: "timestamp" | "wall";
}

/**
 * Packs uniform values into the bytes of a WGSL struct whose fields are all 4-byte scalars, in
 * order: `uniforms({ n: ["u32", 10], alpha: ["f32", 0.5] })`; a bare number is a `u32`. The size
 * is padded to 16 bytes.
 */
export function uniforms(
  fields: Record<string, ["u32" | "i32" | "f32", number] | number>,
): ArrayBuffer {
  const entries = Object.values(fields);
  const bytes = new ArrayBuffer(Math.max(16, Math.ceil(entries.length / 4) * 16));
  const view = new DataView(bytes);
  entries.forEach((entry, i) => {
    const [type, value] = typeof entry === "number" ? ["u32", entry] : entry;
    if (type === "f32") view.setFloat32(i * 4, value, true);
    else if (type === "i32") view.setInt32(i * 4, value, true);
    else view.setUint32(i * 4, value, true);
  });
  return bytes;
}

/**
 * A 2-D grid of at least `workgroups` workgroups that respects the 65535-per-dimension limit.
 * Kernels recover the linear index as `wid.x + wid.y * num_workgroups.x` and bound-check it.
 */
export function grid2d(workgroups: number): [number, number] {
  const x = Math.min(workgroups, 65535);
  return [x, Math.ceil(workgroups / x)];
}

/**
 * Float32 values in a buffer at a byte offset: a tensor that shares its buffer with others (a
 * model's parameters in one flat buffer, `nn/arena.ts`). The offset is a multiple of the
 * device's `minStorageBufferOffsetAlignment` (and of 256), so the tensor can be bound on its own.
 */
export interface BufferAt {
  /** The shared buffer. */
  buffer: GPUBuffer;
  /** Where the tensor's first float is, in bytes. */
  offset: number;
}

/**
 * Float32 values on the GPU, as launchers take them: a buffer from its start, or a
 * {@linkcode BufferAt} (bound from its offset by {@linkcode bufferWindow} and the helpers).
 */
export type GpuFloats = GPUBuffer | BufferAt;

/** The buffer `floats` live in. */
export function bufferOf(floats: GpuFloats): GPUBuffer {
  return "buffer" in floats ? floats.buffer : floats;
}

/** The byte offset of `floats`' first value in {@linkcode bufferOf}: 0 for a whole buffer. */
export function byteOffsetOf(floats: GpuFloats): number {
  return "buffer" in floats ? floats.offset : 0;
}

/** A window of a buffer to bind, and where the wanted elements start inside it. */
export interface BufferWindow {
  /** The binding: a byte range that starts on the device's storage offset alignment. */
  binding: { buffer: GPUBuffer; offset: number; size: number };
  /** Index, in elements, of the first wanted element within the bound window. */
  elementOffset: number;
}

/**
 * Binds elements `[first, first + count)` of `floats`. Binding offsets must be aligned
 * (256 bytes), so the window starts at the aligned byte at or before `first`, and the kernel adds
 * `elementOffset` to its indices. This is how tensors larger than `maxStorageBufferBindingSize`
 * are processed: the launcher splits the work into parts whose windows fit one binding. A
 * {@linkcode BufferAt}'s offset is aligned, so its windows have the `elementOffset`s a buffer of
 * its own would have.
 */
export function bufferWindow(
  gpu: Gpu,
  floats: GpuFloats,
  first: number,
  count: number,
  elementBytes = 4,
): BufferWindow {
  const alignment = gpu.device.limits.minStorageBufferOffsetAlignment;
  const buffer = bufferOf(floats);
  const startByte = byteOffsetOf(floats) + first * elementBytes;
  const offset = Math.floor(startByte / alignment) * alignment;
  const size = Math.ceil((startByte - offset + count * elementBytes) / 4) * 4;
  if (size > gpu.maxBinding) {
    throw new RangeError(
      `A window of ${count} elements (${size} bytes) exceeds the binding limit ` +
        `(${gpu.maxBinding} bytes); split the work into smaller parts.`,
    );
  }
  return { binding: { buffer, offset, size }, elementOffset: (startByte - offset) / elementBytes };
}
