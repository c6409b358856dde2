"""The Textual app driven with Pilot: a copy of the seed deployment runbook, its seven commands
replaced by harmless stand-ins, committed in a real git repository in a temp dir.

Every test checks what the operator sees (the tree's statuses, the output pane, the screens on
the stack, notifications) and what the run wrote to its transcript.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runbook_tui.audit.transcript import verify
from runbook_tui.parse import load_runbook
from runbook_tui.tui.app import RunbookApp, make_app, make_watch_app
from runbook_tui.engine.trust import trust
from runbook_tui.tui.screens.dialogs import (
    Choose,
    ConfirmCommand,
    ConfirmStep,
    EditCommand,
    TextPrompt,
    ValuesForm,
    YesNo,
)
from runbook_tui.tui.screens.related import RelatedScreen
from runbook_tui.tui.widgets.output_pane import MAX_LINES, OutputPane
from runbook_tui.tui.widgets.run_header import RunHeader
from runbook_tui.tui.widgets.step_tree import StepTree
from tests.tui_helpers import (
    GIT_ENV,
    cursor_id,
    events,
    finished,
    make_seed_repo,
    notifications,
    output_of,
    processes_in,
    run_test,
    select,
    type_text,
    until,
    until_event,
    until_idle,
    until_screen,
    until_status,
    wait_no_processes,
)

SIZE = (120, 40)
FIRST_TASK = "4.1.1"


class Run:
    """One app on a seed copy: the app, the runbook file, the transcript, the temp dir."""

    def __init__(self, app: RunbookApp, book: Path, transcript: Path, root: Path) -> None:
        self.app = app
        self.book = book
        self.transcript = transcript
        self.root = root

    @property
    def tree(self) -> StepTree:
        return self.app.query_one(StepTree)

    @property
    def pane(self) -> OutputPane:
        return self.app.query_one("#output", OutputPane)

    def lines(self, task_id: str) -> list[str]:
        return self.pane.lines_of(task_id)

    def types(self, kind: str | None = None) -> list[str]:
        return [e["type"] for e in events(self.transcript, kind)]


@pytest.fixture
def seed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Run]]:
    """Build the app on a fresh seed copy; the cwd is the copy's repository."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no user settings, keymap or trust
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    def build(overrides: dict[str, str] | None = None, *, mode: str = "paranoid",
              variables: dict[str, str] | None = None, trusted: bool = False) -> Run:
        book = make_seed_repo(tmp_path, overrides)
        monkeypatch.chdir(book.parent)
        if trusted:
            trust(load_runbook(book))
        transcript = tmp_path / "t.jsonl"
        app = make_app(load_runbook(book), mode=mode, variables=variables or {}, transcript=str(transcript),
                       theme=None)
        return Run(app, book, transcript, tmp_path)

    yield build
    for pid in processes_in(tmp_path):  # only if a test failed half-way: no command outlives it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def ready(pilot: Any, run: Run) -> None:
    """The run has started (run.started is on disk) and the guide is on the first task."""
    await until_event(pilot, run.transcript, "run.started")
    await until(pilot, lambda: cursor_id(pilot) == FIRST_TASK, 5, "the cursor on the first task")


async def run_confirmed(pilot: Any, run: Run, task_id: str) -> ConfirmCommand:
    """Select a command task and press enter; the confirmation it asks."""
    await select(pilot, task_id)
    await pilot.press("enter")
    return await until_screen(pilot, ConfirmCommand)


# ---- running, confirming, settling ------------------------------------------------------------

