"""Lint warnings for a parsed runbook: things that parse but deserve a second look before 3 a.m."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from runbook_tui.model import Runbook

# (pattern, why) pairs; matched against each command, case-insensitively.
DANGEROUS = (
    (r"\brm\s+(-[a-z]*r[a-z]*f[a-z]*|-[a-z]*f[a-z]*r[a-z]*|--recursive\s+--force|--force\s+--recursive)\s+(/|/\*|~|\$HOME)(\s|$)",
     "deletes a whole file system tree"),
    (r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba|z|da)?sh\b", "pipes a download straight into a shell"),
    (r"\bdrop\s+(database|schema)\b", "drops a database"),
    (r"\btruncate\s+table\b", "empties a table"),
    (r"\bmkfs(\.\w+)?\b", "formats a file system"),
    (r"\bdd\b[^|;&]*\bof=/dev/", "writes raw bytes to a device"),
    (r":\(\)\s*\{\s*:\|:&\s*\};:", "is a fork bomb"),
    (r"\bchmod\s+(-R\s+)?777\s+/", "opens permissions on a system path"),
    (r"\b(kubectl|oc)\s+delete\b[^|;&]*(--all\b|\bnamespace\b|\bns\b)", "deletes many cluster objects at once"),
    (r"\bgit\s+push\b[^|;&]*(--force\b|-f\b)", "force-pushes"),
    (r"\bdocker\s+system\s+prune\b", "removes all unused Docker data"),
)
_DANGEROUS = tuple((re.compile(pattern, re.IGNORECASE), why) for pattern, why in DANGEROUS)


@dataclass(frozen=True)
class Warning:
    """One lint finding, printed like a compiler warning: `file:line:col: warning: message [code]`.

    An `error` (a placeholder the shell would run as code) makes `check` refuse the runbook.
    """

    path: str
    line: int
    column: int
    code: str
    message: str
    severity: str = "warning"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.severity}: {self.message} [{self.code}]"


# (pattern, why) for commands that want a terminal of their own: a pager, an editor, a full-screen
# monitor, a database or cache client without a query to run, a remote shell without a command.
NEEDS_TERMINAL = (
    (r"(^|[|;&]\s*)(sudo\s+)?(less|more|most|vi|vim|nvim|nano|emacs|top|htop|btop|watch|tig|mc)(\s|$)",
     "runs a full-screen program"),
    (r"(^|[|;&]\s*)(sudo\s+)?(psql|mysql|mariadb|sqlite3|mongo|mongosh|redis-cli)(?![^|;&]*\s(-c|-e|--command|--eval|--execute)\b)"
     r"(?![^|;&\n]*\s(get|set|del|keys|info|ping|scan|hgetall|exists|ttl)\b)[^|;&\n]*$",
     "opens an interactive client (no query to run on its command line)"),
    (r"(^|[|;&]\s*)ssh\s+(-\S+\s+)*[\w.@-]+\s*$", "opens a remote shell (no command to run there)"),
    (r"\b(kubectl|oc|docker|podman)\s+(exec|run)\b[^|;&]*\s-(it|ti|i\s+-t|t\s+-i)\b",
     "runs a program on a terminal of its own (-it)"),
)
_NEEDS_TERMINAL = tuple((re.compile(pattern, re.MULTILINE), why) for pattern, why in NEEDS_TERMINAL)


def needs_terminal(command: str) -> str | None:
    """Why a command will want the operator's terminal, or None."""
    for pattern, why in _NEEDS_TERMINAL:
        if pattern.search(command):
            return why
    return None


def dangerous_reason(command: str) -> str | None:
    """Why a command is dangerous, or None."""
    for pattern, why in _DANGEROUS:
        if pattern.search(command):
            return why
    return None


