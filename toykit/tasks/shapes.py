"""Shapes: small greyscale images of strokes and outlines whose ground truth is known.

Every image is 32 x 32 pixels and holds one bright shape on a darker background, drawn with
anti-aliased strokes from a distance field (a pixel's brightness falls off linearly with its
distance to the stroke's centre line). The five classes, in label order (``CLASSES``):

====  ============  ==============================================================
  0   ``line``      a straight segment
  1   ``curve``     an open circular arc spanning 120 to 240 degrees
  2   ``circle``    a closed circle outline
  3   ``square``    a square outline
  4   ``triangle``  an equilateral triangle outline
====  ============  ==============================================================

Telling them apart needs both kinds of feature that vision circuits are known for: oriented
edges (a line against the sides of a square or triangle, and the angles at their corners)
and curvature (a line against a curve; a curve against a circle needs the curve's two ends).

Each shape has a random size s in [5, 12] pixels (a line's half-length; the radius of a
curve or circle; the distance from a square's or triangle's centre to its corners), a random
rotation, a random position that keeps it inside the image, a stroke width in [1, 2.5]
pixels, a background level in [0, 0.2], a contrast (stroke minus background) in [0.4, 0.8]
and additive Gaussian noise of standard deviation in [0, 0.08]; the image is then clipped to
[0, 1].

Coordinates and angles. Pixel (row, col) has its centre at x = col, y = row; the image centre
is (15.5, 15.5). Angles are in degrees, counter-clockwise as seen on the screen, 0 pointing
right: the direction of angle a is (x, y) = (cos a, -sin a), since rows grow downwards. So a
line at 0 degrees is horizontal, 90 vertical, and 45 rises to the right ("/").

Ground truth per image (``ShapesBatch``):

- ``orientations`` [n]: the stroke's orientation in [0, 180). A line: its direction. A curve:
  its tangent at the arc's midpoint. A square: the direction of one side, in [0, 90) (the other
  sides are at +90). A triangle: the direction of one side, in [0, 60) (the others are at +60
  and +120). A circle has none: NaN.
- ``openings`` [n]: for a curve, the direction in [0, 360) from the arc's midpoint to its
  centre of curvature, i.e. the side the curve bends towards (the curve's opening faces that
  way); its midpoint tangent is perpendicular to it. NaN for every other class.
- ``curvatures`` [n]: 1 / radius in 1/pixels for curves and circles; 0 for the straight
  strokes of lines, squares and triangles (corners aside).
- ``masks`` [n, 32, 32] bool: the pixels the stroke touches (anti-aliased coverage > 0), before
  noise. Everything the shape adds to the image lies inside it.

A second task, ``generate_strokes``, draws one stroke per image from ``STROKE_CLASSES``: an
arc, a straight segment or a corner, all of the same length, so that only the way the stroke
bends tells them apart (chapter 09 looks for curve detectors in a network trained on it). Its
batches carry the same ground truth.

Images are drawn on the CPU from one torch generator, so a seed gives the same batch on every
machine; ``render_line`` and ``render_curve`` draw single noise-free strokes at chosen angles
(for orientation tuning curves, say).

    batch = generate_shapes(1000, seed=0)
    batch.images       # [1000, 1, 32, 32] float32 in [0, 1]
    batch.labels       # [1000] int64, CLASSES[label]
    lines = render_line(torch.arange(0, 180, 15))   # [12, 1, 32, 32], centred lines
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from toykit.runtime import make_generator, resolve_device
from toykit.validation import check_positive_int, check_positive_number

__all__ = [
    "CLASSES",
    "IMAGE_SIZE",
    "STROKE_CLASSES",
    "ShapesBatch",
    "generate_shapes",
    "generate_strokes",
    "render_curve",
    "render_line",
]

CLASSES: tuple[str, ...] = ("line", "curve", "circle", "square", "triangle")
IMAGE_SIZE = 32
CENTRE = (IMAGE_SIZE - 1) / 2  # 15.5: the image centre, in pixel coordinates
CHUNK = 256  # images drawn at once

SIZE_RANGE = (5.0, 12.0)
WIDTH_RANGE = (1.0, 2.5)
BACKGROUND_RANGE = (0.0, 0.2)
CONTRAST_RANGE = (0.4, 0.8)
NOISE_RANGE = (0.0, 0.08)
# Degrees of arc: bent enough to differ from a line, open enough to differ from a circle.
CURVE_SPAN_RANGE = (120.0, 240.0)

# The stroke task (generate_strokes): three strokes of equal length that differ only in how
# they bend, so that telling them apart needs local curvature.
STROKE_CLASSES: tuple[str, ...] = ("arc", "segment", "corner")
ARC_RADIUS_RANGE = (4.0, 8.0)
ARC_SPAN_RANGE = (90.0, 150.0)
CORNER_BEND_RANGE = (30.0, 60.0)


@dataclass(frozen=True)
class ShapesBatch:
    """A batch of shape images and their ground truth (see the module docstring).

    images [n, 1, 32, 32] float32 in [0, 1]; labels [n] int64 (indices into CLASSES, or into
    STROKE_CLASSES for a batch from generate_strokes);
    masks [n, 32, 32] bool; orientations, openings, curvatures [n] float32 (degrees, degrees,
    1/pixels; NaN where a class has none).
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    orientations: torch.Tensor
    openings: torch.Tensor
    curvatures: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: str | torch.device | None) -> ShapesBatch:
        """The same batch with every tensor on ``device``."""
        device = resolve_device(device)
        return ShapesBatch(*(t.to(device) for t in (self.images, self.labels, self.masks, self.orientations,
                                                     self.openings, self.curvatures)))


