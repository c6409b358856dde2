"""The header: which runbook, how serious, who owns it, which mode, which commit, how far along."""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from runbook_tui.audit.terminal import visible
from runbook_tui.model import Runbook


class RunHeader(Horizontal):
    """One line of facts that must never be out of sight; progress and elapsed time on the right."""

    DEFAULT_CSS = """
    RunHeader { height: 1; background: $panel; padding: 0 1; }
    RunHeader #facts { width: 1fr; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    RunHeader #progress { width: auto; height: 1; padding-left: 2; }
    """

    mode: reactive[str] = reactive("paranoid")
    done: reactive[int] = reactive(0)

    def __init__(self, runbook: Runbook, git: dict[str, Any] | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runbook = runbook
        self.git = git or {}
        self.total = sum(1 for _ in runbook.tasks())
        self.started = time.monotonic()

    def compose(self) -> ComposeResult:
        yield Static(self._facts(), id="facts")
        yield Static("", id="progress")

    def _facts(self) -> Content:
        """The runbook's own text goes in as template values, never as markup: Textual's `escape`
        leaves `[/ ` alone, and `[/ [red]` in a title then made the header raise."""
        book = self.runbook
        parts = ["[b]$title[/b]"]
        values = {"title": visible(book.title), "mode": self.mode}
        if book.severity:
            high = book.severity.lower().startswith(("high", "critical"))
            parts.append(f"[$background on {'$error' if high else '$warning'}] $severity [/]")
            values["severity"] = visible(book.severity.split("(")[0].strip().upper())
        if book.owner:
            parts.append("owner: $owner")
            values["owner"] = visible(book.owner)
        parts.append("mode: [b]$mode[/b]")
        git_text, warn = git_summary(self.git)
        parts.append("[b $warning]$git[/]" if warn else "$git")
        values["git"] = visible(git_text)
        return Content.from_markup("  ".join(parts), **values)

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)
        self._tick()

    def _tick(self) -> None:
        elapsed = int(time.monotonic() - self.started)
        self.query_one("#progress", Static).update(
            f"{self.done}/{self.total} tasks · {elapsed // 60:02d}:{elapsed % 60:02d}"
        )

    def watch_mode(self, mode: str) -> None:
        if self.is_mounted:
            self.query_one("#facts", Static).update(self._facts())

    def watch_done(self, done: int) -> None:
        if self.is_mounted:
            self._tick()


def git_summary(git: dict[str, Any]) -> tuple[str, bool]:
    """`branch@abc1234` and whether to warn (dirty tree, uncommitted runbook, no repository)."""
    if not git.get("head"):
        return (git.get("note") or "no git repository"), True
    where = f"{git.get('branch') or 'detached'}@{git['head'][:7]}"
    warnings = []
    if git.get("dirty"):
        warnings.append("dirty tree")
    if git.get("runbook_uncommitted"):
        warnings.append("runbook not committed")
    return (where + (" ⚠ " + ", ".join(warnings) if warnings else "")), bool(warnings)
