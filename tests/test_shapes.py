"""The shapes image task: determinism, shapes, masks and the orientation/curvature ground truth."""

import math

import pytest
import torch

from toykit.tasks.shapes import (
    CLASSES,
    IMAGE_SIZE,
    ShapesBatch,
    generate_shapes,
    generate_strokes,
    render_curve,
    render_line,
)


@pytest.fixture(scope="module")
def clean():
    """Noise-free images (same shapes as with noise), for checks against the ground truth."""
    return generate_shapes(300, seed=7, noise=(0.0, 0.0))


def principal_axis_deg(image: torch.Tensor, background: float) -> float:
    """The orientation in [0, 180) (module convention: counter-clockwise, y up) of the main
    axis of the image's brightness above ``background``. image: [32, 32]."""
    w = (image - background).clamp_min(0)
    rows, cols = torch.meshgrid(torch.arange(IMAGE_SIZE, dtype=torch.float32),
                                torch.arange(IMAGE_SIZE, dtype=torch.float32), indexing="ij")
    x, y = cols, -rows  # y up
    mx, my = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    cxx, cyy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    return math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy)) % 180


def edge_orientation_deg(image: torch.Tensor, period: float) -> float:
    """The dominant edge orientation modulo ``period`` degrees, from the image gradients:
    each edge runs perpendicular to its gradient; angles are averaged on the circle of
    circumference ``period`` (90 for a square's sides, 60 for a triangle's), weighted by the
    gradient's squared magnitude."""
    # Scharr's kernels: derivatives that are nearly isotropic on a pixel grid.
    kx = torch.tensor([[-3.0, 0, 3], [-10, 0, 10], [-3, 0, 3]])
    g = torch.nn.functional.conv2d(image[None, None], torch.stack([kx, kx.T])[:, None], padding=1)[0]
    gx, gy = g[0], g[1]  # along cols, along rows (down)
    edge = torch.atan2(-gy, gx) + math.pi / 2  # gradient angle (y up) + 90 degrees
    turns = 2 * math.pi / math.radians(period)
    w = gx**2 + gy**2
    mean = torch.atan2((w * torch.sin(turns * edge)).sum(), (w * torch.cos(turns * edge)).sum())
    return math.degrees(mean.item() / turns) % period


def angle_gap(a: float, b: float, period: float) -> float:
    d = (a - b) % period
    return min(d, period - d)


def test_shapes_dtypes_and_ranges():
    batch = generate_shapes(50, seed=0)
    assert isinstance(batch, ShapesBatch) and len(batch) == 50
    assert batch.images.shape == (50, 1, 32, 32) and batch.images.dtype == torch.float32
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert batch.labels.shape == (50,) and batch.labels.dtype == torch.int64
    assert batch.masks.shape == (50, 32, 32) and batch.masks.dtype == torch.bool
    for t in (batch.orientations, batch.openings, batch.curvatures):
        assert t.shape == (50,) and t.dtype == torch.float32
    # Balanced classes: each gets 10.
    assert torch.bincount(batch.labels, minlength=len(CLASSES)).tolist() == [10] * 5


def test_same_seed_same_batch_and_generator_equivalent():
    a, b = generate_shapes(40, seed=3), generate_shapes(40, generator=torch.Generator().manual_seed(3))
    for name in ("images", "labels", "masks", "orientations", "openings", "curvatures"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0, equal_nan=True)
    c = generate_shapes(40, seed=4)
    assert not torch.equal(a.images, c.images)


def test_noise_changes_only_the_noise(clean):
    noisy = generate_shapes(300, seed=7)
    assert torch.equal(noisy.labels, clean.labels) and torch.equal(noisy.masks, clean.masks)
    assert (noisy.images - clean.images).abs().max() > 0.05


def test_masks_are_exactly_the_drawn_pixels(clean):
    images = clean.images[:, 0]
    background = images.flatten(1).amin(dim=1)[:, None, None]
    # Without noise, a pixel is brighter than the background exactly where the stroke touches it.
    assert torch.equal(images > background, clean.masks)
    assert clean.masks.flatten(1).any(dim=1).all()
    # The shapes stay inside the image: no stroke touches the border.
    border = clean.masks.clone()
    border[:, 1:-1, 1:-1] = False
    assert not border.any()


def test_ground_truth_per_class(clean):
    for label, name in enumerate(CLASSES):
        sel = clean.labels == label
        o, op, k = clean.orientations[sel], clean.openings[sel], clean.curvatures[sel]
        if name == "circle":
            assert o.isnan().all()
        else:
            period = {"square": 90, "triangle": 60}.get(name, 180)
            assert ((o >= 0) & (o < period)).all(), name
        if name == "curve":
            assert ((op >= 0) & (op < 360)).all()
            # The midpoint tangent is perpendicular to the opening.
            assert torch.allclose(o, (op + 90) % 180, atol=1e-3)
        else:
            assert op.isnan().all(), name
        if name in ("curve", "circle"):
            assert ((k >= 1 / 12 - 1e-6) & (k <= 1 / 5 + 1e-6)).all()
        else:
            assert (k == 0).all(), name


