"""ROME (Meng et al. 2022, Section 3): a rank-one edit of one MLP's W_out that rewrites one fact."""

import pytest
import torch

from toykit import pretrained
from toykit.model_editing import (
    FactEdit,
    compute_key,
    compute_value,
    edit_fact,
    edit_scores,
    generalisation_prefixes,
    key_covariance,
    rank_one_update,
    rome_prefixes,
)
from toykit.tasks import tinylang as tl
from toykit.transformer import HookedTransformer, TransformerConfig

VOCAB = 24


def make_model(attn_only=False):
    cfg = TransformerConfig(n_layers=2, d_model=32, n_heads=4, d_mlp=64, d_vocab=VOCAB, n_ctx=16,
                            attn_only=attn_only, seed=0, device="cpu")
    return HookedTransformer(cfg)


def no_hooks_left(model):
    return not any(hp.has_hooks for hp in model.hook_points())


def random_tokens(n=4, pos=6, seed=0):
    return torch.randint(3, VOCAB, (n, pos), generator=torch.Generator().manual_seed(seed))


# -- the closed form ------------------------------------------------------------------------------


def test_rank_one_update_inserts_the_pair_with_the_least_change():
    g = torch.Generator().manual_seed(0)
    W, b = torch.randn(6, 4, generator=g), torch.randn(4, generator=g)
    K = torch.randn(100, 6, generator=g)
    C = K.T @ K / 100
    k, v = torch.randn(6, generator=g), torch.randn(4, generator=g)
    before = [x.clone() for x in (W, b, C, k, v)]
    W_new = rank_one_update(W, b, C, k, v)
    assert all(torch.equal(x, y) for x, y in zip(before, (W, b, C, k, v)))  # inputs untouched
    torch.testing.assert_close(k @ W_new + b, v)
    assert torch.linalg.matrix_rank(W_new - W).item() == 1
    # Section 3.1: the change is along C^-1 k in W_out's row space (toykit's [d_mlp, d_model]).
    u = torch.linalg.solve(C, k)
    delta = W_new - W
    torch.testing.assert_close(delta / delta.norm(), torch.outer(u, delta[0] / u[0]) / delta.norm(),
                               rtol=1e-4, atol=1e-5)
    # A key orthogonal to u under C (k' . C^-1 k = 0) is not moved at all.
    other = torch.randn(6, generator=g)
    other = other - (other @ u) / (u @ u) * u
    torch.testing.assert_close(other @ W_new, other @ W, rtol=1e-4, atol=1e-4)


def test_rank_one_update_rejects_bad_shapes_and_singular_covariance():
    W, b, C, k, v = torch.zeros(3, 2), torch.zeros(2), torch.eye(3), torch.ones(3), torch.ones(2)
    with pytest.raises(ValueError, match="W_out"):
        rank_one_update(W[None], b, C, k, v)
    with pytest.raises(ValueError, match="C"):
        rank_one_update(W, b, torch.eye(2), k, v)
    with pytest.raises(ValueError, match="key"):
        rank_one_update(W, b, C, torch.ones(2), v)
    with pytest.raises(ValueError, match="value"):
        rank_one_update(W, b, C, k, torch.ones(3))
    with pytest.raises(ValueError, match="C must be positive definite"):
        rank_one_update(W, b, -torch.eye(3), k, v)


# -- the steps on a small random model ------------------------------------------------------------


def test_key_covariance_is_the_uncentred_second_moment_of_hook_post():
    model = make_model()
    tokens = random_tokens()
    tokens[0, -2:] = tl.TOKENIZER.pad_token_id  # padding is left out
    C = key_covariance(model, 1, tokens, batch_size=3)
    _, cache = model.run_with_cache(tokens)
    k = cache["blocks.1.mlp.hook_post"][tokens != tl.TOKENIZER.pad_token_id]
    torch.testing.assert_close(C, k.T @ k / k.shape[0])
    assert no_hooks_left(model)


