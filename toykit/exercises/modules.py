"""Checking a learner's ``nn.Module`` classes against toykit's transformer modules.

A module exercise gives a class whose constructor takes a ``TransformerConfig`` and whose
parameters have toykit's names and shapes. ``module_check`` builds the learner's module for
each case, loads the state dict of toykit's module of the same kind holding random (not
initial) weights, runs both on the case's inputs and compares the outputs; a missing or
misnamed parameter, a wrong shape or dtype, or a forgotten ``super().__init__()`` each get
their own hint. Mistakes are written against toykit's module: ``wrong(module, cfg, *inputs)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from toykit import transformer as ref
from toykit.exercises.checking import DTYPE_HINT, Case, CheckFailure, Mistake, describe, mismatch, rng, run_check
from toykit.transformer import TransformerConfig

__all__ = [
    "KINDS",
    "NO_LN_HINT",
    "SameAsReference",
    "build_module",
    "copy_weights",
    "distinct_mistakes",
    "module_case",
    "module_check",
    "randomize",
    "reference_module",
    "require_class",
]


# Each parameter's shape in the names of the config, for hints.
SHAPES = {
    "w": "[d_model]", "b": "[d_model]", "W_E": "[d_vocab, d_model]", "W_pos": "[n_ctx, d_model]",
    "W_Q": "[n_heads, d_model, d_head]", "W_K": "[n_heads, d_model, d_head]",
    "W_V": "[n_heads, d_model, d_head]", "W_O": "[n_heads, d_head, d_model]",
    "b_Q": "[n_heads, d_head]", "b_K": "[n_heads, d_head]", "b_V": "[n_heads, d_head]",
    "b_O": "[d_model]", "W_in": "[d_model, d_mlp]", "b_in": "[d_mlp]", "W_out": "[d_mlp, d_model]",
    "b_out": "[d_model]", "W_U": "[d_model, d_vocab]", "b_U": "[d_vocab]",
}

NO_LN_HINT = (
    "with cfg.normalization_type=None the model has no LayerNorm: make ln1 and ln2 (and the "
    "model's ln_final) nn.Identity() in that case, e.g. `LayerNorm(cfg) if "
    "cfg.normalization_type == 'LN' else nn.Identity()`"
)


class SameAsReference(Exception):
    """Raised by a mistake that gives the right answer on a case, so that it is skipped."""


def distinct_mistakes(mistakes: list[Mistake], reference: Callable, atol: float, rtol: float) -> list[Mistake]:
    """The mistakes, each skipped on cases where it agrees with the reference: a learner who is
    only slightly off there must not be told about a mistake that makes no difference."""

    def wrap(wrong: Callable) -> Callable:
        def run(*args: Any, **kwargs: Any) -> Any:
            out = wrong(*args, **kwargs)
            if mismatch(reference(*args, **kwargs), out, atol, rtol) is None:
                raise SameAsReference
            return out
        return run

    return [Mistake(m.hint, wrap(m.wrong)) for m in mistakes]


def require_class(check: str, cls: object) -> None:
    if isinstance(cls, nn.Module) or not callable(cls):
        raise TypeError(f"{check} expects your class itself (e.g. {check}(LayerNorm)), "
                        f"not {type(cls).__name__} object")


# -- toykit's modules with random weights ------------------------------------------------------

KINDS: dict[str, Callable[[TransformerConfig], nn.Module]] = {
    "ln": ref.LayerNorm, "embed": ref.Embed, "pos_embed": ref.PosEmbed, "attn": ref.Attention,
    "mlp": ref.MLP, "block": ref.TransformerBlock, "unembed": ref.Unembed, "model": ref.HookedTransformer,
}


@torch.no_grad()
def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random weights of a useful size: O(1) activations, attention neither uniform nor one-hot
    (score std about 1.4), non-zero biases and LayerNorm weights away from 1, so that a missing
    bias or scale shows."""
    g = rng(seed)
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
        if leaf == "w":
            p.copy_(1 + 0.3 * noise)
        elif leaf in ("W_E", "W_pos"):
            p.copy_(noise)
        elif leaf.startswith("W_"):
            gain = 1.2 if leaf in ("W_Q", "W_K") else 1.0
            p.copy_(noise * gain / math.sqrt(p.shape[-2]))
        else:  # biases, LayerNorm b
            p.copy_(0.3 * noise)
    return module.eval()


def reference_module(kind: str, cfg: TransformerConfig, seed: int) -> nn.Module:
    return randomize(KINDS[kind](cfg), seed)


# -- building the learner's module -------------------------------------------------------------


def build_module(exercise: str, case: str, cls: Callable, cfg: TransformerConfig) -> nn.Module:
    try:
        module = cls(cfg)
    except AttributeError as err:
        if "Module.__init__" not in str(err):
            raise
        raise CheckFailure(exercise, case, f"your class raised AttributeError: {err}",
                           "call super().__init__() first thing in __init__, before creating "
                           "parameters or submodules") from err
    if not isinstance(module, nn.Module):
        raise CheckFailure(exercise, case, f"{getattr(cls, '__name__', cls)}(cfg) gave {describe(module)}",
                           "your class must subclass nn.Module: `class Name(nn.Module):`")
    return module


