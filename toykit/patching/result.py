"""PatchingResult: the metric after each patch of a sweep, as a tensor with named axes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from toykit.validation import check_positive_int


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
