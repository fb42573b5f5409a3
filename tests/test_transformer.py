import math

import pytest
import torch
import torch.nn.functional as F

from toykit.factored_matrix import FactoredMatrix
from toykit.transformer import HookedTransformer, TransformerConfig, copy_model

B, P = 3, 7


def make_cfg(**kw):
    base = dict(n_layers=2, d_model=16, n_heads=4, d_mlp=24, d_vocab=13, n_ctx=10, device="cpu")
    base.update(kw)
    return TransformerConfig(**base)


def make_model(**kw):
    return HookedTransformer(make_cfg(**kw))


def tokens(seed=0, batch=B, pos=P, d_vocab=13):
    return torch.randint(0, d_vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


def expected_hooks(cfg, b, p):
    """The course guide's hook table, written out independently of the model code."""
    d, h, e, m = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    resid, scale = [b, p, d], [b, p, 1]
    has_ln = cfg.normalization_type is not None
    out = {"hook_embed": resid, "hook_pos_embed": resid}
    per_head = cfg.use_attn_in or cfg.use_split_qkv_input
    for l in range(cfg.n_layers):
        pre = f"blocks.{l}"
        out[f"{pre}.hook_resid_pre"] = resid
        if cfg.use_attn_in:
            out[f"{pre}.hook_attn_in"] = [b, p, h, d]
        if cfg.use_split_qkv_input:
            for x in "qkv":
                out[f"{pre}.hook_{x}_input"] = [b, p, h, d]
        if has_ln:  # ln1 sees one copy of its input per head when the inputs are split
            out[f"{pre}.ln1.hook_scale"] = [b, p, h, 1] if per_head else scale
            out[f"{pre}.ln1.hook_normalized"] = [b, p, h, d] if per_head else resid
        for x in "qkvz":
            out[f"{pre}.attn.hook_{x}"] = [b, p, h, e]
        out[f"{pre}.attn.hook_attn_scores"] = [b, h, p, p]
        out[f"{pre}.attn.hook_pattern"] = [b, h, p, p]
        if cfg.use_attn_result:
            out[f"{pre}.attn.hook_result"] = [b, p, h, d]
        out[f"{pre}.hook_attn_out"] = resid
        if not cfg.attn_only:
            out[f"{pre}.hook_resid_mid"] = resid
            if cfg.use_hook_mlp_in:
                out[f"{pre}.hook_mlp_in"] = resid
            if has_ln:
                out[f"{pre}.ln2.hook_scale"] = scale
                out[f"{pre}.ln2.hook_normalized"] = resid
            out[f"{pre}.mlp.hook_pre"] = [b, p, m]
            out[f"{pre}.mlp.hook_post"] = [b, p, m]
            out[f"{pre}.hook_mlp_out"] = resid
        out[f"{pre}.hook_resid_post"] = resid
    if has_ln:
        out["ln_final.hook_scale"] = scale
        out["ln_final.hook_normalized"] = resid
    out["unembed.hook_in"] = resid
    out["unembed.hook_out"] = [b, p, cfg.d_vocab]
    return out


CONFIGS = [
    dict(),
    dict(attn_only=True),
    dict(normalization_type=None),
    dict(normalization_type="LNPre", act_fn="gelu"),
    dict(use_attn_result=True),
    dict(attn_only=True, use_attn_result=True, normalization_type=None),
    dict(use_attn_in=True, use_hook_mlp_in=True),
    dict(use_split_qkv_input=True, normalization_type="LNPre"),
    dict(use_attn_in=True, use_split_qkv_input=True, attn_only=True),
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_every_hook_name_and_shape(kw):
    model = make_model(**kw)
    want = expected_hooks(model.cfg, B, P)
    assert set(model.hook_dict) == set(want)
    logits, cache = model.run_with_cache(tokens())
    got = {name: list(act.shape) for name, act in cache.items()}
    assert got == want
    assert list(cache) == list(model.hook_dict)  # the cache is ordered like the model
    assert logits.shape == (B, P, model.cfg.d_vocab)
    assert cache["pattern", 0] is cache["blocks.0.attn.hook_pattern"]


def test_hook_order_follows_the_forward_pass():
    names = list(make_model().hook_dict)
    order = ["hook_embed", "blocks.0.hook_resid_pre", "blocks.0.ln1.hook_scale", "blocks.0.attn.hook_q",
             "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z", "blocks.0.hook_attn_out",
             "blocks.0.hook_resid_mid", "blocks.0.mlp.hook_post", "blocks.0.hook_mlp_out",
             "blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "ln_final.hook_normalized"]
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order)


def test_parameter_names_and_shapes_match_transformerlens():
    cfg = make_cfg()
    d, h, e, m, v, c = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx
    want = {"embed.W_E": (v, d), "pos_embed.W_pos": (c, d), "ln_final.w": (d,), "ln_final.b": (d,),
            "unembed.W_U": (d, v), "unembed.b_U": (v,)}
    for l in range(cfg.n_layers):
        want.update({f"blocks.{l}.ln1.w": (d,), f"blocks.{l}.ln1.b": (d,), f"blocks.{l}.ln2.w": (d,),
                     f"blocks.{l}.ln2.b": (d,), f"blocks.{l}.attn.W_O": (h, e, d), f"blocks.{l}.attn.b_O": (d,),
                     f"blocks.{l}.mlp.W_in": (d, m), f"blocks.{l}.mlp.b_in": (m,),
                     f"blocks.{l}.mlp.W_out": (m, d), f"blocks.{l}.mlp.b_out": (d,)})
        for x in "QKV":
            want[f"blocks.{l}.attn.W_{x}"] = (h, d, e)
            want[f"blocks.{l}.attn.b_{x}"] = (h, e)
    model = HookedTransformer(cfg)
    assert {k: tuple(p.shape) for k, p in model.named_parameters()} == want
    assert set(model.state_dict()) == set(want)  # the causal mask is not saved
    attn_only = {k for k, _ in make_model(attn_only=True, normalization_type="LNPre").named_parameters()}
    assert not any("mlp" in k or "ln" in k for k in attn_only)


def test_stacked_properties_and_circuits():
    model = make_model()
    L, h, d, e, m = 2, 4, 16, 4, 24
    assert model.W_Q.shape == model.W_K.shape == model.W_V.shape == (L, h, d, e)
    assert model.W_O.shape == (L, h, e, d)
    assert model.b_Q.shape == (L, h, e) and model.b_O.shape == (L, d)
    assert model.W_in.shape == (L, d, m) and model.W_out.shape == (L, m, d)
    assert model.b_in.shape == (L, m) and model.b_out.shape == (L, d)
    assert model.W_E.shape == (13, d) and model.W_pos.shape == (10, d)
    assert model.W_U.shape == (d, 13) and model.b_U.shape == (13,)
    assert torch.equal(model.W_Q[1], model.blocks[1].attn.W_Q)
    assert isinstance(model.QK, FactoredMatrix) and isinstance(model.OV, FactoredMatrix)
    assert model.QK.shape == model.OV.shape == (L, h, d, d)
    W_QK = torch.einsum("lhde,lhfe->lhdf", model.W_Q, model.W_K)
    W_OV = torch.einsum("lhde,lhef->lhdf", model.W_V, model.W_O)
    torch.testing.assert_close(model.QK.AB, W_QK)
    torch.testing.assert_close(model.W_OV, W_OV)
    torch.testing.assert_close(model.W_QK, W_QK)
    with pytest.raises(ValueError, match="attn_only"):
        _ = make_model(attn_only=True).W_in


def test_attention_scores_pattern_and_causal_mask():
    model = make_model()
    _, cache = model.run_with_cache(tokens())
    q, k = cache["q", 0], cache["k", 0]
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(model.cfg.d_head)
    future = torch.triu(torch.ones(P, P, dtype=torch.bool), 1)
    got = cache["attn_scores", 0]
    assert torch.isinf(got[..., future]).all() and (got[..., future] < 0).all()
    torch.testing.assert_close(got[..., ~future], scores[..., ~future])
    pattern = cache["pattern", 0]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(B, 4, P))
    assert (pattern[..., future] == 0).all()


def test_changing_a_later_token_never_changes_earlier_logits():
    model = make_model()
    t = tokens()
    base = model(t)
    for i in range(P):
        t2 = t.clone()
        t2[:, i] = (t2[:, i] + 1) % 13
        out = model(t2)
        assert torch.equal(out[:, :i], base[:, :i])
        assert not torch.allclose(out[:, i:], base[:, i:])


def test_loss_is_mean_next_token_cross_entropy():
    model = make_model()
    t = tokens()
    logits, loss = model(t, return_type="both")
    manual = -logits[:, :-1].log_softmax(-1).gather(-1, t[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(loss, manual.mean())
    torch.testing.assert_close(model(t, return_type="loss"), loss)
    per_token = model(t, return_type="loss", loss_per_token=True)
    assert per_token.shape == (B, P - 1)
    torch.testing.assert_close(per_token, manual)
    torch.testing.assert_close(loss, F.cross_entropy(logits[:, :-1].transpose(1, 2), t[:, 1:]))
    with model.hooks(fwd_hooks=[("ln_final.hook_normalized", lambda a, hook: seen.append(hook.name))]):
        seen = []
        assert model(t, return_type=None) is None
    assert seen == ["ln_final.hook_normalized"]
    torch.testing.assert_close(model(t.int(), return_type="loss"), loss)  # int32 tokens work too


def test_stop_at_layer_returns_the_residual_stream_there():
    model = make_model()
    t = tokens()
    _, cache = model.run_with_cache(t)
    torch.testing.assert_close(model(t, stop_at_layer=0), cache["embed"] + cache["pos_embed"])
    torch.testing.assert_close(model(t, stop_at_layer=1), cache["resid_pre", 1])
    torch.testing.assert_close(model(t, stop_at_layer=-1), cache["resid_pre", 1])
    torch.testing.assert_close(model(t, stop_at_layer=2), cache["resid_post", 1])
    # Later blocks never run.
    _, partial = model.run_with_cache(t, stop_at_layer=1)
    assert "blocks.0.hook_resid_post" in partial and "blocks.1.hook_resid_pre" not in partial
    with pytest.raises(ValueError, match="stop_at_layer"):
        model(t, stop_at_layer=3)


def test_one_dimensional_tokens_are_batch_one():
    model = make_model()
    t = tokens()
    torch.testing.assert_close(model(t[0]), model(t[:1]))
    assert model(t[0]).shape == (1, P, 13)


def test_hooks_patch_and_the_layernorm_scale_path():
    model = make_model()
    t = tokens()
    base = model(t)
    zeroed = model.run_with_hooks(t, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda a, hook: torch.zeros_like(a))])
    assert not torch.allclose(zeroed, base)
    # A hook on the LayerNorm scale switches to the written-out LayerNorm: same numbers...
    same = model.run_with_hooks(t, fwd_hooks=[("blocks.0.ln1.hook_scale", lambda a, hook: None)])
    torch.testing.assert_close(same, base)
    # ...and patching the scale really changes the output.
    doubled = model.run_with_hooks(t, fwd_hooks=[("ln_final.hook_scale", lambda a, hook: 2 * a)])
    _, cache = model.run_with_cache(t)
    expected = model.unembed(cache["ln_final.hook_normalized"] / 2 * model.ln_final.w + model.ln_final.b)
    torch.testing.assert_close(doubled, expected)
    assert not model.hook_dict["ln_final.hook_scale"].has_hooks


def randomise_layernorms(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b")):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def test_hook_normalized_is_the_input_before_the_layernorm_weights():
    """As in TransformerLens 3.x: hook_normalized = (x - mean) / scale; w and b come after it."""
    model = randomise_layernorms(make_model(dtype=torch.float64))
    t = tokens()
    logits, cache = model.run_with_cache(t)
    for ln, x in [("blocks.1.ln1", cache["resid_pre", 1]), ("blocks.0.ln2", cache["resid_mid", 0]),
                  ("ln_final", cache["resid_post", 1])]:
        centred = x - x.mean(-1, keepdim=True)
        torch.testing.assert_close(cache[f"{ln}.hook_scale"], (centred.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt())
        torch.testing.assert_close(cache[f"{ln}.hook_normalized"], centred / cache[f"{ln}.hook_scale"])
    final = model.ln_final
    torch.testing.assert_close(logits, model.unembed(cache["ln_final.hook_normalized"] * final.w + final.b))
    # Zeroing it leaves only the LayerNorm's bias: logits = b @ W_U + b_U at every position.
    zeroed = model.run_with_hooks(t, fwd_hooks=[("ln_final.hook_normalized", lambda a, hook: torch.zeros_like(a))])
    torch.testing.assert_close(zeroed, (final.b @ model.W_U + model.b_U).expand_as(zeroed))
    # A hook on hook_normalized alone switches to the written-out path, with the same numbers.
    same = model.run_with_hooks(t, fwd_hooks=[("blocks.0.ln1.hook_normalized", lambda a, hook: None)])
    torch.testing.assert_close(same, model(t))


def test_hook_normalized_gradients_match_the_fused_layernorm():
    model = randomise_layernorms(make_model(dtype=torch.float64))
    t = tokens()
    model(t, return_type="loss").backward()
    fused = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    with model.hooks(fwd_hooks=[(lambda n: n.endswith("hook_normalized"), lambda a, hook: None)]):
        model(t, return_type="loss").backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, fused[k])


def test_hook_scale_gradients_match_the_fused_layernorm():
    model = make_model(dtype=torch.float64)
    t = tokens()
    model(t, return_type="loss").backward()
    fused = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    with model.hooks(fwd_hooks=[(lambda n: "scale" in n, lambda a, hook: None)]):
        model(t, return_type="loss").backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, fused[k])


@pytest.mark.parametrize("hook_name", ["hook_pattern", "hook_attn_scores"])
def test_fused_attention_matches_the_written_out_path(hook_name):
    # With no hook on the scores or the pattern, attention runs in PyTorch's fused kernel;
    # a hook there switches to the written-out maths. Both must give the same logits and grads.
    model = make_model(dtype=torch.float64)
    t = tokens()
    fused_logits = model(t)
    model(t, return_type="loss").backward()
    fused = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    seen = []
    with model.hooks(fwd_hooks=[(f"blocks.1.attn.{hook_name}", lambda a, hook: seen.append(hook.name))]):
        torch.testing.assert_close(model(t), fused_logits)
        model(t, return_type="loss").backward()
    assert seen == [f"blocks.1.attn.{hook_name}"] * 2
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, fused[k])


