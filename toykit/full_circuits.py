"""A head's circuits read end to end: from tokens (or positions) in, to tokens out.

A head's OV circuit W_OV = W_V W_O and QK circuit W_QK = W_Q W_Kᵀ act on the residual stream
(d_model x d_model). Multiplying in the embedding and unembedding turns them into tables a
human can read (Elhage et al., 2021):

- full OV circuit, W_E W_OV W_U: [d_vocab, d_vocab]. Row s: how attending to a token s
  changes every output logit. A copying head (such as an induction head) has a large
  diagonal: attending to s raises the logit of s.
- positional QK circuit, W_pos W_QK W_posᵀ: [n_ctx, n_ctx]. Row q: which key positions a
  query at position q prefers, from positions alone. A previous-token head peaks at q - 1.
- K-composition circuit, W_E W_QK^dst (W_E W_OV^src)ᵀ: [d_vocab, d_vocab]. Row t: which key
  tokens the destination head's query for token t matches *through what the source head
  wrote at the key*. When the source is a previous-token head, a key whose previous token is
  t is matched: exactly what an induction head needs, so the diagonal is large.

These products ignore LayerNorm's per-position scale and the other paths through the model;
they are good approximations for small attention-only models. Pass a model processed with
``toykit.weight_processing.process_weights`` so that LayerNorm's weights are folded in. All
functions return ``FactoredMatrix`` objects (nothing d_vocab x d_vocab is formed until you ask
for ``.AB``); ``top_1_accuracy`` scores how diagonal a circuit is.
"""

from __future__ import annotations

import torch

from toykit.factored_matrix import FactoredMatrix
from toykit.transformer import HookedTransformer

__all__ = ["full_ov_circuit", "k_composition_circuit", "positional_qk_circuit", "top_1_accuracy"]


def _check_head(model: HookedTransformer, layer: int, head: int, what: str = "") -> None:
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a HookedTransformer, got {type(model).__name__}")
    L, H = model.cfg.n_layers, model.cfg.n_heads
    for name, value, n in ((f"{what}layer", layer, L), (f"{what}head", head, H)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
            raise ValueError(f"{name} must be an int in [0, {n}), got {value!r}")


def full_ov_circuit(model: HookedTransformer, layer: int, head: int) -> FactoredMatrix:
    """W_E W_OV[layer, head] W_U: [d_vocab (attended-to token), d_vocab (output logit)]."""
    _check_head(model, layer, head)
    return model.W_E @ model.OV[layer, head] @ model.W_U


def positional_qk_circuit(model: HookedTransformer, layer: int, head: int) -> FactoredMatrix:
    """W_pos W_QK[layer, head] W_posᵀ: [n_ctx (query position), n_ctx (key position)].

    Unscaled attention scores from the positional embeddings alone (divide by sqrt(d_head)
    for the model's scale; keys after the query are masked in the model).
    """
    _check_head(model, layer, head)
    return model.W_pos @ model.QK[layer, head] @ model.W_pos.T


def k_composition_circuit(model: HookedTransformer, src: tuple[int, int], dst: tuple[int, int]) -> FactoredMatrix:
    """W_E W_QK^dst (W_E W_OV^src)ᵀ: [d_vocab (query token), d_vocab (token the src head
    moved into the key position)].

    src, dst: (layer, head) with src's layer before dst's.
    """
    for name, pair in (("src", src), ("dst", dst)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name} must be a (layer, head) pair, got {pair!r}")
        _check_head(model, *pair, what=f"{name} ")
    if src[0] >= dst[0]:
        raise ValueError(f"the src head's layer must come before the dst head's, got src={src!r}, dst={dst!r}")
    written = model.W_E @ model.OV[src[0], src[1]]  # [d_vocab, d_model]: what src writes per moved token
    return model.W_E @ model.QK[dst[0], dst[1]] @ written.T


def top_1_accuracy(circuit: torch.Tensor | FactoredMatrix) -> float:
    """The fraction of rows whose largest entry is on the diagonal.

    circuit: [n, m] with n <= m (a tensor or FactoredMatrix), e.g. a full OV circuit, where
    row s is the output logits when the head attends to token s. Row i counts as correct when
    argmax_j circuit[i, j] == i.
    """
    if isinstance(circuit, FactoredMatrix):
        circuit = circuit.AB
    if not isinstance(circuit, torch.Tensor):
        raise TypeError(f"circuit must be a torch.Tensor or a FactoredMatrix, got {type(circuit).__name__}")
    if circuit.ndim != 2 or circuit.shape[0] > circuit.shape[1]:
        raise ValueError(f"circuit must have shape [n, m] with n <= m, got {list(circuit.shape)}")
    rows = torch.arange(circuit.shape[0], device=circuit.device)
    return (circuit.argmax(dim=1) == rows).float().mean().item()
