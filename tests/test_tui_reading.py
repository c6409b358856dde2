"""What the TUI shows of how a runbook was read: client input to type, and an empty runbook."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Static

from runbook_tui.audit.transcript import verify
from runbook_tui.engine.session import RunEnded
from runbook_tui.parse import load_runbook
from runbook_tui.tui.app import make_app
from tests.tui_helpers import notifications, select, until, until_event


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def test_an_empty_runbook_says_why_nothing_can_run(here: Path) -> None:
    book = here / "empty.md"
    book.write_text("# Notes\n\nJust prose, and a block of output:\n\n```\nOK\n```\n")
    app = make_app(load_runbook(book), mode="paranoid", variables={}, transcript=str(here / "t.jsonl"), theme=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, here / "t.jsonl", "run.started")
        await until(pilot, lambda: any("no steps and no commands" in m for m in notifications(app)),
                    what="the empty-runbook notice")


async def test_client_input_is_shown_with_the_command_that_opens_the_client(here: Path) -> None:
    book = here / "db.md"
    book.write_text("# DB\n\n## Steps\n\n1. Look at the clients\n\n   ```\n   $ psql -h db\n"
                    "   pgbouncer=# show clients;\n   ```\n")
    runbook = load_runbook(book)
    task = next(runbook.tasks())
    assert task.client_input == ("show clients;",), "the parser reads the session (tests/test_markdown_wiki.py)"
    app = make_app(runbook, mode="paranoid", variables={}, transcript=str(here / "t.jsonl"), theme=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, here / "t.jsonl", "run.started")
        await select(pilot, task.id)
        await pilot.pause(0.2)
        panel = app.run_screen.query_one("#task", Static)
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(panel.content)
        shown = console.export_text()
    assert "show clients;" in shown and "then type into psql" in shown


async def test_hidden_characters_are_shown_escaped_in_the_tree_and_the_task_panel(here: Path) -> None:
    book = here / "bidi.md"
    book.write_text("# Deploy\u202e\n\n## Steps\n\n1. Step \u200b one\n   - `echo safe \u202e# evil`\n")
    runbook = load_runbook(book)
    task = next(runbook.commands())
    app = make_app(runbook, mode="paranoid", variables={}, transcript=str(here / "t.jsonl"), theme=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, here / "t.jsonl", "run.started")
        await select(pilot, task.id)
        await pilot.pause(0.2)
        tree = app.run_screen.query_one("#tree")
        labels = [str(node.label) for node in tree._by_id.values()]
        panel = app.run_screen.query_one("#task", Static)
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(panel.content)
        shown = console.export_text()
    assert any("<U+202E>" in label for label in labels) and any("<U+200B>" in label for label in labels)
    assert not any("\u202e" in label or "\u200b" in label for label in labels)
    assert "<U+202E>" in shown and "\u202e" not in shown


async def test_the_run_ends_when_its_last_task_ends_and_the_export_says_so(here: Path) -> None:
    from runbook_tui.audit.export import export
    from runbook_tui.tui.screens.dialogs import ConfirmCommand
    from tests.tui_helpers import until_screen, until_status

    book = here / "short.md"
    book.write_text("# Short\n\n## Steps\n\n1. Only\n   - `echo only --x`\n")
    app = make_app(load_runbook(book), mode="paranoid", variables={}, transcript=str(here / "t.jsonl"), theme=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, here / "t.jsonl", "run.started")
        await select(pilot, "1.1.1")
        await pilot.press("enter")
        await until_screen(pilot, ConfirmCommand)
        await pilot.press("y")
        await until_status(pilot, "1.1.1", "done")
        await until_event(pilot, here / "t.jsonl", "run.finished")
        await until(pilot, lambda: any("transcript is sealed" in m for m in notifications(app)), what="the notice")
        await pilot.press("r")
        await until(pilot, lambda: any("has ended" in m for m in notifications(app)), what="no more tasks")
        for attempt in ("a", "s", "e"):  # a note, a skip, an edit: nothing more goes on the record
            await pilot.press(attempt)
        app.run_screen.set_mode("noop")
        app.run_screen.jump("1.1")
        app.run_screen.forget_value("x")
        await pilot.pause(0.3)
        assert len(app.screen_stack) == 1, "no dialog opened for a sealed run"
        assert "- **Result:** success" in export(here / "t.jsonl", "md")
    result = verify(here / "t.jsonl")
    assert result.sealed, "the transcript still ends with its seal"
    run = app.current_run
    assert run is not None
    with pytest.raises(RunEnded):
        run.note("after the end")
