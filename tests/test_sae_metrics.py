"""toykit.sae.metrics against hand-computed examples, and splicing an SAE into a transformer."""

import math

import pytest
import torch

from toykit import HookedTransformer, TransformerConfig
from toykit.sae import make_sae
from toykit.sae.metrics import (
    cosine_similarity_matrix,
    dead_fraction,
    evaluate_sae,
    explained_variance,
    feature_density,
    l0,
    log_feature_density,
    loss_recovered,
    max_cosine_similarity,
    mmcs,
    mse,
)
from toykit.sae.splicing import (
    clamp_latent_hook,
    generate_with_clamped_latent,
    mean_ablation_hook,
    run_with_sae,
    sae_replacement_hook,
    spliced_losses,
)

ACTS = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.5], [3.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_l0():
    assert l0(ACTS).item() == pytest.approx((2 + 1 + 1 + 1) / 4)
    assert l0(ACTS.view(2, 2, 3)).item() == pytest.approx(1.25)  # leading axes are flattened


def test_mse():
    assert mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])).item() == pytest.approx(2.5)


def test_explained_variance():
    x = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean [1, 1]; Σ‖x − mean‖² = 4
    x_hat = torch.tensor([[0.0, 1.0], [2.0, 2.0]])  # Σ‖x − x̂‖² = 1
    assert explained_variance(x, x_hat).item() == pytest.approx(0.75)
    assert explained_variance(x, x).item() == pytest.approx(1.0)
    assert explained_variance(x, torch.ones_like(x)).item() == pytest.approx(0.0)  # the mean explains nothing
    with pytest.raises(ValueError, match="same shape"):
        explained_variance(x, x[:1])


def test_feature_density_and_dead_fraction():
    assert torch.allclose(feature_density(ACTS), torch.tensor([0.75, 0.0, 0.5]))
    assert torch.allclose(log_feature_density(ACTS), torch.tensor([math.log10(0.75), -10.0, math.log10(0.5)]))
    assert dead_fraction(ACTS).item() == pytest.approx(1 / 3)
    assert dead_fraction(ACTS[1:2]).item() == pytest.approx(2 / 3)  # a shorter window: more look dead


def test_mmcs():
    W_dec = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    true = torch.tensor([[0.0, 1.0], [-2.0, 0.0]])  # unnormalised and sign-flipped on purpose
    # feature 0: best |cos| = 1/√2 (with [1, 1]); feature 1: |cos| = 1 (with [1, 0])
    assert torch.allclose(max_cosine_similarity(W_dec, true), torch.tensor([1 / math.sqrt(2), 1.0]))
    assert mmcs(W_dec, true).item() == pytest.approx((1 / math.sqrt(2) + 1) / 2)
    assert cosine_similarity_matrix(W_dec, true).shape == (2, 2)
    with pytest.raises(ValueError, match="true_features"):
        mmcs(W_dec, torch.ones(3, 5))


def test_loss_recovered():
    assert loss_recovered(3.0, clean_loss=2.0, ablation_loss=6.0) == pytest.approx(0.75)
    assert loss_recovered(2.0, clean_loss=2.0, ablation_loss=6.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="nothing to recover"):
        loss_recovered(3.0, clean_loss=2.0, ablation_loss=2.0)
    # The same spliced loss looks much better against a bad baseline than against a good one.
    assert loss_recovered(3.0, clean_loss=2.0, ablation_loss=12.0) == pytest.approx(0.9)
    assert loss_recovered(3.0, clean_loss=2.0, ablation_loss=4.0) == pytest.approx(0.5)
    # the two reference losses are keyword-only, so an old positional call cannot swap them
    with pytest.raises(TypeError):
        loss_recovered(2.0, 3.0, 6.0)
    with pytest.raises(TypeError, match="clean_loss"):
        loss_recovered(3.0, clean_loss="2", ablation_loss=6.0)
    assert loss_recovered(torch.tensor(3.0), clean_loss=2.0, ablation_loss=6.0) == pytest.approx(0.75)


