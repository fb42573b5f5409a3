"""Attribution methods: closed forms on hand-made models, and no side effects on a tiny CNN."""

import itertools
from functools import partial
from math import factorial

import pytest
import torch

from toykit.attribution import (
    attribution_heatmap,
    completeness_gap,
    exact_shapley_values,
    gradient_x_input,
    grid_segments,
    integrated_gradients,
    integration_points,
    kernel_shap,
    kernel_shap_values,
    lime_values,
    occlusion,
    segments_to_pixels,
    shapley_coalitions,
    shapley_kernel_weight,
    smoothgrad,
    vanilla_gradient,
)

C, H, W, K = 2, 8, 8, 3


class Linear(torch.nn.Module):
    """F(x) = x · w[class] + b[class]: every gradient method has a closed form."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(K, C, H, W, generator=g))
        self.bias = torch.nn.Parameter(torch.randn(K, generator=g))

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x, self.weight) + self.bias


class Quadratic(torch.nn.Module):
    """F_k(x) = Σ a[k] x²: IG from zero is a·x² exactly, and left/right Riemann sums miss by ∓F/m."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(K, C, H, W, generator=torch.Generator().manual_seed(1)))

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x**2, self.a)


def tiny_cnn(seed=0, channels=1):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Conv2d(4, 8, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, K),
    )


def images_like(batch=3, channels=C, height=H, width=W, seed=0):
    return torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


TARGET = torch.tensor([0, 2, 1])


def same(a, b):
    """Equal up to rounding: with several CPU threads, the same computation run twice may add up
    in another order (the random draws themselves are identical)."""
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)

# ---------------------------------------------------------------- closed forms


def test_gradient_methods_on_a_linear_model_are_its_weights():
    model, x = Linear(), images_like()
    w = model.weight.detach()[TARGET]
    assert torch.allclose(vanilla_gradient(model, x, TARGET), w)
    assert torch.allclose(gradient_x_input(model, x, TARGET), x * w)
    # the gradient of a linear model is the same everywhere, so noise changes nothing
    assert torch.allclose(smoothgrad(model, x, TARGET, n_samples=7, seed=0), w, atol=1e-6)
    # an int target means the same class for every image
    assert torch.allclose(vanilla_gradient(model, x, 1), model.weight.detach()[1].expand(3, C, H, W))


@pytest.mark.parametrize("rule", ["trapezoid", "riemann_left", "riemann_right", "riemann_middle"])
def test_integrated_gradients_of_a_linear_model_is_exact(rule):
    model, x = Linear(), images_like()
    w = model.weight.detach()[TARGET]
    assert torch.allclose(integrated_gradients(model, x, TARGET, n_steps=1, rule=rule), x * w, atol=1e-6)
    baseline = torch.full((C, H, W), 0.5)
    ig = integrated_gradients(model, x, TARGET, baseline=baseline, n_steps=3, rule=rule)
    assert torch.allclose(ig, (x - 0.5) * w, atol=1e-6)
    gap = completeness_gap(model, x, TARGET, ig, baseline=baseline)
    assert gap.abs().max() < 1e-4


def test_integrated_gradients_on_a_quadratic_model_matches_the_closed_form():
    model, x = Quadratic(), images_like()
    a = model.a.detach()[TARGET]
    f_x = model(x).detach()[torch.arange(3), TARGET]
    # the integrand is linear in α: trapezoid and midpoint are exact at any step count
    for rule in ("trapezoid", "riemann_middle"):
        assert torch.allclose(integrated_gradients(model, x, TARGET, n_steps=2, rule=rule), a * x**2, atol=1e-6)
    # left and right sums miss by exactly -F(x)/m and +F(x)/m: the gap shrinks as 1/m
    for m in (4, 16, 64):
        for rule, sign in (("riemann_left", -1), ("riemann_right", 1)):
            ig = integrated_gradients(model, x, TARGET, n_steps=m, rule=rule)
            gap = completeness_gap(model, x, TARGET, ig)
            assert torch.allclose(gap, sign * f_x / m, atol=1e-4), (rule, m)


