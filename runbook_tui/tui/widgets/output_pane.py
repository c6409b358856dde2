"""The live log pane: every task's whole output, fed in batches so a flood never freezes the screen.

Output arrives on the PTY reader thread and only goes into a queue there. A timer on the app's
thread drains the queue every 50 ms into one `TaskLog` per task (the last lines in memory, the
count of all of them) and tells the `LogView` that the shown task grew; the view renders only
the rows on screen and reads older lines back from the transcript (`TranscriptLines`) on a
worker thread. While a flood brings more lines per drain than the memory keeps, the pane drains
every FLOOD_INTERVAL instead: the screen still moves, and the app's thread is left to the keys.

Keys (shown in the footer while the pane has focus): `/` search the whole output, `n`/`N` next
and previous match, `w` wrap, `f` follow, `End` back to the live end, `c` copy the selected
lines (shift+up/down or shift+click select), `t` timestamps.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Static

from runbook_tui.audit.terminal import without_styles
from runbook_tui.hostlines import HostPrefixer
from runbook_tui.tui.widgets.log_view import LogView
from runbook_tui.tui.widgets.task_log import MAX_LINE, MAX_LINES, LogSnapshot, TaskLog
from runbook_tui.tui.widgets.transcript_lines import TranscriptLines, host_log_id, split_log_id

__all__ = ["MAX_LINE", "MAX_LINES", "OutputPane"]

DRAIN_INTERVAL = 0.05
FLOOD_INTERVAL = 0.25


class OutputPane(Vertical):
    """The selected task's output, following the tail unless the operator moves away from it."""

    BINDINGS = [
        Binding("slash", "search", "Search", id="log.search",
                tooltip="Search the whole output, older lines on disk included"),
        Binding("n", "find", "Next", id="log.next", tooltip="Go to the next match of the search"),
        Binding("N", "find(True)", "Previous", id="log.previous", tooltip="Go to the previous match of the search"),
        Binding("w", "toggle_wrap", "Wrap", id="log.wrap", tooltip="Wrap long lines, or scroll them sideways"),
        Binding("f", "toggle_follow", "Follow", id="log.follow", tooltip="Follow the newest output, or stay put"),
        Binding("end", "live", "Live", id="log.live", tooltip="Jump to the newest output and follow it"),
        Binding("c", "copy", "Copy", id="log.copy",
                tooltip="Copy the selected lines to the clipboard (select with shift+up/down or shift+click)"),
        Binding("t", "toggle_timestamps", "Times", id="log.timestamps",
                tooltip="Show when each line arrived (UTC)"),
        Binding("escape", "dismiss", "Close search", show=False, id="log.dismiss",
                tooltip="Close the search field, or clear the search and the selection"),
    ]
    DEFAULT_CSS = """
    OutputPane { height: 1fr; border-top: hkey $panel; border-title-color: $text-muted; }
    OutputPane:focus-within { border-top: hkey $accent; border-title-color: $text; }
    OutputPane #partial { height: 1; color: $text-muted; }
    OutputPane #log-search { dock: bottom; display: none; }
    OutputPane #log-search.-open { display: block; }
    """

    @dataclass
    class Found(Message):
        """A search worker finished: the matching line, or None."""

        task_id: str
        query: str
        line: int | None

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._queue: deque[tuple[str, str, bool]] = deque()  # (task, text, is a mark of ours)
        self._logs: dict[str, TaskLog] = {}
        self.shown: str | None = None
        self._last: str | None = None  # the task whose output arrived last
        self._live: str | None = None  # the task whose command is running
        self._flooding = False  # the last drain brought more lines than the pane keeps
        self._drained_at = 0.0
        self._source: TranscriptLines | None = None
        self._query = ""
        self._prefixer = HostPrefixer()  # fed on one thread: the SSH pool's loop

    def compose(self) -> ComposeResult:
        yield LogView(id="log")
        yield Static("", id="partial")
        yield Input(placeholder="search the whole output (enter: find, escape: close)", id="log-search")

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self.set_interval(DRAIN_INTERVAL, self.drain)

    # ---- where older lines are read from ------------------------------------------------------
    def use_transcript(self, path: str | os.PathLike[str] | None, since: int = 0) -> None:
        """Read lines older than the memory's from this transcript's `output` events.

        `since`: the byte offset where this pane's output starts (a resumed run's file already
        holds the earlier session's events; a watched one is read from 0).
        """
        self._source = TranscriptLines(path, since) if path is not None else None
        if self.is_mounted:
            self.view.source = self._source
            self.view.show(self.shown, self._logs.get(self.shown or ""))

    # ---- feeding ---------------------------------------------------------------------------------
    def feed(self, task_id: str, text: str, host: str | None = None) -> None:
        """Any thread: queue output for the next drain. A host's output goes to its task's log,
        each line labelled with the host, and to the host's own log (`host_log_id`)."""
        if host is None:
            self._queue.append((task_id, text, False))
            return
        self._queue.append((task_id, self._prefixer.feed(host, text), False))
        self._queue.append((host_log_id(task_id, host), text, False))

    def mark(self, task_id: str, text: str) -> None:
        """A line of our own in a task's output (attempt separators, exit status); not on disk."""
        self._queue.append((task_id, text, True))

    def set_live(self, task_id: str | None) -> None:
        """The task whose command is running now (None: none); the title says so."""
        self._live = task_id
        self._retitle()

    def drain(self, *, now: bool = False) -> None:
        """App thread: move queued output into the task logs and tell the view.

        `now` drains even during a flood (switching tasks must show everything so far).
        """
        if not self._queue:
            return
        if self._flooding and not now and time.monotonic() - self._drained_at < FLOOD_INTERVAL:
            return
        self._drained_at = time.monotonic()
        stamp = time.time()
        arrived = 0
        touched_shown = False
        while self._queue:
            task_id, text, own = self._queue.popleft()
            log = self._logs.setdefault(task_id, TaskLog())
            if own:
                log.mark(text, stamp)
            else:
                texts = [text]  # a run of chunks of one task is split into lines at once
                while self._queue and self._queue[0][0] == task_id and not self._queue[0][2]:
                    texts.append(self._queue.popleft()[1])
                arrived += log.add("".join(texts), stamp)
            self._last = task_id
            touched_shown = touched_shown or task_id == self.shown
        self._flooding = arrived >= MAX_LINES
        if touched_shown:
            if self.view.lines is None:  # shown before its first output
                self.view.show(self.shown, self._logs[self.shown or ""])
            self.view.grew()
            self._show_partial()
            if not self.view.follow:
                self._retitle()

    # ---- what is shown ---------------------------------------------------------------------------
    def show(self, task_id: str | None) -> None:
        """Switch the pane to another task's output.

        A task that has not run yet shows the output of the last one that did, labelled, so
        the guide moving on does not hide what just happened.
        """
        self.drain(now=True)
        if task_id is not None and split_log_id(task_id)[1] is not None:
            self._logs.setdefault(task_id, TaskLog())  # a host's own output: its own, even if empty yet
        self._stand_in = task_id not in self._logs and self._last is not None
        if self._stand_in:
            task_id = self._last
        self.shown = task_id
        view = self.view
        view.source = self._source
        view.show(task_id, self._logs.get(task_id or ""))
        view.pattern = None
        self._retitle()
        self._show_partial()

    _stand_in = False  # the selected task has not run: the pane shows the last one that did

    def _retitle(self) -> None:
        """The title: whose output, whether it is live, and where the view is when not following."""
        if self.shown is None:
            self.border_title = ""
            return
        view = self.view
        task_id, host = split_log_id(self.shown)
        title = f"output of task {task_id}" + (f" on {host}" if host else "")
        if task_id == self._live:
            title += " · live"
        if self._stand_in:
            title += " (the selected task has not run)"
        log = self._logs.get(self.shown)
        count = log.count if log else 0
        state = [] if view.follow else [f"line {view.cursor + 1:,} of {count:,}" if view.cursor is not None
                                        else f"paused at {count:,} lines"]
        state += [name for name, on_ in (("wrap", view.wrap), ("times", view.timestamps)) if on_]
        if view.pattern is not None:
            state.append(f"search: {self._query}")
        # a host's name and the search typed are text, not markup (`[/x]` in a search made it raise)
        self.border_title = Content(title + (f" — {', '.join(state)}" if state else ""))

    def on_log_view_changed(self, message: LogView.Changed) -> None:
        message.stop()
        self._retitle()

    def _show_partial(self) -> None:
        log = self._logs.get(self.shown or "")
        # the command's own text, as written: `[/x]` in a prompt is not markup (it made the screen raise)
        self.query_one("#partial", Static).update(Text(without_styles(log.partial[-500:]) if log else ""))

    def lines_of(self, task_id: str) -> list[str]:
        """The lines of a task still in memory, as plain text."""
        log = self._logs.get(task_id)
        return log.plain_tail() if log else []

    # ---- keys ------------------------------------------------------------------------------------
    def action_toggle_wrap(self) -> None:
        self.view.wrap = not self.view.wrap

    def action_toggle_follow(self) -> None:
        self.view.follow = not self.view.follow

    def action_live(self) -> None:
        self.view.follow = True

    def action_toggle_timestamps(self) -> None:
        self.view.timestamps = not self.view.timestamps

    def action_search(self) -> None:
        field = self.query_one("#log-search", Input)
        field.add_class("-open")
        field.value = self._query
        field.focus()

    def action_dismiss(self) -> None:
        field = self.query_one("#log-search", Input)
        view = self.view
        if field.has_class("-open"):
            field.remove_class("-open")
        else:
            view.pattern = view.current_match = view.anchor = None
        view.focus()
        view.restyle()
        self._retitle()

    @on(Input.Submitted, "#log-search")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._query = event.value
        event.input.remove_class("-open")
        self.view.focus()
        self.view.pattern = _pattern(self._query) if self._query else None
        self.view.restyle()
        self._retitle()
        self.action_find()

    def action_find(self, backward: bool = False) -> None:
        view = self.view
        log = self._logs.get(self.shown or "")
        if view.pattern is None or log is None or self.shown is None:
            self.notify("Nothing to search for: press / and type what to find.")
            return
        self._search(log.snapshot(), self._source, self.shown, view.pattern, self._query,
                     view.current_line(), backward)

    @work(thread=True, exclusive=True, group="log-search", exit_on_error=False)
    def _search(self, snapshot: LogSnapshot, source: TranscriptLines | None, task_id: str,
                pattern: re.Pattern[str], query: str, start: int, backward: bool) -> None:
        self.post_message(self.Found(task_id, query, snapshot.find(pattern, start, source, task_id,
                                                                   backward=backward)))

    def on_output_pane_found(self, message: Found) -> None:
        message.stop()
        if message.task_id != self.shown or message.query != self._query:
            return
        if message.line is None:
            self.notify(f"{message.query!r} is not in the output of task {message.task_id}.", markup=False)
            return
        view = self.view
        view.current_match = message.line
        view.go_to(message.line, center=True)

    def action_copy(self) -> None:
        view = self.view
        if view.cursor is None or self.shown is None:
            self.notify("Select lines first: up/down, shift+up/down or a click.")
            return
        log = self._logs[self.shown]
        held, missing = view.copy_plan()
        self._copy(self.shown, held, {n: log.disk_number(n) for n in missing})

    @work(thread=True, group="log-copy", exit_on_error=False)
    def _copy(self, task_id: str, held: dict[int, str], missing: dict[int, int]) -> None:
        """Copy the selection, reading first the lines of it that are only on disk."""
        if missing and self._source is not None:
            first = min(missing.values())
            read = self._source.read(task_id, first, max(missing.values()) - first + 1)
            for number, on_disk in missing.items():
                held[number] = without_styles(read[on_disk - first].text) if on_disk - first < len(read) else ""
        text = "\n".join(held.get(n, "") for n in sorted(held.keys() | missing.keys()))
        self.app.call_from_thread(self.app.copy_to_clipboard, text)
        count = text.count("\n") + 1
        self.app.call_from_thread(self.notify, f"Copied {count:,} line{'s' if count != 1 else ''}.")


def _pattern(query: str) -> re.Pattern[str]:
    """The search as typed, literally; case matters only when it has a capital letter (smart case)."""
    return re.compile(re.escape(query), 0 if any(c.isupper() for c in query) else re.IGNORECASE)

