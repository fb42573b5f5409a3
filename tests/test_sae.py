"""toykit.sae.architectures: the three architectures, forward and backward, including the
straight-through estimator of JumpReLU, checked against hand-computed numbers; and the package
toykit.sae re-exporting its modules' names."""

import math

import pytest
import torch

from toykit.sae.architectures import (
    JumpReLUSAE,
    SAEConfig,
    StandardSAE,
    TopKSAE,
    jumprelu,
    jumprelu_threshold_grad,
    make_sae,
    threshold_step,
    topk_activation,
    weighted_l1_penalty,
)

HOOKS = ["hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_error",
         "hook_sae_output"]


def set_weights(sae, W_enc, b_enc, W_dec, b_dec):
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(W_dec)
        sae.b_dec.copy_(b_dec)


def test_config_and_factory():
    sae = make_sae(d_in=4, d_sae=16, device="cpu")
    assert isinstance(sae, StandardSAE)
    assert isinstance(make_sae(d_in=4, d_sae=16, architecture="topk", k=2, device="cpu"), TopKSAE)
    assert isinstance(make_sae(SAEConfig(d_in=4, d_sae=16, architecture="jumprelu", device="cpu")), JumpReLUSAE)
    shapes = {name: list(p.shape) for name, p in sae.named_parameters()}
    assert shapes == {"W_enc": [4, 16], "b_enc": [16], "W_dec": [16, 4], "b_dec": [4]}
    assert sorted(sae.hook_dict) == sorted(HOOKS)
    assert make_sae(d_in=4, d_sae=16, architecture="topk", k=2).cfg.aux_k == 2  # d_in // 2


def test_initialisation_ties_encoder_to_decoder_with_short_rows():
    sae = make_sae(d_in=6, d_sae=20, decoder_init_norm=0.1, seed=3, device="cpu")
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.full((20,), 0.1), atol=1e-6)
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert (sae.b_enc == 0).all() and (sae.b_dec == 0).all()
    again = make_sae(d_in=6, d_sae=20, decoder_init_norm=0.1, seed=3, device="cpu")
    assert torch.equal(sae.W_dec, again.W_dec)


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_in=0, d_sae=4), "d_in"),
    (dict(d_in=4, d_sae=4, architecture="gated"), "architecture"),
    (dict(d_in=4, d_sae=4, architecture="topk"), "needs k"),
    (dict(d_in=4, d_sae=4, architecture="topk", k=5), "cannot exceed"),
    (dict(d_in=4, d_sae=4, k=2), "only used by architecture='topk'"),
    (dict(d_in=4, d_sae=4, jumprelu_bandwidth=0.0), "jumprelu_bandwidth"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SAEConfig(**kwargs)


def test_input_errors_name_the_argument():
    sae = make_sae(d_in=3, d_sae=5, device="cpu")
    with pytest.raises(ValueError, match=r"x must have shape \[..., d_in=3\]"):
        sae(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        sae(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="sparsity_coefficient"):
        sae.loss(torch.zeros(2, 3), sparsity_coefficient=-1.0)


# -- standard --------------------------------------------------------------------------------------


def hand_sae():
    """d_in 2, d_sae 3, with numbers small enough to follow by hand."""
    sae = make_sae(d_in=2, d_sae=3, device="cpu")
    set_weights(sae, W_enc=torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 1.0]]), b_enc=torch.tensor([0.0, -1.0, 0.5]),
                W_dec=torch.tensor([[1.0, 0.0], [0.0, 0.5], [3.0, 4.0]]), b_dec=torch.tensor([1.0, 0.0]))
    return sae


