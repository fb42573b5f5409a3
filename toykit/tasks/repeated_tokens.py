"""Random token sequences with repeats: the data on which induction heads form.

A sequence of uniformly random tokens is unpredictable, so a language model's loss on it
stays at log(d_vocab). Once part of it repeats, though, every repeated token can be predicted
by *in-context copying*: find where the current token occurred before and predict the token
that followed it there. That is exactly what an induction head does, so these sequences are
the standard testbed for induction heads (Olsson et al., 2022; Elhage et al., 2021).

- ``generate_repeated_tokens``: ``[BOS] t_0 .. t_{S-1} t_0 .. t_{S-1}``, a random block
  repeated once (the layout of TransformerLens's and ARENA's induction experiments).
- ``generate_periodic_tokens``: each row repeats its own random block of random length
  (its period) until the row is full. Because the period differs between rows, no fixed
  positional offset predicts the repeats: the model has to look at token identities, which
  is what makes induction heads (rather than a positional shortcut) form reliably.

Conventions: ``bos`` is a token id in [0, d_vocab) placed at position 0 and never drawn as a
random token; ``bos=None`` means no BOS. All randomness comes from a ``torch.Generator``
(or an int ``seed``); tokens are drawn on the CPU, so a seed gives the same tokens on every
device, and are then moved to ``device``.
"""

from __future__ import annotations

import torch

from toykit.runtime import make_generator
from toykit.validation import check_positive_int

__all__ = ["generate_periodic_tokens", "generate_random_tokens", "generate_repeated_tokens", "repeated_half_slices"]


def _check_bos(bos: int | None, d_vocab: int) -> None:
    if bos is None:
        return
    if not isinstance(bos, int) or isinstance(bos, bool) or not 0 <= bos < d_vocab:
        raise ValueError(f"bos must be None or an int in [0, d_vocab={d_vocab}), got {bos!r}")
    if d_vocab < 2:
        raise ValueError(f"with a bos token, d_vocab must be at least 2, got {d_vocab}")


def generate_random_tokens(
    shape: tuple[int, ...],
    d_vocab: int,
    bos: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniform random tokens in [0, d_vocab), never equal to ``bos``: int64 [*shape], on the CPU."""
    check_positive_int("d_vocab", d_vocab)
    _check_bos(bos, d_vocab)
    if bos is None:
        return torch.randint(0, d_vocab, shape, generator=generator)
    # Draw from d_vocab - 1 values and skip over bos, so every other token stays equally likely.
    tokens = torch.randint(0, d_vocab - 1, shape, generator=generator)
    return tokens + (tokens >= bos).long()


def _with_bos(tokens: torch.Tensor, bos: int | None) -> torch.Tensor:
    if bos is None:
        return tokens
    return torch.cat([torch.full((tokens.shape[0], 1), bos, dtype=tokens.dtype), tokens], dim=1)


def generate_repeated_tokens(
    batch: int,
    seq_len: int,
    d_vocab: int,
    bos: int | None = 0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    device: str | torch.device | None = "cpu",
) -> torch.Tensor:
    """A random block of ``seq_len`` tokens, then the same block again.

    Returns int64 tokens: [batch, 1 + 2 * seq_len] with a BOS (``bos`` at position 0), or
    [batch, 2 * seq_len] when ``bos=None``. Row b is ``[bos] r_b r_b`` with r_b uniform random
    tokens (never ``bos``). Tokens inside one block may repeat by chance (about
    seq_len² / (2 d_vocab) collisions per block).

    generator / seed: the source of randomness (a CPU generator, or an int seed; not both;
        neither uses torch's global RNG).
    device: where the returned tensor lives (tokens are always drawn on the CPU).
    """
    check_positive_int("batch", batch)
    check_positive_int("seq_len", seq_len)
    gen = make_generator(seed, generator)
    block = generate_random_tokens((batch, seq_len), d_vocab, bos, gen)
    return _with_bos(torch.cat([block, block], dim=1), bos).to(device)


def generate_periodic_tokens(
    batch: int,
    n_tokens: int,
    d_vocab: int,
    min_period: int,
    max_period: int,
    bos: int | None = 0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    device: str | torch.device | None = "cpu",
) -> torch.Tensor:
    """Rows that repeat a random block of random length (the row's *period*) until full.

    Returns int64 tokens [batch, n_tokens] (position 0 is ``bos`` unless ``bos=None``; the
    other n_tokens - 1 positions are periodic). Each row draws its period p uniformly from
    [min_period, max_period] and a block of p random tokens (never ``bos``); position i after
    the BOS holds block[i % p]. Everything after the first p tokens is predictable by copying,
    but only through token identities, since p changes from row to row.
    """
    check_positive_int("batch", batch)
    check_positive_int("n_tokens", n_tokens)
    check_positive_int("min_period", min_period)
    check_positive_int("max_period", max_period)
    if min_period > max_period:
        raise ValueError(f"min_period must be <= max_period, got {min_period} > {max_period}")
    body = n_tokens - (bos is not None)
    if body < 1:
        raise ValueError(f"n_tokens={n_tokens} leaves no room after the bos token")
    gen = make_generator(seed, generator)
    periods = torch.randint(min_period, max_period + 1, (batch, 1), generator=gen)
    blocks = generate_random_tokens((batch, max_period), d_vocab, bos, gen)
    index = torch.arange(body)[None, :] % periods  # [batch, body]
    return _with_bos(blocks.gather(1, index), bos).to(device)


def repeated_half_slices(n_tokens: int, seq_len: int) -> tuple[slice, slice]:
    """Which entries of a per-token loss [batch, n_tokens - 1] predict the first and the
    repeated block of a ``generate_repeated_tokens`` row.

    Position i predicts token i + 1. The first block's predictions are the ones whose targets
    are its tokens 1 .. S-1 (its token 0 is unpredictable either way); the repeated block's
    predictions are those whose targets are all S tokens of the second copy.
    Returns (first, repeated) slices into the loss's last axis.
    """
    check_positive_int("seq_len", seq_len)
    offset = n_tokens - 2 * seq_len  # 1 with a BOS, 0 without
    if offset not in (0, 1):
        raise ValueError(f"n_tokens must be 2 * seq_len or 1 + 2 * seq_len, got n_tokens={n_tokens}, seq_len={seq_len}")
    first = slice(offset, offset + seq_len - 1)  # targets offset+1 .. offset+S-1
    repeated = slice(offset + seq_len - 1, n_tokens - 1)  # targets offset+S .. n_tokens-1
    return first, repeated
