"""Choosing the next token from a language model's logits (greedy, temperature and top-k),
and ``generate``, which extends a sequence one chosen token at a time.

    logits [batch, d_vocab] -> / temperature -> keep the top_k largest -> softmax -> draw one token

Temperature 0 means greedy decoding (the argmax). A temperature below 1 sharpens the
distribution, above 1 flattens it. Top-k sets every logit below the k-th largest to -inf, so
only the k most likely tokens (more if several tie with the k-th) can be drawn. Draws use
``torch.multinomial`` with an optional ``torch.Generator``, so a seeded generator repeats them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from toykit.transformer_inputs import check_tokens
from toykit.validation import check_tensor

if TYPE_CHECKING:
    from toykit.transformer import HookedTransformer

__all__ = ["generate", "sample_next_token"]


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


@torch.no_grad()
def generate(
    model: HookedTransformer,
    tokens: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    do_sample: bool = True,
    seed: int | None = None,
    stop_token: int | None = None,
) -> torch.Tensor:
    """Extend tokens [batch, pos] (or [pos]) by up to max_new_tokens tokens chosen from the
    model's logits at the last position (``model.generate`` calls this).

    Greedy (argmax) when do_sample=False or temperature == 0; otherwise samples from
    softmax(logits / temperature), restricted to the top_k most likely tokens if given.
    seed: makes sampling repeatable (a private generator; the global RNG is untouched).
    stop_token: once every sequence has produced it, stop; sequences that finished early
        are padded with stop_token.
    When the sequence outgrows n_ctx, the model sees only the last n_ctx tokens.
    Returns [batch, pos + n_new] (input included), on the model's device.
    """
    tokens = check_tokens(model, tokens)
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= model.cfg.d_vocab):
        raise ValueError(f"top_k must be None or an int in [1, d_vocab={model.cfg.d_vocab}], got {top_k!r}")
    if stop_token is not None and not 0 <= stop_token < model.cfg.d_vocab:
        raise ValueError(f"stop_token must lie in [0, d_vocab={model.cfg.d_vocab}), got {stop_token!r}")
    greedy = not do_sample or temperature == 0
    gen = None
    if seed is not None and not greedy:
        gen = torch.Generator(device=model.device).manual_seed(seed)
    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=model.device)
    for _ in range(max_new_tokens):
        logits = model(tokens[:, -model.cfg.n_ctx:])[:, -1, :]  # [batch, d_vocab]
        next_tok = sample_next_token(logits, 0 if greedy else temperature, top_k, generator=gen)
        if stop_token is not None:
            next_tok = next_tok.masked_fill(finished, stop_token)
            finished |= next_tok == stop_token
        tokens = torch.cat([tokens, next_tok[:, None]], dim=1)
        if stop_token is not None and bool(finished.all()):
            break
    return tokens
