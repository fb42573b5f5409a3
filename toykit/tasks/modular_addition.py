"""Modular addition: the task of Nanda et al. (2023), "Progress measures for grokking via
mechanistic interpretability".

Each input is three tokens ``a, b, =`` with a, b in [0, p) and "=" the token p; the answer
is (a + b) mod p, read from the last position. There are p² inputs in all. A seeded random
permutation splits them into a train set (the first ``frac_train`` of it) and a test set
(the rest), so the model sees only part of the addition table and must generalise to the
rest.

    split = make_split(p=113, frac_train=0.3, seed=0)
    split.train_tokens  # [n_train, 3]: rows (a, b, 113)
    split.train_labels  # [n_train]:   (a + b) % 113
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from toykit.runtime import make_generator, resolve_device
from toykit.validation import check_non_negative_int, check_positive_int

__all__ = ["ModularAdditionSplit", "all_pairs", "make_split"]


def _check_p(p: object) -> int:
    p = check_positive_int("p", p)
    if p < 2:
        raise ValueError(f"p must be at least 2, got {p}")
    return p


def all_pairs(p: int = 113, device: str | torch.device | None = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Every input of the task, in row-major order of (a, b).

    Returns tokens [p*p, 3] (rows ``a, b, p``; row index a * p + b) and labels [p*p]
    ((a + b) % p), both int64 on ``device``.
    """
    _check_p(p)
    device = resolve_device(device)
    a = torch.arange(p, device=device).repeat_interleave(p)
    b = torch.arange(p, device=device).repeat(p)
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    return tokens, (a + b) % p


@dataclass(frozen=True)
class ModularAdditionSplit:
    """A train/test split of the p² inputs (see ``make_split``).

    p, frac_train, seed: how it was made.
    tokens [p*p, 3], labels [p*p]: every input, row-major in (a, b) (as ``all_pairs``).
    train_index [n_train], test_index [n_test]: rows of ``tokens`` in each set (int64).
    """

    p: int
    frac_train: float
    seed: int
    tokens: torch.Tensor
    labels: torch.Tensor
    train_index: torch.Tensor
    test_index: torch.Tensor

    @property
    def train_tokens(self) -> torch.Tensor:
        """[n_train, 3]"""
        return self.tokens[self.train_index]

    @property
    def train_labels(self) -> torch.Tensor:
        """[n_train]"""
        return self.labels[self.train_index]

    @property
    def test_tokens(self) -> torch.Tensor:
        """[n_test, 3]"""
        return self.tokens[self.test_index]

    @property
    def test_labels(self) -> torch.Tensor:
        """[n_test]"""
        return self.labels[self.test_index]

    @property
    def train_mask(self) -> torch.Tensor:
        """[p, p] bool: True where (a, b) is in the train set."""
        mask = torch.zeros(self.p * self.p, dtype=torch.bool, device=self.tokens.device)
        mask[self.train_index] = True
        return mask.view(self.p, self.p)

    def to(self, device: str | torch.device | None) -> ModularAdditionSplit:
        """The same split with every tensor on ``device``."""
        device = resolve_device(device)
        return ModularAdditionSplit(self.p, self.frac_train, self.seed, self.tokens.to(device),
                                    self.labels.to(device), self.train_index.to(device),
                                    self.test_index.to(device))


def make_split(p: int = 113, frac_train: float = 0.3, seed: int = 0,
               device: str | torch.device | None = "cpu") -> ModularAdditionSplit:
    """Split the p² inputs at random: round(frac_train * p²) for training, the rest for test.

    p: the modulus (also the "=" token; the vocabulary is p + 1 tokens).
    frac_train: in (0, 1).
    seed: the permutation is drawn on the CPU from this seed, so it is the same on every device.
    """
    _check_p(p)
    if isinstance(frac_train, bool) or not isinstance(frac_train, (int, float)) or not 0 < frac_train < 1:
        raise ValueError(f"frac_train must be a number in (0, 1), got {frac_train!r}")
    generator = make_generator(check_non_negative_int("seed", seed))
    n = p * p
    n_train = round(frac_train * n)
    if not 0 < n_train < n:
        raise ValueError(f"frac_train={frac_train} leaves an empty train or test set for p={p} ({n} inputs)")
    order = torch.randperm(n, generator=generator)
    # Sorted indices keep each set in (a, b) order, which makes the rows easy to read.
    train, test = order[:n_train].sort().values, order[n_train:].sort().values
    tokens, labels = all_pairs(p, "cpu")
    return ModularAdditionSplit(p, float(frac_train), seed, tokens, labels, train, test).to(device)
