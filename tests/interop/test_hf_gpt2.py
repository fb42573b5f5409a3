"""A randomly initialised Hugging Face GPT2LMHeadModel (built from a GPT2Config: nothing is
downloaded) converted with toykit.interop.from_hf_gpt2: the same logits and residual stream."""

import pytest
import torch

from toykit.interop import from_hf_gpt2, to_transformer_lens

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def gpt2(dtype=torch.float32, **kw):
    base = dict(n_layer=3, n_embd=64, n_head=4, n_positions=32, vocab_size=101, resid_pdrop=0.0,
                embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**base, **kw})).to(dtype).eval()
    with torch.no_grad():  # GPT-2 initialises biases and LayerNorm weights trivially; make them matter
        for name, p in model.named_parameters():
            if "ln_" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)], ids=["float32", "float64"])
@pytest.mark.parametrize("kw", [dict(), dict(n_inner=96, activation_function="gelu"),
                                dict(activation_function="relu", n_layer=1, n_head=8)])
def test_logits_and_residual_stream_match(kw, dtype, tol):
    hf = gpt2(dtype, **kw)
    model = from_hf_gpt2(hf)
    assert model.cfg.dtype == dtype and model.cfg.d_mlp == (kw.get("n_inner") or 4 * 64)
    tokens = torch.randint(0, 101, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = hf(tokens, output_hidden_states=True)
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, out.logits, atol=tol, rtol=0)
    # hidden_states[l] is the input of block l (the last one is after ln_f).
    for l in range(model.cfg.n_layers):
        torch.testing.assert_close(cache["resid_pre", l], out.hidden_states[l], atol=tol, rtol=0)
    # And on to TransformerLens, through toykit.
    torch.testing.assert_close(to_transformer_lens(model)(tokens), out.logits, atol=tol, rtol=0)


def test_unsupported_gpt2_settings_are_named():
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        from_hf_gpt2(gpt2(scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(ValueError, match="activation_function"):
        from_hf_gpt2(gpt2(activation_function="silu"))
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        from_hf_gpt2(gpt2().transformer)
