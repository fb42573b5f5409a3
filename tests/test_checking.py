"""The checker machinery itself, on a made-up exercise (softmax over the last axis), and the
rules every chapter's checks share: each reference solution passes its check, every check rejects
an answer that edits its arguments and leaves the global random state alone, and no hint gives
away code from a solution."""

import ast
import contextlib
import importlib
import inspect
import json
import re

import pytest
import torch
from checker_helpers import not_done, rejects

from toykit.exercises import CheckFailure, clear_results, results, show_solution
from toykit.exercises.checking import NOT_IMPLEMENTED_HINT, Case, Mistake, check_unchanged, run_check, snapshot
from toykit.exercises.solutions import SOLUTIONS, solution

CASES = [Case("small", (torch.randn(2, 3, generator=torch.Generator().manual_seed(0)),)),
         Case("wide", (torch.randn(4, 7, generator=torch.Generator().manual_seed(1)),))]
MISTAKES = [
    Mistake("softmax over the wrong axis", lambda x: x.softmax(0)),
    Mistake("you returned the logits", lambda x: x),
]


def check(fn):
    run_check("softmax", fn, lambda x: x.softmax(-1), CASES, MISTAKES, hint="generic")


@pytest.fixture(autouse=True)
def fresh():
    clear_results()


def test_success_prints_one_line_and_records(capsys):
    check(lambda x: torch.exp(x) / torch.exp(x).sum(-1, keepdim=True))
    assert capsys.readouterr().out == "✔ softmax: 2 cases passed\n"
    [r] = results()
    assert r.passed and r.exercise == "softmax" and r.cases == 2


@pytest.mark.parametrize("wrong, hint", [
    (lambda x: x.softmax(0), "wrong axis"),
    (lambda x: x.clone(), "returned the logits"),
    (lambda x: x.softmax(-1) * 2, "generic"),
])
def test_failures_are_diagnosed(wrong, hint):
    with pytest.raises(CheckFailure) as info:
        check(wrong)
    err = info.value
    assert isinstance(err, AssertionError)
    assert hint in err.hint and err.case == "small"
    assert "expected tensor shape=[2, 3]" in str(err) and "Hint:" in str(err)
    assert results()[-1].passed is False


def test_shape_and_type_problems_are_reported():
    with pytest.raises(CheckFailure, match=r"shape mismatch: expected \[2, 3\], got \[2\]"):
        check(lambda x: x.sum(-1))
    with pytest.raises(CheckFailure, match="not a tensor"):
        check(lambda x: "a string")
    with pytest.raises(CheckFailure, match="raised ZeroDivisionError"):
        check(lambda x: 1 / 0)


def test_not_implemented_gets_its_own_hint():
    def stub(x):
        raise NotImplementedError()

    with pytest.raises(CheckFailure) as info:
        check(stub)
    assert "not done yet" in info.value.hint


def test_inputs_are_cloned_so_in_place_edits_do_not_leak():
    def in_place(x):
        x.mul_(0)
        return x.softmax(-1)

    with pytest.raises(CheckFailure):
        check(in_place)
    assert CASES[0].args[0].abs().sum() > 0


def test_results_go_to_the_log_file(tmp_path, monkeypatch):
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv("TOYKIT_CHECK_LOG", str(log))
    check(lambda x: x.softmax(-1))
    with pytest.raises(CheckFailure):
        check(lambda x: x)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["exercise"], r["passed"]) for r in lines] == [("softmax", True), ("softmax", False)]
    assert "returned the logits" in lines[1]["message"]


# -- every checker: reference solutions, the side-effect rule, the random state, hints ----------

CHAPTERS = [importlib.import_module(f"toykit.exercises.ch{n:02d}") for n in range(11)]
CHECKS = {f"{m.__name__.rsplit('.', 1)[1]}.{name.removeprefix('check_')}": getattr(m, name)
          for m in CHAPTERS for name in m.__all__ if name.startswith("check_")}


def _solution_object(key: str, namespace: dict):
    """Exec the solution of ``key`` into ``namespace`` and return the function or class it defines."""
    code = solution(key)
    exec(compile(code, f"<solution {key}>", "exec"), namespace)
    names = [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
             and not n.name.startswith("_")]
    return namespace[names[-1]]


_CH03_NAMESPACE = {"__name__": "solutions_ch03"}


def _solved(key: str):
    # Chapter 03's block and model use the learner's earlier classes: build them in one namespace.
    if key.startswith("ch03."):
        for earlier in SOLUTIONS:
            if earlier.startswith("ch03."):
                obj = _solution_object(earlier, _CH03_NAMESPACE)
                if earlier == key:
                    return obj
    return _solution_object(key, {"__name__": f"solutions_{key}"})


