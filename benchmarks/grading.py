"""Benchmark `toykit grade`: submissions per minute, and the grader's overhead.

Grades N copies of a chapter's solution notebook with ``--jobs J``, and compares with simply
executing the same N notebooks with nbclient, J at a time, in the ordinary ``python3`` kernel.
The difference is what the grader itself costs: a worker process per submission, the
sandboxed kernel launch, staging, the injected check cell (which runs every check, plus two
canary runs before and after each), and writing the report.

    .venv/bin/python benchmarks/grading.py            # chapter 01 if it exists, else 00
    .venv/bin/python benchmarks/grading.py --chapter 00 --n 30 --jobs 2

This is a benchmark, not a test: the numbers depend on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

from toykit.grading import chapter_spec, grade
from toykit.notebooks import Course, find_root


def execute(path: str) -> float:
    """Run one notebook top to bottom in the python3 kernel (errors allowed); its seconds."""
    from nbclient import NotebookClient

    started = time.monotonic()
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=600, allow_errors=True, shutdown_kernel="immediate",
                   resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapter", help="default: 01 if solutions/ has it, else 00")
    parser.add_argument("--n", type=int, default=30, help="number of submissions (default 30)")
    parser.add_argument("--jobs", type=int, default=2, help="submissions at once (default 2)")
    args = parser.parse_args()

    course = Course(find_root())
    chapter = args.chapter or ("01" if any(p.stem.startswith("01_") for p in course.solution_paths()) else "00")
    spec = chapter_spec(chapter, course.root)
    work = Path(tempfile.mkdtemp(prefix="toykit-grade-bench-"))
    try:
        subs = work / "submissions"
        subs.mkdir()
        for i in range(args.n):
            shutil.copy(spec.solution, subs / f"student{i:03d}.ipynb")
        paths = sorted(str(p) for p in subs.glob("*.ipynb"))

        started = time.monotonic()
        with ProcessPoolExecutor(args.jobs) as pool:
            per_notebook = list(pool.map(execute, paths))
        plain = time.monotonic() - started

        started = time.monotonic()
        rows = grade(chapter, paths, work / "out", jobs=args.jobs, root=course.root, log=None)
        graded = time.monotonic() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)

    statuses = sorted({r["status"] for r in rows.values()})
    full = sum(r["total"] == r["max"] for r in rows.values())
    result = {
        "chapter": spec.stem, "submissions": args.n, "jobs": args.jobs,
        "plain_execution_s": round(plain, 1), "grading_s": round(graded, 1),
        "plain_per_minute": round(60 * args.n / plain, 1), "graded_per_minute": round(60 * args.n / graded, 1),
        "overhead_percent": round(100 * (graded - plain) / plain, 1),
        "overhead_s_per_submission": round((graded - plain) * args.jobs / args.n, 2),
        "mean_plain_notebook_s": round(sum(per_notebook) / len(per_notebook), 2),
        "full_marks": full, "statuses": statuses,
    }
    print(json.dumps(result, indent=1))
    assert full == args.n, f"every copy of the solution should get full marks, got {full}/{args.n} ({statuses})"


if __name__ == "__main__":
    main()
