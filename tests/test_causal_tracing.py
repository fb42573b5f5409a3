"""Causal tracing (Meng et al. 2022, Section 2.1): corrupt the subject with noise, restore one
hidden state or module output at a time, and read back the probability of the right object."""

import pytest
import torch

from toykit import pretrained
from toykit.causal_tracing import (
    POSITION_CATEGORIES,
    causal_trace,
    fact_tokens,
    noise_scale,
    restore_hook,
    site_names,
    trace_facts,
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


@pytest.fixture(scope="module")
def tiny():
    return make_model()


@pytest.fixture(scope="module")
def tinylang():
    return pretrained.load("tinylang").eval()


def batch(n=3, pos=6, seed=0):
    tokens = torch.randint(0, VOCAB, (n, pos), generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(n, pos, dtype=torch.bool)
    mask[:, 1:3] = True  # a two-token subject at positions 1 and 2
    return tokens, mask, torch.arange(n)


def test_site_names_follow_transformerlens(tiny):
    assert site_names(tiny) == (("hook_embed",), ("blocks.0.hook_resid_post",), ("blocks.1.hook_resid_post",))
    assert site_names(tiny, "mlp") == (("blocks.0.hook_mlp_out",), ("blocks.1.hook_mlp_out",))
    assert site_names(tiny, "attn", window=2) == (("blocks.0.hook_attn_out",),
                                                  ("blocks.0.hook_attn_out", "blocks.1.hook_attn_out"))
    for row in site_names(tiny, "mlp", window=3):
        for name in row:
            assert name in tiny.hook_dict


@pytest.mark.parametrize("kind", ["resid", "mlp", "attn"])
def test_zero_noise_restores_the_clean_probability_everywhere(tiny, kind):
    tokens, mask, answers = batch()
    tr = causal_trace(tiny, tokens, mask, answers, noise=0.0, kind=kind, n_samples=2)
    torch.testing.assert_close(tr.corrupted, tr.clean)
    torch.testing.assert_close(tr.scores, tr.clean[:, None, None].expand_as(tr.scores))
    assert torch.all(tr.indirect_effect.abs() < 1e-5)


def test_restoring_where_it_must_gives_back_the_clean_or_corrupted_value(tiny):
    tokens, mask, answers = batch()
    tr = causal_trace(tiny, tokens, mask, answers, noise=2.0, n_samples=3)
    assert torch.all((tr.clean - tr.corrupted).abs() > 1e-4)  # the noise does something
    # Restoring the last layer's output at the last position restores the logits exactly.
    torch.testing.assert_close(tr.scores[:, -1, -1], tr.clean)
    # Positions before the subject and the embeddings of non-subject tokens saw no noise, so
    # restoring them changes nothing.
    torch.testing.assert_close(tr.scores[:, :, 0], tr.corrupted[:, None].expand(-1, 3))
    torch.testing.assert_close(tr.scores[:, 0, 3:], tr.corrupted[:, None].expand(-1, 3))
    # The last layer's outputs at positions other than the last never reach the last logits.
    torch.testing.assert_close(tr.scores[:, -1, :-1], tr.corrupted[:, None].expand(-1, 5))


def test_a_one_token_subject_restored_at_the_embedding_gives_the_clean_value(tiny):
    tokens, mask, answers = batch()
    mask[:, 2] = False
    tr = causal_trace(tiny, tokens, mask, answers, noise=2.0, n_samples=3)
    torch.testing.assert_close(tr.scores[:, 0, 1], tr.clean)
    assert tr.total_effect.abs().min() > 1e-4


def test_the_trace_is_seeded_and_leaves_inputs_and_hooks_alone(tiny):
    tokens, mask, answers = batch()
    before = (tokens.clone(), mask.clone(), answers.clone())
    a = causal_trace(tiny, tokens, mask, answers, noise=1.0, kind="mlp", n_samples=2, seed=3)
    b = causal_trace(tiny, tokens, mask, answers, noise=1.0, kind="mlp", n_samples=2, seed=3)
    c = causal_trace(tiny, tokens, mask, answers, noise=1.0, kind="mlp", n_samples=2, seed=4)
    torch.testing.assert_close(a.scores, b.scores)
    assert not torch.allclose(a.scores, c.scores)
    assert all(torch.equal(x, y) for x, y in zip(before, (tokens, mask, answers)))
    assert no_hooks_left(tiny)


def test_hooks_are_removed_when_the_model_raises(tiny):
    tokens, mask, answers = batch()

    def boom(act, hook):
        raise RuntimeError("boom")

    tiny.blocks[1].hook_resid_post.add_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            causal_trace(tiny, tokens, mask, answers, noise=1.0, n_samples=1)
    finally:
        tiny.reset_hooks()
    # Only the hook added here was left behind; causal_trace removed all of its own.
    tr = causal_trace(tiny, tokens, mask, answers, noise=0.0, n_samples=1)
    torch.testing.assert_close(tr.scores[:, -1, -1], tr.clean)
    assert no_hooks_left(tiny)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise": -1.0}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"noise": 1.0, "kind": "heads"}, "kind"),
        ({"noise": 1.0, "n_samples": 0}, "n_samples"),
        ({"noise": 1.0, "window": 0}, "window"),
        ({"noise": 1.0, "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_named(tiny, kwargs, match):
    tokens, mask, answers = batch()
    with pytest.raises(ValueError, match=match):
        causal_trace(tiny, tokens, mask, answers, **kwargs)


def test_bad_tensors_are_named(tiny):
    tokens, mask, answers = batch()
    with pytest.raises(ValueError, match="subject_mask"):
        causal_trace(tiny, tokens, mask[:, :-1], answers, noise=1.0)
    with pytest.raises(TypeError, match="subject_mask"):
        causal_trace(tiny, tokens, mask.long(), answers, noise=1.0)
    with pytest.raises(ValueError, match="subject_mask"):
        causal_trace(tiny, tokens, torch.zeros_like(mask), answers, noise=1.0)
    with pytest.raises(ValueError, match="answer_ids"):
        causal_trace(tiny, tokens, mask, answers[:2], noise=1.0)
    with pytest.raises(ValueError, match="answer_ids"):
        causal_trace(tiny, tokens, mask, answers + VOCAB, noise=1.0)
    with pytest.raises(ValueError, match="tokens"):
        causal_trace(tiny, tokens + VOCAB, mask, answers, noise=1.0)
    with pytest.raises(TypeError, match="model"):
        causal_trace(torch.nn.Linear(2, 2), tokens, mask, answers, noise=1.0)
    with pytest.raises(ValueError, match="attn_only"):
        causal_trace(make_model(attn_only=True), tokens, mask, answers, noise=1.0, kind="mlp")
    with pytest.raises(ValueError, match="subject_ids"):
        noise_scale(tiny, torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="multiplier"):
        noise_scale(tiny, torch.tensor([1]), multiplier=-1.0)


def test_restore_hook_sets_the_positions_back_in_every_copy_and_nothing_else():
    g = torch.Generator().manual_seed(0)
    clean, act = torch.randn(6, 2, 3, generator=g), torch.randn(4, 6, 2, 3, generator=g)
    before = clean.clone(), act.clone()
    out = restore_hook(clean, [1, -1])(act, None)
    assert torch.equal(clean, before[0]) and torch.equal(act, before[1]), "restore_hook's hook modified an input"
    assert torch.equal(out[:, [1, 5]], clean[[1, 5]].expand(4, -1, -1, -1))
    assert torch.equal(out[:, [0, 2, 3, 4]], act[:, [0, 2, 3, 4]])
    assert torch.equal(restore_hook(clean, 2)(act, None), restore_hook(clean, [2])(act, None))


def test_restore_hook_rejects_bad_input_naming_the_argument():
    clean = torch.zeros(5, 3)
    with pytest.raises(TypeError, match="clean_act"):
        restore_hook([[0.0]], 0)
    with pytest.raises(ValueError, match="positions"):
        restore_hook(clean, 5)
    with pytest.raises(ValueError, match="positions"):
        restore_hook(clean, [])
    with pytest.raises(ValueError, match="positions"):
        restore_hook(clean, slice(0, 2))
    with pytest.raises(ValueError, match=r"act must be .* = \[n_copies, 5, 3\], got \[2, 4, 3\]"):
        restore_hook(clean, 0)(torch.zeros(2, 4, 3), None)


def test_noise_scale_is_three_times_the_subject_embedding_std(tiny):
    ids = torch.tensor([3, 5, 5])
    expected = 3 * tiny.W_E.detach()[ids].std().item()
    assert noise_scale(tiny, ids) == pytest.approx(expected)


def test_fact_tokens_place_the_subject_after_a_prefix():
    fact = tl.FACTS[0]
    tokens, subject = fact_tokens(fact)
    assert tl.TOKENIZER.to_str_tokens(tokens) == ["<bos>", "alice", "lives", "in"] and subject == 1
    tokens, subject = fact_tokens(fact, "the cat is warm.")
    words = tl.TOKENIZER.to_str_tokens(tokens)
    assert words[subject] == "alice" and words[subject - 1] == "<eos>" and words[-1] == "in"
    with pytest.raises(TypeError, match="fact"):
        fact_tokens(("alice", "lives_in", "paris"))


def test_tinylang_facts_trace_to_the_last_token_and_to_layer_0(tinylang):
    facts = [f for f in tl.FACTS if f.relation == "lives_in"][:10]
    ft = trace_facts(tinylang, facts, n_samples=4)
    assert torch.all(ft.clean > 0.9)
    assert ft.corrupted.mean() < 0.6  # 3 sigma of noise on the subject hides who it is
    cats = {c: i for i, c in enumerate(POSITION_CATEGORIES)}
    scores = ft.scores
    # Restoring the subject's embedding undoes the noise: the clean value, exactly.
    torch.testing.assert_close(scores[0, cats["subject"]], ft.clean.mean())
    # <bos> saw no noise: restoring it changes nothing anywhere.
    torch.testing.assert_close(scores[:, cats["<bos>"]], ft.corrupted.mean().expand(scores.shape[0]))
    assert torch.isnan(scores[:, cats["further"]]).all()  # "lives in" has no further token
    # The peak (embedding row left out) is at the last token, and the last token's hidden state
    # after block 0 carries the fact far better than the subject's own later states.
    row, cat = ft.peak()
    assert cat == "last"
    assert scores[1, cats["last"]] > scores[1, cats["subject"]] + 0.3
    mlp = trace_facts(tinylang, facts, kind="mlp", n_samples=4)
    # MLP 0 at the last token matters more than any later MLP there.
    assert mlp.indirect_effect[0, cats["last"]] > mlp.indirect_effect[1:, cats["last"]].max() + 0.1
    assert no_hooks_left(tinylang)
