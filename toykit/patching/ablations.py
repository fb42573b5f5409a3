"""Ablations: knock activations out (zero, mean or resample) and run the model.

``toykit.ablation`` holds the per-head ablations of chapter 04 and ``mean_activation``, which
the mean ablation here uses too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch

from toykit.ablation import MEAN_OVER, mean_activation
from toykit.activations import cache_activations, position_axes
from toykit.cache import ActivationCache
from toykit.hooks import check_model
from toykit.patching.inputs import Head, Patch, as_patches, check_heads
from toykit.runtime import make_generator
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_tokens


def all_heads(model, exclude: Sequence[Head] = ()) -> list[Head]:
    """Every (layer, head) pair of the model, in order, except those in exclude."""
    check_model(model, HookedTransformer)
    skip = set(check_heads(model, list(exclude), "exclude")) if exclude else set()
    return [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads) if (l, h) not in skip]


def _ablation_targets(model, targets: object) -> dict[str, list[tuple]]:
    """hook name -> indices. A target is a hook name, (hook_name, index), or a (layer, head)
    pair (that head's hook_z at every position)."""
    if isinstance(targets, str) or (isinstance(targets, tuple) and len(targets) == 2
                                    and isinstance(targets[0], (str, int))):
        targets = [targets]
    if not isinstance(targets, (list, tuple)):
        raise TypeError(f"targets must be a list of hook names, (hook_name, index) or (layer, head) pairs, "
                        f"got {type(targets).__name__}")
    out: dict[str, list[tuple]] = {}
    for t in targets:
        if isinstance(t, (tuple, list)) and len(t) == 2 and all(isinstance(i, int) for i in t):
            (l, h), = check_heads(model, [tuple(t)], "targets")
            out.setdefault(f"blocks.{l}.attn.hook_z", []).append((slice(None), h))
        else:
            for name, index in as_patches(t if isinstance(t, str) else tuple(t)):
                out.setdefault(name, []).append(index)
    check_model(model, HookedTransformer, list(out))
    return out


def ablation_hooks(
    model,
    targets: Sequence[str | Patch | Head],
    method: str = "mean",
    reference: ActivationCache | torch.Tensor | None = None,
    *,
    seed: int = 0,
    mean_over: str = "batch",
) -> list[tuple[str, Callable]]:
    """Forward hooks that knock out activations; pass them to ``model.hooks(fwd_hooks=...)``.

    targets: hook names (the whole activation), (hook_name, index) patches, or (layer, head)
        pairs (that head's output hook_z, at every position).
    method:
      - "zero": set to 0. Simple, but 0 may be far off-distribution for the model.
      - "mean": set to the reference run's mean (``toykit.ablation.mean_activation``): over the
        reference prompts, one mean per position (mean_over="batch", the default: prompts of one
        template, aligned position by position), or over prompts and positions
        (mean_over="batch_and_pos"). Removes what varies between prompts, keeps the rest.
      - "resample": set each prompt's activation to that of a random reference prompt (drawn
        with ``seed``, the same draw for every target of a run), as in causal scrubbing.
    reference: the reference run (ActivationCache or tokens [n_ref, pos]); required for mean
        and resample. Per-position means and resampling need references with as many
        positions as the ablated prompts.
    """
    check_model(model, HookedTransformer)
    if method not in ("zero", "mean", "resample"):
        raise ValueError(f"method must be 'zero', 'mean' or 'resample', got {method!r}")
    todo = _ablation_targets(model, targets)
    ref: dict[str, torch.Tensor] = {}
    if method != "zero":
        if reference is None:
            raise ValueError(f"method={method!r} needs reference prompts (tokens or their ActivationCache)")
        if isinstance(reference, torch.Tensor):
            reference = check_tokens(model, reference, "reference")
            reference = cache_activations(model, reference, list(todo))
        elif not isinstance(reference, Mapping):
            raise TypeError(f"reference must be tokens or an ActivationCache, got {type(reference).__name__}")
        cached = cast(Mapping[str, torch.Tensor], reference)  # tokens were run into a cache above
        for name in todo:
            if name not in cached:
                raise KeyError(f"reference has no activation {name!r}: cache it or pass the tokens")
            ref[name] = cached[name].to(model.device)
    if method == "mean":
        if mean_over not in MEAN_OVER:
            raise ValueError(f"mean_over must be one of {MEAN_OVER}, got {mean_over!r}")
        for name, act in ref.items():
            if mean_over == "batch_and_pos" and position_axes(name) != (1,):
                raise ValueError(f"mean_over='batch_and_pos' needs position on axis 1; {name!r} has query and key "
                                 "positions on axes 2 and 3: use mean_over='batch'")
            ref[name] = mean_activation(act, mean_over=mean_over)
    draws: dict[int, torch.Tensor] = {}
    gen = make_generator(seed)

    def ablate(act: torch.Tensor, hook) -> torch.Tensor:
        act = act.clone()
        if method == "zero":
            value = torch.zeros_like(act)
        elif method == "mean":
            value = ref[hook.name]
            if mean_over == "batch" and value.shape[1:] != act.shape[1:]:
                raise ValueError(f"mean ablation at {hook.name!r}: the reference activation has shape "
                                 f"{list(value.shape[1:])} per prompt but the run has {list(act.shape[1:])}; use "
                                 "reference prompts with as many positions, or mean_over='batch_and_pos'")
            value = value.expand_as(act)
        else:
            source = ref[hook.name]
            if source.shape[1:] != act.shape[1:]:
                raise ValueError(f"resample ablation at {hook.name!r}: the reference activation has shape "
                                 f"{list(source.shape[1:])} per prompt but the run has {list(act.shape[1:])}; "
                                 "use reference prompts with as many positions")
            batch = act.shape[0]
            if batch not in draws:
                draws[batch] = torch.randint(source.shape[0], (batch,), generator=gen).to(act.device)
            value = source[draws[batch]]
        for index in todo[hook.name]:
            sel = (slice(None), *index)
            act[sel] = value[sel]
        return act

    return [(name, ablate) for name in todo]


def run_with_ablation(
    model,
    tokens: torch.Tensor,
    targets: Sequence[str | Patch | Head],
    method: str = "mean",
    reference: ActivationCache | torch.Tensor | None = None,
    *,
    seed: int = 0,
    mean_over: str = "batch",
    **forward_kwargs: Any,
) -> Any:
    """Run the model on tokens [batch, pos] with the targets ablated (see ``ablation_hooks``);
    returns what the forward pass returns (logits by default). reference None = the same
    tokens (mean over this batch; resample within it)."""
    check_model(model, HookedTransformer)
    tokens = check_tokens(model, tokens, "tokens")
    if reference is None and method != "zero":
        reference = tokens
    hooks = ablation_hooks(model, targets, method, reference, seed=seed, mean_over=mean_over)
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        return model(tokens, **forward_kwargs)
