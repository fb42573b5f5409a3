"""Head-detection and composition scores on hand-built patterns and weights, and the data."""

import pytest
import torch

from toykit.circuits import (
    ablated_loss_by_position,
    attention_head_scores,
    composition_score,
    composition_score_baseline,
    duplicate_token_score,
    induction_score,
    k_composition_score,
    loss_by_position,
    prefix_matching_score,
    previous_token_score,
    q_composition_score,
    v_composition_score,
)
from toykit.factored_matrix import FactoredMatrix
from toykit.tasks.repeated_tokens import (
    generate_periodic_tokens,
    generate_repeated_tokens,
    repeated_half_slices,
)
from toykit.transformer import HookedTransformer, TransformerConfig


def stripe_pattern(n: int, offset: int, n_heads: int = 2, batch: int = 3) -> torch.Tensor:
    """Every query q attends fully to q + offset when that key exists, else to position 0."""
    pattern = torch.zeros(batch, n_heads, n, n)
    for q in range(n):
        k = q + offset
        pattern[:, :, q, k if 0 <= k <= q else 0] = 1.0
    return pattern


def uniform_pattern(n: int, n_heads: int = 2) -> torch.Tensor:
    causal = torch.tril(torch.ones(n, n))
    return (causal / causal.sum(-1, keepdim=True)).expand(1, n_heads, n, n)


@pytest.mark.parametrize("bos", [True, False])
def test_exact_induction_pattern_scores_one(bos):
    S = 7
    n = 2 * S + bos
    pattern = stripe_pattern(n, 1 - S)
    assert torch.allclose(prefix_matching_score(pattern, S), torch.ones(2))
    assert torch.allclose(duplicate_token_score(pattern, S), torch.zeros(2))
    # An unbatched pattern [n_heads, q, k] works too.
    assert torch.allclose(prefix_matching_score(pattern[0], S), torch.ones(2))


def test_duplicate_and_previous_token_patterns():
    S = 5
    dup = stripe_pattern(2 * S + 1, -S)
    assert torch.allclose(duplicate_token_score(dup, S), torch.ones(2))
    assert torch.allclose(prefix_matching_score(dup, S), torch.zeros(2))
    prev = stripe_pattern(2 * S + 1, -1)
    assert torch.allclose(previous_token_score(prev), torch.ones(2))
    assert torch.allclose(prefix_matching_score(prev, S), torch.zeros(2))


def test_uniform_pattern_scores_the_mean_of_one_over_window():
    S = 6
    n = 2 * S + 1
    pattern = uniform_pattern(n)
    second_copy = torch.arange(n - S, n, dtype=torch.float32)
    expected = (1 / (second_copy + 1)).mean()
    assert torch.allclose(prefix_matching_score(pattern, S), expected.expand(2))
    assert torch.allclose(duplicate_token_score(pattern, S), expected.expand(2))
    assert torch.allclose(previous_token_score(pattern), (1 / torch.arange(2, n + 1.0)).mean().expand(2))


def test_mixed_heads_are_scored_separately():
    S = 4
    induction = stripe_pattern(2 * S + 1, 1 - S, n_heads=1)
    pattern = torch.cat([induction, uniform_pattern(2 * S + 1, 1).expand(3, 1, -1, -1)], dim=1)
    scores = prefix_matching_score(pattern, S)
    assert scores[0] == 1.0 and scores[1] < 0.2


def test_bad_patterns_are_clear_errors():
    with pytest.raises(ValueError, match="seq_len=5 has 10 .* or 11"):
        prefix_matching_score(torch.rand(1, 2, 9, 9), 5)
    with pytest.raises(ValueError, match=r"pattern must have shape \[batch, n_heads, pos, pos\]"):
        prefix_matching_score(torch.rand(2, 9, 8), 4)
    with pytest.raises(TypeError, match="pattern must be a torch.Tensor"):
        previous_token_score([[1.0]])
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        duplicate_token_score(torch.rand(1, 1, 8, 8), 0)


