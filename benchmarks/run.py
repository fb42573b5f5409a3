"""Run toykit's benchmarks and write the results: ``results.json``, ``results.md`` and the book page.

    .venv/bin/python -m benchmarks.run                     # everything (make bench)
    .venv/bin/python -m benchmarks.run --quick             # a smoke run, into benchmarks/quick/
    .venv/bin/python -m benchmarks.run --only transformer toy_models
    .venv/bin/python benchmarks/run.py --list

Each benchmark is a module ``benchmarks/<name>.py`` with ``run(quick: bool) -> dict``; the runner
calls it in a fresh Python process of its own, so that one benchmark's memory, threads and
imports cannot affect the next, and a crash is reported rather than fatal. Benchmarks that
other work has not written yet are listed as "not yet available". A result with a "figures"
list (see ``benchmarks.common.figure``) becomes table rows as it is; any other dict is
flattened into one row per number.

With ``--only``, the new results replace just those benchmarks' entries in an existing
``results.json`` of the same mode, so one figure can be re-measured without rerunning the
course. Every entry records when it ran and with how many threads.

Numbers depend on the machine and on what else it is doing: figures are medians over repeats
and comparisons are ratios of things timed side by side in the same process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/run.py`: import `benchmarks` from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import ROOT, figure, machine, machine_line, run_child  # noqa: E402

BENCH_DIR = ROOT / "benchmarks"
BOOK_PAGE = ROOT / "book" / "benchmarks.md"

#: In running order, cheapest first, the course last. The second item says who writes it.
BENCHMARKS: list[tuple[str, str]] = [
    ("imports", "import time and checkpoint loading (issue 8)"),
    ("transformer", "toykit's transformer against a plain PyTorch GPT (issues 3, 8)"),
    ("toy_models", "toy models of superposition (issue 8)"),
    ("shapes", "the shapes image generator (issue 20)"),
    ("sae", "sparse autoencoder training (issue 4)"),
    ("probes", "probe fitting (issue 5)"),
    ("patching", "the residual patching sweep (issue 5)"),
    ("discovery", "automated circuit discovery: ACDC, EAP and edge patching (issue 21)"),
    ("grokking", "the grokking epoch rate (issue 6)"),
    ("grading", "toykit grade throughput (issue 7)"),
    ("course", "every solution notebook, executed (issue 8)"),
]
NAMES = [name for name, _ in BENCHMARKS]


# -- the grading benchmark, which is a script -------------------------------------------------------


def grading(quick: bool) -> dict:
    """Wrap ``benchmarks/grading.py``: a few submissions (issue 7 asks for 30 of chapter 01 when it
    is run by hand; here fewer, to keep ``make bench`` short), 2 jobs; its JSON as figures."""
    chapter, n = ("00", 2) if quick else ("01", 4)
    if not any(p.name.startswith(f"{chapter}_") for p in (ROOT / "solutions").glob("*.ipynb")):
        chapter = "00"
    child = run_child([sys.executable, str(BENCH_DIR / "grading.py"), "--chapter", chapter, "--n", str(n),
                       "--jobs", "2"], cwd=ROOT, timeout=1800)
    out = child.stdout
    if "{" not in out:
        raise RuntimeError(f"benchmarks/grading.py printed no result (exit {child.returncode}):\n"
                           f"{child.stderr[-2000:]}")
    result = json.loads(out[out.index("{"): out.rindex("}") + 1])
    note = f"chapter {result['chapter']}, {n} submissions, 2 jobs"
    figures = [
        figure("grading: submissions per minute", result["graded_per_minute"], "per min", note=note),
        figure("grading: plain execution, notebooks per minute", result["plain_per_minute"], "per min", note=note),
        figure("grading: the grader's overhead over plain execution", result["overhead_percent"], "%",
               note=f"{note}; noise is about 10%"),
        figure("grading: copies of the solution given full marks", result["full_marks"], f"of {n}", at_least=n,
               note=", ".join(result["statuses"])),
    ]
    # grading.py exits non-zero when a copy misses full marks; the last figure reports that.
    return {"figures": figures, "details": {**result, "exit_code": child.returncode}}


WRAPPERS: dict[str, Callable[[bool], dict]] = {"grading": grading}


# -- running one benchmark ----------------------------------------------------------------------------


def is_available(name: str) -> bool:
    return name in WRAPPERS or importlib.util.find_spec(f"benchmarks.{name}") is not None


def run_here(name: str, quick: bool) -> dict:
    """Run benchmark ``name`` in this process; its raw result dict."""
    if name in WRAPPERS:
        return WRAPPERS[name](quick)
    module = importlib.import_module(f"benchmarks.{name}")
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"benchmarks/{name}.py has no run(quick: bool) -> dict")
    result = module.run(quick)
    if not isinstance(result, dict):
        raise TypeError(f"benchmarks/{name}.py: run() returned {type(result).__name__}, not a dict")
    return result


def as_figures(result: dict) -> tuple[list[dict], dict]:
    """(figures, details) from a benchmark's result.

    A "figures" list of figure dicts is kept as it is (missing keys filled in). Otherwise every
    number, string or bool in the dict becomes a row named by its key path, and the dict itself
    is kept as details.
    """
    figures = result.get("figures")
    if isinstance(figures, list) and all(isinstance(f, dict) and "name" in f and "value" in f for f in figures):
        rows = [{"name": f["name"], "value": f["value"], "unit": "", "target": None, "met": None, "note": "", **f}
                for f in figures]
        details = result.get("details") if isinstance(result.get("details"), dict) else {}
        return rows, {**details, **{k: v for k, v in result.items() if k not in ("figures", "details")}}
    rows = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            rows.append(figure(prefix, value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                        else {**figure(prefix, None), "value": value})

    walk("", result)
    return rows, result


def run_in_child(name: str, quick: bool, threads: int | None) -> dict:
    """Run one benchmark in a fresh interpreter; its entry for results.json."""
    started = dt.datetime.now().astimezone()
    with tempfile.TemporaryDirectory(prefix="toykit-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.run", "--child", name, "--child-out", str(out)]
        cmd += ["--quick"] if quick else []
        cmd += ["--threads", str(threads)] if threads else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        child = run_child(cmd, cwd=ROOT, env=env)
        entry = json.loads(out.read_text()) if out.exists() else {
            "status": "error", "error": f"the benchmark process died (exit {child.returncode}):\n"
                                        f"{child.stderr[-3000:]}"}
    entry.update(started=started.isoformat(timespec="seconds"), seconds=round(child.wall_s, 1))
    return entry


def child_main(name: str, quick: bool, threads: int | None, out: Path) -> None:
    """In the fresh process: run, and write {"status", "figures", "details", "torch_threads"}."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    entry: dict = {"torch_threads": torch.get_num_threads(), "quick": quick}
    try:
        figures, details = as_figures(run_here(name, quick))
        entry.update(status="ok", figures=figures, details=details)
    except Exception as err:  # a failing benchmark must not stop the others
        entry.update(status="error", error="".join(traceback.format_exception(err))[-3000:])
    out.write_text(json.dumps(entry, indent=1, default=str))