def test_every_check_has_a_solution_and_no_solution_lacks_a_check():
    assert set(SOLUTIONS) == set(CHECKS)


@pytest.mark.parametrize("key", sorted(SOLUTIONS))
def test_each_solution_passes_its_check_and_the_global_rng_is_left_alone(key, capsys):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    CHECKS[key](_solved(key))
    assert torch.equal(torch.get_rng_state(), state), f"{key}'s check changed torch's global random state"
    [r] = results()
    assert r.passed and r.exercise == key.split(".")[1]
    assert f"✔ {r.exercise}" in capsys.readouterr().out


def _poke(x) -> int:
    """Modify every tensor (and module parameter) inside ``x`` in place; how many were changed."""
    if isinstance(x, torch.nn.Module):
        return sum(_poke(p) for p in x.parameters())
    if isinstance(x, torch.Tensor):
        with torch.no_grad():
            x.logical_not_() if x.dtype == torch.bool else x.add_(1)
        return 1
    if isinstance(x, (tuple, list)):
        return sum(_poke(v) for v in x)
    if isinstance(x, dict):
        return sum(_poke(v) for v in x.values())
    return 0


def _in_place_mutant(obj):
    """A correct answer that then edits its arguments in place."""
    if inspect.isclass(obj):
        class Mutant(obj):
            def forward(self, *inputs):
                out = super().forward(*inputs)
                _poke(inputs)
                return out
        return Mutant

    def mutant(*args, **kwargs):
        out = obj(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            out = out.clone()  # the result stays right; only the inputs change
        elif isinstance(out, tuple):
            out = tuple(o.clone() if isinstance(o, torch.Tensor) else o for o in out)
        assert _poke((args, kwargs)) or not any(isinstance(a, (torch.Tensor, dict, list, torch.nn.Module))
                                                for a in (*args, *kwargs.values()))
        return out
    return mutant


# Exercises whose arguments are only numbers (or frozensets and a pure function): there is nothing a
# learner could modify.
NO_TENSOR_ARGS = {"ch04.generate_repeated_tokens", "ch07.fourier_basis", "ch10.edge_count", "ch10.incompleteness"}


@pytest.mark.parametrize("key", sorted(set(SOLUTIONS) - NO_TENSOR_ARGS))
def test_every_check_rejects_an_answer_that_edits_its_arguments(key):
    with pytest.raises(CheckFailure) as info:
        CHECKS[key](_in_place_mutant(_solved(key)))
    assert "in place" in info.value.hint, f"{key}: {info.value}"
    assert results()[-1].passed is False


@contextlib.contextmanager
def _recording(module, record):
    """Within the block, ``module``'s checks hand their run_check arguments to ``record`` instead of
    running, and its property checks do not run: they have no reference, and their hints are
    literals in the source (``_literal_hints``). Nothing runs a learner's (here: a solution's)
    code, so a solution that searches for its answer costs nothing here."""
    originals = {name: getattr(module, name) for name in ("run_check", "run_property_check")
                 if hasattr(module, name)}
    module.run_check = record
    if "run_property_check" in originals:
        module.run_property_check = lambda *args, **kwargs: None
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


def _all_hints() -> dict[str, list[str]]:
    """Every hint a check can give, by exercise: its Mistake hints and fallback hint (recorded by
    running each check with run_check replaced), and the literal hints of CheckFailure calls and
    *_HINT constants in its module's source."""
    hints: dict[str, list[str]] = {}
    for module in CHAPTERS:
        chapter = module.__name__.rsplit(".", 1)[1]
        recorded = []

        def record(exercise, learner, reference, cases, mistakes=(), hint="", *args, recorded=recorded, **kwargs):
            recorded.append((exercise, [hint, *[m.hint for m in mistakes]]))

        with _recording(module, record):
            for name in module.__all__:
                if name.startswith("check_"):
                    getattr(module, name)(_solved(f"{chapter}.{name.removeprefix('check_')}"))
        for exercise, found in recorded:
            hints.setdefault(f"{chapter}.{exercise}", []).extend(found)
        hints[f"{chapter}.*"] = _literal_hints(ast.parse(inspect.getsource(module)))
    return hints


def _text(node) -> str:
    """The text of a string literal or f-string (its literal parts), '' for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) for v in node.values)
    if isinstance(node, ast.BinOp):
        return _text(node.left) + _text(node.right)
    if isinstance(node, ast.IfExp):
        return _text(node.body) + " " + _text(node.orelse)
    return ""


def _literal_hints(tree) -> list[str]:
    """Hints written in a module's source: CheckFailure's hint argument, *_HINT constants, and
    the (detail, hint) pairs returned by *_problem functions."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "CheckFailure":
            found += [_text(a) for a in node.args[3:]]
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "").endswith("_HINT") for t in node.targets):
            found.append(_text(node.value))
        elif isinstance(node, ast.FunctionDef) and node.name.endswith("_problem"):
            found += [_text(r.value.elts[1]) for r in ast.walk(node) if isinstance(r, ast.Return)
                      and isinstance(r.value, ast.Tuple) and len(r.value.elts) == 2]
    return [h for h in found if h]


