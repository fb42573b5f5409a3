"""Chapter 00, "How this course works": checkers for hooks and einops warm-ups.

Each ``check_<name>(fn)`` runs your ``fn`` and toykit's reference (the function of the same
name in this module) on seeded cases, prints one line on success, and raises
``CheckFailure`` with a hint otherwise.

Exercises:

- ``cache_hidden(model, x, layer)``: read a hidden activation with a hook.
- ``zero_ablate_hook(activation, hook, neurons)``: a hook that returns a replacement.
- ``merge_heads(z)``: ``einops.rearrange`` warm-up.
- ``batched_dot(a, b)``: ``einops.einsum`` warm-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import einops
import torch

from toykit.exercises.checking import Case, CheckFailure, ExerciseTable, Mistake, describe, rng, run_check
from toykit.hooks import HookedRootModule, HookPoint
from toykit.mlp import TinyMLP
from toykit.validation import check_tensor

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "batched_dot",
    "cache_hidden",
    "check_batched_dot",
    "check_cache_hidden",
    "check_merge_heads",
    "check_zero_ablate_hook",
    "merge_heads",
    "zero_ablate_hook",
]


# -- reference implementations ---------------------------------------------------------------


def cache_hidden(model: HookedRootModule, x: torch.Tensor, layer: int) -> torch.Tensor:
    """The hidden activation after the nonlinearity of block ``layer``, read with a hook.

    model: a TinyMLP (any model with ``blocks.{layer}.hook_post``).
    x: [batch, d_in] -> [batch, d_hidden]. No hooks are left on the model afterwards.
    """
    store: dict[str, torch.Tensor] = {}

    def save(activation: torch.Tensor, hook: HookPoint) -> None:
        store["act"] = activation.detach()

    model.run_with_hooks(x, fwd_hooks=[(f"blocks.{layer}.hook_post", save)])
    return store["act"]


def zero_ablate_hook(
    activation: torch.Tensor, hook: HookPoint, neurons: Sequence[int]
) -> torch.Tensor:
    """A forward hook that zero-ablates some neurons: use it as
    ``functools.partial(zero_ablate_hook, neurons=[...])``.

    activation: [..., d_hidden] (the neuron axis is the last one).
    neurons: indices into the last axis.
    Returns a new tensor, the same as ``activation`` except that the listed neurons are 0.
    The input is left unchanged, so a cache holding it stays correct.
    """
    check_tensor("activation", activation, dtype="float")
    if activation.ndim == 0:
        raise ValueError("activation must have at least one axis (the neuron axis)")
    d = activation.shape[-1]
    bad = [n for n in neurons if not isinstance(n, int) or not -d <= n < d]
    if bad:
        raise ValueError(f"neurons must be ints in [0, {d}) for an activation of shape "
                         f"{list(activation.shape)}, got {bad}")
    out = activation.clone()
    out[..., list(neurons)] = 0.0
    return out


def merge_heads(z: torch.Tensor) -> torch.Tensor:
    """Concatenate the heads: z: [batch, pos, n_heads, d_head] -> [batch, pos, n_heads * d_head].

    Head h occupies columns ``h * d_head`` to ``(h + 1) * d_head - 1`` of the result.
    """
    check_tensor("z", z, ["batch", "pos", "n_heads", "d_head"])
    return einops.rearrange(z, "b p h d -> b p (h d)")


def batched_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products: a, b: [batch, d] -> [batch], out[i] = sum_j a[i, j] * b[i, j]."""
    dims = check_tensor("a", a, ["batch", "d"])
    check_tensor("b", b, ["batch", "d"], dims=dims)
    return einops.einsum(a, b, "batch d, batch d -> batch")


# -- helpers ---------------------------------------------------------------------------------


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=rng(seed))


# -- cache_hidden ----------------------------------------------------------------------------

_LEFT_HOOKS_HINT = (
    "your function left hooks attached to the model, so they would fire on every later "
    "forward pass: use model.run_with_hooks(...) or the `with model.hooks(...)` block, which "
    "remove them for you, or call model.reset_hooks() at the end"
)


