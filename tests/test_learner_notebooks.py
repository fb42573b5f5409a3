"""Each learner notebook runs up to its first exercise, and that exercise's check then says
"not done yet": the set-up cells work, and the learner's first failure is a helpful one."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_learner_notebooks():
    assert [p.name[:2] for p in CHAPTERS][:2] == ["00", "01"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_runs_up_to_first_exercise(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(code) if "raise NotImplementedError()" in c.source)
    check = next(i for i in range(first + 1, len(code)) if ".check_" in code[i].source)
    nb.cells = code[: check + 1]
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for i, cell in enumerate(nb.cells[:-1]):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{path.name}: set-up cell {i} failed: {errors[0].ename}: {errors[0].evalue}"
    [error] = [o for o in nb.cells[-1].outputs if o.output_type == "error"]
    assert error.ename == "CheckFailure" and "not done yet" in error.evalue
