"""Learning-rate schedules shared by every training loop in toykit."""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(schedule: str | Callable[[int, int], float], step: int, steps: int, warmup: int = 0) -> float:
    """The multiplier of the base learning rate at ``step`` (0-based) of ``steps``.

    A linear warm-up from 1/warmup to 1 over the first ``warmup`` steps, then the schedule
    over the remaining steps: "constant" (1), "cosine" (1 down to 0) or "linear" (1 down to 0);
    a callable ``f(step, steps) -> factor`` replaces the whole rule (warm-up included).
    """
    if callable(schedule):
        return float(schedule(step, steps))
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES} or a callable f(step, steps), got {schedule!r}")
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = (step - warmup) / max(1, steps - warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * frac))
    return 1.0 - frac
