"""Every toykit SAE architecture through SAELens and back: the same parameters, the same
encode / decode / forward and hooks, and (TopK) the one place where the losses differ, AuxK."""

import pytest
import torch

from toykit.interop import from_saelens, to_saelens
from toykit.sae import make_sae

sae_lens = pytest.importorskip("sae_lens")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ARCHS = ["standard", "topk", "jumprelu"]
HOOKS = ["hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_output"]


def trained_looking_sae(arch, d_in=16, d_sae=48, dtype=torch.float32):
    """An SAE with every parameter moved off its initial value (biases and thresholds included)."""
    sae = make_sae(d_in=d_in, d_sae=d_sae, architecture=arch, k=6 if arch == "topk" else None, seed=1,
                   device="cpu", dtype=dtype)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name == "log_threshold":
                p.copy_(torch.empty(p.shape, dtype=dtype).uniform_(-3, -1, generator=g))
            else:
                p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=dtype))
    return sae


def inputs(d_in=16, n=64, dtype=torch.float32):
    return torch.randn(n, d_in, generator=torch.Generator().manual_seed(3), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("arch", ARCHS)
def test_to_saelens_computes_the_same_sae(arch, dtype):
    sae = trained_looking_sae(arch, dtype=dtype)
    theirs = to_saelens(sae)
    assert type(theirs).__name__ == {"standard": "StandardSAE", "topk": "TopKSAE", "jumprelu": "JumpReLUSAE"}[arch]
    assert theirs.W_enc.dtype == dtype
    x = inputs(dtype=dtype)
    ours_out, ours_cache = sae.run_with_cache(x)
    their_out, their_cache = theirs.run_with_cache(x)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(ours_out, their_out, **tol)
    for hook in HOOKS:
        torch.testing.assert_close(ours_cache[hook], their_cache[hook], **tol, msg=hook)
    f = sae.encode(x)
    torch.testing.assert_close(f, theirs.encode(x), **tol)
    assert (f > 0).sum() > 0 and (f == 0).sum() > 0  # the activation really selects
    torch.testing.assert_close(sae.decode(f), theirs.decode(f), **tol)
    if arch == "jumprelu":
        torch.testing.assert_close(theirs.threshold.detach(), sae.log_threshold.detach().exp())


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_through_saelens_is_exact(arch):
    sae = trained_looking_sae(arch)
    back = from_saelens(to_saelens(sae))
    assert back.cfg.architecture == arch and back.cfg.k == sae.cfg.k
    for name, value in sae.state_dict().items():
        if name == "log_threshold":  # exp then log: equal to float rounding
            torch.testing.assert_close(back.state_dict()[name], value, atol=1e-6, rtol=0)
        else:
            assert torch.equal(back.state_dict()[name], value), name


@pytest.mark.parametrize("arch", ARCHS)
def test_error_term_as_in_saelens(arch):
    sae = trained_looking_sae(arch)
    theirs = to_saelens(sae)
    theirs.use_error_term = True
    sae.use_error_term = True
    x = inputs()
    ours_out, ours_cache = sae.run_with_cache(x)
    their_out, their_cache = theirs.run_with_cache(x)
    torch.testing.assert_close(ours_out, their_out, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours_cache["hook_sae_error"], their_cache["hook_sae_error"], atol=1e-6, rtol=1e-6)


def test_a_saelens_training_sae_converts():
    cfg = sae_lens.JumpReLUTrainingSAEConfig(d_in=16, d_sae=48)
    theirs = sae_lens.JumpReLUTrainingSAE(cfg)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn_like(p))
        theirs.threshold.abs_()  # SAELens keeps it >= 0 (it clamps after each step)
    ours = from_saelens(theirs)
    x = inputs()
    torch.testing.assert_close(ours.encode(x), theirs.encode(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours(x), theirs.decode(theirs.encode(x)), atol=1e-6, rtol=1e-6)


def test_unsupported_saelens_settings_are_named():
    theirs = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=8, d_sae=16, k=2, rescale_acts_by_decoder_norm=True))
    with pytest.raises(ValueError, match="rescale_acts_by_decoder_norm"):
        from_saelens(theirs)
    theirs = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=8, d_sae=16, apply_b_dec_to_input=False))
    with pytest.raises(ValueError, match="apply_b_dec_to_input"):
        from_saelens(theirs)
    theirs = sae_lens.JumpReLUTrainingSAE(sae_lens.JumpReLUTrainingSAEConfig(d_in=8, d_sae=16))
    with torch.no_grad():
        theirs.threshold[3] = -0.5
    with pytest.raises(ValueError, match="negative JumpReLU threshold"):
        from_saelens(theirs)
    with pytest.raises(TypeError, match="sae_lens SAE"):
        from_saelens(make_sae(d_in=8, d_sae=16))


def test_topk_auxk_differs_from_saelens_only_by_the_relu():
    """The one training loss that differs. toykit keeps Gao et al.'s ReLU on the AuxK latents
    (OpenAI's reference train.py applies torch.relu to them); SAELens 6.54 does not. With fewer
    dead latents than k_aux, some chosen dead latents have negative pre-activations: SAELens lets
    them subtract from ê, toykit zeroes them. The main loss (MSE) agrees exactly."""
    d_in, d_sae = 16, 64
    sae = trained_looking_sae("topk", d_in=d_in, d_sae=d_sae)
    cfg = sae_lens.TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=sae.cfg.k, rescale_acts_by_decoder_norm=False)
    theirs = sae_lens.TopKTrainingSAE(cfg)
    theirs.load_state_dict({k: v for k, v in sae.state_dict().items()})
    x = inputs(d_in=d_in)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[:5] = True  # 5 dead latents, fewer than k_aux = d_in // 2 = 8
    assert sae.cfg.aux_k == d_in // 2  # the same k_aux as SAELens, so the scale min(n_dead / k_aux, 1) agrees
    ours = sae.loss(x, dead_mask=dead, aux_coefficient=1.0)
    hidden_pre = sae.encode_pre(x)
    sae_out = sae(x)
    their_aux = theirs.calculate_topk_aux_loss(x, sae_out, hidden_pre, dead)
    torch.testing.assert_close(ours.mse_loss, (sae_out - x).pow(2).sum(-1).mean())
    assert (hidden_pre[:, :5] < 0).any()  # so the ReLU matters here
    assert not torch.allclose(ours.aux_loss, their_aux), "expected the documented AuxK difference"

    # Both are ‖e − ê‖² with ê from the dead latents' pre-activations; only the ReLU differs.
    def auxk(relu):
        acts = torch.where(dead, hidden_pre, torch.zeros_like(hidden_pre))
        acts = acts.relu() if relu else acts
        e = (x - sae_out).detach()
        return 5 / 8 * (e - acts @ sae.W_dec).pow(2).sum(-1).mean()

    torch.testing.assert_close(ours.aux_loss, auxk(relu=True))
    torch.testing.assert_close(their_aux, auxk(relu=False))
