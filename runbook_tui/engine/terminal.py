"""What a command is doing with its terminal: waiting for input, hiding what is typed, full screen.

The front ends need three facts to let the operator answer a command (issue 13): is it
blocked reading its terminal (say so, offer to type), is echo off (a password: mask the input,
never record it), has it switched to the alternate screen (a full-screen program: hand it the
real terminal). The first two are read from the kernel on demand; the third can only be seen in
the output stream, so :class:`ScreenTracker` watches the bytes as they are read.
"""

from __future__ import annotations

import os
import platform
import re
import termios
from pathlib import Path

from runbook_tui.engine.containment import read_stat
from runbook_tui.process import TerminalState

__all__ = ["FINISHED", "ScreenTracker", "line_discipline", "reading_terminal"]


# What terminal_state() says once the command's PTY is closed.
FINISHED = TerminalState(waiting_for_input=False, echo=True, canonical=True, alternate_screen=False)

# Private modes that switch to the alternate screen: 1049 (save cursor + switch + clear, what
# terminfo's smcup says for xterm), 1047 (switch + clear) and 47 (switch; the oldest).
_ALT_MODES = frozenset({b"1049", b"1047", b"47"})
# DECSET/DECRST: ESC [ ? <params separated by ;> h|l.
_PRIVATE_MODE = re.compile(rb"\x1b\[\?([0-9;]*)([hl])")
# An unfinished DECSET at the end of a read is kept for the next one; anything longer than
# this after an ESC is not one we care about (the longest useful is ESC[?1049;1047;47h).
_MAX_PENDING = 32
# read(2)-family syscall numbers, by architecture (/proc/PID/syscall gives the number first).
_READ_SYSCALLS = {
    "x86_64": frozenset({0, 17, 19, 295, 327}),  # read, pread64, readv, preadv, preadv2
    "aarch64": frozenset({63, 65, 67, 69, 286}),  # read, readv, pread64, preadv, preadv2
}.get(platform.machine(), frozenset())


class ScreenTracker:
    """Follows the alternate screen through the output, robust to a sequence split across reads."""

    def __init__(self) -> None:
        self.alternate = False
        self._pending = b""

    def feed(self, data: bytes) -> bool:
        """Take the next bytes read; True when they changed :attr:`alternate`."""
        if not self._pending and b"\x1b" not in data:
            return False  # the common case (plain output) costs one scan
        data = self._pending + data
        before = self.alternate
        end = 0
        for match in _PRIVATE_MODE.finditer(data):
            if any(p in _ALT_MODES for p in match.group(1).split(b";")):
                self.alternate = match.group(2) == b"h"
            end = match.end()
        tail = data.rfind(b"\x1b", end)
        unfinished = tail >= 0 and len(data) - tail < _MAX_PENDING and re.fullmatch(
            rb"\x1b(\[(\?[0-9;]*)?)?", data[tail:]) is not None
        self._pending = data[tail:] if unfinished else b""
        return self.alternate != before


def _fd_is(pid: int, fd: int, rdev: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/fd/{fd}").st_rdev == rdev
    except OSError:
        return False


def _blocked_reading(pid: int, rdev: int) -> bool:
    """A thread of ``pid`` is in a read(2)-family call on the terminal device ``rdev``.

    /proc/PID/task/TID/syscall is "NR arg1 ..." while blocked in a syscall; reading it needs
    ptrace rights over the process (ours: our own child; not a setuid program unless we are root).
    """
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in threads:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
        except OSError:
            continue
        if len(fields) > 1 and fields[0].isdigit() and int(fields[0]) in _READ_SYSCALLS:
            if _fd_is(pid, int(fields[1], 16), rdev):
                return True
    return False


def reading_terminal(master: int, rdev: int, candidates: list[int]) -> bool:
    """Some process of the PTY's foreground group, among ``candidates``, waits reading the PTY.

    ``rdev`` is the PTY slave's device number. Only the foreground group can read a terminal
    (others get SIGTTIN), so only its members are asked.
    """
    try:
        foreground = os.tcgetpgrp(master)
    except OSError:
        return False
    for pid in candidates:
        stat = read_stat(pid)
        if stat is not None and stat.pgrp == foreground and stat.state == "S" and _blocked_reading(pid, rdev):
            return True
    return False


def line_discipline(master: int) -> tuple[bool, bool]:
    """(echo, canonical) of the PTY; on the master, Linux reports the slave's termios."""
    lflag = termios.tcgetattr(master)[3]
    return bool(lflag & termios.ECHO), bool(lflag & termios.ICANON)
