"""What transcripts say about runs: the list of past runs, and where an interrupted one stopped."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_tui.audit.transcript import TranscriptError, default_transcript_dir, read_events, verify
from runbook_tui.engine.session import RunState, TaskOutcome
from runbook_tui.model import Runbook, Task

# Finished for good: a resumed run does not do these again. Failed tasks are tried again.
SETTLED = frozenset({"done", "skipped", "manual"})


@dataclass
class RunHistory:
    """One transcript read back: its runbook, mode, values and how far it got."""

    path: str
    runbook_path: str = ""
    runbook_sha256: str = ""
    title: str = ""
    mode: str = "paranoid"
    values: dict[str, str] = field(default_factory=dict)
    operator: str = ""
    started: str = ""
    result: str = "interrupted"
    settled: dict[str, tuple[str, str]] = field(default_factory=dict)  # task id -> (status, fingerprint)
    interrupted: str | None = None
    interrupted_process: dict[str, Any] = field(default_factory=dict)  # its command.spawned event
    problem: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> RunHistory:
        """Read a transcript; `problem` says why it cannot be resumed (broken chain, finished run)."""
        history = cls(str(path))
        check = verify(path)
        if not check.ok:
            history.problem = f"{path}:{check.first_bad_line}: the transcript's chain is broken ({check.reason}); " \
                              "it will not be extended"
            return history
        running: str | None = None
        for event in read_events(path):
            history._apply(event)
            kind = event["type"]
            if kind == "command.started":
                running = event["task_id"]
                history.interrupted_process = {}
            elif kind == "command.spawned" and event.get("task_id") == running:
                history.interrupted_process = event
            elif kind == "task.finished" and event["task_id"] == running:
                running = None
        history.interrupted = running
        if not history.runbook_path:
            history.problem = f"{path}: no run.started event: not a runbook-tui transcript"
        elif history.result in ("success", "failed"):
            history.problem = f"{path}: this run already finished ({history.result}); start a new run instead"
        return history

    def _apply(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise TranscriptError(f"{self.path}: an event is not a JSON object")
        kind = event.get("type")
        if kind == "run.started":
            runbook = _mapping(event.get("runbook"))
            self.runbook_path = runbook.get("path", "")
            self.runbook_sha256 = runbook.get("sha256", "")
            self.title = runbook.get("title", "")
            self.mode = event.get("mode", "paranoid")
            self.values = {str(k): v for k, v in _mapping(event.get("variables")).items()
                           if isinstance(v, str) and "[REDACTED" not in v}
            operator = _mapping(event.get("operator"))
            self.operator = f"{operator.get('user', '?')}@{operator.get('host', '?')}"
            self.started = event.get("ts", "")
        elif kind == "task.finished":
            task_id = str(event.get("task_id"))
            if event.get("status") in SETTLED:
                self.settled[task_id] = (event["status"], str(event.get("fingerprint", "")))
            else:
                self.settled.pop(task_id, None)
        elif kind == "run.finished":
            self.result = event.get("result", "finished")
        elif kind == "run.aborted":
            self.result = "aborted"
        elif kind == "run.resumed":
            self.result = "interrupted"

    def interrupted_still_running(self) -> str | None:
        """Why resuming now would start a second copy of the interrupted command, if it would.

        The app may die (SIGKILL, a lost SSH session) while its command, which ignored SIGHUP,
        goes on: a resume that started it again would run two migrations at once.
        """
        process = self.interrupted_process
        if not self.interrupted or not process or process.get("host") != socket.gethostname():
            return None
        pgid = process.get("pgid")
        # RUNNER-MERGE: also compare the leader's start time, so a recycled pgid is not mistaken for it.
        if not isinstance(pgid, int) or pgid <= 1:
            return None
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return (f"task {self.interrupted} is still running from the interrupted run (process group {pgid}); "
                f"wait for it to end, or stop it with `kill -TERM -- -{pgid}`, then resume")

    def state_for(self, runbook: Runbook) -> RunState:
        """Tasks to leave alone on resume: settled before, and still the same task (id and text)."""
        state = RunState()
        for task in runbook.tasks():
            settled = self.settled.get(task.id)
            if settled and _same(task, settled[1]):
                state.finished[task.id] = TaskOutcome(settled[0])  # type: ignore[arg-type]
        return state


def _mapping(value: Any) -> dict[str, Any]:
    """A field that should be an object, or {} when a damaged transcript says otherwise."""
    return value if isinstance(value, dict) else {}


def _same(task: Task, fingerprint: str) -> bool:
    return not fingerprint or task.fingerprint == fingerprint


@dataclass(frozen=True)
class RunSummary:
    started: str
    title: str
    operator: str
    result: str
    path: str


def list_runs(directory: Path | None = None) -> list[RunSummary]:
    """Past runs found in the transcript directory, newest first."""
    folder = directory or default_transcript_dir()
    runs = []
    for path in folder.glob("*.jsonl") if folder.is_dir() else ():
        history = RunHistory(str(path))
        try:
            for event in read_events(path):
                history._apply(event)
        except (ValueError, OSError, TranscriptError):
            history.result = "unreadable"
        runs.append(RunSummary(history.started or "?", history.title or path.stem, history.operator or "?",
                               history.result, str(path)))
    return sorted(runs, key=lambda r: r.started, reverse=True)
