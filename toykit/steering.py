"""Steering: push a model's residual stream along a direction and see what it does.

A probe shows that a direction *holds* information; adding that direction to the residual
stream and watching the output change shows that the model *uses* it (Chapter 05; Chapter 08
builds activation addition on the same idea).
"""

from __future__ import annotations

import torch

from toykit.validation import check_tensor

__all__ = ["steer_resid"]


def steer_resid(resid: torch.Tensor, direction: torch.Tensor, alpha: float, pos: torch.Tensor) -> torch.Tensor:
    """Add alpha times the *unit* vector along direction at one position per prompt.

    resid: [batch, pos, d_model]; direction: [d_model] or [batch, d_model] (one per prompt);
    pos: [batch] int, the position to steer in each row. Returns a new tensor.
    """
    dims = check_tensor("resid", resid, ["batch", "pos", "d_model"], dtype="float")
    check_tensor("pos", pos, ["batch"], dtype="int", dims=dims)
    check_tensor("direction", direction, dtype="float")
    unit = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = resid.clone()
    rows = torch.arange(resid.shape[0], device=resid.device)
    out[rows, pos.to(resid.device)] += alpha * unit.to(resid)
    return out
