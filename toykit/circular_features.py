"""Circular features: concepts such as the days of the week that a model lays out on a circle.

Project the representations onto a 2-D plane (e.g. their top two principal components with
``toykit.probes.fit_pca``) and read the order of the points round the circle.
"""

from __future__ import annotations

import torch

from toykit.validation import check_tensor

__all__ = ["angular_order", "is_cyclic_order"]


def angular_order(z: torch.Tensor) -> torch.Tensor:
    """z: [n, 2] points in a plane -> [n] indices sorting them by angle atan2(z1, z0),
    counter-clockwise from the negative x-axis (angle -π) round to π."""
    check_tensor("z", z, ["n", 2], dtype="float")
    return torch.argsort(torch.atan2(z[:, 1], z[:, 0]))


def is_cyclic_order(order: torch.Tensor | list[int]) -> bool:
    """True if order (a permutation of 0..n-1) is 0, 1, ..., n-1 read round a circle, in either
    direction and from any start."""
    order = [int(i) for i in order]
    n = len(order)
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of 0..{n - 1}, got {order}")
    steps = {(order[(i + 1) % n] - order[i]) % n for i in range(n)}
    return n <= 2 or steps in ({1}, {n - 1})
