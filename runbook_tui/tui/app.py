"""The Textual app: theme, keymap, quit and the operator's terminal; the run lives on RunScreen.

The app adds no execution path of its own: `RunScreen` calls the engine's `Run` for every
action and shows what the run reports. Screens pushed on top (dialogs, a related runbook)
never inherit the run's keys, because those are bound on RunScreen, not here.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.binding import Binding

from runbook_tui.engine.run import Run
from runbook_tui.engine.session import Session
from runbook_tui.model import Runbook
from runbook_tui.tui.commands import RunbookCommands
from runbook_tui.tui.screens.run import RunScreen


class RunbookApp(App[int]):
    """One runbook on screen: a run of it, or a transcript to follow, read-only."""

    CSS_PATH = "app.tcss"
    runbook: Runbook  # given when built, or by the run being opened (a resumed run's engine reads it)
    TITLE = "runbook-tui"
    COMMANDS = App.COMMANDS | {RunbookCommands}
    BINDINGS = [
        Binding("q", "quit_run", "Quit", id="app.quit", tooltip="Quit (asks while a command runs)"),
        Binding("question_mark,f1", "keys_help", "Keys", id="app.help", tooltip="The keys of this screen"),
    ]

    def __init__(
        self,
        runbook: Runbook | None = None,
        *,
        git: dict[str, Any] | None = None,
        follow_path: str | None = None,
        theme: str | None = None,
        keymap: dict[str, str] | None = None,
        redactor: Any = None,
    ) -> None:
        super().__init__()
        if keymap:
            self.set_keymap(keymap)
        if runbook is not None:
            self.runbook = runbook
        self.current_run: Run | None = None  # set by make_app before the app runs
        self.interrupted = "ask"  # resume: what to do with the task that was running (rerun, skip, done)
        self.git = git or {}
        self.follow_path = follow_path
        self.requested_theme = theme
        self._redactor = redactor

    def get_default_screen(self) -> RunScreen:
        return RunScreen(self.runbook, self.current_run, git=self.git, follow_path=self.follow_path,
                         redactor=self._redactor, interrupted=self.interrupted)

    @property
    def run_screen(self) -> RunScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, RunScreen)
        return screen

    @property
    def session(self) -> Session | None:
        """The run's task state machine (tests and the benchmark read its facts)."""
        return self.current_run.session if self.current_run is not None else None

    @property
    def read_only(self) -> bool:
        return self.current_run is None

    @property
    def next_run(self) -> tuple[Runbook, Any] | None:
        return self.current_run.next_run if self.current_run is not None else None

    def on_mount(self) -> None:
        self._apply_theme()
        if self.current_run is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._terminal_lost)

    def _terminal_lost(self) -> None:
        """SIGHUP: the running command may finish; nothing else starts; the run is recorded as aborted.

        The terminal is gone, so the screen is pointed at /dev/null: Textual's writer would
        otherwise block on it and the app could never exit.
        """
        assert self.current_run is not None
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        self.current_run.hangup()
        if self.run_screen.running is None:
            self.run_screen.end_run(False)

    def _apply_theme(self) -> None:
        from runbook_tui.tui.themes import register_themes

        self.theme = register_themes(self, self.requested_theme)

    def watch_theme(self, theme: str) -> None:
        if self.is_mounted and self.screen_stack:
            from runbook_tui.tui.widgets.step_tree import StepTree

            for tree in self.run_screen.query(StepTree):
                tree.relabel()

    def action_keys_help(self) -> None:
        """The keys that work on the screen in front, as its footer would show them, and more."""
        from runbook_tui.tui.screens.dialogs import KeysHelp

        screen = self.screen
        if isinstance(screen, KeysHelp):
            return
        keys: dict[str, str] = {}
        for key, active in screen.active_bindings.items():
            if active.enabled and active.binding.action not in ("keys_help",):
                label = active.binding.tooltip or active.binding.description or active.binding.action
                keys[self.get_key_display(active.binding)] = label
        keys.setdefault("ctrl+p", "Command palette: jump to a step, open a related runbook, export, mode, help")
        self.push_screen(KeysHelp(f"Keys: {type(screen).__name__.removesuffix('Screen') or 'screen'}",
                                  sorted(keys.items())))

    def action_quit_run(self) -> None:
        self.run_screen.quit_run()

    async def action_quit(self) -> None:
        """Textual's own quit key (ctrl+q) ends the run the same careful way as q."""
        self.action_quit_run()

    def hand_over(self, proc: Any) -> Any:
        """Run's worker thread: a running program went full screen; give it the real terminal
        (the app suspended) until it leaves its screen or ends, then come back."""
        from runbook_tui.engine.interactive import take_over

        def suspended() -> Any:
            if self._driver is None or not self._driver.can_suspend:
                return None  # no real terminal to give (a test's headless driver)
            with self.suspend():
                return take_over(proc)

        return self.call_from_thread(suspended)

    def run_on_terminal(self, argv: list[str], *, on_output: Any, cwd: str, env: Any) -> Any:
        """Run's worker thread: suspend the app and give the program the real terminal."""
        from runbook_tui.engine.interactive import run_on_terminal

        def suspended() -> Any:
            with self.suspend():
                return run_on_terminal(argv, on_output=on_output, cwd=cwd, env=env)

        return self.call_from_thread(suspended)


