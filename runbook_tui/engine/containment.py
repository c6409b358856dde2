"""Everything a command starts stays findable, so its end (or an abort) can kill all of it.

A process group is not enough: `setsid cmd &`, `set -m; cmd &` and double-forked daemons leave
it, and `nohup` ignores the hangup. Two ways to hold a command's whole tree:

- **cgroup** (preferred): the command is put in a cgroup v2 of its own before it execs; every
  descendant stays in it whatever it does with sessions and groups, and ``cgroup.kill`` ends
  them all at once. Needs a cgroup v2 hierarchy where we may create a child of our own cgroup
  (root in a container, a systemd user service with delegation) and a kernel with
  ``cgroup.kill`` (5.14).
- **session** (fallback): members are the processes in the command's session or group, those
  whose environment carries the command's tag (``RUNBOOK_TUI_TAG``, inherited by everything it
  starts, also after `setsid`), and every descendant of those. Blind spot: a process that left
  the session, cleared its environment and lost its parent before the end of the task.

Both are local-only facts read from ``/proc`` and ``/sys/fs/cgroup``. :class:`ProcessIdentity`
is what the transcript records when a command starts, so that ``resume``, in a later process, can tell whether an
interrupted command is still alive (:func:`still_running`, :func:`live_members`).

Not (yet) ``systemd-run --user --scope``: it would give a cgroup also where ours is not ours
to write (an SSH login's ``session-N.scope`` belongs to root), but it needs a systemd user
instance on D-Bus (none in most containers) and wraps the command in another program; there,
session tracking holds the command meanwhile. The kind in use is in ``ProcessIdentity.cgroup``.

Why no ``PR_SET_CHILD_SUBREAPER``: orphans would reparent to the app, which would then have to
reap them; it cannot ``waitpid(-1)`` without stealing the exit status of other threads'
subprocesses (git, ssh-keygen), and an orphan's new parent says nothing about which task it came
from: the tag and the cgroup do.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "TAG_VARIABLE",
    "CgroupContainment",
    "Containment",
    "ProcessIdentity",
    "SessionContainment",
    "cgroup_available",
    "how_to_stop",
    "live_members",
    "new_containment",
    "read_stat",
    "release",
    "still_running",
]

# Environment variable that marks every process a command starts (value: the command's tag).
TAG_VARIABLE = "RUNBOOK_TUI_TAG"
# A SIGKILLed process can take a moment to be gone (it must leave the kernel first); how long
# kill() waits for that before giving up on the ones stuck in uninterruptible sleep, and how
# often it looks meanwhile (a killed process is usually gone well within one look).
_KILL_WAIT = 2.0
_KILL_POLL = 0.01
# Prefix of the per-command cgroup's directory name, so an operator can tell whose it is.
_CGROUP_PREFIX = "runbook-tui-"
# A command's cgroup outlives an app that was killed (so that `resume` can look into it). Once
# empty it says nothing more, and the next command's start removes it, if it is older than this:
# a younger one may belong to a command being started right now, not yet in it.
_STALE_AFTER = 60.0

ContainmentKind = Literal["auto", "cgroup", "session"]


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/PID/stat we use."""

    pid: int
    state: str  # R, S, D, Z (zombie), X (dead), T ...
    ppid: int
    pgrp: int
    session: int
    start_time: int  # field 22: clock ticks after boot; with the pid, a process's identity

    @property
    def alive(self) -> bool:
        """A zombie has exited; only its parent's wait() is missing."""
        return self.state not in ("Z", "X")


def read_stat(pid: int) -> Stat | None:
    """/proc/PID/stat parsed; None when the process does not exist (any more)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("ascii", "replace")
    except OSError:
        return None
    # comm (field 2) is in parentheses and may contain spaces and ')': split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); field N is fields[N - 3].
    return Stat(pid=pid, state=fields[0], ppid=int(fields[1]), pgrp=int(fields[2]),
                session=int(fields[3]), start_time=int(fields[19]))


def _all_stats() -> Iterator[Stat]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := read_stat(int(entry))) is not None:
            yield stat


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a command's processes are, recorded when it starts, for a later ``resume``.

    ``pid``/``start_time`` name the leader even after its pid is reused; ``pgid`` and ``sid``
    (both the leader's pid: it runs in a session of its own) its group and session; ``cgroup``
    the cgroup v2 directory holding its whole tree (None in session mode); ``tag`` the value of
    ``RUNBOOK_TUI_TAG`` in the environment of everything it started.
    """

    pid: int
    pgid: int
    sid: int
    start_time: int
    cgroup: str | None
    tag: str

    def __post_init__(self) -> None:
        """Refuse what we would not have recorded: a transcript can be hand-made, and these
        fields end up in a /proc scan, an rmdir and a shell command shown to the operator."""
        numbers = (self.pid, self.pgid, self.sid, self.start_time)
        if not all(type(n) is int for n in numbers) or min(self.pid, self.pgid, self.sid) <= 1 or self.start_time < 0:
            raise ValueError(f"not a recorded process: pid {self.pid!r}, group {self.pgid!r}, session {self.sid!r}")
        if not isinstance(self.tag, str) or re.fullmatch(r"[0-9a-f]{32}", self.tag) is None:
            raise ValueError(f"not a recorded process tag: {self.tag!r}")
        if self.cgroup is not None and not _ours(self.cgroup):
            raise ValueError(f"not a cgroup of ours: {self.cgroup!r}")

    def as_dict(self) -> dict[str, object]:
        """Fields for the transcript event."""
        return {"pid": self.pid, "pgid": self.pgid, "sid": self.sid, "start_time": self.start_time,
                "cgroup": self.cgroup, "tag": self.tag}


