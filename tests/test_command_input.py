"""Issue 13: a command that asks for input is answered by the operator, headless on a terminal and
in the TUI; a password prompt (echo off) is masked and its answer is never recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runbook_tui.audit.transcript import read_events
from runbook_tui.parse import load_runbook
from runbook_tui.tui.app import make_app
from runbook_tui.tui.screens.dialogs import CommandInput, ConfirmCommand
from tests.test_guard import until_true
from tests.test_reliability import Terminal, rbt, write
from tests.tui_helpers import select, type_text, until, until_event, until_screen, until_status

BOOK = """
    # Ask
    ## Steps
    - `read -r -p 'name: ' who; echo "hello $who"`
    - `read -r -s -p 'password: ' pw; echo; echo "got ${#pw} characters"`
    """
PASSWORD = "hunter2-Zq9"


def events(path: Path, kind: str) -> list[dict]:
    return [e for e in read_events(path) if e["type"] == kind]


def test_headless_on_a_terminal_passes_the_operators_answers_through(tmp_path: Path) -> None:
    book = write(tmp_path, BOOK)
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--transcript", str(transcript)), cwd=tmp_path)
    try:
        term.wait_for(b"Run it?")
        term.type(b"y\n")
        term.wait_for(b"waits for input")
        term.type(b"bob\n")
        term.wait_for(b"hello bob")
        until_true(lambda: term.output.count(b"Run it?") == 2, "the second question")
        term.type(b"y\n")
        term.wait_for(b"waits for hidden input")
        term.type(PASSWORD.encode() + b"\n")
        term.wait_for(b"got 11 characters")
        assert term.wait(30) == 0
    finally:
        term.close()
    sent = events(transcript, "input.sent")
    assert [(e["masked"], e["text"]) for e in sent] == [(False, "bob"), (True, None)]
    assert PASSWORD not in transcript.read_text()
    assert PASSWORD.encode() not in term.output, "a password is not echoed on the operator's terminal"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def run_until_asked(pilot: Any, task_id: str) -> CommandInput:
    """Confirm the task's command and wait for its question."""
    await select(pilot, task_id)
    await pilot.press("enter")
    await until_screen(pilot, ConfirmCommand)
    await pilot.press("y")
    return await until_screen(pilot, CommandInput)


async def test_the_tui_asks_for_the_line_and_masks_a_password(here: Path) -> None:
    book = write(here, BOOK)
    transcript = here / "t.jsonl"
    app = make_app(load_runbook(book), mode="paranoid", variables={}, transcript=str(transcript), theme=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, transcript, "run.started")
        question = await run_until_asked(pilot, "1.1.1")
        assert not question.masked and "name:" in question.shown
        await type_text(pilot, "ann")
        await pilot.press("enter")
        await until_status(pilot, "1.1.1", "done")
        secret = await run_until_asked(pilot, "1.1.2")
        assert secret.masked and secret.query_one("#answer").password
        await type_text(pilot, PASSWORD)
        await pilot.press("enter")
        await until_status(pilot, "1.1.2", "done")
        await until(pilot, lambda: "got 11 characters" in "\n".join(app.run_screen.query_one("#output").lines_of("1.1.2")))
    raw = transcript.read_text()
    assert PASSWORD not in raw and "hello ann" in raw
    assert [(e["masked"], e["text"]) for e in events(transcript, "input.sent")] == [(False, "ann"), (True, None)]


async def test_escape_at_the_question_stops_the_command(here: Path) -> None:
    book = write(here, BOOK)
    transcript = here / "t.jsonl"
    app = make_app(load_runbook(book), mode="paranoid", variables={}, transcript=str(transcript), theme=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, transcript, "run.started")
        await run_until_asked(pilot, "1.1.1")
        await pilot.press("escape")
        await until_status(pilot, "1.1.1", "failed")
    assert events(transcript, "input.declined")
    (finished,) = events(transcript, "task.finished")
    assert "did not answer" in finished["reason"]
