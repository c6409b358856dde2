"""A fan-out's output as people read it: each line labelled with its host as it arrives (like
`pssh -i` interleaved), or each host's output held back and shown as one block when that host
ends (`run --group-output`).

Both front ends use it (headless prints, the TUI's log pane shows the task's lines of every
host); the transcript never does: it records each host's raw output as it arrives, with the
host as a field of its `output` events.
"""

from __future__ import annotations

from collections import deque

# A grouped host's block keeps at most its last GROUP_LINES lines of at most GROUP_LINE_CHARS
# characters in memory (about 1 MB per host at worst), so that 20 hosts each printing
# `seq 200000` (or 50 hosts: BENCHMARKS.md's flat-memory case) never hold their whole output
# while they wait for their turn to be printed. A block that long is read in the transcript
# anyway; the block says how many earlier lines it left there.
GROUP_LINES = 500
GROUP_LINE_CHARS = 2000


class HostPrefixer:
    """Each line of many hosts' output, in one stream, as `host | line`.

    A chunk may end mid-line: when another host's output comes next, the line is ended there,
    and the rest of the first host's line, when it comes, starts a labelled line of its own, so
    two hosts never share a line.
    """

    def __init__(self) -> None:
        self._at_start = True
        self._last: str | None = None

    def feed(self, host: str, text: str) -> str:
        out = []
        if host != self._last and not self._at_start:
            out.append("\n")
            self._at_start = True
        self._last = host
        for piece in text.splitlines(keepends=True):
            out.append(f"{host} | {piece}" if self._at_start else piece)
            self._at_start = piece.endswith("\n")
        return "".join(out)


class HostBlock:
    """One host's output waiting to be shown as a block: its last lines, and how many came before."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=GROUP_LINES)
        self.dropped = 0  # complete lines no longer in memory (all of them are in the transcript)
        self.partial = ""  # the unfinished last line

    def add(self, text: str) -> None:
        pieces = (self.partial + text).split("\n")
        self.partial = pieces.pop()[-GROUP_LINE_CHARS:]
        if len(pieces) > GROUP_LINES:  # a flood: only the newest can be kept
            self.dropped += len(pieces) - GROUP_LINES
            pieces = pieces[-GROUP_LINES:]
        self.dropped += max(0, len(self.lines) + len(pieces) - GROUP_LINES)
        self.lines.extend(piece[:GROUP_LINE_CHARS] for piece in pieces)

    def text(self) -> str:
        """The block as printed: a note for what only the transcript has, then the kept lines."""
        note = (f"… {self.dropped} earlier line{'s' if self.dropped != 1 else ''} in the transcript\n"
                if self.dropped else "")
        body = "".join(line + "\n" for line in self.lines)
        return note + body + (self.partial + "\n" if self.partial else "")
