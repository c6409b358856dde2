"""The transcript's vocabulary, owned here: every event's name and the fields it always carries,
and the one fold of a transcript into what happened, which exports, `runs`, `watch` and `resume`
all read (two folds that disagree would let an export and a resume tell different stories).

The engine writes events only through `Session.record`, which checks each one against
`REQUIRED` before it reaches the disk, so a new event or a renamed field has to be written down
here first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .transcript import parse_timestamp

# Event type -> the fields it always carries (besides seq, ts, type, prev and hash).
REQUIRED: Mapping[str, frozenset[str]] = {
    "run.started": frozenset({"run_id", "tool_version", "runbook", "mode", "trusted", "task_timeout", "host_keys",
                              "operator",
                              "git", "cwd",
                              "variables", "secrets", "concurrent_run"}),
    "run.resumed": frozenset({"run_id", "mode", "trusted", "operator", "runbook", "interrupted_task", "finished"}),
    "run.finished": frozenset({"result", "counts", "failed", "left"}),
    "run.aborted": frozenset({"reason", "left"}),
    "step.entered": frozenset({"step_id", "title"}),
    "confirm.asked": frozenset(),  # a command's (task_id, prompt...), a step's (step_id, commands) or a manual check's
    "confirm.answered": frozenset({"answer"}),
    "policy.allowed": frozenset({"task_id", "run_command", "reason", "mode", "trusted", "attempt"}),
    "command.planned": frozenset({"task_id", "step_id", "command", "run_command", "cwd", "env", "risk"}),
    "command.started": frozenset({"task_id", "step_id", "command", "run_command", "cwd", "env_names", "attempt",
                                  "shell", "edited"}),
    "command.spawned": frozenset({"task_id", "attempt", "host", "pid", "pgid", "sid", "start_time", "cgroup", "tag"}),
    "output": frozenset({"task_id", "text"}),
    "batch.finished": frozenset({"task_id", "batch", "hosts"}),
    # A host whose batch was not run; or, with finished_before=true, one where a resumed run
    # does not run the command again because it finished ok before the interruption.
    "host.skipped": frozenset({"task_id", "host", "reason"}),
    "host.failed": frozenset({"task_id", "host", "reason"}),  # it could not even start there
    "command.finished": frozenset({"task_id", "exit_code", "signal", "duration", "attempt"}),
    "task.finished": frozenset({"task_id", "step_id", "status", "title", "fingerprint"}),
    "note": frozenset({"text", "task_id"}),
    "values.given": frozenset({"task_id", "values"}),
    "value.forgotten": frozenset({"name"}),
    "input.sent": frozenset({"task_id", "masked", "text"}),  # text is None when masked: never recorded
    "input.declined": frozenset({"task_id"}),
    # Written by audit.checkpoints (not through the session): the collector could not be reached.
    "checkpoint.gap": frozenset({"collector", "error", "last_checkpoint_seq"}),
    "mode.changed": frozenset({"requested", "mode", "previous", "by", "trusted", "refused"}),
    "operator.jumped": frozenset({"to"}),
    "operator.disconnected": frozenset({"reason"}),
    "runbook.changed": frozenset({"path", "sha256_started", "sha256_now"}),
    "runbook.opened": frozenset({"path", "sha256", "title"}),
    "runbook.closed": frozenset({"path"}),
    "runbook.switched": frozenset({"path", "sha256", "title", "transcript"}),
}
# How a task can end for good: a resumed run does not do these again (failed ones it retries).
SETTLED = frozenset({"done", "skipped", "manual"})


class UnknownEvent(ValueError):
    """An event the transcript's vocabulary does not have, or one missing a field it always carries."""


def check(kind: str, fields: Mapping[str, Any]) -> None:
    """Refuse an event that is not in REQUIRED, or lacks one of its fields (a bug of ours)."""
    required = REQUIRED.get(kind)
    if required is None:
        raise UnknownEvent(f"unknown transcript event {kind!r}: add it to runbook_tui/audit/events.py")
    missing = required - fields.keys()
    if missing:
        raise UnknownEvent(f"event {kind!r} lacks {', '.join(sorted(missing))}")


