"""Standard sweeps: patch a block-level activation of each layer, or each attention head."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from toykit.cache import ActivationCache, get_act_name
from toykit.hooks import check_model
from toykit.patching.engine import patch_sweep
from toykit.patching.metrics import Metric
from toykit.patching.result import PatchingResult
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_tokens

#: Activations of a block, [b, p, d_model].
BLOCK_ACTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
#: Per-head activations: [b, p, n_heads, d] for q, k, v, z, result; [b, n_heads, q, k] for pattern.
HEAD_ACTS = ("z", "q", "k", "v", "pattern", "result")


def act_names(act_name: str | Sequence[str], allowed: tuple[str, ...], what: str) -> list[str]:
    """act_name (one short name or a list) as a list, each checked against allowed."""
    names = [act_name] if isinstance(act_name, str) else list(act_name)
    if not names:
        raise ValueError(f"act_name must name at least one of {allowed}")
    for a in names:
        if a not in allowed:
            raise ValueError(f"act_name for {what} must be one of {allowed}, got {a!r}")
    return names


def block_cells(model, acts: list[str], by_pos: bool, n_pos: int) -> tuple[list, tuple, dict]:
    """The cells of ``patch_blocks`` (one per act, layer (and position), in row-major order),
    with their dims and coords."""
    L = model.cfg.n_layers
    cells: list[list[tuple[str, tuple]]] = []
    for act in acts:
        for layer in range(L):
            name = get_act_name(act, layer)
            cells += [[(name, (p,))] for p in range(n_pos)] if by_pos else [[(name, ())]]
    dims = ("layer", "pos") if by_pos else ("layer",)
    coords: dict[str, list] = {"layer": list(range(L)), "pos": list(range(n_pos))}
    return cells, dims, coords


def head_cells(model, acts: list[str], by_pos: bool, n_pos: int) -> tuple[list, tuple, dict]:
    """The cells of ``patch_heads`` (one per act, layer, (position,) head), with their dims
    and coords."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    cells = []
    for act in acts:
        for layer in range(L):
            name = get_act_name(act, layer)
            pattern = act == "pattern"  # [b, h, q, k]: the head axis comes first
            for p in range(n_pos) if by_pos else [None]:
                for h in range(H):
                    index: tuple
                    if p is None:
                        index = (h,) if pattern else (slice(None), h)
                    else:
                        index = (h, p) if pattern else (p, h)
                    cells.append([(name, index)])
    dims = ("layer", "pos", "head") if by_pos else ("layer", "head")
    coords: dict[str, list] = {"layer": list(range(L)), "pos": list(range(n_pos)), "head": list(range(H))}
    return cells, dims, coords


def layout(acts: list[str], dims: tuple, coords: dict) -> tuple[tuple, dict]:
    """The result's dims and coords: a leading "act" dim when several acts are swept."""
    if len(acts) > 1:
        dims = ("act", *dims)
        coords = {"act": acts, **coords}
    return dims, {d: coords[d] for d in dims}


def patch_blocks(
    model,
    corrupted_tokens: torch.Tensor,
    clean: ActivationCache | torch.Tensor,
    metric: Metric,
    act_name: str | Sequence[str] = "resid_pre",
    by_pos: bool = True,
    max_batch: int | None = None,
) -> PatchingResult:
    """Patch a block-level activation of each layer (at each position).

    act_name: "resid_pre", "resid_mid", "resid_post", "attn_out" or "mlp_out", or a list of
        them (adds a leading "act" dim).
    by_pos: one patch per (layer, position): dims ("layer", "pos"); else the whole
        activation of each layer: dims ("layer",).
    """
    acts = act_names(act_name, BLOCK_ACTS, "patch_blocks")
    check_model(model, HookedTransformer)
    tokens = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    cells, dims, coords = block_cells(model, acts, by_pos, tokens.shape[1])
    dims, coords = layout(acts, dims, coords)
    desc = f"{'/'.join(acts)} by layer{' and position' if by_pos else ''}"
    return patch_sweep(model, tokens, clean, metric, cells, dims, coords, max_batch, desc)


def patch_heads(
    model,
    corrupted_tokens: torch.Tensor,
    clean: ActivationCache | torch.Tensor,
    metric: Metric,
    act_name: str | Sequence[str] = "z",
    by_pos: bool = False,
    max_batch: int | None = None,
) -> PatchingResult:
    """Patch one attention head's activation at a time.

    act_name: "z" (the head's output before W_O; TransformerLens's "head out"), "q", "k", "v",
        "pattern" or "result" (needs model.set_use_attn_result(True)), or a list of them
        (adds a leading "act" dim).
    by_pos: patch each (layer, position, head) separately (dims ("layer", "pos", "head"); for
        "pattern" the position is the query's), else each head at every position at once
        (dims ("layer", "head")).
    """
    acts = act_names(act_name, HEAD_ACTS, "patch_heads")
    check_model(model, HookedTransformer)
    tokens = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    cells, dims, coords = head_cells(model, acts, by_pos, tokens.shape[1])
    dims, coords = layout(acts, dims, coords)
    desc = f"head {'/'.join(acts)}{' by position' if by_pos else ''}"
    return patch_sweep(model, tokens, clean, metric, cells, dims, coords, max_batch, desc)