# -- composition -------------------------------------------------------------------------------------


def test_composition_score_formula_and_extremes():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(6, 6, generator=g), torch.randn(6, 6, generator=g)
    expected = torch.linalg.matrix_norm(A @ B) / (torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(B))
    assert torch.allclose(composition_score(A, B), expected)
    # Factored inputs give the same number as dense ones.
    fa = FactoredMatrix(torch.randn(6, 2, generator=g), torch.randn(2, 6, generator=g))
    fb = FactoredMatrix(torch.randn(6, 2, generator=g), torch.randn(2, 6, generator=g))
    assert torch.allclose(composition_score(fa, fb), composition_score(fa.AB, fb.AB), atol=1e-5)
    assert torch.allclose(composition_score(fa.AB, fb), composition_score(fa.AB, fb.AB), atol=1e-5)
    # Rank one: aligned -> 1, the output orthogonal to what is read -> 0.
    e = torch.eye(6)
    assert torch.isclose(composition_score(torch.outer(e[0], e[1]), torch.outer(e[1], e[2])), torch.tensor(1.0))
    assert composition_score(torch.outer(e[0], e[1]), torch.outer(e[3], e[2])) == 0
    assert torch.isclose(composition_score(e, e), torch.tensor(6 ** -0.5))


def test_composition_score_input_errors():
    with pytest.raises(TypeError, match="W_A must be a torch.Tensor or a FactoredMatrix"):
        composition_score([[1.0]], torch.eye(2))
    with pytest.raises(ValueError, match="must share d"):
        composition_score(torch.eye(3), torch.eye(4))


def composed_model() -> HookedTransformer:
    """Layer 0 head 0 writes e1 (reading e0); layer 1 head 2's keys read only e1."""
    cfg = TransformerConfig(n_layers=2, d_model=8, n_heads=4, d_head=2, d_vocab=10, n_ctx=12, attn_only=True,
                            normalization_type=None, device="cpu")
    model = HookedTransformer(cfg)
    e = torch.eye(8)
    with torch.no_grad():
        a0 = model.blocks[0].attn
        a0.W_V[0] = torch.stack([e[0], torch.zeros(8)], dim=1)  # [d_model, d_head]
        a0.W_O[0] = torch.stack([e[1], torch.zeros(8)], dim=0)  # [d_head, d_model]
        model.blocks[1].attn.W_K[2] = torch.stack([e[1], torch.zeros(8)], dim=1)
    return model


def test_k_composition_on_constructed_weights():
    model = composed_model()
    k = k_composition_score(model)
    assert k.shape == (4, 4)
    assert torch.isclose(k[0, 2], torch.tensor(1.0), atol=1e-5)
    assert divmod(int(k.argmax()), 4) == (0, 2)
    # It is the paper's ‖W_QKᵀ W_OV‖ / (‖W_QK‖ ‖W_OV‖) with column-vector matrices (= our transposes).
    qk_col, ov_col = model.W_QK[1, 2].T, model.W_OV[0, 0].T
    paper = torch.linalg.matrix_norm(qk_col.T @ ov_col) / (torch.linalg.matrix_norm(qk_col)
                                                            * torch.linalg.matrix_norm(ov_col))
    assert torch.isclose(k[0, 2], paper, atol=1e-5)
    assert torch.allclose(k[1:, :], k_composition_score(model, process=False)[1:, :], atol=1e-6)
    # The queries of head 1.2 read random directions, so its Q-composition is not perfect.
    assert q_composition_score(model)[0, 2] < 0.99
    assert v_composition_score(model).shape == (4, 4)


def test_composition_layer_errors_and_baseline():
    model = composed_model()
    with pytest.raises(ValueError, match="src_layer < dst_layer"):
        k_composition_score(model, 1, 1)
    with pytest.raises(ValueError, match=r"dst_layer must be an int in \[0, n_layers=2\)"):
        k_composition_score(model, 0, 2)
    base = composition_score_baseline(64, 16, n_samples=100)
    assert 0.05 < base < 0.25


