"""ActivationCache: the activations of one forward pass, by hook name.

Index by full name (``cache["blocks.0.attn.hook_pattern"]``) or by TransformerLens's
shorthand ``(short_name, layer)`` (``cache["pattern", 0]``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

# Short names whose full name lives in a sub-module of block l (as in TransformerLens).
_ATTN = {"q", "k", "v", "z", "attn_scores", "pattern", "result", "rot_q", "rot_k"}
_MLP = {"pre", "post", "mid"}
_ALIASES = {"attn": "pattern", "attn_logits": "attn_scores", "scores": "attn_scores"}


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """Full hook name from TransformerLens's shorthand.

    >>> get_act_name("pattern", 0)
    'blocks.0.attn.hook_pattern'
    >>> get_act_name("resid_pre", 1)
    'blocks.1.hook_resid_pre'
    >>> get_act_name("scale", 0, "ln1")
    'blocks.0.ln1.hook_scale'
    """
    if not isinstance(name, str):
        raise TypeError(f"get_act_name: name must be a str, got {type(name).__name__}")
    if "." in name or (layer is None and name.startswith("hook_")):
        return name  # already a full name
    short = _ALIASES.get(name.removeprefix("hook_"), name.removeprefix("hook_"))
    if layer is None:
        if short in ("embed", "pos_embed", "tokens"):
            return f"hook_{short}"
        if short in ("scale", "normalized"):
            return f"ln_final.hook_{short}"
        return f"hook_{short}"
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise TypeError(f"get_act_name: layer must be an int or None, got {layer!r}")
    if short in _ATTN:
        return f"blocks.{layer}.attn.hook_{short}"
    if short in _MLP:
        return f"blocks.{layer}.mlp.hook_{short}"
    if short in ("scale", "normalized"):
        sub = layer_type or "ln1"
        return f"blocks.{layer}.{sub}.hook_{short}"
    return f"blocks.{layer}.hook_{short}"


class ActivationCache(Mapping):
    """A read-only mapping from hook name to activation tensor.

    cache_dict: {full hook name: tensor}, in the model's hook order.
    model: the model the activations came from (later chapters use it for decompositions).
    """

    def __init__(self, cache_dict: dict[str, torch.Tensor], model: Any = None,
                 has_batch_dim: bool = True) -> None:
        self.cache_dict = dict(cache_dict)
        self.model = model
        self.has_batch_dim = has_batch_dim

    def _full_name(self, key: str | tuple) -> str:
        if isinstance(key, str):
            if key in self.cache_dict:
                return key
            full = get_act_name(key)
        elif isinstance(key, tuple) and 1 <= len(key) <= 3:
            full = get_act_name(*key)
            if full not in self.cache_dict and len(key) >= 2:
                # Models that are not transformers put hooks straight under blocks.{l}.
                short = str(key[0]).removeprefix("hook_")
                matches = [n for n in self.cache_dict
                           if n.startswith(f"blocks.{key[1]}.") and n.endswith(f"hook_{short}")]
                if len(matches) == 1:
                    full = matches[0]
        else:
            raise TypeError(
                "cache keys are a full hook name (str) or (short_name, layer[, layer_type]), "
                f"got {key!r}"
            )
        if full not in self.cache_dict:
            near = difflib.get_close_matches(full, list(self.cache_dict), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise KeyError(
                f"{key!r} (= {full!r}) is not in this cache{hint} "
                f"(it holds {len(self.cache_dict)} activations; was it excluded by names_filter?)"
            )
        return full

    def __getitem__(self, key: str | tuple) -> torch.Tensor:
        return self.cache_dict[self._full_name(key)]

    def __contains__(self, key: object) -> bool:
        try:
            self._full_name(key)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache_dict)

    def __len__(self) -> int:
        return len(self.cache_dict)

    def __repr__(self) -> str:
        return f"ActivationCache with keys {list(self.cache_dict)}"

    def to(self, device: str | torch.device) -> ActivationCache:
        return ActivationCache({k: v.to(device) for k, v in self.cache_dict.items()},
                               self.model, self.has_batch_dim)

    def remove_batch_dim(self) -> ActivationCache:
        """Drop a batch axis of size 1 from every activation."""
        if not self.has_batch_dim:
            return self
        for name, act in self.cache_dict.items():
            if act.ndim == 0 or act.shape[0] != 1:
                raise ValueError(
                    f"remove_batch_dim needs batch size 1, but {name!r} has shape {list(act.shape)}"
                )
        return ActivationCache({k: v[0] for k, v in self.cache_dict.items()}, self.model,
                               has_batch_dim=False)
