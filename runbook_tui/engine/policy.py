"""May this command start without the operator saying yes to it? One answer for every path.

The prompt, the step tree, `plan` and `check` all take a task's risk from `assess_risk`, and
every command the engine starts has first gone through `confirmation_needed`: so what the
operator is shown is what they are asked, and nothing a runbook says can relax the asking
unless the operator trusted that exact runbook (`runbook-tui trust`).

Relaxations, and who may use them:
- `auto` mode, `step` mode, `confirm=false`: only a trusted runbook. An untrusted runbook runs
  in paranoid mode and every command is asked, whatever its annotations say.
- `risk=high` (from the runbook, a dangerous command, or dangerous environment): always asked,
  with a typed word; no mode and no trust turns that off.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from runbook_tui.engine.env import environment_hazards
from runbook_tui.model import Mode, Runbook, Task
from runbook_tui.parse.lint import dangerous_reason

RiskLevel = Literal["low", "high"]
# Section titles that hold the changes themselves (see assess_risk), and severities that count as high.
RESOLUTION_TITLES = re.compile(r"resolution|mitigation|rollback|recovery|remediation|deploy", re.IGNORECASE)
HIGH_SEVERITY = ("high", "critical", "sev1", "p1")
# Modes that ask less than paranoid: only for a trusted runbook.
RELAXED_MODES: frozenset[Mode] = frozenset({"auto", "step"})


@dataclass(frozen=True)
class Risk:
    """How dangerous a task is, and every reason why (shown in the prompt, the tree and plan)."""

    level: RiskLevel
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """Whether to ask before a command starts, and the reason the transcript records."""

    ask: bool
    reason: str


def assess_risk(runbook: Runbook, task: Task, hazards: Iterable[str] = ()) -> Risk:
    """High when the runbook says so, when the command is one of the known destructive ones, or
    when `hazards` (dangerous environment the command would get) is not empty.

    A runbook that marks no command `risk=` at all, on a high-severity runbook, gets typed
    confirmations for every command of its resolution sections (deploy, rollback, mitigation...):
    nobody said where its danger is, so the sections that change things are assumed dangerous.
    A runbook that marks its risky commands is taken at its word. Either way a runbook cannot
    lower a destructive command's risk with `risk=low`: that word comes from the text we guard
    against.
    """
    reasons: list[str] = []
    if task.options.risk == "high":
        reasons.append("the runbook marks it risk=high")
    elif task.command is not None and _unmarked_resolution(runbook, task):
        reasons.append("a resolution step of a high-severity runbook that marks no risks itself")
    if task.command is not None and (why := dangerous_reason(task.command)) is not None:
        reasons.append(f"the command {why}")
    reasons.extend(hazards)
    return Risk("high" if reasons else "low", tuple(reasons))


def _unmarked_resolution(runbook: Runbook, task: Task) -> bool:
    severity = (runbook.severity or "").lower()
    if not severity.startswith(HIGH_SEVERITY) or runbook.marks_risks:
        return False
    section_id = task.id.split(".", 1)[0]
    return any(s.id == section_id and RESOLUTION_TITLES.search(s.title) for s in runbook.sections)


def task_risk(runbook: Runbook, task: Task, values: Mapping[str, str] | None = None) -> Risk:
    """The risk of `task` with these variable values (the runbook's defaults when not given):
    what the prompt asks, and what the tree, `plan` and `check` show."""
    if values is None:
        values = {v.name: v.default for v in runbook.variables if v.default is not None}
    return assess_risk(runbook, task, environment_hazards(runbook, values, task))


def trust_command(path: str) -> str:
    """The command that trusts `path`, quoted for the shell: the operator copies it as shown, and
    a runbook's file name may hold a space, a `;` or a glob."""
    return f"runbook-tui trust {shlex.quote(path)}"


def effective_mode(requested: Mode, trusted: bool, path: str = "PATH") -> tuple[Mode, str | None]:
    """The mode a run may use, and a notice when the request was refused."""
    if requested in RELAXED_MODES and not trusted:
        return "paranoid", (f"{requested} mode needs a trusted runbook, and {path} is not trusted (or changed "
                            "since it was trusted): running in paranoid mode, every command is confirmed. "
                            f"Review it, then trust this version with: {trust_command(path)}")
    return requested, None


def confirmation_needed(task: Task, *, mode: Mode, trusted: bool, risk: Risk,
                        step_approved: bool = False) -> Decision:
    """Must the operator approve this command (as it will run) before it starts?

    `step_approved`: the operator approved this exact command with its step (step mode).
    """
    if risk.level == "high":
        return Decision(True, "high risk: " + "; ".join(risk.reasons))
    if task.options.confirm is True:
        return Decision(True, "the runbook asks for confirmation (confirm=true)")
    if not trusted:
        if task.options.confirm is False:
            return Decision(True, "confirm=false is ignored: the runbook is not trusted")
        return Decision(True, "the runbook is not trusted: every command is confirmed")
    if mode == "step":
        if step_approved:
            return Decision(False, "approved with its step (step mode, trusted runbook)")
        return Decision(True, "step mode: the command changed since its step was approved")
    if mode == "auto":
        return Decision(False, "auto mode, trusted runbook")
    if task.options.confirm is False:
        return Decision(False, "confirm=false on a trusted runbook")
    return Decision(True, "paranoid mode: every command is confirmed")


def step_confirmation_needed(mode: Mode, trusted: bool) -> bool:
    """Step mode asks once per step, listing every command in it; only for a trusted runbook."""
    return mode == "step" and trusted
