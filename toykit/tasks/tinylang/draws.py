"""Fast uniform draws from a seeded ``random.Random``, shared by the families and the corpus.

``random.Random.randrange`` and ``choice`` cost about 0.5 µs a draw; scaling ``random()`` is
several times faster (uniform up to float rounding), which matters for large corpora. Each
function draws exactly one ``random()``, so a stream of draws, and every TinyLang example made
from it, is fixed by the generator's seed.

>>> import random
>>> rng = random.Random(0)
>>> below(rng, 10), between(rng, 1, 3), pick(rng, "abc")
(8, 3, 'b')
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["below", "between", "pick"]

_T = TypeVar("_T")


def below(rng: random.Random, n: int) -> int:
    """A uniform int in [0, n)."""
    return int(rng.random() * n)


def between(rng: random.Random, lo: int, hi: int) -> int:
    """A uniform int in [lo, hi], both ends included."""
    return lo + int(rng.random() * (hi - lo + 1))


def pick(rng: random.Random, seq: Sequence[_T]) -> _T:
    """A uniform element of ``seq``."""
    return seq[int(rng.random() * len(seq))]
