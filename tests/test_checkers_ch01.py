"""Chapter 01 checks: the reference passes, and wrong answers a learner would plausibly write
are rejected with the hint for that particular mistake.

The mutants below are written out the way a learner might write them, independently of the
Mistake functions inside the checks, so that a check is tested on real code, not on itself.
"""

import pytest
import torch
import torch.nn.functional as F
from checker_helpers import rejects

from toykit import superposition as ref
from toykit.exercises import ch01, results

# -- generate_batch ----------------------------------------------------------------------------


def gb_good(n_batch, p):
    mask = torch.rand(n_batch, *p.shape) < p
    return torch.rand(n_batch, *p.shape) * mask


def gb_zero_probability(n_batch, p):
    values = torch.rand(n_batch, *p.shape)
    values[torch.rand(n_batch, *p.shape) < p] = 0.0  # p read as the chance of a zero
    return values


def gb_randn(n_batch, p):
    return torch.where(torch.rand(n_batch, *p.shape) <= p, torch.randn(n_batch, *p.shape), 0.0)


def gb_shared_mask(n_batch, p):
    n_features = p.shape[1]
    mask = torch.rand(n_batch, 1, n_features) < p  # broadcast over instances
    return mask.float() * torch.rand(n_batch, *p.shape)


def gb_same_draw(n_batch, p):
    x = torch.rand(n_batch, *p.shape)
    x[x >= p] = 0
    return x


def gb_no_mask(n_batch, p):
    return torch.rand(n_batch, p.shape[0], p.shape[1])


def gb_wrong_shape(n_batch, p):
    return gb_good(n_batch, p).permute(1, 2, 0)


def test_generate_batch_accepts_correct_versions(capsys):
    ch01.check_generate_batch(lambda n, p: ref.generate_batch(n, p))
    ch01.check_generate_batch(gb_good)  # a different but equally right implementation
    assert capsys.readouterr().out.count("✔ generate_batch") == 2
    assert results()[-1].passed


@pytest.mark.parametrize("fn, hint", [
    (gb_zero_probability, "probability 1 - p"),
    (gb_randn, "not in [0, 1]"),
    (gb_shared_mask, "instances are not independent"),
    (gb_same_draw, "average p/2"),
    (gb_no_mask, "no feature is ever zero"),
    (gb_wrong_shape, "print the shape"),
])
def test_generate_batch_mutants(fn, hint):
    err = rejects(ch01.check_generate_batch, fn, hint)
    if fn is gb_wrong_shape:
        assert "expected [n_batch, n_instances, n_features]" in err.detail


# -- toy_forward -------------------------------------------------------------------------------


def fwd_good(x, W, b):
    h = torch.einsum("bif,ihf->bih", x, W)
    return torch.relu(torch.einsum("bih,ihf->bif", h, W) + b)


def fwd_no_relu(x, W, b):
    h = torch.einsum("bif,ihf->bih", x, W)
    return torch.einsum("bih,ihf->bif", h, W) + b


def fwd_no_bias(x, W, b):
    h = torch.einsum("bif,ihf->bih", x, W)
    return torch.einsum("bih,ihf->bif", h, W).clamp(min=0)


def fwd_relu_then_bias(x, W, b):
    h = torch.einsum("bif,ihf->bih", x, W)
    return F.relu(torch.einsum("bih,ihf->bif", h, W)) + b


def fwd_hidden_relu(x, W, b):
    h = F.relu(torch.einsum("bif,ihf->bih", x, W))
    return F.relu(torch.einsum("bih,ihf->bif", h, W) + b)


def fwd_w_as_feat_hidden(x, W, b):
    # Thinks W is [instances, features, hidden] and uses the "matching" axis names.
    h = torch.einsum("bif,ifh->bih", x, W)
    return F.relu(torch.einsum("bih,ifh->bif", h, W) + b)


def fwd_w_not_transposed(x, W, b):
    h = W @ x.unsqueeze(-1)  # [b, i, h, 1]
    return F.relu((W @ h).squeeze(-1) + b)  # W again instead of Wᵀ


def test_toy_forward_accepts_reference_and_alternative(capsys):
    ch01.check_toy_forward(ref.toy_forward)
    ch01.check_toy_forward(fwd_good)
    assert capsys.readouterr().out.count("✔ toy_forward: 4 cases passed") == 2


