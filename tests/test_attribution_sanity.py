"""Sanity checks for attributions: randomised copies, rank correlation, mask mass."""

from functools import partial

import numpy as np
import pytest
import torch

from toykit.attribution import gradient_x_input, integrated_gradients, vanilla_gradient
from toykit.attribution_sanity import (
    cascading_randomization,
    compare_attributions,
    independent_randomization,
    mask_area_fraction,
    mask_mass_fraction,
    random_map_like,
    randomization_table,
    randomize_layers,
    shuffled_labels,
    spearman_rank_correlation,
    structural_similarity,
)

LAYERS = ["head", "conv2", "conv1"]  # output towards input


class TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 8, 3, padding=1, stride=2)
        self.head = torch.nn.Linear(8 * 8 * 8, 3)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(h.flatten(1))


def images(batch=4, seed=0):
    return torch.rand(batch, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def params(model, layer):
    return [p.detach().clone() for p in model.get_submodule(layer).parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------- randomised copies


def test_cascading_randomization_copies_and_randomises_from_the_top():
    model = TinyCNN().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = cascading_randomization(model, LAYERS, seed=0)
    assert [name for name, _ in steps] == LAYERS
    # the original is untouched and keeps its mode
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()) and model.training
    for k, (_, copy) in enumerate(steps):
        assert copy is not model and copy.training
        for j, layer in enumerate(LAYERS):
            changed = not same(params(copy, layer), params(model, layer))
            assert changed == (j <= k), (k, layer)
        # a layer keeps the same random weights in every later step
        if k > 0:
            assert same(params(copy, LAYERS[k - 1]), params(steps[k - 1][1], LAYERS[k - 1]))
    # the same seed gives the same copies
    again = cascading_randomization(model, LAYERS, seed=0)
    assert all(same(params(a, layer), params(b, layer)) for (_, a), (_, b) in zip(steps, again) for layer in LAYERS)
    other = cascading_randomization(model, LAYERS, seed=1)
    assert not same(params(other[0][1], "head"), params(steps[0][1], "head"))


def test_randomised_weights_look_like_a_fresh_initialisation():
    model = TinyCNN()
    with torch.no_grad():
        model.conv1.weight.mul_(10)  # "trained" weights far from their initial scale
    copy = randomize_layers(model, ["conv1"], seed=0)
    bound = 1 / (1 * 3 * 3) ** 0.5  # PyTorch's default init for a conv: U(±1/√fan_in)
    assert copy.conv1.weight.abs().max() <= bound and copy.conv1.weight.std() > bound / 3
    assert model.conv1.weight.abs().max() > bound  # the original still has its own


def test_independent_randomization_changes_only_its_layer():
    model = TinyCNN()
    steps = independent_randomization(model, LAYERS, seed=0)
    cascade = cascading_randomization(model, LAYERS, seed=0)
    for (name, copy), (_, cascaded) in zip(steps, cascade):
        for layer in LAYERS:
            assert (not same(params(copy, layer), params(model, layer))) == (layer == name)
        assert same(params(copy, name), params(cascaded, name))  # the same random draw as the cascade


def test_a_custom_parameter_without_reset_parameters_is_redrawn():
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.linspace(1, 2, 50))

        def forward(self, x):
            return x * self.w

    model = torch.nn.Sequential(Scale())
    copy = randomize_layers(model, ["0"], seed=0)
    new, old = copy[0].w.detach(), model[0].w.detach()
    assert not torch.equal(new, old) and torch.equal(model[0].w.detach(), torch.linspace(1, 2, 50))
    assert abs(new.mean() - old.mean()) < 0.15 and abs(new.std() - old.std()) < 0.1


def test_bad_layer_names_are_named():
    model = TinyCNN()
    with pytest.raises(ValueError, match="layer_names: 'conv3' is not a sub-module"):
        cascading_randomization(model, ["head", "conv3"], seed=0)
    with pytest.raises(TypeError, match="layer_names"):
        cascading_randomization(model, "head", seed=0)
    with pytest.raises(TypeError, match="layer_names"):
        independent_randomization(model, [], seed=0)
    with pytest.raises(ValueError, match="repeat"):
        cascading_randomization(model, ["head", "head"], seed=0)
    with pytest.raises(TypeError, match="model"):
        cascading_randomization(lambda x: x, ["head"], seed=0)


