"""Directional ablation: remove one direction from everything the model writes to its residual stream.

Arditi et al. (2024), "Refusal in Language Models Is Mediated by a Single Direction", find a
direction r whose removal switches a behaviour off. *Directional ablation* (their Section 2.4)
replaces every residual-stream activation x by

    x' = x - r̂ r̂ᵀ x        (r̂ = r / ‖r‖)

at every layer and every token position, so that the model can never represent r. Their
Section 4.1 (Eq. 5) does the same thing with no hooks at all: *weight orthogonalisation*
projects r out of every matrix that writes to the residual stream, W' = W - r̂ r̂ᵀ W, which
gives the same model as a permanent edit of its weights.

Two ways to do it here, which agree to float rounding (tests/test_directional_ablation.py):

- ``directional_ablation_hooks(model, direction)``: hooks for ``model.hooks(...)`` or
  ``run_with_hooks``.
- ``orthogonalize_weights(model, direction)``: an edited copy of the model, each residual-stream
  write edited by ``orthogonalize_matrix``.

Which hook points? The residual stream is a sum of writes: the token and position embeddings,
then each block's attention output and MLP output. Removing r from each write
(``hook_embed``, ``hook_pos_embed``, ``blocks.{l}.hook_attn_out``, ``blocks.{l}.hook_mlp_out``)
leaves every residual state without an r component: each ``hook_resid_pre`` and
``hook_resid_mid`` (the paper's x⁽ˡ⁾ and x̃⁽ˡ⁾) and also the last ``hook_resid_post``, which
the unembedding reads. The authors' code ablates the same thing, at each block's input and at
each attention and MLP output. Hooking only ``hook_resid_pre`` and ``hook_resid_mid`` would let
the last MLP write r straight into the logits. One hook per kind of write also mirrors the
weight edit one for one:

================================  ======================
hook                              weights orthogonalised
================================  ======================
hook_embed                        W_E
hook_pos_embed                    W_pos
blocks.{l}.hook_attn_out          W_O, b_O
blocks.{l}.hook_mlp_out           W_out, b_out
================================  ======================

The paper lists the embedding, positional-embedding, attention-out and MLP-out matrices (its
models have no output biases). toykit's blocks add b_O and b_out to the residual stream too,
so they are orthogonalised as well; without that the weight edit would not equal the hooks.
Per-head outputs (``attn.hook_result``, when switched on) are not hooked: only their sum
reaches the residual stream, so ablating ``hook_attn_out`` is enough.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from toykit.hooks import check_model
from toykit.transformer import HookedTransformer, copy_model
from toykit.validation import check_tensor

__all__ = [
    "ablate_direction",
    "directional_ablation_hooks",
    "orthogonalize_matrix",
    "orthogonalize_weights",
    "unit_direction",
]

HookFn = Callable[[torch.Tensor, object], torch.Tensor]


def unit_direction(direction: object, d_model: int) -> torch.Tensor:
    """direction [d_model] (any non-zero length, finite, floating point) -> r̂ [d_model], unit length.

    Raises a clear error naming ``direction`` for a non-tensor, a wrong shape, an integer
    dtype, non-finite entries or a (numerically) zero vector.
    """
    check_tensor("direction", direction, [d_model], dtype="float")
    assert isinstance(direction, torch.Tensor)  # check_tensor raised for anything else
    if not torch.isfinite(direction).all():
        raise ValueError("direction must have finite entries (no NaN or inf)")
    norm = direction.double().norm()
    if norm < 1e-12:
        raise ValueError(f"direction must be non-zero, got norm {norm.item():.3g}: there is no direction to remove")
    return direction / norm.to(direction.dtype)


def ablate_direction(x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """x - r̂ r̂ᵀ x: x without its component along direction (Arditi et al. 2024, Section 2.4).

    x: [..., d_model]; direction: [d_model], need not be unit length. Returns a new tensor of
    x's shape and dtype; x is not modified.

    >>> x = torch.tensor([[3.0, 4.0]])
    >>> ablate_direction(x, torch.tensor([2.0, 0.0]))
    tensor([[0., 4.]])
    """
    check_tensor("x", x, dtype="float")
    if x.ndim == 0:
        raise ValueError("x must have a last axis of size d_model, got a 0-dim tensor")
    r = unit_direction(direction, x.shape[-1]).to(x)
    return x - (x @ r)[..., None] * r


def orthogonalize_matrix(W: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """W - (W r̂) r̂ᵀ: a weight that can no longer write along direction (Arditi et al. 2024, Eq. 5).

    W: [..., d_model], a weight whose last axis writes into the residual stream, right-multiplied
        as in TransformerLens (W_E, W_pos, W_O, W_out, and the biases b_O, b_out).
    direction: [d_model], need not be unit length.
    The paper writes W - r̂ r̂ᵀ W for its left-multiplied [d_model, ...] layout; here the d_model
    axis is the last one, so every row of W loses its r̂ component (``ablate_direction`` of the
    rows). Computed in float64 and rounded once to W's dtype, so the edit adds no rounding error
    of its own. Returns a new tensor of W's shape and dtype; W is not modified.

    >>> orthogonalize_matrix(torch.tensor([[3.0, 4.0], [1.0, 2.0]]), torch.tensor([0.0, 5.0]))
    tensor([[3., 0.],
            [1., 0.]])
    """
    check_tensor("W", W, dtype="float")
    if W.ndim == 0:
        raise ValueError("W must have a last axis of size d_model, got a 0-dim tensor")
    unit_direction(direction, W.shape[-1])  # the checks, with errors that name `direction`
    r = unit_direction(direction.double(), W.shape[-1]).to(W.device)  # normalised in float64 too
    return ablate_direction(W.double(), r).to(W.dtype)


def directional_ablation_hooks(model: HookedTransformer, direction: torch.Tensor) -> list[tuple[str, HookFn]]:
    """Forward hooks that project direction out of every write to the residual stream.

    model: a HookedTransformer; direction: [d_model], any non-zero length.
    Returns [(hook_name, hook_fn), ...] on hook_embed, hook_pos_embed and every block's
    hook_attn_out and hook_mlp_out (no MLP hooks for attn_only models), for
    ``model.hooks(fwd_hooks=...)`` or ``model.run_with_hooks(tokens, fwd_hooks=...)``.
    Afterwards every residual-stream activation, at every layer and position, has no
    component along direction (see the module docstring for why these hook points).
    Each hook returns a new tensor and never edits its input.
    """
    check_model(model, HookedTransformer)
    r = unit_direction(direction, model.cfg.d_model).detach().clone()

    def ablate(act: torch.Tensor, hook: object) -> torch.Tensor:
        """act: [batch, pos, d_model] -> a new [batch, pos, d_model] without its r component."""
        unit = r.to(act)
        return act - (act @ unit)[..., None] * unit

    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(model.cfg.n_layers):
        names.append(f"blocks.{layer}.hook_attn_out")
        if not model.cfg.attn_only:
            names.append(f"blocks.{layer}.hook_mlp_out")
    return [(name, ablate) for name in names]


@torch.no_grad()
def orthogonalize_weights(model: HookedTransformer, direction: torch.Tensor) -> HookedTransformer:
    """A copy of model whose residual-stream writes have direction projected out (Arditi et al.
    2024, Section 4.1, Eq. 5: W' = W - r̂ r̂ᵀ W, for the weights' d_model side).

    model: a HookedTransformer (left unchanged); direction: [d_model], any non-zero length.
    Edits W_E [d_vocab, d_model], W_pos [n_ctx, d_model], and in every block W_O
    [n_heads, d_head, d_model], b_O [d_model], W_out [d_mlp, d_model] and b_out [d_model], each
    with ``orthogonalize_matrix`` (in float64, rounded once to the model's dtype).
    Returns a new model on the same device, equal (to float rounding) to running model with
    ``directional_ablation_hooks(model, direction)``.
    """
    check_model(model, HookedTransformer)
    unit_direction(direction, model.cfg.d_model)  # fail before copying the model
    edited = copy_model(model)

    def orthogonalize(weight: torch.Tensor) -> None:
        weight.copy_(orthogonalize_matrix(weight, direction))

    orthogonalize(edited.embed.W_E)
    orthogonalize(edited.pos_embed.W_pos)
    for block in edited.blocks:
        orthogonalize(block.attn.W_O)
        orthogonalize(block.attn.b_O)
        if not model.cfg.attn_only:
            orthogonalize(block.mlp.W_out)
            orthogonalize(block.mlp.b_out)
    return edited
