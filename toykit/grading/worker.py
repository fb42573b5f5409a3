"""Run submissions, one at a time, each in a fresh, confined kernel.

The batch grader starts ``--jobs`` such processes, each in a new session, and sends them jobs
through a pipe. When a notebook runs past its time limit, the grader kills that worker's whole
session and the kernel's process group, and starts a new worker. For each job the worker

- reads and validates the submission (invalid JSON, not a notebook, another chapter);
- stages a copy in a fresh working folder (mode 700) that holds nothing else;
- clears the learner's outputs and appends the grader's own check cell;
- makes a cgroup for the submission where it can (root), and starts the kernel through
  :mod:`toykit.grading.sandbox` with a scrubbed environment (HOME and the working directory are
  the staging folder) and the limits;
- warms the kernel up (imports torch and the checkers, on the grader's time), then runs every
  cell with nbclient: errors do not stop the run, and a learner's cell that runs past the
  per-cell limit (not counting time it waited for a CPU) is interrupted and the next one runs;
  at most OUTPUT_BYTES_PER_CELL of outputs per cell are kept;
- kills the submission's whole process tree, and writes ``outcome.json`` (how the run went)
  next to the record the check cell wrote, after running :mod:`toykit.grading.verdict` on that
  record in a fresh interpreter.

It never writes outside the job's scratch folder (and, as root, its cgroup). It is the child
subreaper of everything its kernels leave behind, and dies, killing its kernel's tree, with the
batch grader.
"""

from __future__ import annotations

import json
import os
import re
import signal
import site
import stat
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import nbformat

from toykit.grading import sandbox
from toykit.grading.checkcell import grading_cell
from toykit.grading.spec import ChapterSpec, Exercise, wrong_chapter

KERNEL_NAME = "toykit-grade"
MAX_NOTEBOOK_BYTES = 64 * 2**20
FILE_BYTES_LIMIT = 2**30  # one file
DISK_BYTES_LIMIT = 2**30  # every file the submission writes, together
PROCESS_LIMIT = 512  # processes and threads of one submission (where a cgroup or a user of its own counts them)
# Outputs kept from the kernel: they only feed the error list, so a printing loop costs nothing.
OUTPUT_BYTES_PER_CELL = 2 * 2**20
OUTPUT_BYTES_TOTAL = 16 * 2**20
# A larger message from the kernel is dropped by ZeroMQ, unread: twice what a cell may keep, since
# anything bigger would be cut by the output caps anyway. With at most MESSAGE_QUEUE of them queued,
# a kernel printing faster than we read costs the grader tens of MB, not the whole backlog.
MESSAGE_BYTES_LIMIT = 2 * OUTPUT_BYTES_PER_CELL
MESSAGE_QUEUE = 16
PORT_TRIES = 3  # kernel starts, when the kernel finds a port taken
# A learner's cell may run --cell-timeout seconds, not counting time it waited for a CPU, and
# WALL_FACTOR times that on the clock in all, however loaded the machine is.
WALL_FACTOR = 10
# A cell stopped by the clock after waiting for a CPU more than this share of its time was
# starved by other work, not slow: the notebook is run once more.
STARVED_SHARE = 0.5
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


def course_sources(solution: Path) -> set[str]:
    """The code cells the course itself wrote (in the solution and in the learner version):
    such a cell is not the learner's work, so it is not held to the per-cell limit."""
    from toykit.notebooks import learner_notebook

    try:
        nb = nbformat.read(solution, as_version=4)
    except Exception:  # the spec was read from it already; never fail a submission over this
        return set()
    cells = list(nb.cells) + list(learner_notebook(nb).cells)
    return {c.source.strip() for c in cells if c.cell_type == "code" and c.source.strip()}


def _nobody_can_read(paths: list[str]) -> bool:
    """Whether the user nobody can read ``paths`` (checked in a child that becomes nobody)."""
    ids = sandbox.nobody_ids()
    if ids is None or os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setresgid(ids[1], ids[1], ids[1])
            os.setresuid(ids[0], ids[0], ids[0])
            for p in paths:
                os.listdir(p) if os.path.isdir(p) else open(p, "rb").close()
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0


