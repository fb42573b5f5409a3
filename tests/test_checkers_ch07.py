"""Chapter 07 checks: the reference passes, and wrong answers a learner would plausibly write
are rejected with the hint for that particular mistake.

The mutants below are written out the way a learner might write them, independently of the
Mistake functions inside the checks, so that a check is tested on real code, not on itself.
"""

import math

import einops
import pytest
import torch
import torch.nn.functional as F
from checker_helpers import rejects

from toykit import fourier as ref
from toykit.exercises import ch07

torch.set_num_threads(1)


# -- fourier_basis ---------------------------------------------------------------------------------


def fb_good(p):
    x = torch.arange(p)
    rows = [torch.ones(p) / p**0.5]
    for k in range(1, p // 2 + 1):
        rows.append(torch.cos(2 * torch.pi * k * x / p))
        rows.append(torch.sin(2 * torch.pi * k * x / p))
    B = torch.stack(rows)
    return B / B.norm(dim=1, keepdim=True)


def fb_raw_waves(p):
    x = torch.arange(p)
    rows = [torch.ones(p)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * torch.pi * k * x / p), torch.sin(2 * torch.pi * k * x / p)]
    return torch.stack(rows)


def fb_all_cos_first(p):
    x = torch.arange(p)
    ks = range(1, p // 2 + 1)
    cos = [torch.cos(2 * torch.pi * k * x / p) for k in ks]
    sin = [torch.sin(2 * torch.pi * k * x / p) for k in ks]
    B = torch.stack([torch.ones(p), *cos, *sin])
    return B / B.norm(dim=1, keepdim=True)


def fb_no_two_pi(p):
    x = torch.arange(p)
    rows = [torch.ones(p) / p**0.5]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(k * x) * (2 / p) ** 0.5, torch.sin(k * x) * (2 / p) ** 0.5]
    return torch.stack(rows)


def fb_columns(p):
    return fb_good(p).T


def fb_one_over_sqrt_p(p):
    return fb_raw_waves(p) / p**0.5


def test_fourier_basis_accepts_correct_versions(capsys):
    ch07.check_fourier_basis(ref.fourier_basis)
    ch07.check_fourier_basis(fb_good)
    assert capsys.readouterr().out.count("✔ fourier_basis") == 2


@pytest.mark.parametrize("fn, hint", [
    (fb_raw_waves, "not unit vectors"),
    (fb_one_over_sqrt_p, "sqrt(2/p), not 1/sqrt(p)"),
    (fb_all_cos_first, "interleave"),
    (fb_no_two_pi, "2πkx/p, not kx"),
    (fb_columns, "one basis vector per row"),
])
def test_fourier_basis_mutants(fn, hint):
    rejects(ch07.check_fourier_basis, fn, hint)


# -- fourier_embedding -----------------------------------------------------------------------------


def fe_good(W_E, basis):
    return einops.einsum(basis, W_E[:-1], "k x, x d -> k d")


def fe_transpose(W_E, basis):
    return basis.T @ W_E[: basis.shape[0]]


def fe_drop_first(W_E, basis):
    return basis @ W_E[1:]


def test_fourier_embedding_accepts_correct_versions(capsys):
    ch07.check_fourier_embedding(fe_good)
    ch07.check_fourier_embedding(lambda W_E, B: B @ W_E[: B.shape[0]])
    assert capsys.readouterr().out.count("✔ fourier_embedding") == 2


@pytest.mark.parametrize("fn, hint", [(fe_transpose, "inverse transform"), (fe_drop_first, "*last* row")])
def test_fourier_embedding_mutants(fn, hint):
    rejects(ch07.check_fourier_embedding, fn, hint)


# -- key_frequencies -------------------------------------------------------------------------------