def test_compute_key_and_value_leave_the_model_and_inputs_alone():
    model = make_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = random_tokens()
    subject, answer = torch.tensor([1, 1, 2, 2]), torch.tensor([5, 5, 5, 5])
    before = (tokens.clone(), subject.clone())
    key = compute_key(model, 0, tokens, subject)
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(key, cache["blocks.0.mlp.hook_post"][torch.arange(4), subject].mean(0))
    value = compute_value(model, 0, tokens, subject, answer, 7, steps=30, lr=0.2, kl_weight=0.0, weight_decay=0.0)
    assert value.shape == (32,)

    def put(act, hook):
        out = act.clone()
        out[torch.arange(4), subject] = value
        return out

    p_new = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_mlp_out", put)])[:, 5].softmax(-1)[:, 7]
    p_old = model(tokens)[:, 5].softmax(-1)[:, 7]
    assert p_new.mean() > 2 * p_old.mean()  # the optimised output pushes the new object up
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(before[0], tokens) and torch.equal(before[1], subject)
    assert no_hooks_left(model)


def test_compute_value_optimises_even_with_gradients_turned_off():
    """Notebooks run under torch.set_grad_enabled(False); v* is still found by gradient descent."""
    model = make_model()
    tokens = random_tokens()
    subject, answer = torch.tensor([1, 1, 2, 2]), torch.tensor([5, 5, 5, 5])
    args = (model, 0, tokens, subject, answer, 7)
    kwargs = dict(steps=5, lr=0.2, kl_weight=0.0, weight_decay=0.0)
    expected = compute_value(*args, **kwargs)
    with torch.no_grad():
        got = compute_value(*args, **kwargs)
    torch.testing.assert_close(got, expected)
    with torch.no_grad():
        compute_value(*args, **kwargs)
        assert not torch.is_grad_enabled()  # the caller's setting comes back


def test_bad_arguments_are_named():
    model = make_model()
    tokens = random_tokens()
    subject, answer = torch.tensor([1, 1, 1, 1]), torch.tensor([5, 5, 5, 5])
    with pytest.raises(ValueError, match="layer"):
        compute_key(model, 2, tokens, subject)
    with pytest.raises(ValueError, match="subject_pos"):
        compute_key(model, 0, tokens, torch.tensor([9, 9, 9, 9]))
    with pytest.raises(ValueError, match="subject_pos"):
        compute_key(model, 0, tokens, subject[:2])
    with pytest.raises(ValueError, match="answer_pos"):
        compute_value(model, 0, tokens, subject, answer - 10, 3)
    with pytest.raises(ValueError, match="new_object_id"):
        compute_value(model, 0, tokens, subject, answer, VOCAB)
    with pytest.raises(ValueError, match="preserve_tokens"):
        compute_value(model, 0, tokens, subject, answer, 3, preserve_tokens=tokens)
    with pytest.raises(ValueError, match="steps"):
        compute_value(model, 0, tokens, subject, answer, 3, steps=0)
    with pytest.raises(ValueError, match="kl_weight"):
        compute_value(model, 0, tokens, subject, answer, 3, kl_weight=-1.0)
    with pytest.raises(ValueError, match="attn_only"):
        key_covariance(make_model(attn_only=True), 0, tokens)
    with pytest.raises(ValueError, match="tokens"):
        key_covariance(model, 0, tokens + VOCAB)
    with pytest.raises(ValueError, match="n"):
        rome_prefixes(0)


def test_hooks_are_removed_when_the_optimisation_raises():
    model = make_model()
    tokens = random_tokens()

    def boom(act, hook):
        raise RuntimeError("boom")

    model.blocks[1].hook_resid_post.add_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            compute_value(model, 0, tokens, torch.ones(4, dtype=torch.long), torch.full((4,), 5), 3)
    finally:
        model.reset_hooks()
    assert no_hooks_left(model)
    assert all(p.requires_grad for p in model.parameters())  # frozen only during the call


# -- one TinyLang fact on the shipped checkpoint -----------------------------------------------------


@pytest.fixture(scope="module")
def tinylang():
    return pretrained.load("tinylang").eval()


@pytest.fixture(scope="module")
def covariances(tinylang):
    corpus = tl.generate_corpus(50, seed=0)
    return {layer: key_covariance(tinylang, layer, corpus) for layer in (0, 2)}


