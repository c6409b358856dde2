"""Hand the operator's own terminal to a program (psql, ssh, a shell) and still record it.

The program gets a PTY of its own, sized like the operator's terminal; keystrokes are copied
to it and everything it prints is copied both to the terminal and to the recorder, the way
`script(1)` does. The caller must have released the terminal first (the TUI suspends itself).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
import tty
from collections.abc import Callable, Mapping, Sequence

from runbook_tui.engine.runner import PtyProcess
from runbook_tui.process import ExitStatus


def run_on_terminal(argv: Sequence[str], *, on_output: Callable[[str], None], cwd: str | None = None,
                    env: Mapping[str, str] | None = None) -> ExitStatus:
    """Run `argv` interactively on this process's terminal; returns when it exits."""
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    if not (os.isatty(fd_in) and os.isatty(fd_out)):
        raise OSError("an interactive task needs a terminal on stdin and stdout")
    size = os.get_terminal_size(fd_out)

    def show_and_record(text: str) -> None:
        os.write(fd_out, text.encode("utf-8", "replace"))
        on_output(text)

    saved = termios.tcgetattr(fd_in)
    # Raw before the program starts, and without flushing: keys typed early must reach it.
    tty.setraw(fd_in, termios.TCSANOW)
    try:
        proc = PtyProcess.spawn(argv, on_output=show_and_record, cwd=cwd, env=env, rows=size.lines,
                                cols=size.columns, interactive=True)
    except BaseException:
        termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
        raise
    previous = signal.signal(signal.SIGWINCH, lambda *_: proc.resize(*_rows_cols(fd_out)))
    try:
        while (status := proc.wait(0)) is None:
            ready, _, _ = select.select([fd_in], [], [], 0.1)
            if ready:
                data = os.read(fd_in, 4096)
                if data:
                    proc.write(data)
        return status
    finally:
        termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


def _rows_cols(fd: int) -> tuple[int, int]:
    size = os.get_terminal_size(fd)
    return size.lines, size.columns
