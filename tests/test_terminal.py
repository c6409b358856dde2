"""A command's terminal, seen from the engine: answering it, password prompts, full-screen programs.

Real programs on real PTYs; the "operator's terminal" of the relay tests is a PTY pair we own.
"""

from __future__ import annotations

import os
import re
import select
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_tui.audit.terminal import TERMINAL_RESET
from runbook_tui.engine.containment import read_stat
from runbook_tui.engine.interactive import relay
from runbook_tui.engine.runner import PtyProcess
from runbook_tui.engine.terminal import ScreenTracker
from runbook_tui.process import ExitStatus, TerminalProcess, TerminalState
from tests.test_runner import LIMIT, Collector

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and Linux PTYs")


def eventually(check, what: str, timeout: float = LIMIT) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"never: {what}"
        time.sleep(0.02)


def spawn(script: str, **kw) -> tuple[PtyProcess, Collector]:
    out = Collector()
    return PtyProcess.spawn(["bash", "-c", script], on_output=out, **kw), out


@contextmanager
def running(script: str) -> Iterator[tuple[PtyProcess, Collector]]:
    """A command that would run for ever, aborted when the test is done with it."""
    proc, out = spawn(script)
    try:
        yield proc, out
    finally:
        proc.abort(grace=0.2)
        proc.wait(LIMIT)


def finish(proc: PtyProcess) -> ExitStatus:
    status = proc.wait(LIMIT)
    if status is None:
        proc.abort(grace=0.2)
        raise AssertionError("command did not finish")
    return status


def test_the_local_process_is_a_terminal_process_and_masked_input_means_a_password_prompt():
    proc, _ = spawn("true")
    assert isinstance(proc, TerminalProcess)
    finish(proc)
    password = TerminalState(waiting_for_input=True, echo=False, canonical=True, alternate_screen=False)
    full_screen = TerminalState(waiting_for_input=True, echo=False, canonical=False, alternate_screen=True)
    assert password.masked_input and not full_screen.masked_input


# -- input --------------------------------------------------------------------------------


def test_a_prompt_is_seen_waiting_and_answered_with_write():
    proc, out = spawn('read -p "name: " x; echo "hello $x"')
    out.wait_for("name: ")
    eventually(lambda: proc.terminal_state().waiting_for_input, "waiting for input")
    state = proc.terminal_state()
    assert state.echo and state.canonical and not state.masked_input and not state.alternate_screen
    proc.write(b"bob\r")
    status = finish(proc)
    assert status.exit_code == 0
    assert "hello bob" in out.text
    assert "name: bob\r\n" in out.text  # the terminal echoed the answer


def test_a_command_that_is_busy_is_not_waiting_for_input():
    with running("echo ready; sleep 1000") as (proc, out):
        out.wait_for("ready")
        eventually(lambda: "sleep" in open(f"/proc/{proc.pid}/cmdline").read(), "exec of sleep")
        assert not proc.terminal_state().waiting_for_input


def test_a_reader_of_a_pipe_is_not_waiting_for_the_terminal():
    with running("sleep 1000 | (echo reader=$BASHPID; exec cat)") as (proc, out):
        out.wait_for("reader=")
        reader = int(re.search(r"reader=(\d+)", out.text).group(1))
        # Once it is `cat` and asleep, it is blocked reading the pipe (its stdin), not the PTY.
        eventually(lambda: open(f"/proc/{reader}/comm").read() == "cat\n" and read_stat(reader).state == "S",
                   "cat reading the pipe")
        assert not proc.terminal_state().waiting_for_input


def test_cat_waiting_for_input_is_detected_and_ctrl_d_ends_it():
    proc, out = spawn("cat; echo cat-ended")
    eventually(lambda: proc.terminal_state().waiting_for_input, "cat waiting")
    proc.write(b"line\r")
    out.wait_for("line\r\nline\r\n")  # echo, then cat's copy
    proc.write(b"\x04")
    assert finish(proc).exit_code == 0
    assert "cat-ended" in out.text
    assert not proc.terminal_state().waiting_for_input  # finished


def test_a_background_reader_is_not_the_one_waiting():
    """Only the foreground group may read the terminal; a background job that tries is stopped."""
    with running("set -m; cat & echo cat=$!; sleep 1000") as (proc, out):
        out.wait_for("cat=")
        cat = int(re.search(r"cat=(\d+)", out.text).group(1))
        eventually(lambda: read_stat(cat) is not None and read_stat(cat).state == "T", "cat stopped by SIGTTIN")
        assert not proc.terminal_state().waiting_for_input


def test_a_password_prompt_turns_echo_off_and_the_answer_is_not_echoed():
    proc, out = spawn('read -s -p "password: " pw; echo; echo "length=${#pw}"')
    out.wait_for("password: ")
    eventually(lambda: proc.terminal_state().waiting_for_input, "waiting for the password")
    state = proc.terminal_state()
    assert not state.echo and state.canonical and state.masked_input
    proc.write(b"hunter22\r")
    assert finish(proc).exit_code == 0
    assert "length=8" in out.text
    assert "hunter22" not in out.text


