"""Feature visualisation: the image that a channel (or one unit) of an image model likes best.

Activation maximisation starts from near-grey noise and follows the gradient of a channel's
activation with respect to the pixels (Olah, Mordvintsev & Schubert 2017, "Feature
Visualization", Distill; Erhan et al. 2009, "Visualizing Higher-Layer Features of a Deep
Network"). Done naively, the result is full of high-frequency patterns that excite the channel
but look like noise (Olah et al. 2017, section "The Enemy of Feature Visualization"). Two fixes
from that article are switches here, so that naive and regularised versions can be compared:

- **transformation robustness** (section "The Spectrum of Regularization"): each step sees the
  image randomly jittered, and optionally scaled and rotated, so that a pattern only survives if
  it excites the channel wherever it lands; ``jitter``, ``scale``, ``rotate``.
- **a decorrelated Fourier parameterisation** (section "Preconditioning and Parameterization"):
  the optimiser moves the image's Fourier coefficients, each scaled by 1/f^decay_power, so that
  a step changes coarse structure far more than pixel-scale texture, as in natural images whose
  spectrum falls like 1/f²; ``fourier``. The article also decorrelates colour channels; the
  images here are typically greyscale, and channels are left as they are.
- a **total-variation penalty** (section "The Spectrum of Regularization", frequency
  penalisation; Mahendran & Vedaldi 2015's regulariser R_{V^β}), off by default; ``tv_weight``.

Naive (every switch off)::

    visualise_feature(model, "conv.1.hook_post", 3, fourier=False, jitter=0, scale=None, rotate=0, seed=0)

Regularised (the defaults)::

    visualise_feature(model, "conv.1.hook_post", 3, seed=0)

``toykit.image_statistics.high_frequency_fraction`` measures the difference.

The objective itself is ``channel_objective``; ``gradient_ascent_step`` takes one plain
gradient-ascent step on the pixels (Erhan et al. 2009), the simplest form of the
method, with no optimiser state and no regulariser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from toykit.hooks import HookedRootModule, check_model
from toykit.image_statistics import total_variation
from toykit.runtime import cpu_thread_count, eval_mode, make_generator
from toykit.unit_activations import Where, channel_response, check_where, read_activation
from toykit.validation import check_bool, check_non_negative_int, check_positive_int, check_positive_number

__all__ = ["FeatureVisualisation", "channel_objective", "fourier_scale", "gradient_ascent_step", "visualise_feature"]


@dataclass(frozen=True)
class FeatureVisualisation:
    """What ``visualise_feature`` returns.

    images: [n_images, channels, height, width], within ``value_range``.
    trace: [steps, n_images] the objective at each step, as the optimiser saw it (on the
        randomly transformed image when transformation robustness is on).
    activation: [n_images] the objective of the final images, untransformed.
    """

    images: torch.Tensor
    trace: torch.Tensor
    activation: torch.Tensor


def fourier_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """The factor 1 / max(f, 1/max(height, width))^decay_power of each coefficient of
    ``torch.fft.rfft2`` on a height × width image, f the radial frequency in cycles per pixel
    (the floor keeps the constant term finite). Returns [height, width // 2 + 1].

    Olah et al. 2017, section "Preconditioning and Parameterization"; decay_power 1 scales
    amplitudes like those of natural images (power ~ 1/f²).
    """
    check_positive_int("height", height)
    check_positive_int("width", width)
    if isinstance(decay_power, bool) or not isinstance(decay_power, (int, float)) or decay_power < 0:
        raise ValueError(f"decay_power must be a non-negative number, got {decay_power!r}")
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    f = (fy**2 + fx**2).sqrt().clamp(min=1 / max(height, width))
    return f.pow(-float(decay_power))


def channel_objective(model: HookedRootModule, images: torch.Tensor, hook_name: str, channel: int,
                      where: Where = "mean") -> torch.Tensor:
    """What activation maximisation maximises: one channel's response at ``hook_name``, per image.

    images: [batch, channels, height, width]. Returns [batch]:
    ``channel_response(read_activation(model, images, hook_name), channel, where)``; for a conv
    activation, where="mean" is the mean of the channel over positions (the channel objective of
    Olah et al. 2017). Differentiable with respect to images when gradients are enabled; the
    model runs only up to the hook point, in whatever mode the caller set.
    """
    return channel_response(read_activation(model, images, hook_name), channel, where)


def gradient_ascent_step(model: HookedRootModule, images: torch.Tensor, hook_name: str, channel: int, *,
                         lr: float, where: Where = "mean",
                         value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """One step of naive activation maximisation in pixel space (Erhan et al. 2009).

    Returns new images, images + lr · ∂objective/∂images clipped to ``value_range``, with the
    objective ``channel_objective(model, images, hook_name, channel, where)`` of each image (the
    gradient of their sum: each image follows its own objective). images: [batch, channels,
    height, width]; returns the same shape. ``images`` is not modified, the model's parameters
    get no ``.grad`` and its mode is restored (it runs in eval mode).
    """
    check_model(model, HookedRootModule, [hook_name])
    check_positive_number("lr", lr)
    low, high = _check_range("value_range", value_range, allow_equal=False)
    x = images.detach().clone().requires_grad_(True)  # a new leaf: the caller's tensor never needs grad
    with eval_mode(model), torch.enable_grad():
        objective = channel_objective(model, x, hook_name, channel, where)
        # autograd.grad, not backward(): only the images get a gradient
        (grad,) = torch.autograd.grad(objective.sum(), [x])
    return (x.detach() + lr * grad).clamp(low, high)


def visualise_feature(
    model: HookedRootModule,
    hook_name: str,
    channel: int,
    *,
    where: Where = "mean",
    image_shape: Sequence[int] = (1, 32, 32),
    n_images: int = 1,
    steps: int = 256,
    lr: float = 0.05,
    fourier: bool = True,
    decay_power: float = 1.0,
    jitter: int = 2,
    scale: tuple[float, float] | None = (0.95, 1.05),
    rotate: float = 5.0,
    tv_weight: float = 0.0,
    value_range: tuple[float, float] = (0.0, 1.0),
    seed: int | None = None,
    generator: torch.Generator | None = None,
    cpu_threads: int | None = None,
) -> FeatureVisualisation:
    """Optimise images to maximise one channel (or unit) at ``hook_name`` with Adam.

    model: any HookedRootModule taking images [batch, channels, height, width]; it runs in eval
        mode up to the hook point only, its parameters get no gradients, and its mode and hooks
        are restored afterwards, even after an error.
    channel, where: the objective is ``channel_response(activation, channel, where)``: for a
        conv activation [batch, channels, h, w], where="mean" is the channel objective of Olah
        et al. 2017 (mean over positions), "centre" or (y, x) their neuron objective (one
        position), "max" the strongest position; for a dense activation [batch, units],
        ``channel`` is the unit.
    image_shape: (channels, height, width) of the images the model takes.
    n_images: images optimised at once (independent draws from the same seed).
    steps, lr: Adam's steps and learning rate.
    fourier: optimise 1/f-scaled Fourier coefficients (``fourier_scale`` with ``decay_power``)
        instead of pixels.
    jitter: random shifts of up to ± jitter pixels per step (0: off).
    scale: random zoom factor drawn from [scale[0], scale[1]] per step (None: off).
    rotate: random rotation of up to ± rotate degrees per step (0: off).
    tv_weight: weight of a total-variation penalty (``toykit.image_statistics.total_variation``)
        subtracted from the objective (0: off).
    value_range: (low, high) of valid pixel values; a sigmoid maps the parameters into it.
    seed / generator: the random start and the random transformations (one of them, or
        neither for torch's global generator; ``toykit.runtime.make_generator``).
    cpu_threads: torch threads while optimising on the CPU (restored afterwards), as for the
        trainers; 1 is fastest for small models. None leaves the setting alone.
    Returns a FeatureVisualisation: images [n_images, channels, height, width], the objective
    trace [steps, n_images] and the final activation [n_images].
    """
    check_model(model, HookedRootModule, [hook_name])
    check_where(where)
    c, h, w = _check_image_shape(image_shape)
    check_positive_int("n_images", n_images)
    check_positive_int("steps", steps)
    check_positive_number("lr", lr)
    check_bool("fourier", fourier)
    check_non_negative_int("jitter", jitter)
    low, high = _check_range("value_range", value_range, allow_equal=False)
    if scale is not None:
        s_low, s_high = _check_range("scale", scale, allow_equal=True)
        if s_low <= 0:
            raise ValueError(f"scale must be None or (low, high) with 0 < low <= high, got {scale!r}")
    for name, value in (("rotate", rotate), ("tv_weight", tv_weight)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if cpu_threads is not None:
        check_positive_int("cpu_threads", cpu_threads)
    gen = make_generator(seed, generator)
    freq_scale = fourier_scale(h, w, decay_power) if fourier else None  # checks decay_power as well
    # The images live where the model's weights do, in their floating-point type.
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = torch.device("cpu") if weight is None else weight.device
    dtype = torch.get_default_dtype() if weight is None else weight.dtype

    # The parameters are drawn on the CPU so that a seed gives the same start on every device.
    if fourier:
        assert freq_scale is not None
        param = 0.01 * torch.randn(n_images, c, h, w // 2 + 1, 2, generator=gen)
        freq_scale = freq_scale.to(device, dtype)
    else:
        param = 0.01 * torch.randn(n_images, c, h, w, generator=gen)
    param = param.to(device, dtype).requires_grad_(True)

    def to_image(p: torch.Tensor) -> torch.Tensor:
        if freq_scale is not None:
            # /4 keeps the first steps small, as in Olah et al.'s lucid library
            p = torch.fft.irfft2(torch.view_as_complex(p) * freq_scale, s=(h, w), norm="ortho") / 4
        return low + (high - low) * torch.sigmoid(p)

    transforms = jitter > 0 or scale is not None or rotate > 0
    optimiser = torch.optim.Adam([param], lr=lr)
    trace = []
    with eval_mode(model), torch.enable_grad(), cpu_thread_count(cpu_threads, device):
        for _ in range(steps):
            image = to_image(param)
            seen = _random_transform(image, jitter, scale, rotate, gen) if transforms else image
            objective = channel_objective(model, seen, hook_name, channel, where)
            loss = -objective.sum()
            if tv_weight > 0:
                loss = loss + tv_weight * total_variation(image).sum()
            # autograd.grad, not backward(): only the image's parameters get a gradient
            (param.grad,) = torch.autograd.grad(loss, [param])
            optimiser.step()
            trace.append(objective.detach())
        with torch.no_grad():
            final = to_image(param)
            activation = channel_objective(model, final, hook_name, channel, where)
    return FeatureVisualisation(images=final.detach(), trace=torch.stack(trace), activation=activation.detach())


def _check_image_shape(image_shape: object) -> tuple[int, int, int]:
    if (not isinstance(image_shape, Sequence) or len(image_shape) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in image_shape)):
        raise ValueError(f"image_shape must be (channels, height, width), three positive ints, got {image_shape!r}")
    c, h, w = image_shape
    return c, h, w


def _check_range(name: str, value: object, *, allow_equal: bool) -> tuple[float, float]:
    ok = (isinstance(value, Sequence) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    if ok:
        low, high = float(value[0]), float(value[1])  # type: ignore[index]  # a length-2 sequence, checked above
        if low < high or (allow_equal and low == high):
            return low, high
    relation = "<=" if allow_equal else "<"
    raise ValueError(f"{name} must be (low, high), two finite numbers with low {relation} high, got {value!r}")


def _random_transform(
    image: torch.Tensor, jitter: int, scale: tuple[float, float] | None, rotate: float, gen: torch.Generator | None
) -> torch.Tensor:
    """Each image shifted by whole pixels in [-jitter, jitter], zoomed and rotated by random
    amounts, sampled bilinearly with reflected borders. image: [n, c, h, w] -> the same shape."""
    n, _, h, w = image.shape
    shift = torch.randint(-jitter, jitter + 1, (n, 2), generator=gen).float()
    zoom = torch.ones(n) if scale is None else scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=gen)
    angle = torch.deg2rad(rotate * (2 * torch.rand(n, generator=gen) - 1))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid maps each output position to an input position, in coordinates running from
    # -1 to 1 across the width and the height; the aspect ratio keeps rotations rigid.
    theta = torch.stack([
        torch.stack([cos, -sin * h / w, 2 * shift[:, 1] / w], dim=1),
        torch.stack([sin * w / h, cos, 2 * shift[:, 0] / h], dim=1),
    ], dim=1).to(image)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
