"""A hooked GPT-style transformer, small enough to read in one sitting.

The architecture, parameter names, shapes and hook names follow TransformerLens, so a state
dict's names match and everything learned here carries over. Weights are right-multiplied
(``x @ W``). Shapes use b = batch, p = pos (q_pos/k_pos inside attention), d = d_model,
h = n_heads, e = d_head.

    tokens [b, p]
      -> embed (W_E) + pos_embed (W_pos)                       hook_embed, hook_pos_embed
      -> n_layers x TransformerBlock:
           resid_pre -> + attn(ln1(resid_pre)) -> resid_mid     blocks.{l}.hook_resid_pre, hook_attn_out, hook_resid_mid
           resid_mid -> + mlp(ln2(resid_mid))  -> resid_post    blocks.{l}.hook_mlp_out, hook_resid_post
      -> ln_final -> unembed (W_U, b_U) -> logits [b, p, d_vocab]

Hook points and shapes:

==============================================================  ======================
hook                                                            shape
==============================================================  ======================
hook_embed, hook_pos_embed                                      [b, p, d_model]
blocks.{l}.hook_resid_pre / hook_resid_mid / hook_resid_post    [b, p, d_model]
blocks.{l}.ln1 / ln2, ln_final .hook_scale                      [b, p, 1]
blocks.{l}.ln1 / ln2, ln_final .hook_normalized (1)             [b, p, d_model]
blocks.{l}.hook_attn_in (only with use_attn_in)                 [b, p, n_heads, d_model]
blocks.{l}.hook_q_input / hook_k_input / hook_v_input (2)       [b, p, n_heads, d_model]
blocks.{l}.attn.hook_q / hook_k / hook_v / hook_z               [b, p, n_heads, d_head]
blocks.{l}.attn.hook_attn_scores / hook_pattern                 [b, n_heads, q_pos, k_pos]
blocks.{l}.attn.hook_result (only with use_attn_result)         [b, p, n_heads, d_model]
blocks.{l}.hook_attn_out, blocks.{l}.hook_mlp_out               [b, p, d_model]
blocks.{l}.hook_mlp_in (only with use_hook_mlp_in)              [b, p, d_model]
blocks.{l}.mlp.hook_pre / hook_post                             [b, p, d_mlp]
unembed.hook_in / unembed.hook_out                              [b, p, d_model] / [b, p, d_vocab]
==============================================================  ======================

(1) The normalised input (x - mean) / scale, *before* the LayerNorm's weight and bias, as in
TransformerLens 3.x. (2) Only with use_split_qkv_input; with it or use_attn_in, ln1's hooks
see [b, p, n_heads, ...] and fire once each for q, k and v.

With ``attn_only`` there is no ln2, mlp, hook_resid_mid or hook_mlp_out (TransformerLens
registers a hook_mlp_out there that never fires); with ``normalization_type=None`` the ln modules are
identities without hooks; with "LNPre" they centre and scale but have no weights.
The optional hook points exist only while their switch is on (``model.set_use_attn_in(True)``
and so on), so they cost nothing when off.

Two shortcuts keep the model as fast as a plain PyTorch GPT, and switch off when a hook could
tell the difference: attention uses PyTorch's fused ``scaled_dot_product_attention`` unless a
hook is attached to ``hook_attn_scores`` or ``hook_pattern`` (``run_with_cache`` attaches one
when it caches them), and LayerNorm uses ``F.layer_norm`` unless one is attached to
``hook_scale`` or ``hook_normalized``. Both paths compute the same maths, equal to float rounding.

What is not architecture lives in modules of its own: the config and its checks
(``toykit.transformer_config``), the checks of forward's arguments (``toykit.transformer_inputs``),
the ``set_use_*`` switches (``toykit.hook_switches``), the weight attributes such as ``model.W_Q``
and ``model.OV`` (``toykit.weight_views``) and ``generate`` (``toykit.sampling``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
import torch.nn as nn
import torch.nn.functional as F

from toykit.hook_switches import HOOK_SWITCHES, HookSwitches
from toykit.hooks import HookPoint
from toykit.runtime import make_generator, resolve_device
from toykit.sampling import generate
from toykit.transformer_config import ACT_FNS, NORMALIZATION_TYPES, TransformerConfig
from toykit.transformer_inputs import check_forward_args
from toykit.weight_views import LayerStack, WeightViews

__all__ = [  # the names defined here, and those TransformerLens users expect to import from here
    "ACT_FNS", "HOOK_SWITCHES", "NORMALIZATION_TYPES", "Attention", "Blocks", "Embed", "HookedTransformer",
    "LayerNorm", "LayerNormPre", "LayerStack", "MLP", "PosEmbed", "TransformerBlock", "TransformerConfig",
    "Unembed", "copy_model", "lm_cross_entropy_loss", "make_norm", "per_head_linear",
]


# -- components ------------------------------------------------------------------------------


class LayerNormPre(nn.Module):
    """Centre and scale to unit RMS, with no weights: the LayerNorm left after folding.

    x: [..., d_model] -> [..., d_model]. hook_scale [..., 1] is sqrt(var(x) + eps);
    hook_normalized [..., d_model] is (x - mean(x)) / scale. (The leading dims are [b, p], or
    [b, p, n_heads] for ln1 with split q/k/v inputs.)
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hook_scale = HookPoint()  # [b, p, 1]
        self.hook_normalized = HookPoint()  # [b, p, d_model]

    def normalize(self, x: torch.Tensor, w: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
        """(x - mean(x)) / scale * w + b, with scale = sqrt(var(x) + eps) over d_model.

        As in TransformerLens 3.x, hook_normalized sees (x - mean(x)) / scale *before* w and b.
        """
        if not (self.hook_scale.has_hooks or self.hook_normalized.has_hooks):
            # Nothing reads or patches the scale or the normalised input: use the fused kernel
            # (same maths, ~3x faster with its backward; equal to float rounding).
            return F.layer_norm(x, x.shape[-1:], w, b, self.cfg.eps)
        # Written out so that the scale and the normalised input pass through their hook
        # points: patching them (or freezing the scale, as direct logit attribution does)
        # changes the output. (The norm and addcmul avoid full-size temporaries.)
        x = x - x.mean(-1, keepdim=True)
        mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square() / x.shape[-1]
        scale = self.hook_scale((mean_square + self.cfg.eps).sqrt())
        normalized = self.hook_normalized(x / scale)
        return normalized if w is None or b is None else torch.addcmul(b, normalized, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x)


class LayerNorm(LayerNormPre):
    """LayerNormPre followed by an elementwise affine map: w [d_model], b [d_model].

    hook_normalized holds the normalised input before w and b are applied, exactly as in
    TransformerLens 3.x; the block's output is hook_normalized * w + b.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__(cfg)
        self.w = nn.Parameter(torch.ones(cfg.d_model, dtype=cfg.dtype))
        self.b = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x, self.w, self.b)


def make_norm(cfg: TransformerConfig) -> nn.Module:
    if cfg.normalization_type == "LN":
        return LayerNorm(cfg)
    if cfg.normalization_type == "LNPre":
        return LayerNormPre(cfg)
    return nn.Identity()


class Embed(nn.Module):
    """Token embedding. W_E: [d_vocab, d_model]. tokens [b, p] -> [b, p, d_model]."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # The same as W_E[tokens]; F.embedding's backward is the faster scatter-add on CPU.
        return F.embedding(tokens, self.W_E)


class PosEmbed(nn.Module):
    """Learned positional embedding. W_pos: [n_ctx, d_model]. tokens [b, p] -> [b, p, d_model]."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, pos = tokens.shape
        # A real copy rather than a broadcast view, so that hooks may edit it in place.
        return self.W_pos[:pos].repeat(batch, 1, 1)


def per_head_linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [..., d_model] @ W [h, d_model, e] + b [h, e] -> [..., h, e]: every head's projection.

    The same as einsum("...d,hde->...he", x, W) + b, written as one fused matmul-and-add over
    all heads at once ([N, d_model] @ [d_model, h*e]), which is measurably faster on CPU.
    Attention computes q, k and v together by passing W_Q, W_K, W_V concatenated: h = 3 * n_heads.
    """
    h, d, e = W.shape
    flat = torch.addmm(b.reshape(h * e), x.reshape(-1, d), W.transpose(0, 1).reshape(d, h * e))
    return flat.view(*x.shape[:-1], h, e)


class Attention(nn.Module):
    """Causal multi-head self-attention, all heads at once.

    W_Q, W_K, W_V: [n_heads, d_model, d_head]; b_Q, b_K, b_V: [n_heads, d_head];
    W_O: [n_heads, d_head, d_model]; b_O: [d_model].
    x: [b, p, d_model] -> [b, p, d_model].
    """

    mask: torch.Tensor  # a buffer, [n_ctx, n_ctx]

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d, e, dtype=cfg.dtype))
        self.W_K = nn.Parameter(torch.empty(h, d, e, dtype=cfg.dtype))
        self.W_V = nn.Parameter(torch.empty(h, d, e, dtype=cfg.dtype))
        self.W_O = nn.Parameter(torch.empty(h, e, d, dtype=cfg.dtype))
        self.b_Q = nn.Parameter(torch.zeros(h, e, dtype=cfg.dtype))
        self.b_K = nn.Parameter(torch.zeros(h, e, dtype=cfg.dtype))
        self.b_V = nn.Parameter(torch.zeros(h, e, dtype=cfg.dtype))
        self.b_O = nn.Parameter(torch.zeros(d, dtype=cfg.dtype))
        # True above the diagonal = a key in the future, which a query may not attend to. A
        # buffer moves with model.to(device); not persistent, so state dicts hold only weights.
        future = torch.triu(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", future, persistent=False)
        self.hook_q = HookPoint()  # [b, p, h, e]
        self.hook_k = HookPoint()  # [b, p, h, e]
        self.hook_v = HookPoint()  # [b, p, h, e]
        self.hook_attn_scores = HookPoint()  # [b, h, q_pos, k_pos], masked
        self.hook_pattern = HookPoint()  # [b, h, q_pos, k_pos]
        self.hook_z = HookPoint()  # [b, p, h, e]
        if cfg.use_attn_result:
            self.hook_result = HookPoint()  # [b, p, h, d_model]

    def forward(self, x: torch.Tensor, key_input: torch.Tensor | None = None,
                value_input: torch.Tensor | None = None) -> torch.Tensor:
        """x: [b, p, d_model] -> [b, p, d_model]; or per-head inputs (use_attn_in /
        use_split_qkv_input): x = query_input, key_input, value_input, each [b, p, h, d_model]."""
        if key_input is None:
            # One matmul for all of q, k and v (as nanoGPT's c_attn): fewer, larger kernels.
            W_QKV, b_QKV = torch.cat([self.W_Q, self.W_K, self.W_V]), torch.cat([self.b_Q, self.b_K, self.b_V])
            qkv = per_head_linear(x, W_QKV, b_QKV).unflatten(-2, (3, self.cfg.n_heads))  # [b, p, 3, h, e]
            # Indexing, not unbind: a hook may edit q, k or v in place, which unbind's views forbid.
            q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        else:
            # Head i reads only its own copy of the input: [b, p, h, d] x [h, d, e] -> [b, p, h, e].
            q = torch.einsum("bphd,hde->bphe", x, self.W_Q) + self.b_Q
            k = torch.einsum("bphd,hde->bphe", key_input, self.W_K) + self.b_K
            v = torch.einsum("bphd,hde->bphe", value_input, self.W_V) + self.b_V
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if self.hook_attn_scores.has_hooks or self.hook_pattern.has_hooks:
            z = self.hook_z(self.attend(q, k, v))
        else:
            # Nothing can see the scores or the pattern, so PyTorch's fused kernel may compute
            # the same softmax(q k^T / sqrt(d_head)) v without storing [b, h, q_pos, k_pos].
            z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True)
            z = self.hook_z(z.transpose(1, 2))
        if self.cfg.use_attn_result != hasattr(self, "hook_result"):
            raise RuntimeError("cfg.use_attn_result was changed directly; call model.set_use_attn_result(flag)")
        if self.cfg.use_attn_result:
            # Each head's write into the residual stream; attn_out is their sum plus b_O.
            result = self.hook_result(torch.einsum("bqhe,hed->bqhd", z, self.W_O))
            return result.sum(dim=2) + self.b_O
        # Fast path: one matmul over the concatenated heads, never forming [b, p, h, d_model].
        return torch.addmm(self.b_O, z.reshape(-1, self.cfg.n_heads * self.cfg.d_head),
                           self.W_O.reshape(-1, self.cfg.d_model)).view(*z.shape[:2], self.cfg.d_model)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention written out, firing hook_attn_scores and hook_pattern.

        q, k, v: [b, p, h, e] -> z: [b, p, h, e].
        """
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [b, h, p, e]
        # Scaling by 1/sqrt(d_head) keeps scores O(1) at init, so softmax starts out soft.
        # The in-place scale and mask are safe (matmul's backward needs only q and k) and
        # spare two [b, h, p, p] temporaries.
        scores = (q @ k.transpose(-1, -2)).mul_(1 / math.sqrt(self.cfg.d_head))
        n = q.shape[2]
        scores = self.hook_attn_scores(scores.masked_fill_(self.mask[:n, :n], float("-inf")))
        pattern = self.hook_pattern(scores.softmax(dim=-1))
        return (pattern @ v).transpose(1, 2)


class MLP(nn.Module):
    """Two-layer MLP. W_in: [d_model, d_mlp], b_in: [d_mlp], W_out: [d_mlp, d_model],
    b_out: [d_model]. x: [b, p, d_model] -> [b, p, d_model]."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.hook_pre = HookPoint()  # [b, p, d_mlp]
        self.hook_post = HookPoint()  # [b, p, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.linear(x, W.T, b) is x @ W + b in one fused kernel (addmm).
        pre = self.hook_pre(F.linear(x, self.W_in.T, self.b_in))
        post = self.hook_post(ACT_FNS[self.cfg.act_fn](pre))
        return F.linear(post, self.W_out.T, self.b_out)


