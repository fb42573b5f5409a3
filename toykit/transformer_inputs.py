"""Checks of what a HookedTransformer is given: tokens, and the arguments of ``forward``.

Each raises a clear error naming the argument, and returns the input on the model's device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from toykit.validation import check_tensor

if TYPE_CHECKING:
    from toykit.transformer import HookedTransformer

__all__ = ["check_forward_args", "check_token_ids", "check_tokens"]


def check_token_ids(model: HookedTransformer, ids: torch.Tensor, name: str = "ids") -> None:
    """Raise a ValueError naming ``name`` unless every id in the integer tensor ``ids`` (any
    shape) lies in [0, d_vocab)."""
    if ids.numel() and (ids.min() < 0 or ids.max() >= model.cfg.d_vocab):
        raise ValueError(
            f"{name} must lie in [0, d_vocab={model.cfg.d_vocab}), got values from "
            f"{ids.min().item()} to {ids.max().item()}"
        )


def check_tokens(model: HookedTransformer, tokens: Any, name: str = "tokens", *,
                 nonempty: bool = False) -> torch.Tensor:
    """``tokens`` as int64 [batch, pos] on the model's device (a 1-D [pos] becomes batch 1),
    after checking that it is an integer tensor with pos <= n_ctx and values in [0, d_vocab).

    name: the argument's name in the caller, used in the error messages.
    nonempty: also require at least one prompt and one position.
    """
    if isinstance(tokens, torch.Tensor) and tokens.ndim == 1:
        tokens = tokens[None]
    check_tensor(name, tokens, ["batch", "pos"], dtype="int")
    if tokens.shape[1] > model.cfg.n_ctx:
        raise ValueError(
            f"{name} has {tokens.shape[1]} positions, more than the model's context n_ctx={model.cfg.n_ctx}"
        )
    if nonempty and tokens.numel() == 0:
        raise ValueError(f"{name} must hold at least one prompt and position, got shape {list(tokens.shape)}")
    check_token_ids(model, tokens, name)
    return tokens.to(model.device, torch.long)


def check_forward_args(model: HookedTransformer, tokens: Any, return_type: Any, stop_at_layer: Any,
                       start_at_layer: Any) -> tuple[torch.Tensor, int, int]:
    """The checks of ``model.forward``'s arguments (see its docstring). Returns the tokens (or,
    with start_at_layer, the residual stream) on the model's device, the first block to run and
    the block to stop before."""
    if return_type not in ("logits", "loss", "both", None):
        raise ValueError(f"return_type must be 'logits', 'loss', 'both' or None, got {return_type!r}")
    L = model.cfg.n_layers
    stop = L
    if stop_at_layer is not None:
        if not isinstance(stop_at_layer, int) or isinstance(stop_at_layer, bool) or not -L <= stop_at_layer <= L:
            raise ValueError(f"stop_at_layer must be an int in [-{L}, {L}], got {stop_at_layer!r}")
        stop = stop_at_layer % L if stop_at_layer < 0 else stop_at_layer
    if start_at_layer is None:
        tokens = check_tokens(model, tokens)
        if return_type in ("loss", "both") and stop_at_layer is None and tokens.shape[1] < 2:
            raise ValueError(f"a loss needs tokens with at least 2 positions, got shape {list(tokens.shape)}")
        first = 0
    else:
        if not isinstance(start_at_layer, int) or isinstance(start_at_layer, bool) or not 0 <= start_at_layer <= L:
            raise ValueError(f"start_at_layer must be an int in [0, {L}], got {start_at_layer!r}")
        if return_type in ("loss", "both"):
            raise ValueError("return_type must be 'logits' or None with start_at_layer: a loss needs the tokens")
        check_tensor("tokens (the residual stream, with start_at_layer)", tokens,
                     ["batch", "pos", model.cfg.d_model], dtype="float")
        if tokens.shape[1] > model.cfg.n_ctx:
            raise ValueError(
                f"the residual stream has {tokens.shape[1]} positions, more than n_ctx={model.cfg.n_ctx}"
            )
        first, tokens = start_at_layer, tokens.to(model.device)
    model.check_switches()
    return tokens, first, stop