def test_integration_points_integrate_polynomials():
    for rule in ("trapezoid", "riemann_left", "riemann_right", "riemann_middle"):
        alphas, weights = integration_points(10, rule)
        assert torch.isclose(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
        assert alphas.min() >= 0 and alphas.max() <= 1
    alphas, weights = integration_points(10, "trapezoid")
    assert len(alphas) == 11 and (weights * alphas).sum().item() == pytest.approx(0.5)


def test_integrated_gradients_completeness_gap_on_a_tiny_cnn_shrinks_below_one_percent():
    model, x = tiny_cnn(), images_like(4, 1, 32, 32, seed=3)
    # the gap is relative to F(x) − F(0); an untrained net moves some logits by < 0.01, which
    # makes any relative gap look large, so explain each image's most-moved logit (0.019 to 0.074)
    with torch.no_grad():
        target = (model.eval()(x) - model(torch.zeros_like(x))).abs().argmax(1)
    gaps = {m: completeness_gap(model, x, target, integrated_gradients(model, x, target, n_steps=m), relative=True)
            for m in (4, 256)}
    # measured (trapezoid): mean |gap| 0.22 at 4 steps; max 0.0036, mean 0.0016 at 256 steps
    # (ReLU kinks make the integrand discontinuous, so the gap falls about as 1/m)
    assert gaps[256].abs().max() <= 0.01
    assert gaps[256].abs().mean() < gaps[4].abs().mean() / 5


def test_chunking_does_not_change_the_result():
    model, x = tiny_cnn(), images_like(2, 1, 32, 32)
    target = torch.tensor([1, 2])
    a = integrated_gradients(model, x, target, n_steps=4)
    b = integrated_gradients(model, x, target, n_steps=4, batch_size=3)
    assert torch.allclose(a, b, atol=1e-6)
    a = occlusion(model, x, target, patch_size=8)
    b = occlusion(model, x, target, patch_size=8, batch_size=5)
    assert torch.allclose(a, b, atol=1e-6)


def test_occlusion_finds_the_only_region_the_model_reads():
    class Region(torch.nn.Module):
        """Logit k = (k + 1) · Σ of channel-summed pixels in rows 4:8, columns 0:4."""

        def forward(self, x):
            s = x[:, :, 4:8, 0:4].sum((1, 2, 3))
            return s[:, None] * torch.arange(1.0, K + 1)

    model, x = Region(), images_like()
    attr = occlusion(model, x, TARGET, patch_size=4)
    region = x[:, :, 4:8, 0:4].sum((1, 2, 3)) * (TARGET + 1)
    expected = torch.zeros(3, C, H, W)
    expected[:, :, 4:8, 0:4] = region[:, None, None, None]
    assert torch.allclose(attr, expected, atol=1e-5)
    # filling with 1 instead of 0: the drop is Σ (x − 1) over the region
    attr = occlusion(model, x, TARGET, patch_size=4, fill=1.0)
    drop = (x[:, :, 4:8, 0:4] - 1).sum((1, 2, 3)) * (TARGET + 1)
    assert torch.allclose(attr[:, 0, 5, 1], drop, atol=1e-5) and attr[:, :, :4].abs().max() == 0
    # overlapping 3×3 patches with stride 2 (the last start moved to 5): each pixel gets the mean
    # drop of the patches covering it, computed here patch by patch
    attr = occlusion(model, x, TARGET, patch_size=3, stride=2)
    total, count = torch.zeros(3, H, W), torch.zeros(H, W)
    f_x = model(x)[torch.arange(3), TARGET]
    for top in (0, 2, 4, 5):
        for left in (0, 2, 4, 5):
            covered = x.clone()
            covered[:, :, top:top + 3, left:left + 3] = 0
            total[:, top:top + 3, left:left + 3] += (f_x - model(covered)[torch.arange(3), TARGET])[:, None, None]
            count[top:top + 3, left:left + 3] += 1
    assert torch.allclose(attr, (total / count)[:, None].expand(3, C, H, W), atol=1e-5)
    assert attr[:, :, :, 6:].abs().max() == 0 and (attr[:, :, 4:8, 0:4] > 0).all()


def test_occlusion_covers_every_pixel_when_the_stride_does_not_tile():
    class Total(torch.nn.Module):
        def forward(self, x):
            return x.sum((1, 2, 3))[:, None].expand(-1, K)

    x = images_like(1, 1, 7, 7)
    attr = occlusion(Total(), x, 0, patch_size=3)  # starts 0, 3 and 4 (flush with the edge)
    assert (attr > 0).all()


# ---------------------------------------------------------------- Shapley values


def cell_means(x, cell):
    """Mean of each cell × cell square of the channel-averaged image: [batch, n_cells], row by row."""
    return x.mean(1).unfold(1, cell, cell).unfold(2, cell, cell).mean((-1, -2)).flatten(1)


def additive_terms(x, cell):
    cells = cell_means(x, cell)
    return torch.sin(3 * cells) * torch.arange(1.0, cells.shape[1] + 1) + cells**2


class Additive(torch.nn.Module):
    """F_k = (k + 1) Σ_s g_s(mean of cell s), a different nonlinear g per cell: the Shapley value
    of cell s is exactly (k + 1) (g_s(x_s) − g_s(fill_s))."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x):
        return additive_terms(x, self.cell).sum(1, keepdim=True) * torch.arange(1.0, K + 1)


@pytest.mark.parametrize("cell, n_samples", [(2, 64), (4, 200)])  # 64 of 2^16 − 2 coalitions; all 14 of M=4
def test_kernel_shap_on_an_additive_model_is_exact(cell, n_samples):
    x, model = images_like(), Additive(cell)
    truth = (additive_terms(x, cell) - additive_terms(torch.full_like(x, 0.2), cell)) * (TARGET + 1)[:, None]
    phi = kernel_shap_values(model, x, TARGET, cell_size=cell, n_samples=n_samples, fill=0.2, seed=0)
    assert phi.shape == (3, (H // cell) ** 2)
    assert torch.allclose(phi, truth, atol=1e-4)
    if cell == 4:
        exact = exact_shapley_values(model, x, TARGET, segments=grid_segments(H, W, cell), fill=0.2)
        assert torch.allclose(exact, truth, atol=1e-5)
    # too few coalitions to pin down 16 values: an error, not a silent guess
    with pytest.raises(ValueError, match="underdetermined"):
        kernel_shap_values(model, x, TARGET, cell_size=2, n_samples=6, seed=0)


class Interacting(torch.nn.Module):
    """Four 4×4 superpixels with interactions: products and a max."""

    def forward(self, x):
        c = cell_means(x, 4)
        out = c[:, 0] * c[:, 1] + torch.maximum(c[:, 2], c[:, 3]) + c[:, 0] * c[:, 2] * c[:, 3]
        return out[:, None] * torch.arange(1.0, K + 1)


def _shapley_by_permutations(model, x, target, segments, fill):
    """Textbook definition: mean marginal contribution over all orderings of the players."""
    m = int(segments.max()) + 1
    phi = torch.zeros(x.shape[0], m, dtype=torch.float64)

    def value(players):
        keep = torch.zeros_like(segments, dtype=torch.bool)
        for p in players:
            keep |= segments == p
        out = model(torch.where(keep, x, torch.full_like(x, fill)))
        return out[torch.arange(x.shape[0]), target].double()

    for order in itertools.permutations(range(m)):
        for i, p in enumerate(order):
            phi[:, p] += value(order[:i + 1]) - value(order[:i])
    return phi / factorial(m)


def test_kernel_shap_with_every_coalition_equals_the_shapley_values():
    x = images_like()
    segments = grid_segments(H, W, 4)
    with torch.no_grad():
        truth = _shapley_by_permutations(Interacting(), x, TARGET, segments, 0.1).float()
    exact = exact_shapley_values(Interacting(), x, TARGET, segments=segments, fill=0.1)
    assert torch.allclose(exact, truth, atol=1e-5)
    phi = kernel_shap_values(Interacting(), x, TARGET, segments=segments, n_samples=14, fill=0.1)
    assert torch.allclose(phi, truth, atol=1e-5)
    # a segmentation given per image, with irregular labels, works the same way
    seg_b = torch.stack([segments, segments.T, segments.flip(0)])
    phi_b = kernel_shap_values(Interacting(), x, TARGET, segments=seg_b, n_samples=14, fill=0.1)
    exact_b = exact_shapley_values(Interacting(), x, TARGET, segments=seg_b, fill=0.1)
    assert torch.allclose(phi_b, exact_b, atol=1e-5) and torch.allclose(phi_b[0], phi[0], atol=1e-6)


def test_sampled_kernel_shap_on_a_tiny_cnn_is_close_to_exact_and_efficient():
    model, x = tiny_cnn(), images_like(3, 1, 32, 32, seed=5)
    segments = grid_segments(32, 32, 11)  # 3 × 3 = 9 superpixels, 2^9 − 2 = 510 coalitions
    exact = exact_shapley_values(model, x, TARGET, segments=segments)
    phi = kernel_shap_values(model, x, TARGET, segments=segments, n_samples=128, seed=0)
    error = ((phi - exact).norm(dim=1) / exact.norm(dim=1)).max()
    assert error < 0.05  # measured 0.0102 with 128 of the 510 coalitions
    # efficiency holds exactly whatever the sample: Σ φ = F(x) − F(fill)
    with torch.no_grad():
        f = model.eval()(x)[torch.arange(3), TARGET] - model(torch.zeros_like(x))[torch.arange(3), TARGET]
    assert torch.allclose(phi.sum(1), f, atol=1e-4)
    # a seed repeats the estimate; another seed gives another one
    assert same(phi, kernel_shap_values(model, x, TARGET, segments=segments, n_samples=128, seed=0))
    assert not same(phi, kernel_shap_values(model, x, TARGET, segments=segments, n_samples=128, seed=1))


def test_lime_recovers_an_additive_model_but_not_shapley_values_with_interactions():
    x = images_like()
    truth = (additive_terms(x, 4) - additive_terms(torch.full_like(x, 0.2), 4)) * (TARGET + 1)[:, None]
    beta = lime_values(Additive(4), x, TARGET, cell_size=4, n_samples=40, fill=0.2, seed=0)
    assert torch.allclose(beta, truth, atol=1e-4)
    assert same(beta, lime_values(Additive(4), x, TARGET, cell_size=4, n_samples=40, fill=0.2, seed=0))
    # with interactions the surrogate's coefficients are not the Shapley values, nor efficient
    segments = grid_segments(H, W, 4)
    exact = exact_shapley_values(Interacting(), x, TARGET, segments=segments, fill=0.1)
    beta = lime_values(Interacting(), x, TARGET, segments=segments, n_samples=200, fill=0.1, seed=0)
    assert (beta - exact).abs().max() > 0.05  # measured 0.15 (Shapley values up to 0.86)
    shrunk = lime_values(Interacting(), x, TARGET, segments=segments, n_samples=200, fill=0.1, seed=0, ridge=100.0)
    assert shrunk.abs().sum() < beta.abs().sum()
    with pytest.raises(ValueError, match="underdetermined"):
        lime_values(Additive(4), x, TARGET, cell_size=2, n_samples=5, seed=0)
    with pytest.raises(ValueError, match="kernel_width"):
        lime_values(Additive(4), x, TARGET, cell_size=4, kernel_width=0, seed=0)


def test_kernel_shap_on_unanimity_games_matches_harsanyi_dividends():
    """v(S) = Σ_T c_T [T ⊆ S]: the Shapley value of i is Σ_{T ∋ i} c_T / |T| (each unanimity game
    splits its dividend equally among its members). Superpixel means are 1 on a white image and
    0 when filled with black, so a product of means is exactly the indicator [T ⊆ S]."""
    games = [((0,), 1.0), ((1, 2), 2.0), ((3, 4, 5, 6, 7), -3.0), ((0, 2, 4, 6, 8), 4.0), (tuple(range(9)), 6.0)]

    def model(x):
        c = cell_means(x, 2)  # 6×6 image: 9 cells
        return sum(w * c[:, list(t)].prod(1) for t, w in games)[:, None].expand(-1, K)

    truth = torch.zeros(1, 9)
    for t, w in games:
        truth[0, list(t)] += w / len(t)
    x = torch.ones(1, 1, 6, 6)
    phi = kernel_shap_values(model, x, 0, cell_size=2, n_samples=510)  # all 2^9 − 2 coalitions
    assert torch.allclose(phi, truth, atol=1e-5)
    assert torch.allclose(exact_shapley_values(model, x, 0, segments=grid_segments(6, 6, 2)), truth, atol=1e-5)


def test_shapley_coalitions_follow_the_kernel():
    z, weights = shapley_coalitions(4, 100)  # all 14 proper coalitions, kernel-weighted
    assert len(z) == 14 and len({tuple(row.tolist()) for row in z}) == 14
    assert torch.allclose(weights, shapley_kernel_weight(4, z.sum(1)))
    m, n = 16, 20000  # fewer than the 2^16 − 2 proper coalitions: sampled
    z, weights = shapley_coalitions(m, n, seed=0)
    assert z.shape == (n, m) and (weights == 1).all()
    sizes = torch.arange(1, m, dtype=torch.float64)
    mass = (m - 1) / (sizes * (m - sizes))
    frequency = torch.bincount(z.sum(1), minlength=m + 1)[1:m].double() / n
    assert torch.allclose(frequency, mass / mass.sum(), atol=0.01)  # measured max deviation 0.004
    # pairs of complements: every player is in exactly half the coalitions
    assert (z.double().mean(0) == 0.5).all()
    # within a size, every player equally often: size-2 coalitions hold each player 2/m of the time
    pairs = z[z.sum(1) == 2].double().mean(0)
    assert torch.allclose(pairs, torch.full((m,), 2 / m, dtype=torch.float64), atol=0.02)
    assert torch.equal(z, shapley_coalitions(m, n, seed=0)[0])
    with pytest.raises(ValueError, match="n_segments"):
        shapley_coalitions(1, 10)


def test_kernel_shap_broadcasts_superpixel_values_to_pixels():
    x = images_like()
    values = kernel_shap_values(Additive(4), x, TARGET, cell_size=4, n_samples=20, seed=0)
    pixels = kernel_shap(Additive(4), x, TARGET, cell_size=4, n_samples=20, seed=0)
    assert pixels.shape == x.shape
    assert torch.allclose(pixels[:, 1, 4, 5], values[:, 3]) and torch.allclose(pixels[:, 0, 0, 0], values[:, 0])
    assert same(segments_to_pixels(values, grid_segments(H, W, 4), C), pixels)


def test_shapley_kernel_weight_and_grid_segments():
    # π for M = 4: (M − 1) / (C(M, k) k (M − k))
    assert shapley_kernel_weight(4, torch.tensor([1, 2, 3])).tolist() == pytest.approx([0.25, 0.125, 0.25])
    assert torch.isinf(shapley_kernel_weight(4, 0))
    seg = grid_segments(5, 7, 3)  # cells of 3, the last row and column of cells smaller
    assert seg.shape == (5, 7) and seg.max() == 5 and seg[0, 0] == 0 and seg[4, 6] == 5 and seg[0, 3] == 1


# ---------------------------------------------------------------- randomness, side effects, errors


def test_smoothgrad_noise_is_a_fraction_of_the_image_range():
    """F = Σ x³ has gradient 3x², so the mean gradient under noise N(0, σ²) is 3(x² + σ²): the
    average of smoothgrad/3 − x² over pixels estimates σ² = (noise_level · range)²."""
    def cube(x):
        return (x**3).sum((1, 2, 3))[:, None].expand(-1, K)

    x = 3 * images_like(2, 1, 8, 8) - 1.5  # near 0, so that the noise's linear term 6xε stays small
    x[:, 0, 0, 0], x[:, 0, 0, 1] = -1.5, 1.5  # range exactly 3: σ = 0.2 · 3 = 0.6
    sg = smoothgrad(cube, x, 0, n_samples=2000, noise_level=0.2, seed=0)
    sigma2 = (sg / 3 - x**2).mean((1, 2, 3))
    assert torch.allclose(sigma2, torch.full((2,), 0.36), rtol=0.05)  # measured 0.3566 and 0.3610


def test_smoothgrad_is_repeatable_from_a_seed():
    model, x = tiny_cnn(), images_like(2, 1, 32, 32)
    target = torch.tensor([0, 1])
    a = smoothgrad(model, x, target, n_samples=8, seed=3)
    assert same(a, smoothgrad(model, x, target, n_samples=8, seed=3))
    assert not same(a, smoothgrad(model, x, target, n_samples=8, seed=4))
    g = torch.Generator().manual_seed(3)
    assert same(a, smoothgrad(model, x, target, n_samples=8, generator=g))
    assert not same(a, smoothgrad(model, x, target, n_samples=8, generator=g))  # the stream went on
    # no noise: the plain gradient
    plain = vanilla_gradient(model, x, target)
    assert torch.allclose(smoothgrad(model, x, target, n_samples=2, noise_level=0.0), plain)
    with pytest.raises(ValueError, match="seed and generator"):
        smoothgrad(model, x, target, seed=1, generator=torch.Generator())


METHODS = {
    "vanilla_gradient": vanilla_gradient,
    "gradient_x_input": gradient_x_input,
    "smoothgrad": partial(smoothgrad, n_samples=3, seed=0),
    "integrated_gradients": partial(integrated_gradients, n_steps=4, batch_size=5),
    "occlusion": partial(occlusion, patch_size=8),
    "kernel_shap": partial(kernel_shap, cell_size=16, n_samples=14, seed=0),
}


@pytest.mark.parametrize("name", METHODS)
def test_methods_leave_no_trace(name):
    model, x = tiny_cnn(), images_like(3, 1, 32, 32)
    model.train()
    model[0].weight.grad = torch.ones_like(model[0].weight)  # a caller's pending gradient stays as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x_before = x.clone()
    leaf = x.clone().requires_grad_(True)  # even a caller's leaf that requires grad gets no .grad
    attr = METHODS[name](model, leaf, TARGET)
    assert attr.shape == x.shape and not attr.requires_grad and attr.grad_fn is None
    assert leaf.grad is None and torch.equal(leaf.detach(), x_before)
    attr = METHODS[name](model, x, TARGET)
    assert torch.equal(x, x_before) and not x.requires_grad
    assert model.training, "the model's training flag must come back"
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # eval mode inside: dropout off, so two runs agree
    assert same(attr, METHODS[name](model, x, TARGET))


def test_bad_inputs_name_the_argument():
    model, x = Linear(), images_like()
    with pytest.raises(TypeError, match="images"):
        vanilla_gradient(model, x.long(), TARGET)
    with pytest.raises(ValueError, match="images"):
        vanilla_gradient(model, x[0], TARGET)
    with pytest.raises(ValueError, match="target"):
        vanilla_gradient(model, x, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="target"):
        vanilla_gradient(model, x, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="target must be an int or an int tensor"):
        vanilla_gradient(model, x, [0, 1, 2])
    with pytest.raises(ValueError, match="target must be a class index below n_classes=3"):
        vanilla_gradient(model, x, 3)
    with pytest.raises(TypeError, match="model"):
        vanilla_gradient("not a model", x, TARGET)
    with pytest.raises(ValueError, match="model must map images"):
        vanilla_gradient(lambda imgs: imgs.sum((2, 3)).flatten(), x, TARGET)
    with pytest.raises(ValueError, match="n_steps"):
        integrated_gradients(model, x, TARGET, n_steps=0)
    with pytest.raises(ValueError, match="rule"):
        integrated_gradients(model, x, TARGET, rule="simpson")
    with pytest.raises(ValueError, match="baseline"):
        integrated_gradients(model, x, TARGET, baseline=torch.zeros(5, 5))
    with pytest.raises(ValueError, match="attributions"):
        completeness_gap(model, x, TARGET, torch.zeros(3, C, H))
    with pytest.raises(ValueError, match="patch_size"):
        occlusion(model, x, TARGET, patch_size=9)
    with pytest.raises(ValueError, match="stride"):
        occlusion(model, x, TARGET, stride=0)
    with pytest.raises(ValueError, match="noise_level"):
        smoothgrad(model, x, TARGET, noise_level=-0.1)
    with pytest.raises(ValueError, match="exactly one of segments"):
        kernel_shap_values(model, x, TARGET)
    with pytest.raises(ValueError, match="segments"):
        kernel_shap_values(model, x, TARGET, segments=torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="max_segments"):
        exact_shapley_values(model, x, TARGET, segments=grid_segments(H, W, 1))
    with pytest.raises(ValueError, match="model's logits do not depend"):
        vanilla_gradient(lambda imgs: model(imgs).detach(), x, TARGET)


def test_attribution_heatmap_reduces_channels():
    a = torch.tensor([[1.0, -3.0], [2.0, 2.0]]).view(1, 2, 1, 2)  # channels (1, 2) and (-3, 2)
    assert attribution_heatmap(a).tolist() == [[[3.0, -1.0]]]
    assert attribution_heatmap(a, "abs_sum").tolist() == [[[3.0, 5.0]]]
    assert attribution_heatmap(a, "abs_max").tolist() == [[[2.0, 3.0]]]
    with pytest.raises(ValueError, match="reduce"):
        attribution_heatmap(a, "mean")
