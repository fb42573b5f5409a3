"""Ranks with ties, and Spearman's rank correlation built on them.

Two places compare rankings: the sanity checks of attribution maps (Adebayo et al. 2018, §3)
and the comparison of circuit-discovery methods' edge rankings (Chapter 10). Both give tied
values their average rank, as ``scipy.stats.rankdata`` and ``spearmanr`` do.
"""

from __future__ import annotations

import torch

from toykit.validation import check_tensor

__all__ = ["average_ranks", "spearman"]


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a 1-D tensor [n] as float64 [n], tied values sharing their mean rank.

    >>> average_ranks(torch.tensor([10.0, 30.0, 10.0])).tolist()
    [1.5, 3.0, 1.5]
    """
    check_tensor("x", x, ["n"])
    order = x.argsort()
    sorted_x = x[order]
    _, inverse, counts = torch.unique_consecutive(sorted_x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)  # last rank of each tie group
    average = ends - (counts - 1) / 2.0
    ranks = torch.empty_like(average[inverse])
    ranks[order] = average[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors a, b [n]: the Pearson correlation of
    their average ranks. NaN when either is constant (it has no ranking).

    >>> round(spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 15.0])), 6)
    0.5
    """
    dims = check_tensor("a", a, ["n"])
    check_tensor("b", b, ["n"], dims=dims)
    if dims["n"] < 2:
        raise ValueError(f"a and b need at least 2 entries to be ranked, got {dims['n']}")
    ra, rb = average_ranks(a.detach().double()), average_ranks(b.detach().double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return ((ra * rb).sum() / (ra.norm() * rb.norm())).item()
