"""toykit.conv_circuits: hand-checked pieces, and what holds on the shipped shapes-cnn and strokes-cnn."""

import dataclasses
from functools import partial

import pytest
import torch

import toykit.pretrained
from toykit.cnn import CNNConfig, HookedCNN
from toykit.conv_circuits import (
    ablation_drop,
    arc_tangents,
    curve_vs_line,
    excitatory_inputs,
    line_orientation_tuning,
    opening_tuning,
    preferred_opening,
    tangent_alignment,
    tap_positions,
    weight_norms,
    zero_channels_hook,
)
from toykit.image_statistics import spectral_orientation
from toykit.tasks.shapes import render_curve, render_line
from toykit.tuning_curves import tuning_curves
from toykit.unit_activations import read_activation

ANGLES = torch.arange(0.0, 180.0, 7.5)
OPENINGS = torch.arange(0.0, 360.0, 15.0)
LINE_ANGLES = torch.arange(0.0, 180.0, 15.0)
RADIUS, SPAN = 8.0, 150.0
ARC_LENGTH = RADIUS * torch.deg2rad(torch.tensor(SPAN)).item()  # lines as long as the arcs


@pytest.fixture(scope="module")
def shipped():
    return toykit.pretrained.load("shapes-cnn", device="cpu")


@pytest.fixture(scope="module")
def untrained():
    return HookedCNN(CNNConfig(seed=0, device="cpu"))


def _axial(a, b):
    d = (a - b).abs() % 180
    return torch.minimum(d, 180 - d)


# ---------------------------------------------------------------- hand-checked pieces


def test_weight_norms_and_excitatory_inputs_read_the_kernels(untrained):
    w = untrained.conv[1].W.detach()
    assert torch.allclose(weight_norms(untrained, 1), w.pow(2).sum(dim=(2, 3)).sqrt())
    assert torch.allclose(excitatory_inputs(untrained, 1, 5), w[5].clamp(min=0).sum(dim=(1, 2)))
    assert weight_norms(untrained, 0).shape == (16, 1)


def test_tap_positions_follow_the_pooling_grid(untrained):
    taps0 = tap_positions(untrained, 0, 10, 20)  # 7 x 7 pixels around (10, 20)
    assert taps0.shape == (7, 7, 2)
    assert taps0[3, 3].tolist() == [10.0, 20.0] and taps0[0, 0].tolist() == [7.0, 17.0]
    # conv.1 reads the 2 x 2-pooled conv.0 map: cell q is pixels 2q and 2q + 1, centre 2q + 0.5
    taps1 = tap_positions(untrained, 1, 8, 8)
    assert taps1.shape == (5, 5, 2)
    assert taps1[2, 2].tolist() == [16.5, 16.5] and taps1[0, 4].tolist() == [12.5, 20.5]
    taps2 = tap_positions(untrained, 2, 4, 4)  # conv.2 reads cells of 4 x 4 pixels
    assert taps2[1, 1].tolist() == [17.5, 17.5] and (taps2[1, 2] - taps2[1, 1]).tolist() == [0.0, 4.0]


def test_arc_tangents_lie_on_the_rendered_curve():
    opening = 30.0
    image = render_curve(opening, radius=RADIUS, span=SPAN, width=2.0)[0, 0]
    ink = (image > 0.99).nonzero().float()  # full coverage: pixel centres within 0.5 of the centre line
    assert len(ink) > 15
    _, distance = arc_tangents(ink, opening, radius=RADIUS)
    assert distance.max() < 0.51
    _, off = arc_tangents(ink, opening + 180, radius=RADIUS)  # the mirrored circle misses most of them
    assert off.median() > 2
    # at the arc's midpoint (the image centre) the tangent is perpendicular to the opening
    t_mid, d_mid = arc_tangents(torch.tensor([[15.5, 15.5]]), opening, radius=RADIUS)
    assert d_mid.item() == pytest.approx(0.0, abs=1e-5)
    assert t_mid.item() == pytest.approx((opening + 90) % 180, abs=1e-4)
    # a horizontal line's tangent, read from a big circle through it, is about 0 degrees
    t_flat, _ = arc_tangents(torch.tensor([[15.5, 18.5]]), 270.0, radius=1000.0)
    assert _axial(t_flat, torch.tensor(0.0)).item() < 0.5
    with pytest.raises(ValueError, match="points"):
        arc_tangents(torch.zeros(3, 3), 0.0)


def test_preferred_opening_is_a_direction_not_an_orientation():
    responses = torch.zeros(len(OPENINGS))
    responses[OPENINGS == 270.0] = 1.0
    tuning = preferred_opening(OPENINGS, responses)
    assert tuning.preferred.item() == pytest.approx(270.0, abs=1e-3)  # not 90: 270 and 90 differ
    assert tuning.circular_variance.item() == pytest.approx(0.0, abs=1e-6)
    flat = preferred_opening(OPENINGS, torch.ones(len(OPENINGS)))
    assert flat.circular_variance.item() == pytest.approx(1.0, abs=1e-5)


