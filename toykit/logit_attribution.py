"""Direct logit attribution: which components push the logit of the next token, and by how much.

The residual stream at the last layer is a sum of components (embeddings, each head's
output, ...). After the final LayerNorm (whose scale, once the input is fixed, is just a
number per position) the logits are linear in that sum, so each component's *direct*
contribution to a token's logit is its dot product with that token's unembedding column
W_U[:, token]. This is direct logit attribution (DLA; Elhage et al., 2021). It sees only the
direct path: a head whose output is read by later heads gets no credit here for what those
heads do with it.

``next_token_attribution`` gives the DLA of each component to the *next* token at every
position of a language-model batch. (For a two-way choice, attribute to the difference of
two unembedding columns with ``ActivationCache.logit_attrs(..., incorrect_tokens=...)``; the
matching metric is ``toykit.patching.logit_diff``.)

For exact attributions, take the components from a model processed with
``toykit.weight_processing.process_weights`` (LayerNorm weights folded into W_U) and scale
them with the cached final LayerNorm scale: ``cache.stack_head_results(apply_ln=True)`` or
``cache.apply_ln_to_stack``. ``ActivationCache.logit_attrs`` is the general-purpose version.
"""

from __future__ import annotations

import torch

from toykit.validation import check_tensor

__all__ = ["next_token_attribution"]


def next_token_attribution(components: torch.Tensor, W_U: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Direct logit attribution to the next token.

    components: [n_components, batch, pos, d_model], already scaled by the final LayerNorm
        (see the module docstring); W_U: [d_model, d_vocab]; tokens: [batch, pos].
    Returns [n_components, batch, pos - 1]: entry [c, b, i] = components[c, b, i] ·
    W_U[:, tokens[b, i + 1]], component c's direct push on the logit of the token that
    actually comes next. b_U belongs to no component and is left out.
    """
    dims = check_tensor("components", components, ["n_components", "batch", "pos", "d_model"], dtype="float")
    check_tensor("W_U", W_U, ["d_model", "d_vocab"], dtype="float", dims=dims)
    check_tensor("tokens", tokens, ["batch", "pos"], dtype="int", dims=dims)
    if dims["pos"] < 2:
        raise ValueError(f"tokens must have at least 2 positions to have a next token, got {list(tokens.shape)}")
    directions = W_U.T[tokens[:, 1:].to(W_U.device)]  # [batch, pos - 1, d_model]
    return (components[:, :, :-1] * directions.to(components.dtype)).sum(-1)
