"""TinyMLP: shapes, weights, input errors, and hook semantics on it."""

import pytest
import torch

from toykit import ActivationCache, get_device
from toykit.mlp import MLPBlock, TinyMLP

HOOKS = ["hook_in", "blocks.0.hook_pre", "blocks.0.hook_post",
         "blocks.1.hook_pre", "blocks.1.hook_post", "hook_out"]


@pytest.fixture
def model():
    return TinyMLP(d_in=4, d_hidden=6, d_out=3, n_layers=2, seed=0, device="cpu")


X = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))


def n_hooks(model):
    return sum(len(hp._handles) for hp in model.hook_points())


def manual_forward(model, x):
    h = x
    pres, posts = [], []
    for block in model.blocks:
        pre = h @ block.W_in + block.b_in
        h = torch.relu(pre)
        pres.append(pre)
        posts.append(h)
    return h @ model.W_out + model.b_out, pres, posts


# -- the model ---------------------------------------------------------------------------------


def test_weights_are_right_multiplied_with_transformerlens_names(model):
    shapes = {name: list(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "blocks.0.W_in": [4, 6], "blocks.0.b_in": [6],
        "blocks.1.W_in": [6, 6], "blocks.1.b_in": [6],
        "W_out": [6, 3], "b_out": [3],
    }
    assert isinstance(model.blocks[0], MLPBlock)


def test_forward_matches_the_formula(model):
    out = model(X)
    expected, _, _ = manual_forward(model, X)
    assert out.shape == (5, 3)
    torch.testing.assert_close(out, expected)


def test_same_seed_same_weights_other_seed_other_weights():
    a = TinyMLP(3, 5, 2, seed=7, device="cpu")
    b = TinyMLP(3, 5, 2, seed=7, device="cpu")
    c = TinyMLP(3, 5, 2, seed=8, device="cpu")
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)


def test_seed_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TinyMLP(3, 5, 2, seed=0, device="cpu")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("act_fn, fn", [
    ("relu", torch.relu), ("tanh", torch.tanh), ("gelu", torch.nn.functional.gelu),
    ("linear", lambda x: x),
])
def test_activation_functions(act_fn, fn):
    m = TinyMLP(4, 6, 3, n_layers=1, act_fn=act_fn, device="cpu")
    _, cache = m.run_with_cache(X)
    torch.testing.assert_close(cache["blocks.0.hook_post"], fn(cache["blocks.0.hook_pre"]))


def test_gradients_reach_every_parameter(model):
    model(X).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_device_defaults_to_get_device():
    assert TinyMLP(2, 3, 1).device.type == get_device().type
    assert TinyMLP(2, 3, 1, device="cpu").device == torch.device("cpu")


