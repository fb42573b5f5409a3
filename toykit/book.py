"""Build the toykit book: the executed solution notebooks rendered by jupyter-book 1.x.

``build()`` does three things:

1. copies every ``solutions/NN_name.ipynb`` to ``book/chapters/NN_name.ipynb`` (a generated,
   git-ignored folder), removing the solution fence lines and the hidden-test blocks from code
   cells so that readers see clean solution code; stored outputs are kept. Each exercise's
   solution cell is collapsed behind a "Show solution" toggle, so a reader can try first, and
   each chapter links its learner notebook (written to ``book/chapters/learner/``, the same
   file as ``chapters/NN_name.ipynb``) for download;
2. runs ``jupyter-book build`` with the interpreter running toykit, with notebook execution
   off (the book shows the outputs stored in ``solutions/``) and, by default, warnings as
   errors;
3. copies MathJax into the built book and returns its folder, ``book/_build/html``.

Nothing here touches the network, and neither does a reader's browser: the book's
``_config.yml`` turns off every extension and button that would fetch something, and
``build`` copies MathJax into the built book (``install_mathjax``), where ``mathjax_path``
points. That copy is done here rather than by a Sphinx extension, so that the Sphinx process
never imports toykit (and with it PyTorch): a few seconds less per build.
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

from toykit.notebooks import FENCE, Course, FenceError, dumps, find_root, learner_notebook, strip_source

__all__ = [
    "BookBuildError",
    "build",
    "clean_code",
    "is_solution_cell",
    "install_mathjax",
    "mathjax_path",
    "mathjax_source",
    "prepare_chapters",
    "reader_notebook",
    "toc_files",
]


# nbval's cell markers (``# NBVAL_IGNORE_OUTPUT`` ...) matter to the tests, not to readers.
_NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_[A-Z_]+\s*$")

# Lines of jupyter-book/Sphinx output worth showing when a build fails.
_PROBLEM_LINE = re.compile(
    r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b|Traceback|\w+(Error|Exception)\b|finished with problems"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Sphinx colours its output even into a pipe

# jupyter-book 1.x has no ``python -m jupyter_book``; this runs its CLI in our interpreter.
_JB_CLI = "from jupyter_book.cli.main import main; main()"

# How a solution cell is shown in the book: its code folded away until the reader asks. These
# are myst-nb's cell-level settings (the tag and the ``mystnb`` metadata).
_SOLUTION_TAG = "hide-input"
_SOLUTION_PROMPTS = {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}

# Where prepare_chapters puts the learner notebooks that the chapter pages offer for download
# (inside book/chapters/, so generated and git-ignored; not in _toc.yml, so not pages).
_LEARNER_DIR = "learner"

# MathJax 3 for the book's formulas, served from book/_build/html/_static/mathjax/ (where
# book/_config.yml's mathjax_path points) so that pages typeset offline. The files come from the
# django-static-mathjax package: MathJax 3.2.2's es5 build as package data; it needs no Django.
# We copy the one combined file the pages load plus everything it can load later, all relative
# to its own location: the TeX extensions that \require or autoload pull in, the CHTML fonts,
# and what MathJax's menu can switch on (the SVG renderer, the accessibility explorer and its
# speech rule maps).
_MATHJAX_PACKAGE = "mathjax"
_MATHJAX_ES5 = ("static", "mathjax", "es5")
_MATHJAX_FILES = ("tex-chtml.js", "input/tex/extensions", "output/chtml/fonts/woff-v2",
                  "output/svg.js", "output/svg", "ui", "a11y", "sre")


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
        m = FENCE.match(line)
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


def is_solution_cell(cell: nbformat.NotebookNode) -> bool:
    """Whether a solution notebook's cell holds an exercise's solution (a ``# BEGIN SOLUTION``
    fence). The fence, not the exercise heading, decides: headings vary, fences do not."""
    return cell.cell_type == "code" and any(
        m is not None and m["kind"] == "SOLUTION" for m in map(FENCE.match, cell.source.split("\n"))
    )


def reader_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of the nbformat notebook ``nb`` as the book shows it.

    Every code cell is passed through ``clean_code``. Code cells left empty (e.g. cells that
    held only hidden tests) are dropped, with their outputs; other outputs are kept as stored.
    Each solution cell (``is_solution_cell``) gets the ``hide-input`` tag and "Show solution"
    / "Hide solution" prompts, so its code is folded away while its outputs, and the check
    cell after it, stay visible. Stored widget state is dropped: it would make the page load
    the widget libraries from the internet, and nothing in the book is interactive.
    """
    out = nbformat.from_dict(nb)  # a deep copy: the solution is not changed
    cells = []
    for index, cell in enumerate(out.cells):
        if cell.cell_type == "code":
            solution = is_solution_cell(cell)
            cell.source = clean_code(cell.source, where=f"{name}, cell {index}")
            if not cell.source.strip():
                continue
            if solution:
                tags = cell.metadata.setdefault("tags", [])
                if _SOLUTION_TAG not in tags:
                    tags.append(_SOLUTION_TAG)
                cell.metadata.setdefault("mystnb", {}).update(_SOLUTION_PROMPTS)
        cells.append(cell)
    out.cells = cells
    out.metadata.pop("widgets", None)
    return out


