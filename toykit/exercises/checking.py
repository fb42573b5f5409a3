"""The machinery behind every ``check_<name>``: run cases, compare, diagnose, record.

A check runs the learner's code and toykit's reference on the same seeded cases. When they
disagree it raises ``CheckFailure`` (an AssertionError) naming the case, the expected and
actual values, and a hint. The hint comes from *diagnosis*: each check lists the usual
mistakes as small wrong reference functions, and if the learner's output matches one of
them, the hint for that mistake is given.

Every check also enforces the course's rules for every exercise, in one place:

- **No side effects.** A function or hook must not modify any of its arguments in place: not a
  tensor, not a tensor inside a dict, list or tuple (a cache), not a model's weights. Each call
  is given fresh copies of the case's inputs and they are compared afterwards with a snapshot.
- **The promised type.** Where the reference returns a tensor with axes, a Python number or a
  list does not pass; integer results (token ids, indices) must be integers, floating results
  floating point (float64 is accepted where float32 is expected), on the inputs' device; where
  a check says so (``grad_args``), a loss must carry gradients back to its inputs.
- **Parameter names.** Checks call learners with keyword arguments where the docstring names
  them; renaming one gets a hint saying so.
- **The learner's random state.** Cases come from local generators (``rng``), and anything a
  check does to torch's global generator is undone when it ends (``seeded``).

Each chapter module keeps an ``ExerciseTable``, ``EXERCISES``: exercise id -> its check and
toykit's reference, filled by ``@EXERCISES.check(reference)`` on each ``check_<id>``
(``find_check`` looks a check up there, for the grader). ``run_property_check`` judges an
exercise with many right answers by a rule instead of a reference.

Every check also records a ``CheckResult`` for graders: in ``results()``, and as a JSON
line in the file named by the environment variable ``TOYKIT_CHECK_LOG`` when it is set.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from toykit.runtime import make_generator

NOT_IMPLEMENTED_HINT = (
    "this exercise is not done yet: replace `raise NotImplementedError()` with your code"
)
IN_PLACE_HINT = (
    "your code modified one of its inputs in place. A function or hook must leave its arguments "
    "unchanged: a cache, autograd or the caller may hold that very tensor, and it would be silently "
    "rewritten (chapter 00, 'Replacing an activation'). Build the result in a new tensor instead of "
    "writing into an argument"
)
KEYWORD_HINT = (
    "the check calls your function with the parameter names of the exercise's signature: keep the "
    "parameter names from the docstring and signature (rename nothing, drop nothing)"
)
DTYPE_HINT = (
    "two tensors of different dtypes met (e.g. float32 and float64, or float and integer): keep the "
    "inputs' dtype (don't call .double() or create tensors with another dtype), and keep token ids "
    "and indices int64"
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
    return make_generator(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global generator seeded with ``seed``, and restore the learner's
    global random state afterwards: for learner code that draws from the global generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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
    that edits its inputs in place cannot spoil the next call; run_check then compares the
    learner's copies with a snapshot and rejects any edit."""

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


def snapshot(x: Any) -> Any:
    """A copy of everything in ``x`` a learner could modify: tensors, containers of them, and
    the parameters and buffers of modules (a model passed in)."""
    if isinstance(x, torch.nn.Module):
        return {k: v.detach().clone() for k, v in x.state_dict().items()}
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, (tuple, list)):
        return [snapshot(v) for v in x]
    if isinstance(x, dict):
        return {k: snapshot(v) for k, v in x.items()}
    return x


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(torch.equal(torch.isnan(a), torch.isnan(b))
                    and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))
    return bool(torch.equal(a, b))


