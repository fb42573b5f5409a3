"""Checks for chapter 07, Grokking modular addition.

Each ``check_<name>(fn)`` runs your ``fn`` and toykit's reference (toykit.fourier) on seeded
cases, prints one line when they agree, and otherwise raises CheckFailure with a hint chosen
by recognising the usual mistakes.

Signatures the checks expect (p is odd in every case, as the modulus of the task is prime):

- ``fourier_basis(p) -> [p, p]``: rows const, cos 1, sin 1, cos 2, sin 2, ..., orthonormal.
- ``fourier_embedding(W_E, basis) -> [p, d_model]``: the number tokens' embeddings (W_E
  without its last row, the "=" token) in the Fourier basis.
- ``key_frequencies(fourier_W_E, min_share) -> int tensor``: the frequencies that each carry
  at least min_share of the non-constant squared norm, in increasing order.
- ``cos_sin_of_sum(cos_a, sin_a, cos_b, sin_b) -> (cos_sum, sin_sum)``: the angle-addition
  identities, [n_a, n_b] each.
- ``neuron_frequency_fractions(acts, basis) -> [n_neurons, p//2 + 1]``.
- ``reconstruct_logits(logits, frequencies) -> [p, p, p]``.
- ``restricted_loss(logits, frequencies) -> scalar``.
- ``excluded_loss(logits, frequencies, train_mask) -> scalar``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from toykit import fourier as ref
from toykit.exercises.checking import Case, ExerciseTable, Mistake, rng, run_check

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_cos_sin_of_sum",
    "check_excluded_loss",
    "check_fourier_basis",
    "check_fourier_embedding",
    "check_key_frequencies",
    "check_neuron_frequency_fractions",
    "check_reconstruct_logits",
    "check_restricted_loss",
]


def _x(p: int) -> torch.Tensor:
    return torch.arange(p, dtype=torch.float64)


# -- fourier_basis -----------------------------------------------------------------------------


def _basis_from_rows(p: int, wave_rows: Callable[[int, torch.Tensor], list[torch.Tensor]],
                     const: float | None = None) -> torch.Tensor:
    x = _x(p)
    rows = [torch.full((p,), 1 / math.sqrt(p) if const is None else const, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += wave_rows(k, x)
    return torch.stack(rows).float()


def _fb_unnormalised(p: int) -> torch.Tensor:
    return _basis_from_rows(p, lambda k, x: [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)],
                            const=1.0)


def _fb_same_scale(p: int) -> torch.Tensor:
    s = 1 / math.sqrt(p)
    return _basis_from_rows(p, lambda k, x: [s * torch.cos(2 * math.pi * k * x / p),
                                             s * torch.sin(2 * math.pi * k * x / p)])


def _fb_cos_then_sin(p: int) -> torch.Tensor:
    B = ref.fourier_basis(p)
    return torch.cat([B[:1], B[1::2], B[2::2]])


def _fb_sin_first(p: int) -> torch.Tensor:
    B = ref.fourier_basis(p).clone()
    B[1::2], B[2::2] = B[2::2].clone(), B[1::2].clone()
    return B


def _fb_radians(p: int) -> torch.Tensor:
    s = math.sqrt(2 / p)
    return _basis_from_rows(p, lambda k, x: [s * torch.cos(k * x), s * torch.sin(k * x)])


@EXERCISES.check(ref.fourier_basis)
def check_fourier_basis(fourier_basis: Callable[[int], torch.Tensor]) -> None:
    """Check ``fourier_basis(p) -> [p, p]`` for odd p: row 0 is 1/sqrt(p); rows 2k-1 and 2k are
    sqrt(2/p) cos(2πkx/p) and sqrt(2/p) sin(2πkx/p), k = 1 .. (p-1)/2."""
    cases = [Case(f"p = {p}", (p,)) for p in (5, 7, 13, 113)]
    mistakes = [
        Mistake("the rows are not unit vectors: scale the constant by 1/sqrt(p) and each wave by "
                "sqrt(2/p) (a wave's squares sum to p/2)", _fb_unnormalised),
        Mistake("the waves need sqrt(2/p), not 1/sqrt(p): cos² averages 1/2 over a period, so the "
                "sum of cos(2πkx/p)² over x is p/2", _fb_same_scale),
        Mistake("the rows are in the wrong order: interleave them as const, cos 1, sin 1, cos 2, "
                "sin 2, ... (not all cosines, then all sines)", _fb_cos_then_sin),
        Mistake("each frequency's cosine comes before its sine: row 2k-1 is cos k, row 2k is sin k",
                _fb_sin_first),
        Mistake("the angle is 2πkx/p, not kx: frequency k means k full turns as x goes over 0..p-1",
                _fb_radians),
        Mistake("one basis vector per row, not per column: return the transpose of what you built",
                lambda p: ref.fourier_basis(p).T),
    ]
    run_check("fourier_basis", fourier_basis, lambda p: ref.fourier_basis(p), cases, mistakes,
              hint="one basis vector per row, in the order the docstring gives (constant, then a cosine and a "
                   "sine per frequency), each of unit length; print basis @ basis.T to see which rows are off")


# -- fourier_embedding -------------------------------------------------------------------------


def _embedding_cases() -> list[Case]:
    out = []
    for name, seed, p, d in (("p = 7, d_model 5", 0, 7, 5), ("p = 13, d_model 16", 1, 13, 16),
                             ("p = 113, d_model 128", 2, 113, 128)):
        W_E = torch.randn(p + 1, d, generator=rng(seed))
        out.append(Case(name, (W_E, ref.fourier_basis(p))))
    return out


def _fourier_embedding_reference(W_E: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    return ref.fourier_transform(W_E[:-1])  # the "=" token (last row) left out


@EXERCISES.check(_fourier_embedding_reference)
def check_fourier_embedding(fourier_embedding: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fourier_embedding(W_E, basis) -> [p, d_model]``: W_E is [p + 1, d_model] (its last
    row is the "=" token), basis [p, p]; the result is basis @ W_E[:p]."""
    mistakes = [
        Mistake("you applied the inverse transform: the coefficients are basis @ W_E[:p] (each basis "
                "row dotted with each column of the embedding), not basis.T @ W_E[:p]",
                lambda W_E, B: B.T @ W_E[:-1]),
        Mistake('drop the "=" token, which is the *last* row (token p), not the first: use W_E[:p]',
                lambda W_E, B: B @ W_E[1:]),
    ]
    run_check("fourier_embedding", fourier_embedding, _fourier_embedding_reference,
              _embedding_cases(), mistakes,
              hint='the Fourier coefficients of each embedding dimension over the p number tokens: leave out the '
                   '"=" token and express the rest in the basis')