def test_standard_forward_by_hand():
    sae = hand_sae()
    x = torch.tensor([[2.0, 1.0]])
    # x - b_dec = [1, 1]; pre = [1, 2 - 1, -1 + 1 + 0.5] = [1, 1, 0.5]
    out, cache = sae.run_with_cache(x)
    assert torch.allclose(cache["hook_sae_acts_pre"], torch.tensor([[1.0, 1.0, 0.5]]))
    assert torch.allclose(cache["hook_sae_acts_post"], torch.tensor([[1.0, 1.0, 0.5]]))
    # x̂ = 1·[1, 0] + 1·[0, 0.5] + 0.5·[3, 4] + [1, 0] = [3.5, 2.5]
    assert torch.allclose(out, torch.tensor([[3.5, 2.5]]))
    assert torch.allclose(cache["hook_sae_recons"], out)
    assert torch.equal(cache["hook_sae_input"], x)
    x2 = torch.tensor([[0.0, 0.0]])  # x - b_dec = [-1, 0]; pre = [-1, -1, 1.5] -> f = [0, 0, 1.5]
    assert torch.allclose(sae.encode(x2), torch.tensor([[0.0, 0.0, 1.5]]))


def test_standard_loss_by_hand():
    sae = hand_sae()
    x = torch.tensor([[2.0, 1.0], [0.0, 0.0]])
    out = sae.loss(x, sparsity_coefficient=0.1)
    # reconstructions: [3.5, 2.5] and 1.5·[3, 4] + [1, 0] = [5.5, 6]
    mse = ((1.5 ** 2 + 1.5 ** 2) + (5.5 ** 2 + 6 ** 2)) / 2
    # decoder row norms [1, 0.5, 5]: Σ f_i ‖W_dec,i‖ = 1 + 0.5 + 2.5 = 4 and 7.5
    l1 = (4.0 + 7.5) / 2
    assert out.mse_loss.item() == pytest.approx(mse)
    assert out.sparsity_loss.item() == pytest.approx(l1)
    assert out.aux_loss.item() == 0.0
    assert out.loss.item() == pytest.approx(mse + 0.1 * l1)
    assert weighted_l1_penalty(out.feature_acts, sae.W_dec).item() == pytest.approx(l1)


def test_standard_backward_matches_finite_differences():
    sae = make_sae(d_in=3, d_sae=5, dtype=torch.float64, device="cpu", seed=1)
    with torch.no_grad():
        sae.b_enc.copy_(torch.tensor([0.3, -0.2, 0.1, 0.25, -0.05], dtype=torch.float64))
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]
    values = [p.detach().clone().requires_grad_(True) for p in params]
    assert torch.autograd.gradcheck(lambda *ps: _functional_loss(x, *ps), values)
    # the module's own gradients agree with the functional version's
    sae.loss(x, sparsity_coefficient=0.5).loss.backward()
    reference = torch.autograd.grad(_functional_loss(x, *values), values)
    for p, g in zip(params, reference):
        assert torch.allclose(p.grad, g)


def _functional_loss(x, W_enc, b_enc, W_dec, b_dec):
    f = torch.relu((x - b_dec) @ W_enc + b_enc)
    x_hat = f @ W_dec + b_dec
    return ((x_hat - x) ** 2).sum(-1).mean() + 0.5 * (f * W_dec.norm(dim=1)).sum(-1).mean()


def test_any_leading_axes():
    sae = make_sae(d_in=4, d_sae=8, device="cpu")
    x = torch.randn(2, 3, 4)
    assert sae(x).shape == (2, 3, 4)
    assert sae.encode(x).shape == (2, 3, 8)
    assert torch.allclose(sae(x).reshape(6, 4), sae(x.reshape(6, 4)))


def test_fold_activation_norm_scaling_factor():
    sae = make_sae(d_in=4, d_sae=8, device="cpu", seed=2)
    with torch.no_grad():
        sae.b_enc.uniform_(-0.1, 0.1)
        sae.b_dec.uniform_(-1, 1)
    x = torch.randn(5, 4)
    scaled_out, scaled_acts = sae(3.0 * x) / 3.0, sae.encode(3.0 * x)
    sae.fold_activation_norm_scaling_factor(3.0)
    assert torch.allclose(sae(x), scaled_out, atol=1e-5)
    assert torch.allclose(sae.encode(x), scaled_acts, atol=1e-5)


# -- TopK ------------------------------------------------------------------------------------------


