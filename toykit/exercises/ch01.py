"""Checks for chapter 01, Toy Models of Superposition.

Each ``check_<name>(fn)`` runs your ``fn`` and toykit's reference (toykit.superposition) on
seeded cases, prints one line when they agree, and otherwise raises CheckFailure with a
hint chosen by recognising the usual mistakes.

Signatures the checks expect:

- ``generate_batch(n_batch, feature_probability) -> x`` with feature_probability:
  [n_instances, n_features] and x: [n_batch, n_instances, n_features]. It is random, so
  the check compares statistics over a large batch (see check_generate_batch).
- ``toy_forward(x, W, b_final) -> out``: the ReLU toy model, x' = ReLU(WᵀWx + b).
- ``importance_weighted_loss(out, x, importance) -> [n_instances]``.
- ``feature_dimensionality(W) -> [n_instances, n_features]``.
- ``dimensions_per_feature(W) -> [n_instances]``.
- ``neuron_polysemanticity(W) -> [n_instances, n_hidden]``.
- ``antipodal_pair_losses(density) -> (loss_drop, loss_antipodal)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from toykit import superposition as ref
from toykit.exercises.checking import Case, ExerciseTable, Mistake, rng, run_check, seeded

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_antipodal_pair_losses",
    "check_dimensions_per_feature",
    "check_feature_dimensionality",
    "check_generate_batch",
    "check_importance_weighted_loss",
    "check_neuron_polysemanticity",
    "check_toy_forward",
]


def _W(seed: int, n_instances: int, n_hidden: int, n_features: int) -> torch.Tensor:
    return torch.randn(n_instances, n_hidden, n_features, generator=rng(seed))


# -- generate_batch ----------------------------------------------------------------------------
#
# A random function cannot be compared value by value, so the learner's batch is summarised by
# statistics whose expected values are known exactly, and those are compared with a tolerance
# of many standard errors (N_SAMPLES draws per entry):
#   1. the fraction of each (instance, feature) entry that is non-zero     -> p
#   2. the mean of the non-zero values, pooled per instance                -> 1/2
#   3. whether all values lie in [0, 1] (two flags)                       -> 1, 1
#   4. per feature, how often instances 0 and 1 are both zero or both non-zero
#      -> p0 p1 + (1-p0)(1-p1) for independent instances
# The usual mistakes change these statistics in known ways, which is how they are recognised.

N_SAMPLES = 40_000
STAT_TOL = 0.02  # at least 8 standard errors for every statistic above


def _stats_expected(p: torch.Tensor, present: Callable[[torch.Tensor], torch.Tensor],
                    mean_value: Callable[[torch.Tensor], torch.Tensor],
                    in_range: tuple[float, float] = (1.0, 1.0), shared_mask: bool = False
                    ) -> tuple[torch.Tensor, ...]:
    """Exact expected statistics when each entry is non-zero with probability present(p) and
    non-zero values have mean mean_value(p)."""
    q = present(p).double()
    weights = q.sum(-1)
    pooled = torch.where(weights > 0, (q * mean_value(p).double()).sum(-1) / weights.clamp_min(1e-12),
                         torch.full_like(weights, 0.5))
    if p.shape[0] >= 2:
        q0, q1 = q[0], q[1]
        agree = 1 - (q0 - q1).abs() if shared_mask else q0 * q1 + (1 - q0) * (1 - q1)
    else:
        agree = torch.ones(p.shape[1], dtype=torch.float64)
    return q, pooled, torch.tensor(in_range, dtype=torch.float64), agree


def _stats_observed(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.detach().cpu().double()
    nonzero = x != 0
    q = nonzero.double().mean(0)  # [inst, feat]
    count = nonzero.sum(dim=(0, 2)).double()  # [inst]
    pooled = torch.where(count > 0, (x * nonzero).sum(dim=(0, 2)) / count.clamp_min(1),
                         torch.full_like(count, 0.5))
    in_range = torch.tensor([float(x.min() >= 0), float(x.max() <= 1)], dtype=torch.float64)
    if x.shape[1] >= 2:
        agree = (nonzero[:, 0] == nonzero[:, 1]).double().mean(0)
    else:
        agree = torch.ones(x.shape[2], dtype=torch.float64)
    return q, pooled, in_range, agree


def _batch_cases() -> list[Case]:
    mixed = torch.tensor([[0.9, 0.5, 0.1, 0.0, 0.02], [0.3, 1.0, 0.05, 0.6, 0.2]])
    same = torch.full((3, 4), 0.25)
    rand = torch.rand(4, 6, generator=rng(11))
    return [
        Case("per-instance and per-feature probabilities", (N_SAMPLES, mixed), {"seed": 0}),
        Case("every instance with p = 0.25", (N_SAMPLES, same), {"seed": 1}),
        Case("random probabilities", (N_SAMPLES, rand), {"seed": 2}),
        Case("dense and empty features", (N_SAMPLES, torch.tensor([[1.0, 0.0, 1.0]])), {"seed": 3}),
    ]


@EXERCISES.check(ref.generate_batch)
def check_generate_batch(generate_batch: Callable[[int, torch.Tensor], torch.Tensor]) -> None:
    """Check ``generate_batch(n_batch, feature_probability) -> x: [n_batch, n_instances,
    n_features]`` statistically: presence rates, value range and mean, and independence of
    instances, over 40,000 samples per entry (tolerance 0.02, many standard errors)."""

    def learner(n_batch: int, p: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
        with seeded(seed):  # the verdict is the same every run; the learner's own RNG is left alone
            x = generate_batch(n_batch, p)
        want = [n_batch, *p.shape]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"generate_batch must return a tensor, got {type(x).__name__}")
        if list(x.shape) != want:
            raise ValueError(f"generate_batch returned shape {list(x.shape)}, expected "
                             f"[n_batch, n_instances, n_features] = {want}")
        return _stats_observed(x)

    def expected(n_batch: int, p: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
        return _stats_expected(p, lambda p: p, lambda p: torch.full_like(p, 0.5))

    mistakes = [
        Mistake("features are present with probability 1 - p: `feature_probability` is the "
                "chance a feature is *present* (non-zero), so keep values where rand < p",
                lambda n, p, seed: _stats_expected(p, lambda p: 1 - p,
                                                   lambda p: torch.full_like(p, 0.5))),
        Mistake("no feature is ever zero: multiply the values by a mask (rand < p) or use "
                "torch.where(mask, values, 0)",
                lambda n, p, seed: _stats_expected(p, torch.ones_like,
                                                   lambda p: torch.full_like(p, 0.5))),
        Mistake("values are not in [0, 1]: present features should be uniform on [0, 1] "
                "(torch.rand), not normal (torch.randn)",
                lambda n, p, seed: _stats_expected(p, lambda p: p, torch.zeros_like, (0.0, 0.0))),
        Mistake("present values average p/2 instead of 1/2: you used the same random draw for "
                "the mask and for the value, so a present value is uniform on [0, p]; draw the "
                "values separately",
                lambda n, p, seed: _stats_expected(p, lambda p: p, lambda p: p / 2)),
        Mistake("instances are not independent: you drew one random mask and shared it across "
                "instances (e.g. a shape [n_batch, 1, n_features] draw); draw a separate number "
                "for every (batch, instance, feature) entry",
                lambda n, p, seed: _stats_expected(p, lambda p: p,
                                                   lambda p: torch.full_like(p, 0.5),
                                                   shared_mask=True)),
    ]
    run_check("generate_batch", learner, expected, _batch_cases(), mistakes,
              hint="each entry should be non-zero with its own probability p, independently, "
                   "and a non-zero value should be uniform on [0, 1]",
              atol=STAT_TOL, rtol=0.0)


# -- toy_forward -------------------------------------------------------------------------------


def _forward_cases() -> list[Case]:
    def case(name: str, seed: int, batch: int, inst: int, hidden: int, feat: int,
             bias_shift: float = 0.0) -> Case:
        g = rng(seed)
        x = torch.rand(batch, inst, feat, generator=g)
        W = torch.randn(inst, hidden, feat, generator=g)
        b = torch.randn(inst, feat, generator=g) * 0.5 + bias_shift
        return Case(name, (x, W, b))

    return [
        case("square W (n_hidden = n_features = 4)", 0, 6, 3, 4, 4),
        case("5 features in 2 dimensions", 1, 8, 2, 2, 5),
        case("one instance, negative bias", 2, 5, 1, 3, 7, bias_shift=-0.5),
        case("batch of one", 3, 1, 4, 2, 3),
    ]


@EXERCISES.check(ref.toy_forward)
def check_toy_forward(toy_forward: Callable[..., torch.Tensor]) -> None:
    """Check ``toy_forward(x, W, b_final) -> x'``: x: [batch, n_instances, n_features],
    W: [n_instances, n_hidden, n_features], b_final: [n_instances, n_features];
    x' = ReLU(WᵀW x + b_final), shape [batch, n_instances, n_features]."""
    e = torch.einsum
    mistakes = [
        Mistake("you forgot the ReLU on the output: x' = ReLU(WᵀW x + b)",
                lambda x, W, b: e("ihf,bih->bif", W, e("ihf,bif->bih", W, x)) + b),
        Mistake("you forgot the bias b_final: x' = ReLU(WᵀW x + b)",
                lambda x, W, b: F.relu(e("ihf,bih->bif", W, e("ihf,bif->bih", W, x)))),
        Mistake("the bias is added after the ReLU; it belongs inside: ReLU(WᵀW x + b)",
                lambda x, W, b: F.relu(e("ihf,bih->bif", W, e("ihf,bif->bih", W, x))) + b),
        Mistake("there is a ReLU on the hidden layer too: this model has h = W x with no "
                "activation (the ReLU-hidden variant comes later, as NeuronModel)",
                lambda x, W, b: F.relu(e("ihf,bih->bif", W, F.relu(e("ihf,bif->bih", W, x))) + b)),
        Mistake("you computed W Wᵀ x: W is [n_instances, n_hidden, n_features], so h = W x sums "
                "over the *last* axis of W (features) and x' = Wᵀ h sums over its middle axis",
                lambda x, W, b: F.relu(e("ifh,bih->bif", W, e("ifh,bif->bih", W, x)) + b)),
        Mistake("you computed W W x instead of Wᵀ W x: reading back out of the hidden space "
                "uses the transpose, x' = Wᵀ h, a sum over the n_hidden axis of W",
                lambda x, W, b: F.relu(e("ifh,bih->bif", W, e("ihf,bif->bih", W, x)) + b)),
    ]
    run_check("toy_forward", toy_forward, ref.toy_forward, _forward_cases(), mistakes,
              hint="compute h = W x (sum over features), then x' = ReLU(Wᵀ h + b) "
                   "(sum over hidden dims); einsum with named axes keeps the shapes straight")