# -- distance fields ------------------------------------------------------------------------------
# Every function returns the distance [m, 32, 32] from each pixel centre to a stroke's centre
# line, for m shapes at once; points are (x, y) = (col, row) pixel coordinates.


def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    """x, y: [1, 32, 32] pixel-centre coordinates (x = col, y = row)."""
    y, x = torch.meshgrid(torch.arange(IMAGE_SIZE, dtype=torch.float32),
                          torch.arange(IMAGE_SIZE, dtype=torch.float32), indexing="ij")
    return x[None], y[None]


def _direction(angle_deg: torch.Tensor) -> torch.Tensor:
    """Unit vectors [..., 2] (x, y) for screen angles in degrees (counter-clockwise, y down)."""
    a = torch.deg2rad(angle_deg)
    return torch.stack([torch.cos(a), -torch.sin(a)], dim=-1)


def _segment_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a, b: [m, 2] segment ends -> [m, 32, 32] distance to the segment a-b."""
    x, y = _grid()
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b - a)[:, 0, None, None], (b - a)[:, 1, None, None]
    # The closest point is a + t (b - a), with t clamped to the segment.
    t = (((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-12)).clamp(0, 1)
    return torch.hypot(x - ax - t * dx, y - ay - t * dy)


def _polygon_distance(vertices: torch.Tensor) -> torch.Tensor:
    """vertices: [m, k, 2] corners in order -> [m, 32, 32] distance to the closed outline."""
    k = vertices.shape[1]
    sides = [_segment_distance(vertices[:, i], vertices[:, (i + 1) % k]) for i in range(k)]
    return torch.stack(sides).amin(dim=0)


def _arc_distance(centre: torch.Tensor, radius: torch.Tensor, mid_deg: torch.Tensor,
                  half_span_deg: torch.Tensor) -> torch.Tensor:
    """Distance to the arc of the circle (centre [m, 2], radius [m]) whose points lie within
    half_span_deg [m] of the screen angle mid_deg [m] (seen from the centre) -> [m, 32, 32].
    A half-span of 180 degrees or more is the whole circle."""
    x, y = _grid()
    cx, cy, r = centre[:, 0, None, None], centre[:, 1, None, None], radius[:, None, None]
    to_circle = (torch.hypot(x - cx, y - cy) - r).abs()
    # A pixel whose angle is within the span is closest to the arc's interior; others to an end.
    angle = torch.rad2deg(torch.atan2(-(y - cy), x - cx))  # screen angle of the pixel seen from the centre
    off = torch.remainder(angle - mid_deg[:, None, None] + 180, 360) - 180  # in [-180, 180)
    inside = off.abs() <= half_span_deg[:, None, None]
    ends = [centre + radius[:, None] * _direction(mid_deg + sign * half_span_deg) for sign in (-1, 1)]
    to_ends = torch.minimum(*(torch.hypot(x - e[:, 0, None, None], y - e[:, 1, None, None]) for e in ends))
    return torch.where(inside, to_circle, to_ends)


def _coverage(distance: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Anti-aliased stroke coverage in [0, 1]: 1 within width/2 - 1/2 of the centre line,
    falling linearly to 0 at width/2 + 1/2. distance [m, 32, 32], width [m]."""
    return (width[:, None, None] / 2 + 0.5 - distance).clamp(0, 1)


