"""The shapes image generators: 10k images of 32 x 32 (target: at least 10,000 images/s).

The first two figures are the median over repeats of one ``generate_shapes(10_000)`` call (all
five classes, ground truth included) and one ``generate_strokes(10_000)`` call, after a warm-up
call, at the benchmark's thread count; the third times ``render_line`` on a sweep of 180
angles, what a tuning curve needs.

    .venv/bin/python -m benchmarks.shapes [--quick]
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.common import figure, median, time_calls
from toykit.tasks.shapes import generate_shapes, generate_strokes, render_line

N = 10_000
TARGET = 10_000  # images per second


def run(quick: bool = False) -> dict:
    """{"figures": [...], "details": {...}}; quick: one timed call instead of five."""
    repeats = 1 if quick else 5
    threads = torch.get_num_threads()
    figures = []
    for name, generate in (("generate_shapes", generate_shapes), ("generate_strokes", generate_strokes)):
        seconds = median(time_calls(lambda generate=generate: generate(N, seed=0), repeats=repeats))
        figures.append(figure(f"shapes: {name}({N})", N / seconds, "images/s", at_least=TARGET,
                              note=f"median of {repeats}; {threads} threads"))
    angles = torch.arange(180.0)
    sweep = median(time_calls(lambda: render_line(angles), repeats=repeats))
    figures.append(figure("shapes: render_line over 180 angles", sweep * 1000, "ms",
                          note=f"median of {repeats}; {threads} threads"))
    return {"figures": figures, "details": {"n": N, "repeats": repeats, "threads": threads}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed call")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