# -- importance_weighted_loss ------------------------------------------------------------------


def _loss_cases() -> list[Case]:
    def case(name: str, seed: int, batch: int, inst: int, feat: int) -> Case:
        g = rng(seed)
        x = torch.rand(batch, inst, feat, generator=g)
        out = torch.rand(batch, inst, feat, generator=g)
        imp = torch.rand(inst, feat, generator=g) * 1.5 + 0.1
        return Case(name, (out, x, imp))

    return [case("random", 0, 7, 3, 5), case("one instance", 1, 4, 1, 6),
            case("batch of one", 2, 1, 4, 3), case("many features", 3, 16, 2, 40)]


@EXERCISES.check(ref.importance_weighted_loss)
def check_importance_weighted_loss(importance_weighted_loss: Callable[..., torch.Tensor]) -> None:
    """Check ``importance_weighted_loss(out, x, importance) -> [n_instances]``:
    out, x: [batch, n_instances, n_features], importance: [n_instances, n_features];
    loss[i] = mean over the batch of Σ_f importance[i, f] (x - out)²."""
    mistakes = [
        Mistake("the importance is missing: weight each feature's squared error by importance",
                lambda out, x, imp: ((x - out) ** 2).sum(-1).mean(0)),
        Mistake("you averaged over features; the loss *sums* over features (Σ_f) and "
                "averages over the batch",
                lambda out, x, imp: (imp * (x - out) ** 2).mean(-1).mean(0)),
        Mistake("you summed over the batch; average over it instead, so the loss does not "
                "grow with the batch size",
                lambda out, x, imp: (imp * (x - out) ** 2).sum(-1).sum(0)),
        Mistake("the error is not squared: use (x - out)²",
                lambda out, x, imp: (imp * (x - out).abs()).sum(-1).mean(0)),
        Mistake("the importance is squared: it multiplies the squared error once, "
                "importance · (x - out)², not (importance · (x - out))²",
                lambda out, x, imp: ((imp * (x - out)) ** 2).sum(-1).mean(0)),
        Mistake("you returned one number; return one loss per instance, shape [n_instances] "
                "(training adds them up later)",
                lambda out, x, imp: (imp * (x - out) ** 2).sum(-1).mean(0).sum()),
        Mistake("you returned one number; return one loss per instance, shape [n_instances] "
                "(don't average over instances)",
                lambda out, x, imp: (imp * (x - out) ** 2).sum(-1).mean()),
    ]
    run_check("importance_weighted_loss", importance_weighted_loss, ref.importance_weighted_loss,
              _loss_cases(), mistakes,
              hint="loss[i] = mean over batch of Σ_f importance[i, f] · (x - out)², "
                   "shape [n_instances]")


