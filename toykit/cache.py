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

    # -- residual-stream decompositions (TransformerLens semantics) ----------------------------
    #
    # These need ``self.model`` to be a HookedTransformer. ``pos_slice`` and ``batch_slice``
    # are None (keep all), an int (select one, dropping that dim, as TransformerLens does) or a
    # slice. A "stack" has a leading component dim: [n_components, batch, pos, d_model].

    def _transformer(self) -> Any:
        cfg = getattr(self.model, "cfg", None)
        if cfg is None or not hasattr(cfg, "n_layers") or not hasattr(cfg, "normalization_type"):
            raise ValueError(
                "this method needs the cache of a HookedTransformer (cache.model is "
                f"{type(self.model).__name__})"
            )
        return self.model

    def _layer_arg(self, layer: int | None, name: str = "layer") -> int:
        n_layers = self._transformer().cfg.n_layers
        if layer is None or layer == -1:
            return n_layers
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer <= n_layers:
            raise ValueError(f"{name} must be None, -1 or an int in [0, n_layers={n_layers}], got {layer!r}")
        return layer

    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: int | slice | None = None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
        """The residual stream as it accumulates, up to the input of block ``layer``.

        layer: None, -1 or n_layers -> every resid_pre plus the final resid_post (the input
            of the unembedding), labelled "0_pre", ..., "final_post"; k -> resid_pre of blocks
            0..k (so the last entry is the input to block k).
        incl_mid: also include resid_mid of each block before ``layer`` ("{l}_mid").
        mlp_input: also include resid_mid of block ``layer`` itself (the input to its MLP).
        apply_ln: scale every entry by the cached LayerNorm scale of the layer it feeds
            (ln_final at the end, else ln1, or ln2 with mlp_input), see apply_ln_to_stack.
        Returns [n_components, batch, pos, d_model] (pos dropped for an int pos_slice), and
        the labels if return_labels.
        """
        model = self._transformer()
        n_layers = model.cfg.n_layers
        layer = self._layer_arg(layer)
        if (incl_mid or mlp_input) and model.cfg.attn_only:
            raise ValueError("incl_mid / mlp_input need resid_mid, which an attn_only model does not have")
        components, labels = [], []
        for l in range(layer + 1):
            if l == n_layers:
                components.append(self[("resid_post", n_layers - 1)])
                labels.append("final_post")
                continue
            components.append(self[("resid_pre", l)])
            labels.append(f"{l}_pre")
            if (incl_mid and l < layer) or (mlp_input and l == layer):
                components.append(self[("resid_mid", l)])
                labels.append(f"{l}_mid")
        stack = torch.stack([_slice(c, pos_slice, -2) for c in components])
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input=mlp_input, pos_slice=pos_slice,
                                           has_batch_dim=self.has_batch_dim)
        return (stack, labels) if return_labels else stack

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: int | slice | None = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
        """Split the input of block ``layer`` into what each earlier component wrote.

        Components, in order: "embed", "pos_embed" (if incl_embeds), then "{l}_attn_out" and
        "{l}_mlp_out" for each block l < layer (only attn or only mlp with mode="attn"/"mlp"),
        plus "{layer}_attn_out" with mlp_input. With mode="all" and incl_embeds the sum over
        components is resid_pre of ``layer`` (resid_mid with mlp_input; the final resid_post
        for layer None / -1 / n_layers). Biases stay inside attn_out / mlp_out.
        Returns [n_components, batch, pos, d_model] (and the labels if return_labels).
        """
        model = self._transformer()
        layer = self._layer_arg(layer)
        if mode not in ("all", "attn", "mlp"):
            raise ValueError(f"mode must be 'all', 'attn' or 'mlp', got {mode!r}")
        if mlp_input and layer == model.cfg.n_layers:
            raise ValueError(f"mlp_input=True needs a layer below n_layers={model.cfg.n_layers}")
        incl_attn = mode != "mlp"
        incl_mlp = mode != "attn" and not model.cfg.attn_only
        components, labels = [], []
        if incl_embeds:
            components += [self["hook_embed"], self["hook_pos_embed"]]
            labels += ["embed", "pos_embed"]
        for l in range(layer):
            if incl_attn:
                components.append(self[("attn_out", l)])
                labels.append(f"{l}_attn_out")
            if incl_mlp:
                components.append(self[("mlp_out", l)])
                labels.append(f"{l}_mlp_out")
        if mlp_input and incl_attn:
            components.append(self[("attn_out", layer)])
            labels.append(f"{layer}_attn_out")
        if not components:
            raise ValueError(f"decompose_resid(layer={layer}, mode={mode!r}, incl_embeds={incl_embeds}) is empty")
        stack = torch.stack([_slice(c, pos_slice, -2) for c in components])
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input=mlp_input, pos_slice=pos_slice,
                                           has_batch_dim=self.has_batch_dim)
        return (stack, labels) if return_labels else stack

    def stack_head_results(
        self,
        layer: int | None = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice: int | slice | None = None,
        apply_ln: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
        """What each attention head of blocks 0..layer-1 wrote into the residual stream.

        Uses cached ``hook_result`` when present, else computes z @ W_O per head from the
        cached ``hook_z`` and the model's current W_O. b_O is not included (it belongs to no
        head), so per layer: sum over heads + b_O = attn_out.
        layer: heads of blocks strictly before it; None / -1 / n_layers = all blocks.
        incl_remainder: append "remainder" = resid_pre of ``layer`` minus the sum of the heads,
            so the whole stack sums to that residual stream.
        Returns [layer * n_heads (+1), batch, pos, d_model] with labels "L{l}H{h}".
        """
        model = self._transformer()
        layer = self._layer_arg(layer)
        components, labels = [], []
        for l in range(layer):
            name = f"blocks.{l}.attn.hook_result"
            if name in self.cache_dict:
                result = self.cache_dict[name]
            else:
                W_O = model.blocks[l].attn.W_O.detach()  # [n_heads, d_head, d_model]
                z = self[("z", l)]  # [..., pos, n_heads, d_head]
                result = torch.einsum("...he,hed->...hd", z, W_O.to(z.device, z.dtype))
            result = _slice(result, pos_slice, -3)  # [..., n_heads, d_model]
            components.append(result.movedim(-2, 0))
            labels += [f"L{l}H{h}" for h in range(model.cfg.n_heads)]
        if components:
            stack = torch.cat(components)
        else:  # layer 0: no heads yet, an empty stack of the right shape
            embed = _slice(self["hook_embed"], pos_slice, -2)
            stack = embed.new_zeros((0, *embed.shape))
        if incl_remainder:
            resid = _slice(self._resid_into(layer), pos_slice, -2)
            stack = torch.cat([stack, (resid - stack.sum(0))[None]])
            labels.append("remainder")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice, has_batch_dim=self.has_batch_dim)
        return (stack, labels) if return_labels else stack

    def _resid_into(self, layer: int) -> torch.Tensor:
        """The residual stream entering block ``layer`` (the final one for layer = n_layers)."""
        n_layers = self._transformer().cfg.n_layers
        return self[("resid_post", n_layers - 1)] if layer == n_layers else self[("resid_pre", layer)]

    def apply_ln_to_stack(
        self,
        residual_stack: torch.Tensor,
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: int | slice | None = None,
        batch_slice: int | slice | None = None,
        has_batch_dim: bool = True,
    ) -> torch.Tensor:
        """Treat each component of a stack as input to one LayerNorm, using the cached scale.

        LayerNorm is not linear, but once the scale (one number per batch element and
        position, set by the *whole* residual stream) is fixed it is: centre each component
        and divide by the cached scale. Then the normalized components sum to the normalized
        residual stream, which is what direct logit attribution needs.

        residual_stack: [n_components, batch, pos, d_model] (without batch if has_batch_dim is
            False; without pos if the stack was built with an int pos_slice), already sliced
            by pos_slice (pos_slice here selects the matching cached scales); batch_slice is
            applied here, to both the stack and the scales.
        layer: None, -1 or n_layers -> ln_final; else ln1 of block ``layer`` (ln2 if
            mlp_input).
        Like TransformerLens, the LayerNorm's weight w and bias b are *not* applied, so the
        components sum to that LayerNorm's cached ``hook_normalized`` (the normalised input
        before w and b) for any model. Logits are linear in that sum only once w and b are
        folded into the next weights (``process_weights``), or for an LNPre model. With
        normalization_type None the stack is returned as is (batch_slice still applied).
        """
        model = self._transformer()
        layer = self._layer_arg(layer)
        if has_batch_dim:
            residual_stack = _slice(residual_stack, batch_slice, 1)
        if model.cfg.normalization_type is None:
            return residual_stack
        if layer == model.cfg.n_layers:
            name = "ln_final.hook_scale"
        else:
            name = f"blocks.{layer}.ln{2 if mlp_input else 1}.hook_scale"
        scale = _slice(self[name], pos_slice, -2)  # [batch, pos, 1] -> sliced
        if self.has_batch_dim:
            scale = _slice(scale, batch_slice, 0)
        centred = residual_stack - residual_stack.mean(dim=-1, keepdim=True)
        return centred / scale

    def logit_attrs(
        self,
        residual_stack: torch.Tensor,
        tokens: int | torch.Tensor,
        incorrect_tokens: int | torch.Tensor | None = None,
        pos_slice: int | slice | None = None,
        batch_slice: int | slice | None = None,
        has_batch_dim: bool = True,
    ) -> torch.Tensor:
        """Direct logit attribution: how much each component pushes up the logit of ``tokens``
        (minus that of ``incorrect_tokens``, if given), through the final LayerNorm.

        residual_stack: [n_components, batch, pos, d_model] (as for apply_ln_to_stack, which
            is applied with the final LayerNorm's cached scale).
        tokens: an int, or a tensor broadcasting against the stack's [batch, pos] dims; a
            [batch] tensor with a 4-D stack means one token per example (for every position).
        Returns [n_components, batch, pos]. For a processed model, the attributions of a full
        decomposition (decompose_resid() at the final layer) sum to logit - b_U at that token.
        """
        model = self._transformer()
        scaled = self.apply_ln_to_stack(residual_stack, -1, pos_slice=pos_slice, batch_slice=batch_slice,
                                        has_batch_dim=has_batch_dim)
        directions = model.tokens_to_residual_directions(tokens)  # [*tokens.shape, d_model]
        if incorrect_tokens is not None:
            t_shape = torch.as_tensor(tokens).shape
            i_shape = torch.as_tensor(incorrect_tokens).shape
            if t_shape != i_shape:
                raise ValueError(
                    f"tokens and incorrect_tokens must have the same shape, got {list(t_shape)} and {list(i_shape)}"
                )
            directions = directions - model.tokens_to_residual_directions(incorrect_tokens)
        directions = directions.to(scaled.device, scaled.dtype).detach()
        if (has_batch_dim and not isinstance(batch_slice, int) and scaled.ndim == 4 and directions.ndim == 2
                and directions.shape[0] == scaled.shape[1]):
            directions = directions[:, None, :]  # one token per example: broadcast over positions
        try:
            return (scaled * directions).sum(dim=-1)
        except RuntimeError as e:
            raise ValueError(
                f"logit_attrs: token directions of shape {list(directions.shape)} do not broadcast "
                f"against the (layer-normed) stack of shape {list(scaled.shape)}"
            ) from e


def _slice(x: torch.Tensor, sl: int | slice | None, dim: int) -> torch.Tensor:
    """Apply a pos/batch selection along ``dim``: None keeps all, an int selects (dropping the
    dim), a slice slices."""
    if sl is None:
        return x
    if isinstance(sl, bool) or not isinstance(sl, (int, slice)):
        raise TypeError(f"pos_slice / batch_slice must be None, an int or a slice, got {sl!r}")
    if isinstance(sl, int):
        return x.select(dim, sl)
    index = [slice(None)] * x.ndim
    index[dim] = sl
    return x[tuple(index)]
