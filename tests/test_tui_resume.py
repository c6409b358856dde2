"""`resume` on a terminal: the app opens on the interrupted run, what ran is marked, the
operator decides about the task that was running, and the run goes on in the same chain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runbook_tui.audit.transcript import read_events, verify
from runbook_tui.parse import load_runbook
from runbook_tui.engine.trust import trust
from runbook_tui.tui.app import make_resume_app
from runbook_tui.tui.screens.dialogs import Choose, ConfirmCommand
from runbook_tui.tui.widgets.run_header import RunHeader
from runbook_tui.tui.widgets.step_tree import StepTree
from tests.tui_helpers import cursor_id, events, until, until_event, until_screen, until_status

BOOK = """# Interrupted

## Steps

1. **First**
   - `echo first-done --x`
2. **Long**
   - `sleep 30; echo long-done --x`
3. **After**
   - `echo after-done --x`
"""


def interrupted_run(tmp_path: Path) -> Path:
    """A trusted headless run killed (SIGKILL, like a lost laptop) while task 1.2.1 runs."""
    book = tmp_path / "book.md"
    book.write_text(BOOK)
    trust(load_runbook(book))
    transcript = tmp_path / "t.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "runbook_tui", "run", str(book), "--yes", "--transcript",
                             str(transcript)], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (transcript.exists() and any(e["type"] == "command.spawned" and e["task_id"] == "1.2.1"
                                           for e in read_events(transcript))):
        assert time.monotonic() < deadline, "the long task never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    spawned = [e for e in read_events(transcript) if e["type"] == "command.spawned"][-1]
    deadline = time.monotonic() + 10  # the command dies with its app (PR_SET_PDEATHSIG)
    while os.path.exists(f"/proc/{spawned['pid']}") and time.monotonic() < deadline:
        time.sleep(0.05)
    return transcript


async def test_resume_in_the_app_marks_what_ran_and_asks_about_the_interrupted_task(tmp_path: Path,
                                                                                     monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    transcript = interrupted_run(tmp_path)
    app = make_resume_app(str(transcript), mode="paranoid", variables={}, theme=None, task_timeout=None)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.run_screen.query_one(StepTree)
        assert tree.status == {"1.1.1": "done"}, "what finished before the interruption is marked"
        choose = await until_screen(pilot, Choose)
        assert "1.2.1 was running when the run stopped" in choose.question
        await pilot.press("down", "enter")  # skip it
        await until_status(pilot, "1.2.1", "skipped")
        await until(pilot, lambda: cursor_id(pilot) == "1.3.1", what="the guide on the next task to do")
        assert app.run_screen.query_one(RunHeader).done == 2
        await pilot.press("enter")
        await until_screen(pilot, ConfirmCommand)
        await pilot.press("y")
        await until_status(pilot, "1.3.1", "done")
        await until_event(pilot, transcript, "run.finished")
        await pilot.press("q")
    kinds = events(transcript)
    since = [e["type"] for e in kinds].index("run.resumed")
    assert kinds[since]["interrupted_task"] == "1.2.1"
    assert [e["task_id"] for e in kinds[since:] if e["type"] == "command.started"] == ["1.3.1"]
    skipped = [e for e in kinds[since:] if e["type"] == "task.finished" and e["task_id"] == "1.2.1"]
    assert skipped and skipped[0]["status"] == "skipped"
    assert verify(transcript).ok


async def test_resume_in_the_app_can_take_the_answer_from_the_command_line(tmp_path: Path,
                                                                           monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    transcript = interrupted_run(tmp_path)
    app = make_resume_app(str(transcript), mode="paranoid", variables={}, theme=None, task_timeout=None,
                          interrupted="done")
    async with app.run_test(size=(120, 40)) as pilot:
        await until_status(pilot, "1.2.1", "manual")  # marked done by the operator, recorded as such
        assert not isinstance(app.screen, Choose)
        await until(pilot, lambda: cursor_id(pilot) == "1.3.1", what="the guide on the next task to do")
        await pilot.press("q")
