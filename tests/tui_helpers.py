"""Shared pieces of the TUI tests: a seed runbook with harmless commands in a real git
repository, small polling helpers for Pilot, and transcript readers.

Nothing here sleeps for a fixed time: every wait polls a condition and fails with what it
was waiting for when the condition does not come true in time.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.screen import Screen

from runbook_tui.audit.transcript import read_events
from runbook_tui.tui.widgets.step_tree import StepTree
from tests.paths import SEED

# The seed's seven commands, in order, and the harmless stand-in each is replaced with.
# Resolution Steps (5.x) of the High-severity seed are high-risk: they ask for a typed word.
SEED_COMMANDS: dict[str, str] = {
    "check": "python src/manage.py check",
    "makemigrations": "python src/manage.py makemigrations --check --dry-run",
    "build": "docker compose build",
    "migrate": "python src/manage.py migrate --noinput",
    "up": "docker compose up -d web worker",
    "jobs": ('python src/manage.py shell -c "from modules.jobs.models import JobQueue; '
             'print(JobQueue.objects.pending().count())"'),
    "logs": "docker compose logs web --tail=100",
}
STAND_INS: dict[str, str] = {
    "check": "echo check-ok",                                                   # 4.3.1
    "makemigrations": "sh -c 'test -e fixed.marker || exit 3; echo schema-ok'",  # 4.3.2 fails until fixed
    "build": "printf 'built %s\\n' artifact-1",                                 # 5.1.1 high risk
    "migrate": "echo migrated-by-$WHO",                                        # 5.1.2 asks for $WHO
    "up": "echo services-up",                                                  # 5.1.3
    "jobs": "echo jobs-pending-0",                                             # 5.2.2
    "logs": "false --tail=100",                                                # 5.2.3 always fails
}
TASK_IDS: dict[str, str] = {
    "check": "4.3.1", "makemigrations": "4.3.2", "build": "5.1.1", "migrate": "5.1.2",
    "up": "5.1.3", "jobs": "5.2.2", "logs": "5.2.3",
}
RELATED = {
    "ROLLBACK.md": "Rollback Procedures",
    "BACKUP_RESTORE.md": "Backup and Restore",
    "INCIDENT_RESPONSE.md": "Incident Response Runbook",
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Operator",
    "GIT_AUTHOR_EMAIL": "operator@example.invalid",
    "GIT_COMMITTER_NAME": "Test Operator",
    "GIT_COMMITTER_EMAIL": "operator@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def seed_text(overrides: Mapping[str, str] | None = None) -> str:
    """The seed runbook with each command replaced by its stand-in (or an override)."""
    text = SEED.read_text(encoding="utf-8")
    commands = {**STAND_INS, **(overrides or {})}
    for key, original in SEED_COMMANDS.items():
        assert f"`{original}`" in text, f"the seed no longer holds `{original}`"
        text = text.replace(f"`{original}`", f"`{commands[key]}`")
    return text


def related_text(title: str) -> str:
    return (f"# {title}\n\n**Owner:** Release Engineering\n\n## Steps\n"
            f"1. **Look first**\n   - Read the {title.lower()} notes.\n   - `echo {title.split()[0].lower()}-ok`\n")


def make_seed_repo(root: Path, overrides: Mapping[str, str] | None = None, *, git: bool = True) -> Path:
    """A copy of the seed with stand-ins (and its related runbooks) committed in a new git repo."""
    repo = root / "repo"
    repo.mkdir()
    book = repo / "DEPLOYMENT.md"
    book.write_text(seed_text(overrides), encoding="utf-8")
    for name, title in RELATED.items():
        (repo / name).write_text(related_text(title), encoding="utf-8")
    if git:
        env = {**os.environ, **GIT_ENV, "HOME": str(root)}
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "runbooks"]):
            subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return book


def events(path: Path | str, kind: str | None = None) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    return [e for e in read_events(path) if kind is None or e["type"] == kind]


def output_of(path: Path | str, task_id: str) -> str:
    return "".join(e["text"] for e in events(path, "output") if e["task_id"] == task_id)


def finished(path: Path | str, task_id: str) -> list[dict[str, Any]]:
    return [e for e in events(path, "task.finished") if e["task_id"] == task_id]


async def until(pilot: Pilot[Any], predicate: Callable[[], Any], timeout: float = 10.0,
                what: str | Callable[[], str] = "") -> Any:
    """Let the app run until `predicate()` is truthy; its value. Fails after `timeout` seconds,
    saying what it waited for (`what` may be a callable, to describe the state at that moment)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {described or predicate}")
        await pilot.pause(0.02)


