"""Build the toykit book: the executed solution notebooks rendered by jupyter-book 1.x.

``build()`` does three things:

1. copies every ``solutions/NN_name.ipynb`` to ``book/chapters/NN_name.ipynb`` (a generated,
   git-ignored folder), removing the solution fence lines and the hidden-test blocks from code
   cells so that readers see clean solution code; stored outputs are kept;
2. runs ``jupyter-book build`` with the interpreter running toykit, with notebook execution
   off (the book shows the outputs stored in ``solutions/``) and, by default, warnings as
   errors;
3. returns the folder of the built HTML, ``book/_build/html``.

Nothing here touches the network: the book's ``_config.yml`` turns off every extension and
button that would fetch something.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

from toykit.notebooks import Course, FenceError, find_root, strip_source

__all__ = [
    "BookBuildError",
    "build",
    "clean_code",
    "prepare_chapters",
    "reader_notebook",
    "toc_files",
]


# The fence grammar of toykit.notebooks (which writes the learner versions).
_MARKER = re.compile(r"^[ \t]*# (?P<edge>BEGIN|END) (?P<kind>SOLUTION|HIDDEN TESTS)\s*$")
# nbval's cell markers (``# NBVAL_IGNORE_OUTPUT`` ...) matter to the tests, not to readers.
_NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_[A-Z_]+\s*$")

# Lines of jupyter-book/Sphinx output worth showing when a build fails.
_PROBLEM_LINE = re.compile(
    r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b|Traceback|\w+(Error|Exception)\b|finished with problems"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Sphinx colours its output even into a pipe

# jupyter-book 1.x has no ``python -m jupyter_book``; this runs its CLI in our interpreter.
_JB_CLI = "from jupyter_book.cli.main import main; main()"


class BookBuildError(RuntimeError):
    """The book could not be built. The message lists the warnings and errors to fix."""


def clean_code(source: str, where: str = "code cell") -> str:
    """A solution code cell as readers should see it.

    Drops the solution fence lines (the code between them stays), each hidden-test block
    with its fences, and nbval markers such as ``# NBVAL_IGNORE_OUTPUT``; then trims blank
    lines at either end. Unbalanced or nested fences raise ``FenceError`` naming ``where``,
    exactly as ``toykit chapters build`` does.
    """
    strip_source(source, where)  # the learner pipeline's fence rules: raises FenceError
    kept: list[str] = []
    in_hidden = False
    for line in source.split("\n"):
        m = _MARKER.match(line)
        if m is not None:
            if m["kind"] == "HIDDEN TESTS":
                in_hidden = m["edge"] == "BEGIN"
        elif not in_hidden and not _NBVAL_MARKER.match(line):
            kept.append(line)
    while kept and not kept[0].strip():
        kept.pop(0)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept)


def reader_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of the nbformat notebook ``nb`` with every code cell passed through
    ``clean_code``. Code cells left empty (e.g. cells that held only hidden tests) are
    dropped, with their outputs; other outputs are kept as stored."""
    out = nbformat.from_dict(nb)  # a deep copy: the solution is not changed
    cells = []
    for index, cell in enumerate(out.cells):
        if cell.cell_type == "code":
            cell.source = clean_code(cell.source, where=f"{name}, cell {index}")
            if not cell.source.strip():
                continue
        cells.append(cell)
    out.cells = cells
    return out


