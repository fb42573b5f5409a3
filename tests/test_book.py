"""The book: it builds offline with warnings as errors, with a page per solution notebook,
its figures, and none of the fences that readers should not see.

Everything is built in a temporary copy of the repository, so no tracked file changes. The
copy holds the real solution notebooks (whichever exist so far) plus one small self-test
notebook, written here, that has every kind of fence and a figure.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml
from matplotlib.figure import Figure

from toykit.book import BookBuildError, build, clean_code, prepare_chapters, reader_notebook
from toykit.notebooks import Course, FenceError

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = Course(ROOT).solution_paths()
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
SELFTEST = "99_book_selftest"

SOLUTION_CELL = '''def relu(x):
    """x: [n] -> [n]"""
    # BEGIN SOLUTION
    y = x.clamp(min=0)
    return y
    # END SOLUTION

# BEGIN HIDDEN TESTS
assert relu_is_secret
# END HIDDEN TESTS
check(relu)'''


# ---------------------------------------------------------------- cleaning, no build needed


def test_clean_code_keeps_the_solution_and_drops_fences_and_hidden_tests():
    assert clean_code(SOLUTION_CELL) == '''def relu(x):
    """x: [n] -> [n]"""
    y = x.clamp(min=0)
    return y

check(relu)'''


def test_clean_code_drops_nbval_markers_and_trims_blank_edges():
    source = "# NBVAL_IGNORE_OUTPUT\n\nprint(1)\n# BEGIN HIDDEN TESTS\nassert True\n# END HIDDEN TESTS\n"
    assert clean_code(source) == "print(1)"


@pytest.mark.parametrize("bad", [
    "# BEGIN SOLUTION\nx = 1",
    "x = 1\n# END HIDDEN TESTS",
    "# BEGIN HIDDEN TESTS\n# BEGIN HIDDEN TESTS\n# END HIDDEN TESTS",
])
def test_clean_code_rejects_unbalanced_fences(bad):
    with pytest.raises(FenceError):
        clean_code(bad, where="demo cell")


def figure_png(title: str = "A self-test figure") -> str:
    fig = Figure(figsize=(3, 2))  # no pyplot: no global backend state in the test process
    ax = fig.subplots()
    ax.plot([0, 1, 2], [0, 1, 4])
    ax.set_title(title)
    ax.set_xlabel("x (units)")
    ax.set_ylabel("y (units)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return base64.b64encode(buf.getvalue()).decode()


def selftest_notebook() -> nbformat.NotebookNode:
    """An executed-looking solution notebook with a solution, hidden tests and a figure."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    code = nbformat.v4.new_code_cell(SOLUTION_CELL, execution_count=1)
    code.outputs = [nbformat.v4.new_output("stream", text="✔ relu: 3 cases passed\n")]
    hidden = nbformat.v4.new_code_cell(
        "# BEGIN HIDDEN TESTS\nprint('hidden output')\n# END HIDDEN TESTS", execution_count=2)
    hidden.outputs = [nbformat.v4.new_output("stream", text="hidden output\n")]
    plot = nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT\nplot_something()\nplt.show()",
                                     execution_count=3)
    plot.outputs = [nbformat.v4.new_output(
        "display_data",
        data={"image/png": figure_png(), "text/plain": "<Figure size 300x200 with 1 Axes>"})]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Book self-test\n\nA page made by tests/test_book.py.\n\n"
                                      "## Exercise\n\n### Exercise: implement relu"),
        code, hidden, plot,
    ]
    return nb


def test_reader_notebook_keeps_outputs_and_drops_hidden_only_cells():
    solution = selftest_notebook()
    reader = reader_notebook(solution)
    assert [c.cell_type for c in reader.cells] == ["markdown", "code", "code"]
    assert reader.cells[1].outputs == solution.cells[1].outputs
    assert "image/png" in reader.cells[2].outputs[0].data
    assert not any(m in c.source for c in reader.cells for m in MARKERS)
    assert "NBVAL" not in reader.cells[2].source
    assert "# BEGIN SOLUTION" in solution.cells[1].source, "the solution must not be modified"