# -- writing the results --------------------------------------------------------------------------------


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _value(f: dict) -> str:
    v = f["value"]
    if v is None:
        return "—"
    if isinstance(v, float):
        v = f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    unit = f.get("unit") or ""
    return f"{v}{unit}" if unit == "x" else f"{v} {unit}".strip()


def table(results: dict) -> str:
    """The markdown body: machine line, the table, then what is missing, failed or missed."""
    m = results["machine"]
    mode = "quick (smoke run, small sizes: not for comparison)" if results["quick"] else "full"
    entries = results["benchmarks"]
    total = sum(e.get("seconds", 0) for e in entries.values())
    now = [n for n in results.get("measured_now", entries) if n in entries]
    earlier = [n for n in entries if n not in now and entries[n]["status"] != "not yet available"]
    when = results["finished"][:16].replace("T", " ")
    run = f"{mode}, {when}, {total:.0f} s in all" if not earlier else (
        f"{mode}; {', '.join(now)} measured {when}, the rest ({', '.join(earlier)}) in an earlier run; "
        f"{total:.0f} s in all")
    lines = [
        f"**Machine:** {_cell(machine_line(m))}.",
        "",
        f"**Run:** {run}. Figures are medians over repeats unless the note says otherwise; comparisons (×) "
        "are ratios of things timed side by side in the same run.",
        "",
        "| benchmark | figure | value | target | met? | note |",
        "|---|---|---|---|---|---|",
    ]
    missed, missing, failed = [], [], []
    for name, entry in entries.items():
        if entry["status"] == "not yet available":
            missing.append(name)
            continue
        if entry["status"] == "error":
            failed.append(name)
        for f in entry.get("figures", []):
            met = {True: "yes", False: "**no**", None: ""}[f.get("met")]
            if f.get("met") is False:
                why = f" Why: {f['why']}" if f.get("why") else ""
                missed.append(f"{name}: {f['name']} = {_value(f)} (target {f['target']}).{why}")
            lines.append(f"| {name} | {_cell(f['name'])} | {_cell(_value(f))} | {_cell(f.get('target') or '')} "
                         f"| {met} | {_cell(f.get('note') or '')} |")
    lines.append("")
    if missed:
        lines += ["**Targets missed:**", ""] + [f"- {_cell(x)}" for x in missed] + [""]
    profiles = {f"{name}: {title}": text for name, entry in entries.items()
                for title, text in (entry.get("details") or {}).get("profiles", {}).items()}
    if profiles:
        lines += ["**Profiles behind these figures** (torch.profiler, self CPU time per op):", ""]
        for title, text in profiles.items():
            lines += [f"{title}:", "", "```text", text, "```", ""]
    if failed:
        lines += [f"**Failed to run:** {', '.join(failed)} (the error is in results.json).", ""]
    if missing:
        lines += [f"**Not yet available:** {', '.join(missing)}.", ""]
    return "\n".join(lines)