_NOBODY: dict[str, bool] = {}


def drop_to(toykit_dir: str) -> list[int] | None:
    """[uid, gid] the kernel drops to: nobody, when we are root and nobody can read the course."""
    ids = sandbox.nobody_ids() if os.geteuid() == 0 else None
    if ids is None:
        return None
    if toykit_dir not in _NOBODY:
        _NOBODY[toykit_dir] = _nobody_can_read([toykit_dir, os.path.join(toykit_dir, "__init__.py"),
                                                sys.executable, os.path.dirname(os.__file__)])
    return list(ids) if _NOBODY[toykit_dir] else None


def tree_memory(launcher: int) -> int:
    """Bytes of memory the launcher's process tree holds: proportional set sizes, plus memfd and
    shared-memory files held open (once each). A best effort, used where there is no cgroup."""
    total, files = 0, {}
    for pid in sandbox.descendants_of(launcher):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
            for fd in os.scandir(f"/proc/{pid}/fd"):
                target = os.readlink(fd.path)
                if target.startswith(("/memfd:", "/dev/shm/")):
                    st = os.stat(fd.path)
                    files[(st.st_dev, st.st_ino)] = st.st_size
        except (OSError, ValueError):
            continue
    return total + sum(files.values())


def disk_usage(folder: Path, max_entries: int = 100_000) -> int:
    """Bytes in the files under ``folder`` (a folder with more than ``max_entries`` counts as full)."""
    total, seen = 0, 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            seen += 1
            if seen > max_entries:
                return 1 << 62
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _waited(pid: int | None) -> float:
    """Seconds the main thread of ``pid`` has spent ready to run but waiting for a CPU (0 where
    Linux does not keep the count)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, ValueError, IndexError, TypeError):
        return 0.0


def _started(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        return int(stat[stat.rfind(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 1 << 62


class _Watchdog(threading.Thread):
    """Watches the running submission four times a second:

    - a learner's cell is interrupted after ``--cell-timeout`` seconds, not counting the time the
      kernel was ready to run but waited for a CPU: on a loaded machine every cell takes longer on
      the clock, and that time is not the learner's (Linux counts it per thread, in schedstat);
    - the kernel's tree is killed when the submission exceeds its memory or disk limit in a way
      the operating system does not stop by itself (no cgroup; no tmpfs working folder)."""

    def __init__(self, ctl: Path, work: Path, memory: int | None, check_memory: bool) -> None:
        super().__init__(daemon=True)
        self.ctl, self.work, self.memory, self.check_memory = ctl, work, memory, check_memory
        self.stopped, self.exceeded = threading.Event(), ""
        self.cell: dict | None = None  # {"index", "limit", "started", "waited", "interrupted"}
        self._kernel: int | None = None

    def kernel(self) -> int | None:
        """The kernel process: the first child of the namespace's init (orphans arrive later)."""
        if self._kernel is None:
            init = _pids(self.ctl).get("kernel")
            kids = sandbox.children_of(init) if init else []
            self._kernel = min(kids, key=_started) if kids else None
        return self._kernel

    def watch_cell(self, index: int, limit: float) -> None:
        self.cell = {"index": index, "limit": limit, "started": time.monotonic(), "waited": _waited(self.kernel()),
                     "interrupted": False}

    def charged(self) -> float:
        """Seconds the current cell has run, less the time it waited for a CPU."""
        cell = self.cell
        if cell is None:
            return 0.0
        return time.monotonic() - cell["started"] - (_waited(self.kernel()) - cell["waited"])

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            launcher = _pids(self.ctl).get("launcher")
            if not launcher:
                continue
            cell = self.cell
            if cell is not None and not cell["interrupted"] and self.charged() > cell["limit"]:
                cell["interrupted"] = True
                with open(self.ctl / "interrupted", "a", encoding="utf-8") as f:  # for the batch, if the cell goes on
                    f.write(f"{cell['index']}\n")
                try:  # the launcher passes it on to the kernel, as jupyter_client's interrupt does
                    os.kill(launcher, signal.SIGINT)
                except (ProcessLookupError, PermissionError):
                    pass
            if self.check_memory and self.memory and tree_memory(launcher) > self.memory:
                self.exceeded = f"its processes together held more than the memory limit ({self.memory >> 20} MB)"
            elif disk_usage(self.work) > DISK_BYTES_LIMIT:  # (under a tmpfs of its own, it sees the folder below)
                self.exceeded = f"it wrote more than {DISK_BYTES_LIMIT >> 20} MB of files"
            if self.exceeded:
                kill_kernel(self.ctl)
                return


