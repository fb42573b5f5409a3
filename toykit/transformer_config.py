"""TransformerConfig: everything that defines a HookedTransformer, checked when it is made.

Field names follow TransformerLens's ``HookedTransformerConfig``; ``toykit.transformer``
re-exports the class. ``ACT_FNS`` says what each ``act_fn`` name computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from toykit.hook_switches import HOOK_SWITCHES
from toykit.validation import (
    check_bool,
    check_non_negative_int,
    check_one_of,
    check_positive_int,
    check_positive_number,
)

__all__ = ["ACT_FNS", "NORMALIZATION_TYPES", "TransformerConfig"]

ACT_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    # GPT-2's tanh approximation of GELU (Hugging Face's and TransformerLens's "gelu_new").
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
}
NORMALIZATION_TYPES = ("LN", "LNPre", None)


@dataclass(kw_only=True)
class TransformerConfig:
    """Everything that defines a HookedTransformer (field names as in TransformerLens).

    n_layers, d_model, n_ctx, d_vocab: required.
    n_heads: number of attention heads; d_head defaults to d_model // n_heads and must satisfy
        n_heads * d_head == d_model.
    d_mlp: MLP width, default 4 * d_model (unused when attn_only).
    act_fn: "relu", "gelu" (exact GELU, as TransformerLens's "gelu") or "gelu_new" (GPT-2's
        tanh approximation).
    normalization_type: "LN" (LayerNorm with weight w and bias b), "LNPre" (centre and scale
        only, as after folding) or None (no normalization).
    attn_only: no MLPs (and no ln2, hook_resid_mid, hook_mlp_out).
    positional_embedding_type: only "standard" (learned absolute positions, W_pos).
    seed: the initial weights depend only on this (drawn on the CPU, then moved).
    use_attn_result: compute each head's output ``hook_result`` [b, p, n_heads, d_model].
        Off by default because it costs memory and time; change it with
        ``model.set_use_attn_result(True)``.
    use_attn_in: give each head its own copy of the attention input, ``blocks.{l}.hook_attn_in``
        [b, p, n_heads, d_model] (``model.set_use_attn_in``).
    use_split_qkv_input: give each head separate query, key and value inputs,
        ``blocks.{l}.hook_q_input`` / ``hook_k_input`` / ``hook_v_input`` [b, p, n_heads, d_model],
        so that a patch can reach one head's keys only (path patching; ``model.set_use_split_qkv_input``).
    use_hook_mlp_in: a hook on the MLP's input, ``blocks.{l}.hook_mlp_in`` [b, p, d_model]
        (``model.set_use_hook_mlp_in``; not for attn_only models).
        These three switches are TransformerLens's. Off, their hook points do not exist and
        cost nothing; on, ln1 and q, k, v are computed once per head (ln1's hooks then see
        [b, p, n_heads, ...] and fire three times, for q, k and v, as in TransformerLens).
    init_range: std of the normal init of every weight matrix; None means 0.8 / sqrt(d_model),
        TransformerLens's default.
    eps: added to the variance inside LayerNorm.
    device: None picks ``toykit.get_device()`` (CUDA when present, else the CPU).
    dtype: a floating-point torch dtype.
    """

    n_layers: int
    d_model: int
    n_ctx: int
    d_vocab: int
    n_heads: int = 4
    # None for these three means a default computed in __post_init__, so after construction
    # they always hold a number, which is the type declared.
    d_head: int = None  # type: ignore[assignment]  # None -> d_model // n_heads
    d_mlp: int = None  # type: ignore[assignment]  # None -> 4 * d_model
    act_fn: str = "relu"
    normalization_type: str | None = "LN"
    attn_only: bool = False
    positional_embedding_type: str = "standard"
    seed: int = 0
    use_attn_result: bool = False
    use_attn_in: bool = False
    use_split_qkv_input: bool = False
    use_hook_mlp_in: bool = False
    init_range: float = None  # type: ignore[assignment]  # None -> 0.8 / sqrt(d_model)
    eps: float = 1e-5
    device: str | torch.device | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        c = "TransformerConfig: "  # every error names the class and the field
        for name in ("n_layers", "d_model", "n_ctx", "d_vocab", "n_heads"):
            check_positive_int(c + name, getattr(self, name))
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"TransformerConfig: d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "choose n_heads dividing d_model or give d_head with n_heads * d_head == d_model"
                )
            self.d_head = self.d_model // self.n_heads
        check_positive_int(c + "d_head", self.d_head)
        if self.n_heads * self.d_head != self.d_model:
            raise ValueError(
                f"TransformerConfig: d_model must equal n_heads * d_head, got d_model={self.d_model}, "
                f"n_heads={self.n_heads}, d_head={self.d_head} (n_heads * d_head = {self.n_heads * self.d_head})"
            )
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        check_positive_int(c + "d_mlp", self.d_mlp)
        check_one_of(c + "act_fn", self.act_fn, sorted(ACT_FNS))
        check_one_of(c + "normalization_type", self.normalization_type, NORMALIZATION_TYPES)
        for name in ("attn_only", *HOOK_SWITCHES):
            check_bool(c + name, getattr(self, name))
        if self.attn_only and self.use_hook_mlp_in:
            raise ValueError("TransformerConfig: use_hook_mlp_in needs an MLP, but attn_only=True")
        check_one_of(c + "positional_embedding_type", self.positional_embedding_type, ["standard"])
        check_non_negative_int(c + "seed", self.seed)
        if self.init_range is None:
            self.init_range = 0.8 / math.sqrt(self.d_model)
        check_positive_number(c + "init_range", self.init_range)
        check_positive_number(c + "eps", self.eps)
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise TypeError(f"TransformerConfig: dtype must be a floating-point torch.dtype, got {self.dtype!r}")