def test_hooks_registered_the_pytorch_way_also_fire():
    model = make_model()
    point = model.hook_dict["blocks.0.attn.hook_pattern"]
    seen = []
    handle = point.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    try:
        assert point.has_hooks
        model(tokens())
    finally:
        handle.remove()
    assert seen == [torch.Size([B, 4, P, P])] and not point.has_hooks


def test_in_place_edits_of_q_k_v_in_hooks_keep_gradients():
    # q, k and v are views into one fused [b, p, 3, h, e] matmul output: editing one in place
    # must change just that one, and backward must still work.
    model = make_model(dtype=torch.float64)
    t = tokens()

    def zero_head_0(act, hook):
        act[:, :, 0] = 0

    def replace_head_0(act, hook):
        out = act.clone()
        out[:, :, 0] = 0
        return out

    for name in ("q", "k", "v"):
        hook_name = f"blocks.0.attn.hook_{name}"
        in_place = model.run_with_hooks(t, return_type="loss", fwd_hooks=[(hook_name, zero_head_0)])
        in_place.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        model.zero_grad()
        replaced = model.run_with_hooks(t, return_type="loss", fwd_hooks=[(hook_name, replace_head_0)])
        replaced.backward()
        torch.testing.assert_close(in_place, replaced)
        for k, p in model.named_parameters():
            torch.testing.assert_close(p.grad, grads[k])
        model.zero_grad()
        assert not torch.allclose(in_place, model(t, return_type="loss"))


