"""The book: it builds offline with warnings as errors, with a page per solution notebook,
its figures, and none of the fences that readers should not see. Solutions are folded behind
"Show solution", each chapter offers its learner notebook, exercise marks are characters
every font has, and the pages need nothing from the internet: headless Chromium, with no
network, typesets chapter 07's formulas with the MathJax the book carries.

Everything is built in a temporary copy of the repository, so no tracked file changes. The
copy holds the real solution notebooks (whichever exist so far) plus one small self-test
notebook, written here, that has every kind of fence and a figure. The book is built once
per run (the module-scoped ``book`` fixture).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
import yaml
from matplotlib.figure import Figure

from toykit.book import (
    BookBuildError,
    build,
    clean_code,
    is_solution_cell,
    prepare_chapters,
    reader_notebook,
)
from toykit.notebooks import Course, FenceError

pytestmark = pytest.mark.slow  # builds the book and opens it in a browser

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


def test_reader_notebook_folds_only_solution_cells():
    solution = selftest_notebook()
    solution.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"a": {}}}}
    reader = reader_notebook(solution)
    solution_cell, plot = reader.cells[1], reader.cells[2]
    assert solution_cell.metadata["tags"] == ["hide-input"]
    assert solution_cell.metadata["mystnb"] == {"code_prompt_show": "Show solution",
                                                "code_prompt_hide": "Hide solution"}
    assert "tags" not in plot.metadata and "mystnb" not in plot.metadata
    assert "widgets" not in reader.metadata  # would make myst-nb load widget JS from a CDN
    assert "tags" not in solution.cells[1].metadata and "widgets" in solution.metadata, (
        "the solution notebook must not be modified")


def test_solution_cells_are_found_by_their_fence():
    code = nbformat.v4.new_code_cell
    assert is_solution_cell(code(SOLUTION_CELL))
    assert is_solution_cell(code("class M:\n    def f(self):\n        # BEGIN SOLUTION\n        pass\n"
                                 "        # END SOLUTION"))
    assert not is_solution_cell(code("# BEGIN HIDDEN TESTS\nassert x\n# END HIDDEN TESTS"))
    assert not is_solution_cell(code("print('# BEGIN SOLUTION')"))
    assert not is_solution_cell(nbformat.v4.new_markdown_cell("# BEGIN SOLUTION"))


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
    assert sphinx["mathjax_path"] == "mathjax/tex-chtml.js"  # in _static/, copied there by build()
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



@pytest.mark.parametrize("path", ["https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
                                  "//cdn.example.org/mathjax/tex-chtml.js", "tex-chtml.js"])
def test_a_mathjax_path_other_than_the_books_own_copy_is_a_clear_error(tmp_path, path):
    root = copy_repo(tmp_path / "repo", [])
    config = root / "book" / "_config.yml"
    text = config.read_text()
    assert "mathjax_path: mathjax/tex-chtml.js" in text
    config.write_text(text.replace("mathjax_path: mathjax/tex-chtml.js", f"mathjax_path: {path}"))
    with pytest.raises(BookBuildError, match="must not load MathJax from the internet") as err:
        build(root, strict=True)  # fails before jupyter-book runs
    assert repr(path) in str(err.value) and "mathjax_path: mathjax/tex-chtml.js" in str(err.value)


# ---------------------------------------------------------------- what readers see


def chapter_pages(book: dict) -> dict[Path, Path]:
    """{solution notebook: its page}, for the real chapters."""
    return {path: book["html"] / "chapters" / f"{path.stem}.html" for path in SOLUTIONS}


_DETAILS = re.compile(r"<details\b[^>]*>.*?</details>", re.S)
_SHOW_SOLUTION = re.compile(r'<details class="[^"]*\bhide above-input\b[^"]*">\s*<summary[^>]*>\s*'
                            r'<p class="collapsed[^"]*">Show solution</p>', re.S)
_SECTION = re.compile(r'<section id="([^"]+)">')
_OUTPUT = '<div class="cell_output'


def exercise_chunks(page: Path) -> dict[str, str]:
    """{section id: its HTML up to the next section}, for the 'Exercise: ...' sections."""
    text = page.read_text(encoding="utf-8")
    starts = [(m.start(), m[1]) for m in _SECTION.finditer(text)] + [(len(text), "")]
    return {name: text[start:end] for (start, name), (end, _) in zip(starts, starts[1:])
            if name.startswith("exercise-")}


def test_every_solution_is_folded_behind_show_solution_and_checks_stay_visible(book):
    selftest = (book["html"] / "chapters" / f"{SELFTEST}.html").read_text(encoding="utf-8")
    [folded] = _DETAILS.findall(selftest)
    assert _SHOW_SOLUTION.search(folded) and "Hide solution" in folded
    assert "clamp" in folded and "cases passed" not in folded  # the code folded, its output not
    assert "cases passed" in _DETAILS.sub("", selftest)

    for path, page in chapter_pages(book).items():
        text = page.read_text(encoding="utf-8")
        solutions = sum(map(is_solution_cell, nbformat.read(path, as_version=4).cells))
        assert len(_SHOW_SOLUTION.findall(text)) == solutions, (
            f"{page.name}: {solutions} solution cells, but not as many 'Show solution' toggles")
        assert all(_OUTPUT not in d for d in _DETAILS.findall(text)), f"{page.name} folds an output"
        chunks = exercise_chunks(page)
        assert chunks, f"{page.name} has no 'Exercise: ...' sections"
        for name, chunk in chunks.items():
            assert _SHOW_SOLUTION.search(chunk), f"{page.name}#{name}: the solution is not folded"
            assert "check_" in _DETAILS.sub("", chunk), f"{page.name}#{name}: no visible check"
            assert _OUTPUT in _DETAILS.sub("", chunk), f"{page.name}#{name}: no visible check output"


def test_every_chapter_page_offers_its_learner_notebook(book):
    for path, page in [*chapter_pages(book).items(),
                       (Path(f"{SELFTEST}.ipynb"), book["html"] / "chapters" / f"{SELFTEST}.html")]:
        links = re.findall(r'<a class="reference download internal" download="" href="([^"]+)"',
                           page.read_text(encoding="utf-8"))
        assert [Path(link).name for link in links] == [path.name], f"{page.name}: {links}"
        served = (page.parent / links[0]).resolve()
        assert served.is_relative_to(book["html"]) and served.is_file()
        expected = Course(book["root"]).expected_chapter(book["root"] / "solutions" / path.name)
        assert served.read_text(encoding="utf-8") == expected  # what `toykit chapters build` writes
        learner = nbformat.reads(expected, as_version=4)
        assert not any("hide-input" in c.metadata.get("tags", []) or "mystnb" in c.metadata
                       for c in learner.cells), "the book's folding leaked into the learner notebook"
        if path in SOLUTIONS:
            assert served.read_text(encoding="utf-8") == (ROOT / "chapters" / path.name).read_text(
                encoding="utf-8"), f"chapters/{path.name} is stale: run `toykit chapters build`"
    intro = (book["html"] / "intro.html").read_text(encoding="utf-8")
    assert 'id="run-locally"' in intro and "make lab" in re.sub(r"<[^>]+>", "", intro)


_MARKS = re.compile(r"<strong>Difficulty:</strong>\s*(\S+)\s*·\s*<strong>Importance:</strong>\s*(\S+)")


def test_exercise_marks_are_characters_every_font_has(book):
    """Difficulty ★☆ and importance ●○, five marks each; no emoji (they show as empty boxes
    where a reader's fonts have none)."""
    for page in sorted(book["html"].rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        emoji = sorted(set(re.findall("[\U0001F535\u26AA\U0001F7E0-\U0001F7EB]", text)))
        assert not emoji, f"{page.relative_to(book['html'])} shows emoji marks {emoji}"
    for page in chapter_pages(book).values():
        for name, chunk in exercise_chunks(page).items():
            marks = _MARKS.findall(chunk)
            assert len(marks) == 1, f"{page.name}#{name}: no 'Difficulty: … · Importance: …' line"
            [(difficulty, importance)] = marks
            assert re.fullmatch("★+☆*", difficulty) and len(difficulty) == 5, (page.name, name, difficulty)
            assert re.fullmatch("●+○*", importance) and len(importance) == 5, (page.name, name, importance)


# ---------------------------------------------------------------- offline, in a browser

# Tags whose URL attribute the browser fetches as the page loads (links in <a> are not).
_FETCHED = re.compile(r"<(script|link|img|iframe|source|embed|video|audio)\b[^>]*?\s(?:src|href)=\"([^\"]*)\"",
                      re.I)
_REMOTE = re.compile(r"^\s*([a-z]+:)?//", re.I)


def test_no_page_loads_anything_from_the_internet(book):
    html = book["html"]
    for page in sorted(html.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        remote = [f"<{tag} {url}>" for tag, url in _FETCHED.findall(text) if _REMOTE.match(url)]
        assert not remote, f"{page.relative_to(html)} loads from the internet: {remote}"
    for css in sorted(html.rglob("*.css")):
        text = re.sub(r"/\*.*?\*/", "", css.read_text(encoding="utf-8", errors="replace"), flags=re.S)
        remote = re.findall(r"(?:url\(\s*['\"]?|@import\s+['\"])((?:[a-z]+:)?//[^'\")]+)", text, re.I)
        assert not remote, f"{css.relative_to(html)} loads from the internet: {remote}"
    math_pages = [p for p in html.rglob("*.html") if 'class="math notranslate' in p.read_text(encoding="utf-8")]
    assert math_pages, "no page has math: is dollarmath still on?"
    for page in math_pages:
        [mathjax] = re.findall(r'<script[^>]*src="([^"]*tex-chtml\.js)"', page.read_text(encoding="utf-8"))
        assert (page.parent / mathjax).resolve() == html / "_static" / "mathjax" / "tex-chtml.js"
    fonts = html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file() and list(fonts.glob("*.woff"))


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--mute-audio",
    # a second fence for when no network namespace can be made: every host unknown, every
    # proxied request sent to a port where nothing listens
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
    # MathJax loads its fonts and finishes typesetting after the load event
    "--virtual-time-budget=30000",
]


def chromium() -> str:
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found is None:
        message = ("headless Chromium is not installed, so the book was not checked in a browser "
                   "(Debian: `apt-get install chromium`; .ci/run installs it)")
        if os.environ.get("CI"):
            pytest.fail(message + "; in CI it must be there")
        pytest.skip(message)
    return found


def no_network_prefix() -> list[str]:
    """``unshare -n`` (a network namespace with nothing in it) where this user may make one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []  # the resolver and proxy flags still keep Chromium off the network


def rendered_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after headless Chromium, offline, has run its scripts."""
    cmd = [*no_network_prefix(), chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
           "--dump-dom", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "</html>" in done.stdout, (
        f"chromium failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


class VisibleText(HTMLParser):
    """The text a reader sees, and every URL the page fetched (src/href of fetching tags)."""

    HIDDEN = {"script", "style", "template", "noscript", "mjx-assistive-mml", "pre", "code"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
            "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.fetched: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in {"script", "img", "iframe", "source", "embed"} and attrs.get("src"):
            self.fetched.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.fetched.append(attrs["href"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        if not self.HIDDEN.intersection(self.stack):
            self.text.append(data)


def local_file(url: str, page: Path) -> Path | None:
    """The file a URL on ``page`` points to, or None when it is not a local file."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)).resolve()
    if parsed.scheme or parsed.netloc:
        return None
    return (page.parent / unquote(parsed.path)).resolve()


def test_chapter_07_typesets_its_formulas_offline_in_chromium(book, tmp_path):
    html = book["html"]
    page = html / "chapters" / "07_grokking.html"
    assert page.is_file(), "chapter 07 was not built"
    static = page.read_text(encoding="utf-8")
    formulas = static.count('class="math notranslate nohighlight"')
    assert formulas > 20 and "\\(" in static  # the built page holds TeX for MathJax to typeset

    dom = rendered_dom(page, tmp_path / "profile")
    typeset = dom.count("<mjx-container")
    assert typeset == formulas, f"MathJax typeset {typeset} of the page's {formulas} formulas"
    assert "<mjx-merror" not in dom, "MathJax could not typeset some formulas"

    seen = VisibleText()
    seen.feed(dom)
    text = "".join(seen.text)
    assert "Grokking" in text
    raw = re.findall(r".{0,40}(?:\\\(|\\\[|\$\$).{0,40}", text)
    assert not raw, f"raw TeX left in the visible text: {raw[:5]}"

    # Everything the page loaded, MathJax's own scripts and fonts included, is in the book.
    fonts = re.findall(r"url\(\"?([^\")]+\.woff2?)\"?\)", dom)
    assert fonts, "MathJax's CHTML output declared no fonts"
    assert any("tex-chtml.js" in url for url in seen.fetched)
    for url in [*seen.fetched, *fonts]:
        path = local_file(url.split("?")[0].split("#")[0], page)
        assert path is not None and path.is_relative_to(html), f"{page.name} loads {url}"
        assert path.is_file(), f"{page.name} loads {url}, which is missing"
