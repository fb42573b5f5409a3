"""`toykit grade` under attack: the process confinement of each submission (issue 15).

Each attack is a submission written here: chapter 00's solution with one hostile cell added.
What an attack achieved is seen from outside the kernel (processes still alive, the row's
status) or reported by the attack itself, which raises when it got anything (the row then shows
its error). The kernel runs in its own PID namespace only where Linux allows it; the tests that
need a guarantee skip, saying why, where the machine does not give it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from toykit.grading import grade, sandbox
from toykit.grading.batch import check_limits
from toykit.grading.cli import add_grade_parser
from toykit.grading.worker import OUTPUT_BYTES_TOTAL

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_how_this_course_works.ipynb"
TOKEN = f"toykit-attack-{secrets.token_hex(6)}"  # in the command line of every process an attack leaves
SECRET = f"toykit-secret-{secrets.token_hex(8)}"  # in the grader's environment
LINUX = sys.platform.startswith("linux")
ROOT_USER = LINUX and os.geteuid() == 0
pytestmark = [
    pytest.mark.slow,  # grades notebooks in Jupyter kernels inside the sandbox
    pytest.mark.skipif(not LINUX, reason="the grader's confinement is Linux's"),
]


def solution() -> nbformat.NotebookNode:
    return nbformat.read(SOLUTION, as_version=4)


def with_cell(source: str) -> nbformat.NotebookNode:
    """The solution with ``source`` as a cell right after the checker import."""
    nb = solution()
    i = next(i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and "from toykit.exercises import ch00" in c.source)
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(textwrap.dedent(source)))
    return nb


def leftovers() -> list[str]:
    """Command lines of live processes that an attack started (they carry TOKEN)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if TOKEN in cmd and state != "Z" and entry.name != str(os.getpid()):
                found.append(f"{entry.name}: {cmd}")
    return found


def sleeper(tag: str) -> str:
    """Source of the argv of a process that ignores SIGTERM and SIGHUP and sleeps, marked with TOKEN."""
    code = f"import signal, time\\nfor s in (1, 15): signal.signal(s, signal.SIG_IGN)\\ntime.sleep(900)  # {TOKEN}-{tag}"  # noqa: E501
    return f'[sys.executable, "-c", "{code}"]'


ATTACKS = {
    # item 3: processes that leave the kernel's process group or session
    "new_session": f"""
        import subprocess, sys
        child = subprocess.Popen({sleeper("session")}, start_new_session=True)
        """,
    "double_fork": f"""
        import os, sys
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, {sleeper("daemon")})
            os._exit(0)
        """,
    "setpgrp": f"""
        import os, subprocess, sys
        child = subprocess.Popen({sleeper("pgrp")}, preexec_fn=os.setpgrp)
        """,
    # item 4: memory held by several processes, or by no process at all
    "memory_children": """
        import os, time
        kids = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                block = bytearray(b"\\1") * 2**30  # 1 GB, every page written
                time.sleep(8)
                os._exit(0)
            kids.append(pid)
        codes = [os.waitpid(pid, 0)[1] for pid in kids]
        if any(codes):
            raise MemoryError(f"children stopped: {codes}")
        """,
    "memory_memfd": """
        import os
        fds = []
        for i in range(3):
            fd = os.memfd_create(f"block{i}")
            for _ in range(1000):  # ~1 GB each, written so that the pages exist
                os.write(fd, b"\\1" * 2**20)
            fds.append(fd)
        """,
    "disk_fill": """
        for i in range(3):
            with open(f"big{i}.bin", "wb") as f:
                for _ in range(600):  # 600 MB each, under the 1 GiB limit per file; 1.8 GB in all
                    f.write(b"\\1" * 2**20)
        """,
    # item 5: secrets, other processes, sockets, privileges
    "secrets": f"""
        import os, re, socket
        leaks = []
        def tried(what, fn):
            try:
                fn()
                leaks.append(what)
            except Exception:
                pass
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if {SECRET!r}.encode() in open(f"/proc/{{entry}}/environ", "rb").read():
                        leaks.append(f"the environment of process {{entry}}")
                except Exception:
                    pass
        if {SECRET!r} in repr(dict(os.environ)):
            leaks.append("its own environment")
        if os.path.exists("/proc/{os.getpid()}/environ"):
            leaks.append("the grader's process is visible")
        tried("signal the grader", lambda: os.kill({os.getpid()}, 0))
        tried("signal every process", lambda: os.kill(-1, 0))
        def listen():
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen()
        tried("TCP listen", listen)
        tried("UDP socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        tried("IPv6 socket", lambda: socket.socket(socket.AF_INET6))
        tried("unix path socket", lambda: socket.socket(socket.AF_UNIX).bind("sock"))
        tried("raw socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))
        tried("packet socket", lambda: socket.socket(17, socket.SOCK_RAW))
        tried("netlink socket", lambda: socket.socket(16, socket.SOCK_RAW))
        caps = int(re.search(r"CapEff:\\s*(\\w+)", open("/proc/self/status").read())[1], 16)
        if caps:
            leaks.append(f"capabilities {{caps:x}}")
        tried("write outside its folder", lambda: open("/var/tmp/{TOKEN}.txt", "w").write("x"))
        assert not leaks, "got: " + ", ".join(leaks)
        """,
}
MEMORY_MB = 3000