def test_zero_channels_hook_returns_a_new_tensor():
    act = torch.rand(2, 4, 3, 3) + 0.1
    before = act.clone()
    out = zero_channels_hook(act, None, [1, 3])
    assert torch.equal(act, before)  # the input is untouched
    assert (out[:, [1, 3]] == 0).all() and torch.equal(out[:, [0, 2]], act[:, [0, 2]])
    with pytest.raises(ValueError, match="channels"):
        zero_channels_hook(act, None, [4])


def test_ablation_drop_of_every_input_is_total_and_leaves_the_model_alone(untrained):
    images = render_curve(OPENINGS[:4], radius=RADIUS, span=SPAN)
    params = [p.clone() for p in untrained.parameters()]
    untrained.train()
    acts = read_activation(untrained, images, "conv.1.hook_post")[:, :, :, :].amax(dim=(2, 3)).mean(0)
    channel = int(acts.argmax())
    drop = ablation_drop(untrained, images, "conv.1.hook_post", channel,
                         ablate_hook="conv.0.hook_post", ablate_channels=list(range(16)))
    # with every conv.0 channel at 0, conv.1 sees only its bias: ReLU(b)
    bias_only = untrained.conv[1].b[channel].clamp(min=0).item()
    assert drop == pytest.approx(1 - bias_only / acts[channel].item(), abs=1e-5)
    assert untrained.training and all(torch.equal(p, q) for p, q in zip(params, untrained.parameters()))
    assert not any(hp._forward_hooks for hp in untrained.hook_dict.values())
    with pytest.raises(ValueError, match="ablate_channels"):
        ablation_drop(untrained, images, "conv.1.hook_post", channel, ablate_hook="conv.0.hook_post",
                      ablate_channels=[])


def test_bad_arguments_are_named(untrained):
    with pytest.raises(ValueError, match="layer"):
        weight_norms(untrained, 3)
    with pytest.raises(ValueError, match="channel"):
        excitatory_inputs(untrained, 1, 32)
    with pytest.raises(ValueError, match="y"):
        tap_positions(untrained, 1, 16, 0)
    with pytest.raises(TypeError, match="HookedCNN"):
        weight_norms(torch.nn.Linear(2, 2), 0)


# ---------------------------------------------------------------- the shipped shapes-cnn


def test_shipped_conv0_tuning_matches_the_kernels_spectral_orientation(shipped):
    """Tuning curves from line sweeps against the orientation read from each 7x7 kernel's spectrum."""
    _, tuning = line_orientation_tuning(shipped, ANGLES)
    claimed = spectral_orientation(shipped.conv[0].W.detach()).preferred
    diff = _axial(tuning.preferred, claimed)
    within = (diff <= 15).sum().item()
    # measured: 6 of 16 channels within 15 degrees (channel 0: 1.0 degree, CV 0.62)
    assert diff.min() < 5 and within >= 5
    # baseline: each channel's tuning against another channel's claim (about 1/6 of them agree)
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack([(_axial(tuning.preferred, claimed[torch.randperm(16, generator=g)]) <= 15).sum()
                            for _ in range(200)]).float()
    assert within >= shuffled.mean() + 2  # measured: 6 vs 2.6
    assert tuning.circular_variance.min() < 0.45  # measured 0.39 (channel 14)


def _curve_vs_line(model, hook):
    cur = opening_tuning(model, hook, OPENINGS, radius=RADIUS, span=SPAN)
    lin = tuning_curves(model, hook, render_line(LINE_ANGLES, length=ARC_LENGTH)[:, None], where="max")
    return cur, lin, cur.max(0).values / lin.max(0).values.clamp_min(1e-6)


def test_shipped_model_has_no_strong_curve_detector(shipped, untrained):
    """No conv.1 channel answers its best curve even twice as much as its best line, and the
    best ratio is no higher than an untrained model's: a negative result, kept honest."""
    for hook in ("conv.1.hook_post", "conv.2.hook_post"):
        _, _, ratio = _curve_vs_line(shipped, hook)
        _, _, ratio_untrained = _curve_vs_line(untrained, hook)
        assert 1.2 < ratio.max() < 2.0  # measured: conv.1 1.66 (channel 20), conv.2 1.53 (channel 24)
        assert ratio.max() < ratio_untrained.max() + 0.1  # measured untrained: 1.65 and 2.11


