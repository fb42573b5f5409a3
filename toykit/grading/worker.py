"""Run submissions, one at a time, each in a fresh, confined kernel.

The batch grader starts ``--jobs`` such processes, each in a new session, and sends them jobs
through a pipe. When a notebook runs past its time limit, the grader kills that worker's whole
session and the kernel's process group, and starts a new worker. For each job the worker

- reads and validates the submission (invalid JSON, not a notebook, another chapter);
- stages a copy in a fresh working folder (mode 700) that holds nothing else;
- clears the learner's outputs and appends the grader's own check cell;
- starts the kernel through :mod:`toykit.grading.sandbox` with a scrubbed environment
  (HOME and the working directory are the staging folder) and a memory limit;
- runs every cell with nbclient: errors do not stop the run, and a cell that runs past the
  per-cell limit is interrupted and the next one runs;
- writes ``outcome.json`` (how the run went) next to the record the check cell wrote, after
  running :mod:`toykit.grading.verdict` on that record in a fresh interpreter.

It never writes outside the job's scratch folder.
"""

from __future__ import annotations

import json
import os
import signal
import site
import stat
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from toykit.grading.checkcell import grading_cell
from toykit.grading.spec import ChapterSpec, Exercise, wrong_chapter

KERNEL_NAME = "toykit-grade"
MAX_NOTEBOOK_BYTES = 64 * 2**20
FILE_BYTES_LIMIT = 2**30
# Folders a kernel may read (never write) under Landlock, besides Python's own.
SYSTEM_READ = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev",
               "/var/cache/fontconfig", "/run/systemd/resolve"]


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def load_submission(path: Path, spec: ChapterSpec) -> tuple[nbformat.NotebookNode | None, str | None, str]:
    """(notebook, None, "") when it can be graded, else (None, status, detail)."""
    try:
        # non-blocking and checked after opening: a FIFO or device swapped in is refused, not read
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None, "invalid_notebook", "not a regular file (a FIFO, socket or device): not read"
            if st.st_size > MAX_NOTEBOOK_BYTES:
                return None, "invalid_notebook", (f"the file is {st.st_size / 2**20:.0f} MB, more than a "
                                                  "notebook should be")
            raw = f.read(MAX_NOTEBOOK_BYTES + 1)
    except OSError as err:
        return None, "invalid_notebook", f"cannot read the file: {err.strerror or err}"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "invalid_notebook", "not a notebook: the file is not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, "invalid_notebook", f"not a notebook: invalid JSON ({err.msg}, line {err.lineno})"
    except RecursionError:
        return None, "invalid_notebook", "not a notebook: JSON nested too deeply"
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or "nbformat" not in data:
        return None, "invalid_notebook", "not a Jupyter notebook: valid JSON, but no `cells` and `nbformat`"
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        for cell in nb.cells:
            if cell.cell_type not in ("code", "markdown", "raw") or not isinstance(cell.source, str):
                raise ValueError(f"a cell of type {cell.cell_type!r}")
    except Exception as err:  # nbformat raises several kinds
        return None, "invalid_notebook", f"not a readable Jupyter notebook ({type(err).__name__}: {err})"
    why = wrong_chapter(nb, spec)
    if why:
        return None, "wrong_chapter", f"this looks like another chapter's notebook: {why}"
    return nb, None, ""