def make_app(runbook: Runbook, *, mode: str, variables: dict[str, str], transcript: str | None,
             theme: str | None) -> RunbookApp:
    """Build the app and open its run; raises RunProblem (or RunbookError for a bad settings
    file) before anything is on screen."""
    from runbook_tui.engine.run import RunSettings

    settings = RunSettings(mode=mode, values=variables, transcript=transcript)  # type: ignore[arg-type]
    return _app_for(lambda prompter_for, **front: Run.open(runbook, settings, prompter_for, **front), theme)


def make_resume_app(transcript: str, *, mode: str, variables: dict[str, str], theme: str | None,
                    task_timeout: float | None, interrupted: str = "ask", host_keys: str = "strict") -> RunbookApp:
    """Build the app on an interrupted run: the same checks as headless `resume` (the same
    `Run.resume`), with what already ran marked on screen."""
    from runbook_tui.engine.run import RunSettings

    settings = RunSettings(mode=mode, values=variables, task_timeout=task_timeout,  # type: ignore[arg-type]
                           host_keys=host_keys)
    app = _app_for(lambda prompter_for, **front: Run.resume(transcript, settings, prompter_for, **front), theme)
    app.interrupted = interrupted
    return app


def _app_for(open_run: Callable[..., Run], theme: str | None) -> RunbookApp:
    """The app, then its run: the run's prompter, observer and terminal are the app's."""
    from runbook_tui.config import load_config
    from runbook_tui.integrations.git import repo_facts
    from runbook_tui.tui.prompter import ScreenPrompter

    config = load_config()
    app = RunbookApp(theme=theme or config.theme, keymap=config.keymap)

    def prompter_for(book: Runbook, trust: Any) -> ScreenPrompter:
        app.runbook, app.git = book, repo_facts(book.path)
        return ScreenPrompter(app)

    app.current_run = open_run(prompter_for, observer=_ScreenObserver(app), terminal=app.run_on_terminal,
                               take_over=app.hand_over)
    return app


class _ScreenObserver:
    """The run's observer: forwards to the run screen once it exists (the run is opened first)."""

    def __init__(self, app: RunbookApp) -> None:
        self.app = app

    def event(self, event: dict[str, Any]) -> None:
        self.app.run_screen.event(event)

    def output(self, task_id: str, text: str, host: str | None = None) -> None:
        self.app.run_screen.output(task_id, text, host)


def make_watch_app(path: str, theme: str | None) -> RunbookApp:
    """A read-only view of a run another terminal is making, following its transcript.

    Container logs are read live from Docker, not from the transcript: they are redacted with
    every secret the keyring gives this user, and not shown at all if one cannot be read.
    """
    from runbook_tui.audit.transcript import read_events
    from runbook_tui.config import load_config
    from runbook_tui.engine.run import watch_redactor
    from runbook_tui.parse import load_runbook
    from runbook_tui.parse.errors import RunbookError

    first = next(iter(read_events(path)), None)
    if first is None or first.get("type") != "run.started":
        raise RunbookError("not a runbook-tui transcript (no run.started event)", path)
    config = load_config()
    runbook = load_runbook(first["runbook"]["path"])
    redactor, missing = watch_redactor(runbook)
    return RunbookApp(runbook, follow_path=path, theme=theme or config.theme, keymap=config.keymap,
                      git=first.get("git"), redactor=None if missing else redactor)