def test_line_orientation_is_the_principal_axis(clean):
    lines = (clean.labels == CLASSES.index("line")).nonzero().squeeze(1)
    assert len(lines) >= 50
    for i in lines.tolist():
        image = clean.images[i, 0]
        axis = principal_axis_deg(image, image.min().item())
        assert angle_gap(axis, clean.orientations[i].item(), 180) < 3, i


@pytest.mark.parametrize("name", ["line", "square", "triangle"])
def test_orientation_matches_the_image_gradients(clean, name):
    # A line's sides run along it; a square's sides repeat every 90 degrees, a triangle's every 60.
    period = {"line": 180, "square": 90, "triangle": 60}[name]
    idx = (clean.labels == CLASSES.index(name)).nonzero().squeeze(1)
    gaps = [angle_gap(edge_orientation_deg(clean.images[i, 0], period), clean.orientations[i].item() % period,
                      period) for i in idx.tolist()]
    assert max(gaps) < 5, (name, max(gaps))


def test_curve_ground_truth_matches_its_symmetry(clean):
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    idx = (clean.labels == CLASSES.index("curve")).nonzero().squeeze(1)
    for i in idx.tolist():
        image = clean.images[i, 0]
        w = image - image.min()
        # An arc is mirror-symmetric about its opening's axis, so its principal axes are the
        # opening and the midpoint tangent: the orientation is right modulo 90 degrees.
        assert angle_gap(principal_axis_deg(image, image.min().item()), clean.orientations[i].item(), 90) < 2, i
        # Along the opening, the brightness is skewed towards the centre of curvature: the arc
        # bunches up at its midpoint and thins out towards its ends.
        a = math.radians(clean.openings[i].item())
        p = cols * math.cos(a) - rows * math.sin(a)
        mean = (w * p).sum() / w.sum()
        assert (w * (p - mean) ** 3).sum() > 0, i


# -- the stroke task --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strokes():
    return generate_strokes(300, seed=5, noise=(0.0, 0.0))


def test_strokes_shapes_balance_and_determinism(strokes):
    assert isinstance(strokes, ShapesBatch) and len(strokes) == 300
    assert strokes.images.shape == (300, 1, 32, 32) and strokes.masks.shape == (300, 32, 32)
    assert torch.bincount(strokes.labels, minlength=3).tolist() == [100, 100, 100]
    again = generate_strokes(300, generator=torch.Generator().manual_seed(5), noise=(0.0, 0.0))
    for name in ("images", "labels", "masks", "orientations", "openings", "curvatures"):
        torch.testing.assert_close(getattr(again, name), getattr(strokes, name), rtol=0, atol=0, equal_nan=True)
    noisy = generate_strokes(300, seed=5)
    assert torch.equal(noisy.masks, strokes.masks) and (noisy.images - strokes.images).abs().max() > 0.05


def test_strokes_masks_stay_inside_and_match_the_ink(strokes):
    images = strokes.images[:, 0]
    assert torch.equal(images > images.flatten(1).amin(1)[:, None, None], strokes.masks)
    border = strokes.masks.clone()
    border[:, 1:-1, 1:-1] = False
    assert not border.any()


def test_stroke_classes_carry_the_same_ink(strokes):
    # Equal length by construction: no class may be told apart by the amount of ink alone.
    area = strokes.masks.flatten(1).sum(1).float()
    means = [area[strokes.labels == c].mean().item() for c in range(3)]
    assert max(means) / min(means) < 1.1, means


def test_stroke_ground_truth(strokes):
    arc, segment, corner = (strokes.labels == c for c in range(3))
    assert ((strokes.orientations >= 0) & (strokes.orientations < 180)).all()
    assert strokes.openings[~arc].isnan().all() and (strokes.curvatures[~arc] == 0).all()
    assert torch.allclose(strokes.orientations[arc], (strokes.openings[arc] + 90) % 180, atol=1e-3)
    assert ((strokes.curvatures[arc] >= 1 / 8 - 1e-6) & (strokes.curvatures[arc] <= 1 / 4 + 1e-6)).all()
    for i in segment.nonzero().squeeze(1).tolist():  # a segment's direction is its principal axis
        image = strokes.images[i, 0]
        assert angle_gap(principal_axis_deg(image, image.min().item()), strokes.orientations[i].item(), 180) < 3, i
    # An arc's and a corner's ink bends away from the straight line through its midpoint along
    # its tangent; a segment's stays on it.
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    spread = []
    for i in range(len(strokes)):
        image = strokes.images[i, 0]
        w = image - image.min()
        a = math.radians(strokes.orientations[i].item())
        normal = -cols * math.sin(a) - rows * math.cos(a)  # distance along the tangent's normal
        mean = (w * normal).sum() / w.sum()
        spread.append(((w * (normal - mean) ** 2).sum() / w.sum()).sqrt().item())
    spread = torch.tensor(spread)
    # (The stroke's width spreads every class a little, so the classes overlap at the margins.)
    assert spread[segment].max() < 0.8
    straight = spread[segment].median()
    assert spread[arc].median() > 1.5 * straight and spread[corner].median() > 1.5 * straight


