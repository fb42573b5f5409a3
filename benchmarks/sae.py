"""Sparse autoencoder training speed: the standard SAE at d_in 128, d_sae 1024, batch 4096, on the CPU.

Figures:

- steps/s of ``toykit.sae.training.train_sae`` (everything a step does: draw the batch, forward,
  loss, backward, Adam, dead-latent tracking);
- the matmul rate that achieves, as a fraction of the machine's own float32 matmul rate at the
  same thread count, measured two ways: on a 1024 x 1024 matmul (the shared reference of
  ``benchmarks.common``) and on the step's own three matmul shapes (a fairer ceiling: thin
  matrices never run as fast as square ones);
- toykit's step time against a minimal hand-written PyTorch step doing the same arithmetic,
  timed in alternating rounds (the overhead of toykit's checks, hooks and bookkeeping);
- against SAELens, when it is installed (it is not a toykit dependency, and nothing here
  installs it): its standard SAE of the same size, stepped as SAELens's own trainer steps it;
  otherwise the figure says so.

FLOP count of one step, matmuls only: the encoder ((x − b_dec) W_enc) and decoder (f W_dec) are
2·B·d_in·d_sae each; backward needs the gradients of W_dec, of f, of W_enc and of the encoder's
input x − b_dec (for b_dec's gradient): four more of the same size, 12·B·d_in·d_sae in all. The
rest (ReLU, the losses, Adam, dead-latent tracking) is elementwise and memory-bound.

    .venv/bin/python -m benchmarks.sae [--quick]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as `python benchmarks/sae.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import figure, interleaved, matmul_gflops, median, paired_ratio, time_calls  # noqa: E402
from toykit.sae import make_sae  # noqa: E402
from toykit.sae.training import train_sae  # noqa: E402

D_IN, D_SAE, BATCH = 128, 1024, 4096
L1 = 1.0


def flops_per_step() -> int:
    return 12 * BATCH * D_IN * D_SAE


def _threads() -> int:
    return torch.get_num_threads()


def step_shapes_gflops(threads: int, repeats: int = 7) -> float:
    """The float32 rate of the step's own six matmuls: x W_enc, f W_dec, and the four backward ones."""
    g = torch.Generator().manual_seed(0)
    x, f = torch.randn(BATCH, D_IN, generator=g), torch.randn(BATCH, D_SAE, generator=g)
    W_enc, W_dec = torch.randn(D_IN, D_SAE, generator=g), torch.randn(D_SAE, D_IN, generator=g)
    grad_out = torch.randn(BATCH, D_IN, generator=g)

    def six() -> None:
        x @ W_enc  # encoder
        f @ W_dec  # decoder
        f.T @ grad_out  # dW_dec
        grad_out @ W_dec.T  # df
        x.T @ f  # dW_enc
        f @ W_enc.T  # d(x − b_dec)

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seconds = median(time_calls(six, repeats=repeats, warmup=2))
    finally:
        torch.set_num_threads(before)
    return flops_per_step() / seconds / 1e9


def _plain_trainer(data: torch.Tensor, steps: int):
    """The same arithmetic as a standard-SAE step of train_sae, written as plainly as possible."""
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(D_SAE, D_IN, generator=g)
    W_dec = (W_dec * 0.1 / W_dec.norm(dim=1, keepdim=True)).requires_grad_(True)
    W_enc = W_dec.detach().T.clone().requires_grad_(True)
    b_enc = torch.zeros(D_SAE, requires_grad=True)
    b_dec = torch.zeros(D_IN, requires_grad=True)
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=1e-4)

    def run() -> None:
        for _ in range(steps):
            x = data[torch.randint(0, data.shape[0], (BATCH,), generator=g)]
            f = torch.relu((x - b_dec) @ W_enc + b_enc)
            x_hat = f @ W_dec + b_dec
            loss = (x_hat - x).pow(2).sum(-1).mean() + L1 * (f.sum(0) @ W_dec.norm(dim=1)) / BATCH
            opt.zero_grad()
            loss.backward()
            opt.step()

    return run