@dataclass
class TaskRecord:
    """What the transcript says about one task, folded over all its events."""

    id: str
    step_id: str | None = None
    step_title: str | None = None
    title: str | None = None
    command: str | None = None
    run_command: str | None = None
    cwd: str | None = None
    container: str | None = None
    status: str = "unfinished"
    reason: str | None = None
    exit_code: int | None = None
    signal: str | int | None = None
    timed_out: bool = False
    duration: float | None = None
    attempts: int = 0
    started: str | None = None
    finished: str | None = None
    fingerprint: str = ""
    running: bool = False  # a command.started with no command.finished after it
    process: dict[str, Any] = field(default_factory=dict)  # the last command.spawned
    edited: bool = False  # the operator rewrote the command before it ran
    confirmed_by: str | None = None  # who or what let the last attempt start (or marked it done)
    attempt_log: list[dict[str, Any]] = field(default_factory=list)  # one entry per command.started
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # a fan-out: each host's end
    output: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The task as a reader knows it: its command, or the manual item / prompt."""
        return self.command if self.command is not None else self.title or ""


@dataclass
class RunRecord:
    """The run as a whole; `result` is "incomplete" when the transcript has no end event."""

    title: str = ""
    runbook: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    tool_version: str | None = None
    mode: str | None = None
    trusted: bool | None = None
    operator: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    started: str | None = None
    finished: str | None = None
    result: str = "incomplete"
    reason: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    continued: dict[str, Any] | None = None  # runbook.switched: the related runbook run next
    resumed: int = 0  # how many times the run was resumed
    values_given: dict[str, Any] = field(default_factory=dict)  # typed during the run (never secrets)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (parse_timestamp(self.finished) - parse_timestamp(self.started)).total_seconds()

    @property
    def interrupted(self) -> TaskRecord | None:
        """The task whose command was running when the transcript stopped, if any."""
        return next((task for task in reversed(self.tasks.values()) if task.running), None)

    def settled(self) -> dict[str, TaskRecord]:
        return {tid: task for tid, task in self.tasks.items() if task.status in SETTLED}


def fold(events: Iterable[Mapping[str, Any]]) -> RunRecord:
    """Fold a stream of events into the run and its tasks (damaged fields read as absent)."""
    run = RunRecord()
    steps: dict[str, str] = {}
    last_ts: str | None = None
    for event in events:
        kind, ts = event.get("type"), event.get("ts")
        run.started = run.started or ts
        last_ts = ts
        if kind == "run.started":
            run.run_id, run.tool_version = event.get("run_id"), event.get("tool_version")
            run.mode, run.git, run.trusted = event.get("mode"), event.get("git"), event.get("trusted")
            run.runbook = _mapping(event.get("runbook"))
            run.operator = _mapping(event.get("operator"))
            run.variables = _mapping(event.get("variables"))
            run.secrets = list(event.get("secrets") or [])
        elif kind == "run.resumed":
            run.resumed += 1
            run.result, run.finished = "incomplete", None
            for task in run.tasks.values():
                task.running = False  # what ran before the interruption is over now
        elif kind == "runbook.opened" and not run.runbook:
            run.runbook = {key: event.get(key) for key in ("path", "sha256", "title")}
        elif kind == "runbook.switched":
            run.continued = {key: event.get(key) for key in ("path", "sha256", "title", "transcript")}
        elif kind == "step.entered":
            steps[str(event.get("step_id"))] = str(event.get("title", ""))
        elif kind == "note":
            run.notes.append(dict(event))
        elif kind == "values.given":
            run.values_given.update(_mapping(event.get("values")))
        elif kind in ("run.finished", "run.aborted"):
            run.finished = ts
            run.result = str(event.get("result", "failed")) if kind == "run.finished" else "aborted"
            run.reason = event.get("reason")
            run.summary = {key: value for key, value in event.items()
                           if key not in ("seq", "ts", "type", "prev", "hash", "result", "reason")}
        elif "task_id" in event and event.get("task_id") is not None:
            _fold_task(run, steps, event)
    run.title = str(run.runbook.get("title") or "")
    if run.finished is None:
        run.finished = last_ts
    if run.result == "aborted":
        for task in run.tasks.values():
            if task.status == "unfinished":
                task.status = "aborted"  # started or asked, and the run ended there
    return run


def approver(event: Mapping[str, Any]) -> str:
    """Who or what let a task go on: the operator, a command-line answer, or the policy (why)."""
    if event.get("type") == "policy.allowed":
        return f"policy: {event.get('reason', '')}"
    reason = str(event.get("reason") or "")
    if reason.startswith("--") or "--yes" in reason:
        return reason if reason.startswith("--") else "--yes"
    typed = event.get("typed")
    return f"operator (typed {typed!r})" if typed else "operator"


def _fold_task(run: RunRecord, steps: dict[str, str], event: Mapping[str, Any]) -> None:
    task = run.tasks.setdefault(str(event["task_id"]), TaskRecord(str(event["task_id"])))
    kind = event.get("type")
    if event.get("step_id"):
        task.step_id = str(event["step_id"])
        task.step_title = steps.get(task.step_id, task.step_title)
    if kind == "confirm.asked" and task.title is None:
        task.title = event.get("prompt")
    elif (kind == "confirm.answered" and event.get("answer") in ("run", "done")) or kind == "policy.allowed":
        task.confirmed_by = approver(event)
    elif kind == "command.started" and event.get("host"):
        task.command, task.run_command = event.get("command"), event.get("run_command")
        task.confirmed_by = task.confirmed_by or "operator"
        task.hosts[str(event["host"])] = {key: event.get(key) for key in
                                          ("address", "user", "fingerprint", "run_command")} | {"state": "running"}
    elif kind == "command.finished" and event.get("host"):
        task.hosts.setdefault(str(event["host"]), {}).update(
            state=event.get("state"), exit_code=event.get("exit_code"), duration=event.get("duration"),
            reason=event.get("reason"))
    elif kind == "host.skipped" and event.get("finished_before"):
        # Not run again on resume: the host keeps the end it had (ok), and says why it did not run.
        task.hosts.setdefault(str(event["host"]), {"state": "ok"}).update(reason=event.get("reason"))
    elif kind in ("host.skipped", "host.failed"):
        state = "skipped" if kind == "host.skipped" else "failed"
        task.hosts[str(event["host"])] = {"state": state, "reason": event.get("reason")}
    elif kind == "output" and event.get("host"):
        task.output.append("".join(f"{event['host']} | {line}" for line in
                                   str(event.get("text", "")).splitlines(keepends=True)))
    elif kind == "command.started":
        task.attempts += 1
        task.running, task.process = True, {}
        if task.attempts > 1:
            task.output.append(f"\n--- attempt {task.attempts} ---\n")
        task.command, task.run_command = event.get("command"), event.get("run_command")
        task.cwd, task.container = event.get("cwd"), event.get("container")
        task.edited = task.edited or bool(event.get("edited"))
        task.started = task.started or event.get("ts")
        task.attempt_log.append({"attempt": event.get("attempt", task.attempts), "run_command": task.run_command,
                                 "edited": bool(event.get("edited")), "confirmed_by": task.confirmed_by,
                                 "started": event.get("ts")})
    elif kind == "command.spawned":
        task.process = dict(event)
    elif kind == "output":
        task.output.append(str(event.get("text", "")))
    elif kind == "command.finished":
        task.running = False
        task.exit_code, task.signal = event.get("exit_code"), event.get("signal")
        task.timed_out = bool(event.get("timed_out"))
        task.duration = (task.duration or 0.0) + (event.get("duration") or 0.0)
        if task.attempt_log:
            task.attempt_log[-1].update(exit_code=task.exit_code, signal=task.signal, timed_out=task.timed_out,
                                        duration=event.get("duration"))
    elif kind == "task.finished":
        task.running = False
        task.status, task.reason = str(event.get("status", task.status)), event.get("reason")
        task.title = event.get("title", task.title)
        task.fingerprint = str(event.get("fingerprint", ""))
        if event.get("exit_code") is not None:
            task.exit_code = event["exit_code"]
        task.finished = event.get("ts")


def _mapping(value: Any) -> dict[str, Any]:
    """A field that should be an object, or {} when a damaged transcript says otherwise."""
    return dict(value) if isinstance(value, Mapping) else {}
