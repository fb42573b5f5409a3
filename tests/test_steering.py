"""Steering vectors: activation addition (Turner et al. 2023), contrastive activation addition
(Rimsky et al. 2023), the hook that adds them, and the sweep of success against side effects."""

import pytest
import torch

from toykit import pretrained, steering
from toykit.patching import kl_divergence
from toykit.sae import clamp_latent_hook, make_sae
from toykit.steering import (
    MatchedKL,
    SteeringSweep,
    actadd_vector,
    add_steering_vector,
    caa_vector,
    intervention_sweep,
    match_kl,
    mean_difference,
    position_mask,
    steer_resid,
    steering_hook,
    steering_sweep,
)
from toykit.tasks import tinylang as tl
from toykit.transformer import HookedTransformer, TransformerConfig

VOCAB, D = 24, 32


def make_model(attn_only=False, seed=0):
    cfg = TransformerConfig(n_layers=2, d_model=D, n_heads=4, d_mlp=64, d_vocab=VOCAB, n_ctx=16,
                            attn_only=attn_only, seed=seed, device="cpu")
    return HookedTransformer(cfg)


def tokens(n=5, pos=8, seed=0):
    return torch.randint(0, VOCAB, (n, pos), generator=torch.Generator().manual_seed(seed))


def no_hooks_left(model):
    return not any(hp.has_hooks for hp in model.hook_points())


@pytest.fixture(scope="module")
def model():
    return make_model()


# -- steer_resid (Chapter 05) keeps its behaviour ----------------------------------------------------


def test_steer_resid_adds_the_unit_vector_at_one_position_per_prompt():
    resid = torch.zeros(2, 3, 2)
    out = steer_resid(resid, torch.tensor([3.0, 4.0]), 10.0, torch.tensor([0, 2]))
    assert torch.equal(resid, torch.zeros(2, 3, 2))
    expected = torch.zeros(2, 3, 2)
    expected[0, 0] = expected[1, 2] = torch.tensor([6.0, 8.0])
    torch.testing.assert_close(out, expected)


# -- adding a vector ---------------------------------------------------------------------------------


def test_add_steering_vector_at_every_kind_of_position():
    g = torch.Generator().manual_seed(0)
    resid = torch.randn(3, 5, 4, generator=g)
    before = resid.clone()
    v = torch.randn(4, generator=g)
    expected = resid.clone()
    expected += 2.0 * v
    torch.testing.assert_close(add_steering_vector(resid, v, 2.0), expected)  # every position
    expected = resid.clone()
    expected[:, 3] += -1.5 * v
    torch.testing.assert_close(add_steering_vector(resid, v, -1.5, positions=3), expected)
    torch.testing.assert_close(add_steering_vector(resid, v, -1.5, positions=-2), expected)
    expected = resid.clone()
    expected[:, 2:] += 0.5 * v
    torch.testing.assert_close(add_steering_vector(resid, v, 0.5, positions=slice(2, None)), expected)
    expected = resid.clone()
    for row, p in enumerate([0, 4, 2]):
        expected[row, p] += 3.0 * v
    torch.testing.assert_close(add_steering_vector(resid, v, 3.0, positions=torch.tensor([0, 4, 2])), expected)
    torch.testing.assert_close(add_steering_vector(resid, v, 3.0, positions=torch.tensor([0, -1, 2])), expected)
    assert torch.equal(resid, before), "add_steering_vector modified resid"
    assert torch.equal(add_steering_vector(resid, v, 0.0), resid)  # coefficient 0 changes nothing, exactly


def test_an_actadd_block_is_added_from_the_alignment_position():
    resid = torch.zeros(2, 6, 3)
    block = torch.arange(6.0).reshape(2, 3) + 1  # [n_pos=2, d_model=3]
    out = add_steering_vector(resid, block, 2.0, positions=3)
    expected = torch.zeros(2, 6, 3)
    expected[:, 3:5] = 2.0 * block
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(add_steering_vector(resid, block, 1.0)[:, :2], block.expand(2, 2, 3))
    with pytest.raises(ValueError, match="ActAdd block has 2 positions starting at 5"):
        add_steering_vector(resid, block, 1.0, positions=5)
    with pytest.raises(ValueError, match="positions must be None or the int position >= 0"):
        add_steering_vector(resid, block, 1.0, positions=slice(1, None))


