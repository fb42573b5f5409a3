"""From solution notebooks to learner notebooks, and keeping the two in sync.

``solutions/NN_name.ipynb`` is the single source of truth, committed executed. The learner
version ``chapters/NN_name.ipynb`` is generated from it:

- code between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` becomes ``# YOUR CODE HERE`` and
  ``raise NotImplementedError()``, at the indentation of the ``BEGIN`` marker;
- code between ``# BEGIN HIDDEN TESTS`` and ``# END HIDDEN TESTS`` is removed;
- outputs, execution counts and execution metadata are cleared.

Building is deterministic, so ``check`` can compare bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

NB_VERSION = 4
# The fence grammar, shared with toykit.book: a whole line ``# BEGIN SOLUTION``, ``# END SOLUTION``,
# ``# BEGIN HIDDEN TESTS`` or ``# END HIDDEN TESTS`` at any indentation. Fences never nest.
FENCE = re.compile(r"^(?P<indent>[ \t]*)# (?P<edge>BEGIN|END) (?P<kind>SOLUTION|HIDDEN TESTS)\s*$")
_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


class FenceError(ValueError):
    """A solution notebook's fences are unbalanced or nested."""


def find_root(start: Path | None = None) -> Path:
    """The repository root: the first folder upwards holding pyproject.toml and solutions/."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError(
        f"no toykit course found at or above {here} (looked for pyproject.toml and solutions/)"
    )


def strip_source(source: str, where: str = "cell") -> str:
    """Turn one solution cell's source into the learner's version."""
    out: list[str] = []
    open_kind: str | None = None
    for lineno, line in enumerate(source.split("\n"), start=1):
        m = FENCE.match(line)
        if m is None:
            if open_kind is None:
                out.append(line)
            continue
        kind, edge, indent = m["kind"], m["edge"], m["indent"]
        if edge == "BEGIN":
            if open_kind is not None:
                raise FenceError(f"{where}, line {lineno}: '# BEGIN {kind}' inside an open "
                                 f"'# BEGIN {open_kind}'")
            open_kind = kind
            if kind == "SOLUTION":
                out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
        else:
            if open_kind != kind:
                raise FenceError(f"{where}, line {lineno}: '# END {kind}' without a matching BEGIN")
            open_kind = None
    if open_kind is not None:
        raise FenceError(f"{where}: '# BEGIN {open_kind}' is never closed")
    return "\n".join(out).rstrip("\n")


def learner_notebook(solution: nbformat.NotebookNode, where: str = "notebook") -> nbformat.NotebookNode:
    """The learner version of a solution notebook (a new object; the input is not changed)."""
    nb = nbformat.from_dict(solution)  # deep copy
    cells = []
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.source = strip_source(cell.source, where=f"{where}, cell {i}")
            cell.outputs = []
            cell.execution_count = None
            if not cell.source.strip():
                continue  # a cell that held only hidden tests
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    """Canonical text of a notebook: what build writes and check compares."""
    text = nbformat.writes(nb, version=NB_VERSION)
    return text if text.endswith("\n") else text + "\n"


def _has_been_run(path: Path) -> bool:
    try:
        nb = nbformat.read(path, as_version=NB_VERSION)
    except Exception:
        return True  # unreadable: don't guess, don't overwrite
    return any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells)


@dataclass
class Course:
    root: Path

    @property
    def solutions(self) -> Path:
        return self.root / "solutions"

    @property
    def chapters(self) -> Path:
        return self.root / "chapters"

    def solution_paths(self, names: list[str] | None = None) -> list[Path]:
        paths = sorted(p for p in self.solutions.glob("*.ipynb") if _NAME.match(p.name))
        if not names:
            return paths
        chosen = []
        for name in names:
            stem = Path(name).name.removesuffix(".ipynb")
            hits = [p for p in paths if p.stem == stem or p.stem.startswith(stem + "_")
                    or p.stem.split("_", 1)[0] == stem]
            if not hits:
                known = ", ".join(p.stem for p in paths)
                raise FileNotFoundError(f"no solution notebook matches {name!r} (have: {known})")
            chosen += hits
        return chosen

    def expected_chapter(self, solution: Path) -> str:
        nb = nbformat.read(solution, as_version=NB_VERSION)
        return dumps(learner_notebook(nb, where=str(solution.relative_to(self.root))))

    def build(self, force: bool = False) -> list[Path]:
        """Write chapters/ from solutions/; returns the files that changed.

        A chapter that has been run (it holds outputs) is a learner's work in progress, so
        it is not overwritten unless ``force`` is set.
        """
        self.chapters.mkdir(exist_ok=True)
        planned = []
        for sol in self.solution_paths():
            target = self.chapters / sol.name
            text = self.expected_chapter(sol)
            if target.exists() and target.read_text(encoding="utf-8") == text:
                continue
            if target.exists() and not force and _has_been_run(target):
                raise FileExistsError(
                    f"chapters/{target.name} holds outputs, so it looks like someone's work in "
                    "progress; save it elsewhere, or pass --force to overwrite it"
                )
            planned.append((target, text))
        for target, text in planned:
            target.write_text(text, encoding="utf-8")
        return [target for target, _ in planned]

    def stale(self) -> list[str]:
        """Problems that make chapters/ out of date, one line each (empty when in sync)."""
        problems = []
        solutions = self.solution_paths()
        if not solutions:
            problems.append("solutions/ holds no NN_name.ipynb notebooks")
        for sol in solutions:
            target = self.chapters / sol.name
            if not target.exists():
                problems.append(f"chapters/{sol.name} is missing")
            elif target.read_text(encoding="utf-8") != self.expected_chapter(sol):
                problems.append(f"chapters/{sol.name} is stale (differs from solutions/{sol.name})")
        names = {p.name for p in solutions}
        for extra in sorted(self.chapters.glob("*.ipynb")):
            if extra.name not in names:
                problems.append(f"chapters/{extra.name} has no solutions/{extra.name}")
        return problems

    def execute(self, names: list[str] | None = None, timeout: int = 600,
                kernel_name: str = "python3") -> list[Path]:
        """Re-execute solution notebooks in place (cwd solutions/), without timing metadata."""
        from nbclient import NotebookClient

        done = []
        for path in self.solution_paths(names):
            nb = nbformat.read(path, as_version=NB_VERSION)
            client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                    resources={"metadata": {"path": str(self.solutions)}})
            client.execute()
            for cell in nb.cells:
                cell.metadata.pop("execution", None)
            nb.metadata.pop("widgets", None)
            path.write_text(dumps(nb), encoding="utf-8")
            done.append(path)
        return done
