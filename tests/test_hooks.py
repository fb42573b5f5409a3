"""Hook semantics, on a two-layer model defined here (independent of any chapter)."""

import pytest
import torch
import torch.nn as nn

from toykit import ActivationCache, HookedRootModule, HookPoint


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x):
        return self.hook_post(torch.relu(self.hook_pre(self.lin(x))))


class Net(HookedRootModule):
    def __init__(self, d: int = 4, n_layers: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hook_in = HookPoint()
        self.blocks = nn.ModuleList(Block(d) for _ in range(n_layers))
        self.setup()

    def forward(self, x):
        x = self.hook_in(x)
        for block in self.blocks:
            x = block(x)
        return x.sum(-1)


@pytest.fixture
def net():
    return Net()


X = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))


def n_hooks(model):
    return sum(len(hp._handles) for hp in model.hook_points())


def test_hook_points_are_named_after_their_path(net):
    assert list(net.hook_dict) == ["hook_in", "blocks.0.hook_pre", "blocks.0.hook_post",
                                   "blocks.1.hook_pre", "blocks.1.hook_post"]
    assert net.blocks[1].hook_pre.name == "blocks.1.hook_pre"


def test_hook_reads_activation_and_sees_its_name(net):
    seen = {}

    def read(act, hook):
        seen[hook.name] = act.clone()

    out = net.run_with_hooks(X, fwd_hooks=[("blocks.0.hook_pre", read)])
    assert torch.allclose(out, net(X))
    assert torch.allclose(seen["blocks.0.hook_pre"], net.blocks[0].lin(X))
    assert n_hooks(net) == 0


def test_hook_replacement_changes_the_output(net):
    zero = net.run_with_hooks(X, fwd_hooks=[("blocks.1.hook_post", lambda a, hook: torch.zeros_like(a))])
    assert torch.equal(zero, torch.zeros(3))
    assert not torch.equal(net(X), zero)


def test_filter_forms_select_hooks(net):
    for f, expected in [
        ("hook_in", 1),
        (["blocks.0.hook_pre", "blocks.1.hook_pre"], 2),
        (lambda name: name.endswith("post"), 2),
        (None, 5),
    ]:
        _, cache = net.run_with_cache(X, names_filter=f)
        assert len(cache) == expected, f


def test_run_with_cache_matches_manual_forward(net):
    out, cache = net.run_with_cache(X)
    assert isinstance(cache, ActivationCache)
    h0 = torch.relu(net.blocks[0].lin(X))
    assert torch.allclose(cache["blocks.0.hook_post"], h0)
    assert torch.allclose(cache["pre", 1], net.blocks[1].lin(h0))  # (short, layer) shorthand
    assert torch.allclose(out, net(X))
    assert not cache["hook_in"].requires_grad
    assert n_hooks(net) == 0