def test_add_steering_vector_rejects_bad_input_naming_the_argument():
    resid = torch.zeros(2, 5, 4)
    with pytest.raises(ValueError, match="vector must have d_model=4"):
        add_steering_vector(resid, torch.ones(3), 1.0)
    with pytest.raises(TypeError, match="vector must be a torch.Tensor"):
        add_steering_vector(resid, [1.0] * 4, 1.0)
    with pytest.raises(ValueError, match="vector must have finite entries"):
        add_steering_vector(resid, torch.tensor([1.0, float("inf"), 0.0, 0.0]), 1.0)
    with pytest.raises(TypeError, match="coeff must be a number"):
        add_steering_vector(resid, torch.ones(4), "2")
    with pytest.raises(TypeError, match="coeff must be a number"):
        add_steering_vector(resid, torch.ones(4), True)
    with pytest.raises(ValueError, match="positions=5 is out of range for 5 positions"):
        add_steering_vector(resid, torch.ones(4), 1.0, positions=5)
    with pytest.raises(ValueError, match=r"positions must have shape \[2\], got \[3\]"):
        add_steering_vector(resid, torch.ones(4), 1.0, positions=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="positions must lie in"):
        add_steering_vector(resid, torch.ones(4), 1.0, positions=torch.tensor([0, 9]))
    with pytest.raises(TypeError, match="positions must be None, an int, a slice or an int tensor"):
        add_steering_vector(resid, torch.ones(4), 1.0, positions=[0, 1])
    with pytest.raises(ValueError, match=r"resid must have shape \[batch, pos, d_model\]"):
        add_steering_vector(torch.zeros(5, 4), torch.ones(4), 1.0)


def test_steering_hook_equals_adding_by_hand_and_never_edits_its_input(model):
    toks = tokens()
    v = torch.randn(D, generator=torch.Generator().manual_seed(1))
    hook = steering_hook(v, 3.0, positions=torch.tensor([7, 6, 5, 4, 3]))
    act = torch.randn(5, 8, D)
    before = act.clone()
    out = hook(act, None)
    assert out is not act and torch.equal(act, before)
    # Through the model: the same as stopping at block 1, adding by hand and going on.
    steered = model.run_with_hooks(toks, fwd_hooks=[("blocks.1.hook_resid_pre", hook)])
    resid = model(toks, stop_at_layer=1)
    resid[torch.arange(5), torch.tensor([7, 6, 5, 4, 3])] += 3.0 * v
    torch.testing.assert_close(steered, model(resid, start_at_layer=1))
    assert no_hooks_left(model)
    assert (steered - model(toks)).abs().max() > 1e-3


def test_steering_hook_checks_its_arguments_when_built():
    with pytest.raises(TypeError, match="vector must be a torch.Tensor"):
        steering_hook("v", 1.0)
    with pytest.raises(TypeError, match="coeff must be a number"):
        steering_hook(torch.ones(4), None)
    with pytest.raises(TypeError, match="positions must be None, an int, a slice"):
        steering_hook(torch.ones(4), 1.0, positions=1.5)


def test_steering_hook_is_removed_after_an_exception(model):
    toks = tokens()
    clean = model(toks)
    with pytest.raises(RuntimeError, match="boom"):
        with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", steering_hook(torch.ones(D), 5.0))]):
            model(toks)
            raise RuntimeError("boom")
    assert no_hooks_left(model)
    assert torch.equal(model(toks), clean)


# -- vectors from prompts --------------------------------------------------------------------------


def test_actadd_vector_is_the_per_position_difference_of_the_residual_stream(model):
    plus, minus = tokens(1, 6, seed=1)[0], tokens(1, 6, seed=2)[0]
    before = plus.clone()
    v = actadd_vector(model, plus, minus, "blocks.1.hook_resid_mid")
    _, cache_plus = model.run_with_cache(plus[None])
    _, cache_minus = model.run_with_cache(minus[None])
    assert v.shape == (6, D)
    torch.testing.assert_close(v, cache_plus["blocks.1.hook_resid_mid"][0] - cache_minus["blocks.1.hook_resid_mid"][0])
    assert torch.equal(plus, before)
    # Adding the whole block at the front of the negative prompt with c=1 turns its residual
    # stream at that hook into the positive prompt's (Turner et al.'s construction, exactly).
    _, steered = model.run_with_cache(minus[None], names_filter="blocks.1.hook_resid_mid")
    steered = add_steering_vector(steered["blocks.1.hook_resid_mid"], v, 1.0)
    torch.testing.assert_close(steered[0], cache_plus["blocks.1.hook_resid_mid"][0])


