"""The patching engine: run the corrupted prompts with activations copied from the clean run.

Patches are grouped into **cells** (the patches of one run). Cells are run many at a time on
copies of the batch, and a cell that patches only block l or later starts from the unpatched
residual stream at block l.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from toykit.cache import ActivationCache
from toykit.hooks import check_model
from toykit.patching.inputs import Patch, as_patches, source_acts
from toykit.patching.metrics import Metric, metric_value
from toykit.patching.result import PatchingResult
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_tokens
from toykit.validation import check_positive_int

#: With max_batch=None, a sweep's forward passes hold about this many tokens (sequences x positions).
TOKENS_PER_PASS = 32768


def check_max_batch(max_batch: int | None) -> None:
    """max_batch: None or a positive int (the most sequences in one forward pass)."""
    if max_batch is not None:
        check_positive_int("max_batch", max_batch)


def copies_per_pass(max_batch: int | None, tokens: torch.Tensor) -> int:
    """How many copies of the batch to run in one forward pass (at least one)."""
    batch, n_pos = tokens.shape
    if max_batch is None:
        max_batch = TOKENS_PER_PASS // max(n_pos, 1)
    return max(1, max_batch // batch)


def replicas(logits: torch.Tensor, n: int, batch: int) -> list[torch.Tensor]:
    """Split the output of n copies of a batch [n * batch, ...] into n parts [batch, ...]."""
    return [logits[r * batch:(r + 1) * batch] for r in range(n)]


def _patch_hook(todo: dict[str, list[tuple[int, tuple]]], source: dict[str, torch.Tensor], n: int,
                batch: int) -> Callable:
    """A hook for a batch of n copies of the prompts: copy r gets the patches todo[name] lists
    for r."""

    def patch(act: torch.Tensor, hook) -> torch.Tensor:
        act = act.clone(memory_format=torch.contiguous_format)
        copies = act.view(n, batch, *act.shape[1:])
        src = source[hook.name]
        for r, index in todo[hook.name]:
            sel = (slice(None), *index)
            copies[r][sel] = src[sel]
        return act

    return patch


def _start_layer(cell: list[tuple[str, tuple]]) -> int:
    """The first block a cell's patches touch (0 if any patch is outside the blocks)."""
    layers = [int(name.split(".")[1]) if name.startswith("blocks.") else 0 for name, _ in cell]
    return min(layers, default=0)


@torch.no_grad()
def _run_cells(model, tokens: torch.Tensor, source: dict[str, torch.Tensor], cells: list[list[tuple[str, tuple]]],
               metric: Metric, max_batch: int | None) -> torch.Tensor:
    """The metric after each cell's patches (one cell = patches applied together): [n_cells].

    Cells are run n at a time on n copies of the batch; copy r gets cell r's patches. A cell
    that patches only block l or later starts from the unpatched run's residual stream at
    block l: everything before is the same in every copy, so it is computed once.
    """
    batch = tokens.shape[0]
    per_pass = copies_per_pass(max_batch, tokens)
    starts = [_start_layer(cell) for cell in cells]
    resid_pre: dict[int, torch.Tensor] = {}
    if any(starts) and hasattr(model, "blocks"):
        # The input of block l is the output of block l - 1: run only as far as needed.
        layers = sorted({l for l in starts if l > 0})
        names = [f"blocks.{l - 1}.hook_resid_post" for l in layers]
        _, cache = model.run_with_cache(tokens, names_filter=names, stop_at_layer=layers[-1])
        resid_pre = {l: cache[name] for l, name in zip(layers, names)}
    else:
        starts = [0] * len(cells)
    values = torch.full((len(cells),), float("nan"), dtype=torch.float64)
    groups: dict[int, list[int]] = {}
    for i, first in enumerate(starts):
        groups.setdefault(first, []).append(i)
    for first, members in sorted(groups.items()):
        for c in range(0, len(members), per_pass):
            chunk = members[c:c + per_pass]
            n = len(chunk)
            todo: dict[str, list[tuple[int, tuple]]] = {}
            for r, i in enumerate(chunk):
                for name, index in cells[i]:
                    todo.setdefault(name, []).append((r, index))
            patch = _patch_hook(todo, source, n, batch)
            with model.hooks(fwd_hooks=[(name, patch) for name in todo]):
                if first == 0:
                    logits = model(tokens.repeat(n, 1))
                else:
                    logits = model(resid_pre[first].repeat(n, 1, 1), start_at_layer=first)
            for i, part in zip(chunk, replicas(logits, n, batch)):
                values[i] = metric_value(metric, part)
    return values


def activation_patch(
    model,
    corrupted_tokens: torch.Tensor,
    clean: ActivationCache | torch.Tensor,
    metric: Metric,
    patches: str | Patch | Sequence[str | Patch],
) -> float:
    """Run the corrupted prompts with some activations copied from the clean run; the metric.

    patches: a hook name (patch the whole activation), (hook_name, index), or a list of them,
        all applied together in one run (index: see ``toykit.patching``).
    """
    check_model(model, HookedTransformer)
    tokens = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    patches = as_patches(patches)
    check_model(model, HookedTransformer, [name for name, _ in patches])
    source = source_acts(model, tokens, clean, [name for name, _ in patches], "clean", "corrupted_tokens")
    return _run_cells(model, tokens, source, [patches], metric, max_batch=tokens.shape[0])[0].item()


def patch_sweep(
    model,
    corrupted_tokens: torch.Tensor,
    clean: ActivationCache | torch.Tensor,
    metric: Metric,
    cells: Sequence[str | Patch | Sequence[str | Patch]],
    dims: Sequence[str] = ("cell",),
    coords: Mapping[str, Sequence] | None = None,
    max_batch: int | None = None,
    description: str = "",
) -> PatchingResult:
    """Patch each cell in its own run (batched), over any hooks: the general sweep.

    cells: one entry per run, each a patch or a list of patches applied together.
    dims, coords: how to lay the results out: the cells fill a tensor of shape
        [len(coords[d]) for d in dims] in row-major order (default: one "cell" axis).
    max_batch: the most sequences in one forward pass (None: about TOKENS_PER_PASS tokens);
        lower it if memory is short.
    """
    check_model(model, HookedTransformer)
    check_max_batch(max_batch)
    tokens = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    parsed = [as_patches(c) for c in cells]
    names = [name for cell in parsed for name, _ in cell]
    check_model(model, HookedTransformer, names)
    dims = tuple(dims)
    coords = {"cell": list(range(len(parsed)))} if coords is None and dims == ("cell",) else dict(coords or {})
    shape = [len(coords.get(d, ())) for d in dims]
    if int(torch.tensor(shape).prod()) != len(parsed):
        raise ValueError(f"dims {dims} with coords of sizes {shape} do not hold {len(parsed)} cells")
    source = source_acts(model, tokens, clean, names, "clean", "corrupted_tokens")
    values = _run_cells(model, tokens, source, [[]] + parsed, metric, max_batch)
    return PatchingResult(values[1:].reshape(shape), dims, {d: list(coords[d]) for d in dims},
                          values[0].item(), description)