def test_echo_is_back_on_after_the_password():
    proc, out = spawn('read -s -p "pw: " pw; echo; echo next; read -p "name: " n; echo "n=$n"')
    out.wait_for("pw: ")
    eventually(lambda: not proc.terminal_state().echo, "echo off")
    proc.write(b"x\r")
    out.wait_for("name: ")
    eventually(lambda: proc.terminal_state().waiting_for_input, "waiting for the name")
    assert proc.terminal_state().echo
    proc.write(b"ann\r")
    assert finish(proc).exit_code == 0 and "n=ann" in out.text


# -- the alternate screen -------------------------------------------------------------------


def test_alternate_screen_is_detected_both_ways_with_a_callback():
    changes: list[bool] = []
    out = Collector()
    seen_during: list[bool] = []

    def on_change(alternate: bool) -> None:
        changes.append(alternate)

    # Waits for a key rather than sleeping, so the test sees it on the alternate screen however slow.
    proc = PtyProcess.spawn(["sh", "-c", 'printf "\\033[?1049h"; read x; printf "\\033[?1049l"'],
                            on_output=out, on_screen_change=on_change)
    eventually(lambda: changes == [True], "entered")
    seen_during.append(proc.terminal_state().alternate_screen)
    proc.write(b"\r")
    assert finish(proc).exit_code == 0
    assert changes == [True, False]
    assert seen_during == [True]
    assert not proc.terminal_state().alternate_screen
    assert out.text == "\x1b[?1049h\r\n\x1b[?1049l"  # the sequences still reach on_output


def test_output_before_the_switch_reaches_on_output_before_the_callback():
    order: list[str] = []
    out = Collector()

    def sink(text: str) -> None:
        out(text)
        order.append("output")

    proc = PtyProcess.spawn(["sh", "-c", 'printf "before\\033[?1049h"; sleep 0.2; printf "\\033[?1049l"'],
                            on_output=sink, on_screen_change=lambda alt: order.append(f"screen={alt}"))
    assert finish(proc).exit_code == 0
    first_switch = order.index("screen=True")
    assert "output" in order[:first_switch]


def test_a_program_that_ends_on_the_alternate_screen_reports_leaving_it():
    changes: list[bool] = []
    proc = PtyProcess.spawn(["sh", "-c", 'printf "\\033[?47h"; sleep 0.2'], on_output=Collector(),
                            on_screen_change=changes.append)
    assert finish(proc).exit_code == 0
    assert changes == [True, False]


def test_a_failing_screen_callback_is_raised_by_wait_after_cleanup():
    def boom(alternate: bool) -> None:
        raise ValueError("callback broke")

    proc = PtyProcess.spawn(["sh", "-c", 'printf "\\033[?1049h"; sleep 0.1'], on_output=Collector(),
                            on_screen_change=boom)
    with pytest.raises(ValueError, match="callback broke"):
        proc.wait(LIMIT)
    assert proc.members() == [] and not proc.attach(1, replay=False)  # finished: nothing to attach to


def feed_all(pieces: list[bytes]) -> bool:
    tracker = ScreenTracker()
    for piece in pieces:
        tracker.feed(piece)
    return tracker.alternate