def _saelens_trainer(data: torch.Tensor, steps: int):
    """SAELens's standard SAE (d_in, d_sae, l1 as here), stepped as its SAETrainer steps it: the
    training forward pass, the firing counts, backward, gradient clipping at 1, Adam, zero_grad.
    None when SAELens is not installed."""
    if importlib.util.find_spec("sae_lens") is None:
        return None
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig

    torch.manual_seed(0)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=L1, device="cpu",
                                                        dtype="float32"))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    since_fired = torch.zeros(D_SAE)
    g = torch.Generator().manual_seed(0)

    def run() -> None:
        for step in range(steps):
            x = data[torch.randint(0, data.shape[0], (BATCH,), generator=g)]
            out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={"l1": L1}, dead_neuron_mask=None,
                                                           n_training_steps=step, is_logging_step=False))
            with torch.no_grad():
                since_fired.add_(1)[out.feature_acts.bool().any(0)] = 0
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
            opt.step()
            opt.zero_grad()

    return run


def run(quick: bool = False) -> dict:
    """{"figures": [...], "details": {...}}; quick: 3 rounds of 3 steps instead of 7 rounds of 20."""
    rounds, steps = (3, 3) if quick else (7, 20)
    threads = _threads()
    data = torch.randn(4 * BATCH, D_IN, generator=torch.Generator().manual_seed(1))
    sae = make_sae(d_in=D_IN, d_sae=D_SAE, device="cpu")

    def toykit_steps() -> None:
        train_sae(sae, data, steps=steps, batch_size=BATCH, lr=1e-4, sparsity_coefficient=L1, device="cpu",
                  progress=False, cpu_threads=threads, log_every=steps)

    runs = {"toykit": toykit_steps, "plain": _plain_trainer(data, steps)}
    saelens = _saelens_trainer(data, steps)
    if saelens is not None:
        runs["saelens"] = saelens
    times = interleaved(runs, rounds=rounds)
    per_step = median(times["toykit"]) / steps
    achieved = flops_per_step() / per_step / 1e9
    square = matmul_gflops(threads=threads)
    own = step_shapes_gflops(threads)
    note = f"median of {rounds} rounds of {steps} steps, {threads} threads"
    figures = [
        figure(f"SAE (standard, d_in {D_IN}, d_sae {D_SAE}, batch {BATCH}): steps/s", 1 / per_step, "steps/s",
               note=note),
        figure("SAE: matmul GFLOP/s achieved", achieved, "GFLOP/s",
               note=f"{flops_per_step() / 1e9:.2f} GFLOP of matmuls per step"),
        figure("SAE: fraction of the machine's matmul rate (1024x1024 reference)", achieved / square, "",
               note=f"reference {square:.0f} GFLOP/s, {threads} threads"),
        figure("SAE: fraction of the rate of the step's own matmul shapes", achieved / own, "",
               note=f"the six matmuls of a step alone run at {own:.0f} GFLOP/s"),
        figure("SAE: step time, toykit / plain PyTorch", paired_ratio(times["toykit"], times["plain"]), "x",
               at_most=1.1, note=f"paired rounds; {note}"),
    ]
    if saelens is None:
        figures.append(figure("SAE: step time, toykit / SAELens", None, "x",
                              note="SAELens is not installed; compared with the FLOP rate above instead"))
    else:
        version = importlib.metadata.version("sae_lens")
        figures.append(figure("SAE: step time, toykit / SAELens", paired_ratio(times["toykit"], times["saelens"]), "x",
                              note=f"optional: SAELens {version} is installed; its StandardTrainingSAE stepped as its "
                                   f"SAETrainer does (with gradient clipping); lower is faster; {note}"))
    details = {"seconds_per_step": round(per_step, 5),
               "plain_seconds_per_step": round(median(times["plain"]) / steps, 5),
               "flops_per_step": flops_per_step(), "matmul_gflops_square": round(square, 1),
               "matmul_gflops_step_shapes": round(own, 1), "threads": threads}
    return {"figures": figures, "details": details}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
