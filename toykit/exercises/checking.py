"""The machinery behind every ``check_<name>``: run cases, compare, diagnose, record.

A check runs the learner's code and toykit's reference on the same seeded cases. When they
disagree it raises ``CheckFailure`` (an AssertionError) naming the case, the expected and
actual values, and a hint. The hint comes from *diagnosis*: each check lists the usual
mistakes as small wrong reference functions, and if the learner's output matches one of
them, the hint for that mistake is given.

Every check also records a ``CheckResult`` for graders: in ``results()``, and as a JSON
line in the file named by the environment variable ``TOYKIT_CHECK_LOG`` when it is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

NOT_IMPLEMENTED_HINT = (
    "this exercise is not done yet: replace `raise NotImplementedError()` with your code"
)


class CheckFailure(AssertionError):
    """A check failed. ``exercise``, ``case`` and ``hint`` say where and what to try."""

    def __init__(self, exercise: str, case: str, detail: str, hint: str) -> None:
        self.exercise, self.case, self.detail, self.hint = exercise, case, detail, hint
        super().__init__(f"✘ {exercise} failed on case '{case}'\n{detail}\nHint: {hint}")


@dataclass
class CheckResult:
    exercise: str
    passed: bool
    message: str
    cases: int = 0


_RESULTS: list[CheckResult] = []  # the one piece of global state graders read


def rng(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``. Checks build their cases from their own generators,
    so they are the same every time and never move the learner's global random state."""
    return torch.Generator().manual_seed(seed)


def require_callable(check: str, fn: object, *, modules_ok: bool = True) -> None:
    """Raise a clear TypeError when ``check`` is given something other than the learner's function
    (a result, say, or, with ``modules_ok=False``, a module where a function is expected)."""
    if not callable(fn) or (not modules_ok and isinstance(fn, torch.nn.Module)):
        raise TypeError(f"{check} expects your function itself (e.g. {check}(my_function)), "
                        f"got {type(fn).__name__}")


def results() -> list[CheckResult]:
    """The results of every check run in this process, oldest first."""
    return list(_RESULTS)


def clear_results() -> None:
    _RESULTS.clear()


def _record(result: CheckResult) -> None:
    _RESULTS.append(result)
    path = os.environ.get("TOYKIT_CHECK_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")


@dataclass
class Case:
    """One input to a check. ``args``/``kwargs`` are cloned before every call, so code
    that edits its inputs in place cannot spoil the comparison."""

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def fresh(self) -> tuple[tuple, dict]:
        return _clone(self.args), _clone(self.kwargs)


@dataclass
class Mistake:
    """A usual wrong answer: ``wrong(*args, **kwargs)`` computes it, ``hint`` explains it."""

    hint: str
    wrong: Callable[..., Any]


def _clone(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, tuple):
        return tuple(_clone(v) for v in x)
    if isinstance(x, list):
        return [_clone(v) for v in x]
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    return x


def _as_tensors(x: Any) -> list[torch.Tensor] | None:
    """Flatten an output (tensor, number, or tuple/list of them) into tensors; None if not."""
    if isinstance(x, torch.Tensor):
        return [x.detach()]
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return [torch.tensor(float(x))]
    if isinstance(x, (tuple, list)):
        out = []
        for v in x:
            t = _as_tensors(v)
            if t is None:
                return None
            out += t
        return out
    return None


def describe(x: Any, n: int = 6) -> str:
    """Shape, dtype and the first few values: enough to see what went wrong."""
    if isinstance(x, torch.Tensor):
        flat = x.detach().flatten()[:n].tolist()
        vals = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in flat)
        more = ", ..." if x.numel() > n else ""
        return f"tensor shape={list(x.shape)} dtype={x.dtype} values=[{vals}{more}]"
    if isinstance(x, (tuple, list)):
        return f"{type(x).__name__} of {len(x)}: (" + "; ".join(describe(v, n) for v in x) + ")"
    return f"{type(x).__name__}: {x!r}"[:200]


def _mismatch(expected: Any, got: Any, atol: float, rtol: float) -> str | None:
    """None if ``got`` matches ``expected``; otherwise what is different."""
    e, g = _as_tensors(expected), _as_tensors(got)
    if g is None:
        return f"expected {describe(expected)}\n     got {describe(got)} (not a tensor)"
    if len(e) != len(g):
        return f"expected {len(e)} output(s), got {len(g)}"
    for i, (ei, gi) in enumerate(zip(e, g)):
        which = f" (output {i})" if len(e) > 1 else ""
        if ei.shape != gi.shape:
            return (f"shape mismatch{which}: expected {list(ei.shape)}, got {list(gi.shape)}\n"
                    f"expected {describe(ei)}\n     got {describe(gi)}")
        ok = torch.allclose(gi.cpu().double(), ei.cpu().double(), atol=atol, rtol=rtol,
                            equal_nan=True)
        if not ok:
            return f"values differ{which}\nexpected {describe(ei)}\n     got {describe(gi)}"
    return None


def run_check(
    exercise: str,
    learner: Callable[..., Any],
    reference: Callable[..., Any],
    cases: Sequence[Case],
    mistakes: Sequence[Mistake] = (),
    hint: str = "compare your code with the docstring step by step",
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """Run ``learner`` and ``reference`` on every case; raise CheckFailure on the first miss.

    learner/reference: callables taking a case's args and kwargs.
    mistakes: known wrong answers, tried in order, to pick the most useful hint.
    hint: the hint when no known mistake matches.
    """
    try:
        for case in cases:
            args, kwargs = case.fresh()
            expected = reference(*args, **kwargs)
            args, kwargs = case.fresh()
            try:
                got = learner(*args, **kwargs)
            except NotImplementedError:
                raise CheckFailure(exercise, case.name, "your code raised NotImplementedError",
                                   NOT_IMPLEMENTED_HINT) from None
            except CheckFailure:
                raise
            except Exception as err:  # the learner's bug, reported as a failed case
                raise CheckFailure(exercise, case.name,
                                   f"your code raised {type(err).__name__}: {err}",
                                   _shape_hint(err) or hint) from err
            problem = _mismatch(expected, got, atol, rtol)
            if problem is None:
                continue
            best = hint
            for mistake in mistakes:
                args, kwargs = case.fresh()
                try:
                    wrong = mistake.wrong(*args, **kwargs)
                except Exception:
                    continue
                if _mismatch(wrong, got, atol, rtol) is None:
                    best = mistake.hint
                    break
            raise CheckFailure(exercise, case.name, problem, best)
    except CheckFailure as failure:
        _record(CheckResult(exercise, False, str(failure)))
        raise
    message = f"✔ {exercise}: {len(cases)} cases passed"
    _record(CheckResult(exercise, True, message, len(cases)))
    print(message)


def _shape_hint(err: Exception) -> str | None:
    text = str(err)
    if "shape" in text or "size" in text or "dimension" in text:
        return "a shape does not line up: print the shape of each tensor and compare with the docstring"
    return None
