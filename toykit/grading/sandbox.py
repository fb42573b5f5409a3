"""The kernel launcher that confines one submission's kernel before any student code runs.

``toykit grade`` starts each kernel as ``python -m toykit.grading.sandbox CONFIG -f CONN``.
This module reads CONFIG (JSON, written by the grader) and then, in the kernel process itself:

1. records its pid, so that the grader can kill the kernel's whole process group later;
2. asks Linux to kill it when the grading worker that started it dies (``PR_SET_PDEATHSIG``);
3. sets resource limits: address space (the memory limit), file size, no core dumps;
4. where the kernel supports it (Linux 5.13+, no root needed), restricts itself with
   Landlock: files may be read only under the Python installation, toykit and system
   folders, and written only in its own working folder; with Landlock ABI 4+ it may not open
   TCP connections, and with ABI 6+ it may not signal processes outside its sandbox;
5. starts the ordinary IPython kernel (ipykernel) in the same process.

Landlock is best effort: when it is missing, the kernel runs with the limits of step 3 only,
and the grader says so. Nothing here needs root.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

# Landlock filesystem rights (linux/landlock.h), by ABI version.
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
                     5: (1 << 16) - 1}
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE, _IOCTL_DEV = 1 << 14, 1 << 15
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_RULE_PATH_BENEATH = 1
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0 when there is none)."""
    libc = _libc()
    if libc is None:
        return 0
    version = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def _restrict(read: list[str], write: list[str], write_files: list[str]) -> int:
    """Confine this process (and its future children) with Landlock; returns the ABI used."""
    libc = _libc()
    abi = landlock_abi()
    if libc is None or abi < 1:
        return 0
    fs = _FS_RIGHTS_BY_ABI[min(abi, 5)]
    attr = _RulesetAttr(fs, _NET_CONNECT_TCP if abi >= 4 else 0,
                        (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # older kernels reject unknown fields
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        return 0
    file_rights = _EXECUTE | _WRITE_FILE | _READ_FILE | (_TRUNCATE if abi >= 3 else 0)
    read_rights = _EXECUTE | _READ_FILE | _READ_DIR
    rules = [(p, read_rights) for p in read] + [(p, fs) for p in write]
    rules += [(p, file_rights & fs) for p in write_files]
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a folder this machine does not have
            try:
                if not os.path.isdir(path):
                    rights &= file_rights  # files take file rights only
                rule = _PathBeneathAttr(rights, fd)
                libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                             ctypes.byref(rule), ctypes.c_uint32(0))
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return 0
        if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return 0
    finally:
        os.close(ruleset)
    return abi


def confine(config: dict) -> dict:
    """Apply ``config`` to this process; returns what was applied (for the grader's records)."""
    import resource  # POSIX only: imported here so that the grading package imports everywhere

    Path(config["pid_file"]).write_text(str(os.getpid()), encoding="utf-8")
    applied: dict = {"pid": os.getpid()}
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != config.get("parent_pid", os.getppid()):
            os._exit(1)  # the worker died before we could ask to die with it
    memory = config.get("memory_bytes")
    if memory:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            applied["memory_bytes"] = memory
        except (ValueError, OSError):
            applied["memory_bytes"] = None
    for limit, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, config.get("file_bytes"))):
        if value is not None:
            try:
                resource.setrlimit(limit, (value, value))
            except (ValueError, OSError):
                pass
    applied["landlock_abi"] = 0
    if config.get("landlock"):
        applied["landlock_abi"] = _restrict(config["read"], config["write"], config.get("write_files", []))
    return applied


def main(argv: list[str]) -> None:
    if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
        del sys.path[0]  # run as a script: keep this folder off the kernel's import path
    config_path, *kernel_args = argv
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    applied = confine(config)
    Path(config["applied_file"]).write_text(json.dumps(applied), encoding="utf-8")  # in write_files
    sys.argv = [sys.argv[0], *kernel_args]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1:])
