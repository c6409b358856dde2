"""Command palette entries: jump to a step, open a related runbook, export, change the mode."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from runbook_tui.model import MODES

if TYPE_CHECKING:
    from runbook_tui.tui.app import RunbookApp


class RunbookCommands(Provider):
    """Everything the palette offers for the runbook on screen."""

    def _entries(self) -> list[tuple[str, str, object]]:
        app: RunbookApp = self.app  # type: ignore[assignment]
        screen = app.run_screen
        entries: list[tuple[str, str, object]] = [("Help: the keys of this screen", "Also ? or F1", app.action_keys_help),
                                                  ("Messages: every notice of this run in full", "Also m",
                                                   screen.action_messages)]
        for step in app.runbook.steps():
            entries.append((f"Jump to {step.id} {step.title}", "Select this step", partial(screen.jump, step.id)))
        for index, related in enumerate(app.runbook.related):
            entries.append((f"Open related runbook: {related.title}", related.target,
                            partial(screen.open_related, index)))
        if not app.read_only:
            entries.append(("Export the transcript as Markdown", "Next to the transcript, never over a file",
                            screen.action_export))
            run = app.current_run
            for name in run.given_values() if run is not None else []:
                entries.append((f"Answer again: {name}", "The next task that needs it asks for it again",
                                partial(screen.forget_value, name)))
            for mode in MODES:
                entries.append((f"Change mode to {mode}", "From the next task on, if the runbook's trust allows; "
                                "recorded in the transcript", partial(screen.set_mode, mode)))
        return entries

    async def discover(self) -> Hits:
        for title, help_text, callback in self._entries():
            yield DiscoveryHit(title, callback, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)  # type: ignore[arg-type]
