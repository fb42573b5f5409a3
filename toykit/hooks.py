"""Hook points: named places in a model where activations can be read or replaced.

The semantics follow TransformerLens, so that what you learn here carries over:

- A ``HookPoint`` is an identity module placed wherever an activation is worth naming.
- A hook function is ``fn(activation, hook) -> None | replacement``; ``hook.name`` says where
  it fired. Returning a tensor replaces the activation for the rest of the forward pass.
- ``HookedRootModule`` names every hook point after its attribute path and offers
  ``add_hook``, ``reset_hooks``, the ``hooks(...)`` context manager, ``run_with_hooks`` and
  ``run_with_cache``. Temporary hooks are removed even when the forward pass raises.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, Union

import torch
import torch.nn as nn

from toykit.cache import ActivationCache

# Called as fn(activation, hook=hook_point): TransformerLens passes the hook point by keyword.
HookFn = Callable[[torch.Tensor, "HookPoint"], torch.Tensor | None]
NameFilter = Union[None, str, Sequence[str], Callable[[str], bool]]  # noqa: UP007 (runtime alias)


class HookPoint(nn.Module):
    """An identity module that calls the hook functions attached to it.

    Forward hooks see the activation; backward hooks see the gradient of the loss with
    respect to it. ``name`` is set by the root model; give it here for a hook point used on
    its own (a checker calling a learner's hook, say).
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name
        self._handles: list[tuple[torch.utils.hooks.RemovableHandle, bool]] = []

    def add_hook(
        self, hook: HookFn | None = None, dir: str = "fwd", is_permanent: bool = False, *, fn: HookFn | None = None
    ) -> torch.utils.hooks.RemovableHandle:
        """Attach ``hook(activation, hook)``; dir is "fwd" or "bwd". Returns a handle whose
        ``.remove()`` detaches just this hook. The function may be passed as ``hook=``
        (TransformerLens's keyword) or ``fn=``."""
        fn = _one_hook_fn(hook, fn)
        if dir == "fwd":

            def forward_hook(module: nn.Module, inputs: tuple, output: torch.Tensor):
                result = fn(output, hook=self)  # type: ignore[call-arg]  # see HookFn: hook= by keyword
                if result is not None:
                    self._check_replacement(result, output, fn)
                return result

            handle = self.register_forward_hook(forward_hook)
        elif dir == "bwd":

            def backward_hook(module: nn.Module, grad_input: tuple, grad_output: tuple):
                result = fn(grad_output[0], hook=self)  # type: ignore[call-arg]  # see HookFn
                if result is not None:
                    self._check_replacement(result, grad_output[0], fn)
                    return (result,)
                return None

            handle = self.register_full_backward_hook(backward_hook)
        else:
            raise ValueError(f"add_hook: dir must be 'fwd' or 'bwd', got {dir!r}")
        self._handles.append((handle, is_permanent))
        return handle

    def remove_handle(self, handle: torch.utils.hooks.RemovableHandle) -> None:
        handle.remove()
        self._handles = [(h, p) for h, p in self._handles if h is not handle]

    def _check_replacement(self, new: object, old: torch.Tensor, fn: Callable) -> None:
        name = getattr(fn, "__name__", repr(fn))
        if not isinstance(new, torch.Tensor):
            raise TypeError(
                f"hook {name!r} at {self.name!r} returned {type(new).__name__}; "
                "a hook must return None or a tensor to replace the activation"
            )
        if new.shape != old.shape:
            raise ValueError(
                f"hook {name!r} at {self.name!r} returned shape {list(new.shape)}, "
                f"but the activation has shape {list(old.shape)}"
            )

    def remove_hooks(self, including_permanent: bool = False) -> None:
        kept: list[tuple[torch.utils.hooks.RemovableHandle, bool]] = []
        for handle, permanent in self._handles:
            if permanent and not including_permanent:
                kept.append((handle, permanent))
            else:
                handle.remove()
        self._handles = kept

    @property
    def has_hooks(self) -> HasHooks:
        """Whether any hook would fire here, whether added with add_hook or with PyTorch's own
        register_*_hook. Models use this to skip work that only a hook could see.

        Works both as toykit's property (``if hp.has_hooks:``) and as TransformerLens's method
        (``hp.has_hooks()``, ``hp.has_hooks(dir="fwd", including_permanent=False)``)."""
        return HasHooks(self)

    def _has_hooks(self, dir: str = "both", including_permanent: bool = True) -> bool:
        if dir not in ("fwd", "bwd", "both"):
            raise ValueError(f"has_hooks: dir must be 'fwd', 'bwd' or 'both', got {dir!r}")
        fwd = bool(self._forward_hooks or self._forward_pre_hooks)
        bwd = bool(self._backward_hooks or self._backward_pre_hooks)
        if not including_permanent:
            # Only hooks added with add_hook know whether they are permanent.
            temporary = [h for h, permanent in self._handles if not permanent]
            fwd = any(h.id in self._forward_hooks for h in temporary)
            bwd = any(h.id in self._backward_hooks for h in temporary)
        return {"fwd": fwd, "bwd": bwd, "both": fwd or bwd}[dir]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class HasHooks:
    """The answer of ``HookPoint.has_hooks``: truthy like a bool, and callable like
    TransformerLens's ``has_hooks(dir="both", including_permanent=True)``."""

    __slots__ = ("_point",)

    def __init__(self, point: HookPoint) -> None:
        self._point = point

    def __bool__(self) -> bool:
        return self._point._has_hooks()

    def __call__(self, dir: str = "both", including_permanent: bool = True, level: int | None = None) -> bool:
        if level is not None:
            raise ValueError("has_hooks: toykit has no hook context levels; pass level=None")
        return self._point._has_hooks(dir, including_permanent)

    def __eq__(self, other: object) -> bool:
        return bool(self) == other if isinstance(other, bool) else NotImplemented

    def __hash__(self) -> int:
        return hash(bool(self))

    def __repr__(self) -> str:
        return repr(bool(self))


def _one_hook_fn(hook: HookFn | None, fn: HookFn | None) -> HookFn:
    if hook is not None and fn is not None:
        raise TypeError("add_hook: pass the hook function once, as hook= (TransformerLens's name) or fn=")
    fn = hook if fn is None else fn
    if not callable(fn):
        raise TypeError(f"add_hook: the hook must be callable as fn(activation, hook), got {type(fn).__name__}")
    return fn


class HookedRootModule(nn.Module):
    """Base class for models with hook points. Call ``self.setup()`` at the end of __init__."""

    def setup(self) -> None:
        """Name every HookPoint after its attribute path, e.g. ``blocks.0.hook_pre``."""
        self.hook_dict: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    def hook_points(self) -> list[HookPoint]:
        return list(self.hook_dict.values())

    # -- finding hook points --------------------------------------------------------------

    def find_hook_points(self, name_or_filter: NameFilter) -> list[HookPoint]:
        """The hook points a name, a list of names or a filter ``name -> bool`` selects (None:
        all); a KeyError with suggestions for an unknown name."""
        if not hasattr(self, "hook_dict"):
            raise RuntimeError(f"{type(self).__name__}.__init__ must call self.setup()")
        if name_or_filter is None:
            return self.hook_points()
        if isinstance(name_or_filter, str):
            if name_or_filter not in self.hook_dict:
                raise KeyError(self.unknown_hook_message(name_or_filter))
            return [self.hook_dict[name_or_filter]]
        if callable(name_or_filter):
            return [hp for name, hp in self.hook_dict.items() if name_or_filter(name)]
        if isinstance(name_or_filter, Sequence):
            return [hp for name in name_or_filter for hp in self.find_hook_points(name)]
        raise TypeError(
            "a hook name must be a str, a list of str, or a callable name -> bool, "
            f"got {type(name_or_filter).__name__}"
        )

    def unknown_hook_message(self, name: str) -> str:
        """Why ``name`` is not a hook point of this model, with the closest names."""
        near = difflib.get_close_matches(name, list(self.hook_dict), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        return (
            f"unknown hook name {name!r} for {type(self).__name__}{hint} "
            f"(model.hook_dict lists all {len(self.hook_dict)})"
        )

    # -- adding and removing hooks ----------------------------------------------------------

    def add_hook(
        self, name_or_filter: NameFilter, hook: HookFn | None = None, dir: str = "fwd", is_permanent: bool = False,
        *, fn: HookFn | None = None,
    ) -> list[tuple[HookPoint, torch.utils.hooks.RemovableHandle]]:
        """Attach a hook function (``hook=``, TransformerLens's keyword, or ``fn=``) to one hook
        point (by name) or to every one a filter accepts. Returns ``(hook_point, handle)`` pairs
        for removing exactly these hooks later."""
        fn = _one_hook_fn(hook, fn)
        return [(hp, hp.add_hook(fn, dir=dir, is_permanent=is_permanent))
                for hp in self.find_hook_points(name_or_filter)]

    def reset_hooks(self, including_permanent: bool = False) -> None:
        for hp in self.hook_points():
            hp.remove_hooks(including_permanent=including_permanent)

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[tuple[NameFilter, HookFn]] = (),
        bwd_hooks: Sequence[tuple[NameFilter, HookFn]] = (),
        reset_hooks_end: bool = True,
    ) -> Iterator[HookedRootModule]:
        """Context manager: the hooks are attached inside the block and removed on exit,
        even if the block raises. Hooks attached elsewhere are left alone."""
        added: list[tuple[HookPoint, torch.utils.hooks.RemovableHandle]] = []
        try:
            for name, fn in fwd_hooks:
                added += self.add_hook(name, fn, dir="fwd")
            for name, fn in bwd_hooks:
                added += self.add_hook(name, fn, dir="bwd")
            yield self
        finally:
            if reset_hooks_end:
                for hp, handle in added:
                    hp.remove_handle(handle)

    def run_with_hooks(
        self,
        *model_args: Any,
        fwd_hooks: Sequence[tuple[NameFilter, HookFn]] = (),
        bwd_hooks: Sequence[tuple[NameFilter, HookFn]] = (),
        reset_hooks_end: bool = True,
        **model_kwargs: Any,
    ) -> Any:
        """Run the model with temporary hooks: ``fwd_hooks=[(name_or_filter, fn), ...]``.

        With ``bwd_hooks`` you must call ``.backward()`` yourself, so pass
        ``reset_hooks_end=False`` and call ``model.reset_hooks()`` afterwards.
        """
        if bwd_hooks and reset_hooks_end:
            raise ValueError(
                "run_with_hooks: bwd_hooks fire during .backward(), after this call returns; "
                "pass reset_hooks_end=False and call model.reset_hooks() when done"
            )
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end=reset_hooks_end):
            return self(*model_args, **model_kwargs)

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: NameFilter = None,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        **model_kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """Run the model and return ``(output, cache)``, caching every activation that
        ``names_filter`` accepts (all of them when None). Cached tensors are detached."""
        store: dict[str, torch.Tensor] = {}

        def save(act: torch.Tensor, hook: HookPoint) -> None:
            act = act.detach()
            assert hook.name is not None  # setup() names every hook point of a root module
            store[hook.name] = act if device is None else act.to(device)

        with self.hooks(fwd_hooks=[(names_filter, save)]):
            out = self(*model_args, **model_kwargs)
        # Order the cache like the model's own hook points, not by firing order.
        ordered = {name: store[name] for name in self.hook_dict if name in store}
        cache = ActivationCache(ordered, self)
        if remove_batch_dim:
            cache = cache.remove_batch_dim()
        return out, cache


M = TypeVar("M", bound=HookedRootModule)


def check_model(model: object, kind: type[M], hook_names: Sequence[str] = ()) -> M:
    """``model`` itself, when it is a ``kind`` (HookedRootModule, or a subclass such as
    HookedTransformer where a function needs a language model) with every hook point in
    ``hook_names``. Otherwise a TypeError saying what was expected, or a KeyError with the
    closest hook names. The one check of "is this a model" for every toykit function."""
    if not isinstance(model, kind):
        raise TypeError(f"model must be a {kind.__name__} (from {kind.__module__}), got {type(model).__name__}")
    for name in hook_names:
        if not isinstance(name, str):
            raise TypeError(f"hook names must be strings, got {name!r}")
        model.find_hook_points(name)
    return model
