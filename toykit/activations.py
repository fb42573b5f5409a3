"""Collecting activations: run a model over many prompts and keep what an analysis needs.

Every hook of a HookedTransformer has a batch axis first and one or two position axes
(``position_axes``). ``select_positions`` keeps one position per prompt (e.g. each prompt's
answer position). ``cache_activations`` caches a few hooks and stops the model after the last
block they need (``stop_layer_for``); ``collect_activations`` and ``collect_resid`` do that over
many prompts in chunks. Probes (``toykit.probes``), patching (``toykit.patching``) and the
logit lens (``toykit.logit_lens``) read activations this way.

Shapes: n = prompts, pos = positions (of one prompt), batch = prompts in one forward pass.

>>> position_axes("blocks.0.hook_resid_post")
(1,)
>>> position_axes("blocks.0.attn.hook_pattern")
(2, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch

from toykit.cache import ActivationCache
from toykit.hooks import check_model
from toykit.transformer import HookedTransformer
from toykit.validation import check_positive_int, check_tensor

__all__ = [
    "cache_activations",
    "collect_activations",
    "collect_resid",
    "position_axes",
    "select_positions",
    "stop_layer_for",
]


#: Hooks whose activation is an attention map [batch, n_heads, query_pos, key_pos].
_ATTENTION_MAPS = ("hook_pattern", "hook_attn_scores")


def position_axes(hook_name: str) -> tuple[int, ...]:
    """The axes of a hook's activation that index positions, counting the batch axis as 0.

    - attention maps ``attn.hook_pattern`` and ``attn.hook_attn_scores``: [batch, n_heads,
      query_pos, key_pos] -> (2, 3): the query position, then the key position;
    - every other hook of a HookedTransformer, e.g. ``hook_resid_pre`` [batch, pos, d_model],
      per-head ``attn.hook_q``/``hook_k``/``hook_v``/``hook_z`` [batch, pos, n_heads, d_head],
      ``attn.hook_result`` [batch, pos, n_heads, d_model], ``mlp.hook_post`` [batch, pos,
      d_mlp], ``ln1.hook_scale`` [batch, pos, 1] -> (1,).

    The first axis returned is the one that "the activation at position p" selects (for an
    attention map, the pattern of the query at p). The rule reads the name only (TransformerLens
    names its hooks the same way), so it needs no model.
    """
    if not isinstance(hook_name, str):
        raise TypeError(f"hook_name must be a hook name (str), got {type(hook_name).__name__}")
    return (2, 3) if hook_name.endswith(_ATTENTION_MAPS) else (1,)


def select_positions(x: torch.Tensor, pos: int | torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """Keep one position per prompt.

    x: [..., batch, pos, ...], with the pos axis at ``dim`` and the batch axis just before it.
    pos: None (keep every position), an int (the same position in every row; negative counts
        from the end) or an integer tensor [batch] (one position per row, e.g. a TinyLang
        ``Batch.answer_pos``).
    Returns x without its pos axis ([..., batch, ...]), or x itself for None.
    """
    check_tensor("x", x)
    if pos is None:
        return x
    dim = dim % x.ndim if x.ndim else 0
    if dim < 1:
        raise ValueError(f"select_positions: dim must leave room for a batch axis before it, got dim={dim}")
    n_pos = x.shape[dim]
    if isinstance(pos, int) and not isinstance(pos, bool):
        if not -n_pos <= pos < n_pos:
            raise ValueError(f"pos={pos} is out of range for {n_pos} positions")
        return x.select(dim, pos)
    check_tensor("pos", pos, [x.shape[dim - 1]], dtype="int")
    pos = cast(torch.Tensor, pos)  # check_tensor raised for anything else
    if pos.numel() and (pos.min() < 0 or pos.max() >= n_pos):
        raise ValueError(f"pos must lie in [0, {n_pos}), got values from {pos.min().item()} to {pos.max().item()}")
    moved = x.movedim((dim - 1, dim), (0, 1))  # [batch, pos, *rest]
    rows = torch.arange(moved.shape[0], device=x.device)
    return moved[rows, pos.to(x.device)].movedim(0, dim - 1)


def _at_positions(act: torch.Tensor, name: str, pos: int | torch.Tensor | None) -> torch.Tensor:
    """select_positions on a cached activation; for attention maps, by query position."""
    if pos is None:
        return act
    # Bring the (first) position axis next to batch: [b, h, q, k] -> [b, q, h, k].
    return select_positions(act.movedim(position_axes(name)[0], 1), pos, dim=1)


def _check_batch_size(batch_size: int) -> None:
    check_positive_int("batch_size", batch_size)


def _check_row_positions(pos: int | torch.Tensor | None, n: int) -> None:
    if isinstance(pos, torch.Tensor):
        check_tensor("pos", pos, [n], dtype="int")
    elif pos is not None and (not isinstance(pos, int) or isinstance(pos, bool)):
        raise TypeError(f"pos must be None, an int or an int tensor [batch], got {type(pos).__name__}")


@torch.no_grad()
def collect_activations(
    model,
    tokens: torch.Tensor,
    hook_names: Sequence[str],
    pos: int | torch.Tensor | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = "cpu",
) -> dict[str, torch.Tensor]:
    """Run the model over many prompts in chunks and keep some activations.

    tokens: [n, pos] (right-padding is harmless: the model is causal).
    hook_names: full hook names, e.g. ["blocks.1.hook_resid_post"].
    pos: None (keep every position), an int, or an int tensor [n] (one position per prompt;
        then tokens after it are never run, see ``_chunks``).
    device: where the results go (default the CPU, so big collections don't fill a GPU).
    Returns {name: [n, ...]}, the activation without its pos axis when pos is given (for
    attention patterns [n, n_heads, k_pos]: the pattern of the query at pos).
    """
    check_model(model, HookedTransformer)
    check_tensor("tokens", tokens, ["n", "pos"], dtype="int")
    _check_batch_size(batch_size)
    _check_row_positions(pos, tokens.shape[0])
    if isinstance(hook_names, str):
        hook_names = [hook_names]
    check_model(model, HookedTransformer, hook_names)
    rows: list[torch.Tensor] = []
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in hook_names}
    # Attention maps keep a key axis as long as the prompts: chunks must not be cut short.
    trim = all(len(position_axes(name)) == 1 for name in hook_names)
    for chunk_rows, chunk, chunk_pos in _chunks(tokens, pos, batch_size, trim):
        cache = cache_activations(model, chunk, hook_names)
        rows.append(chunk_rows)
        for name in hook_names:
            act = _at_positions(cache[name], name, chunk_pos)
            parts[name].append(act if device is None else act.to(device))
    if pos is None or isinstance(pos, int):
        return {name: torch.cat(p) for name, p in parts.items()}
    inverse = torch.cat(rows).argsort()
    return {name: torch.cat(p)[inverse.to(p[0].device)] for name, p in parts.items()}


def _chunks(tokens: torch.Tensor, pos: int | torch.Tensor | None, batch_size: int, trim: bool = True):
    """Yield (rows [k], tokens [k, p'], pos) chunks of at most batch_size prompts.

    With one position per prompt (and trim), prompts are taken in order of that position and
    each chunk is cut after its last needed position: the model is causal, so later tokens
    (padding, or the rest of the text) change nothing before them, and skipping them saves
    their compute.
    """
    n = tokens.shape[0]
    if not isinstance(pos, torch.Tensor) or not trim:
        for start in range(0, n, batch_size):
            chunk_pos = pos[start:start + batch_size] if isinstance(pos, torch.Tensor) else pos
            yield torch.arange(start, min(start + batch_size, n)), tokens[start:start + batch_size], chunk_pos
        return
    order = pos.cpu().argsort(stable=True)
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        chunk_pos = pos[rows.to(pos.device)]
        yield rows, tokens[rows.to(tokens.device), :int(chunk_pos.max()) + 1], chunk_pos


def stop_layer_for(model, hook_names: Sequence[str]) -> int | None:
    """The smallest ``stop_at_layer`` that still fires every one of hook_names (None: the
    whole model is needed), so that caching early activations skips the later blocks."""
    last = -1
    for name in hook_names:
        if name.startswith("blocks."):
            last = max(last, int(name.split(".")[1]))
        elif name not in ("hook_embed", "hook_pos_embed"):
            return None  # ln_final and beyond
    return last + 1 if last + 1 < model.cfg.n_layers else None


@torch.no_grad()
def cache_activations(model, tokens: torch.Tensor, hook_names: Sequence[str]) -> ActivationCache:
    """``model.run_with_cache(tokens)`` keeping only hook_names, and stopped after the last block
    that one of them needs (``stop_layer_for``). tokens: [batch, pos]. No gradients."""
    check_tensor("tokens", tokens, ["batch", "pos"], dtype="int")
    names = [hook_names] if isinstance(hook_names, str) else list(hook_names)
    check_model(model, HookedTransformer, names)
    stop = stop_layer_for(model, names)
    kwargs = {"return_type": None} if stop is None else {"stop_at_layer": stop}
    return model.run_with_cache(tokens, names_filter=names, **kwargs)[1]


@torch.no_grad()
def collect_resid(
    model,
    tokens: torch.Tensor,
    pos: int | torch.Tensor | None,
    batch_size: int = 256,
    incl_mid: bool = False,
    device: str | torch.device | None = "cpu",
) -> tuple[torch.Tensor, list[str]]:
    """The residual stream before every block and after the last, at one position per prompt.

    tokens: [n, pos]; pos: an int or an int tensor [n] (None keeps every position).
    incl_mid: also the residual stream between attention and MLP of each block.
    Returns (acts [n_layers + 1 (+ n_layers), n, d_model], labels): the same components and
    labels as ``ActivationCache.accumulated_resid`` ("0_pre", ..., "final_post").
    """
    check_model(model, HookedTransformer)
    check_tensor("tokens", tokens, ["n", "pos"], dtype="int")
    _check_batch_size(batch_size)
    _check_row_positions(pos, tokens.shape[0])
    rows, parts, labels = [], [], []
    for chunk_rows, chunk, chunk_pos in _chunks(tokens, pos, batch_size):
        _, cache = model.run_with_cache(chunk, names_filter=lambda n: "hook_resid_" in n, return_type=None)
        stack, labels = cache.accumulated_resid(incl_mid=incl_mid, return_labels=True)
        stack = select_positions(stack, chunk_pos, dim=2)
        rows.append(chunk_rows)
        parts.append(stack if device is None else stack.to(device))
    acts = torch.cat(parts, dim=1)
    if isinstance(pos, torch.Tensor):
        acts = acts[:, torch.cat(rows).argsort().to(acts.device)]
    return acts, labels
