"""Grade a batch of submissions: ``--jobs`` workers at a time, each under a time limit.

The parent process never runs student code. For each submission it makes a private scratch
folder, starts :mod:`toykit.grading.worker` in a new session, and waits. A worker that runs
past the per-notebook limit is stopped after its kernel's whole process tree (its PID namespace
or cgroup, see :mod:`toykit.grading.sandbox`). Workers die with the grader; Ctrl-C, SIGTERM and
SIGHUP stop every worker and kernel before the grader exits. Each finished submission becomes a
row in the report at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import toykit
from toykit.grading.report import Report, make_row, read_verdict
from toykit.grading.sandbox import landlock_abi
from toykit.grading.spec import ChapterSpec, chapter_spec
from toykit.grading.worker import kill_kernel

# The worker imports toykit.grading without toykit/__init__ (which imports torch, a second or
# two per submission that the worker does not need): a bare package object stands in for it.
_WORKER = ("import sys, types; toykit = types.ModuleType('toykit'); toykit.__path__ = [sys.argv[1]]; "
           "sys.modules['toykit'] = toykit; from toykit.grading.worker import main; sys.exit(main(sys.argv[2:]))")
MIN_MEMORY_MB = 512


@dataclass
class _Task:
    key: str
    path: Path
    sha256: str
    scratch: Path = Path()
    nonce: str = ""
    started: float = 0.0
    timed_out: bool = False


@dataclass
class _Worker:
    """A long-lived worker process, fed one job at a time; its stdout says "done" per job."""

    proc: subprocess.Popen
    log: Path
    task: _Task | None = None
    lines: queue.Queue = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None  # started with stdout=PIPE
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)  # the worker has exited

    def send(self, task: _Task, job: dict) -> None:
        self.task, task.started = task, time.monotonic()
        assert self.proc.stdin is not None  # started with stdin=PIPE
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()

    def poll(self) -> str | None:
        """"done", "dead", or None while the job runs."""
        try:
            line = self.lines.get_nowait()
        except queue.Empty:
            return None
        if line is None:
            return "dead"
        assert self.task is not None  # polled only while a job runs
        # the line must name this job's nonce: a kernel writing "done" to the pipe proves nothing
        return "done" if line == f"done {self.task.nonce}".encode() else None

    def stop(self) -> None:
        """Kill the current job's kernel tree, then the worker (its session)."""
        if self.task is not None:
            kill_kernel(self.task.scratch / "ctl")
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                self.proc.send_signal(signal.SIGTERM)  # the worker kills its kernel's tree, then exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@dataclass(frozen=True)
class Submission:
    """A file found for grading. key: its path under the submissions root, with "/" between
    folders (the row's identity); problem: why it is refused unread, or None."""

    key: str
    path: Path
    problem: str | None = None


def submissions_root(paths: list[str | Path], known: str | None = None) -> Path:
    """The folder row keys are relative to: ``known`` (a report's earlier root) when every path
    lies under it; else the one folder given, or the common folder of everything given."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    for p in absolute:
        if not os.path.lexists(p):
            raise FileNotFoundError(f"no such submission: {p}")
    if known and all(p == Path(known) or Path(known) in p.parents for p in absolute):
        return Path(known)
    folders = [p if p.is_dir() and not p.is_symlink() else p.parent for p in absolute]
    return Path(os.path.commonpath(folders)) if len(folders) > 1 else folders[0]


def _classify(path: Path, root: Path) -> str | None:
    """Why ``path`` cannot be graded (read nothing to find out), or None."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"cannot read the file: {err.strerror or err}"
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(path))
        real_root = Path(os.path.realpath(root))
        if real_root not in target.parents:
            return "a symbolic link to a file outside the submissions folder: not followed"
        try:
            st = os.stat(target)
        except OSError:
            return "a symbolic link to nothing"
    if stat.S_ISDIR(st.st_mode):
        return "a folder named like a notebook, not a notebook file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device): not read"
    return None


