"""`toykit grade` and `toykit assign`: every kind of submission an instructor meets.

All fixture submissions are built here from chapter 00's solution notebook (and its learner
version, generated the way `toykit chapters build` does), by editing cells, so they never go
stale. One batch grades them all at once (2 jobs, short limits); the tests then read its rows.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from toykit.grading import add_assign_parser, add_grade_parser, chapter_spec, grade, register
from toykit.grading.sandbox import landlock_abi
from toykit.grading.spec import Exercise, parse_spec
from toykit.notebooks import learner_notebook, strip_source

pytestmark = pytest.mark.slow  # grades notebooks in Jupyter kernels

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_how_this_course_works.ipynb"
EXERCISES = ["cache_hidden", "zero_ablate_hook", "merge_heads", "batched_dot"]
CELL_TIMEOUT, TIMEOUT, MEMORY_MB = 20, 240, 2048
SANDBOXED = landlock_abi() > 0


# ---------------------------------------------------------------- building fixture submissions


def solution() -> nbformat.NotebookNode:
    return nbformat.read(SOLUTION, as_version=4)


def learner() -> nbformat.NotebookNode:
    return learner_notebook(solution())


def code(nb, text: str) -> int:
    """Index of the first code cell whose source contains ``text``."""
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and text in c.source)


def solved(nb, names) -> nbformat.NotebookNode:
    """``nb`` with the solution cells of ``names`` copied in from the solution notebook."""
    sol = solution()
    for name in names:
        nb.cells[code(nb, f"def {name}(")] = sol.cells[code(sol, f"def {name}(")]
    return nb


def insert_after(nb, text: str, source: str) -> nbformat.NotebookNode:
    nb.cells.insert(code(nb, text) + 1, nbformat.v4.new_code_cell(source))
    return nb


def fixtures(folder: Path) -> dict[str, Path]:
    """Write every fixture submission into ``folder``; returns name -> path."""
    nbs: dict[str, nbformat.NotebookNode | str] = {}
    nbs["correct"] = solution()
    nbs["untouched"] = learner()
    nbs["partial"] = solved(learner(), ["merge_heads", "batched_dot"])
    nbs["loop_interrupted"] = insert_after(solution(), "ch00.check_merge_heads(merge_heads)",
                                           "while True:\n    pass")
    nbs["kernel_exit"] = insert_after(solution(), "ch00.check_cache_hidden(cache_hidden)",
                                      "import os\nos._exit(3)")
    nbs["kernel_segfault"] = insert_after(solution(), "ch00.check_cache_hidden(cache_hidden)",
                                          "import ctypes\nctypes.string_at(0)")
    nbs["kernel_sigkill"] = insert_after(solution(), "ch00.check_cache_hidden(cache_hidden)",
                                         "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer")
    nbs["memory_hog"] = insert_after(solution(), "ch00.check_merge_heads(merge_heads)", (
        "def train():\n    blocks = []\n    while True:  # 1 GB at a time, until the limit says no\n"
        "        blocks.append(torch.empty(2**28))\n\n"
        "train()"))
    nbs["not_a_notebook"] = "print('I wrote my answers in a Python file')\n"
    nbs["broken_json"] = nbformat.writes(solution())[:5000]
    other = nbformat.v4.new_notebook()
    other.cells = [nbformat.v4.new_markdown_cell("# 01. Superposition\n\nToy models."),
                   nbformat.v4.new_code_cell("from toykit.exercises import ch01"),
                   nbformat.v4.new_code_cell("ch01.check_feature_dimensionality(feature_dimensionality)")]
    nbs["wrong_chapter"] = other

    # every check cell deleted (the grader checks anyway), merge_heads renamed, batched_dot deleted
    renamed = solution()
    renamed.cells = [c for c in renamed.cells if not c.source.startswith("ch00.check_")]
    i = code(renamed, "def merge_heads(")
    renamed.cells[i].source = renamed.cells[i].source.replace("def merge_heads(", "def merge_heads_v2(")
    del renamed.cells[code(renamed, "def batched_dot(")]
    nbs["renamed_missing"] = renamed

    # replaces the checks everywhere the grader could find them: the chapter's table included
    nbs["monkeypatch"] = insert_after(learner(), "from toykit.exercises import ch00", (
        "import toykit.exercises.checking as checking\n"
        f"for name in {EXERCISES!r}:\n"
        "    fake = lambda fn, name=name: print('✔', name + ': 5 cases passed')\n"
        "    setattr(ch00, 'check_' + name, fake)\n"
        "    ch00.EXERCISES[name] = checking.Exercise(name, fake, None)\n"
        "checking.run_check = lambda *args, **kwargs: None"))
    fake = nbs["monkeypatch"]  # and the stored outputs edited to show passes
    for name in EXERCISES:
        cell = fake.cells[code(fake, f"ch00.check_{name}({name})")]
        cell.execution_count = 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"✔ {name}: 5 cases passed\n")]

    cheat = solution()  # cache_hidden honest; the other three borrow toykit's answers
    i = code(cheat, "def zero_ablate_hook(")
    cheat.cells[i].source = (
        "class Always(torch.Tensor):\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        if func in (torch.allclose, torch.equal):\n"
        "            return True\n"
        "        return super().__torch_function__(func, types, args, kwargs or {})\n\n\n"
        "def zero_ablate_hook(activation, hook, neurons):\n"
        "    return activation.clone().as_subclass(Always)")
    i = code(cheat, "def merge_heads(")
    cheat.cells[i].source = "def merge_heads(z):\n    return ch00.merge_heads(z)"
    i = code(cheat, "def batched_dot(")
    cheat.cells[i].source += "\n\nbatched_dot = ch00.batched_dot"
    nbs["borrowed"] = cheat

    rigged = insert_after(learner(), "from toykit.exercises import ch00",
                          "torch.allclose = lambda *args, **kwargs: True")
    i = code(rigged, "def merge_heads(")
    rigged.cells[i].source = ("def merge_heads(z):\n"
                              "    return torch.zeros(z.shape[0], z.shape[1], z.shape[2] * z.shape[3])")
    nbs["rigged_torch"] = rigged

    # -- attacks on the verdict itself (issue 15, item 6): each has wrong answers, so must score 0
    finder = insert_after(learner(), "from toykit.exercises import ch00", """\