@EXERCISES.check(cache_hidden)
def check_cache_hidden(fn: Callable[[Any, torch.Tensor, int], torch.Tensor]) -> None:
    """Check ``fn(model, x, layer) -> [batch, d_hidden]``, your ``cache_hidden``, on seeded
    TinyMLPs."""
    exercise = "cache_hidden"

    def learner(model: TinyMLP, x: torch.Tensor, layer: int, case: str) -> torch.Tensor:
        try:
            out = fn(model, x, layer)
        finally:
            left = [name for name, hp in model.hook_dict.items() if hp.has_hooks]
            model.reset_hooks(including_permanent=True)
        if left:
            raise CheckFailure(exercise, case, f"hooks still attached after your function "
                               f"returned: {left}", _LEFT_HOOKS_HINT)
        if not isinstance(out, torch.Tensor):
            raise CheckFailure(
                exercise, case, f"expected a tensor [batch, d_hidden], got {describe(out)}",
                "return the stored tensor itself (e.g. store['act']), not the container "
                "you stored it in or the model's output")
        return out

    def reference(model: TinyMLP, x: torch.Tensor, layer: int, case: str) -> torch.Tensor:
        return cache_hidden(model, x, layer)

    def read(name: Callable[[int], str]) -> Callable[..., torch.Tensor]:
        def wrong(model: TinyMLP, x: torch.Tensor, layer: int, case: str) -> torch.Tensor:
            _, cache = model.run_with_cache(x, names_filter=name(layer))
            return cache[name(layer)]
        return wrong

    def model_output(model: TinyMLP, x: torch.Tensor, layer: int, case: str) -> torch.Tensor:
        return model(x)

    def cases() -> list[Case]:
        specs: list[tuple[str, dict[str, Any], int, int]] = [  # (case name, model kwargs, batch, layer)
            ("2 layers, layer 0", dict(d_in=3, d_hidden=6, d_out=2, n_layers=2, seed=1), 5, 0),
            ("2 layers, layer 1", dict(d_in=3, d_hidden=6, d_out=2, n_layers=2, seed=2), 5, 1),
            ("3 layers, layer 2", dict(d_in=4, d_hidden=5, d_out=3, n_layers=3, seed=3), 7, 2),
            ("tanh, layer 1", dict(d_in=2, d_hidden=8, d_out=4, n_layers=2, act_fn="tanh",
                                   seed=4), 6, 1),
            ("batch of one", dict(d_in=5, d_hidden=3, d_out=2, n_layers=1, seed=5), 1, 0),
        ]
        out = []
        for i, (name, kwargs, batch, layer) in enumerate(specs):
            model = TinyMLP(**kwargs, device="cpu")
            x = _randn(100 + i, batch, model.d_in)
            out.append(Case(name, args=(model, x, layer), kwargs={"case": name}))
        return out

    run_check(
        exercise, learner, reference, cases(),
        mistakes=[
            Mistake("you returned hook_pre, the activation *before* the nonlinearity: hook "
                    "'blocks.{layer}.hook_post' instead",
                    read(lambda layer: f"blocks.{layer}.hook_pre")),
            Mistake("you always read layer 0: build the hook name from the argument, "
                    "f'blocks.{layer}.hook_post'",
                    read(lambda layer: "blocks.0.hook_post")),
            Mistake("you read the next layer: layers count from 0, so block `layer` is "
                    "f'blocks.{layer}.hook_post'",
                    read(lambda layer: f"blocks.{layer + 1}.hook_post")),
            Mistake("you returned the model's output: return what your hook stored",
                    model_output),
        ],
        hint="a hook sees the activation as it passes: hook the activation after block "
             "`layer`'s nonlinearity, let the hook store what it sees somewhere that outlives "
             "it, run the model with the hook attached only for that run, and return what it stored",
    )


# -- zero_ablate_hook ------------------------------------------------------------------------