# -- feature_dimensionality --------------------------------------------------------------------


def _polygon(k: int, n_instances: int = 1) -> torch.Tensor:
    angles = torch.arange(k) * 2 * math.pi / k
    W = torch.stack([angles.cos(), angles.sin()])  # [2, k]
    return W.expand(n_instances, 2, k).clone()


def _dim_cases() -> list[Case]:
    dead = _W(5, 2, 3, 6)
    dead[0, :, 2] = 0
    dead[1, :, 0] = 0
    scaled = _polygon(5) * torch.tensor([1.0, 0.5, 2.0, 1.0, 1.5])
    return [
        Case("random W [3, 2, 5]", (_W(0, 3, 2, 5),)),
        Case("random W [2, 4, 9]", (_W(1, 2, 4, 9),)),
        Case("pentagon with unequal lengths", (scaled,)),
        Case("orthogonal features plus an antipodal pair",
             (torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]]),)),
        Case("dead features (zero columns)", (dead,)),
    ]


def _fd_no_normalise(W: torch.Tensor) -> torch.Tensor:
    norms2 = (W ** 2).sum(1)
    return norms2 / (torch.einsum("ihf,ihg->ifg", W, W) ** 2).sum(-1)


def _fd_no_square(W: torch.Tensor) -> torch.Tensor:
    norms = W.norm(dim=1)
    return norms ** 2 / torch.einsum("ihf,ihg->ifg", W / norms[:, None, :], W).sum(-1)


