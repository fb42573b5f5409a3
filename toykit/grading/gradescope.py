"""Gradescope: an autograder bundle for one chapter, and the script that runs inside it.

``toykit assign CHAPTER --out DIR --gradescope`` writes ``DIR/gradescope/`` and
``DIR/gradescope_<chapter>.zip`` (the same files at the root of the archive, as Gradescope
wants them):

- ``setup.sh``: run once when Gradescope builds its image; installs the CPU build of torch and
  this course (a copy of it is in ``course/``) with what the grader needs;
- ``run_autograder``: run for each submission; grades the notebook in
  ``/autograder/submission`` with ``toykit grade``'s own code (same kernel, limits, sandbox and
  verdict) and writes ``/autograder/results/results.json``;
- ``chapter.json``: the chapter's exercises and points, and the limits.

``results.json`` follows Gradescope's autograder specification: the total ``score`` and one
test per exercise with its ``score``, ``max_score``, ``status`` and the checker's feedback as
plain text. ``AUTOGRADER_ROOT`` (default ``/autograder``) and ``TOYKIT_PYTHON`` (default
``python3``) let the same scripts run on a fake layout, as the tests do.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from toykit.grading.spec import ChapterSpec, Exercise
from toykit.grading.text import clean_text

SETUP = """#!/usr/bin/env bash
# Written by `toykit assign --gradescope`. Gradescope runs this once, as root, to build its image.
set -euo pipefail
cd /autograder/source/course
python3 -m pip install --upgrade pip
# the CPU build of torch: Gradescope's machines have no GPU, and the CUDA build is gigabytes
python3 -m pip install "torch==__TORCH__" --index-url https://download.pytorch.org/whl/cpu
python3 -m pip install . nbformat nbclient ipykernel jupyter_client
python3 -m ipykernel install --name python3
"""

RUN = """#!/usr/bin/env bash
# Written by `toykit assign --gradescope`. Gradescope runs this for each submission; it grades the
# notebook in $AUTOGRADER_ROOT/submission and writes $AUTOGRADER_ROOT/results/results.json.
set -u
root="${AUTOGRADER_ROOT:-/autograder}"
exec "${TOYKIT_PYTHON:-python3}" -m toykit.grading.gradescope "$root" "$root/source/chapter.json"
"""

LIMITS = {"timeout": 900.0, "cell_timeout": 300.0, "memory_mb": 4096}


def write_bundle(spec: ChapterSpec, course: Path, out: Path) -> list[Path]:
    """Write the bundle folder and its zip into ``out``; returns both paths."""
    import torch

    folder = out / "gradescope"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "course" / "solutions").mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(course / "toykit", folder / "course" / "toykit", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (course / name).exists():
            shutil.copy2(course / name, folder / "course" / name)
    shutil.copy2(spec.solution, folder / "course" / "solutions" / spec.solution.name)
    (folder / "setup.sh").write_text(SETUP.replace("__TORCH__", torch.__version__.split("+")[0]), encoding="utf-8")
    (folder / "run_autograder").write_text(RUN, encoding="utf-8")
    (folder / "chapter.json").write_text(json.dumps({**spec.as_dict(), "limits": LIMITS}, indent=1) + "\n",
                                         encoding="utf-8")
    for name in ("setup.sh", "run_autograder"):
        os.chmod(folder / name, 0o755)
    archive = out / f"gradescope_{spec.stem}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return [folder, archive]


def spec_from(config: dict) -> ChapterSpec:
    """The ChapterSpec that chapter.json describes."""
    exercises = []
    for e in config["exercises"]:
        module, check = e["check"].split(".")
        exercises.append(Exercise(e["id"], e["name"], module, check, float(e["points"])))
    return ChapterSpec(config["chapter"], config["title"], Path(config["chapter"] + ".ipynb"), exercises)


def results(spec: ChapterSpec, row: dict | None, problem: str = "") -> dict:
    """Gradescope's results.json for one graded row (or none, with ``problem`` saying why)."""
    tests = []
    for ex in spec.exercises:
        r = (row or {}).get("exercises", {}).get(ex.id) or {"points": 0.0, "passed": False,
                                                             "message": f"not graded: {problem}"}
        lines = [] if r["passed"] else [clean_text(r.get("message") or "failed", 3000)]
        if r.get("case") and not r["passed"]:
            lines.insert(0, f"failed on case: {clean_text(r['case'], 300)}")
        if r.get("hint") and not r["passed"]:
            lines.append(f"hint: {clean_text(r['hint'], 1000)}")
        tests.append({"name": f"{ex.name} ({ex.module}.{ex.check})", "score": r["points"], "max_score": ex.points,
                      "status": "passed" if r["passed"] else "failed",
                      "output": "\n".join(lines) or "every case of the check passed", "output_format": "text"})
    if row is None:
        output = f"Your notebook was not graded: {problem}"
    else:
        output = f"Status: {row['status']}: {clean_text(row['detail'], 2000)}"
        errors = row.get("cell_errors") or []
        if errors:
            output += "\nCells that raised errors: " + "; ".join(
                f"cell {e['cell'] + 1}: {clean_text(e['ename'], 100)}" for e in errors[:10])
    return {"score": sum(t["score"] for t in tests), "output": output, "output_format": "text",
            "test_output_format": "text", "test_name_format": "text", "tests": tests,
            "execution_time": round((row or {}).get("seconds") or 0)}


def pick_notebook(folder: Path) -> tuple[Path | None, str]:
    """The submission's notebook, or None and why not."""
    found = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.is_file()
                   and not p.is_symlink())
    if len(found) == 1:
        return found[0], ""
    if not found:
        return None, "no .ipynb file was submitted"
    return None, "several notebooks were submitted (" + ", ".join(p.name for p in found[:5]) + "): submit one"


def main(argv: list[str]) -> int:
    root, config = Path(argv[0]), json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    from toykit.grading.batch import grade

    spec = spec_from(config)
    limits = {**LIMITS, **config.get("limits", {})}
    (root / "results").mkdir(parents=True, exist_ok=True)
    notebook, problem = pick_notebook(root / "submission")
    row = None
    if notebook is not None:
        with tempfile.TemporaryDirectory(prefix="toykit-gradescope-") as out:
            rows = grade(spec, [notebook], out, timeout=limits["timeout"], cell_timeout=limits["cell_timeout"],
                         memory_mb=limits["memory_mb"] or None, log=None)
            row = next(iter(rows.values()))
    data = results(spec, row, problem)
    tmp = root / "results" / "results.json.tmp"
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, root / "results" / "results.json")
    print(f"{spec.stem}: {data['score']:g} / {spec.max_points:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
