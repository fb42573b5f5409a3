"""Orientation tuning curves: how a channel's response changes with a stimulus's orientation.

A tuning curve is the mean response of a channel to a set of stimuli under each condition (for
example lines at 0°, 15°, ..., 165°), as neuroscientists describe a neuron's preferences.
Cammarata et al. 2020, "Curve Detectors" (Distill), section "Radial Tuning Curve", read
InceptionV1's curve detectors this way.

Orientation is an axial quantity: a line at 10° is the same line as at 190°. Its statistics
therefore use the doubled angle 2θ. ``preferred_orientation`` returns the response-weighted
circular mean orientation and the circular variance, the orientation-selectivity index of
Ringach, Shapley & Hawken 2002, "Orientation selectivity in macaque V1: diversity and laminar
dependence" (J. Neurosci. 22(13), Methods):

    CV = 1 - |Σ_k r_k exp(2iθ_k)| / Σ_k r_k,

0 for a channel that answers one orientation only, 1 for one that answers all alike.

Angle convention (the same everywhere in toykit): degrees, 0° is a horizontal line, angles grow
anticlockwise as the image is displayed (row index pointing down).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from toykit.hooks import HookedRootModule, check_model
from toykit.runtime import eval_mode
from toykit.unit_activations import Where, check_where, read_activation, spatial_reduce
from toykit.validation import check_positive_int, check_tensor

__all__ = ["OrientationTuning", "preferred_orientation", "tuning_curves"]


@torch.no_grad()
def tuning_curves(
    model: HookedRootModule,
    hook_name: str,
    images_by_condition: torch.Tensor | Sequence[torch.Tensor],
    *,
    where: Where = "max",
    batch_size: int = 256,
) -> torch.Tensor:
    """The mean response of every channel of ``hook_name`` under each stimulus condition.

    images_by_condition: a tensor [n_conditions, n_stimuli, channels, height, width], or a
        sequence of n_conditions tensors [n_stimuli_k, channels, height, width] (conditions may
        have different numbers of stimuli). The stimuli come from the caller, e.g. lines rendered
        at known angles.
    where: how a conv channel's map becomes one number per image (``spatial_reduce``); "max"
        (the default) finds a small stimulus wherever it lies in the image.
    Returns [n_conditions, channels] (channels = units for a dense layer), on the model's device.
    The model runs in eval mode up to the hook point only; its mode is restored afterwards.
    """
    check_model(model, HookedRootModule, [hook_name])
    check_where(where)
    check_positive_int("batch_size", batch_size)
    if isinstance(images_by_condition, torch.Tensor):
        check_tensor("images_by_condition", images_by_condition,
                     ["n_conditions", "n_stimuli", "channels", "height", "width"], dtype="float")
        conditions = list(images_by_condition)
    elif isinstance(images_by_condition, Sequence) and not isinstance(images_by_condition, str):
        conditions = list(images_by_condition)
        dims: dict[str, int] = {}
        for k, images in enumerate(conditions):
            check_tensor(f"images_by_condition[{k}]", images, [None, "channels", "height", "width"],
                         dtype="float", dims=dims)
    else:
        raise TypeError("images_by_condition must be a tensor [n_conditions, n_stimuli, channels, height, width] "
                        f"or a sequence of tensors [n_stimuli, channels, height, width], "
                        f"got {type(images_by_condition).__name__}")
    if not conditions or any(len(images) == 0 for images in conditions):
        raise ValueError("images_by_condition must hold at least one condition, each with at least one stimulus")
    curves = []
    with eval_mode(model):
        for images in conditions:
            responses = [spatial_reduce(read_activation(model, images[i:i + batch_size], hook_name), where)
                         for i in range(0, len(images), batch_size)]
            curves.append(torch.cat(responses).mean(dim=0))
    return torch.stack(curves)


@dataclass(frozen=True)
class OrientationTuning:
    """The summary of orientation tuning curves, one entry per channel.

    preferred: [...] the response-weighted circular mean orientation, degrees in [0, 180)
        (NaN where every response is zero).
    circular_variance: [...] in [0, 1]; 0 is perfectly selective, 1 not selective at all.
    """

    preferred: torch.Tensor
    circular_variance: torch.Tensor

    @property
    def selectivity(self) -> torch.Tensor:
        """1 - circular variance: the length of the mean resultant vector of the doubled angles."""
        return 1 - self.circular_variance


def preferred_orientation(angles: torch.Tensor | Sequence[float], responses: torch.Tensor) -> OrientationTuning:
    """Preferred orientation and circular variance of tuning curves, on the doubled angle.

    angles: [n_conditions] orientations in degrees (any values; 180° apart means the same
        orientation). Sample [0°, 180°) evenly, or the mean is biased towards the denser side.
    responses: [n_conditions] or [n_conditions, channels], non-negative (e.g. after a ReLU, or
        with the curve's minimum subtracted): they are the weights of the circular mean.
    Returns an OrientationTuning whose fields have shape [] or [channels].

    >>> tuning = preferred_orientation([0.0, 45.0, 90.0, 135.0], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    >>> round(tuning.preferred.item(), 3), round(tuning.circular_variance.item(), 3)
    (45.0, 0.0)
    """
    check_tensor("responses", responses, dtype="float")
    if responses.ndim not in (1, 2) or responses.shape[0] == 0:
        raise ValueError(f"responses must have shape [n_conditions] or [n_conditions, channels] with "
                         f"n_conditions >= 1, got {list(responses.shape)}")
    angles = torch.as_tensor(angles, dtype=responses.dtype, device=responses.device)
    check_tensor("angles", angles, [responses.shape[0]], dtype="float")
    if not torch.isfinite(angles).all() or not torch.isfinite(responses).all():
        raise ValueError("angles and responses must be finite")
    if (responses < 0).any():
        raise ValueError(f"responses must be non-negative (they weight the circular mean), got a minimum of "
                         f"{responses.min().item():.4g}; read a rectified layer or subtract each curve's minimum")
    doubled = torch.deg2rad(2 * angles).reshape(-1, *([1] * (responses.ndim - 1)))
    c = (responses * torch.cos(doubled)).sum(dim=0)
    s = (responses * torch.sin(doubled)).sum(dim=0)
    total = responses.sum(dim=0)
    preferred = torch.rad2deg(torch.atan2(s, c)) / 2 % 180
    resultant = torch.sqrt(c**2 + s**2) / total
    silent = total == 0
    preferred = torch.where(silent, torch.full_like(preferred, float("nan")), preferred)
    # clamp: rounding can push the resultant a hair above 1
    variance = torch.where(silent, torch.ones_like(total), 1 - resultant.clamp(max=1))
    return OrientationTuning(preferred=preferred, circular_variance=variance)