def write(folder: Path, name: str, nb: nbformat.NotebookNode) -> Path:
    path = folder / f"{name}.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    subs = tmp_path_factory.mktemp("attacks")
    paths = [write(subs, name, with_cell(source)) for name, source in ATTACKS.items()]
    os.environ["TOYKIT_TEST_SECRET"] = SECRET
    try:
        rows = grade("00", paths, tmp_path_factory.mktemp("grades"), jobs=2, timeout=180, cell_timeout=30,
                     memory_mb=MEMORY_MB, root=ROOT, log=None)
    finally:
        os.environ.pop("TOYKIT_TEST_SECRET", None)
    time.sleep(0.5)
    return {"rows": rows, "left": leftovers()}


def confinement(row: dict) -> dict:
    return row.get("sandbox") or {}


# ---------------------------------------------------------------- item 3: nothing outlives grading


def test_no_process_of_a_submission_outlives_its_grading(attacked):
    assert attacked["left"] == []
    for name in ("new_session", "double_fork", "setpgrp"):
        row = attacked["rows"][f"{name}.ipynb"]
        assert (row["status"], row["total"]) == ("ok", 4), (name, row["detail"], row["cell_errors"])


def grader_script(subs: list[Path], out: Path, sandbox_on: bool = True) -> str:
    return (f"from pathlib import Path\nfrom toykit.grading import grade\n"
            f"grade('00', {[str(p) for p in subs]!r}, {str(out)!r}, timeout=300, cell_timeout=200, "
            f"root=Path({str(ROOT)!r}), sandbox={sandbox_on}, log=print)\n")