def test_repr_names_sizes_and_hooks(model):
    text = repr(model)
    assert "d_in=4, d_hidden=6, d_out=3, n_layers=2, act_fn='relu', seed=0" in text
    assert "HookPoint(name='blocks.1.hook_post')" in text


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_in=0, d_hidden=3, d_out=1), "d_in must be a positive int"),
    (dict(d_in=2, d_hidden=2.5, d_out=1), "d_hidden must be a positive int"),
    (dict(d_in=2, d_hidden=3, d_out=1, n_layers=0), "n_layers must be a positive int"),
    (dict(d_in=2, d_hidden=3, d_out=1, act_fn="sigmoid"), "act_fn must be one of"),
    (dict(d_in=2, d_hidden=3, d_out=1, seed=-1), "seed must be a non-negative int"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TinyMLP(**kwargs, device="cpu")


@pytest.mark.parametrize("x, error, message", [
    (torch.randn(4), ValueError, r"x must have shape \[batch, 4\] \(2 dims\), got \[4\]"),
    (torch.randn(5, 3), ValueError, r"x must have shape \[batch, 4\], got \[5, 3\]"),
    (torch.randn(2, 5, 4), ValueError, r"x must have shape \[batch, 4\]"),
    (torch.ones(5, 4, dtype=torch.long), TypeError, "x must be a floating-point tensor"),
    (torch.randn(5, 4, dtype=torch.float64), TypeError, r"call x.to\(torch.float32\)"),
    ([[0.0] * 4], TypeError, "x must be a torch.Tensor, got list"),
])
def test_bad_inputs_give_clear_errors(model, x, error, message):
    with pytest.raises(error, match=message):
        model(x)


def test_input_on_another_device_is_a_clear_error():
    m = TinyMLP(4, 6, 3, device="meta")
    with pytest.raises(ValueError, match="x is on cpu but the model is on meta"):
        m(X)


# -- hooks on the model ------------------------------------------------------------------------


def test_hook_names(model):
    assert list(model.hook_dict) == HOOKS
    assert model.blocks[1].hook_pre.name == "blocks.1.hook_pre"


def test_run_with_hooks_reads_an_activation(model):
    seen = {}

    def read(act, hook):
        seen[hook.name] = act.clone()

    out = model.run_with_hooks(X, fwd_hooks=[("blocks.0.hook_post", read)])
    _, _, posts = manual_forward(model, X)
    torch.testing.assert_close(seen["blocks.0.hook_post"], posts[0])
    torch.testing.assert_close(out, model(X))  # a hook returning None changes nothing
    assert n_hooks(model) == 0


def test_run_with_hooks_replaces_an_activation(model):
    zeroed = model.run_with_hooks(
        X, fwd_hooks=[("blocks.1.hook_post", lambda act, hook: torch.zeros_like(act))])
    # With every last hidden neuron at 0, only the readout bias is left.
    torch.testing.assert_close(zeroed, model.b_out.detach().expand(5, 3))
    assert not torch.allclose(model(X), zeroed)
    assert n_hooks(model) == 0


def test_replacing_one_neuron_changes_only_its_contribution(model):
    def ablate(act, hook):
        new = act.clone()
        new[:, 2] = 0.0
        return new

    out = model.run_with_hooks(X, fwd_hooks=[("blocks.1.hook_post", ablate)])
    _, cache = model.run_with_cache(X)
    expected = model(X) - cache["post", 1][:, 2:3] * model.W_out[2]
    torch.testing.assert_close(out, expected)


def test_hook_replacing_the_input(model):
    out = model.run_with_hooks(X, fwd_hooks=[("hook_in", lambda act, hook: act * 0)])
    torch.testing.assert_close(out, model(torch.zeros(5, 4)))


def test_run_with_cache_caches_every_hook_with_the_right_shapes(model):
    out, cache = model.run_with_cache(X)
    assert isinstance(cache, ActivationCache)
    shapes = {name: list(act.shape) for name, act in cache.items()}
    assert shapes == {
        "hook_in": [5, 4],
        "blocks.0.hook_pre": [5, 6], "blocks.0.hook_post": [5, 6],
        "blocks.1.hook_pre": [5, 6], "blocks.1.hook_post": [5, 6],
        "hook_out": [5, 3],
    }
    assert all(not act.requires_grad for act in cache.values())
    torch.testing.assert_close(cache["hook_out"], out.detach())
    _, pres, posts = manual_forward(model, X)
    torch.testing.assert_close(cache["blocks.1.hook_pre"], pres[1].detach())
    torch.testing.assert_close(cache["blocks.0.hook_post"], posts[0].detach())
    assert n_hooks(model) == 0


def test_cache_shorthand_falls_back_to_block_hooks(model):
    _, cache = model.run_with_cache(X)
    # ("pre", 0) means blocks.0.mlp.hook_pre in a transformer; TinyMLP has no .mlp.
    assert cache["pre", 0] is cache["blocks.0.hook_pre"]
    assert cache["post", 1] is cache["blocks.1.hook_post"]
    assert ("post", 1) in cache and ("post", 2) not in cache
    with pytest.raises(KeyError, match="not in this cache"):
        cache["post", 2]


def test_hooks_are_removed_after_a_forward_that_raises(model):
    def broken(act, hook):
        raise RuntimeError("bug in my hook")

    with pytest.raises(RuntimeError, match="bug in my hook"):
        model.run_with_hooks(X, fwd_hooks=[("blocks.0.hook_post", broken),
                                           ("blocks.1.hook_pre", lambda a, hook: None)])
    assert not model.hook_dict["blocks.0.hook_post"].has_hooks
    assert n_hooks(model) == 0
    with pytest.raises(ValueError, match=r"returned shape \[5\]"):
        model.run_with_hooks(X, fwd_hooks=[("blocks.0.hook_post", lambda a, hook: a[:, 0])])
    assert n_hooks(model) == 0
    torch.testing.assert_close(model(X), manual_forward(model, X)[0])


def test_unknown_hook_name_lists_near_names(model):
    with pytest.raises(KeyError) as info:
        model.run_with_hooks(X, fwd_hooks=[("blocks.0.hook_pots", lambda a, hook: None)])
    message = str(info.value)
    assert "unknown hook name 'blocks.0.hook_pots'" in message
    assert "did you mean 'blocks.0.hook_post'" in message
    with pytest.raises(KeyError, match="blocks.1.hook_pre"):
        model.run_with_cache(X, names_filter="blocks.1.mlp.hook_pre")
    assert n_hooks(model) == 0


@pytest.mark.parametrize("names_filter, expected", [
    ("blocks.0.hook_pre", ["blocks.0.hook_pre"]),
    (["hook_out", "blocks.1.hook_post"], ["blocks.1.hook_post", "hook_out"]),
    (lambda name: name.endswith("hook_post"), ["blocks.0.hook_post", "blocks.1.hook_post"]),
    (None, HOOKS),
])
def test_names_filter(model, names_filter, expected):
    _, cache = model.run_with_cache(X, names_filter=names_filter)
    assert list(cache) == expected


def test_permanent_hooks_survive_reset_until_asked(model):
    model.add_hook("hook_out", lambda act, hook: act + 1.0, is_permanent=True)
    model.add_hook("blocks.0.hook_pre", lambda act, hook: None)
    model.reset_hooks()
    assert model.hook_dict["hook_out"].has_hooks
    assert not model.hook_dict["blocks.0.hook_pre"].has_hooks
    torch.testing.assert_close(model(X), manual_forward(model, X)[0] + 1.0)
    model.reset_hooks(including_permanent=True)
    assert n_hooks(model) == 0


def test_backward_hook_sees_the_gradient(model):
    grads = {}

    def save_grad(grad, hook):
        grads[hook.name] = grad.clone()

    out = model.run_with_hooks(X, bwd_hooks=[("hook_out", save_grad)], reset_hooks_end=False)
    (2 * out).sum().backward()
    model.reset_hooks()
    torch.testing.assert_close(grads["hook_out"], torch.full((5, 3), 2.0))
    assert n_hooks(model) == 0
