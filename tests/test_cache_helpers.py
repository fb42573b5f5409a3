import pytest
import torch

from toykit import ActivationCache
from toykit.transformer import HookedTransformer, TransformerConfig
from toykit.weight_processing import process_weights

N_LAYERS, B, P = 3, 4, 6


def model_and_cache(processed=True, **kw):
    base = dict(n_layers=N_LAYERS, d_model=16, n_heads=4, d_mlp=20, d_vocab=11, n_ctx=8, device="cpu",
                dtype=torch.float64)
    base.update(kw)
    model = HookedTransformer(TransformerConfig(**base))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    if processed:
        model = process_weights(model)
    t = torch.randint(0, 11, (B, P), generator=torch.Generator().manual_seed(1))
    logits, cache = model.run_with_cache(t)
    return model, t, logits, cache


def close(a, b):
    torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def resid_into(cache, layer):
    return cache["resid_post", N_LAYERS - 1] if layer == N_LAYERS else cache["resid_pre", layer]


@pytest.mark.parametrize("kw", [dict(), dict(attn_only=True)])
def test_decompose_resid_sums_to_the_residual_stream(kw):
    _, _, _, cache = model_and_cache(**kw)
    for layer in range(N_LAYERS + 1):
        stack, labels = cache.decompose_resid(layer=layer, return_labels=True)
        close(stack.sum(0), resid_into(cache, layer))
        assert labels[:2] == ["embed", "pos_embed"] and len(labels) == stack.shape[0]
    close(cache.decompose_resid().sum(0), cache["resid_post", N_LAYERS - 1])
    close(cache.decompose_resid(-1), cache.decompose_resid(N_LAYERS))
    if not kw:
        close(cache.decompose_resid(layer=1, mlp_input=True).sum(0), cache["resid_mid", 1])
        _, labels = cache.decompose_resid(layer=2, return_labels=True)
        assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
        attn, labels = cache.decompose_resid(layer=2, mode="attn", incl_embeds=False, return_labels=True)
        assert labels == ["0_attn_out", "1_attn_out"]
        close(attn[1], cache["attn_out", 1])
    with pytest.raises(ValueError, match="mode"):
        cache.decompose_resid(mode="heads")
    with pytest.raises(ValueError, match="layer must be"):
        cache.decompose_resid(layer=N_LAYERS + 1)


def test_accumulated_resid_labels_and_values():
    _, _, _, cache = model_and_cache()
    stack, labels = cache.accumulated_resid(return_labels=True)
    assert labels == ["0_pre", "1_pre", "2_pre", "final_post"]
    close(stack[1], cache["resid_pre", 1])
    close(stack[-1], cache["resid_post", N_LAYERS - 1])
    stack, labels = cache.accumulated_resid(layer=2, incl_mid=True, return_labels=True)
    assert labels == ["0_pre", "0_mid", "1_pre", "1_mid", "2_pre"]
    close(stack[3], cache["resid_mid", 1])
    _, labels = cache.accumulated_resid(layer=1, mlp_input=True, return_labels=True)
    assert labels == ["0_pre", "1_pre", "1_mid"]
    last = cache.accumulated_resid(pos_slice=-1)
    assert last.shape == (N_LAYERS + 1, B, 16)
    close(last[0], cache["resid_pre", 0][:, -1])
    assert cache.accumulated_resid(pos_slice=slice(1, 3)).shape == (N_LAYERS + 1, B, 2, 16)


def test_apply_ln_reproduces_the_layernorm_output():
    """Normalizing each component with the cached scale, then summing, gives the LayerNorm
    output of the sum (for LNPre / processed models)."""
    _, _, _, cache = model_and_cache()
    final = cache.decompose_resid(apply_ln=True)
    close(final.sum(0), cache["ln_final.hook_normalized"])
    at1 = cache.decompose_resid(layer=1, apply_ln=True)
    close(at1.sum(0), cache["blocks.1.ln1.hook_normalized"])
    mlp_in = cache.decompose_resid(layer=1, mlp_input=True, apply_ln=True, pos_slice=2)
    close(mlp_in.sum(0), cache["blocks.1.ln2.hook_normalized"][:, 2])
    acc = cache.accumulated_resid(apply_ln=True)
    close(acc[-1], cache["ln_final.hook_normalized"])
    some = cache.apply_ln_to_stack(cache.decompose_resid(), batch_slice=slice(0, 2))
    close(some.sum(0), cache["ln_final.hook_normalized"][:2])


