"""Activation patching: which activations carry what decides a behaviour?

Run the model on **corrupted** prompts (which differ from the **clean** ones in a single
detail, e.g. IOI's names) and copy in an activation from the clean run. If a metric (say the
logit difference of the right over the wrong name) moves back toward its clean value, that
activation carries the information. This is *denoising*, TransformerLens's convention; swap
the two prompt sets for *noising* (corrupt one activation of the clean run and watch the
metric drop). Patching shows what an activation *does*; a probe only shows what it holds.

Conventions in this module:

- Prompts are token tensors [batch, pos]; clean and corrupted must have the same shape and
  be aligned position by position (pair prompts of the same template).
- ``clean`` (or ``corrupted``, for path patching) may be an ActivationCache of that run or its
  tokens; with tokens, just the activations needed are cached here.
- A **metric** is ``metric(logits [batch, pos, d_vocab]) -> scalar`` (a float or a 1-element
  tensor), usually averaged over the batch: see ``logit_diff_metric`` and ``kl_divergence``.
- A **patch** is ``(hook_name, index)``: ``index`` is a tuple applied after the batch axis
  (``(3,)`` = position 3 of a [b, p, d_model] activation; ``(slice(None), 1)`` = head 1 of
  hook_z at every position), or None for the whole activation. Every example gets its own
  clean activation.
- Sweeps return a ``PatchingResult``: ``values`` with named ``dims`` and ``coords`` (the label
  of every index along each dim), plus the unpatched ``baseline``; ``result.top(5)`` lists
  the biggest entries with their coordinates.
- Sweeps are batched: the corrupted batch is repeated once per patch (up to ``max_batch``
  sequences per forward pass; None = about ``TOKENS_PER_PASS`` tokens), so a layer x position
  sweep costs a few forward passes. A patch inside block l starts from the unpatched
  residual stream at block l, so the blocks before it are not recomputed.
- All hooks are attached with ``model.hooks(...)`` and removed on exit, even after errors.

TransformerLens users: ``patch_blocks(act_name="resid_pre")`` is ``get_act_patch_resid_pre``;
``patch_heads("z")`` and ``patch_heads("z", by_pos=True)`` are
``get_act_patch_attn_head_out_all_pos`` / ``_by_pos``; ``patch_heads(["z", "q", "k", "v",
"pattern"])`` is ``get_act_patch_attn_head_all_pos_every``.

Also here: path patching (Wang et al. 2022; Goldowsky-Dill et al. 2023), ablations (zero,
mean, resample) and attribution patching (Nanda 2023; Syed et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from toykit.ablation import MEAN_OVER, mean_activation
from toykit.cache import ActivationCache
from toykit.hooks import check_model
from toykit.metrics import normalize_metric
from toykit.probes import select_positions, stop_layer_for
from toykit.transformer import HookedTransformer
from toykit.validation import check_positive_int, check_tensor

__all__ = [
    "PatchingResult",
    "ablation_hooks",
    "activation_patch",
    "all_heads",
    "attribution_patch",
    "attribution_patch_blocks",
    "attribution_patch_heads",
    "kl_divergence",
    "logit_diff",
    "logit_diff_metric",
    "normalize_metric",
    "patch_blocks",
    "patch_heads",
    "patch_sweep",
    "path_patch",
    "path_patch_heads",
    "run_with_ablation",
]

Metric = Callable[[torch.Tensor], Any]
Index = tuple | None
Patch = tuple[str, Index]
Head = tuple[int, int]

#: Activations of a block, [b, p, d_model].
BLOCK_ACTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
#: Per-head activations: [b, p, n_heads, d] for q, k, v, z, result; [b, n_heads, q, k] for pattern.
HEAD_ACTS = ("z", "q", "k", "v", "pattern", "result")


# -- results with labelled axes -------------------------------------------------------------------


@dataclass
class PatchingResult:
    """A tensor of metric values with named axes.

    values: [*shape] on the CPU (NaN where a patch has no effect by construction, e.g. path
        patching from a head that is not upstream of any receiver).
    dims: the name of each axis, e.g. ("layer", "pos") or ("layer", "head").
    coords: {dim: label of each index}, e.g. {"layer": [0, 1], "pos": [0, ..., 15]}.
    baseline: the metric with nothing patched (the corrupted run for denoising, the clean run
        for path patching).
    description: what was patched.
    """

    values: torch.Tensor
    dims: tuple[str, ...]
    coords: dict[str, list]
    baseline: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        self.dims = tuple(self.dims)
        if self.values.ndim != len(self.dims):
            raise ValueError(f"values has {self.values.ndim} dims but dims names {len(self.dims)}: {self.dims}")
        for dim, size in zip(self.dims, self.values.shape):
            if len(self.coords.get(dim, ())) != size:
                raise ValueError(f"coords[{dim!r}] must label all {size} entries along {dim!r}")

    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    @property
    def change(self) -> torch.Tensor:
        """values - baseline: how much each patch moved the metric."""
        if self.baseline is None:
            raise ValueError("this result has no baseline")
        return self.values - self.baseline

    def __getitem__(self, index: Any) -> torch.Tensor:
        return self.values[index]

    def numpy(self):
        return self.values.numpy()

    def sel(self, **where: Any) -> PatchingResult | float:
        """Select by coordinate label, e.g. ``result.sel(layer=1, head=3)``; a float when every
        dim is fixed."""
        index: list[Any] = []
        for dim in self.dims:
            if dim in where:
                label = where.pop(dim)
                if label not in self.coords[dim]:
                    raise KeyError(f"{label!r} is not a label of {dim!r}: {self.coords[dim]}")
                index.append(self.coords[dim].index(label))
            else:
                index.append(slice(None))
        if where:
            raise KeyError(f"unknown dims {sorted(where)}; this result has {self.dims}")
        values = self.values[tuple(index)]
        if values.ndim == 0:
            return values.item()
        kept = [d for d, i in zip(self.dims, index) if isinstance(i, slice)]
        return PatchingResult(values, tuple(kept), {d: self.coords[d] for d in kept}, self.baseline,
                              self.description)

    def top(self, k: int = 5, largest: bool = True, by_change: bool = False) -> list[tuple[dict[str, Any], float]]:
        """The k largest (or smallest) entries, NaNs skipped, as ({dim: label}, value) pairs.
        by_change: rank by |values - baseline| instead, i.e. the patches that matter most."""
        check_positive_int("k", k)
        flat = self.values.flatten().double()
        key = (flat - self.baseline).abs() if by_change and self.baseline is not None else flat
        if not largest and not by_change:
            key = -key
        key = torch.where(torch.isnan(key), torch.full_like(key, -torch.inf), key)
        order = key.argsort(descending=True)[: min(k, int((~torch.isnan(flat)).sum()))]
        out = []
        for i in order.tolist():
            idx = torch.unravel_index(torch.tensor(i), self.values.shape)
            labels = {d: self.coords[d][int(j)] for d, j in zip(self.dims, idx)}
            out.append((labels, flat[i].item()))
        return out

    def __repr__(self) -> str:
        dims = ", ".join(f"{d}={n}" for d, n in zip(self.dims, self.values.shape))
        base = "" if self.baseline is None else f", baseline={self.baseline:.4g}"
        return f"PatchingResult({self.description or 'patching'}: {dims}{base})"


# -- metrics ----------------------------------------------------------------------------------------


def _check_logits(logits: torch.Tensor) -> None:
    check_tensor("logits", logits, ["batch", "pos", "d_vocab"], dtype="float")


def _token_ids(name: str, ids: torch.Tensor | int, batch: int, d_vocab: int, device: torch.device) -> torch.Tensor:
    if isinstance(ids, int) and not isinstance(ids, bool):
        ids = torch.full((batch,), ids)
    check_tensor(name, ids, [batch], dtype="int")
    ids = cast(torch.Tensor, ids)  # check_tensor raised for anything else
    if ids.numel() and (ids.min() < 0 or ids.max() >= d_vocab):
        raise ValueError(f"{name} must lie in [0, d_vocab={d_vocab}), got values from {ids.min().item()} "
                         f"to {ids.max().item()}")
    return ids.to(device, torch.long)


def logit_diff(
    logits: torch.Tensor,
    answer_ids: torch.Tensor | int,
    wrong_ids: torch.Tensor | int,
    *,
    pos: int | torch.Tensor = -1,
    per_prompt: bool = False,
) -> torch.Tensor:
    """Logit of the right answer minus that of the wrong one, at the answer position.

    logits: [batch, pos, d_vocab]; answer_ids, wrong_ids: [batch] token ids (or one int).
    pos: the position predicting the answer: an int (-1 = the last), or an int tensor [batch]
        (prompt b is read at pos[b]: padded prompts of different lengths).
    Returns the mean over the batch (a 0-dim tensor), or [batch] with per_prompt.
    Chapter 04's ``logit_diff`` and chapter 06's ``ioi_logit_diff`` exercises have this signature.
    """
    _check_logits(logits)
    batch, _, d_vocab = logits.shape
    at = select_positions(logits, pos, dim=1)  # [batch, d_vocab]
    a = _token_ids("answer_ids", answer_ids, batch, d_vocab, logits.device)
    w = _token_ids("wrong_ids", wrong_ids, batch, d_vocab, logits.device)
    diff = at.gather(1, a[:, None])[:, 0] - at.gather(1, w[:, None])[:, 0]
    return diff if per_prompt else diff.mean()


def logit_diff_metric(
    answer_ids: torch.Tensor | int,
    wrong_ids: torch.Tensor | int,
    *,
    pos: int | torch.Tensor = -1,
    clean_logits: torch.Tensor | None = None,
    corrupted_logits: torch.Tensor | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A patching metric: the mean logit difference (see ``logit_diff``) as a function of logits.

    With clean_logits and corrupted_logits it is normalised (``normalize_metric`` with the
    corrupted run's value as baseline and the clean run's as target): 0 as corrupted, 1 as
    clean (Wang et al.'s "fraction of logit difference recovered").
    """
    if (clean_logits is None) != (corrupted_logits is None):
        raise ValueError("give both clean_logits and corrupted_logits (to normalise) or neither")

    def raw(logits: torch.Tensor) -> torch.Tensor:
        return logit_diff(logits, answer_ids, wrong_ids, pos=pos)

    if clean_logits is None or corrupted_logits is None:  # both or neither (checked above)
        return raw
    clean_value, corrupted_value = raw(clean_logits).item(), raw(corrupted_logits).item()
    normalize_metric(0.0, baseline=corrupted_value, target=clean_value)  # fail now, not inside a sweep

    def normalized(logits: torch.Tensor) -> torch.Tensor:
        return normalize_metric(raw(logits), baseline=corrupted_value, target=clean_value)

    return normalized