def test_mean_ablation_hook():
    mean = torch.tensor([1.0, -2.0, 0.5])
    x = torch.randn(2, 4, 3)
    before = x.clone()
    out = mean_ablation_hook(mean)(x, None)
    assert out.shape == x.shape and torch.equal(out, mean.expand(2, 4, 3))
    assert torch.equal(x, before)  # the input is not modified
    out[0, 0, 0] = 9.0  # the output is a tensor of its own, not a view of the mean
    assert mean[0] == 1.0
    with pytest.raises(ValueError, match="mean_activation"):
        mean_ablation_hook(torch.ones(2, 3))
    with pytest.raises(ValueError, match="d_in=3"):
        mean_ablation_hook(mean)(torch.randn(2, 5), None)


def identity_sae(d: int):
    """f = [ReLU(x), ReLU(−x)], x̂ = ReLU(x) − ReLU(−x) = x exactly."""
    sae = make_sae(d_in=d, d_sae=2 * d, device="cpu")
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_evaluate_sae():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    result = evaluate_sae(identity_sae(3), x, batch_size=7)
    assert result["mse"] == pytest.approx(0.0, abs=1e-10)
    assert result["explained_variance"] == pytest.approx(1.0)
    assert result["l0"] == pytest.approx(3.0)  # every coordinate is non-zero: one of each pair fires
    assert result["dead_fraction"] == 0.0
    positive = evaluate_sae(identity_sae(3), x.abs() + 0.1)
    assert positive["dead_fraction"] == pytest.approx(0.5)  # the ReLU(−x) half never fires


@pytest.fixture(scope="module")
def model():
    cfg = TransformerConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=11, n_ctx=6, seed=0,
                            device="cpu")
    return HookedTransformer(cfg)


def test_splicing_a_perfect_sae_recovers_all_the_loss(model):
    tokens = torch.randint(0, 11, (5, 6), generator=torch.Generator().manual_seed(0))
    sae = identity_sae(8)
    clean = model(tokens)
    assert torch.allclose(run_with_sae(model, sae, tokens, hook_name="blocks.0.hook_resid_post"), clean, atol=1e-5)
    result = spliced_losses(model, sae, tokens, "blocks.0.hook_resid_post", batch_size=2)
    assert result["sae_loss"] == pytest.approx(result["clean_loss"], abs=1e-5)
    assert result["zero_ablation_loss"] != pytest.approx(result["clean_loss"])
    assert result["loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert result["loss_recovered_mean_ablation"] == pytest.approx(1.0, abs=1e-4)
    assert not any(hp.has_hooks for hp in model.hook_points())  # nothing left behind
    with pytest.raises(KeyError, match="unknown hook name"):
        spliced_losses(model, sae, tokens, "blocks.0.hook_resid_pots")


def test_spliced_losses_mean_ablation(model):
    tokens = torch.randint(0, 11, (5, 6), generator=torch.Generator().manual_seed(1))
    hook = "blocks.0.hook_resid_post"
    sae = make_sae(d_in=8, d_sae=16, device="cpu", seed=2)  # untrained: a poor reconstruction
    _, cache = model.run_with_cache(tokens, names_filter=hook)
    mean = cache[hook].reshape(-1, 8).mean(dim=0)
    result = spliced_losses(model, sae, tokens, hook, batch_size=2)
    expected = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook, mean_ablation_hook(mean))]).item()
    assert result["mean_ablation_loss"] == pytest.approx(expected, abs=1e-5)  # default: the mean over tokens
    L = result
    assert L["loss_recovered_mean_ablation"] == pytest.approx(
        (L["mean_ablation_loss"] - L["sae_loss"]) / (L["mean_ablation_loss"] - L["clean_loss"]))
    other = spliced_losses(model, sae, tokens, hook, mean_activation=torch.zeros(8))  # zero is a mean too
    assert other["mean_ablation_loss"] == pytest.approx(other["zero_ablation_loss"], abs=1e-5)
    with pytest.raises(ValueError, match="mean_activation"):
        spliced_losses(model, sae, tokens, hook, mean_activation=torch.zeros(8, 1))


