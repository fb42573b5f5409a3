"""Statistics of an image's power spectrum: is it natural-looking, and which way do its strokes run?

Naive feature visualisation fills an image with high-frequency patterns that excite a channel
but look like noise (Olah et al. 2017, "Feature Visualization", Distill, section "The Enemy of
Feature Visualization"). Two numbers measure that:

- ``high_frequency_fraction``: the share of an image's power above a spatial frequency (cycles
  per pixel; the Nyquist limit is 0.5). Natural images have a power spectrum falling roughly as
  1/f² (Field 1987, "Relations between the statistics of natural images and the response
  properties of cortical cells", J. Opt. Soc. Am. A 4(12)), so little of their power sits high.
- ``total_variation``: the mean absolute difference between neighbouring pixels, the β = 1 case
  of the total-variation regulariser R_{V^β} of Mahendran & Vedaldi 2015, "Understanding Deep
  Image Representations by Inverting Them" (CVPR), taken along each axis separately.

``spectral_orientation`` reads the dominant orientation of an image's strokes from where its
power lies: the spectrum of a line at θ is spread along the perpendicular direction θ + 90°.
Angles follow ``toykit.tuning_curves``: degrees in [0, 180), 0° horizontal, anticlockwise as
the image is displayed.
"""

from __future__ import annotations

import torch

from toykit.tuning_curves import OrientationTuning, preferred_orientation
from toykit.validation import check_bool, check_tensor

__all__ = ["frequency_grid", "high_frequency_fraction", "power_spectrum", "spectral_orientation", "total_variation"]


def frequency_grid(
    height: int, width: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (fy, fx) frequencies, cycles per pixel, of each entry of ``torch.fft.fft2`` on a
    height × width image: two tensors [height, width] (fy runs down the rows)."""
    fy = torch.fft.fftfreq(height, device=device)
    fx = torch.fft.fftfreq(width, device=device)
    return fy[:, None].expand(height, width), fx[None, :].expand(height, width)


def power_spectrum(images: torch.Tensor, *, window: bool = True) -> torch.Tensor:
    """The power |FFT|² of each image, summed over its channels, without the constant (DC) term.

    images: [batch, channels, height, width]. window: multiply by a 2-D Hann window first, so
    that the image's borders do not add a spurious cross of power along the axes.
    Returns [batch, height, width] in ``torch.fft.fft2``'s order (see ``frequency_grid``).
    """
    check_tensor("images", images, ["batch", "channels", "height", "width"], dtype="float")
    check_bool("window", window)
    x = images - images.mean(dim=(-2, -1), keepdim=True)
    if window:
        h, w = images.shape[-2:]
        hann = (torch.hann_window(h, periodic=False, dtype=x.dtype, device=x.device)[:, None]
                * torch.hann_window(w, periodic=False, dtype=x.dtype, device=x.device)[None, :])
        x = x * hann
    power = torch.fft.fft2(x).abs().pow(2).sum(dim=1)
    power[:, 0, 0] = 0  # the window gives the mean-free image a little DC back; it is not texture
    return power


def high_frequency_fraction(images: torch.Tensor, cutoff: float = 0.25, *, window: bool = True) -> torch.Tensor:
    """The fraction of each image's power at radial frequencies above ``cutoff``.

    images: [batch, channels, height, width]. cutoff: cycles per pixel, in (0, 0.5]; the
    default, half the Nyquist limit, separates pixel-scale texture from shapes.
    Returns [batch] in [0, 1]; 0 for a constant image (it has no power to split).

    >>> stripes = torch.tensor([0.0, 1.0]).repeat(16)[None, None, None, :].expand(1, 1, 32, 32)
    >>> round(high_frequency_fraction(stripes).item(), 2)
    1.0
    """
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not 0 < cutoff <= 0.5:
        raise ValueError(f"cutoff must be a number in (0, 0.5] cycles per pixel, got {cutoff!r}")
    power = power_spectrum(images, window=window)
    fy, fx = frequency_grid(images.shape[-2], images.shape[-1], device=images.device)
    high = (fy**2 + fx**2).sqrt() > cutoff
    total = power.sum(dim=(-2, -1))
    # Parseval: the image's own energy, times h·w, is the scale of its spectrum; a constant
    # image keeps only rounding errors of its mean, which are not texture.
    energy = images.pow(2).sum(dim=(1, 2, 3)) * images.shape[-2] * images.shape[-1]
    flat = total <= 1e-10 * energy
    return torch.where(flat, torch.zeros_like(total), (power * high).sum(dim=(-2, -1)) / total.clamp(min=1e-30))


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertically and horizontally neighbouring pixels.

    images: [batch, channels, height, width] with height, width >= 2. Returns [batch].
    Differentiable, so it also serves as a smoothness penalty.
    """
    check_tensor("images", images, ["batch", "channels", "height", "width"], dtype="float")
    if min(images.shape[-2:]) < 2:
        raise ValueError(f"images must be at least 2 × 2 pixels, got {list(images.shape)}")
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return (dy + dx) / 2


def spectral_orientation(images: torch.Tensor, *, window: bool = True) -> OrientationTuning:
    """The dominant stroke orientation of each image, read from its power spectrum.

    Each frequency (fx, fy) votes, with its power, for the orientation perpendicular to it; the
    votes are averaged on the doubled angle (``preferred_orientation``).
    images: [batch, channels, height, width].
    Returns an OrientationTuning with fields [batch]: ``preferred`` in degrees, and
    ``circular_variance`` (0: all power along one orientation, 1: no preferred orientation).
    """
    power = power_spectrum(images, window=window)
    fy, fx = frequency_grid(images.shape[-2], images.shape[-1], device=images.device)
    # Rows point down on screen, so the frequency's on-screen angle is atan2(-fy, fx); the
    # strokes that produce it run perpendicular to it.
    stroke_angle = torch.rad2deg(torch.atan2(-fy, fx)) + 90
    return preferred_orientation(stroke_angle.flatten(), power.flatten(1).T)
