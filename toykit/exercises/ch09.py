"""Checks for chapter 09, Vision circuits: a tiny CNN, feature visualisation and attribution methods.

Each ``check_<name>(fn)`` runs your ``fn`` on seeded cases, prints one line when it is right, and
otherwise raises CheckFailure with a hint chosen by recognising the usual mistakes. References:
``toykit.tuning_curves.preferred_orientation``, ``toykit.attribution`` (vanilla_gradient,
integrated_gradients, occlusion, shapley_kernel_weight, smoothgrad),
``toykit.attribution_sanity`` (mask_mass_fraction, spearman_rank_correlation) and
``toykit.feature_vis.gradient_ascent_step``. Each exercise has its reference's signature (the
essential arguments of it), so that the library's version can replace yours.

Signatures the checks expect (images [batch, channels, height, width]; target an int or an int
tensor [batch]; the explained quantity is always the target *logit*):

- ``preferred_orientation(angles, responses) -> OrientationTuning``: angles [n_conditions] in
  degrees, responses [n_conditions] or [n_conditions, channels] (non-negative); the
  response-weighted circular mean of the doubled angles, halved, in [0, 180), and the circular
  variance 1 - |Σ r e^{2iθ}| / Σ r; a channel that never responds gets NaN and 1.
- ``vanilla_gradient(model, images, target) -> [batch, channels, height, width]``.
- ``integrated_gradients(model, images, target, *, baseline=None, n_steps=50)``: the trapezoid
  rule over n_steps equal steps (n_steps + 1 points, half weight at both ends); baseline None
  (black), a number or a tensor that broadcasts to images.
- ``occlusion(model, images, target, *, patch_size=4, stride=None, fill=None)``: the mean, over
  the patches covering a pixel, of F(x) - F(x with the patch set to fill); patches start every
  stride pixels, and the last one on each axis sits flush with the edge.
- ``shapley_kernel_weight(n_segments, size) -> float64 tensor``: (M - 1) / (C(M, |z|) |z| (M - |z|)).
- ``smoothgrad(model, images, target, *, n_samples=50, noise_level=0.15, seed=None)``: judged by
  its properties (any noise draws pass).
- ``mask_mass_fraction(attributions, mask) -> [batch]``.
- ``spearman_rank_correlation(a, b, *, absolute=True) -> [batch]``.
- ``gradient_ascent_step(model, images, hook_name, channel, *, lr) -> images'``.

Every function must leave its arguments as they were: no edited tensor, no ``requires_grad`` or
``.grad`` left on the images, no ``.grad`` left on the model's parameters, and the model in the
mode (train or eval) it was given in.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from toykit import pretrained
from toykit.attribution import (
    integrated_gradients,
    occlusion,
    shapley_kernel_weight,
    smoothgrad,
    vanilla_gradient,
)
from toykit.attribution_sanity import mask_mass_fraction, spearman_rank_correlation
from toykit.cnn import CNNConfig, HookedCNN
from toykit.exercises.checking import (
    Case,
    CheckFailure,
    ExerciseTable,
    Mistake,
    describe,
    rng,
    run_check,
    run_property_check,
)
from toykit.feature_vis import gradient_ascent_step
from toykit.tasks.shapes import generate_shapes
from toykit.tuning_curves import OrientationTuning, preferred_orientation
from toykit.unit_activations import read_activation

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_gradient_ascent_step",
    "check_integrated_gradients",
    "check_mask_mass_fraction",
    "check_occlusion",
    "check_preferred_orientation",
    "check_shapley_kernel_weight",
    "check_smoothgrad",
    "check_spearman_rank_correlation",
    "check_vanilla_gradient",
]

_CACHE: dict[str, Any] = {}


def _shapes_cnn() -> HookedCNN:
    """The shipped ``shapes-cnn``, loaded once on the CPU. Never handed to a learner: each check
    works on its own copy."""
    if "shapes-cnn" not in _CACHE:
        _CACHE["shapes-cnn"] = pretrained.load("shapes-cnn", device="cpu")
    return copy.deepcopy(_CACHE["shapes-cnn"])


def _tiny_cnn(seed: int) -> HookedCNN:
    """A small untrained HookedCNN on 16 × 16 images with 3 classes: cheap to run many times.

    Its biases are random: with zero biases a ReLU network is positively homogeneous (its gradient
    is the same at x and at αx), which would make some wrong integration rules look right."""
    model = HookedCNN(CNNConfig(channels=(4, 6), kernel_sizes=(5, 3), image_size=16, n_classes=3, seed=seed,
                                device="cpu")).eval()
    g = rng(seed + 1000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("b"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def _images(seed: int, n: int, size: int = 32) -> torch.Tensor:
    """n shape images [n, 1, size, size] (size 32, or 16 by 2 × 2 average pooling)."""
    images = generate_shapes(n, seed=seed).images
    return F.avg_pool2d(images, 32 // size) if size != 32 else images


# -- side effects on a model and its images ----------------------------------------------------------

_INPUT_GRAD_HINT = (
    "your function left the images it was given requiring gradients (or holding a .grad): take gradients "
    "with respect to a detached copy of the images, so that the caller's tensor stays as it was"
)
_PARAM_GRAD_HINT = (
    "your function left gradients in the model's parameters (their .grad): calling backward() on the logit "
    "writes them, and they would pile up into the next training step. Ask autograd for the gradient with "
    "respect to the images only (torch.autograd.grad), or clear the parameters' gradients before returning"
)
_MODE_HINT = (
    "your function changed the model's mode (train or eval): a measurement may run the model in eval mode, "
    "but it must give the model back in the mode it was given in"
)


def _model_learner(exercise: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(model, images, ...)`` behind a case label, failing the case when ``fn`` leaves gradients
    on the images or the parameters or changes the model's mode (edits of the values themselves
    are caught by run_check)."""

    def learner(case: str, model: torch.nn.Module, images: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        was_training = model.training
        out = fn(model, images, *args, **kwargs)
        if images.requires_grad or images.grad is not None:
            raise CheckFailure(exercise, case, "after your function, `images` requires gradients or holds a "
                                               ".grad", _INPUT_GRAD_HINT)
        with_grad = [name for name, p in model.named_parameters() if p.grad is not None]
        if with_grad:
            raise CheckFailure(exercise, case, f"after your function, the model's parameters {with_grad[:3]} "
                                               "hold a .grad", _PARAM_GRAD_HINT)
        if model.training != was_training:
            mode = {True: "train", False: "eval"}
            raise CheckFailure(exercise, case, f"the model was given in {mode[was_training]} mode and left in "
                                               f"{mode[model.training]} mode", _MODE_HINT)
        return out

    return learner


def _model_reference(reference: Callable[..., Any]) -> Callable[..., Any]:
    def call(case: str, *args: Any, **kwargs: Any) -> Any:
        return reference(*args, **kwargs)
    return call


def _in_mode(model: torch.nn.Module, training: bool) -> torch.nn.Module:
    return model.train(training)


# -- preferred_orientation -------------------------------------------------------------------------


def _tuning_pair(out: Any) -> Any:
    """(preferred, circular_variance) of an OrientationTuning; anything else is returned as it is."""
    if isinstance(out, OrientationTuning):
        return out.preferred, out.circular_variance
    return out


def _tuning_variant(angles: Any, responses: torch.Tensor, *, factor: float = 2.0, to_radians: bool = True,
                    out_degrees: bool = True, wrap: bool = True, argmax: bool = False,
                    variance: str = "1-R") -> tuple[torch.Tensor, torch.Tensor]:
    """A (preferred, circular variance) pair with one step done differently (for the hints)."""
    r = responses
    a = torch.as_tensor(angles, dtype=r.dtype)
    theta = factor * a
    theta = torch.deg2rad(theta) if to_radians else theta
    theta = theta.reshape(-1, *([1] * (r.ndim - 1)))
    c, s, total = (r * torch.cos(theta)).sum(0), (r * torch.sin(theta)).sum(0), r.sum(0)
    angle = torch.atan2(s, c)
    angle = torch.rad2deg(angle) if out_degrees else angle
    preferred = angle / factor
    preferred = preferred % 180 if wrap else preferred
    if argmax:
        preferred = a[r.argmax(0)]
    length = torch.sqrt(c**2 + s**2)
    cv = {"1-R": 1 - length / total, "R": length / total, "per condition": 1 - length / r.shape[0]}[variance]
    # where a step is done right, take the reference's value for it (the same rounding as the reference)
    right = preferred_orientation(angles, responses)
    same_vector = factor == 2.0 and to_radians
    if same_vector and variance == "1-R":
        cv = right.circular_variance
    if same_vector and out_degrees and wrap and not argmax:
        preferred = right.preferred
    return preferred, cv


def _tuning_curves(seed: int, angles: torch.Tensor, peaks: list[float], sharpness: float = 3.0,
                   silent: bool = False) -> torch.Tensor:
    """Non-negative responses [n_conditions, channels] peaked at ``peaks`` (degrees), with noise."""
    theta = torch.deg2rad(2 * angles)[:, None]
    centre = torch.deg2rad(2 * torch.tensor(peaks))[None, :]
    clean = torch.exp(sharpness * (torch.cos(theta - centre) - 1))
    r = clean + 0.05 * torch.rand(clean.shape, generator=rng(seed))
    if silent:
        r[:, -1] = 0.0
    return r


@EXERCISES.check(preferred_orientation)
def check_preferred_orientation(fn: Callable[..., Any]) -> None:
    """Check ``preferred_orientation(angles, responses) -> OrientationTuning``: angles [n_conditions]
    in degrees (a tensor or a list), responses [n_conditions] or [n_conditions, channels] >= 0. On
    the doubled angle 2θ: preferred = half the angle of Σ_k r_k e^{2iθ_k}, in degrees in [0, 180);
    circular_variance = 1 - |Σ_k r_k e^{2iθ_k}| / Σ_k r_k; NaN and 1 for a channel whose responses
    are all 0."""

    def learner(angles, responses):
        out = fn(angles, responses)
        if not isinstance(out, OrientationTuning):
            raise TypeError(f"preferred_orientation must return an OrientationTuning (toykit.tuning_curves), "
                            f"got {type(out).__name__}")
        return _tuning_pair(out)

    def reference(angles, responses):
        return _tuning_pair(preferred_orientation(angles, responses))

    steps15 = torch.arange(0.0, 180.0, 15.0)
    steps12 = torch.arange(0.0, 180.0, 12.0)
    full_turn = torch.arange(0.0, 360.0, 20.0)
    peaks = (10 + 160 * torch.rand(16, generator=rng(91))).tolist()
    cases = [
        Case("one channel, 15° steps", (steps15, _tuning_curves(0, steps15, [37.0])[:, 0])),
        Case("16 channels", (steps12, _tuning_curves(1, steps12, peaks))),
        Case("angles over a full turn", (full_turn, _tuning_curves(2, full_turn, [122.0, 64.0, 151.0]))),
        Case("angles as a list", (steps15.tolist(), _tuning_curves(3, steps15, [80.0, 20.0], sharpness=1.0))),
        Case("a silent channel", (steps15, _tuning_curves(4, steps15, [45.0, 100.0, 0.0], silent=True))),
    ]
    mistakes = [
        Mistake("orientation is axial (a line at θ is the line at θ + 180°): average the DOUBLED angles 2θ, "
                "then halve the mean angle; a plain circular mean of θ treats 10° and 190° as opposite",
                lambda a, r: _tuning_variant(a, r, factor=1.0)),
        Mistake("take the response-weighted circular mean of all conditions, not the condition with the largest "
                "response: the vector mean uses every point of the curve",
                lambda a, r: _tuning_variant(a, r, argmax=True)),
        Mistake("the angles are in degrees: convert them to radians before cos and sin",
                lambda a, r: _tuning_variant(a, r, to_radians=False)),
        Mistake("the mean angle from atan2 is in radians: convert it back to degrees",
                lambda a, r: _tuning_variant(a, r, out_degrees=False)),
        Mistake("halve the mean doubled angle: atan2 gives the angle of the doubled-angle vector, 2θ",
                lambda a, r: (_tuning_variant(a, r)[0] * 2 % 180, _tuning_variant(a, r)[1])),
        Mistake("atan2 gives an angle in (-180°, 180°], so half of it can be negative: wrap the preferred "
                "orientation into [0, 180)", lambda a, r: _tuning_variant(a, r, wrap=False)),
        Mistake("the circular variance is 1 minus the length of the mean resultant vector; you returned the "
                "length itself (the selectivity)", lambda a, r: _tuning_variant(a, r, variance="R")),
        Mistake("normalise the resultant by the total response Σ r, not by the number of conditions: the "
                "responses are weights", lambda a, r: _tuning_variant(a, r, variance="per condition")),
    ]
    run_check("preferred_orientation", learner, reference, cases, mistakes, atol=1e-4, rtol=1e-4,
              hint="return an OrientationTuning(preferred=..., circular_variance=...): double each angle, weight "
                   "the unit vectors at 2θ by the responses and add them up; the preferred orientation is half the "
                   "angle of the sum (in degrees, in [0, 180)), and the circular variance is 1 minus its length "
                   "over the total response (NaN and 1 for a channel that never responds)")


# -- vanilla_gradient ------------------------------------------------------------------------------


def _gradient_of(model: torch.nn.Module, images: torch.Tensor, scalar: Callable[[torch.Tensor], torch.Tensor]
                 ) -> torch.Tensor:
    """∂ scalar(logits) / ∂ images, the model in eval mode."""
    was = model.training
    model.eval()
    try:
        x = images.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(scalar(model(x)), [x])
    finally:
        model.train(was)
    return grad


def _as_targets(target: Any, n: int) -> torch.Tensor:
    return torch.full((n,), target) if isinstance(target, int) else target


def _attribution_cases(shapes_cnn: HookedCNN, tiny: HookedCNN) -> list[Case]:
    x32 = _images(90, 5)
    x16 = _images(91, 4, size=16)
    labels = generate_shapes(5, seed=90).labels
    return [
        Case("one class for every image", ("one class for every image", shapes_cnn, x32[:3], 1)),
        Case("each image its own class", ("each image its own class", shapes_cnn, x32, labels)),
        Case("a model in training mode", ("a model in training mode", _in_mode(copy.deepcopy(tiny), True),
                                          x16, torch.tensor([2, 0, 1, 2]))),
        Case("an untrained model", ("an untrained model", tiny, x16[:2], 0)),
    ]


@EXERCISES.check(vanilla_gradient)
def check_vanilla_gradient(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``vanilla_gradient(model, images, target) -> [batch, channels, height, width]``: the
    gradient of each image's target logit with respect to its pixels (Simonyan et al. 2014, §3.1),
    the model run in eval mode and left as it was."""

    def grad_of(f):
        return lambda case, m, x, t: _gradient_of(m, x, lambda logits: f(logits, _as_targets(t, len(x))))

    def chosen(logits, t):
        return logits.gather(1, t[:, None]).sum()

    mistakes = [
        Mistake("explain the target's logit, not the loss: the gradient of the cross-entropy mixes in every other "
                "class (and flips the sign)", grad_of(lambda z, t: F.cross_entropy(z, t, reduction="sum"))),
        Mistake("explain the target's logit, not the loss: the gradient of the cross-entropy mixes in every other "
                "class (and flips the sign)", grad_of(lambda z, t: F.cross_entropy(z, t))),
        Mistake("explain the target's logit, not its probability: the softmax mixes in every other class",
                grad_of(lambda z, t: z.softmax(-1).gather(1, t[:, None]).sum())),
        Mistake("explain the class given as target, not the class the model predicts",
                grad_of(lambda z, t: chosen(z, z.argmax(-1)))),
        Mistake("differentiate the target logit only, not the sum of all logits",
                grad_of(lambda z, t: z.sum())),
        Mistake("each image has its own target: pick image i's logit for target[i] (logits[:, target] takes every "
                "image's target class for every image)", grad_of(lambda z, t: z[:, t].sum())),
        Mistake("sum the target logits over the batch before differentiating, not average them: each image's "
                "gradient must not shrink with the batch size", grad_of(lambda z, t: chosen(z, t) / len(z))),
        Mistake("keep the gradient's sign: the absolute value is only for display",
                lambda case, m, x, t: vanilla_gradient(m, x, t).abs()),
    ]
    cases = _attribution_cases(_shapes_cnn(), _tiny_cnn(1))
    run_check("vanilla_gradient", _model_learner("vanilla_gradient", fn), _model_reference(vanilla_gradient), cases,
              mistakes, atol=1e-5, rtol=1e-3,
              hint="for each image, the derivative of its target class's logit with respect to every pixel: the "
                   "images made to require gradients (a detached copy), one forward pass, the target logits picked "
                   "per image and summed, then the gradient with respect to the images")


# -- integrated_gradients --------------------------------------------------------------------------


def _ig_variant(model, images, target, baseline, alphas, weights, factor="difference"):
    """Σ_k weight_k ∂F/∂x(x' + α_k (x - x')), times (x - x'), x, or 1 (for the hints)."""
    start = torch.zeros_like(images) if baseline is None else torch.broadcast_to(torch.as_tensor(
        baseline, dtype=images.dtype), images.shape)
    total = sum(w * vanilla_gradient(model, start + a * (images - start), target) for a, w in zip(alphas, weights))
    scale = {"difference": images - start, "input": images, "none": torch.ones_like(images)}[factor]
    return scale * total


def _trapezoid(n: int) -> tuple[list[float], list[float]]:
    weights = [1.0 / n] * (n + 1)
    weights[0] = weights[-1] = 0.5 / n
    return [k / n for k in range(n + 1)], weights


@EXERCISES.check(integrated_gradients)
def check_integrated_gradients(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``integrated_gradients(model, images, target, *, baseline=None, n_steps=50)``:
    (x - x') times the trapezoid-rule mean of ∂F/∂x at x' + α (x - x') for α = 0, 1/n, ..., 1
    (n = n_steps; the two ends weigh half as much), F the target logit and x' the baseline (None:
    zeros; a number; a tensor that broadcasts to images). Sundararajan et al. 2017, Eq. 1."""

    def ig(case, m, x, t, baseline=None, n_steps=50, **kw):
        return _ig_variant(m, x, t, baseline, *kw["points"](n_steps), **kw.get("extra", {}))

    def variant(points, **extra):
        return lambda case, m, x, t, baseline=None, n_steps=50: ig(case, m, x, t, baseline, n_steps, points=points,
                                                                   extra=extra)

    def riemann(offset):
        return lambda n: ([(k + offset) / n for k in range(n)], [1.0 / n] * n)

    mistakes = [
        Mistake("multiply the averaged gradient by (input - baseline): without it you have the mean gradient along "
                "the path, not an attribution (and completeness fails)", variant(_trapezoid, factor="none")),
        Mistake("multiply by (input - baseline), not by the input: with a non-zero baseline the two differ",
                variant(_trapezoid, factor="input")),
        Mistake("the path starts at the baseline: interpolate from the baseline x' to x (x' + α (x - x')), "
                "not from a black image", lambda case, m, x, t, baseline=None, n_steps=50:
                _ig_variant(m, x, t, None, *_trapezoid(n_steps))),
        Mistake("the trapezoid rule uses n_steps + 1 points α = 0, 1/n, ..., 1 with half weight at the two ends; "
                "you used the left Riemann sum (α = 0 ... (n-1)/n), which never reaches the input",
                variant(riemann(0.0))),
        Mistake("the trapezoid rule uses n_steps + 1 points α = 0, 1/n, ..., 1 with half weight at the two ends; "
                "you used the right Riemann sum (α = 1/n ... 1)", variant(riemann(1.0))),
        Mistake("the trapezoid rule uses n_steps + 1 points α = 0, 1/n, ..., 1 with half weight at the two ends; "
                "you used the midpoint rule", variant(riemann(0.5))),
        Mistake("count the points: n_steps steps need n_steps + 1 points α = 0, 1/n_steps, ..., 1 (linspace with "
                "n_steps points spaces them 1/(n_steps - 1) apart), and the two ends weigh half",
                variant(lambda n: (torch.linspace(0, 1, n).tolist(), [1.0 / n] * n))),
        Mistake("the two ends of the path weigh half as much as the inner points (the trapezoid rule): an equal "
                "mean over all n_steps + 1 points is a different rule",
                variant(lambda n: ([k / n for k in range(n + 1)], [1.0 / (n + 1)] * (n + 1)))),
        Mistake("average the gradients along the path (the weights add up to 1), don't sum them",
                variant(lambda n: (_trapezoid(n)[0], [w * n for w in _trapezoid(n)[1]]))),
    ]
    shapes_cnn, tiny = _shapes_cnn(), _tiny_cnn(2)
    x16 = _images(92, 3, size=16)
    x32 = _images(93, 2)
    cases = [
        Case("black baseline", ("black baseline", tiny, x16, 1), {"n_steps": 4}),
        Case("grey baseline", ("grey baseline", tiny, x16, torch.tensor([0, 2, 1])), {"baseline": 0.5, "n_steps": 6}),
        Case("an image as baseline", ("an image as baseline", _in_mode(copy.deepcopy(tiny), True), x16[:2], 2),
             {"baseline": x16.mean(0), "n_steps": 5}),
        Case("the shipped CNN", ("the shipped CNN", shapes_cnn, x32, generate_shapes(2, seed=93).labels),
             {"n_steps": 16}),
    ]
    run_check("integrated_gradients", _model_learner("integrated_gradients", fn),
              _model_reference(integrated_gradients), cases, mistakes, atol=1e-5, rtol=1e-3,
              hint="walk a straight path from the baseline to the image in n_steps equal steps, take the gradient of "
                   "the target logit at each of the n_steps + 1 points, average them with the trapezoid rule (half "
                   "weight at both ends), and multiply by (image - baseline)")


# -- occlusion -------------------------------------------------------------------------------------


def _occlusion_variant(model, images, target, patch_size=4, stride=None, fill=None, *, flush=True, sign=1.0,
                       mean=True):
    """Occlusion with one step done differently (for the hints); square patches."""
    stride = patch_size if stride is None else stride
    b, c, h, w = images.shape
    filled = torch.zeros_like(images) if fill is None else torch.broadcast_to(
        torch.as_tensor(fill, dtype=images.dtype), images.shape)
    t = _as_targets(target, b)
    starts = list(range(0, h - patch_size + 1, stride))
    if flush and starts[-1] != h - patch_size:
        starts.append(h - patch_size)
    with torch.no_grad():
        base = model(images).gather(1, t[:, None])[:, 0]
        total, count = torch.zeros(b, h, w), torch.zeros(h, w)
        for top in starts:
            for left in starts:
                mask = torch.zeros(h, w, dtype=torch.bool)
                mask[top:top + patch_size, left:left + patch_size] = True
                drop = base - model(torch.where(mask, filled, images)).gather(1, t[:, None])[:, 0]
                total += sign * drop[:, None, None] * mask
                count += mask
    out = total / count.clamp_min(1) if mean else total
    return out[:, None].expand(b, c, h, w).clone()


@EXERCISES.check(occlusion)
def check_occlusion(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``occlusion(model, images, target, *, patch_size=4, stride=None, fill=None)``: square
    patches of side patch_size start every stride pixels (stride None: patch_size) along each axis,
    the last one flush with the edge; each patch p gives drop_p = F(x) - F(x with p set to fill)
    (fill: None for zeros, a number or a tensor that broadcasts to images); a pixel's attribution
    is the mean drop over the patches covering it, the same in every channel (Zeiler & Fergus 2014,
    §4.2)."""

    def variant(**how):
        return lambda case, m, x, t, patch_size=4, stride=None, fill=None: _occlusion_variant(
            m, x, t, patch_size, stride, fill, **how)

    mistakes = [
        Mistake("occlusion measures the DROP in the target logit, F(x) - F(occluded): you computed the increase",
                variant(sign=-1.0)),
        Mistake("where patches overlap, average the drops of the patches that cover a pixel, don't add them up",
                variant(mean=False)),
        Mistake("the covered patch takes the value `fill` (zeros only when fill is None)",
                lambda case, m, x, t, patch_size=4, stride=None, fill=None: _occlusion_variant(m, x, t, patch_size,
                                                                                               stride, None)),
        Mistake("when the stride does not fit the image exactly, add one last patch flush with the right and bottom "
                "edges, so that every pixel is covered", variant(flush=False)),
    ]
    tiny = _tiny_cnn(3)
    x16 = _images(94, 3, size=16)
    cases = [
        Case("no overlap", ("no overlap", tiny, x16, 1), {"patch_size": 4}),
        Case("overlapping patches", ("overlapping patches", tiny, x16[:2], torch.tensor([0, 2])),
             {"patch_size": 4, "stride": 2, "fill": 0.5}),
        Case("a stride that does not fit", ("a stride that does not fit", _in_mode(copy.deepcopy(tiny), True),
                                            x16[:2], 2), {"patch_size": 3, "stride": 3}),
        Case("the mean image as fill", ("the mean image as fill", tiny, x16, torch.tensor([1, 1, 0])),
             {"patch_size": 5, "stride": 4, "fill": x16.mean(0)}),
    ]
    run_check("occlusion", _model_learner("occlusion", fn), _model_reference(occlusion), cases, mistakes,
              atol=1e-5, rtol=1e-3,
              hint="for each patch position, set the patch (all channels) to fill and record how much the target "
                   "logit drops; each pixel gets the mean drop of the patches that cover it")


# -- shapley_kernel_weight -------------------------------------------------------------------------


@EXERCISES.check(shapley_kernel_weight)
def check_shapley_kernel_weight(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``shapley_kernel_weight(n_segments, size) -> float64 tensor`` (the shape of size, 0-d
    for an int): the Shapley kernel π = (M - 1) / (C(M, |z|) · |z| · (M - |z|)) of a coalition of
    |z| = size of M = n_segments players (Lundberg & Lee 2017, Theorem 2); infinite for the empty
    and full coalitions."""

    def binom(m, s):
        return torch.tensor([math.comb(m, int(k)) for k in torch.as_tensor(s).flatten().tolist()],
                            dtype=torch.float64).view(torch.as_tensor(s).shape)

    def sizes(s):
        return torch.as_tensor(s, dtype=torch.float64)

    def lime(m, s):
        distance = 1 - torch.sqrt(sizes(s) / m)  # cosine distance of a coalition to the full one
        return torch.exp(-distance**2 / 0.25**2)

    def finite_ends(m, s):
        w = shapley_kernel_weight(m, s)
        return torch.where(torch.isinf(w), torch.zeros_like(w), w)

    mistakes = [
        Mistake("that is LIME's exponential kernel on the distance to the full coalition; the Shapley kernel is "
                "(M - 1) / (C(M, |z|) · |z| · (M - |z|))", lime),
        Mistake("divide by the binomial coefficient C(M, |z|) too: there are C(M, |z|) coalitions of each size, and "
                "each gets its share", lambda m, s: (m - 1) / (sizes(s) * (m - sizes(s)))),
        Mistake("the binomial coefficient C(M, |z|) divides, it does not multiply",
                lambda m, s: (m - 1) * binom(m, s) / (sizes(s) * (m - sizes(s)))),
        Mistake("keep the factor (M - 1) in the numerator", lambda m, s: 1 / (binom(m, s) * sizes(s) * (m - sizes(s)))),
        Mistake("the empty and full coalitions get an infinite weight (the division by |z| (M - |z|) = 0): Kernel "
                "SHAP enforces them as exact constraints, so do not replace them by 0", finite_ends),
    ]
    cases = [
        Case("five players", (5, torch.arange(1, 5))),
        Case("eight players", (8, torch.tensor([1, 2, 3, 4, 5, 6, 7]))),
        Case("an int size", (4, 2)),
        Case("empty and full coalitions", (6, torch.arange(0, 7))),
        Case("a batch of sizes", (10, torch.tensor([[1, 2], [8, 9]]))),
    ]
    run_check("shapley_kernel_weight", fn, shapley_kernel_weight, cases, mistakes, atol=0.0, rtol=1e-6,
              hint="π(|z|) = (M - 1) / (C(M, |z|) · |z| · (M - |z|)), computed in float64 for every size given, "
                   "with the shape of size; the empty and full coalitions give a division by zero, i.e. infinity")


# -- smoothgrad ------------------------------------------------------------------------------------

_SG_SHAPE_HINT = (
    "return one map per image, [batch, channels, height, width]: the mean over the noisy copies of their "
    "gradients"
)
_SG_NO_NOISE_HINT = (
    "with noise_level 0 every noisy copy is the image itself, so SmoothGrad must equal the plain gradient of "
    "the target logit: check the gradient part first"
)
_SG_SEED_HINT = (
    "draw the noise from a torch.Generator of your own, seeded with `seed`, not from torch's global generator: "
    "the same seed must give the same map, and the caller's random state must not move"
)
_SG_SAME_NOISE_HINT = (
    "different seeds gave identical maps: the seed must drive the noise"
)
_SG_SIGMA_HINT = (
    "the noise's standard deviation is noise_level times the range of each image, (max - min) of its pixels, "
    "not noise_level itself (Smilkov et al. 2017, §3: noise level = σ / (x_max - x_min))"
)
_SG_SUM_HINT = "average the gradients over the n_samples noisy copies, don't sum them"
_SG_FAR_HINT = (
    "your map is further from the average gradient over noisy copies than sampling noise allows: add fresh "
    "Gaussian noise N(0, σ²) to every copy (σ = noise_level times the image's range, max - min), take the "
    "gradient of the target logit at each noisy copy, and average"
)
_SG_EXPECTED_SAMPLES = 4000
_SG_TOLERANCE = 0.35


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _smoothgrad_expectation(key: str, model, images, target, noise_level: float) -> torch.Tensor:
    """SmoothGrad with many samples: the map a correct answer approaches (cached per case)."""
    if key not in _CACHE:
        _CACHE[key] = smoothgrad(model, images, target, n_samples=_SG_EXPECTED_SAMPLES, noise_level=noise_level,
                                 seed=12_345)
    return _CACHE[key]


@EXERCISES.check(smoothgrad)
def check_smoothgrad(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``smoothgrad(model, images, target, *, n_samples=50, noise_level=0.15, seed=None)``:
    the mean of the target logit's gradient over n_samples copies of each image with Gaussian noise
    of standard deviation noise_level · (max - min of that image) (Smilkov et al. 2017, §3), the
    noise drawn from ``seed``. Any noise draws pass: the map must equal the plain gradient without
    noise, repeat itself for the same seed, change with the seed, and lie as close to the mean
    gradient over noisy copies as sampling allows."""
    tiny = _tiny_cnn(4)
    # standardised images: their range (about 4) is not 1, so σ = noise_level alone is visibly wrong
    x16 = _images(95, 2, size=16)
    x16 = (x16 - x16.mean()) / x16.std()
    target = torch.tensor([1, 2])
    learner = _model_learner("smoothgrad", fn)

    def problem(out, case, model, images, target, n_samples=50, noise_level=0.15, seed=None):
        if not isinstance(out, torch.Tensor) or out.shape != images.shape or not out.is_floating_point():
            return f"expected a float tensor of shape {list(images.shape)}, got {describe(out)}", _SG_SHAPE_HINT
        if noise_level == 0:
            plain = vanilla_gradient(model, images, target)
            if _relative(out, plain) > 1e-4:
                if _relative(out, n_samples * plain) <= 1e-4:
                    return f"with noise_level=0 expected {describe(plain)}\n     got {describe(out)}", _SG_SUM_HINT
                return f"with noise_level=0 expected {describe(plain)}\n     got {describe(out)}", _SG_NO_NOISE_HINT
            return None
        again = learner(case, model, images.clone(), target, n_samples=n_samples, noise_level=noise_level, seed=seed)
        if not torch.equal(again, out):
            return f"two calls with seed={seed} gave different maps", _SG_SEED_HINT
        other = learner(case, model, images.clone(), target, n_samples=n_samples, noise_level=noise_level,
                        seed=seed + 1)
        if torch.equal(other, out):
            return f"seed={seed} and seed={seed + 1} gave the same map", _SG_SAME_NOISE_HINT
        expected = _smoothgrad_expectation(f"smoothgrad {case}", model, images, target, noise_level)
        error = _relative(out, expected)
        # measured over 20 seeds: a correct answer with 256 samples is 0.09-0.13 away (relative norm)
        # on these cases; σ = noise_level without the image's range is 0.63-0.99 away
        if error <= _SG_TOLERANCE:
            return None
        detail = (f"your map is {error:.2f} (relative norm) away from the mean gradient over "
                  f"{_SG_EXPECTED_SAMPLES} noisy copies; a correct answer with n_samples={n_samples} is within "
                  f"{_SG_TOLERANCE}")
        if _relative(out, _absolute_sigma(model, images, target, noise_level)) <= _SG_TOLERANCE:
            return detail, _SG_SIGMA_HINT
        if _relative(out, n_samples * expected) <= _SG_TOLERANCE:
            return detail, _SG_SUM_HINT
        return detail, _SG_FAR_HINT

    cases = [
        Case("no noise", ("no noise", tiny, x16, target), {"n_samples": 3, "noise_level": 0.0, "seed": 0}),
        Case("15% noise", ("15% noise", tiny, x16, target), {"n_samples": 256, "noise_level": 0.15, "seed": 1}),
        Case("30% noise", ("30% noise", _in_mode(copy.deepcopy(tiny), True), x16[:1], 0),
             {"n_samples": 256, "noise_level": 0.3, "seed": 2}),
    ]
    run_property_check("smoothgrad", learner, problem, cases, hint=_SG_FAR_HINT)


def _absolute_sigma(model, images: torch.Tensor, target, noise_level: float) -> torch.Tensor:
    """SmoothGrad's expectation when σ is noise_level itself, not noise_level times each image's range."""
    targets = _as_targets(target, len(images))
    maps = []
    for image, t in zip(images, targets):
        value_range = (image.max() - image.min()).item()
        maps.append(smoothgrad(model, image[None], t[None], n_samples=_SG_EXPECTED_SAMPLES // 4,
                               noise_level=noise_level / value_range, seed=12_345))
    return torch.cat(maps)


# -- mask_mass_fraction ----------------------------------------------------------------------------


@EXERCISES.check(mask_mass_fraction)
def check_mask_mass_fraction(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``mask_mass_fraction(attributions, mask) -> [batch]``: Σ_{pixels in mask} |a| / Σ_{all
    pixels} |a|, with |a| summed over channels; attributions [batch, channels, height, width] or
    [batch, height, width], mask bool [batch, height, width]."""

    def heat(a):
        return a.abs().sum(1) if a.ndim == 4 else a.abs()

    def flat_sum(t):
        return t.flatten(1).sum(1)

    mistakes = [
        Mistake("use absolute values: a negative attribution is still attribution mass (and signed sums can cancel "
                "or even exceed 1)", lambda a, m: flat_sum((a.sum(1) if a.ndim == 4 else a) * m)
                / flat_sum(a.sum(1) if a.ndim == 4 else a)),
        Mistake("take the absolute value of each channel before adding the channels up: opposite signs in two "
                "channels must not cancel", lambda a, m: flat_sum(a.sum(1).abs() * m) / flat_sum(a.sum(1).abs())),
        Mistake("divide by the map's total mass |a| over ALL pixels, not by the mass outside the mask",
                lambda a, m: flat_sum(heat(a) * m) / flat_sum(heat(a) * ~m)),
        Mistake("divide by the map's total mass, not by the number of pixels (or of mask pixels): the result is a "
                "fraction of the map's own mass", lambda a, m: flat_sum(heat(a) * m) / m.flatten(1).sum(1)),
        Mistake("divide by the map's total mass, not by the number of pixels (or of mask pixels): the result is a "
                "fraction of the map's own mass", lambda a, m: flat_sum(heat(a) * m) / m[0].numel()),
        Mistake("each image gets its own fraction: sum over the pixels of one image, not over the whole batch",
                lambda a, m: flat_sum(heat(a) * m).sum() / flat_sum(heat(a)).sum()),
    ]
    masks = generate_shapes(4, seed=96).masks
    small = F.max_pool2d(masks[:2, None].float(), 2)[:, 0].bool()

    def signed(seed, *shape, bump=None):
        a = torch.randn(*shape, generator=rng(seed))
        return a if bump is None else a + 3 * bump.float().view(shape[0], *([1] * (len(shape) - 3)), *shape[-2:])

    cases = [
        Case("one channel", (signed(0, 3, 1, 32, 32, bump=masks[:3]), masks[:3])),
        Case("three channels", (signed(1, 2, 3, 16, 16, bump=small), small)),
        Case("heat maps [batch, height, width]", (signed(2, 4, 32, 32, bump=masks).abs(), masks)),
        Case("a map off the object", (signed(3, 2, 1, 16, 16, bump=~small), small)),
    ]
    run_check("mask_mass_fraction", fn, mask_mass_fraction, cases, mistakes,
              hint="sum |attribution| over channels to get one mass per pixel; per image, the mass on the mask's "
                   "pixels divided by the mass on all pixels")


# -- spearman_rank_correlation ---------------------------------------------------------------------


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def _plain_ranks(x: torch.Tensor) -> torch.Tensor:
    return x.argsort(1).argsort(1).double()


@EXERCISES.check(spearman_rank_correlation)
def check_spearman_rank_correlation(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``spearman_rank_correlation(a, b, *, absolute=True) -> [batch]``: per image, the Pearson
    correlation of the ranks of a's and b's entries (each image flattened; tied values share their
    average rank); with absolute=True the ranks of |a| and |b| (Adebayo et al. 2018, §3)."""

    def prep(a, b, absolute):
        a, b = a.flatten(1).double(), b.flatten(1).double()
        return (a.abs(), b.abs()) if absolute else (a, b)

    def ranked(a, b, absolute, *, ranks=_plain_ranks):
        a, b = prep(a, b, absolute)
        return _pearson(ranks(a), ranks(b))

    def average(x):
        return torch.stack([_average_ranks(row) for row in x])

    mistakes = [
        Mistake("correlate the RANKS of the values (Spearman), not the values themselves (Pearson): the test asks "
                "whether the maps order the pixels alike", lambda a, b, absolute=True: _pearson(*prep(a, b, absolute))),
        Mistake("with absolute=True compare |a| with |b|: a gradient's sign often flips while its importance "
                "does not", lambda a, b, absolute=True: ranked(a, b, False, ranks=average)),
        Mistake("with absolute=False compare the signed values", lambda a, b, absolute=True: ranked(a, b, True,
                                                                                                    ranks=average)),
        Mistake("tied values (a map is often flat over a patch, or zero) must share their average rank; ranking "
                "them in the order a sort happens to give invents an ordering",
                lambda a, b, absolute=True: ranked(a, b, absolute)),
        Mistake("one correlation per image: flatten each image's map, not the whole batch into one",
                lambda a, b, absolute=True: ranked(a.flatten()[None], b.flatten()[None], absolute, ranks=average)),
        Mistake("one correlation per image: flatten each image's map, not the whole batch into one",
                lambda a, b, absolute=True: ranked(a.flatten()[None], b.flatten()[None], absolute, ranks=average)[0]),
    ]

    def pair(seed, *shape, rho=0.6):
        g = rng(seed)
        a = torch.randn(*shape, generator=g)
        return a, rho * a + torch.randn(*shape, generator=g) * (1 - rho**2) ** 0.5

    def blocky(seed, n):
        g = rng(seed)
        coarse = torch.randn(n, 1, 4, 4, generator=g).relu()  # patches and zeros: many ties
        noisy = (coarse + 0.5 * torch.randn(n, 1, 4, 4, generator=g)).relu()
        grow = (lambda t: t.repeat_interleave(4, -1).repeat_interleave(4, -2))  # noqa: E731
        return grow(coarse), grow(noisy)

    flipped_a, flipped_b = pair(2, 2, 1, 10, 10, rho=0.8)
    signs = torch.where(torch.rand(flipped_b.shape, generator=rng(22)) < 0.5, -1.0, 1.0)
    cases = [
        Case("correlated maps", pair(0, 3, 1, 8, 8)),
        Case("patchy maps with ties", blocky(1, 3)),
        Case("signs flipped, absolute=False", (flipped_a, flipped_b * signs), {"absolute": False}),
        Case("signs flipped, absolute=True", (flipped_a, flipped_b * signs), {"absolute": True}),
        Case("heat maps [batch, height, width]", pair(3, 2, 12, 12, rho=0.3)),
    ]
    run_check("spearman_rank_correlation", fn, spearman_rank_correlation, cases, mistakes, atol=1e-5, rtol=1e-4,
              hint="per image: flatten each map (taking absolute values when absolute=True), replace the values by "
                   "their ranks (ties share the average rank), and take the Pearson correlation of the two rank "
                   "vectors")


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of x [n], ties sharing their mean rank (a plain loop, independent of toykit.ranks)."""
    values = x.tolist()
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return torch.tensor(ranks, dtype=torch.float64)


# -- gradient_ascent_step --------------------------------------------------------------------------


def _ascent_variant(model, images, hook_name, channel, lr, *, sign=1.0, objective=None, clamp=True,
                    batch_mean=False, normalise=False):
    """One ascent step with one part done differently (for the hints)."""
    objective = objective or (lambda acts: acts[:, channel].mean(dim=(-2, -1)))
    was = model.training
    model.eval()
    try:
        x = images.detach().clone().requires_grad_(True)
        value = objective(read_activation(model, x, hook_name))
        (grad,) = torch.autograd.grad(value.mean() if batch_mean else value.sum(), [x])
    finally:
        model.train(was)
    if normalise:
        grad = grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    out = images + sign * lr * grad
    return out.clamp(0, 1) if clamp else out


@EXERCISES.check(gradient_ascent_step)
def check_gradient_ascent_step(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``gradient_ascent_step(model, images, hook_name, channel, *, lr) -> images'``: images +
    lr · ∂objective/∂images, clipped to [0, 1], where each image's objective is the mean over
    positions of channel ``channel`` at ``hook_name`` (``channel_objective``); a new tensor,
    images unchanged."""

    def variant(**how):
        return lambda case, m, x, hook_name, channel, lr: _ascent_variant(m, x, hook_name, channel, lr, **how)

    mistakes = [
        Mistake("step UP the gradient (add lr times the gradient): activation maximisation climbs the objective; "
                "subtracting is descent, which lowers the channel's activation", variant(sign=-1.0)),
        Mistake("the objective is ONE channel's mean activation, not the mean of the whole layer",
                variant(objective=lambda acts: acts.mean(dim=(1, 2, 3)))),
        Mistake("the channel objective is the channel's MEAN over positions, not its maximum",
                lambda case, m, x, hook_name, channel, lr: _ascent_variant(
                    m, x, hook_name, channel, lr, objective=lambda acts: acts[:, channel].amax(dim=(-2, -1)))),
        Mistake("clip the new images to the valid pixel range [0, 1]", variant(clamp=False)),
        Mistake("each image climbs its own objective: differentiate the SUM of the objectives over the batch "
                "(a mean divides every image's step by the batch size)", variant(batch_mean=True)),
        Mistake("take a plain gradient step, lr times the raw gradient (don't normalise it)", variant(normalise=True)),
    ]
    shapes_cnn, tiny = _shapes_cnn(), _tiny_cnn(5)
    x32 = _images(97, 3)
    x16 = _images(98, 2, size=16)
    cases = [
        Case("a first-layer channel", ("a first-layer channel", shapes_cnn, x32, "conv.0.hook_post", 4),
             {"lr": 100.0}),
        Case("a second-layer channel", ("a second-layer channel", shapes_cnn, x32[:2], "conv.1.hook_post", 27),
             {"lr": 2.0}),
        Case("a big step that leaves [0, 1]", ("a big step that leaves [0, 1]", shapes_cnn, x32[:1],
                                               "conv.1.hook_post", 16), {"lr": 50.0}),
        Case("an untrained model in training mode", ("an untrained model in training mode",
                                                     _in_mode(copy.deepcopy(tiny), True), x16, "conv.1.hook_post", 3),
             {"lr": 5.0}),
    ]
    run_check("gradient_ascent_step", _model_learner("gradient_ascent_step", fn),
              _model_reference(gradient_ascent_step), cases, mistakes, atol=1e-5, rtol=1e-3,
              hint="on a detached copy of the images that requires gradients: read the hook's activation, take the "
                   "channel's mean over positions for each image, differentiate their sum with respect to the images, "
                   "step lr times that gradient upwards and clip to [0, 1]")

