"""The product's first promise, as a check over a transcript, written apart from the engine.

Every `command.started` must be preceded, since the previous start, by either (on one host of a
fan-out: by an approval or policy decision naming that host's batch)
- a `confirm.answered` with answer `run` for the same task whose `approved` text is exactly the
  `run_command` that started, or
- a `policy.allowed` for the same task and text that the runbook's trust and the run's mode
  really allow: auto mode or `confirm=false` on a trusted runbook, a step approval (step mode,
  trusted) that listed exactly this text, or an automatic attempt of the command that just ran.
High-risk tasks (annotated `risk=high`) are never started by a policy decision.

The check knows the truth about trust from the test, not from the transcript.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def unapproved_starts(events: Iterable[dict[str, Any]], *, trusted: bool, confirm_false: set[str] = frozenset(),
                      high_risk: set[str] = frozenset()) -> list[str]:
    """Every start that broke the promise, described; [] when the promise held."""
    problems: list[str] = []
    mode = "paranoid"
    approved: dict[str, str] = {}  # task id -> text the operator approved since the last start
    step_listed: dict[str, str] = {}  # task id -> text shown in the last step question
    step_approved: dict[str, str] = {}
    allowed: dict[str, Any] | None = None
    batch: tuple[str, str, frozenset[str], dict[str, Any] | None] | None = None  # task, text, hosts, policy
    last_started: tuple[str, str] | None = None
    for event in events:
        kind = event["type"]
        if kind in ("run.started", "run.resumed", "mode.changed"):
            mode = event["mode"]
            if kind != "mode.changed" and event.get("trusted") != trusted:
                problems.append(f"seq {event['seq']}: the run says trusted={event.get('trusted')}")
            if mode in ("auto", "step") and not trusted:
                problems.append(f"seq {event['seq']}: {mode} mode on an untrusted runbook")
        elif kind == "confirm.asked" and event.get("kind") == "step":
            step_listed = {c["task_id"]: c["prompt"] for c in event["commands"]}
        elif kind == "confirm.answered" and event["answer"] == "run" and "hosts" in event:
            batch = (event["task_id"], event["approved"], frozenset(event["hosts"]), None)
        elif kind == "policy.allowed" and "hosts" in event:
            batch = (event["task_id"], event["run_command"], frozenset(event["hosts"]), event)
        elif kind == "command.started" and event.get("host"):
            task, text = event["task_id"], event["run_command"]
            ok = batch is not None and batch[:2] == (task, text) and event["host"] in batch[2] and (
                batch[3] is None or _allowed(batch[3], task, text, mode=mode, trusted=trusted,
                                             confirm_false=confirm_false, high_risk=high_risk,
                                             step_approved=step_approved, last=None))
            if not ok:
                problems.append(f"seq {event['seq']}: task {task} started on {event['host']} outside an approved batch")
        elif kind == "confirm.answered" and event["answer"] == "run":
            if event.get("kind") == "step":
                step_approved.update(step_listed)
            else:
                approved[event["task_id"]] = event["approved"]
        elif kind == "policy.allowed":
            allowed = event
        elif kind == "command.started":
            task, text = event["task_id"], event["run_command"]
            if approved.get(task) != text and not _allowed(allowed, task, text, mode=mode, trusted=trusted,
                                                           confirm_false=confirm_false, high_risk=high_risk,
                                                           step_approved=step_approved, last=last_started):
                problems.append(f"seq {event['seq']}: task {task} started {text!r} without an approval")
            approved.clear()
            allowed = None
            last_started = (task, text)
    return problems


def _allowed(allowed: dict[str, Any] | None, task: str, text: str, *, mode: str, trusted: bool,
             confirm_false: set[str], high_risk: set[str], step_approved: dict[str, str],
             last: tuple[str, str] | None) -> bool:
    if allowed is None or allowed["task_id"] != task or allowed["run_command"] != text:
        return False
    if allowed["reason"].startswith("automatic attempt"):
        return last == (task, text)
    if task in high_risk or not trusted:
        return False
    if mode == "auto":
        return True
    if mode == "step":
        return step_approved.get(task) == text
    return task in confirm_false