@pytest.mark.parametrize("name", ["q", "k", "v"])
def test_backward_hooks_on_q_k_v_see_the_true_gradients(name):
    # The gradient a backward hook sees must be d loss / d activation, computed independently
    # here by making the activation a leaf of its own.
    model = make_model(dtype=torch.float64)
    t, hook_name = tokens(), f"blocks.0.attn.hook_{name}"
    seen = {}
    with model.hooks(bwd_hooks=[(hook_name, lambda grad, hook: seen.__setitem__("grad", grad.clone()))]):
        model(t, return_type="loss").backward()
    leaf = {}

    def make_leaf(act, hook):
        leaf["act"] = act.detach().clone().requires_grad_(True)
        return leaf["act"]

    loss = model.run_with_hooks(t, return_type="loss", fwd_hooks=[(hook_name, make_leaf)])
    (expected,) = torch.autograd.grad(loss, leaf["act"])
    torch.testing.assert_close(seen["grad"], expected)


def test_use_attn_result_heads_sum_to_attn_out():
    model = make_model()
    t = tokens()
    base = model(t)
    with pytest.raises(KeyError, match="set_use_attn_result"):
        model.run_with_hooks(t, fwd_hooks=[("blocks.0.attn.hook_result", lambda a, hook: None)])
    model.set_use_attn_result(True)
    logits, cache = model.run_with_cache(t)
    torch.testing.assert_close(logits, base)
    for l in range(2):
        torch.testing.assert_close(cache["result", l].sum(2) + model.b_O[l], cache["attn_out", l])
    model.set_use_attn_result(False)
    assert "blocks.0.attn.hook_result" not in model.hook_dict
    model.cfg.use_attn_result = True
    with pytest.raises(RuntimeError, match="set_use_attn_result"):
        model(t)


