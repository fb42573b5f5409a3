"""Toy models of superposition: 100 instances of n=20 features in m=5 dimensions, batch 1024.

Figures: the time to train for 10k steps with ``toykit.superposition.train_toy_model`` (its
default of one CPU thread), and the matmul rate the training loop achieves as a fraction of
the machine's own float32 matmul rate at that thread count.

The 10k-step time is extrapolated from the median of a few timed runs of a few hundred steps
(the note says how many): a full 10k-step run takes several minutes on a 2-core laptop, more
than a benchmark run can spend on one figure.

The FLOP count is that of the matmuls alone (the einsums W x and Wᵀ h, and their backward):
10 · batch · instances · m · n per step. Everything else (drawing the sparse batch, the ReLU, the
loss, Adam) is elementwise and memory-bound, so the fraction says how much of a step is spent
doing arithmetic the machine is fast at.

    .venv/bin/python -m benchmarks.toy_models [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.common import figure, matmul_gflops, median, time_calls
from toykit.superposition import ToyModel, train_toy_model

N_INSTANCES, N_FEATURES, N_HIDDEN, BATCH = 100, 20, 5, 1024
FULL_STEPS = 10_000
THREADS = 1  # train_toy_model's default cpu_threads


def toy_model() -> ToyModel:
    # Feature probabilities from 1 down to 0.001 across instances, importance 0.9^i: the chapter's setting.
    probability = torch.logspace(0, -3, N_INSTANCES)
    importance = (0.9 ** torch.arange(N_FEATURES))[None, :]
    return ToyModel(N_INSTANCES, N_FEATURES, N_HIDDEN, feature_probability=probability, importance=importance,
                    device="cpu", seed=0)


def flops_per_step() -> int:
    # Forward: h = W x and x' = Wᵀ h, 2·B·m·n each per instance. Backward: dW and dh for the
    # second, dW for the first (x needs no gradient): three more of the same size.
    return 10 * BATCH * N_INSTANCES * N_HIDDEN * N_FEATURES


def run(quick: bool = False) -> dict:
    """{"figures": [...], "details": {...}}; quick: 3 runs of 10 steps instead of 5 of 200."""
    segments, steps = (3, 10) if quick else (5, 200)
    model = toy_model()

    def train() -> None:
        train_toy_model(model, steps=steps, batch_size=BATCH, device="cpu", progress=False, cpu_threads=THREADS)

    seconds = time_calls(train, repeats=segments, warmup=0)
    per_step = median(seconds) / steps
    achieved = flops_per_step() / per_step / 1e9
    reference = matmul_gflops(threads=THREADS, repeats=3 if quick else 7)
    how = f"extrapolated from the median of {segments} runs of {steps} steps"
    figures = [
        figure(f"toy models: {FULL_STEPS // 1000}k steps, {N_INSTANCES} instances (n={N_FEATURES}, m={N_HIDDEN}), "
               f"batch {BATCH}", per_step * FULL_STEPS, "s", note=f"{how}; {THREADS} thread"),
        figure("toy models: steps/s", 1 / per_step, "steps/s", note=f"median of {segments} runs of {steps} steps"),
        figure("toy models: matmul GFLOP/s achieved", achieved, "GFLOP/s",
               note=f"{flops_per_step() / 1e6:.1f} MFLOP of matmuls per step"),
        figure("toy models: fraction of the machine's matmul rate", achieved / reference, "",
               note=f"reference: 1024x1024 float32 matmul at {reference:.0f} GFLOP/s, {THREADS} thread"),
    ]
    details = {"seconds_per_step": round(per_step, 6), "segment_seconds": [round(s, 2) for s in seconds],
               "matmul_gflops_reference": round(reference, 1), "threads": THREADS}
    return {"figures": figures, "details": details}


def profile(steps: int = 50, row_limit: int = 15) -> str:
    """torch.profiler table of ``steps`` training steps, sorted by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model = toy_model()
    train_toy_model(model, steps=5, batch_size=BATCH, device="cpu", progress=False, cpu_threads=THREADS)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        train_toy_model(model, steps=steps, batch_size=BATCH, device="cpu", progress=False, cpu_threads=THREADS)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few dozen steps: a smoke run")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table instead")
    args = parser.parse_args()
    print(profile() if args.profile else json.dumps(run(args.quick), indent=1))


if __name__ == "__main__":
    main()
