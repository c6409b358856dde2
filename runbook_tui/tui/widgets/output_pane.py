"""The live log pane: a task's output, fed in batches so a flood never freezes the screen.

Output arrives on the PTY reader thread and only goes into a queue there. A timer on the app's
thread drains the queue every 50 ms, splits it into lines (a carriage return overwrites the line,
as on a terminal), keeps the last MAX_LINES per task, and writes only what the Log can show.
While a flood brings more lines per drain than the pane keeps, every drain replaces the whole
Log, so it drains every FLOOD_INTERVAL instead: the screen still moves, and the app's thread
is left to the keys. The full output is in the transcript, not here.
"""

from __future__ import annotations

import time
from collections import deque

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, Static

from runbook_tui.audit.terminal import TerminalFilter

MAX_LINES = 5000
MAX_LINE = 4000  # characters of one line kept for display (a 50 MB line stays in the transcript)
DRAIN_INTERVAL = 0.05
FLOOD_INTERVAL = 0.25


class TaskOutput:
    """The retained tail of one task's output and its unfinished last line."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=MAX_LINES)
        self.partial = ""
        self._plain = TerminalFilter(colors=False)  # escapes may be split across chunks

    def add(self, text: str) -> list[str]:
        """Take raw text; return the lines it completed."""
        text = self._plain.feed(text)
        cut = len(text)
        for _ in range(MAX_LINES + 1):
            cut = text.rfind("\n", 0, cut)
            if cut < 0:
                break
        if cut >= 0:  # more than MAX_LINES lines in this batch: the older ones would be dropped anyway
            self.partial, text = "", text[cut + 1 :]
        pieces = (self.partial + text).split("\n")
        self.partial = _overwrite(pieces.pop())[-MAX_LINE:]
        done = [_overwrite(piece)[:MAX_LINE] for piece in pieces[-MAX_LINES:]]
        self.lines.extend(done)
        return done


def _overwrite(line: str) -> str:
    """What a terminal shows for a line with carriage returns: the text after the last one."""
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[-1] if "\r" in line else line


class OutputPane(Vertical):
    """The selected task's output, following the tail unless the operator scrolls up."""

    DEFAULT_CSS = """
    OutputPane { height: 1fr; border-top: hkey $panel; border-title-color: $text-muted; }
    OutputPane Log { height: 1fr; }
    OutputPane #partial { height: 1; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._queue: deque[tuple[str, str]] = deque()
        self._outputs: dict[str, TaskOutput] = {}
        self.shown: str | None = None
        self._last: str | None = None  # the task whose output arrived last
        self._flooding = False  # the last drain brought more lines than the pane keeps
        self._drained_at = 0.0

    def compose(self) -> ComposeResult:
        yield Log(max_lines=MAX_LINES, id="log")
        yield Static("", id="partial")

    def on_mount(self) -> None:
        self.set_interval(DRAIN_INTERVAL, self.drain)

    def feed(self, task_id: str, text: str) -> None:
        """Any thread: queue output for the next drain."""
        self._queue.append((task_id, text))

    def drain(self, *, now: bool = False) -> None:
        """App thread: move queued output into the per-task buffers and the visible Log.

        `now` drains even during a flood (switching tasks must show everything so far).
        """
        if not self._queue:
            return
        if self._flooding and not now and time.monotonic() - self._drained_at < FLOOD_INTERVAL:
            return
        self._drained_at = time.monotonic()
        arrived = 0
        visible: list[str] = []
        touched_shown = False
        batches: dict[str, list[str]] = {}
        while self._queue:
            task_id, text = self._queue.popleft()
            batches.setdefault(task_id, []).append(text)
        for task_id, texts in batches.items():
            completed = self._outputs.setdefault(task_id, TaskOutput()).add("".join(texts))
            arrived += len(completed)
            self._last = task_id
            if task_id == self.shown:
                visible.extend(completed)
                touched_shown = True
        self._flooding = arrived >= MAX_LINES
        if touched_shown:
            log = self.query_one(Log)
            if visible:
                log.write_lines(visible[-MAX_LINES:])
            self._show_partial()

    def show(self, task_id: str | None) -> None:
        """Switch the pane to another task's retained output.

        A task that has not run yet shows the output of the last one that did, labelled, so
        the guide moving on does not hide what just happened.
        """
        self.drain(now=True)
        if task_id not in self._outputs and self._last is not None:
            self.border_title = f"output of task {self._last} (the selected task has not run)"
            task_id = self._last
        else:
            self.border_title = f"output of task {task_id}" if task_id else ""
        self.shown = task_id
        log = self.query_one(Log)
        log.clear()
        output = self._outputs.get(task_id or "")
        if output is not None:
            log.write_lines(list(output.lines))
        self._show_partial()

    def _show_partial(self) -> None:
        output = self._outputs.get(self.shown or "")
        self.query_one("#partial", Static).update(output.partial[-500:] if output else "")

    def lines_of(self, task_id: str) -> list[str]:
        output = self._outputs.get(task_id)
        return list(output.lines) if output else []

    def mark(self, task_id: str, text: str) -> None:
        """A line of our own in a task's output (attempt separators, exit status)."""
        self.feed(task_id, f"\n{text}\n")
