"""End-to-end circuits of heads, on constructed weights."""

import pytest
import torch

from toykit.circuits import full_ov_circuit, k_composition_circuit, positional_qk_circuit, top_1_accuracy
from toykit.factored_matrix import FactoredMatrix
from toykit.transformer import HookedTransformer, TransformerConfig


def small_model() -> HookedTransformer:
    cfg = TransformerConfig(n_layers=2, d_model=12, n_heads=3, d_head=4, d_vocab=10, n_ctx=9, attn_only=True,
                            normalization_type=None, device="cpu", seed=0)
    return HookedTransformer(cfg)


def test_circuits_are_the_products_they_claim():
    model = small_model()
    ov = full_ov_circuit(model, 1, 2)
    assert isinstance(ov, FactoredMatrix) and ov.shape == (10, 10)
    W_OV = model.W_V[1, 2] @ model.W_O[1, 2]
    assert torch.allclose(ov.AB, model.W_E @ W_OV @ model.W_U, atol=1e-6)
    pos = positional_qk_circuit(model, 0, 1)
    assert pos.shape == (9, 9)
    assert torch.allclose(pos.AB, model.W_pos @ model.W_Q[0, 1] @ model.W_K[0, 1].T @ model.W_pos.T, atol=1e-6)
    k = k_composition_circuit(model, src=(0, 0), dst=(1, 2))
    written = model.W_E @ model.W_V[0, 0] @ model.W_O[0, 0]
    assert torch.allclose(k.AB, model.W_E @ model.W_Q[1, 2] @ model.W_K[1, 2].T @ written.T, atol=1e-5)


def test_a_copying_head_has_top_1_accuracy_one():
    model = small_model()
    with torch.no_grad():  # embed tokens on orthogonal axes, copy them through head 1.0, read them back
        model.embed.W_E.copy_(torch.eye(10, 12))
        model.unembed.W_U.copy_(torch.eye(12, 10))
        model.blocks[1].attn.W_V[0] = torch.eye(12, 4)
        model.blocks[1].attn.W_O[0] = torch.eye(4, 12)
    # Only 4 dims pass through d_head, so tokens 0-3 are copied and the rest are not.
    assert top_1_accuracy(full_ov_circuit(model, 1, 0)) == pytest.approx(0.4)
    assert top_1_accuracy(torch.eye(5) + 0.1) == 1.0
    assert top_1_accuracy(FactoredMatrix(torch.eye(3), -torch.eye(3) + 1)) == 0.0


def test_errors():
    model = small_model()
    with pytest.raises(ValueError, match=r"head must be an int in \[0, 3\)"):
        full_ov_circuit(model, 0, 3)
    with pytest.raises(ValueError, match="src head's layer must come before"):
        k_composition_circuit(model, src=(1, 0), dst=(1, 1))
    with pytest.raises(ValueError, match=r"circuit must have shape \[n, m\] with n <= m"):
        top_1_accuracy(torch.randn(4, 3))
    with pytest.raises(TypeError, match="circuit must be a torch.Tensor or a FactoredMatrix"):
        top_1_accuracy([[1.0]])
