"""Gradient-based saliency: how much each input token moves one output logit, to first order.

An observational attribution method, cheap but blind to how the model computes its answer;
Chapter 05 contrasts it with probes and Chapter 06 with activation patching.
"""

from __future__ import annotations

import torch

from toykit.validation import check_tensor

__all__ = ["gradient_x_input"]


def gradient_x_input(model, tokens: torch.Tensor, answer_ids: torch.Tensor) -> torch.Tensor:
    """Gradient × input saliency of each input token for the answer at the last position.

    tokens: [batch, pos]; answer_ids: [batch]. For each row, the logit of answer_ids at the
    last position is differentiated with respect to the token embeddings (hook_embed, without
    the positional embedding); the saliency of token t is Σ_d grad[t, d] · embed[t, d].
    Returns [batch, pos].

    For images (the gradient with respect to the pixels themselves, one number per pixel and
    channel, for any image classifier) see ``toykit.attribution.gradient_x_input``.
    """
    dims = check_tensor("tokens", tokens, ["batch", "pos"], dtype="int")
    check_tensor("answer_ids", answer_ids, ["batch"], dtype="int", dims=dims)
    stored = {}

    def keep(embed: torch.Tensor, hook) -> torch.Tensor:
        embed = embed.detach().requires_grad_(True)
        stored["embed"] = embed
        return embed

    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", keep)])
        rows = torch.arange(tokens.shape[0], device=logits.device)
        picked = logits[rows, -1, answer_ids.to(logits.device)]
        (grad,) = torch.autograd.grad(picked.sum(), stored["embed"])
    return (grad * stored["embed"]).sum(-1).detach()
