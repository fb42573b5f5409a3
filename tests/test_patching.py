"""Activation patching, path patching, ablations, attribution patching and their metrics,
checked against patches written out by hand with run_with_hooks on small random models."""

import pytest
import torch

from toykit import patching as P
from toykit.transformer import HookedTransformer, TransformerConfig

B, POS, VOCAB = 5, 8, 24
CORRUPTED_POS = 3  # clean and corrupted prompts differ only here
ANSWER, WRONG = 3, 7


def make_model(attn_only=False, dtype=torch.float32, n_layers=3, seed=0, **kw):
    cfg = TransformerConfig(n_layers=n_layers, d_model=32, n_heads=4, d_mlp=64, d_vocab=VOCAB, n_ctx=12,
                            attn_only=attn_only, seed=seed, device="cpu", dtype=dtype, **kw)
    return HookedTransformer(cfg)


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, VOCAB, (B, POS), generator=g)
    corrupted = clean.clone()
    corrupted[:, CORRUPTED_POS] = (clean[:, CORRUPTED_POS] + 1 + torch.randint(0, VOCAB - 1, (B,), generator=g)) % VOCAB
    return clean, corrupted


def metric(logits):
    return P.logit_diff(logits, ANSWER, WRONG, pos=-1)


def no_hooks_left(model):
    return not any(hp.has_hooks for hp in model.hook_points())


def value(model, tokens, fwd_hooks=()):
    with torch.no_grad():
        return metric(model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))).item()


def replace_hook(clean_act, index):
    """A hand-written patch: copy clean_act[:, *index] into the activation."""
    def fn(act, hook):
        act = act.clone()
        act[(slice(None), *index)] = clean_act[(slice(None), *index)]
        return act
    return fn


# -- metrics ----------------------------------------------------------------------------------------


def test_logit_diff_by_hand():
    logits = torch.randn(B, POS, VOCAB)
    pos = torch.tensor([7, 6, 5, 4, 3])
    answer, wrong = torch.arange(B), torch.arange(B) + 10
    per = P.logit_diff(logits, answer, wrong, pos=pos, per_prompt=True)
    expected = torch.stack([logits[i, pos[i], answer[i]] - logits[i, pos[i], wrong[i]] for i in range(B)])
    torch.testing.assert_close(per, expected)
    torch.testing.assert_close(P.logit_diff(logits, answer, wrong, pos=pos), expected.mean())
    torch.testing.assert_close(P.logit_diff(logits, 1, 2), (logits[:, -1, 1] - logits[:, -1, 2]).mean())


def test_normalised_logit_diff_is_0_corrupted_and_1_clean(model, prompts):
    clean, corrupted = prompts
    with torch.no_grad():
        cl, co = model(clean), model(corrupted)
    m = P.logit_diff_metric(ANSWER, WRONG, clean_logits=cl, corrupted_logits=co)
    assert m(cl).item() == pytest.approx(1.0)
    assert m(co).item() == pytest.approx(0.0, abs=1e-6)
    assert P.normalize_metric(3.0, baseline=1.0, target=5.0) == pytest.approx(0.5)
    with pytest.raises(TypeError):
        P.normalize_metric(3.0, 1.0, 5.0)  # keyword-only: the two reference points cannot be swapped silently
    with pytest.raises(ValueError, match="equal"):
        P.logit_diff_metric(ANSWER, WRONG, clean_logits=cl, corrupted_logits=cl)
    with pytest.raises(ValueError, match="both"):
        P.logit_diff_metric(ANSWER, WRONG, clean_logits=cl)