# Modules the warm-up may import (never a name the learner chose: that would run their code
# outside a cell), when the notebook imports them itself.
WARM_MODULES = ("torch", "numpy", "matplotlib", "matplotlib.pyplot", "einops", "toykit")
_IMPORTS = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_][\w.]*)", re.M)


def warm_up_code(nb: nbformat.NotebookNode, exercises: list[dict]) -> str:
    """Code that imports, before the first cell and on the grader's time, the heavy modules the
    notebook imports (so a learner's first cell is not charged seconds of ``import torch``)."""
    imported = {m for c in nb.cells if c.cell_type == "code" for m in _IMPORTS.findall(c.source)}
    modules = [m for m in WARM_MODULES if m in imported or any(i.startswith(m + ".") for i in imported)]
    if any(m == "toykit" or m.startswith("toykit.") for m in imported):
        modules += sorted({"toykit.exercises." + e["module"] for e in exercises})
    if not modules:
        return ""
    return (f"import importlib as _i\nfor _m in {modules!r}:\n    try:\n        _i.import_module(_m)\n"
            "    except Exception:\n        pass\ndel _i, _m\n")


def _client_class():
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """nbclient, keeping at most OUTPUT_BYTES_PER_CELL of outputs per cell and OUTPUT_BYTES_TOTAL in
        all (errors always, shortened), and warming the kernel up before the first cell."""

        warm_up = ""
        warm_up_seconds = 120.0
        kept = 0
        dropped: dict[int, int] = {}

        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            if self.warm_up:  # imports paid by the grader, not by the learner's first cell
                msg_id = kc.execute(self.warm_up, silent=True, store_history=False)
                deadline = time.monotonic() + self.warm_up_seconds
                while time.monotonic() < deadline:
                    try:
                        # nbclient annotates kc as a KernelClient; ours is asynchronous (AsyncKernelManager)
                        reply = await kc.get_shell_msg(  # type: ignore[attr-defined]
                            timeout=max(0.1, deadline - time.monotonic()))
                    except Exception:  # queue.Empty: the limit passed; the cells then pay for the rest
                        break
                    if reply.get("parent_header", {}).get("msg_id") == msg_id:
                        break
            return kc

        def output(self, outs, msg, display_id, cell_index):
            size = len(json.dumps(msg.get("content", {}), default=str))
            in_cell = sum(len(json.dumps(o, default=str)) for o in outs)
            if msg["msg_type"] == "error":
                content = msg["content"]
                content["evalue"] = str(content.get("evalue", ""))[:2000]
                content["traceback"] = [str(t)[:2000] for t in content.get("traceback", [])[-20:]]
            elif in_cell + size > OUTPUT_BYTES_PER_CELL or self.kept + size > OUTPUT_BYTES_TOTAL:
                self.dropped[cell_index] = self.dropped.get(cell_index, 0) + size
                return None
            self.kept += size
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