def find_submissions(paths: list[str | Path], root: Path | None = None) -> list[Submission]:
    """Files given, plus every ``*.ipynb`` under folders given (checkpoints skipped), each with
    its key under ``root`` (default: :func:`submissions_root`). Symbolic links are not followed
    into folders, nor to files outside the root; FIFOs, devices and folders named ``*.ipynb``
    are returned with a problem instead of being skipped or read."""
    root = Path(os.path.abspath(root)) if root else submissions_root(paths)
    found: list[Path] = []
    for p in (Path(os.path.abspath(q)) for q in paths):
        if p.is_dir() and not p.is_symlink():
            for folder, dirs, files in os.walk(p):  # never follows links to folders
                dirs[:] = sorted(d for d in dirs if d != ".ipynb_checkpoints")
                found += [Path(folder, name) for name in sorted(dirs + files) if name.endswith(".ipynb")]
        elif os.path.lexists(p):
            found.append(p)
        else:
            raise FileNotFoundError(f"no such submission: {p}")
    out: dict[str, Submission] = {}
    for p in found:
        if root not in p.parents:
            raise ValueError(f"{p} is not under the submissions root {root}")
        key = p.relative_to(root).as_posix()
        problem = _classify(p, root)
        out.setdefault(key, Submission(key, Path(os.path.realpath(p)) if problem is None else p, problem))
    if not out:
        raise FileNotFoundError("no submissions found (give notebook files or folders holding them)")
    return sorted(out.values(), key=lambda s: s.key)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as (K, N), 0 <= K < N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether the row ``key`` belongs to shard (K, N): a hash of the key, so a submission's
    shard never depends on which other files exist."""
    k, n = shard
    return int(hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12], 16) % n == k


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return ""
    return h.hexdigest()


def _rmtree(path: Path) -> None:
    def unlock(func, p, _exc):  # a kernel may leave read-only files or folders behind
        try:
            os.chmod(p, stat.S_IRWXU)
            parent = os.path.dirname(p)
            os.chmod(parent, stat.S_IRWXU)
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=unlock)
    shutil.rmtree(path, ignore_errors=True)


def grade(chapter: str | ChapterSpec, submissions: list[str | Path], out: str | Path, *, jobs: int = 1,
          timeout: float = 600, cell_timeout: float | None = None, memory_mb: int | None = 4096,
          force: bool = False, root: Path | None = None, sandbox: bool = True,
          shard: tuple[int, int] | None = None, log: Callable[[str], None] | None = print) -> dict[str, dict]:
    """Grade ``submissions`` (files or folders) against ``chapter``; write the report to ``out``.

    jobs: submissions graded at once. timeout: seconds per notebook (its kernel is killed after).
    cell_timeout: seconds per cell (interrupted, then the next cell runs); default min(timeout, 120).
    memory_mb: the kernel's address-space limit in MB (None: none). force: regrade submissions
    already in the report. sandbox: use Landlock where the kernel offers it. shard: (K, N) to
    grade only the K-th of N deterministic shares (see :func:`in_shard`).
    Returns the report's rows by submission key (including earlier ones).
    """
    say = log or (lambda _msg: None)
    check_limits(jobs, timeout, cell_timeout, memory_mb)
    spec = chapter if isinstance(chapter, ChapterSpec) else chapter_spec(chapter, root)
    cell_timeout = float(cell_timeout or min(timeout, 120))
    abi = landlock_abi() if sandbox else 0
    limits = {"timeout": timeout, "cell_timeout": cell_timeout, "memory_mb": memory_mb}
    settings = {**limits, "jobs": jobs,
                "sandbox": f"landlock (ABI {abi})" if abi else "none: limits only (use a container or VM)"}
    report = Report(Path(out), spec, settings)
    sub_root = submissions_root(list(submissions), report.root)
    found = find_submissions(list(submissions), sub_root)
    if shard is not None:
        found = [f for f in found if in_shard(f.key, shard)]
    report.root = str(sub_root)
    out_dir = Path(out).resolve()
    tasks: deque[_Task] = deque()
    for sub in found:
        if out_dir in Path(os.path.abspath(sub.path)).parents or out_dir in sub.path.parents:
            raise ValueError(f"{sub.path} lies inside the output folder {out_dir}: keep submissions elsewhere")
        if sub.problem:  # refused unread: a row that says why
            outcome = {"status": "invalid_notebook", "detail": sub.problem, "cells": 0, "cell_errors": []}
            report.add(make_row(sub.key, sub.path, "", spec, outcome, {}, [], limits))
            say(f"refuse {sub.key}: {sub.problem}")
            continue
        task = _Task(sub.key, sub.path, _sha256(sub.path))
        if not force and report.graded(task.key, task.sha256):
            say(f"skip {task.key}: already graded (use --force to grade again)")
            continue
        tasks.append(task)
    if not abi and sandbox:
        say("warning: Linux Landlock is not available here, so a kernel can read and write anything "
            "you can; the time and memory limits still hold. Grade inside a container or VM.")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    toykit_dir = os.path.realpath(os.path.dirname(toykit.__file__))
    exercises = [{"id": e.id, "name": e.name, "module": e.module, "check": e.check, "points": e.points}
                 for e in spec.exercises]
    scratch_root = Path(tempfile.mkdtemp(prefix="toykit-grade-"))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("TOYKIT_CHECK_LOG", None)
    total, done = len(tasks), 0
    workers: list[_Worker] = []
    index = 0

    def new_worker() -> _Worker:
        log_path = scratch_root / f"worker-{secrets.token_hex(4)}.log"
        with open(log_path, "wb") as logf:
            proc = subprocess.Popen([sys.executable, "-c", _WORKER, toykit_dir, str(os.getpid())], cwd=scratch_root,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf, env=env,
                                    start_new_session=True)
        return _Worker(proc, log_path)

    def start(worker: _Worker, task: _Task) -> None:
        nonlocal index
        task.scratch = scratch_root / f"{index:04d}"
        index += 1
        task.scratch.mkdir(mode=0o700)
        task.nonce = secrets.token_hex(16)
        worker.send(task, {
            "scratch": str(task.scratch), "chapter": spec.stem, "solution": str(spec.solution),
            "exercises": exercises, "submission": str(task.path), "nonce": task.nonce, "toykit_dir": toykit_dir,
            "cell_timeout": cell_timeout, "timeout": timeout, "memory_mb": memory_mb, "landlock": bool(abi),
            "threads": threads})

    def finish(worker: _Worker, state: str) -> None:
        nonlocal done
        task, worker.task = worker.task, None
        assert task is not None  # finish is called only for a worker with a job
        ctl = task.scratch / "ctl"
        outcome = _read_json(ctl / "outcome.json") if state == "done" else None
        if outcome is None:
            kill_kernel(ctl)
        cells = _read_int(ctl / "cells")
        if task.timed_out:
            cell = _read_int(ctl / "progress")
            interrupted = _read_int(ctl / "interrupted")  # the first learner cell that was interrupted
            if interrupted is not None:
                where = f" (cell {interrupted + 1} ran past the per-cell limit and ignored the interrupt)"
            elif cell is not None and cells and cell < cells:
                where = f" (it was running cell {cell + 1})"
            else:
                where = " (the grader was checking the exercises)" if cell is not None else ""
            outcome = {"status": "timeout", "cells": cells or 0, "cell_errors": [],
                       "detail": f"the notebook ran longer than {timeout:g} s and was stopped{where}",
                       "seconds": round(time.monotonic() - task.started, 2)}
        elif outcome is None:
            outcome = {"status": "grader_error", "cells": 0, "cell_errors": [],
                       "detail": f"the grading worker stopped (exit code {worker.proc.poll()}): {_tail(worker.log)}"}
        try:
            records, problems, recorded = read_verdict(ctl / "verdict.json", spec)
            row = make_row(task.key, task.path, task.sha256, spec, outcome, records, problems, limits, recorded)
        except Exception as err:  # a grader bug on one submission is that row's, never the run's
            row = make_row(task.key, task.path, task.sha256, spec, {
                "status": "grader_error", "detail": f"{type(err).__name__}: {err}"}, {}, [], limits)
        report.add(row)
        done += 1
        say(f"[{done}/{total}] {task.key}: {row['total']:g}/{row['max']:g} {row['status']}"
            f" ({row.get('seconds') or 0:.1f} s)")
        _rmtree(task.scratch)

    def on_signal(signum, _frame):  # SIGTERM or SIGHUP: stop like Ctrl-C, killing every kernel
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            handlers[sig] = signal.signal(sig, on_signal)
    try:
        while tasks or any(w.task for w in workers):
            for i, worker in enumerate(workers):
                if worker.task is None and worker.proc.poll() is not None:
                    workers[i] = new_worker()  # replace one that was stopped or died
            while len(workers) < min(jobs, total):
                workers.append(new_worker())
            for worker in workers:
                if worker.task is None and tasks:
                    start(worker, tasks.popleft())
            time.sleep(0.02)
            for worker in workers:
                if worker.task is None:
                    continue
                state = worker.poll()
                if state is None and _past_limit(worker.task, timeout):
                    worker.task.timed_out = True
                    worker.stop()
                    state = "dead"
                if state is not None:
                    finish(worker, state)
                    if state == "dead":
                        worker.stop()
    finally:
        for worker in workers:  # done, or interrupted (Ctrl-C, SIGTERM): stop everything we started
            with contextlib.suppress(OSError):
                if worker.proc.stdin is not None:
                    worker.proc.stdin.close()
            worker.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        _rmtree(scratch_root)
    return report.rows


def check_limits(jobs: int, timeout: float, cell_timeout: float | None, memory_mb: int | None) -> None:
    """Raise ValueError, naming the option, for a limit that is not a sensible number."""
    def number(value, name: str, integer: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or value != value \
                or value in (float("inf"), float("-inf")):
            raise ValueError(f"{name} must be {'a whole number' if integer else 'a finite number'}, got {value!r}")
        return value

    if number(jobs, "--jobs (jobs)", integer=True) < 1:
        raise ValueError(f"--jobs (jobs) must be at least 1, got {jobs}")
    if number(timeout, "--timeout (timeout)") < 1:
        raise ValueError(f"--timeout (timeout) must be at least 1 second, got {timeout:g}")
    if cell_timeout is not None:
        if number(cell_timeout, "--cell-timeout (cell_timeout)") < 1:
            raise ValueError(f"--cell-timeout (cell_timeout) must be at least 1 second, got {cell_timeout:g}")
        if cell_timeout > timeout:
            raise ValueError(f"--cell-timeout ({cell_timeout:g} s) must not exceed --timeout ({timeout:g} s)")
    if memory_mb is not None and number(memory_mb, "--memory (memory_mb)", integer=True) < MIN_MEMORY_MB:
        raise ValueError(f"--memory (memory_mb) must be at least {MIN_MEMORY_MB} MB (or 0 for no limit), "
                         f"got {memory_mb}: Python, PyTorch and Jupyter alone need about that much")


# Seconds a worker may take to start a kernel and warm it up, before --timeout starts counting.
STARTUP_SECONDS = 240


def _past_limit(task: _Task, timeout: float) -> bool:
    """Whether the notebook ran past --timeout, counted from its first cell: starting and warming
    up the kernel is the grader's time (up to STARTUP_SECONDS), and a notebook run again because
    the machine was overloaded gets its time again."""
    ctl = task.scratch / "ctl"
    try:
        first = float((ctl / "first_cell").read_text(encoding="utf-8"))
        since = time.time() - first
    except (OSError, ValueError):
        since = time.monotonic() - task.started - STARTUP_SECONDS
    return since > timeout * (2 if (ctl / "rerun").exists() else 1)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    """The first integer in a small file written by a worker, or None."""
    try:
        return int(path.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tail(path: Path, n: int = 600) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return text[-n:]