class TransformerBlock(nn.Module):
    """Pre-norm residual block: resid += attn(ln1(resid)); resid += mlp(ln2(resid)).

    resid_pre: [b, p, d_model] -> resid_post: [b, p, d_model].
    """

    mlp: MLP  # absent when cfg.attn_only (as are ln2 and the MLP's hooks)
    ln2: nn.Module

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Defined in forward order, so that caches list activations in the order they happen.
        self.hook_resid_pre = HookPoint()
        if cfg.use_attn_in:
            self.hook_attn_in = HookPoint()  # [b, p, h, d_model]
        if cfg.use_split_qkv_input:
            self.hook_q_input = HookPoint()  # [b, p, h, d_model]
            self.hook_k_input = HookPoint()  # [b, p, h, d_model]
            self.hook_v_input = HookPoint()  # [b, p, h, d_model]
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg)
        self.hook_attn_out = HookPoint()
        if not cfg.attn_only:
            self.hook_resid_mid = HookPoint()
            if cfg.use_hook_mlp_in:
                self.hook_mlp_in = HookPoint()  # [b, p, d_model]
            self.ln2 = make_norm(cfg)
            self.mlp = MLP(cfg)
            self.hook_mlp_out = HookPoint()
        # TransformerLens 3.9 also registers hook_mlp_out (and hook_mlp_in) in attn_only blocks,
        # where they never fire. toykit leaves them out: a hook added there would silently do
        # nothing, whereas an unknown name raises an error that says the model has no MLP.
        self.hook_resid_post = HookPoint()

    def forward(self, resid_pre: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        resid_pre = self.hook_resid_pre(resid_pre)
        if cfg.use_attn_in or cfg.use_split_qkv_input:
            attn_out = self.attn(*(self.ln1(x) for x in self._per_head_inputs(resid_pre)))
        else:
            attn_out = self.attn(self.ln1(resid_pre))
        attn_out = self.hook_attn_out(attn_out)
        if cfg.attn_only:
            return self.hook_resid_post(resid_pre + attn_out)
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        # A copy, so that a hook editing the MLP's input in place leaves resid_mid alone.
        mlp_in = self.hook_mlp_in(resid_mid.clone()) if cfg.use_hook_mlp_in else resid_mid
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(mlp_in)))
        return self.hook_resid_post(resid_mid + mlp_out)

    def _per_head_inputs(self, resid_pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The query, key and value inputs [b, p, h, d_model]: a copy of resid_pre per head,
        through hook_attn_in and/or hook_q_input / hook_k_input / hook_v_input (with both
        switches on, q, k and v come from the split hooks, as in TransformerLens)."""
        def per_head() -> torch.Tensor:  # a real copy per head, so a hook may edit one head only
            return resid_pre[:, :, None, :].repeat(1, 1, self.cfg.n_heads, 1)

        if self.cfg.use_attn_in:
            attn_in = self.hook_attn_in(per_head())
        if not self.cfg.use_split_qkv_input:
            return attn_in, attn_in, attn_in
        return self.hook_q_input(per_head()), self.hook_k_input(per_head()), self.hook_v_input(per_head())


class Unembed(nn.Module):
    """Map the residual stream to logits. W_U: [d_model, d_vocab], b_U: [d_vocab].
    x: [b, p, d_model] -> logits [b, p, d_vocab]."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab, dtype=cfg.dtype))
        self.hook_in = HookPoint()  # [b, p, d_model]
        self.hook_out = HookPoint()  # [b, p, d_vocab]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_out(F.linear(self.hook_in(x), self.W_U.T, self.b_U))


if TYPE_CHECKING:

    class Blocks(nn.ModuleList):
        """What HookedTransformer.blocks holds, told to the type checker."""

        def __iter__(self) -> Iterator[TransformerBlock]: ...

        @overload
        def __getitem__(self, idx: slice) -> Blocks: ...

        @overload
        def __getitem__(self, idx: int) -> TransformerBlock: ...

        def __getitem__(self, idx: int | slice) -> TransformerBlock | Blocks: ...

else:
    Blocks = nn.ModuleList  # at run time, a plain nn.ModuleList of TransformerBlocks


# -- the model -------------------------------------------------------------------------------


class HookedTransformer(WeightViews, HookSwitches):
    """A GPT-style decoder-only transformer with a hook point on every activation.

    cfg: a TransformerConfig (or a dict of its fields).

    Call it on tokens [batch, pos] (int64; a 1-D tensor is treated as batch 1) to get logits
    [batch, pos, d_vocab]; see ``forward`` for losses and early stopping. ``run_with_cache``,
    ``run_with_hooks``, ``hooks(...)`` and ``add_hook`` come from HookedRootModule, the
    ``set_use_*`` switches from ``toykit.hook_switches.HookSwitches``, and ``W_E``, ``W_Q``
    (stacked over layers), ``QK``, ``OV`` and the other weight attributes from
    ``toykit.weight_views.WeightViews``.
    """

    def __init__(self, cfg: TransformerConfig | dict) -> None:
        super().__init__()
        if isinstance(cfg, dict):
            cfg = TransformerConfig(**cfg)
        if not isinstance(cfg, TransformerConfig):
            raise TypeError(f"HookedTransformer: cfg must be a TransformerConfig or a dict, got {type(cfg).__name__}")
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [b, p, d_model]
        self.pos_embed = PosEmbed(cfg)
        self.hook_pos_embed = HookPoint()  # [b, p, d_model]
        self.blocks = Blocks(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_final = make_norm(cfg)
        self.unembed = Unembed(cfg)
        self.init_weights()
        self.to(resolve_device(cfg.device))
        self.setup()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """Re-draw every weight matrix from N(0, init_range^2); biases 0, LayerNorm w 1.

        seed: None uses cfg.seed. Draws happen on the CPU in a fixed order, so the same seed
        gives the same weights on every device.
        """
        g = make_generator(self.cfg.seed if seed is None else seed)
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("W_"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * self.cfg.init_range)
            elif leaf == "w":
                p.fill_(1.0)
            else:  # biases b_*, LayerNorm b
                p.zero_()

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    @overload
    def forward(self, tokens: torch.Tensor, return_type: Literal["logits", "loss"] = "logits",
                stop_at_layer: int | None = None, loss_per_token: bool = False,
                start_at_layer: int | None = None) -> torch.Tensor: ...

    @overload
    def forward(self, tokens: torch.Tensor, return_type: Literal["both"], stop_at_layer: None = None,
                loss_per_token: bool = False, start_at_layer: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def forward(self, tokens: torch.Tensor, return_type: None, stop_at_layer: None = None,
                loss_per_token: bool = False, start_at_layer: int | None = None) -> None: ...

    @overload
    def forward(self, tokens: torch.Tensor, return_type: str | None, stop_at_layer: int,
                loss_per_token: bool = False, start_at_layer: int | None = None) -> torch.Tensor: ...

    def forward(
        self,
        tokens: torch.Tensor,
        return_type: str | None = "logits",
        stop_at_layer: int | None = None,
        loss_per_token: bool = False,
        start_at_layer: int | None = None,
    ) -> Any:
        """Run the model.

        tokens: [batch, pos] integer tensor with values in [0, d_vocab) and pos <= n_ctx. A 1-D
            tensor [pos] is treated as batch 1 (outputs keep the batch dim). Tokens on another
            device are moved to the model's.
        return_type: "logits" -> logits [batch, pos, d_vocab]; "loss" -> mean next-token
            cross-entropy (scalar); "both" -> (logits, loss); None -> None (hooks still fire).
        stop_at_layer: if given, run only blocks [0, stop_at_layer) and return the residual
            stream [batch, pos, d_model] there (the input to block stop_at_layer; 0 means just
            the embeddings; negative values count from the end). return_type is then ignored.
        loss_per_token: the loss is [batch, pos - 1] (position i predicts token i + 1)
            instead of its mean.
        start_at_layer: if given, ``tokens`` is instead the residual stream [batch, pos, d_model]
            at the input of block start_at_layer, and only the blocks from there on run (as in
            TransformerLens; for patching a late activation without recomputing early ones).
            return_type must then be "logits" or None, since a loss needs the tokens.
        """
        x, first, stop = check_forward_args(self, tokens, return_type, stop_at_layer, start_at_layer)
        if start_at_layer is None:
            resid = self.hook_embed(self.embed(x)) + self.hook_pos_embed(self.pos_embed(x))
        else:
            resid = x  # the residual stream at the input of block start_at_layer
        for block in self.blocks[first:stop]:
            resid = block(resid)
        if stop_at_layer is not None:
            return resid
        resid = self.ln_final(resid)
        if return_type is None:  # as in TransformerLens: every hook up to ln_final has fired
            return None
        logits = self.unembed(resid)
        if return_type == "logits":
            return logits
        loss = lm_cross_entropy_loss(logits, x, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    def generate(self, tokens: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 do_sample: bool = True, seed: int | None = None, stop_token: int | None = None) -> torch.Tensor:
        """Extend tokens [batch, pos] by up to max_new_tokens tokens: ``toykit.sampling.generate``."""
        return generate(self, tokens, max_new_tokens, temperature, top_k, do_sample, seed, stop_token)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"n_layers={c.n_layers}, d_model={c.d_model}, n_heads={c.n_heads}, d_mlp={c.d_mlp}, "
                f"d_vocab={c.d_vocab}, n_ctx={c.n_ctx}, act_fn={c.act_fn!r}, "
                f"normalization_type={c.normalization_type!r}, attn_only={c.attn_only}")


def lm_cross_entropy_loss(logits: torch.Tensor, tokens: torch.Tensor, per_token: bool = False) -> torch.Tensor:
    """Next-token cross-entropy: position i is scored on predicting tokens[:, i + 1].

    logits: [batch, pos, d_vocab], tokens: [batch, pos] -> scalar mean, or [batch, pos - 1].
    """
    batch, pos, d_vocab = logits.shape
    # Flattening to a contiguous [N, d_vocab] lets cross_entropy use its fast kernel.
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, d_vocab), tokens[:, 1:].reshape(-1), reduction="none")
    return nll.view(batch, pos - 1) if per_token else nll.mean()


def copy_model(model: HookedTransformer) -> HookedTransformer:
    """A new model with the same config and weights, on the same device, without any hooks."""
    cfg = dataclasses.replace(model.cfg, device=model.device)
    new = HookedTransformer(cfg)
    new.load_state_dict(model.state_dict())
    return new