@pytest.mark.parametrize("fn, hint", [
    (fwd_no_relu, "forgot the ReLU"),
    (fwd_no_bias, "forgot the bias"),
    (fwd_relu_then_bias, "added after the ReLU"),
    (fwd_hidden_relu, "ReLU on the hidden layer"),
    (fwd_w_as_feat_hidden, "W Wᵀ x"),
    (fwd_w_not_transposed, "W W x instead of Wᵀ W x"),
])
def test_toy_forward_mutants(fn, hint):
    rejects(ch01.check_toy_forward, fn, hint)


# -- importance_weighted_loss ------------------------------------------------------------------


def loss_no_importance(out, x, importance):
    return ((out - x) ** 2).sum(dim=2).mean(dim=0)


def loss_mean_features(out, x, importance):
    return (importance * (out - x) ** 2).mean(dim=(0, 2))


def loss_sum_batch(out, x, importance):
    return (importance * (out - x) ** 2).sum(dim=(0, 2))


def loss_abs(out, x, importance):
    return (importance * (out - x).abs()).sum(-1).mean(0)


def loss_importance_inside_square(out, x, importance):
    return ((importance * (x - out)) ** 2).sum(-1).mean(0)


def loss_scalar(out, x, importance):
    return (importance * (out - x) ** 2).sum(-1).mean(0).sum()


def test_loss_accepts_reference(capsys):
    ch01.check_importance_weighted_loss(ref.importance_weighted_loss)
    ch01.check_importance_weighted_loss(lambda o, x, i: torch.einsum("bif,if->i", (o - x) ** 2, i)
                                        / x.shape[0])
    assert capsys.readouterr().out.count("✔ importance_weighted_loss") == 2


@pytest.mark.parametrize("fn, hint", [
    (loss_no_importance, "importance is missing"),
    (loss_mean_features, "averaged over features"),
    (loss_sum_batch, "summed over the batch"),
    (loss_abs, "not squared"),
    (loss_importance_inside_square, "importance is squared"),
    (loss_scalar, "one loss per instance"),
])
def test_loss_mutants(fn, hint):
    rejects(ch01.check_importance_weighted_loss, fn, hint)


# -- feature_dimensionality --------------------------------------------------------------------


def fd_good(W):
    out = torch.zeros(W.shape[0], W.shape[2])
    for i in range(W.shape[0]):
        for f in range(W.shape[2]):
            w = W[i, :, f]
            n2 = float(w @ w)
            if n2 == 0:
                continue
            out[i, f] = n2 / sum(float((w / n2 ** 0.5) @ W[i, :, g]) ** 2 for g in range(W.shape[2]))
    return out


def fd_no_hat(W):
    gram = W.transpose(1, 2) @ W  # [i, f, f]
    d = torch.diagonal(gram, dim1=1, dim2=2) / (gram ** 2).sum(-1)
    return torch.nan_to_num(d)


def fd_no_square(W):
    norms = W.norm(dim=1, keepdim=True)
    W_hat = W / norms
    d = norms.squeeze(1) ** 2 / (W_hat.transpose(1, 2) @ W).sum(-1)
    return torch.nan_to_num(d)


def fd_rows(W):
    # Uses W[:, h, :] as "the feature vectors": one value per hidden dimension.
    norms = W.norm(dim=2, keepdim=True)
    overlap = (W / norms) @ W.transpose(1, 2)
    return torch.nan_to_num(norms.squeeze(-1) ** 2 / (overlap ** 2).sum(-1))


def fd_no_guard(W):
    norms = W.norm(dim=1, keepdim=True)
    return norms.squeeze(1) ** 2 / (((W / norms).transpose(1, 2) @ W) ** 2).sum(-1)


def test_feature_dimensionality_accepts_reference(capsys):
    ch01.check_feature_dimensionality(ref.feature_dimensionality)
    ch01.check_feature_dimensionality(fd_good)
    assert capsys.readouterr().out.count("✔ feature_dimensionality: 5 cases passed") == 2


@pytest.mark.parametrize("fn, hint", [
    (fd_no_hat, "*unit* vector"),
    (fd_no_square, "square each overlap"),
    (fd_rows, "rows of W"),
    (fd_no_guard, "0/0 = nan"),
])
def test_feature_dimensionality_mutants(fn, hint):
    rejects(ch01.check_feature_dimensionality, fn, hint)


