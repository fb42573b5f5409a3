"""The discrete Fourier basis of Z_p, and the measures Nanda et al. (2023) build on it.

A function f on Z_p = {0, ..., p-1} is a vector of p numbers. The Fourier basis writes it as
a constant plus waves cos(2πkx/p) and sin(2πkx/p) of frequencies k = 1 .. p//2:

    row 0            1 / sqrt(p)                      "const"
    row 2k - 1       cos(2πkx/p) * sqrt(2/p)          "cos k"
    row 2k           sin(2πkx/p) * sqrt(2/p)          "sin k"
    (p even: row p-1 is cos(πx) / sqrt(p), frequency p/2, which has no sine)

The rows are orthonormal, so ``fourier_transform(f) = B @ f`` gives the coefficients and
``B.T @ coefficients`` gives f back. Functions of two inputs f(a, b) use the tensor-product
basis: coefficient (i, j) = B[i] f B[j]ᵀ (``fourier_transform_2d``).

Everything that is indexed by *frequency* (energies, fractions, key frequencies) uses the
frequency itself as the index: entry 0 is the constant, entry k is frequency k, so a
[p//2 + 1] vector has no off-by-one to remember.

The measures of "Progress measures for grokking via mechanistic interpretability":

- energy of a Fourier transform per frequency (``frequency_energy``), and the few *key
  frequencies* that carry most of it (``key_frequencies``);
- the fraction of a neuron's variance over the p² inputs that one frequency explains
  (``neuron_frequency_fractions``);
- logits as sums of cos(w(a+b-c)) (``cos_sum_minus_c``, ``reconstruct_logits``);
- the *restricted* loss (keep only the key-frequency terms cos/sin(w(a+b)) of the logits,
  evaluated on all p² inputs) and the *excluded* loss (remove those terms, evaluated on the
  training inputs).

Logit tables are [p, p, n_out]: entry [a, b, c] is the logit of answer c on input (a, b).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from toykit.runtime import resolve_device
from toykit.validation import check_positive_int, check_tensor

__all__ = [
    "component_frequencies",
    "cos_sin_of_sum",
    "cos_sum_minus_c",
    "energy_share",
    "excluded_logits",
    "excluded_loss",
    "fourier_basis",
    "fourier_basis_2d",
    "fourier_basis_names",
    "fourier_transform",
    "fourier_transform_2d",
    "fraction_of_variance_explained",
    "frequency_energy",
    "inverse_fourier_transform",
    "key_frequencies",
    "logit_sum_frequency_energy",
    "logits_loss",
    "neuron_frequency_fractions",
    "reconstruct_logits",
    "restricted_logits",
    "restricted_loss",
    "sum_frequency_terms",
]


def _check_p(p: object) -> int:
    p = check_positive_int("p", p)
    if p < 2:
        raise ValueError(f"p must be at least 2, got {p}")
    return p


def fourier_basis(p: int, device: str | torch.device | None = "cpu", dtype: torch.dtype = torch.float32
                  ) -> torch.Tensor:
    """The orthonormal Fourier basis of Z_p: [p, p], one basis vector per row.

    Row order: const, cos 1, sin 1, cos 2, sin 2, ... (see the module docstring);
    ``fourier_basis_names(p)`` names the rows.
    """
    _check_p(p)
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        angle = 2 * math.pi * k * x / p
        if 2 * k == p:  # the Nyquist wave cos(πx) = ±1 has no sine partner
            rows.append(torch.cos(angle) / math.sqrt(p))
        else:
            rows += [torch.cos(angle) * math.sqrt(2 / p), torch.sin(angle) * math.sqrt(2 / p)]
    return torch.stack(rows).to(resolve_device(device), dtype)


def fourier_basis_names(p: int) -> list[str]:
    """The names of the rows of ``fourier_basis(p)``: ["const", "cos 1", "sin 1", ...]."""
    _check_p(p)
    names = ["const"]
    for k in range(1, p // 2 + 1):
        names += [f"cos {k}"] if 2 * k == p else [f"cos {k}", f"sin {k}"]
    return names


def component_frequencies(p: int, device: str | torch.device | None = "cpu") -> torch.Tensor:
    """The frequency of each row of ``fourier_basis(p)``: [p] int64 (0 for the constant)."""
    _check_p(p)
    return torch.arange(1, p + 1, device=resolve_device(device)) // 2


def _basis_for(x: torch.Tensor, p: int) -> torch.Tensor:
    dtype = x.dtype if x.is_floating_point() else torch.float32
    return fourier_basis(p, x.device, dtype)


def fourier_transform(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The Fourier coefficients of x along ``dim`` (of length p): same shape as x.

    Coefficient i is the dot product of basis row i with x along that axis. For an embedding
    W_E [p, d_model] (the "=" row dropped), ``fourier_transform(W_E)`` [p, d_model] says how
    much each wave contributes to each residual direction.
    """
    check_tensor("x", x, dtype="float")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension")
    x = x.movedim(dim, 0)
    out = torch.tensordot(_basis_for(x, x.shape[0]), x, dims=1)
    return out.movedim(0, dim)


