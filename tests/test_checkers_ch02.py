"""Chapter 02 checks: the reference passes, and wrong answers a learner would plausibly write
are rejected with the hint for that particular mistake.

The mutants below are written out the way a learner might write them, independently of the
Mistake functions inside the checks, so that a check is tested on real code, not on itself.
"""

import pytest
import torch
import torch.nn.functional as F
from checker_helpers import rejects

from toykit.exercises import ch02
from toykit.sae import architectures as ref
from toykit.sae import metrics
from toykit.sae.training import reinitialise_latents

# -- sae_forward ---------------------------------------------------------------------------------


def fwd_good(x, W_enc, b_enc, W_dec, b_dec):
    acts = torch.einsum("...i,is->...s", x - b_dec, W_enc) + b_enc
    acts = acts.clamp(min=0)
    return acts, torch.einsum("...s,si->...i", acts, W_dec) + b_dec


def fwd_no_centering(x, W_enc, b_enc, W_dec, b_dec):
    acts = torch.relu(x @ W_enc + b_enc)
    return acts, acts @ W_dec + b_dec


def fwd_no_relu(x, W_enc, b_enc, W_dec, b_dec):
    acts = (x - b_dec) @ W_enc + b_enc
    return acts, acts @ W_dec + b_dec


def fwd_no_output_bias(x, W_enc, b_enc, W_dec, b_dec):
    acts = F.relu((x - b_dec) @ W_enc + b_enc)
    return acts, acts @ W_dec


def fwd_tied(x, W_enc, b_enc, W_dec, b_dec):
    acts = F.relu((x - b_dec) @ W_dec.T + b_enc)  # "the encoder is the decoder transposed"
    return acts, acts @ W_dec + b_dec


def fwd_bias_after_relu(x, W_enc, b_enc, W_dec, b_dec):
    acts = F.relu((x - b_dec) @ W_enc) + b_enc
    return acts, acts @ W_dec + b_dec


