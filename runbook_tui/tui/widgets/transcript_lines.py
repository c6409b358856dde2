"""A task's output read back from the run's transcript: the lines the log pane no longer holds.

The pane keeps only the last lines of each task in memory; all of them are on disk as the
`output` events of the transcript. Reading line N must not scan the whole file each time, nor
keep an entry per line (memory would grow with the output): a sparse index records, per task,
a checkpoint every CHECKPOINT_LINES lines (the byte offset of one of its `output` events and
how many lines came before that event), and a line is read forward from the nearest
checkpoint before it. The index grows lazily: a scan goes only as far into the file as a
request needs, and goes on from there when a later request (or the live run) needs more.

Lines are counted the way the pane counts them: the event texts of one task, joined, through
one streaming `TerminalFilter`, split at newlines. A read that starts at a checkpoint starts a
fresh filter there, which differs only for an escape sequence cut by that very event boundary.

Everything here runs on worker threads, never on the UI thread; one lock guards the index.
"""

from __future__ import annotations

import json
import os
import re
import threading
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runbook_tui.audit.terminal import TerminalFilter, overwritten, without_styles

CHECKPOINT_LINES = 2000  # a read starts at most about this many lines before the one it wants
SCAN_BLOCK = 1 << 20  # bytes read at a time while indexing
SEARCH_WINDOW = 100_000  # lines scanned forward per step of a backward search
_OUTPUT = b'"type":"output"'  # canonical JSON: a key is never escaped, a value with quotes always is
_HOST = "\x1f"  # between a task id and a host in a host's log id: neither can contain it


def host_log_id(task_id: str, host: str) -> str:
    """The id of one host's output of a fan-out task, next to the task's own (all its hosts)."""
    return f"{task_id}{_HOST}{host}"


def split_log_id(log_id: str) -> tuple[str, str | None]:
    """(task id, host or None) of a log id."""
    task_id, _, host = log_id.partition(_HOST)
    return task_id, host or None


@dataclass
class DiskLine:
    """One line as stored: SGR styles kept, the time of the event that completed it."""

    text: str
    ts: str  # the event's `ts` (UTC ISO-8601)


@dataclass
class _TaskIndex:
    offsets: list[int] = field(default_factory=list)  # byte offset of each checkpoint event
    before: list[int] = field(default_factory=list)  # lines completed before each checkpoint event
    lines: int = 0  # lines completed by the events indexed so far
    filter: TerminalFilter = field(default_factory=TerminalFilter)