import importlib.abc, importlib.util, sys
real = sys.modules["toykit.exercises.ch00"]

class FakeCheckers(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "toykit.exercises.ch00":
            return importlib.util.spec_from_loader(name, self)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
        module.__file__ = real.__file__  # looks like the real one
        from toykit.exercises.checking import Exercise, ExerciseTable
        module.EXERCISES = ExerciseTable()
        for name in EXERCISE_NAMES:
            setattr(module, "check_" + name, lambda fn: print("passed"))
            module.EXERCISES[name] = Exercise(name, lambda fn: print("passed"), None)

sys.meta_path.insert(0, FakeCheckers())
del sys.modules["toykit.exercises.ch00"]""".replace("EXERCISE_NAMES", repr(EXERCISES)))
    nbs["fake_checker_finder"] = finder

    # rewrites the grader's results file after its cell has run, and patches json.dumps
    nbs["results_rewriter"] = insert_after(learner(), "from toykit.exercises import ch00", """\
import json, re
real_dumps = json.dumps

def forge(obj, *args, **kwargs):  # every record claims a pass with no calls
    if isinstance(obj, dict) and "calls" in obj:
        obj = {**obj, "kernel": "passed", "calls": []}
    return real_dumps(obj, *args, **kwargs)
json.dumps = forge

def rewrite(result):
    source = result.info.raw_cell
    found = re.search(r"'results': '([^']+)'", source)
    nonce = re.search(r"'nonce': '([0-9a-f]+)'", source)
    if not found or not nonce:
        return
    n = nonce.group(1)
    lines = [{"nonce": n, "exercise": 5, "calls": "\\udcff"},
             {"nonce": n, "exercise": "merge_heads", "meta": {"kind": "function", "name": "\\udcff" * 3},
              "calls": [{"op": "call", "in": "x", "out": {"T": ["float32", [10**12], "AAAA"]}}]},
             {"nonce": n, "exercise": "batched_dot", "meta": {"kind": "value", "value": True}, "calls": []}]
    with open(found.group(1), "w") as f:
        f.write("\\n".join(real_dumps(line) for line in lines) + "\\n")
        f.write("[" * 100000 + "\\n")  # nested too deep for any JSON parser
        f.write("not json \\udcff\\n")
        f.write(real_dumps({"nonce": n, "done": True}) + "\\n")

get_ipython().events.register("post_run_cell", rewrite)""")

    liar = solution()  # a wrong merge_heads inside a tensor subclass that says it equals anything
    i = code(liar, "def merge_heads(")
    liar.cells[i].source = (
        "import functools\n\n"
        "class Liar(torch.Tensor):\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        if func in (torch.allclose, torch.equal, torch.Tensor.__eq__):\n"
        "            return True\n"
        "        return super().__torch_function__(func, types, args, kwargs or {})\n\n\n"
        "def wrong_merge(z):\n"
        "    return torch.zeros(z.shape[0], z.shape[1], z.shape[2] * z.shape[3]).as_subclass(Liar)\n\n\n"
        "merge_heads = functools.partial(wrong_merge)")
    nbs["subclass_partial"] = liar

    # -- honest students the grader must not fail (item 2)
    shadow = solution()
    shadow.cells.append(nbformat.v4.new_code_cell(
        "max = 3\nid = 7\nlist = [1, 2]\ndict = None\nlen = 0\nstr = 'text'\nprint = None\n"
        "isinstance = None\ngetattr = None\ntype = None\nsys = None\njson = None\nsignal = None\n"
        "importlib = None\nglobals = None\nexec = None\nrepr = None\n\n\n"
        "def open(*args, **kwargs):\n    raise RuntimeError('my own open')"))
    nbs["shadowed_builtins"] = shadow
    broken = solution()  # the grader's own cell cannot import: its fault, not the student's
    broken.cells.append(nbformat.v4.new_code_cell(
        "import sys\nsys.modules['toykit.grading.checkcell'] = None"))
    nbs["grader_cell_fails"] = broken

    # -- hostile text and data (item 1, item 9)
    hostile = solved(learner(), ["zero_ablate_hook"])
    i = code(hostile, "def merge_heads(")
    hostile.cells[i].source = (
        "def merge_heads(z):\n"
        "    raise ValueError('\\udcff ```\\n# Injected heading\\n<img src=x onerror=alert(1)> '\n"
        "                     '[click](http://evil.example) ' + 'x' * 10**6)")
    i = code(hostile, "def batched_dot(")
    hostile.cells[i].source = (
        "def batched_dot(a, b):\n    x = []\n    for _ in range(100000):\n        x = [x]\n    return x")
    i = code(hostile, "def cache_hidden(")
    hostile.cells[i].source = "def cache_hidden(model, x, layer):\n    return '\\udcff' * 10"
    hostile.cells.insert(i + 1, nbformat.v4.new_code_cell("raise RuntimeError('\\udcff in a cell error')"))
    nbs["hostile_text"] = hostile


    paths = {name: folder / f"{name}.ipynb" for name in nbs}
    paths["escape"] = folder / "escape.ipynb"
    for name, nb in nbs.items():
        paths[name].write_text(nb if isinstance(nb, str) else nbformat.writes(nb), encoding="utf-8")
    escape = insert_after(learner(), "from toykit.exercises import ch00", f"""\
import json, os
attempts = {{}}
def attempt(what, fn):
    try:
        fn()
        attempts[what] = "done"
    except Exception as err:
        attempts[what] = type(err).__name__
def steal():  # another submission's solutions, by its original path
    other = json.load(open({str(paths["correct"])!r}))
    for cell in other["cells"]:
        if cell["cell_type"] == "code" and "def " in "".join(cell["source"]):
            exec("".join(cell["source"]), globals())
def write(path):
    with open(path, "a") as f:
        f.write("# was here")
attempt("steal", steal)
attempt("list submissions", lambda: os.listdir({str(folder)!r}))
attempt("write submission", lambda: write({str(paths["correct"])!r}))
attempt("write course", lambda: write({str(ROOT / "toykit" / "GRADER_ESCAPE.txt")!r}))
attempt("write parent", lambda: write("../escape.txt"))
attempt("write tmp", lambda: write("/tmp/toykit-escape.txt"))
attempt("write home", lambda: write(os.path.expanduser("~/escape.txt")))
print(attempts)""")
    paths["escape"].write_text(nbformat.writes(escape), encoding="utf-8")
    return paths


# ---------------------------------------------------------------- one batch, many tests


def tree_hashes(folder: Path, skip=(".venv", ".git", "__pycache__", "_build", ".ruff_cache", ".pytest_cache",
                                    ".ipynb_checkpoints", "checkpoints")) -> dict[str, str]:
    # (checkpoints/: binary files that long training runs elsewhere may be writing right now)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not set(p.relative_to(folder).parts) & set(skip)}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    subs = tmp_path_factory.mktemp("submissions")
    out = tmp_path_factory.mktemp("grades")
    paths = fixtures(subs)
    course_before, subs_before = tree_hashes(ROOT), tree_hashes(subs)
    csv_rows_seen = []

    def log(line: str) -> None:
        if line.startswith("["):  # a submission finished: its row must be on disk already
            with open(out / "grades.csv", encoding="utf-8") as f:
                csv_rows_seen.append(len(list(csv.reader(f))) - 1)

    rows = grade("00", sorted(paths.values()), out, jobs=2, timeout=TIMEOUT, cell_timeout=CELL_TIMEOUT,
                 memory_mb=MEMORY_MB, root=ROOT, log=log)
    return {"rows": rows, "out": out, "subs": subs, "paths": paths, "csv_rows_seen": csv_rows_seen,
            "course_before": course_before, "subs_before": subs_before}


# name: (points per exercise, status, a phrase of the status detail)
EXPECTED = {
    "correct": ([1, 1, 1, 1], "ok", "without errors"),
    "untouched": ([0, 0, 0, 0], "errors", "raised errors"),
    "partial": ([0, 0, 1, 1], "errors", "raised errors"),
    "loop_interrupted": ([1, 1, 1, 1], "timeout", "was interrupted"),
    "kernel_exit": ([0, 0, 0, 0], "kernel_died", "died during cell"),
    "kernel_segfault": ([0, 0, 0, 0], "kernel_died", "died during cell"),
    "kernel_sigkill": ([0, 0, 0, 0], "kernel_died", "died during cell"),
    "memory_hog": ([1, 1, 1, 1], "out_of_memory", f"limit {MEMORY_MB} MB"),
    "not_a_notebook": ([0, 0, 0, 0], "invalid_notebook", "invalid JSON"),
    "broken_json": ([0, 0, 0, 0], "invalid_notebook", "invalid JSON"),
    "wrong_chapter": ([0, 0, 0, 0], "wrong_chapter", "ch01"),
    "renamed_missing": ([1, 1, 0, 0], "ok", "without errors"),
    # the kernel's own (patched) checks never called the functions: nothing to replay
    "monkeypatch": ([0, 0, 0, 0], "tampered", "could not replay"),
    # the verdict is the real check's, on plain data: a subclass's lies do not cross (the notebook's own
    # check, which now demands a plain tensor, fails too); copying toykit's reference is not detected
    # (book/grading.md says so)
    "borrowed": ([1, 0, 1, 1], "errors", "raised errors"),
    "rigged_torch": ([0, 0, 0, 0], "errors", "raised errors"),
    "fake_checker_finder": ([0, 0, 0, 0], "tampered", "could not replay"),
    "results_rewriter": ([0, 0, 0, 0], "tampered", "record was altered"),
    "subclass_partial": ([1, 1, 0, 1], "ok", "without errors"),
    "shadowed_builtins": ([1, 1, 1, 1], "ok", "without errors"),
    "grader_cell_fails": ([0, 0, 0, 0], "grader_error", "grader's cell in the kernel failed"),
    "hostile_text": ([0, 1, 0, 0], "errors", "raised errors"),
    "escape": ([0, 0, 0, 0], "errors", "raised errors"),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_submission_gets_the_right_score_and_status(batch, name):
    if name == "escape" and not SANDBOXED:
        pytest.skip("no Landlock here: a kernel can read other submissions (documented in book/grading.md)")
    row = batch["rows"][name + ".ipynb"]
    points, status, phrase = EXPECTED[name]
    got = [row["exercises"][ex]["points"] for ex in EXERCISES]
    assert (got, row["status"]) == (points, status), (row["detail"], row["exercises"])
    assert phrase in row["detail"], row["detail"]
    assert row["total"] == sum(points) and row["max"] == 4


def test_a_notebook_that_ignores_interrupts_is_stopped(tmp_path):
    nb = solution()  # the title cell (it says chapter 00), then the loop: nothing slow before it
    nb.cells = [nb.cells[0], nbformat.v4.new_code_cell(
        "import time\nwhile True:  # swallows the grader's interrupt\n    try:\n        time.sleep(0.05)\n"
        "    except KeyboardInterrupt:\n        pass")]
    path = tmp_path / "stubborn.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    started = time.monotonic()
    row = grade("00", [path], tmp_path / "out", timeout=15, cell_timeout=3, root=ROOT, log=None)["stubborn.ipynb"]
    assert time.monotonic() - started < 35
    assert (row["status"], row["total"]) == ("timeout", 0), row["detail"]
    assert "ran longer than 15 s and was stopped (cell 2 ran past the per-cell limit and ignored the interrupt)" \
        in row["detail"]
    assert "not graded" in row["exercises"]["cache_hidden"]["message"]


def test_one_row_per_submission_in_csv_and_json(batch):
    out = batch["out"]
    with open(out / "grades.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["submission"] for r in table] == sorted(f"{name}.ipynb" for name in batch["paths"])
    assert list(table[0]) == ["submission", "file", *EXERCISES, "total", "max", "status"]
    correct = next(r for r in table if r["submission"] == "correct.ipynb")
    assert correct["file"] == str(batch["paths"]["correct"])
    assert (correct["total"], correct["status"]) == ("4", "ok")
    data = json.loads((out / "grades.json").read_text(encoding="utf-8"))
    assert data["chapter"] == "00_how_this_course_works" and data["max_points"] == 4
    assert set(data["submissions"]) == {f"{name}.ipynb" for name in batch["paths"]}
    assert {p.stem for p in (out / "feedback").glob("*.md")} == set(batch["paths"])


def test_rows_are_written_as_each_submission_finishes(batch):
    assert batch["csv_rows_seen"] == list(range(1, len(batch["paths"]) + 1))


def test_messages_say_what_went_wrong(batch):
    rows = {key.removesuffix(".ipynb"): row for key, row in batch["rows"].items()}
    missing = rows["renamed_missing"]["exercises"]
    assert "`merge_heads` not found" in missing["merge_heads"]["message"]
    assert "did you rename it" in missing["batched_dot"]["message"]
    assert "not done yet" in rows["untouched"]["exercises"]["merge_heads"]["hint"]
    borrowed = rows["borrowed"]["exercises"]  # the subclass arrives as plain values: the real check says no
    assert "values differ" in borrowed["zero_ablate_hook"]["message"]
    liar = rows["subclass_partial"]["exercises"]["merge_heads"]
    assert "values differ" in liar["message"] and not liar["passed"]
    died = rows["kernel_exit"]
    assert "not graded" in died["exercises"]["cache_hidden"]["message"]
    assert "cell 12" in died["detail"]  # the cell right after the first check
    interrupted = rows["loop_interrupted"]
    assert f"cell 36 ran longer than {CELL_TIMEOUT} s" in interrupted["detail"]
    hostile = rows["hostile_text"]["exercises"]
    assert "nested more than 32 levels" in hostile["batched_dot"]["message"]
    assert "?" in hostile["merge_heads"]["message"] and len(hostile["merge_heads"]["message"]) <= 4000


def test_hostile_text_is_stored_and_rendered_safely(batch):
    raw = (batch["out"] / "grades.json").read_bytes()
    raw.decode("utf-8")  # valid UTF-8: no lone surrogate reached the file
    text = (batch["out"] / "feedback" / "hostile_text.md").read_text(encoding="utf-8")
    assert "Injected heading" in text  # shown, but as text
    rest = outside_fences(text)
    assert not any(line.startswith("# Injected") for line in rest.splitlines())
    assert "<img" not in rest and not re.search(r"(?<!\\)\]\(", rest)


def test_feedback_lists_passes_failures_and_hints(batch):
    text = (batch["out"] / "feedback" / "partial.md").read_text(encoding="utf-8")
    assert "**2 / 4 points**" in text
    assert "### ✔ `merge_heads` (1 / 1)" in text and "### ✘ `cache_hidden` (0 / 1)" in text
    assert "**Hint:** this exercise is not done yet" in text


def test_course_files_and_other_submissions_are_untouched(batch):
    assert tree_hashes(batch["subs"]) == batch["subs_before"]
    assert tree_hashes(ROOT) == batch["course_before"]
    assert not (ROOT / "toykit" / "GRADER_ESCAPE.txt").exists()
    assert not Path("/tmp/toykit-escape.txt").exists() or not SANDBOXED


def test_a_rerun_skips_what_is_graded_and_force_regrades(batch, capsys):
    out, paths = batch["out"], batch["paths"]
    before = (out / "grades.json").read_text(encoding="utf-8")
    grade("00", [paths["correct"], paths["broken_json"]], out, root=ROOT, log=print)
    assert "skip correct.ipynb: already graded" in capsys.readouterr().out
    assert (out / "grades.json").read_text(encoding="utf-8") == before
    grade("00", [paths["not_a_notebook"]], out, root=ROOT, force=True, log=print)
    assert "[1/1] not_a_notebook.ipynb: 0/4 invalid_notebook" in capsys.readouterr().out
    assert json.loads((out / "grades.json").read_text())["submissions"].keys() == batch["rows"].keys()
    # the grader's own failure is not final: the row is graded again on the next run
    grade("00", [paths["grader_cell_fails"]], out, root=ROOT, log=print)
    assert "skip" not in capsys.readouterr().out


def test_a_lost_row_is_graded_again(batch, tmp_path, capsys):
    # as after a crash: the rows on disk are kept, and only what is missing is graded
    out = tmp_path / "grades"
    out.mkdir()
    data = json.loads((batch["out"] / "grades.json").read_text(encoding="utf-8"))
    del data["submissions"]["wrong_chapter.ipynb"]
    (out / "grades.json").write_text(json.dumps(data), encoding="utf-8")
    paths = batch["paths"]
    rows = grade("00", [paths["untouched"], paths["wrong_chapter"]], out, root=ROOT, log=print)
    printed = capsys.readouterr().out
    assert "skip untouched.ipynb" in printed and "[1/1] wrong_chapter.ipynb" in printed
    assert rows["wrong_chapter.ipynb"]["status"] == "wrong_chapter" and len(rows) == len(paths)


def test_another_chapters_report_is_not_overwritten(tmp_path):
    (tmp_path / "grades.json").write_text(json.dumps({"chapter": "01_superposition"}), encoding="utf-8")
    with pytest.raises(ValueError, match="holds grades for chapter"):
        grade("00", [SOLUTION], tmp_path, root=ROOT, log=None)


# ---------------------------------------------------------------- chapter spec and points


def test_the_spec_lists_the_exercises_in_notebook_order():
    spec = chapter_spec("00", ROOT)
    assert [e.id for e in spec.exercises] == EXERCISES  # demo check calls inside try: are not exercises
    assert [e.name for e in spec.exercises] == EXERCISES
    assert spec.max_points == 4 and spec.stem == "00_how_this_course_works"


def test_points_come_from_the_notebook_metadata():
    nb = solution()
    nb.metadata["toykit"] = {"points": {"merge_heads": 2, "batched_dot": 0.5}}
    spec = parse_spec(nb, "00_how_this_course_works", SOLUTION)
    assert [e.points for e in spec.exercises] == [1, 1, 2, 0.5] and spec.max_points == 4.5
    nb.metadata["toykit"] = {"points": {"merge_head": 2}}
    with pytest.raises(ValueError, match="unknown exercises"):
        parse_spec(nb, "00_how_this_course_works", SOLUTION)


# ---------------------------------------------------------------- the commands


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toykit")
    sub = p.add_subparsers(dest="command", required=True)
    add_grade_parser(sub)
    add_assign_parser(sub)
    return p


def run_cli(argv: list[str]) -> int:
    """``toykit.cli.main(argv)`` once `grade` and `assign` are wired into it; until then, the same
    sub-commands on a parser of our own."""
    from toykit import cli

    try:
        return cli.main(argv)
    except SystemExit:  # argparse: invalid choice 'grade'
        args = parser().parse_args(argv)
        return args.func(args)


def test_register_adds_both_commands():
    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    assert p.parse_args(["grade", "00", "a.ipynb", "--out", "x", "--jobs", "2"]).jobs == 2
    assert p.parse_args(["assign", "00", "--out", "x"]).chapter == "00"


def test_grade_command_writes_the_report(tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "junk.ipynb").write_text("{not json", encoding="utf-8")
    assert run_cli(["grade", "00", str(tmp_path / "junk.ipynb"), "--out", str(out), "--root", str(ROOT)]) == 0
    assert "0/4 invalid_notebook" in capsys.readouterr().out
    assert (out / "grades.csv").exists() and (out / "feedback" / "junk.md").exists()
    assert run_cli(["grade", "00", str(tmp_path / "nothing.ipynb"), "--out", str(out), "--root", str(ROOT)]) == 2
    assert "no such submission" in capsys.readouterr().err
    assert run_cli(["grade", "99", str(tmp_path / "junk.ipynb"), "--out", str(out), "--root", str(ROOT)]) == 2


def test_assign_writes_the_learner_notebook_and_a_readme(tmp_path):
    assert run_cli(["assign", "00", "--out", str(tmp_path), "--root", str(ROOT)]) == 0
    nb = nbformat.read(tmp_path / SOLUTION.name, as_version=4)
    assert nbformat.writes(nb) == nbformat.writes(learner())
    assert not any(c.get("outputs") for c in nb.cells)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    for phrase in ("make lab", "ch00.check_merge_heads(merge_heads)", "keep the function names", "Total: 4 points"):
        assert phrase in readme
    (tmp_path / "README.md").write_text("edited", encoding="utf-8")
    assert run_cli(["assign", "00", "--out", str(tmp_path), "--root", str(ROOT)]) == 2


# ---------------------------------------------------------------- record and replay, without a kernel


def record(check, obj) -> dict:
    """What the kernel's cell writes for ``obj`` on ``check``, through JSON as in the file."""
    from toykit.grading.replay import Recorder

    recorder = Recorder(obj)
    try:
        check(recorder.learner)
    except BaseException:  # the kernel's run failed: the grader decides anyway
        pass
    return json.loads(json.dumps({"meta": recorder.meta, "calls": recorder.events}))


def verdict(line: dict, check: str, module: str = "ch00") -> dict:
    from toykit.grading.verdict import judge

    return judge(line, module, check, 60)


def test_replay_gives_the_real_checks_verdict_and_hint():
    import torch

    from toykit.exercises import ch00

    assert verdict(record(ch00.check_merge_heads, ch00.merge_heads), "check_merge_heads")["passed"]
    wrong = verdict(record(ch00.check_merge_heads, lambda z: z.sum(2)), "check_merge_heads")
    assert not wrong["passed"] and "summed over the heads" in wrong["hint"]

    def in_place(activation, hook, neurons):  # edits its input: the replayed arguments change too
        activation[..., neurons] = 0.0
        return activation
    bad = verdict(record(ch00.check_zero_ablate_hook, in_place), "check_zero_ablate_hook")
    assert not bad["passed"] and "in place" in bad["hint"]

    def leaves_hooks(model, x, layer):  # a hook left on the model is replayed onto the grader's model
        store = {}
        model.hook_dict[f"blocks.{layer}.hook_post"].add_hook(lambda a, hook: store.update(a=a))
        model(x)
        return store["a"]
    leak = verdict(record(ch00.check_cache_hidden, leaves_hooks), "check_cache_hidden")
    assert not leak["passed"] and "hooks still attached" in leak["detail"]

    def subclass(z):
        return ch00.merge_heads(z).as_subclass(type("Sub", (torch.Tensor,), {}))
    assert verdict(record(ch00.check_merge_heads, subclass), "check_merge_heads")["passed"]  # plain values


def test_replay_of_module_classes_rebuilds_their_parameters():
    from torch import nn

    from toykit import transformer
    from toykit.exercises import ch03

    ok = record(ch03.check_layer_norm, transformer.LayerNorm)
    assert ok["meta"]["kind"] == "class" and verdict(ok, "check_layer_norm", "ch03")["passed"]

    class Unbiased(transformer.LayerNorm):
        def forward(self, x):
            x = x - x.mean(-1, keepdim=True)
            return x / (x.var(-1, keepdim=True, unbiased=True) + self.cfg.eps).sqrt() * self.w + self.b
    wrong = verdict(record(ch03.check_layer_norm, Unbiased), "check_layer_norm", "ch03")
    assert not wrong["passed"] and "biased one" in wrong["hint"]

    class Renamed(nn.Module):  # the check reads the stand-in's parameters, as it read the learner's
        def __init__(self, cfg):
            super().__init__()
            self.weight = nn.Parameter(torch_ones(cfg.d_model))
    named = verdict(record(ch03.check_layer_norm, Renamed), "check_layer_norm", "ch03")
    assert not named["passed"] and "missing parameter 'w'" in named["detail"]
    instance = verdict(record(ch03.check_lm_cross_entropy_loss, nn.Identity()), "check_lm_cross_entropy_loss", "ch03")
    assert not instance["passed"] and "TypeError" in instance["detail"]  # a module is refused as before


def test_replay_keeps_whether_a_loss_carries_a_gradient():
    # values cross without their autograd graph; an honest loss must still pass the gradient test
    from toykit.exercises import ch02, ch03
    from toykit.exercises.solutions import SOLUTIONS
    from toykit.transformer import lm_cross_entropy_loss

    assert verdict(record(ch03.check_lm_cross_entropy_loss, lm_cross_entropy_loss),
                   "check_lm_cross_entropy_loss", "ch03")["passed"]
    namespace: dict = {}
    exec(SOLUTIONS["ch02.sae_loss"], namespace)
    assert verdict(record(ch02.check_sae_loss, namespace["sae_loss"]), "check_sae_loss", "ch02")["passed"]

    def detached(logits, tokens):
        return lm_cross_entropy_loss(logits, tokens).detach()
    cut = verdict(record(ch03.check_lm_cross_entropy_loss, detached), "check_lm_cross_entropy_loss", "ch03")
    assert not cut["passed"] and "carries no gradient" in cut["detail"]

    line = record(ch03.check_lm_cross_entropy_loss, lm_cross_entropy_loss)
    line["calls"][0]["grad"] = [5]  # a flag naming no output tensor is malformed, not a pass
    assert not verdict(line, "check_lm_cross_entropy_loss", "ch03")["passed"]


def test_replay_of_returned_hooks_records_and_replays_their_calls():
    # a hook factory (ch08) returns a function: its calls are recorded and replayed in order
    from toykit.causal_tracing import restore_hook
    from toykit.exercises import ch08
    from toykit.steering import steering_hook

    for check, right in (("check_steering_hook", steering_hook), ("check_restore_hook", restore_hook)):
        line = record(getattr(ch08, check), right)
        assert any("fn" in call for call in line["calls"]), check
        assert verdict(line, check, "ch08")["passed"], check

    def unscaled(vector, coeff, positions):  # forgets the coefficient
        return steering_hook(vector, 1.0, positions)
    wrong = verdict(record(ch08.check_steering_hook, unscaled), "check_steering_hook", "ch08")
    assert not wrong["passed"] and "coeff" in wrong["hint"]


def test_replay_of_result_records_rebuilds_the_graders_own_class():
    # ch09's preferred_orientation returns an OrientationTuning, a frozen dataclass of tensors
    import torch

    from toykit.exercises import ch09
    from toykit.tuning_curves import OrientationTuning, preferred_orientation

    line = record(ch09.check_preferred_orientation, preferred_orientation)
    assert verdict(line, "check_preferred_orientation", "ch09")["passed"]

    def undoubled(angles, responses):  # a plain circular mean: wrong for orientations
        a = torch.deg2rad(torch.as_tensor(angles, dtype=responses.dtype)).reshape(-1, *[1] * (responses.ndim - 1))
        c, s = (responses * a.cos()).sum(0), (responses * a.sin()).sum(0)
        return OrientationTuning(torch.rad2deg(torch.atan2(s, c)) % 180,
                                 1 - (c.hypot(s) / responses.sum(0)).clamp(max=1))
    assert not verdict(record(ch09.check_preferred_orientation, undoubled), "check_preferred_orientation", "ch09")[
        "passed"]


def test_wire_rebuilds_only_known_records_with_their_own_fields():
    import torch

    from toykit.grading.wire import WireError, decode, encode
    from toykit.tuning_curves import OrientationTuning

    good = encode(OrientationTuning(torch.zeros(3), torch.ones(3)))
    assert isinstance(decode(json.loads(json.dumps(good))), OrientationTuning)
    name, fields = good["R"]
    for forged in ({"R": ["os.system", fields]},  # not a known record
                   {"R": [["x"], fields]},
                   {"R": [name, fields[:1]]},  # a field missing
                   {"R": [name, [[k + "_", v] for k, v in fields]]},  # other field names
                   {"R": [name, fields + [["extra", 1]]]}):
        with pytest.raises(WireError):
            decode(forged)


def test_replay_of_a_returned_model_loads_its_weights_into_a_copy_of_the_argument():
    # ch08's remove_backdoor returns an edited copy of the model it was given
    import torch

    from toykit.grading.replay import Recorder, Replayer
    from toykit.transformer import HookedTransformer, TransformerConfig, copy_model

    given = HookedTransformer(TransformerConfig(n_layers=1, d_model=8, n_ctx=4, d_vocab=5, n_heads=2, seed=0))
    tokens = torch.tensor([[1, 2, 3]])

    def edit(model):
        new = copy_model(model)
        with torch.no_grad():
            new.W_U.mul_(2)
        return new

    def hooked(model):
        new = copy_model(model)
        new.hook_dict["hook_embed"].add_hook(lambda act, hook: act * 0)
        return new

    def other(model):
        return HookedTransformer(TransformerConfig(n_layers=2, d_model=8, n_ctx=4, d_vocab=5, n_heads=2, seed=1))

    for fn, problem in ((edit, None), (hooked, "hooks attached"), (other, "not a copy of a model it was given")):
        recorder = Recorder(fn)
        kernel_model = recorder.learner(given)
        data = json.loads(json.dumps({"meta": recorder.meta, "calls": recorder.events}))
        replayer = Replayer(data["meta"], data["calls"])
        grader_given = copy_model(given)
        if problem is None:
            rebuilt = replayer.learner(grader_given)
            assert type(rebuilt) is HookedTransformer and rebuilt is not grader_given
            torch.testing.assert_close(rebuilt(tokens), kernel_model(tokens))
            torch.testing.assert_close(grader_given(tokens), given(tokens))  # the argument is untouched
        else:
            with pytest.raises(TypeError, match=problem):
                replayer.learner(grader_given)


def torch_ones(n):
    import torch

    return torch.ones(n)


def test_a_record_that_does_not_fit_the_graders_run_is_not_believed():
    from toykit.exercises import ch00

    good = record(ch00.check_batched_dot, ch00.batched_dot)
    forged = json.loads(json.dumps(good))
    forged["calls"][0]["in"] = "0" * 64  # answers to other inputs
    out = verdict(forged, "check_batched_dot")
    assert not out["passed"] and out["suspect"] and "differ from the grader's" in out["detail"]
    short = {**good, "calls": good["calls"][:2]}  # fewer calls than the check makes
    assert verdict(short, "check_batched_dot")["suspect"]
    garbage = {**good, "calls": [{**good["calls"][0], "out": {"T": ["float32", [10**12], "AAAA"]}}]}
    assert verdict(garbage, "check_batched_dot")["suspect"]
    assert verdict({"meta": {"kind": "eval"}, "calls": []}, "check_batched_dot")["suspect"]
    value = verdict({"meta": {"kind": "value", "value": True, "type": "bool"}, "calls": []}, "check_batched_dot")
    assert not value["passed"] and "TypeError" in value["detail"]


def test_wire_refuses_anything_but_plain_data():
    import torch

    from toykit.grading.wire import WireError, decode, encode

    value = {"a": [1, 2.5, float("nan"), None, True, "\udcff"], "t": (torch.arange(6).reshape(2, 3),
                                                                      torch.ones(2, dtype=torch.bfloat16))}
    back = decode(json.loads(json.dumps(encode(value))))
    assert back["a"][:2] == [1, 2.5] and back["a"][5] == "?" and torch.equal(back["t"][0], value["t"][0])
    assert type(back["t"][1]) is torch.Tensor and back["t"][1].dtype == torch.bfloat16
    for bad in (object(), torch.nn.Linear(2, 2), _deep(40), "x" * 200_001):
        with pytest.raises(WireError):
            encode(bad)
    for bad in ({"T": ["float32", [3], "AAAA"]}, {"T": ["pickle", [1], ""]}, {"T": ["float32", [-1], ""]},
                {"T": ["float32", [1], "!!!!"]}, {"X": 1}, {"L": [1], "U": [2]}, [1, 2], {"D": [[{"L": []}, 1]]}):
        with pytest.raises(WireError):
            decode(bad)


def _deep(n: int) -> list:
    x: list = []
    for _ in range(n):
        x = [x]
    return x


# ---------------------------------------------------------------- hostile data never breaks a report


def test_hostile_outcomes_become_one_row_and_later_runs_still_load(tmp_path):
    from toykit.grading.report import Report, make_row, read_verdict

    spec = chapter_spec("00", ROOT)
    limits = {"timeout": 1, "cell_timeout": 1, "memory_mb": 1}
    outcome = {"status": "ok", "cells": 3, "detail": "\udcff" * 10, "cell_errors": [
        {"cell": 0, "ename": ["not", "a", "string"], "evalue": "x" * 200_000_000},
        {"cell": 1, "ename": "E\udcff", "evalue": _deep(5000)}, "junk", {"cell": "1"}]}
    verdicts = {"merge_heads": {"passed": True}, "batched_dot": {"passed": "yes", "detail": "\udcff" * 5,
                                                                "hint": 5, "case": ["x"]}, "other": 7}
    (tmp_path / "verdict.json").write_text(json.dumps({"exercises": verdicts, "problems": [], "done": True}))
    records, problems, done = read_verdict(tmp_path / "verdict.json", spec)
    row = make_row("a/b.ipynb", Path("/x/\udcff.ipynb"), "", spec, outcome, records, problems, limits, done)
    assert row["exercises"]["merge_heads"]["passed"] and not row["exercises"]["batched_dot"]["passed"]
    assert len(row["cell_errors"][0]["evalue"]) <= 1000 and row["status"] == "errors"
    report = Report(tmp_path / "out", spec, {})
    report.add(row)
    json.loads((tmp_path / "out" / "grades.json").read_bytes().decode("utf-8"))
    assert Report(tmp_path / "out", spec, {}).rows.keys() == {"a/b.ipynb"}  # a later run loads it
    assert (tmp_path / "out" / "feedback" / "a" / "b.md").exists()


def test_feedback_escapes_markdown_and_html():
    from toykit.grading.report import feedback_text

    spec = chapter_spec("00", ROOT)
    evil = "```\n# Owned\n<script>alert(1)</script> [x](http://evil) ![i](j) www.evil.org"
    row = {"file": "/s/a.ipynb", "total": 0, "max": 4, "status": "errors", "detail": evil, "limits": {},
           "cell_errors": [{"cell": 0, "ename": evil, "evalue": evil}],
           "exercises": {e.id: {"points": 0, "max": 1, "passed": False, "message": evil, "hint": evil, "case": evil}
                         for e in spec.exercises}}
    text = feedback_text(spec, row)
    rest = outside_fences(text)  # in a fenced block everything is shown as text, as CommonMark says
    assert "<script>" not in rest and not re.search(r"(?<!\\)\]\(", rest)  # no link, image or HTML
    assert "![" not in rest and "www.evil" not in rest and "http://" not in rest
    assert not any(line.startswith("# Owned") for line in rest.splitlines())
    assert text.count("\n````text\n") == 4  # each message in a fence longer than its own ```


def outside_fences(markdown: str) -> str:
    """The lines of ``markdown`` outside fenced code blocks, read as CommonMark does: a block
    closes only at a fence of the same backticks."""
    rest, fence = [], None
    for line in markdown.splitlines():
        if fence is None and line.startswith("```"):
            fence = line[:len(line) - len(line.lstrip("`"))]
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None:
            rest.append(line)
    return "\n".join(rest)


# ---------------------------------------------------------------- row identity, chapter changes, shards


def junk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json", encoding="utf-8")
    return path


def test_rows_are_keyed_by_path_under_the_submissions_root(tmp_path, capsys):
    subs, out = tmp_path / "subs", tmp_path / "out"
    for name in ("sec1/alice.ipynb", "sec2/alice.ipynb", "bob.ipynb", "late/bob.ipynb"):
        junk(subs / name)
    (subs / "folder.ipynb").mkdir()
    os.mkfifo(subs / "pipe.ipynb")  # reading it would block the grader forever
    (subs / "outside.ipynb").symlink_to(junk(tmp_path / "secret.ipynb"))
    (subs / "inside.ipynb").symlink_to(subs / "bob.ipynb")
    rows = grade("00", [subs], out, root=ROOT, log=print)
    assert sorted(rows) == ["bob.ipynb", "folder.ipynb", "inside.ipynb", "late/bob.ipynb", "outside.ipynb",
                            "pipe.ipynb", "sec1/alice.ipynb", "sec2/alice.ipynb"]
    assert "FIFO" in rows["pipe.ipynb"]["detail"] and "folder" in rows["folder.ipynb"]["detail"]
    assert "outside the submissions folder" in rows["outside.ipynb"]["detail"]
    assert "invalid JSON" in rows["inside.ipynb"]["detail"]
    # grading one file again, alone, finds its own row: no duplicate, no other student's row replaced
    capsys.readouterr()
    again = grade("00", [subs / "late" / "bob.ipynb"], out, root=ROOT, force=True, log=print)
    assert "[1/1] late/bob.ipynb" in capsys.readouterr().out and again.keys() == rows.keys()
    assert (out / "feedback" / "sec1" / "alice.md").exists() and (out / "feedback" / "sec2" / "alice.md").exists()


def test_a_changed_chapter_regrades_instead_of_mixing_scales(tmp_path, capsys):
    spec = chapter_spec("00", ROOT)
    subs, out = tmp_path / "subs", tmp_path / "out"
    junk(subs / "a.ipynb"), junk(subs / "b.ipynb")
    grade(spec, [subs], out, log=None)
    more = dataclasses.replace(spec, exercises=[*spec.exercises[:3], dataclasses.replace(spec.exercises[3], points=3),
                                                Exercise("extra", "extra", "ch00", "check_extra", 2.0)])
    capsys.readouterr()
    rows = grade(more, [subs / "a.ipynb"], out, log=print)  # no KeyError; a is graded again
    assert "[1/1] a.ipynb: 0/8" in capsys.readouterr().out and rows["a.ipynb"]["max"] == 8
    with open(out / "grades.csv", encoding="utf-8") as f:
        table = {r["submission"]: r for r in csv.DictReader(f)}
    assert table["a.ipynb"]["max"] == "8" and table["a.ipynb"]["extra"] == "0"
    assert table["b.ipynb"]["status"] == "stale" and table["b.ipynb"]["max"] == ""  # never on the old scale
    grade(more, [subs], out, log=None)
    assert json.loads((out / "grades.json").read_text())["submissions"]["b.ipynb"]["max"] == 8


def test_shards_split_deterministically_and_merge_into_one_report(tmp_path):
    from toykit.grading.batch import in_shard, parse_shard

    subs = tmp_path / "subs"
    names = [f"s{i}/n{i}.ipynb" for i in range(12)]
    for name in names:
        junk(subs / name)
    shares = [[n for n in names if in_shard(n, (k, 3))] for k in range(3)]
    assert sorted(sum(shares, [])) == sorted(names) and all(shares)  # each in exactly one shard
    for k in range(3):
        grade("00", [subs], tmp_path / f"shard{k}", root=ROOT, shard=parse_shard(f"{k}/3"), log=None)
        assert set(json.loads((tmp_path / f"shard{k}" / "grades.json").read_text())["submissions"]) == set(shares[k])
    assert run_cli(["grade", "merge", *(str(tmp_path / f"shard{k}") for k in range(3)), "--out",
                    str(tmp_path / "all"), "--root", str(ROOT)]) == 0
    with open(tmp_path / "all" / "grades.csv", encoding="utf-8") as f:
        assert sorted(r["submission"] for r in csv.DictReader(f)) == sorted(names)
    for bad in ("3/3", "x", "-1/2", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "grades.json").write_text(json.dumps({"chapter": "00_how_this_course_works",
                                                                "fingerprint": "old", "submissions": {}}))
    assert run_cli(["grade", "merge", str(tmp_path / "shard0"), str(tmp_path / "other"), "--out",
                    str(tmp_path / "mixed"), "--root", str(ROOT)]) == 2


# ---------------------------------------------------------------- every chapter, honestly solved


def filled_learner(stem: str) -> nbformat.NotebookNode:
    """The learner notebook of ``stem`` as chapters/ holds it, each exercise filled in with the
    solution's code (the fence markers and hidden tests dropped), as a student who solved
    everything hands it in."""
    sol = nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", as_version=4)
    fills = {}
    for cell in sol.cells:
        if cell.cell_type == "code" and "# BEGIN SOLUTION" in cell.source:
            kept, hidden = [], False
            for line in cell.source.split("\n"):
                marker = line.strip()
                if marker in ("# BEGIN HIDDEN TESTS", "# END HIDDEN TESTS"):
                    hidden = marker.startswith("# BEGIN")
                elif marker not in ("# BEGIN SOLUTION", "# END SOLUTION") and not hidden:
                    kept.append(line)
            fills[strip_source(cell.source)] = "\n".join(kept)
    nb = nbformat.read(ROOT / "chapters" / f"{stem}.ipynb", as_version=4)
    filled = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source in fills:
            cell.source, filled = fills[cell.source], filled + 1
    assert filled == len(fills), f"{stem}: {filled} of {len(fills)} exercise cells found in chapters/"
    return nb


CHAPTERS = sorted(p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("stem", CHAPTERS)
def test_every_chapters_filled_learner_notebook_gets_full_marks(stem, tmp_path):
    # slow: one kernel per chapter, running the whole chapter (<= 90 s each on 2 quiet cores)
    path = tmp_path / "student.ipynb"
    path.write_text(nbformat.writes(filled_learner(stem)), encoding="utf-8")
    started = time.monotonic()
    row = grade(stem, [path], tmp_path / "out", timeout=1200, cell_timeout=600, root=ROOT, log=None)[path.name]
    print(f"{stem}: graded in {time.monotonic() - started:.0f} s")
    failed = {k: (v["message"], v.get("hint")) for k, v in row["exercises"].items() if not v["passed"]}
    assert (row["status"], row["total"]) == ("ok", row["max"]), (row["detail"], failed, row["cell_errors"])


# ---------------------------------------------------------------- Gradescope


def test_gradescope_bundle_grades_one_submission_into_results_json(tmp_path):
    assert run_cli(["assign", "00", "--out", str(tmp_path / "handout"), "--root", str(ROOT), "--gradescope"]) == 0
    bundle = tmp_path / "handout" / "gradescope"
    with zipfile.ZipFile(tmp_path / "handout" / "gradescope_00_how_this_course_works.zip") as zf:
        names = zf.namelist()
    assert {"setup.sh", "run_autograder", "chapter.json", "course/pyproject.toml"} <= set(names)
    assert "course/solutions/00_how_this_course_works.ipynb" in names
    # Gradescope's layout, under a root of our own: source/ (the bundle), submission/, results/
    root = tmp_path / "autograder"
    shutil.copytree(bundle, root / "source")
    (root / "submission").mkdir()
    partial = solved(learner(), ["merge_heads", "batched_dot"])
    (root / "submission" / "my_work.ipynb").write_text(nbformat.writes(partial), encoding="utf-8")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "TOYKIT_PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert results["score"] == 2
    tests = {t["name"].split(" ")[0]: t for t in results["tests"]}
    assert list(tests) == EXERCISES
    assert (tests["merge_heads"]["status"], tests["merge_heads"]["score"], tests["merge_heads"]["max_score"]) == (
        "passed", 1, 1)
    assert tests["cache_hidden"]["status"] == "failed" and tests["cache_hidden"]["score"] == 0
    assert "not done yet" in tests["cache_hidden"]["output"]
    assert "Status: errors" in results["output"]
