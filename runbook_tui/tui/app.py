"""The Textual app: a navigator, the step to read, the live output, and the guided sequence.

The app adds no second execution path: every run, skip, note and confirmation goes through
`engine.session.Session` on a worker thread, and the screen is updated from the transcript
events the session reports once they are on disk. `watch` mode feeds the same screen from a
transcript file that another run is writing.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, TabbedContent, TabPane, Tree
from textual.worker import Worker, WorkerState

from runbook_tui.audit.transcript import Transcript, follow
from runbook_tui.engine.session import MissingValue, Question, RunAborted, Session
from runbook_tui.model import MODES, Runbook, Section, Step, Task
from runbook_tui.tui.commands import RunbookCommands
from runbook_tui.tui.prompter import ScreenPrompter
from runbook_tui.tui.screens.dialogs import Choose, EditCommand, TextPrompt, YesNo
from runbook_tui.tui.screens.related import RelatedScreen
from runbook_tui.tui.widgets.container_watch import ContainerStatus, ContainerWatch, tab_id
from runbook_tui.tui.widgets.output_pane import OutputPane
from runbook_tui.tui.widgets.run_header import RunHeader
from runbook_tui.tui.widgets.step_tree import Item, StepTree
from runbook_tui.tui.widgets.step_view import StepView

SETTLED = ("done", "manual", "skipped", "planned")


class RunbookApp(App[int]):
    """One runbook on screen, with a Session behind it (or a transcript to follow, read-only)."""

    CSS_PATH = "app.tcss"
    TITLE = "runbook-tui"
    COMMANDS = App.COMMANDS | {RunbookCommands}
    BINDINGS = [
        Binding("s", "skip", "Skip", id="task.skip", tooltip="Skip the selected task (asks why)"),
        Binding("r", "retry", "Retry", id="task.retry", tooltip="Run the selected task again"),
        Binding("e", "edit", "Edit", id="task.edit", tooltip="Edit the command, then run it"),
        Binding("a", "note", "Note", id="run.note", tooltip="Add a note to the transcript"),
        Binding("o", "related", "Related", id="run.related", tooltip="Open a related runbook"),
        Binding("x", "export", "Export", id="run.export", tooltip="Export the transcript as Markdown"),
        Binding("ctrl+c", "interrupt", "Interrupt", id="task.interrupt", priority=True,
                tooltip="Interrupt the running command"),
        Binding("q", "quit_run", "Quit", id="app.quit", tooltip="Quit (asks while a command runs)"),
    ]

    def __init__(
        self,
        runbook: Runbook,
        *,
        session: Session | None = None,
        secrets_to_read: list[Any] | None = None,
        git: dict[str, Any] | None = None,
        follow_path: str | None = None,
        theme: str | None = None,
        keymap: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if keymap:
            self.set_keymap(keymap)
        self.runbook = runbook
        self.session = session
        self.secrets_to_read = secrets_to_read or []
        self.git = git or {}
        self.follow_path = follow_path
        self.read_only = session is None
        self.requested_theme = theme
        self.running: Task | None = None
        self.containers: ContainerWatch | None = None
        self.startup_notice: str | None = None
        self.next_run: tuple[Runbook, Path] | None = None  # a related runbook to run after this one
        self._output_pane: OutputPane | None = None
        self._started = threading.Event()  # run.started is recorded
        self.concurrent: dict[str, Any] | None = None
        self._lock: Any = None
        self._stop_following = threading.Event()
        self._sections = {s.id: s for s in runbook.sections}
        self._steps = {st.id: (sec, st) for sec in runbook.sections for st in sec.steps}

    # ---- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield RunHeader(self.runbook, self.git, id="header")
        if self.runbook.watches:
            yield ContainerStatus(self.runbook.watches, id="containers")
        with Horizontal(id="main"):
            yield StepTree(self.runbook, id="tree")
            with Vertical(id="right"):
                yield StepView(id="view")
                with TabbedContent(id="tabs"):
                    with TabPane("Output", id="output-tab"):
                        yield OutputPane(id="output")
                    for watch in self.runbook.watches:
                        with TabPane(f"docker: {watch.docker}", id=tab_id(watch)):
                            yield OutputPane(id=f"{tab_id(watch)}-pane")
        yield Footer()

    def on_mount(self) -> None:
        self._apply_theme()
        header = self.query_one(RunHeader)
        header.mode = "watch (read-only)" if self.read_only else (self.session.mode if self.session else "")
        self.query_one(StepTree).focus()
        first = next((t for t in self.runbook.tasks()), None)
        if first is not None:
            self.call_after_refresh(self.query_one(StepTree).select_id, first.id)
        if self.startup_notice:
            self.notify(self.startup_notice, severity="warning", timeout=15)
        if self.read_only:
            self._follow()
        else:
            self._guard()
            self._start()
        if self.runbook.watches:
            redact = self.session.redactor.redact if self.session else (lambda text: text)
            self.containers = ContainerWatch(self.runbook.watches, redact)
            self.containers.start(lambda watch: self.query_one(f"#{tab_id(watch)}-pane", OutputPane))

    def _guard(self) -> None:
        """Tell the operator about another run of this runbook; treat SIGHUP as a lost terminal."""
        import asyncio
        import signal

        from runbook_tui.engine.guards import RunLock, describe_holder

        assert self.session is not None
        self._lock = RunLock(self.runbook.path)
        self.concurrent = self._lock.acquire(str(self.session.transcript.path))
        if self.concurrent is not None:
            self.notify(f"Another run of this runbook is in progress: {describe_holder(self.concurrent)}",
                        severity="warning", timeout=30)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._terminal_lost)

    def _terminal_lost(self) -> None:
        """SIGHUP: the running command may finish; nothing else starts; the run is recorded as aborted.

        The terminal is gone, so the screen is pointed at /dev/null: Textual's writer would
        otherwise block on it and the app could never exit.
        """
        assert self.session is not None
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        self.session.disconnect()
        if self.running is None:
            self._quit(interrupt=False)

    def on_unmount(self) -> None:
        if self.containers is not None:
            self.containers.stop()
        if self._lock is not None:
            self._lock.release()

    def _apply_theme(self) -> None:
        try:
            from runbook_tui.tui.themes import register_themes
        except ImportError:
            return
        self.theme = register_themes(self, self.requested_theme)

    def watch_theme(self, theme: str) -> None:
        if self.is_mounted:
            self.query_one(StepTree).relabel()

    # ---- session lifecycle (worker threads) --------------------------------------------------
    @work(thread=True, group="startup", exit_on_error=False)
    def _start(self) -> None:
        """Read secrets (asking for missing ones), then record run.started; tasks wait for it."""
        from runbook_tui.integrations.secrets import SecretError, read_secret, store_secret

        assert self.session is not None
        prompter = self.session.prompter
        for secret in self.secrets_to_read:
            try:
                value = read_secret(secret)
            except SecretError as exc:
                self.call_from_thread(self.notify, str(exc), severity="error", timeout=15)
                value = None
            if value is None:
                try:
                    question = Question(secret.name, f"secret {secret.name} ({secret.ref})", secret=True)
                    value = prompter.ask_values([question])[secret.name]
                except MissingValue:
                    self.call_from_thread(self.notify, f"{secret.name} was not given; commands that use it "
                                          "will not get it", severity="warning")
                    continue
                if secret.ref.startswith("keyring:") and prompter._ask(YesNo(f"Store {secret.name} in the keyring?")):
                    try:
                        store_secret(secret.ref, value)
                    except SecretError as exc:
                        self.call_from_thread(self.notify, str(exc), severity="error")
            self.session.add_secret(secret.name, value)
        self.session.concurrent_run = self.concurrent
        self.session.start()
        self._started.set()

    @work(thread=True, exclusive=True, group="session", exit_on_error=False)
    def _run(self, task: Task, step: Step, section: Section, edited: str | None = None) -> None:
        assert self.session is not None
        self.running = task
        self._started.wait()  # an early enter must not run anything before run.started is on disk
        try:
            self.session.run_task(task, step, section, edited=edited)
        except RunAborted as exc:
            if not self.session.disconnected.is_set():
                self.session.aborted(str(exc))
        except MissingValue as exc:
            self.call_from_thread(self.notify, f"Not run: {exc}", severity="warning")
        finally:
            self.running = None
            if self.session.disconnected.is_set():
                self.call_from_thread(self._quit, False)

    @work(thread=True, group="session-call", exit_on_error=False)
    def _session_call(self, method: str, *args: Any) -> None:
        assert self.session is not None
        self._started.wait()
        getattr(self.session, method)(*args)

    @work(thread=True, group="follow", exit_on_error=False)
    def _follow(self) -> None:
        assert self.follow_path is not None
        for event in follow(self.follow_path, self._stop_following):
            self.call_from_thread(self.apply_event, event)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(f"{event.worker.name} failed: {event.worker.error}", severity="error", timeout=20)

    # ---- what the session reports ------------------------------------------------------------
    def event(self, event: dict[str, Any]) -> None:  # type: ignore[override]
        """Observer: a transcript event is on disk (called on the session's thread)."""
        if event["type"] == "output" and not self.read_only:
            return  # apply_event ignores it; waiting for the UI here would hold back the transcript
        if threading.current_thread() is threading.main_thread():
            self.apply_event(event)
        else:
            self.call_from_thread(self.apply_event, event)

    def output(self, task_id: str, text: str) -> None:
        """Observer: live output (called on the PTY reader thread)."""
        if self._output_pane is None:  # no DOM query per chunk on the reader thread
            self._output_pane = self.query_one("#output", OutputPane)
        self._output_pane.feed(task_id, text)

    def apply_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        tree = self.query_one(StepTree)
        pane = self.query_one("#output", OutputPane)
        task = self.runbook.find(event.get("task_id", "")) if event.get("task_id") else None
        if kind == "command.started" and isinstance(task, Task):
            tree.set_status(task, "running")
            attempt = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
            pane.mark(task.id, f"$ {event['run_command']}{attempt}")
            if pane.shown != task.id:
                pane.show(task.id)
        elif kind == "output" and self.read_only:
            pane.feed(event["task_id"], event["text"])
        elif kind == "command.finished" and isinstance(task, Task):
            pane.mark(task.id, f"[exit {event['exit_code'] if event['exit_code'] is not None else 'signal ' + str(event['signal'])}"
                               f"{', timed out' if event.get('timed_out') else ''}, {event['duration']}s]")
        elif kind == "command.planned" and isinstance(task, Task):
            pane.mark(task.id, f"would run in {event['cwd']}:\n{event['run_command']}")
            pane.show(task.id)
        elif kind == "task.finished" and isinstance(task, Task):
            tree.set_status(task, event["status"])
            self.query_one(RunHeader).done = sum(1 for s in tree.status.values() if s in SETTLED)
            self._refresh_view()
            if event["status"] in SETTLED:
                self._guide_after(task)
            else:
                self.notify(f"Task {task.id} {event['status']}: {event.get('reason', '')}", severity="error",
                            timeout=10)
        elif kind == "run.finished":
            self.notify(f"Run {event['result']}", severity="information" if event["result"] == "success" else "error")
        elif kind == "run.aborted":
            self.notify(f"Run aborted: {event['reason']}", severity="error")

    def _guide_after(self, task: Task) -> None:
        """The guided sequence: after a task settles, select the next one not yet settled."""
        tree = self.query_one(StepTree)
        tasks = list(self.runbook.tasks())
        after = tasks[tasks.index(task) + 1 :] + tasks
        nxt = next((t for t in after if tree.status.get(t.id, "pending") not in SETTLED), None)
        if nxt is not None:
            tree.select_id(nxt.id)

    # ---- selection -----------------------------------------------------------------------------
    @property
    def selected(self) -> Item | None:
        node = self.query_one(StepTree).cursor_node
        return node.data if node is not None else None

    def on_step_tree_selected(self, message: StepTree.Selected) -> None:
        self._refresh_view(message.item)
        pane = self.query_one("#output", OutputPane)
        if message.item.task is not None and pane.shown != message.item.task.id:
            pane.show(message.item.task.id)

    def _refresh_view(self, item: Item | None = None) -> None:
        item = item or self.selected
        if item is None:
            return
        status = self.query_one(StepTree).status.get(item.task.id, "pending") if item.task else ""
        self.query_one(StepView).show(item, status)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Item]) -> None:
        """Enter on a task: run the command, or mark the manual check done."""
        item = event.node.data
        if item is None or item.task is None or item.step is None:
            return
        self.activate(item)

    # ---- actions -------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in ("skip", "retry", "edit", "note", "export", "interrupt"):
            return False
        # Reading a related runbook, a key must not act on the run's task hidden underneath.
        if isinstance(self.screen, RelatedScreen) and action in ("skip", "retry", "edit", "related"):
            return False
        return True

    def _busy(self) -> bool:
        if self.running is not None:
            self.notify(f"Task {self.running.id} is running: wait for it, or ctrl+c to interrupt it.",
                        severity="warning")
            return True
        return False

    def activate(self, item: Item) -> None:
        if self.read_only or self._busy() or item.task is None or item.step is None:
            return
        status = self.query_one(StepTree).status.get(item.task.id, "pending")
        if status in SETTLED:
            self.notify(f"Task {item.task.id} is already {status}; press r to do it again.")
            return
        self._run(item.task, item.step, item.section)

    def _selected_task(self) -> Item | None:
        item = self.selected
        if item is None or item.task is None or item.step is None:
            self.notify("Select a task first.", severity="warning")
            return None
        return item

    def action_retry(self) -> None:
        item = self._selected_task()
        if item and not self._busy():
            self._run(item.task, item.step, item.section)  # type: ignore[arg-type]

    def action_skip(self) -> None:
        item = self._selected_task()
        if item is None or self._busy():
            return

        def skipped(reason: str | None) -> None:
            if reason:
                self._session_call("skip", item.task, item.step, reason)

        self.push_screen(TextPrompt(f"Why skip task {item.task.id}?", "reason"), skipped)  # type: ignore[union-attr]

    def action_edit(self) -> None:
        item = self._selected_task()
        if item is None or self._busy() or item.task is None or item.task.command is None:
            return

        def edited(command: str | None) -> None:
            if command:
                self._run(item.task, item.step, item.section, command)  # type: ignore[arg-type]

        self.push_screen(EditCommand(item.task.command), edited)

    def action_note(self) -> None:
        item = self.selected
        task_id = item.task.id if item and item.task else None

        def noted(text: str | None) -> None:
            if text:
                self._session_call("note", text, task_id)
                self.notify("Note added to the transcript.")

        self.push_screen(TextPrompt("Note for the transcript", "what happened"), noted)

    def action_export(self) -> None:
        if self.session is None:
            return
        self._export(self.session.transcript.path)

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, path: Path) -> None:
        from runbook_tui.audit.export import export

        target = Path(path).with_suffix(".md")
        target.write_text(export(path, "md", self.session.redactor if self.session else None), encoding="utf-8")
        self.call_from_thread(self.notify, f"Exported to {target}")

    def action_related(self) -> None:
        related = self.runbook.related
        if not related:
            self.notify("This runbook links to no other runbook.")
            return
        if len(related) == 1:
            self.open_related(0)
            return
        self.push_screen(Choose("Open which runbook?", [f"{r.title} ({r.target})" for r in related]),
                         lambda index: self.open_related(index) if index is not None else None)

    def open_related(self, index: int) -> None:
        """Open a related runbook on top; a missing or broken file is a notification, not a crash."""
        from runbook_tui.parse import load_runbook
        from runbook_tui.parse.errors import RunbookError

        target = Path(self.runbook.path).parent / self.runbook.related[index].target
        try:
            related = load_runbook(target)
        except RunbookError as exc:
            self.notify(str(exc), severity="error", timeout=15)
            return
        self.push_screen(RelatedScreen(related, self.session))

    def action_interrupt(self) -> None:
        if self.running is None or self.session is None:
            self.notify("No command is running.")
            return
        session = self.session
        self.push_screen(YesNo(f"Interrupt task {self.running.id}?"),
                         lambda yes: session.cancel_command() if yes else None)

    async def action_quit(self) -> None:
        """Textual's own quit key (ctrl+q) ends the run the same careful way as q."""
        self.action_quit_run()

    def switch_to(self, runbook: Runbook) -> None:
        """End this run and hand over to `runbook` (the CLI starts its run when the app exits).

        Not while a command runs: its outcome belongs to this run and must be seen first.
        """
        if self.session is None:
            return
        if self.running is not None:
            self.notify(f"Task {self.running.id} is running: wait for it, or interrupt it (ctrl+c), "
                        "before you switch.", severity="warning")
            return
        pending = sum(1 for _ in self.session.pending_tasks())
        self.push_screen(YesNo(f"End this run ({pending} task(s) not done) and run {runbook.title}?"),
                         lambda yes: self._switch(runbook) if yes else None)

    def _switch(self, runbook: Runbook) -> None:
        from runbook_tui.audit.transcript import new_transcript_path

        assert self.session is not None
        self.next_run = (runbook, new_transcript_path(runbook.title))
        self.session.record("runbook.switched", path=str(Path(runbook.path).resolve()), sha256=runbook.sha256,
                            title=runbook.title, transcript=str(self.next_run[1]))
        self._quit(interrupt=False, reason=f"operator switched to the related runbook {runbook.title}")

    def action_quit_run(self) -> None:
        if self.session is None:
            self._stop_following.set()
            self.exit(0)
            return
        if self.running is not None:
            self.push_screen(YesNo(f"Task {self.running.id} is running. Interrupt it and quit?"),
                             lambda yes: self._quit(interrupt=True) if yes else None)
            return
        self._quit(interrupt=False)

    @work(thread=True, group="quit", exit_on_error=False)
    def _quit(self, interrupt: bool, reason: str | None = None) -> None:
        """Stop what runs, then end the transcript: finished if every task settled, else aborted
        (with `reason`, or the number of tasks left)."""
        session = self.session
        assert session is not None
        if interrupt:
            session.interrupt()
            while self.running is not None:  # the command's group is being stopped; let it record that
                time.sleep(0.05)
        pending = [t.id for _, _, t in session.pending_tasks()]
        if session.disconnected.is_set():
            session.record("operator.disconnected", reason="terminal lost (SIGHUP)")
            session.aborted("operator disconnected: terminal lost; resume the run to continue")
            code = 1
        elif pending:
            session.aborted(f"{reason or 'operator quit'} with {len(pending)} task(s) left")
            code = 1
        else:
            code = 0 if session.finish() == "success" else 1
        session.transcript.close()
        if session.disconnected.is_set():
            # Everything is recorded and there is no screen left to restore. Textual's shutdown
            # would write to the lost terminal and can block for ever on its bounded writer
            # queue, holding the run lock: leave now (the kernel drops the lock's flock).
            os._exit(code)
        self.call_from_thread(self.exit, code)

    def run_on_terminal(self, argv: list[str], *, on_output: Any, cwd: str, env: Any) -> Any:
        """Session worker thread: suspend the app and give the program the real terminal."""
        from runbook_tui.engine.interactive import run_on_terminal

        def suspended() -> Any:
            with self.suspend():
                return run_on_terminal(argv, on_output=on_output, cwd=cwd, env=env)

        return self.call_from_thread(suspended)

    def set_mode(self, mode: str) -> None:
        """From the command palette: change how much is confirmed from now on (recorded)."""
        if self.session is None or mode not in MODES:
            return
        self.session.mode = mode  # type: ignore[assignment]
        self.query_one(RunHeader).mode = mode
        self._session_call("record", "mode.changed", mode=mode)

    def jump(self, element_id: str) -> None:
        self.query_one(StepTree).select_id(element_id)
        if self.session is not None:
            self._session_call("record", "operator.jumped", to=element_id)