class TranscriptLines:
    """The lines of every task's output in one transcript file (which may still be growing).

    `since` skips the events before that byte offset: a resumed run's earlier session wrote
    them, and the pane numbers only the output it was given itself.
    """

    def __init__(self, path: str | os.PathLike[str], since: int = 0) -> None:
        self.path = Path(path)
        self._scanned = since  # the offset the next scan starts at (always a line start)
        self._tasks: dict[str, _TaskIndex] = {}
        self._lock = threading.Lock()

    # ---- the index ---------------------------------------------------------------------------
    def lines(self, task_id: str, at_least: int | None = None) -> int:
        """How many complete lines of `task_id` are on disk (scanning at most until `at_least`)."""
        with self._lock:
            self._scan(task_id, at_least)
            index = self._tasks.get(task_id)
            return index.lines if index else 0

    def _scan(self, task_id: str, at_least: int | None) -> None:
        """Index events from where the last scan stopped, until `task_id` has `at_least` lines
        (to the end of the file when None). Only newline-terminated events are indexed."""

        def enough() -> bool:
            index = self._tasks.get(task_id)
            return at_least is not None and index is not None and index.lines >= at_least

        if enough():
            return
        try:
            file = open(self.path, "rb")
        except OSError:
            return
        with file:
            file.seek(self._scanned)
            carry = b""
            while not enough():
                block = file.read(SCAN_BLOCK)
                if not block:
                    break
                data = carry + block
                end = data.rfind(b"\n") + 1
                base = self._scanned
                position = 0
                while position < end:
                    stop = data.index(b"\n", position) + 1
                    if data.find(_OUTPUT, position, stop) != -1:
                        self._index(data[position:stop], base + position)
                    position = stop
                self._scanned = base + end
                carry = data[end:]

    def _index(self, line: bytes, offset: int) -> None:
        try:
            event = json.loads(line)
            task_id, text = event["task_id"], event["text"]
        except (ValueError, KeyError, TypeError):
            return  # not an output event we can read; `verify` is the place to report it
        # A host's output counts in its task's lines and in the host's own.
        for log_id in (task_id, host_log_id(task_id, event["host"])) if event.get("host") else (task_id,):
            index = self._tasks.setdefault(log_id, _TaskIndex())
            if not index.offsets or index.lines - index.before[-1] >= CHECKPOINT_LINES:
                index.offsets.append(offset)
                index.before.append(index.lines)
            index.lines += index.filter.feed(text).count("\n")

    # ---- reading -----------------------------------------------------------------------------
    def _blocks(self, task_id: str, first: int) -> Iterator[tuple[int, str, str]]:
        """(number of the first line, complete lines joined by newlines, event ts) from line `first`
        on, one event at a time; a line cut by an event boundary is carried into the next."""
        with self._lock:
            self._scan(task_id, first + 1)
            index = self._tasks.get(task_id)
            if index is None or first >= index.lines:
                return
            # the checkpoint whose event holds the newline ending line first-1 (or line 0's start)
            which = max(0, bisect_right(index.before, first - 1) - 1) if first else 0
            offset, number = index.offsets[which], index.before[which]
        task, host = split_log_id(task_id)
        marker = b'"task_id":' + json.dumps(task, ensure_ascii=False).encode()
        skip = first - number  # newlines before line `first` in the events from the checkpoint on
        flow = TerminalFilter()
        carry = ""
        with open(self.path, "rb") as file:
            file.seek(offset)
            for line in file:
                if not line.endswith(b"\n"):
                    return  # being written
                if _OUTPUT not in line or marker not in line:
                    continue
                event = json.loads(line)
                if event.get("task_id") != task or (host is not None and event.get("host") != host):
                    continue
                text = carry + flow.feed(event["text"])
                start = 0
                while skip:
                    newline = text.find("\n", start)
                    if newline == -1:
                        break
                    start, skip = newline + 1, skip - 1
                end = text.rfind("\n")
                if skip or end < start:  # still before line `first`, or no line completed yet
                    carry = "" if skip else text[start:]
                    continue
                carry = text[end + 1 :]
                block = text[start:end]
                yield first, block, event["ts"]
                first += block.count("\n") + 1

    def read(self, task_id: str, first: int, count: int) -> list[DiskLine]:
        """Lines `first` .. `first + count - 1` of a task (fewer if the disk has fewer yet)."""
        found: list[DiskLine] = []
        for number, block, ts in self._blocks(task_id, first):
            for line in block.split("\n")[: first + count - number]:
                found.append(DiskLine(overwritten(line), ts))
            if number + block.count("\n") + 1 >= first + count:
                break
        return found

    def find(self, task_id: str, pattern: re.Pattern[str], first: int, last: int, *,
             backward: bool = False) -> int | None:
        """The first (or last) line in `first` .. `last - 1` whose plain text `pattern` matches."""
        if not backward:
            return self._find_forward(task_id, pattern, first, last, take_last=False)
        high = last
        while high > first:
            low = max(first, high - SEARCH_WINDOW)
            hit = self._find_forward(task_id, pattern, low, high, take_last=True)
            if hit is not None:
                return hit
            high = low
        return None

    def _find_forward(self, task_id: str, pattern: re.Pattern[str], first: int, last: int, *,
                      take_last: bool) -> int | None:
        """A regex over each block's plain text; a hit is confirmed on the line as shown, since a
        carriage return may have overwritten the matching part."""
        hit = None
        for number, block, _ in self._blocks(task_id, first):
            if number >= last:
                break
            plain = without_styles(block)
            counted, line_no = 0, number
            for match in pattern.finditer(plain):
                line_no += plain.count("\n", counted, match.start())
                counted = match.start()
                if line_no >= last:
                    break
                if line_no <= (hit if hit is not None else -1):
                    continue
                line_start = plain.rfind("\n", 0, match.start()) + 1
                line_end = plain.find("\n", match.start())
                if pattern.search(overwritten(plain[line_start : line_end if line_end != -1 else None])):
                    if not take_last:
                        return line_no
                    hit = line_no
        return hit
