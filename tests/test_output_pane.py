"""The log pane as a log viewer: colours kept (blink and conceal not), the whole output reachable
from the transcript on disk, search, wrap, follow, copy, timestamps and the title.

The pane runs alone in a small app (Pilot); its older lines come from a real transcript file
written by `audit.transcript.Transcript`, the way a run writes it.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.segment import Segment
from textual.app import App, ComposeResult

from runbook_tui.audit.terminal import safe_text, steady_styles
from runbook_tui.audit.transcript import Transcript
from runbook_tui.tui.widgets.log_view import LOADING, LogView
from runbook_tui.tui.widgets.output_pane import MAX_LINES, OutputPane
from runbook_tui.tui.widgets.task_log import TaskLog
from runbook_tui.tui.widgets.transcript_lines import TranscriptLines
from tests.tui_helpers import notifications, until

SIZE = (100, 30)


class PaneApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OutputPane(id="pane")


def row(view: LogView, y: int) -> list[Segment]:
    return list(view.render_line(y))


def row_text(view: LogView, y: int) -> str:
    return "".join(segment.text for segment in row(view, y)).rstrip()


def screen_text(view: LogView) -> list[str]:
    return [row_text(view, y) for y in range(view.scrollable_content_region.height)]


def record(path: Path, chunks: list[str], task_id: str = "t") -> Transcript:
    """A real transcript holding `chunks` as the task's output events, between other events."""
    transcript = Transcript.create(path)
    transcript.append("run.started", run_id="test")
    transcript.append("command.started", task_id=task_id, command="producer")
    for chunk in chunks:
        transcript.append("output", task_id=task_id, text=chunk)
        transcript.append("output", task_id="other", text="noise from another task\n")
    return transcript


@contextlib.asynccontextmanager
async def pane_showing(text: str, transcript: Path | None = None) -> AsyncIterator[tuple[Any, OutputPane, LogView]]:
    """A pane given `text` as task t's output (older lines read from `transcript`), focused."""
    if transcript is not None:
        record(transcript, chunked(text)).close()
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(OutputPane)
        if transcript is not None:
            pane.use_transcript(transcript)
        pane.feed("t", text)
        pane.show("t")
        pane.view.focus()
        await pilot.pause()
        yield pilot, pane, pane.view


def chunked(text: str, seed: int = 7, largest: int = 64 * 1024) -> list[str]:
    """`text` cut at random places (an event boundary may fall inside a line or an escape)."""
    rng = random.Random(seed)
    chunks, position = [], 0
    while position < len(text):
        size = rng.randint(1, largest)
        chunks.append(text[position : position + size])
        position += size
    return chunks


# ---- styles ----------------------------------------------------------------------------------------

def test_steady_styles_drops_blink_and_conceal_and_keeps_the_rest() -> None:
    assert steady_styles("\x1b[1;5;31mX\x1b[0m") == "\x1b[1;31mX\x1b[0m"
    assert steady_styles("\x1b[8mhidden\x1b[m") == "hidden\x1b[m", "a conceal-only SGR goes whole, not as a reset"
    assert steady_styles("\x1b[6;4mY") == "\x1b[4mY"
    # a 5 or an 8 that is an argument of a colour is a colour, not blink or conceal
    assert steady_styles("\x1b[38;5;8mA\x1b[48;2;5;8;5mB") == "\x1b[38;5;8mA\x1b[48;2;5;8;5mB"
    assert steady_styles("\x1b[38:2::5:8:6;5;4:3mQ") == "\x1b[38:2::5:8:6;4:3mQ"