def _fd_norm_not_squared(W: torch.Tensor) -> torch.Tensor:
    norms = W.norm(dim=1)
    return norms / (torch.einsum("ihf,ihg->ifg", W / norms[:, None, :], W) ** 2).sum(-1)


def _fd_rows(W: torch.Tensor) -> torch.Tensor:
    return ref.feature_dimensionality(W.transpose(1, 2).contiguous())


def _fd_without_self(W: torch.Tensor) -> torch.Tensor:
    norms = W.norm(dim=1)
    overlap = torch.einsum("ihf,ihg->ifg", W / norms[:, None, :], W) ** 2
    return norms ** 2 / (overlap.sum(-1) - overlap.diagonal(dim1=-2, dim2=-1))


def _fd_no_guard(W: torch.Tensor) -> torch.Tensor:
    norms = W.norm(dim=1)
    overlap = torch.einsum("ihf,ihg->ifg", W / norms[:, None, :], W) ** 2
    return norms ** 2 / overlap.sum(-1)


@EXERCISES.check(ref.feature_dimensionality)
def check_feature_dimensionality(feature_dimensionality: Callable[[torch.Tensor], torch.Tensor]
                                 ) -> None:
    """Check ``feature_dimensionality(W) -> D: [n_instances, n_features]`` with
    D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)², W_i = W[:, :, i], and D_i = 0 where W_i = 0."""
    mistakes = [
        Mistake("the denominator must use the *unit* vector Ŵ_i = W_i/‖W_i‖: "
                "Σ_j (Ŵ_i · W_j)², not Σ_j (W_i · W_j)²", _fd_no_normalise),
        Mistake("square each overlap before summing: Σ_j (Ŵ_i · W_j)², not Σ_j (Ŵ_i · W_j)",
                _fd_no_square),
        Mistake("the numerator is the squared norm ‖W_i‖², not ‖W_i‖", _fd_norm_not_squared),
        Mistake("you used the rows of W (one per hidden dimension); feature i's vector W_i is "
                "column i, W[:, :, i], so the result has shape [n_instances, n_features]",
                _fd_rows),
        Mistake("the sum over j includes j = i, so (Ŵ_i · W_i)² = ‖W_i‖² is in the denominator "
                "and 0 ≤ D_i ≤ 1", _fd_without_self),
        Mistake("a feature with W_i = 0 gives 0/0 = nan: return 0 for it (e.g. with torch.where)",
                _fd_no_guard),
    ]
    run_check("feature_dimensionality", feature_dimensionality, ref.feature_dimensionality,
              _dim_cases(), mistakes,
              hint="D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)², with W_i = W[:, :, i] and Ŵ_i = W_i/‖W_i‖")