@pytest.mark.parametrize("enter", [b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h", b"\x1b[?1;1049h"])
def test_every_alternate_screen_sequence_split_anywhere(enter):
    stream = b"text" + enter + b"drawn"
    for cut in range(len(stream) + 1):
        assert feed_all([stream[:cut], stream[cut:]]), cut
    leave = enter[:-1] + b"l"
    for cut in range(len(leave) + 1):
        assert not feed_all([stream, leave[:cut], leave[cut:]]), cut


def test_other_private_modes_do_not_switch_screens():
    assert not feed_all([b"\x1b[?25h\x1b[?2004h\x1b[?1h\x1b[?1048h\x1b[?10490h"])
    assert feed_all([b"\x1b[?1049h", b"\x1b[?25l\x1b[31m"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\x1b[?1049h", b"\x1b[?1049l", b"\x1b[?47h", b"\x1b[?47l", b"\x1b[?25h",
                                 b"\x1b[1m", b"\x1b", b"[", b"?", b"x", b"1049", b"h", b"\r\n"]), max_size=30),
       st.lists(st.integers(0, 200), max_size=8))
def test_splitting_the_stream_never_changes_the_outcome(parts, cuts):
    stream = b"".join(parts)
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    assert feed_all(pieces) == feed_all([stream])
    last = None
    for match in re.finditer(rb"\x1b\[\?([0-9;]*)([hl])", stream):
        if set(match.group(1).split(b";")) & {b"1049", b"1047", b"47"}:
            last = match.group(2) == b"h"
    assert feed_all([stream]) == bool(last)


# -- the relay ------------------------------------------------------------------------------


class OperatorTerminal:
    """A PTY pair standing in for the operator's terminal: the relay gets the slave side."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        termios.tcsetwinsize(self.master, (30, 100))  # unlike the commands' 40x120 default
        self.seen = b""

    def read_until(self, needle: bytes, timeout: float = LIMIT) -> None:
        end = time.monotonic() + timeout
        while needle not in self.seen:
            assert time.monotonic() < end, f"never saw {needle!r} on the terminal: {self.seen!r}"
            if select.select([self.master], [], [], 0.05)[0]:
                self.seen += os.read(self.master, 65536)

    def drain(self) -> None:
        """Read whatever the terminal has been sent so far."""
        while select.select([self.master], [], [], 0.1)[0]:
            self.seen += os.read(self.master, 65536)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@contextmanager
def relaying(proc: PtyProcess, **kw) -> Iterator[tuple[OperatorTerminal, threading.Thread, list]]:
    """Relay a fresh operator terminal to ``proc`` on a thread; the thread's result lands in the list."""
    term = OperatorTerminal()
    result: list = []
    thread = threading.Thread(target=lambda: result.append(relay(proc, term.slave, term.slave, **kw)), daemon=True)
    try:
        thread.start()
        yield term, thread, result
    finally:
        proc.abort(grace=0.2)
        term.close()


def on_the_alternate_screen(script: str) -> tuple[PtyProcess, Collector]:
    """Start a bash ``script`` and return once it has switched to the alternate screen."""
    screen_on = threading.Event()
    out = Collector()
    proc = PtyProcess.spawn(["bash", "-c", script], on_output=out,
                            on_screen_change=lambda alt: screen_on.set() if alt else None)
    assert screen_on.wait(LIMIT)
    return proc, out


def test_relay_passes_keys_output_and_size_and_returns_the_status():
    # The relay sizes the PTY before it passes the first key on: `go` orders `stty size` after it.
    script = ('read -r go; stty size; read -p "name: " x; echo "hello $x"; '
              'while [ "$(stty size)" != "33 77" ]; do sleep 0.02; done; echo resized; exit 3')
    proc, out = spawn(script, rows=10, cols=20)
    with relaying(proc, until_screen_left=False, replay=True) as (term, thread, result):
        os.write(term.master, b"go\r")
        term.read_until(b"name: ")
        assert b"30 100" in term.seen  # the command got the operator's window size
        os.write(term.master, b"bob\r")
        term.read_until(b"hello bob")
        termios.tcsetwinsize(term.master, (33, 77))
        term.read_until(b"resized")
        thread.join(LIMIT)
        assert not thread.is_alive()
        assert isinstance(result[0], ExitStatus) and result[0].exit_code == 3
        assert "hello bob" in out.text and "resized" in out.text  # recorded too
        assert termios.tcgetattr(term.slave)[3] & termios.ECHO  # the terminal is back in cooked mode
        term.drain()
        assert term.seen.endswith(TERMINAL_RESET.encode()), "what the program left on is switched off"


def test_relay_of_a_running_full_screen_program_replays_its_screen_and_hands_back_when_it_leaves():
    proc, out = on_the_alternate_screen('printf "\\033[?1049hFULL SCREEN"; read -rsn1 key; printf "\\033[?1049l"; '
                                        'echo "key=$key"; read -p "after: " y; echo "y=$y"')
    out.wait_for("FULL SCREEN")
    with relaying(proc, until_screen_left=True) as (term, thread, result):
        term.read_until(b"FULL SCREEN")  # drawn before the hand-over, replayed
        os.write(term.master, b"q")
        thread.join(LIMIT)
        assert not thread.is_alive() and result == [None]  # handed back, still running
        out.wait_for("after: ")
        assert "key=q" in out.text
        proc.write(b"pane\r")  # the rest is answered from the pane again
        assert finish(proc).exit_code == 0
        assert "y=pane" in out.text
        term.drain()
        assert b"\x1b[?1049l" in term.seen  # the terminal saw the program leave its screen
        assert b"y=pane" not in term.seen  # and nothing after the hand-back


def test_ctrl_c_in_the_relay_goes_to_the_command():
    proc, out = spawn("trap 'echo got-INT; exit 9' INT; echo ready; while :; do sleep 0.05; done")
    out.wait_for("ready")
    with relaying(proc, until_screen_left=False) as (term, thread, result):
        eventually(lambda: not termios.tcgetattr(term.slave)[3] & termios.ISIG, "raw mode")
        os.write(term.master, b"\x03")
        thread.join(LIMIT)
        assert result and result[0].exit_code == 9
        term.read_until(b"got-INT")


def test_a_program_that_exits_during_the_hand_over_returns_its_status():
    proc, _ = on_the_alternate_screen('printf "\\033[?1049hmenu"; read -rsn1 key; exit 4')
    with relaying(proc, until_screen_left=True) as (term, thread, result):
        term.read_until(b"menu")
        os.write(term.master, b"x")
        thread.join(LIMIT)
        assert result and isinstance(result[0], ExitStatus) and result[0].exit_code == 4