def _code_lines(key: str) -> list[str]:
    lines = []
    for line in SOLUTIONS[key].splitlines():
        code = line.split("#")[0].strip()
        if len(code) >= 16 and not code.startswith(("def ", "class ", "super().", "import ", "for ", "if ")):
            lines.append(code)
    return lines


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_no_hint_contains_a_line_of_any_solution():
    hints = _all_hints()
    every_hint = [h for found in hints.values() for h in found]
    assert len(every_hint) > 300
    leaks = [(key, line, h) for key in SOLUTIONS for line in _code_lines(key) for h in every_hint
             if _squash(line) in _squash(h)]
    assert not leaks, "hints that contain solution code:\n" + "\n".join(f"{k}: {line!r} in {h!r}"
                                                                          for k, line, h in leaks)


CODE_LIKE = [
    re.compile(r"\breturn [\w.]+[.(\[]"),                # return <call or index>
    # Statements chained with ";", and indexed assignments x[...] = <code>, whose right-hand side
    # is code (a call, attribute or index), not mathematics such as E[m²] = 1/3.
    re.compile(r";\s*[\w.\[\], :]+\s*[+\-*/]?=\s*[A-Za-z_][\w.]*[.(\[]"),
    re.compile(r"\w\[[^\]]*\]\s*[+\-*/]?=\s*[A-Za-z_][\w.]*[.(\[]"),
]


def test_no_hint_is_code():
    hints = _all_hints()
    offenders = [(key, h) for key, found in hints.items() for h in found
                 if any(p.search(h) for p in CODE_LIKE)]
    assert not offenders, "\n".join(f"{k}: {h!r}" for k, h in offenders)


def test_show_solution_prints_a_solution_on_request(capsys):
    show_solution("mmcs")
    out = capsys.readouterr().out
    assert "Reference solution for ch02.mmcs" in out and "def mmcs(W_dec, true_features):" in out
    show_solution("ch03.attention")
    assert "class Attention(nn.Module):" in capsys.readouterr().out
    show_solution("check_freeze_heads_hook")
    assert "clean_z[hook.name].clone()" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no exercise named 'nope'.*mmcs"):
        show_solution("nope")
    with pytest.raises(ValueError, match="no exercise named 'ch01.mmcs'"):
        show_solution("ch01.mmcs")


def test_unchanged_inputs_pass_and_edits_inside_containers_are_named():
    cache = {"blocks.0.attn.hook_z": torch.ones(2, 3), "other": [torch.zeros(2)]}
    before = snapshot(cache)
    check_unchanged("demo", "case", {"clean_z": (before, cache)})  # nothing changed: no error
    cache["other"][0][1] = float("nan")
    with pytest.raises(CheckFailure, match=r"`clean_z\['other'\]\[0\]` was modified in place"):
        check_unchanged("demo", "case", {"clean_z": (before, cache)})
    nan = torch.tensor([float("nan"), 1.0])
    check_unchanged("demo", "case", {"x": (snapshot(nan), nan)})  # nan equals nan here


def test_a_loss_check_rejects_a_python_number():
    def loss_check(fn):
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
        run_check("loss", fn, lambda x: (x ** 2).mean(), [Case("c", (x,))], grad_args=(0,))

    loss_check(lambda x: x.pow(2).mean())
    with pytest.raises(CheckFailure, match="carries gradients"):
        loss_check(lambda x: x.pow(2).mean().item())


def test_result_types_are_enforced_where_they_matter():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))

    def check_argmax(fn):
        run_check("argmax", fn, lambda x: x.argmax(-1), [Case("c", (x,))])

    check_argmax(lambda x: x.argmax(-1).int())  # int32 indices are still indices
    with pytest.raises(CheckFailure, match="integer indices"):
        check_argmax(lambda x: x.argmax(-1).float())
    with pytest.raises(CheckFailure, match="not a Python list"):
        check_argmax(lambda x: x.argmax(-1).tolist())
    check(lambda x: x.double().softmax(-1))  # float64 where float32 is expected is harmless
    with pytest.raises(CheckFailure, match="floating point"):
        check(lambda x: (x.softmax(-1) > 0.5).long())
    with pytest.raises(CheckFailure, match="full precision"):
        check(lambda x: x.softmax(-1).half())