def kl_divergence(
    logits: torch.Tensor,
    reference_logits: torch.Tensor,
    pos: int | torch.Tensor | None = -1,
    per_prompt: bool = False,
) -> torch.Tensor:
    """KL(reference ‖ model): how far the next-token distribution moved from a reference run.

    logits, reference_logits: [batch, pos, d_vocab]. pos: an int or int tensor [batch] (one
    position), or None (mean over all positions). Returns the batch mean, or [batch].
    0 for identical distributions; a metric for "how much did this patch change anything".
    """
    _check_logits(logits)
    if not isinstance(reference_logits, torch.Tensor) or reference_logits.shape != logits.shape:
        raise ValueError(f"reference_logits must have the shape of logits {list(logits.shape)}, "
                         f"got {list(getattr(reference_logits, 'shape', []))}")
    logp = select_positions(logits.log_softmax(-1), pos, dim=1)
    logq = select_positions(reference_logits.to(logits.device).log_softmax(-1), pos, dim=1)
    kl = (logq.exp() * (logq - logp)).sum(-1)  # [batch] or [batch, pos]
    if pos is None:
        kl = kl.mean(-1)
    return kl if per_prompt else kl.mean()


def _metric_value(metric: Metric, logits: torch.Tensor) -> float:
    value = metric(logits)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"the metric must return a scalar, got a tensor of shape {list(value.shape)}; "
                             "average over the batch (e.g. .mean())")
        return value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"the metric must return a float or a 1-element tensor, got {type(value).__name__}")


