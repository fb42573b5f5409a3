"""Checking and preparing what every patching function takes: prompts, patches, heads, and
the activations of the source run (the run patches are copied from)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch

from toykit.activations import cache_activations, position_axes
from toykit.cache import ActivationCache
from toykit.transformer_inputs import check_tokens

#: Where a patch goes: a tuple applied after the batch axis (ints and slices), or None (all).
Index = tuple | None
#: A patch: (hook name, index).
Patch = tuple[str, Index]
#: An attention head: (layer, head).
Head = tuple[int, int]


def _check_index(index: object) -> tuple:
    if index is None:
        return ()
    if isinstance(index, int) and not isinstance(index, bool):
        return (index,)
    if not isinstance(index, tuple) or not all(
            (isinstance(i, int) and not isinstance(i, bool)) or isinstance(i, slice) for i in index):
        raise TypeError(f"a patch index must be None, an int or a tuple of ints and slices, got {index!r}")
    return index


def as_patches(patches: str | Patch | Sequence[str | Patch]) -> list[tuple[str, tuple]]:
    """Normalise "name" | (name, index) | a list of those to [(name, index tuple)]."""
    items: Sequence[Any] = [patches] if isinstance(patches, str) or (
        isinstance(patches, tuple) and len(patches) == 2 and isinstance(patches[0], str)) else patches
    out = []
    for p in items:
        if isinstance(p, str):
            out.append((p, ()))
        elif isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
            out.append((p[0], _check_index(p[1])))
        else:
            raise TypeError(f"a patch must be a hook name or (hook_name, index), got {p!r}")
    return out


def source_acts(model, tokens: torch.Tensor, source: ActivationCache | Mapping | torch.Tensor,
                 names: Sequence[str], source_name: str, tokens_name: str) -> dict[str, torch.Tensor]:
    """The activations at ``names`` from the source run, checked against the patched run's
    shape and moved to the model's device."""
    batch, n_pos = tokens.shape
    names = list(dict.fromkeys(names))
    if isinstance(source, torch.Tensor):
        source = check_tokens(model, source, source_name)
        if source.shape != tokens.shape:
            raise ValueError(
                f"{source_name} has shape {list(source.shape)} but {tokens_name} has shape {list(tokens.shape)}: "
                "patching copies activations position by position, so clean and corrupted prompts must have "
                "the same shape (pair prompts of the same length, e.g. of the same template)")
        if not names:
            return {}
        source = cache_activations(model, source, names)
    elif not isinstance(source, Mapping):
        raise TypeError(f"{source_name} must be an ActivationCache (or dict) of that run, or its tokens "
                        f"[batch, pos]; got {type(source).__name__}")
    cached = cast(Mapping[str, torch.Tensor], source)  # tokens were run into a cache above
    acts = {}
    for name in names:
        if name not in cached:
            raise KeyError(f"{source_name} has no activation {name!r}: cache it (names_filter) or pass the tokens")
        act = cached[name]
        wrong = act.ndim < 2 or act.shape[0] != batch or any(
            ax >= act.ndim or act.shape[ax] != n_pos for ax in position_axes(name))
        if wrong:
            raise ValueError(
                f"{source_name}[{name!r}] has shape {list(act.shape)}, which does not match {tokens_name} of "
                f"shape {list(tokens.shape)} (batch {batch}, {n_pos} positions): clean and corrupted prompts "
                "must have the same shape")
        acts[name] = act.to(model.device)
    return acts


def check_heads(model, heads: object, name: str) -> list[Head]:
    """A list of (layer, head) pairs of the model, checked; name is the argument's."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    if not isinstance(heads, (list, tuple)) or (len(heads) == 2 and all(isinstance(i, int) for i in heads)):
        raise TypeError(f"{name} must be a list of (layer, head) pairs, got {heads!r}")
    out = []
    for pair in heads:
        if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in pair)
                or not 0 <= pair[0] < L or not 0 <= pair[1] < H):
            raise ValueError(f"{name} must hold (layer, head) pairs with 0 <= layer < {L} and 0 <= head < {H}, "
                             f"got {pair!r}")
        out.append((int(pair[0]), int(pair[1])))
    return out
