"""The Session's questions, answered with modal screens.

The session runs on a worker thread and blocks on each question; the question is put on screen
from the app's thread (`call_from_thread`) and the worker waits for the dismissal's value.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

from textual.screen import Screen

from runbook_tui.engine.checks import Verdict
from runbook_tui.engine.session import Answer, Confirmation, MissingValue, Question, RunAborted
from runbook_tui.model import Step, Task
from runbook_tui.tui.screens.dialogs import CommandInput, ConfirmCommand, ConfirmStep, ValuesForm, YesNo

if TYPE_CHECKING:
    from textual.app import App

T = TypeVar("T")


class ScreenPrompter:
    """Implements `runbook_tui.engine.session.Prompter` for the TUI."""

    def __init__(self, app: App[Any]) -> None:
        self.app = app

    def ask(self, screen: Screen[T]) -> T:
        """Show `screen` and block this (worker) thread until it is dismissed."""
        done = threading.Event()
        result: list[T] = []

        def answered(value: T | None) -> None:
            result.append(value)  # type: ignore[arg-type]
            done.set()

        self.app.call_from_thread(self.app.push_screen, screen, answered)
        session = getattr(self.app, "session", None)
        while not done.wait(0.05):
            if session is not None and session.abort_event.is_set():
                # quitting while a question is open: close it, and stop the task it was about
                self.app.call_from_thread(_close, screen)
                raise RunAborted("the run was stopped while a question was open")
        return result[0]

    def confirm(self, request: Confirmation) -> Answer:
        return self.ask(ConfirmCommand(request))

    def confirm_step(self, step: Step, commands: list[Confirmation]) -> Answer:
        yes = self.ask(ConfirmStep(f"Run step {step.id} {step.title}? ({len(commands)} command(s))", commands))
        return Answer("run") if yes else Answer("stop", reason="step not confirmed")

    def confirm_manual(self, task: Task, step: Step) -> Answer:
        # Pressing enter on a manual task is the operator's confirmation that it is done.
        return Answer("done")

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        values = self.ask(ValuesForm(questions))
        if values is None:
            raise MissingValue("no value given for " + ", ".join(q.prompt for q in questions))
        return values

    def offer_to_store(self, secret_name: str) -> bool:
        return bool(self.ask(YesNo(f"Store {secret_name} in the keyring?")))

    def ask_input(self, task: Task, shown: str, masked: bool) -> str | None:
        return self.ask(CommandInput(task, shown, masked))

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer:
        # The guide stops on the failed task; the operator retries (r) or skips (s) from there.
        return Answer("stop", reason=verdict.reason)


def _close(screen: Screen[Any]) -> None:
    if screen.is_attached:
        screen.dismiss(None)
