"""What every target's running command is, whatever runs it: a local PTY, a docker exec, SSH.

The engine drives commands only through these: `Process` (wait, abort), `ExitStatus` (how it
ended) and `supervise` (timeout, abort, a periodic tick). A command the operator can answer
(type into, resize, see waiting or asking for a password) is also a `TerminalProcess`; a target
that cannot offer that (docker exec without stdin, today) simply is not one. Targets in `integrations/` build
Processes from here and never import the engine, which drives them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_TERM", "ExitStatus", "Process", "TerminalProcess", "TerminalState", "shell_argv", "supervise"]

# The terminal type a command is told it has, on our PTY or in a container.
DEFAULT_TERM = "xterm-256color"
# How often supervise() looks at the command: polls should_abort, calls tick, raises a failed sink.
POLL = 0.05
# Seconds between the signals that stop a command (SIGINT, then SIGTERM, then SIGKILL), unless the
# run says otherwise: time for a well-behaved program to clean up after Ctrl+C (remove its lock
# file, roll a transaction back), short enough that a stuck one does not keep the operator waiting.
GRACE = 2.0


@dataclass(frozen=True)
class ExitStatus:
    """How a command ended."""

    exit_code: int | None  # None when killed by a signal
    signal: int | None  # signal number that killed the leader, else None
    duration: float  # seconds (monotonic) from spawn until the leader exited
    timed_out: bool = False
    aborted: bool = False  # stopped by abort() (operator / app shutdown)

    @property
    def ok_code(self) -> int:
        """Shell-style code for display: the exit code, or 128 + signal."""
        if self.exit_code is not None:
            return self.exit_code
        return 128 + (self.signal or 0)


@dataclass(frozen=True)
class TerminalState:
    """A command's terminal, as the operator needs to know it to answer."""

    waiting_for_input: bool  # a process of the foreground group is blocked reading the terminal
    echo: bool  # what is typed is echoed (False: a password prompt, or a full-screen program)
    canonical: bool  # line by line (ICANON); False for full-screen programs and raw key readers
    alternate_screen: bool  # the program switched to the alternate screen (and did not leave it)

    @property
    def masked_input(self) -> bool:
        """A password prompt (sudo, ssh, ``read -s``): lines typed blind. Never record the input.

        Also true when the kernel does not let us see the reader (a setuid ``sudo`` when we
        are not root), which is why it does not depend on ``waiting_for_input``.
        """
        return not self.echo and self.canonical


def shell_argv(script: str, shell: str = "bash") -> list[str]:
    """argv that runs ``script`` with ``shell``; a script of several lines fails loudly.

    A multi-line script gets ``-e`` (a failing line must not be silently followed by the next
    one) and ``pipefail`` (a failing producer is not hidden by ``| tee``). A one-line command
    runs exactly as typed at a prompt: with ``pipefail``, ``docker compose logs web | head -3``
    would fail with 141 when ``head`` closes the pipe (docs/runbook-format.md says the same).
    ``sh``/``dash`` get no ``pipefail`` (not portable there).
    """
    lines = [ln.strip() for ln in script.splitlines()]
    code_lines = [ln for ln in lines if ln and not ln.startswith("#")]
    argv = [shell]
    if len(code_lines) > 1:
        argv.append("-e")
        if os.path.basename(shell) not in ("sh", "dash"):
            argv += ["-o", "pipefail"]
    return argv + ["-c", script]


class Process(Protocol):
    """What `supervise` needs of a running command: a local PtyProcess or a docker exec."""

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """The exit status; None while it runs and ``timeout`` passes. A failure of the output
        sink is raised: with a ``timeout`` as soon as it happens (the command may still run, its
        output no longer passed on: the caller stops it), without one once the command ended."""
        ...

    def abort(self, grace: float = GRACE) -> None: ...


@runtime_checkable
class TerminalProcess(Process, Protocol):
    """A Process whose terminal the operator can use: ``isinstance(proc, TerminalProcess)``."""

    def write(self, data: bytes) -> None: ...

    def resize(self, rows: int, cols: int) -> None: ...

    def terminal_state(self) -> TerminalState: ...


def supervise(proc: Process, *, timeout: float | None = None, grace: float = GRACE,
              should_abort: Callable[[], bool] | None = None, tick: Callable[[], None] | None = None,
              interval: float = POLL) -> ExitStatus:
    """Wait for ``proc``; on ``timeout`` or once ``should_abort()`` says so, abort it with ``grace``.

    ``tick`` is called every ``interval`` seconds while it runs (the session flushes output to
    the transcript there). If the caller itself is interrupted (e.g. KeyboardInterrupt), or
    ``proc`` raises the failure of its output sink, the command is aborted too.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            if should_abort is not None and should_abort():
                proc.abort(grace)
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                timed_out = True
                proc.abort(grace)
                break
            # Always a bounded wait: a failed output sink is raised by the next one (the command is
            # then stopped below), not only when the command ends by itself.
            step = interval if remaining is None else min(remaining, interval)
            finished = proc.wait(step) is not None
            if tick is not None:
                tick()
            if finished:
                break
    except BaseException:
        proc.abort(grace)
        raise
    status = proc.wait()
    assert status is not None
    if timed_out and status.aborted:
        status = replace(status, aborted=False, timed_out=True)
    return status