def test_a_renamed_parameter_is_told_to_keep_the_names():
    def check_kw(fn):
        run_check("kw", fn, lambda x, scale: x * scale, [Case("c", (torch.ones(2),), {"scale": 2.0})])

    with pytest.raises(CheckFailure) as info:
        check_kw(lambda x, factor: x * factor)
    assert "keep the parameter names" in info.value.hint


def test_no_reference_modifies_its_inputs():
    """The references the checks compare against obey the rule they enforce."""
    for module in CHAPTERS:
        chapter = module.__name__.rsplit(".", 1)[1]
        runs = []

        def record(exercise, learner, reference, cases, *args, runs=runs, **kwargs):
            runs.append((exercise, reference, cases))

        with _recording(module, record):
            for name in module.__all__:
                if name.startswith("check_"):
                    getattr(module, name)(_solved(f"{chapter}.{name.removeprefix('check_')}"))
        for exercise, reference, cases in runs:
            for case in cases:
                args, kwargs = case.fresh()
                before = snapshot((args, kwargs))
                reference(*args, **kwargs)
                check_unchanged(exercise, case.name, {"arguments": (before, [list(args), kwargs])})


# -- the chapter tables and the helpers for them ---------------------------------------------------------

TABLED = [f"ch{n:02d}" for n in range(11)]


@pytest.mark.parametrize("chapter", TABLED)
def test_each_chapter_table_lists_every_check_and_the_grader_finds_them_there(chapter):
    from toykit.exercises.checking import ExerciseTable, find_check

    module = importlib.import_module(f"toykit.exercises.{chapter}")
    table = module.EXERCISES
    assert isinstance(table, ExerciseTable)
    checks = {name.removeprefix("check_") for name in dir(module)
              if name.startswith("check_") and getattr(module, name).__module__ == module.__name__}
    assert set(table) == checks
    for exercise_id, entry in table.items():
        assert entry.id == exercise_id and entry.check is getattr(module, f"check_{exercise_id}")
        assert find_check(chapter, exercise_id) is entry.check


@pytest.mark.parametrize("entry", [e for c in TABLED for e in importlib.import_module(f"toykit.exercises.{c}")
                                   .EXERCISES.values()], ids=lambda e: e.id)
def test_each_reference_in_a_table_passes_its_own_check(entry, capsys):
    entry.check(entry.reference)
    assert results()[-1].passed and results()[-1].exercise == entry.id


@pytest.mark.parametrize("entry", [e for c in TABLED for e in importlib.import_module(f"toykit.exercises.{c}")
                                   .EXERCISES.values()], ids=lambda e: e.id)
def test_an_unfinished_exercise_gets_the_not_done_hint(entry):
    err = rejects(entry.check, not_done, NOT_IMPLEMENTED_HINT)
    assert "NotImplementedError" in err.detail


@pytest.mark.parametrize("chapter", TABLED)
def test_table_checks_refuse_a_result_in_place_of_a_function(chapter):
    for exercise_id, entry in importlib.import_module(f"toykit.exercises.{chapter}").EXERCISES.items():
        with pytest.raises(TypeError, match=f"check_{exercise_id} expects your function itself"):
            entry.check(torch.zeros(3))


def test_a_table_refuses_a_badly_named_or_repeated_check():
    from toykit.exercises.checking import ExerciseTable

    table = ExerciseTable()

    @table.check(abs)
    def check_thing(fn):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        table.check(abs)(check_thing.__wrapped__)
    with pytest.raises(ValueError, match="must start with 'check_'"):
        table.check(abs)(lambda fn: None)


def test_a_property_check_judges_outputs_by_a_rule_and_keeps_the_rules_of_run_check(capsys):
    from toykit.exercises.checking import run_property_check

    def problem(out, n, seed):
        if out.shape != (n,) or out.dtype != torch.long:
            return (f"expected {n} int64 draws, got {out.shape} {out.dtype}", "draw n integers")
        return None if ((out >= 0) & (out < 10)).all() else ("a draw outside [0, 10)", "draw from [0, 10)")

    cases = [Case("ten", (10,), {"seed": 0}), Case("one", (1,), {"seed": 1})]
    good = lambda n, seed: torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed))  # noqa: E731
    state = torch.get_rng_state()
    run_property_check("draws", good, problem, cases)
    assert torch.equal(torch.get_rng_state(), state) and results()[-1].passed
    with pytest.raises(CheckFailure, match="a draw outside"):
        run_property_check("draws", lambda n, seed: torch.full((n,), 10), problem, cases)
    with pytest.raises(CheckFailure, match="not done yet"):
        run_property_check("draws", lambda n, seed: (_ for _ in ()).throw(NotImplementedError()), problem, cases)
    assert [r.passed for r in results()] == [True, False, False]
