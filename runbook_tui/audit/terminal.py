"""Command output made safe to print on the operator's own terminal.

A command's output is data, not instructions to our terminal: OSC (title, clipboard via OSC 52,
hyperlinks), DCS/APC/PM strings, cursor movement and screen clearing are dropped. Colors and
text styles (SGR, `ESC [ ... m`) survive; so do newline, carriage return, tab and backspace.
The filter streams: an escape sequence cut in two by a chunk boundary is held back until its end.
"""

from __future__ import annotations

import re

# One alternation over everything that may follow ESC; ordering matters (strings before CSI).
_SEQUENCE = re.compile(
    r"\x1b(?:"
    r"(?P<string>[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\))"  # OSC / DCS / SOS / PM / APC strings
    r"|\[(?P<params>[0-?]*)(?P<inter>[ -/]*)(?P<final>[@-~])"  # CSI
    r"|[ -/]*[0-~]"  # two-byte escapes (charset selection, keypad modes...)
    r")"
    r"|[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]"  # C0 controls but BS, TAB, LF, CR, ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x9c\x1b]*(?:\x07|\x9c|\x1b\\)?"  # 8-bit DCS/SOS/OSC/PM/APC
    r"|[\x80-\x9f]"  # other C1 controls
    r"|\x1b"  # a lone ESC that starts nothing we know
)
_INCOMPLETE = re.compile(
    r"(?:\x1b(?:[\]P_^X][^\x07\x1b]*(?:\x1b)?|\[[0-?]*[ -/]*|[ -/]*)?"
    r"|\x9b[0-?]*[ -/]*|[\x90\x98\x9d\x9e\x9f][^\x07\x9c\x1b]*\x1b?)\Z"
)
MAX_HELD = 4096  # an unterminated sequence longer than this is dropped, not held forever


def _keep(match: re.Match[str]) -> str:
    if match.group("final") == "m" and not match.group("inter"):
        return match.group(0)
    return ""


def safe_text(text: str, *, colors: bool = True) -> str:
    """Whole text with every sequence but SGR (or all of them, `colors=False`) removed."""
    return _SEQUENCE.sub(_keep if colors else "", text)


class TerminalFilter:
    """Streaming form of `safe_text` for output that arrives in chunks."""

    def __init__(self, *, colors: bool = True) -> None:
        self.colors = colors
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        self._held = ""
        incomplete = _INCOMPLETE.search(text)
        if incomplete and len(text) - incomplete.start() <= MAX_HELD:
            self._held = text[incomplete.start():]
            text = text[: incomplete.start()]
        return safe_text(text, colors=self.colors)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return safe_text(held, colors=self.colors)