def test_unknown_hook_names_list_the_nearest():
    model = make_model(attn_only=True)
    with pytest.raises(KeyError, match="did you mean 'blocks.0.attn.hook_pattern'"):
        model.run_with_hooks(tokens(), fwd_hooks=[("blocks.0.attn.hook_patern", lambda a, hook: None)])
    with pytest.raises(KeyError, match="attn_only"):
        model.run_with_cache(tokens(), names_filter=["blocks.0.hook_mlp_out"])
    with pytest.raises(KeyError, match="set_use_split_qkv_input"):
        model.add_hook("blocks.0.hook_q_input", lambda a, hook: None)
    with pytest.raises(KeyError, match="set_use_hook_mlp_in"):
        make_model().add_hook("blocks.1.hook_mlp_in", lambda a, hook: None)
    with pytest.raises(KeyError, match="normalization_type=None"):
        make_model(normalization_type=None).add_hook("blocks.0.ln1.hook_scale", lambda a, hook: None)


@pytest.mark.parametrize("kw, match", [
    (dict(d_model=16, n_heads=4, d_head=5), "d_model must equal n_heads \\* d_head"),
    (dict(d_model=18, n_heads=4), "not divisible by n_heads"),
    (dict(n_layers=0), "n_layers must be a positive int"),
    (dict(d_vocab=2.5), "d_vocab must be a positive int"),
    (dict(act_fn="swish"), "act_fn must be one of"),
    (dict(normalization_type="RMS"), "normalization_type must be"),
    (dict(positional_embedding_type="rotary"), "positional_embedding_type"),
    (dict(seed=-1), "seed must be a non-negative int"),
    (dict(init_range=0), "init_range"),
])
def test_bad_configs_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        make_cfg(**kw)


