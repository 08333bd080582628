/**
 * The autograd engine: a tape of operations recorded during the forward pass, and a backward
 * pass that is a topological sort from the loss and a reverse sweep (as in micrograd).
 *
 * Each operation (see `nn/ops.ts`) runs its forward kernels and records a closure that runs its
 * backward kernels. Gradients follow llm.c's convention through {@linkcode Tensor}: a kernel
 * that accumulates gets a zero-filled gradient; a kernel that writes gets the buffer directly
 * when it is the first to contribute, else a scratch buffer that is then accumulated; an
 * operation whose input's gradient equals its output's (the residual add) passes the buffer
 * on ({@linkcode Tape.passGrad}). An operation's output gradients are given up once its
 * backward has run: only leaves (parameters, inputs) keep theirs.
 *
 * @module
 */

import { accumulate } from "../kernels/accumulate.ts";
import type { Gpu } from "../kernels/device.ts";
import { Tensor } from "./tensor.ts";

/** One recorded operation. */
export interface TapeNode {
  /** The operation's name, for errors and profiles. */
  name: string;
  /** The tensors its backward sends gradients to (and whose producers must run after it). */
  inputs: readonly Tensor[];
  /** The tensors it made, whose gradients its backward reads (and nothing after it). */
  outputs: readonly Tensor[];
  /** Runs the backward kernels: reads the output's gradient, adds to the inputs'. */
  backward: () => Promise<void>;
}

/** Records operations and runs their backward; owns the activations it made. */
export class Tape {
  readonly #owned: Tensor[] = [];

  /**
   * An empty tape whose operations run on `gpu`. What is recorded from now on is a forward
   * pass, as a profile ({@linkcode Gpu.startProfile}) files it.
   */
  constructor(readonly gpu: Gpu) {
    gpu.profilePhase = "forward";
  }

  /** A new activation tensor, freed by {@linkcode Tape.dispose}. */
  tensor(shape: readonly number[], name = ""): Tensor {
    const tensor = Tensor.empty(this.gpu, shape, name);
    this.#owned.push(tensor);
    return tensor;
  }

  /** A scratch buffer of `elements` floats, freed by {@linkcode Tape.dispose}. */
  scratch(elements: number, name = ""): GPUBuffer {
    return this.tensor([elements], name).buffer;
  }

  /** Records that `output` (or each of several) was made by `name` from `inputs`, with its backward. */
  record(
    name: string,
    inputs: readonly Tensor[],
    output: Tensor | readonly Tensor[],
    backward: () => Promise<void>,
  ): void {
    const outputs = output instanceof Tensor ? [output] : output;
    const node = { name, inputs, outputs, backward };
    for (const made of outputs) made.producer = node;
  }

  /**
   * Adds `from`'s gradient to `to`'s: where `to` has none yet by sharing the buffer, with no
   * kernel at all ({@linkcode Tensor.shareGradOf}), else with an accumulate.
   */
  async passGrad(from: Tensor, to: Tensor): Promise<void> {
    if (to.shareGradOf(from)) return;
    await accumulate(this.gpu, to.gradForAccumulate(), from.grad, to.size);
  }

  /**
   * Gives a WRITING kernel somewhere to write `target`'s gradient contribution, then makes
   * sure the contribution lands in `target`'s gradient.
   */
  async writeGrad(target: Tensor, write: (into: GPUBuffer) => Promise<void>): Promise<void> {
    const direct = target.gradForWrite();
    if (direct) return await write(direct);
    const scratch = this.gpu.acquire(target.size * 4);
    await write(scratch);
    await accumulate(this.gpu, target.gradForAccumulate(), scratch, target.size);
    this.gpu.release(scratch);
  }

  /**
   * Runs the backward of every operation `root` depends on, in reverse topological order.
   * The root's own operation seeds the gradient (a loss op knows d(mean loss) = 1).
   */
  async backward(root: Tensor): Promise<void> {
    if (!root.producer) throw new Error("backward() needs a tensor made by a recorded operation.");
    const order: TapeNode[] = [];
    const visited = new Set<TapeNode>();
    const visit = (node: TapeNode) => {
      if (visited.has(node)) return;
      visited.add(node);
      for (const input of node.inputs) if (input.producer) visit(input.producer);
      order.push(node);
    };
    visit(root.producer);
    this.gpu.profilePhase = "backward";
    for (const node of order.reverse()) {
      await node.backward();
      // Nothing reads an operation's output gradients after its backward (as in PyTorch, only
      // leaves keep theirs): giving them up lets a shared gradient buffer's last holder add to
      // it in place. The residual stream's one buffer then runs down all the blocks.
      for (const output of node.outputs) output.disposeGrad();
    }
  }

  /** Frees every activation (and its gradient) the tape made. */
  dispose(): void {
    for (const tensor of this.#owned) tensor.dispose();
    this.#owned.length = 0;
  }
}
