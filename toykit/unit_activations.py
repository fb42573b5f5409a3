"""Reading one layer of a hooked image model, and one number per channel from it.

Feature visualisation (``toykit.feature_vis``), dataset examples (``toykit.dataset_examples``)
and tuning curves (``toykit.tuning_curves``) all ask the same question: how strongly does a
channel of a layer respond to an image? This module answers it once, for any
``HookedRootModule`` that takes images ``[batch, channels, height, width]``:

- ``read_activation`` runs the model only as far as the hook point and returns its activation
  (``[batch, channels, h, w]`` for a conv layer, ``[batch, units]`` for a dense one). The later
  layers never run: a hook raises a private signal right after reading the activation, and
  ``HookedRootModule.hooks`` removes the hook on the way out, even after an error.
- ``spatial_reduce`` turns a conv activation into one number per channel: the mean over space,
  the max over space, the centre unit, or the unit at a given position ``(y, x)``;
  ``channel_response`` keeps one channel (or one unit of a dense layer).
"""

from __future__ import annotations

from typing import Union

import torch

from toykit.hooks import HookedRootModule, HookPoint, check_model
from toykit.validation import check_tensor

__all__ = ["Where", "channel_response", "check_where", "read_activation", "spatial_reduce"]

#: Which spatial units of a conv channel count: "mean" or "max" over space, "centre" (the unit
#: at [h // 2, w // 2]), or one position (y, x).
Where = Union[str, tuple[int, int]]  # noqa: UP007 (runtime alias)

_REDUCTIONS = ("mean", "max", "centre")


class _Stop(BaseException):
    """Raised by the reading hook to end the forward pass at the hook point.

    A BaseException, so that a model's own ``except Exception`` cannot swallow it."""


def read_activation(model: HookedRootModule, images: torch.Tensor, hook_name: str) -> torch.Tensor:
    """The activation at ``hook_name`` for a batch of images, without running later layers.

    images: [batch, channels, height, width] (float), on the model's device.
    Returns the activation as the hook saw it, e.g. [batch, channels, h, w] or [batch, units],
    still attached to the autograd graph when gradients are enabled (so an optimiser can
    differentiate through it). The model's mode and hooks are left as they were.
    If the hook point fires more than once in a forward pass, its first activation is returned.
    """
    check_model(model, HookedRootModule, [hook_name])
    check_tensor("images", images, ["batch", "channels", "height", "width"], dtype="float")
    seen: list[torch.Tensor] = []

    def stop_here(act: torch.Tensor, hook: HookPoint) -> None:
        seen.append(act)
        raise _Stop

    try:
        model.run_with_hooks(images, fwd_hooks=[(hook_name, stop_here)])
    except _Stop:
        pass
    if not seen:
        raise RuntimeError(f"read_activation: the hook point {hook_name!r} did not fire during the forward pass")
    return seen[0]


def check_where(where: object) -> None:
    """``where`` must be "mean", "max", "centre" or a position (y, x) of two ints."""
    if isinstance(where, str) and where in _REDUCTIONS:
        return
    if (isinstance(where, tuple) and len(where) == 2
            and all(isinstance(i, int) and not isinstance(i, bool) for i in where)):
        return
    raise ValueError(f"where must be 'mean', 'max', 'centre' or a position (y, x) of two ints, got {where!r}")


def spatial_reduce(acts: torch.Tensor, where: Where = "mean") -> torch.Tensor:
    """One number per channel: [batch, channels, h, w] -> [batch, channels].

    where: "mean" or "max" over the h × w positions, "centre" (the unit at [h // 2, w // 2]),
    or a position (y, x) (negative counts from the end). A dense activation [batch, units] has
    no spatial axes and is returned as it is (any ``where`` but a position is accepted).
    """
    check_tensor("acts", acts, dtype="float")
    check_where(where)
    if acts.ndim == 2:
        if isinstance(where, tuple):
            raise ValueError(f"where: a position (y, x) needs a conv activation [batch, channels, h, w], "
                             f"got shape {list(acts.shape)}")
        return acts
    if acts.ndim != 4:
        raise ValueError(f"acts must have shape [batch, channels, h, w] or [batch, units], got {list(acts.shape)}")
    h, w = acts.shape[-2:]
    if where == "mean":
        return acts.mean(dim=(-2, -1))
    if where == "max":
        return acts.amax(dim=(-2, -1))
    if isinstance(where, tuple):
        y, x = where
    else:  # "centre"
        y, x = h // 2, w // 2
    if not (-h <= y < h and -w <= x < w):
        raise ValueError(f"where: position {(y, x)} lies outside the activation's {h} × {w} grid")
    return acts[:, :, y, x]


def channel_response(acts: torch.Tensor, channel: int, where: Where = "mean") -> torch.Tensor:
    """One channel's response per image: [batch, channels, h, w] (or [batch, units]) -> [batch].

    channel: the channel (or, for a dense activation, the unit) index, 0 <= channel < channels.
    where: as in ``spatial_reduce``.
    """
    reduced = spatial_reduce(acts, where)
    n = reduced.shape[1]
    if not isinstance(channel, int) or isinstance(channel, bool) or not 0 <= channel < n:
        raise ValueError(f"channel must be an int in [0, {n}) for an activation of shape {list(acts.shape)}, "
                         f"got {channel!r}")
    return reduced[:, channel]