def test_sae_forward_accepts_reference_and_alternative(capsys):
    def via_module(x, W_enc, b_enc, W_dec, b_dec):
        sae = ref.make_sae(d_in=W_enc.shape[0], d_sae=W_enc.shape[1], device="cpu")
        sae.load_state_dict({"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec})
        acts = sae.encode(x)
        return acts, sae.decode(acts)

    ch02.check_sae_forward(via_module)
    ch02.check_sae_forward(fwd_good)
    assert capsys.readouterr().out.count("✔ sae_forward: 4 cases passed") == 2


@pytest.mark.parametrize("fn, hint", [
    (fwd_no_centering, "subtract b_dec"),
    (fwd_no_relu, "need a ReLU"),
    (fwd_no_output_bias, "add b_dec back"),
    (fwd_tied, "not tied"),
    (fwd_bias_after_relu, "b_enc goes inside the ReLU"),
])
def test_sae_forward_mutants(fn, hint):
    rejects(ch02.check_sae_forward, fn, hint)


# -- sae_loss ------------------------------------------------------------------------------------


def loss_good(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = torch.mean(torch.sum((sae_out - x) ** 2, dim=1))
    l1_loss = torch.mean(torch.einsum("bs,s->b", feature_acts, torch.linalg.norm(W_dec, dim=1)))
    return mse_loss + l1_coefficient * l1_loss, mse_loss, l1_loss


def loss_f_mse(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = F.mse_loss(sae_out, x)
    l1_loss = (feature_acts * W_dec.norm(dim=1)).sum(dim=1).mean()
    return mse_loss + l1_coefficient * l1_loss, mse_loss, l1_loss


def loss_plain_l1(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = ((sae_out - x) ** 2).sum(dim=1).mean()
    l1_loss = feature_acts.abs().sum(dim=1).mean()
    return mse_loss + l1_coefficient * l1_loss, mse_loss, l1_loss


def loss_squared_norms(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = ((sae_out - x) ** 2).sum(dim=1).mean()
    l1_loss = (feature_acts * (W_dec ** 2).sum(dim=1)).sum(dim=1).mean()
    return mse_loss + l1_coefficient * l1_loss, mse_loss, l1_loss


def loss_scaled_part(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = ((sae_out - x) ** 2).sum(dim=1).mean()
    l1_loss = l1_coefficient * (feature_acts * W_dec.norm(dim=1)).sum(dim=1).mean()
    return mse_loss + l1_loss, mse_loss, l1_loss


def loss_summed_batch(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = ((sae_out - x) ** 2).sum()
    l1_loss = (feature_acts @ W_dec.norm(dim=1)).sum()
    return mse_loss + l1_coefficient * l1_loss, mse_loss, l1_loss


def loss_item(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = ((sae_out - x) ** 2).sum(dim=1).mean()
    l1_loss = (feature_acts * W_dec.norm(dim=1)).sum(dim=1).mean()
    return (mse_loss + l1_coefficient * l1_loss).item(), mse_loss.item(), l1_loss.item()


def loss_rewrapped(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = ((sae_out - x) ** 2).sum(dim=1).mean()
    l1_loss = (feature_acts * W_dec.norm(dim=1)).sum(dim=1).mean()
    return torch.tensor((mse_loss + l1_coefficient * l1_loss).item(), requires_grad=True), mse_loss, l1_loss


def test_sae_loss_accepts_reference_and_alternative(capsys):
    def via_module(x, feature_acts, sae_out, W_dec, l1_coefficient):
        mse_loss = ref.reconstruction_loss(x, sae_out)
        l1_loss = ref.weighted_l1_penalty(feature_acts, W_dec)
        return mse_loss + l1_coefficient * l1_loss, mse_loss, l1_loss

    ch02.check_sae_loss(via_module)
    ch02.check_sae_loss(loss_good)
    assert capsys.readouterr().out.count("✔ sae_loss") == 2


@pytest.mark.parametrize("fn, hint", [
    (loss_f_mse, "F.mse_loss"),
    (loss_plain_l1, "norm of its decoder row"),
    (loss_squared_norms, "not their squares"),
    (loss_scaled_part, "before multiplying by l1_coefficient"),
    (loss_summed_batch, "average over the batch"),
    (loss_item, "carries gradients"),
    (loss_rewrapped, "carries gradients"),
])
def test_sae_loss_mutants(fn, hint):
    rejects(ch02.check_sae_loss, fn, hint)


# -- topk_activation -----------------------------------------------------------------------------


def topk_good(acts_pre, k):
    kth = acts_pre.topk(k, dim=-1).values[..., -1:]  # the k-th largest per row
    return torch.where(acts_pre >= kth, acts_pre.clamp(min=0), 0.0)


def topk_no_relu(acts_pre, k):
    values, indices = torch.topk(acts_pre, k, dim=-1)
    return torch.zeros_like(acts_pre).scatter(-1, indices, values)


def topk_abs(acts_pre, k):
    indices = acts_pre.abs().topk(k, dim=-1).indices
    out = torch.zeros_like(acts_pre)
    out.scatter_(-1, indices, acts_pre.gather(-1, indices))
    return out.relu()


def topk_over_batch(acts_pre, k):
    values, indices = acts_pre.topk(min(k, acts_pre.shape[0]), dim=0)
    return torch.zeros_like(acts_pre).scatter(0, indices, values.relu())


def topk_smallest(acts_pre, k):
    values, indices = acts_pre.topk(k, dim=-1, largest=False)
    return torch.zeros_like(acts_pre).scatter(-1, indices, values.relu())


def test_topk_accepts_reference_and_alternative(capsys):
    ch02.check_topk_activation(ref.topk_activation)
    ch02.check_topk_activation(topk_good)
    assert capsys.readouterr().out.count("✔ topk_activation") == 2


@pytest.mark.parametrize("fn, hint", [
    (topk_no_relu, "apply a ReLU to the kept values"),
    (topk_abs, "not the k largest in absolute value"),
    (topk_over_batch, "separately for every input"),
    (F.relu, "you kept all of them"),
    (topk_smallest, "not the k smallest"),
])
def test_topk_mutants(fn, hint):
    if fn is F.relu:
        fn = lambda acts_pre, k: F.relu(acts_pre)  # noqa: E731 (a learner who forgot the top k)
    rejects(ch02.check_topk_activation, fn, hint)


# -- jumprelu ------------------------------------------------------------------------------------


def jumprelu_good(acts_pre, threshold):
    return torch.where(acts_pre > threshold, acts_pre, torch.zeros_like(acts_pre))


def jumprelu_shifted(acts_pre, threshold):
    return torch.relu(acts_pre - threshold)


def jumprelu_step_only(acts_pre, threshold):
    return (acts_pre > threshold).float()


def jumprelu_plain_relu(acts_pre, threshold):
    return acts_pre.clamp(min=0)


def jumprelu_at_least(acts_pre, threshold):
    return torch.where(acts_pre >= threshold, acts_pre, torch.zeros_like(acts_pre))


def test_jumprelu_accepts_reference_and_alternative(capsys):
    ch02.check_jumprelu(lambda z, t: ref.jumprelu(z, t))
    ch02.check_jumprelu(jumprelu_good)
    assert capsys.readouterr().out.count("✔ jumprelu") == 2


@pytest.mark.parametrize("fn, hint", [
    (jumprelu_shifted, "shifts every value down by θ"),
    (jumprelu_step_only, "multiply the step by z"),
    (jumprelu_plain_relu, "not 0"),
    (jumprelu_at_least, "strictly"),
])
def test_jumprelu_mutants(fn, hint):
    rejects(ch02.check_jumprelu, fn, hint)


# -- jumprelu_threshold_grad ---------------------------------------------------------------------


def grad_good(acts_pre, threshold, bandwidth, grad_output):
    inside = ((acts_pre - threshold).abs() * 2 < bandwidth).float()
    per_input = grad_output * inside * (-threshold / bandwidth)
    return per_input.flatten(0, -2).sum(dim=0)


def grad_step_version(acts_pre, threshold, bandwidth, grad_output):
    inside = (((acts_pre - threshold) / bandwidth).abs() < 0.5).float()
    return (-(1.0 / bandwidth) * inside * grad_output).flatten(0, -2).sum(0)


def grad_wide_kernel(acts_pre, threshold, bandwidth, grad_output):
    inside = ((acts_pre - threshold).abs() < bandwidth).float()  # "within one bandwidth"
    return (-(threshold / bandwidth) * inside * grad_output).flatten(0, -2).sum(0)


def grad_wrong_sign(acts_pre, threshold, bandwidth, grad_output):
    inside = (((acts_pre - threshold) / bandwidth).abs() < 0.5).float()
    return ((threshold / bandwidth) * inside * grad_output).flatten(0, -2).sum(0)


def grad_batch_mean(acts_pre, threshold, bandwidth, grad_output):
    inside = (((acts_pre - threshold) / bandwidth).abs() < 0.5).float()
    return (-(threshold / bandwidth) * inside * grad_output).flatten(0, -2).mean(0)


def test_threshold_grad_accepts_reference_and_alternative(capsys):
    ch02.check_jumprelu_threshold_grad(ref.jumprelu_threshold_grad)
    ch02.check_jumprelu_threshold_grad(grad_good)
    assert capsys.readouterr().out.count("✔ jumprelu_threshold_grad") == 2


def test_threshold_grad_accepts_autograd_through_the_library():
    def via_autograd(acts_pre, threshold, bandwidth, grad_output):
        threshold = threshold.clone().requires_grad_(True)
        ref.jumprelu(acts_pre, threshold, bandwidth).backward(grad_output)
        return threshold.grad

    ch02.check_jumprelu_threshold_grad(via_autograd)


@pytest.mark.parametrize("fn, hint", [
    (grad_step_version, "has a factor θ"),
    (grad_wide_kernel, "within ε/2 of θ"),
    (grad_wrong_sign, "the sign"),
    (grad_batch_mean, "don't average"),
])
def test_threshold_grad_mutants(fn, hint):
    rejects(ch02.check_jumprelu_threshold_grad, fn, hint)


# -- explained_variance --------------------------------------------------------------------------


def ev_good(x, x_hat):
    return 1 - torch.sum((x - x_hat) ** 2) / torch.sum((x - x.mean(0, keepdim=True)) ** 2)


def ev_about_zero(x, x_hat):
    return 1 - ((x - x_hat) ** 2).sum() / (x ** 2).sum()


def ev_per_dimension(x, x_hat):
    residual = ((x - x_hat) ** 2).sum(0)
    total = ((x - x.mean(0)) ** 2).sum(0)
    return (1 - residual / total).mean()


def ev_unexplained(x, x_hat):
    return ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()


def ev_unbiased_var(x, x_hat):
    mse_per_input = ((x - x_hat) ** 2).sum(dim=1).mean()
    return 1 - mse_per_input / x.var(dim=0).sum()


def test_explained_variance_accepts_reference_and_alternative(capsys):
    ch02.check_explained_variance(metrics.explained_variance)
    ch02.check_explained_variance(ev_good)
    assert capsys.readouterr().out.count("✔ explained_variance") == 2


@pytest.mark.parametrize("fn, hint", [
    (ev_about_zero, "the variance is about the mean"),
    (ev_per_dimension, "averaging a ratio per dimension"),
    (ev_unexplained, "*unexplained*"),
    (ev_unbiased_var, "n − 1"),
])
def test_explained_variance_mutants(fn, hint):
    rejects(ch02.check_explained_variance, fn, hint)


# -- mmcs ----------------------------------------------------------------------------------------


def mmcs_good(W_dec, true_features):
    best = []
    for t in true_features:
        cos = F.cosine_similarity(W_dec, t[None, :], dim=1)
        best.append(cos.abs().max())
    return torch.stack(best).mean()


def mmcs_no_abs(W_dec, true_features):
    cos = F.normalize(true_features, dim=-1) @ F.normalize(W_dec, dim=-1).T
    return cos.max(dim=-1).values.mean()


def mmcs_unnormalised(W_dec, true_features):
    return (true_features @ W_dec.T).abs().max(dim=1).values.mean()


def mmcs_wrong_axis(W_dec, true_features):
    cos = F.normalize(W_dec, dim=1) @ F.normalize(true_features, dim=1).T  # [d_sae, n_true]
    return cos.abs().max(dim=1).values.mean()  # best true feature for each latent


def mmcs_all_pairs(W_dec, true_features):
    return (F.normalize(true_features, dim=1) @ F.normalize(W_dec, dim=1).T).abs().mean()


def mmcs_true_not_normalised(W_dec, true_features):
    # Fine when the true features are unit vectors; the exercise says they need not be.
    return (true_features @ F.normalize(W_dec, dim=1).T).abs().max(dim=1).values.mean()


def test_mmcs_accepts_reference_and_alternative(capsys):
    ch02.check_mmcs(metrics.mmcs)
    ch02.check_mmcs(mmcs_good)
    assert capsys.readouterr().out.count("✔ mmcs") == 2


@pytest.mark.parametrize("fn, hint", [
    (mmcs_no_abs, "absolute value"),
    (mmcs_unnormalised, "normalise both"),
    (mmcs_wrong_axis, "not the other way round"),
    (mmcs_all_pairs, "not the mean of all cosines"),
    (mmcs_true_not_normalised, "normalise the true features too"),
])
def test_mmcs_mutants(fn, hint):
    rejects(ch02.check_mmcs, fn, hint)


# -- reinitialise_latents ------------------------------------------------------------------------


def reinit_good(W_enc, b_enc, W_dec, b_dec, dead, inputs):
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    live_norm = torch.linalg.norm(W_enc[:, ~dead], dim=0).mean()
    for j, latent in enumerate(torch.nonzero(dead).flatten().tolist()):
        u = inputs[j] - b_dec
        u = u / u.norm()
        W_dec[latent] = u
        W_enc[:, latent] = 0.2 * live_norm * u
        b_enc[latent] = 0
    return W_enc, b_enc, W_dec


def reinit_in_place(W_enc, b_enc, W_dec, b_dec, dead, inputs):
    # Right values, written into the SAE's own tensors: the docstring promises new tensors.
    u = F.normalize(inputs - b_dec, dim=1)
    W_enc[:, dead] = u.T * 0.2 * W_enc[:, ~dead].norm(dim=0).mean()
    W_dec[dead] = u
    b_enc[dead] = 0.0
    return W_enc, b_enc, W_dec


def reinit_raw_input(W_enc, b_enc, W_dec, b_dec, dead, inputs):
    u = inputs / inputs.norm(dim=1, keepdim=True)
    scale = 0.2 * W_enc[:, ~dead].norm(dim=0).mean()
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    W_dec[dead], W_enc[:, dead], b_enc[dead] = u, scale * u.T, 0.0
    return W_enc, b_enc, W_dec


def reinit_all_norms(W_enc, b_enc, W_dec, b_dec, dead, inputs):
    u = F.normalize(inputs - b_dec, dim=1)
    scale = 0.2 * W_enc.norm(dim=0).mean()
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    W_dec[dead], W_enc[:, dead], b_enc[dead] = u, scale * u.T, 0.0
    return W_enc, b_enc, W_dec


def reinit_keep_bias(W_enc, b_enc, W_dec, b_dec, dead, inputs):
    u = F.normalize(inputs - b_dec, dim=1)
    W_enc, W_dec = W_enc.clone(), W_dec.clone()
    W_enc[:, dead] = u.T * 0.2 * W_enc[:, ~dead].norm(dim=0).mean()
    W_dec[dead] = u
    return W_enc, b_enc, W_dec


def reinit_decoder_only(W_enc, b_enc, W_dec, b_dec, dead, inputs):
    W_dec = W_dec.clone()
    W_dec[dead] = F.normalize(inputs - b_dec, dim=1)
    b_enc = b_enc.masked_fill(dead, 0.0)
    return W_enc, b_enc, W_dec


def test_reinitialise_accepts_reference_and_alternative(capsys):
    ch02.check_reinitialise_latents(reinitialise_latents)
    ch02.check_reinitialise_latents(reinit_good)
    assert capsys.readouterr().out.count("✔ reinitialise_latents") == 2


@pytest.mark.parametrize("fn, hint", [
    (reinit_raw_input, "subtract b_dec"),
    (reinit_all_norms, "*live* latents only"),
    (reinit_keep_bias, "encoder bias b_enc to 0"),
    (reinit_decoder_only, "not only the decoder rows"),
    (reinit_in_place, "modified one of its inputs in place"),
])
def test_reinitialise_mutants(fn, hint):
    rejects(ch02.check_reinitialise_latents, fn, hint)