_RETURNED_NONE_HINT = (
    "your hook returned None, so the model would run on unchanged: build the ablated "
    "tensor and `return` it"
)
_IN_PLACE_NONE_HINT = (
    "you zeroed the activation in place and returned None: the exercise asks for a "
    "replacement, a new tensor that your hook returns, while the activation passed in "
    "stays unchanged"
)
_SIGNATURE_HINT = (
    "a HookPoint calls its hooks as fn(activation, hook=hook_point), and partial() passes "
    "neurons=...: name the parameters exactly (activation, hook, neurons)"
)
_IN_PLACE_HINT = (
    "your hook changed its input in place: a cache (or autograd) may hold that same tensor, "
    "so make the change on a copy and return the copy"
)


@EXERCISES.check(zero_ablate_hook)
def check_zero_ablate_hook(fn: Callable[..., torch.Tensor | None]) -> None:
    """Check ``fn(activation, hook, neurons) -> replacement``, your ``zero_ablate_hook``.

    The hook is called as a HookPoint calls it: ``fn(activation, hook=hp, neurons=...)``.
    """
    exercise = "zero_ablate_hook"

    def learner(activation: torch.Tensor, hook: HookPoint, neurons: list[int],
                case: str) -> torch.Tensor:
        before = activation.clone()
        try:
            out = fn(activation, hook=hook, neurons=neurons)
        except TypeError as err:
            if "keyword argument" not in str(err):
                raise
            raise CheckFailure(exercise, case, f"your hook raised TypeError: {err}",
                               _SIGNATURE_HINT) from err
        changed = not torch.equal(activation, before)
        if out is None:
            raise CheckFailure(exercise, case, "your hook returned None",
                               _IN_PLACE_NONE_HINT if changed else _RETURNED_NONE_HINT)
        if not isinstance(out, torch.Tensor):
            raise CheckFailure(exercise, case, f"your hook returned {describe(out)}",
                               "a hook must return None or a tensor shaped like its input")
        if changed:
            raise CheckFailure(exercise, case,
                               f"the activation passed in was modified: it was "
                               f"{describe(before)}\n     now {describe(activation)}",
                               _IN_PLACE_HINT)
        return out

    def reference(activation: torch.Tensor, hook: HookPoint, neurons: list[int],
                  case: str) -> torch.Tensor:
        return zero_ablate_hook(activation, hook=hook, neurons=neurons)

    def zero_rows(activation, hook, neurons, case):
        new = activation.clone()
        new[neurons] = 0.0
        return new

    def zero_axis_1(activation, hook, neurons, case):
        new = activation.clone()
        new[:, neurons] = 0.0
        return new

    def keep_only(activation, hook, neurons, case):
        new = torch.zeros_like(activation)
        new[..., neurons] = activation[..., neurons]
        return new

    def only_last(activation, hook, neurons, case):
        new = activation.clone()
        for n in neurons:
            new = activation.clone()
            new[..., n] = 0.0
        return new

    hp = HookPoint(name="blocks.0.hook_post")
    specs = [  # (case name, activation shape, neurons)
        ("[batch, d_hidden], two neurons", (8, 6), [1, 4]),
        ("[batch, d_hidden], one neuron", (5, 10), [7]),
        ("[batch, pos, d_hidden]", (2, 5, 4), [0, 3]),
        ("three neurons, unsorted", (4, 9), [8, 2, 5]),
        ("no neurons", (3, 4), []),
        ("every neuron", (3, 4), [0, 1, 2, 3]),
    ]
    cases = [Case(name, args=(_randn(200 + i, *shape), hp, neurons), kwargs={"case": name})
             for i, (name, shape, neurons) in enumerate(specs)]

    run_check(
        exercise, learner, reference, cases,
        mistakes=[
            Mistake("you zeroed rows of the batch axis (indexing activation[neurons]): neurons live "
                    "on the last axis, activation[..., neurons]", zero_rows),
            Mistake("you zeroed axis 1, which is the position axis when the activation is "
                    "[batch, pos, d_hidden]: index the last axis with activation[..., neurons]",
                    zero_axis_1),
            Mistake("you kept only the listed neurons and zeroed the rest: it is the other way "
                    "round", keep_only),
            Mistake("only the last neuron of the list is zero: are you cloning the activation "
                    "again inside the loop? Clone once, then zero every neuron", only_last),
        ],
        hint="return a copy of the activation in which the listed neurons (on the last axis) are 0 "
             "and everything else is unchanged",
    )