def test_actadd_and_caa_reject_bad_input(model):
    t = tokens(1, 6)[0]
    with pytest.raises(ValueError, match="positive and negative must have the same length"):
        actadd_vector(model, t, t[:5], "blocks.0.hook_resid_pre")
    with pytest.raises(ValueError, match="hook_name must be blocks.{layer}.hook_resid_pre"):
        actadd_vector(model, t, t, "blocks.0.hook_attn_out")
    with pytest.raises(TypeError, match="hook_name must be a string"):
        caa_vector(model, tokens(), tokens(), 3)
    with pytest.raises(ValueError, match="hook_name: unknown hook name 'blocks.7.hook_resid_pre'"):
        caa_vector(model, tokens(), tokens(), "blocks.7.hook_resid_pre")
    with pytest.raises(ValueError, match="hook_name: .*attn_only"):
        caa_vector(make_model(attn_only=True), tokens(), tokens(), "blocks.0.hook_resid_mid")
    with pytest.raises(ValueError, match=r"negative must have shape \[n_pairs, \*\] with n_pairs=5"):
        caa_vector(model, tokens(), tokens(4), "blocks.0.hook_resid_pre")
    with pytest.raises(TypeError, match="positive must be an integer tensor"):
        caa_vector(model, tokens().float(), tokens(), "blocks.0.hook_resid_pre")