@given(st.lists(st.sampled_from(["\x1b[", "5", "6", "8", ";", "38", "2", ":", "m", "x", "1"]), max_size=30))
def test_no_blink_or_conceal_code_survives(parts: list[str]) -> None:
    out = steady_styles(safe_text("".join(parts)))
    for params in re.findall(r"\x1b\[([0-9;:]*)m", out):
        codes, index = params.split(";"), 0
        while index < len(codes):
            head = codes[index].split(":")[0]
            if head in ("38", "48", "58") and ":" not in codes[index] and index + 1 < len(codes):
                index += 3 if codes[index + 1] == "5" else 5 if codes[index + 1] == "2" else 1
                continue
            assert head not in ("5", "6", "8"), out
            index += 1


async def test_colours_reach_the_screen_as_rich_styles_blink_and_conceal_do_not() -> None:
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(OutputPane)
        pane.feed("t", "\x1b[31mred\x1b[0m plain\r\n\x1b[1;5;8;32mshown\x1b[0m\r\n")
        pane.show("t")
        await pilot.pause()
        view = pane.view
        red = next(s for s in row(view, 0) if s.text == "red")
        assert red.style is not None and red.style.color is not None and red.style.color.number == 1
        plain = next(s for s in row(view, 0) if "plain" in s.text)
        assert plain.style is not None and plain.style.color != red.style.color, "the pane's own colour"
        shown = next(s for s in row(view, 1) if s.text == "shown")
        assert shown.style is not None and shown.style.bold and shown.style.color.number == 2
        assert not shown.style.blink and not shown.style.conceal
        assert pane.lines_of("t") == ["red plain", "shown"], "lines_of gives the plain text"


# ---- lines on disk ---------------------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.integers(40, 2000))
def test_lines_read_from_disk_are_the_lines_the_pane_made(seed: int, largest: int) -> None:
    """Whatever the event boundaries, line N read back from the transcript is line N as fed."""
    import tempfile

    text = "".join(f"\x1b[3{i % 8}mline {i}\x1b[0m\r\n" if i % 5 else f"bar 10%\rbar {i}\r\n" for i in range(700))
    log = TaskLog()
    log.add(text)
    expected = [steady_styles(line) for line in log.tail]
    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp) / "t.jsonl", chunked(text, seed, largest)).close()
        source = TranscriptLines(Path(tmp) / "t.jsonl")
        assert source.lines("t") == 700
        for first in (0, 1, seed % 700, 699):
            assert [steady_styles(x.text) for x in source.read("t", first, 50)] == expected[first : first + 50]
        hit = source.find("t", re.compile("line 333"), 0, 700)
        assert hit == 333
        assert source.find("t", re.compile("bar 10%"), 0, 700) is None, "overwritten by the carriage return"
        assert source.find("t", re.compile("line 1"), 0, 700, backward=True) == 199


async def test_search_finds_line_one_of_200000_lines_read_back_from_the_transcript(tmp_path: Path) -> None:
    lines = ["needle in the first line"] + [f"row {i}" for i in range(1, 200_000)]
    text = "".join(line + "\r\n" for line in lines)
    async with pane_showing(text, tmp_path / "t.jsonl") as (pilot, pane, view):
        assert view.line_count == 200_000 and view.follow
        assert "needle in the first line" not in pane.lines_of("t"), "line 1 is no longer in memory"
        await pilot.press("slash", *"needle", "enter")
        await until(pilot, lambda: view.cursor == 0, 10, lambda: f"the search to reach line 1 ({view.cursor})")
        await until(pilot, lambda: "needle in the first line" in screen_text(view), 5, "line 1 on screen")
        assert not view.follow
        matched = next(s for s in row(view, 0) if s.text == "needle")
        assert matched.style is not None and matched.style.bgcolor is not None, "the match is highlighted"
        await pilot.press("N")  # previous, round the end: the last line holding it is line 1 again
        await pilot.pause()
        assert view.cursor == 0
        await pilot.press("slash", *[k for k in "row 199998"], "enter")
        await until(pilot, lambda: view.cursor == 199_998, 10, "a match in the memory part")