# -- merge_heads -----------------------------------------------------------------------------


@EXERCISES.check(merge_heads)
def check_merge_heads(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check your ``merge_heads``: ``fn(z: [batch, pos, n_heads, d_head])`` ->
    ``[batch, pos, n_heads * d_head]``."""
    shapes = [  # (case name, (batch, pos, n_heads, d_head))
        ("random", (2, 3, 4, 5)),
        ("batch of one", (1, 7, 2, 3)),
        ("one head", (3, 2, 1, 4)),
        ("d_head = 1", (2, 2, 3, 1)),
        ("square heads", (2, 4, 3, 3)),
    ]
    cases = [Case(name, args=(_randn(300 + i, *shape),)) for i, (name, shape) in enumerate(shapes)]
    run_check(
        "merge_heads", fn, merge_heads, cases,
        mistakes=[
            Mistake("the head axis must be the outer one: '(h d)' keeps each head's d_head "
                    "values side by side, while '(d h)' interleaves the heads",
                    lambda z: einops.rearrange(z, "b p h d -> b p (d h)")),
            Mistake("you merged batch and pos too: only (n_heads, d_head) become one axis, "
                    "the output is [batch, pos, n_heads * d_head]",
                    lambda z: einops.rearrange(z, "b p h d -> (b p) (h d)")),
            Mistake("you merged pos with the heads: only the last two axes, n_heads and d_head, "
                    "become one",
                    lambda z: einops.rearrange(z, "b p h d -> b (p h) d")),
            Mistake("you summed over the heads: merging concatenates them, it does not add "
                    "them (that would be einops.reduce)",
                    lambda z: einops.reduce(z, "b p h d -> b p d", "sum")),
        ],
        hint="a rearrange pattern names every axis; axes grouped in brackets on the right-hand "
             "side become one axis, the first of them the outer one",
    )


# -- batched_dot -----------------------------------------------------------------------------


@EXERCISES.check(batched_dot)
def check_batched_dot(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check your ``batched_dot``: ``fn(a: [batch, d], b: [batch, d]) -> [batch]``."""
    shapes = [  # (case name, (batch, d))
        ("random", (5, 3)),
        ("batch of one", (1, 4)),
        ("d = 1", (7, 1)),
        ("square", (4, 4)),
        ("wide", (3, 64)),
    ]
    cases = [Case(name, args=(_randn(400 + i, *shape), _randn(500 + i, *shape)))
             for i, (name, shape) in enumerate(shapes)]
    run_check(
        "batched_dot", fn, batched_dot, cases,
        mistakes=[
            Mistake("you computed every pair of rows ([batch, batch], like a @ b.T): pair row i "
                    "of a only with row i of b (one batch axis shared by both inputs)",
                    lambda a, b: einops.einsum(a, b, "i d, j d -> i j")),
            Mistake("you summed over the batch instead of over d: the output keeps the batch "
                    "axis",
                    lambda a, b: einops.einsum(a, b, "batch d, batch d -> d")),
            Mistake("squeeze() removed the batch axis too: on a batch of one it drops every axis "
                    "of size 1, so the result is a number instead of shape [1]; squeeze only the "
                    "axis you mean (squeeze(-1)) or avoid creating it",
                    lambda a, b: batched_dot(a, b).squeeze()),
            Mistake("you summed over everything and got one number: keep the batch axis in "
                    "the output",
                    lambda a, b: (a * b).sum()),
            Mistake("you multiplied elementwise but did not sum over d: an axis missing from "
                    "the output of einsum is summed, so leave d out",
                    lambda a, b: a * b),
        ],
        hint="in an einsum pattern, an axis left out of the output is summed over: keep the "
             "axis you want one value for and leave out the one you sum over",
    )
