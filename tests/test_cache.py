import pytest
import torch

from toykit import ActivationCache, get_act_name


@pytest.mark.parametrize("args, full", [
    (("pattern", 0), "blocks.0.attn.hook_pattern"),
    (("attn_scores", 2), "blocks.2.attn.hook_attn_scores"),
    (("q", 1), "blocks.1.attn.hook_q"),
    (("resid_pre", 1), "blocks.1.hook_resid_pre"),
    (("resid_post", 0), "blocks.0.hook_resid_post"),
    (("mlp_out", 3), "blocks.3.hook_mlp_out"),
    (("post", 0), "blocks.0.mlp.hook_post"),
    (("scale", 0, "ln2"), "blocks.0.ln2.hook_scale"),
    (("embed",), "hook_embed"),
    (("scale",), "ln_final.hook_scale"),
    (("blocks.0.attn.hook_z",), "blocks.0.attn.hook_z"),
])
def test_get_act_name(args, full):
    assert get_act_name(*args) == full


def make_cache():
    return ActivationCache({
        "hook_embed": torch.zeros(2, 3, 4),
        "blocks.0.attn.hook_pattern": torch.ones(2, 1, 3, 3),
        "blocks.0.hook_resid_post": torch.full((2, 3, 4), 2.0),
    })


def test_indexing_by_full_and_short_names():
    cache = make_cache()
    assert cache["pattern", 0] is cache["blocks.0.attn.hook_pattern"]
    assert cache["embed"] is cache["hook_embed"]
    assert ("resid_post", 0) in cache and ("resid_post", 1) not in cache
    assert len(cache) == 3 and list(cache)[0] == "hook_embed"


def test_missing_key_names_the_closest():
    with pytest.raises(KeyError, match="did you mean 'blocks.0.hook_resid_post'"):
        make_cache()["resid_pst", 0]
    with pytest.raises(TypeError, match="cache keys"):
        make_cache()[3.5]


def test_remove_batch_dim_and_to():
    one = ActivationCache({"hook_embed": torch.zeros(1, 3, 4)})
    assert one.remove_batch_dim()["embed"].shape == (3, 4)
    with pytest.raises(ValueError, match="batch size 1"):
        make_cache().remove_batch_dim()
    assert make_cache().to("cpu")["embed"].device.type == "cpu"