async def test_home_reads_the_first_lines_from_disk_and_end_goes_back_to_live(tmp_path: Path) -> None:
    text = "".join(f"line {i}\r\n" for i in range(3 * MAX_LINES))
    async with pane_showing(text, tmp_path / "t.jsonl") as (pilot, pane, view):
        await pilot.press("home")
        assert not view.follow and view.cursor == 0 and view.scroll_y == 0
        await until(pilot, lambda: screen_text(view)[0] == "line 0", 5, lambda: f"line 0, not {screen_text(view)[:2]}")
        assert screen_text(view)[1] == "line 1"
        pane.feed("t", "newest\r\n")
        await pilot.pause(0.1)
        assert view.scroll_y == 0, "not following: new output does not move the view"
        await pilot.press("end")
        await pilot.pause()
        assert view.follow and screen_text(view)[-1] == "newest"


async def test_without_a_transcript_only_the_memory_is_shown() -> None:
    async with pane_showing("".join(f"line {i}\n" for i in range(MAX_LINES + 10))) as (pilot, pane, view):
        await pilot.press("home")
        await pilot.pause()
        assert view.line_count == MAX_LINES
        assert screen_text(view)[0] == "line 10" and LOADING not in screen_text(view)


async def test_marks_are_lines_of_the_pane_and_disk_lines_keep_their_place(tmp_path: Path) -> None:
    """`$ cmd` and `[exit ...]` are the pane's own lines, not in the transcript: the lines read
    back from disk around them still land on the right line numbers."""
    first = "".join(f"a{i}\n" for i in range(MAX_LINES))
    second = "".join(f"b{i}\n" for i in range(MAX_LINES))
    record(tmp_path / "t.jsonl", [first, second]).close()
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(OutputPane)
        pane.use_transcript(tmp_path / "t.jsonl")
        pane.mark("t", "$ first")
        pane.feed("t", first)
        pane.mark("t", "[exit 0]")
        pane.mark("t", "$ second")
        pane.feed("t", second)
        pane.show("t")
        view = pane.view
        view.focus()
        await pilot.press("home")
        await until(pilot, lambda: screen_text(view)[:3] == ["$ first", "a0", "a1"], 5, lambda: screen_text(view)[:3])
        view.go_to(MAX_LINES, center=True)
        await until(pilot, lambda: "a4999" in screen_text(view), 5)
        shown = screen_text(view)
        at = shown.index("a4999")
        assert shown[at : at + 4] == ["a4999", "[exit 0]", "$ second", "b0"]


# ---- toggles, title, copy ---------------------------------------------------------------------------

async def test_wrap_shows_a_long_line_whole() -> None:
    long = "".join(f"{i:04d}" for i in range(60))  # 240 characters
    async with pane_showing(f"{long}\nnext\n") as (pilot, pane, view):
        width = view.size.width
        assert screen_text(view)[:2] == [long[:width], "next"], "cut at the edge without wrap"
        await pilot.press("w")
        await pilot.pause()
        assert view.wrap
        rows = screen_text(view)
        assert "".join(rows[:3]) == long and rows[3] == "next"
        assert str(pane.border_title).endswith(" — wrap")
        await pilot.press("w")
        await pilot.pause()
        assert screen_text(view)[1] == "next"


async def test_follow_stays_at_the_end_until_the_operator_moves_away() -> None:
    async with pane_showing("".join(f"line {i}\n" for i in range(100))) as (pilot, pane, view):
        assert view.follow and screen_text(view)[-1] == "line 99"
        pane.feed("t", "line 100\n")
        await until(pilot, lambda: screen_text(view)[-1] == "line 100", 5, "the view to follow")
        await pilot.press("up")
        assert not view.follow and view.cursor == 99
        top = view.scroll_y
        pane.feed("t", "line 101\n")
        await until(pilot, lambda: pane.lines_of("t")[-1] == "line 101", 5)
        await pilot.pause()
        assert view.scroll_y == top
        assert str(pane.border_title) == "output of task t — line 100 of 102"
        await pilot.press("f")
        await pilot.pause()
        assert view.follow and screen_text(view)[-1] == "line 101"