# -- dimensions_per_feature --------------------------------------------------------------------


@EXERCISES.check(ref.dimensions_per_feature)
def check_dimensions_per_feature(dimensions_per_feature: Callable[[torch.Tensor], torch.Tensor]
                                 ) -> None:
    """Check ``dimensions_per_feature(W) -> [n_instances]`` = n_hidden / ‖W‖²_F per instance."""
    # n_instances, n_hidden and n_features differ from each other and from 2 (the chapter's m),
    # so that using the wrong one, or a fixed number, shows.
    cases = [
        Case("random W [3, 2, 5]", (_W(0, 3, 2, 5),)),
        Case("random W [4, 6, 5]", (_W(1, 4, 6, 5),)),
        Case("pentagon (2 dims, 5 unit features)", (_polygon(5, 2),)),
        Case("one instance", (_W(2, 1, 3, 11) * 0.3,)),
    ]
    mistakes = [
        Mistake("the numerator is m = n_hidden (W.shape[1]), not n_features",
                lambda W: W.shape[2] / (W ** 2).sum((1, 2))),
        Mistake("use the *squared* Frobenius norm ‖W‖²_F = Σ W², not ‖W‖_F",
                lambda W: W.shape[1] / (W ** 2).sum((1, 2)).sqrt()),
        Mistake("upside down: it is m / ‖W‖²_F (dimensions per feature), "
                "not ‖W‖²_F / m (features per dimension)",
                lambda W: (W ** 2).sum((1, 2)) / W.shape[1]),
        Mistake("the norm must be taken per instance: sum W² over the hidden and feature axes "
                "only, giving shape [n_instances]",
                lambda W: W.shape[1] / (W ** 2).sum()),
        Mistake("the numerator is m = n_hidden (W.shape[1]), not n_instances",
                lambda W: W.shape[0] / (W ** 2).sum((1, 2))),
        Mistake("you used a fixed m = 2 (the chapter's example): read the hidden size m from the shape "
                "of this W, [n_instances, n_hidden, n_features]",
                lambda W: 2 / (W ** 2).sum((1, 2))),
    ]
    run_check("dimensions_per_feature", dimensions_per_feature, ref.dimensions_per_feature, cases,
              mistakes, hint="dimensions per feature is m / ‖W‖²_F, one value per instance: m is the hidden "
                             "size and the squared Frobenius norm sums every squared weight of that instance")


# -- neuron_polysemanticity --------------------------------------------------------------------


def _poly_cases() -> list[Case]:
    mono = torch.eye(4, 6).expand(2, 4, 6).clone() * torch.tensor([1.0, 2.0])[:, None, None]
    mono[:, :, 5] = -0.7  # a negative weight never switches a ReLU neuron on
    dead = _W(3, 2, 3, 5)
    dead[0, 1] = -dead[0, 1].abs()  # a neuron with no positive weight
    return [
        Case("random W [2, 4, 6]", (_W(0, 2, 4, 6),)),
        Case("random W [3, 5, 12]", (_W(1, 3, 5, 12),)),
        Case("monosemantic neurons with inhibitory weights", (mono,)),
        Case("a neuron that never fires", (dead,)),
    ]


