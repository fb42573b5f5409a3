"""What every benchmark shares: the machine, timing, child-process memory, a matmul reference
rate, and the form of a reported figure.

A figure is a plain dict, so it goes straight into JSON:

    {"name": "training tokens/s, toykit / plain GPT", "value": 1.02, "unit": "x",
     "target": ">= 1.0", "met": True, "note": "median of 15 paired rounds"}

``target`` and ``met`` are None for figures that have no target. Benchmarks report medians over
repeats, and compare two things only as a ratio measured side by side in the same run, because
the absolute numbers move with whatever else the machine is doing.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

Figure = dict


# -- the machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's marketing name, e.g. "AMD EPYC 7B13"; "unknown" when the OS does not say."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine() -> dict:
    """Everything a reader needs to judge a figure: cores, CPU, torch and its threads, load."""
    info = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if hasattr(os, "getloadavg"):
        # A load above the core count means another job competed for the CPU during the run.
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def machine_line(info: dict) -> str:
    """One line for the top of a results table."""
    line = (f"{info['cpu']}, {info['usable_cores']} usable cores ({info['logical_cores']} logical), "
            f"torch {info['torch']} with {plural(info['torch_threads'], 'thread')}, Python {info['python']}, "
            f"{info['platform']}")
    if info.get("cuda"):
        line += f", GPU {info['cuda']}"
    if info.get("load_average_1min") is not None:
        line += f"; load average {info['load_average_1min']} at the start"
    return line


# -- timing ------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds taken by each of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return times


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time several functions in alternating rounds: one call of each per round.

    On a shared machine the background load drifts; timing the candidates in turn, rather than
    one after the other, exposes them to the same drift, so their ratio stays meaningful. The
    order is reversed every other round so that neither always runs first.
    Returns {name: [seconds per round]}.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            _sync()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-round ratios numerator[r] / denominator[r] (see ``interleaved``)."""
    return median([a / b for a, b in zip(numerator, denominator, strict=True)])


# -- memory of a child process -------------------------------------------------------------------


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_bytes: int | None  # largest resident set of the child or any descendant it waited for


def _maxrss_bytes(ru_maxrss: int) -> int:
    # Linux reports KiB, macOS bytes.
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024


def run_child(cmd: list[str], cwd: str | Path | None = None, env: dict | None = None,
              timeout: float | None = None) -> ChildResult:
    """Run ``cmd`` to the end and measure its wall time and peak resident memory.

    The memory comes from ``wait4``: the kernel's record of the largest resident set that the
    child, or any descendant it reaped (a Jupyter kernel, say), ever had. Nothing polls, so
    nothing is missed between samples. On a platform without ``wait4`` the memory is None.
    On timeout the child is killed and the return code is negative.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        try:
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                peak = _maxrss_bytes(usage.ru_maxrss)
            else:  # pragma: no cover (Windows)
                proc.wait()
                peak = None
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return ChildResult(proc.returncode, out.read(), err.read(), wall, peak)


def children_peak_rss_bytes() -> int | None:
    """Largest resident set of any child this process has reaped so far (None without resource)."""
    try:
        import resource
    except ImportError:  # pragma: no cover (Windows)
        return None
    return _maxrss_bytes(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def minor_page_faults() -> int | None:
    """Minor page faults of this process so far (None without the resource module).

    Each one is a first touch of a page the process got from the OS: memory that malloc
    returned to the OS and asked for again costs one per 4 KiB, plus zeroing.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover (Windows)
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# -- the machine's matmul rate --------------------------------------------------------------------


def matmul_gflops(n: int = 1024, threads: int | None = None, repeats: int = 7,
                  device: str | torch.device = "cpu") -> float:
    """The float32 rate of an n x n @ n x n matmul: 2 n^3 FLOP / median time, in GFLOP/s.

    This is the reference against which a training loop's "fraction of the machine's matmul
    rate" is measured. threads: torch CPU threads during the measurement (None: as set now);
    compare a workload only with the rate at the thread count it ran with.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        times = time_calls(lambda: a @ b, repeats=repeats, warmup=2)
    finally:
        torch.set_num_threads(before)
    return 2 * n**3 / median(times) / 1e9


# -- figures ------------------------------------------------------------------------------------


def _round(value: float | int | None, digits: int = 3) -> float | int | None:
    """Round to ``digits`` significant digits (ints and None pass through)."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if value == 0 or value != value:
        return value
    from math import floor, log10

    return round(value, max(0, digits - 1 - floor(log10(abs(value)))))


def plural(n: int, word: str) -> str:
    """'1 step', '3 steps'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def figure(name: str, value: float | int | None, unit: str = "", *, at_most: float | None = None,
           at_least: float | None = None, note: str = "", digits: int = 3, why: str = "") -> Figure:
    """One reported number; with ``at_most`` or ``at_least`` it has a target and a verdict.

    ``why``: for a figure that can miss its target, what the benchmark's own diagnostics say
    causes the miss. Kept only when the target is missed (results.md lists it there).
    """
    if at_most is not None and at_least is not None:
        raise ValueError("figure: give at most one of at_most and at_least")
    target, met = None, None
    suffix = "x" if unit == "x" else f" {unit}" if unit else ""
    if at_most is not None:
        target = f"<= {at_most:g}{suffix}"
        met = None if value is None else bool(value <= at_most)
    elif at_least is not None:
        target = f">= {at_least:g}{suffix}"
        met = None if value is None else bool(value >= at_least)
    out = {"name": name, "value": _round(value, digits), "unit": unit, "target": target, "met": met, "note": note}
    if why and met is False:
        out["why"] = why
    return out