def _edited(before: Any, after: Any, path: str) -> tuple[str, Any, Any] | None:
    """(path, before, after) of the first thing in ``after`` that differs from its snapshot."""
    if isinstance(after, torch.nn.Module):
        now = after.state_dict()
        for k, v in before.items():
            if k not in now or not _same(v, now[k].detach()):
                return f"{path}.{k}", v, now.get(k)
        return None
    if isinstance(after, torch.Tensor):
        return None if _same(before, after.detach()) else (path, before, after)
    if isinstance(after, (tuple, list)):
        if len(before) != len(after):
            return path, before, after
        for i, (b, a) in enumerate(zip(before, after)):
            found = _edited(b, a, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(after, dict):
        if list(before) != list(after):
            return path, f"keys {list(before)}", f"keys {list(after)}"
        for k in after:
            found = _edited(before[k], after[k], f"{path}[{k!r}]")
            if found:
                return found
    return None


def _arg_names(fn: Callable[..., Any], args: tuple, kwargs: dict) -> list[str]:
    """The names ``fn`` gives to ``args`` (for messages), or "argument i"."""
    fallback = [f"argument {i}" for i in range(len(args))]
    try:
        sig = inspect.signature(fn)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return fallback
    names = []
    for name, value in bound.arguments.items():
        if sig.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
            names += [f"{name}[{j}]" for j in range(len(value))]
        elif sig.parameters[name].kind in (inspect.Parameter.POSITIONAL_ONLY,
                                           inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.append(name)
    return names[: len(args)] if len(names) >= len(args) else fallback


def check_unchanged(exercise: str, case: str, inputs: dict[str, tuple[Any, Any]]) -> None:
    """Raise CheckFailure if any input was modified: inputs maps a name to (snapshot, the object
    the learner was given). The one side-effect rule of every check."""
    for name, (before, after) in inputs.items():
        found = _edited(before, after, name)
        if found:
            path, was, now = found
            raise CheckFailure(exercise, case, f"`{path}` was modified in place by your code: it was "
                               f"{describe(was)}\n     now {describe(now)}", IN_PLACE_HINT)


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


def mismatch(expected: Any, got: Any, atol: float, rtol: float) -> str | None:
    """None if ``got`` matches ``expected``; otherwise what is different."""
    e, g = _as_tensors(expected), _as_tensors(got)
    if e is None:
        raise TypeError(f"the reference returned {describe(expected)}, which is not a tensor or number")
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


def _type_problem(expected: Any, got: Any) -> tuple[str, str] | None:
    """(detail, hint) when ``got`` is not the kind of result ``expected`` is: a tensor where a
    tensor with axes is promised, integer or floating point as promised, on the same device."""
    if isinstance(expected, (tuple, list)):
        if isinstance(got, (tuple, list)) and len(got) == len(expected):
            for e, g in zip(expected, got):
                problem = _type_problem(e, g)
                if problem:
                    return problem
        return None
    if not isinstance(expected, torch.Tensor):
        return None
    if isinstance(got, (tuple, list)) and expected.ndim > 0:
        return (f"expected {describe(expected)}\n     got {describe(got)}",
                "return a tensor, not a Python list or tuple (no .tolist(), no list of rows)")
    if not isinstance(got, torch.Tensor):
        return None
    if expected.is_floating_point() and not got.is_floating_point():
        return (f"expected a floating-point tensor ({expected.dtype}), got dtype {got.dtype}",
                "the result should be floating point: an integer or boolean tensor here usually means a "
                "comparison or an integer division where a value was wanted, or a lost dtype")
    if expected.is_floating_point() and got.dtype in (torch.float16, torch.bfloat16):
        return (f"expected {expected.dtype}, got dtype {got.dtype}",
                f"keep full precision: return {expected.dtype} (half precision loses too many digits)")
    if not expected.is_floating_point() and expected.dtype != torch.bool and (
            got.is_floating_point() or got.dtype == torch.bool):
        return (f"expected integer ids or indices ({expected.dtype}), got dtype {got.dtype}",
                "return integer indices (int64, as argmax, argsort, topk and nonzero give), not floats or bools")
    if got.device != expected.device:
        return (f"expected a tensor on {expected.device}, got one on {got.device}",
                "keep the result on the inputs' device: create new tensors with device=x.device (or *_like)")
    return None


def _first_tensor(x: Any) -> Any:
    return x[0] if isinstance(x, (tuple, list)) and x else x


def error_hint(err: Exception) -> str | None:
    """A hint for an exception raised by the learner's code, from its message."""
    text = str(err)
    if isinstance(err, TypeError) and re.search(r"unexpected keyword argument|got multiple values for argument|"
                                                 r"missing \d+ required (positional|keyword)", text):
        return KEYWORD_HINT
    if re.search(r"in-place operation|inplace operation", text):
        return IN_PLACE_HINT
    if re.search(r"dtype|scalar type|Double|Float\b|\bLong\b|\bHalf\b", text):
        return DTYPE_HINT
    if "shape" in text or "size" in text or "dimension" in text:
        return "a shape does not line up: print the shape of each tensor and compare with the docstring"
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
    grad_args: Sequence[int] = (),
) -> None:
    """Run ``learner`` and ``reference`` on every case; raise CheckFailure on the first miss.

    learner/reference: callables taking a case's args and kwargs.
    mistakes: known wrong answers, tried in order, to pick the most useful hint.
    hint: the hint when no known mistake matches; it names the concept, never the code.
    grad_args: positions of args that require grad for the learner; its (first) output must
        then carry gradients back to them (a loss that training can backpropagate through).

    Every call must leave its arguments unchanged (see ``check_unchanged``), return the kind
    of result the reference returns (see ``_type_problem``), and the whole check leaves
    torch's global random state as it found it.
    """
    with torch.random.fork_rng(devices=[]):
        _run_cases(exercise, learner, reference, cases, mistakes, hint, atol, rtol, grad_args)
    message = f"✔ {exercise}: {len(cases)} cases passed"
    _record(CheckResult(exercise, True, message, len(cases)))
    print(message)


def _call_learner(exercise: str, learner: Callable[..., Any], case: Case, hint: str,
                  grad_args: Sequence[int] = ()) -> Any:
    """The learner's output on a fresh copy of ``case``; raises CheckFailure when the learner's
    code raises (NotImplementedError gets the "not done yet" hint) or edits its arguments."""
    args, kwargs = case.fresh()
    for i in grad_args:
        args[i].requires_grad_(True)
    before = snapshot(args), {k: snapshot(v) for k, v in kwargs.items()}
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
                           error_hint(err) or hint) from err
    names = _arg_names(learner, args, kwargs)
    check_unchanged(exercise, case.name, {
        **{name: (b, a) for name, b, a in zip(names, before[0], args)},
        **{k: (before[1][k], v) for k, v in kwargs.items()},
    })
    return got