def _pids(ctl: Path) -> dict:
    try:
        data = json.loads((ctl / "kernel.pid").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def run(job: dict) -> dict:
    """Grade the submission described by ``job``; returns (and writes) the outcome.

    A learner cell that ran past its limit while the machine was overloaded (it got less than
    STARVED_CPU_SHARE of a CPU) does not count: the notebook is run once more. If it is starved
    again, the status is ``overloaded``, and the row is graded again on the next run.
    """
    outcome = run_started(job)
    starved = outcome.pop("starved", None)
    if starved is None:
        return outcome
    (Path(job["scratch"]) / "ctl" / "rerun").write_text(json.dumps(starved), encoding="utf-8")  # for the batch
    again = run_started(job)
    starved_again = again.pop("starved", None)
    if starved_again is not None:
        again.update(status="overloaded", detail=(
            f"cell {starved_again['cell'] + 1} ran past the time limit twice while the machine was overloaded "
            f"(it waited {starved_again['waited']:.1f} s of its {starved_again['wall']:.1f} s for a CPU; load "
            f"{starved_again['load']:.1f}): it will be graded again on the next run"))
    again["reruns"] = 1
    _write_json(Path(job["scratch"]) / "ctl" / "outcome.json", again)
    return again


def run_started(job: dict) -> dict:
    """run_once, in a fresh kernel again (up to PORT_TRIES runs) when the kernel could not bind
    its ports. Jupyter picks free ports before the kernel starts, and another process (another
    submission's kernel, say) can take one in between. No learner code has run by then."""
    for _ in range(PORT_TRIES):
        outcome = run_once(job)
        if not (outcome["status"] == "grader_error" and "Address already in use" in outcome["detail"]):
            break
    return outcome


def run_once(job: dict) -> dict:
    """One run of the submission, in a fresh kernel."""
    import zmq.asyncio
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
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

    for old in ("kernel.pid", "interrupted", "progress", "first_cell"):  # from a first run
        (ctl / old).unlink(missing_ok=True)
    if work.exists():
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    work_dirs = [work / ".tmp", work / ".matplotlib", work / ".ipython", work / ".jupyter"]
    for folder in (work, *work_dirs, ctl, ctl / "runtime", ctl / "kernels" / KERNEL_NAME):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    (work / Path(job["submission"]).name).write_text(nbformat.writes(nb), encoding="utf-8")
    results = ctl / f"results-{job['nonce']}.jsonl"
    applied = ctl / "applied.json"
    for f in (results, applied):
        f.unlink(missing_ok=True)
        f.touch(mode=0o600)

    learner_cells = len(nb.cells)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    exercises = [{"id": e.id, "name": e.name, "module": e.module, "check": e.check} for e in spec.exercises]
    nb.cells.append(nbformat.v4.new_code_cell(grading_cell(job["nonce"], str(results), exercises, job["cell_timeout"])))
    outcome["cells"] = learner_cells
    (ctl / "cells").write_text(str(learner_cells), encoding="utf-8")

    memory = int(job["memory_mb"] * 2**20) if job.get("memory_mb") else None
    ids = drop_to(job["toykit_dir"])
    group = sandbox.Cgroup.create(f"toykit-{job['nonce'][:16]}", memory, PROCESS_LIMIT) if os.geteuid() == 0 else None
    if ids:  # nobody must reach (never list) the folders on the way to its own files
        for folder in (root.parent, root, ctl, ctl / "runtime"):
            os.chmod(folder, 0o711)
    config = {"pid_file": str(ctl / "kernel.pid"), "applied_file": str(applied), "parent_pid": os.getpid(),
              "memory_bytes": memory, "file_bytes": FILE_BYTES_LIMIT, "disk_bytes": DISK_BYTES_LIMIT,
              "nproc": PROCESS_LIMIT, "landlock": bool(job.get("landlock", True)), "drop_to": ids,
              "namespaces": True,  # also with --no-sandbox: no process may outlive its grading
              "cgroup_procs": group.procs_files if group else [], "work": str(work),
              "work_dirs": [str(d) for d in work_dirs], "toykit_dir": job["toykit_dir"],
              "protect_pids": [os.getpid(), os.getppid()],
              "own": [str(ctl / "runtime"), str(ctl / "runtime" / "connection.json")],
              "read": read_paths(job["toykit_dir"]) + [str(ctl / "runtime")], "write": [str(work)],
              "write_files": [str(results), str(applied), "/dev/null"]}
    _write_json(ctl / "sandbox.json", config)
    _write_json(ctl / "kernels" / KERNEL_NAME / "kernel.json", {
        # run as a plain script, so the kernel starts with nothing of toykit imported
        "argv": [sys.executable, str(Path(__file__).with_name("sandbox.py")), str(ctl / "sandbox.json"),
                 "-f", "{connection_file}"],
        "display_name": "toykit grader", "language": "python"})

    os.environ["JUPYTER_RUNTIME_DIR"] = str(ctl / "runtime")  # where the connection file goes
    context = zmq.asyncio.Context()
    context.setsockopt(zmq.MAXMSGSIZE, MESSAGE_BYTES_LIMIT)  # every socket of our client: no huge message,
    context.setsockopt(zmq.RCVHWM, MESSAGE_QUEUE)  # few queued: a printing loop's surplus is dropped by its PUB
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, context=context,
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(ctl / "kernels")]))
    km.connection_file = str(ctl / "runtime" / "connection.json")
    make_client = km.client
    # the client's sockets get those options (replacing the bound method is the simplest hook there is)
    km.client = lambda **kw: make_client(context=context, **kw)  # type: ignore[method-assign]
    current = {"cell": -1, "started": 0.0}
    watchdog = _Watchdog(ctl, work, memory, check_memory=group is None)
    outcome["timed_out_cells"] = []
    ours = course_sources(spec.solution)
    notebook_seconds = float(job.get("timeout", 600))
    oom_seen = [0]

    def on_cell_start(cell, cell_index, **_):
        if current["cell"] < 0:  # the batch counts --timeout from here: starting the kernel is ours
            (ctl / "first_cell").write_text(str(time.time()), encoding="utf-8")
        current["cell"], current["started"] = cell_index, time.monotonic()
        (ctl / "progress").write_text(str(cell_index), encoding="utf-8")
        if cell_index < learner_cells and cell.source.strip() not in ours:
            watchdog.watch_cell(cell_index, job["cell_timeout"])

    def on_cell_executed(cell, cell_index, **_):
        if group is not None and group.oom_kills() > oom_seen[0]:  # a process of this cell was OOM-killed
            oom_seen[0] = group.oom_kills()
            outcome["cell_errors"].append({"cell": cell_index, "ename": "MemoryError", "evalue": (
                f"a process was killed: the submission's processes together ran out of memory "
                f"(limit {job['memory_mb']} MB)")})
        # the watchdog interrupts a cell that used up its time (less waits for a CPU), and nbclient one
        # that ran past its limit on the clock; both go on with the next cell: note which cells they were
        watchdog_charged = watchdog.charged()
        watched, watchdog.cell = watchdog.cell, None
        wall = time.monotonic() - current["started"]
        on_cpu = bool(watched and watched["index"] == cell_index and watched["interrupted"])
        on_wall = cell_index < learner_cells and wall >= timeout_for(cell) - 0.05
        if on_cpu or on_wall:
            outcome["timed_out_cells"].append(cell_index)
        if on_wall and not on_cpu:
            with open(ctl / "interrupted", "a", encoding="utf-8") as f:  # for the batch, if it must kill us
                f.write(f"{cell_index}\n")
        if on_wall and not on_cpu and watched:  # stopped by the clock, not by its own time
            waited = wall - watchdog_charged
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
            if waited > STARVED_SHARE * wall and "starved" not in outcome:
                outcome["starved"] = {"cell": cell_index, "waited": waited, "wall": wall, "load": load}

    def timeout_for(cell) -> int:
        if cell is nb.cells[-1]:  # the grader's cell checks every exercise, each within the limit
            return int(max(job["cell_timeout"] * (len(exercises) + 1) + 30, notebook_seconds))
        if cell.source.strip() in ours:  # the course's own cell (imports, training): not the learner's budget
            return int(notebook_seconds)
        # the watchdog applies --cell-timeout; this looser limit on the clock holds however loaded the machine
        return max(1, int(job["cell_timeout"] * WALL_FACTOR + 0.999))

    client = _client_class()(
        nb, km=km, timeout_func=timeout_for, interrupt_on_timeout=True, allow_errors=True,
        error_on_timeout={"ename": "CellTimeoutError",
                          "evalue": f"the cell ran longer than {job['cell_timeout'] * WALL_FACTOR:g} s (on the clock) "
                                    "and was interrupted",
                          "traceback": []},
        startup_timeout=120, shutdown_kernel="immediate", record_timing=False,
        skip_cells_with_tag=f"toykit-never-{job['nonce']}",  # the learner cannot skip the check cell
        resources={"metadata": {"path": str(work)}}, on_cell_start=on_cell_start,
        on_cell_executed=on_cell_executed)
    client.dropped = {}
    client.warm_up = warm_up_code(nb, exercises)
    client.owns_km = True  # so nbclient shuts the kernel down and closes its channels: workers are reused
    watchdog.start()
    _CURRENT["ctl"] = ctl
    kernel_log = open(ctl / "kernel.log", "wb")  # noqa: SIM115 (closed below, after the kernel)
    try:
        # the kernel's own output must not reach the pipe to the batch grader
        client.execute(env=kernel_env(work, int(job.get("threads", 1))), stdout=subprocess.DEVNULL,
                       stderr=kernel_log)
    except DeadKernelError:
        outcome.update(status="kernel_died", died_in_cell=current["cell"])
        if group is not None and group.oom_kills() > oom_seen[0]:
            outcome.update(status="out_of_memory", detail=(
                f"the kernel was killed in cell {current['cell'] + 1}: the submission's processes together "
                f"ran out of memory (limit {job['memory_mb']} MB); later cells did not run"))
    except Exception as err:  # the kernel did not start, or nbclient failed: say so, don't crash
        kernel_log.flush()
        said = _tail(ctl / "kernel.log")
        outcome.update(status="grader_error", detail=f"{type(err).__name__}: {err}"[:1000] + (
            f" (the kernel said: {said})" if said else ""))
    finally:
        kernel_log.close()
        watchdog.stopped.set()
        kill_kernel(ctl)
        if group is not None:
            group.remove()
        sandbox.kill_children()  # orphans that came back to us, as their subreaper
        _CURRENT.pop("ctl", None)
        context.destroy(linger=0)
    if watchdog.exceeded:
        status = "out_of_memory" if "memory" in watchdog.exceeded else "disk_limit"
        outcome.update(status=status, died_in_cell=current["cell"], detail=(
            f"the kernel was stopped in cell {current['cell'] + 1}: {watchdog.exceeded}; later cells did not run"))
    outcome["outputs_kept_bytes"] = client.kept
    if client.dropped:
        outcome["outputs_dropped"] = {str(k): v for k, v in client.dropped.items()}

    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                outcome["cell_errors"].append({"cell": i, "ename": out.get("ename", ""),
                                               "evalue": str(out.get("evalue", ""))[:1000]})
    outcome["cell_errors"].sort(key=lambda e: e["cell"])
    try:
        outcome["sandbox"] = json.loads(applied.read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError):
        outcome["sandbox"] = {}
    if group is not None:
        outcome["sandbox"]["cgroup_memory_bytes"] = memory
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
    # never outlive a killed worker: a death signal, and a thread that checks (see exit_with_parent)
    boot = ("import sys; sys.path.insert(0, sys.argv[1]); from toykit.grading import sandbox; "
            "sandbox.exit_with_parent(int(sys.argv[2])); from toykit.grading.verdict import main; "
            "sys.exit(main(sys.argv[3:]))")
    die_with_worker = partial(sandbox.die_with_parent, parent=os.getpid())
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", boot, os.path.dirname(job["toykit_dir"]),
                               str(os.getpid()), str(ctl / "verdict-job.json")],
                              cwd=ctl, env=env, stdin=subprocess.DEVNULL, preexec_fn=die_with_worker,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=(len(exercises) + 1) * max(60, 4 * job["cell_timeout"]) + 120)
    except subprocess.TimeoutExpired:
        return "the grader's verdict process ran past its time limit"
    if proc.returncode != 0 or not (ctl / "verdict.json").exists():
        tail = proc.stderr.decode("utf-8", "replace").strip()[-1500:]
        return f"the grader's verdict process failed (exit code {proc.returncode}): {tail}"
    return None


