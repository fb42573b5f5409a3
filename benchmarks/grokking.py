"""Grokking speed: full-batch epochs per second of the canonical run (issue 6).

The canonical run is p = 113, train fraction 0.3 (3,830 training inputs, one full-batch AdamW
step per epoch) on the paper's model: 1 layer, d_model 128, 4 heads, d_mlp 512, ReLU, no
LayerNorm, biases not trained. Figures:

- epochs/s of toykit's training step (``toykit.grokking.last_position_logits`` + float64
  cross-entropy + AdamW, as ``train_grokking`` does it) and of three minimal plain-PyTorch
  models of the same size written here, timed in alternating rounds:
    * "every position": the whole model at all three positions, logits read at the last
      (how the paper's code does it);
    * "last position": attention at every position, the MLP and unembedding at the last only;
    * "lookup tables": the same maths as toykit (queries, keys and values looked up per
      (position, token)), so the gap is toykit's own overhead.
  The target is toykit / the fastest plain model >= 0.9.
- epochs/s of ``train_grokking`` itself (logging every 100 epochs, progress measures off),
  and the time that implies for the shipped run (``toykit.grokking.GrokkingRecipe``).

    .venv/bin/python -m benchmarks.grokking [--quick] [--threads N]

This is a benchmark, not a test: the numbers depend on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.common import figure, interleaved, median, paired_ratio
from toykit.grokking import GrokkingRecipe, grokking_model, last_position_logits, train_grokking
from toykit.tasks.modular_addition import make_split

P, FRAC, D_MODEL, N_HEADS, D_MLP = 113, 0.3, 128, 4, 512


# -- minimal plain-PyTorch models of the same size -------------------------------------------------


class PlainGrokModel(nn.Module):
    """One attention layer and one ReLU MLP, no LayerNorm, no biases; tokens [b, 3] -> logits
    [b, p] at the last position. ``mode``: "all" (every position), "last" (MLP and unembedding
    at the last position only) or "tables" (q, k, v looked up per (position, token))."""

    def __init__(self, mode: str, p: int = P, d_model: int = D_MODEL, n_heads: int = N_HEADS, d_mlp: int = D_MLP,
                 n_ctx: int = 3) -> None:
        super().__init__()
        self.mode, self.p, self.h, self.e = mode, p, n_heads, d_model // n_heads
        g = torch.Generator().manual_seed(0)

        def weight(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=g) * 0.8 / math.sqrt(d_model))

        self.W_E, self.W_pos = weight(p + 1, d_model), weight(n_ctx, d_model)
        self.W_QKV = weight(d_model, 3 * d_model)  # q | k | v, heads concatenated
        self.W_O = weight(d_model, d_model)
        self.W_in, self.W_out = weight(d_model, d_mlp), weight(d_mlp, d_model)
        self.W_U = weight(d_model, p)
        mask = torch.ones(n_ctx, n_ctx, dtype=torch.bool).triu(1)
        self.register_buffer("future", mask, persistent=False)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [b, q_pos, h, e], k/v [b, k_pos, h, e] -> [b, q_pos, h * e]."""
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(self.e)
        n_q, n_k = q.shape[1], k.shape[1]
        scores = scores.masked_fill(self.future[n_k - n_q:n_k, :n_k], float("-inf"))
        z = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v)
        return z.reshape(*z.shape[:2], -1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n = tokens.shape
        d = self.W_E.shape[1]
        if self.mode == "tables":
            table = (self.W_E[None] + self.W_pos[:n, None]).reshape(-1, d)  # [n * V, d]
            rows = tokens + torch.arange(n) * self.W_E.shape[0]
            q_tab, kv_tab = (table @ self.W_QKV).split([d, 2 * d], dim=-1)
            k, v = F.embedding(rows, kv_tab).view(b, n, 2, self.h, self.e).unbind(2)
            q = F.embedding(rows[:, -1], q_tab).view(b, 1, self.h, self.e)
            pattern = ((q * k).sum(-1) / math.sqrt(self.e)).softmax(1)
            x = F.embedding(rows[:, -1], table) + (pattern[..., None] * v).sum(1).reshape(b, d) @ self.W_O
        else:
            x = self.W_E[tokens] + self.W_pos[:n]
            q, k, v = (x @ self.W_QKV).view(b, n, 3, self.h, self.e).unbind(2)
            x = x + self.attend(q, k, v) @ self.W_O
            if self.mode == "last":
                x = x[:, -1]
        x = x + F.relu(x @ self.W_in) @ self.W_out
        logits = x @ self.W_U
        return logits if self.mode != "all" else logits[:, -1]


# -- the measurements ------------------------------------------------------------------------------


def _step_fn(forward, params, tokens: torch.Tensor, labels: torch.Tensor, epochs: int):
    """A closure running ``epochs`` full-batch steps: logits, float64 cross-entropy, AdamW."""
    optimiser = torch.optim.AdamW(params, lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98), foreach=False)

    def run() -> None:
        for _ in range(epochs):
            loss = F.cross_entropy(forward(tokens).double(), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    return run


def _toykit_step(tokens: torch.Tensor, labels: torch.Tensor, epochs: int):
    model = grokking_model(P, d_model=D_MODEL, n_heads=N_HEADS, d_mlp=D_MLP, device="cpu").train()
    weights = []
    for name, p in model.named_parameters():
        if name.rsplit(".", 1)[-1].startswith("W_"):
            weights.append(p)
        else:
            p.requires_grad_(False)  # as train_grokking: the biases are not trained
    return _step_fn(lambda t: last_position_logits(model, t, P), weights, tokens, labels, epochs)


def _plain_step(mode: str, tokens: torch.Tensor, labels: torch.Tensor, epochs: int):
    model = PlainGrokModel(mode).train()
    return _step_fn(model, list(model.parameters()), tokens, labels, epochs)


def run(quick: bool = False) -> dict:
    """All the grokking figures: {"figures": [...], "details": {...}}."""
    split = make_split(P, FRAC, seed=0)
    tokens, labels = split.train_tokens, split.train_labels
    epochs, rounds = (2, 3) if quick else (5, 10)
    runs = {"toykit": _toykit_step(tokens, labels, epochs)}
    for mode in ("all", "last", "tables"):
        runs[f"plain_{mode}"] = _plain_step(mode, tokens, labels, epochs)
    times = interleaved(runs, rounds=rounds, warmup=1)
    eps = {name: epochs / median(t) for name, t in times.items()}
    fastest = max(("plain_all", "plain_last", "plain_tables"), key=lambda name: eps[name])
    note = f"median of {rounds} alternating rounds of {epochs} epochs, {len(tokens)} training inputs"
    labels_ = {"plain_all": "every position", "plain_last": "last position", "plain_tables": "lookup tables"}
    figures = [figure("training epochs/s, toykit", eps["toykit"], "epochs/s", note=note)]
    for name, label in labels_.items():
        figures.append(figure(f"training epochs/s, plain PyTorch ({label})", eps[name], "epochs/s", note=note))
    figures.append(figure(f"training speed, toykit / fastest plain PyTorch ({labels_[fastest]})",
                          paired_ratio(times[fastest], times["toykit"]), "x", at_least=0.9,
                          note="paired ratio of epochs/s, same run"))
    figures.append(figure("training speed, toykit / plain PyTorch (every position, as the paper's code)",
                          paired_ratio(times["plain_all"], times["toykit"]), "x", note="no target"))

    # The loop learners and the recipe call, with its logging.
    n_epochs = 20 if quick else 200
    loop = interleaved({"train_grokking": lambda: train_grokking(
        grokking_model(P, device="cpu"), split, n_epochs, log_every=100, measures=False, progress=False,
        device="cpu")}, rounds=1 if quick else 2, warmup=0)["train_grokking"]
    loop_eps = n_epochs / median(loop)
    recipe = GrokkingRecipe()
    figures.append(figure("training epochs/s, toykit.grokking.train_grokking", loop_eps, "epochs/s",
                          note=f"{n_epochs} epochs, logging every 100"))
    figures.append(figure(f"implied time of the shipped run ({recipe.epochs} epochs)", recipe.epochs / loop_eps / 60,
                          "min", note="at this thread count; the recipe uses cpu_threads=1"))
    details = {"config": {"p": P, "frac_train": FRAC, "d_model": D_MODEL, "n_heads": N_HEADS, "d_mlp": D_MLP},
               "seconds_per_epoch": {k: round(1 / v, 5) for k, v in eps.items()},
               "torch_threads": torch.get_num_threads(), "epochs_per_round": epochs, "rounds": rounds}
    return {"figures": figures, "details": details}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the recipe)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(run(args.quick), indent=1))


if __name__ == "__main__":
    main()