def test_feature_dimensionality_no_guard_fails_on_the_dead_case():
    err = rejects(ch01.check_feature_dimensionality, fd_no_guard, "nan")
    assert err.case == "dead features (zero columns)"


# -- dimensions_per_feature --------------------------------------------------------------------


def dpf_features(W):
    return W.shape[-1] / W.pow(2).sum(dim=(-1, -2))


def dpf_no_square(W):
    return W.shape[1] / torch.linalg.matrix_norm(W)


def dpf_inverted(W):
    return torch.linalg.matrix_norm(W) ** 2 / W.shape[1]


def dpf_global(W):
    return W.shape[1] / W.pow(2).sum()


def dpf_fixed_m(W):
    return 2 / W.pow(2).sum(dim=(1, 2))  # the chapter's m = 2, hard-coded


def dpf_instances(W):
    return W.shape[0] / W.pow(2).sum(dim=(1, 2))


def test_dimensions_per_feature_accepts_reference(capsys):
    ch01.check_dimensions_per_feature(ref.dimensions_per_feature)
    ch01.check_dimensions_per_feature(lambda W: W.shape[1] / torch.linalg.matrix_norm(W) ** 2)
    assert capsys.readouterr().out.count("✔ dimensions_per_feature") == 2


@pytest.mark.parametrize("fn, hint", [
    (dpf_features, "not n_features"),
    (dpf_no_square, "*squared* Frobenius"),
    (dpf_inverted, "upside down"),
    (dpf_global, "per instance"),
])
def test_dimensions_per_feature_mutants(fn, hint):
    rejects(ch01.check_dimensions_per_feature, fn, hint)


@pytest.mark.parametrize("fn, hint", [(dpf_fixed_m, "fixed m = 2"), (dpf_instances, "not n_instances")])
def test_dimensions_per_feature_fixed_m_is_not_called_n_instances(fn, hint):
    rejects(ch01.check_dimensions_per_feature, fn, hint)


# -- neuron_polysemanticity --------------------------------------------------------------------


def poly_abs(W):
    a = W.abs() ** 2
    return torch.nan_to_num(a.sum(-1) ** 2 / (a ** 2).sum(-1))


def poly_per_feature(W):
    r = W.clamp(min=0) ** 2
    return torch.nan_to_num(r.sum(1) ** 2 / (r ** 2).sum(1))


def poly_not_squared(W):
    r = W.clamp(min=0)
    return torch.nan_to_num(r.sum(-1) ** 2 / (r ** 2).sum(-1))


def poly_no_guard(W):
    r2 = F.relu(W) ** 2
    return r2.sum(-1) ** 2 / r2.pow(2).sum(-1)


def test_polysemanticity_accepts_reference(capsys):
    ch01.check_neuron_polysemanticity(ref.neuron_polysemanticity)
    assert "✔ neuron_polysemanticity: 4 cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("fn, hint", [
    (poly_abs, "negative weights count too"),
    (poly_per_feature, "per feature"),
    (poly_not_squared, "*squared* weights"),
    (poly_no_guard, "no positive weight"),
])
def test_polysemanticity_mutants(fn, hint):
    rejects(ch01.check_neuron_polysemanticity, fn, hint)


# -- antipodal_pair_losses ---------------------------------------------------------------------


def ap_no_bias(s):
    return s / 3, s ** 2 / 3


def ap_one_output(s):
    return s / 3 - s ** 2 / 4, s ** 2 / 6


def ap_probability_s(s):
    return s / 3 - s * s / 4, s / 3


def ap_swapped(s):
    return s ** 2 / 3, s / 3 - s ** 2 / 4


def test_antipodal_accepts_reference_and_floats(capsys):
    ch01.check_antipodal_pair_losses(ref.antipodal_pair_losses)
    ch01.check_antipodal_pair_losses(lambda s: (s * (4 - 3 * s) / 12, s * s / 3))
    assert capsys.readouterr().out.count("✔ antipodal_pair_losses") == 2


@pytest.mark.parametrize("fn, hint", [
    (ap_no_bias, "best constant output"),
    (ap_one_output, "*both* outputs are wrong"),
    (ap_probability_s, "probability s²"),
    (ap_swapped, "in that order"),
])
def test_antipodal_mutants(fn, hint):
    rejects(ch01.check_antipodal_pair_losses, fn, hint)
