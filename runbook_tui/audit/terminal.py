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
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x9c\x1b]*(?:\x07|\x9c|\x1b\\)"  # 8-bit DCS/SOS/OSC/PM/APC
    r"|[\x80-\x9f]"  # other C1 controls
    r"|\x1b"  # a lone ESC that starts nothing we know
)
_INCOMPLETE = re.compile(
    r"(?:\x1b(?:[\]P_^X][^\x07\x1b]*(?:\x1b)?|\[[0-?]*[ -/]*|[ -/]*)?"
    r"|\x9b[0-?]*[ -/]*|[\x90\x98\x9d\x9e\x9f][^\x07\x9c\x1b]*\x1b?)\Z"
)
# Any character that starts something `_SEQUENCE` removes; text without one passes unchanged.
_SPECIAL = re.compile(r"[\x00-\x07\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_HELD = 4096  # an unterminated sequence longer than this is dropped, not held forever


def _keep(match: re.Match[str]) -> str:
    if match.group("final") == "m" and not match.group("inter"):
        return match.group(0)
    return ""


_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_SGR = re.compile(r"\x1b\[[0-?]*m")
_STARTS = ("\x1b", "\x9b", "\x90", "\x98", "\x9d", "\x9e", "\x9f", "\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX")


def _incomplete_start(text: str) -> int | None:
    """Where an escape sequence cut off by the end of the chunk starts (only the last ones can)."""
    for start in sorted({p for p in (text.rfind(s) for s in _STARTS) if p >= 0}):
        if _INCOMPLETE.match(text, start):
            return start
    return None


def safe_text(text: str, *, colors: bool = True) -> str:
    """Whole text with every sequence but SGR (or all of them, `colors=False`) removed.

    Fast paths first: text that is plain once its CSI sequences are set aside needs no full scan.
    """
    if colors:
        if _SPECIAL.search(_SGR.sub("", text)) is None:
            return text
    else:
        stripped = _CSI.sub("", text)
        if _SPECIAL.search(stripped) is None:
            return stripped
    return _SEQUENCE.sub(_keep if colors else "", text)


class TerminalFilter:
    """Streaming form of `safe_text` for output that arrives in chunks."""

    def __init__(self, *, colors: bool = True) -> None:
        self.colors = colors
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        self._held = ""
        if _SPECIAL.search(text) is None:  # plain text: nothing to drop or hold back
            return text
        start = _incomplete_start(text)
        if start is not None and len(text) - start <= MAX_HELD:
            self._held = text[start:]
            text = text[:start]
        return safe_text(text, colors=self.colors)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return safe_text(held, colors=self.colors)


# Written after a command's output and before any text of ours, so that nothing the command
# left switched on changes how our next line looks or where it lands. HAZARDS-MERGE: the
# hazards branch explains each part; keep one definition.
TERMINAL_RESET = (
    "\x1b[0m"  # SGR reset: colours, bold, and conceal (8), which could hide our prompt
    "\x1b[?1049l"  # leave the alternate screen
    "\x1b[?25h"  # show the cursor
    "\x1b[r"  # scroll region back to the whole screen
    "\x1b[?2004l"  # bracketed paste off
    "\x1b[?6l"  # origin mode off: cursor positions relative to the screen again
)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """Runbook text (a command, a title) as printable characters: `\\x1b` instead of an escape.

    What the operator is asked to confirm must be exactly what is shown; a command hiding an
    erase-line and a carriage return could otherwise display one thing and run another.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
