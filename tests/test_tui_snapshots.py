"""Visual regressions: SVG snapshots of the main screen, the dialogs and each bundled theme.

Deterministic by construction: a fixed terminal size, the header's clock frozen at 00:00,
command durations frozen, fixed git facts, no user themes, the transcript in a temp dir, and
no blinking cursor. Update with `pytest tests/test_tui_snapshots.py --snapshot-update` and look
at every changed SVG before committing it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.widgets import Input

from runbook_tui.engine import runner
from runbook_tui.integrations import git as git_integration
from runbook_tui.parse import load_runbook
from runbook_tui.tui.app import RunbookApp, make_app
from runbook_tui.tui.screens.dialogs import ConfirmCommand, ValuesForm
from runbook_tui.tui.widgets import run_header
from tests.paths import REPO, RUNBOOKS
from tests.tui_helpers import (
    answer_questions_left_open,
    cursor_id,
    events,
    make_seed_repo,
    select,
    until,
    until_screen,
    until_status,
)

SIZE = (120, 40)
DEMO = RUNBOOKS / "demo.md"
THEMES = sorted(p.stem for p in (REPO / "themes").glob("*.yaml"))
GIT_FACTS = {
    "repo": "/srv/releases", "user": "Test Operator", "email": "operator@example.invalid", "shallow": False,
    "remote": "https://git.example.invalid/releases.git", "head": "0123456789abcdef0123456789abcdef01234567",
    "branch": "main", "tag": None, "dirty": False, "runbook_last_commit": "0123456789abcdef0123456789abcdef01234567",
    "runbook_uncommitted": False,
}
FROZEN_DURATION = 0.042


@pytest.fixture
def frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., RunbookApp]:
    """A builder of apps whose screens do not depend on the clock, the machine or the user."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no user settings, keymap or themes
    monkeypatch.setattr(run_header, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    monkeypatch.setattr(git_integration, "repo_facts", lambda path: dict(GIT_FACTS))
    real_wait = runner.PtyProcess.wait

    def wait(self: runner.PtyProcess, timeout: float | None = None) -> runner.ExitStatus | None:
        status = real_wait(self, timeout)
        return None if status is None else dataclasses.replace(status, duration=FROZEN_DURATION)

    monkeypatch.setattr(runner.PtyProcess, "wait", wait)
    monkeypatch.chdir("/")  # the confirmation shows the cwd: one that is the same everywhere

    def build(book: Path = DEMO, theme: str | None = None, cwd: Path | None = None) -> RunbookApp:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        transcript = tmp_path / "t.jsonl"
        app = make_app(load_runbook(book), mode="paranoid", variables={}, transcript=str(transcript), theme=theme)
        app.transcript_for_tests = transcript  # type: ignore[attr-defined]
        answer_questions_left_open(app)  # the snapshot is taken with a question open; release it after
        return app

    return build


async def started(pilot: Any, first: str = "5.1.1") -> None:
    """run.started is on disk, the guide is on the first task, and the step has rendered."""
    app = pilot.app
    await until(pilot, lambda: events(app.transcript_for_tests, "run.started"), what="run.started")
    await until(pilot, lambda: cursor_id(pilot) == first, what=f"the cursor on {first}")
    await pilot.pause()


def no_blink(screen: Any) -> None:
    for field in screen.query(Input):
        field.cursor_blink = False


async def question(pilot: Any, task_id: str, kind: type) -> None:
    """Enter on a task, wait for the question it asks; answer it (with None) after the snapshot."""
    await started(pilot)
    await select(pilot, task_id)
    await pilot.press("enter")
    screen = await until_screen(pilot, kind)
    no_blink(screen)
    await pilot.pause()


def test_main_screen_demo(snap_compare: Any, frozen: Callable[..., RunbookApp]) -> None:
    assert snap_compare(frozen(), terminal_size=SIZE, run_before=started)


def test_confirmation_dialog(snap_compare: Any, frozen: Callable[..., RunbookApp]) -> None:
    async def run_before(pilot: Any) -> None:
        await question(pilot, "5.2.1", ConfirmCommand)  # the demo's multi-line workspace script

    assert snap_compare(frozen(), terminal_size=SIZE, run_before=run_before)


def test_typed_confirmation_dialog(snap_compare: Any, frozen: Callable[..., RunbookApp]) -> None:
    async def run_before(pilot: Any) -> None:
        await question(pilot, "8.3.1", ConfirmCommand)  # pretend-restart, risk=high
        assert pilot.app.screen.request.typed_word == "yes"

    assert snap_compare(frozen(), terminal_size=SIZE, run_before=run_before)


def test_variable_form(snap_compare: Any, frozen: Callable[..., RunbookApp]) -> None:
    async def run_before(pilot: Any) -> None:
        await question(pilot, "8.1.1", ValuesForm)  # greet: $GREETING_NAME is defined nowhere
        assert [q.name for q in pilot.app.screen.questions] == ["GREETING_NAME"]

    assert snap_compare(frozen(), terminal_size=SIZE, run_before=run_before)


def test_failed_task(snap_compare: Any, frozen: Callable[..., RunbookApp], tmp_path: Path) -> None:
    book = make_seed_repo(tmp_path, git=False)

    async def run_before(pilot: Any) -> None:
        await started(pilot, "4.1.1")
        await select(pilot, "4.3.2")  # fails with exit 3 until fixed.marker exists; prints nothing
        await pilot.press("enter")
        await until_screen(pilot, ConfirmCommand)
        await pilot.press("y")
        await until_status(pilot, "4.3.2", "failed")
        pane = pilot.app.query_one("#output")
        await until(pilot, lambda: any(line.startswith("[exit 3,") for line in pane.lines_of("4.3.2")))
        await until(pilot, lambda: pilot.app.run_screen.running is None)
        await pilot.pause()

    assert snap_compare(frozen(book, cwd=book.parent), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_main_screen_theme(snap_compare: Any, frozen: Callable[..., RunbookApp], theme: str) -> None:
    async def run_before(pilot: Any) -> None:
        await started(pilot)
        assert pilot.app.theme == theme

    assert snap_compare(frozen(theme=theme), terminal_size=SIZE, run_before=run_before)


def test_bundled_themes_are_the_three_expected() -> None:
    assert THEMES == ["runbook-dark", "runbook-high-contrast", "runbook-light"]
