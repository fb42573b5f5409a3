"""Knock attention heads out, to see what a model does without them.

An *ablation* replaces part of a model's computation with something that carries no
information about the input, and measures what breaks. For an attention head the natural
place is its output z (``blocks.{layer}.attn.hook_z``, [batch, pos, n_heads, d_head]): the
head then writes a fixed vector (z @ W_O) whatever the input.

- **zero ablation** sets the head's z to 0. Simple, but zero may be a value the head never
  produces, which pushes the later layers off the distribution they were trained on.
- **mean ablation** sets it to its mean over the batch and positions, the head's "typical"
  output. It removes what the head says about *this* input while keeping its average effect.

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

__all__ = ["ABLATION_METHODS", "head_ablation_hook"]

ABLATION_METHODS = ("zero", "mean")


def head_ablation_hook(
    z: torch.Tensor,
    hook: HookPoint | None,
    head_index: int | Sequence[int],
    method: str = "zero",
) -> torch.Tensor:
    """A hook for ``blocks.{layer}.attn.hook_z`` that knocks out some heads of that layer.

    z: [batch, pos, n_heads, d_head]. head_index: one head or a list of heads.
    method: "zero" sets z[:, :, head] to 0; "mean" sets it to z[:, :, head].mean over batch
        and positions ([d_head], the same vector everywhere).
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
    z = z.clone()
    for h in heads:
        z[:, :, h] = z[:, :, h].mean(dim=(0, 1)) if method == "mean" else 0.0
    return z