# -- key_frequencies ---------------------------------------------------------------------------


def _planted_coefficients(p: int, d: int, scales: dict[int, float], const: float, seed: int,
                          background: float = 0.05) -> torch.Tensor:
    """Fourier coefficients [p, d]: frequency k's two rows have norm about scales[k] (about
    ``background`` each for the others), the constant row about const."""
    g = rng(seed)
    coeffs = background * torch.randn(p, d, generator=g) / math.sqrt(d)
    coeffs[0] *= const / background
    for k, s in scales.items():
        coeffs[2 * k - 1: 2 * k + 1] = s * torch.randn(2, d, generator=g) / math.sqrt(2 * d)
    return coeffs


def _key_cases() -> list[Case]:
    return [
        Case("p = 13: three strong frequencies", (_planted_coefficients(13, 8, {2: 3.0, 5: 2.0, 6: 1.5}, 2.0, 0),
                                                 0.1)),
        Case("p = 17: a weaker fourth frequency", (_planted_coefficients(17, 6, {1: 2.0, 3: 2.0, 7: 2.0, 8: 0.9},
                                                                        4.0, 1), 0.05)),
        Case("p = 113: five key frequencies, as in the paper",
             (_planted_coefficients(113, 32, {14: 1.0, 35: 1.2, 41: 0.9, 42: 1.1, 52: 0.8}, 1.0, 2), 0.05)),
        Case("p = 11: a strong constant", (_planted_coefficients(11, 4, {4: 1.0, 5: 0.6}, 10.0, 3), 0.2)),
        Case("p = 13: a noisy background", (_planted_coefficients(13, 16, {1: 3.0, 2: 1.0}, 1.0, 4, background=0.3),
                                           0.05)),
        Case("p = 7: a share exactly equal to min_share", (_exact_shares(), 0.25)),
    ]


