"""Attribution patching (Nanda 2023; Syed et al. 2023): a first-order estimate of activation
patching for every element of many activations, from one forward and one backward pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from toykit.cache import ActivationCache, get_act_name
from toykit.hooks import check_model
from toykit.patching.inputs import source_acts
from toykit.patching.metrics import Metric
from toykit.patching.result import PatchingResult
from toykit.patching.sweeps import BLOCK_ACTS, HEAD_ACTS, act_names, block_cells, head_cells, layout
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_tokens


def attribution_patch(
    model,
    corrupted_tokens: torch.Tensor,
    clean: ActivationCache | torch.Tensor,
    metric: Metric,
    hook_names: Sequence[str],
) -> tuple[float, dict[str, torch.Tensor]]:
    """Attribution patching: a first-order estimate of patching, for every element of many
    activations at once, from one forward and one backward pass on the corrupted prompts.

        metric(patched) - metric(corrupted) ≈ (clean_act - corrupted_act) · ∂metric/∂act

    with the gradient taken on the corrupted run. Exact when the metric is linear in the
    activation; poor where attention saturates or the change is large (check against real
    patching before trusting it).
    Returns (metric on the corrupted run, {name: per-element estimate [*act.shape[1:]],
    summed over the batch}); summing an entry over some elements estimates patching exactly
    those elements together.
    """
    check_model(model, HookedTransformer)
    tokens = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    names = [hook_names] if isinstance(hook_names, str) else list(dict.fromkeys(hook_names))
    check_model(model, HookedTransformer, names)
    source = source_acts(model, tokens, clean, names, "clean", "corrupted_tokens")
    corrupted_acts: dict[str, torch.Tensor] = {}
    probes: dict[str, torch.Tensor] = {}

    def add_probe(act: torch.Tensor, hook) -> torch.Tensor:
        # Add a zero leaf: its gradient is ∂metric/∂act, and the graph through act (its effect
        # on later layers) stays intact, which detaching and re-attaching would cut.
        corrupted_acts[hook.name] = act.detach()
        probes[hook.name] = torch.zeros_like(act, requires_grad=True)
        return act + probes[hook.name]

    with torch.enable_grad(), model.hooks(fwd_hooks=[(name, add_probe) for name in names]):
        value = metric(model(tokens))
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.requires_grad:
            raise ValueError("attribution patching needs a metric that returns a 1-element tensor computed "
                             "from the logits (differentiable), e.g. logit_diff_metric(...)")
        grads = torch.autograd.grad(value.reshape(()), [probes[n] for n in names], allow_unused=True)
    out = {}
    for name, grad in zip(names, grads):
        grad = torch.zeros_like(corrupted_acts[name]) if grad is None else grad
        out[name] = ((source[name] - corrupted_acts[name]) * grad).sum(0).cpu()
    return value.item(), out


def attribution_patch_blocks(
    model,
    corrupted_tokens: torch.Tensor,
    clean: ActivationCache | torch.Tensor,
    metric: Metric,
    act_name: str | Sequence[str] = "resid_pre",
    by_pos: bool = True,
) -> PatchingResult:
    """The attribution-patching estimate of ``patch_blocks`` (same dims and arguments): values
    are the estimated metric after each patch, baseline the corrupted run's metric."""
    acts = act_names(act_name, BLOCK_ACTS, "attribution_patch_blocks")
    check_model(model, HookedTransformer)
    L = model.cfg.n_layers
    names = [get_act_name(a, l) for a in acts for l in range(L)]
    baseline, attrs = attribution_patch(model, corrupted_tokens, clean, metric, names)
    per = [attrs[n].sum(-1) if by_pos else attrs[n].sum() for n in names]  # [pos] or []
    values = torch.stack(per).reshape(len(acts), L, *per[0].shape) + baseline
    _, dims, coords = block_cells(model, [], by_pos, corrupted_tokens.shape[1])
    dims, coords = layout(acts, dims, coords)
    return PatchingResult(values if len(acts) > 1 else values[0], dims, coords, baseline,
                          f"attribution estimate: {'/'.join(acts)} by layer{' and position' if by_pos else ''}")


def attribution_patch_heads(
    model,
    corrupted_tokens: torch.Tensor,
    clean: ActivationCache | torch.Tensor,
    metric: Metric,
    act_name: str | Sequence[str] = "z",
    by_pos: bool = False,
) -> PatchingResult:
    """The attribution-patching estimate of ``patch_heads`` (same dims and arguments) for
    every head at once, from one backward pass."""
    acts = act_names(act_name, HEAD_ACTS, "attribution_patch_heads")
    check_model(model, HookedTransformer)
    L = model.cfg.n_layers
    names = [get_act_name(a, l) for a in acts for l in range(L)]
    baseline, attrs = attribution_patch(model, corrupted_tokens, clean, metric, names)
    per = []
    for name in names:
        a = attrs[name]
        if name.endswith("hook_pattern"):  # [h, q, k]
            per.append(a.sum(-1).T if by_pos else a.sum((-2, -1)))  # [q, h] or [h]
        else:  # [p, h, e]
            per.append(a.sum(-1) if by_pos else a.sum((0, -1)))  # [p, h] or [h]
    values = torch.stack(per).reshape(len(acts), L, *per[0].shape) + baseline
    _, dims, coords = head_cells(model, [], by_pos, corrupted_tokens.shape[1])
    dims, coords = layout(acts, dims, coords)
    return PatchingResult(values if len(acts) > 1 else values[0], dims, coords, baseline,
                          f"attribution estimate: head {'/'.join(acts)}{' by position' if by_pos else ''}")
