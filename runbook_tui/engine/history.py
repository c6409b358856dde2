"""What transcripts say about runs: the list of past runs, and where an interrupted one stopped."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_tui.audit.events import SETTLED, RunRecord, fold
from runbook_tui.audit.transcript import TranscriptError, default_transcript_dir, read_events, verify
from runbook_tui.engine.containment import ProcessIdentity, how_to_stop, live_members, release
from runbook_tui.engine.session import RunState, TaskOutcome
from runbook_tui.model import Runbook, Task


@dataclass
class RunHistory:
    """One transcript read back (through the one fold, `audit.events.fold`): its runbook and how
    far it got. Mode and values are not carried over: a resume takes them from now."""

    path: str
    runbook_path: str = ""
    runbook_sha256: str = ""
    title: str = ""
    mode: str = "paranoid"
    operator: str = ""
    started: str = ""
    result: str = "interrupted"
    settled: dict[str, tuple[str, str]] = field(default_factory=dict)  # task id -> (status, fingerprint)
    interrupted: str | None = None
    interrupted_process: dict[str, Any] = field(default_factory=dict)  # its command.spawned event
    # Unsettled fan-out tasks: (the task's fingerprint, host -> the command (redacted) that
    # finished ok there).
    hosts_ok: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    problem: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> RunHistory:
        """Read a transcript; `problem` says why it cannot be resumed (broken chain, finished run)."""
        check = verify(path)
        if not check.ok:
            history = cls(str(path))
            history.problem = f"{path}:{check.first_bad_line}: the transcript's chain is broken ({check.reason}); " \
                              "it will not be extended"
            return history
        history = cls.of(str(path), fold(read_events(path)))
        if not history.runbook_path:
            history.problem = f"{path}: no run.started event: not a runbook-tui transcript"
        elif history.result in ("success", "failed"):
            history.problem = f"{path}: this run already finished ({history.result}); start a new run instead"
        return history

    @classmethod
    def of(cls, path: str, run: RunRecord) -> RunHistory:
        operator = run.operator
        interrupted = run.interrupted
        return cls(
            path, runbook_path=str(run.runbook.get("path") or ""), runbook_sha256=str(run.runbook.get("sha256") or ""),
            title=run.title, mode=run.mode or "paranoid",
            operator=f"{operator.get('user', '?')}@{operator.get('host', '?')}" if operator else "",
            started=run.started or "", result="interrupted" if run.result == "incomplete" else run.result,
            settled={tid: (task.status, task.fingerprint) for tid, task in run.settled().items()},
            interrupted=interrupted.id if interrupted else None,
            interrupted_process=interrupted.process if interrupted else {},
            hosts_ok={tid: (task.fingerprint, ok) for tid, task in run.tasks.items() if task.status not in SETTLED
                      and (ok := {host: str(facts.get("run_command") or "") for host, facts in task.hosts.items()
                                  if facts.get("state") == "ok"})})

    def interrupted_still_running(self) -> str | None:
        """Why resuming now would start a second copy of the interrupted command, if it would.

        The app may die (SIGKILL, a lost SSH session) while its command, which ignored SIGHUP,
        goes on: a resume that started it again would run two migrations at once. The record
        names the leader by pid *and* start time, so a recycled pid is never taken for it.
        """
        process = self.interrupted_process
        if not self.interrupted or not process or process.get("host") != socket.gethostname():
            return None
        try:
            identity = ProcessIdentity(**{key: process.get(key) for key in
                                          ("pid", "pgid", "sid", "start_time", "cgroup", "tag")})
        except (TypeError, ValueError) as exc:
            return f"{self.path}: the interrupted command's record is not one this tool wrote ({exc}); not resuming"
        members = live_members(identity)
        if not members:
            release(identity)
            return None
        return (f"task {self.interrupted} is still running from the interrupted run (pids "
                f"{', '.join(map(str, members))}); wait for it to end, or stop it with "
                f"`{how_to_stop(identity, members)}`, then resume")

    def state_for(self, runbook: Runbook) -> RunState:
        """Tasks to leave alone on resume: settled before, and still the same task (id and text)."""
        state = RunState()
        for task in runbook.tasks():
            settled = self.settled.get(task.id)
            if settled and _same(task, settled[1]):
                state.finished[task.id] = TaskOutcome(settled[0])  # type: ignore[arg-type]
            fingerprint, hosts = self.hosts_ok.get(task.id, ("", {}))
            # Without a task.finished (the app was killed) there is no fingerprint: the runbook
            # as a whole must then be the same.
            if hosts and (task.fingerprint == fingerprint if fingerprint else runbook.sha256 == self.runbook_sha256):
                state.hosts_done[task.id] = hosts
        return state


def _same(task: Task, fingerprint: str) -> bool:
    return not fingerprint or task.fingerprint == fingerprint


@dataclass(frozen=True)
class RunSummary:
    started: str
    title: str
    operator: str
    result: str
    path: str


def run_index() -> Path:
    """Every transcript this user's runs wrote, one absolute path a line, wherever it was written
    (`--transcript` may put one anywhere): `runs` lists them all."""
    return default_transcript_dir().parent / "runs.index"


def remember(transcript: Path) -> None:
    """Add a new run's transcript to the index (one short append; a failure loses only the listing)."""
    index = run_index()
    try:
        index.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(index, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as file:
            file.write(str(transcript.resolve()) + "\n")
    except OSError:
        pass


def list_runs(directory: Path | None = None) -> list[RunSummary]:
    """Past runs, newest first: the transcript directory's, and (by default) every transcript the
    index remembers that still exists."""
    folder = directory or default_transcript_dir()
    paths = {p.resolve() for p in folder.glob("*.jsonl")} if folder.is_dir() else set()
    if directory is None:
        try:
            listed = run_index().read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            listed = []
        paths |= {Path(line) for line in listed if line.endswith(".jsonl") and Path(line).is_file()}
    runs = []
    for path in paths:
        try:
            history = RunHistory.of(str(path), fold(read_events(path)))
        except (ValueError, OSError, TranscriptError):
            history = RunHistory(str(path), result="unreadable")
        result = f"{history.result} (noop)" if history.mode == "noop" else history.result
        runs.append(RunSummary(history.started or "?", history.title or path.stem, history.operator or "?",
                               result, str(path)))
    return sorted(runs, key=lambda r: r.started, reverse=True)
