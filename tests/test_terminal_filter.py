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


# ---- issue 11, point 4: runbook text shown as what runs; our text after hostile output --------
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from runbook_tui.audit.terminal import TERMINAL_RESET, suspicious_characters, visible  # noqa: E402


@pytest.mark.parametrize("char", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
                                  "\u2069", "\u200e", "\u200f", "\u061c", "\u200b", "\u200c", "\u200d", "\u2060",
                                  "\ufeff", "\u00a0", "\u2028", "\u3164", "\U000e0041"])
def test_visible_shows_invisible_and_reordering_characters_escaped(char: str) -> None:
    shown = visible(f"rm -rf /tmp/a{char}b")
    assert char not in shown and f"<U+{ord(char):04X}>" in shown
    assert [at for at, _ in suspicious_characters(f"ls {char}")] == [3]


def test_visible_escapes_look_alike_letters_and_keeps_ordinary_text() -> None:
    assert visible("kub\u0435ctl delete ns prod") == "kub<U+0435>ctl delete ns prod"  # Cyrillic е
    assert visible("\u0440ing -c 1 host") == "<U+0440>ing -c 1 host"  # Cyrillic р
    for text in ("échec du déploiement", "日本語のテキスト", "Ωμέγα → done ✓", "tab\tand\nnewline"):
        assert visible(text) == text
        assert suspicious_characters(text) == []
    assert visible("a\x1b[8mb") == "a\\x1b[8mb"


class _Tmux:
    """A private tmux server: a real terminal emulator to read back what our bytes did."""

    def __init__(self) -> None:
        self.socket = f"rbt-reset-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout


@pytest.fixture
def tmux() -> object:
    if shutil.which("tmux") is None:
        if os.environ.get("RUNBOOK_TUI_REQUIRE_TMUX") == "1":
            pytest.fail("tmux is missing and RUNBOOK_TUI_REQUIRE_TMUX=1")
        pytest.skip("tmux is not installed (set RUNBOOK_TUI_REQUIRE_TMUX=1 to make this a failure)")
    server = _Tmux()
    yield server
    subprocess.run(["tmux", "-L", server.socket, "kill-server"], capture_output=True, timeout=30)


# What a hostile command leaves behind: a fake prompt, then conceal, reverse video, a 3-line scroll
# region with origin mode, no autowrap, insert mode, a hidden cursor, the alternate screen.
HOSTILE_TAIL = ("fake: Run it? [y]: \x1b[8m\x1b[7m\x1b[3;5r\x1b[?6h\x1b[?7l\x1b[4h\x1b[?25l\x1b[?2004h"
                "\x1b[?1000h\x1b[?1049h")


@pytest.mark.parametrize("reset", [True, False], ids=["with-reset", "without-reset-the-attack-works"])
def test_reset_after_hostile_output_leaves_our_prompt_plain_and_whole(tmux: _Tmux, tmp_path: Path,
                                                                       reset: bool) -> None:
    (tmp_path / "out").write_text("".join(f"line{i}\r\n" for i in range(8)) + HOSTILE_TAIL
                                  + (TERMINAL_RESET if reset else "") + "".join(f"after{i}\r\n" for i in range(30))
                                  + "REAL-PROMPT " + "x" * 70)
    tmux("new-session", "-d", "-s", "t", "-x", "60", "-y", "20", f"cat {tmp_path / 'out'}; sleep 60")
    deadline = time.monotonic() + 20
    while "REAL-PROMPT" not in (screen := tmux("capture-pane", "-p", "-e", "-t", "t")) and time.monotonic() < deadline:
        time.sleep(0.1)
    flags = tmux("display", "-p", "-t", "t", "#{alternate_on} #{cursor_flag} #{scroll_region_upper} "
                 "#{scroll_region_lower} #{wrap_flag} #{insert_flag} #{keypad_flag} #{mouse_any_flag} "
                 "#{pane_in_mode}").split()
    hidden = re.compile(r"\x1b\[(?:[0-9;]*;)?[78](?:;[0-9;]*)?m")  # reverse or conceal in a cell's style
    if not reset:
        assert hidden.search(screen)  # concealed: the operator would see only the fake prompt
        return
    assert flags[:6] == ["0", "1", "0", "19", "1", "0"], flags  # normal screen, cursor on, whole-screen margins
    assert not hidden.search(screen), screen
    rows = screen.split("\n")
    # the whole screen scrolled (not rows 3-5 only), and the long line wrapped instead of being cut off
    assert rows[:20] == [f"after{i}" for i in range(12, 30)] + ["REAL-PROMPT " + "x" * 48, "x" * 22], screen