# -- checking inputs ----------------------------------------------------------------------------------


def _check_tokens(model, name: str, tokens: object) -> torch.Tensor:
    check_tensor(name, tokens, ["batch", "pos"], dtype="int")
    return cast(torch.Tensor, tokens).to(model.device)  # check_tensor raised for anything else


def _pos_axes(name: str) -> tuple[int, ...]:
    return (2, 3) if name.endswith(("hook_pattern", "hook_attn_scores")) else (1,)


def _check_index(index: object) -> tuple:
    if index is None:
        return ()
    if isinstance(index, int) and not isinstance(index, bool):
        return (index,)
    if not isinstance(index, tuple) or not all(
            (isinstance(i, int) and not isinstance(i, bool)) or isinstance(i, slice) for i in index):
        raise TypeError(f"a patch index must be None, an int or a tuple of ints and slices, got {index!r}")
    return index


def _as_patches(patches: str | Patch | Sequence[str | Patch]) -> list[tuple[str, tuple]]:
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


def _source_acts(model, tokens: torch.Tensor, source: ActivationCache | Mapping | torch.Tensor,
                 names: Sequence[str], source_name: str, tokens_name: str) -> dict[str, torch.Tensor]:
    """The activations at ``names`` from the source run, checked against the patched run's
    shape and moved to the model's device."""
    batch, n_pos = tokens.shape
    names = list(dict.fromkeys(names))
    if isinstance(source, torch.Tensor):
        source = _check_tokens(model, source_name, source)
        if source.shape != tokens.shape:
            raise ValueError(
                f"{source_name} has shape {list(source.shape)} but {tokens_name} has shape {list(tokens.shape)}: "
                "patching copies activations position by position, so clean and corrupted prompts must have "
                "the same shape (pair prompts of the same length, e.g. of the same template)")
        if not names:
            return {}
        stop = stop_layer_for(model, names)
        with torch.no_grad():
            kwargs = {"return_type": None} if stop is None else {"stop_at_layer": stop}
            _, source = model.run_with_cache(source, names_filter=names, **kwargs)
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
            ax >= act.ndim or act.shape[ax] != n_pos for ax in _pos_axes(name))
        if wrong:
            raise ValueError(
                f"{source_name}[{name!r}] has shape {list(act.shape)}, which does not match {tokens_name} of "
                f"shape {list(tokens.shape)} (batch {batch}, {n_pos} positions): clean and corrupted prompts "
                "must have the same shape")
        acts[name] = act.to(model.device)
    return acts


