"""``toykit assign``: what an instructor hands out for one chapter."""

from __future__ import annotations

from pathlib import Path

from toykit.grading.spec import chapter_spec
from toykit.notebooks import Course, find_root


def _points(x: float) -> str:
    return f"{x:g} point" + ("" if x == 1 else "s")


def readme_text(spec, notebook_name: str) -> str:
    """The students' README for a chapter."""
    rows = "\n".join(f"| `{e.name}` | `{e.module}.{e.check}({e.name})` | {_points(e.points)} |"
                     for e in spec.exercises)
    return f"""# Assignment: {spec.title}

Your assignment is the notebook `{notebook_name}`. Fill in every exercise, check it, and hand
in the notebook file.

## Setting up

You need the toykit course installed, once; after that everything runs offline on an
ordinary laptop (no GPU needed).

- From a copy of the course repository: run `make lab`. It creates a virtual environment in
  `.venv`, installs toykit and Jupyter, and opens JupyterLab.
- Or, in a Python environment of your own: `pip install -e ".[dev]"` in the course
  repository, then `jupyter lab`.

Open `{notebook_name}` and choose the kernel "Python 3 (toykit)" (or the one of the environment
where you installed toykit). `toykit doctor` prints what is installed if something goes wrong.

## How the exercises are checked

Each exercise is a function with `# YOUR CODE HERE` and `raise NotImplementedError()` in its
body. Replace those two lines with your code. The cell after it calls a **checker**, which
runs your function on several test cases and compares it with toykit's own version:

- `✔ name: N cases passed` means that you are done with that exercise;
- a failure names the case, shows what was expected and what your function returned, and
  gives a hint. An exercise you have not started says "not done yet".

## What is graded

| exercise | check | points |
|---|---|---|
{rows}

Total: {_points(spec.max_points)}.

The grader runs your notebook from top to bottom in a fresh kernel, then runs every check
above itself, on the functions your notebook defines. So:

- **keep the function names and parameters** as given: a renamed function is not found;
- make sure the notebook runs from top to bottom: use *Kernel → Restart Kernel and Run All
  Cells* before you hand it in;
- the outputs saved in your file are not used, so there is no need to keep or hide them;
- there are limits on time and memory per cell and per notebook: a cell stuck in an endless
  loop is stopped, and the cells after it still run;
- do not read or write files outside the notebook's folder, and do not use the internet.

## What to hand in

The file `{notebook_name}` itself (you may rename it, e.g. `yourname.ipynb`, but hand in a
notebook of this chapter, not a copy of another one). You get back your score and, for each
exercise, what passed, what failed and the checker's hint.
"""


def assign(chapter: str, out: str | Path, root: Path | None = None, force: bool = False,
           gradescope: bool = False) -> list[Path]:
    """Write the learner notebook of ``chapter`` and a README.md for students into ``out``;
    with ``gradescope``, also an autograder bundle (:mod:`toykit.grading.gradescope`)."""
    course = Course(find_root(root))
    spec = chapter_spec(chapter, course.root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notebook = out / spec.solution.name
    text = course.expected_chapter(spec.solution)  # the same bytes `toykit chapters build` writes
    written = []
    for path, content in ((notebook, text), (out / "README.md", readme_text(spec, notebook.name))):
        if path.exists() and path.read_text(encoding="utf-8") != content and not force:
            raise FileExistsError(f"{path} exists and differs; pass --force to overwrite it")
        path.write_text(content, encoding="utf-8")
        written.append(path)
    if gradescope:
        from toykit.grading.gradescope import write_bundle

        written += write_bundle(spec, course.root, out)
    return written
