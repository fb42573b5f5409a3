"""toykit.fourier: the basis, transforms, key frequencies, neuron fractions, and the restricted
and excluded losses on hand-built logits whose answers are known in closed form."""

import math

import pytest
import torch

from toykit import fourier as fr

torch.set_num_threads(1)


def waves(p: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(p, dtype=torch.float64)
    return torch.cos(2 * math.pi * w * x / p), torch.sin(2 * math.pi * w * x / p)


@pytest.mark.parametrize("p", [2, 3, 5, 8, 12, 113])
def test_basis_is_orthonormal(p):
    B = fr.fourier_basis(p, dtype=torch.float64)
    assert B.shape == (p, p)
    assert torch.allclose(B @ B.T, torch.eye(p, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(B.T @ B, torch.eye(p, dtype=torch.float64), atol=1e-10)
    names = fr.fourier_basis_names(p)
    assert len(names) == p and names[0] == "const"
    assert fr.component_frequencies(p).tolist() == [int(n.split()[1]) if n != "const" else 0 for n in names]


def test_basis_rows_are_the_named_waves():
    p = 13
    B = fr.fourier_basis(p, dtype=torch.float64)
    cos3, sin3 = waves(p, 3)
    assert fr.fourier_basis_names(p)[5:7] == ["cos 3", "sin 3"]
    assert torch.allclose(B[5], cos3 * math.sqrt(2 / p)) and torch.allclose(B[6], sin3 * math.sqrt(2 / p))
    assert torch.allclose(B[0], torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64))
    # Even p: the last row is the Nyquist wave, with no sine.
    assert fr.fourier_basis_names(8)[-1] == "cos 4"


def test_transform_round_trip_and_2d():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(11, 4, 3, generator=g, dtype=torch.float64)
    for dim in (0, -3):
        assert torch.allclose(fr.inverse_fourier_transform(fr.fourier_transform(x, dim), dim), x, atol=1e-10)
    y = torch.randn(3, 11, generator=g, dtype=torch.float64)
    assert torch.allclose(fr.fourier_transform(y, dim=1), y @ fr.fourier_basis(11, dtype=torch.float64).T)
    # cos(2a) sin(5b) has one 2-D coefficient, at (cos 2, sin 5) = rows (3, 10).
    p = 11
    f = waves(p, 2)[0][:, None] * waves(p, 5)[1][None, :]
    coeffs = fr.fourier_transform_2d(f)
    assert coeffs.abs().argmax().item() == 3 * p + 10
    assert coeffs.square().sum().sqrt() == pytest.approx(coeffs[3, 10].abs().item())
    image = fr.fourier_basis_2d(p, [(3, 10)])[0]
    assert torch.allclose(image.double() * coeffs[3, 10], f, atol=1e-5)
    assert fr.fourier_basis_2d(5).shape == (25, 5, 5)


def test_frequency_energy_and_key_frequencies_on_planted_embedding():
    p, d = 59, 16
    g = torch.Generator().manual_seed(1)
    planted = [4, 17, 23]
    W = 0.01 * torch.randn(p, d, generator=g, dtype=torch.float64)
    for w in planted:
        c, s = waves(p, w)
        W += c[:, None] * torch.randn(d, generator=g, dtype=torch.float64) + s[:, None] * torch.randn(
            d, generator=g, dtype=torch.float64)
    energy = fr.frequency_energy(fr.fourier_transform(W)).sum(-1)
    assert energy.shape == (p // 2 + 1,)
    assert torch.allclose(energy.sum(), W.square().sum())  # Parseval
    keys = fr.key_frequencies(energy)
    assert sorted(keys.tolist()) == planted
    assert energy[keys].tolist() == sorted(energy[keys].tolist(), reverse=True)  # most energetic first
    assert fr.energy_share(energy, planted) > 0.99
    assert fr.energy_share(energy, [1]) < 0.01
    with pytest.raises(ValueError, match="min_share"):
        fr.key_frequencies(energy, min_share=0)
    with pytest.raises(ValueError, match="frequencies"):
        fr.energy_share(energy, [0])


def test_neuron_frequency_fractions():
    p = 23
    a = torch.arange(p, dtype=torch.float64)
    angle = 2 * math.pi / p
    s = a[:, None] + a[None, :]
    acts = torch.stack([
        torch.cos(angle * 5 * s) + 2.0,  # one frequency, any phase, plus a constant
        torch.cos(angle * 3 * a)[:, None].expand(p, p) + torch.sin(angle * 3 * s),  # linear and product terms of 3
        torch.cos(angle * 2 * s) + torch.cos(angle * 9 * s),  # two frequencies, equal energy
        torch.full((p, p), 4.0),  # never varies
    ], dim=-1)
    frac = fr.neuron_frequency_fractions(acts)
    assert frac.shape == (4, p // 2 + 1)
    assert torch.all(frac[:, 0] == 0)
    assert frac[0, 5] == pytest.approx(1.0) and frac[0].sum() == pytest.approx(1.0)
    assert frac[1, 3] == pytest.approx(1.0)
    assert frac[2, 2] == pytest.approx(0.5) and frac[2, 9] == pytest.approx(0.5)
    assert torch.all(frac[3] == 0)


def ideal_logits(p: int, freqs: list[int], scale: float = 1.0) -> torch.Tensor:
    """The logits of a perfect Fourier-algorithm model: scale * sum_w cos(w(a+b-c))."""
    return scale * sum(fr.cos_sum_minus_c(p, w, dtype=torch.float64) for w in freqs)


def exact_single_frequency_loss(p: int, alpha: float) -> float:
    """Loss of logits alpha * cos(w(a+b-c)), w coprime to p: the right answer gets alpha and
    the others alpha cos(2πk/p), k = 1..p-1 (w only permutes them)."""
    k = torch.arange(p, dtype=torch.float64)
    return float(torch.logsumexp(alpha * torch.cos(2 * math.pi * k / p), 0) - alpha)


def test_cos_sum_minus_c_and_reconstruction():
    p = 17
    wave = fr.cos_sum_minus_c(p, 3)
    a, b, c = 4, 9, 2
    assert wave[a, b, c].item() == pytest.approx(math.cos(2 * math.pi * 3 * (a + b - c) / p), abs=1e-6)
    assert torch.allclose(wave[a, b, (a + b) % p], torch.tensor(1.0))
    logits = ideal_logits(p, [3, 7], scale=2.0) + 0.5
    recon = fr.reconstruct_logits(logits, [3, 7])
    assert torch.allclose(recon, logits, atol=1e-9)
    assert fr.fraction_of_variance_explained(logits, recon) == pytest.approx(1.0)
    # Leaving out a frequency loses exactly its share of the variance (equal waves, so half).
    assert fr.fraction_of_variance_explained(logits, fr.reconstruct_logits(logits, [3])) == pytest.approx(0.5)


def test_restricted_and_excluded_loss_on_an_ideal_model():
    p, alpha = 31, 6.0
    logits = ideal_logits(p, [5], scale=alpha)
    exact = exact_single_frequency_loss(p, alpha)
    assert fr.logits_loss(logits) == pytest.approx(exact, rel=1e-9)
    # cos(w(a+b-c)) = cos(w(a+b)) cos(wc) + sin(w(a+b)) sin(wc): only key-frequency terms.
    assert fr.restricted_loss(logits, [5]) == pytest.approx(exact, rel=1e-9)
    assert torch.allclose(fr.restricted_logits(logits, [5]), logits, atol=1e-9)
    # Without them nothing is left: uniform logits, loss log p.
    mask = torch.rand(p, p, generator=torch.Generator().manual_seed(0)) < 0.3
    assert fr.excluded_loss(logits, [5], mask) == pytest.approx(math.log(p), rel=1e-9)
    # A non-key frequency carries nothing here.
    assert fr.excluded_loss(logits, [6], mask) == pytest.approx(fr.logits_loss(logits, mask), rel=1e-9)


def test_restricted_loss_removes_memorisation_and_excluded_loss_keeps_it():
    """Logits = generalising Fourier terms + a lookup table that memorises the training inputs.
    Restricted loss sees only the first; excluded loss only the second, which on the training
    inputs is still good."""
    p, alpha = 29, 8.0
    g = torch.Generator().manual_seed(3)
    train = torch.rand(p, p, generator=g) < 0.4
    a = torch.arange(p)
    answers = (a[:, None] + a[None, :]) % p
    memorise = torch.zeros(p, p, p, dtype=torch.float64)
    memorise[train, answers[train]] = 10.0
    fourier_part = ideal_logits(p, [4, 11], scale=alpha / 2)
    logits = fourier_part + memorise
    restricted = fr.restricted_logits(logits, [4, 11])
    # The lookup table's projection onto the kept terms is small but not zero.
    assert fr.restricted_loss(logits, [4, 11]) < fr.logits_loss(logits, ~train)
    assert fr.restricted_loss(logits, [4, 11]) == pytest.approx(fr.logits_loss(fourier_part), rel=0.2)
    assert (restricted - fourier_part - memorise.mean((0, 1))).abs().max() < 1.0
    excluded = fr.excluded_loss(logits, [4, 11], train)
    assert excluded < 0.01 < fr.logits_loss(fr.excluded_logits(logits, [4, 11]), ~train)
    assert fr.excluded_loss(logits, [4, 11], ~train) > math.log(p) - 0.5


def test_logit_sum_frequency_energy_finds_the_key_frequencies():
    p = 37
    logits = ideal_logits(p, [2, 13, 17]) + 0.05 * torch.randn(p, p, p, generator=torch.Generator().manual_seed(0),
                                                                  dtype=torch.float64)
    energy = fr.logit_sum_frequency_energy(logits)
    assert energy.shape == (p // 2 + 1,)
    assert sorted(fr.key_frequencies(energy).tolist()) == [2, 13, 17]
    total = fr.sum_frequency_terms(logits, range(1, p // 2 + 1)).square().sum()
    assert energy[1:].sum() == pytest.approx(float(total), rel=1e-9)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="p must be"):
        fr.fourier_basis(1)
    with pytest.raises(ValueError, match=r"logits must have shape \[p, p, n_out\]"):
        fr.restricted_loss(torch.zeros(5, 5, 3), [1])
    with pytest.raises(ValueError, match="frequencies must lie in"):
        fr.restricted_loss(torch.zeros(5, 5, 5), [3])
    with pytest.raises(ValueError, match="must not repeat"):
        fr.excluded_logits(torch.zeros(5, 5, 5), [1, 1])
    with pytest.raises(TypeError, match="floating-point"):
        fr.fourier_transform(torch.arange(5))
    with pytest.raises(ValueError, match="frequency must be"):
        fr.cos_sum_minus_c(7, 4)
