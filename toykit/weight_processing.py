"""Rewrite a HookedTransformer's weights into an equivalent, easier-to-read form.

Each step leaves the model's output distribution unchanged (log-probs equal up to float
rounding; logits equal up to a constant per position, to which softmax is blind), but moves
weights around so that later analysis is cleaner. The steps follow TransformerLens's
``process_weights_``:

- ``fold_layer_norm``: a LayerNorm's weight w and bias b are an affine map applied right
  before the next linear layer, so fold them into that layer (W -> diag(w) W, b_next ->
  b_next + b W). The LayerNorm becomes LNPre (centre and scale only). Because LNPre's output
  has zero mean over d_model, the folded reading weights are also centred over d_model.
- ``center_writing_weights``: every reader of the residual stream starts with a LayerNorm,
  which subtracts the mean over d_model; so the mean of whatever is written (W_E, W_pos, W_O,
  b_O, W_out, b_out) over d_model is dead weight and is removed. Needs LN or LNPre.
- ``center_unembed``: adding the same number to every logit changes nothing after softmax,
  so W_U and b_U are made mean-zero over the vocabulary.
- ``fold_value_biases``: each attention pattern row sums to 1, so b_V's contribution is the
  same at every position: sum_h b_V[h] @ W_O[h], which moves into b_O (b_V becomes 0).

The single steps work in place (like TransformerLens's methods) and return the model.
``process_weights_(model)`` runs them all in place; ``process_weights(model)`` returns a
processed copy and leaves the original alone. Folding replaces the LayerNorm modules, so
hooks attached to their hook points are dropped; hook names do not change.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from toykit.hooks import check_model
from toykit.transformer import HookedTransformer, LayerNorm, LayerNormPre, copy_model


@torch.no_grad()
def fold_layer_norm(model: HookedTransformer, center_weights: bool = True) -> HookedTransformer:
    """In place: fold each LayerNorm's w and b into the weights that read its output, and
    turn every LayerNorm into LNPre. A no-op unless cfg.normalization_type == "LN".

    center_weights: also make the folded reading weights (W_Q, W_K, W_V, W_in, W_U) mean-zero
        over d_model, which changes nothing since LNPre's output is mean-zero.
    """
    check_model(model, HookedTransformer)
    if model.cfg.normalization_type != "LN":
        return model

    def fold(ln: nn.Module, W: torch.Tensor, b: torch.Tensor, d_axis: int) -> None:
        """W reads ln's output along d_axis (d_model); b is the bias added after W."""
        assert isinstance(ln, LayerNorm)  # normalization_type is "LN", checked above
        shape = [1] * W.ndim
        shape[d_axis] = -1
        b += (W * ln.b.view(shape)).sum(d_axis)  # b_next += ln.b @ W
        W *= ln.w.view(shape)  # W <- diag(w) @ W
        if center_weights:
            W -= W.mean(d_axis, keepdim=True)

    for block in model.blocks:
        attn = block.attn
        for W, b in ((attn.W_Q, attn.b_Q), (attn.W_K, attn.b_K), (attn.W_V, attn.b_V)):
            fold(block.ln1, W, b, d_axis=1)  # W: [n_heads, d_model, d_head]
        if not model.cfg.attn_only:
            fold(block.ln2, block.mlp.W_in, block.mlp.b_in, d_axis=0)  # W_in: [d_model, d_mlp]
    fold(model.ln_final, model.unembed.W_U, model.unembed.b_U, d_axis=0)  # W_U: [d_model, d_vocab]

    model.cfg.normalization_type = "LNPre"
    for block in model.blocks:
        block.ln1 = LayerNormPre(model.cfg)
        if not model.cfg.attn_only:
            block.ln2 = LayerNormPre(model.cfg)
    model.ln_final = LayerNormPre(model.cfg)
    model.setup()  # the new LayerNormPre hook points need their names
    return model


@torch.no_grad()
def center_writing_weights(model: HookedTransformer) -> HookedTransformer:
    """In place: make everything written to the residual stream mean-zero over d_model
    (W_E, W_pos, W_O, b_O, W_out, b_out). Needs normalization_type "LN" or "LNPre"."""
    check_model(model, HookedTransformer)
    if model.cfg.normalization_type not in ("LN", "LNPre"):
        raise ValueError(
            "center_writing_weights needs a LayerNorm before every reader of the residual stream "
            f"(normalization_type 'LN' or 'LNPre'), but this model has {model.cfg.normalization_type!r}"
        )
    writers: list[torch.Tensor] = [model.embed.W_E, model.pos_embed.W_pos]
    for block in model.blocks:
        writers += [block.attn.W_O, block.attn.b_O]
        if not model.cfg.attn_only:
            writers += [block.mlp.W_out, block.mlp.b_out]
    for W in writers:  # d_model is the last axis of each
        W -= W.mean(-1, keepdim=True)
    return model


@torch.no_grad()
def center_unembed(model: HookedTransformer) -> HookedTransformer:
    """In place: make W_U [d_model, d_vocab] and b_U [d_vocab] mean-zero over the vocabulary."""
    check_model(model, HookedTransformer)
    model.unembed.W_U.sub_(model.unembed.W_U.mean(-1, keepdim=True))
    model.unembed.b_U.sub_(model.unembed.b_U.mean())
    return model


@torch.no_grad()
def fold_value_biases(model: HookedTransformer) -> HookedTransformer:
    """In place: move b_V into b_O (b_O += sum_h b_V[h] @ W_O[h]; b_V = 0)."""
    check_model(model, HookedTransformer)
    for block in model.blocks:
        attn = block.attn
        attn.b_O.add_(torch.einsum("he,hed->d", attn.b_V, attn.W_O))
        attn.b_V.zero_()
    return model


_fold_layer_norm, _center_writing_weights, _center_unembed, _fold_value_biases = (
    fold_layer_norm, center_writing_weights, center_unembed, fold_value_biases)


def process_weights_(
    model: HookedTransformer,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
) -> HookedTransformer:
    """In place: the TransformerLens weight processing. Returns the model.

    Writing weights are only centred when the model has a LayerNorm (LN or LNPre); with
    normalization_type None that step is skipped, since there the mean is not dead weight.
    """
    check_model(model, HookedTransformer)
    if fold_ln:
        _fold_layer_norm(model)
    if center_writing_weights and model.cfg.normalization_type in ("LN", "LNPre"):
        _center_writing_weights(model)
    if center_unembed:
        _center_unembed(model)
    if fold_value_biases:
        _fold_value_biases(model)
    return model


def process_weights(model: HookedTransformer, **kwargs: bool) -> HookedTransformer:
    """A processed copy of ``model`` (which is left unchanged, hooks included); the keyword
    arguments are those of ``process_weights_``. The copy has no hooks attached."""
    check_model(model, HookedTransformer)
    return process_weights_(copy_model(model), **kwargs)
