"""Moving around the run's screen: headings, folding, and the running task's card."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_tui.parse import load_runbook
from runbook_tui.tui.app import make_app
from runbook_tui.tui.screens.dialogs import ConfirmCommand
from tests.tui_helpers import cursor_id, select, until, until_event, until_screen, until_status

BOOK = """# Nav

## Steps

1. First
   - `echo one --x`
   - Look at the dashboard
2. Second
   - `sleep 3`
"""


@pytest.fixture
def app_and_transcript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    book = tmp_path / "nav.md"
    book.write_text(BOOK)
    transcript = tmp_path / "t.jsonl"
    return make_app(load_runbook(book), mode="paranoid", variables={}, transcript=str(transcript), theme=None), \
        transcript


async def test_enter_on_a_heading_goes_to_its_next_task_and_left_folds(app_and_transcript) -> None:  # type: ignore[no-untyped-def]
    app, transcript = app_and_transcript
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, transcript, "run.started")
        await until(pilot, lambda: cursor_id(pilot) == "1.1.1", what="the guide on the first task")
        await select(pilot, "1.2")
        await pilot.press("enter")
        await until(pilot, lambda: cursor_id(pilot) == "1.2.1", what="the step's first task")
        assert not isinstance(app.screen, ConfirmCommand), "enter on a heading runs nothing"
        await pilot.press("left")
        await until(pilot, lambda: cursor_id(pilot) == "1.2", what="the cursor on the folded step")
        tree = app.run_screen.query_one("#tree")
        assert not tree._by_id["1.2"].is_expanded
        await pilot.press("right")
        assert tree._by_id["1.2"].is_expanded


async def test_the_running_tasks_card_says_running_and_counts(app_and_transcript) -> None:  # type: ignore[no-untyped-def]
    app, transcript = app_and_transcript
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, transcript, "run.started")
        await until(pilot, lambda: cursor_id(pilot) == "1.1.1", what="the guide on the first task")
        await select(pilot, "1.2.1")
        await pilot.press("enter")
        await until_screen(pilot, ConfirmCommand)
        await pilot.press("y")
        card = app.run_screen.query_one("#task")
        await until(pilot, lambda: "running for 1s" in str(card.border_title) or
                    "running for 2s" in str(card.border_title), 10, lambda: f"the card says {card.border_title}")
        await until_status(pilot, "1.2.1", "done")
        await select(pilot, "1.2.1")  # the guide moved on to what is still to do
        await until(pilot, lambda: str(card.border_title) == "task 1.2.1 · done", what="the card says done")


async def test_help_lists_the_keys_of_the_screen_in_front_and_escape_closes_it(app_and_transcript) -> None:  # type: ignore[no-untyped-def]
    from runbook_tui.tui.screens.dialogs import KeysHelp
    from runbook_tui.tui.screens.related import RelatedScreen

    app, transcript = app_and_transcript
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, transcript, "run.started")
        await pilot.press("question_mark")
        shown = await until_screen(pilot, KeysHelp)
        described = dict(shown.keys)
        assert "Skip the selected task (asks why)" in described.values()
        assert "Export the transcript as Markdown" in described.values()
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, KeysHelp), what="help closed")
        await pilot.press("ctrl+p")
        for char in "Help":
            await pilot.press(char)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until_screen(pilot, KeysHelp)
        await pilot.press("escape")
        app.push_screen(RelatedScreen(load_runbook(Path("nav.md")), app.current_run))
        await until_screen(pilot, RelatedScreen)
        await pilot.press("f1")
        related = await until_screen(pilot, KeysHelp)
        labels = dict(related.keys).values()
        assert "Close this runbook" in labels and "Skip the selected task (asks why)" not in labels


async def test_the_pane_draws_the_new_tasks_lines_not_the_last_ones(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in tmux: after the guide showed task 1's output as a stand-in for task 2, task 2's run
    was titled right but drawn with task 1's lines (rendered lines were cached by line number)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.md").write_text("# Two\n\n## Steps\n\n1. Both\n   - `echo first-output`\n"
                                     "   - `echo second-output`\n")
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook(tmp_path / "two.md"), mode="paranoid", variables={}, transcript=str(transcript),
                   theme=None)
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.run_screen.query_one("#log")

        def drawn() -> str:
            return "\n".join(view.render_line(y).text for y in range(view.size.height))

        await until_event(pilot, transcript, "run.started")
        await until(pilot, lambda: cursor_id(pilot) == "1.1.1", what="the guide on the first task")
        await pilot.press("enter")
        await until_screen(pilot, ConfirmCommand)
        await pilot.press("y")
        await until_status(pilot, "1.1.1", "done")
        await until(pilot, lambda: cursor_id(pilot) == "1.1.2", what="the guide on the second task")
        await until(pilot, lambda: "first-output" in drawn(), what="task 1's output, standing in")
        await pilot.press("enter")
        await until_screen(pilot, ConfirmCommand)
        await pilot.press("y")
        await until_status(pilot, "1.1.2", "done")
        await until(pilot, lambda: "second-output" in drawn(), what=lambda: f"task 2's output drawn:\n{drawn()}")
        assert "first-output" not in drawn()