def processes_under(folder: Path) -> list[str]:
    """Live processes whose command line names ``folder`` (the grader's workers and kernels)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmd and "toykit" in cmd:
                found.append(f"{entry.name}: {cmd}")
    return found


@pytest.mark.parametrize("sandbox_on", [True, False], ids=["sandbox", "no-sandbox"])
def test_sigterm_to_the_grader_stops_workers_kernels_and_their_children(tmp_path, sandbox_on):
    tag = f"sigterm-{sandbox_on}"
    nb = with_cell(f"""
        import subprocess, sys, time
        child = subprocess.Popen({sleeper(tag)}, start_new_session=True)
        time.sleep(150)
        """)
    sub = write(tmp_path, "waits", nb)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    grader = subprocess.Popen([sys.executable, "-c", grader_script([sub], tmp_path / "out", sandbox_on)],
                              cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400  # a loaded machine starts kernels slowly
        while not any(f"{TOKEN}-{tag}" in p for p in leftovers()) and time.monotonic() < deadline:
            time.sleep(0.2)  # until the attack's child runs
        assert any(f"{TOKEN}-{tag}" in p for p in leftovers()), "the submission never started its child"
        assert processes_under(scratch), "no worker or kernel seen"
        grader.send_signal(signal.SIGTERM)
        grader.wait(timeout=60)
    finally:
        if grader.poll() is None:
            grader.kill()
    time.sleep(1)
    assert [p for p in leftovers() if f"{TOKEN}-{tag}" in p] == []
    left = processes_under(scratch)
    assert left == [], (left, [process_state(p.split(":")[0]) for p in left], worker_logs(scratch))


def process_state(pid: str) -> str:
    """A process's state, parent and signal masks, for a failure message."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return f"{pid}: gone"
    keys = ("State", "PPid", "SigBlk", "SigIgn", "SigCgt")
    return f"{pid}: " + "; ".join(line for line in lines if line.split(":")[0] in keys)


def worker_logs(scratch: Path) -> str:
    """The end of every grading worker's log under ``scratch``, for a failure message."""
    return "\n".join(f"{log.name}: {log.read_text(errors='replace')[-2000:]}"
                     for log in sorted(scratch.glob("toykit-grade-*/worker-*.log")))


