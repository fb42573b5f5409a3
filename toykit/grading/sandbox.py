"""Confinement of one submission's kernel, and of every process it starts.

``toykit grade`` starts each kernel as ``python sandbox.py CONFIG -f CONN``. This launcher
reads CONFIG (JSON, written by the grading worker) and, before any student code runs:

1. dies with the worker that started it (``PR_SET_PDEATHSIG``) and joins the submission's
   cgroup, when the worker could make one (root; cgroup v2 or v1): that caps the memory and the
   number of processes of the whole tree, whatever it forks;
2. makes a new PID namespace (as root directly; as another user inside a new user namespace,
   where Linux allows that) and forks its PID 1, an ``init`` that reaps. When ``init`` exits,
   Linux kills every process of the namespace, so nothing escapes by ``setsid`` or a double
   fork. The launcher stays outside: it forwards interrupts and exits as ``init`` did;
3. ``init`` makes a mount namespace: its own ``/proc`` (only the namespace's processes), every
   other mount read-only, a size-capped tmpfs as the working folder and as ``/dev/shm``; then
   forks the kernel. Without namespaces, launcher and ``init`` are child subreapers instead:
   orphans come back to them, and they kill what is left when the kernel exits;
4. the kernel drops to ``nobody`` when run as root (where nobody can read the course), drops
   every capability, sets ``no_new_privs`` and resource limits, restricts files with Landlock
   (Linux 5.13+), then initialises ipykernel and, once its own sockets exist, installs a seccomp
   filter: no new sockets of any family, no bind/listen/connect, no ptrace, no io_uring, no
   namespaces or mounts, and no signals to the grader's own processes.

Every step is best effort where the machine does not offer it, and what was applied is
written to the applied file: the grader records it in each row (``sandbox``). The worker side
(cgroups, killing a tree) is here too. Only the standard library is used, so the launcher runs
before anything else is imported.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
_PR_SET_CHILD_SUBREAPER, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 36, 47, 4
_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
NOBODY = "nobody"


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    libc.syscall.restype = ctypes.c_long
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _prctl(option: int, arg: int = 0) -> bool:
    libc = _libc()
    return libc is not None and libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) == 0


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (a no-op elsewhere).

    parent: the pid the caller expects as its parent. A parent that died before the request
    took effect sends no signal, so with ``parent`` given this process then ends itself (for
    use as ``preexec_fn=partial(die_with_parent, parent=os.getpid())``).
    """
    _prctl(_PR_SET_PDEATHSIG, sig)
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def exit_with_parent(parent: int, on_exit: Callable[[], None] | None = None,
                     interval: float = 0.25) -> threading.Thread:
    """End this process soon after ``parent`` dies, whatever its main thread is doing.

    A thread checks every ``interval`` seconds whether this process's parent is still
    ``parent`` (a dead parent's children are re-parented); when it is not, it runs ``on_exit``
    and calls ``os._exit(1)``. This backs up ``die_with_parent``, whose signal reaches a Python
    handler only when the main thread next runs Python code: a main thread blocked in a long
    wait (say, for a child process) would keep the handler, and the process, waiting.
    Returns the (daemon) thread.
    """
    if not isinstance(parent, int) or isinstance(parent, bool) or parent <= 0:
        raise ValueError(f"parent must be a positive process id, got {parent!r}")

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        try:
            if on_exit is not None:
                on_exit()
        finally:
            os._exit(1)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (``PR_SET_CHILD_SUBREAPER``).

    A descendant whose parent exits is then re-parented to this process (or to a subreaper
    between them), not to init, so a double fork or ``setsid`` cannot take it out of reach of
    ``descendants_of`` and ``kill_children``. Returns whether Linux accepted it (False elsewhere).
    """
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def set_inspectable(inspectable: bool) -> bool:
    """Whether processes of this user may inspect this one (``PR_SET_DUMPABLE``).

    When not inspectable, this process's ``/proc`` entries (environment, memory, open files)
    belong to root and it cannot be ptraced, so code running as the same user cannot read the
    grader's secrets from it (nor can the process itself, once it is no longer root). Changing
    user resets the flag (to not inspectable, by default); ``exec`` of an ordinary program makes
    the process inspectable again. Returns whether Linux accepted it (False elsewhere).
    """
    return _prctl(_PR_SET_DUMPABLE, int(inspectable))


# ---------------------------------------------------------------- Landlock (files)

# Landlock filesystem rights (linux/landlock.h), by ABI version.
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
                     5: (1 << 16) - 1}
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE = 1 << 14
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_RULE_PATH_BENEATH = 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


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
    # (binding stays allowed: the kernel binds its own ports after this; seccomp then forbids it)
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
        if not _prctl(_PR_SET_NO_NEW_PRIVS, 1):
            return 0
        if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return 0
    finally:
        os.close(ruleset)
    return abi


# ---------------------------------------------------------------- seccomp (system calls)

# Syscall numbers, per architecture: (audit arch, seccomp, always denied, denied for protected pids)
_SYSCALLS = {
    "x86_64": (0xC000003E, 317, {
        "socket": 41, "connect": 42, "bind": 49, "listen": 50, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "bpf": 321, "perf_event_open": 298, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166,
        "pivot_root": 155, "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442, "keyctl": 250, "add_key": 248, "request_key": 249,
        "userfaultfd": 323, "pidfd_getfd": 438, "open_by_handle_at": 304},
        {"kill": 62, "tkill": 200, "tgkill": 234, "pidfd_open": 434}),
    "aarch64": (0xC00000B7, 277, {
        "socket": 198, "connect": 203, "bind": 200, "listen": 201, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "bpf": 280, "perf_event_open": 241, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39,
        "pivot_root": 41, "chroot": 51, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442, "keyctl": 219, "add_key": 217, "request_key": 218,
        "userfaultfd": 282, "pidfd_getfd": 438, "open_by_handle_at": 265},
        {"kill": 129, "tkill": 130, "tgkill": 131, "pidfd_open": 434}),
}
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_LD_W_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def seccomp_program(machine: str, protected_pids: list[int]) -> bytes | None:
    """The BPF program of the filter (None on an architecture this does not know).

    Denied calls fail with EPERM, so Python raises PermissionError; a call made through another
    architecture's ABI (x32, 32-bit) kills the process, since the numbers would not match.
    """
    if machine not in _SYSCALLS:
        return None
    arch, _, denied, pid_checked = _SYSCALLS[machine]
    eperm = _RET_ERRNO | errno.EPERM
    prog = [_bpf(_LD_W_ABS, 4), _bpf(_JEQ, arch, 1, 0), _bpf(_RET, _RET_KILL_PROCESS), _bpf(_LD_W_ABS, 0)]
    if machine == "x86_64":  # x32 system calls carry this bit
        prog += [_bpf(_JGE, 0x40000000, 0, 1), _bpf(_RET, _RET_KILL_PROCESS)]
    for nr in sorted(set(denied.values())):
        prog += [_bpf(_JEQ, nr, 0, 1), _bpf(_RET, eperm)]
    # the first argument of kill/tkill/tgkill/pidfd_open: never one of the grader's processes,
    # nor -1 (every process we may signal), nor the negated pid of a protected process group
    values = sorted({v & 0xFFFFFFFF for p in protected_pids if p > 1 for v in (p, -p)} | {0xFFFFFFFF})
    for nr in sorted(pid_checked.values()):
        block = [_bpf(_LD_W_ABS, 16)]
        for v in values:
            block += [_bpf(_JEQ, v, 0, 1), _bpf(_RET, eperm)]
        block.append(_bpf(_RET, _RET_ALLOW))
        prog += [_bpf(_JEQ, nr, 0, len(block)), *block]
    prog.append(_bpf(_RET, _RET_ALLOW))
    return b"".join(prog)


def install_seccomp(protected_pids: list[int]) -> bool:
    """Install the filter on every thread of this process (and its future children)."""
    libc = _libc()
    machine = platform.machine()
    program = seccomp_program(machine, protected_pids)
    if libc is None or program is None or not _prctl(_PR_SET_NO_NEW_PRIVS, 1):
        return False
    buf = ctypes.create_string_buffer(program, len(program))

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _Prog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    set_mode_filter, flag_tsync = 1, 1
    rc = libc.syscall(ctypes.c_long(_SYSCALLS[machine][1]), ctypes.c_uint(set_mode_filter),
                      ctypes.c_uint(flag_tsync), ctypes.byref(prog))
    return rc == 0


# ---------------------------------------------------------------- namespaces, users, capabilities


def _unshare(flags: int) -> bool:
    libc = _libc()
    return libc is not None and libc.unshare(ctypes.c_int(flags)) == 0


def _new_namespaces() -> str:
    """Make a new PID namespace for the next child (as another user than root, inside a new user
    namespace); that child then makes its own mount namespace (``_own_mounts``)."""
    if os.geteuid() == 0:
        return "pid+mount" if _unshare(_CLONE_NEWPID) else ""
    uid, gid = os.getuid(), os.getgid()
    if not _unshare(_CLONE_NEWUSER | _CLONE_NEWPID):
        return ""
    try:  # keep our own ids inside: the namespace only lends us the right to mount /proc
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    except OSError:  # unmapped, our ids read as the overflow id inside; mounting still works
        return "user+pid+mount (no id map)"
    return "user+pid+mount"


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> bool:
    libc = _libc()
    return libc is not None and libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                                           ctypes.c_ulong(flags), data.encode() if data else None) == 0


def _read_only_everywhere(writable: list[str]) -> bool:
    """Make every mount read-only in this mount namespace, except ``writable`` (each bound onto
    itself, read-write). Linux 5.12+ (mount_setattr); False where that is not possible."""
    libc = _libc()
    number = {"x86_64": 442, "aarch64": 442}.get(platform.machine())
    if libc is None or number is None:
        return False
    attr = struct.pack("=QQQQ", 1, 0, 0, 0)  # MOUNT_ATTR_RDONLY set; nothing cleared
    at_fdcwd, at_recursive = -100, 0x8000
    if libc.syscall(ctypes.c_long(number), ctypes.c_int(at_fdcwd), b"/", ctypes.c_uint(at_recursive),
                    ctypes.c_char_p(attr), ctypes.c_size_t(len(attr))) != 0:
        return False
    ms_bind, ms_remount = 4096, 32
    for path in writable:
        if not (os.path.exists(path) and _mount(path, path, None, ms_bind)
                and _mount("none", path, None, ms_bind | ms_remount | _MS_NOSUID | _MS_NODEV)):
            return False
    return True


def nobody_ids() -> tuple[int, int] | None:
    """(uid, gid) of the user ``nobody`` and its group, or None where there is none."""
    try:
        import grp
        import pwd

        user = pwd.getpwnam(NOBODY)
    except (ImportError, KeyError):
        return None
    gid = user.pw_gid
    for group in ("nogroup", "nobody"):
        try:
            gid = grp.getgrnam(group).gr_gid
            break
        except KeyError:
            continue
    return user.pw_uid, gid


def _drop_privileges(ids: list[int] | None) -> str:
    """Become ``ids`` (when root) and give up every capability; returns who we are now."""
    libc = _libc()
    if libc is not None:
        for cap in range(64):  # the bounding set: no exec can give capabilities back
            libc.prctl(_PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0)
        libc.prctl(_PR_CAP_AMBIENT, ctypes.c_ulong(_PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)
    if ids and os.geteuid() == 0:
        uid, gid = ids
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # from root to another user: the kernel clears the capabilities
    if libc is not None:  # and in a user namespace, where we keep our uid: clear them by hand
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()
        libc.capset(ctypes.byref(header), ctypes.byref(data))
    return f"uid {os.getuid()}"


def capabilities() -> int:
    """This process's effective capabilities, as the bit mask in /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


