"""The ``toykit`` command (also ``python -m toykit``)."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
from pathlib import Path


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def doctor(args: argparse.Namespace) -> int:
    """Print what a learner (or a bug report) needs to know about this set-up."""
    import torch

    import toykit

    print(f"toykit        {toykit.__version__} ({Path(toykit.__file__).parent})")
    print(f"python        {platform.python_version()} ({sys.executable})")
    print(f"platform      {platform.platform()}")
    for dist in ("torch", "numpy", "einops", "matplotlib", "tqdm"):
        print(f"{dist:<13} {_version(dist)}")
    print(f"device        {toykit.get_device()} (cuda available: {torch.cuda.is_available()}; "
          f"mps available: {bool(getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available())})")
    print(f"threads       torch {torch.get_num_threads()}, cpu cores {os.cpu_count()}")

    problems = []
    kernel = "missing"
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec("python3")
        kernel = f"python3 -> {spec.argv[0]}"
    except Exception as err:  # no jupyter_client, or no kernel
        problems.append(f"no Jupyter kernel 'python3' ({type(err).__name__}); run `make lab` once")
    print(f"kernel        {kernel}")
    for dist in ("jupyterlab", "nbval", "nbclient", "jupyter-book"):
        print(f"{dist:<13} {_version(dist)}")
    book = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    print(f"book tooling  {'present' if book else 'missing'}{f' ({book})' if book else ''}")
    if not book:
        problems.append("jupyter-book is missing: install the dev extra (`make test` does)")
    jb = _version("jupyter-book")
    if jb[0].isdigit() and int(jb.split(".")[0]) >= 2:
        problems.append(f"jupyter-book {jb} is installed, but the book needs 1.x (2.x cannot build offline)")
    for p in problems:
        print(f"problem: {p}")
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def chapters(args: argparse.Namespace) -> int:
    from toykit.notebooks import Course, FenceError, find_root

    course = Course(find_root(Path(args.root) if args.root else None))
    try:
        if args.action == "build":
            changed = course.build(force=args.force)
            for path in changed:
                print(f"wrote {path.relative_to(course.root)}")
            print(f"chapters/ up to date ({len(course.solution_paths())} notebooks, {len(changed)} written)")
            return 0
        if args.action == "check":
            problems = course.stale()
            for line in problems:
                print(line)
            if problems:
                print("chapters/ is out of date: run `toykit chapters build` and commit the result")
                return 1
            print(f"chapters/ in sync with solutions/ ({len(course.solution_paths())} notebooks)")
            return 0
        if args.action == "execute":
            for path in course.execute(args.names or None, timeout=args.timeout):
                print(f"executed {path.relative_to(course.root)}")
            return 0
    except (FenceError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    raise AssertionError(args.action)


def book(args: argparse.Namespace) -> int:
    from toykit.book import BookBuildError, build

    try:
        out = build(Path(args.root) if args.root else None)
    except (BookBuildError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"book built: {out / 'index.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toykit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="print versions, device, threads and tooling")
    p.set_defaults(func=doctor)

    p = sub.add_parser("chapters", help="build, check or execute the chapter notebooks")
    p.add_argument("action", choices=["build", "check", "execute"],
                   help="build: write chapters/ from solutions/; check: fail if chapters/ is stale; "
                        "execute: re-run solution notebooks in place")
    p.add_argument("names", nargs="*", help="notebooks to execute (e.g. 01 or 01_superposition)")
    p.add_argument("--root", help="the course folder (default: found from the current folder)")
    p.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds for execute")
    p.add_argument("--force", action="store_true", help="build: overwrite chapters that hold outputs")
    p.set_defaults(func=chapters)

    p = sub.add_parser("book", help="build the book offline into book/_build/html")
    p.add_argument("action", choices=["build"])
    p.add_argument("--root", help="the course folder (default: found from the current folder)")
    p.set_defaults(func=book)

    from toykit.grading import register as register_grading
    from toykit.train_recipes import register as register_train

    register_train(sub)
    register_grading(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
