"""toykit.superposition and toykit.plots.superposition: shapes, errors, hand-computed values,
training, reproducibility."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from toykit import superposition as sp  # noqa: E402
from toykit.plots import superposition as splots  # noqa: E402


def polygon(k: int) -> torch.Tensor:
    """k unit vectors evenly spread around the circle, as W: [1, 2, k]."""
    a = torch.arange(k) * 2 * math.pi / k
    return torch.stack([a.cos(), a.sin()])[None]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- construction and errors -------------------------------------------------------------------


def test_model_shapes_buffers_and_hooks():
    m = sp.ToyModel(3, 5, 2, feature_probability=0.1, importance=0.9 ** torch.arange(5.0)[None],
                    device="cpu")
    assert m.W.shape == (3, 2, 5) and m.b_final.shape == (3, 5)
    assert m.feature_probability.shape == (3, 5) and torch.all(m.feature_probability == 0.1)
    assert torch.allclose(m.importance[2], 0.9 ** torch.arange(5.0))
    assert set(m.hook_dict) == {"hook_hidden", "hook_out"}
    x = m.generate_batch(7)
    out, cache = m.run_with_cache(x)
    assert out.shape == (7, 3, 5)
    assert cache["hook_hidden"].shape == (7, 3, 2)
    assert torch.equal(cache["hook_out"], out)
    assert torch.allclose(cache["hook_hidden"], torch.einsum("ihf,bif->bih", m.W, x))


def test_per_instance_settings_broadcast():
    p = sp.per_instance_feature("p", torch.tensor([0.1, 0.2, 0.3]), 3, 4)
    assert p.shape == (3, 4) and torch.equal(p[:, 0], torch.tensor([0.1, 0.2, 0.3]))
    q = sp.per_instance_feature("q", torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 3, 4)
    assert torch.equal(q[2], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert torch.equal(sp.per_instance_feature("r", 0.5, 2, 2), torch.full((2, 2), 0.5))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n_hidden=0), ValueError, "n_hidden must be a positive int"),
    (dict(feature_probability=1.5), ValueError, r"feature_probability must lie in \[0, 1\]"),
    (dict(feature_probability=torch.ones(5)), ValueError, r"one value per instance.*\[n_instances=3\]"),
    (dict(feature_probability=torch.ones(3, 4)), ValueError, r"broadcastable to \[n_instances=3, n_features=5\]"),
    (dict(importance=-1.0), ValueError, "importance must be finite and non-negative"),
    (dict(n_correlated_pairs=2, n_anticorrelated_pairs=1), ValueError, "need 6 features"),
    (dict(n_anticorrelated_pairs=1, feature_probability=0.7), ValueError, "at most 0.5"),
    (dict(seed=-1), ValueError, "seed must be a non-negative int"),
    (dict(device="gpu0"), ValueError, "device must be"),
])
def test_bad_construction_is_reported(kwargs, error, match):
    args = dict(n_instances=3, n_features=5, n_hidden=2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sp.ToyModel(**args)


def test_forward_rejects_wrong_input_shape():
    m = sp.ToyModel(2, 4, 2, device="cpu")
    with pytest.raises(ValueError, match=r"x must have shape \[\*, 2, 4\]"):
        m(torch.rand(3, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        m(torch.rand(3, 2, 5))


def test_same_seed_same_initialisation():
    a, b = sp.ToyModel(2, 5, 2, seed=3, device="cpu"), sp.ToyModel(2, 5, 2, seed=3, device="cpu")
    c = sp.ToyModel(2, 5, 2, seed=4, device="cpu")
    assert torch.equal(a.W, b.W) and not torch.equal(a.W, c.W)
    assert torch.all(a.b_final == 0)


# -- forward pass: hand computations -----------------------------------------------------------


def test_forward_by_hand_relu_and_linear():
    W = torch.tensor([[[1.0, -1.0]]])  # one instance, one hidden dim, an antipodal pair
    b = torch.tensor([[0.1, 0.0]])
    x = torch.tensor([[[0.5, 0.2]]])  # h = 0.3
    assert torch.allclose(sp.toy_forward(x, W, b), torch.tensor([[[0.4, 0.0]]]))
    assert torch.allclose(sp.toy_forward(x, W, b, linear=True), torch.tensor([[[0.4, -0.3]]]))
    for linear in (False, True):
        m = sp.ToyModel(1, 2, 1, linear=linear, device="cpu")
        with torch.no_grad():
            m.W.copy_(W)
            m.b_final.copy_(b)
        assert torch.allclose(m(x), sp.toy_forward(x, W, b, linear=linear))


def test_toy_forward_errors_name_the_argument():
    with pytest.raises(ValueError, match="b_final must have shape"):
        sp.toy_forward(torch.rand(2, 1, 3), torch.rand(1, 2, 3), torch.rand(1, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        sp.toy_forward(torch.rand(2, 1, 4), torch.rand(1, 2, 3), torch.rand(1, 3))


def test_neuron_model_by_hand():
    m = sp.NeuronModel(1, 2, 2, device="cpu")
    assert set(m.hook_dict) == {"hook_hidden_pre", "hook_hidden", "hook_out"}
    with torch.no_grad():
        m.W.copy_(torch.tensor([[[1.0, -1.0], [0.0, 1.0]]]))
        m.b_final.zero_()
    x = torch.tensor([[[0.2, 0.5]]])  # pre = [-0.3, 0.5], h = [0, 0.5]
    out, cache = m.run_with_cache(x)
    assert torch.allclose(cache["hook_hidden_pre"], torch.tensor([[[-0.3, 0.5]]]))
    assert torch.allclose(cache["hook_hidden"], torch.tensor([[[0.0, 0.5]]]))
    assert torch.allclose(out, torch.tensor([[[0.0, 0.5]]]))  # Wᵀh = [0, 0.5]


# -- batches -----------------------------------------------------------------------------------


def test_generate_batch_statistics():
    p = torch.tensor([[0.0, 0.1, 0.5, 1.0], [0.3, 0.3, 0.3, 0.3]])
    x = sp.generate_batch(20_000, p, generator=gen(0))
    assert x.shape == (20_000, 2, 4)
    assert x.min() >= 0 and x.max() <= 1
    rate = (x != 0).float().mean(0)
    assert torch.allclose(rate, p, atol=0.02)
    assert torch.all(x[:, 0, 0] == 0) and torch.all(x[:, 0, 3] > 0)
    assert abs(x[x != 0].mean().item() - 0.5) < 0.01
    # instances are independent
    both = ((x[:, 1, 0] != 0) & (x[:, 1, 1] != 0)).float().mean().item()
    assert abs(both - 0.09) < 0.01


def test_generate_batch_is_reproducible_with_a_generator():
    p = torch.full((2, 3), 0.4)
    assert torch.equal(sp.generate_batch(10, p, gen(5)), sp.generate_batch(10, p, gen(5)))
    assert not torch.equal(sp.generate_batch(10, p, gen(5)), sp.generate_batch(10, p, gen(6)))


@pytest.mark.parametrize("args, error, match", [
    ((0, torch.full((2, 3), 0.5)), ValueError, "n_batch must be a positive int"),
    ((5, torch.full((3,), 0.5)), ValueError, "feature_probability must have shape"),
    ((5, torch.full((2, 3), 1.2)), ValueError, r"must lie in \[0, 1\]"),
    ((5, [[0.5]]), TypeError, "feature_probability must be a torch.Tensor"),
])
def test_generate_batch_errors(args, error, match):
    with pytest.raises(error, match=match):
        sp.generate_batch(*args)


def test_correlated_pairs_appear_together():
    x = sp.generate_correlated_batch(20_000, torch.tensor([[0.2, 0.05]]), generator=gen(1))
    assert x.shape == (20_000, 1, 4)
    on = x != 0
    assert torch.equal(on[..., 0], on[..., 1]) and torch.equal(on[..., 2], on[..., 3])
    assert torch.allclose(on.float().mean(0), torch.tensor([[0.2, 0.2, 0.05, 0.05]]), atol=0.01)
    assert not torch.equal(x[..., 0], x[..., 1])  # values are drawn separately


def test_anticorrelated_pairs_never_appear_together():
    x = sp.generate_anticorrelated_batch(20_000, torch.tensor([[0.2, 0.5]]), generator=gen(2))
    on = x != 0
    assert not (on[..., 0] & on[..., 1]).any() and not (on[..., 2] & on[..., 3]).any()
    assert torch.allclose(on.float().mean(0), torch.tensor([[0.2, 0.2, 0.5, 0.5]]), atol=0.015)
    with pytest.raises(ValueError, match="at most half"):
        sp.generate_anticorrelated_batch(5, torch.tensor([[0.6]]))


def test_model_batch_orders_correlated_then_anticorrelated_then_independent():
    m = sp.ToyModel(1, 7, 2, feature_probability=0.3, n_correlated_pairs=1,
                    n_anticorrelated_pairs=1, device="cpu")
    on = m.generate_batch(20_000, generator=gen(3)) != 0
    assert torch.equal(on[..., 0], on[..., 1])
    assert not (on[..., 2] & on[..., 3]).any()
    assert torch.allclose(on.float().mean(0), torch.full((1, 7), 0.3), atol=0.015)
    both = (on[..., 4] & on[..., 5]).float().mean().item()
    assert abs(both - 0.09) < 0.01  # independent


# -- loss --------------------------------------------------------------------------------------


def test_importance_weighted_loss_by_hand():
    x = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # batch 2, 1 instance, 2 features
    out = torch.zeros_like(x)
    imp = torch.tensor([[2.0, 0.5]])
    # example 1: 2·1 = 2; example 2: 0.5·1 = 0.5; mean 1.25
    assert torch.allclose(sp.importance_weighted_loss(out, x, imp), torch.tensor([1.25]))
    assert torch.allclose(sp.importance_weighted_loss(out, x, 1.0), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="importance must broadcast"):
        sp.importance_weighted_loss(out, x, torch.ones(3, 2))
    with pytest.raises(ValueError, match="out must have shape"):
        sp.importance_weighted_loss(out[:, :, :1], x, imp)


# -- training ----------------------------------------------------------------------------------


def test_training_reduces_loss_and_history_format():
    m = sp.ToyModel(3, 5, 2, feature_probability=torch.tensor([1.0, 0.3, 0.05]), device="cpu")
    h = sp.train_toy_model(m, steps=300, batch_size=128, lr=1e-2, log_every=50, device="cpu",
                           progress=False)
    assert h["step"] == [0, 50, 100, 150, 200, 250, 299]
    assert len(h["loss"]) == len(h["step"]) == len(h["lr"]) and len(h["loss"][0]) == 3
    first, last = torch.tensor(h["loss"][0]), torch.tensor(h["loss"][-1])
    assert torch.all(last < 0.7 * first)


def test_same_seed_identical_history_different_seed_differs():
    def run(seed):
        m = sp.ToyModel(2, 5, 2, feature_probability=0.1, seed=1, device="cpu")
        return sp.train_toy_model(m, steps=60, batch_size=64, device="cpu", seed=seed,
                                  progress=False), m
    (h1, m1), (h2, m2), (h3, _) = run(0), run(0), run(1)
    assert h1 == h2 and torch.equal(m1.W, m2.W)
    assert h1["loss"] != h3["loss"]


def test_cosine_schedule_and_callable_schedule():
    m = sp.ToyModel(1, 3, 2, device="cpu")
    h = sp.train_toy_model(m, steps=10, batch_size=4, lr=1.0, lr_schedule="cosine", log_every=1,
                           device="cpu", progress=False)
    assert h["lr"][0] == pytest.approx(1.0) and h["lr"][5] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(h["lr"], h["lr"][1:]))
    h = sp.train_toy_model(m, steps=4, batch_size=4, lr=0.1, log_every=1, device="cpu",
                           lr_schedule=lambda step, steps: step / steps, progress=False)
    assert h["lr"] == pytest.approx([0.0, 0.025, 0.05, 0.075])


def test_training_restores_the_thread_count():
    before = torch.get_num_threads()
    sp.train_toy_model(sp.ToyModel(1, 3, 2, device="cpu"), steps=2, batch_size=4, device="cpu",
                       progress=False, cpu_threads=1)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps must be a positive int"),
    (dict(cpu_threads=0), "cpu_threads must be a positive int"),
    (dict(lr=-1.0), "lr must be a positive number"),
    (dict(lr_schedule="exponential"), "lr_schedule: schedule must be"),
    (dict(seed=1.5), "seed must be a non-negative int"),
])
def test_training_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sp.train_toy_model(sp.ToyModel(1, 3, 2, device="cpu"), progress=False, **kwargs)
    with pytest.raises(TypeError, match="model must be a ToyModel"):
        sp.train_toy_model(torch.nn.Linear(2, 2), progress=False)


def test_training_settings_after_steps_are_keyword_only():
    with pytest.raises(TypeError, match="positional argument"):
        sp.train_toy_model(sp.ToyModel(1, 3, 2, device="cpu"), 2, 64)
    with pytest.raises(TypeError, match="unexpected keyword argument 'schedule'"):
        sp.train_toy_model(sp.ToyModel(1, 3, 2, device="cpu"), 2, schedule="cosine")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_is_reproducible_and_stays_on_device():
    def run():
        m = sp.ToyModel(2, 5, 2, feature_probability=0.1, seed=1, device="cpu")
        h = sp.train_toy_model(m, steps=50, batch_size=64, device="cuda", seed=0, progress=False)
        return h, m
    (h1, m1), (h2, _) = run(), run()
    assert m1.W.device.type == "cuda" and m1.feature_probability.device.type == "cuda"
    assert h1 == h2
    assert sp.feature_dimensionality(m1.W.detach()).device.type == "cuda"


# -- measures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("W, want", [
    (polygon(5), 2 / 5),  # pentagon
    (polygon(3), 2 / 3),  # triangle
    (polygon(2), 1 / 2),  # antipodal pair
    (torch.eye(3)[None], 1.0),  # orthogonal
])
def test_feature_dimensionality_of_known_geometries(W, want):
    D = sp.feature_dimensionality(W)
    assert D.shape == (1, W.shape[2])
    assert torch.allclose(D, torch.full_like(D, want), atol=1e-6)


def test_tetrahedron_has_dimensionality_three_quarters():
    W = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]).T[None]  # [1, 3, 4]
    assert torch.allclose(sp.feature_dimensionality(W), torch.full((1, 4), 0.75))


def test_dead_feature_and_length_invariance():
    W = polygon(4) * torch.tensor([1.0, 2.0, 1.0, 0.0])  # feature 3 not represented
    D = sp.feature_dimensionality(W)
    assert D[0, 3] == 0 and not torch.isnan(D).any()
    # Features 1 and 3 were an antipodal pair; with 3 gone, 1 is alone on its axis: D = 1.
    assert torch.allclose(D[0, :3], torch.tensor([0.5, 1.0, 0.5]))


def test_dimensions_per_feature_by_hand():
    assert torch.allclose(sp.dimensions_per_feature(polygon(5)), torch.tensor([0.4]))
    assert torch.allclose(sp.dimensions_per_feature(torch.eye(3)[None].repeat(2, 1, 1)),
                          torch.ones(2))
    with pytest.raises(ValueError, match="W must have shape"):
        sp.dimensions_per_feature(torch.ones(2, 2))


def test_superposition_interference():
    I = sp.superposition_interference(polygon(2))
    assert torch.allclose(I, torch.ones(1, 2))
    assert torch.allclose(sp.superposition_interference(torch.eye(3)[None]), torch.zeros(1, 3))


def test_neuron_polysemanticity_by_hand():
    W = torch.tensor([[[1.0, 0.0, -2.0, 0.0],  # one feature (negative one ignored): 1
                       [1.0, 1.0, 1.0, 0.0],  # three equal weights: 3
                       [-1.0, -1.0, 0.0, 0.0],  # never fires: 0
                       [2.0, 1.0, 0.0, 0.0]]])  # (4 + 1)² / (16 + 1) = 25/17
    P = sp.neuron_polysemanticity(W)
    assert P.shape == (1, 4)
    assert torch.allclose(P, torch.tensor([[1.0, 3.0, 0.0, 25 / 17]]))


def test_antipodal_losses_cross_at_four_sevenths_and_match_simulation():
    drop, anti = sp.antipodal_pair_losses(torch.tensor([0.3, 4 / 7, 0.8]))
    assert anti[0] < drop[0] and anti[2] > drop[2]
    assert torch.isclose(drop[1], anti[1])
    # Monte Carlo with the two hand-built models, at s = 0.3.
    s = 0.3
    m = sp.ToyModel(2, 2, 1, feature_probability=s, device="cpu")
    with torch.no_grad():
        m.W.copy_(torch.tensor([[[1.0, 0.0]], [[1.0, -1.0]]]))
        m.b_final.copy_(torch.tensor([[0.0, s / 2], [0.0, 0.0]]))
    x = m.generate_batch(200_000, generator=gen(0))
    with torch.no_grad():
        loss = m.loss(m(x), x)
    d, a = sp.antipodal_pair_losses(s)
    assert loss[0].item() == pytest.approx(d.item(), rel=0.03)
    assert loss[1].item() == pytest.approx(a.item(), rel=0.03)


# -- plots -------------------------------------------------------------------------------------


@pytest.fixture
def trained_like():
    W = torch.cat([polygon(5), torch.randn(1, 2, 5, generator=gen(0))])  # [2, 2, 5]
    return W


@pytest.mark.parametrize("plot", ["wtw", "features_2d", "bars", "neurons"])
def test_panel_plots_return_titled_labelled_figures(plot, trained_like):
    W = trained_like
    fig = {
        "wtw": lambda: splots.plot_wtw(W, titles=["a", "b"]),
        "features_2d": lambda: splots.plot_features_2d(W, importance=torch.rand(5), titles=["a", "b"]),
        "bars": lambda: splots.plot_feature_superposition_bars(W),
        "neurons": lambda: splots.plot_neuron_weights(W),
    }[plot]()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert fig._suptitle is not None and fig._suptitle.get_text()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) >= 2
    assert all(ax.get_title() and ax.get_xlabel() for ax in panels)
    plt.close(fig)


def test_sparsity_plots(trained_like):
    W = torch.cat([trained_like, torch.eye(2, 5)[None]])
    p = torch.tensor([0.05, 0.3, 1.0])
    for fig in (splots.plot_feature_dimensionality(W, p),
                splots.plot_dimensions_per_feature(W, p[:, None].expand(3, 5))):
        ax = fig.axes[0]
        assert ax.get_title() and "1/(1−S)" in ax.get_xlabel() and ax.get_ylabel()
        assert ax.get_xscale() == "log"
        sticky = {round(line.get_ydata()[0], 4) for line in ax.get_lines() if line.get_linestyle() == "--"}
        assert sticky == {round(v, 4) for v in sp.STICKY_FRACTIONS}
        plt.close(fig)


def test_loss_curve_plot():
    m = sp.ToyModel(2, 3, 2, device="cpu")
    h = sp.train_toy_model(m, steps=20, batch_size=8, device="cpu", progress=False)
    fig = splots.plot_loss_curves(h, labels=["p=1", "p=0.1"])
    assert fig.axes[0].get_yscale() == "log" and fig.axes[0].get_xlabel() == "training step"
    plt.close(fig)


def test_features_2d_by_group():
    fig = splots.plot_features_2d(polygon(4).repeat(2, 1, 1), groups=[0, 0, 1, 1],
                                  titles=["x", "y"])
    labels = sorted(t.get_text() for t in fig.legends[0].get_texts())
    assert labels == ["pair 0", "pair 1"]
    plt.close(fig)
    with pytest.raises(ValueError, match="groups must have one entry per feature"):
        splots.plot_features_2d(polygon(4), groups=[0, 1])


def test_shared_draws_give_equal_settings_identical_inputs():
    m = sp.ToyModel(3, 6, 2, feature_probability=torch.tensor([0.3, 0.3, 0.1]),
                    n_correlated_pairs=1, n_anticorrelated_pairs=1, device="cpu")
    x = m.generate_batch(20_000, generator=gen(4), shared_draws=True)
    assert x.shape == (20_000, 3, 6)
    assert torch.equal(x[:, 0], x[:, 1])  # same settings, same inputs
    on = x != 0
    assert torch.allclose(on.float().mean(0), m.feature_probability, atol=0.015)
    assert not (on[:, 2] & ~on[:, 0]).any()  # p = 0.1 draws are nested in the p = 0.3 ones
    assert torch.equal(on[..., 0], on[..., 1]) and not (on[..., 2] & on[..., 3]).any()
    y = m.generate_batch(20_000, generator=gen(4))
    assert not torch.equal(y[:, 0], y[:, 1])  # independent draws by default


def test_evaluate_loss_is_per_instance_and_repeatable():
    m = sp.ToyModel(3, 4, 2, feature_probability=0.2, device="cpu")
    a, b = sp.evaluate_loss(m, n_batch=500), sp.evaluate_loss(m, n_batch=500)
    assert a.shape == (3,) and torch.equal(a, b) and not a.requires_grad
    with pytest.raises(TypeError, match="model must be a ToyModel"):
        sp.evaluate_loss(torch.nn.Linear(2, 2))


def test_plot_errors():
    with pytest.raises(ValueError, match="needs n_hidden = 2"):
        splots.plot_features_2d(torch.rand(1, 3, 4))
    with pytest.raises(ValueError, match="titles must have one entry per instance"):
        splots.plot_wtw(torch.rand(2, 2, 3), titles=["only one"])
    with pytest.raises(ValueError, match="feature_probability must lie in"):
        splots.plot_dimensions_per_feature(torch.rand(2, 2, 3), [0.0, 0.5])
    with pytest.raises(ValueError, match="history must be"):
        splots.plot_loss_curves({"loss": []})