def test_topk_activation_by_hand():
    z = torch.tensor([[0.5, -1.0, 2.0, 0.1], [-0.3, -0.2, -0.5, -0.1]])
    assert torch.equal(topk_activation(z, 2), torch.tensor([[0.5, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="k=5 cannot exceed"):
        topk_activation(z, 5)


def test_topk_sae_l0_and_gradients_reach_only_kept_latents():
    sae = make_sae(d_in=6, d_sae=12, architecture="topk", k=3, device="cpu", seed=0)
    x = torch.randn(1, 6, generator=torch.Generator().manual_seed(1))
    out = sae.loss(x)
    assert ((out.feature_acts != 0).sum(-1) <= 3).all()
    assert out.sparsity_loss.item() == 0.0 and out.aux_loss.item() == 0.0
    out.loss.backward()
    kept = out.feature_acts[0] != 0
    assert (sae.b_enc.grad[~kept] == 0).all() and (sae.b_enc.grad[kept] != 0).all()


def test_auxk_gives_dead_latents_gradient():
    sae = make_sae(d_in=4, d_sae=10, architecture="topk", k=2, aux_k=3, device="cpu", seed=0)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(2))
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[1, 4, 7, 9]] = True
    out = sae.loss(x, dead_mask=dead, aux_coefficient=1.0)
    assert out.aux_loss.item() > 0
    # hand-built AuxK: the 3 largest dead pre-activations model the error x − x̂
    pre = sae.encode_pre(x)
    values, idx = pre.masked_fill(~dead, -math.inf).topk(3, dim=-1)
    aux_acts = torch.zeros_like(pre).scatter(-1, idx, values.relu())
    error = (x - out.sae_out).detach()
    expected = ((aux_acts @ sae.W_dec - error) ** 2).sum(-1).mean()  # scale min(4/3, 1) = 1
    assert out.aux_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    sae.zero_grad()
    out.aux_loss.backward()
    assert sae.b_enc.grad[dead].abs().sum() > 0  # dead latents learn from the aux loss...
    assert (sae.b_enc.grad[~dead] == 0).all()  # ...and only they do
    # fewer dead latents than aux_k: the loss is scaled by n_dead / aux_k
    one = torch.zeros(10, dtype=torch.bool)
    one[4] = True
    out_one = sae.loss(x, dead_mask=one)
    pre4 = pre[:, 4:5].relu()
    expected_one = ((pre4 * sae.W_dec[4] - error) ** 2).sum(-1).mean() / 3
    assert out_one.aux_loss.item() == pytest.approx(expected_one.item(), rel=1e-5)


# -- JumpReLU --------------------------------------------------------------------------------------


def test_jumprelu_forward_and_step_by_hand():
    z = torch.tensor([[0.52, 0.30, -1.0], [0.70, 0.46, 2.0]])
    theta = torch.tensor([0.5, 0.5, 1.5])
    assert torch.equal(jumprelu(z, theta, 0.1), torch.tensor([[0.52, 0.0, 0.0], [0.70, 0.0, 2.0]]))
    assert torch.equal(threshold_step(z, theta, 0.1), torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]))


def test_jumprelu_straight_through_gradients_by_hand():
    z = torch.tensor([[0.52, 0.30, 1.49], [0.70, 0.46, 2.0]], requires_grad=True)
    theta = torch.tensor([0.5, 0.5, 1.5], requires_grad=True)
    eps = 0.1
    jumprelu(z, theta, eps).sum().backward()
    # |z - θ| < ε/2 for (0, 0) [0.02], (1, 1) [0.04] and (0, 2) [0.01]: each adds −θ/ε
    assert torch.allclose(theta.grad, torch.tensor([-5.0, -5.0, -15.0]))
    # in z the gradient is the ordinary one, H(z − θ)
    assert torch.equal(z.grad, torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]))

    z.grad, theta.grad = None, None
    threshold_step(z, theta, eps).sum().backward()
    assert torch.allclose(theta.grad, torch.tensor([-10.0, -10.0, -10.0]))  # each in-window input: −1/ε
    assert z.grad is None or (z.grad == 0).all()  # the L0 penalty does not push on z