def test_config_defaults_and_dict_config():
    cfg = make_cfg(d_mlp=None)
    assert cfg.d_head == 4 and cfg.d_mlp == 64 and cfg.init_range == pytest.approx(0.8 / 4)
    with pytest.raises(TypeError, match="dtype"):
        make_cfg(dtype=torch.int64)
    with pytest.raises(TypeError, match="attn_only must be a bool"):
        make_cfg(attn_only=1)
    model = HookedTransformer(dict(n_layers=1, d_model=8, n_heads=2, d_vocab=5, n_ctx=4, device="cpu"))
    assert model.cfg.d_head == 4
    with pytest.raises(TypeError, match="cfg must be"):
        HookedTransformer("gpt2")


def test_bad_tokens_raise_clear_errors():
    model = make_model()
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, d_vocab=13\)"):
        model(torch.tensor([[1, 13]]))
    with pytest.raises(ValueError, match="tokens must lie"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="more than the model's context n_ctx=10"):
        model(torch.zeros(1, 11, dtype=torch.long))
    with pytest.raises(TypeError, match="tokens must be an integer tensor"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="tokens must have shape"):
        model(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="tokens must be a torch.Tensor"):
        model([[1, 2]])
    with pytest.raises(ValueError, match="at least 2 positions"):
        model(torch.zeros(2, 1, dtype=torch.long), return_type="loss")
    with pytest.raises(ValueError, match="return_type"):
        model(tokens(), return_type="probs")