def _run_cases(exercise, learner, reference, cases, mistakes, hint, atol, rtol, grad_args) -> None:
    try:
        for case in cases:
            args, kwargs = case.fresh()
            expected = reference(*args, **kwargs)
            got = _call_learner(exercise, learner, case, hint, grad_args)
            problem = _type_problem(expected, got)
            if problem:
                raise CheckFailure(exercise, case.name, *problem)
            if grad_args:
                loss = _first_tensor(got)
                if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
                    raise CheckFailure(
                        exercise, case.name, f"your loss is {describe(loss)}, which carries no gradient",
                        "a loss must be a tensor that carries gradients, so that loss.backward() can train "
                        "the model: keep it a tensor computed from the inputs (no .item(), float(), "
                        ".detach() or torch.tensor(...) around it)")
            difference = mismatch(expected, got, atol, rtol)
            if difference is None:
                continue
            best = hint
            for mistake in mistakes:
                args, kwargs = case.fresh()
                try:
                    wrong = mistake.wrong(*args, **kwargs)
                except Exception:
                    continue
                if mismatch(wrong, got, atol, rtol) is None:
                    best = mistake.hint
                    break
            raise CheckFailure(exercise, case.name, difference, best)
    except CheckFailure as failure:
        _record(CheckResult(exercise, False, str(failure)))
        raise


def run_property_check(
    exercise: str,
    learner: Callable[..., Any],
    problem: Callable[..., tuple[str, str] | None],
    cases: Sequence[Case],
    hint: str = "compare your code with the docstring step by step",
) -> None:
    """A check for exercises with many right answers (random draws, say), judged by properties.

    ``problem(output, *args, **kwargs)`` returns None when the learner's output on a case is
    right, else ``(what is wrong, hint)``. The rules of ``run_check`` hold: no argument may be
    edited, a NotImplementedError gets the "not done yet" hint, torch's global random state is
    restored, and a result is recorded.
    """
    with torch.random.fork_rng(devices=[]):
        try:
            for case in cases:
                got = _call_learner(exercise, learner, case, hint)
                args, kwargs = case.fresh()
                found = problem(got, *args, **kwargs)
                if found is not None:
                    raise CheckFailure(exercise, case.name, *found)
        except CheckFailure as failure:
            _record(CheckResult(exercise, False, str(failure)))
            raise
    message = f"✔ {exercise}: {len(cases)} cases passed"
    _record(CheckResult(exercise, True, message, len(cases)))
    print(message)


# -- one table per chapter --------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter: its id, its check, and toykit's reference (the library
    function or class the learner re-implements, which later cells fall back to)."""

    id: str
    check: Callable[[Any], None]
    reference: Any


class ExerciseTable(dict[str, Exercise]):
    """A chapter's exercises by id: ``EXERCISES = ExerciseTable()`` at the top of ``chNN.py``,
    then ``@EXERCISES.check(reference)`` on each ``check_<id>``. The grader and the tests find
    checks and references here, never by attribute name."""

    def check(self, reference: Any, *, modules_ok: bool = True
              ) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
        """Register ``check_<id>`` (the id is the function's name after ``check_``) with its
        reference, and make it refuse anything that is not callable (with ``modules_ok=False``,
        also an nn.Module where a plain function is expected) with a clear TypeError."""

        def register(check: Callable[[Any], None]) -> Callable[[Any], None]:
            name = check.__name__
            if not name.startswith("check_"):
                raise ValueError(f"a check's name must start with 'check_', got {name!r}")
            exercise_id = name.removeprefix("check_")
            if exercise_id in self:
                raise ValueError(f"exercise {exercise_id!r} is registered twice")

            @functools.wraps(check)
            def checked(fn: Any) -> None:
                require_callable(name, fn, modules_ok=modules_ok)
                check(fn)

            self[exercise_id] = Exercise(exercise_id, checked, reference)
            return checked

        return register


def find_check(module: str, exercise_id: str) -> Callable[[Any], None]:
    """The check of ``exercise_id`` in ``toykit.exercises.<module>``, from the chapter's
    ``EXERCISES`` table."""
    chapter = importlib.import_module(f"toykit.exercises.{module}")
    table = getattr(chapter, "EXERCISES", None)
    if not isinstance(table, ExerciseTable):
        raise TypeError(f"toykit.exercises.{module} has no EXERCISES table (an ExerciseTable)")
    if exercise_id not in table:
        raise KeyError(f"toykit.exercises.{module} has no exercise {exercise_id!r} (it has {sorted(table)})")
    return table[exercise_id].check

