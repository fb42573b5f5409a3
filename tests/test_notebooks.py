"""The solutions -> chapters pipeline: fences, determinism and the sync check."""

import shutil
from pathlib import Path

import nbformat
import pytest

from toykit.cli import main
from toykit.notebooks import Course, FenceError, find_root, learner_notebook, strip_source

ROOT = Path(__file__).resolve().parents[1]

SOLUTION_CELL = '''def relu(x):
    """x: [n] -> [n]"""
    # BEGIN SOLUTION
    y = x.clamp(min=0)
    return y
    # END SOLUTION

# BEGIN HIDDEN TESTS
assert relu is not None
# END HIDDEN TESTS
check(relu)'''


def test_strip_source_keeps_signature_docstring_and_indent():
    assert strip_source(SOLUTION_CELL) == '''def relu(x):
    """x: [n] -> [n]"""
    # YOUR CODE HERE
    raise NotImplementedError()

check(relu)'''


@pytest.mark.parametrize("bad, message", [
    ("# BEGIN SOLUTION\nx = 1", "never closed"),
    ("# END SOLUTION", "without a matching BEGIN"),
    ("# BEGIN SOLUTION\n# BEGIN HIDDEN TESTS\n# END HIDDEN TESTS\n# END SOLUTION", "inside an open"),
])
def test_unbalanced_fences_are_errors(bad, message):
    with pytest.raises(FenceError, match=message):
        strip_source(bad)


def make_solution() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = nbformat.v4.new_code_cell(SOLUTION_CELL, execution_count=3)
    code.outputs = [nbformat.v4.new_output("stream", text="✔ relu: 3 cases passed\n")]
    code.metadata["execution"] = {"iopub.execute_input": "2026-11-25T10:00:00Z"}
    hidden_only = nbformat.v4.new_code_cell("# BEGIN HIDDEN TESTS\nassert True\n# END HIDDEN TESTS")
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), code, hidden_only]
    return nb


def test_learner_notebook_clears_outputs_and_hidden_cells():
    solution = make_solution()
    learner = learner_notebook(solution)
    assert len(learner.cells) == 2  # the hidden-only cell is gone
    code = learner.cells[1]
    assert code.outputs == [] and code.execution_count is None and "execution" not in code.metadata
    assert "BEGIN" not in code.source and "NotImplementedError" in code.source
    assert solution.cells[1].outputs, "the solution itself must not be modified"


@pytest.fixture
def course(tmp_path) -> Course:
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    (tmp_path / "solutions").mkdir()
    nbformat.write(make_solution(), tmp_path / "solutions" / "01_demo.ipynb")
    return Course(find_root(tmp_path / "solutions"))


def test_build_is_deterministic_and_check_detects_stale_chapters(course, capsys):
    root = str(course.root)
    assert main(["chapters", "check", "--root", root]) == 1  # nothing built yet
    assert "chapters/01_demo.ipynb is missing" in capsys.readouterr().out

    assert main(["chapters", "build", "--root", root]) == 0
    first = (course.chapters / "01_demo.ipynb").read_bytes()
    assert course.build() == []  # a second build writes nothing...
    assert (course.chapters / "01_demo.ipynb").read_bytes() == first  # ...and bytes are identical
    assert main(["chapters", "check", "--root", root]) == 0

    # A solution edited without a rebuild makes the check fail and name the file.
    sol = course.solutions / "01_demo.ipynb"
    nb = nbformat.read(sol, as_version=4)
    nb.cells[0].source = "# A new title"
    nbformat.write(nb, sol)
    capsys.readouterr()
    assert main(["chapters", "check", "--root", root]) == 1
    assert "chapters/01_demo.ipynb is stale" in capsys.readouterr().out

    # A chapter with no solution is flagged too.
    course.build()
    shutil.copy(course.chapters / "01_demo.ipynb", course.chapters / "02_orphan.ipynb")
    assert course.stale() == ["chapters/02_orphan.ipynb has no solutions/02_orphan.ipynb"]


def test_build_does_not_overwrite_a_learners_work(course, capsys):
    course.build()
    chapter = course.chapters / "01_demo.ipynb"
    nb = nbformat.read(chapter, as_version=4)
    nb.cells[1].execution_count = 1  # the learner ran it
    nbformat.write(nb, chapter)
    work = chapter.read_bytes()
    assert main(["chapters", "build", "--root", str(course.root)]) == 2
    assert "--force" in capsys.readouterr().err
    assert chapter.read_bytes() == work
    assert main(["chapters", "build", "--root", str(course.root), "--force"]) == 0
    assert course.stale() == []


def test_solution_names_resolve_by_number_or_stem(course):
    assert [p.name for p in course.solution_paths(["01"])] == ["01_demo.ipynb"]
    assert [p.name for p in course.solution_paths(["01_demo"])] == ["01_demo.ipynb"]
    with pytest.raises(FileNotFoundError, match="no solution notebook matches '07'"):
        course.solution_paths(["07"])


def test_the_real_course_is_in_sync():
    course = Course(ROOT)
    assert course.solution_paths(), "solutions/ must hold the chapter notebooks"
    assert course.stale() == []


def test_solutions_are_committed_without_timing_metadata():
    for path in Course(ROOT).solution_paths():
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            assert "execution" not in cell.metadata, f"{path.name} cell {i} has timing metadata"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code), f"{path.name} is not fully executed"
        for c in code:
            assert "%pip" not in c.source and "!pip" not in c.source, f"{path.name} installs packages"