def lint(runbook: Runbook, text: str | None = None) -> list[Warning]:
    """All warnings for a runbook, in file order; `text` (the Markdown source) adds hidden-command checks."""
    found: list[Warning] = []
    path = runbook.path
    required = set(runbook.required_variables)
    names: dict[str, int] = {}
    for step in runbook.steps():
        if step.name:
            _duplicate(found, names, step.name, path, step.line)
        for task in step.tasks:
            if task.name:
                _duplicate(found, names, task.name, path, task.line)
            if task.command is None:
                continue
            undefined = [v for v in task.variables if v in required]
            if undefined:
                listed = ", ".join(f"${v}" for v in undefined)
                found.append(Warning(path, task.line, 1, "undefined-variable",
                                     f"task {task.id} uses {listed}, which the runbook does not define; "
                                     "the operator will be asked (or pass --var)"))
            if task.placeholders:
                found.append(Warning(path, task.line, 1, "placeholder",
                                     f"task {task.id} has placeholders {', '.join(task.placeholders)} "
                                     "that the operator must fill in"))
            if any(ord(c) < 32 and c not in "\n\t" or 0x7f <= ord(c) <= 0x9f for c in task.command):
                found.append(Warning(path, task.line, 1, "hidden-command",
                                     f"task {task.id} holds control characters that a terminal would not show"))
            if not task.options.interactive and (why := needs_terminal(task.command)) is not None:
                found.append(Warning(path, task.line, 1, "needs-terminal",
                                     f"task {task.id} {why}: mark it interactive=true so that it runs on the "
                                     "operator's own terminal"))
            if (why := dangerous_reason(task.command)) is not None:
                found.append(Warning(path, task.line, 1, "dangerous-command",
                                     f"task {task.id} {why}: {task.command.splitlines()[0]}"))
    base = Path(path).parent
    for related in runbook.related:
        if not os.path.exists(base / related.target):  # never raises, even for a silly long name
            found.append(Warning(path, related.line, 1, "missing-related",
                                 f"related runbook '{related.title}' points at {related.target}, which does not exist"))
    if text is not None and runbook.format == "markdown":
        found.extend(hidden_commands(runbook, text))
    found.extend(Warning(path, n.line, n.column, n.code, n.message) for n in runbook.notices)
    if not any(True for _ in runbook.steps()):
        found.append(Warning(path, 1, 1, "no-steps",
                             "no steps and no commands: nothing here to run or confirm (a numbered list, "
                             "a ### step or a shell block makes one)"))
    from runbook_tui.parse.hazards import hazards

    found.extend(hazards(runbook, text))
    return sorted(found, key=lambda w: (w.line, w.code))


_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
_DETAILS = re.compile(r"<details\b.*?</details>", re.DOTALL | re.IGNORECASE)


def hidden_commands(runbook: Runbook, text: str) -> list[Warning]:
    """What GitHub would not show: commands in HTML comments (never run) and commands folded
    away in <details> (run, but a reader skimming the page does not see them)."""
    from runbook_tui.parse.shellwords import looks_like_command

    found = []
    for match in _COMMENT.finditer(text):
        body = match.group(1).strip()
        if body.startswith("runbook:"):
            continue
        lines = [ln.strip().removeprefix("$ ") for ln in body.splitlines() if ln.strip() and not ln.startswith("```")]
        if any(looks_like_command(line) for line in lines):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Warning(runbook.path, line, 1, "hidden-command",
                                 "an HTML comment holds what looks like a command: it is invisible on GitHub "
                                 "and runbook-tui will not run it; make it a visible block or delete it"))
    folded = [(text.count("\n", 0, m.start()) + 1, text.count("\n", 0, m.end()) + 1) for m in _DETAILS.finditer(text)]
    for task in runbook.commands():
        if any(start <= task.line <= end for start, end in folded):
            found.append(Warning(runbook.path, task.line, 1, "hidden-command",
                                 f"task {task.id} runs but sits inside a collapsed <details> block"))
    return found


def _duplicate(found: list[Warning], names: dict[str, int], name: str, path: str, line: int) -> None:
    if name in names:
        found.append(Warning(path, line, 1, "duplicate-name",
                             f"name '{name}' is already used on line {names[name]}"))
    else:
        names[name] = line