def _ours(cgroup: object) -> bool:
    """A path of the kind CgroupContainment creates: ``<cgroup2 mount>/.../runbook-tui-<hex>``."""
    mount = _cgroup2_mount()
    return (isinstance(cgroup, str) and mount is not None and os.path.isabs(cgroup)
            and os.path.normpath(cgroup) == cgroup and cgroup.startswith(mount[0].rstrip("/") + "/")
            and re.fullmatch(re.escape(_CGROUP_PREFIX) + r"[0-9a-f]{32}", os.path.basename(cgroup)) is not None)


def still_running(pid: int, start_time: int) -> bool:
    """True while the process that had ``pid`` when it started at ``start_time`` has not exited."""
    stat = read_stat(pid)
    return stat is not None and stat.alive and stat.start_time == start_time


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False  # gone, or another user's process (then it cannot be ours to kill either)
    return environ.startswith(entry) or b"\0" + entry in environ


def _tree_members(tag: str, group: int | None) -> list[int]:
    """Live pids carrying ``tag``, in session and group ``group`` (if given), or descending from those."""
    entry = f"{TAG_VARIABLE}={tag}\0".encode()
    ours = os.getpid()
    stats = [s for s in _all_stats() if s.pid != ours]
    children: dict[int, list[Stat]] = {}
    for s in stats:
        children.setdefault(s.ppid, []).append(s)
    found = {s.pid: s for s in stats if group in (s.pgrp, s.session) or _environ_has(s.pid, entry)}
    todo = list(found.values())
    while todo:
        for child in children.get(todo.pop().pid, []):
            if child.pid not in found:
                found[child.pid] = child
                todo.append(child)
    return sorted(pid for pid, s in found.items() if s.alive)


def _group(identity: ProcessIdentity) -> int | None:
    """The recorded session/group id, unless its number now belongs to someone else.

    The kernel does not reuse a number while any process still has it as its pid, group or
    session; so if a process with the leader's pid exists but started at another time, the
    command's group and session are all gone and that number names strangers.
    """
    stat = read_stat(identity.pid)
    return None if stat is not None and stat.start_time != identity.start_time else identity.pgid


def _cgroup_pids(path: str) -> list[int] | None:
    """Live pids in the cgroup; None when the cgroup does not exist (any more)."""
    try:
        text = Path(path, "cgroup.procs").read_text()
    except OSError:
        return None
    return sorted(pid for pid in map(int, text.split()) if (s := read_stat(pid)) is not None and s.alive)


def live_members(identity: ProcessIdentity) -> list[int]:
    """Pids of the recorded command's processes still alive (empty when all are gone).

    The cgroup when it still exists (exact); otherwise the session scan, which is how a command
    contained by session tracking is found, and also finds it if its cgroup was removed.
    """
    if identity.cgroup is not None and (pids := _cgroup_pids(identity.cgroup)) is not None:
        return pids
    return _tree_members(identity.tag, _group(identity))


def how_to_stop(identity: ProcessIdentity, members: list[int]) -> str:
    """A shell command the operator can run to stop the recorded command's ``members`` (SIGTERM:
    let it clean up; the same with -KILL if it ignores that)."""
    if identity.cgroup is not None and Path(identity.cgroup).is_dir():
        return f"kill -TERM $(cat {identity.cgroup}/cgroup.procs)"
    group = _group(identity)
    outside = [pid for pid in members if group is None or (s := read_stat(pid)) is None or s.pgrp != group]
    parts = []
    if len(outside) < len(members):
        parts.append(f"kill -TERM -- -{group}")
    if outside:
        parts.append("kill -TERM " + " ".join(map(str, outside)))
    return "; ".join(parts)


def release(identity: ProcessIdentity) -> None:
    """Remove the recorded command's cgroup once it is empty (after a crash, nobody else does)."""
    if identity.cgroup is not None:
        try:
            os.rmdir(identity.cgroup)
        except OSError:
            pass  # gone already, or still populated: live_members() says by whom