def test_hooks_are_removed_after_an_exception(net):
    def boom(act, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        net.run_with_hooks(X, fwd_hooks=[("blocks.0.hook_pre", boom)])
    assert n_hooks(net) == 0
    with pytest.raises(RuntimeError):
        with net.hooks(fwd_hooks=[("hook_in", lambda a, hook: None)]):
            raise RuntimeError("inside the block")
    assert n_hooks(net) == 0
    with pytest.raises(TypeError):
        net.run_with_cache(X, names_filter=None, not_an_arg=True)  # the forward itself raises
    assert n_hooks(net) == 0


def test_context_manager_keeps_hooks_added_elsewhere(net):
    net.add_hook("hook_in", lambda a, hook: a * 2)
    with net.hooks(fwd_hooks=[("blocks.0.hook_pre", lambda a, hook: None)]):
        assert n_hooks(net) == 2
    assert n_hooks(net) == 1
    _, cache = net.run_with_cache(X)
    assert torch.allclose(cache["hook_in"], 2 * X)  # the cache sees the earlier hook's output
    net.reset_hooks()
    assert n_hooks(net) == 0


def test_permanent_hooks_survive_reset(net):
    net.add_hook("hook_in", lambda a, hook: None, is_permanent=True)
    net.reset_hooks()
    assert n_hooks(net) == 1
    net.reset_hooks(including_permanent=True)
    assert n_hooks(net) == 0


def test_unknown_hook_name_lists_near_names(net):
    with pytest.raises(KeyError, match="did you mean 'blocks.0.hook_pre'"):
        net.run_with_hooks(X, fwd_hooks=[("blocks.0.hook_pr", lambda a, hook: None)])
    assert n_hooks(net) == 0


def test_bad_replacement_is_a_clear_error(net):
    with pytest.raises(ValueError, match=r"returned shape \[3\].*activation has shape \[3, 4\]"):
        net.run_with_hooks(X, fwd_hooks=[("hook_in", lambda a, hook: a.sum(-1))])
    with pytest.raises(TypeError, match="must return None or a tensor"):
        net.run_with_hooks(X, fwd_hooks=[("hook_in", lambda a, hook: 3.0)])
    with pytest.raises(TypeError, match="callable"):
        net.add_hook("hook_in", "not a function")
    with pytest.raises(ValueError, match="dir must be"):
        net.add_hook("hook_in", lambda a, hook: None, dir="sideways")
    assert n_hooks(net) == 0


def test_backward_hooks_see_gradients(net):
    grads = {}

    def save_grad(grad, hook):
        grads[hook.name] = grad.clone()

    x = X.clone().requires_grad_(True)
    out = net.run_with_hooks(x, bwd_hooks=[("blocks.1.hook_post", save_grad)], reset_hooks_end=False)
    out.sum().backward()
    net.reset_hooks()
    # out = sum over the last axis, so d(out.sum())/d(post) is all ones.
    assert torch.equal(grads["blocks.1.hook_post"], torch.ones(3, 4))
    with pytest.raises(ValueError, match="reset_hooks_end=False"):
        net.run_with_hooks(x, bwd_hooks=[("hook_in", save_grad)])
    assert n_hooks(net) == 0


def test_model_without_setup_is_a_clear_error():
    class NoSetup(HookedRootModule):
        def forward(self, x):
            return x

    with pytest.raises(RuntimeError, match="setup"):
        NoSetup().run_with_cache(X)


def test_has_hooks_works_as_property_and_as_transformerlens_method(net):
    """``if hp.has_hooks:`` (toykit, chapter 00) and ``hp.has_hooks()`` (TransformerLens) both work,
    and the property form is falsy when nothing is attached (never an always-true bound method)."""
    hp = net.hook_dict["blocks.0.hook_pre"]
    assert not hp.has_hooks and hp.has_hooks() is False and hp.has_hooks == False  # noqa: E712
    net.add_hook("blocks.0.hook_pre", lambda a, hook: None, is_permanent=True)
    assert hp.has_hooks and hp.has_hooks() is True and hp.has_hooks == True  # noqa: E712
    assert hp.has_hooks(dir="fwd") and not hp.has_hooks(dir="bwd")
    assert not hp.has_hooks(including_permanent=False)  # the only hook is permanent
    net.add_hook("blocks.0.hook_pre", lambda g, hook: None, dir="bwd")
    assert hp.has_hooks(dir="bwd") and hp.has_hooks(dir="bwd", including_permanent=False)
    assert not hp.has_hooks(dir="fwd", including_permanent=False)
    net.reset_hooks(including_permanent=True)
    assert not hp.has_hooks and not hp.has_hooks("both")
    assert [name for name, p in net.hook_dict.items() if p.has_hooks] == []
    # PyTorch's own hooks count too.
    handle = hp.register_forward_hook(lambda m, i, o: None)
    assert hp.has_hooks and hp.has_hooks("fwd")
    handle.remove()
    with pytest.raises(ValueError, match="dir"):
        hp.has_hooks(dir="forward")


def test_add_hook_accepts_transformerlens_keyword_hook(net):
    x = X
    base = net(x)
    double = lambda a, hook: 2 * a  # noqa: E731
    net.add_hook("blocks.0.hook_pre", hook=double)
    doubled = net(x)
    net.reset_hooks()
    net.add_hook("blocks.0.hook_pre", fn=double)
    torch.testing.assert_close(net(x), doubled)
    net.reset_hooks()
    net.hook_dict["blocks.0.hook_pre"].add_hook(hook=double)
    torch.testing.assert_close(net(x), doubled)
    net.reset_hooks()
    assert not torch.allclose(doubled, base)
    with pytest.raises(TypeError, match="once"):
        net.add_hook("blocks.0.hook_pre", hook=double, fn=double)
    with pytest.raises(TypeError, match="callable"):
        net.add_hook("blocks.0.hook_pre")


def test_check_model_is_the_one_model_check(net):
    from toykit.hooks import check_model
    from toykit.transformer import HookedTransformer

    assert check_model(net, HookedRootModule, ["hook_in", "blocks.1.hook_post"]) is net
    assert net.find_hook_points("blocks.0.hook_pre") == [net.blocks[0].hook_pre]
    with pytest.raises(TypeError, match=r"model must be a HookedTransformer \(from toykit.transformer\), got Net"):
        check_model(net, HookedTransformer)
    with pytest.raises(TypeError, match="model must be a HookedRootModule .*got Linear"):
        check_model(nn.Linear(2, 2), HookedRootModule)
    with pytest.raises(KeyError, match="did you mean 'blocks.0.hook_pre'") as info:
        check_model(net, HookedRootModule, ["blocks.0.hook_pr"])
    assert info.value.args[0] == net.unknown_hook_message("blocks.0.hook_pr")
    with pytest.raises(TypeError, match="hook names must be strings"):
        check_model(net, HookedRootModule, [0])