def test_init_is_deterministic_given_the_seed():
    a, b, c = make_model(seed=3), make_model(seed=3), make_model(seed=4)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        if name.rsplit(".", 1)[-1].startswith("W_"):
            assert not torch.equal(pa, pc), name
            assert pa.std().item() == pytest.approx(a.cfg.init_range, rel=0.3)
    with torch.no_grad():
        a.blocks[0].attn.W_Q.zero_()
    a.init_weights()
    assert torch.equal(a.blocks[0].attn.W_Q, b.blocks[0].attn.W_Q)
    assert torch.equal(copy_model(a).W_Q, a.W_Q)


def test_generate_greedy_top_k_and_seeded_sampling():
    model = make_model(n_ctx=8)
    prompt = tokens(pos=3)
    greedy = model.generate(prompt, max_new_tokens=10, temperature=0)
    assert greedy.shape == (B, 13) and torch.equal(greedy[:, :3], prompt)
    assert torch.equal(greedy, model.generate(prompt, 10, do_sample=False))
    assert torch.equal(greedy, model.generate(prompt, 10, top_k=1, seed=5))
    # Greedy means argmax of the model's own next-token logits (over the last n_ctx tokens).
    assert torch.equal(greedy[:, 3], model(prompt)[:, -1].argmax(-1))
    assert torch.equal(greedy[:, -1], model(greedy[:, -9:-1])[:, -1].argmax(-1))
    s1 = model.generate(prompt, 10, temperature=2.0, seed=1)
    assert torch.equal(s1, model.generate(prompt, 10, temperature=2.0, seed=1))
    assert not torch.equal(s1, model.generate(prompt, 10, temperature=2.0, seed=2))
    top3 = model.generate(prompt, 1, top_k=3, temperature=5.0, seed=0)[:, -1]
    allowed = model(prompt)[:, -1].topk(3).indices
    assert (allowed == top3[:, None]).any(-1).all()
    assert model.generate(prompt[0], 2).shape == (1, 5)