def test_clamping_a_latent_adds_its_decoder_row(model):
    sae = make_sae(d_in=8, d_sae=16, device="cpu", seed=1)
    x = torch.randn(2, 3, 8)
    f = sae.encode(x)
    steered = clamp_latent_hook(sae, latent=5, value=4.0)(x, None)
    expected = x + (4.0 - f[..., 5:6]) * sae.W_dec[5]  # the error term is kept
    assert torch.allclose(steered, expected, atol=1e-5)
    no_error = clamp_latent_hook(sae, latent=5, value=4.0, keep_error=False)(x, None)
    f[..., 5] = 4.0
    assert torch.allclose(no_error, sae.decode(f), atol=1e-5)
    with pytest.raises(ValueError, match="latent must be an int"):
        clamp_latent_hook(sae, latent=16, value=1.0)


def test_clamping_a_latent_at_chosen_positions_leaves_the_others_untouched():
    sae = make_sae(d_in=8, d_sae=16, device="cpu", seed=1)
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    everywhere = clamp_latent_hook(sae, latent=5, value=3.0)(x, None)
    value = torch.tensor(3.0)  # e.g. 10 * acts.max(): a one-element tensor works too
    for positions, rows in [(-1, [[3], [3]]), (slice(1, 3), [[1, 2], [1, 2]]), (torch.tensor([0, 2]), [[0], [2]])]:
        out = clamp_latent_hook(sae, latent=5, value=value, positions=positions)(x, None)
        for b in range(2):
            for p in range(4):
                expected = everywhere[b, p] if p in rows[b] else x[b, p]
                assert torch.equal(out[b, p], expected), (positions, b, p)
    no_error = clamp_latent_hook(sae, latent=5, value=3.0, keep_error=False, positions=0)(x, None)
    f = sae.encode(x[:, 0])
    f[:, 5] = 3.0
    assert torch.allclose(no_error[:, 0], sae.decode(f), atol=1e-6) and torch.equal(no_error[:, 1:], x[:, 1:])
    assert torch.equal(x, before), "clamp_latent_hook modified its input"
    with pytest.raises(TypeError, match="positions must be None, an int"):
        clamp_latent_hook(sae, 5, 1.0, positions=[0, 1])
    with pytest.raises(TypeError, match="positions"):
        clamp_latent_hook(sae, 5, 1.0, positions=torch.tensor([0.5]))
    with pytest.raises(ValueError, match="positions=4 is out of range"):
        clamp_latent_hook(sae, 5, 1.0, positions=4)(x, None)
    with pytest.raises(ValueError, match="value must be finite"):
        clamp_latent_hook(sae, 5, float("inf"))
    with pytest.raises(TypeError, match="value must be a number"):
        clamp_latent_hook(sae, 5, torch.ones(2))
    with pytest.raises(TypeError, match="keep_error must be True or False"):
        clamp_latent_hook(sae, 5, 1.0, keep_error=1)


def test_generate_with_clamped_latent(model):
    sae = identity_sae(8)
    prompt = torch.tensor([[1, 2, 3]])
    plain = model.generate(prompt, 3, do_sample=False)
    # Clamping latent 0 to its own value changes nothing only if the value is right; a huge
    # value along resid dim 0 changes the greedy continuation of this random model.
    hook = "blocks.1.hook_resid_post"
    steered = generate_with_clamped_latent(model, sae, prompt, hook, latent=0, value=50.0, max_new_tokens=3,
                                           do_sample=False)
    assert steered.shape == plain.shape and torch.equal(steered[:, :3], prompt)
    logits = model.run_with_hooks(prompt, fwd_hooks=[(hook, clamp_latent_hook(sae, 0, 50.0))])
    assert steered[0, 3].item() == logits[0, -1].argmax().item()
    assert not any(hp.has_hooks for hp in model.hook_points())
    assert callable(sae_replacement_hook(sae))
