"""TransformerLens's switches for optional hook points, and why a hook name can be missing.

A switched hook point exists only while its switch (a ``cfg.use_*`` field) is on, so that an
unused one costs nothing. Turn one on with ``model.set_use_attn_in(True)`` and so on: the
setter adds or removes the hook point in every block and re-registers the hook names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toykit.hooks import HookedRootModule, HookPoint

if TYPE_CHECKING:
    from toykit.transformer import Blocks
    from toykit.transformer_config import TransformerConfig

__all__ = ["HOOK_SWITCHES", "HookSwitches"]

# {switch: the hook points it adds to each block, as paths inside the block}
HOOK_SWITCHES = {
    "use_attn_result": ("attn.hook_result",),
    "use_attn_in": ("hook_attn_in",),
    "use_split_qkv_input": ("hook_q_input", "hook_k_input", "hook_v_input"),
    "use_hook_mlp_in": ("hook_mlp_in",),
}


class HookSwitches(HookedRootModule):
    """A HookedRootModule with ``cfg`` and ``blocks`` whose optional hook points come and go
    with TransformerLens's ``set_use_*`` switches. HookedTransformer is one."""

    cfg: TransformerConfig
    blocks: Blocks

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Turn the per-head ``blocks.{l}.attn.hook_result`` [b, p, n_heads, d_model] on or off."""
        self._switch_hooks("use_attn_result", use_attn_result)

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """Turn ``blocks.{l}.hook_attn_in`` [b, p, n_heads, d_model] on or off."""
        self._switch_hooks("use_attn_in", use_attn_in)

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Turn ``blocks.{l}.hook_q_input`` / ``hook_k_input`` / ``hook_v_input``
        [b, p, n_heads, d_model] on or off."""
        self._switch_hooks("use_split_qkv_input", use_split_qkv_input)

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """Turn ``blocks.{l}.hook_mlp_in`` [b, p, d_model] on or off (not on attn_only models)."""
        if use_hook_mlp_in and self.cfg.attn_only:
            raise ValueError("set_use_hook_mlp_in: this model is attn_only, so it has no MLP input to hook")
        self._switch_hooks("use_hook_mlp_in", use_hook_mlp_in)

    def _switch_hooks(self, switch: str, on: bool) -> None:
        if not isinstance(on, bool):
            raise TypeError(f"set_{switch}: expected a bool, got {on!r}")
        setattr(self.cfg, switch, on)
        for block in self.blocks:
            for path in HOOK_SWITCHES[switch]:
                owner, _, leaf = path.rpartition(".")
                module = block.get_submodule(owner)
                if on and not hasattr(module, leaf):
                    setattr(module, leaf, HookPoint())
                elif not on and hasattr(module, leaf):
                    delattr(module, leaf)
        self.setup()  # re-register hook names

    def check_switches(self) -> None:
        """Raise if a ``cfg.use_*`` field was changed directly, so that the hook points no
        longer match it (the forward pass would then skip or misplace them)."""
        for switch, paths in HOOK_SWITCHES.items():
            owner, _, leaf = paths[0].rpartition(".")
            if self.blocks and getattr(self.cfg, switch) != hasattr(self.blocks[0].get_submodule(owner), leaf):
                raise RuntimeError(f"cfg.{switch} was changed directly; call model.set_{switch}(flag)")

    def unknown_hook_message(self, name: str) -> str:
        msg = super().unknown_hook_message(name)
        leaf = name.rsplit(".", 1)[-1]
        switch = next((s for s, paths in HOOK_SWITCHES.items() if any(p.rsplit(".", 1)[-1] == leaf for p in paths)),
                      None)
        if switch is not None and not getattr(self.cfg, switch):
            msg += f"; {leaf} exists only after model.set_{switch}(True)"
        elif self.cfg.attn_only and leaf in ("hook_resid_mid", "hook_mlp_out", "hook_pre", "hook_post", "hook_mlp_in"):
            msg += "; this model is attn_only, so it has no MLPs"
        elif self.cfg.normalization_type is None and name.split(".")[-1] in ("hook_scale", "hook_normalized"):
            msg += "; this model has normalization_type=None, so it has no LayerNorm hooks"
        return msg