def test_generalisation_contexts_fit_and_are_not_rome_prefixes():
    contexts = generalisation_prefixes(20)
    assert len(contexts) == 20 and not set(contexts) & set(rome_prefixes(10))
    for c in contexts:
        tokens, _ = __import__("toykit.causal_tracing", fromlist=["fact_tokens"]).fact_tokens(tl.FACTS[25], c)
        assert len(tokens) <= 64


@pytest.mark.parametrize(("index", "new_object"), [(0, "london"), (62, "germany")])
def test_rome_at_layer_0_rewrites_one_fact_and_beats_the_layer_2_baseline(tinylang, covariances, index, new_object):
    fact = tl.FACTS[index]
    state = {k: v.clone() for k, v in tinylang.state_dict().items()}
    edit = edit_fact(tinylang, fact, new_object, 0, covariances[0])
    baseline = edit_fact(tinylang, fact, new_object, 2, covariances[2])
    assert isinstance(edit, FactEdit) and edit.model is not tinylang
    # The original model is unchanged, and only blocks.0.mlp.W_out moved in the copy.
    assert all(torch.equal(state[k], v) for k, v in tinylang.state_dict().items())
    changed = [k for k, v in edit.model.state_dict().items() if not torch.equal(state[k], v)]
    assert changed == ["blocks.0.mlp.W_out"]
    assert torch.linalg.matrix_rank(edit.model.blocks[0].mlp.W_out - tinylang.blocks[0].mlp.W_out).item() == 1
    scores = edit_scores(tinylang, edit, n_contexts=10, n_per_family=20)
    base = edit_scores(tinylang, baseline, n_contexts=10, n_per_family=20)
    assert scores["efficacy"] == 1.0
    assert scores["generalisation"] >= 0.5
    assert scores["specificity_other_subjects"] >= 0.9  # measured 0.985 to 1.0 over six edits
    assert scores["family_accuracy_drop"] <= 0.05
    # Layer 2's MLP output at the subject token never reaches the last position: the baseline
    # edit cannot change the fact, whatever v* is.
    assert base["efficacy"] == 0.0 and base["generalisation"] == 0.0
    assert scores["efficacy"] + scores["generalisation"] >= base["efficacy"] + base["generalisation"] + 1.5
    assert no_hooks_left(tinylang) and no_hooks_left(edit.model)


def test_a_random_key_edit_does_not_change_the_fact(tinylang, covariances):
    fact = tl.FACTS[0]
    corpus = tl.generate_corpus(2, seed=1)
    _, cache = tinylang.run_with_cache(corpus, names_filter="blocks.0.mlp.hook_post")
    random_key = cache["blocks.0.mlp.hook_post"][1, 17]  # a key from some corpus token
    edit = edit_fact(tinylang, fact, "london", 0, covariances[0], key=random_key)
    torch.testing.assert_close(random_key @ edit.model.blocks[0].mlp.W_out + edit.model.blocks[0].mlp.b_out,
                               edit.value, rtol=1e-4, atol=1e-4)  # v* went in, under the wrong key
    scores = edit_scores(tinylang, edit, n_contexts=10, n_per_family=20)
    assert scores["efficacy"] == 0.0 and scores["generalisation"] <= 0.1
    with pytest.raises(ValueError, match="key"):
        edit_fact(tinylang, fact, "london", 0, covariances[0], key=random_key[:5])


def test_edit_fact_rejects_bad_input(tinylang, covariances):
    fact = tl.FACTS[0]
    with pytest.raises(ValueError, match="new_object"):
        edit_fact(tinylang, fact, "zzz", 0, covariances[0])
    with pytest.raises(ValueError, match="new_object"):
        edit_fact(tinylang, fact, "paris", 0, covariances[0])
    with pytest.raises(TypeError, match="fact"):
        edit_fact(tinylang, ("alice", "lives_in", "paris"), "london", 0, covariances[0])
    with pytest.raises(ValueError, match="covariance"):
        edit_fact(tinylang, fact, "london", 0, covariances[0][:10])
    with pytest.raises(ValueError, match="layer"):
        edit_fact(tinylang, fact, "london", 3, covariances[0])
    with pytest.raises(TypeError, match="edit"):
        edit_scores(tinylang, tinylang)