def planted_pairs(model, n_pairs, seed, noise=1.0):
    """Contrast pairs whose last tokens' embeddings differ by a planted direction u plus noise.

    At blocks.0.hook_resid_pre (embeddings), pair i's difference at the last position is
    u + noise_i (the other tokens and the position embeddings cancel)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(D, generator=g)
    u = u / u.norm()
    positive = torch.arange(n_pairs) % (VOCAB // 2)
    negative = positive + VOCAB // 2
    with torch.no_grad():
        jitter = noise * torch.randn(n_pairs, D, generator=g) / D**0.5
        model.embed.W_E[negative] = model.embed.W_E[positive] - u - jitter
    prefix = torch.randint(0, VOCAB, (n_pairs, 5), generator=g)
    return torch.cat([prefix, positive[:, None]], 1), torch.cat([prefix, negative[:, None]], 1), u


def test_caa_recovers_a_planted_direction_better_than_one_pair_or_a_random_vector():
    model = make_model(seed=3)
    # Twelve distinct pairs, each used twice with different prefixes: 24 contrast pairs.
    positive, negative, u = planted_pairs(model, 24, seed=0)
    caa = caa_vector(model, positive, negative, "blocks.0.hook_resid_pre")
    one_pair = actadd_vector(model, positive[0], negative[0], "blocks.0.hook_resid_pre")[-1]
    random = torch.randn(D, generator=torch.Generator().manual_seed(9))
    cos = lambda a: (torch.nn.functional.cosine_similarity(a, u, dim=0)).item()  # noqa: E731
    assert cos(caa) > 0.9, cos(caa)
    assert cos(caa) > cos(one_pair) + 0.1, (cos(caa), cos(one_pair))
    assert cos(caa) > abs(cos(random)) + 0.5
    # Each pair's difference, read at its answer position, is the mean over pairs.
    answer = torch.full((24,), 5)
    torch.testing.assert_close(caa_vector(model, positive, negative, "blocks.0.hook_resid_pre", pos=answer), caa)


def test_mean_difference_reads_each_pair_at_its_own_position():
    g = torch.Generator().manual_seed(0)
    pos_acts, neg_acts = torch.randn(5, 6, 4, generator=g), torch.randn(5, 6, 4, generator=g)
    positions = torch.tensor([0, 5, 2, -1, 3])
    before = pos_acts.clone(), neg_acts.clone(), positions.clone()
    v = mean_difference(pos_acts, neg_acts, positions)
    expected = torch.stack([pos_acts[i, p] - neg_acts[i, p] for i, p in enumerate(positions.tolist())]).mean(0)
    torch.testing.assert_close(v, expected)
    assert all(torch.equal(a, b) for a, b in zip(before, (pos_acts, neg_acts, positions)))
    # The mean of the differences is the difference of the means (what a probe's mean difference is).
    rows = torch.arange(5)
    torch.testing.assert_close(v, pos_acts[rows, positions].mean(0) - neg_acts[rows, positions].mean(0))


def test_mean_difference_rejects_bad_input_naming_the_argument():
    acts = torch.zeros(3, 4, 2)
    with pytest.raises(ValueError, match=r"neg_acts must have shape .* with pos=4"):
        mean_difference(acts, torch.zeros(3, 5, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="positions must have shape"):
        mean_difference(acts, acts, torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="positions must be an integer tensor"):
        mean_difference(acts, acts, torch.zeros(3))
    with pytest.raises(ValueError, match="positions must lie in"):
        mean_difference(acts, acts, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="at least one pair"):
        mean_difference(torch.zeros(0, 4, 2), torch.zeros(0, 4, 2), torch.zeros(0, dtype=torch.long))


def test_caa_is_the_mean_of_the_pair_differences_at_each_pairs_position(model):
    positive, negative = tokens(4, 7, seed=4), tokens(4, 9, seed=5)
    pos, neg_pos = torch.tensor([6, 2, 3, 4]), torch.tensor([8, 1, 0, 5])
    v = caa_vector(model, positive, negative, "blocks.1.hook_resid_post", pos=pos, negative_pos=neg_pos)
    _, cp = model.run_with_cache(positive)
    _, cn = model.run_with_cache(negative)
    rows = torch.arange(4)
    diffs = cp["blocks.1.hook_resid_post"][rows, pos] - cn["blocks.1.hook_resid_post"][rows, neg_pos]
    torch.testing.assert_close(v, diffs.mean(0))


# -- the sweep -------------------------------------------------------------------------------------------


def sweep_inputs():
    return tokens(6, 8, seed=6), tokens(4, 8, seed=7), tokens(3, 10, seed=8)


def test_sweep_is_exact_at_coefficient_zero_and_costs_more_as_the_coefficient_grows(model):
    prompts, unrelated, heldout = sweep_inputs()
    v = torch.randn(D, generator=torch.Generator().manual_seed(10))
    saved = [t.clone() for t in (prompts, unrelated, heldout, v)]
    sweep = steering_sweep(model, v, "blocks.0.hook_resid_post", [0.0, 1.0, 4.0, 16.0], prompts,
                           unrelated=unrelated, heldout=heldout, target_ids=3, baseline_ids=5)
    for a, b in zip(saved, (prompts, unrelated, heldout, v)):
        assert torch.equal(a, b), "steering_sweep modified an input"
    assert no_hooks_left(model)
    assert sweep.coeffs.tolist() == [0.0, 1.0, 4.0, 16.0]
    assert sweep.success_rate.shape == sweep.kl.shape == sweep.loss.shape == (4,)
    assert sweep.kl[0].item() == 0.0
    assert sweep.loss[0].item() == pytest.approx(sweep.clean_loss, abs=1e-6)
    assert sweep.success_rate[0].item() == sweep.clean_success_rate
    assert sweep.kl[1] > 0 and sweep.kl[3] > sweep.kl[1]
    assert sweep.loss[3] != sweep.clean_loss
    # The side effect is patching.kl_divergence over every position, by hand:
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", steering_hook(v, 4.0))]):
        steered = model(unrelated)
    assert sweep.kl[2].item() == pytest.approx(kl_divergence(steered, model(unrelated), pos=None).item(), rel=1e-5)
    assert "c=+16" in repr(sweep)


def test_sweep_success_counts_prompts_where_the_target_beats_the_baseline(model):
    prompts, unrelated, heldout = sweep_inputs()
    target, baseline = 3, 5
    # Steer along the unembedding difference of the two tokens, added after the last block:
    # a large coefficient must then make the target win on every prompt.
    direction = model.W_U[:, target] - model.W_U[:, baseline]
    sweep = steering_sweep(model, direction, "blocks.1.hook_resid_post", [-50.0, 0.0, 50.0], prompts,
                           unrelated=unrelated, heldout=heldout, target_ids=target, baseline_ids=baseline)
    assert sweep.success_rate.tolist()[0] == 0.0 and sweep.success_rate.tolist()[2] == 1.0
    # The same with a user success function (and per-prompt answer positions).
    answer_pos = torch.tensor([7, 6, 5, 7, 7, 7])

    def success(logits):
        rows = torch.arange(logits.shape[0])
        at = logits[rows, answer_pos]
        return at[:, target] > at[:, baseline]

    by_fn = steering_sweep(model, direction, "blocks.1.hook_resid_post", [-50.0, 0.0, 50.0], prompts,
                           unrelated=unrelated, heldout=heldout, success=success)
    by_ids = steering_sweep(model, direction, "blocks.1.hook_resid_post", [-50.0, 0.0, 50.0], prompts,
                            unrelated=unrelated, heldout=heldout, target_ids=target, baseline_ids=baseline,
                            answer_pos=answer_pos)
    assert torch.equal(by_fn.success_rate, by_ids.success_rate)


def test_sweep_removes_its_hook_even_when_the_metric_raises(model):
    prompts, unrelated, heldout = sweep_inputs()
    clean = model(prompts)

    def broken(logits):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        steering_sweep(model, torch.ones(D), "blocks.0.hook_resid_pre", [0.0, 2.0], prompts,
                       unrelated=unrelated, heldout=heldout, success=broken)
    assert no_hooks_left(model)
    assert torch.equal(model(prompts), clean)


def test_sweep_rejects_bad_input(model):
    prompts, unrelated, heldout = sweep_inputs()
    kw = dict(unrelated=unrelated, heldout=heldout, target_ids=3, baseline_ids=5)
    hook = "blocks.0.hook_resid_pre"
    with pytest.raises(TypeError, match="positions must be None, an int or a slice"):
        steering_sweep(model, torch.ones(D), hook, [1.0], prompts, positions=torch.zeros(6, dtype=torch.long), **kw)
    with pytest.raises(ValueError, match="coeffs must be a non-empty"):
        steering_sweep(model, torch.ones(D), hook, [], prompts, **kw)
    with pytest.raises(TypeError, match="coeffs must be a sequence of numbers"):
        steering_sweep(model, torch.ones(D), hook, 2.0, prompts, **kw)
    with pytest.raises(ValueError, match="vector must have d_model=32"):
        steering_sweep(model, torch.ones(D + 1), hook, [1.0], prompts, **kw)
    with pytest.raises(ValueError, match="heldout needs at least 2 positions"):
        steering_sweep(model, torch.ones(D), hook, [1.0], prompts, unrelated=unrelated, heldout=heldout[:, :1],
                       target_ids=3, baseline_ids=5)
    with pytest.raises(ValueError, match="give either success or target_ids"):
        steering_sweep(model, torch.ones(D), hook, [1.0], prompts, success=lambda x: x, **kw)
    with pytest.raises(ValueError, match="give success"):
        steering_sweep(model, torch.ones(D), hook, [1.0], prompts, unrelated=unrelated, heldout=heldout)
    with pytest.raises(ValueError, match=r"success must return a tensor \[batch\]"):
        steering_sweep(model, torch.ones(D), hook, [1.0], prompts, unrelated=unrelated, heldout=heldout,
                       success=lambda logits: logits.argmax(-1))
    with pytest.raises(ValueError, match=r"unrelated must lie in \[0, d_vocab=24\)"):
        steering_sweep(model, torch.ones(D), hook, [1.0], prompts, unrelated=unrelated + VOCAB, heldout=heldout,
                       target_ids=3, baseline_ids=5)
    assert no_hooks_left(model)


# -- on TinyLang -----------------------------------------------------------------------------------


def test_caa_steers_tinylang_agreement_where_a_random_vector_of_the_same_norm_does_not():
    """Subject-verb agreement: the mean difference between plural- and singular-subject prompts at
    the verb position, added at block 2, makes singular prompts predict "are"; a random vector of
    the same length and coefficient does not, and moves unrelated prompts more."""
    model = pretrained.load("tinylang", device="cpu")
    train = tl.generate_agreement(120, seed=0, split="train")
    clean, flipped = tl.make_batch(train), tl.make_batch(train, corrupted=True)
    plural = torch.tensor([ex.labels["subject_number"] == "plural" for ex in train])[:, None]
    positive = torch.where(plural, clean.tokens, flipped.tokens)
    negative = torch.where(plural, flipped.tokens, clean.tokens)
    hook = "blocks.2.hook_resid_pre"
    caa = caa_vector(model, positive, negative, hook, pos=clean.answer_pos)
    random = torch.randn(caa.shape, generator=torch.Generator().manual_seed(0))
    random = random * caa.norm() / random.norm()

    test = [ex for ex in tl.generate_agreement(80, seed=1, split="test") if ex.labels["subject_number"] == "singular"]
    batch = tl.make_batch(test)
    kw = dict(unrelated=tl.make_batch(tl.generate_fact(16, seed=2)).tokens,
              heldout=tl.generate_corpus(4, n_ctx=64, seed=3),
              target_ids=tl.to_single_token("are"), baseline_ids=tl.to_single_token("is"),
              answer_pos=batch.answer_pos)
    coeffs = [0.0, 64.0]
    by_caa = steering_sweep(model, caa, hook, coeffs, batch.tokens, **kw)
    by_random = steering_sweep(model, random, hook, coeffs, batch.tokens, **kw)
    assert by_caa.clean_success_rate < 0.05  # the model gets singular agreement right unsteered
    assert by_caa.success_rate[1] > 0.8 and by_caa.success_rate[1] > by_random.success_rate[1] + 0.5
    assert by_caa.kl[1] < by_random.kl[1]


# -- any intervention, and comparing methods at the same side effect --------------------------------------


def test_position_mask_marks_the_chosen_positions():
    assert torch.equal(position_mask(None, 2, 3), torch.ones(2, 3, 1))
    assert position_mask(1, 2, 3)[..., 0].tolist() == [[0, 1, 0], [0, 1, 0]]
    assert position_mask(slice(1, None), 1, 3)[..., 0].tolist() == [[0, 1, 1]]
    assert position_mask(torch.tensor([0, -1]), 2, 3)[..., 0].tolist() == [[1, 0, 0], [0, 0, 1]]
    like = torch.zeros(1, dtype=torch.float64)
    assert position_mask(0, 1, 2, like=like).dtype == torch.float64
    with pytest.raises(ValueError, match="out of range"):
        position_mask(3, 2, 3)
    with pytest.raises(ValueError, match="positions must lie in"):
        position_mask(torch.tensor([0, 5]), 2, 3)
    with pytest.raises(TypeError, match="positions must be None, an int"):
        position_mask("last", 2, 3)


def test_intervention_sweep_with_a_steering_hook_is_steering_sweep(model):
    prompts, unrelated, heldout = sweep_inputs()
    v = torch.randn(D, generator=torch.Generator().manual_seed(11))
    kw = dict(unrelated=unrelated, heldout=heldout, target_ids=3, baseline_ids=5)
    by_vector = steering_sweep(model, v, "blocks.0.hook_resid_post", [0.0, 2.0, 8.0], prompts, positions=-1, **kw)
    by_hook = intervention_sweep(model, lambda c: steering_hook(v, c, positions=-1), "blocks.0.hook_resid_post",
                                 [0.0, 2.0, 8.0], prompts, **kw)
    for field in ("coeffs", "success_rate", "kl", "loss"):
        assert torch.equal(getattr(by_vector, field), getattr(by_hook, field)), field
    assert no_hooks_left(model)


def test_intervention_sweep_clamps_an_sae_latent_and_leaves_no_hook(model):
    """Clamping a latent with the error term kept adds (v - f) times its decoder row: at a value far
    above its activations it costs KL that grows with v; inputs stay as they were."""
    prompts, unrelated, heldout = sweep_inputs()
    sae = make_sae(d_in=D, d_sae=64, device="cpu", seed=4)
    hook = "blocks.1.hook_resid_pre"
    saved = [t.clone() for t in (prompts, unrelated, heldout)]
    sweep = intervention_sweep(model, lambda v: clamp_latent_hook(sae, 3, v), hook, [2.0, 20.0, 200.0], prompts,
                               unrelated=unrelated, heldout=heldout, target_ids=3, baseline_ids=5)
    assert all(torch.equal(a, b) for a, b in zip(saved, (prompts, unrelated, heldout)))
    assert no_hooks_left(model)
    assert sweep.kl[0] < sweep.kl[1] < sweep.kl[2]
    with model.hooks(fwd_hooks=[(hook, clamp_latent_hook(sae, 3, 20.0))]):
        steered = model(unrelated)
    assert sweep.kl[1].item() == pytest.approx(kl_divergence(steered, model(unrelated), pos=None).item(), rel=1e-5)
    with pytest.raises(TypeError, match="make_hook must be a function"):
        intervention_sweep(model, 3.0, hook, [1.0], prompts, unrelated=unrelated, heldout=heldout, target_ids=3,
                           baseline_ids=5)
    with pytest.raises(TypeError, match=r"make_hook\(1.0\) must return a hook"):
        intervention_sweep(model, lambda v: v, hook, [1.0], prompts, unrelated=unrelated, heldout=heldout,
                           target_ids=3, baseline_ids=5)
    with pytest.raises(ValueError, match="strengths must be a non-empty"):
        intervention_sweep(model, lambda v: clamp_latent_hook(sae, 3, v), hook, [], prompts, unrelated=unrelated,
                           heldout=heldout, target_ids=3, baseline_ids=5)
    with pytest.raises(KeyError):
        intervention_sweep(model, lambda v: clamp_latent_hook(sae, 3, v), "blocks.7.hook_resid_pre", [1.0],
                           prompts, unrelated=unrelated, heldout=heldout, target_ids=3, baseline_ids=5)
    assert no_hooks_left(model)


def fake_sweep(coeffs, kl, success, loss=None):
    n = len(coeffs)
    return SteeringSweep(coeffs=torch.tensor(coeffs, dtype=torch.float64),
                         success_rate=torch.tensor(success, dtype=torch.float64),
                         kl=torch.tensor(kl, dtype=torch.float64),
                         loss=torch.tensor(loss if loss is not None else [1.0] * n, dtype=torch.float64),
                         clean_loss=1.0, clean_success_rate=success[0], hook_name="blocks.0.hook_resid_pre")


def test_match_kl_interpolates_each_method_at_the_target():
    a = fake_sweep([0.0, 1.0, 2.0, 4.0], [0.0, 0.1, 0.3, 0.9], [0.0, 0.2, 0.6, 1.0], loss=[1.0, 1.1, 1.3, 2.0])
    # Not monotone: clamping to 0 ablates (KL 0.05), the KL dips at the natural value, then rises.
    b = fake_sweep([0.0, 1.0, 5.0, 10.0], [0.05, 0.01, 0.2, 0.6], [0.0, 0.0, 0.1, 0.9])
    matched = match_kl({"caa": a, "clamp": b}, 0.2)
    assert isinstance(matched, MatchedKL) and matched.methods == ["caa", "clamp"]
    # caa: between c=1 (KL 0.1) and c=2 (KL 0.3), halfway.
    assert matched.strength[0].item() == pytest.approx(1.5)
    assert matched.success_rate[0].item() == pytest.approx(0.4)
    assert matched.loss[0].item() == pytest.approx(1.2)
    # clamp: the first crossing is between v=1 (0.01) and v=5 (0.2), exactly at v=5.
    assert matched.strength[1].item() == pytest.approx(5.0)
    assert matched.success_rate[1].item() == pytest.approx(0.1)
    assert matched.clean_success_rate.tolist() == [0.0, 0.0]
    assert match_kl({"clamp": b}, 0.03).strength.item() == pytest.approx(1.0 + 4.0 * (0.02 / 0.19))
    assert "caa" in repr(matched) and "KL = 0.2" in repr(matched)


def test_match_kl_refuses_a_target_outside_a_methods_swept_range():
    a = fake_sweep([0.0, 1.0, 2.0], [0.0, 0.1, 0.3], [0.0, 0.5, 1.0])
    b = fake_sweep([1.0, 2.0], [0.2, 0.4], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"above the KL that method 'a' reaches.*at most 0\.3"):
        match_kl({"a": a}, 0.5)
    with pytest.raises(ValueError, match=r"below the KL of every strength in method 'b'.*at least 0\.2"):
        match_kl({"a": a, "b": b}, 0.1)
    falling = fake_sweep([4.0, 2.0, 1.0], [0.3, 0.1, 0.0], [1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="order the strengths from weak to strong"):
        match_kl({"falling": falling}, 0.2)
    assert match_kl({"b": b}, 0.2).strength.item() == 1.0  # exactly the first point is inside
    with pytest.raises(ValueError, match="target_kl must be a positive finite number"):
        match_kl({"a": a}, 0.0)
    with pytest.raises(ValueError, match="target_kl must be a positive finite number"):
        match_kl({"a": a}, float("nan"))
    with pytest.raises(TypeError, match="sweeps must be a non-empty dict"):
        match_kl({}, 0.1)
    with pytest.raises(TypeError, match="sweeps must map method names"):
        match_kl({"a": "sweep"}, 0.1)


def test_at_the_matched_strength_each_method_really_costs_the_target_kl(model):
    """Interpolating a fine sweep is a good estimate: re-running each method at its matched strength
    gives a KL close to the target (a coarse two-point sweep gives a worse one)."""
    prompts, unrelated, heldout = sweep_inputs()
    g = torch.Generator().manual_seed(12)
    hook = "blocks.0.hook_resid_post"
    vectors = {"long": 3.0 * torch.randn(D, generator=g), "short": 0.5 * torch.randn(D, generator=g)}
    coeffs = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]
    kw = dict(unrelated=unrelated, heldout=heldout, target_ids=3, baseline_ids=5)
    sweeps = {name: steering_sweep(model, v, hook, coeffs, prompts, **kw) for name, v in vectors.items()}
    target = 0.2
    matched = match_kl(sweeps, target)
    assert matched.strength[0] < matched.strength[1]  # the longer vector needs a smaller coefficient
    for name, strength in zip(matched.methods, matched.strength.tolist()):
        again = steering_sweep(model, vectors[name], hook, [strength], prompts, **kw)
        assert again.kl.item() == pytest.approx(target, rel=0.1), name
    assert no_hooks_left(model)


def test_on_tinylang_caa_beats_a_random_direction_at_the_same_kl():
    """Agreement steering compared at matched side effect: at KL 0.5 nats on unrelated fact prompts,
    CAA makes singular prompts predict "are" (measured 1.00), a random unit direction never does."""
    model = pretrained.load("tinylang", device="cpu")
    train = tl.generate_agreement(120, seed=0, split="train")
    clean, flipped = tl.make_batch(train), tl.make_batch(train, corrupted=True)
    plural = torch.tensor([ex.labels["subject_number"] == "plural" for ex in train])[:, None]
    hook = "blocks.2.hook_resid_pre"
    caa = caa_vector(model, torch.where(plural, clean.tokens, flipped.tokens),
                     torch.where(plural, flipped.tokens, clean.tokens), hook, pos=clean.answer_pos)
    random = torch.randn(caa.shape, generator=torch.Generator().manual_seed(0))
    test = [ex for ex in tl.generate_agreement(80, seed=1, split="test") if ex.labels["subject_number"] == "singular"]
    batch = tl.make_batch(test)
    kw = dict(unrelated=tl.make_batch(tl.generate_fact(16, seed=2)).tokens,
              heldout=tl.generate_corpus(4, n_ctx=64, seed=3),
              target_ids=tl.to_single_token("are"), baseline_ids=tl.to_single_token("is"),
              answer_pos=batch.answer_pos)
    coeffs = [0.0, 16.0, 24.0, 32.0]
    sweeps = {name: steering_sweep(model, v / v.norm(), hook, coeffs, batch.tokens, **kw)
              for name, v in [("caa", caa), ("random", random)]}
    matched = match_kl(sweeps, 0.5)
    assert matched.success_rate[0] > 0.9 and matched.success_rate[1] < 0.05, matched
    assert matched.strength[0] > matched.strength[1]  # the random direction costs more KL per unit
    again = steering_sweep(model, caa / caa.norm(), hook, [matched.strength[0].item()], batch.tokens, **kw)
    assert again.success_rate.item() > 0.9 and again.kl.item() == pytest.approx(0.5, rel=0.15)


def test_module_names_are_exported():
    assert set(steering.__all__) >= {"steer_resid", "actadd_vector", "caa_vector", "steering_hook",
                                     "steering_sweep", "SteeringSweep", "add_steering_vector",
                                     "intervention_sweep", "match_kl", "MatchedKL", "position_mask",
                                     "mean_difference"}
