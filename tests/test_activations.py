"""Collecting activations: which axes are positions, keeping one position per prompt, and
running a model in chunks (checked against one full run_with_cache)."""

import pytest
import torch

from toykit import activations as act
from toykit.transformer import HookedTransformer, TransformerConfig


@pytest.fixture(scope="module")
def model():
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32, d_vocab=30, n_ctx=10, seed=0, device="cpu")
    return HookedTransformer(cfg)


def test_position_axes_for_every_hook_of_a_transformer(model):
    """Every hook's activation has length n_pos exactly on the axes position_axes names (7
    positions, none of the other sizes is 7), and those axes are where the positions are."""
    model.set_use_attn_result(True)
    try:
        tokens = torch.randint(0, 30, (3, 7), generator=torch.Generator().manual_seed(0))
        _, cache = model.run_with_cache(tokens)
    finally:
        model.set_use_attn_result(False)
    kinds = {name.rsplit(".", 1)[-1] for name in cache}
    # resid, attention maps, per-head q/k/v/z/result, mlp, LayerNorm scales: all of them.
    assert {"hook_resid_pre", "hook_pattern", "hook_attn_scores", "hook_q", "hook_k", "hook_v", "hook_z",
            "hook_result", "hook_pre", "hook_post", "hook_mlp_out", "hook_scale"} <= kinds
    for name, a in cache.items():
        axes = act.position_axes(name)
        assert tuple(ax for ax in range(1, a.ndim) if a.shape[ax] == 7) == axes, (name, list(a.shape))
    assert act.position_axes("blocks.0.attn.hook_pattern") == (2, 3)  # query, then key
    assert act.position_axes("blocks.1.attn.hook_attn_scores") == (2, 3)
    assert act.position_axes("blocks.1.attn.hook_z") == (1,)
    with pytest.raises(TypeError, match="hook_name"):
        act.position_axes(3)


def test_stop_layer_for(model):
    assert act.stop_layer_for(model, ["hook_embed", "blocks.0.attn.hook_z"]) == 1
    assert act.stop_layer_for(model, ["blocks.1.hook_resid_pre"]) is None  # block 1 is the last
    assert act.stop_layer_for(model, ["blocks.0.hook_resid_post", "ln_final.hook_scale"]) is None


def test_cache_activations_stops_after_the_last_block_it_needs(model):
    tokens = torch.randint(0, 30, (4, 6), generator=torch.Generator().manual_seed(2))
    _, full = model.run_with_cache(tokens)
    fired = []
    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", lambda a, hook: fired.append(hook.name))]):
        cache = act.cache_activations(model, tokens, ["hook_embed", "blocks.0.attn.hook_pattern"])
    assert list(cache) == ["hook_embed", "blocks.0.attn.hook_pattern"]
    assert fired == []  # block 1 never ran
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"], full["pattern", 0])
    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", lambda a, hook: fired.append(hook.name))]):
        cache = act.cache_activations(model, tokens, "blocks.1.hook_mlp_out")
    assert fired == ["blocks.1.hook_resid_pre"]
    torch.testing.assert_close(cache["blocks.1.hook_mlp_out"], full["mlp_out", 1])
    with pytest.raises(KeyError, match="did you mean"):
        act.cache_activations(model, tokens, ["blocks.0.hook_mlp_outt"])


def test_select_positions():
    x = torch.randn(3, 4, 5, 6)  # [components, batch, pos, d]
    pos = torch.tensor([0, 4, 2, 1])
    got = act.select_positions(x, pos, dim=2)
    assert got.shape == (3, 4, 6)
    for b in range(4):
        torch.testing.assert_close(got[:, b], x[:, b, pos[b]])
    torch.testing.assert_close(act.select_positions(x, -1, dim=2), x[:, :, -1])
    assert act.select_positions(x, None) is x
    with pytest.raises(ValueError, match="out of range"):
        act.select_positions(x, 5, dim=2)
    with pytest.raises(ValueError, match=r"lie in \[0, 5\)"):
        act.select_positions(x, torch.tensor([0, 5, 1, 1]), dim=2)
    with pytest.raises(ValueError, match="pos must have shape"):
        act.select_positions(x, torch.tensor([0, 1]), dim=2)


def test_collect_resid_matches_the_cache(model):
    tokens = torch.randint(0, 30, (7, 9), generator=torch.Generator().manual_seed(0))
    pos = torch.tensor([8, 3, 0, 5, 5, 2, 1])
    acts, labels = act.collect_resid(model, tokens, pos, batch_size=3)
    _, cache = model.run_with_cache(tokens)
    full, full_labels = cache.accumulated_resid(return_labels=True)
    assert labels == full_labels == ["0_pre", "1_pre", "final_post"]
    assert acts.shape == (3, 7, 16)
    torch.testing.assert_close(acts, full[:, torch.arange(7), pos])
    got = act.collect_activations(model, tokens, ["blocks.0.attn.hook_pattern", "blocks.0.hook_mlp_out"], pos=-1,
                                 batch_size=4)
    torch.testing.assert_close(got["blocks.0.attn.hook_pattern"], cache["pattern", 0][:, :, -1])
    torch.testing.assert_close(got["blocks.0.hook_mlp_out"], cache["mlp_out", 0][:, -1])
    rows = torch.arange(7)
    got = act.collect_activations(model, tokens, ["blocks.1.attn.hook_pattern"], pos=pos, batch_size=3)
    torch.testing.assert_close(got["blocks.1.attn.hook_pattern"], cache["pattern", 1][rows, :, pos])
    got = act.collect_activations(model, tokens, ["blocks.1.hook_resid_mid"], pos=pos, batch_size=3)
    torch.testing.assert_close(got["blocks.1.hook_resid_mid"], cache["resid_mid", 1][rows, pos])
    with pytest.raises(KeyError, match="did you mean"):
        act.collect_activations(model, tokens, ["blocks.0.hook_mlp_outt"])
    with pytest.raises(ValueError, match="pos must have shape"):
        act.collect_resid(model, tokens, pos[:3])
    assert not any(hp.has_hooks for hp in model.hook_points())
