"""Grokking speed: full-batch epochs per second of the canonical run (issue 6).

The canonical run is the shipped one, ``toykit.grokking.GrokkingRecipe``: p = 113, the
paper's split (``paper_split``: 3,830 training inputs), one full-batch AdamW step per epoch
with the 10-step LambdaLR warm-up and weight decay on every trained parameter, on the paper's
model (1 layer, d_model 128, 4 heads, d_mlp 512, ReLU, no LayerNorm; the weight matrices and
the MLP biases trained) and a float64 cross-entropy over all p + 1 = 114 classes. Figures:

- epochs/s of toykit's training step (the loop body of ``train_grokking`` with the recipe's
  options: ``last_position_logits``, the loss, AdamW, the schedule) and of three minimal
  plain-PyTorch models of the same size and the same trained parameters and classes, written
  here, timed in alternating rounds:
    * "every position": the whole model at all three positions, logits read at the last
      (how the paper's code does it);
    * "last position": attention at every position, the MLP and unembedding at the last only;
    * "lookup tables": the same maths as toykit (queries, keys and values looked up per
      (position, token)), so the gap is toykit's own overhead.
  The target is toykit / the fastest plain model >= 0.9.
- epochs/s of ``train_grokking`` itself with the recipe's settings (logging every 100
  epochs, progress measures off), and the time that implies for the recipe's epochs.

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
from toykit.grokking import GrokkingRecipe, grokking_model, is_trained, last_position_logits, train_grokking

RECIPE = GrokkingRecipe()  # the shipped run: sizes, split, optimiser settings, epochs
P, D_MODEL, N_HEADS, D_MLP = RECIPE.p, RECIPE.d_model, RECIPE.n_heads, RECIPE.d_mlp
N_CLASSES = P + 1 if RECIPE.n_classes is None else RECIPE.n_classes  # None: all d_vocab = p + 1 logits


# -- minimal plain-PyTorch models of the same size -------------------------------------------------


class PlainGrokModel(nn.Module):
    """One attention layer and one ReLU MLP, no LayerNorm, no biases except the MLP's (trained,
    as in the recipe); tokens [b, 3] -> logits [b, n_classes] at the last position. ``mode``:
    "all" (every position), "last" (MLP and unembedding at the last position only) or "tables"
    (q, k, v looked up per (position, token))."""

    def __init__(self, mode: str, p: int = P, d_model: int = D_MODEL, n_heads: int = N_HEADS, d_mlp: int = D_MLP,
                 n_classes: int = N_CLASSES, n_ctx: int = 3) -> None:
        super().__init__()
        self.mode, self.p, self.h, self.e = mode, p, n_heads, d_model // n_heads
        g = torch.Generator().manual_seed(0)

        def weight(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=g) * 0.8 / math.sqrt(d_model))

        self.W_E, self.W_pos = weight(p + 1, d_model), weight(n_ctx, d_model)
        self.W_QKV = weight(d_model, 3 * d_model)  # q | k | v, heads concatenated
        self.W_O = weight(d_model, d_model)
        self.W_in, self.W_out = weight(d_model, d_mlp), weight(d_mlp, d_model)
        self.b_in, self.b_out = nn.Parameter(torch.zeros(d_mlp)), nn.Parameter(torch.zeros(d_model))
        self.W_U = weight(d_model, n_classes)
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
        x = x + F.linear(F.relu(F.linear(x, self.W_in.T, self.b_in)), self.W_out.T, self.b_out)
        logits = x @ self.W_U
        return logits if self.mode != "all" else logits[:, -1]


# -- the measurements ------------------------------------------------------------------------------


def _step_fn(forward, params, tokens: torch.Tensor, labels: torch.Tensor, epochs: int):
    """A closure running ``epochs`` full-batch steps as ``train_grokking`` does with the recipe's
    settings: logits [b, n_classes], float64 cross-entropy, AdamW, then the warm-up schedule."""
    r = RECIPE
    optimiser = torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay, betas=r.betas, foreach=False)
    schedule = (torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(step / r.lr_warmup, 1.0))
                if r.lr_warmup else None)

    def run() -> None:
        for _ in range(epochs):
            loss = F.cross_entropy(forward(tokens).double(), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if schedule is not None:
                schedule.step()

    return run


def _toykit_step(tokens: torch.Tensor, labels: torch.Tensor, epochs: int):
    model = grokking_model(P, d_model=D_MODEL, n_heads=N_HEADS, d_mlp=D_MLP, device="cpu").train()
    trained = []
    for name, p in model.named_parameters():
        if is_trained(name, RECIPE.train_mlp_biases):  # train_grokking's own choice: W_*, b_in, b_out
            trained.append(p)
        else:
            p.requires_grad_(False)  # as train_grokking: the other biases get no gradients
    return _step_fn(lambda t: last_position_logits(model, t, N_CLASSES), trained, tokens, labels, epochs)


def _plain_step(mode: str, tokens: torch.Tensor, labels: torch.Tensor, epochs: int):
    model = PlainGrokModel(mode).train()
    return _step_fn(model, list(model.parameters()), tokens, labels, epochs)


def run(quick: bool = False) -> dict:
    """All the grokking figures: {"figures": [...], "details": {...}}."""
    split = RECIPE.split("cpu")  # paper_split(p, frac_train, data_seed)
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
    n_epochs, r = (20 if quick else 200), RECIPE
    loop = interleaved({"train_grokking": lambda: train_grokking(
        grokking_model(P, d_model=D_MODEL, n_heads=N_HEADS, d_mlp=D_MLP, seed=r.seed, device="cpu"), split,
        n_epochs, lr=r.lr, weight_decay=r.weight_decay, betas=r.betas, lr_warmup=r.lr_warmup,
        train_mlp_biases=r.train_mlp_biases, n_classes=r.n_classes, log_every=r.log_every, measures=False,
        progress=False, device="cpu")}, rounds=1 if quick else 2, warmup=0)["train_grokking"]
    loop_eps = n_epochs / median(loop)
    figures.append(figure("training epochs/s, toykit.grokking.train_grokking", loop_eps, "epochs/s",
                          note=f"{n_epochs} epochs, logging every {r.log_every}, progress measures off"))
    figures.append(figure(f"implied time of the shipped run ({r.epochs} epochs)", r.epochs / loop_eps / 60,
                          "min", note=f"at this thread count; the recipe uses cpu_threads={r.cpu_threads}"))
    details = {"config": {"p": P, "frac_train": r.frac_train, "d_model": D_MODEL, "n_heads": N_HEADS, "d_mlp": D_MLP,
                          "n_classes": N_CLASSES, "train_mlp_biases": r.train_mlp_biases, "lr_warmup": r.lr_warmup,
                          "split": "paper_split"},
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
