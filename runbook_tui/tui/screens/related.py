"""A related runbook, opened on top of the run: read it, copy from it, escape back, or run it.

The run and its transcript go on underneath; opening and closing are recorded, so a reviewer
sees that the operator consulted the rollback runbook at 03:12. Running it ends this run
(recorded as a switch, with the new run's transcript) and starts one of its own.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from runbook_tui.engine.session import Session
from runbook_tui.model import Runbook
from runbook_tui.tui.widgets.step_tree import StepTree
from runbook_tui.tui.widgets.step_view import StepView


class RelatedScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back to the run", id="related.back", tooltip="Close this runbook"),
        Binding("r", "run", "Run it instead", id="related.run", tooltip="End this run and run this runbook"),
    ]

    def __init__(self, runbook: Runbook, session: Session | None) -> None:
        super().__init__()
        self.runbook = runbook
        self.session = session

    def compose(self) -> ComposeResult:
        yield Static(f"{self.runbook.title} — related runbook, read-only (escape: back to the run; "
                     "r: end the run and run this one)", id="related-title")
        with Horizontal(id="main"):
            yield StepTree(self.runbook, id="related-tree")
            yield StepView(id="related-view")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(StepTree).focus()
        if self.session is not None:
            self.session.record("runbook.opened", path=str(Path(self.runbook.path).resolve()),
                                sha256=self.runbook.sha256, title=self.runbook.title)

    def on_step_tree_selected(self, message: StepTree.Selected) -> None:
        message.stop()
        self.query_one(StepView).show(message.item, "")

    def action_run(self) -> None:
        self.app.switch_to(self.runbook)  # type: ignore[attr-defined]

    def action_back(self) -> None:
        if self.session is not None:
            self.session.record("runbook.closed", path=str(Path(self.runbook.path).resolve()))
        self.dismiss(None)