# -- model-level helpers --------------------------------------------------------------------------------


def tiny_model() -> HookedTransformer:
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_vocab=20, n_ctx=17, attn_only=True, device="cpu")
    return HookedTransformer(cfg)


def test_model_scores_shapes_and_losses():
    model = tiny_model()
    scores = induction_score(model, batch=4)
    assert scores.shape == (2, 2) and ((scores >= 0) & (scores <= 1)).all()
    tokens = generate_repeated_tokens(4, 8, 20, seed=0)
    all_scores = attention_head_scores(model, tokens, 8)
    assert set(all_scores) == {"prefix_matching", "duplicate_token", "previous_token"}
    assert torch.allclose(all_scores["prefix_matching"], induction_score(model, seq_len=8, batch=4, seed=0))
    per_pos = loss_by_position(model, tokens)
    assert per_pos.shape == (16,)
    same = ablated_loss_by_position(model, tokens, [])
    assert torch.allclose(same, per_pos)
    ablated = ablated_loss_by_position(model, tokens, [(0, 1), (1, 0)], method="zero")
    assert ablated.shape == (16,) and not torch.allclose(ablated, per_pos)
    with pytest.raises(ValueError, match="heads must be"):
        ablated_loss_by_position(model, tokens, [(2, 0)])
    with pytest.raises(ValueError, match="more than n_ctx=17"):
        induction_score(model, seq_len=9)


# -- data -----------------------------------------------------------------------------------------------


def test_repeated_tokens_layout():
    tokens = generate_repeated_tokens(5, 6, 11, bos=3, seed=1)
    assert tokens.shape == (5, 13) and tokens.dtype == torch.long
    assert (tokens[:, 0] == 3).all() and (tokens[:, 1:] != 3).all()
    assert torch.equal(tokens[:, 1:7], tokens[:, 7:])
    assert ((tokens >= 0) & (tokens < 11)).all()
    assert generate_repeated_tokens(2, 4, 11, bos=None, seed=0).shape == (2, 8)
    assert torch.equal(generate_repeated_tokens(5, 6, 11, bos=3, seed=1), tokens)
    g = torch.Generator().manual_seed(1)
    assert torch.equal(generate_repeated_tokens(5, 6, 11, bos=3, generator=g), tokens)
    with pytest.raises(ValueError, match="bos must be None or an int in"):
        generate_repeated_tokens(1, 4, 10, bos=10)
    with pytest.raises(ValueError, match="pass either seed or generator, not both"):
        generate_repeated_tokens(1, 4, 10, seed=0, generator=g)


def test_periodic_tokens_repeat_with_their_own_period():
    tokens = generate_periodic_tokens(50, 40, 100, 3, 9, bos=0, seed=0)
    assert tokens.shape == (50, 40) and (tokens[:, 0] == 0).all()
    body = tokens[:, 1:]
    periods = set()
    for row in body:
        p = next(p for p in range(3, 10) if torch.equal(row[p:], row[:-p]))
        periods.add(p)
    assert len(periods) > 3  # rows differ in period, so no fixed offset predicts the repeats
    with pytest.raises(ValueError, match="min_period must be <= max_period"):
        generate_periodic_tokens(1, 10, 10, 5, 4)


def test_repeated_half_slices():
    first, repeated = repeated_half_slices(13, 6)
    # Loss entry i predicts token i + 1: the first block's targets are tokens 2..6, the repeat's 7..12.
    assert (first.start, first.stop) == (1, 6) and (repeated.start, repeated.stop) == (6, 12)
    first, repeated = repeated_half_slices(12, 6)
    assert (first.start, first.stop) == (0, 5) and (repeated.start, repeated.stop) == (5, 11)
    with pytest.raises(ValueError, match="n_tokens must be"):
        repeated_half_slices(10, 6)