def test_shuffled_labels_is_a_seeded_permutation():
    labels = torch.arange(100) % 7
    a = shuffled_labels(labels, seed=0)
    assert torch.equal(a, shuffled_labels(labels, seed=0)) and not torch.equal(a, labels)
    assert torch.equal(torch.bincount(a), torch.bincount(labels))
    assert torch.equal(labels, torch.arange(100) % 7)


# ---------------------------------------------------------------- similarity scores


def _numpy_spearman_without_ties(a, b):
    """Independent reference: Pearson correlation of argsort ranks (valid when there are no ties)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return np.corrcoef(ra, rb)[0, 1]


def test_spearman_matches_references():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 1, 6, 6, generator=g)
    b = a + 0.8 * torch.randn(5, 1, 6, 6, generator=g)
    got = spearman_rank_correlation(a, b, absolute=False)
    want = [_numpy_spearman_without_ties(x.flatten().numpy(), y.flatten().numpy()) for x, y in zip(a, b)]
    assert np.allclose(got.numpy(), want, atol=1e-6)
    got_abs = spearman_rank_correlation(a, b)
    want_abs = [_numpy_spearman_without_ties(x.abs().flatten().numpy(), y.abs().flatten().numpy())
                for x, y in zip(a, b)]
    assert np.allclose(got_abs.numpy(), want_abs, atol=1e-6)
    # ties get the average rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4) give 4.5 / √22.5
    tied = spearman_rank_correlation(torch.tensor([[1.0, 2, 2, 3]]), torch.tensor([[1.0, 2, 3, 4]]), absolute=False)
    assert tied.item() == pytest.approx(4.5 / 22.5**0.5)
    # absolute values: a map and its negative rank the same by |a|, opposite by a
    assert spearman_rank_correlation(a, -a).tolist() == pytest.approx([1.0] * 5)
    assert spearman_rank_correlation(a, -a, absolute=False).tolist() == pytest.approx([-1.0] * 5)
    # the maps themselves are left as they were
    a_before, b_before = a.clone(), b.clone()
    spearman_rank_correlation(a, b)
    mask_mass_fraction(a[:, 0], a[:, 0, :, :] > 0)
    structural_similarity(a[:, 0], b[:, 0], window=3)
    assert torch.equal(a, a_before) and torch.equal(b, b_before)
    # a constant map has no ranking
    assert torch.isnan(spearman_rank_correlation(torch.ones(1, 4), torch.rand(1, 4))).all()


def test_spearman_matches_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 5, (4, 30), generator=g).float()  # many ties
    b = torch.randint(0, 5, (4, 30), generator=g).float() - 2
    for absolute in (True, False):
        got = spearman_rank_correlation(a, b, absolute=absolute)
        x, y = (a.abs(), b.abs()) if absolute else (a, b)
        want = [stats.spearmanr(u.numpy(), v.numpy()).statistic for u, v in zip(x, y)]
        assert np.allclose(got.numpy(), want, atol=1e-6)


def _ssim_by_windows(a, b, window):
    """Independent reference: SSIM window by window in numpy (sample statistics, Wang et al. Eq. 13)."""
    value_range = max(a.max(), b.max()) - min(a.min(), b.min())
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2
    scores = []
    for i in range(a.shape[0] - window + 1):
        for j in range(a.shape[1] - window + 1):
            u, v = a[i:i + window, j:j + window].ravel(), b[i:i + window, j:j + window].ravel()
            cov = np.cov(u, v)  # ddof = 1
            scores.append((2 * u.mean() * v.mean() + c1) * (2 * cov[0, 1] + c2)
                          / ((u.mean() ** 2 + v.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)))
    return np.mean(scores)


def test_structural_similarity():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 9, 11, generator=g)
    b = a + 0.3 * torch.randn(3, 9, 11, generator=g)
    got = structural_similarity(a, b, window=5)
    want = [_ssim_by_windows(x.double().numpy(), y.double().numpy(), 5) for x, y in zip(a, b)]
    assert np.allclose(got.numpy(), want, atol=1e-5)
    assert torch.allclose(structural_similarity(a, a, window=3), torch.ones(3))
    noisier = structural_similarity(a, a + 1.0 * torch.randn(3, 9, 11, generator=g), window=5)
    assert (noisier < got).all() and (got < 1).all()
    with pytest.raises(ValueError, match="window"):
        structural_similarity(a, b, window=4)
    with pytest.raises(ValueError, match="window must fit"):
        structural_similarity(a, b, window=11)
    with pytest.raises(ValueError, match="b must have shape"):
        structural_similarity(a, b[:, :8])


def test_mask_mass_of_a_random_map_is_the_mask_area():
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(400, 16, 16, dtype=torch.bool)
    tops = torch.randint(0, 8, (400,), generator=g)
    for i, t in enumerate(tops.tolist()):
        mask[i, t:t + 8, 2:2 + 4 + i % 8] = True
    area = mask_area_fraction(mask)
    random_mass = mask_mass_fraction(random_map_like(torch.zeros(400, 3, 16, 16), seed=0), mask)
    assert abs(random_mass.mean() - area.mean()) < 0.01  # measured 0.0007 over 400 maps
    # a map exactly on the mask scores 1; a uniform map scores the area exactly
    assert torch.allclose(mask_mass_fraction(mask.float(), mask), torch.ones(400))
    assert torch.allclose(mask_mass_fraction(torch.ones(400, 16, 16), mask), area)
    # signs do not cancel: mass is |attribution| summed over channels
    signed = torch.stack([mask.float(), -mask.float()], 1)
    assert torch.allclose(mask_mass_fraction(signed, mask), torch.ones(400))
    with pytest.raises(TypeError, match="mask"):
        mask_mass_fraction(torch.ones(2, 4, 4), torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="attributions"):
        mask_mass_fraction(torch.ones(2, 1, 4, 5), torch.ones(2, 4, 4, dtype=torch.bool))


def test_bad_maps_are_named():
    with pytest.raises(ValueError, match="b must have shape"):
        spearman_rank_correlation(torch.ones(2, 4), torch.ones(2, 5))
    with pytest.raises(TypeError, match="a must be"):
        spearman_rank_correlation([1, 2], torch.ones(2))
    with pytest.raises(TypeError, match="absolute"):
        spearman_rank_correlation(torch.ones(2, 4), torch.ones(2, 4), absolute=1)
    with pytest.raises(ValueError, match="seed and generator"):
        random_map_like(torch.ones(2, 4), seed=0, generator=torch.Generator())


# ---------------------------------------------------------------- the randomisation test end to end


def input_only(model, images, target):
    """A 'method' that ignores the model (an edge-detector stand-in): any sanity check must flag it."""
    return images.clone()


def test_randomization_table_separates_model_dependent_methods():
    model, x = TinyCNN(), images(6)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    methods = {"gradient": vanilla_gradient, "gradient_x_input": gradient_x_input,
               "integrated_gradients": partial(integrated_gradients, n_steps=16), "input_only": input_only}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = randomization_table(methods, model, LAYERS, x, target, seed=0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert table.steps == ["trained", "head", "conv2", "conv1"]
    for name in methods:
        assert table.spearman_abs[name].shape == (4, 6)
        assert torch.allclose(table.spearman_abs[name][0], torch.ones(6))
    # measured mean Spearman(|attr|) after full randomisation: gradient 0.008, gradient × input 0.41,
    # integrated gradients 0.43, the input-only map 1.0
    full = {name: table.spearman_abs[name][-1].mean().item() for name in methods}
    assert full["input_only"] == pytest.approx(1.0)
    assert full["gradient"] < 0.5
    # gradient × input shares the input's structure, so it stays more similar than the gradient
    assert full["gradient_x_input"] > full["gradient"]
    rows = table.rows()
    assert len(rows) == 16 and {"method", "step", "spearman_abs", "spearman"} <= set(rows[0])
    independent = randomization_table({"gradient": vanilla_gradient}, model, LAYERS, x, target, cascading=False, seed=0)
    assert independent.steps == table.steps
    # independent step "head" is the same copy as cascading step "head"
    assert torch.allclose(independent.spearman_abs["gradient"][1], table.spearman_abs["gradient"][1])


def test_compare_attributions_on_two_models():
    model, x = TinyCNN(), images()
    same_model = compare_attributions(vanilla_gradient, model, model, x, 0)
    assert torch.allclose(same_model["spearman_abs"], torch.ones(4))
    random_model = cascading_randomization(model, LAYERS, seed=0)[-1][1]
    other = compare_attributions(vanilla_gradient, model, random_model, x, 0)
    assert other["spearman_abs"].mean() < 0.5 and other["maps_a"].shape == x.shape
    with pytest.raises(TypeError, match="method"):
        compare_attributions("gradient", model, model, x, 0)
    with pytest.raises(TypeError, match="methods"):
        randomization_table({}, model, LAYERS, x, 0)