BOOK_INTRO = """# Benchmarks

How fast the course and toykit are on an ordinary CPU. `make bench` (or
`python -m benchmarks.run`) measures every figure below and rewrites this page, together with
`benchmarks/results.json` and `benchmarks/results.md`. A benchmark is not a test: the numbers
depend on the machine and on whatever else it was doing, so each figure names the machine, and
toykit is compared with plain PyTorch as a ratio timed side by side in the same run.

Some rows are diagnostics that explain a target. toykit's attention uses PyTorch's fused kernel
unless a hook reads the attention scores or pattern; then it forms them, as the plain GPT that
"writes attention out" does. A full `run_with_cache` must form them too, so the cache is also
timed against a forward pass that does. The `run_with_cache` ratio measured "with glibc malloc
keeping freed memory" shows how much of the cache's cost is the operating system handing out
fresh pages for a ~100 MiB cache on every call, rather than the hooks themselves; the page-fault
counts in the notes say the same. Because page faults dominate it, this ratio moves between runs
on the same quiet machine (1.18x to 1.51x in the runs of 2026-11-25), more than any other figure.
Each missed target below says why, from these diagnostics, and the torch.profiler tables the
runner keeps follow it.

If you cache large activations in a loop on Linux, you can get the same effect without code:
start Jupyter or Python with `MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_MMAP_THRESHOLD_=33554432`
in the environment, so that glibc keeps up to 256 MiB of freed memory for reuse (at the price of
a process that gives memory back to the system less eagerly).

## Results

"""


LENS_DIR = BENCH_DIR / "with-lens"  # `make bench-lens`: the same benchmarks where TransformerLens and SAELens exist
LENS_NAMES = ("TransformerLens", "SAELens")


