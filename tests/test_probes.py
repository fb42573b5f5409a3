"""Linear probes, control tasks, difference-of-means directions and PCA, on data with a
planted answer, plus a probe on activations collected from a small random model."""

import math

import pytest
import torch

from toykit import probes as pr
from toykit.activations import collect_resid
from toykit.transformer import HookedTransformer, TransformerConfig


def planted(n=2000, d=32, n_classes=2, margin=3.0, noise=1.0, seed=0):
    """Gaussian noise plus a class-dependent shift along planted unit directions."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.linalg.qr(torch.randn(d, n_classes, generator=g))[0].T  # [C, d] orthonormal
    y = torch.randint(0, n_classes, (n,), generator=g)
    x = noise * torch.randn(n, d, generator=g) + margin * dirs[y]
    return x, y, dirs


def cos(a, b):
    return (a @ b / (a.norm() * b.norm())).item()


# -- logistic and ridge probes ---------------------------------------------------------------------


def test_logistic_probe_recovers_a_planted_direction():
    x, y, dirs = planted()
    fit = pr.fit_probe(x, y)
    assert fit.metric == "accuracy" and fit.test_score > 0.9 and fit.train_score > 0.9
    assert len(fit.test_idx) == 400 and len(fit.train_idx) == 1600
    assert set(fit.test_idx.tolist()).isdisjoint(fit.train_idx.tolist())
    # The probe's direction is the planted one (from class 0 toward class 1).
    assert cos(fit.probe.direction(), dirs[1] - dirs[0]) > 0.95
    assert cos(fit.probe.direction(cls=0), dirs[0] - dirs[1]) > 0.95
    assert fit.probe.direction().norm().item() == pytest.approx(1.0)


def test_probe_weights_live_in_the_raw_activation_space():
    """Features of very different scales are standardised inside the fit; the probe's
    outputs on raw x and its direction must still be right."""
    x, y, dirs = planted(d=16)
    scales = torch.logspace(-2, 2, 16)
    fit = pr.fit_probe(x * scales, y)
    assert fit.test_score > 0.9
    # Undo the scaling: in the original space the direction is the planted one.
    assert cos(fit.probe.direction(normalize=False) * scales, dirs[1] - dirs[0]) > 0.95
    logits = fit.probe(x * scales)
    assert logits.shape == (len(x), 2)
    torch.testing.assert_close(fit.probe.predict(x * scales), logits.argmax(-1))


def test_multiclass_probe_directions():
    x, y, dirs = planted(n=3000, d=24, n_classes=4)
    fit = pr.fit_probe(x, y)
    assert fit.test_score > 0.85
    for c in range(4):
        assert cos(fit.probe.direction(cls=c), dirs[c] - dirs.mean(0)) > 0.9
    with pytest.raises(ValueError, match="cls="):
        fit.probe.direction()
    # Adding the direction for class 2 to every input makes the probe say 2.
    steered = x + 10 * fit.probe.direction(cls=2)
    assert (fit.probe.predict(steered) == 2).float().mean() > 0.99


def test_constant_and_duplicated_features_are_harmless():
    x, y, _ = planted(d=8)
    x = torch.cat([x, torch.zeros(len(x), 1), x[:, :1]], dim=1)
    fit = pr.fit_probe(x, y)
    assert fit.test_score > 0.9 and torch.isfinite(fit.probe.W).all()
    assert fit.probe.W[8].abs().max() == 0  # the constant feature gets no weight


def test_ridge_probe_recovers_a_linear_map():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1000, 20, generator=g) * torch.linspace(0.5, 3, 20)
    w = torch.randn(20, generator=g)
    y = x @ w + 2.0 + 0.05 * torch.randn(1000, generator=g)
    fit = pr.fit_probe(x, y)  # float targets: regression
    assert fit.metric == "r2" and fit.test_score > 0.99
    assert cos(fit.probe.direction(normalize=False), w) > 0.999
    assert fit.probe.b.item() == pytest.approx(2.0, abs=0.05)
    assert fit.probe.predict(x[:5]).shape == (5,)
    multi = pr.fit_ridge_probe(x, torch.stack([y, -y], 1))
    assert multi.predict(x[:5]).shape == (5, 2)
    assert multi.score(x, torch.stack([y, -y], 1)) > 0.99


def test_stronger_l2_shrinks_the_probe():
    x, y, _ = planted(d=16)
    weak = pr.fit_logistic_probe(x, y, l2=1e-4)
    strong = pr.fit_logistic_probe(x, y, l2=1.0)
    assert strong.W.norm() < weak.W.norm()


def test_split_is_seeded_and_can_be_given():
    a = pr.train_test_split(100, 0.3, seed=1)
    b = pr.train_test_split(100, 0.3, seed=1)
    c = pr.train_test_split(100, 0.3, seed=2)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], c[1])
    assert len(a[1]) == 30 and sorted(a[0].tolist() + a[1].tolist()) == list(range(100))
    x, y, _ = planted(n=200)
    fit = pr.fit_probe(x, y, split=(torch.arange(150), torch.arange(150, 200)))
    assert torch.equal(fit.test_idx, torch.arange(150, 200))


# -- control tasks and selectivity --------------------------------------------------------------------


def test_control_labels_are_a_function_of_the_type():
    types = torch.tensor([5, 3, 5, 9, 3, 3, 7, 5] * 50)
    labels = torch.randint(0, 3, (len(types),), generator=torch.Generator().manual_seed(0))
    ctrl = pr.control_labels(types, labels, seed=0)
    for t in types.unique():
        assert ctrl[types == t].unique().numel() == 1
    assert torch.equal(ctrl, pr.control_labels(types, labels, seed=0))
    assert int(ctrl.max()) < 3
    many_types = torch.arange(2000)
    spread = pr.control_labels(many_types, torch.tensor([0, 1] * 1000), seed=1)
    assert 0.4 < spread.float().mean().item() < 0.6  # drawn from the label distribution


def test_selectivity_separates_reading_from_memorising():
    """Word types are random vectors, the label is planted along one direction independent of
    the type. The probe reads the real label easily; the control task (a random label per
    type) needs memorising, which a linear probe on few dimensions cannot do."""
    g = torch.Generator().manual_seed(0)
    n, d, n_types = 3000, 16, 200
    types = torch.randint(0, n_types, (n,), generator=g)
    type_vecs = torch.randn(n_types, d, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    direction = torch.zeros(d)
    direction[0] = 1
    x = type_vecs[types] + 0.3 * torch.randn(n, d, generator=g) + 3 * direction * (2 * y[:, None] - 1)
    res = pr.probe_selectivity(x, y, types)
    assert res["accuracy"] > 0.95
    assert res["control_accuracy"] < 0.75
    assert res["selectivity"] == pytest.approx(res["accuracy"] - res["control_accuracy"])
    assert res["selectivity"] > 0.2


def test_majority_rate_is_each_tasks_own_chance_level():
    """The guess is the training split's most common label, scored on the held-out split; a
    control task with few types has its own (here much higher) majority rate."""
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    split = (torch.arange(0, 100, 2), torch.arange(1, 100, 2))
    assert pr.majority_rate(y, split) == pytest.approx(0.6)
    assert pr.majority_rate(torch.tensor([2] * 100), split) == 1.0
    with pytest.raises(TypeError):
        pr.majority_rate(y.float(), split)
    g = torch.Generator().manual_seed(0)
    n, d = 2000, 8
    y = torch.randint(0, 8, (n,), generator=g)
    x = torch.randn(n, d, generator=g)
    types = torch.randint(0, 3, (n,), generator=g)  # 3 types: at most 3 control labels
    res = pr.probe_selectivity(x, y, types)
    assert res["chance"] < 0.2 and res["control_chance"] > 0.25  # about 1/8 vs at least about 1/3
    sweep = pr.probe_sweep(x[None], y, types=types)
    assert sweep.chance == pytest.approx(res["chance"]) and sweep.control_chance == pytest.approx(res["control_chance"])
    assert torch.equal(sweep.split[1], pr.train_test_split(n)[1])
    assert pr.probe_sweep(x[None], x[:, 0]).chance is None  # regression has no majority class


def test_probe_sweep_finds_the_site_with_the_information():
    x, y, _ = planted(n=1000, d=16)
    noise = torch.randn(1000, 16, generator=torch.Generator().manual_seed(3))
    acts = torch.stack([noise, x, 0.5 * x + noise])
    types = torch.randint(0, 50, (1000,), generator=torch.Generator().manual_seed(4))
    sweep = pr.probe_sweep(acts, y, sites=["embed", "mid", "late"], types=types)
    assert sweep.best()[0] == "mid"
    assert sweep.test_score[0] < 0.65 and sweep.test_score[1] > 0.9
    assert sweep.selectivity is not None and sweep.selectivity[1] > sweep.selectivity[0]
    rows = sweep.table()
    assert rows[1]["site"] == "mid" and set(rows[1]) >= {"test_accuracy", "control_accuracy", "selectivity"}
    reg = pr.probe_sweep(acts, x[:, 0] + 0.0)
    assert reg.metric == "r2" and reg.control_score is None
    grid = pr.probe_sweep(acts.reshape(3, 1, 1000, 16).expand(3, 2, 1000, 16), y)
    assert grid.test_score.shape == (3, 2) and grid.sites[:3] == ["0,0", "0,1", "1,0"]
    assert grid.best()[0] in ("1,0", "1,1") and len(grid.table()) == 6


def test_probe_errors():
    x, y, _ = planted(n=50)
    with pytest.raises(ValueError, match="y must have shape"):
        pr.fit_probe(x, y[:-1])
    with pytest.raises(TypeError, match="floating-point"):
        pr.fit_probe(x.long(), y)
    with pytest.raises(TypeError, match="integer class ids"):
        pr.fit_logistic_probe(x, y.float())
    with pytest.raises(ValueError, match="test_frac"):
        pr.fit_probe(x, y, test_frac=1.5)
    with pytest.raises(ValueError, match="l2"):
        pr.fit_probe(x, y, l2=-1.0)
    with pytest.raises(ValueError, match="n_classes"):
        pr.fit_logistic_probe(x, y, n_classes=1)
    with pytest.raises(ValueError, match="task"):
        pr.fit_probe(x, y, task="clustering")
    with pytest.raises(ValueError, match="control task"):
        pr.probe_sweep(x[None], y.float(), types=y)
    with pytest.raises(ValueError, match="sites"):
        pr.probe_sweep(x[None], y, sites=["a", "b"])
    with pytest.raises(ValueError, match="site axis"):
        pr.probe_sweep(x, y)
    probe = pr.fit_logistic_probe(x, y)
    with pytest.raises(ValueError, match=r"\[\.\.\., 32\]"):
        probe(x[:, :5])
    with pytest.raises(ValueError, match="cls"):
        probe.direction(cls=2)


# -- directions without a probe, and PCA ------------------------------------------------------------------


def test_mean_difference_and_class_means():
    x, y, dirs = planted(n=4000, d=16, n_classes=3)
    means = pr.class_means(x, y)
    assert means.shape == (3, 16)
    torch.testing.assert_close(means[1], x[y == 1].mean(0))
    diff = pr.mean_difference(x, y == 2, normalize=True)
    assert cos(diff, dirs[2] - 0.5 * (dirs[0] + dirs[1])) > 0.95
    assert diff.norm().item() == pytest.approx(1.0)
    assert torch.isnan(pr.class_means(x, y, n_classes=4)[3]).all()
    with pytest.raises(ValueError, match="some but not all"):
        pr.mean_difference(x, torch.ones(len(x), dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        pr.mean_difference(x, y)


def test_pca_finds_a_planted_circle():
    """Points on a circle in a random 2-D plane of 32-D space, plus small noise: the top two
    components span the plane, and the angles keep the order around the circle."""
    g = torch.Generator().manual_seed(0)
    plane = torch.linalg.qr(torch.randn(32, 2, generator=g))[0]  # [32, 2]
    angles = torch.arange(7) * 2 * math.pi / 7
    circle = torch.stack([angles.cos(), angles.sin()], 1)  # [7, 2]
    x = circle @ plane.T * 5 + 3 + 0.01 * torch.randn(7, 32, generator=g)
    pca = pr.fit_pca(x, k=2)
    assert pca.components.shape == (2, 32)
    assert pca.explained_variance_ratio.sum().item() > 0.99
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(2), atol=1e-5, rtol=0)
    # The two components span the plane: projecting the plane onto them loses nothing.
    assert torch.linalg.matrix_norm(pca.components @ plane).item() == pytest.approx(math.sqrt(2), abs=1e-3)
    z = pca.transform(x)
    found = torch.atan2(z[:, 1], z[:, 0])
    steps = torch.remainder(found.roll(-1) - found, 2 * math.pi)  # one step around the circle each
    assert torch.allclose(steps, steps[0].expand(7), atol=0.05) or torch.allclose(
        steps, (2 * math.pi - steps[0]).expand(7), atol=0.05)
    torch.testing.assert_close(pca.inverse_transform(z), x, atol=0.1, rtol=0)
    full = pr.fit_pca(x)
    assert full.components.shape == (7, 32)
    with pytest.raises(ValueError, match="k="):
        pr.fit_pca(x, k=8)


def test_pca_sign_is_fixed():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    a, b = pr.fit_pca(x, k=3), pr.fit_pca(-x, k=3)
    torch.testing.assert_close(a.components, b.components, atol=1e-5, rtol=0)


# -- a probe on a model's activations -----------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32, d_vocab=30, n_ctx=10, seed=0, device="cpu")
    return HookedTransformer(cfg)


def test_probe_on_model_activations_reads_the_current_token(model):
    """The embedding of the current token is in the residual stream at every layer: a probe
    for "is the token at this position below 15" is near-perfect on resid_pre of layer 0."""
    tokens = torch.randint(0, 30, (600, 6), generator=torch.Generator().manual_seed(1))
    acts, labels = collect_resid(model, tokens, pos=-1)
    y = tokens[:, -1] < 15
    sweep = pr.probe_sweep(acts, y.long(), sites=labels)
    assert sweep.test_score[0] > 0.9