def kf_good(fourier_W_E, min_share):
    p = fourier_W_E.shape[0]
    sq = (fourier_W_E**2).sum(-1)
    energy = sq[1::2] + sq[2::2]  # frequency k at index k - 1
    share = energy / energy.sum()
    return torch.tensor([k + 1 for k in range(p // 2) if share[k] >= min_share])


def kf_norms(fourier_W_E, min_share):
    p = fourier_W_E.shape[0]
    norms = fourier_W_E.norm(dim=-1)
    energy = norms[1::2] + norms[2::2]
    share = energy / energy.sum()
    return torch.tensor([k + 1 for k in range(p // 2) if share[k] >= min_share])


def kf_const_in_total(fourier_W_E, min_share):
    p = fourier_W_E.shape[0]
    sq = (fourier_W_E**2).sum(-1)
    energy = sq[1::2] + sq[2::2]
    share = energy / sq.sum()
    return torch.tensor([k + 1 for k in range(p // 2) if share[k] >= min_share])


def kf_cos_only(fourier_W_E, min_share):
    p = fourier_W_E.shape[0]
    energy = (fourier_W_E[1::2] ** 2).sum(-1)
    share = energy / energy.sum()
    return torch.tensor([k + 1 for k in range(p // 2) if share[k] >= min_share])


def kf_by_energy(fourier_W_E, min_share):
    sq = (fourier_W_E**2).sum(-1)
    energy = sq[1::2] + sq[2::2]
    share = energy / energy.sum()
    order = share.argsort(descending=True)
    return order[share[order] >= min_share] + 1


def kf_row_pairs(fourier_W_E, min_share):
    sq = (fourier_W_E**2).sum(-1)
    p = sq.shape[0]
    energy = torch.zeros(p // 2 + 1).index_add_(0, torch.arange(p) // 2, sq)
    share = energy[1:] / energy[1:].sum()
    return torch.nonzero(share >= min_share).flatten() + 1


def kf_strict(fourier_W_E, min_share):
    p = fourier_W_E.shape[0]
    sq = (fourier_W_E**2).sum(-1)
    energy = sq[1::2] + sq[2::2]
    share = energy / energy.sum()
    return torch.tensor([k + 1 for k in range(p // 2) if share[k] > min_share])


def kf_float(fourier_W_E, min_share):
    return kf_good(fourier_W_E, min_share).float()


def test_key_frequencies_accepts_correct_versions(capsys):
    ch07.check_key_frequencies(kf_good)
    ch07.check_key_frequencies(lambda c, m: ref.key_frequencies(ref.frequency_energy(c).sum(-1), m).sort().values)
    assert capsys.readouterr().out.count("✔ key_frequencies") == 2


@pytest.mark.parametrize("fn, hint", [
    (kf_norms, "*squared* norms"),
    (kf_const_in_total, "leave the constant row out"),
    (kf_cos_only, "both the cos and the sin row"),
    (kf_by_energy, "increasing order"),
    (kf_row_pairs, "(row + 1) // 2"),
    (kf_strict, "(>=, not >)"),
    (kf_float, "integer"),
])
def test_key_frequencies_mutants(fn, hint):
    rejects(ch07.check_key_frequencies, fn, hint)


# -- cos_sin_of_sum --------------------------------------------------------------------------------


def cs_good(cos_a, sin_a, cos_b, sin_b):
    cos_sum = einops.einsum(cos_a, cos_b, "a, b -> a b") - einops.einsum(sin_a, sin_b, "a, b -> a b")
    sin_sum = einops.einsum(sin_a, cos_b, "a, b -> a b") + einops.einsum(cos_a, sin_b, "a, b -> a b")
    return cos_sum, sin_sum


def cs_plus(cos_a, sin_a, cos_b, sin_b):
    return (torch.outer(cos_a, cos_b) + torch.outer(sin_a, sin_b),
            torch.outer(sin_a, cos_b) + torch.outer(cos_a, sin_b))


def cs_sin_minus(cos_a, sin_a, cos_b, sin_b):
    return (torch.outer(cos_a, cos_b) - torch.outer(sin_a, sin_b),
            torch.outer(sin_a, cos_b) - torch.outer(cos_a, sin_b))


def cs_swapped(cos_a, sin_a, cos_b, sin_b):
    cos_sum, sin_sum = cs_good(cos_a, sin_a, cos_b, sin_b)
    return sin_sum, cos_sum


def cs_transposed(cos_a, sin_a, cos_b, sin_b):
    return (cos_b[:, None] * cos_a[None] - sin_b[:, None] * sin_a[None],
            sin_b[:, None] * cos_a[None] + cos_b[:, None] * sin_a[None])


def test_cos_sin_of_sum_accepts_correct_versions(capsys):
    ch07.check_cos_sin_of_sum(cs_good)
    ch07.check_cos_sin_of_sum(ref.cos_sin_of_sum)
    assert capsys.readouterr().out.count("✔ cos_sin_of_sum") == 2


@pytest.mark.parametrize("fn, hint", [
    (cs_plus, "(a minus)"),
    (cs_sin_minus, "(a plus)"),
    (cs_swapped, "in that order"),
    (cs_transposed, "rows should index x"),
])
def test_cos_sin_of_sum_mutants(fn, hint):
    rejects(ch07.check_cos_sin_of_sum, fn, hint)


# -- neuron_frequency_fractions --------------------------------------------------------------------


def _coefficients(acts, basis):
    return einops.einsum(basis, acts, basis, "i a, a b n, j b -> i j n")


def nf_good(acts, basis, with_const=False, linear=True, product=True, power=2):
    p = acts.shape[0]
    sq = _coefficients(acts, basis).abs() ** power
    total = sq.sum((0, 1)) if with_const else sq.sum((0, 1)) - sq[0, 0]
    cols = [torch.zeros(acts.shape[-1])]
    for k in range(1, p // 2 + 1):
        rows = [2 * k - 1, 2 * k]
        part = torch.zeros(acts.shape[-1])
        if linear:
            part = part + sq[rows, 0].sum(0) + sq[0, rows].sum(0)
        if product:
            part = part + sq[rows][:, rows].sum((0, 1))
        cols.append(torch.where(total > 0, part / total, 0.0))
    return torch.stack(cols, dim=1)


def test_neuron_frequency_fractions_accepts_correct_versions(capsys):
    ch07.check_neuron_frequency_fractions(nf_good)
    ch07.check_neuron_frequency_fractions(lambda acts, basis: ref.neuron_frequency_fractions(acts))
    assert capsys.readouterr().out.count("✔ neuron_frequency_fractions") == 2


@pytest.mark.parametrize("fn, hint", [
    (lambda acts, basis: nf_good(acts, basis, with_const=True), "(const, const) coefficient out"),
    (lambda acts, basis: nf_good(acts, basis, linear=False), "only the product terms"),
    (lambda acts, basis: nf_good(acts, basis, product=False), "only the terms with one side constant"),
    (lambda acts, basis: nf_good(acts, basis, power=1), "square the coefficients"),
])
def test_neuron_frequency_fractions_mutants(fn, hint):
    rejects(ch07.check_neuron_frequency_fractions, fn, hint)


def test_neuron_frequency_fractions_dead_neuron_gets_the_generic_hint():
    def nan_for_dead(acts, basis):
        sq = _coefficients(acts, basis) ** 2
        total = sq.sum((0, 1)) - sq[0, 0]
        good = nf_good(acts, basis)
        return torch.where(total[:, None] > 0, good, torch.nan)

    rejects(ch07.check_neuron_frequency_fractions, nan_for_dead, "a row of zeros")


# -- reconstruct_logits ----------------------------------------------------------------------------


def _wave(p, w, sign=-1, two_pi=True):
    a = torch.arange(p)[:, None, None]
    b = torch.arange(p)[None, :, None]
    c = torch.arange(p)[None, None, :]
    angle = w * (a + b + sign * c)
    return torch.cos(2 * torch.pi * angle / p if two_pi else angle)


def rl_good(logits, freqs, mean=True, divide="square", **wave_kw):
    p = logits.shape[0]
    out = torch.full_like(logits, logits.mean().item()) if mean else torch.zeros_like(logits)
    for w in freqs:
        wave = _wave(p, w, **wave_kw)
        alpha = (logits * wave).sum()
        if divide == "square":
            alpha = alpha / (wave * wave).sum()
        elif divide == "norm":
            alpha = alpha / wave.norm()
        out = out + alpha * wave
    return out


def test_reconstruct_logits_accepts_correct_versions(capsys):
    ch07.check_reconstruct_logits(rl_good)
    ch07.check_reconstruct_logits(lambda L, f: ref.reconstruct_logits(L, f))
    assert capsys.readouterr().out.count("✔ reconstruct_logits") == 2


@pytest.mark.parametrize("fn, hint", [
    (lambda L, f: rl_good(L, f, mean=False), "add the constant"),
    (lambda L, f: rl_good(L, f, divide="none"), "divided by the wave's squared norm"),
    (lambda L, f: rl_good(L, f, divide="norm"), "*squared* norm of the wave"),
    (lambda L, f: rl_good(L, f, sign=+1), "peaks where c = a + b"),
    (lambda L, f: rl_good(L, f, two_pi=False), "not w(a + b − c)"),
])
def test_reconstruct_logits_mutants(fn, hint):
    rejects(ch07.check_reconstruct_logits, fn, hint)


# -- restricted_loss and excluded_loss -------------------------------------------------------------


def _unit_waves(p, freqs, cos=True, sin=True):
    s = torch.arange(p)[:, None] + torch.arange(p)[None, :]
    out = []
    for w in freqs:
        if cos:
            out.append(torch.cos(2 * math.pi * w * s / p))
        if sin:
            out.append(torch.sin(2 * math.pi * w * s / p))
    waves = torch.stack(out)
    return waves / waves.flatten(1).norm(dim=1)[:, None, None]


def _key_part(logits, freqs, cos=True, sin=True):
    waves = _unit_waves(logits.shape[0], freqs, cos, sin)
    coefficients = einops.einsum(waves, logits, "k a b, a b c -> k c")
    return einops.einsum(waves, coefficients, "k a b, k c -> a b c")


def _cross_entropy(logits, mask=None):
    p = logits.shape[0]
    labels = (torch.arange(p)[:, None] + torch.arange(p)[None, :]) % p
    if mask is not None:
        return F.cross_entropy(logits[mask], labels[mask])
    return F.cross_entropy(logits.reshape(p * p, p), labels.flatten())


def rs_good(logits, freqs, own_mean=True, cos_only=False, keep_mean=True, restrict=True):
    if not restrict:
        return _cross_entropy(logits)
    kept = _key_part(logits, freqs, sin=not cos_only)
    if keep_mean:
        kept = kept + (logits.mean((0, 1)) if own_mean else logits.mean())
    return _cross_entropy(kept)


def test_restricted_loss_accepts_correct_versions(capsys):
    ch07.check_restricted_loss(rs_good)
    ch07.check_restricted_loss(lambda L, f: ref.restricted_loss(L, f))
    assert capsys.readouterr().out.count("✔ restricted_loss") == 2


@pytest.mark.parametrize("fn, hint", [
    (lambda L, f: rs_good(L, f, keep_mean=False), "each answer's own mean"),
    (lambda L, f: rs_good(L, f, own_mean=False), "each answer's own mean"),
    (lambda L, f: rs_good(L, f, cos_only=True), "keep the sin(w(a+b)) terms"),
    (lambda L, f: rs_good(L, f, restrict=False), "loss of the original logits"),
])
def test_restricted_loss_mutants(fn, hint):
    rejects(ch07.check_restricted_loss, fn, hint)


def ex_good(logits, freqs, train_mask, on_train=True, cos_only=False, drop_mean=False, fit_on_train=False):
    if fit_on_train:
        waves = _unit_waves(logits.shape[0], freqs) * train_mask
        waves = waves / waves.flatten(1).norm(dim=1)[:, None, None]
        key = einops.einsum(waves, einops.einsum(waves, logits, "k a b, a b c -> k c"), "k a b, k c -> a b c")
    else:
        key = _key_part(logits, freqs, sin=not cos_only)
    left = logits - key
    if drop_mean:
        left = left - logits.mean((0, 1))
    return _cross_entropy(left, train_mask if on_train else None)


def test_excluded_loss_accepts_correct_versions(capsys):
    ch07.check_excluded_loss(ex_good)
    ch07.check_excluded_loss(lambda L, f, train_mask: ref.excluded_loss(L, f, train_mask))
    assert capsys.readouterr().out.count("✔ excluded_loss") == 2


@pytest.mark.parametrize("fn, hint", [
    (lambda L, f, train_mask: ex_good(L, f, train_mask, on_train=False), "training inputs only"),
    (lambda L, f, train_mask: ex_good(L, f, train_mask, cos_only=True), "remove the sin(w(a+b)) terms"),
    (lambda L, f, train_mask: ex_good(L, f, train_mask, drop_mean=True), "keep each answer's mean"),
    (lambda L, f, train_mask: ex_good(L, f, train_mask, fit_on_train=True), "project over all p² inputs"),
])
def test_excluded_loss_mutants(fn, hint):
    rejects(ch07.check_excluded_loss, fn, hint)


def test_excluded_loss_with_a_renamed_parameter_is_told_to_keep_the_names():
    def renamed(logits, freqs, mask):
        return ex_good(logits, freqs, mask)

    err = rejects(ch07.check_excluded_loss, renamed, "keep the parameter names")
    assert "unexpected keyword argument 'train_mask'" in err.detail
