"""Sharkey, Braun & Millidge's (2022) synthetic benchmark: data made of known sparse features.

There are ``n_true`` ground-truth features, unit vectors in ℝ^d (random directions, so when
n_true > d they overlap, as features in superposition do). An input is a sparse, non-negative
combination of them,

    x = Σ_i c_i g_i,      c_i = 0 with probability 1 − p_i, else uniform on [0, 1],

and the feature probabilities p_i decay geometrically with the index i (feature 0 is the most
common), scaled so that on average ``avg_active`` features are present. With
``correlation > 0`` features switch on together in a structured way: whether feature i is on is
decided by thresholding a Gaussian z_i whose correlations come from a random low-rank matrix
(a Gaussian copula), and the thresholds keep every feature's own probability exactly p_i.

An SAE trained on such data can be scored against the truth with toykit.sae.metrics.mmcs.

    bench = SyntheticFeatures(d=32, n_true=64, seed=0)
    x, coefficients = bench.sample(10_000, seed=1)      # [10000, 32], [10000, 64]
    bench.features                                      # [64, 32], unit rows
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from toykit.runtime import make_generator
from toykit.validation import check_non_negative_int, check_positive_int

__all__ = ["SyntheticFeatures"]


class SyntheticFeatures:
    """A seeded synthetic benchmark with a known dictionary.

    d: dimension of the data; n_true: number of ground-truth features.
    avg_active: expected number of features present per input (probabilities are capped at 1).
    probability_decay: p_{i+1} / p_i, in (0, 1]; 1 gives every feature the same probability.
    correlation: in [0, 1); 0 makes features independent. Larger values make groups of
        features co-occur more strongly.
    n_factors: rank of the random correlation structure (used when correlation > 0).
    seed: seeds the dictionary and the correlation structure.

    Attributes: features [n_true, d] (unit rows), probabilities [n_true].
    """

    def __init__(self, d: int, n_true: int, avg_active: float = 3.0, probability_decay: float = 0.99,
                 correlation: float = 0.0, n_factors: int = 4, seed: int = 0) -> None:
        check_positive_int("d", d)
        check_positive_int("n_true", n_true)
        check_positive_int("n_factors", n_factors)
        for name, value, ok in [("avg_active", avg_active, lambda v: 0 < v <= n_true),
                                ("probability_decay", probability_decay, lambda v: 0 < v <= 1),
                                ("correlation", correlation, lambda v: 0 <= v < 1)]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise ValueError(f"{name} has an invalid value {value!r} (see the SyntheticFeatures docstring)")
        generator = make_generator(check_non_negative_int("seed", seed))
        self.d, self.n_true, self.correlation, self.seed = d, n_true, float(correlation), seed
        self.features = F.normalize(torch.randn(n_true, d, generator=generator), dim=1)
        self.probabilities = _decaying_probabilities(n_true, avg_active, probability_decay)
        # Row i of the loadings says which hidden factors feature i follows.
        self._loadings = F.normalize(torch.randn(n_true, n_factors, generator=generator), dim=1)
        normal = torch.distributions.Normal(0.0, 1.0)
        # z_i > cutoff_i with probability p_i (cutoff +inf never fires, for p_i = 0).
        self._cutoffs = normal.icdf((1 - self.probabilities).clamp(0.0, 1.0))

    def sample(self, n: int, seed: int | None = None, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """n inputs: (x [n, d], coefficients [n, n_true]), with x = coefficients @ features.

        Pass ``seed`` or a CPU ``generator`` for reproducible draws (one of them, not both).
        """
        check_positive_int("n", n)
        generator = make_generator(seed, generator)
        noise = torch.randn(n, self.n_true, generator=generator)
        if self.correlation > 0:
            shared = torch.randn(n, self._loadings.shape[1], generator=generator) @ self._loadings.T
            # Both parts have unit variance, so z_i is standard normal and P(z_i > cutoff_i) = p_i.
            noise = math.sqrt(1 - self.correlation) * noise + math.sqrt(self.correlation) * shared
        present = noise > self._cutoffs
        values = torch.rand(n, self.n_true, generator=generator)
        coefficients = torch.where(present, values, 0.0)
        return coefficients @ self.features, coefficients

    def batch_fn(self, batch_size: int):
        """A ``batch_fn(step, generator) -> x [batch_size, d]`` of fresh inputs, for train_sae."""
        check_positive_int("batch_size", batch_size)

        def batch(step: int, generator: torch.Generator) -> torch.Tensor:
            return self.sample(batch_size, generator=generator)[0]

        return batch

    def __repr__(self) -> str:
        return (f"SyntheticFeatures(d={self.d}, n_true={self.n_true}, mean active="
                f"{self.probabilities.sum().item():.2f}, correlation={self.correlation}, seed={self.seed})")


def _decaying_probabilities(n_true: int, avg_active: float, decay: float) -> torch.Tensor:
    """[n_true] probabilities ∝ decay^i, capped at 1, summing to avg_active."""
    shape = torch.tensor(decay, dtype=torch.float64) ** torch.arange(n_true, dtype=torch.float64)
    # Scale so the capped probabilities sum to avg_active: bisect on the scale factor.
    lo, hi = 0.0, float(avg_active / shape.min())
    for _ in range(100):
        mid = (lo + hi) / 2
        if (mid * shape).clamp(max=1).sum() < avg_active:
            lo = mid
        else:
            hi = mid
    return (hi * shape).clamp(max=1).float()