def lens_section(lens_dir: Path = LENS_DIR) -> str:
    """The book page's comparison with TransformerLens and SAELens, from lens_dir's results.json
    (written by `make bench-lens`); "" when there is none."""
    try:
        results = json.loads((lens_dir / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    rows = [(name, f) for name, entry in results.get("benchmarks", {}).items() for f in entry.get("figures", [])
            if any(lib in f["name"] for lib in LENS_NAMES) and f.get("value") is not None]
    if not rows:
        return ""
    lines = ["## Against TransformerLens and SAELens", "",
             "`make bench-lens` runs the transformer and SAE benchmarks again in a separate environment where "
             "TransformerLens and SAELens are installed (they are never toykit dependencies). Its comparisons, "
             f"measured {results['finished'][:16].replace('T', ' ')} on {_cell(machine_line(results['machine']))}:",
             "", "| benchmark | figure | value | note |", "|---|---|---|---|"]
    lines += [f"| {name} | {_cell(f['name'])} | {_cell(_value(f))} | {_cell(f.get('note') or '')} |"
              for name, f in rows]
    return "\n".join(lines) + "\n"


def render_book(results_dir: Path = BENCH_DIR, book_page: Path = BOOK_PAGE) -> Path:
    """Rewrite the book page from saved results, measuring nothing. For the course's own results
    (results_dir benchmarks/) the page ends with the comparison from LENS_DIR, if there is one."""
    results = json.loads((results_dir / "results.json").read_text())
    section = lens_section() if results_dir.resolve() == BENCH_DIR.resolve() else ""
    book_page.write_text(BOOK_INTRO + table(results) + ("\n" + section if section else ""))
    return book_page


def write(results: dict, out_dir: Path, book_page: Path | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json", out_dir / "results.md"]
    written[0].write_text(json.dumps(results, indent=1, default=str) + "\n")
    written[1].write_text("# toykit benchmark results\n\n" + table(results))
    if book_page is not None:
        written.append(render_book(out_dir, book_page))
    return written


def previous(out_dir: Path, quick: bool) -> dict:
    """The benchmarks of an earlier results.json in out_dir, if it was the same mode."""
    try:
        old = json.loads((out_dir / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return old.get("benchmarks", {}) if old.get("quick") == quick else {}


def run_all(names: list[str], quick: bool, threads: int | None, out_dir: Path, book_page: Path | None,
            merge: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run the named benchmarks (each in its own process) and write the results."""
    start = dt.datetime.now().astimezone()
    info = machine()
    if threads:
        info["torch_threads"] = threads
    benchmarks = previous(out_dir, quick) if merge else {}
    for name in names:
        if not is_available(name):
            log(f"{name}: not yet available")
            benchmarks[name] = {"status": "not yet available"}
            continue
        log(f"{name}: running{' (quick)' if quick else ''} ...")
        entry = run_in_child(name, quick, threads)
        benchmarks[name] = entry
        log(f"{name}: {entry['status']} in {entry['seconds']:.0f} s"
            + ("" if entry["status"] == "ok" else "\n" + entry.get("error", "")[-1500:]))
    order = {n: i for i, n in enumerate(NAMES)}
    end = dt.datetime.now().astimezone()
    results = {
        "quick": quick,
        "finished": end.isoformat(timespec="seconds"),
        "seconds": round((end - start).total_seconds(), 1),
        # With --only, the other entries come from earlier runs (each has its own "started").
        "measured_now": list(names),
        "machine": info,
        "benchmarks": dict(sorted(benchmarks.items(), key=lambda kv: order.get(kv[0], len(order)))),
    }
    for path in write(results, out_dir, book_page):
        log(f"wrote {path}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats: a smoke run")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=NAMES, help="run just these benchmarks")
    parser.add_argument("--out", type=Path, help="folder for results.json and results.md "
                        "(default: benchmarks/, or benchmarks/quick/ with --quick)")
    parser.add_argument("--book", type=Path, help="where to write the book page (default: book/benchmarks.md "
                        "for a full run into benchmarks/; otherwise none)")
    parser.add_argument("--no-book", action="store_true", help="do not write the book page")
    parser.add_argument("--threads", type=int, help="torch CPU threads in the benchmark processes (default: "
                        "torch's own; notebook kernels always keep their default)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and whether each exists")
    parser.add_argument("--render-book", action="store_true", help="rewrite the book page from the saved "
                        "results (benchmarks/ and benchmarks/with-lens/) without measuring anything")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one benchmark in this process
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be a positive int")

    if args.child:
        child_main(args.child, args.quick, args.threads, args.child_out)
        return 0
    if args.render_book:
        print(f"wrote {render_book(book_page=args.book or BOOK_PAGE)}")
        return 0
    if args.list:
        for name, what in BENCHMARKS:
            print(f"{name:12} {'available' if is_available(name) else 'not yet available':18} {what}")
        return 0

    default_out = BENCH_DIR / "quick" if args.quick else BENCH_DIR
    out_dir = (args.out or default_out).resolve()
    book = args.book or (BOOK_PAGE if out_dir == BENCH_DIR and not args.quick else None)
    results = run_all(args.only or NAMES, args.quick, args.threads, out_dir, None if args.no_book else book,
                      merge=bool(args.only))
    return 1 if any(e["status"] == "error" for e in results["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
