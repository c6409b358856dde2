"""Hand the operator's own terminal to a command (less, vi, top, psql, ssh) and still record it.

The command keeps its own PTY; while the operator's terminal is handed over, keystrokes are
copied to that PTY and everything the command prints is copied, raw, both to the terminal and
(batched, as always) to ``on_output``, the way `script(1)` does. The window size follows the
operator's terminal. The caller must have released the terminal first (the TUI suspends itself).

Two ways in: :func:`run_on_terminal` starts a command that needs the terminal from the start
(``interactive=true``); :func:`take_over` hands the terminal to a command that is already
running, typically because it entered the alternate screen, and gives it back when it leaves.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty
from collections.abc import Callable, Mapping, Sequence

from runbook_tui.audit.terminal import TERMINAL_RESET
from runbook_tui.engine.runner import PtyProcess
from runbook_tui.process import ExitStatus

__all__ = ["relay", "run_on_terminal", "take_over"]

# How long the relay waits for a key before it looks again at the command and the window size.
# The size is polled rather than followed with a SIGWINCH handler, because a handler can only be
# installed from the main thread and the TUI relays from a worker; the command still gets its
# SIGWINCH, from the kernel, when we resize its PTY.
_TICK = 0.05
# Keystrokes read from the operator's terminal at once (a paste arrives in pieces of this size).
_KEYS = 4096


def _size(fd: int) -> tuple[int, int]:
    rows, cols = termios.tcgetwinsize(fd)
    return rows, cols


def relay(proc: PtyProcess, fd_in: int, fd_out: int, *, until_screen_left: bool,
          replay: bool | None = None) -> ExitStatus | None:
    """Give the terminal ``fd_in``/``fd_out`` to the running ``proc`` until it exits.

    With ``until_screen_left`` it is given back as soon as the command is no longer on the
    alternate screen (None is returned, the command goes on); otherwise only when it exits
    (its status is returned). ``replay`` shows first what the command printed since it started
    or switched screens (default: when it is on the alternate screen, so the terminal shows
    the screen the program drew before the hand-over). The terminal is in raw mode meanwhile,
    so ctrl+c, ctrl+z and ctrl+d reach the command, not us.
    """
    if replay is None:
        replay = proc.alternate_screen
    saved = termios.tcgetattr(fd_in)
    # Without flushing: keys typed before the hand-over must reach the command.
    tty.setraw(fd_in, termios.TCSANOW)
    size: tuple[int, int] | None = None
    try:
        if not proc.attach(fd_out, replay=replay):
            return proc.wait()
        while (status := proc.wait(0)) is None:
            if until_screen_left and not proc.alternate_screen:
                return proc.wait(0)  # it left the screen (None), or it ended (its status)
            if (now := _size(fd_out)) != size:
                size = now
                proc.resize(*size)
            ready, _, _ = select.select([fd_in], [], [], _TICK)
            if ready and (keys := os.read(fd_in, _KEYS)):
                proc.write(keys)
        return status
    finally:
        proc.detach()
        # Whatever the program left switched on (alternate screen, conceal, margins, charset) is
        # switched off before the terminal is ours again: Textual's resume does not undo it all.
        os.write(fd_out, TERMINAL_RESET.encode())
        termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)


def _terminal() -> tuple[int, int]:
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    if not (os.isatty(fd_in) and os.isatty(fd_out)):
        raise OSError("an interactive task needs a terminal on stdin and stdout")
    return fd_in, fd_out


def take_over(proc: PtyProcess) -> ExitStatus | None:
    """Relay this process's terminal to the running ``proc`` while it is on the alternate screen.

    Returns its status if it exited meanwhile, None when it left the alternate screen and goes on.
    """
    fd_in, fd_out = _terminal()
    return relay(proc, fd_in, fd_out, until_screen_left=True)


def run_on_terminal(argv: Sequence[str], *, on_output: Callable[[str], None], cwd: str | None = None,
                    env: Mapping[str, str] | None = None) -> ExitStatus:
    """Run `argv` interactively on this process's terminal; returns when it exits."""
    fd_in, fd_out = _terminal()
    rows, cols = _size(fd_out)
    proc = PtyProcess.spawn(argv, on_output=on_output, cwd=cwd, env=env, rows=rows, cols=cols)
    try:
        status = relay(proc, fd_in, fd_out, until_screen_left=False, replay=True)
    except BaseException:
        proc.abort()
        raise
    assert status is not None  # until_screen_left=False returns only once it exited
    return status