async def test_command_runs_after_confirmation(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        assert str(run.transcript) not in run.app.export_screenshot(), "no transcript path on screen"
        dialog = await run_confirmed(pilot, run, "4.3.1")
        assert str(run.transcript) not in run.app.export_screenshot()
        assert dialog.request.command == "echo check-ok"
        assert dialog.request.risk == "low" and dialog.request.typed_word is None
        assert dialog.request.cwd == str(run.book.parent)
        assert "command.started" not in run.types(), "nothing runs before the operator says yes"
        await pilot.press("y")
        await until_status(pilot, "4.3.1", "done")
        await until(pilot, lambda: "check-ok" in run.lines("4.3.1"), what="the output in the pane")
        assert "$ echo check-ok" in run.lines("4.3.1")
        assert any(line.startswith("[exit 0,") for line in run.lines("4.3.1"))
        assert len(run.app.screen_stack) == 1
        assert cursor_id(pilot) == "4.3.2", "the guide moves on to the next unsettled task"
        assert run.app.query_one(RunHeader).done == 1
    asked = events(run.transcript, "confirm.asked")[-1]
    assert asked["task_id"] == "4.3.1" and asked["risk"] == "low" and asked["prompt"] == "echo check-ok"
    answered = events(run.transcript, "confirm.answered")[-1]
    assert answered["answer"] == "run" and answered["typed"] is None
    started = events(run.transcript, "command.started")[-1]
    assert started["command"] == "echo check-ok" and started["cwd"] == str(run.book.parent)
    assert "check-ok" in output_of(run.transcript, "4.3.1")
    assert events(run.transcript, "command.finished")[-1]["exit_code"] == 0
    (done,) = finished(run.transcript, "4.3.1")
    assert done["status"] == "done" and done["exit_code"] == 0
    assert run.types().index("confirm.answered") < run.types().index("command.started")
    facts = events(run.transcript, "run.started")[0]["git"]
    assert facts["branch"] == "main" and facts["dirty"] is False and facts["runbook_uncommitted"] is False


async def test_not_confirmed_runs_nothing(seed_run: Callable[..., Run]) -> None:
    run = seed_run({"check": "touch never-ran.marker"})
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await run_confirmed(pilot, run, "4.3.1")
        await pilot.press("n")
        await until_status(pilot, "4.3.1", "not_confirmed")
        assert cursor_id(pilot) == "4.3.1", "the guide stays on a task that was not done"
    assert not (run.book.parent / "never-ran.marker").exists()
    assert "command.started" not in run.types()
    assert finished(run.transcript, "4.3.1")[0]["status"] == "not_confirmed"


async def test_manual_task_done_with_enter(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await pilot.press("enter")
        await until_status(pilot, FIRST_TASK, "manual")
        assert len(run.app.screen_stack) == 1, "a manual check asks nothing more than enter"
        await until(pilot, lambda: cursor_id(pilot) == "4.1.2", what="the guide on the next task")
        await pilot.press("enter")
        await until_status(pilot, "4.1.2", "manual")
        assert run.app.query_one(RunHeader).done == 2
    asked = [e for e in events(run.transcript, "confirm.asked") if e["task_id"] == FIRST_TASK]
    assert asked and asked[0]["kind"] == "manual"
    assert finished(run.transcript, FIRST_TASK)[0]["status"] == "manual"
    assert finished(run.transcript, "4.1.2")[0]["status"] == "manual"
    assert "command.started" not in run.types()


async def test_skip_asks_for_a_reason(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await select(pilot, "4.2.1")
        await pilot.press("s")
        prompt = await until_screen(pilot, TextPrompt)
        assert "4.2.1" in prompt.question
        await pilot.press("enter")  # an empty reason is not a reason
        await pilot.pause()
        assert isinstance(run.app.screen, TextPrompt)
        await pilot.press("escape")  # cancelling skips nothing
        await until(pilot, lambda: len(run.app.screen_stack) == 1)
        assert "4.2.1" not in run.tree.status
        await pilot.press("s")
        await until_screen(pilot, TextPrompt)
        await type_text(pilot, "done in CI")
        await pilot.press("enter")
        await until_status(pilot, "4.2.1", "skipped")
        assert len(run.app.screen_stack) == 1
        await until(pilot, lambda: cursor_id(pilot) == "4.2.2", what="the guide on the next task")
    (skip,) = finished(run.transcript, "4.2.1")
    assert skip["status"] == "skipped" and skip["reason"] == "done in CI"


async def test_failed_command_then_retry_after_fixing_it(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await run_confirmed(pilot, run, "4.3.2")
        await pilot.press("y")
        await until_status(pilot, "4.3.2", "failed")
        await until(pilot, lambda: any(line.startswith("[exit 3,") for line in run.lines("4.3.2")),
                    what="the exit code in the output pane")
        await until_idle(pilot)
        assert cursor_id(pilot) == "4.3.2", "the guide stays on the failed task"
        assert any("4.3.2 failed" in message for message in notifications(run.app))
        assert "failed" in str(run.app.query_one("#task").border_title)
        # The operator fixes the cause, then retries.
        (run.book.parent / "fixed.marker").touch()
        await pilot.press("r")
        dialog = await until_screen(pilot, ConfirmCommand)
        assert dialog.request.command.startswith("sh -c")
        await pilot.press("y")
        await until_status(pilot, "4.3.2", "done")
        await until(pilot, lambda: "schema-ok" in run.lines("4.3.2"), what="the retry's output")
        assert any(line.startswith("[exit 3,") for line in run.lines("4.3.2")), "the failure stays visible"
    outcomes = finished(run.transcript, "4.3.2")
    assert [(e["status"], e.get("exit_code")) for e in outcomes] == [("failed", 3), ("done", 0)]
    assert [e["exit_code"] for e in events(run.transcript, "command.finished")] == [3, 0]
    assert "schema-ok" in output_of(run.transcript, "4.3.2")


async def test_always_failing_command_keeps_its_exit_code(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        dialog = await run_confirmed(pilot, run, "5.2.3")
        assert dialog.request.command == "false --tail=100" and dialog.request.risk == "high"
        await type_text(pilot, "yes")
        await pilot.press("enter")
        await until_status(pilot, "5.2.3", "failed")
        await until(pilot, lambda: any(line.startswith("[exit 1,") for line in run.lines("5.2.3")))
        await until_idle(pilot)
        assert cursor_id(pilot) == "5.2.3"
    (outcome,) = finished(run.transcript, "5.2.3")
    assert outcome["status"] == "failed" and outcome["exit_code"] == 1


@pytest.mark.parametrize(("variables", "word"), [({}, "yes"), ({"ENVIRONMENT": "staging"}, "staging")])
async def test_high_risk_needs_the_typed_word(seed_run: Callable[..., Run], variables: dict[str, str],
                                              word: str) -> None:
    run = seed_run(variables=variables)
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        dialog = await run_confirmed(pilot, run, "5.1.1")  # Resolution Steps of a High-severity runbook
        assert dialog.request.risk == "high" and dialog.request.typed_word == word
        assert not dialog.query("#run"), "no one-key Run button on a high-risk command"
        await pilot.press("y")  # a letter, not a shortcut, while the word is typed
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(run.app.screen, ConfirmCommand)
        await type_text(pilot, "prod" if word != "yes" else "no")
        await pilot.press("enter")
        await until(pilot, lambda: any("nothing was run" in m for m in notifications(run.app)),
                    what="the wrong-word warning")
        assert isinstance(run.app.screen, ConfirmCommand), "the wrong word does not run it"
        assert "command.started" not in run.types()
        await type_text(pilot, word)
        await pilot.press("enter")
        await until_status(pilot, "5.1.1", "done")
        await until(pilot, lambda: "built artifact-1" in run.lines("5.1.1"))
    asked = events(run.transcript, "confirm.asked")[-1]
    assert asked["risk"] == "high" and asked["typed_word"] == word
    (answered,) = events(run.transcript, "confirm.answered")
    assert answered["answer"] == "run" and answered["typed"] == word
    assert run.types("command.started") == ["command.started"]


async def test_editing_a_high_risk_command_still_needs_the_typed_word(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        dialog = await run_confirmed(pilot, run, "5.1.1")
        await pilot.press("tab", "tab", "tab")  # from the word's field to the Edit button
        assert run.app.focused is not None and run.app.focused.id == "edit"
        await pilot.press("enter")
        await until_screen(pilot, EditCommand)
        await pilot.press("end", "2")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: run.app.screen is dialog and dialog.edited is not None,
                    what="the edited command back in the dialog, waiting for the word")
        assert dialog.edited == "printf 'built %s\\n' artifact-12"
        assert "command.started" not in run.types(), "editing is not confirming"
        await pilot.click("#typed")
        await type_text(pilot, "yes")
        await pilot.press("enter")
        await until_status(pilot, "5.1.1", "done")
        await until(pilot, lambda: "built artifact-12" in run.lines("5.1.1"))
    answered = events(run.transcript, "confirm.answered")[-1]
    assert answered["typed"] == "yes" and answered["edited"] is True
    started = events(run.transcript, "command.started")[-1]
    assert started["edited"] is True and started["run_command"].endswith("artifact-12")


async def test_step_mode_asks_once_per_step(seed_run: Callable[..., Run]) -> None:
    run = seed_run(mode="step", trusted=True)
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await select(pilot, "4.3.1")
        await pilot.press("enter")
        question = await until_screen(pilot, ConfirmStep)
        assert "4.3" in question.title_text
        assert [r.command for r in question.requests] == ["echo check-ok", run.app.runbook.find("4.3.2").command]
        await pilot.press("y")
        await until_status(pilot, "4.3.1", "done")
        (run.book.parent / "fixed.marker").touch()
        await until(pilot, lambda: cursor_id(pilot) == "4.3.2")
        await pilot.press("enter")  # same step: no second question
        await until_status(pilot, "4.3.2", "done")
        assert not any(isinstance(s, (ConfirmStep, ConfirmCommand)) for s in run.app.screen_stack)
    assert len(events(run.transcript, "confirm.answered")) == 1
    allowed = events(run.transcript, "policy.allowed")
    assert [e["task_id"] for e in allowed] == ["4.3.1", "4.3.2"]
    assert all("step" in e["reason"] for e in allowed)


async def test_step_mode_on_an_untrusted_runbook_asks_every_command(seed_run: Callable[..., Run]) -> None:
    run = seed_run(mode="step")
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        assert run.app.query_one(RunHeader).mode == "paranoid"
        assert any("needs a trusted runbook" in m for m in notifications(run.app))
        dialog = await run_confirmed(pilot, run, "4.3.1")
        assert "not trusted" in dialog.request.reason


async def test_step_mode_no_runs_nothing(seed_run: Callable[..., Run]) -> None:
    run = seed_run({"check": "touch step-ran.marker"}, mode="step", trusted=True)
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await select(pilot, "4.3.1")
        await pilot.press("enter")
        await until_screen(pilot, ConfirmStep)
        await pilot.press("n")
        await until(pilot, lambda: run.tree.status.get("4.3.1") not in (None, "running"), what="4.3.1 settled")
        await until_idle(pilot)
        status = run.tree.status["4.3.1"]
    assert not (run.book.parent / "step-ran.marker").exists(), "the command ran after the operator said no"
    assert status == "not_confirmed"
    assert "command.started" not in run.types()


async def test_variable_is_asked_for_and_passed_as_environment(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await select(pilot, "5.1.2")
        await pilot.press("enter")
        form = await until_screen(pilot, ValuesForm)
        assert [q.name for q in form.questions] == ["WHO"]
        assert "$WHO" in [q.prompt for q in form.questions]
        await pilot.press("enter")  # an empty value is not a value
        await until(pilot, lambda: any(m.startswith("Still needed: $WHO") for m in notifications(run.app)))
        assert isinstance(run.app.screen, ValuesForm)
        await type_text(pilot, "alice")
        await pilot.press("enter")
        dialog = await until_screen(pilot, ConfirmCommand)
        assert dialog.request.command == "echo migrated-by-$WHO", "the value is not pasted into the command"
        assert "WHO" in dialog.request.env_names
        await type_text(pilot, "yes")
        await pilot.press("enter")
        await until_status(pilot, "5.1.2", "done")
        await until(pilot, lambda: "migrated-by-alice" in run.lines("5.1.2"))
    started = events(run.transcript, "command.started")[-1]
    assert started["run_command"] == "echo migrated-by-$WHO" and "WHO" in started["env_names"]
    assert "migrated-by-alice" in output_of(run.transcript, "5.1.2")


async def test_the_values_form_leaves_the_output_in_view(seed_run: Callable[..., Run]) -> None:
    """The value asked for is often in the output just printed: the form must not cover it."""
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await select(pilot, "4.3.1")
        await pilot.press("enter")
        await until_screen(pilot, ConfirmCommand)
        await pilot.press("y")
        await until_status(pilot, "4.3.1", "done")
        await select(pilot, "5.1.2")
        await pilot.press("enter")
        form = await until_screen(pilot, ValuesForm)
        await pilot.pause()
        pane = run.app.run_screen.query_one("#output", OutputPane)
        box = form.query_one("#dialog-box")
        assert box.region.height > 0 and pane.region.height > 3
        assert not box.region.overlaps(pane.region), (box.region, pane.region)
        assert form.query_one("#value-0").region.height > 0, "the field itself is on screen"
        await pilot.press("escape")


async def test_cancelling_the_variable_form_runs_nothing(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await select(pilot, "5.1.2")
        await pilot.press("enter")
        await until_screen(pilot, ValuesForm)
        await pilot.press("escape")
        await until_idle(pilot)
        await until(pilot, lambda: any(m.startswith("Not run: ") for m in notifications(run.app)))
        assert "5.1.2" not in run.tree.status
    assert "confirm.asked" not in run.types() and "command.started" not in run.types()


async def test_edited_command_is_recorded_as_edited(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await select(pilot, "4.3.1")
        await pilot.press("e")
        editor = await until_screen(pilot, EditCommand)
        assert editor.query_one("#editor").text == "echo check-ok"
        await pilot.press("end")
        await type_text(pilot, "-edited")
        await pilot.press("ctrl+s")
        dialog = await until_screen(pilot, ConfirmCommand)
        assert dialog.request.command == "echo check-ok-edited"
        await pilot.press("y")
        await until_status(pilot, "4.3.1", "done")
        await until(pilot, lambda: "check-ok-edited" in run.lines("4.3.1"))
    asked = events(run.transcript, "confirm.asked")[-1]
    assert asked["edited"] is True and asked["prompt"] == "echo check-ok-edited"
    started = events(run.transcript, "command.started")[-1]
    assert started["edited"] is True
    assert started["run_command"] == "echo check-ok-edited" and started["command"] == "echo check-ok"


async def test_note_goes_to_the_transcript(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await select(pilot, "4.3.1")
        await pilot.press("a")
        await until_screen(pilot, TextPrompt)
        await type_text(pilot, "paged DBA")
        await pilot.press("enter")
        await until(pilot, lambda: "Note added to the transcript." in notifications(run.app))
        note = await until_event(pilot, run.transcript, "note")
    assert note["text"] == "paged DBA" and note["task_id"] == "4.3.1"


async def test_related_runbooks_are_offered_and_escape_cancels(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    (run.book.parent / "BACKUP_RESTORE.md").unlink()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await pilot.press("o")
        choose = await until_screen(pilot, Choose)
        assert choose.items == ["Rollback Procedures (./ROLLBACK.md)",
                                "Backup and Restore (./BACKUP_RESTORE.md)  [missing file]",
                                "Incident Response Runbook (./INCIDENT_RESPONSE.md)"]
        await pilot.press("escape")
        await until(pilot, lambda: len(run.app.screen_stack) == 1)
        assert cursor_id(pilot) == FIRST_TASK
    assert "runbook.opened" not in run.types()


async def test_related_runbook_opens_on_top_and_escape_comes_back(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await pilot.press("o")
        await until_screen(pilot, Choose)
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(run.app.screen, RelatedScreen) or not run.app.is_running,
                    what="the related runbook on top")
        assert run.app.is_running, "the app crashed opening the related runbook"
        related = await until_screen(pilot, RelatedScreen)
        assert related.runbook.title == "Backup and Restore"
        assert [type(s) for s in run.app.screen_stack][1:] == [RelatedScreen]
        assert related.query_one(StepTree).runbook is related.runbook
        opened = await until_event(pilot, run.transcript, "runbook.opened")
        await pilot.press("escape")
        await until(pilot, lambda: len(run.app.screen_stack) == 1, what="the run's screen back")
        assert cursor_id(pilot) == FIRST_TASK, "the run is where the operator left it"
        closed = await until_event(pilot, run.transcript, "runbook.closed")
    target = str((run.book.parent / "BACKUP_RESTORE.md").resolve())
    assert opened["path"] == target and opened["title"] == "Backup and Restore"
    assert closed["path"] == target
    assert "command.started" not in run.types(), "opening a related runbook runs nothing"


async def test_keys_on_a_related_runbook_do_not_act_on_the_run_underneath(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await pilot.press("o")
        await until_screen(pilot, Choose)
        await pilot.press("enter")
        await until_screen(pilot, RelatedScreen)
        await pilot.press("s", "e", "o")  # skip, edit and open-related belong to the run's screen
        await pilot.pause(0.3)
        assert [type(s) for s in run.app.screen_stack][1:] == [RelatedScreen]
        await pilot.press("escape")
        await until(pilot, lambda: len(run.app.screen_stack) == 1)
        await pilot.press("s")
        await until_screen(pilot, TextPrompt)  # on the run's screen, s skips (and asks why)
    assert not finished(run.transcript, FIRST_TASK), "no key pressed on the related runbook acted on the run"
    assert run.types("runbook.opened") == ["runbook.opened"] and run.types("runbook.closed") == ["runbook.closed"]


async def test_running_a_related_runbook_ends_this_run_and_names_the_next(seed_run: Callable[..., Run]) -> None:
    """From the deployment to the rollback runbook at 3 a.m.: this run is ended and says where
    the next one is recorded; the CLI then starts that run (tested under tmux)."""
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await pilot.press("enter")
        await until_status(pilot, FIRST_TASK, "manual")
        await pilot.press("o")
        await until_screen(pilot, Choose)
        await pilot.press("enter")
        related = await until_screen(pilot, RelatedScreen)
        assert related.runbook.title == "Rollback Procedures"
        await pilot.press("r")
        await until_screen(pilot, YesNo)
        await pilot.press("y")
        await until_exited(pilot, run.app)
    assert run.app.next_run is not None
    following, next_transcript = run.app.next_run
    assert following.title == "Rollback Procedures"
    switched = events(run.transcript, "runbook.switched")[-1]
    assert switched["path"] == str((run.book.parent / "ROLLBACK.md").resolve())
    assert switched["transcript"] == str(next_transcript) and switched["sha256"] == following.sha256
    aborted = events(run.transcript)[-1]
    assert aborted["type"] == "run.aborted"
    assert aborted["reason"].startswith("operator switched to the related runbook Rollback Procedures")
    assert verify(run.transcript).ok


async def test_no_switch_while_a_command_runs(seed_run: Callable[..., Run]) -> None:
    run = seed_run({"check": "sleep 30"})
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await run_confirmed(pilot, run, "4.3.1")
        await pilot.press("y")
        await until_status(pilot, "4.3.1", "running")
        run.app.run_screen.switch_to(run.app.runbook)
        await until(pilot, lambda: any("is running" in n for n in notifications(run.app)))
        assert not isinstance(run.app.screen, YesNo) and run.app.next_run is None
        await pilot.press("ctrl+c")
        await until_screen(pilot, YesNo)
        await pilot.press("y")
        await until_status(pilot, "4.3.1", "failed", timeout=20)
    assert "runbook.switched" not in run.types()


async def test_export_writes_markdown_next_to_the_transcript(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await pilot.press("enter")
        await until_status(pilot, FIRST_TASK, "manual")
        await pilot.press("x")
        exported = run.transcript.with_suffix(".md")
        await until(pilot, lambda: any(m.startswith("Exported to ") for m in notifications(run.app)))
        assert exported.exists()
        # The export's path (beside the transcript) is the one transcript location shown on screen.
        assert f"Exported to {exported}" in notifications(run.app)
    assert "Deployment Procedures" in exported.read_text(encoding="utf-8")


# ---- stopping -------------------------------------------------------------------------------

async def start_sleep(pilot: Any, run: Run) -> None:
    await ready(pilot, run)
    await run_confirmed(pilot, run, "4.3.1")
    await pilot.press("y")
    await until_status(pilot, "4.3.1", "running")
    await until(pilot, lambda: processes_in(run.root), what="the sleep to be running")


async def until_exited(pilot: Any, app: RunbookApp, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while app.is_running and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not app.is_running, "the app did not exit"


async def test_quit_while_running_asks_then_stops_everything(seed_run: Callable[..., Run]) -> None:
    run = seed_run({"check": "sleep 30"})
    async with run_test(run.app, SIZE, stop_commands=False) as pilot:
        await start_sleep(pilot, run)
        await pilot.press("q")
        question = await until_screen(pilot, YesNo)
        assert "running" in question.question and "4.3.1" in question.question
        await pilot.press("n")  # no: the command goes on
        await until(pilot, lambda: len(run.app.screen_stack) == 1)
        assert run.tree.status["4.3.1"] == "running" and processes_in(run.root)
        await pilot.press("q")
        await until_screen(pilot, YesNo)
        await pilot.press("y")
        await until_exited(pilot, run.app)
    assert run.app.return_value == 1
    assert wait_no_processes(run.root) == [], "the command's process group is gone"
    kinds = run.types()
    assert kinds[-1] == "run.aborted"
    stopped = events(run.transcript, "command.finished")
    assert stopped and stopped[-1]["aborted"] is True, "how the command ended is on record"
    assert kinds.index("command.finished") < len(kinds) - 1
    assert verify(run.transcript).ok


async def test_quit_while_running_ends_the_run_once(seed_run: Callable[..., Run]) -> None:
    run = seed_run({"check": "sleep 30"})
    async with run_test(run.app, SIZE, stop_commands=False) as pilot:
        await start_sleep(pilot, run)
        await pilot.press("q")
        await until_screen(pilot, YesNo)
        await pilot.press("y")
        await until_exited(pilot, run.app)
    assert wait_no_processes(run.root) == []
    ends = [e for e in events(run.transcript) if e["type"] in ("run.aborted", "run.finished")]
    assert len(ends) == 1, f"the run ended {len(ends)} times: {[e.get('reason') for e in ends]}"


async def test_ctrl_c_interrupts_the_running_command_and_the_run_goes_on(seed_run: Callable[..., Run]) -> None:
    run = seed_run({"check": "sleep 30"})
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await pilot.press("ctrl+c")
        await until(pilot, lambda: "No command is running." in notifications(run.app))
        assert len(run.app.screen_stack) == 1
        await start_sleep(pilot, run)
        await pilot.press("ctrl+c")
        question = await until_screen(pilot, YesNo)
        assert "4.3.1" in question.question
        await pilot.press("y")
        await until_status(pilot, "4.3.1", "failed", timeout=15)
        assert wait_no_processes(run.root) == [], "the command's process group is gone"
        await until_idle(pilot)
        assert run.app.is_running and cursor_id(pilot) == "4.3.1"
        # The run goes on: the next task can be done.
        await select(pilot, "4.1.1")
        await pilot.press("enter")
        await until_status(pilot, "4.1.1", "manual")
    stopped = events(run.transcript, "command.finished")[-1]
    assert stopped["task_id"] == "4.3.1" and stopped["aborted"] is True
    assert finished(run.transcript, "4.3.1")[0]["status"] == "failed"
    assert "run.aborted" not in run.types()


async def test_quit_when_idle_ends_the_transcript(seed_run: Callable[..., Run]) -> None:
    run = seed_run()
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await pilot.press("enter")
        await until_status(pilot, FIRST_TASK, "manual")
        await pilot.press("q")
        await until_exited(pilot, run.app)
    assert run.app.return_value == 1, "tasks were left: the run was aborted"
    aborted = events(run.transcript)[-1]
    assert aborted["type"] == "run.aborted" and "15 task(s) left" in aborted["reason"]
    assert verify(run.transcript).ok


# ---- modes, watching, floods ----------------------------------------------------------------------

async def test_noop_mode_shows_what_would_run_and_runs_nothing(seed_run: Callable[..., Run]) -> None:
    run = seed_run({"check": "touch noop-ran.marker"}, mode="noop")
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        assert run.app.query_one(RunHeader).mode == "noop"
        await select(pilot, "4.3.1")
        await pilot.press("enter")
        await until_status(pilot, "4.3.1", "planned")
        assert len(run.app.screen_stack) == 1, "noop asks nothing"
        await until(pilot, lambda: "touch noop-ran.marker" in run.lines("4.3.1"))
        assert any(line.startswith("would run in ") for line in run.lines("4.3.1"))
        await until(pilot, lambda: cursor_id(pilot) == "4.3.2")
    planned = events(run.transcript, "command.planned")[-1]
    assert planned["task_id"] == "4.3.1" and planned["run_command"] == "touch noop-ran.marker"
    assert "command.started" not in run.types()
    assert not (run.book.parent / "noop-ran.marker").exists()


async def test_flood_of_output_does_not_stop_the_keys(seed_run: Callable[..., Run]) -> None:
    # The flood goes on until the test has seen its keys handled, so "before it finished" is certain.
    run = seed_run({"check": "sh -c 'until test -e stop.marker; do seq 20000; done'"})
    async with run_test(run.app, SIZE) as pilot:
        await ready(pilot, run)
        await run_confirmed(pilot, run, "4.3.1")
        await pilot.press("y")
        await until_status(pilot, "4.3.1", "running")
        await until(pilot, lambda: len(run.lines("4.3.1")) > 1000, 20, "the flood in the pane")
        # simulate_key posts the key like a terminal would; Pilot.press would also wait for the screen
        # to go idle, which it does not do while the flood is being drawn.
        at = cursor_id(pilot)
        run.app.simulate_key("j")
        await until(pilot, lambda: cursor_id(pilot) != at, 20, "j to move the cursor during the flood")
        moved = cursor_id(pilot)
        run.app.simulate_key("k")
        await until(pilot, lambda: cursor_id(pilot) == at, 20, "k to move the cursor back during the flood")
        assert moved != at
        assert run.tree.status["4.3.1"] == "running", "the keys were handled while the flood ran"
        (run.book.parent / "stop.marker").touch()
        await until_status(pilot, "4.3.1", "done", timeout=30)
        await until_idle(pilot)
        lines = run.lines("4.3.1")
        assert MAX_LINES - 5 <= len(lines) <= MAX_LINES, "the pane keeps a bounded tail"
    outputs = events(run.transcript, "output")
    assert sum(e["text"].count("\n") for e in outputs) > 100000, "the whole flood is in the transcript"
    assert verify(run.transcript).ok


def shown_rows(view: Any) -> str:
    """The text of the rows a LogView draws now."""
    return "\n".join("".join(segment.text for segment in view.render_line(y))
                     for y in range(view.scrollable_content_region.height))


async def test_during_a_flood_the_pane_redraws_less_often_but_never_loses_the_tail() -> None:
    """A drain that brings more lines than the pane keeps replaces the whole Log; while that goes
    on the pane redraws a few times a second, and switching tasks still shows everything."""
    from textual.app import App, ComposeResult

    from runbook_tui.tui.widgets.log_view import LogView

    class PaneApp(App[None]):
        def compose(self) -> ComposeResult:
            yield OutputPane(id="output")

    app = PaneApp()
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(OutputPane)
        pane.feed("t", "".join(f"flood-{i}\n" for i in range(MAX_LINES + 100)))
        pane.show("t")
        assert pane.lines_of("t")[-1] == f"flood-{MAX_LINES + 99}"
        pane.feed("t", "after\n")
        pane.drain()  # right after a drain that brought a flood: held back for a moment
        assert pane.lines_of("t")[-1] == f"flood-{MAX_LINES + 99}"
        pane.show("t")  # ...but a switch of task shows everything that arrived
        assert pane.lines_of("t")[-1] == "after"
        pane.feed("t", "quiet\n")
        await until(pilot, lambda: pane.lines_of("t")[-1] == "quiet", 5, "the timer to show the tail")
        view = app.query_one(LogView)
        await until(pilot, lambda: "quiet" in shown_rows(view), 5, "the tail on screen")


async def test_watch_app_shows_the_statuses_of_a_headless_run(seed_run: Callable[..., Run],
                                                              tmp_path: Path) -> None:
    run = seed_run()
    (run.book.parent / "fixed.marker").touch()
    transcript = tmp_path / "headless.jsonl"
    trusted = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "runbook_tui", "trust", str(run.book)], check=False,
        capture_output=True, text=True, timeout=60)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "runbook_tui", "run", str(run.book), "--yes", "--confirm-high-risk",
         "--var", "WHO=ci", "--transcript", str(transcript)],
        check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, cwd=run.book.parent,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # 5.2.3 (`false`) fails the run
    expected = {e["task_id"]: e["status"] for e in events(transcript, "task.finished")}
    assert expected["5.2.3"] == "failed" and expected["4.3.1"] == "done" and expected["4.1.1"] == "manual"
    before = transcript.read_bytes()
    watch = make_watch_app(str(transcript), theme=None)
    async with run_test(watch, SIZE) as pilot:
        tree = watch.query_one(StepTree)
        await until(pilot, lambda: tree.status == expected, what=f"the statuses {expected}")
        assert watch.query_one(RunHeader).mode == "watch (read-only)"
        await until(pilot, lambda: "check-ok" in watch.query_one("#output", OutputPane).lines_of("4.3.1"))
        await pilot.press("s", "a")
        await pilot.pause()
        assert len(watch.screen_stack) == 1, "a watcher cannot skip or add notes"
        await pilot.press("q")
        await until_exited(pilot, watch)
    assert watch.return_value == 0
    assert transcript.read_bytes() == before, "the watcher wrote nothing"


# ---- ctrl+q, Textual's own quit key -----------------------------------------------------------

@pytest.mark.parametrize("scenario", [
    "question",
    "running",
])
async def test_ctrl_q_ends_the_run_like_q(seed_run: Callable[..., Run], scenario: str) -> None:
    run = seed_run({"check": "sleep 30"})
    async with run_test(run.app, SIZE, stop_commands=False) as pilot:
        await ready(pilot, run)
        await run_confirmed(pilot, run, "4.3.1")
        if scenario == "running":
            await pilot.press("y")
            await until_status(pilot, "4.3.1", "running")
            await until(pilot, lambda: processes_in(run.root), what="the sleep to be running")
        await pilot.press("ctrl+q")
        question = await until_screen(pilot, YesNo)  # it asks first, as q does
        assert "Interrupt it and quit?" in question.question
        await pilot.press("y")
        await until_exited(pilot, run.app, timeout=3)
    assert run.app.return_value == 1
    assert wait_no_processes(run.root) == [], "the command outlived the app"
    kinds = run.types()
    assert kinds[-1] == "run.aborted", kinds
    assert verify(run.transcript).ok