def _with_learner_link(nb: nbformat.NotebookNode, learner: str) -> nbformat.NotebookNode:
    """``nb`` with a note after its title cell linking the learner notebook ``learner`` (a
    path relative to the page) for download."""
    note = nbformat.v4.new_markdown_cell(
        f"**Try it yourself.** This page shows the solutions. Download the learner notebook, "
        f"with blank exercises and no outputs: {{download}}`{Path(learner).name} <{learner}>`. "
        "To run it, see {ref}`run-locally`."
    )
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        note.pop("id", None)  # cell ids came with nbformat 4.5
    nb.cells.insert(1 if nb.cells else 0, note)
    return nb


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
    (out_dir / _LEARNER_DIR).mkdir(parents=True)
    written = []
    for src in sources:
        nb = nbformat.read(src, as_version=4)
        try:
            clean = reader_notebook(nb, name=f"solutions/{src.name}")
            # the text `toykit chapters build` writes to chapters/ (Course.expected_chapter)
            learner = dumps(learner_notebook(nb, where=f"solutions/{src.name}"))
        except FenceError as err:
            raise BookBuildError(f"cannot prepare {src.name} for the book: {err}") from None
        (out_dir / _LEARNER_DIR / src.name).write_text(learner, encoding="utf-8")
        dest = out_dir / src.name
        nbformat.write(_with_learner_link(clean, f"{_LEARNER_DIR}/{src.name}"), dest)
        written.append(dest)
    return written


def mathjax_source() -> Path:
    """The folder of MathJax 3's browser build (``es5``) in the installed
    django-static-mathjax package; raises BookBuildError when it is missing."""
    spec = importlib.util.find_spec(_MATHJAX_PACKAGE)
    if spec is not None and spec.origin is not None:
        es5 = Path(spec.origin).parent.joinpath(*_MATHJAX_ES5)
        if (es5 / _MATHJAX_FILES[0]).is_file():
            return es5
    raise BookBuildError(
        f"MathJax 3 is not installed for {sys.executable}: the book serves it itself so that "
        "formulas typeset offline. Install the dev extra (`pip install -e '.[dev]'`, which "
        "`make test` does); it brings django-static-mathjax."
    )


def mathjax_path(book_dir: Path) -> str:
    """The ``mathjax_path`` of ``book_dir/_config.yml``: MathJax's combined TeX-to-CHTML file,
    relative to the built book's ``_static/`` folder. Raises BookBuildError when it is missing
    or points anywhere else (a CDN above all: pages would show raw TeX offline)."""
    import yaml

    config_path = Path(book_dir) / "_config.yml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    path = ((config.get("sphinx") or {}).get("config") or {}).get("mathjax_path")
    expected = f"mathjax/{_MATHJAX_FILES[0]}"
    if path != expected:
        where = "from the internet" if re.match(r"^\s*([a-z]+:)?//", str(path)) else "from elsewhere"
        raise BookBuildError(
            f"{config_path} sets mathjax_path to {path!r}, so pages would load MathJax {where}. "
            f"The book must not load MathJax from the internet: set `mathjax_path: {expected}` "
            "under sphinx.config (toykit book build copies MathJax there)."
        )
    return path


def install_mathjax(html: Path, path: str) -> Path:
    """Copy MathJax into the built book so that ``path`` (a ``mathjax_path``) exists under
    ``html/_static/``; returns the folder written."""
    source = mathjax_source()
    dest = Path(html) / "_static" / Path(path).parent
    if dest.exists():
        shutil.rmtree(dest)
    for name in _MATHJAX_FILES:
        if (source / name).is_dir():
            shutil.copytree(source / name, dest / name)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, dest / name)
    return dest


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
    mathjax_source()  # clear messages before the slow part
    mathjax = mathjax_path(root / "book")
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
    install_mathjax(html, mathjax)
    return html