# ---------------------------------------------------------------- temporary copies


def copy_repo(dest: Path, solutions: list[Path]) -> Path:
    """A minimal copy of the repository: pyproject.toml, book/ sources, the given solutions."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(ROOT / "book", dest / "book",
                    ignore=shutil.ignore_patterns("_build", "chapters", ".ipynb_checkpoints"))
    (dest / "solutions").mkdir()
    for path in solutions:
        shutil.copy(path, dest / "solutions" / path.name)
    return dest


def edit_toc(book: Path, keep: set[str], extra: list[str] = ()) -> None:
    """Keep only the chapters in ``keep`` (stems), then append ``extra`` to 'Chapters'."""
    toc_path = book / "_toc.yml"
    toc = yaml.safe_load(toc_path.read_text())
    for part in toc["parts"]:
        if part["caption"] == "Chapters":
            part["chapters"] = [c for c in part["chapters"]
                                if c["file"].removeprefix("chapters/") in keep]
            part["chapters"] += [{"file": f"chapters/{stem}"} for stem in extra]
    toc["parts"] = [p for p in toc["parts"] if p["chapters"]]
    toc_path.write_text(yaml.safe_dump(toc, sort_keys=False))


def listed_chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    return [c["file"].removeprefix("chapters/") for part in toc["parts"]
            for c in part["chapters"] if c["file"].startswith("chapters/")]


def test_the_toc_lists_every_solution_notebook_and_the_planned_first_chapters():
    listed = listed_chapters()
    assert listed[:2] == ["00_how_this_course_works", "01_superposition"]
    assert [p.stem for p in SOLUTIONS if p.stem not in listed] == []


def test_a_listed_chapter_without_a_notebook_is_a_clear_error(tmp_path):
    root = copy_repo(tmp_path / "repo", SOLUTIONS)
    edit_toc(root / "book", {p.stem for p in SOLUTIONS}, extra=["02_not_written_yet"])
    with pytest.raises(BookBuildError) as err:
        build(root)  # fails before jupyter-book runs
    assert "chapters/02_not_written_yet" in str(err.value)
    assert "solutions/02_not_written_yet.ipynb does not exist" in str(err.value)


def test_a_solution_missing_from_the_toc_is_a_clear_error(tmp_path):
    root = copy_repo(tmp_path / "repo", SOLUTIONS)
    edit_toc(root / "book", {p.stem for p in SOLUTIONS})
    nbformat.write(selftest_notebook(), root / "solutions" / f"{SELFTEST}.ipynb")
    with pytest.raises(BookBuildError, match=f"- file: chapters/{SELFTEST}"):
        prepare_chapters(root)


def test_config_is_valid_and_offline():
    from jupyter_book.config import validate_yaml

    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    validate_yaml(config, raise_on_errors=True)
    assert config["execute"]["execute_notebooks"] == "off"
    sphinx = config["sphinx"]["config"]
    assert "sphinx.ext.intersphinx" not in sphinx["extensions"]
    assert "sphinx_thebe" not in sphinx["extensions"]
    assert not sphinx.get("intersphinx_mapping")
    theme = sphinx["html_theme_options"]
    assert theme["use_download_button"] is True
    launch = theme["launch_buttons"]
    assert not launch["thebe"]
    assert not any(launch.get(k) for k in ("binderhub_url", "jupyterhub_url", "colab_url",
                                           "deepnote_url"))


# ---------------------------------------------------------------- the built book

# Installed with PYTHONPATH into the jupyter-book process: records every attempt to reach
# the network, so the test catches a build that would need the internet even on a machine
# that has it.
NETWORK_SPY = '''
import json, os, sys

_log = os.environ.get("TOYKIT_NETWORK_LOG")
_EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request"}

def _spy(event, args):
    if event in _EVENTS:
        if event == "socket.connect" and isinstance(args[1], (str, bytes)):
            return  # a Unix socket: local
        with open(_log, "a") as f:
            f.write(json.dumps([event, repr(args)]) + "\\n")

if _log:
    sys.addaudithook(_spy)
'''


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("book")
    root = copy_repo(tmp / "repo", SOLUTIONS)
    edit_toc(root / "book", {p.stem for p in SOLUTIONS}, extra=[SELFTEST])
    nbformat.write(selftest_notebook(), root / "solutions" / f"{SELFTEST}.ipynb")

    spy = tmp / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(NETWORK_SPY)
    log = tmp / "network.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(spy))
        mp.setenv("TOYKIT_NETWORK_LOG", str(log))
        html = build(root, strict=True, quiet=True)
    return {"root": root, "html": html, "network": log}


def images(page: Path) -> list[str]:
    """The src of every <img> on the page that shows a real PNG (inline or a file)."""
    found = []
    for src in re.findall(r'<img[^>]*\ssrc="([^"]+)"', page.read_text(encoding="utf-8")):
        if src.startswith("data:image/png"):
            found.append(src)
        elif src.endswith(".png") and (page.parent / src).resolve().is_file():
            found.append(src)
    return found


def png_outputs(path: Path) -> int:
    """How many PNG figures readers should see for this solution notebook."""
    nb = reader_notebook(nbformat.read(path, as_version=4))
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.outputs)


def test_build_succeeds_with_warnings_as_errors_and_without_network(book):
    assert book["html"] == book["root"] / "book" / "_build" / "html"
    assert (book["html"] / "index.html").is_file()
    calls = book["network"].read_text().splitlines() if book["network"].exists() else []
    assert calls == [], "the book build tried to reach the network:\n" + "\n".join(calls)


def test_intro_instructor_and_one_page_per_solution_exist(book):
    html = book["html"]
    assert "mechanistic interpretability" in (html / "intro.html").read_text(encoding="utf-8")
    assert "TOYKIT_CHECK_LOG" in (html / "instructor.html").read_text(encoding="utf-8")
    for path in [*SOLUTIONS, Path(f"{SELFTEST}.ipynb")]:
        assert (html / "chapters" / f"{path.stem}.html").is_file(), f"no page for {path.name}"


def test_every_chapter_page_shows_its_figures(book):
    selftest = book["html"] / "chapters" / f"{SELFTEST}.html"
    assert len(images(selftest)) == 1
    for path in SOLUTIONS:
        page = book["html"] / "chapters" / f"{path.stem}.html"
        assert len(images(page)) >= png_outputs(path), f"{page.name} is missing figures"
    if any(p.stem == "01_superposition" for p in SOLUTIONS):  # a chapter of pictures
        assert images(book["html"] / "chapters" / "01_superposition.html"), (
            "01_superposition.html shows no figures: is solutions/01_superposition.ipynb "
            "committed executed, with its outputs?")


def test_readers_see_clean_solution_code(book):
    html = book["html"]
    pages = sorted(html.rglob("*.html"))
    sources = sorted((html / "_sources").rglob("*.ipynb"))  # what the download button serves
    for page in [*pages, *sources]:
        text = page.read_text(encoding="utf-8")
        for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS"):
            assert marker not in text, f"{page.relative_to(html)} shows '{marker}'"
    selftest = (html / "chapters" / f"{SELFTEST}.html").read_text(encoding="utf-8")
    assert "clamp" in selftest and "cases passed" in selftest  # solution code and its output
    assert "relu_is_secret" not in selftest and "hidden output" not in selftest
    assert "NBVAL_IGNORE_OUTPUT" not in selftest


def test_a_broken_page_fails_the_build_with_its_warning(tmp_path):
    root = copy_repo(tmp_path / "repo", [])
    (root / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: For instructors\n"
        "    chapters:\n      - file: instructor\n")
    instructor = root / "book" / "instructor.md"
    instructor.write_text(instructor.read_text() + "\nSee {doc}`no_such_page`.\n")
    with pytest.raises(BookBuildError) as err:
        build(root, strict=True)
    message = str(err.value)
    assert "WARNING" in message and "no_such_page" in message and "instructor" in message

