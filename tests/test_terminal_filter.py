"""Command output printed on the operator's terminal keeps its colors and loses everything else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runbook_tui.audit.terminal import TerminalFilter, safe_text

HOSTILE = (
    "\x1b[1;31mred\x1b[0m "          # SGR: kept
    "\x1b]0;owned title\x07"          # OSC 0: window title
    "\x1b]52;c;cm0gLXJmIH4=\x07"      # OSC 52: clipboard
    "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\"  # OSC 8 hyperlink
    "\x1bP+q544e\x1b\\"               # DCS request
    "\x1b[2J\x1b[H\x1b[10A"           # clear screen, home, cursor up
    "\x1b[?1049h"                     # alternate screen
    "\x9b2J"                          # 8-bit CSI
    "bell\x07 nul\x00 done\r\n"
)


def test_only_sgr_survives() -> None:
    assert safe_text(HOSTILE) == "\x1b[1;31mred\x1b[0m linkbell nul done\r\n"
    assert safe_text(HOSTILE, colors=False) == "red linkbell nul done\r\n"


def test_streaming_gives_the_same_result_at_every_split() -> None:
    expected = safe_text(HOSTILE)
    for cut in range(len(HOSTILE) + 1):
        f = TerminalFilter()
        assert f.feed(HOSTILE[:cut]) + f.feed(HOSTILE[cut:]) + f.flush() == expected, cut


@given(st.lists(st.sampled_from(["\x1b", "[", "]", "0", ";", "m", "\x07", "\\", "P", "a", "\n", "52"]), max_size=40))
def test_no_escape_other_than_sgr_ever_gets_through(parts: list[str]) -> None:
    f = TerminalFilter()
    out = "".join(f.feed(p) for p in parts) + f.flush()
    index = out.find("\x1b")
    while index != -1:
        end = index + 2
        while end < len(out) and out[end] in "0123456789;:":
            end += 1
        assert out[index + 1] == "[" and out[end] == "m", repr(out)
        index = out.find("\x1b", end)