def read_paths(toykit_dir: str) -> list[str]:
    """What the kernel may read: Python, its packages, toykit, and system folders."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, toykit_dir,
             os.path.dirname(os.path.realpath(sys.executable))}
    try:
        paths.update(site.getsitepackages())
    except AttributeError:  # some virtualenv builds lack it
        pass
    paths.update(os.path.realpath(p) for p in list(paths))
    return sorted(paths) + SYSTEM_READ


def kernel_env(work: Path, threads: int) -> dict[str, str]:
    """A scrubbed environment: nothing from the grader's own (tokens, TOYKIT_CHECK_LOG, ...)."""
    bin_dir = os.path.dirname(sys.executable)
    env = {
        "PATH": os.pathsep.join([bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(work), "USERPROFILE": str(work), "TMPDIR": str(work / ".tmp"),
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline", "MPLCONFIGDIR": str(work / ".matplotlib"),
        "IPYTHONDIR": str(work / ".ipython"), "JUPYTER_RUNTIME_DIR": str(work / ".jupyter"),
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        # fewer malloc arenas: each reserves address space, which the memory limit counts
        "MALLOC_ARENA_MAX": "2",
    }
    for name in ("SYSTEMROOT", "TZ"):  # harmless and sometimes needed
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def run(job: dict) -> dict:
    """Grade the submission described by ``job``; returns (and writes) the outcome."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    root = Path(job["scratch"])
    work, ctl = root / "work", root / "ctl"
    outcome_path = ctl / "outcome.json"
    spec = ChapterSpec(job["chapter"], "", Path(job["solution"]),
                       [Exercise(e["id"], e["name"], e["module"], e["check"], e["points"])
                        for e in job["exercises"]])
    outcome: dict = {"status": "ok", "detail": "", "cell_errors": [], "cells": 0}

    def finish() -> dict:
        outcome["seconds"] = round(time.monotonic() - started, 2)
        _write_json(outcome_path, outcome)
        return outcome

    started = time.monotonic()
    ctl.mkdir(mode=0o700, parents=True, exist_ok=True)
    nb, status, detail = load_submission(Path(job["submission"]), spec)
    if nb is None:
        outcome.update(status=status, detail=detail)
        return finish()

    for folder in (work, work / ".tmp", ctl, ctl / "runtime", ctl / "kernels" / KERNEL_NAME):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    (work / Path(job["submission"]).name).write_text(nbformat.writes(nb), encoding="utf-8")
    results = ctl / f"results-{job['nonce']}.jsonl"
    applied = ctl / "applied.json"
    for f in (results, applied):
        f.touch(mode=0o600)

    learner_cells = len(nb.cells)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    exercises = [{"id": e.id, "name": e.name, "module": e.module, "check": e.check} for e in spec.exercises]
    nb.cells.append(nbformat.v4.new_code_cell(grading_cell(job["nonce"], str(results), exercises, job["cell_timeout"])))
    outcome["cells"] = learner_cells
    (ctl / "cells").write_text(str(learner_cells), encoding="utf-8")

    config = {"pid_file": str(ctl / "kernel.pid"), "applied_file": str(applied), "parent_pid": os.getpid(),
              "memory_bytes": int(job["memory_mb"] * 2**20) if job.get("memory_mb") else None,
              "file_bytes": FILE_BYTES_LIMIT, "landlock": bool(job.get("landlock", True)),
              "read": read_paths(job["toykit_dir"]) + [str(ctl / "runtime")], "write": [str(work)],
              "write_files": [str(results), str(applied), "/dev/null"]}
    _write_json(ctl / "sandbox.json", config)
    _write_json(ctl / "kernels" / KERNEL_NAME / "kernel.json", {
        # run as a plain script, so the kernel starts with nothing of toykit imported
        "argv": [sys.executable, str(Path(__file__).with_name("sandbox.py")), str(ctl / "sandbox.json"),
                 "-f", "{connection_file}"],
        "display_name": "toykit grader", "language": "python"})

    os.environ["JUPYTER_RUNTIME_DIR"] = str(ctl / "runtime")  # where the connection file goes
    km = AsyncKernelManager(kernel_name=KERNEL_NAME,
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(ctl / "kernels")]))
    km.connection_file = str(ctl / "runtime" / "connection.json")
    current = {"cell": -1, "started": 0.0}
    outcome["timed_out_cells"] = []

    def on_cell_start(cell, cell_index, **_):
        current["cell"], current["started"] = cell_index, time.monotonic()
        (ctl / "progress").write_text(str(cell_index), encoding="utf-8")

    def on_cell_executed(cell, cell_index, **_):
        # nbclient interrupts a cell at its time limit and goes on: note which cells it was
        if cell_index < learner_cells and time.monotonic() - current["started"] >= job["cell_timeout"] - 0.05:
            outcome["timed_out_cells"].append(cell_index)
            with open(ctl / "interrupted", "a", encoding="utf-8") as f:  # for the batch, if it must kill us
                f.write(f"{cell_index}\n")

    def timeout_for(cell) -> int:
        if cell is nb.cells[-1]:  # the grader's cell checks every exercise, each within the limit
            return int(job["cell_timeout"] * (len(exercises) + 1) + 30)
        return int(job["cell_timeout"])

    client = NotebookClient(
        nb, km=km, timeout_func=timeout_for, interrupt_on_timeout=True, allow_errors=True,
        error_on_timeout={"ename": "CellTimeoutError",
                          "evalue": f"the cell ran longer than {job['cell_timeout']:g} s and was interrupted",
                          "traceback": []},
        startup_timeout=120, shutdown_kernel="immediate", record_timing=False,
        skip_cells_with_tag=f"toykit-never-{job['nonce']}",  # the learner cannot skip the check cell
        resources={"metadata": {"path": str(work)}}, on_cell_start=on_cell_start,
        on_cell_executed=on_cell_executed)
    client.owns_km = True  # so nbclient shuts the kernel down and closes its channels: workers are reused
    try:
        # the kernel's own stdout must not reach the pipe to the batch grader
        client.execute(env=kernel_env(work, int(job.get("threads", 1))), stdout=subprocess.DEVNULL)
    except DeadKernelError:
        outcome.update(status="kernel_died", died_in_cell=current["cell"])
    except Exception as err:  # the kernel did not start, or nbclient failed: say so, don't crash
        outcome.update(status="grader_error", detail=f"{type(err).__name__}: {err}"[:2000])
    finally:
        kill_kernel(ctl)

    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                outcome["cell_errors"].append({"cell": i, "ename": out.get("ename", ""),
                                               "evalue": str(out.get("evalue", ""))[:1000]})
    try:
        outcome["sandbox"] = json.loads(applied.read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError):
        outcome["sandbox"] = {}
    outcome["verdict"] = decide_outside(job, ctl, results, exercises)
    return finish()


def decide_outside(job: dict, ctl: Path, results: Path, exercises: list[dict]) -> str | None:
    """Run :mod:`toykit.grading.verdict` on the kernel's record in a fresh interpreter, which
    imports the grader's toykit and nothing of the student's; None when it wrote its verdict,
    else what went wrong."""
    (ctl / "progress").write_text("verdict", encoding="utf-8")
    config = {"record": str(results), "nonce": job["nonce"], "exercises": exercises,
              "seconds": job["cell_timeout"], "threads": int(job.get("threads", 1)),
              "out": str(ctl / "verdict.json")}
    _write_json(ctl / "verdict-job.json", config)
    env = {k: v for k, v in os.environ.items() if k not in ("TOYKIT_CHECK_LOG", "PYTHONPATH", "PYTHONHOME")}
    boot = ("import sys; sys.path.insert(0, sys.argv[1]); from toykit.grading.verdict import main; "
            "sys.exit(main(sys.argv[2:]))")
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", boot, os.path.dirname(job["toykit_dir"]),
                               str(ctl / "verdict-job.json")], cwd=ctl, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=(len(exercises) + 1) * max(60, 4 * job["cell_timeout"]) + 120)
    except subprocess.TimeoutExpired:
        return "the grader's verdict process ran past its time limit"
    if proc.returncode != 0 or not (ctl / "verdict.json").exists():
        tail = proc.stderr.decode("utf-8", "replace").strip()[-1500:]
        return f"the grader's verdict process failed (exit code {proc.returncode}): {tail}"
    return None


def kill_kernel(ctl: Path) -> None:
    """Kill the kernel's process group: the kernel and anything it started and left running."""
    try:
        pid = int((ctl / "kernel.pid").read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    (ctl / "kernel.pid").unlink(missing_ok=True)  # so that nobody kills a reused pid later


def main(argv: list[str]) -> int:
    """Serve jobs: one JSON line in on stdin, one line ``done`` out on stdout when graded.

    The process lives for many submissions, so Jupyter's imports (a second or more) are paid
    once per worker, not once per submission. Jobs come through a pipe, not a file, so the
    nonce is never on disk where a kernel could look for it.
    """
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            run(job)
        except Exception as err:  # never leave the batch without an answer
            ctl = Path(job["scratch"]) / "ctl"
            ctl.mkdir(parents=True, exist_ok=True)
            _write_json(ctl / "outcome.json", {"status": "grader_error", "cells": 0, "cell_errors": [],
                                               "detail": f"{type(err).__name__}: {err}"[:2000]})
        sys.stdout.write(f"done {job['nonce']}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