def test_generate_stop_token():
    model = make_model()
    prompt = tokens(pos=2)
    first = model.generate(prompt, 1, temperature=0)[:, -1]
    out = model.generate(prompt, 5, temperature=0, stop_token=int(first[0]))
    assert out[0, 2] == first[0]
    for row in out:  # after the stop token, only stop tokens
        hits = (row[2:] == first[0]).nonzero()
        if len(hits):
            assert (row[2 + hits[0, 0]:] == first[0]).all()
    with pytest.raises(ValueError, match="top_k"):
        model.generate(prompt, 1, top_k=0)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 1, temperature=-1)


def test_a_tiny_model_learns_to_count():
    """Next token = previous + 1 (mod d_vocab): the loss falls from ~log(d_vocab) to near 0."""
    torch.manual_seed(0)
    model = HookedTransformer(TransformerConfig(n_layers=1, d_model=32, n_heads=2, d_vocab=16, n_ctx=12,
                                                attn_only=True, device="cpu", seed=0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        start = torch.randint(0, 16, (32, 1), generator=g)
        batch = (start + torch.arange(12)) % 16
        loss = model(batch, return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.8 * math.log(16)
    assert sum(losses[-10:]) / 10 < 0.1


def test_model_to_device_moves_the_mask():
    model = make_model().to("cpu")
    assert model.blocks[0].attn.mask.device == model.device
    assert model.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_same_results_on_cuda():
    model = make_model()
    t = tokens()
    cpu_logits = model(t)
    gpu = copy_model(model).to("cuda")
    torch.testing.assert_close(gpu(t).cpu(), cpu_logits, atol=1e-4, rtol=1e-4)
    _, cache = gpu.run_with_cache(t.cuda())
    assert cache["pattern", 1].device.type == "cuda"
    assert gpu.generate(t, 3, seed=0).device.type == "cuda"


def test_start_at_layer_continues_from_the_residual_stream():
    model = HookedTransformer(TransformerConfig(n_layers=3, d_model=16, n_heads=2, d_mlp=32, d_vocab=20, n_ctx=8,
                                                act_fn="gelu", seed=1))
    tokens = torch.randint(0, 20, (2, 8), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(tokens)
    for layer in range(4):
        resid = cache[f"blocks.{layer}.hook_resid_pre"] if layer < 3 else cache["blocks.2.hook_resid_post"]
        torch.testing.assert_close(model(resid, start_at_layer=layer), logits)
    mid = model(cache["blocks.1.hook_resid_pre"], start_at_layer=1, stop_at_layer=2)
    torch.testing.assert_close(mid, cache["blocks.2.hook_resid_pre"])
    with pytest.raises(ValueError, match="a loss needs the tokens"):
        model(cache["blocks.1.hook_resid_pre"], start_at_layer=1, return_type="loss")
    with pytest.raises(ValueError, match=r"start_at_layer must be an int in \[0, 3\]"):
        model(cache["blocks.1.hook_resid_pre"], start_at_layer=4)
    with pytest.raises(ValueError, match="the residual stream"):
        model(tokens, start_at_layer=1)


@pytest.mark.parametrize("switch", ["use_attn_in", "use_split_qkv_input"])
def test_per_head_inputs_give_the_same_model(switch):
    """With the inputs split per head the model computes the same logits and gradients, and the
    fused q/k/v matmul comes back when the switch is off again."""
    model = randomise_layernorms(make_model(dtype=torch.float64))
    t = tokens()
    logits, loss = model(t, return_type="both")
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    getattr(model, f"set_{switch}")(True)
    logits2, loss2 = model(t, return_type="both")
    loss2.backward()
    torch.testing.assert_close(logits2, logits)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[k])
    getattr(model, f"set_{switch}")(False)
    assert not any("_input" in n or "attn_in" in n for n in model.hook_dict)
    torch.testing.assert_close(model(t), logits)


def test_split_qkv_inputs_reach_one_head_and_one_of_q_k_v():
    model = make_model(use_split_qkv_input=True)
    t = tokens()
    _, clean = model.run_with_cache(t)
    for name in ("hook_q_input", "hook_k_input", "hook_v_input"):
        torch.testing.assert_close(clean[f"blocks.0.{name}"], clean["resid_pre", 0][:, :, None].expand(B, P, 4, 16))

    def zero_head_2(act, hook):
        out = act.clone()
        out[:, :, 2] = 0
        return out

    with model.hooks(fwd_hooks=[("blocks.1.hook_k_input", zero_head_2)]):
        _, patched = model.run_with_cache(t)
    # Head 2's keys come from ln1(0) = b (0 at init, so k = b_K); its queries and values and
    # every other head are untouched.
    k, k0 = patched["k", 1], clean["k", 1]
    torch.testing.assert_close(k[:, :, [0, 1, 3]], k0[:, :, [0, 1, 3]])
    torch.testing.assert_close(k[:, :, 2], model.blocks[1].attn.b_K[2].expand(B, P, 4))
    torch.testing.assert_close(patched["q", 1], clean["q", 1])
    torch.testing.assert_close(patched["v", 1], clean["v", 1])
    # Gradients reach each head's own input copy.
    seen = {}
    model.add_hook("blocks.0.hook_v_input", lambda g, hook: seen.__setitem__("v", g), dir="bwd")
    model.add_hook("blocks.0.hook_q_input", lambda g, hook: seen.__setitem__("q", g), dir="bwd")
    model(t, return_type="loss").backward()
    model.reset_hooks()
    assert seen["v"].shape == (B, P, 4, 16) and seen["v"].abs().sum() > 0
    # At position 0 each query attends only to itself: the gradient on q's input there is 0.
    torch.testing.assert_close(seen["q"][:, 0], torch.zeros_like(seen["q"][:, 0]))


def test_hook_mlp_in_and_attn_in_can_patch():
    model = make_model(use_attn_in=True, use_hook_mlp_in=True)
    t = tokens()
    logits, cache = model.run_with_cache(t)
    torch.testing.assert_close(cache["blocks.0.hook_mlp_in"], cache["resid_mid", 0])
    torch.testing.assert_close(cache["blocks.0.hook_attn_in"], cache["resid_pre", 0][:, :, None].expand(B, P, 4, 16))

    def zero_in_place(act, hook):
        act.zero_()  # the block hands the hook a copy, so resid_mid itself is untouched

    with model.hooks(fwd_hooks=[("blocks.1.hook_mlp_in", zero_in_place)]):
        _, patched = model.run_with_cache(t)
    torch.testing.assert_close(patched["resid_mid", 1], cache["resid_mid", 1])
    mlp_of_zero = model.blocks[1].mlp(model.blocks[1].ln2(torch.zeros(B, P, 16)))
    torch.testing.assert_close(patched["mlp_out", 1], mlp_of_zero)
    with pytest.raises(ValueError, match="attn_only"):
        make_model(attn_only=True).set_use_hook_mlp_in(True)
    with pytest.raises(ValueError, match="use_hook_mlp_in"):
        make_cfg(attn_only=True, use_hook_mlp_in=True)
    model.cfg.use_attn_in = False
    with pytest.raises(RuntimeError, match="set_use_attn_in"):
        model(t)


def test_unembed_hooks():
    model = make_model()
    t = tokens()
    logits, cache = model.run_with_cache(t)
    torch.testing.assert_close(cache["unembed.hook_out"], logits)
    torch.testing.assert_close(model.unembed(cache["unembed.hook_in"]), logits)
    doubled = model.run_with_hooks(t, fwd_hooks=[("unembed.hook_out", lambda a, hook: 2 * a)])
    torch.testing.assert_close(doubled, 2 * logits)
