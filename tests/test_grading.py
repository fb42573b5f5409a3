"""`toykit grade` and `toykit assign`: every kind of submission an instructor meets.

All fixture submissions are built here from chapter 00's solution notebook (and its learner
version, generated the way `toykit chapters build` does), by editing cells, so they never go
stale. One batch grades them all at once (2 jobs, short limits); the tests then read its rows.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path

import nbformat
import pytest

from toykit.grading import add_assign_parser, add_grade_parser, chapter_spec, grade, register
from toykit.grading.batch import submission_keys
from toykit.grading.sandbox import landlock_abi
from toykit.grading.spec import parse_spec
from toykit.notebooks import learner_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_how_this_course_works.ipynb"
EXERCISES = ["cache_hidden", "zero_ablate_hook", "merge_heads", "batched_dot"]
CELL_TIMEOUT, TIMEOUT, MEMORY_MB = 5, 120, 2048
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

    nbs["monkeypatch"] = insert_after(learner(), "from toykit.exercises import ch00", (
        "import toykit.exercises.checking as checking\n"
        f"for name in {EXERCISES!r}:\n"
        "    setattr(ch00, 'check_' + name, lambda fn, name=name: print('✔', name + ': 5 cases passed'))\n"
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
    "monkeypatch": ([0, 0, 0, 0], "ok", "without errors"),  # its own (patched) checks "pass"
    "borrowed": ([1, 0, 0, 0], "ok", "without errors"),
    "rigged_torch": ([0, 0, 0, 0], "tampered", "accepted a wrong answer"),
    "escape": ([0, 0, 0, 0], "errors", "raised errors"),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_submission_gets_the_right_score_and_status(batch, name):
    if name == "escape" and not SANDBOXED:
        pytest.skip("no Landlock here: a kernel can read other submissions (documented in book/grading.md)")
    row = batch["rows"][name]
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
    row = grade("00", [path], tmp_path / "out", timeout=15, cell_timeout=3, root=ROOT, log=None)["stubborn"]
    assert time.monotonic() - started < 35
    assert (row["status"], row["total"]) == ("timeout", 0), row["detail"]
    assert "ran longer than 15 s and was stopped (cell 2 ran past the per-cell limit and ignored the interrupt)" \
        in row["detail"]
    assert "not graded" in row["exercises"]["cache_hidden"]["message"]


def test_one_row_per_submission_in_csv_and_json(batch):
    out = batch["out"]
    with open(out / "grades.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["submission"] for r in table] == sorted(batch["paths"])
    assert list(table[0]) == ["submission", *EXERCISES, "total", "max", "status"]
    correct = next(r for r in table if r["submission"] == "correct")
    assert (correct["total"], correct["status"]) == ("4", "ok")
    data = json.loads((out / "grades.json").read_text(encoding="utf-8"))
    assert data["chapter"] == "00_how_this_course_works" and data["max_points"] == 4
    assert set(data["submissions"]) == set(batch["paths"])
    assert {p.stem for p in (out / "feedback").glob("*.md")} == set(batch["paths"])


def test_rows_are_written_as_each_submission_finishes(batch):
    assert batch["csv_rows_seen"] == list(range(1, len(batch["paths"]) + 1))


def test_messages_say_what_went_wrong(batch):
    rows = batch["rows"]
    missing = rows["renamed_missing"]["exercises"]
    assert "`merge_heads` not found" in missing["merge_heads"]["message"]
    assert "did you rename it" in missing["batched_dot"]["message"]
    assert "not done yet" in rows["untouched"]["exercises"]["merge_heads"]["hint"]
    assert "not done yet" in rows["monkeypatch"]["exercises"]["cache_hidden"]["hint"]
    borrowed = rows["borrowed"]["exercises"]
    assert "tensor subclass" in borrowed["zero_ablate_hook"]["message"]
    assert "calls toykit's own merge_heads" in borrowed["merge_heads"]["message"]
    assert "instead of calling toykit's reference" in borrowed["merge_heads"]["hint"]
    assert "toykit's own implementation" in borrowed["batched_dot"]["message"]
    died = rows["kernel_exit"]
    assert "not graded" in died["exercises"]["cache_hidden"]["message"]
    assert "cell 12" in died["detail"]  # the cell right after the first check
    interrupted = rows["loop_interrupted"]
    assert "cell 36 ran longer than 5 s" in interrupted["detail"]


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
    assert "skip correct: already graded" in capsys.readouterr().out
    assert (out / "grades.json").read_text(encoding="utf-8") == before
    grade("00", [paths["not_a_notebook"]], out, root=ROOT, force=True, log=print)
    assert "[1/1] not_a_notebook: 0/4 invalid_notebook" in capsys.readouterr().out
    assert json.loads((out / "grades.json").read_text())["submissions"].keys() == batch["rows"].keys()


def test_a_lost_row_is_graded_again(batch, tmp_path, capsys):
    # as after a crash: the rows on disk are kept, and only what is missing is graded
    out = tmp_path / "grades"
    out.mkdir()
    data = json.loads((batch["out"] / "grades.json").read_text(encoding="utf-8"))
    del data["submissions"]["wrong_chapter"]
    (out / "grades.json").write_text(json.dumps(data), encoding="utf-8")
    paths = batch["paths"]
    rows = grade("00", [paths["untouched"], paths["wrong_chapter"]], out, root=ROOT, log=print)
    printed = capsys.readouterr().out
    assert "skip untouched" in printed and "[1/1] wrong_chapter" in printed
    assert rows["wrong_chapter"]["status"] == "wrong_chapter" and len(rows) == len(paths)


def test_submissions_with_the_same_file_name_get_their_folders_name():
    paths = [Path("/x/alice/ch01.ipynb"), Path("/x/bob/ch01.ipynb"), Path("/x/carol.ipynb"), Path("/y/carol.ipynb")]
    assert list(submission_keys(paths).values()) == ["alice-ch01", "bob-ch01", "x-carol", "y-carol"]


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
