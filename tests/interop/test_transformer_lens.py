"""Every shipped checkpoint, converted with toykit.interop, against the real TransformerLens:
the same logits and the same tensor at every hook, the same result of the same intervention, the
same gradients and the same weights after one AdamW step."""

import dataclasses
import re

import pytest
import torch

from toykit import pretrained
from toykit.interop import from_transformer_lens, to_transformer_lens
from toykit.transformer import HookedTransformer

transformer_lens = pytest.importorskip("transformer_lens")

# TL 3.9 marks HookedTransformer deprecated (in favour of TransformerBridge); it is the class toykit matches.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# TransformerLens has no CNNs: the shapes CNN has no counterpart there.
CHECKPOINTS = pretrained.available(architecture="transformer")
# Absolute tolerances. Float32 rounding grows with a tensor's size (tinylang's mlp_out entries
# reach ~30 and differ by up to ~8e-5), so activations may also differ by 1e-5 of their value.
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def load(name, dtype=torch.float32, **switches):
    """A shipped checkpoint on the CPU, in dtype, with the given hook switches on."""
    model = pretrained.load(name, device="cpu")
    cfg = dataclasses.replace(model.cfg, dtype=dtype, device="cpu", **switches)
    out = HookedTransformer(cfg)
    out.load_state_dict({k: v.to(dtype) for k, v in model.state_dict().items()})
    return out


