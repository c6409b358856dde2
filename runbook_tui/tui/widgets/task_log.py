"""One task's output as numbered lines: the newest in memory, every older one on disk.

Line numbers count every line the pane was given for the task, its own marks (`$ cmd`,
`[exit 0, ...]`) included. Marks are not in the transcript's `output` events, so they are kept
apart (a few per attempt) and line N of the pane is line N - (marks before N) of the task's
output on disk (`TranscriptLines`). The last MAX_LINES lines stay in memory whatever the
output's size; MAX_LINE bounds one line (a 50 MB line stays in the transcript).
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

from runbook_tui.audit.terminal import TerminalFilter, overwritten, without_styles
from runbook_tui.tui.widgets.transcript_lines import TranscriptLines

MAX_LINES = 5000
MAX_LINE = 4000  # characters of one line kept for display


class TaskLog:
    """The retained tail of one task's output, its marks, and its unfinished last line."""

    def __init__(self) -> None:
        self.count = 0  # complete lines so far (marks included): line numbers are 0 .. count - 1
        self.tail: deque[str] = deque(maxlen=MAX_LINES)  # lines count - len(tail) .. count - 1
        self.stamps: deque[float] = deque(maxlen=MAX_LINES)  # when each of them arrived (epoch s)
        self.partial = ""
        self.width = 0  # characters of the longest line kept (escapes included: an upper bound)
        self.marks: dict[int, str] = {}  # line number -> a line of ours, not on disk
        self._mark_numbers: list[int] = []  # the same numbers, sorted
        self._flow = TerminalFilter()  # escapes may be split across chunks

    @property
    def first_in_memory(self) -> int:
        return self.count - len(self.tail)

    def add(self, text: str, now: float | None = None) -> int:
        """Take raw output; return how many lines it completed."""
        text = self._flow.feed(text)
        newlines = text.count("\n")
        if not newlines:
            self.partial = (self.partial + text)[-MAX_LINE:]
            return 0
        cut = len(text)
        for _ in range(MAX_LINES + 1):
            cut = text.rfind("\n", 0, cut)
            if cut < 0:
                break
        if cut >= 0:  # more lines than the tail keeps in this batch: the older ones are on disk
            self.partial, text = "", text[cut + 1 :]
        pieces = (self.partial + text).split("\n")
        self.partial = pieces.pop()[-MAX_LINE:]
        self._keep([overwritten(piece)[:MAX_LINE] for piece in pieces], now)
        self.count += newlines - len(pieces)  # the lines of the batch that went straight to disk
        return newlines

    def mark(self, text: str, now: float | None = None) -> None:
        """Lines of our own: an unfinished output line is ended first (as ours: on disk it goes on)."""
        lines = ([overwritten(self.partial)] if self.partial else []) + text.split("\n")
        self.partial = ""
        for offset, line in enumerate(lines):
            self.marks[self.count + offset] = line
            self._mark_numbers.append(self.count + offset)
        self._keep(lines, now)

    def _keep(self, lines: list[str], now: float | None) -> None:
        self.tail.extend(lines)
        self.stamps.extend([time.time() if now is None else now] * len(lines))
        self.count += len(lines)
        if lines:
            self.width = max(self.width, min(MAX_LINE, max(map(len, lines))))

    def line(self, number: int) -> str | None:
        """A line held in memory (the tail or a mark), None if it must be read from disk."""
        first = self.first_in_memory
        if number >= first:
            return self.tail[number - first] if number < self.count else None
        return self.marks.get(number)

    def stamp(self, number: int) -> float | None:
        first = self.first_in_memory
        return self.stamps[number - first] if first <= number < self.count else None

    def disk_number(self, number: int) -> int:
        """The output line on disk that is line `number` of the pane (the next one for a mark):
        the marks before it are not on disk."""
        return disk_number(self._mark_numbers, number)

    def plain_tail(self) -> list[str]:
        """The lines in memory without styles (what tests and searches look at)."""
        return [without_styles(line) for line in self.tail]

    def snapshot(self) -> LogSnapshot:
        """What a search on a worker thread needs, copied on the UI thread (which goes on adding)."""
        return LogSnapshot(self.first_in_memory, self.count, self.plain_tail(),
                           {n: without_styles(text) for n, text in self.marks.items()}, list(self._mark_numbers))


@dataclass(frozen=True)
class LogSnapshot:
    """A task's lines at one moment: the memory part as plain text, the marks, and their numbers."""

    first_in_memory: int
    count: int
    tail: list[str]
    marks: dict[int, str]
    mark_numbers: list[int]

    def find(self, pattern: re.Pattern[str], start: int, source: TranscriptLines | None, task_id: str, *,
             backward: bool = False) -> int | None:
        """The next line after `start` (or before it, `backward`) that `pattern` matches, going
        round the end; lines older than the memory's are searched on disk when there is a `source`."""
        if backward:
            ranges = [(0, start), (start, self.count)]
        else:
            ranges = [(start + 1, self.count), (0, start + 1)]
        for low, high in ranges:
            hit = self._find_in(pattern, max(0, low), min(high, self.count), source, task_id, backward)
            if hit is not None:
                return hit
        return None

    def _find_in(self, pattern: re.Pattern[str], low: int, high: int, source: TranscriptLines | None,
                 task_id: str, backward: bool) -> int | None:
        memory = [n for n in range(max(low, self.first_in_memory), high)
                  if pattern.search(self.tail[n - self.first_in_memory])]
        if memory and backward:
            return memory[-1]
        disk_high = min(high, self.first_in_memory)
        hits = [n for n in self.mark_numbers if low <= n < disk_high and pattern.search(self.marks[n])]
        if source is not None and low < disk_high:
            on_disk = source.find(task_id, pattern, disk_number(self.mark_numbers, low),
                                  disk_number(self.mark_numbers, disk_high),
                                  backward=backward)
            if on_disk is not None:
                hits.append(self._pane_number(on_disk))
        if hits:
            return max(hits) if backward else min(hits)
        return memory[0] if memory else None

    def _pane_number(self, on_disk: int) -> int:
        """The inverse of `disk_number`."""
        number = on_disk
        for mark in self.mark_numbers:
            if mark > number:
                break
            number += 1
        return number


def disk_number(mark_numbers: list[int], number: int) -> int:
    """Pane line `number` as a line of the output on disk, where the marks before it are not."""
    return number - bisect_left(mark_numbers, number)