class Containment:
    """Holds one command's process tree: set up before it starts, killed and closed at its end."""

    tag: str
    cgroup: str | None = None

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex
        self._leader: int | None = None

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` plus the tag every process of the command inherits."""
        return {**env, TAG_VARIABLE: self.tag}

    def enter(self) -> None:
        """In the child, between fork and exec: join the container. Must not allocate much."""

    def started(self, leader: int) -> None:
        """The command's leader (its own session and group) exists."""
        self._leader = leader

    def members(self) -> list[int]:
        """Live pids of the command (the leader included while it lives)."""
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL every member and wait (at most _KILL_WAIT) until they are gone."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the containment holds; call after kill(), before the leader's pid is reaped."""
        self._leader = None  # once reaped, its number may name another process's group


class SessionContainment(Containment):
    """Fallback: the session, the group, the tag in the environment, and their descendants."""

    def members(self) -> list[int]:
        if self._leader is None:
            return []
        return _tree_members(self.tag, self._leader)

    def kill(self) -> None:
        # Members can fork while we kill: repeat until a scan finds none alive.
        deadline = time.monotonic() + _KILL_WAIT
        while (pids := self.members()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(_KILL_POLL)


def _cgroup2_mount() -> tuple[str, str] | None:
    """(mount point, root inside the hierarchy) of the cgroup v2 hierarchy, if one is mounted."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        before, _, after = line.partition(" - ")
        if after.split()[:1] == ["cgroup2"]:
            fields = before.split()
            return fields[4], fields[3]
    return None


def _own_cgroup() -> str | None:
    """Directory of the cgroup v2 this process is in, if it can be found."""
    mount = _cgroup2_mount()
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    relative = next((ln[3:] for ln in lines if ln.startswith("0::")), None)
    if mount is None or relative is None:
        return None
    mount_point, mount_root = mount
    if not (relative + "/").startswith(mount_root.rstrip("/") + "/"):
        return None  # our cgroup is outside what is mounted here
    inside = relative[len(mount_root.rstrip("/")):].lstrip("/")
    path = os.path.join(mount_point, inside)
    return path if os.path.isfile(os.path.join(path, "cgroup.procs")) else None


def _remove_stale(parent: str) -> None:
    """Remove the empty cgroups that commands of killed apps left in ``parent``."""
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(_CGROUP_PREFIX) and e.is_dir()]
    except OSError:
        return
    old = time.time() - _STALE_AFTER
    for entry in entries:
        try:
            if entry.stat().st_ctime < old:
                os.rmdir(entry.path)  # the kernel refuses (EBUSY) while a process is in it
        except OSError:
            pass


class CgroupContainment(Containment):
    """A cgroup v2 of the command's own, created next to nothing else, under ours."""

    def __init__(self, parent: str) -> None:
        """Raises OSError when the cgroup cannot be created or joined (no rights, no cgroup.kill)."""
        super().__init__()
        _remove_stale(parent)
        path = os.path.join(parent, _CGROUP_PREFIX + self.tag)
        os.mkdir(path)
        try:
            if not os.path.isfile(os.path.join(path, "cgroup.kill")):  # the root cgroup has none: ask the child
                raise OSError(f"{path}: no cgroup.kill (Linux before 5.14)")
            # Opened here so the child only writes: "0" moves the writing process itself.
            self._procs = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            os.rmdir(path)
            raise
        self.cgroup = path

    def enter(self) -> None:
        os.write(self._procs, b"0")

    def members(self) -> list[int]:
        assert self.cgroup is not None
        return _cgroup_pids(self.cgroup) or []

    def _populated(self) -> bool:
        assert self.cgroup is not None
        events = Path(self.cgroup, "cgroup.events").read_text()
        return "populated 1" in events

    def kill(self) -> None:
        assert self.cgroup is not None
        Path(self.cgroup, "cgroup.kill").write_text("1")
        deadline = time.monotonic() + _KILL_WAIT
        while self._populated() and time.monotonic() < deadline:
            time.sleep(_KILL_POLL)

    def close(self) -> None:
        """Remove the cgroup; kept when a process is stuck in it, so ``resume`` still sees it."""
        super().close()
        if self._procs >= 0:
            os.close(self._procs)
            self._procs = -1
        try:
            os.rmdir(self.cgroup or "")
        except OSError:
            pass


def cgroup_available() -> bool:
    """True when commands can get a cgroup of their own here."""
    parent = _own_cgroup()
    if parent is None:
        return False
    try:
        probe = CgroupContainment(parent)
    except OSError:
        return False
    probe.close()
    return True


def new_containment(kind: ContainmentKind = "auto") -> Containment:
    """A containment for one command: a cgroup where possible (``auto``), else session tracking.

    ``cgroup`` insists (raises OSError when impossible); ``session`` forces the fallback.
    """
    if kind == "session":
        return SessionContainment()
    parent = _own_cgroup()
    try:
        if parent is None:
            raise OSError("no writable cgroup v2 with cgroup.kill for this process")
        return CgroupContainment(parent)
    except OSError:
        if kind == "cgroup":
            raise
        return SessionContainment()
