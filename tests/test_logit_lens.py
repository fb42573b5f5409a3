"""The logit lens: the last layer reproduces the model's logits; intermediate layers go
through the final LayerNorm with their own scale."""

import pytest
import torch
import torch.nn.functional as F

from toykit.cache import ActivationCache
from toykit.logit_lens import apply_final_norm, logit_lens, logit_lens_answer
from toykit.transformer import HookedTransformer, TransformerConfig


def make_model(normalization_type="LN"):
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32, d_vocab=30, n_ctx=10, seed=0,
                            device="cpu", normalization_type=normalization_type)
    model = HookedTransformer(cfg)
    with torch.no_grad():  # make the final LayerNorm's weights matter
        if normalization_type == "LN":
            model.ln_final.w.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
            model.ln_final.b.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    return model


TOKENS = torch.randint(0, 30, (4, 7), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("normalization_type", ["LN", "LNPre", None])
def test_the_last_layer_is_the_model_output(normalization_type):
    model = make_model(normalization_type)
    logits, cache = model.run_with_cache(TOKENS)
    lens, labels = logit_lens(cache)
    assert labels == ["0_pre", "1_pre", "final_post"]
    assert lens.shape == (3, 4, 7, 30)
    torch.testing.assert_close(lens[-1], logits, atol=1e-5, rtol=1e-5)


def test_intermediate_layers_use_their_own_layernorm_scale():
    model = make_model()
    _, cache = model.run_with_cache(TOKENS)
    lens, _ = logit_lens(cache, pos=-1)
    resid = cache["resid_pre", 1][:, -1]
    expected = F.layer_norm(resid, (16,), model.ln_final.w, model.ln_final.b, model.cfg.eps) @ model.W_U + model.b_U
    torch.testing.assert_close(lens[1], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(apply_final_norm(model, resid), model.ln_final(resid))


def test_per_prompt_positions_and_the_answer_summary():
    model = make_model()
    logits, cache = model.run_with_cache(TOKENS)
    pos = torch.tensor([6, 2, 0, 3])
    answer, wrong = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    lens, _ = logit_lens(cache, pos=pos)
    assert lens.shape == (3, 4, 30)
    torch.testing.assert_close(lens[-1], logits[torch.arange(4), pos], atol=1e-5, rtol=1e-5)
    out = logit_lens_answer(cache, answer, pos=pos, wrong_ids=wrong, incl_mid=True)
    assert out["labels"] == ["0_pre", "0_mid", "1_pre", "1_mid", "final_post"]
    final = logits[torch.arange(4), pos]
    torch.testing.assert_close(out["logit_diff"][-1], final[torch.arange(4), answer] - final[torch.arange(4), wrong],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["prob"][-1], final.softmax(-1)[torch.arange(4), answer], atol=1e-6, rtol=1e-5)
    expected_rank = (final > final[torch.arange(4), answer][:, None]).sum(-1)
    assert torch.equal(out["rank"][-1], expected_rank)
    assert out["logit"].shape == out["prob"].shape == (5, 4)


def test_logit_lens_errors():
    model = make_model()
    _, cache = model.run_with_cache(TOKENS)
    with pytest.raises(TypeError, match="ActivationCache"):
        logit_lens({"a": torch.zeros(1)})
    with pytest.raises(TypeError, match="HookedTransformer"):  # a cache that does not know its model
        logit_lens(ActivationCache(dict(cache)))
    with pytest.raises(TypeError, match="pos"):
        logit_lens(cache, pos="last")
    with pytest.raises(ValueError, match="answer_ids"):
        logit_lens_answer(cache, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="d_vocab"):
        logit_lens_answer(cache, torch.tensor([1, 2, 3, 99]))
    _, partial = model.run_with_cache(TOKENS, names_filter="blocks.0.hook_resid_pre")
    with pytest.raises(KeyError, match="names_filter"):
        logit_lens(partial)
    with pytest.raises(ValueError, match="d_model"):
        apply_final_norm(model, torch.zeros(3, 5))