# ---------------------------------------------------------------- process trees


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (scanning /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) > 1 and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants_of(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree, in one scan of /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) > 1:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_children(rounds: int = 200) -> int:
    """SIGKILL this process's children until none is left (orphans keep coming back to a
    subreaper); reaps them. Returns how many were killed."""
    killed = 0
    for _ in range(rounds):
        kids = children_of(os.getpid())
        if not kids:
            break
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        _reap()
    return killed


def _own_cgroups() -> tuple[str | None, dict[str, str]]:
    """This process's cgroup v2 path, and its cgroup v1 path per controller."""
    v2, v1 = None, {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None, {}
    for line in lines:
        num, controllers, path = line.split(":", 2)
        if num == "0" and controllers == "":
            v2 = path
        for c in controllers.split(","):
            if c:
                v1[c] = path
    return v2, v1


def _cgroup_mounts() -> tuple[str | None, dict[str, str]]:
    """Where cgroup2 is mounted, and where each cgroup v1 controller is."""
    v2: str | None = None
    v1: dict[str, str] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None, {}
    for line in lines:
        left, _, right = line.partition(" - ")
        fstype, _src, opts = (right.split() + ["", "", ""])[:3]
        point = left.split()[4]
        if fstype == "cgroup2" and v2 is None:
            v2 = point
        elif fstype == "cgroup":
            for opt in opts.split(","):
                v1.setdefault(opt, point)
    return v2, v1


class Cgroup:
    """A cgroup made for one submission: caps the memory and process count of everything in it,
    counts out-of-memory kills, and kills every member at the end. Needs root (or a delegated
    cgroup v2 subtree); ``Cgroup.create`` returns None where it cannot make one."""

    def __init__(self, dirs: dict[str, Path], version: int) -> None:
        self.dirs, self.version = dirs, version  # controller ("memory", "pids", or "" for v2) -> folder

    @classmethod
    def create(cls, name: str, memory_bytes: int | None, pids_max: int | None) -> Cgroup | None:
        if not sys.platform.startswith("linux"):
            return None
        own2, own1 = _own_cgroups()
        mount2, mount1 = _cgroup_mounts()
        if own2 is not None and mount2:  # cgroup v2: needs the memory controller enabled for children
            parent = Path(mount2 + own2.rstrip("/"))
            try:
                enabled = (parent / "cgroup.subtree_control").read_text().split()
                if "memory" not in enabled:
                    (parent / "cgroup.subtree_control").write_text("+memory +pids")
                folder = parent / name
                folder.mkdir()
                group = cls({"": folder}, 2)
                if "memory" in (folder / "cgroup.controllers").read_text().split() and group._limit(
                        {"memory.max": memory_bytes, "memory.swap.max": 0 if memory_bytes else None,
                         "pids.max": pids_max}):
                    return group
                group.remove()
            except OSError:
                pass
        dirs: dict[str, Path] = {}
        for controller in ("memory", "pids"):
            if controller in own1 and controller in mount1:
                folder = Path(mount1[controller] + own1[controller].rstrip("/")) / name
                try:
                    folder.mkdir()
                    dirs[controller] = folder
                except OSError:
                    pass
        if "memory" not in dirs:
            cls(dirs, 1).remove()
            return None
        group = cls(dirs, 1)
        if group._limit({"memory.limit_in_bytes": memory_bytes, "memory.memsw.limit_in_bytes": memory_bytes,
                         "pids.max": pids_max}):
            return group
        group.remove()
        return None

    def _file(self, name: str) -> Path:
        controller = "" if self.version == 2 else name.split(".")[0]
        return self.dirs.get(controller, Path("/nonexistent")) / name

    def _limit(self, values: dict[str, int | None]) -> bool:
        """Write each limit; False when the memory limit could not be set."""
        ok = True
        for name, value in values.items():
            if value is None:
                continue
            try:
                self._file(name).write_text(str(value))
            except OSError:
                if name in ("memory.max", "memory.limit_in_bytes"):
                    ok = False
        return ok

    @property
    def procs_files(self) -> list[str]:
        return [str(folder / "cgroup.procs") for folder in self.dirs.values()]

    def pids(self) -> set[int]:
        out: set[int] = set()
        for procs in self.procs_files:
            try:
                out.update(int(x) for x in Path(procs).read_text().split())
            except (OSError, ValueError):
                pass
        return out

    def oom_kills(self) -> int:
        """How many processes the kernel killed for this cgroup's memory limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in self._file(name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill(self, rounds: int = 200) -> None:
        """SIGKILL every member, until none is left."""
        if self.version == 2:
            try:
                self._file("cgroup.kill").write_text("1")
            except OSError:
                pass
        for _ in range(rounds):
            members = self.pids()
            if not members:
                return
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill()
        for folder in self.dirs.values():
            for _ in range(100):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # the last members are still exiting


def _reap() -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        out.append((pid, status))


# ---------------------------------------------------------------- the launcher


def _supervise(kernel: int) -> None:
    """A parent's life: forward interrupts to ``kernel``, reap every child, and when ``kernel`` is
    gone (or the worker asks, with SIGTERM), kill what is left; exit as ``kernel`` did."""
    stopping = []

    def forward(signum, _frame):
        try:
            os.kill(kernel, signum)
        except ProcessLookupError:
            pass

    def stop(signum, _frame):
        stopping.append(signum)
        try:
            os.kill(kernel, signal.SIGKILL)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGINT, forward)  # jupyter_client interrupts the launcher's process group
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    status = 0
    while True:
        try:
            pid, st = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == kernel:
            status = st
            break
    kill_children()  # without a PID namespace: whatever the kernel left behind, now ours
    # (as PID 1 of a namespace, a process cannot kill itself with a signal: exit 128 + signal, as shells do)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def _init(config: dict, kernel_args: list[str], namespaces: str, applied: dict) -> None:
    """The launcher's child: PID 1 of the new namespace, where there is one. It mounts what the
    whole namespace sees, starts the kernel as its child, and reaps: a kernel that is not PID 1
    dies of signals as any process does. When it exits, Linux kills the rest of the namespace."""
    die_with_parent()
    if os.getpid() != 1 and os.getppid() != applied["launcher_pid"]:  # (PID 1 sees no parent)
        os._exit(1)
    work = config["work"]
    ids = config.get("drop_to") if os.geteuid() == 0 else None
    if "mount" in namespaces and _unshare(_CLONE_NEWNS):  # (the launcher, outside, keeps the real mounts)
        _mount("none", "/", None, _MS_REC | _MS_PRIVATE)  # nothing we mount is seen outside
        if _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC):
            applied["proc"] = "own /proc: only this submission's processes"
        owner = f",uid={ids[0]},gid={ids[1]}" if ids else ""
        writable = [p for p in config.get("write_files", []) if p != "/dev/null"] + ["/dev/null"]
        if _read_only_everywhere(writable):
            applied["read_only"] = "every file system read-only, but its own folder and results"
        if _mount("toykit-shm", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, "size=67108864,mode=1777"):
            applied["shm_bytes"] = 67108864
        if config.get("disk_bytes") and _mount("toykit", work, "tmpfs", _MS_NOSUID | _MS_NODEV,
                                               f"size={config['disk_bytes']},mode=0700{owner}"):
            applied["disk_bytes"] = config["disk_bytes"]
            os.chdir(work)
            for sub in config.get("work_dirs", []):
                os.makedirs(sub, exist_ok=True)
    if "pid" not in namespaces:
        become_subreaper()
    parent = os.getpid()
    kernel = os.fork()
    if kernel == 0:
        try:
            _kernel(config, kernel_args, parent, applied)
        except BaseException as err:  # say why on stderr (the kernel log), never run on
            sys.stderr.write(f"toykit sandbox: {type(err).__name__}: {err}\n")
            sys.stderr.flush()
        os._exit(70)
    _supervise(kernel)


def _kernel(config: dict, kernel_args: list[str], parent: int, applied: dict) -> None:
    """The kernel: finish confining this process, then become the IPython kernel."""
    import resource

    os.setpgid(0, 0)  # its own process group: `kill(0, ...)` reaches the kernel's tree, not the launcher
    die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    work = config["work"]
    ids = config.get("drop_to") if os.geteuid() == 0 else None
    if ids:
        uid, gid = ids
        for path in [work, *config.get("work_dirs", []), *config.get("write_files", []), *config.get("own", [])]:
            if path != "/dev/null":
                try:
                    os.chown(path, uid, gid)
                except OSError:
                    pass
    applied["user"] = _drop_privileges(ids)
    set_inspectable(True)  # changing user cleared it; the kernel may read its own /proc/self
    applied["capabilities"] = capabilities()
    limits = [("core_bytes", resource.RLIMIT_CORE, 0), ("file_bytes", resource.RLIMIT_FSIZE, config.get("file_bytes"))]
    if config.get("memory_bytes"):
        limits.append(("address_space_bytes", resource.RLIMIT_AS, config["memory_bytes"]))
    if ids and config.get("nproc"):  # counted per user: only when we are a user of our own
        limits.append(("processes", resource.RLIMIT_NPROC, config["nproc"]))
    for name, limit, value in limits:
        if value is not None:
            try:
                resource.setrlimit(limit, (value, value))
                applied[name] = value
            except (ValueError, OSError):
                pass
    applied["memory_bytes"] = config.get("memory_bytes")
    applied["landlock_abi"] = 0
    if config.get("landlock"):
        applied["landlock_abi"] = _restrict(config["read"], config["write"], config.get("write_files", []))
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    _import_toykit_from(config["toykit_dir"])
    os.environ.pop("JPY_PARENT_PID", None)  # ipykernel would take PID 1 as its parent's death; PDEATHSIG does this
    sys.argv = [sys.argv[0], *kernel_args]
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(kernel_args)  # binds the kernel's own sockets: the last sockets this tree makes
    applied["seccomp"] = install_seccomp([applied["launcher_pid"], *config.get("protect_pids", [])])
    Path(config["applied_file"]).write_text(json.dumps(applied), encoding="utf-8")
    app.start()
    os._exit(0)


def _import_toykit_from(toykit_dir: str) -> None:
    """Make ``import toykit`` find the grader's own toykit first, whatever is installed. (Built
    from the package folder itself: its parent folder may be unreadable under Landlock.)"""
    from importlib.util import spec_from_file_location

    init = os.path.join(toykit_dir, "__init__.py")

    class GraderToykit:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != "toykit":
                return None
            return spec_from_file_location("toykit", init, submodule_search_locations=[toykit_dir])

    sys.meta_path.insert(0, GraderToykit)


def main(argv: list[str]) -> None:
    if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
        del sys.path[0]  # run as a script: keep this folder off the kernel's import path
    config_path, *kernel_args = argv
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    die_with_parent()
    if os.getppid() != config.get("parent_pid", os.getppid()):
        os._exit(1)  # the worker died before we could ask to die with it
    applied: dict = {"launcher_pid": os.getpid(), "cgroup": ""}
    joined = []
    for procs in config.get("cgroup_procs", []):  # the cgroup the worker made: all our children inherit it
        try:
            Path(procs).write_text(str(os.getpid()))
            joined.append(os.path.dirname(procs))
        except OSError:
            pass
    applied["cgroup"] = ", ".join(joined)
    Path(config["pid_file"]).write_text(json.dumps({"launcher": os.getpid()}), encoding="utf-8")
    applied["namespaces"] = _new_namespaces() if config.get("namespaces", True) else ""
    if "pid" not in applied["namespaces"]:
        applied["subreaper"] = become_subreaper()
    set_inspectable(False)  # its /proc entries (environment, memory) belong to root from now on
    init = os.fork()
    if init == 0:
        try:
            _init(config, kernel_args, applied["namespaces"], applied)
        except BaseException as err:  # say why on stderr (the kernel log), never run on
            sys.stderr.write(f"toykit sandbox: {type(err).__name__}: {err}\n")
            sys.stderr.flush()
        os._exit(70)
    Path(config["pid_file"]).write_text(json.dumps({"launcher": os.getpid(), "kernel": init,
                                                    "time": time.time()}), encoding="utf-8")
    _supervise(init)


if __name__ == "__main__":
    main(sys.argv[1:])
