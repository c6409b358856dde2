"""A log viewer for one task's output at a time: only the visible lines are rendered.

Modelled on Textualize/toolong's `LogLines`: a `ScrollView` whose virtual height is the number
of lines, `render_line` turning just the rows on screen into strips (cached), and lines that are
not in memory read from the transcript by a worker thread; until they arrive a row shows a dim
ellipsis, and the worker's `LinesRead` message repaints it. Nothing the size of the output is
ever built on the UI thread, so a 5-million-line output scrolls and jumps like a short one.

Colours and text attributes come from the command's own SGR sequences, minus blink and conceal
(`terminal.steady_styles`). Wrapping cannot know how many rows millions of lines take, so a
wrapped view keeps scrolling by lines: the top line is the scroll position, and at the end the
rows are laid out upwards from the last line, so the newest output is always in view.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from runbook_tui.audit.terminal import steady_styles, without_styles
from runbook_tui.tui.widgets.task_log import TaskLog
from runbook_tui.tui.widgets.transcript_lines import DiskLine, TranscriptLines

READ_BLOCK = 200  # lines read from disk at a time around a missing one
DISK_CACHE = 4000  # disk lines kept for repainting (a few screens' worth, whatever the output's size)
RETRY_SHORT_READ = 1.0  # seconds before asking again for lines the transcript did not have yet
LOADING = "…"


class LogView(ScrollView, can_focus=True, inherit_bindings=False):
    """The lines of one `TaskLog`, older ones read on demand from a `TranscriptLines`."""

    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False, id="log.up", tooltip="Previous line (stops following)"),
        Binding("down", "move(1)", "Down", show=False, id="log.down", tooltip="Next line"),
        Binding("shift+up", "move(-1, True)", "Select up", show=False, id="log.select_up",
                tooltip="Extend the selection up"),
        Binding("shift+down", "move(1, True)", "Select down", show=False, id="log.select_down",
                tooltip="Extend the selection down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="log.page_up", tooltip="One screen up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="log.page_down", tooltip="One screen down"),
        Binding("home", "first", "First line", show=False, id="log.first",
                tooltip="The first line of the output (read from the transcript)"),
        Binding("left", "scroll_left", "Left", show=False, id="log.left", tooltip="Scroll left (without wrap)"),
        Binding("right", "scroll_right", "Right", show=False, id="log.right", tooltip="Scroll right (without wrap)"),
    ]
    DEFAULT_CSS = """
    LogView { height: 1fr; background: $surface; color: $text; overflow: scroll; }
    LogView:focus { background-tint: $foreground 5%; }
    LogView > .log-view--match { background: $warning 40%; }
    LogView > .log-view--current-match { background: $warning; color: $background; text-style: bold; }
    LogView > .log-view--selected { background: $primary 30%; }
    LogView > .log-view--cursor { background: $primary 50%; }
    LogView > .log-view--stamp { color: $text-muted; }
    LogView > .log-view--loading { color: $text-disabled; }
    """
    COMPONENT_CLASSES = {
        "log-view--match", "log-view--current-match", "log-view--selected", "log-view--cursor",
        "log-view--stamp", "log-view--loading",
    }

    follow: reactive[bool] = reactive(True, init=False)
    wrap: reactive[bool] = reactive(False, init=False)
    timestamps: reactive[bool] = reactive(False, init=False)

    @dataclass
    class LinesRead(Message):
        """A worker read lines of the shown task from the transcript."""

        task_id: str
        lines: dict[int, DiskLine]
        short: int | None  # the first block whose read came back short (not on disk yet)

    class Changed(Message):
        """Follow, wrap, timestamps or the cursor changed: the pane updates what it says."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: TaskLog | None = None
        self.task_id: str | None = None
        self.source: TranscriptLines | None = None
        self.cursor: int | None = None  # the line keys act on (None while following)
        self.anchor: int | None = None  # the other end of a selection
        self.pattern: Any = None  # a compiled search, highlighted on every visible line
        self.current_match: int | None = None
        self._disk: LRUCache[int, DiskLine] = LRUCache(DISK_CACHE)
        self._strips: LRUCache[int, Strip] = LRUCache(1024)
        self._asked: dict[int, float] = {}  # block -> when it was asked for (or came back short)
        self._rows: tuple[tuple[Any, ...], list[tuple[int, Strip]]] | None = None

    # ---- what is shown -----------------------------------------------------------------------
    def show(self, task_id: str | None, log: TaskLog | None) -> None:
        """Switch to another task's lines; the view follows its end again."""
        self.task_id, self.lines = task_id, log
        self.cursor = self.anchor = self.current_match = None
        self._disk.clear()
        self._asked.clear()
        self._strips.clear()  # rendered by line number: another task's line 3 is not this one's
        self.follow = True
        self.grew()

    @property
    def first_line(self) -> int:
        """The first line that can be shown: 0 when older lines are on disk, else the memory's first."""
        if self.lines is None:
            return 0
        return 0 if self.source is not None else self.lines.first_in_memory

    @property
    def line_count(self) -> int:
        return 0 if self.lines is None else self.lines.count - self.first_line

    def grew(self) -> None:
        """New lines arrived (or another task is shown): resize, and keep the end in view if following."""
        width = self._view_size.width if self.wrap else (self.lines.width if self.lines else 0) + self._stamp_width
        self.virtual_size = Size(width, self.line_count)
        self._rows = None
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)
        self.refresh()

    def restyle(self) -> None:
        """Search, selection or a toggle changed: every cached strip is stale."""
        self._strips.clear()
        self._rows = None
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
        self._rows = None

    @property
    def _view_size(self) -> Size:
        """Columns and rows for lines (the widget's size less its scrollbars)."""
        region = self.scrollable_content_region
        return Size(max(1, region.width), max(1, region.height))

    @property
    def _stamp_width(self) -> int:
        return 13 if self.timestamps else 0  # "HH:MM:SS.mmm "

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.cursor = self.anchor = None
            self._relayout()
        self.post_message(self.Changed())

    def watch_wrap(self) -> None:
        self._relayout()
        self.post_message(self.Changed())

    def watch_timestamps(self) -> None:
        self._relayout()
        self.post_message(self.Changed())

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        self.grew()
        self.restyle()

    # ---- lines -------------------------------------------------------------------------------
    def line_text(self, number: int) -> tuple[str, str] | None:
        """Line `number` (with SGR styles) and its time as HH:MM:SS.mmm; None until read from disk."""
        assert self.lines is not None
        held = self.lines.line(number)
        if held is not None:
            stamp = self.lines.stamp(number)
            return held, _clock(stamp) if stamp is not None else ""
        disk = self._disk.get(number)
        if disk is None:
            self._ask(number)
            return None
        return disk.text, disk.ts[11:23]

    def _ask(self, number: int) -> None:
        if self.source is None or self.lines is None or self.task_id is None:
            return
        block = number // READ_BLOCK
        asked = self._asked.get(block)
        if asked is not None and time.monotonic() - asked < RETRY_SHORT_READ:
            return
        self._asked[block] = time.monotonic()
        first = block * READ_BLOCK
        last = min(first + READ_BLOCK, self.lines.first_in_memory)
        wanted = [n for n in range(first, last) if n not in self.lines.marks]
        if wanted:
            self._read(self.task_id, self.source, block, self.lines.disk_number(wanted[0]), wanted)

    @work(thread=True, group="log-read", exit_on_error=False)
    def _read(self, task_id: str, source: TranscriptLines, block: int, disk_first: int, wanted: list[int]) -> None:
        lines = source.read(task_id, disk_first, len(wanted))
        self.post_message(self.LinesRead(task_id, dict(zip(wanted, lines)),
                                         block if len(lines) < len(wanted) else None))

    def on_log_view_lines_read(self, message: LinesRead) -> None:
        message.stop()
        if message.task_id != self.task_id:
            return
        for number, line in message.lines.items():
            self._disk[number] = line
            self._strips.discard(number)
        if message.short is None:
            self._asked.pop(next(iter(message.lines), -1) // READ_BLOCK, None)
        self._rows = None
        self.refresh()

    def _text(self, number: int) -> Text:
        """Line `number` as Rich text: its own styles over the widget's, search matches,
        selection, timestamp."""
        found = self.line_text(number)
        if found is None:
            text = Text(LOADING, style=self.get_component_rich_style("log-view--loading"), end="")
            text.no_wrap = not self.wrap
            return text
        raw, stamp = found
        safe = steady_styles(raw.expandtabs().replace("\b", ""))
        text = Text.from_ansi(safe, end="") if "\x1b" in safe else Text(safe, end="")
        text.stylize_before(self.rich_style)
        if self.pattern is not None:
            current = number == self.current_match
            style = self._highlight("log-view--current-match" if current else "log-view--match", whole=current)
            for match in self.pattern.finditer(text.plain):
                if match.end() > match.start():
                    text.stylize(style, match.start(), match.end())
        if self.timestamps:
            stamp_style = self.rich_style + self.get_component_rich_style("log-view--stamp")
            text = Text.assemble((f"{stamp or '':<12} ", stamp_style), text, end="")
        low, high = self.selection
        if low <= number <= high:
            name = "log-view--cursor" if number == self.cursor and low == high else "log-view--selected"
            text.stylize_before(self._highlight(name))
        text.no_wrap = not self.wrap
        return text

    def _highlight(self, name: str, *, whole: bool = False) -> Style:
        """A component's background only (`whole`: its colours and attributes too), so a cursor or
        a match leaves the command's own colours readable on it."""
        style = self.get_component_rich_style(name)
        return style if whole else Style(bgcolor=style.bgcolor)

    def _strip(self, number: int) -> Strip:
        strip = self._strips.get(number)
        if strip is None:
            text = self._text(number)
            strip = Strip(text.render(self.app.console), text.cell_len)
            if self.line_text(number) is not None:
                self._strips[number] = strip
        return strip

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self.lines is None:
            return Strip.blank(width, self.rich_style)
        if self.wrap:
            rows = self._wrapped_rows()
            return rows[y][1] if y < len(rows) else Strip.blank(width, self.rich_style)
        number = self.first_line + int(self.scroll_y) + y
        if number >= self.lines.count:
            return Strip.blank(width, self.rich_style)
        scroll_x = int(self.scroll_x)
        return self._strip(number).crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _wrapped_rows(self) -> list[tuple[int, Strip]]:
        """The rows on screen when wrapping: from the top line down, or at the end from the last up."""
        assert self.lines is not None
        width, height = self._view_size
        key = (int(self.scroll_y), width, height, self.lines.count, self.is_vertical_scroll_end)
        if self._rows is not None and self._rows[0] == key:
            return self._rows[1]
        console = self.app.console
        rows: list[tuple[int, Strip]] = []

        def lines_of(number: int) -> list[tuple[int, Strip]]:
            wrapped = self._text(number).wrap(console, width) or [Text("")]
            return [(number, Strip(line.render(console), line.cell_len).extend_cell_length(width, self.rich_style))
                    for line in wrapped[:height]]

        first, count = self.first_line, self.lines.count
        if self.is_vertical_scroll_end and count - first > height:
            number = count - 1
            while number >= first and len(rows) < height:
                rows[:0] = lines_of(number)
                number -= 1
            rows = rows[-height:]
        else:
            number = first + int(self.scroll_y)
            while number < count and len(rows) < height:
                rows += lines_of(number)
                number += 1
            rows = rows[:height]
        self._rows = (key, rows)
        return rows

    def row_line(self, row: int) -> int | None:
        """The line shown on screen row `row` (for the mouse)."""
        if self.lines is None:
            return None
        if self.wrap:
            rows = self._wrapped_rows()
            return rows[row][0] if 0 <= row < len(rows) else None
        number = self.first_line + int(self.scroll_y) + row
        return number if number < self.lines.count else None

    # ---- cursor and selection ------------------------------------------------------------------
    @property
    def selection(self) -> tuple[int, int]:
        """The selected lines, first and last (an empty range, (0, -1), when there is none)."""
        if self.cursor is None:
            return 0, -1
        other = self.anchor if self.anchor is not None else self.cursor
        return min(self.cursor, other), max(self.cursor, other)

    def go_to(self, number: int, *, extend: bool = False, center: bool = False) -> None:
        """Put the cursor on line `number` (stops following) and scroll it into view."""
        if self.lines is None or self.lines.count == 0:
            return
        number = max(self.first_line, min(number, self.lines.count - 1))
        if extend:
            self.anchor = self.cursor if self.anchor is None and self.cursor is not None else self.anchor
        else:
            self.anchor = None
        self.cursor = number
        self.follow = False
        row = number - self.first_line
        top, height = int(self.scroll_y), self._view_size.height
        if center or not top <= row < top + height:
            target = row - height // 2 if center else (row if row < top else row - height + 1)
            self.scroll_to(y=max(0, target), animate=False, immediate=True, force=True)
        self.restyle()
        self.post_message(self.Changed())

    def current_line(self) -> int:
        """The cursor's line, else the last line on screen when following, else the first."""
        if self.cursor is not None or self.lines is None:
            return self.cursor or 0
        top = self.first_line + int(self.scroll_y)
        return min(self.lines.count - 1, top + (self._view_size.height - 1 if self.follow else 0))

    def action_move(self, lines: int, extend: bool = False) -> None:
        self.go_to(self.current_line() + lines, extend=extend)

    def action_page(self, pages: int) -> None:
        self.go_to(self.current_line() + pages * max(1, self._view_size.height - 1))

    def action_first(self) -> None:
        self.go_to(self.first_line)

    def on_click(self, event: events.Click) -> None:
        number = self.row_line(event.y)
        if number is not None:
            self.go_to(number, extend=event.shift)

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.follow = False
        super()._on_mouse_scroll_up(event)

    def copy_plan(self) -> tuple[dict[int, str], list[int]]:
        """The selected lines at hand (plain), and the numbers of those to read from disk first."""
        assert self.lines is not None
        low, high = self.selection
        held: dict[int, str] = {}
        missing: list[int] = []
        for number in range(low, high + 1):
            line = self.lines.line(number)
            disk = self._disk.get(number) if line is None else None
            if line is None and disk is None:
                missing.append(number)
            else:
                held[number] = without_styles(line if line is not None else disk.text)  # type: ignore[union-attr]
        return held, missing


def _clock(epoch: float) -> str:
    """UTC HH:MM:SS.mmm, the same clock as a transcript event's `ts`."""
    return time.strftime("%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}"
