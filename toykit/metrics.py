"""One normalised metric: how far a value has moved from a baseline toward a target.

Several quantities in the course are the same ratio under different names:

- patching: the fraction of the logit difference a patch restores, 0 at the corrupted run
  (baseline) and 1 at the clean run (target);
- circuits: the fraction of the model's logit difference a circuit keeps (Wang et al.'s
  faithfulness, baseline 0 and target the full model);
- SAEs: loss recovered, 0 at the ablated loss (baseline) and 1 at the clean loss (target).

They all call ``normalize_metric``. Its two reference points are keyword-only, so that the
order of arguments can never silently swap them.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["as_number", "normalize_metric"]


def normalize_metric(value: float | torch.Tensor, *, baseline: float | torch.Tensor,
                     target: float | torch.Tensor) -> Any:
    """(value - baseline) / (target - baseline): 0 at the baseline, 1 at the target.

    value: a number or a tensor of any shape (each entry is normalised). baseline, target:
    numbers or 1-element tensors. Returns the type of value. Raises ValueError when the
    baseline and the target are (nearly) equal: there is then nothing to normalise by.
    """
    baseline, target = as_number("baseline", baseline), as_number("target", target)
    if abs(target - baseline) < 1e-8:
        raise ValueError(f"target ({target:.4g}) and baseline ({baseline:.4g}) are equal: nothing to normalise "
                         "by (do the two runs differ in what the metric measures?)")
    return (value - baseline) / (target - baseline)


def as_number(name: str, x: float | torch.Tensor) -> float:
    """x as a float: a number, or a 1-element tensor; any other input is an error naming ``name``."""
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"{name} must be a number or a 1-element tensor, got shape {list(x.shape)}")
        return x.item()
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    raise TypeError(f"{name} must be a number or a 1-element tensor, got {type(x).__name__}")
