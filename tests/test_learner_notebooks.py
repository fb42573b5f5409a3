"""Every learner notebook runs to the end before the learner has written a line.

Chapter 00 promises that an unfinished exercise never breaks the cells after it. Each chapter in
chapters/ is executed exactly as shipped (every exercise still ``raise NotImplementedError()``):
the only cells allowed to fail are the check cells, each with the checker's "not done yet"
message, and every other cell must run, using toykit's version of each unfinished exercise.
Check cells carry the ``raises-exception`` tag, which makes JupyterLab's *Run All* (and
nbclient, here) carry on past them; any other failing cell stops the run and fails the test.
"""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from toykit.notebooks import Course

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
CHECK_LINE = re.compile(r"^ch\d\d\.check_\w+\(\w+\)\s*(#.*)?$", re.M)  # the grader's definition of an exercise
TAG = "raises-exception"


def is_check_cell(cell) -> bool:
    return cell.cell_type == "code" and CHECK_LINE.search(cell.source) is not None


def test_there_are_learner_notebooks():
    numbers = [int(p.name[:2]) for p in CHAPTERS]
    assert len(CHAPTERS) >= 8 and numbers[0] == 0 and len(set(numbers)) == len(numbers)
    # A gap in the numbering is a chapter still to be written: the README must list it as planned.
    readme = (ROOT / "README.md").read_text()
    for n in sorted(set(range(numbers[-1])) - set(numbers)):
        assert re.search(rf"^\| {n:02d} \|.*\| planned \|$", readme, re.M), f"chapter {n:02d} is missing"


@pytest.mark.parametrize("path", Course(ROOT).solution_paths(), ids=lambda p: p.stem)
def test_exactly_the_check_cells_may_raise(path):
    """Only a check cell may fail without stopping Run All, so a real bug elsewhere still stops it."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        tagged = TAG in cell.metadata.get("tags", [])
        assert tagged == is_check_cell(cell), (
            f"{path.name} cell {i}: " + ("a check cell without" if not tagged else "a non-check cell with")
            + f" the {TAG!r} tag")


@pytest.mark.slow  # executes every learner notebook in a Jupyter kernel
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_unfilled_notebook_runs_to_the_end(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert any("raise NotImplementedError()" in c.source for _, c in code), f"{path.name} has no exercise"

    # allow_errors=False: an untagged cell that fails raises CellExecutionError and fails the test.
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    never_ran = [i for i, c in code if c.execution_count is None]
    assert not never_ran, f"{path.name}: cells {never_ran} did not run"
    failed = {i: [o for o in c.outputs if o.output_type == "error"] for i, c in code}
    failed = {i: errors[0] for i, errors in failed.items() if errors}
    checks = {i for i, c in code if is_check_cell(c)}
    assert checks, f"{path.name} has no check cells"
    assert set(failed) == checks, (
        f"{path.name}: cells that failed {sorted(failed)} are not exactly the check cells {sorted(checks)}: "
        + "; ".join(f"cell {i}: {e.ename}: {e.evalue[:200]}" for i, e in failed.items() if i not in checks))
    for i, error in failed.items():
        assert error.ename == "CheckFailure" and "not done yet" in error.evalue, (
            f"{path.name} cell {i}: an unfinished exercise should say 'not done yet', got {error.ename}: "
            f"{error.evalue[:300]}")

    # Every cell that picks between the learner's function and toykit's said it fell back.
    for i, c in code:
        if re.search(r"\bchoose\(", c.source):
            text = "".join(o.get("text", "") for o in c.outputs if o.output_type == "stream")
            assert "↪" in text and "toykit's" in text, f"{path.name} cell {i} chose silently: {text[:300]!r}"