async def test_title_says_whose_output_and_whether_it_is_live() -> None:
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(OutputPane)
        pane.mark("4.1.1", "$ make")
        pane.feed("4.1.1", "".join(f"built {i}\n" for i in range(2 * MAX_LINES)))
        pane.show("4.1.1")
        pane.set_live("4.1.1")
        assert pane.border_title == "output of task 4.1.1 · live"
        pane.set_live(None)
        assert pane.border_title == "output of task 4.1.1"
        pane.show("4.2.1")  # has not run: the last output stays, labelled
        assert pane.border_title == "output of task 4.1.1 (the selected task has not run)"
        assert pane.view.line_count == MAX_LINES
        pane.feed("4.2.1", "second\n")
        pane.show("4.2.1")
        assert pane.border_title == "output of task 4.2.1"
        pane.show("4.1.1")  # a finished task's long output is still there
        await pilot.pause()
        assert pane.lines_of("4.1.1")[-1] == f"built {2 * MAX_LINES - 1}"
        assert screen_text(pane.view)[-1] == f"built {2 * MAX_LINES - 1}"


async def test_copy_puts_the_selected_lines_on_the_clipboard(tmp_path: Path) -> None:
    text = "".join(f"\x1b[32mline {i}\x1b[0m\n" for i in range(2 * MAX_LINES))
    async with pane_showing(text, tmp_path / "t.jsonl") as (pilot, pane, view):
        app = pilot.app
        view.go_to(3)  # on disk, not in memory
        await pilot.press("shift+down", "shift+down", "c")
        await until(pilot, lambda: app.clipboard == "line 3\nline 4\nline 5", 5, lambda: repr(app.clipboard))


async def test_timestamps_on_demand() -> None:
    async with pane_showing("hello\n") as (pilot, pane, view):
        assert screen_text(view)[0] == "hello"
        await pilot.press("t")
        await pilot.pause()
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} hello", screen_text(view)[0]), screen_text(view)[0]


async def test_the_pane_keys_are_in_the_footer_only_while_it_has_focus() -> None:
    from textual.widgets import Button, Footer

    class WithFooter(App[None]):
        def compose(self) -> ComposeResult:
            yield Button("elsewhere", id="other")
            yield OutputPane(id="pane")
            yield Footer()

    app = WithFooter()
    async with app.run_test(size=SIZE) as pilot:
        keys = {b.id for b in OutputPane.BINDINGS}
        assert all(b.id and b.tooltip for b in OutputPane.BINDINGS + LogView.BINDINGS)

        def active() -> set[Any]:
            return {binding.id for (_, binding, _, _) in app.active_bindings.values()}

        app.query_one("#other").focus()
        await pilot.pause()
        assert not keys & active()
        app.query_one(LogView).focus()
        await pilot.pause()
        assert keys <= active()


@pytest.mark.parametrize("key", ["n", "N"])
async def test_next_without_a_search_says_how_to_search(key: str) -> None:
    async with pane_showing("x\n") as (pilot, pane, view):
        await pilot.press(key)
        await pilot.pause()
        assert any("press /" in n.message for n in pilot.app._notifications)


async def test_a_search_that_finds_nothing_says_so_in_the_words_typed(tmp_path: Path) -> None:
    """What the operator typed is quoted back as typed: `[/x]` made the notification raise as markup."""
    async with pane_showing("one\r\ntwo\r\n") as (pilot, pane, view):
        await pilot.press("slash", "[", "slash", "x", "]", "enter")
        await until(pilot, lambda: any("is not in the output" in m for m in notifications(pilot.app)), 5,
                    "the not-found notice")
        await pilot.pause()
        assert pilot.app.is_running
        (notice,) = [n for n in pilot.app._notifications if "is not in the output" in n.message]
        assert notice.message == "'[/x]' is not in the output of task t." and notice.markup is False
