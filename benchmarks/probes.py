"""Probe fitting: 20k activations of width 256 (target: at most 2 s on a laptop CPU).

The activations are synthetic but shaped like a residual stream: correlated features with
scales spread over two orders of magnitude, classes separated along a few directions, and
some label noise so that the classes overlap (the slow case for the optimiser). Each figure
is the median over repeats of one ``toykit.probes.fit_probe`` call (logistic regression by
L-BFGS or ridge in closed form, with its held-out split and scoring), after a warm-up call.

    .venv/bin/python -m benchmarks.probes [--quick]
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.common import figure, median, time_calls
from toykit.probes import fit_probe

N, D = 20_000, 256
TARGET_S = 2.0
#: name -> (classes, share of labels redrawn at random)
CASES = {"2 classes, 20% label noise": (2, 0.2), "4 classes, 10% label noise": (4, 0.1),
         "10 classes, separable": (10, 0.0)}


def activations(n: int, d: int, n_classes: int, label_noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x [n, d]: correlated, differently scaled features; y [n]: labels, a share redrawn."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g) / d**0.5
    y = torch.randint(0, n_classes, (n,), generator=g)
    centres = 0.1 * torch.randn(n_classes, d, generator=g)
    x = (torch.randn(n, d, generator=g) @ mixing) * torch.logspace(-1, 1, d) + centres[y]
    redraw = torch.rand(n, generator=g) < label_noise
    return x, torch.where(redraw, torch.randint(0, n_classes, (n,), generator=g), y)


def run(quick: bool = False) -> dict:
    """{"figures": [...], "details": {...}}; quick: one timed call per case instead of five."""
    repeats = 1 if quick else 5
    threads = torch.get_num_threads()
    figures, details = [], {"n": N, "d": D, "repeats": repeats, "threads": threads}
    for name, (n_classes, noise) in CASES.items():
        x, y = activations(N, D, n_classes, noise)
        fit = fit_probe(x, y)
        seconds = median(time_calls(lambda x=x, y=y: fit_probe(x, y), repeats=repeats))
        figures.append(figure(f"probes: logistic probe on {N // 1000}k x {D}, {name}", seconds, "s",
                              at_most=TARGET_S, note=f"median of {repeats}; {threads} threads; "
                                                     f"held-out accuracy {fit.test_score:.3f}"))
        details[f"test_accuracy {name}"] = round(fit.test_score, 4)
    x, _ = activations(N, D, 2, 0.0)
    target = x @ torch.randn(D, generator=torch.Generator().manual_seed(1))
    seconds = median(time_calls(lambda: fit_probe(x, target), repeats=repeats))
    figures.append(figure(f"probes: ridge probe on {N // 1000}k x {D}", seconds, "s", at_most=TARGET_S,
                          note=f"median of {repeats}; {threads} threads"))
    return {"figures": figures, "details": details}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed call per case")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