_CURRENT: dict[str, Path] = {}  # the job being graded, for the signal handler


def _tail(path: Path, n: int = 800) -> str:
    """The end of a log, without the lines every kernel prints."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line for line in lines if "running over TCP without encryption" not in line).strip()[-n:]


def kill_kernel(ctl: Path) -> None:
    """Kill everything the submission started: its cgroup's members, the kernel (PID 1 of its own
    namespace, whose death takes every process there with it) and every process below the launcher."""
    try:
        config = json.loads((ctl / "sandbox.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    procs = config.get("cgroup_procs") or []
    if procs:  # (the worker removes its cgroup itself; this is for a worker that was killed)
        sandbox.Cgroup({str(i): Path(p).parent for i, p in enumerate(procs)}, 0).kill()
    pids = _pids(ctl)
    launcher, kernel = pids.get("launcher"), pids.get("kernel")
    if launcher and not _same_process(launcher, pids):
        launcher = kernel = None  # it exited, and its pid may belong to someone else now
    for _ in range(100):
        tree = ([kernel] if kernel else []) + (sandbox.descendants_of(launcher) if launcher else [])
        if not tree:
            break
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        kernel = None
        time.sleep(0.01)
    if launcher:
        try:
            os.kill(launcher, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if procs and not _CURRENT:  # the batch, cleaning up after a worker it killed: remove the cgroup too
        sandbox.Cgroup({str(i): Path(p).parent for i, p in enumerate(procs)}, 0).remove()


def _same_process(pid: int, pids: dict) -> bool:
    """Whether ``pid`` is still the launcher that wrote the pid file (not a reused pid)."""
    try:
        started = os.stat(f"/proc/{pid}").st_mtime
    except OSError:
        return False
    return "time" not in pids or started <= pids["time"] + 5


def _kill_everything() -> None:
    """Kill the running kernel's tree and every child of ours (a verdict process included)."""
    if "ctl" in _CURRENT:
        kill_kernel(_CURRENT["ctl"])
    sandbox.kill_children()


def _on_signal(signum, _frame) -> None:
    """The batch grader is gone or asks us to stop: take the kernel's tree with us."""
    _kill_everything()
    os._exit(128 + signum)


def main(argv: list[str]) -> int:
    """Serve jobs: one JSON line in on stdin, one line ``done`` out on stdout when graded.

    The process lives for many submissions, so Jupyter's imports (a second or more) are paid
    once per worker, not once per submission. Jobs come through a pipe, not a file, so the
    nonce is never on disk where a kernel could look for it.

    argv: [the batch grader's pid]. The worker stops (and kills its kernel's tree) when the
    grader dies or sends SIGTERM; it is the subreaper of every process its kernels leave.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    sandbox.die_with_parent(signal.SIGTERM)
    if argv and os.getppid() != int(argv[0]):
        return 1  # the grader died before we could ask to die with it
    if argv:  # in case the death signal's handler waits on a blocked main thread
        sandbox.exit_with_parent(int(argv[0]), on_exit=_kill_everything)
    sandbox.become_subreaper()
    sandbox.set_inspectable(False)  # our environment is the grader's: keep it from kernels
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