def test_apply_ln_sums_to_hook_normalized_before_the_layernorm_weights():
    """hook_normalized is the input before w and b (TransformerLens 3.x), so the normalized
    components sum to it even in an unprocessed model whose LayerNorms have weights."""
    model, _, _, cache = model_and_cache(processed=False)
    assert not torch.allclose(model.ln_final.w, torch.ones_like(model.ln_final.w))
    close(cache.decompose_resid(apply_ln=True).sum(0), cache["ln_final.hook_normalized"])
    close(cache.decompose_resid(layer=2, apply_ln=True).sum(0), cache["blocks.2.ln1.hook_normalized"])
    close(cache.decompose_resid(layer=0, mlp_input=True, apply_ln=True).sum(0), cache["blocks.0.ln2.hook_normalized"])


def test_apply_ln_is_the_identity_without_layernorm():
    _, _, _, cache = model_and_cache(normalization_type=None)
    stack = cache.decompose_resid()
    close(cache.apply_ln_to_stack(stack), stack)


@pytest.mark.parametrize("use_attn_result", [False, True])
def test_stack_head_results_sum_to_attn_out(use_attn_result):
    model, _, _, cache = model_and_cache(use_attn_result=use_attn_result)
    assert ("blocks.0.attn.hook_result" in cache) == use_attn_result
    heads, labels = cache.stack_head_results(return_labels=True)
    assert heads.shape == (N_LAYERS * 4, B, P, 16)
    assert labels[:5] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"]
    for l in range(N_LAYERS):
        close(heads[4 * l:4 * (l + 1)].sum(0) + model.b_O[l], cache["attn_out", l])
    with_rest, labels = cache.stack_head_results(layer=2, incl_remainder=True, return_labels=True)
    assert labels[-1] == "remainder" and with_rest.shape[0] == 9
    close(with_rest.sum(0), cache["resid_pre", 2])
    assert cache.stack_head_results(layer=0).shape == (0, B, P, 16)
    close(cache.stack_head_results(layer=0, incl_remainder=True)[0], cache["resid_pre", 0])
    assert cache.stack_head_results(pos_slice=-1).shape == (N_LAYERS * 4, B, 16)
    normed = cache.stack_head_results(apply_ln=True, incl_remainder=True)
    close(normed.sum(0), cache["ln_final.hook_normalized"])


def test_logit_attrs_add_up_to_the_logits():
    model, t, logits, cache = model_and_cache()
    stack = cache.decompose_resid()
    attrs = cache.logit_attrs(stack, t)
    assert attrs.shape == (stack.shape[0], B, P)
    close(attrs.sum(0), logits.gather(-1, t[..., None])[..., 0] - model.b_U[t])
    other = (t + 1) % 11
    diff = cache.logit_attrs(stack, t, incorrect_tokens=other)
    close(diff.sum(0), logits.gather(-1, t[..., None])[..., 0] - logits.gather(-1, other[..., None])[..., 0]
          - model.b_U[t] + model.b_U[other])
    # One answer per example, read at the last position.
    last = cache.logit_attrs(cache.decompose_resid(pos_slice=-1), t[:, -1], pos_slice=-1)
    close(last.sum(0), logits[torch.arange(B), -1, t[:, -1]] - model.b_U[t[:, -1]])
    # One token for everything.
    close(cache.logit_attrs(stack, 3).sum(0), logits[..., 3] - model.b_U[3])
    with pytest.raises(ValueError, match="same shape"):
        cache.logit_attrs(stack, t, incorrect_tokens=other[:, 0])


def test_helpers_without_a_batch_dim():
    model, t, logits, cache = model_and_cache()
    _, one = model.run_with_cache(t[:1], remove_batch_dim=True)
    stack = one.decompose_resid(apply_ln=True)
    assert stack.shape[1:] == (P, 16)
    close(stack.sum(0), one["ln_final.hook_normalized"])
    attrs = one.logit_attrs(one.decompose_resid(), t[0], has_batch_dim=False)
    close(attrs.sum(0), logits[0].gather(-1, t[0, :, None])[:, 0] - model.b_U[t[0]])


def test_helpers_need_a_transformer_cache():
    cache = ActivationCache({"hook_embed": torch.zeros(1, 2, 3)})
    with pytest.raises(ValueError, match="HookedTransformer"):
        cache.decompose_resid()
    _, _, _, cache = model_and_cache(attn_only=True)
    with pytest.raises(ValueError, match="attn_only"):
        cache.accumulated_resid(incl_mid=True)
    with pytest.raises(TypeError, match="pos_slice"):
        cache.accumulated_resid(pos_slice=[0, 1])


def test_apply_ln_centres_each_component():
    """Without weight processing the components are not mean-zero, so centring matters."""
    _, t, logits, cache = model_and_cache(processed=False, normalization_type="LNPre")
    stack = cache.decompose_resid()
    assert stack.mean(-1).abs().max() > 0.1
    close(cache.apply_ln_to_stack(stack).sum(0), cache["ln_final.hook_normalized"])
    close(cache.accumulated_resid(layer=1, apply_ln=True)[-1], cache["blocks.1.ln1.hook_normalized"])
