"""The ``toykit grade`` and ``toykit assign`` commands (registered by ``toykit.cli``)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

MIN_MEMORY_MB = 512  # the same floor as toykit.grading.batch.check_limits


def _count(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    """A finite number of seconds, at least 1 (a smaller limit would be no limit at all)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, at least 1, got {text!r}")
    return value


def _megabytes(text: str) -> int:
    """0 (no limit) or a whole number of MB, at least MIN_MEMORY_MB."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of MB, got {text!r}") from None
    if value != 0 and value < MIN_MEMORY_MB:
        raise argparse.ArgumentTypeError(
            f"must be 0 (no limit) or at least {MIN_MEMORY_MB} MB (Python, PyTorch and Jupyter need that), got {value}")
    return value


def _out_folder(text: str) -> str:
    """A folder, or a path where one can be made (not an existing file)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return text


def _course_folder(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder")
    return text


def _grade(args: argparse.Namespace) -> int:
    from toykit.grading.batch import grade, parse_shard
    from toykit.grading.merge import merge

    try:
        if args.chapter == "merge":  # toykit grade merge SHARD_OUT... --out OUT
            rows = merge(args.submissions, args.out, root=Path(args.root) if args.root else None)
        else:
            rows = grade(args.chapter, args.submissions, args.out, jobs=args.jobs, timeout=args.timeout,
                         cell_timeout=args.cell_timeout, memory_mb=args.memory or None, force=args.force,
                         root=Path(args.root) if args.root else None, sandbox=not args.no_sandbox,
                         shard=parse_shard(args.shard) if args.shard else None)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(rows)} submission(s) in {Path(args.out) / 'grades.csv'}")
    return 0


def _assign(args: argparse.Namespace) -> int:
    from toykit.grading.assign import assign

    try:
        written = assign(args.chapter, args.out, root=Path(args.root) if args.root else None, force=args.force,
                         gradescope=args.gradescope)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def add_grade_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``grade`` to a ``parser.add_subparsers()`` object; returns the new parser."""
    p = subparsers.add_parser(
        "grade", help="grade student notebooks of a chapter in fresh, limited kernels",
        description="Run each submission in a fresh kernel with time and memory limits, run the "
                    "chapter's checks on what it defines, and write grades.csv, grades.json and "
                    "feedback/<submission>.md to --out. This runs student code: see book/grading.md. "
                    "`toykit grade merge SHARD_OUT... --out OUT` combines the reports of --shard runs.")
    p.add_argument("chapter", help="the chapter, e.g. 00 or 00_how_this_course_works; or `merge`")
    p.add_argument("submissions", nargs="+",
                   help="notebook files, or folders holding them (with `merge`: shard output folders)")
    p.add_argument("--out", required=True, type=_out_folder,
                   help="the folder for grades.csv, grades.json and feedback/")
    p.add_argument("--jobs", type=_count, default=1, help="submissions graded at once (default 1)")
    p.add_argument("--timeout", type=_seconds, default=600, help="seconds per notebook (default 600)")
    p.add_argument("--cell-timeout", type=_seconds, default=None,
                   help="seconds per learner cell, at least 1, after which it is interrupted "
                        "(default min(timeout, 120))")
    p.add_argument("--memory", type=_megabytes, default=4096,
                   help="memory limit per submission in MB: all its processes together where a cgroup can be "
                        "made, else per process as address space (default 4096; 0: none)")
    p.add_argument("--force", action="store_true", help="grade again submissions already in --out")
    p.add_argument("--no-sandbox", action="store_true",
                   help="do not use Linux Landlock even where available (limits still apply)")
    p.add_argument("--shard", metavar="K/N",
                   help="grade only share K of N (0 <= K < N), chosen by a hash of each submission's path, "
                        "e.g. --shard $SLURM_ARRAY_TASK_ID/8; combine the outputs with `toykit grade merge`")
    p.add_argument("--root", type=_course_folder, help="the course folder (default: found from the current folder)")
    p.set_defaults(func=_grade)
    return p


def add_assign_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``assign`` to a ``parser.add_subparsers()`` object; returns the new parser."""
    p = subparsers.add_parser("assign", help="write a chapter's learner notebook and a README for students")
    p.add_argument("chapter", help="the chapter, e.g. 00 or 00_how_this_course_works")
    p.add_argument("--out", required=True, help="the folder to write into")
    p.add_argument("--force", action="store_true", help="overwrite files that differ")
    p.add_argument("--gradescope", action="store_true",
                   help="also write a Gradescope autograder bundle (gradescope/ and gradescope_<chapter>.zip)")
    p.add_argument("--root", help="the course folder (default: found from the current folder)")
    p.set_defaults(func=_assign)
    return p


def register(subparsers) -> None:
    """Add both ``grade`` and ``assign``."""
    add_grade_parser(subparsers)
    add_assign_parser(subparsers)