def test_jumprelu_threshold_grad_weights_by_grad_output():
    z = torch.tensor([[0.52], [0.48], [0.9]])
    theta = torch.tensor([0.5])
    grad_out = torch.tensor([[2.0], [-1.0], [7.0]])
    # (2 − 1) · (−0.5 / 0.1) = −5; the third input is outside the window
    assert torch.allclose(jumprelu_threshold_grad(z, theta, 0.1, grad_out), torch.tensor([-5.0]))


def test_jumprelu_sae_loss_and_log_threshold_gradient():
    sae = make_sae(d_in=2, d_sae=2, architecture="jumprelu", jumprelu_init_threshold=0.5, jumprelu_bandwidth=0.1,
                   device="cpu")
    set_weights(sae, torch.eye(2), torch.zeros(2), torch.eye(2), torch.zeros(2))
    x = torch.tensor([[0.52, 0.2], [0.9, 0.47]])
    out = sae.loss(x, sparsity_coefficient=1.0)
    assert torch.equal(out.feature_acts, torch.tensor([[0.52, 0.0], [0.9, 0.0]]))
    assert out.sparsity_loss.item() == pytest.approx(1.0)  # L0: one latent fires per input
    sae.zero_grad()
    out.sparsity_loss.backward()
    # dL0/dθ = −(1/ε)·(in-window count)/batch = [−10·1/2, −10·1/2]; d/dlogθ multiplies by θ = 0.5
    assert torch.allclose(sae.log_threshold.grad, torch.tensor([-2.5, -2.5]))
    assert torch.allclose(sae.threshold, torch.tensor([0.5, 0.5]))


def test_normalize_decoder():
    sae = make_sae(d_in=3, d_sae=7, architecture="jumprelu", device="cpu")
    sae.normalize_decoder_()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(7))


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_hook_sae_output_and_error_term_as_in_saelens(arch):
    """hook_sae_output is what forward returns; with use_error_term, hook_sae_error = x − x̂ and
    forward returns x̂ + error = x, so only an edit of the latents changes the output."""
    sae = make_sae(d_in=6, d_sae=12, architecture=arch, k=3 if arch == "topk" else None, dtype=torch.float64)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out, cache = sae.run_with_cache(x)
    assert "hook_sae_error" not in cache  # fires only with use_error_term
    torch.testing.assert_close(cache["hook_sae_output"], out)
    torch.testing.assert_close(out, cache["hook_sae_recons"])
    sae.use_error_term = True
    out, cache = sae.run_with_cache(x)
    torch.testing.assert_close(cache["hook_sae_error"], x - cache["hook_sae_recons"])
    torch.testing.assert_close(out, x)
    torch.testing.assert_close(cache["hook_sae_output"], x)
    assert list(cache)[-2:] == ["hook_sae_error", "hook_sae_output"]

    def zero_latent(acts, hook):
        acts = acts.clone()
        acts[:, 0] = 0
        return acts

    edited = sae.run_with_hooks(x, fwd_hooks=[("hook_sae_acts_post", zero_latent)])
    f = sae.encode(x)
    # The edit's effect alone: x minus latent 0's decoder row times its activation.
    torch.testing.assert_close(edited, x - f[:, :1] * sae.W_dec[0])


def test_the_package_exports_every_public_name_of_its_modules():
    """``from toykit.sae import X`` reaches every public name of the four submodules, and each
    is the submodule's own object (re-exported, not redefined)."""
    import toykit.sae
    from toykit.sae import architectures, metrics, splicing, training

    expected = {}
    for module in (architectures, metrics, splicing, training):
        for name in module.__all__:
            assert name not in expected, f"{name} is public in two submodules"
            expected[name] = getattr(module, name)
    assert sorted(toykit.sae.__all__) == sorted(expected)
    for name, obj in expected.items():
        assert getattr(toykit.sae, name) is obj, name