# -- shapes, drawn around the origin ----------------------------------------------------------------


def _arc_points(centre: torch.Tensor, radius: torch.Tensor, mid_deg: torch.Tensor,
                half_span_deg: torch.Tensor, k: int = 17) -> torch.Tensor:
    """k points spread along the arc: [m, k, 2] (for its bounding box)."""
    steps = torch.linspace(-1, 1, k)
    angles = mid_deg[:, None] + steps[None] * half_span_deg[:, None]
    return centre[:, None] + radius[:, None, None] * _direction(angles)


def _regular_polygon(k: int, size: torch.Tensor, rotation_deg: torch.Tensor) -> torch.Tensor:
    """Corners [m, k, 2] of a regular k-gon around the origin, at distance ``size`` [m]."""
    # With corners at rotation + 90 + 360 j / k, side 0 (corner 0 -> corner 1) points at
    # rotation + 180 + 180 / k, so rotation fixes the sides' orientation.
    angles = rotation_deg[:, None] + 90 + 360 / k * torch.arange(k)
    return size[:, None, None] * _direction(angles)


def _uniform(generator: torch.Generator | None, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


@dataclass(frozen=True)
class _Paint:
    """Per-image drawing parameters shared by every task: width, background, contrast, noise_std
    [n]; place [n, 2] (where in the free room the stroke goes); gaussian [n, 32, 32] noise."""

    width: torch.Tensor
    background: torch.Tensor
    contrast: torch.Tensor
    noise_std: torch.Tensor
    place: torch.Tensor
    gaussian: torch.Tensor


def _draw_paint(gen: torch.Generator | None, n: int, noise: tuple[float, float]) -> _Paint:
    """Draws the paint parameters in a fixed order (after each task's own shape parameters)."""
    width = _uniform(gen, n, *WIDTH_RANGE)
    background = _uniform(gen, n, *BACKGROUND_RANGE)
    contrast = _uniform(gen, n, *CONTRAST_RANGE)
    noise_std = _uniform(gen, n, float(noise[0]), float(noise[1]))
    place = torch.rand(n, 2, generator=gen)
    return _Paint(width, background, contrast, noise_std, place, torch.randn(n, IMAGE_SIZE, IMAGE_SIZE, generator=gen))


def _paint_images(coverage: torch.Tensor, paint: _Paint) -> torch.Tensor:
    """Stroke coverage [n, 32, 32] -> images [n, 1, 32, 32]: background + contrast x coverage +
    noise, clipped to [0, 1]."""
    images = torch.empty(coverage.shape[0], 1, IMAGE_SIZE, IMAGE_SIZE)
    for j in torch.arange(coverage.shape[0]).split(CHUNK):
        clean = paint.background[j, None, None] + paint.contrast[j, None, None] * coverage[j]
        images[j, 0] = (clean + paint.noise_std[j, None, None] * paint.gaussian[j]).clamp(0, 1)
    return images


def generate_shapes(n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
                    classes: Sequence[str] = CLASSES, noise: tuple[float, float] = NOISE_RANGE) -> ShapesBatch:
    """``n`` random shape images with their ground truth (see the module docstring).

    n: the number of images; each class in ``classes`` gets n // len(classes) or one more,
        in a random order.
    seed / generator: the source of randomness (an int seed or a CPU torch.Generator, not both;
        neither uses torch's global generator). Everything is drawn on the CPU.
    classes: which classes to draw (names from CLASSES); labels stay indices into CLASSES.
    noise: (low, high): each image's noise standard deviation is uniform in it; (0, 0) gives
        noise-free images (the other draws, and so the shapes, stay the same).
    Returns a ShapesBatch on the CPU: images [n, 1, 32, 32], labels [n], masks [n, 32, 32],
    orientations, openings, curvatures [n].
    """
    check_positive_int("n", n)
    wanted = _class_indices(classes)
    _check_noise(noise)
    gen = make_generator(seed, generator)
    # Every parameter is drawn for every image in a fixed order, so the batch depends only on
    # the seed and n; each class then reads the parameters it needs.
    labels = wanted[torch.randperm(n, generator=gen) % len(wanted)]
    size = _uniform(gen, n, *SIZE_RANGE)
    rotation = _uniform(gen, n, 0.0, 360.0)
    half_span = _uniform(gen, n, *CURVE_SPAN_RANGE) / 2
    paint = _draw_paint(gen, n, noise)
    width, place = paint.width, paint.place

    coverage = torch.zeros(n, IMAGE_SIZE, IMAGE_SIZE)
    nan = torch.full((n,), math.nan)
    orientations, openings, curvatures = nan.clone(), nan.clone(), torch.zeros(n)
    margin = width / 2 + 1.0  # keep the whole stroke, anti-aliasing included, inside the image
    for label in wanted.tolist():
        idx = (labels == label).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        s, rot, m = size[idx], rotation[idx], margin[idx]
        zero = torch.zeros(idx.numel(), 2)
        name = CLASSES[label]
        if name == "line":
            half = s[:, None] * _direction(rot)
            points = torch.stack([-half, half], dim=1)
            orientations[idx] = torch.remainder(rot, 180)
        elif name == "curve":
            # rot is the opening: the direction from the arc's midpoint to its centre.
            points = _arc_points(zero, s, rot + 180, half_span[idx])  # the midpoint is at rot + 180
            orientations[idx] = torch.remainder(rot + 90, 180)
            openings[idx] = torch.remainder(rot, 360)
            curvatures[idx] = 1 / s
        elif name == "circle":
            points = torch.stack([zero - s[:, None], zero + s[:, None]], dim=1)  # the bounding box's corners
            curvatures[idx] = 1 / s
        else:
            k = 4 if name == "square" else 3
            points = _regular_polygon(k, s, rot)
            # Side 0 points at rot + 180 + 180 / k; the sides repeat every 90 (square) or 60 degrees.
            orientations[idx] = torch.remainder(rot + 180 + 180 / k, 90 if k == 4 else 60)
        shift = _placement(points, m, place[idx])
        # Draw in chunks, so that the [chunk, 32, 32] temporaries stay in the CPU's cache.
        for j in torch.arange(idx.numel()).split(CHUNK):
            if name == "line":
                d = _segment_distance(points[j, 0] + shift[j], points[j, 1] + shift[j])
            elif name == "curve":
                d = _arc_distance(shift[j], s[j], rot[j] + 180, half_span[idx[j]])
            elif name == "circle":
                d = _arc_distance(shift[j], s[j], rot[j], torch.full_like(s[j], 180.0))
            else:
                d = _polygon_distance(points[j] + shift[j, None])
            coverage[idx[j]] = _coverage(d, width[idx[j]])

    images = _paint_images(coverage, paint)
    return ShapesBatch(images, labels, coverage > 0, orientations, openings, curvatures)


def generate_strokes(n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
                     noise: tuple[float, float] = NOISE_RANGE) -> ShapesBatch:
    """``n`` images of one stroke each, from three classes that only curvature separates.

    The classes (``STROKE_CLASSES``, in label order), each n // 3 or one more, in random order:

    - ``arc``: a circular arc of radius in [4, 8] pixels spanning 90 to 150 degrees;
    - ``segment``: a straight segment;
    - ``corner``: two straight arms meeting at a kink that turns the stroke by 30 to 60 degrees.

    Every stroke is as long as an arc of the same draw (span x radius, 6 to 21 pixels), so
    length and ink say nothing about the class; the stroke's midpoint (the corner's kink) sits at
    a random place that keeps it inside the image. Width, background, contrast and noise are
    drawn as for generate_shapes. What separates the classes is how the stroke bends: not at
    all, smoothly (an arc turns its direction by 90 to 150 degrees along its length), or at one
    point. In generate_shapes a curve can also be told from a line or a circle by its ends,
    closure or extent.

    Ground truth (a ShapesBatch; labels index STROKE_CLASSES):
    - orientations: the tangent at the midpoint in [0, 180): an arc's midpoint tangent, a
      segment's direction, a corner's first arm;
    - openings: for an arc, the direction from its midpoint to its centre of curvature (as in
      render_curve); NaN for the others;
    - curvatures: 1 / radius for an arc, 0 for the straight strokes (the kink aside);
    - masks: the pixels the stroke touches, before noise.

    seed / generator: as for generate_shapes (one CPU source; the global generator is never
    used). noise: (low, high) of each image's noise standard deviation.
    """
    check_positive_int("n", n)
    _check_noise(noise)
    gen = make_generator(seed, generator)
    labels = torch.randperm(n, generator=gen) % len(STROKE_CLASSES)
    radius = _uniform(gen, n, *ARC_RADIUS_RANGE)
    half_span = _uniform(gen, n, *ARC_SPAN_RANGE) / 2
    opening = _uniform(gen, n, 0.0, 360.0)
    bend = _uniform(gen, n, *CORNER_BEND_RANGE) * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    paint = _draw_paint(gen, n, noise)
    width, place = paint.width, paint.place

    # Drawn around the origin, with the stroke's midpoint there; the tangent is opening + 90.
    tangent = opening + 90
    half_length = torch.deg2rad(half_span) * radius  # half the arc's length
    centre = radius[:, None] * _direction(opening)  # the arc's centre of curvature
    forward = half_length[:, None] * _direction(tangent)
    turned = half_length[:, None] * _direction(tangent + 180 - bend)  # the corner's second arm
    arc_points = _arc_points(centre, radius, opening + 180, half_span)  # [n, 17, 2]
    straight_points = torch.stack([-forward, forward, torch.where((labels == 1)[:, None], -forward, turned)], dim=1)
    arc_box = torch.stack([arc_points.amin(1), arc_points.amax(1)], dim=1)  # [n, 2 corners, 2]
    straight_box = torch.stack([straight_points.amin(1), straight_points.amax(1)], dim=1)
    shift = _placement(torch.where((labels == 0)[:, None, None], arc_box, straight_box), width / 2 + 1.0, place)

    coverage = torch.zeros(n, IMAGE_SIZE, IMAGE_SIZE)
    for j in torch.arange(n).split(CHUNK):
        arc = _arc_distance(centre[j] + shift[j], radius[j], opening[j] + 180, half_span[j])
        segment = _segment_distance(shift[j] - forward[j], shift[j] + forward[j])
        corner = torch.minimum(_segment_distance(shift[j], shift[j] + forward[j]),
                               _segment_distance(shift[j], shift[j] + turned[j]))
        label = labels[j, None, None]
        coverage[j] = _coverage(torch.where(label == 0, arc, torch.where(label == 1, segment, corner)), width[j])
    images = _paint_images(coverage, paint)
    is_arc = labels == 0
    nan = torch.full((n,), math.nan)
    return ShapesBatch(images, labels, coverage > 0, torch.remainder(tangent, 180),
                       torch.where(is_arc, torch.remainder(opening, 360), nan),
                       torch.where(is_arc, 1 / radius, torch.zeros(n)))


def _check_noise(noise: tuple[float, float]) -> None:
    if (not isinstance(noise, (tuple, list)) or len(noise) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in noise)
            or not 0 <= noise[0] <= noise[1]):
        raise ValueError(f"noise must be a pair (low, high) of numbers with 0 <= low <= high, got {noise!r}")


