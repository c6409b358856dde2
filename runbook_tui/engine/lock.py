"""Who else is running this runbook: an advisory lock per runbook file, held for the run.

It warns, it does not forbid (an incident may need two hands), and the transcripts stay separate.
The locks live in a per-user 0700 directory (`$XDG_RUNTIME_DIR/runbook-tui`, else the user's
state directory; never the shared temporary directory), so the warning is about the operator's
own other terminals and sessions. A shared directory let any user plant a symlink where our lock
file would be, and our run truncated whatever it pointed at.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import platformdirs

from runbook_tui.audit.terminal import visible
from runbook_tui.engine.ownfiles import open_private, private_dir

MAX_HOLDER_BYTES = 64 * 1024  # a holder's record is a few hundred bytes; more is not worth reading
MAX_FIELD_CHARS = 200  # one field of a holder as shown to the operator (a path, a host name)


def lock_dir() -> Path:
    """The operator's own lock directory (`RUNBOOK_TUI_LOCK_DIR` overrides it, for tests)."""
    override = os.environ.get("RUNBOOK_TUI_LOCK_DIR")
    if override:
        return Path(override)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "runbook-tui"
    return Path(platformdirs.user_state_dir("runbook-tui")) / "locks"


class RunLock:
    """Held for the length of a run; `acquire` returns the other holder's details if there is one."""

    def __init__(self, runbook_path: str) -> None:
        key = hashlib.sha256(os.fsencode(os.path.abspath(runbook_path))).hexdigest()[:24]
        self.directory = lock_dir()
        self.name = f"{key}.lock"
        self.path = self.directory / self.name
        self._fd: int | None = None

    def acquire(self, transcript: str) -> dict[str, Any] | None:
        """Take the lock, or return who holds it (and take nothing).

        Raises UnsafeFileError when the directory or the lock file could be someone else's.
        """
        with private_dir(self.directory) as dir_fd:
            fd = open_private(dir_fd, self.directory, self.name, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            return holder
        record = {"user": getpass.getuser(), "host": socket.gethostname(), "pid": os.getpid(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "transcript": transcript}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, MAX_HOLDER_BYTES, 0).decode("utf-8", "replace") or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    """The other run, for a warning: safe to print, since whoever wrote the lock file chose its text."""
    def field(key: str) -> str:
        return visible(str(holder.get(key, "?"))[:MAX_FIELD_CHARS])

    return (f"{field('user')}@{field('host')} (pid {field('pid')}) since {field('since')}, "
            f"transcript {field('transcript')}")