#: With max_batch=None, a sweep's forward passes hold about this many tokens (sequences x positions).
TOKENS_PER_PASS = 32768


def _check_max_batch(max_batch: int | None) -> None:
    if max_batch is not None:
        check_positive_int("max_batch", max_batch)


def _copies_per_pass(max_batch: int | None, tokens: torch.Tensor) -> int:
    """How many copies of the batch to run in one forward pass (at least one)."""
    batch, n_pos = tokens.shape
    if max_batch is None:
        max_batch = TOKENS_PER_PASS // max(n_pos, 1)
    return max(1, max_batch // batch)


def _check_heads(model, heads: object, name: str) -> list[Head]:
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


# -- the patching engine --------------------------------------------------------------------------------


def _replicas(logits: torch.Tensor, n: int, batch: int) -> list[torch.Tensor]:
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
    per_pass = _copies_per_pass(max_batch, tokens)
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
            for i, part in zip(chunk, _replicas(logits, n, batch)):
                values[i] = _metric_value(metric, part)
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
        all applied together in one run (see the module docstring for index).
    """
    check_model(model, HookedTransformer)
    tokens = _check_tokens(model, "corrupted_tokens", corrupted_tokens)
    patches = _as_patches(patches)
    check_model(model, HookedTransformer, [name for name, _ in patches])
    source = _source_acts(model, tokens, clean, [name for name, _ in patches], "clean", "corrupted_tokens")
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
    _check_max_batch(max_batch)
    tokens = _check_tokens(model, "corrupted_tokens", corrupted_tokens)
    parsed = [_as_patches(c) for c in cells]
    names = [name for cell in parsed for name, _ in cell]
    check_model(model, HookedTransformer, names)
    dims = tuple(dims)
    coords = {"cell": list(range(len(parsed)))} if coords is None and dims == ("cell",) else dict(coords or {})
    shape = [len(coords.get(d, ())) for d in dims]
    if int(torch.tensor(shape).prod()) != len(parsed):
        raise ValueError(f"dims {dims} with coords of sizes {shape} do not hold {len(parsed)} cells")
    source = _source_acts(model, tokens, clean, names, "clean", "corrupted_tokens")
    values = _run_cells(model, tokens, source, [[]] + parsed, metric, max_batch)
    return PatchingResult(values[1:].reshape(shape), dims, {d: list(coords[d]) for d in dims},
                          values[0].item(), description)


def _act_names(act_name: str | Sequence[str], allowed: tuple[str, ...], what: str) -> list[str]:
    names = [act_name] if isinstance(act_name, str) else list(act_name)
    if not names:
        raise ValueError(f"act_name must name at least one of {allowed}")
    for a in names:
        if a not in allowed:
            raise ValueError(f"act_name for {what} must be one of {allowed}, got {a!r}")
    return names


def _hook_name(act: str, layer: int) -> str:
    if act in ("pattern", "z", "q", "k", "v", "result", "attn_scores"):
        return f"blocks.{layer}.attn.hook_{act}"
    return f"blocks.{layer}.hook_{act}"


def _block_cells(model, acts: list[str], by_pos: bool, n_pos: int) -> tuple[list, tuple, dict]:
    L = model.cfg.n_layers
    cells: list[list[tuple[str, tuple]]] = []
    for act in acts:
        for layer in range(L):
            name = _hook_name(act, layer)
            cells += [[(name, (p,))] for p in range(n_pos)] if by_pos else [[(name, ())]]
    dims = ("layer", "pos") if by_pos else ("layer",)
    coords: dict[str, list] = {"layer": list(range(L)), "pos": list(range(n_pos))}
    return cells, dims, coords


def _head_cells(model, acts: list[str], by_pos: bool, n_pos: int) -> tuple[list, tuple, dict]:
    L, H = model.cfg.n_layers, model.cfg.n_heads
    cells = []
    for act in acts:
        for layer in range(L):
            name = _hook_name(act, layer)
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


def _layout(acts: list[str], dims: tuple, coords: dict) -> tuple[tuple, dict]:
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
    acts = _act_names(act_name, BLOCK_ACTS, "patch_blocks")
    check_model(model, HookedTransformer)
    tokens = _check_tokens(model, "corrupted_tokens", corrupted_tokens)
    cells, dims, coords = _block_cells(model, acts, by_pos, tokens.shape[1])
    dims, coords = _layout(acts, dims, coords)
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
    acts = _act_names(act_name, HEAD_ACTS, "patch_heads")
    check_model(model, HookedTransformer)
    tokens = _check_tokens(model, "corrupted_tokens", corrupted_tokens)
    cells, dims, coords = _head_cells(model, acts, by_pos, tokens.shape[1])
    dims, coords = _layout(acts, dims, coords)
    desc = f"head {'/'.join(acts)}{' by position' if by_pos else ''}"
    return patch_sweep(model, tokens, clean, metric, cells, dims, coords, max_batch, desc)


# -- path patching --------------------------------------------------------------------------------------


def _receiver_inputs(receiver_input: str | Sequence[str]) -> list[str]:
    inputs = [receiver_input] if isinstance(receiver_input, str) else list(receiver_input)
    if not inputs or any(i not in ("q", "k", "v") for i in inputs):
        raise ValueError(f"receiver_input must be 'q', 'k', 'v' or a list of them, got {receiver_input!r}")
    return list(dict.fromkeys(inputs))


@torch.no_grad()
def _path_cells(model, clean_tokens: torch.Tensor, corrupted: ActivationCache | torch.Tensor, metric: Metric,
                sender_sets: list[list[Head]], receivers: list[Head] | None, inputs: list[str],
                freeze_mlps: bool, max_batch: int | None) -> torch.Tensor:
    """The metric after path patching each sender set (receivers None = the logits): [n_sets]."""
    cfg = model.cfg
    L, batch = cfg.n_layers, clean_tokens.shape[0]
    z_names = [f"blocks.{l}.attn.hook_z" for l in range(L)]
    mlp_names = [f"blocks.{l}.hook_mlp_out" for l in range(L)] if freeze_mlps and not cfg.attn_only else []
    clean_acts = _source_acts(model, clean_tokens, clean_tokens, z_names + mlp_names, "clean_tokens", "clean_tokens")
    corr_z = _source_acts(model, clean_tokens, corrupted, z_names, "corrupted", "clean_tokens")
    recv_heads: dict[str, list[int]] = {}
    for l, h in receivers or []:
        for inp in inputs:
            recv_heads.setdefault(f"blocks.{l}.attn.hook_{inp}", []).append(h)
    last_needed = max(l for l, _ in receivers) + 1 if receivers else None
    stop = last_needed if last_needed is not None and last_needed < L else None
    per_pass = _copies_per_pass(max_batch, clean_tokens)
    values: list[float] = []
    for start in range(0, len(sender_sets), per_pass):
        chunk = sender_sets[start:start + per_pass]
        mask = torch.zeros(len(chunk), L, cfg.n_heads, dtype=torch.bool, device=model.device)
        for r, senders in enumerate(chunk):
            for l, h in senders:
                mask[r, l, h] = True
        tokens = clean_tokens.repeat(len(chunk), 1)
        out = _path_chunk(model, tokens, mask, clean_acts, corr_z, z_names, mlp_names, recv_heads, stop)
        values += [_metric_value(metric, part) for part in _replicas(out, len(chunk), batch)]
    return torch.tensor(values, dtype=torch.float64)


def _path_chunk(model, tokens: torch.Tensor, mask: torch.Tensor, clean_acts: dict[str, torch.Tensor],
                corr_z: dict[str, torch.Tensor], z_names: list[str], mlp_names: list[str],
                recv_heads: dict[str, list[int]], stop: int | None) -> torch.Tensor:
    """Path patching for n sender sets at once (mask [n, n_layers, n_heads]) on n copies of the
    clean prompts (tokens [n * batch, pos]): the final logits [n * batch, pos, d_vocab]."""
    n = mask.shape[0]

    # Step 1: every head's output frozen to the clean run, except the senders, which take the
    # corrupted run's; MLP outputs frozen too (freeze_mlps). What changes downstream is then
    # only what the senders write directly into the residual stream.
    def freeze_z(act: torch.Tensor, hook) -> torch.Tensor:
        layer = int(hook.name.split(".")[1])
        clean_z, corr = clean_acts[hook.name], corr_z[hook.name]  # [b, p, h, e]
        m = mask[:, layer][:, None, None, :, None]  # [n, 1, 1, h, 1]
        return torch.where(m, corr[None], clean_z[None]).reshape(act.shape)

    def freeze_mlp(act: torch.Tensor, hook) -> torch.Tensor:
        return clean_acts[hook.name].repeat(n, 1, 1)

    captured: dict[str, torch.Tensor] = {}

    def capture(act: torch.Tensor, hook) -> None:
        captured[hook.name] = act.clone()

    hooks: list[tuple[str, Callable[..., torch.Tensor | None]]] = [(name, freeze_z) for name in z_names]
    hooks += [(name, freeze_mlp) for name in mlp_names]
    hooks += [(name, capture) for name in recv_heads]
    with model.hooks(fwd_hooks=hooks):
        out = model(tokens, stop_at_layer=stop) if stop is not None else model(tokens)
    if not recv_heads:  # the receiver is the output itself
        return out

    # Step 2: a normal clean run, except that the receivers' inputs are the values they had in
    # step 1; everything downstream of them is recomputed.
    def put(act: torch.Tensor, hook) -> torch.Tensor:
        act = act.clone()
        heads = recv_heads[hook.name]
        act[:, :, heads] = captured[hook.name][:, :, heads]
        return act

    with model.hooks(fwd_hooks=[(name, put) for name in recv_heads]):
        return model(tokens)


def _path_args(model, clean_tokens, receivers, receiver_input, max_batch) -> tuple:
    check_model(model, HookedTransformer)
    _check_max_batch(max_batch)
    tokens = _check_tokens(model, "clean_tokens", clean_tokens)
    if isinstance(receivers, str):
        if receivers != "logits":
            raise ValueError(f"receivers must be a list of (layer, head) pairs or 'logits', got {receivers!r}")
        recv = None
    else:
        recv = _check_heads(model, receivers, "receivers")
        if not recv:
            raise ValueError("receivers is empty")
    return tokens, recv, _receiver_inputs(receiver_input)


def path_patch(
    model,
    clean_tokens: torch.Tensor,
    corrupted: ActivationCache | torch.Tensor,
    metric: Metric,
    senders: Sequence[Head],
    receivers: Sequence[Head] | str,
    receiver_input: str | Sequence[str] = "q",
    freeze_mlps: bool = True,
) -> float:
    """Path patching: the effect of the senders on the metric *through* the receivers only.

    Follows Wang et al. (2022): (1) run the clean prompts with every attention head's output
    (hook_z) frozen to its clean value, except the senders, whose outputs come from the
    corrupted run; MLP outputs are frozen to their clean values too unless freeze_mlps=False
    (then paths through MLPs count as direct). Record the receivers' inputs. (2) Run the clean
    prompts again with just the receivers' inputs set to those values; measure the metric.

    senders: (layer, head) pairs, patched together.
    receivers: (layer, head) pairs, or "logits" for the senders' direct effect on the output
        (then step 1 alone is measured).
    receiver_input: which input of the receivers carries the path: "q", "k", "v" or a list.
    Returns the metric (compare with the clean run's value: the drop is the path's effect).
    A sender in the same or a later layer than every receiver has no path: an error.
    """
    tokens, recv, inputs = _path_args(model, clean_tokens, receivers, receiver_input, 1)
    send = _check_heads(model, list(senders), "senders")
    if not send:
        raise ValueError("senders is empty")
    if recv is not None and min(l for l, _ in send) >= max(l for l, _ in recv):
        raise ValueError(f"no path: every sender {send} is in the same or a later layer than every receiver {recv}")
    return _path_cells(model, tokens, corrupted, metric, [send], recv, inputs, freeze_mlps,
                       max_batch=tokens.shape[0])[0].item()


def path_patch_heads(
    model,
    clean_tokens: torch.Tensor,
    corrupted: ActivationCache | torch.Tensor,
    metric: Metric,
    receivers: Sequence[Head] | str,
    receiver_input: str | Sequence[str] = "q",
    freeze_mlps: bool = True,
    max_batch: int | None = None,
) -> PatchingResult:
    """``path_patch`` with each attention head as the single sender in turn.

    Returns dims ("layer", "head"); NaN for heads with no path to any receiver (same or later
    layer); baseline = the metric on the clean run.
    """
    tokens, recv, inputs = _path_args(model, clean_tokens, receivers, receiver_input, max_batch)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    last = L if recv is None else max(l for l, _ in recv)
    heads = [(l, h) for l in range(last) for h in range(H)]
    values = _path_cells(model, tokens, corrupted, metric, [[]] + [[hd] for hd in heads], recv, inputs,
                         freeze_mlps, max_batch)
    grid = torch.full((L, H), float("nan"), dtype=torch.float64)
    for (l, h), v in zip(heads, values[1:]):
        grid[l, h] = v
    target = "logits" if recv is None else f"{'/'.join(inputs)} of {recv}"
    return PatchingResult(grid, ("layer", "head"), {"layer": list(range(L)), "head": list(range(H))},
                          values[0].item(), f"path patching each head -> {target}")


# -- ablations ----------------------------------------------------------------------------------------


def all_heads(model, exclude: Sequence[Head] = ()) -> list[Head]:
    """Every (layer, head) pair of the model, in order, except those in exclude."""
    check_model(model, HookedTransformer)
    skip = set(_check_heads(model, list(exclude), "exclude")) if exclude else set()
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
            (l, h), = _check_heads(model, [tuple(t)], "targets")
            out.setdefault(f"blocks.{l}.attn.hook_z", []).append((slice(None), h))
        else:
            for name, index in _as_patches(t if isinstance(t, str) else tuple(t)):
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
            reference = _check_tokens(model, "reference", reference)
            stop = stop_layer_for(model, list(todo))
            kwargs = {"return_type": None} if stop is None else {"stop_at_layer": stop}
            with torch.no_grad():
                _, reference = model.run_with_cache(reference, names_filter=list(todo), **kwargs)
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
            if mean_over == "batch_and_pos" and _pos_axes(name) != (1,):
                raise ValueError(f"mean_over='batch_and_pos' needs position on axis 1; {name!r} has query and key "
                                 "positions on axes 2 and 3: use mean_over='batch'")
            ref[name] = mean_activation(act, mean_over=mean_over)
    draws: dict[int, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(seed)

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
    tokens = _check_tokens(model, "tokens", tokens)
    if reference is None and method != "zero":
        reference = tokens
    hooks = ablation_hooks(model, targets, method, reference, seed=seed, mean_over=mean_over)
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        return model(tokens, **forward_kwargs)


# -- attribution patching -----------------------------------------------------------------------------


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
    tokens = _check_tokens(model, "corrupted_tokens", corrupted_tokens)
    names = [hook_names] if isinstance(hook_names, str) else list(dict.fromkeys(hook_names))
    check_model(model, HookedTransformer, names)
    source = _source_acts(model, tokens, clean, names, "clean", "corrupted_tokens")
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
    acts = _act_names(act_name, BLOCK_ACTS, "attribution_patch_blocks")
    check_model(model, HookedTransformer)
    L = model.cfg.n_layers
    names = [_hook_name(a, l) for a in acts for l in range(L)]
    baseline, attrs = attribution_patch(model, corrupted_tokens, clean, metric, names)
    per = [attrs[n].sum(-1) if by_pos else attrs[n].sum() for n in names]  # [pos] or []
    values = torch.stack(per).reshape(len(acts), L, *per[0].shape) + baseline
    _, dims, coords = _block_cells(model, [], by_pos, corrupted_tokens.shape[1])
    dims, coords = _layout(acts, dims, coords)
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
    acts = _act_names(act_name, HEAD_ACTS, "attribution_patch_heads")
    check_model(model, HookedTransformer)
    L = model.cfg.n_layers
    names = [_hook_name(a, l) for a in acts for l in range(L)]
    baseline, attrs = attribution_patch(model, corrupted_tokens, clean, metric, names)
    per = []
    for name in names:
        a = attrs[name]
        if name.endswith("hook_pattern"):  # [h, q, k]
            per.append(a.sum(-1).T if by_pos else a.sum((-2, -1)))  # [q, h] or [h]
        else:  # [p, h, e]
            per.append(a.sum(-1) if by_pos else a.sum((0, -1)))  # [p, h] or [h]
    values = torch.stack(per).reshape(len(acts), L, *per[0].shape) + baseline
    _, dims, coords = _head_cells(model, [], by_pos, corrupted_tokens.shape[1])
    dims, coords = _layout(acts, dims, coords)
    return PatchingResult(values if len(acts) > 1 else values[0], dims, coords, baseline,
                          f"attribution estimate: head {'/'.join(acts)}{' by position' if by_pos else ''}")