def tokens_for(model, seed=0, batch=3):
    pos = min(model.cfg.n_ctx, 24)
    return torch.randint(0, model.cfg.d_vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


def hook_class(name):
    """blocks.3.attn.hook_pattern -> attn.hook_pattern: what the per-class maxima are reported by."""
    return re.sub(r"^blocks\.\d+\.", "", name)


def max_diff(a, b):
    """max |a - b|, counting equal entries (such as the masked -inf scores) as 0."""
    a, b = a.double(), b.double()
    return torch.where(a == b, 0.0, (a - b).abs()).max().item() if a.numel() else 0.0


def all_switches(model):
    on = dict(use_attn_result=True, use_attn_in=True)
    return on if model.cfg.attn_only else {**on, "use_hook_mlp_in": True}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_logits_and_every_hook_match(name, dtype, record_diff):
    tol = TOL[dtype]
    for switches in [{}, all_switches(load(name)), {"use_split_qkv_input": True}]:
        model = load(name, dtype, **switches)
        tl_model = to_transformer_lens(model)
        tokens = tokens_for(model)
        logits, cache = model.run_with_cache(tokens)
        tl_logits, tl_cache = tl_model.run_with_cache(tokens)
        # The same hooks fire in both, and each holds the same tensor.
        assert sorted(cache) == sorted(tl_cache.keys()), (switches, set(cache) ^ set(tl_cache.keys()))
        record_diff(name, str(dtype)[6:], "logits", max_diff(logits, tl_logits))
        torch.testing.assert_close(logits, tl_logits, atol=tol, rtol=RTOL[dtype])
        for hook in cache:
            assert cache[hook].shape == tl_cache[hook].shape, hook
            record_diff(name, str(dtype)[6:], hook_class(hook), max_diff(cache[hook], tl_cache[hook]))
            torch.testing.assert_close(cache[hook], tl_cache[hook], atol=tol, rtol=RTOL[dtype],
                                       msg=lambda m, hook=hook, sw=switches: f"{hook} with {sw}: {m}")


def interventions(model):
    """(label, fwd_hooks) pairs: the same edits, by name, for both libraries."""
    cfg = model.cfg
    last = cfg.n_layers - 1

    def zero(act, hook):
        return torch.zeros_like(act)

    def ablate_head_1(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    def uniform_pattern(pattern, hook):
        # Every query attends equally to itself and every earlier position.
        causal = torch.ones_like(pattern).tril()
        return causal / causal.sum(-1, keepdim=True)

    edits = [("zero attn_out", [("blocks.0.hook_attn_out", zero)]),
             ("zero q", [(f"blocks.{last}.attn.hook_q", zero)]),
             ("ablate head", [(f"blocks.{last}.attn.hook_z", ablate_head_1)]),
             ("replace pattern", [("blocks.0.attn.hook_pattern", uniform_pattern)]),
             ("zero unembed input", [("unembed.hook_in", zero)])]
    if cfg.normalization_type is not None:
        edits += [("zero ln_final normalized", [("ln_final.hook_normalized", zero)]),
                  ("zero ln1 normalized", [("blocks.0.ln1.hook_normalized", zero)]),
                  ("double ln_final scale", [("ln_final.hook_scale", lambda a, hook: 2 * a)])]
    if not cfg.attn_only:
        edits += [("zero mlp post", [("blocks.0.mlp.hook_post", zero)])]
    return edits


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_the_same_interventions_give_the_same_logits(name, record_diff):
    model = load(name)
    tl_model = to_transformer_lens(model)
    tokens = tokens_for(model, seed=1)
    clean = model(tokens)
    for label, hooks in interventions(model):
        ours = model.run_with_hooks(tokens, fwd_hooks=hooks)
        theirs = tl_model.run_with_hooks(tokens, fwd_hooks=hooks)
        record_diff(name, "float32", "intervention logits", max_diff(ours, theirs))
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-5, msg=label)
        assert max_diff(ours, clean) > 1e-3, f"{label} changed nothing, so it tests nothing"


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_gradients_and_one_adamw_step_match(name, record_diff):
    for dtype in (torch.float32, torch.float64):
        model = load(name, dtype)
        tl_model = to_transformer_lens(model)
        tokens = tokens_for(model, seed=2, batch=4)
        loss = model(tokens, return_type="loss")
        tl_loss = tl_model(tokens, return_type="loss")
        torch.testing.assert_close(loss, tl_loss, atol=TOL[dtype], rtol=0)
        loss.backward()
        tl_loss.backward()
        tl_params = dict(tl_model.named_parameters())
        for key, p in model.named_parameters():
            diff = max_diff(p.grad, tl_params[key].grad)
            record_diff(name, str(dtype)[6:], "gradients", diff)
            assert diff <= TOL[dtype], (key, diff)
        if dtype == torch.float32:
            continue  # one Adam step is ~lr * sign(grad): float32 rounding of a tiny gradient can flip it
        for m in (model, tl_model):
            torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1).step()
        for key, p in model.named_parameters():
            diff = max_diff(p, tl_params[key])
            record_diff(name, "float64", "weights after AdamW", diff)
            assert diff <= 1e-10, (key, diff)
        torch.testing.assert_close(model(tokens, return_type="loss"), tl_model(tokens, return_type="loss"),
                                   atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_round_trip_is_exact_and_tl_buffers_are_handled(name):
    model = load(name)
    tl_model = to_transformer_lens(model)
    tl_state = tl_model.state_dict()
    # TransformerLens's state dict carries its attention buffers; toykit's checkpoints do not.
    assert any(k.endswith("attn.IGNORE") for k in tl_state) and not any("IGNORE" in k for k in model.state_dict())
    back = from_transformer_lens(tl_model)
    assert back.cfg == dataclasses.replace(model.cfg, device=back.cfg.device)
    assert back.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    # A strict load of TL's state dict into toykit fails on exactly those buffers, which is why
    # the converters drop them.
    with pytest.raises(RuntimeError, match="IGNORE"):
        HookedTransformer(model.cfg).load_state_dict(tl_state)


@pytest.mark.parametrize("kw", [
    dict(act_fn="gelu_new", normalization_type="LNPre"),
    dict(act_fn="gelu", normalization_type=None, attn_only=True),
    dict(act_fn="relu", normalization_type="LN", d_mlp=40),
])
def test_a_model_built_in_transformer_lens_converts(kw):
    cfg = transformer_lens.HookedTransformerConfig(n_layers=2, d_model=32, n_ctx=16, d_head=8, d_vocab=50,
                                                   seed=None, **kw)
    torch.manual_seed(0)
    tl_model = transformer_lens.HookedTransformer(cfg)
    with torch.no_grad():  # TL initialises biases and LN weights trivially; make them matter
        for name, p in tl_model.named_parameters():
            if name.endswith(("b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "b_U", ".w", ".b")):
                p.add_(0.1 * torch.randn_like(p))
    model = from_transformer_lens(tl_model)
    tokens = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model(tokens), tl_model(tokens), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kw, option", [
    (dict(positional_embedding_type="rotary", rotary_dim=8), "positional_embedding_type"),
    (dict(normalization_type="RMS"), "normalization_type"),
    (dict(act_fn="silu"), "act_fn"),
    (dict(n_key_value_heads=2), "n_key_value_heads"),
    (dict(parallel_attn_mlp=True), "parallel_attn_mlp"),
    (dict(d_vocab_out=20), "d_vocab_out"),
])
def test_unsupported_options_are_named(kw, option):
    base = dict(n_layers=1, d_model=32, n_ctx=8, d_head=8, d_vocab=40, act_fn="relu", seed=None)
    tl_model = transformer_lens.HookedTransformer(transformer_lens.HookedTransformerConfig(**{**base, **kw}))
    with pytest.raises(ValueError, match=option):
        from_transformer_lens(tl_model)


def test_missing_library_names_the_package(monkeypatch):
    from toykit.interop import from_hf_gpt2, to_saelens
    from toykit.sae import make_sae
    model = load(CHECKPOINTS[0])
    for module, package, call in [("transformer_lens", "transformer-lens", lambda: to_transformer_lens(model)),
                                  ("sae_lens", "sae-lens", lambda: to_saelens(make_sae(d_in=4, d_sae=8))),
                                  ("transformers", "transformers", lambda: from_hf_gpt2(None))]:
        with monkeypatch.context() as m:
            m.setitem(__import__("sys").modules, module, None)  # what a missing package looks like
            with pytest.raises(ImportError, match=f"pip install {package}"):
                call()


def test_importing_toykit_imports_none_of_the_optional_libraries():
    import subprocess
    import sys
    code = ("import sys, toykit, toykit.interop, toykit.transformer, toykit.sae, toykit.hooks\n"
            "bad = [m for m in ('transformer_lens', 'sae_lens', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", [n for n in CHECKPOINTS if pretrained.manifest()[n]["config"]["normalization_type"]])
def test_weight_processing_matches(name, record_diff):
    """toykit's process_weights and TL's process_weights_ (fold LayerNorm, centre writing weights
    and the unembedding, fold value biases) give the same weights. TL 3.9 processes a state dict
    in float32 whatever the model's dtype (weight_processing.py casts it), so in float64 the two
    agree to float32 rounding (~1e-8 here); toykit's result is the exact float64 one."""
    from toykit.weight_processing import process_weights
    model = load(name, torch.float64)
    tl_model = to_transformer_lens(model)
    tl_model.process_weights_()
    ours = process_weights(model)
    assert ours.cfg.normalization_type == tl_model.cfg.normalization_type == "LNPre"
    tl_state = tl_model.state_dict()
    for key, value in ours.state_dict().items():
        diff = max_diff(value, tl_state[key])
        record_diff(name, "float64", "processed weights", diff)
        assert diff <= 1e-6, (key, diff)
    W_E = model.W_E.detach()
    torch.testing.assert_close(ours.W_E, W_E - W_E.mean(-1, keepdim=True), atol=1e-14, rtol=0)
    back = from_transformer_lens(tl_model)
    tokens = tokens_for(model, seed=4)
    torch.testing.assert_close(back(tokens), ours(tokens), atol=1e-5, rtol=0)
    # Processing keeps the predictions (centring the unembedding shifts each position's logits
    # by a constant, which softmax ignores).
    torch.testing.assert_close(ours(tokens).log_softmax(-1), model(tokens).log_softmax(-1), atol=1e-10, rtol=0)
