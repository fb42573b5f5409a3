"""Circuits in a CNN's weights: a conv layer read as a combination of the previous layer's channels.

Each output channel c of a conv layer computes, at every position, a sum over the previous
layer's channels i of a small spatial kernel W[c, i] [k, k] applied to channel i's map. So the
weights say which earlier features a channel builds on and where: a large positive kernel entry
at tap (a, b) means "channel i, active at that offset, excites c". Cammarata et al. 2021,
"Curve Circuits" (Distill), read InceptionV1's curve detectors (found in Cammarata et al. 2020,
"Curve Detectors") this way: earlier line and edge detectors, each weighted where its
orientation follows the curve's tangent at that position of the kernel.

This module gives the pieces, for a ``toykit.cnn.HookedCNN``:

- ``weight_norms`` and ``excitatory_inputs``: how strongly each input channel feeds an output
  channel; ``tap_positions``: where each kernel tap of a unit looks, in input pixels;
- ``line_orientation_tuning``: the preferred orientation of each channel from line sweeps
  (``toykit.tuning_curves``); ``opening_tuning`` / ``preferred_opening``: tuning to curves
  (``toykit.tasks.shapes.render_curve``) over the direction they open towards;
  ``curve_vs_line``: how much more a unit answers its best curve than its best line;
- ``arc_tangents``: the tangent of a rendered curve near given pixels; ``tangent_alignment``:
  whether the input channels that a kernel weights where a curve has ink are oriented along
  the curve's tangent there (Cammarata et al.'s reading, as one number with its inputs);
- ``zero_channels_hook`` and ``ablation_drop``: knock out chosen channels of a layer's output
  and measure how much a later channel's response falls.

Angles follow ``toykit.tasks.shapes``: degrees, 0 pointing right, counter-clockwise on screen;
orientations live in [0, 180), directions (curve openings) in [0, 360).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch

from toykit.cnn import ConvLayer, HookedCNN
from toykit.dataset_examples import receptive_field
from toykit.hooks import HookPoint, check_model
from toykit.runtime import eval_mode
from toykit.tasks.shapes import CENTRE, render_curve, render_line
from toykit.tuning_curves import OrientationTuning, preferred_orientation, tuning_curves
from toykit.unit_activations import Where, channel_response, read_activation
from toykit.validation import check_positive_int, check_positive_number, check_tensor

__all__ = [
    "CurveVsLine",
    "TangentAlignment",
    "ablation_drop",
    "arc_tangents",
    "curve_vs_line",
    "excitatory_inputs",
    "line_orientation_tuning",
    "opening_tuning",
    "preferred_opening",
    "tangent_alignment",
    "tap_positions",
    "weight_norms",
    "zero_channels_hook",
]


_HOOK_LAYER = re.compile(r"conv\.(\d+)\.hook_(?:pre|post)")


def _conv_weight(model: HookedCNN, layer: int) -> torch.Tensor:
    """conv.{layer}.W, detached: [c_out, c_in, k, k]."""
    check_model(model, HookedCNN)
    n = model.cfg.n_layers
    if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < n:
        raise ValueError(f"layer must be an int in [0, {n}) (the model's conv layers), got {layer!r}")
    conv = model.conv[layer]
    assert isinstance(conv, ConvLayer)  # for the type checker: a ModuleList item is any Module
    return conv.W.detach()


def _check_channel(name: str, channel: object, n: int) -> int:
    if not isinstance(channel, int) or isinstance(channel, bool) or not 0 <= channel < n:
        raise ValueError(f"{name} must be an int in [0, {n}), got {channel!r}")
    return channel


def weight_norms(model: HookedCNN, layer: int) -> torch.Tensor:
    """The Frobenius norm of each spatial kernel of conv.{layer}: [c_out, c_in].

    Entry [c, i] is how strongly input channel i can move output channel c, either way.
    """
    return _conv_weight(model, layer).flatten(2).norm(dim=2)


def excitatory_inputs(model: HookedCNN, layer: int, channel: int) -> torch.Tensor:
    """The sum of the positive weights of each input channel's kernel for one output channel: [c_in].

    A channel after a ReLU is never negative, so only positive weights let it excite the
    output; ranking inputs by this sum finds the features the output channel builds on.
    """
    w = _conv_weight(model, layer)
    return w[_check_channel("channel", channel, w.shape[0])].clamp(min=0).flatten(1).sum(dim=1)


def tap_positions(model: HookedCNN, layer: int, y: int, x: int) -> torch.Tensor:
    """Where each kernel tap of unit (y, x) of conv.{layer} looks: [k, k, 2] (row, col) in pixels.

    Tap (a, b) reads the previous layer's map at (y + a - k // 2, x + b - k // 2); that unit's
    receptive field (``toykit.dataset_examples.receptive_field``, through the 2 x 2 max-pools
    between layers) is centred on the returned pixel. Layer 0's taps are pixels themselves.
    """
    w = _conv_weight(model, layer)
    h = model.cfg.image_size // 2**layer
    _check_channel("y", y, h)
    _check_channel("x", x, h)
    # the field of one cell of the map the kernel reads: the stack up to conv.{layer}, without it
    field = receptive_field(model.layer_geometry(layer)[:-1])
    k = w.shape[-1]
    cells = torch.arange(k, dtype=torch.float32) - k // 2
    rows = (y + cells) * field.stride - field.padding + (field.size - 1) / 2
    cols = (x + cells) * field.stride - field.padding + (field.size - 1) / 2
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)


def line_orientation_tuning(model: HookedCNN, angles: torch.Tensor | Sequence[float], *,
                            hook_name: str = "conv.0.hook_post", length: float = 24.0, width: float = 1.5,
                            where: Where = "max") -> tuple[torch.Tensor, OrientationTuning]:
    """Tuning curves to centred lines (``render_line``) and each channel's preferred orientation.

    angles: [n_angles] degrees; sample [0, 180) evenly. length, width: of the lines, in pixels.
    where: how a channel's map becomes one number per image ("max": the strongest position).
    Returns (curves [n_angles, channels], OrientationTuning with fields [channels]); the circular
    statistics use each curve minus its minimum, so a channel's untuned baseline does not count.
    """
    angles = torch.as_tensor(angles, dtype=torch.float32)
    check_tensor("angles", angles, ["n_angles"], dtype="float")
    lines = render_line(angles, length=length, width=width)  # [n_angles, 1, 32, 32]
    curves = tuning_curves(model, hook_name, lines[:, None].to(model.device), where=where).cpu()
    return curves, preferred_orientation(angles, curves - curves.min(dim=0).values)


def opening_tuning(model: HookedCNN, hook_name: str, openings: torch.Tensor | Sequence[float], *,
                   radius: float = 8.0, span: float = 150.0, width: float = 1.5,
                   centre: tuple[float, float] | None = None, where: Where = "max") -> torch.Tensor:
    """Tuning curves to arcs (``render_curve``) over the direction they open towards.

    openings: [n_openings] degrees in [0, 360) (sample evenly). radius, span, width, centre: as
    in ``render_curve`` (centre is the arc's midpoint, (row, col)). where: as in ``tuning_curves``.
    Returns [n_openings, channels] on the CPU.
    """
    openings = torch.as_tensor(openings, dtype=torch.float32)
    check_tensor("openings", openings, ["n_openings"], dtype="float")
    arcs = render_curve(openings, radius=radius, span=span, width=width, centre=centre)
    return tuning_curves(model, hook_name, arcs[:, None].to(model.device), where=where).cpu()


def preferred_opening(openings: torch.Tensor | Sequence[float], responses: torch.Tensor) -> OrientationTuning:
    """The response-weighted circular mean opening and its circular variance.

    Openings are directions (0 and 180 differ), not orientations: a direction d is the
    orientation d / 2 doubled, so ``preferred_orientation`` on the halved angles gives the
    ordinary circular mean, and its ``preferred`` is doubled back into [0, 360).
    openings: [n_openings] degrees; responses: [n_openings] or [n_openings, channels], >= 0.
    """
    openings = torch.as_tensor(openings, dtype=torch.float32)
    half = preferred_orientation(openings / 2, responses)
    return OrientationTuning(preferred=2 * half.preferred, circular_variance=half.circular_variance)


@dataclass(frozen=True)
class CurveVsLine:
    """How much more each channel answers curves than straight lines (``curve_vs_line``).

    best_curve, best_line: [channels] the strongest response to any arc / any line of the sweep.
    ratio: [channels] best_curve / best_line, with best_line floored at ``line_floor`` x the
    layer's strongest curve response; 0 for a channel whose best curve is under
    ``min_curve`` x that maximum (a ratio of two tiny numbers says nothing).
    """

    best_curve: torch.Tensor
    best_line: torch.Tensor
    ratio: torch.Tensor


def curve_vs_line(model: HookedCNN, hook_name: str, where: tuple[int, int], *, radii: Sequence[float] = (4.0, 6.0, 8.0),
                  span: float = 120.0, n_openings: int = 24, line_length: float = 12.0,
                  line_offsets: Sequence[float] = (-3.0, -1.5, 0.0, 1.5, 3.0), n_orientations: int = 12,
                  width: float = 1.5, min_curve: float = 0.2, line_floor: float = 0.05) -> CurveVsLine:
    """Each channel's best response to curves over its best response to lines, at one unit.

    The curve-vs-line test of Cammarata et al. 2020 ("Curve Detectors", section "Synthetic
    Curves"): a curve detector answers curves of some orientation far more than any straight
    line. The arcs (``render_curve``: every radius in radii, span degrees, n_openings opening
    directions) have their midpoint on the centre of the unit's receptive field; the lines
    (n_orientations orientations, line_length long) pass through that centre, or beside it at
    each of line_offsets pixels along their normal, so that a unit tuned off-centre meets a line
    too. hook_name, where: the unit, e.g. "conv.1.hook_post" and (8, 8); its receptive field's
    centre comes from ``tap_positions``. Returns a CurveVsLine of [channels] tensors on the CPU.
    """
    match = _HOOK_LAYER.fullmatch(hook_name) if isinstance(hook_name, str) else None
    if match is None:
        raise ValueError(f"hook_name must be a conv layer's hook such as 'conv.1.hook_post', got {hook_name!r}")
    if not (isinstance(where, tuple) and len(where) == 2):
        raise ValueError(f"where must be a (y, x) unit of that layer's map, got {where!r}")
    check_positive_int("n_openings", n_openings)
    check_positive_int("n_orientations", n_orientations)
    if not radii:
        raise ValueError(f"radii must be a non-empty list of arc radii in pixels, got {radii!r}")
    if not line_offsets:
        raise ValueError(f"line_offsets must be a non-empty list of offsets in pixels, got {line_offsets!r}")
    taps = tap_positions(model, int(match.group(1)), *where)
    k = taps.shape[0] // 2
    centre = (float(taps[k, k, 0]), float(taps[k, k, 1]))
    openings = torch.arange(n_openings) * (360.0 / n_openings)
    arcs = torch.cat([render_curve(openings, radius=r, span=span, width=width, centre=centre) for r in radii])
    angles = torch.arange(n_orientations) * (180.0 / n_orientations)
    # each line's normal is its direction turned by 90 degrees; (row, col) = (-sin, cos) on screen
    normal = torch.deg2rad(angles + 90)
    normals = list(zip((-torch.sin(normal)).tolist(), torch.cos(normal).tolist()))
    lines = [render_line(a, length=line_length, width=width, centre=(centre[0] + offset * nr, centre[1] + offset * nc))
             for offset in line_offsets for a, (nr, nc) in zip(angles.tolist(), normals)]
    curve = tuning_curves(model, hook_name, arcs[:, None].to(model.device), where=where).cpu().max(0).values
    line = tuning_curves(model, hook_name, torch.cat(lines)[:, None].to(model.device), where=where).cpu().max(0).values
    top = curve.max().clamp(min=1e-12)
    ratio = torch.where(curve >= min_curve * top, curve / line.clamp(min=line_floor * top), torch.zeros_like(curve))
    return CurveVsLine(best_curve=curve, best_line=line, ratio=ratio)


def arc_tangents(points: torch.Tensor, opening: float, *, radius: float = 8.0,
                 midpoint: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The tangent orientation of the circle of a ``render_curve`` arc nearest to each point.

    points: [..., 2] (row, col) pixel positions. opening, radius, midpoint: the arc's, as in
    ``render_curve`` (midpoint None: the image centre). The tangent at a point of the circle
    is perpendicular to the radius through it.
    Returns (tangent [...] degrees in [0, 180), distance [...] in pixels from each point to
    the circle; whether a point lies along the arc's span is the caller's check).
    """
    check_tensor("points", points, dtype="float")
    if points.ndim == 0 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape [..., 2] ((row, col) pairs), got {list(points.shape)}")
    check_positive_number("radius", radius)
    if midpoint is None:
        midpoint = (CENTRE, CENTRE)
    a = torch.deg2rad(torch.tensor(float(opening)))
    # Screen angles: direction a is (dx, dy) = (cos a, -sin a); rows grow downwards.
    centre_row = midpoint[0] - radius * torch.sin(a)
    centre_col = midpoint[1] + radius * torch.cos(a)
    d_row, d_col = points[..., 0] - centre_row, points[..., 1] - centre_col
    radial = torch.rad2deg(torch.atan2(-d_row, d_col))
    return (radial + 90) % 180, (torch.hypot(d_row, d_col) - radius).abs()


@dataclass(frozen=True)
class TangentAlignment:
    """What ``tangent_alignment`` returns, for one unit and one curve.

    on_arc: [k, k] bool, the kernel taps whose input cell holds the curve's ink.
    tangent: [k, k] the tangent orientation (degrees) of the curve's circle nearest each tap.
    weights: [c_in, k, k] the unit's positive weights, kept at on-arc taps only (0 elsewhere).
    per_input: [c_in] their sum per input channel: which inputs the kernel uses along the curve.
    mismatch: the weight-weighted mean of |preferred orientation - tangent| (axial, degrees in
        [0, 90]) over on-arc taps; 0 is perfect alignment, about 45 what unrelated
        orientations give (compare with shuffled ``preferred``, the caller's baseline).
    """

    on_arc: torch.Tensor
    tangent: torch.Tensor
    weights: torch.Tensor
    per_input: torch.Tensor
    mismatch: float


def tangent_alignment(model: HookedCNN, layer: int, channel: int, y: int, x: int, preferred: torch.Tensor,
                      opening: float, *, radius: float = 8.0, span: float = 150.0,
                      midpoint: tuple[float, float] | None = None, ink: float = 0.3) -> TangentAlignment:
    """Do the inputs that unit (y, x) of conv.{layer} channel weights along a curve follow its tangent?

    preferred: [c_in] the preferred orientation (degrees) of each input channel, e.g. from
        ``line_orientation_tuning``. opening, radius, span, midpoint: the curve
        (``render_curve``; midpoint None: the image centre). ink: a tap is on the arc when
        some pixel of its input cell (2**layer pixels square) is brighter than this.
    Returns a TangentAlignment (see there). Layer must be >= 1 (its inputs are channels).
    """
    w = _conv_weight(model, layer)
    if layer < 1:
        raise ValueError(f"layer must be >= 1 (a layer whose inputs are another layer's channels), got {layer}")
    w = w[_check_channel("channel", channel, w.shape[0])]
    check_tensor("preferred", preferred, [w.shape[0]], dtype="float")
    taps = tap_positions(model, layer, y, x)  # [k, k, 2]
    image = render_curve(opening, radius=radius, span=span, centre=midpoint)[0, 0]
    cell = 2**layer
    k, size = w.shape[-1], image.shape[-1]
    # the pixels of tap (a, b)'s input cell: cell x cell pixels around its centre
    corners = (taps - (cell - 1) / 2).round().long()
    on_arc = torch.zeros(k, k, dtype=torch.bool)
    for a in range(k):
        for b in range(k):
            r, c = corners[a, b].tolist()
            patch = image[max(r, 0):max(r + cell, 0), max(c, 0):max(c + cell, 0)]
            on_arc[a, b] = patch.numel() > 0 and bool(patch.max() > ink) and r < size and c < size
    tangent, _ = arc_tangents(taps, opening, radius=radius, midpoint=midpoint)
    weights = w.detach().cpu().clamp(min=0) * on_arc
    diff = (preferred.cpu()[:, None, None] - tangent[None]).abs() % 180
    diff = torch.minimum(diff, 180 - diff)
    total = weights.sum()
    mismatch = float((weights * diff).sum() / total) if total > 0 else float("nan")
    return TangentAlignment(on_arc=on_arc, tangent=tangent, weights=weights,
                            per_input=weights.flatten(1).sum(1), mismatch=mismatch)


def zero_channels_hook(act: torch.Tensor, hook: HookPoint | None, channels: Sequence[int]) -> torch.Tensor:
    """A hook for a conv activation [batch, c, h, w] that sets the given channels to 0.

    Returns a new tensor; ``act`` is not changed. Bind ``channels`` with functools.partial.
    """
    check_tensor("act", act, ["batch", "channels", "height", "width"], dtype="float")
    chosen = list(channels)
    for c in chosen:
        _check_channel("channels", c, act.shape[1])
    out = act.clone()
    out[:, chosen] = 0.0
    return out


@torch.no_grad()
def ablation_drop(model: HookedCNN, images: torch.Tensor, hook_name: str, channel: int, *,
                  ablate_hook: str, ablate_channels: Sequence[int], where: Where = "max") -> float:
    """The fraction of a channel's mean response that goes when some earlier channels are zeroed.

    images: [batch, 1, H, W]. hook_name, channel, where: the response measured
    (``channel_response``), e.g. a conv.1 channel's strongest position. ablate_hook: an earlier
    hook point, e.g. "conv.0.hook_post"; ablate_channels: its channels to zero
    (``zero_channels_hook``). Returns 1 - ablated / clean (1: the response is gone, 0: no
    change, negative: it grew). The model runs in eval mode; its mode is restored.
    """
    check_model(model, HookedCNN, [hook_name, ablate_hook])
    if isinstance(ablate_channels, (str, int)) or not isinstance(ablate_channels, Sequence) or not ablate_channels:
        raise ValueError(f"ablate_channels must be a non-empty list of channel indices, got {ablate_channels!r}")
    images = images.to(model.device)
    with eval_mode(model):
        clean = channel_response(read_activation(model, images, hook_name), channel, where).mean()
        with model.hooks(fwd_hooks=[(ablate_hook, partial(zero_channels_hook, channels=list(ablate_channels)))]):
            ablated = channel_response(read_activation(model, images, hook_name), channel, where).mean()
    if clean <= 0:
        raise ValueError(f"ablation_drop: channel {channel} of {hook_name!r} does not respond to these images "
                         "(mean response <= 0), so a relative drop is undefined")
    return float(1 - ablated / clean)