def _exact_shares() -> torch.Tensor:
    """Coefficients [7, 2] whose frequencies 1, 2, 3 carry energies 1, 1, 2 exactly (shares 1/4, 1/4,
    1/2), so that "at least min_share" (>=) and "more than" (>) give different answers."""
    c = torch.zeros(7, 2)
    c[0, 0], c[1, 0], c[4, 1], c[5, 0], c[6, 1] = 3.0, 1.0, 1.0, 1.0, 1.0
    return c


def _kf_from(energy: torch.Tensor, min_share: float, with_const: bool = False, strict: bool = False) -> torch.Tensor:
    """Frequencies (>= 1) whose share of energy[1:] (or of all energy) is >= min_share (> if strict), ascending."""
    total = energy.sum() if with_const else energy[1:].sum()
    share = energy / total
    keys = torch.nonzero(share > min_share if strict else share >= min_share).flatten()
    return keys[keys >= 1]


def _energy_by(coeffs: torch.Tensor, freq_of_row: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    row = coeffs.norm(dim=1) ** power
    return torch.zeros(int(freq_of_row.max()) + 1, dtype=row.dtype).index_add_(0, freq_of_row, row)


def _key_frequencies_reference(fourier_W_E: torch.Tensor, min_share: float) -> torch.Tensor:
    energy = ref.frequency_energy(fourier_W_E).sum(-1)
    return ref.key_frequencies(energy, min_share).sort().values


@EXERCISES.check(_key_frequencies_reference)
def check_key_frequencies(key_frequencies: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``key_frequencies(fourier_W_E, min_share) -> frequencies``: fourier_W_E [p, d_model]
    (rows const, cos 1, sin 1, ...); frequency k's energy is the squared norm of rows 2k-1 and 2k
    together; return, in increasing order, the k >= 1 whose energy is at least min_share of the
    total over k >= 1 (the constant left out; a share equal to min_share counts), as integers."""

    def learner(coeffs: torch.Tensor, min_share: float) -> torch.Tensor:
        out = key_frequencies(coeffs, min_share)
        if isinstance(out, torch.Tensor) and out.numel() and (out.is_floating_point() or out.dtype == torch.bool):
            return out  # rejected as not integer frequencies
        return torch.as_tensor(out, dtype=torch.long).flatten()

    def freq_of_row(p: int) -> torch.Tensor:
        return ref.component_frequencies(p)

    mistakes = [
        Mistake("a frequency's energy is the sum of *squared* norms of its two rows, "
                "‖cos k‖² + ‖sin k‖², not the sum of norms",
                lambda c, m: _kf_from(_energy_by(c, freq_of_row(c.shape[0]), power=1.0), m)),
        Mistake("leave the constant row out of the total: the share is of the non-constant energy",
                lambda c, m: _kf_from(_energy_by(c, freq_of_row(c.shape[0])), m, with_const=True)),
        Mistake("rows 2k-1 and 2k (cos k and sin k) belong to frequency k = (row + 1) // 2; "
                "row // 2 pairs sin k with cos k+1",
                lambda c, m: _kf_from(_energy_by(c, torch.arange(c.shape[0]) // 2), m)),
        Mistake("count both the cos and the sin row of each frequency: the phase of a wave splits its "
                "energy between them",
                lambda c, m: _kf_from(_energy_by(c * (torch.arange(c.shape[0]) % 2 == 1)[:, None],
                                                 freq_of_row(c.shape[0])), m)),
        Mistake("return the frequencies in increasing order (e.g. with .sort())",
                lambda c, m: ref.key_frequencies(ref.frequency_energy(c).sum(-1), m)),
        Mistake("the constant (frequency 0) is not a key frequency: only return k >= 1",
                lambda c, m: torch.cat([torch.zeros(1, dtype=torch.long), _key_frequencies_reference(c, m)])),
        Mistake("a frequency with *at least* min_share counts: a share exactly equal to min_share is kept "
                "(>=, not >)", lambda c, m: _kf_from(_energy_by(c, freq_of_row(c.shape[0])), m, strict=True)),
    ]
    run_check("key_frequencies", learner, _key_frequencies_reference, _key_cases(), mistakes,
              hint="a frequency's energy is the squared norm of its cosine and sine rows together; keep the "
                   "frequencies whose share of the non-constant energy is at least min_share, in increasing order")


# -- cos_sin_of_sum ----------------------------------------------------------------------------


def _trig_cases() -> list[Case]:
    def waves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cos(x), torch.sin(x)

    p, w = 13, 4
    modular = 2 * math.pi * w * torch.arange(p, dtype=torch.float32) / p
    g = rng(0)
    x, y = torch.rand(9, generator=g) * 2 * math.pi, torch.rand(9, generator=g) * 2 * math.pi
    u, v = torch.rand(5, generator=g) * 2 * math.pi, torch.rand(8, generator=g) * 2 * math.pi
    return [
        Case("random angles, 9 x 9", (*waves(x), *waves(y))),
        Case(f"the waves of frequency {w} mod {p}", (*waves(modular), *waves(modular))),
        Case("5 angles x 8 angles", (*waves(u), *waves(v))),
    ]


@EXERCISES.check(ref.cos_sin_of_sum)
def check_cos_sin_of_sum(cos_sin_of_sum: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Check ``cos_sin_of_sum(cos_a, sin_a, cos_b, sin_b) -> (cos_sum, sin_sum)``: inputs [n_a]
    and [n_b] (cos x, sin x, cos y, sin y); outputs [n_a, n_b]: cos(x + y) and sin(x + y)."""

    def outer(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return u[:, None] * v[None, :]

    mistakes = [
        Mistake("cos(x + y) = cos x cos y − sin x sin y (a minus): with a plus you get cos(x − y)",
                lambda ca, sa, cb, sb: (outer(ca, cb) + outer(sa, sb), outer(sa, cb) + outer(ca, sb))),
        Mistake("sin(x + y) = sin x cos y + cos x sin y (a plus): with a minus you get sin(x − y)",
                lambda ca, sa, cb, sb: (outer(ca, cb) - outer(sa, sb), outer(sa, cb) - outer(ca, sb))),
        Mistake("return (cos_sum, sin_sum) in that order",
                lambda ca, sa, cb, sb: (outer(sa, cb) + outer(ca, sb), outer(ca, cb) - outer(sa, sb))),
        Mistake("sin(x + y) mixes the two: sin x cos y + cos x sin y, not sin x sin y + cos x cos y",
                lambda ca, sa, cb, sb: (outer(ca, cb) - outer(sa, sb), outer(sa, sb) + outer(ca, cb))),
        Mistake("rows should index x (the a inputs) and columns y: [n_a, n_b], so use a[:, None] * b[None, :]",
                lambda ca, sa, cb, sb: tuple(t.T for t in ref.cos_sin_of_sum(ca, sa, cb, sb))),
    ]
    run_check("cos_sin_of_sum", cos_sin_of_sum, ref.cos_sin_of_sum, _trig_cases(), mistakes,
              hint="apply the angle-addition identities to every pair (x from the a inputs, y from the b "
                   "inputs): the results are [n_a, n_b] tables")


# -- neuron_frequency_fractions ----------------------------------------------------------------


def _neuron_acts(p: int, n: int, seed: int, dead: bool = False) -> torch.Tensor:
    """ReLU'd mixtures of waves of a, b and a+b, like the paper's neurons: [p, p, n]."""
    g = rng(seed)
    a = _x(p)
    s = a[:, None] + a[None, :]
    acts = []
    for _ in range(n):
        k = int(torch.randint(1, p // 2 + 1, (1,), generator=g))
        k2 = int(torch.randint(1, p // 2 + 1, (1,), generator=g))
        phase = torch.rand(4, generator=g) * 2 * math.pi
        scale = torch.rand(3, generator=g)
        f = (scale[0] * torch.cos(2 * math.pi * k * s / p + phase[0])
             + scale[1] * torch.cos(2 * math.pi * k * a / p + phase[1])[:, None]
             + scale[2] * torch.cos(2 * math.pi * k * a / p + phase[2])[None, :]
             + 0.3 * torch.cos(2 * math.pi * k2 * s / p + phase[3]) + 0.2)
        acts.append(torch.relu(f))
    out = torch.stack(acts, -1).float()
    if dead:
        out[..., 0] = 0.0
    return out


def _nf_parts(acts: torch.Tensor, power: float = 2.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(energy grid [n_freq, n_freq, n] by frequency of a and of b, total, constant)."""
    p = acts.shape[0]
    c = ref.fourier_transform_2d(acts.double()).abs() ** power
    f = ref.component_frequencies(p)
    n_freq = p // 2 + 1
    grid = torch.zeros(n_freq, p, c.shape[-1], dtype=c.dtype).index_add_(0, f, c)
    grid = torch.zeros(n_freq, n_freq, c.shape[-1], dtype=c.dtype).index_add_(1, f, grid)
    return grid, c.sum((0, 1)), c[0, 0]


def _nf_combine(per_freq: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    frac = torch.where(denominator > 0, per_freq / denominator.clamp_min(1e-30), torch.zeros_like(per_freq))
    return torch.cat([torch.zeros_like(frac[:1]), frac]).T.float()


def _nf_variant(acts: torch.Tensor, linear: bool = True, product: bool = True, with_const: bool = False,
                power: float = 2.0) -> torch.Tensor:
    grid, total, const = _nf_parts(acts, power)
    k = torch.arange(1, grid.shape[0])
    per = torch.zeros_like(grid[k, k])
    if product:
        per = per + grid[k, k]
    if linear:
        per = per + grid[k, 0] + grid[0, k]
    return _nf_combine(per, total if with_const else total - const)


def _neuron_frequency_fractions_reference(acts: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    return ref.neuron_frequency_fractions(acts)  # the library builds the basis itself


@EXERCISES.check(_neuron_frequency_fractions_reference)
def check_neuron_frequency_fractions(neuron_frequency_fractions: Callable[[torch.Tensor, torch.Tensor],
                                                                          torch.Tensor]) -> None:
    """Check ``neuron_frequency_fractions(acts, basis) -> [n_neurons, p//2 + 1]``: acts [p, p,
    n_neurons], basis [p, p]. Column k >= 1: the squared 2-D Fourier coefficients whose a- and
    b-frequencies are both in {0, k} (not both 0), over all squared coefficients except
    (const, const). Column 0 is 0; a neuron that never varies gets a row of zeros."""
    cases = [
        Case("p = 7, 5 neurons", (_neuron_acts(7, 5, 0), ref.fourier_basis(7))),
        Case("p = 13, 12 neurons", (_neuron_acts(13, 12, 1), ref.fourier_basis(13))),
        Case("p = 23, 20 neurons, one dead", (_neuron_acts(23, 20, 2, dead=True), ref.fourier_basis(23))),
    ]
    mistakes = [
        Mistake("leave the (const, const) coefficient out of the denominator: it is the neuron's mean, "
                "which is not variance", lambda acts, B: _nf_variant(acts, with_const=True)),
        Mistake("you counted only the product terms (k, k), such as cos(wa)cos(wb); frequency k also "
                "owns the terms with one side constant, cos/sin(wa) and cos/sin(wb)",
                lambda acts, B: _nf_variant(acts, linear=False)),
        Mistake("you counted only the terms with one side constant; frequency k also owns the "
                "product terms (k, k) such as cos(wa)sin(wb), where the a + b information lives",
                lambda acts, B: _nf_variant(acts, product=False)),
        Mistake("square the coefficients: variance is a sum of *squared* coefficients",
                lambda acts, B: _nf_variant(acts, power=1.0)),
    ]
    run_check("neuron_frequency_fractions", neuron_frequency_fractions,
              _neuron_frequency_fractions_reference, cases, mistakes, atol=1e-4, rtol=1e-3,
              hint="take each neuron's 2-D Fourier transform over (a, b); frequency k owns the squared "
                   "coefficients whose a- and b-frequencies are both in {0, k}; divide by the neuron's variance "
                   "(every squared coefficient but the constant's); a neuron that never varies gets a row of zeros")


# -- logits ------------------------------------------------------------------------------------


def _logit_case(p: int, freqs: list[int], seed: int, memorise: float = 0.0,
                frac_train: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [p, p, p] of a partly generalising model: waves cos(w(a+b-c)) of assorted sizes, a
    per-answer bias, noise, and a table that memorises a random train set; and that train mask."""
    g = rng(seed)
    logits = torch.zeros(p, p, p, dtype=torch.float64)
    for w in freqs:
        logits += (1 + 2 * torch.rand((), generator=g)) * ref.cos_sum_minus_c(p, w, dtype=torch.float64)
    logits += torch.randn(p, generator=g, dtype=torch.float64)  # per-answer bias
    logits += 0.5 * torch.randn(p, p, p, generator=g, dtype=torch.float64)
    train = torch.rand(p, p, generator=g) < frac_train
    a = torch.arange(p)
    answers = (a[:, None] + a[None, :]) % p
    logits[train, answers[train]] += memorise
    return logits.float(), train


def _sum_terms(logits: torch.Tensor, freqs: list[int], cos: bool = True, sin: bool = True,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Projection onto unit cos/sin(w(a+b)) directions; with mask, fitted on masked inputs only."""
    p = logits.shape[0]
    s = _x(p)[:, None] + _x(p)[None, :]
    out = torch.zeros_like(logits, dtype=torch.float64)
    L = logits.double()
    for w in freqs:
        for use, fn in ((cos, torch.cos), (sin, torch.sin)):
            if not use:
                continue
            d = fn(2 * math.pi * w * s / p)
            if mask is not None:
                d = d * mask
            d = d / d.norm()
            out += d[..., None] * torch.einsum("ab,abc->c", d, L)
    return out


def _loss(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    return torch.tensor(ref.logits_loss(logits.double(), mask))


@EXERCISES.check(ref.reconstruct_logits)
def check_reconstruct_logits(reconstruct_logits: Callable[[torch.Tensor, list[int]], torch.Tensor]) -> None:
    """Check ``reconstruct_logits(logits, frequencies) -> [p, p, p]``: the mean of the logits plus,
    for each w, α_w cos(2πw(a+b-c)/p) with α_w = <logits, wave> / <wave, wave>."""
    cases = [
        Case("p = 7, frequency 2", (_logit_case(7, [2], 0)[0], [2])),
        Case("p = 13, frequencies 3 and 5", (_logit_case(13, [3, 5], 1)[0], [3, 5])),
        Case("p = 23, three frequencies", (_logit_case(23, [1, 7, 11], 2, memorise=3.0)[0], [1, 7, 11])),
    ]

    def waves(p: int, w: int, sign: float = -1.0, radians: bool = False) -> torch.Tensor:
        x = _x(p)
        total = x[:, None, None] + x[None, :, None] + sign * x[None, None, :]
        return torch.cos((w if radians else 2 * math.pi * w / p) * total)

    def fit(L: torch.Tensor, freqs: list[int], mean: bool = True, scale: Callable = lambda w: w.square().sum(),
            **kw) -> torch.Tensor:
        L = L.double()
        p = L.shape[0]
        out = L.mean().expand_as(L).clone() if mean else torch.zeros_like(L)
        for w in freqs:
            wave = waves(p, w, **kw)
            out += wave * (wave * L).sum() / scale(wave)
        return out.float()

    mistakes = [
        Mistake("add the constant: the reconstruction is mean(logits) + Σ_w α_w cos(w(a+b−c))",
                lambda L, f: fit(L, f, mean=False)),
        Mistake("α_w must be divided by the wave's squared norm <wave, wave> = p³/2: the projection "
                "onto a direction v is (<x, v> / <v, v>) v",
                lambda L, f: fit(L, f, scale=lambda w: torch.tensor(1.0, dtype=torch.float64))),
        Mistake("divide by the *squared* norm of the wave, <wave, wave>, not its norm",
                lambda L, f: fit(L, f, scale=lambda w: w.norm())),
        Mistake("the wave is cos(w(a + b − c)): it peaks where c = a + b; with + c you fit the wrong wave",
                lambda L, f: fit(L, f, sign=1.0)),
        Mistake("the angle is 2πw(a + b − c)/p, not w(a + b − c)",
                lambda L, f: fit(L, f, radians=True)),
    ]
    run_check("reconstruct_logits", reconstruct_logits, ref.reconstruct_logits, cases, mistakes, atol=1e-4,
              rtol=1e-3, hint="project the logits onto each key frequency's wave cos(2πw(a + b − c)/p) "
                              "(the coefficient of a projection divides by the wave's squared norm), and add the "
                              "constant mean")


def _loss_cases() -> list[Case]:
    out = []
    for name, p, freqs, seed, mem in (("p = 13, frequencies 2 and 5, memorising", 13, [2, 5], 0, 6.0),
                                      ("p = 17, one frequency", 17, [4], 1, 3.0),
                                      ("p = 23, three frequencies, no memorising", 23, [3, 8, 10], 2, 0.0)):
        logits, train = _logit_case(p, freqs, seed, memorise=mem)
        out.append(Case(name, (logits, freqs), {"train_mask": train}))
    return out


@EXERCISES.check(ref.restricted_loss)
def check_restricted_loss(restricted_loss: Callable[[torch.Tensor, list[int]], torch.Tensor]) -> None:
    """Check ``restricted_loss(logits, frequencies) -> scalar``: logits [p, p, p]; keep, for every
    answer c, its mean over (a, b) plus the projections onto the unit vectors cos(w(a+b)) and
    sin(w(a+b)) for w in frequencies; return the mean cross-entropy over all p² inputs of those
    logits against (a + b) mod p."""
    cases = [Case(c.name, c.args) for c in _loss_cases()]

    def mean_c(L: torch.Tensor) -> torch.Tensor:
        return L.double().mean((0, 1), keepdim=True)

    mistakes = [
        Mistake("keep each answer's own mean over (a, b), logits.mean((0, 1)), as well: the restricted "
                "logits are those means plus the key-frequency terms (a single overall mean, or none, "
                "changes no probability)", lambda L, f: _loss(_sum_terms(L, f))),
        Mistake("keep the sin(w(a+b)) terms as well as the cos(w(a+b)) ones: the phase of each wave "
                "needs both", lambda L, f: _loss(mean_c(L) + _sum_terms(L, f, sin=False))),
        Mistake("that is the loss of the original logits: restrict them to the key-frequency terms first",
                lambda L, f: _loss(L)),
    ]
    run_check("restricted_loss", restricted_loss, lambda L, f: _loss(ref.restricted_logits(L.double(), f)), cases,
              mistakes, atol=1e-4, rtol=1e-4,
              hint="keep only what the key frequencies explain (each answer's mean plus the projections on the "
                   "cos and sin waves of a + b), then score those logits over all p² inputs")


@EXERCISES.check(ref.excluded_loss)
def check_excluded_loss(excluded_loss: Callable[..., torch.Tensor]) -> None:
    """Check ``excluded_loss(logits, frequencies, train_mask) -> scalar``: logits [p, p, p],
    train_mask [p, p] bool; remove from the logits their projections onto the unit vectors
    cos(w(a+b)) and sin(w(a+b)) (taken over all p² inputs) for w in frequencies, and return the
    mean cross-entropy over the training inputs. The check passes train_mask by keyword: keep
    the parameter names."""
    cases = _loss_cases()
    mistakes = [
        Mistake("average the loss over the training inputs only (train_mask): excluded loss asks "
                "whether the model still fits what it memorised",
                lambda L, f, train_mask: _loss(L.double() - _sum_terms(L, f))),
        Mistake("remove the sin(w(a+b)) terms as well as the cos(w(a+b)) ones",
                lambda L, f, train_mask: _loss(L.double() - _sum_terms(L, f, sin=False), train_mask)),
        Mistake("remove only the key-frequency terms: keep each answer's mean",
                lambda L, f, train_mask: _loss(L.double() - _sum_terms(L, f) - L.double().mean((0, 1)),
                                               train_mask)),
        Mistake("project over all p² inputs (the waves live on the whole table), then average the loss "
                "over the training inputs; you projected over the training inputs only",
                lambda L, f, train_mask: _loss(L.double() - _sum_terms(L, f, mask=train_mask), train_mask)),
    ]
    run_check("excluded_loss", excluded_loss,
              lambda L, f, train_mask: _loss(ref.excluded_logits(L.double(), f), train_mask), cases, mistakes,
              atol=1e-4, rtol=1e-4,
              hint="remove from the logits what the key frequencies explain (the projections on the cos and sin "
                   "waves of a + b, over the whole table), then score them on the training inputs only")
