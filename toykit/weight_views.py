"""TransformerLens's weight attributes on a whole model: ``model.W_E``, ``model.W_Q``, ``model.QK``...

The per-layer weights are stacked over blocks, with a leading n_layers axis: ``model.W_Q`` is
torch.stack([block.attn.W_Q for block in model.blocks]), [n_layers, n_heads, d_model, d_head]:
a new tensor on each read (gradients still flow to the blocks' parameters), so it is read-only;
to edit a weight, edit the block's parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from toykit.factored_matrix import FactoredMatrix

if TYPE_CHECKING:
    from toykit.transformer import Blocks, Embed, PosEmbed, Unembed
    from toykit.transformer_config import TransformerConfig

__all__ = ["LayerStack", "WeightViews"]


class LayerStack:
    """A read-only model attribute: one weight of every block, stacked over layers.

    ``W_Q = LayerStack("attn", "n_heads, d_model, d_head")`` makes ``model.W_Q`` the tensor
    torch.stack([block.attn.W_Q for block in model.blocks]): [n_layers, n_heads, d_model, d_head].
    """

    def __init__(self, component: str, shape: str) -> None:
        self.component = component  # "attn" or "mlp"
        self.__doc__ = f"[n_layers, {shape}]"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, model: WeightViews | None, owner: type | None = None) -> torch.Tensor:
        if model is None:  # looked up on the class (help(), introspection): the descriptor itself
            return self  # type: ignore[return-value]  # only instances get a tensor
        if self.component == "mlp" and model.cfg.attn_only:
            raise ValueError("this model is attn_only: it has no MLP weights (W_in, b_in, W_out, b_out)")
        return torch.stack([getattr(getattr(block, self.component), self.name) for block in model.blocks])

    def __set__(self, model: WeightViews, value: object) -> None:
        raise AttributeError(f"{self.name} is read-only: it stacks blocks.{{l}}.{self.component}.{self.name}")


class WeightViews:
    """The weight attributes of a HookedTransformer (a mixin: it reads the model's cfg,
    embed, pos_embed, blocks and unembed)."""

    cfg: TransformerConfig
    embed: Embed
    pos_embed: PosEmbed
    blocks: Blocks
    unembed: Unembed

    @property
    def W_E(self) -> torch.Tensor:
        """[d_vocab, d_model]"""
        return self.embed.W_E

    @property
    def W_pos(self) -> torch.Tensor:
        """[n_ctx, d_model]"""
        return self.pos_embed.W_pos

    @property
    def W_U(self) -> torch.Tensor:
        """[d_model, d_vocab]"""
        return self.unembed.W_U

    @property
    def b_U(self) -> torch.Tensor:
        """[d_vocab]"""
        return self.unembed.b_U

    W_Q = LayerStack("attn", "n_heads, d_model, d_head")
    W_K = LayerStack("attn", "n_heads, d_model, d_head")
    W_V = LayerStack("attn", "n_heads, d_model, d_head")
    W_O = LayerStack("attn", "n_heads, d_head, d_model")
    b_Q = LayerStack("attn", "n_heads, d_head")
    b_K = LayerStack("attn", "n_heads, d_head")
    b_V = LayerStack("attn", "n_heads, d_head")
    b_O = LayerStack("attn", "d_model")
    W_in = LayerStack("mlp", "d_model, d_mlp")
    b_in = LayerStack("mlp", "d_mlp")
    W_out = LayerStack("mlp", "d_mlp, d_model")
    b_out = LayerStack("mlp", "d_model")

    @property
    def QK(self) -> FactoredMatrix:
        """Each head's bilinear form on (query-side, key-side) residual vectors,
        W_Q W_K^T, kept factored: [n_layers, n_heads, d_model, d_model]."""
        return FactoredMatrix(self.W_Q, self.W_K.mT)

    @property
    def OV(self) -> FactoredMatrix:
        """Each head's map from a source residual vector to what it writes, W_V W_O,
        kept factored: [n_layers, n_heads, d_model, d_model]."""
        return FactoredMatrix(self.W_V, self.W_O)

    @property
    def W_QK(self) -> torch.Tensor:
        """Dense QK circuits, ``self.QK.AB``: [n_layers, n_heads, d_model, d_model]."""
        return self.QK.AB

    @property
    def W_OV(self) -> torch.Tensor:
        """Dense OV circuits, ``self.OV.AB``: [n_layers, n_heads, d_model, d_model]."""
        return self.OV.AB

    def tokens_to_residual_directions(self, tokens: int | torch.Tensor) -> torch.Tensor:
        """The unembedding direction of each token: W_U[:, tokens] moved last,
        [*tokens.shape, d_model]. A logit is (final normalized residual) . direction + b_U."""
        tokens = torch.as_tensor(tokens, device=self.W_E.device)  # the model's device
        if tokens.is_floating_point() or (tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.cfg.d_vocab)):
            raise ValueError(f"tokens must be integers in [0, d_vocab={self.cfg.d_vocab})")
        return self.W_U.T[tokens]