def test_kl_divergence():
    a, b = torch.randn(B, POS, VOCAB), torch.randn(B, POS, VOCAB)
    assert P.kl_divergence(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert P.kl_divergence(a, b).item() > 0
    p, q = a[:, -1].log_softmax(-1), b[:, -1].log_softmax(-1)
    torch.testing.assert_close(P.kl_divergence(a, b, per_prompt=True), (q.exp() * (q - p)).sum(-1))
    assert P.kl_divergence(a, b, pos=None, per_prompt=True).shape == (B,)
    with pytest.raises(ValueError, match="shape"):
        P.kl_divergence(a, b[:, :3])


def test_metric_errors():
    logits = torch.randn(B, POS, VOCAB)
    with pytest.raises(ValueError, match="answer_ids"):
        P.logit_diff(logits, torch.zeros(B + 1, dtype=torch.long), WRONG)
    with pytest.raises(ValueError, match="d_vocab"):
        P.logit_diff(logits, VOCAB, WRONG)
    with pytest.raises(ValueError, match="logits"):
        P.logit_diff(logits[0], ANSWER, WRONG)


# -- activation patching --------------------------------------------------------------------------------


def test_patching_clean_into_clean_changes_nothing(model, prompts):
    clean, _ = prompts
    base = value(model, clean)
    blocks = P.patch_blocks(model, clean, clean, metric, act_name=["resid_pre", "attn_out", "mlp_out"])
    heads = P.patch_heads(model, clean, clean, metric, act_name=["z", "q", "k", "v", "pattern"], by_pos=True)
    for r in (blocks, heads):
        assert r.baseline == pytest.approx(base, abs=1e-5)
        torch.testing.assert_close(r.values, torch.full_like(r.values, base), atol=1e-5, rtol=0)
    assert no_hooks_left(model)


def test_patching_everything_reproduces_the_clean_run(model, prompts):
    clean, corrupted = prompts
    clean_value, corrupted_value = value(model, clean), value(model, corrupted)
    assert abs(clean_value - corrupted_value) > 0.1  # the corruption matters
    # The whole residual stream of any layer carries everything.
    whole = P.patch_blocks(model, corrupted, clean, metric, act_name=["resid_pre", "resid_post"], by_pos=False)
    torch.testing.assert_close(whole.values, torch.full_like(whole.values, clean_value), atol=1e-5, rtol=0)
    assert whole.baseline == pytest.approx(corrupted_value, abs=1e-5)
    # So does every component's output, patched together.
    L = model.cfg.n_layers
    names = ["hook_embed", "hook_pos_embed"] + [f"blocks.{l}.attn.hook_z" for l in range(L)]
    names += [f"blocks.{l}.hook_mlp_out" for l in range(L)]
    assert P.activation_patch(model, corrupted, clean, metric, names) == pytest.approx(clean_value, abs=1e-5)


def test_positions_before_the_corruption_carry_nothing(model, prompts):
    clean, corrupted = prompts
    r = P.patch_blocks(model, corrupted, clean, metric)  # resid_pre, by layer and position
    assert r.dims == ("layer", "pos") and r.shape == (model.cfg.n_layers, POS)
    torch.testing.assert_close(r.values[:, :CORRUPTED_POS], torch.full((model.cfg.n_layers, CORRUPTED_POS), r.baseline,
                                                                       dtype=torch.float64), atol=1e-5, rtol=0)
    # At layer 0 only the corrupted position carries the difference, and restores it all.
    assert r.sel(layer=0, pos=CORRUPTED_POS) == pytest.approx(value(model, clean), abs=1e-5)


def test_block_sweep_matches_patches_by_hand(model, prompts):
    clean, corrupted = prompts
    _, cache = model.run_with_cache(clean)
    for act in ("resid_pre", "resid_mid", "attn_out", "mlp_out", "resid_post"):
        r = P.patch_blocks(model, corrupted, cache, metric, act_name=act, max_batch=2 * B)
        for layer in range(model.cfg.n_layers):
            name = f"blocks.{layer}.hook_{act}"
            for pos in (0, CORRUPTED_POS, POS - 1):
                expected = value(model, corrupted, [(name, replace_hook(cache[name], (pos,)))])
                assert r.values[layer, pos].item() == pytest.approx(expected, abs=1e-5), (act, layer, pos)


def test_head_sweeps_match_patches_by_hand(model, prompts):
    clean, corrupted = prompts
    _, cache = model.run_with_cache(clean)
    every = P.patch_heads(model, corrupted, clean, metric, act_name=["z", "q", "k", "v", "pattern"])
    by_pos = P.patch_heads(model, corrupted, clean, metric, act_name="pattern", by_pos=True)
    assert every.dims == ("act", "layer", "head") and every.coords["act"] == ["z", "q", "k", "v", "pattern"]
    assert by_pos.dims == ("layer", "pos", "head")
    for layer, head in [(0, 1), (1, 3), (2, 0)]:
        for i, act in enumerate(every.coords["act"]):
            name = f"blocks.{layer}.attn.hook_{act}"
            index = (head,) if act == "pattern" else (slice(None), head)
            expected = value(model, corrupted, [(name, replace_hook(cache[name], index))])
            assert every.values[i, layer, head].item() == pytest.approx(expected, abs=1e-5)
        name = f"blocks.{layer}.attn.hook_pattern"
        expected = value(model, corrupted, [(name, replace_hook(cache[name], (head, POS - 1)))])
        assert by_pos.sel(layer=layer, pos=POS - 1, head=head) == pytest.approx(expected, abs=1e-5)


def test_hook_result_needs_use_attn_result(prompts):
    clean, corrupted = prompts
    m = make_model()
    with pytest.raises(KeyError, match="set_use_attn_result"):
        P.patch_heads(m, corrupted, clean, metric, act_name="result")
    m.set_use_attn_result(True)
    z = P.patch_heads(m, corrupted, clean, metric, act_name="z")
    result = P.patch_heads(m, corrupted, clean, metric, act_name="result")
    torch.testing.assert_close(result.values, z.values, atol=1e-5, rtol=0)  # result = z @ W_O, per head


def test_patch_sweep_over_any_hooks(model, prompts):
    clean, corrupted = prompts
    _, cache = model.run_with_cache(clean)
    cells = ["hook_embed", ("blocks.0.hook_resid_pre", (CORRUPTED_POS,)),
             [("blocks.0.attn.hook_z", (slice(None), 0)), ("blocks.0.attn.hook_z", (slice(None), 1))],
             ("blocks.2.ln1.hook_scale", None), ("blocks.1.hook_resid_pre", CORRUPTED_POS)]
    r = P.patch_sweep(model, corrupted, clean, metric, cells)
    assert r.dims == ("cell",) and r.shape == (5,)
    assert r.values[0].item() == pytest.approx(value(model, clean), abs=1e-5)
    assert r.values[1].item() == pytest.approx(value(model, clean), abs=1e-5)
    single = P.activation_patch(model, corrupted, clean, metric, cells[2])
    assert r.values[2].item() == pytest.approx(single, abs=1e-6)
    scale = value(model, corrupted, [("blocks.2.ln1.hook_scale", replace_hook(cache["blocks.2.ln1.hook_scale"], ()))])
    assert r.values[3].item() == pytest.approx(scale, abs=1e-5)
    name = "blocks.1.hook_resid_pre"
    resid = value(model, corrupted, [(name, replace_hook(cache[name], (CORRUPTED_POS,)))])
    assert r.values[4].item() == pytest.approx(resid, abs=1e-5)
    grid = P.patch_sweep(model, corrupted, clean, metric, cells[:4], dims=("a", "b"),
                         coords={"a": [0, 1], "b": ["x", "y"]})
    assert grid.shape == (2, 2) and grid.sel(a=1, b="x") == pytest.approx(r.values[2].item(), abs=1e-6)
    with pytest.raises(ValueError, match="do not hold"):
        P.patch_sweep(model, corrupted, clean, metric, cells, dims=("a",), coords={"a": [0, 1]})


def test_patching_result_helpers():
    values = torch.tensor([[0.0, 2.0, float("nan")], [-3.0, 1.0, 0.5]], dtype=torch.float64)
    r = P.PatchingResult(values, ("layer", "head"), {"layer": [0, 1], "head": [0, 1, 2]}, baseline=0.5)
    assert r.top(2) == [({"layer": 0, "head": 1}, 2.0), ({"layer": 1, "head": 1}, 1.0)]
    assert r.top(1, largest=False) == [({"layer": 1, "head": 0}, -3.0)]
    assert r.top(1, by_change=True)[0][0] == {"layer": 1, "head": 0}
    assert len(r.top(10)) == 5  # the NaN is skipped
    assert r.sel(layer=1).dims == ("head",)
    assert r.sel(head=2, layer=1) == 0.5
    torch.testing.assert_close(r.change, values - 0.5, equal_nan=True)
    assert "layer=2, head=3" in repr(r)
    with pytest.raises(KeyError, match="not a label"):
        r.sel(layer=5)
    with pytest.raises(KeyError, match="unknown dims"):
        r.sel(pos=0)
    with pytest.raises(ValueError, match="coords"):
        P.PatchingResult(values, ("layer", "head"), {"layer": [0], "head": [0, 1, 2]})


def test_patching_errors(model, prompts):
    clean, corrupted = prompts
    with pytest.raises(ValueError, match="same shape"):
        P.patch_blocks(model, corrupted[:, :-1], clean, metric)
    _, short_cache = model.run_with_cache(clean[:, :-1])
    with pytest.raises(ValueError, match="does not match"):
        P.patch_blocks(model, corrupted, short_cache, metric)
    with pytest.raises(KeyError, match="did you mean"):
        P.activation_patch(model, corrupted, clean, metric, "blocks.0.hook_resid_pree")
    _, partial = model.run_with_cache(clean, names_filter="blocks.0.hook_resid_pre")
    with pytest.raises(KeyError, match="has no activation"):
        P.patch_blocks(model, corrupted, partial, metric, act_name="attn_out")
    with pytest.raises(ValueError, match="act_name"):
        P.patch_blocks(model, corrupted, clean, metric, act_name="z")
    with pytest.raises(ValueError, match="act_name"):
        P.patch_heads(model, corrupted, clean, metric, act_name="resid_pre")
    with pytest.raises(ValueError, match="scalar"):
        P.patch_blocks(model, corrupted, clean, lambda logits: logits[:, -1, 0])
    with pytest.raises(TypeError, match="index"):
        P.activation_patch(model, corrupted, clean, metric, ("hook_embed", "all"))
    with pytest.raises(TypeError, match="ActivationCache"):
        P.patch_blocks(model, corrupted, [1, 2], metric)
    with pytest.raises(ValueError, match="max_batch"):
        P.patch_blocks(model, corrupted, clean, metric, max_batch=0)
    attn_only = make_model(attn_only=True)
    with pytest.raises(KeyError, match="attn_only"):
        P.patch_blocks(attn_only, corrupted, clean, metric, act_name="mlp_out")
    assert no_hooks_left(model)


def test_hooks_never_leak_even_after_errors(model, prompts):
    clean, corrupted = prompts

    def broken(logits):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        P.patch_heads(model, corrupted, clean, broken)
    with pytest.raises(RuntimeError, match="metric failed"):
        P.path_patch_heads(model, clean, corrupted, broken, receivers=[(2, 0)])
    with pytest.raises(RuntimeError, match="metric failed"):
        P.attribution_patch_heads(model, corrupted, clean, lambda logits: broken(logits))
    assert no_hooks_left(model)
    # And the model is unchanged: a plain forward pass still gives the same logits.
    assert value(model, clean) == pytest.approx(value(make_model(), clean), abs=1e-6)


# -- path patching -------------------------------------------------------------------------------------


def test_path_patching_to_a_receivers_query_by_hand(model, prompts):
    """With every other head and MLP frozen, only the sender's direct write reaches the
    receiver: resid_pre of its layer moves by (z_corrupted - z_clean) @ W_O of the sender."""
    clean, corrupted = prompts
    _, c = model.run_with_cache(clean)
    _, x = model.run_with_cache(corrupted)
    for (sl, sh), (rl, rh) in [((0, 2), (2, 1)), ((1, 0), (2, 3)), ((0, 3), (1, 1))]:
        delta = (x["z", sl][:, :, sh] - c["z", sl][:, :, sh]) @ model.blocks[sl].attn.W_O[sh]
        with torch.no_grad():
            resid = c["resid_pre", rl] + delta
            attn = model.blocks[rl].attn
            q = model.blocks[rl].ln1(resid) @ attn.W_Q[rh] + attn.b_Q[rh]  # [b, p, d_head]

        def put_q(act, hook, q=q, rh=rh):
            act = act.clone()
            act[:, :, rh] = q
            return act

        expected = value(model, clean, [(f"blocks.{rl}.attn.hook_q", put_q)])
        got = P.path_patch(model, clean, corrupted, metric, senders=[(sl, sh)], receivers=[(rl, rh)])
        assert got == pytest.approx(expected, abs=1e-5)
        assert abs(got - value(model, clean)) > 1e-4  # the path did something


def test_path_patching_to_the_logits_by_hand(model, prompts):
    clean, corrupted = prompts
    _, c = model.run_with_cache(clean)
    _, x = model.run_with_cache(corrupted)
    senders = [(0, 1), (1, 2)]
    with torch.no_grad():
        resid = c["resid_post", model.cfg.n_layers - 1].clone()
        for l, h in senders:
            resid += (x["z", l][:, :, h] - c["z", l][:, :, h]) @ model.blocks[l].attn.W_O[h]
        expected = metric(model.unembed(model.ln_final(resid))).item()
    got = P.path_patch(model, clean, corrupted, metric, senders=senders, receivers="logits")
    assert got == pytest.approx(expected, abs=1e-5)
    # Letting the MLPs recompute adds the paths through them.
    through_mlps = P.path_patch(model, clean, corrupted, metric, senders, "logits", freeze_mlps=False)
    assert abs(through_mlps - got) > 1e-5


def test_path_patch_heads_sweep_matches_single_runs(model, prompts):
    clean, corrupted = prompts
    receivers = [(2, 0), (2, 2)]
    r = P.path_patch_heads(model, clean, corrupted, metric, receivers, receiver_input=["k", "v"], max_batch=3 * B)
    assert r.dims == ("layer", "head") and r.baseline == pytest.approx(value(model, clean), abs=1e-5)
    assert torch.isnan(r.values[2]).all() and not torch.isnan(r.values[:2]).any()  # no path from layer 2
    for l, h in [(0, 0), (1, 3)]:
        single = P.path_patch(model, clean, corrupted, metric, [(l, h)], receivers, receiver_input=["k", "v"])
        assert r.values[l, h].item() == pytest.approx(single, abs=1e-6)
    direct = P.path_patch_heads(model, clean, corrupted, metric, "logits")
    assert not torch.isnan(direct.values).any()


def test_path_patching_finds_the_previous_token_head_behind_induction():
    """The shipped 2-layer attention-only model: the induction heads find their target through
    their keys, which the layer-0 previous-token head writes (K-composition)."""
    from toykit import pretrained
    from toykit.circuits import attention_head_scores
    from toykit.tasks.repeated_tokens import generate_repeated_tokens

    model = pretrained.load("attn-only-2l", device="cpu")
    S = 10
    clean = generate_repeated_tokens(8, S, model.cfg.d_vocab, bos=0, seed=1, device="cpu")
    corrupted = clean.clone()
    corrupted[:, 1:S + 1] = torch.randint(1, model.cfg.d_vocab, (8, S), generator=torch.Generator().manual_seed(5))
    scores = attention_head_scores(model, clean, S)
    prev_head = scores["previous_token"][0].argmax().item()
    induction_head = scores["prefix_matching"][1].argmax().item()
    second = torch.arange(S + 1, 2 * S)

    def log_prob(logits):  # of the right next token on the repeated block
        return logits.log_softmax(-1)[:, second].gather(-1, clean[:, second + 1, None]).mean()

    via_k = P.path_patch_heads(model, clean, corrupted, log_prob, [(1, induction_head)], receiver_input="k")
    via_q = P.path_patch_heads(model, clean, corrupted, log_prob, [(1, induction_head)], receiver_input="q")
    drop_k, drop_q = via_k.baseline - via_k.values[0], via_q.baseline - via_q.values[0]
    assert drop_k.argmax().item() == prev_head
    assert drop_k.max() > 3 * drop_q.abs().max()


def test_path_patching_errors(model, prompts):
    clean, corrupted = prompts
    with pytest.raises(ValueError, match="no path"):
        P.path_patch(model, clean, corrupted, metric, senders=[(2, 0)], receivers=[(1, 0)])
    with pytest.raises(ValueError, match="receiver_input"):
        P.path_patch(model, clean, corrupted, metric, [(0, 0)], [(1, 0)], receiver_input="z")
    with pytest.raises(ValueError, match=r"\(layer, head\) pairs"):
        P.path_patch(model, clean, corrupted, metric, [(0, 9)], [(1, 0)])
    with pytest.raises(TypeError, match="list of"):
        P.path_patch(model, clean, corrupted, metric, [(0, 0)], (1, 0))
    with pytest.raises(ValueError, match="'logits'"):
        P.path_patch(model, clean, corrupted, metric, [(0, 0)], "output")
    with pytest.raises(ValueError, match="same shape"):
        P.path_patch(model, clean, corrupted[:, :-1], metric, [(0, 0)], [(1, 0)])
    assert no_hooks_left(model)


# -- ablations -----------------------------------------------------------------------------------------


def test_zero_and_mean_ablation_by_hand(model, prompts):
    clean, corrupted = prompts
    name = "blocks.1.attn.hook_z"
    _, ref = model.run_with_cache(corrupted)

    def zero(act, hook):
        act = act.clone()
        act[:, :, 2] = 0
        return act

    def mean(act, hook):
        act = act.clone()
        act[:, :, 2] = ref[name][:, :, 2].mean(0)
        return act

    got = P.run_with_ablation(model, clean, [(1, 2)], method="zero")
    torch.testing.assert_close(got, model.run_with_hooks(clean, fwd_hooks=[(name, zero)]))
    got = P.run_with_ablation(model, clean, [(1, 2)], method="mean", reference=corrupted)
    torch.testing.assert_close(got, model.run_with_hooks(clean, fwd_hooks=[(name, mean)]))
    # A hook name and (name, index) work too; mean over the same batch by default.
    whole = P.run_with_ablation(model, clean, ["blocks.0.hook_mlp_out"], method="mean")
    _, own = model.run_with_cache(clean)
    expect = model.run_with_hooks(clean, fwd_hooks=[
        ("blocks.0.hook_mlp_out", lambda act, hook: own["blocks.0.hook_mlp_out"].mean(0, keepdim=True).expand_as(act))])
    torch.testing.assert_close(whole, expect)
    assert no_hooks_left(model)


def test_resample_ablation(model, prompts):
    clean, corrupted = prompts
    heads = [(0, 1), (2, 3)]
    a = P.run_with_ablation(model, clean, heads, method="resample", reference=corrupted, seed=3)
    b = P.run_with_ablation(model, clean, heads, method="resample", reference=corrupted, seed=3)
    c = P.run_with_ablation(model, clean, heads, method="resample", reference=corrupted, seed=4)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    # With a single reference prompt, resampling and the mean are the same thing.
    one = corrupted[:1].repeat(3, 1)
    torch.testing.assert_close(P.run_with_ablation(model, clean, heads, "resample", reference=one),
                               P.run_with_ablation(model, clean, heads, "mean", reference=one), atol=1e-5, rtol=0)


def test_ablation_hooks_and_errors(model, prompts):
    clean, corrupted = prompts
    longer = torch.randint(0, VOCAB, (4, POS + 2))
    with pytest.raises(ValueError, match="mean_over='batch_and_pos'"):
        P.run_with_ablation(model, clean, [(0, 0)], "mean", reference=longer)
    with pytest.raises(ValueError, match="mean_over must be one of"):
        P.run_with_ablation(model, clean, [(0, 0)], "mean", reference=corrupted, mean_over="pos")
    with pytest.raises(ValueError, match="query and key"):
        P.run_with_ablation(model, clean, ["blocks.0.attn.hook_pattern"], "mean", reference=corrupted,
                            mean_over="batch_and_pos")
    out = P.run_with_ablation(model, clean, [(0, 0)], "mean", reference=longer, mean_over="batch_and_pos")
    assert out.shape == (B, POS, VOCAB)
    with pytest.raises(ValueError, match="as many positions"):
        P.run_with_ablation(model, clean, [(0, 0)], "resample", reference=longer)
    with pytest.raises(ValueError, match="method"):
        P.ablation_hooks(model, [(0, 0)], method="noise")
    with pytest.raises(ValueError, match="reference"):
        P.ablation_hooks(model, [(0, 0)], method="mean")
    with pytest.raises(KeyError, match="unknown hook"):
        P.ablation_hooks(model, ["blocks.9.hook_resid_pre"], method="zero")
    with pytest.raises(ValueError, match="pairs"):
        P.ablation_hooks(model, [(5, 0)], method="zero")
    assert no_hooks_left(model)
    assert P.all_heads(model)[:3] == [(0, 0), (0, 1), (0, 2)] and len(P.all_heads(model)) == 12
    assert (1, 2) not in P.all_heads(model, exclude=[(1, 2)]) and len(P.all_heads(model, exclude=[(1, 2)])) == 11
    # Mean-ablating every head but a circuit: a typical faithfulness check.
    hooks = P.ablation_hooks(model, P.all_heads(model, exclude=[(2, 1)]), "mean", reference=corrupted)
    with model.hooks(fwd_hooks=hooks):
        assert model(clean).shape == (B, POS, VOCAB)
    assert no_hooks_left(model)


# -- attribution patching ---------------------------------------------------------------------------------


def interpolated(model, corrupted, clean_act, name, index, eps):
    """The metric with act[index] = corrupted + eps * (clean - corrupted)."""
    def fn(act, hook):
        act = act.clone()
        sel = (slice(None), *index)
        act[sel] = act[sel] + eps * (clean_act[sel] - act[sel])
        return act
    return value(model, corrupted, [(name, fn)])


def test_attribution_patching_matches_finite_differences(prompts):
    """The estimate is the directional derivative of the metric toward the clean activation."""
    model = make_model(dtype=torch.float64, seed=1)
    clean, corrupted = prompts
    _, cache = model.run_with_cache(clean)
    eps = 1e-5
    heads = P.attribution_patch_heads(model, corrupted, clean, metric)
    for l, h in [(0, 0), (1, 2), (2, 3)]:
        name = f"blocks.{l}.attn.hook_z"
        fd = (interpolated(model, corrupted, cache[name], name, (slice(None), h), eps)
              - interpolated(model, corrupted, cache[name], name, (slice(None), h), -eps)) / (2 * eps)
        assert heads.change[l, h].item() == pytest.approx(fd, rel=1e-4, abs=1e-7)
    blocks = P.attribution_patch_blocks(model, corrupted, clean, metric, act_name="resid_mid")
    name = "blocks.1.hook_resid_mid"
    fd = (interpolated(model, corrupted, cache[name], name, (CORRUPTED_POS,), eps)
          - interpolated(model, corrupted, cache[name], name, (CORRUPTED_POS,), -eps)) / (2 * eps)
    assert blocks.change[1, CORRUPTED_POS].item() == pytest.approx(fd, rel=1e-4, abs=1e-7)
    patterns = P.attribution_patch_heads(model, corrupted, clean, metric, act_name="pattern", by_pos=True)
    name = "blocks.2.attn.hook_pattern"
    fd = (interpolated(model, corrupted, cache[name], name, (1, POS - 1), eps)
          - interpolated(model, corrupted, cache[name], name, (1, POS - 1), -eps)) / (2 * eps)
    assert patterns.sel(layer=2, pos=POS - 1, head=1) - patterns.baseline == pytest.approx(fd, rel=1e-4, abs=1e-7)


def test_attribution_patching_agrees_with_patching_where_it_should(model, prompts):
    clean, corrupted = prompts
    est = P.attribution_patch_heads(model, corrupted, clean, metric, act_name=["z", "v"], by_pos=True)
    real = P.patch_heads(model, corrupted, clean, metric, act_name=["z", "v"], by_pos=True)
    assert est.dims == real.dims and est.coords == real.coords
    assert est.baseline == pytest.approx(real.baseline, abs=1e-5)
    # Before the corrupted position nothing differs, so both are exactly "no change".
    assert est.change[:, :, :CORRUPTED_POS].abs().max() < 1e-6
    corr = torch.corrcoef(torch.stack([est.change.flatten(), real.change.flatten().float()]))[0, 1]
    assert corr > 0.8


def test_attribution_patching_leaves_the_model_alone(prompts):
    clean, corrupted = prompts
    model = make_model()
    model.requires_grad_(False)
    r = P.attribution_patch_blocks(model, corrupted, clean, metric, by_pos=False)
    assert r.dims == ("layer",) and not torch.isnan(r.values).any()
    model.requires_grad_(True)
    P.attribution_patch_heads(model, corrupted, clean, metric)
    assert all(p.grad is None for p in model.parameters())
    assert no_hooks_left(model)
    with pytest.raises(ValueError, match="differentiable"):
        P.attribution_patch_heads(model, corrupted, clean, lambda logits: float(metric(logits).detach()))
    assert no_hooks_left(model)


def test_sweeps_are_batched(model, prompts):
    """A layer x position sweep runs a few big forward passes, not one per cell, and a patch
    in block l does not recompute the blocks before it."""
    clean, corrupted = prompts
    _, cache = model.run_with_cache(clean)
    first, last = [], []
    hooks = [model.blocks[0].register_forward_pre_hook(lambda module, args: first.append(args[0].shape[0])),
             model.blocks[-1].register_forward_pre_hook(lambda module, args: last.append(args[0].shape[0]))]
    try:
        r = P.patch_blocks(model, corrupted, cache, metric)
    finally:
        for h in hooks:
            h.remove()
    n_cells = r.values.numel() + 1  # and the baseline
    assert sum(last) == n_cells * B and len(last) == model.cfg.n_layers
    assert sum(first) < sum(last)
