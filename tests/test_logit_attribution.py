"""Direct logit attribution, checked against a full forward pass and ActivationCache.logit_attrs."""

import pytest
import torch

from toykit.logit_attribution import next_token_attribution
from toykit.tasks.repeated_tokens import generate_repeated_tokens
from toykit.transformer import HookedTransformer, TransformerConfig
from toykit.weight_processing import process_weights


def test_attributions_of_a_full_decomposition_sum_to_the_logits():
    torch.manual_seed(0)
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_vocab=20, n_ctx=17, attn_only=True, device="cpu")
    model = process_weights(HookedTransformer(cfg))
    tokens = generate_repeated_tokens(3, 8, 20, seed=1)
    logits, cache = model.run_with_cache(tokens)
    stack = cache.decompose_resid(apply_ln=True)  # embeddings, heads' layers, biases: sums to the final resid
    attrs = next_token_attribution(stack, model.W_U, tokens)
    assert attrs.shape == (stack.shape[0], 3, 16)
    target = logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0] - model.b_U[tokens[:, 1:]]
    assert torch.allclose(attrs.sum(0), target, atol=1e-4)
    # The same numbers as ActivationCache.logit_attrs (which applies the LayerNorm scale itself).
    heads = cache.stack_head_results()
    same = cache.logit_attrs(heads[:, :, :-1], tokens[:, 1:], pos_slice=slice(0, -1))
    mine = next_token_attribution(cache.stack_head_results(apply_ln=True), model.W_U, tokens)
    assert torch.allclose(mine, same, atol=1e-5)


def test_attribution_input_errors():
    with pytest.raises(ValueError, match="W_U must have shape \\[d_model, d_vocab\\] with d_model=4"):
        next_token_attribution(torch.randn(2, 1, 3, 4), torch.randn(5, 7), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 positions"):
        next_token_attribution(torch.randn(2, 1, 1, 4), torch.randn(4, 7), torch.zeros(1, 1, dtype=torch.long))
