"""The grader's process settings, checked in a forked child: fast, no Jupyter kernel."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

import pytest

from toykit.grading import sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the settings are Linux's prctl")

_PR_GET_DUMPABLE, _PR_GET_CHILD_SUBREAPER = 3, 37


def in_child(check) -> int:
    """Run ``check()`` (which returns a small int) in a forked child; return that int."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = check()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_set_inspectable_sets_the_dumpable_flag_both_ways():
    libc = ctypes.CDLL(None, use_errno=True)

    def check() -> int:
        hidden = sandbox.set_inspectable(False) and libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
        shown = sandbox.set_inspectable(True) and libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 1
        return 10 * hidden + shown

    assert in_child(check) == 11


def test_a_subreaper_adopts_the_orphans_of_its_descendants():
    libc = ctypes.CDLL(None, use_errno=True)

    def check() -> int:
        flag = ctypes.c_int(0)
        if not sandbox.become_subreaper() or libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0):
            return 1
        reaper = os.getpid()
        r, w = os.pipe()
        if os.fork() == 0:  # a child that leaves a grandchild behind
            parent = os.getpid()
            if os.fork() == 0:
                os.setsid()
                while os.getppid() == parent:  # until its parent has exited
                    time.sleep(0.01)
                os.write(w, b"adopted" if os.getppid() == reaper else b"init")
                os._exit(0)
            os._exit(0)
        os.close(w)
        answer = os.read(r, 16)
        while True:  # reap both: the child, and the grandchild we adopted
            try:
                os.wait()
            except ChildProcessError:
                break
        return 0 if (flag.value, answer) == (1, b"adopted") else 2

    assert in_child(check) == 0


def test_die_with_parent_ends_a_child_whose_parent_is_already_gone():
    """A parent that died before the request took effect sends no signal: given the pid it
    expected as its parent, the process ends itself instead of living on as an orphan."""

    def expected_parent_gone() -> int:
        sandbox.die_with_parent(signal.SIGKILL, parent=os.getppid() + 10**6)  # no such parent
        return 0  # not reached

    def expected_parent_alive() -> int:
        sandbox.die_with_parent(signal.SIGKILL, parent=os.getppid())
        return 7

    assert in_child(expected_parent_gone) == -signal.SIGKILL
    assert in_child(expected_parent_alive) == 7


def test_exit_with_parent_ends_a_process_whose_main_thread_is_blocked():
    """The death signal's Python handler waits for the main thread; exit_with_parent does not:
    a process blocked in a read that never returns still runs on_exit and ends when its parent dies."""
    import select

    def check() -> int:
        sandbox.become_subreaper()  # the orphaned grandchild comes back to us, to be reaped
        said_r, said_w = os.pipe()
        never_r, _never_w = os.pipe()
        if os.fork() == 0:  # the parent that will die
            parent = os.getpid()
            if os.fork() == 0:  # the process that must not outlive it
                sandbox.exit_with_parent(parent, on_exit=lambda: os.write(said_w, b"cleaned"), interval=0.01)
                os.read(never_r, 1)  # blocks for good: no handler would ever run here
                os._exit(0)
            time.sleep(0.2)
            os._exit(0)
        os.close(said_w)
        ready, _, _ = select.select([said_r], [], [], 30)
        said = os.read(said_r, 16) if ready else b""
        if not said:  # it lived on: kill it, so that the test fails rather than hangs
            sandbox.kill_children()
        codes = []
        while True:
            try:
                codes.append(os.waitstatus_to_exitcode(os.wait()[1]))
            except ChildProcessError:
                break
        return 0 if said == b"cleaned" and sorted(codes) == [0, 1] else 2

    assert in_child(check) == 0


@pytest.mark.parametrize("parent", [0, -3, True, "12"])
def test_exit_with_parent_rejects_a_bad_pid(parent):
    with pytest.raises(ValueError, match="parent"):
        sandbox.exit_with_parent(parent)