def _pr(r2: torch.Tensor) -> torch.Tensor:
    num, den = r2.sum(-1) ** 2, (r2 ** 2).sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(den))


@EXERCISES.check(ref.neuron_polysemanticity)
def check_neuron_polysemanticity(neuron_polysemanticity: Callable[[torch.Tensor], torch.Tensor]
                                 ) -> None:
    """Check ``neuron_polysemanticity(W) -> P: [n_instances, n_hidden]``: with r = ReLU(W[h, :]),
    P_h = (Σ_i r_i²)² / Σ_i r_i⁴, and P_h = 0 for a neuron with no positive weight."""
    mistakes = [
        Mistake("negative weights count too: a ReLU neuron is switched on only by features with a "
                "*positive* weight, so use r = ReLU(W) (or W.clamp(min=0)), not |W| or W",
                lambda W: _pr(W ** 2)),
        Mistake("you computed it per feature (over neurons); P is per neuron: for neuron h use "
                "its row W[:, h, :], giving shape [n_instances, n_hidden]",
                lambda W: _pr(F.relu(W).transpose(1, 2) ** 2)),
        Mistake("the participation ratio is of the *squared* weights: (Σ r²)² / Σ r⁴, "
                "not (Σ r)² / Σ r²", lambda W: _pr(F.relu(W))),
        Mistake("a neuron with no positive weight gives 0/0 = nan: return 0 for it",
                lambda W: (F.relu(W) ** 2).sum(-1) ** 2 / (F.relu(W) ** 4).sum(-1)),
    ]
    run_check("neuron_polysemanticity", neuron_polysemanticity, ref.neuron_polysemanticity,
              _poly_cases(), mistakes,
              hint="for each neuron, take the positive part r of its weights to the features; "
                   "P_h = (Σ r²)² / Σ r⁴ is the participation ratio of r², 0 for a neuron that never fires")


# -- antipodal_pair_losses ---------------------------------------------------------------------


@EXERCISES.check(ref.antipodal_pair_losses)
def check_antipodal_pair_losses(antipodal_pair_losses: Callable[..., tuple]) -> None:
    """Check ``antipodal_pair_losses(density) -> (loss_drop, loss_antipodal)``, the expected
    losses of two importance-1 features in one dimension: drop one (with the best bias for
    the dropped feature) or store them antipodally (zero bias)."""
    cases = [
        Case("a grid of densities", (torch.linspace(0.05, 1.0, 20, dtype=torch.float64),)),
        Case("the crossing point s = 4/7", (torch.tensor([4 / 7], dtype=torch.float64),)),
        Case("s = 0 and s = 1", (torch.tensor([0.0, 1.0], dtype=torch.float64),)),
    ]
    mistakes = [
        Mistake("the dropped feature should use its best constant output, its mean, as the "
                "bias: then its loss is its variance, not E[x²]",
                lambda s: (s / 3, s ** 2 / 3)),
        Mistake("when both features are present, *both* outputs are wrong by the smaller value m "
                "(the larger is read as the difference, the smaller as 0): error 2·E[m²] = 1/3",
                lambda s: (s / 3 - s ** 2 / 4, s ** 2 / 6)),
        Mistake("interference needs *both* features present, which has probability s² (not s)",
                lambda s: (s / 3 - s ** 2 / 4, s / 3)),
        Mistake("return (loss_drop, loss_antipodal) in that order",
                lambda s: (s ** 2 / 3, s / 3 - s ** 2 / 4)),
        Mistake("E[min(U₁, U₂)²] = 1/6 (the minimum of two uniforms has density 2(1 - m)); "
                "you used E[U²] = 1/3 for it",
                lambda s: (s / 3 - s ** 2 / 4, 2 * s ** 2 / 3)),
    ]
    run_check("antipodal_pair_losses", antipodal_pair_losses, ref.antipodal_pair_losses, cases,
              mistakes, hint="loss_drop: the error of the best constant guess for the dropped feature; "
                             "loss_antipodal: errors happen only when both features are present, and then "
                             "both outputs are off by the smaller of the two values")