def test_shipped_conv1_channel20_is_driven_by_the_inputs_its_weights_name(shipped):
    """Conv.1 channel 20 (the best curve/line ratio): the conv.0 channels with the most positive
    weight where its preferred curve has ink carry more of its response than random channels,
    but their orientations do not follow the curve's tangent better than shuffled ones."""
    cur, _, ratio = _curve_vs_line(shipped, "conv.1.hook_post")
    channel = int(ratio.argmax())
    assert channel == 20
    opening = float(OPENINGS[cur[:, channel].argmax()])  # measured 225
    act = read_activation(shipped, render_curve(opening, radius=RADIUS, span=SPAN), "conv.1.hook_post")
    y, x = divmod(int(act[0, channel].argmax()), act.shape[-1])  # measured (10, 6)
    _, tuning = line_orientation_tuning(shipped, ANGLES)
    reading = tangent_alignment(shipped, 1, channel, y, x, tuning.preferred, opening, radius=RADIUS, span=SPAN)
    assert reading.on_arc.sum() >= 4  # measured 6 of 25 taps
    chosen = reading.per_input.argsort(descending=True)[:3].tolist()  # measured [11, 2, 10]
    stimuli = render_curve(opening + torch.tensor([-15.0, 0.0, 15.0]), radius=RADIUS, span=SPAN)
    drop = partial(ablation_drop, shipped, stimuli, "conv.1.hook_post", channel, ablate_hook="conv.0.hook_post")
    named = drop(ablate_channels=chosen)
    others = [i for i in range(16) if i not in chosen]
    g = torch.Generator().manual_seed(3)
    random = torch.tensor([drop(ablate_channels=[others[j] for j in torch.randperm(13, generator=g)[:3].tolist()])
                           for _ in range(30)])
    # measured: 0.388 vs random mean 0.153, max 0.271
    assert named > 0.3
    assert named > random.quantile(0.9).item() + 0.05
    # the tangent reading: measured 36.2 degrees vs 43.2 +- 5.2 for shuffled orientations (p = 0.10)
    read = partial(tangent_alignment, shipped, 1, channel, y, x, opening=opening, radius=RADIUS, span=SPAN)
    shuffled = torch.tensor([read(tuning.preferred[torch.randperm(16, generator=g)]).mismatch for _ in range(100)])
    assert shuffled.mean() - 2 * shuffled.std() < reading.mismatch < shuffled.mean()


def test_tangent_alignment_of_a_hand_set_curve_kernel():
    """A conv.1 kernel that puts, on each tap along a curve, the input channel tuned to the
    tangent there, has a mismatch near 0; shuffled orientations do not."""
    model = HookedCNN(CNNConfig(seed=0, device="cpu"))
    preferred = torch.arange(16) * 180.0 / 16  # pretend input channel i prefers i * 11.25 degrees
    opening = 0.0
    taps = tap_positions(model, 1, 8, 8)
    tangent, distance = arc_tangents(taps, opening, radius=RADIUS, midpoint=(16.5, 16.5))
    with torch.no_grad():
        w = torch.zeros(16, 5, 5)
        for a in range(5):
            for b in range(5):
                if distance[a, b] < 1.5:
                    w[int(torch.round(tangent[a, b] / 11.25)) % 16, a, b] = 1.0
        model.conv[1].W[3] = w
    reading = tangent_alignment(model, 1, 3, 8, 8, preferred, opening, radius=RADIUS, span=SPAN, midpoint=(16.5, 16.5))
    assert reading.on_arc.sum() >= 4 and reading.mismatch < 6.0  # half a bin of 11.25 degrees at most
    g = torch.Generator().manual_seed(0)
    shuffled = [tangent_alignment(model, 1, 3, 8, 8, preferred[torch.randperm(16, generator=g)], opening,
                                  radius=RADIUS, span=SPAN, midpoint=(16.5, 16.5)).mismatch for _ in range(20)]
    assert min(shuffled) > reading.mismatch + 10
    with pytest.raises(ValueError, match="layer"):
        tangent_alignment(model, 0, 3, 8, 8, preferred, opening)
    with pytest.raises(ValueError, match="preferred"):
        tangent_alignment(model, 1, 3, 8, 8, preferred[:4], opening)


# ---------------------------------------------------------------- curve_vs_line, and the shipped strokes-cnn


