"""A related runbook, opened on top of the run: read it, copy from it, escape back, or run it.

The run and its transcript go on underneath; opening and closing are recorded, so a reviewer
sees that the operator consulted the rollback runbook at 03:12. Running it ends this run
(recorded as a switch, with the new run's transcript) and starts one of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from runbook_tui.audit.terminal import visible
from runbook_tui.model import Runbook
from runbook_tui.tui.widgets.step_tree import StepTree
from runbook_tui.tui.widgets.step_view import StepView

if TYPE_CHECKING:
    from runbook_tui.engine.run import Run


class RelatedScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back to the run", id="related.back", tooltip="Close this runbook"),
        Binding("r", "run", "Run it instead", id="related.run", tooltip="End this run and run this runbook"),
    ]

    def __init__(self, runbook: Runbook, run: Run | None) -> None:
        super().__init__()
        self.runbook = runbook
        self.run = run

    def compose(self) -> ComposeResult:
        yield Static(Text(f"{visible(self.runbook.title)} — related runbook, read-only (escape: back to the run; "
                          "r: end the run and run this one)"), id="related-title")
        with Horizontal(id="main"):
            yield StepTree(self.runbook, id="related-tree")
            yield StepView(id="related-view")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(StepTree).focus()
        if self.run is not None:
            self.run.consult(self.runbook)

    def on_step_tree_selected(self, message: StepTree.Selected) -> None:
        message.stop()
        self.query_one(StepView).show(message.item, "")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return action != "run" or self.run is not None  # a watched run is someone else's to switch

    def action_run(self) -> None:
        self.app.run_screen.switch_to(self.runbook)  # type: ignore[attr-defined]

    def action_back(self) -> None:
        if self.run is not None:
            self.run.stop_consulting(self.runbook)
        self.dismiss(None)