def test_a_grader_killed_outright_takes_its_workers_with_it(tmp_path):
    tag = "sigkill"
    sub = write(tmp_path, "waits", with_cell(f"""
        import subprocess, sys, time
        child = subprocess.Popen({sleeper(tag)}, start_new_session=True)
        time.sleep(150)
        """))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    grader = subprocess.Popen([sys.executable, "-c", grader_script([sub], tmp_path / "out")], cwd=ROOT,
                              env={**os.environ, "TMPDIR": str(scratch)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 400  # a loaded machine starts kernels slowly
    while not any(f"{TOKEN}-{tag}" in p for p in leftovers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    started = any(f"{TOKEN}-{tag}" in p for p in leftovers())
    grader.kill()  # SIGKILL: no handler runs; the workers die with it (PR_SET_PDEATHSIG)
    grader.wait()
    assert started, "the submission never started its child"
    deadline = time.monotonic() + 60  # a loaded machine reaps slowly
    while (leftovers() or processes_under(scratch)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in leftovers() if f"{TOKEN}-{tag}" in p] == []
    assert processes_under(scratch) == []


# ---------------------------------------------------------------- item 4: limits for the whole submission


def test_memory_of_several_processes_counts_together(attacked):
    row = attacked["rows"]["memory_children.ipynb"]
    errors = [e["ename"] for e in row["cell_errors"] if e["cell"] == 3]  # the attack's cell
    # near the limit, the kernel's own pages are reclaimed and the cell may also run out of time
    assert row["status"] in ("out_of_memory", "timeout") and "MemoryError" in errors, (
        row["detail"], row["cell_errors"])


def test_memory_held_in_memfds_counts(attacked):
    row = attacked["rows"]["memory_memfd.ipynb"]
    assert row["status"] == "out_of_memory", (row["detail"], row["cell_errors"])


def test_files_written_have_a_total_limit(attacked):
    row = attacked["rows"]["disk_fill.ipynb"]
    errors = " ".join(e["evalue"] for e in row["cell_errors"])
    assert row["status"] == "disk_limit" or (row["status"] == "errors" and "No space left" in errors), (
        row["status"], row["detail"], errors)


def run_worker(tmp_path: Path, nb: nbformat.NotebookNode, **job) -> tuple[dict, int]:
    """Grade ``nb`` in a worker process of its own; returns (outcome, the worker's peak memory in MB)."""
    from toykit.grading.spec import chapter_spec

    spec = chapter_spec("00", ROOT)
    sub = write(tmp_path, "submission", nb)
    scratch = tmp_path / "scratch" / "0000"
    scratch.mkdir(parents=True, mode=0o700)
    toykit_dir = str(ROOT / "toykit")
    job = {"scratch": str(scratch), "chapter": spec.stem, "solution": str(spec.solution),
           "exercises": [{"id": e.id, "name": e.name, "module": e.module, "check": e.check, "points": e.points}
                         for e in spec.exercises],
           "submission": str(sub), "nonce": secrets.token_hex(16), "toykit_dir": toykit_dir,
           "cell_timeout": 60.0, "timeout": 300, "memory_mb": 3000, "landlock": True, "threads": 1, **job}
    # The peak is VmHWM, this process's own high-water mark. ru_maxrss would not do: Linux carries it
    # over an exec from the forking process, so under a long pytest run it reports pytest's size.
    code = ("import json, sys, types; toykit = types.ModuleType('toykit'); toykit.__path__ = [sys.argv[1]]; "
            "sys.modules['toykit'] = toykit; from toykit.grading.worker import run; run(json.loads(sys.argv[2])); "
            "print(next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')) "
            "// 1024)")
    done = subprocess.run([sys.executable, "-c", code, toykit_dir, json.dumps(job)], capture_output=True, text=True,
                          timeout=400, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads((scratch / "ctl" / "outcome.json").read_text(encoding="utf-8"))
    return outcome, int(done.stdout.split()[-1])


def test_a_printing_loop_does_not_fill_the_graders_memory(tmp_path):
    nb = with_cell("""
        line = "x" * (2**20 - 1)
        for _ in range(600):  # 600 MB of output
            print(line)
        """)
    outcome, peak_mb = run_worker(tmp_path, nb)
    print(f"worker peak {peak_mb} MB, outputs kept {outcome['outputs_kept_bytes']} bytes")
    assert outcome["status"] == "ok", outcome
    # dropped by the cap, or (batched into messages over 4 MB) by ZeroMQ before the grader reads them
    assert outcome["outputs_kept_bytes"] <= OUTPUT_BYTES_TOTAL
    assert peak_mb < 400, f"the worker peaked at {peak_mb} MB"


# ---------------------------------------------------------------- item 5: nothing secret, no sockets


def test_the_kernel_sees_no_secret_no_grader_and_makes_no_socket(attacked):
    row = attacked["rows"]["secrets.ipynb"]
    assert (row["status"], row["total"]) == ("ok", 4), (row["detail"], row["cell_errors"])
    applied = confinement(row)
    assert applied["seccomp"] is True and applied["capabilities"] == 0, applied
    assert "pid" in applied["namespaces"], applied


def test_an_unprivileged_user_gets_its_own_pid_namespace_and_proc():
    if not ROOT_USER:
        pytest.skip("needs root to become another user for the check")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # an ordinary user, as an instructor's own account would be
        report = {}
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            sandbox.set_inspectable(True)
            report["namespaces"] = sandbox._new_namespaces()
            kernel = os.fork()
            if kernel == 0:
                report.update(pid=os.getpid(), mount_ns=sandbox._unshare(0x00020000),
                              proc=sandbox._mount("proc", "/proc", "proc", 0))
                report["processes"] = len([e for e in os.listdir("/proc") if e.isdigit()])
                report["seccomp"] = sandbox.install_seccomp([])
                os.write(w, json.dumps(report).encode())
                os._exit(0)
            os.waitpid(kernel, 0)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    text = os.read(r, 10000).decode()
    if not text:
        pytest.skip("this kernel does not let an ordinary user make a user namespace (see book/grading.md)")
    report = json.loads(text)
    assert report == {"namespaces": "user+pid+mount", "pid": 1, "mount_ns": True, "proc": True, "processes": 1,
                      "seccomp": True}


def test_the_seccomp_filter_refuses_sockets_and_signals_to_the_grader():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        import socket

        got = {"installed": sandbox.install_seccomp([os.getppid()])}
        for what, fn in [("tcp", socket.socket), ("unix", lambda: socket.socket(socket.AF_UNIX)),
                         ("kill grader", lambda: os.kill(os.getppid(), 0)), ("kill all", lambda: os.kill(-1, 0)),
                         ("kill self", lambda: os.kill(os.getpid(), 0)), ("socketpair", socket.socketpair)]:
            try:
                fn()
                got[what] = "allowed"
            except PermissionError:
                got[what] = "refused"
        os.write(w, json.dumps(got).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    got = json.loads(os.read(r, 10000))
    if not got.pop("installed"):
        pytest.skip("no seccomp filter on this architecture")
    assert got == {"tcp": "refused", "unix": "refused", "kill grader": "refused", "kill all": "refused",
                   "kill self": "allowed", "socketpair": "allowed"}


# ---------------------------------------------------------------- item 2: time limits that load cannot fail


def test_an_honest_notebook_gets_full_marks_with_the_smallest_cell_limit(tmp_path):
    # its import and training cells take longer than 1 s on a loaded machine: they are the
    # course's cells, and the imports are warmed up by the grader, so only the learner's own
    # cells are held to --cell-timeout
    row = grade("00", [SOLUTION], tmp_path, timeout=300, cell_timeout=1, root=ROOT, log=None)[SOLUTION.name]
    assert (row["status"], row["total"]) == ("ok", 4), (row["detail"], row["cell_errors"])


def test_a_starved_timeout_is_run_again_then_marked_for_regrading(monkeypatch, tmp_path):
    from toykit.grading import worker

    (tmp_path / "ctl").mkdir()
    starved = {"cell": 3, "waited": 8.0, "wall": 10.0, "load": 9.0}
    runs = []

    def run_once(job):
        runs.append(1)
        return {"status": "ok", "cells": 5, "cell_errors": [], "detail": "", "starved": dict(starved)}

    monkeypatch.setattr(worker, "run_once", run_once)
    outcome = worker.run({"scratch": str(tmp_path)})
    assert len(runs) == 2 and outcome["status"] == "overloaded" and "cell 4" in outcome["detail"]
    assert json.loads((tmp_path / "ctl" / "rerun").read_text())["cell"] == 3

    answers = iter([{"status": "ok", "cells": 5, "cell_errors": [], "starved": starved},
                    {"status": "ok", "cells": 5, "cell_errors": [], "detail": ""}])
    monkeypatch.setattr(worker, "run_once", lambda job: next(answers))
    assert worker.run({"scratch": str(tmp_path)})["status"] == "ok"


def test_a_kernel_that_finds_its_port_taken_is_started_again(monkeypatch, tmp_path):
    from toykit.grading import worker

    taken = {"status": "grader_error", "cells": 0, "cell_errors": [], "detail": (
        "RuntimeError: Kernel died before replying to kernel_info (the kernel said: toykit sandbox: "
        "ZMQError: Address already in use (addr='tcp://127.0.0.1:43111'))")}
    answers = iter([dict(taken), {"status": "ok", "cells": 5, "cell_errors": [], "detail": ""}])
    monkeypatch.setattr(worker, "run_once", lambda job: next(answers))
    assert worker.run({"scratch": str(tmp_path)})["status"] == "ok"

    runs = []
    monkeypatch.setattr(worker, "run_once", lambda job: runs.append(1) or dict(taken))
    assert worker.run({"scratch": str(tmp_path)})["status"] == "grader_error"  # not forever
    assert len(runs) == worker.PORT_TRIES

    other = {"status": "grader_error", "cells": 0, "cell_errors": [], "detail": "RuntimeError: no kernel"}
    runs.clear()
    monkeypatch.setattr(worker, "run_once", lambda job: runs.append(1) or dict(other))
    assert worker.run({"scratch": str(tmp_path)})["status"] == "grader_error" and len(runs) == 1


@pytest.mark.parametrize("options, message", [
    (["--cell-timeout", "0.5"], "--cell-timeout"),
    (["--cell-timeout", "nan"], "--cell-timeout"),
    (["--cell-timeout", "700"], "must not exceed --timeout"),
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "inf"], "--timeout"),
    (["--jobs", "0"], "--jobs"),
    (["--memory", "-1"], "--memory"),
    (["--memory", "100"], "--memory"),
    (["--root", "/nonexistent/course"], "--root"),
])
def test_every_option_is_checked_with_a_message_naming_it(tmp_path, capsys, options, message):
    import argparse

    p = argparse.ArgumentParser(prog="toykit")
    add_grade_parser(p.add_subparsers(dest="command", required=True))
    argv = ["grade", "00", str(SOLUTION), "--out", str(tmp_path / "out"), *options]
    with pytest.raises(SystemExit) as exit_:
        args = p.parse_args(argv)
        sys.exit(args.func(args))
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_the_out_option_must_be_a_folder(tmp_path, capsys):
    import argparse

    (tmp_path / "file").write_text("x")
    p = argparse.ArgumentParser(prog="toykit")
    add_grade_parser(p.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        p.parse_args(["grade", "00", str(SOLUTION), "--out", str(tmp_path / "file")])
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, name", [
    ({"jobs": 0}, "jobs"), ({"jobs": 1.5}, "jobs"), ({"timeout": -1}, "timeout"),
    ({"cell_timeout": 0.5}, "cell_timeout"), ({"cell_timeout": float("nan")}, "cell_timeout"),
    ({"memory_mb": 10}, "memory_mb"), ({"memory_mb": True}, "memory_mb"),
])
def test_grade_checks_its_limits_too(kwargs, name):
    limits = {"jobs": 1, "timeout": 60, "cell_timeout": None, "memory_mb": 4096, **kwargs}
    with pytest.raises(ValueError, match=name):
        check_limits(**limits)


# ---------------------------------------------------------------- item 10: the grader's own toykit


def test_the_kernel_imports_the_graders_toykit_not_the_installed_one(tmp_path):
    import shutil

    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "toykit", checkout / "toykit", ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "toykit" / "only_in_this_checkout.py").write_text("MARK = 1\n", encoding="utf-8")
    nb = solution()
    i = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "def batched_dot(" in c.source)
    nb.cells[i].source = nb.cells[i].source.replace(
        "def batched_dot(", "import toykit.only_in_this_checkout  # fails in any other toykit\n\n\ndef batched_dot(", 1)
    sub = write(tmp_path, "marked", nb)
    out = tmp_path / "out"
    code = (f"import json\nfrom pathlib import Path\nimport toykit\n"
            f"assert toykit.__file__.startswith({str(checkout)!r})\n"
            f"from toykit.grading import grade\nrows = grade('00', [{str(sub)!r}], {str(out)!r}, timeout=300, "
            f"root=Path({str(ROOT)!r}), log=None)\nprint(json.dumps(rows['marked.ipynb']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.splitlines()[-1])
    assert (row["status"], row["total"]) == ("ok", 4), (row["detail"], row["cell_errors"])


def test_the_warm_up_imports_only_known_heavy_modules_the_notebook_uses():
    from toykit.grading.worker import warm_up_code

    nb = nbformat.v4.new_notebook()
    source = "import os, my_own_module\nimport torch.nn as nn\nfrom toykit.exercises import ch00"
    nb.cells = [nbformat.v4.new_code_cell(source)]
    code = warm_up_code(nb, [{"module": "ch00"}])
    assert "['torch', 'toykit', 'toykit.exercises.ch00']" in code and "my_own_module" not in code
    nb.cells = [nbformat.v4.new_code_cell("while True:\n    pass")]
    assert warm_up_code(nb, [{"module": "ch00"}]) == ""  # nothing to import: no time spent
