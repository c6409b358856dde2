"""The run's main screen: a navigator, the step to read, the live output, the guided sequence.

It adds no second execution path and decides nothing: every run, skip, note, jump, mode change,
export and switch is a typed call on the engine's `Run`, made on a worker thread, and the
screen is updated from the transcript events the run reports once they are on disk. `watch`
mode feeds the same screen from a transcript file that another run is writing.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane, Tree
from textual.worker import Worker, WorkerState

from runbook_tui.audit.redact import Redactor
from runbook_tui.audit.terminal import visible
from runbook_tui.audit.transcript import follow
from runbook_tui.engine.policy import task_risk
from runbook_tui.model import MODES, Mode, Runbook, Task
from runbook_tui.tui.screens.dialogs import Choose, EditCommand, Reading, TextPrompt, YesNo
from runbook_tui.tui.screens.related import RelatedScreen
from runbook_tui.tui.widgets.container_watch import ContainerStatus, ContainerWatch, tab_id
from runbook_tui.tui.widgets.host_list import HostList
from runbook_tui.tui.widgets.output_pane import OutputPane
from runbook_tui.tui.widgets.run_header import RunHeader
from runbook_tui.tui.widgets.step_tree import SETTLED_STATUSES, Item, StepTree
from runbook_tui.tui.widgets.step_view import StepView
from runbook_tui.tui.widgets.transcript_lines import host_log_id, split_log_id

if TYPE_CHECKING:
    from runbook_tui.engine.run import Run, RunNotice



class RunScreen(Screen[None]):
    """One runbook on screen, with a Run behind it (or a transcript to follow, read-only)."""

    BINDINGS = [
        Binding("s", "skip", "Skip", id="task.skip", tooltip="Skip the selected task (asks why)"),
        Binding("r", "retry", "Retry", id="task.retry", tooltip="Run the selected task again"),
        Binding("e", "edit", "Edit", id="task.edit", tooltip="Edit the command, then run it"),
        Binding("a", "note", "Note", id="run.note", tooltip="Add a note to the transcript"),
        Binding("o", "related", "Related", id="run.related", tooltip="Open a related runbook"),
        Binding("x", "export", "Export", id="run.export", tooltip="Export the transcript as Markdown"),
        Binding("m", "messages", "Messages", show=False, id="run.messages",
                tooltip="Every notice of this run in full (keyring, trust, another run...)"),
        Binding("ctrl+c", "interrupt", "Interrupt", id="task.interrupt", priority=True,
                tooltip="Interrupt the running command"),
        Binding("]", "next_tab", "Next tab", show=False, id="tabs.next", tooltip="Next output or container tab"),
        Binding("[", "previous_tab", "Previous tab", show=False, id="tabs.previous",
                tooltip="Previous output or container tab"),
    ]

    def __init__(self, runbook: Runbook, run: Run | None, *, git: dict[str, Any], follow_path: str | None = None,
                 redactor: Redactor | None = None, interrupted: str = "ask") -> None:
        """`interrupted`: resume's answer for the task that was running when the run stopped
        (rerun, skip, done), or "ask"."""
        super().__init__()
        self.interrupted = interrupted
        self.runbook = runbook
        self.run = run
        self.git = git
        self.follow_path = follow_path
        self.read_only = run is None
        self.running: Task | None = None
        self.containers: ContainerWatch | None = None
        self._redactor = redactor  # watch mode: what the keyring let us read
        self._output_pane: OutputPane | None = None
        self._started = threading.Event()  # run.started is recorded
        self._running_since = 0.0  # when the running command started (for the task card)
        self._stop_following = threading.Event()
        self.messages: list[RunNotice] = []  # every notice shown, in full behind `m`

    # ---- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield RunHeader(self.runbook, self.git, id="header")
        if self.runbook.watches:
            yield ContainerStatus(self.runbook.watches, id="containers")
        with Horizontal(id="main"):
            yield StepTree(self.runbook, risk_of=self._risk_of, id="tree")
            with Vertical(id="right"):
                yield StepView(id="view")
                yield HostList(self.runbook, id="hosts")
                with TabbedContent(id="tabs"):
                    with TabPane("Output", id="output-tab"):
                        yield OutputPane(id="output")
                    for watch in self.runbook.watches:
                        with TabPane(f"docker: {watch.docker}", id=tab_id(watch)):
                            yield OutputPane(id=f"{tab_id(watch)}-pane")
        yield Footer()

    def _risk_of(self, task: Task) -> str:
        """The tree shows the risk the prompt will ask for: the run's own, with its values."""
        if self.run is not None:
            return self.run.session.risk(task).level
        return task_risk(self.runbook, task).level

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)
        header = self.query_one(RunHeader)
        header.mode = "watch (read-only)" if self.run is None else self.run.mode
        tree = self.query_one(StepTree)
        tree.focus()
        settled = self.run.settled() if self.run is not None else {}
        for task in self.runbook.tasks():
            if task.id in settled:  # a resumed run: what the interrupted one finished
                tree.set_status(task, settled[task.id])
        header.done = sum(1 for status in settled.values() if status in SETTLED_STATUSES)
        first = next((t for t in self.runbook.tasks() if t.id not in settled), None)
        if first is not None:
            self.call_after_refresh(self.query_one(StepTree).select_id, first.id)
        else:
            self.notify("This runbook has no steps and no commands: nothing here can be run. `runbook-tui check "
                        "--json` shows how each block was read; docs/runbook-format.md says what becomes a step.",
                        severity="warning", timeout=30)
        pane = self.query_one("#output", OutputPane)
        if self.run is None:
            pane.use_transcript(self.follow_path)
            self._follow()
            self._watch_containers()
        else:
            pane.use_transcript(self.run.transcript_path, self.run.output_since)
            for notice in self.run.notices:
                self.tell(notice)
            self._start()

    def tell(self, notice: RunNotice) -> None:
        """One line on screen; the whole notice stays behind `m` (a toast goes away)."""
        self.messages.append(notice)
        # markup=False: a notice quotes paths and names from the runbook ("x[red]y.md" is a file name)
        self.notify(notice.summary + (" (m: details)" if notice.details else ""), severity="warning", timeout=15,
                    markup=False)

    def action_messages(self) -> None:
        body = Text()
        for notice in self.messages:
            body.append(notice.summary + "\n", style="bold")
            if notice.details:
                body.append(notice.details + "\n")
            body.append("\n")
        self.app.push_screen(Reading("Messages of this run", body if self.messages else Text("No messages.")))

    def _watch_containers(self) -> None:
        """Container log tabs, redacted from their first line (so only once secrets are read)."""
        if not self.runbook.watches:
            return
        redactor = self.run.redactor if self.run is not None else self._redactor
        if redactor is None:
            self.notify("Container logs are not shown: a secret they could print cannot be read from the "
                        "keyring here, so they could not be redacted.", severity="warning", timeout=15)
            return
        self.containers = ContainerWatch(self.runbook.watches, redactor.redact)
        self.containers.start(lambda watch: self.query_one(f"#{tab_id(watch)}-pane", OutputPane))

    def on_unmount(self) -> None:
        self._stop_following.set()
        if self.containers is not None:
            self.containers.stop()

    # ---- run lifecycle (worker threads) ------------------------------------------------------
    @work(thread=True, group="startup", exit_on_error=False)
    def _start(self) -> None:
        """Read secrets (asking for missing ones), record run.started; tasks wait for it."""
        assert self.run is not None
        for notice in self.run.read_secrets(ask=True):
            self.app.call_from_thread(self.tell, notice)
        self.run.start()
        self._settle_interrupted()
        self._started.set()
        self.app.call_from_thread(self._watch_containers)

    def _settle_interrupted(self) -> None:
        """Resume: the operator decides what became of the task that was running when the run
        stopped (the engine has already refused if its command still lives)."""
        from runbook_tui.tui.prompter import ScreenPrompter

        assert self.run is not None
        task = self.run.interrupted_task
        if task is None:
            return
        choices = ["rerun", "skip", "done"]
        picked = choices.index(self.interrupted) if self.interrupted in choices else ScreenPrompter(self.app).ask(Choose(
            f"Task {task.id} was running when the run stopped. Its command is no longer running: run it "
            "again, skip it, or mark it done (you checked it finished)?",
            ["Run it again when its turn comes", "Skip it (recorded)", "Mark it done (recorded)"]))
        choice = choices[picked] if picked is not None else "rerun"
        self.run.settle_interrupted(choice)
        if choice == "rerun":
            self.app.call_from_thread(self.query_one(StepTree).select_id, task.id)

    @work(thread=True, exclusive=True, group="session", exit_on_error=False)
    def _run_task(self, task: Task, edited: str | None = None) -> None:
        assert self.run is not None
        self.running = task
        self._started.wait()  # an early enter must not run anything before run.started is on disk
        from runbook_tui.engine.session import MissingValue

        try:
            self.run.run_task(task.id, edited=edited)
        except MissingValue as exc:
            self.app.call_from_thread(self.notify, f"Not run: {exc}", severity="warning", markup=False)
        finally:
            self.running = None
            if self.run.session.disconnected.is_set():
                self.app.call_from_thread(self.end_run, False)

    @work(thread=True, group="run-call", exit_on_error=False)
    def _call(self, method: str, *args: Any) -> None:
        """A recorded action of the run's (skip, note, jump, mode), once run.started is on disk."""
        from runbook_tui.engine.session import RunEnded

        assert self.run is not None
        self._started.wait()
        try:
            getattr(self.run, method)(*args)
        except RunEnded as exc:
            self.app.call_from_thread(self.notify, f"Not recorded: {exc}.", severity="warning", markup=False)

    @work(thread=True, group="follow", exit_on_error=False)
    def _follow(self) -> None:
        assert self.follow_path is not None
        for event in follow(self.follow_path, self._stop_following):
            self.app.call_from_thread(self.apply_event, event)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(f"Something went wrong: {event.worker.error}", severity="error", timeout=20, markup=False)

    # ---- what the run reports ------------------------------------------------------------------
    def event(self, event: dict[str, Any]) -> None:  # type: ignore[override]
        """Observer: a transcript event is on disk (called on the run's thread)."""
        if event["type"] == "output" and not self.read_only:
            return  # apply_event ignores it; waiting for the UI here would hold back the transcript
        if threading.current_thread() is threading.main_thread():
            self.apply_event(event)
        else:
            self.app.call_from_thread(self.apply_event, event)

    def output(self, task_id: str, text: str, host: str | None = None) -> None:
        """Observer: live output (called on the PTY reader thread, or the SSH pool's for a host)."""
        if self._output_pane is None:  # no DOM query per chunk on the reader thread
            self._output_pane = self.query_one("#output", OutputPane)
        self._output_pane.feed(task_id, text, host)

    def apply_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        tree = self.query_one(StepTree)
        pane = self.query_one("#output", OutputPane)
        task = self.runbook.find(event.get("task_id", "")) if event.get("task_id") else None
        self.query_one(HostList).apply(event)
        # A host's own lines (its command, its end) go to that host's output, next to the task's.
        log = host_log_id(task.id, event["host"]) if isinstance(task, Task) and event.get("host") else None
        if kind == "command.started" and isinstance(task, Task):
            self.query_one("#tabs", TabbedContent).active = "output-tab"  # a container tab gives way
            tree.set_status(task, "running")
            pane.set_live(task.id)
            self._running_since = time.monotonic()
            self._refresh_view()
            attempt = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
            pane.mark(log or task.id, f"$ {event['run_command']}{attempt}")
            if split_log_id(pane.shown or "")[0] != task.id:  # a host of it the operator chose stays
                pane.show(task.id)
        elif kind == "output" and self.read_only:
            pane.feed(event["task_id"], event["text"], event.get("host"))
        elif kind == "command.finished" and isinstance(task, Task):
            if log is None:  # a fan-out is live until its task finishes
                pane.set_live(None)
            ended = f"exit {event['exit_code']}" if event["exit_code"] is not None else f"signal {event['signal']}"
            pane.mark(log or task.id, f"[{ended}{', timed out' if event.get('timed_out') else ''}, {event['duration']}s]")
        elif kind == "command.planned" and isinstance(task, Task):
            pane.mark(task.id, f"would run in {event['cwd']}:\n{event['run_command']}")
            pane.show(task.id)
        elif kind == "task.finished" and isinstance(task, Task):
            pane.set_live(None)
            tree.set_status(task, event["status"])
            self.query_one(RunHeader).done = sum(1 for s in tree.status.values() if s in SETTLED_STATUSES)
            self._refresh_view()
            if event["status"] in SETTLED_STATUSES:
                self._guide_after(task)
                if self.run is not None and self.run.all_settled():
                    self._seal()
            else:
                reason = f": {event['reason']}" if event.get("reason") else ""
                self.notify(f"Task {task.id} {event['status'].replace('_', ' ')}{reason}", severity="error",
                            timeout=10, markup=False)  # a reason may quote the command or its output
        elif kind == "mode.changed":
            self.query_one(RunHeader).mode = event["mode"]
            if event.get("refused"):
                self.notify(event["refused"], severity="warning", timeout=15, markup=False)
            else:
                self.notify(f"Mode is now {event['mode']}.")
        elif kind == "run.finished":
            self.notify(f"Run {event['result']}: every task is settled and the transcript is sealed. "
                        "Press x to export it, q to leave.",
                        severity="information" if event["result"] == "success" else "error", timeout=30)
        elif kind == "run.aborted":
            self.notify(f"Run aborted: {event['reason']}", severity="error", markup=False)

    def _guide_after(self, task: Task) -> None:
        """The guided sequence: after a task settles, select the next one not yet settled."""
        tree = self.query_one(StepTree)
        tasks = list(self.runbook.tasks())
        after = tasks[tasks.index(task) + 1 :] + tasks
        nxt = next((t for t in after if tree.status.get(t.id, "pending") not in SETTLED_STATUSES), None)
        if nxt is not None:
            tree.select_id(nxt.id)

    # ---- selection -----------------------------------------------------------------------------
    @property
    def selected(self) -> Item | None:
        node = self.query_one(StepTree).cursor_node
        return node.data if node is not None else None

    def on_step_tree_selected(self, message: StepTree.Selected) -> None:
        self._refresh_view(message.item)
        self.query_one(HostList).show_task(message.item.task)
        pane = self.query_one("#output", OutputPane)
        if message.item.task is not None and pane.shown != message.item.task.id:
            pane.show(message.item.task.id)

    def on_host_list_selected(self, message: HostList.Selected) -> None:
        """A host of the selected task: the pane shows its own output (the title says which)."""
        self.query_one("#output", OutputPane).show(host_log_id(message.task_id, message.host))

    def _refresh_view(self, item: Item | None = None) -> None:
        item = item or self.selected
        if item is None:
            return
        status = self.query_one(StepTree).status.get(item.task.id, "pending") if item.task else ""
        if status == "running":
            status = f"running for {int(time.monotonic() - self._running_since)}s"
        self.query_one(StepView).show(item, status)

    def _tick(self) -> None:
        """Once a second: the running task's card counts its time."""
        item = self.selected
        if self.running is not None and item is not None and item.task is self.running:
            self._refresh_view(item)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Item]) -> None:
        """Enter on a task: run the command, or mark the manual check done. Enter on a step or
        section heading: go to its next task that is still to do."""
        item = event.node.data
        if item is None:
            return
        if item.task is None:
            tree = self.query_one(StepTree)
            nxt = tree.next_pending(item)
            if nxt is None:
                self.notify("Everything under this heading is done.")
            else:
                tree.select_id(nxt.id)
            return
        self.activate(item)

    # ---- actions -------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in ("skip", "retry", "edit", "note", "export", "interrupt"):
            return False
        return True

    @work(thread=True, group="run-call", exit_on_error=False)
    def _seal(self) -> None:
        """The last task settled: the run ends now (run.finished), not when the operator quits."""
        assert self.run is not None
        self.run.end()

    def _ended(self) -> bool:
        if self.run is not None and self.run.session.ended:
            self.notify("This run has ended and its transcript is sealed; start a new run to do more.",
                        severity="warning")
            return True
        return False

    def _busy(self) -> bool:
        if self.running is not None:
            self.notify(f"Task {self.running.id} is running: wait for it, or ctrl+c to interrupt it.",
                        severity="warning")
            return True
        return False

    def activate(self, item: Item) -> None:
        if self.read_only or self._busy() or self._ended() or item.task is None or item.step is None:
            return
        status = self.query_one(StepTree).status.get(item.task.id, "pending")
        if status in SETTLED_STATUSES:
            self.notify(f"Task {item.task.id} is already {status}; press r to do it again.")
            return
        self._run_task(item.task)

    def _selected_task(self) -> Task | None:
        item = self.selected
        if item is None or item.task is None or item.step is None:
            self.notify("Select a task first.", severity="warning")
            return None
        return item.task

    def action_retry(self) -> None:
        task = self._selected_task()
        if task is not None and not self._busy() and not self._ended():
            self._run_task(task)

    def action_skip(self) -> None:
        task = self._selected_task()
        if task is None or self._busy() or self._ended():
            return

        def skipped(reason: str | None) -> None:
            if reason:
                self._call("skip", task.id, reason)

        self.app.push_screen(TextPrompt(f"Why skip task {task.id}?", "reason"), skipped)

    def action_edit(self) -> None:
        task = self._selected_task()
        if task is None or self._busy() or self._ended() or task.command is None:
            return

        def edited(command: str | None) -> None:
            if command:
                self._run_task(task, command)

        self.app.push_screen(EditCommand(task.command), edited)

    def action_note(self) -> None:
        if self._ended():
            return
        item = self.selected
        task_id = item.task.id if item and item.task else None

        def noted(text: str | None) -> None:
            if text:
                self._call("note", text, task_id)
                self.notify("Note added to the transcript.")

        self.app.push_screen(TextPrompt("Note for the transcript", "what happened"), noted)

    def action_export(self) -> None:
        if self.run is not None:
            self._export()

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self) -> None:
        assert self.run is not None
        target = self.run.export("md")
        self.app.call_from_thread(self.notify, f"Exported to {target.resolve()}", timeout=15, markup=False)

    def action_related(self) -> None:
        related = self.runbook.related
        if not related:
            self.notify("This runbook links to no other runbook.")
            return
        if len(related) == 1:
            self.open_related(0)
            return
        base = Path(self.runbook.path).parent
        labels = [f"{visible(r.title)} ({visible(r.target)})" + ("" if (base / r.target).exists() else "  [missing file]")
                  for r in related]
        self.app.push_screen(Choose("Open which runbook?", labels),
                             lambda index: self.open_related(index) if index is not None else None)

    def open_related(self, index: int) -> None:
        """Open a related runbook on top; a missing or broken file is a notification, not a crash."""
        from runbook_tui.parse import load_runbook
        from runbook_tui.parse.errors import RunbookError

        target = Path(self.runbook.path).parent / self.runbook.related[index].target
        try:
            related = load_runbook(target)
        except RunbookError as exc:
            self.notify(str(exc), severity="error", timeout=15, markup=False)  # it quotes the file
            return
        self.app.push_screen(RelatedScreen(related, self.run))

    def action_interrupt(self) -> None:
        if self.running is None or self.run is None:
            self.notify("No command is running.")
            return
        run = self.run
        self.app.push_screen(YesNo(f"Interrupt task {self.running.id}?"),
                             lambda yes: run.cancel_command() if yes else None)

    def _switch_tab(self, step: int) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        ids = [pane.id for pane in tabs.query(TabPane) if pane.id]
        if ids:
            current = ids.index(tabs.active) if tabs.active in ids else 0
            tabs.active = ids[(current + step) % len(ids)]

    def action_next_tab(self) -> None:
        self._switch_tab(1)

    def action_previous_tab(self) -> None:
        self._switch_tab(-1)

    def set_mode(self, mode: Mode) -> None:
        """From the command palette: the run decides (and records) what mode it may use."""
        if self.run is not None and mode in MODES and not self._ended():
            self._call("change_mode", mode)

    def forget_value(self, name: str) -> None:
        if self.run is not None and not self._ended():
            self._call("forget_value", name)
            self.notify(f"{name} will be asked for again by the next task that needs it.")

    def jump(self, element_id: str) -> None:
        self.query_one(StepTree).select_id(element_id)
        if self.run is not None and not self.run.session.ended:  # after the end, moving is only reading
            self._call("jump", element_id)

    # ---- ending --------------------------------------------------------------------------------
    def switch_to(self, runbook: Runbook) -> None:
        """End this run and hand over to `runbook` (the CLI starts its run when the app exits).

        Not while a command runs: its outcome belongs to this run and must be seen first.
        """
        if self.run is None:
            return
        if self.running is not None:
            self.notify(f"Task {self.running.id} is running: wait for it, or interrupt it (ctrl+c), "
                        "before you switch.", severity="warning")
            return
        run = self.run
        pending = len(run.pending())
        self.app.push_screen(YesNo(f"End this run ({pending} task(s) not done) and run {visible(runbook.title)}?"),
                             lambda yes: self._switch(runbook) if yes else None)

    @work(thread=True, group="quit", exit_on_error=False)
    def _switch(self, runbook: Runbook) -> None:
        assert self.run is not None
        self._close_and_exit(self.run.switch_to(runbook))

    def quit_run(self) -> None:
        if self.run is None:
            self._stop_following.set()
            self.app.exit(0)
            return
        if self.running is not None:
            self.app.push_screen(YesNo(f"Task {self.running.id} is running. Interrupt it and quit?"),
                                 lambda yes: self.end_run(True) if yes else None)
            return
        self.end_run(False)

    @work(thread=True, group="quit", exit_on_error=False)
    def end_run(self, interrupt: bool) -> None:
        """Stop what runs, then end the transcript (finished if every task settled, else aborted)."""
        assert self.run is not None
        if interrupt:
            self.run.interrupt()
            while self.running is not None:  # the command's group is being stopped; let it record that
                time.sleep(0.05)
        self._close_and_exit(self.run.end())

    def _close_and_exit(self, code: int) -> None:
        assert self.run is not None
        self.run.close()
        if self.run.session.disconnected.is_set():
            # Everything is recorded and there is no screen left to restore. Textual's shutdown
            # would write to the lost terminal and can block for ever on its bounded writer
            # queue, holding the run lock: leave now (the kernel drops the lock's flock).
            os._exit(code)
        self.app.call_from_thread(self.app.exit, code)