def inverse_fourier_transform(coefficients: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Undo ``fourier_transform`` along ``dim``: Bᵀ @ coefficients."""
    check_tensor("coefficients", coefficients, dtype="float")
    c = coefficients.movedim(dim, 0)
    out = torch.tensordot(_basis_for(c, c.shape[0]).T, c, dims=1)
    return out.movedim(0, dim)


def fourier_transform_2d(x: torch.Tensor) -> torch.Tensor:
    """The 2-D Fourier coefficients of a function of (a, b): x [p, p, ...] -> [p, p, ...].

    Entry [i, j] is the coefficient of the basis image fourier_basis[i] ⊗ fourier_basis[j],
    e.g. [cos w, const] is the part of x that varies as cos(wa) and [cos w, sin w] the part
    that varies as cos(wa) sin(wb). Trailing axes (neurons, logits) are transformed
    independently.
    """
    check_tensor("x", x, dtype="float")
    if x.ndim < 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"x must have shape [p, p, ...], got {list(x.shape)}")
    return fourier_transform(fourier_transform(x, 0), 1)


def fourier_basis_2d(p: int, components: Sequence[tuple[int, int]] | None = None,
                     device: str | torch.device | None = "cpu") -> torch.Tensor:
    """Basis images of the 2-D Fourier basis: [n, p, p], image (i, j) = outer(B[i], B[j]).

    components: (i, j) row indices of ``fourier_basis``; None means all p² of them, p⁴
        numbers (for p = 113 that is 650 MB, so ask for the ones you need).
    """
    basis = fourier_basis(p, device)
    if components is None:
        return torch.einsum("ia,jb->ijab", basis, basis).reshape(p * p, p, p)
    idx = torch.as_tensor(list(components), dtype=torch.long, device=basis.device)
    if idx.ndim != 2 or idx.shape[1] != 2 or (idx.numel() and (idx.min() < 0 or idx.max() >= p)):
        raise ValueError(f"components must be a list of (i, j) pairs with 0 <= i, j < p={p}")
    return basis[idx[:, 0], :, None] * basis[idx[:, 1], None, :]


def frequency_energy(coefficients: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Squared Fourier coefficients summed per frequency along ``dim``.

    coefficients: Fourier coefficients (e.g. from ``fourier_transform``) with p entries along
    dim. Returns the same shape with that axis replaced by p//2 + 1 entries: entry 0 is the
    constant's square, entry k the sum cos k² + sin k². Other axes are kept; sum them for
    one number per frequency.
    """
    check_tensor("coefficients", coefficients, dtype="float")
    c = coefficients.movedim(dim, 0)
    freqs = component_frequencies(c.shape[0], c.device)
    out = c.new_zeros((c.shape[0] // 2 + 1, *c.shape[1:]))
    out.index_add_(0, freqs, c.square())
    return out.movedim(0, dim)


def energy_share(energy: torch.Tensor, frequencies: Sequence[int] | torch.Tensor) -> float:
    """The fraction of the non-constant energy (entries 1..) that ``frequencies`` carry.

    energy: [p//2 + 1] per-frequency energy (``frequency_energy``), entry 0 = constant.
    """
    check_tensor("energy", energy, [None], dtype="float")
    freqs = torch.as_tensor(frequencies, dtype=torch.long, device=energy.device).flatten()
    if freqs.numel() and (freqs.min() < 1 or freqs.max() >= energy.shape[0]):
        raise ValueError(f"frequencies must lie in [1, {energy.shape[0] - 1}], got {freqs.tolist()}")
    total = energy[1:].sum()
    return float(energy[freqs].sum() / total) if total > 0 else 0.0


def key_frequencies(energy: torch.Tensor, min_share: float = 0.05) -> torch.Tensor:
    """The frequencies that each carry at least ``min_share`` of the non-constant energy.

    energy: [p//2 + 1] per-frequency energy, entry 0 the constant (ignored).
    min_share: in (0, 1]. With ~p/2 frequencies an even spread gives each about 2/p
        (0.018 for p = 113), so 0.05 picks frequencies well above the background.
    Returns the frequencies (int64), the most energetic first.
    """
    check_tensor("energy", energy, [None], dtype="float")
    if energy.shape[0] < 2:
        raise ValueError(f"energy must have an entry per frequency (at least 2), got {list(energy.shape)}")
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0 < min_share <= 1:
        raise ValueError(f"min_share must be a number in (0, 1], got {min_share!r}")
    share = energy[1:] / energy[1:].sum().clamp_min(torch.finfo(energy.dtype).tiny)
    order = share.argsort(descending=True, stable=True)
    return order[share[order] >= min_share] + 1


def neuron_frequency_fractions(acts: torch.Tensor) -> torch.Tensor:
    """The fraction of each neuron's variance over all inputs (a, b) explained by each frequency.

    acts: [p, p, n_neurons], a neuron's activation on every input (a, b).
    Returns [n_neurons, p//2 + 1]: column k (k >= 1) is the energy of the 2-D Fourier terms
    built from frequency k alone (cos/sin of ka, of kb, and their products: the components
    (i, j) whose frequencies are in {0, k} and not both 0) over all non-constant energy.
    Column 0 is 0 (the constant explains no variance). A neuron that never varies gets a row
    of zeros.
    """
    check_tensor("acts", acts, ["p", "p", "n_neurons"], dtype="float")
    p = acts.shape[0]
    energy = fourier_transform_2d(acts).square()  # [p, p, n]
    freqs = component_frequencies(p, acts.device)
    n_freq = p // 2 + 1
    # Energy per (frequency of a, frequency of b): [n_freq, n_freq, n]
    grid = acts.new_zeros(n_freq, p, energy.shape[-1]).index_add_(0, freqs, energy)
    grid = acts.new_zeros(n_freq, n_freq, energy.shape[-1]).index_add_(1, freqs, grid)
    k = torch.arange(1, n_freq, device=acts.device)
    per_freq = grid[k, k] + grid[k, 0] + grid[0, k]  # [n_freq - 1, n]
    variance = energy.sum((0, 1)) - energy[0, 0]
    fractions = per_freq / variance.clamp_min(torch.finfo(acts.dtype).tiny)
    fractions = torch.where(variance > 0, fractions, torch.zeros_like(fractions))
    return torch.cat([torch.zeros_like(fractions[:1]), fractions]).T


# -- logits -------------------------------------------------------------------------------------


def _check_logits(logits: torch.Tensor) -> int:
    dims = check_tensor("logits", logits, ["p", "p", "n_out"], dtype="float")
    if dims["n_out"] < dims["p"]:
        raise ValueError(f"logits must have shape [p, p, n_out] with n_out >= p, got {list(logits.shape)}")
    return dims["p"]


def _frequencies(frequencies: Sequence[int] | torch.Tensor, p: int, device: torch.device) -> torch.Tensor:
    freqs = torch.as_tensor(frequencies, dtype=torch.long, device=device).flatten()
    if freqs.numel() and (freqs.min() < 1 or freqs.max() > p // 2):
        raise ValueError(f"frequencies must lie in [1, p//2 = {p // 2}], got {freqs.tolist()}")
    if freqs.unique().numel() != freqs.numel():
        raise ValueError(f"frequencies must not repeat, got {freqs.tolist()}")
    return freqs


def _sum_directions(p: int, freqs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Unit vectors cos(w(a+b)), sin(w(a+b)) over the p² inputs: [2 * n_freqs, p, p]."""
    s = torch.arange(p, device=freqs.device)
    s = (s[:, None] + s[None, :]).to(torch.float64)
    angle = 2 * math.pi * freqs.to(torch.float64)[:, None, None] * s / p
    dirs = torch.cat([torch.cos(angle), torch.sin(angle)])
    dirs = dirs / dirs.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    # sin(w(a+b)) is identically 0 only at the Nyquist frequency of an even p: drop it.
    return dirs[dirs.flatten(1).norm(dim=1) > 0.5].to(dtype)


def sum_frequency_terms(logits: torch.Tensor, frequencies: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The part of the logits that varies as cos(w(a+b)) or sin(w(a+b)) for w in frequencies.

    logits: [p, p, n_out]. For every answer c, the function (a, b) -> logits[a, b, c] is
    projected onto the unit vectors cos(w(a+b)) and sin(w(a+b)) (orthogonal for different w).
    Returns that projection, [p, p, n_out].
    """
    p = _check_logits(logits)
    dirs = _sum_directions(p, _frequencies(frequencies, p, logits.device), logits.dtype)
    coefficients = torch.einsum("kab,abc->kc", dirs, logits)
    return torch.einsum("kab,kc->abc", dirs, coefficients)


def restricted_logits(logits: torch.Tensor, frequencies: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Keep only the constant and the key-frequency cos/sin(w(a+b)) terms of the logits.

    logits: [p, p, n_out] -> [p, p, n_out]: for every answer c, its mean over (a, b) plus
    ``sum_frequency_terms(logits, frequencies)``.
    """
    return logits.mean((0, 1), keepdim=True) + sum_frequency_terms(logits, frequencies)


def excluded_logits(logits: torch.Tensor, frequencies: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Remove the key-frequency cos/sin(w(a+b)) terms from the logits: [p, p, n_out]."""
    return logits - sum_frequency_terms(logits, frequencies)


def logits_loss(logits: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean cross-entropy of a logit table on the answers (a + b) mod p.

    logits: [p, p, n_out] (only the first p answers are scored; n_out may be larger).
    mask: [p, p] bool, which inputs to average over (None: all p²).
    Computed in float64, since a grokked model's loss can be far below float32's resolution.
    """
    p = _check_logits(logits)
    a = torch.arange(p, device=logits.device)
    labels = (a[:, None] + a[None, :]) % p
    log_probs = logits[..., :p].double().log_softmax(-1)
    nll = -log_probs.gather(-1, labels[..., None])[..., 0]
    if mask is None:
        return float(nll.mean())
    check_tensor("mask", mask, [p, p], dtype="bool")
    if not mask.any():
        raise ValueError("mask selects no inputs")
    return float(nll[mask.to(nll.device)].mean())


def restricted_loss(logits: torch.Tensor, frequencies: Sequence[int] | torch.Tensor) -> float:
    """Loss on all p² inputs of ``restricted_logits``: how well the key frequencies alone do."""
    return logits_loss(restricted_logits(logits, frequencies))


def excluded_loss(logits: torch.Tensor, frequencies: Sequence[int] | torch.Tensor, train_mask: torch.Tensor
                  ) -> float:
    """Loss on the training inputs (``train_mask`` [p, p]) of ``excluded_logits``: how well the
    model does on what it was trained on without the key frequencies."""
    return logits_loss(excluded_logits(logits, frequencies), train_mask)


def logit_sum_frequency_energy(logits: torch.Tensor) -> torch.Tensor:
    """Energy of the cos/sin(w(a+b)) terms of the logits per frequency: [p//2 + 1].

    Entry w is the squared norm of ``sum_frequency_terms(logits, [w])``; entry 0 is the
    energy of the per-answer means. The key frequencies of a trained model stand out here.
    """
    p = _check_logits(logits)
    freqs = torch.arange(1, p // 2 + 1, device=logits.device)
    dirs = _sum_directions(p, freqs, logits.dtype)
    coefficients = torch.einsum("kab,abc->kc", dirs, logits).square().sum(-1)
    out = logits.new_zeros(p // 2 + 1)
    out[0] = logits.mean((0, 1)).square().sum() * p * p
    dir_freqs = torch.cat([freqs, freqs])[: dirs.shape[0]]
    return out.index_add_(0, dir_freqs, coefficients)


def cos_sum_minus_c(p: int, frequency: int, device: str | torch.device | None = "cpu",
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """cos(2π w (a + b - c) / p) for every a, b, c: [p, p, p] (w = frequency).

    The paper's model computes its logit for answer c as a weighted sum of these waves over
    its key frequencies: they peak exactly at c = (a + b) mod p.
    """
    _check_p(p)
    if isinstance(frequency, bool) or not isinstance(frequency, int) or not 0 <= frequency <= p // 2:
        raise ValueError(f"frequency must be an int in [0, p//2 = {p // 2}], got {frequency!r}")
    x = torch.arange(p, device=resolve_device(device), dtype=torch.float64)
    total = x[:, None, None] + x[None, :, None] - x[None, None, :]
    return torch.cos(2 * math.pi * frequency * total / p).to(dtype)


def cos_sin_of_sum(cos_a: torch.Tensor, sin_a: torch.Tensor, cos_b: torch.Tensor, sin_b: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos(x + y) and sin(x + y) for every pair, from the waves of x and y alone.

    cos_a, sin_a: [n_a] (cos x, sin x); cos_b, sin_b: [n_b] (cos y, sin y). Returns
    ([n_a, n_b], [n_a, n_b]) by the angle-addition identities
    cos(x + y) = cos x cos y - sin x sin y and sin(x + y) = sin x cos y + cos x sin y:
    the products the paper's MLP neurons compute from cos/sin(wa) and cos/sin(wb).
    """
    dims: dict[str, int] = {}
    check_tensor("cos_a", cos_a, ["n_a"], dtype="float", dims=dims)
    check_tensor("sin_a", sin_a, ["n_a"], dtype="float", dims=dims)
    check_tensor("cos_b", cos_b, ["n_b"], dtype="float", dims=dims)
    check_tensor("sin_b", sin_b, ["n_b"], dtype="float", dims=dims)
    cos_sum = cos_a[:, None] * cos_b[None, :] - sin_a[:, None] * sin_b[None, :]
    sin_sum = sin_a[:, None] * cos_b[None, :] + cos_a[:, None] * sin_b[None, :]
    return cos_sum, sin_sum


def reconstruct_logits(logits: torch.Tensor, frequencies: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The best fit of the logits by a constant plus sum_w α_w cos(w(a+b-c)).

    logits: [p, p, n_out] (the first p answers are used) -> [p, p, p]. The waves for different
    w are orthogonal to each other and to constants over the p³ entries, so each α_w is the
    projection of the logits onto cos(w(a+b-c)) divided by its squared norm (p³/2).
    """
    p = _check_logits(logits)
    logits = logits[..., :p]
    freqs = _frequencies(frequencies, p, logits.device)
    out = logits.mean().expand(p, p, p).clone()
    for w in freqs.tolist():
        wave = cos_sum_minus_c(p, w, logits.device, logits.dtype)
        out += wave * (wave * logits).sum() / wave.square().sum()
    return out


def fraction_of_variance_explained(x: torch.Tensor, approximation: torch.Tensor) -> float:
    """1 - ‖x - approximation‖² / ‖x - mean(x)‖²: how much of x's variance the approximation gets."""
    check_tensor("x", x, dtype="float")
    check_tensor("approximation", approximation, list(x.shape), dtype="float")
    residual = (x - approximation).double().square().sum()
    total = (x - x.mean()).double().square().sum()
    return float(1 - residual / total) if total > 0 else float(residual == 0)
