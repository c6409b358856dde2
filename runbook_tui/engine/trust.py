"""Which runbooks may run unattended: those the operator trusted as they are now (`runbook-tui trust`).

Trust names a file, its SHA-256 and the SHA-256 of every local script its commands run
(`local_scripts.py`); anything else, a runbook changed since, or a script changed, missing or new
since, is not trusted, and `trust_status` says which. The store is one JSON file in the operator's
private config directory, rewritten whole (temp file, fsync, rename) under an exclusive lock, so
concurrent `trust` calls all land: without the lock, twelve at once kept five.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from runbook_tui.audit.terminal import visible
from runbook_tui.engine.local_scripts import local_scripts
from runbook_tui.engine.ownfiles import UnsafeFileError, open_private, private_dir, replace_private
from runbook_tui.model import Runbook

STORE = "trusted.json"
STORE_LOCK = "trusted.json.lock"  # held (flock) around every read-modify-write of STORE


class TrustStoreError(Exception):
    """The trust store cannot be read: nothing in it is believed, and nothing is written over it."""


@dataclass(frozen=True)
class TrustEntry:
    """One trusted runbook. `when`, `by` and `scripts` are None in entries older than them."""

    path: str
    sha256: str
    when: str | None
    by: str | None
    scripts: dict[str, str | None] | None  # script path -> SHA-256, None for a file that was absent

    def as_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "when": self.when, "by": self.by, "scripts": self.scripts}

    @classmethod
    def from_json(cls, path: str, value: Any) -> TrustEntry | None:
        if isinstance(value, str):  # the first format: path -> SHA-256
            return cls(path, value, None, None, None)
        if not isinstance(value, dict) or not isinstance(value.get("sha256"), str):
            return None
        scripts = value.get("scripts")
        if isinstance(scripts, dict):
            scripts = {k: v for k, v in scripts.items() if isinstance(k, str) and (v is None or isinstance(v, str))}
        else:
            scripts = None
        return cls(path, value["sha256"], _text(value.get("when")), _text(value.get("by")), scripts)


@dataclass(frozen=True)
class TrustStatus:
    """Whether a runbook may run unattended, and why (for the operator; runbook text is escaped)."""

    trusted: bool
    reason: str


def store_dir() -> Path:
    return Path(platformdirs.user_config_dir("runbook-tui"))


def trust_file() -> Path:
    return store_dir() / STORE


def trust_status(runbook: Runbook) -> TrustStatus:
    """Trusted means: this file, with exactly this content, running exactly these local scripts."""
    key = os.path.abspath(runbook.path)
    shown = visible(key)
    try:
        entry = trusted_entries().get(key)
    except (UnsafeFileError, TrustStoreError, OSError) as exc:
        return TrustStatus(False, f"the trust store cannot be used: {exc}")
    if entry is None:
        return TrustStatus(False, f"{shown} is not trusted")
    if entry.sha256 != runbook.sha256:
        return TrustStatus(False, f"{shown} changed since it was trusted")
    for script, digest in local_scripts(runbook).items():
        problem = _script_problem(entry.scripts, script, digest)
        if problem:
            return TrustStatus(False, f"{shown} runs {visible(script)}, which {problem}")
    return TrustStatus(True, f"{shown} was trusted{_provenance(entry)}")


def is_trusted(runbook: Runbook) -> bool:
    return trust_status(runbook).trusted


def trusted_entries() -> dict[str, TrustEntry]:
    """Every trusted runbook by absolute path."""
    with private_dir(store_dir()) as dir_fd:
        return _read(dir_fd)


def trust(runbook: Runbook) -> TrustEntry:
    """Record the runbook's current SHA-256 and its local scripts' as trusted."""
    entry = TrustEntry(os.path.abspath(runbook.path), runbook.sha256,
                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       f"{getpass.getuser()}@{socket.gethostname()}", local_scripts(runbook))

    def add(entries: dict[str, TrustEntry]) -> None:
        entries[entry.path] = entry

    _update(add)
    return entry


def revoke(path: str) -> bool:
    """Stop trusting the runbook at `path` (it need not exist any more); False if it was not trusted."""
    key = os.path.abspath(path)
    found = False

    def remove(entries: dict[str, TrustEntry]) -> None:
        nonlocal found
        found = entries.pop(key, None) is not None

    _update(remove)
    return found


def _update(change: Callable[[dict[str, TrustEntry]], None]) -> None:
    with _locked_store() as dir_fd:
        entries = _read(dir_fd)
        change(entries)
        data = {path: entry.as_json() for path, entry in sorted(entries.items())}
        replace_private(dir_fd, STORE, json.dumps(data, indent=2).encode())


@contextmanager
def _locked_store() -> Iterator[int]:
    with private_dir(store_dir()) as dir_fd:
        lock = open_private(dir_fd, store_dir(), STORE_LOCK, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released by the close
            yield dir_fd
        finally:
            os.close(lock)


def _read(dir_fd: int) -> dict[str, TrustEntry]:
    try:
        fd = open_private(dir_fd, store_dir(), STORE, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd, "rb") as file:
        raw = file.read()
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        raise TrustStoreError(f"{trust_file()} is not valid JSON ({exc}); fix or remove it") from exc
    if not isinstance(data, dict):
        raise TrustStoreError(f"{trust_file()} is not a JSON object; fix or remove it")
    return {path: entry for path, value in data.items() if (entry := TrustEntry.from_json(path, value))}


def _script_problem(recorded: dict[str, str | None] | None, script: str, digest: str | None) -> str | None:
    if recorded is None:
        return "was not recorded (trusted by an older version): trust the runbook again"
    if script not in recorded:
        return "was not part of what was trusted"
    before = recorded[script]
    if before == digest:
        return None
    if digest is None:
        return "is missing (it was there when the runbook was trusted)"
    if before is None:
        return "did not exist when the runbook was trusted"
    return "changed since the runbook was trusted"


def _provenance(entry: TrustEntry) -> str:
    when = f" on {visible(entry.when)}" if entry.when else ""
    by = f" by {visible(entry.by)}" if entry.by else ""
    return when + by


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