def _shape_words(name: str, shape: torch.Size) -> str:
    symbolic = SHAPES.get(name.rsplit(".", 1)[-1])
    return f"{symbolic} = {list(shape)}" if symbolic else str(list(shape))


def copy_weights(exercise: str, case: str, module: nn.Module, reference: nn.Module,
                  cfg: TransformerConfig) -> None:
    """Load the reference's state dict into the learner's module, or say precisely why not."""
    want, have = reference.state_dict(), module.state_dict()
    nested = any("." in k for k in want)
    for name, value in want.items():
        if name not in have:
            where = ("; name the submodules as toykit does (embed, pos_embed, blocks, ln_final, "
                     "unembed; in a block ln1, attn, ln2, mlp) so that state dicts match") if nested else ""
            raise CheckFailure(
                exercise, case, f"missing parameter {name!r}; your parameters: {sorted(have) or 'none'}",
                f"your module has no parameter {name} of shape {_shape_words(name, value.shape)}: create "
                f"it in __init__ as an nn.Parameter with exactly this name{where}")
        if have[name].shape != value.shape:
            raise CheckFailure(
                exercise, case, f"parameter {name!r} has shape {list(have[name].shape)}",
                f"{name} must have shape {_shape_words(name, value.shape)}, got {list(have[name].shape)}: "
                "toykit's weights are right-multiplied (x @ W), as in TransformerLens")
        if have[name].dtype != value.dtype:
            raise CheckFailure(
                exercise, case, f"parameter {name!r} has dtype {have[name].dtype}, expected {value.dtype}",
                f"create every parameter with the config's dtype (dtype=cfg.dtype, {value.dtype} here): a "
                f"{have[name].dtype} module turns the float32 residual stream into {have[name].dtype}, and the "
                "next module's float32 weights then fail on it")
    extra = [k for k in have if k not in want]
    if extra:
        buffers = {n for n, _ in module.named_buffers()}
        if cfg.normalization_type is None and any(k.rsplit(".", 1)[-1] in ("w", "b") for k in extra):
            hint = NO_LN_HINT
        elif all(k in buffers for k in extra):
            hint = ("your module saves buffers in its state dict, so toykit's state dict would not load "
                    "into it: register them with register_buffer(name, tensor, persistent=False)")
        else:
            hint = (f"your module has parameters toykit's has not: {extra}; use only toykit's "
                    f"parameters ({sorted(want)})")
        raise CheckFailure(exercise, case, f"unexpected entries in your state dict: {extra}", hint)
    module.load_state_dict(want)


def module_check(exercise: str, cls: Callable, kind: str, cases: list[Case], mistakes: list[Mistake],
                  hint: str, atol: float = 1e-5, rtol: float = 1e-4,
                  explain_error: Callable[[str, Exception], str | None] | None = None) -> None:
    """Compare ``cls(cfg)`` holding toykit's random weights with toykit's module, case by case.

    Each case's args are (cfg, seed, *inputs) and its kwargs hold the case name; mistakes take
    the same arguments. explain_error(case, error) may name the cause of an error the module raises.
    """

    def learner(cfg: TransformerConfig, seed: int, *inputs: torch.Tensor, case: str) -> Any:
        module = build_module(exercise, case, cls, cfg)
        copy_weights(exercise, case, module, reference_module(kind, cfg, seed), cfg)
        module.eval()
        try:
            with torch.no_grad():
                out = module(*inputs)
        except Exception as err:
            special = explain_error(case, err) if explain_error else None
            if special is None:
                raise
            raise CheckFailure(exercise, case, f"your code raised {type(err).__name__}: {err}", special) from err
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dtype != cfg.dtype:
            raise CheckFailure(exercise, case, f"your module returned dtype {out.dtype} for a model of dtype "
                               f"{cfg.dtype}", f"keep the model's dtype, cfg.dtype ({cfg.dtype}): the next "
                               "module adds your output to the residual stream or multiplies it by its own "
                               f"{cfg.dtype} weights. {DTYPE_HINT}")
        return out

    def reference(cfg: TransformerConfig, seed: int, *inputs: torch.Tensor, case: str) -> Any:
        with torch.no_grad():
            return reference_module(kind, cfg, seed)(*inputs)

    def on_reference(wrong: Callable) -> Callable:
        # A mistake is written as wrong(reference_module, cfg, *inputs), using toykit's weights.
        def run(cfg: TransformerConfig, seed: int, *inputs: torch.Tensor, case: str) -> Any:
            with torch.no_grad():
                return wrong(reference_module(kind, cfg, seed), cfg, *inputs)
        return run

    mistakes = distinct_mistakes([Mistake(m.hint, on_reference(m.wrong)) for m in mistakes], reference, atol, rtol)
    run_check(exercise, learner, reference, cases, mistakes, hint=hint, atol=atol, rtol=rtol)


def module_case(name: str, cfg: TransformerConfig, seed: int, *inputs: torch.Tensor) -> Case:
    return Case(name, args=(cfg, seed, *inputs), kwargs={"case": name})
