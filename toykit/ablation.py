"""Knock attention heads out, to see what a model does without them.

An *ablation* replaces part of a model's computation with something that carries no
information about the input, and measures what breaks. For an attention head the natural
place is its output z (``blocks.{layer}.attn.hook_z``, [batch, pos, n_heads, d_head]): the
head then writes a fixed vector (z @ W_O) whatever the input.

- **zero ablation** sets the head's z to 0. Simple, but zero may be a value the head never
  produces, which pushes the later layers off the distribution they were trained on.
- **mean ablation** sets it to its mean, the head's "typical" output. It removes what the head
  says about *this* input while keeping its average effect. Say what the mean is taken over:
  ``mean_over="batch_and_pos"`` (one vector for every prompt and position; the default here)
  or ``mean_over="batch"`` (one vector per position, over prompts aligned position by
  position; the default of ``toykit.patching.ablation_hooks``). ``mean_activation`` computes
  both, for this module and for ``toykit.patching``.

Neither is "the" importance of a head: when they disagree, that is worth understanding.
The hook follows TransformerLens's signature ``fn(activation, hook)``; bind the extra
arguments with ``functools.partial``. ``toykit.circuits.ablated_loss_by_position`` measures
the loss with heads ablated this way, and ``toykit.patching.ablation_hooks`` generalises to
any activation, reference prompts and resample ablation (Chapter 06).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from toykit.hooks import HookPoint
from toykit.validation import check_tensor

__all__ = ["ABLATION_METHODS", "MEAN_OVER", "head_ablation_hook", "mean_activation"]

ABLATION_METHODS = ("zero", "mean")
#: What a mean ablation averages over: the prompts (a mean per position), or prompts and positions.
MEAN_OVER = ("batch", "batch_and_pos")


def mean_activation(act: torch.Tensor, *, mean_over: str) -> torch.Tensor:
    """The mean that a mean ablation writes in, shaped to broadcast against act.

    act: [batch, pos, ...] (a reference run's activation; position is axis 1).
    mean_over: "batch" -> [1, pos, ...], a mean per position over the prompts (prompts must be
        aligned position by position); "batch_and_pos" -> [1, 1, ...], one mean for every prompt
        and position.
    """
    check_tensor("act", act, dtype="float")
    if act.ndim < 2:
        raise ValueError(f"act must have shape [batch, pos, ...] (at least 2 dims), got {list(act.shape)}")
    if mean_over not in MEAN_OVER:
        raise ValueError(f"mean_over must be one of {MEAN_OVER}, got {mean_over!r}")
    return act.mean(dim=(0,) if mean_over == "batch" else (0, 1), keepdim=True)


def head_ablation_hook(
    z: torch.Tensor,
    hook: HookPoint | None,
    head_index: int | Sequence[int],
    method: str = "zero",
    *,
    mean_over: str = "batch_and_pos",
) -> torch.Tensor:
    """A hook for ``blocks.{layer}.attn.hook_z`` that knocks out some heads of that layer.

    z: [batch, pos, n_heads, d_head]. head_index: one head or a list of heads.
    method: "zero" sets z[:, :, head] to 0; "mean" sets it to its mean over this batch (see
        ``mean_activation``): over batch and positions by default (the same [d_head] vector
        everywhere), or per position with mean_over="batch".
    Returns a new tensor (z itself is not changed); the other heads are untouched.
    """
    check_tensor("z", z, ["batch", "pos", "n_heads", "d_head"], dtype="float")
    if method not in ABLATION_METHODS:
        raise ValueError(f"method must be 'zero' or 'mean', got {method!r}")
    heads = [head_index] if isinstance(head_index, int) else list(head_index)
    n_heads = z.shape[2]
    for h in heads:
        if not isinstance(h, int) or isinstance(h, bool) or not 0 <= h < n_heads:
            raise ValueError(f"head_index must be an int (or a list of ints) in [0, n_heads={n_heads}), "
                             f"got {head_index!r}")
    mean = mean_activation(z, mean_over=mean_over) if method == "mean" else None  # before any head changes
    z = z.clone()
    for h in heads:
        z[:, :, h] = 0.0 if mean is None else mean[:, :, h]
    return z