def toc_files(book_dir: Path) -> list[str]:
    """Every ``file:`` entry of ``book_dir/_toc.yml`` (root included), in order."""
    import yaml

    toc_path = Path(book_dir) / "_toc.yml"
    if not toc_path.is_file():
        raise BookBuildError(f"no table of contents: {toc_path} does not exist")
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))

    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def prepare_chapters(root: Path | None = None) -> list[Path]:
    """Regenerate ``book/chapters/`` from ``solutions/`` and check it against ``_toc.yml``.

    Returns the written notebooks. Raises BookBuildError when ``_toc.yml`` lists a chapter
    whose solution notebook does not exist, or a solution notebook is missing from it.
    """
    root = find_root() if root is None else Path(root).resolve()
    book_dir = root / "book"
    sources = Course(root).solution_paths()  # solutions/NN_name.ipynb, in order

    listed = [f.removesuffix(".ipynb") for f in toc_files(book_dir) if f.startswith("chapters/")]
    available = {f"chapters/{p.stem}" for p in sources}
    missing = [f for f in listed if f not in available]
    if missing:
        lines = "\n".join(
            f"  - {f}: solutions/{f.removeprefix('chapters/')}.ipynb does not exist"
            for f in missing
        )
        raise BookBuildError(
            "book/_toc.yml lists chapters that have no solution notebook:\n"
            f"{lines}\nAdd the executed notebook to solutions/, or remove the line from "
            "book/_toc.yml."
        )
    unlisted = sorted(available - set(listed))
    if unlisted:
        lines = "\n".join(f"  - file: {f}" for f in unlisted)
        raise BookBuildError(
            "solution notebooks missing from book/_toc.yml; add these lines under the "
            f"'Chapters' part, in chapter order:\n{lines}"
        )

    out_dir = book_dir / "chapters"
    if out_dir.exists():
        shutil.rmtree(out_dir)  # generated: start clean so removed chapters do not linger
    out_dir.mkdir(parents=True)
    written = []
    for src in sources:
        nb = nbformat.read(src, as_version=4)
        try:
            clean = reader_notebook(nb, name=f"solutions/{src.name}")
        except FenceError as err:
            raise BookBuildError(f"cannot prepare {src.name} for the book: {err}") from None
        dest = out_dir / src.name
        nbformat.write(clean, dest)
        written.append(dest)
    return written


def _run(cmd: list[str], cwd: Path, quiet: bool) -> tuple[int, list[str]]:
    """Run ``cmd``, echoing its output unless ``quiet``; return (exit code, output lines)."""
    lines: list[str] = []
    with subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        encoding="utf-8", errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(_ANSI.sub("", line.rstrip("\n")))
            if not quiet:
                print(line, end="", flush=True)
    return proc.returncode, lines


def build(root: Path | None = None, strict: bool = True, quiet: bool = True) -> Path:
    """Build the book; return the folder of the built HTML (``book/_build/html``).

    root: the repository root; by default found by walking up from the current directory.
    strict: treat every Sphinx warning as an error (``-W --keep-going -n``), so a broken
        figure, link or heading fails the build with all problems listed at once.
    quiet: hide jupyter-book's output unless the build fails.

    Every page is rebuilt each time (a fresh Sphinx environment), so warnings are never
    hidden by a cache. Raises BookBuildError with the build's warnings and errors.
    """
    root = find_root() if root is None else Path(root).resolve()
    if importlib.util.find_spec("jupyter_book") is None:
        raise BookBuildError(
            f"jupyter-book is not installed for {sys.executable}; install the dev extra "
            "(`pip install -e '.[dev]'`, which `make test` does). The book needs 1.x."
        )
    prepare_chapters(root)
    html = root / "book" / "_build" / "html"
    if html.exists():
        shutil.rmtree(html)  # so the result holds this build's pages only, none left over

    cmd = [sys.executable, "-c", _JB_CLI, "build", "book", "--builder", "html", "--all"]
    if strict:
        cmd += ["--warningiserror", "--nitpick", "--keep-going"]
    code, lines = _run(cmd, cwd=root, quiet=quiet)
    problems = [line for line in lines if _PROBLEM_LINE.search(line)]
    if code != 0 or not (html / "index.html").is_file():
        shown = problems or lines[-40:]
        raise BookBuildError(
            f"jupyter-book build failed (exit code {code}); "
            f"{'warnings are errors in strict mode; ' if strict else ''}"
            "what it reported:\n" + "\n".join(f"  {line}" for line in shown)
        )
    return html