def make_app(runbook: Runbook, *, mode: str, variables: dict[str, str], transcript: str | None,
             theme: str | None) -> RunbookApp:
    """Build the app and its session; raises TranscriptError (or RunbookError for a bad settings
    file) before anything is on screen."""
    from runbook_tui.audit.transcript import new_transcript_path
    from runbook_tui.config import load_config
    from runbook_tui.integrations.git import repo_facts

    from runbook_tui.engine.guards import is_trusted

    config = load_config()
    git = repo_facts(runbook.path)
    notice = None
    if mode == "auto" and not is_trusted(runbook):
        mode = "paranoid"
        notice = f"{runbook.path} is not trusted: running in paranoid mode. Trust it with: runbook-tui trust PATH"
    record = Transcript.create(transcript or new_transcript_path(runbook.title))
    app = RunbookApp(runbook, git=git, theme=theme or config.theme, keymap=config.keymap,
                     secrets_to_read=list(runbook.secrets) if mode != "noop" else [])
    app.session = Session(runbook, record, ScreenPrompter(app), observer=app, mode=mode,  # type: ignore[arg-type]
                          values=variables, git_facts=git, terminal=app.run_on_terminal)
    app.read_only = False
    app.startup_notice = notice
    return app


def make_watch_app(path: str, theme: str | None) -> RunbookApp:
    """A read-only view of a run another terminal is making, following its transcript."""
    from runbook_tui.audit.transcript import read_events
    from runbook_tui.parse import load_runbook
    from runbook_tui.parse.errors import RunbookError

    first = next(iter(read_events(path)), None)
    if first is None or first.get("type") != "run.started":
        raise RunbookError("not a runbook-tui transcript (no run.started event)", path)
    from runbook_tui.config import load_config

    config = load_config()
    runbook = load_runbook(first["runbook"]["path"])
    return RunbookApp(runbook, follow_path=path, theme=theme or config.theme, keymap=config.keymap,
                      git=first.get("git"))
