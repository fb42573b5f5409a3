"""The course on a laptop: wall time and peak memory of executing each solution notebook.

Each notebook runs top to bottom with nbclient in a fresh ``python3`` kernel, as a learner's
"Restart kernel and run all" would, in a separate process, so the kernel's peak resident memory
can be read from the operating system when it exits. Nothing is written back to the notebook.
Targets (issue 8): each notebook <= 90 s, the whole course <= 12 min, peak memory <= 2 GB.

Each notebook runs once (a full course takes minutes), so these figures are single
measurements, not medians. The kernel keeps torch's default thread count, as a learner's does.

    .venv/bin/python -m benchmarks.course [--quick] [NAME ...]     # NAME: e.g. 01 or 01_superposition
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, children_peak_rss_bytes, figure, run_child
from toykit.notebooks import Course

EACH_S, TOTAL_S, PEAK_GB = 90, 12 * 60, 2.0


def execute(path: str | Path, timeout: int = 600) -> dict:
    """Run one notebook in a fresh kernel (cwd: its folder). {"seconds", "kernel_peak_rss_bytes"}.

    Call this in a process of its own: the kernel's peak memory is that of the largest child the
    process has reaped, which is only the kernel if nothing else ran before.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, shutdown_kernel="graceful",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    return {"seconds": time.perf_counter() - start, "kernel_peak_rss_bytes": children_peak_rss_bytes()}


def notebooks(quick: bool, names: list[str] | None = None, root: Path = ROOT) -> list[Path]:
    """The solution notebooks to time: those named, else all; quick mode keeps only the first."""
    paths = Course(root).solution_paths(names or None)
    return paths[:1] if quick and not names else paths


def run(quick: bool = False, names: list[str] | None = None, root: Path = ROOT) -> dict:
    """{"figures": [...], "details": {...}}; quick: only the first notebook (chapter 00)."""
    figures, details = [], {"notebooks": {}}
    total, peak, failed = 0.0, 0, []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    for path in notebooks(quick, names, root):
        child = run_child([sys.executable, "-m", "benchmarks.course", "--execute", str(path)], cwd=root, env=env,
                          timeout=900)
        if child.returncode != 0:
            failed.append(path.stem)
            details["notebooks"][path.stem] = {"error": (child.stderr or child.stdout)[-2000:]}
            figures.append(figure(f"notebook {path.stem}: wall time", None, "s", at_most=EACH_S,
                                  note="FAILED to execute; see details"))
            continue
        result = json.loads(child.stdout.strip().splitlines()[-1])
        # The kernel's own peak where the OS reports it; else the largest process of the run.
        rss = result["kernel_peak_rss_bytes"] or child.peak_rss_bytes or 0
        total += result["seconds"]
        peak = max(peak, rss)
        details["notebooks"][path.stem] = {"seconds": round(result["seconds"], 1), "peak_rss_bytes": rss,
                                           "process_tree_peak_rss_bytes": child.peak_rss_bytes}
        figures.append(figure(f"notebook {path.stem}: wall time", result["seconds"], "s", at_most=EACH_S,
                              note="one run, fresh kernel, kernel start included"))
        figures.append(figure(f"notebook {path.stem}: peak memory (RSS)", rss / 1e9, "GB", at_most=PEAK_GB,
                              note="the kernel's peak resident set"))
    n = len(details["notebooks"])
    scope = "chapter 00 only (quick mode)" if quick and not names else f"{n} solution notebooks"
    if failed:
        scope += f"; {len(failed)} failed and are not counted: {', '.join(failed)}"
    figures.append(figure("course: total wall time", total, "s", at_most=TOTAL_S, note=scope))
    figures.append(figure("course: peak memory (RSS), largest notebook", peak / 1e9, "GB", at_most=PEAK_GB,
                          note=scope))
    details["failed"] = failed
    return {"figures": figures, "details": details}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="only the first notebook")
    parser.add_argument("--execute", metavar="PATH", help=argparse.SUPPRESS)  # internal: one notebook, JSON out
    args = parser.parse_args()
    if args.execute:
        print(json.dumps(execute(args.execute)))
    else:
        print(json.dumps(run(args.quick, args.names), indent=1))


if __name__ == "__main__":
    main()
