"""The PyTorch peer of `deno task bench --train`: the same GPT-2 training step on the CPU.

The model is GPT-2 as `nn/gpt2.ts` builds it (pre-norm blocks, tanh GELU, the lm head tied to
the token embedding, the same initialization), trained on seeded random tokens with AdamW as
`GPT_ADAMW` sets it (betas 0.9 and 0.95, weight decay 0.1 on the matrices and embeddings only,
the gradient clipped to a norm of 1), one micro-batch a step, as the train-step benchmark runs
ours. It prints one JSON line: tokens per second over the timed steps, after untimed warm-up
steps, and the parameter count (the bench checks it against ours).

    python3 bench/pytorch_peer.py --shape V8192,L4,H4,C128,T256,B8 --threads 2

Needs PyTorch (on Debian: `apt-get install python3-torch libopenblas0-openmp`). The bench runs it
after each of its own configurations when `python3 -c "import torch"` works, so both figures come
from the same run on the same machine.
"""

import argparse
import json
import math
import re
import time

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """One transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.fc_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        rows, length, width = x.shape  # (B, T, C)
        size = width // self.heads
        q, k, v = self.qkv(self.ln_1(x)).split(width, dim=2)  # each (B, T, C)
        # Each (B, NH, T, HS).
        q, k, v = (t.view(rows, length, self.heads, size).transpose(1, 2) for t in (q, k, v))
        # PyTorch 1.13 has no fused attention: the (B, NH, T, T) scores are made.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(size)
        weights = scores.masked_fill(masked[:length, :length], float("-inf")).softmax(dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(rows, length, width)  # (B, T, C)
        x = x + self.proj(mixed)
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    """GPT-2 with its lm head tied to the token embedding."""

    def __init__(self, vocab: int, context: int, layers: int, heads: int, width: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        causal = torch.ones(context, context, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("masked", causal, persistent=False)
        # GPT-2's initialization, as nn/gpt2.ts: matrices N(0, 0.02), the projections into the
        # residual stream scaled by 1/sqrt(2L), wpe N(0, 0.01), biases 0, layernorms 1 and 0.
        for name, p in self.named_parameters():
            if p.dim() == 2:
                residual = name.endswith(("proj.weight", "fc_proj.weight"))
                std = 0.02 / math.sqrt(2 * layers) if residual else 0.02
                nn.init.normal_(p, std=0.01 if name == "wpe.weight" else std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1])
        x = self.wte(tokens) + self.wpe(positions)  # (B, T, C)
        for block in self.blocks:
            x = block(x, self.masked)
        logits = self.ln_f(x) @ self.wte.weight.t()  # (B, T, V)
        # reshape, not view: the targets are a slice of the token rows, not contiguous.
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def parse_shape(text: str) -> dict:
    """`V8192,L4,H4,C128,T256,B8` (the bench's shape) as a dict of the six sizes."""
    sizes = dict(re.findall(r"([VLHCTB])(\d+)", text))
    if sorted(sizes) != sorted("VLHCTB"):
        raise SystemExit(f"--shape needs V, L, H, C, T and B (V8192,L4,H4,C128,T256,B8): {text}")
    return {key: int(value) for key, value in sizes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", required=True, help="V8192,L4,H4,C128,T256,B8")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=6, help="timed steps")
    args = parser.parse_args()
    s = parse_shape(args.shape)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = GPT(s["V"], s["T"], s["L"], s["H"], s["C"])
    # Decay on the matrices and embeddings, none on biases and layernorms, as GPT_ADAMW.
    decayed = [p for p in model.parameters() if p.dim() == 2]
    others = [p for p in model.parameters() if p.dim() != 2]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
        lr=1e-4,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    tokens = torch.randint(s["V"], (s["B"], s["T"] + 1))

    def step() -> float:
        loss = model(tokens[:, :-1], tokens[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - started
    per_step = s["B"] * s["T"]
    print(json.dumps({
        "peer": f"PyTorch {torch.__version__}, {args.threads} threads",
        "shape": args.shape,
        "parameters": sum(p.numel() for p in model.parameters()),
        "msPerStep": round(1000 * seconds / args.steps, 1),
        "tokensPerSecond": round(per_step * args.steps / seconds, 1),
    }))


if __name__ == "__main__":
    main()