def test_arc_opening_points_to_the_bulge_side(strokes):
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for i in (strokes.labels == 0).nonzero().squeeze(1).tolist():
        w = strokes.images[i, 0] - strokes.images[i, 0].min()
        a = math.radians(strokes.openings[i].item())
        p = cols * math.cos(a) - rows * math.sin(a)
        mean = (w * p).sum() / w.sum()
        assert (w * (p - mean) ** 3).sum() > 0, i  # bunched at the midpoint, thinning towards the centre


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be a positive int"),
    ({"n": 4, "seed": 1, "generator": torch.Generator()}, "seed and generator"),
    ({"n": 4, "noise": (0.1, 0.0)}, "noise must be a pair"),
    ({"n": 4, "noise": 0.1}, "noise must be a pair"),
])
def test_generate_strokes_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_strokes(**kwargs)


def test_render_line_sweep_is_centred_and_oriented():
    angles = torch.arange(0.0, 180.0, 15.0)
    before = angles.clone()
    images = render_line(angles, length=20, width=1.5)
    assert torch.equal(angles, before)  # the input is not modified
    assert images.shape == (12, 1, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    rows = torch.arange(32.0)
    for a, image in zip(angles.tolist(), images[:, 0]):
        assert angle_gap(principal_axis_deg(image, 0.0), a, 180) < 1.5, a
        mass = image.sum()
        centre = ((image.sum(1) * rows).sum() / mass, (image.sum(0) * rows).sum() / mass)
        assert abs(centre[0] - 15.5) < 0.1 and abs(centre[1] - 15.5) < 0.1
    # A number is a batch of one; contrast and background set the levels.
    one = render_line(30.0, contrast=0.5, background=0.2)
    assert one.shape == (1, 1, 32, 32) and one.min() == pytest.approx(0.2) and one.max() == pytest.approx(0.7)
    # Horizontal: the bright pixels sit on the centre rows.
    assert images[0, 0, 15:17].sum() > 0.9 * images[0, 0].sum()


def test_render_curve_has_its_centre_of_curvature_where_the_opening_says():
    openings = torch.tensor([0.0, 90.0, 200.0, 300.0])
    images = render_curve(openings, radius=8.0, span=180.0, width=1.0)
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for o, image in zip(openings.tolist(), images[:, 0]):
        a = math.radians(o)
        # The midpoint is the image centre; the centre of curvature is radius away towards the opening.
        cx, cy = 15.5 + 8 * math.cos(a), 15.5 - 8 * math.sin(a)
        r = torch.hypot(cols - cx, rows - cy)
        mean_r = (image * r).sum() / image.sum()
        assert abs(mean_r - 8) < 0.3, o
        # The pixel on the arc's midpoint is lit; the centre of curvature is not.
        assert image[15:17, 15:17].max() > 0.4 and image[round(cy - 0.5), round(cx - 0.5)] == 0


def test_classes_subset():
    batch = generate_shapes(30, seed=1, classes=["curve", "line"])
    assert set(batch.labels.tolist()) == {0, 1}


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be a positive int"),
    ({"n": 2.5}, "n must be a positive int"),
    ({"n": 4, "seed": 1, "generator": torch.Generator()}, "seed and generator"),
    ({"n": 4, "seed": -1}, "seed must be a non-negative int"),
    ({"n": 4, "classes": ["hexagon"]}, "classes must name classes"),
    ({"n": 4, "classes": "line"}, "classes must be a non-empty sequence"),
    ({"n": 4, "classes": ["line", "line"]}, "classes must not repeat"),
    ({"n": 4, "noise": (0.1, 0.0)}, "noise must be a pair"),
])
def test_generate_shapes_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_shapes(**kwargs)


@pytest.mark.parametrize("fn, kwargs, match", [
    (render_line, {"angles": "up"}, "angles must be a number"),
    (render_line, {"angles": [[0.0]]}, "angles must be one finite angle"),
    (render_line, {"angles": float("nan")}, "angles must be one finite angle"),
    (render_line, {"angles": 0.0, "length": -1}, "length must be a positive number"),
    (render_line, {"angles": 0.0, "width": 0}, "width must be a positive number"),
    (render_line, {"angles": 0.0, "contrast": 2}, "contrast must be a number in"),
    (render_line, {"angles": 0.0, "contrast": 0.9, "background": 0.5}, "background \\+ contrast"),
    (render_line, {"angles": 0.0, "centre": (1, 2, 3)}, "centre must be None or a \\(row, col\\)"),
    (render_curve, {"openings": 0.0, "span": 360}, "span must be a number of degrees"),
    (render_curve, {"openings": 0.0, "radius": 0}, "radius must be a positive number"),
    (render_curve, {"openings": []}, "openings must be one finite angle"),
])
def test_renderers_reject_bad_arguments(fn, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fn(**kwargs)