def test_curve_vs_line_matches_its_definition(untrained):
    result = curve_vs_line(untrained, "conv.1.hook_post", (8, 8), radii=(6.0,), line_offsets=(0.0,))
    centre = tuple(tap_positions(untrained, 1, 8, 8)[2, 2].tolist())
    arcs = render_curve(torch.arange(24) * 15.0, radius=6.0, span=120.0, centre=centre)
    lines = render_line(torch.arange(12) * 15.0, length=12.0, centre=centre)
    curve = tuning_curves(untrained, "conv.1.hook_post", arcs[:, None], where=(8, 8)).max(0).values
    line = tuning_curves(untrained, "conv.1.hook_post", lines[:, None], where=(8, 8)).max(0).values
    torch.testing.assert_close(result.best_curve, curve)
    torch.testing.assert_close(result.best_line, line)
    kept = curve >= 0.2 * curve.max()
    torch.testing.assert_close(result.ratio[kept], curve[kept] / line[kept].clamp(min=0.05 * curve.max()))
    assert (result.ratio[~kept] == 0).all() and kept.sum() < 32  # the weak channels are left out
    for kwargs, match in (({"hook_name": "hook_pooled"}, "hook_name"), ({"where": "max"}, "where"),
                          ({"radii": ()}, "radii"), ({"n_openings": 0}, "n_openings")):
        args = {"model": untrained, "hook_name": "conv.1.hook_post", "where": (8, 8), **kwargs}
        with pytest.raises(ValueError, match=match):
            curve_vs_line(**args)


@pytest.fixture(scope="module")
def strokes():
    return toykit.pretrained.load("strokes-cnn", device="cpu")


def test_strokes_cnn_has_curve_detectors_that_untrained_networks_lack(strokes, shipped):
    """The curve-vs-line ratio at conv.1 unit (8, 8): strokes-cnn far beyond ten untrained
    networks of its shape, shapes-cnn within their range (the chapter's section 5)."""
    ratio = curve_vs_line(strokes, "conv.1.hook_post", (8, 8)).ratio
    null = torch.stack([curve_vs_line(HookedCNN(dataclasses.replace(strokes.cfg, seed=s)), "conv.1.hook_post",
                                      (8, 8)).ratio for s in range(1, 11)])
    best = ratio.sort(descending=True).values
    null_best = null.sort(1, descending=True).values
    assert best[0] > null_best[:, 0].max()  # measured: 7.28 vs at most 4.59; third best 5.08 vs 1.51
    assert best[2] >= 2 * null_best[:, 2].max()  # several curve units, not one lucky one
    assert (ratio > 3).sum() >= 3 and (null > 3).sum(1).max() <= 1
    shapes_ratio = curve_vs_line(shipped, "conv.1.hook_post", (8, 8)).ratio
    assert (shapes_ratio > 3).sum() == 0 and shapes_ratio.max() <= 1.5 * null.max()


def test_strokes_cnn_best_curve_unit_follows_the_tangent(strokes):
    """The best sharply tuned curve unit (the chapter's candidate): its on-arc inputs are oriented
    along the arc (Curve Circuits' reading), and zeroing six of them removes most of its
    response, far more than random inputs."""
    ratio = curve_vs_line(strokes, "conv.1.hook_post", (8, 8)).ratio
    mid = tuple(tap_positions(strokes, 1, 8, 8)[2, 2].tolist())
    radial = opening_tuning(strokes, "conv.1.hook_post", OPENINGS, radius=6.0, span=120.0, centre=mid, where=(8, 8))
    spread = preferred_opening(OPENINGS, radial - radial.min(0).values).circular_variance
    tuned = ((ratio > 3) & (spread < 0.25)).nonzero().squeeze(1)
    assert len(tuned) >= 2  # measured: channels 23 and 19 (circular variance 0.02 each)
    channel = int(tuned[ratio[tuned].argmax()])
    opening = float(OPENINGS[radial[:, channel].argmax()])
    _, tuning = line_orientation_tuning(strokes, ANGLES)
    read = partial(tangent_alignment, strokes, 1, channel, 8, 8, opening=opening, radius=6.0, span=120.0, midpoint=mid)
    reading = read(tuning.preferred)
    g = torch.Generator().manual_seed(0)
    shuffled = torch.tensor([read(tuning.preferred[torch.randperm(16, generator=g)]).mismatch for _ in range(100)])
    assert (shuffled <= reading.mismatch).float().mean() < 0.05  # measured: 32.2 vs 46.0 +- 4.8 degrees, p < 0.01
    chosen = reading.per_input.argsort(descending=True)[:6].tolist()
    stimuli = render_curve(opening + torch.tensor([-15.0, 0.0, 15.0]), radius=6.0, span=120.0, centre=mid)
    drop = partial(ablation_drop, strokes, stimuli, "conv.1.hook_post", channel, ablate_hook="conv.0.hook_post",
                   where=(8, 8))
    others = [i for i in range(16) if i not in chosen]
    random = torch.tensor([drop(ablate_channels=[others[j] for j in torch.randperm(10, generator=g)[:6].tolist()])
                           for _ in range(30)])
    named = drop(ablate_channels=chosen)
    assert named >= 0.5 and named >= random.max() + 0.2  # measured (channel 23): 0.75 vs random mean 0.13, max 0.36
