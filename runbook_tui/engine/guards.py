"""Guards around a run: which runbooks may run unattended, and who else is running this one.

Trust: `auto` mode and `run --yes` only run a runbook whose SHA-256 the operator has trusted
(`runbook-tui trust PATH`); anything else, or a runbook changed since, falls back to paranoid.
Lock: an advisory lock per runbook file in a shared directory tells a second operator that a
run is in progress, by whom and since when; it warns, it does not forbid (an incident may need
two hands), and the transcripts stay separate.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import platformdirs

from runbook_tui.model import Runbook


def trust_file() -> Path:
    return Path(platformdirs.user_config_dir("runbook-tui")) / "trusted.json"


def _trusted() -> dict[str, str]:
    try:
        data = json.loads(trust_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_trusted(runbook: Runbook) -> bool:
    """Trusted means: this file, with exactly this content."""
    return _trusted().get(os.path.abspath(runbook.path)) == runbook.sha256


def trust(runbook: Runbook) -> Path:
    """Record the runbook's current SHA-256 as trusted; returns the trust file."""
    data = _trusted()
    data[os.path.abspath(runbook.path)] = runbook.sha256
    path = trust_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    temporary.replace(path)
    return path


def lock_dir() -> Path:
    """Shared by every user of the machine (sticky, like /tmp), so operators see each other."""
    override = os.environ.get("RUNBOOK_TUI_LOCK_DIR")
    path = Path(override) if override else Path(tempfile.gettempdir()) / "runbook-tui-locks"
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        if not override:
            os.chmod(path, 0o1777)
    return path


class RunLock:
    """Held for the length of a run; `acquire` returns the other holder's details if there is one."""

    def __init__(self, runbook_path: str) -> None:
        key = hashlib.sha256(os.fsencode(os.path.abspath(runbook_path))).hexdigest()[:24]
        self.path = lock_dir() / f"{key}.lock"
        self._file: IO[str] | None = None

    def acquire(self, transcript: str) -> dict[str, Any] | None:
        """Take the lock, or return who holds it (and take nothing)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        file = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = json.loads(file.read() or "{}")
            except ValueError:
                holder = {}
            file.close()
            return holder if isinstance(holder, dict) else {}
        file.seek(0)
        file.truncate()
        file.write(json.dumps({"user": getpass.getuser(), "host": socket.gethostname(), "pid": os.getpid(),
                               "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "transcript": transcript}))
        file.flush()
        self._file = file
        return None

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            self._file.close()
            self._file = None


def describe_holder(holder: dict[str, Any]) -> str:
    who = f"{holder.get('user', '?')}@{holder.get('host', '?')}"
    return f"{who} (pid {holder.get('pid', '?')}) since {holder.get('since', '?')}, transcript {holder.get('transcript', '?')}"