async def until_screen(pilot: Pilot[Any], kind: type[Screen[Any]], timeout: float = 10.0) -> Any:
    """Wait until the top screen is a `kind`; that screen."""
    await until(pilot, lambda: isinstance(pilot.app.screen, kind), timeout, f"a {kind.__name__} on top")
    await pilot.pause()
    return pilot.app.screen


async def until_event(pilot: Pilot[Any], path: Path | str, kind: str, timeout: float = 10.0,
                      **fields: Any) -> dict[str, Any]:
    """Wait until the transcript holds an event of `kind` with `fields`; that event."""
    def found() -> dict[str, Any] | None:
        return next((e for e in events(path, kind) if all(e.get(k) == v for k, v in fields.items())), None)

    return await until(pilot, found, timeout, f"{kind} {fields or ''} in {path}")


async def until_status(pilot: Pilot[Any], task_id: str, status: str, timeout: float = 10.0) -> None:
    tree = pilot.app.query_one(StepTree)
    await until(pilot, lambda: tree.status.get(task_id) == status, timeout,
                lambda: f"task {task_id} to be {status} (it is {tree.status.get(task_id)})")


async def until_idle(pilot: Pilot[Any], timeout: float = 10.0) -> None:
    """Wait until no task runs and no modal is waiting for an answer."""
    app = pilot.app
    await until(pilot, lambda: getattr(app, "running", None) is None and len(app.screen_stack) == 1,
                timeout, "the app to be idle")


async def select(pilot: Pilot[Any], element_id: str) -> None:
    """Put the tree's cursor on a section, step or task (as the palette's jump does)."""
    tree = pilot.app.query_one(StepTree)
    tree.select_id(element_id)
    await until(pilot, lambda: cursor_id(pilot) == element_id, 5, f"the cursor on {element_id}")


def cursor_id(pilot: Pilot[Any]) -> str | None:
    """The id of the section, step or task under the tree's cursor."""
    node = pilot.app.query_one(StepTree).cursor_node
    item = node.data if node is not None else None
    if item is None:
        return None
    return (item.task or item.step or item.section).id


async def type_text(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*[_key(c) for c in text])


def _key(char: str) -> str:
    names = {" ": "space", "-": "minus", "_": "underscore", ".": "full_stop", "/": "slash", "'": "apostrophe",
             ",": "comma", "$": "dollar_sign", "=": "equals_sign", ";": "semicolon", "|": "vertical_line",
             "!": "exclamation_mark", ":": "colon"}
    return names.get(char, char)


def notifications(app: Any) -> list[str]:
    return [n.message for n in app._notifications]


def processes_in(directory: Path) -> list[int]:
    """Live processes (not this one) whose working directory is inside `directory`."""
    found = []
    me = os.getpid()
    root = str(directory.resolve())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and (cwd == root or cwd.startswith(root + "/")):
            found.append(int(entry))
    return found


def wait_no_processes(directory: Path, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_in(directory)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def answer_questions_left_open(app: Any, *, stop_commands: bool = True) -> None:
    """Once `app` has exited, answer every question still on its screen stack with None.

    The session's worker thread blocks on each question (ScreenPrompter._ask waits for ever), so
    an app that exits with a question open -- a snapshot taken of a dialog, a test that failed
    half-way -- leaves a thread that keeps the event loop (and the interpreter) from ending.
    This releases it after the fact, from a daemon thread, and stops a command still running.
    """
    import threading

    def watch() -> None:
        deadline = time.monotonic() + 60
        while not app.is_running and time.monotonic() < deadline:
            time.sleep(0.01)
        stack: list[Any] = []
        while app.is_running:
            stack = list(app.screen_stack) or stack
            time.sleep(0.02)
        session = getattr(app, "session", None)
        if session is not None and stop_commands:
            session.interrupt()  # a command still running ends now (test clean-up only)
        for screen in stack:
            for pending in list(getattr(screen, "_result_callbacks", [])):
                callback = getattr(pending, "callback", None)
                if callback is not None:
                    with contextlib.suppress(Exception):  # the app is gone; only the thread matters
                        callback(None)

    threading.Thread(target=watch, name="answer-questions-left-open", daemon=True).start()


def run_test(app: Any, size: tuple[int, int] = (120, 40), *, stop_commands: bool = True) -> Any:
    """`app.run_test(size=...)`, with questions left open answered once the app has exited."""
    answer_questions_left_open(app, stop_commands=stop_commands)
    return app.run_test(size=size)