def _class_indices(classes: Sequence[str]) -> torch.Tensor:
    if isinstance(classes, str) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise ValueError(f"classes must be a non-empty sequence of names from {CLASSES}, got {classes!r}")
    for name in classes:
        if name not in CLASSES:
            raise ValueError(f"classes must name classes from {CLASSES}, got {name!r}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must not repeat a class, got {list(classes)}")
    return torch.tensor([CLASSES.index(name) for name in classes])


def _placement(points: torch.Tensor, margin: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A translation [m, 2] that puts the points [m, k, 2] (a shape's extent around the origin)
    at a uniformly random place u [m, 2] in [0, 1)² among those keeping them ``margin`` [m]
    pixels inside the image."""
    low, high = points.amin(dim=1), points.amax(dim=1)
    lowest = margin[:, None] - low  # the shift that puts the shape at the top-left edge
    room = (IMAGE_SIZE - 1 - 2 * margin[:, None] - (high - low)).clamp_min(0)
    return lowest + u * room


# -- single strokes for tuning curves -----------------------------------------------------------------


def _angles(name: str, angles: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Angles as a float32 tensor [m] (a number becomes [1])."""
    if isinstance(angles, bool):
        raise TypeError(f"{name} must be a number, a sequence of numbers or a 1-D tensor, got {angles!r}")
    try:
        t = torch.as_tensor(angles, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a number, a sequence of numbers or a 1-D tensor, got {angles!r}") from e
    t = t.reshape(1) if t.ndim == 0 else t
    if t.ndim != 1 or t.numel() == 0 or not torch.isfinite(t).all():
        raise ValueError(f"{name} must be one finite angle or a non-empty 1-D set of them, got {angles!r}")
    return t.cpu()


def _paint_args(width: float, contrast: float, background: float, centre: tuple[float, float] | None
                ) -> torch.Tensor:
    """Checks the drawing arguments; returns the centre as (x, y) = (col, row) [2]."""
    check_positive_number("width", width)
    for name, value in (("contrast", contrast), ("background", background)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if background + contrast > 1:
        raise ValueError(f"background + contrast must be at most 1 (the brightest pixel), got {background + contrast}")
    if centre is None:
        return torch.tensor([CENTRE, CENTRE])
    if (not isinstance(centre, (tuple, list)) or len(centre) != 2
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in centre)):
        raise ValueError(f"centre must be None or a (row, col) pair of numbers, got {centre!r}")
    row, col = centre
    return torch.tensor([float(col), float(row)])


def render_line(angles: float | Sequence[float] | torch.Tensor, *, length: float = 20.0, width: float = 1.5,
                centre: tuple[float, float] | None = None, contrast: float = 1.0,
                background: float = 0.0) -> torch.Tensor:
    """Noise-free lines at the given orientations, one image each.

    angles: degrees (see the module docstring: 0 horizontal, 90 vertical, 45 rising to the
        right); a number or a 1-D set of m of them.
    length, width: in pixels. centre: (row, col) of the line's midpoint (None: the image centre).
    contrast, background: the stroke's and the background's brightness (their sum <= 1).
    Returns images [m, 1, 32, 32] float32 on the CPU.
    """
    a = _angles("angles", angles)
    check_positive_number("length", length)
    c = _paint_args(width, contrast, background, centre)
    half = length / 2 * _direction(a)
    d = _segment_distance(c - half, c + half)
    return (background + contrast * _coverage(d, torch.full_like(a, float(width))))[:, None]


def render_curve(openings: float | Sequence[float] | torch.Tensor, *, radius: float = 8.0, span: float = 180.0,
                 width: float = 1.5, centre: tuple[float, float] | None = None, contrast: float = 1.0,
                 background: float = 0.0) -> torch.Tensor:
    """Noise-free circular arcs opening towards the given directions, one image each.

    openings: degrees in the module's convention: the direction from the arc's midpoint to its
        centre of curvature (a curve with opening 0 bends around to the right, like "(");
        its midpoint tangent is at opening + 90. A number or a 1-D set of m of them.
    radius: in pixels (curvature 1 / radius). span: degrees of arc, in (0, 360).
    width: stroke width in pixels. centre: (row, col) of the arc's midpoint (None: the image
        centre), so that every curve of a sweep passes through the same pixel.
    Returns images [m, 1, 32, 32] float32 on the CPU.
    """
    o = _angles("openings", openings)
    check_positive_number("radius", radius)
    if isinstance(span, bool) or not isinstance(span, (int, float)) or not 0 < span < 360:
        raise ValueError(f"span must be a number of degrees in (0, 360), got {span!r}")
    mid = _paint_args(width, contrast, background, centre)
    r = torch.full_like(o, float(radius))
    d = _arc_distance(mid + radius * _direction(o), r, o + 180, torch.full_like(o, span / 2))
    return (background + contrast * _coverage(d, torch.full_like(o, float(width))))[:, None]
