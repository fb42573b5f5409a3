"""Choosing the next token from a language model's logits: greedy, temperature and top-k.

    logits [batch, d_vocab] -> / temperature -> keep the top_k largest -> softmax -> draw one token

Temperature 0 means greedy decoding (the argmax). A temperature below 1 sharpens the
distribution, above 1 flattens it. Top-k sets every logit below the k-th largest to -inf, so
only the k most likely tokens (more if several tie with the k-th) can be drawn. Draws use
``torch.multinomial`` with an optional ``torch.Generator``, so a seeded generator repeats them.
"""

from __future__ import annotations

import torch

from toykit.validation import check_tensor

__all__ = ["sample_next_token"]


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one next token per row of ``logits``.

    logits: [batch, d_vocab] floating-point scores (the model's logits at the last position).
    temperature: >= 0. 0 gives the argmax (greedy, no randomness); otherwise the tokens are
        drawn from softmax(logits / temperature).
    top_k: None (every token may be drawn) or an int in [1, d_vocab]: only tokens whose logit
        is at least the k-th largest of their row may be drawn. Ignored when greedy.
    generator: a torch.Generator on logits' device, for repeatable draws (None: the global RNG).
    Returns token ids [batch] (int64), on logits' device.
    """
    dims = check_tensor("logits", logits, ["batch", "d_vocab"], dtype="float")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or not 1 <= top_k <= dims["d_vocab"]):
        raise ValueError(f"top_k must be None or an int in [1, d_vocab={dims['d_vocab']}], got {top_k!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be None or a torch.Generator, got {type(generator).__name__}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # [batch, 1]: the k-th largest per row
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]
