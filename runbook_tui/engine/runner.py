"""Run one command under a real PTY, synchronously, with a supervisor thread.

Why a PTY: colours, progress bars and ``isatty`` checks must behave as in a terminal.
Why its own session: abort/timeout must reach every process the command started
(``killpg``), and the command must never share the operator's terminal or stdin.
Why synchronous: the TUI calls this from a worker thread and the headless CLI calls it
directly; neither needs an event loop. This module must never import Textual.
"""

from __future__ import annotations

import codecs
import errno
import fcntl
import os
import selectors
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from runbook_tui.process import DEFAULT_TERM, ExitStatus, supervise

__all__ = ["PtyProcess", "run_command"]

_CHUNK = 64 * 1024
# A PTY delivers a fast writer's output a line or so per read. Reads are gathered and handed
# to on_output at most this late (or once _BATCH bytes are in), so the reader keeps up with
# the writer instead of filtering, redacting and printing every kilobyte on its own.
_BATCH_DELAY = 0.005
_BATCH = 64 * 1024
# After the leader exits, whatever still holds the PTY (background children) gets this long
# of silence (and at most _DRAIN_MAX in total, in case it never goes quiet) before it is killed.
_DRAIN_QUIET = 0.3
_DRAIN_MAX = 2.0
# After SIGKILLing the group, how long to wait for the PTY to report EOF. Only a process that
# escaped the group (setsid) can keep it open longer; we stop reading rather than hang.
_EOF_AFTER_KILL = 1.0
# Poll interval for the leader's exit where pidfd is unavailable.
_POLL = 0.05


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """Environment for the child: ``env`` as given, else ours minus what describes our terminal."""
    if env is None:
        merged = dict(os.environ)
        # TERM/LINES/COLUMNS describe the terminal we run in, not the PTY the child gets.
        for key in ("TERM", "LINES", "COLUMNS"):
            merged.pop(key, None)
    else:
        merged = dict(env)
    merged.setdefault("TERM", DEFAULT_TERM)
    return merged


def _take_controlling_tty() -> None:
    """preexec_fn: make the PTY slave (already fd 1, after setsid) the controlling terminal.

    Runs between fork and exec, so it does nothing but one ioctl with pre-imported modules.
    """
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)


class _Batch:
    """Bytes read from the PTY and not yet handed on, with the time the oldest arrived."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._data = bytearray()
        self._since = 0.0

    def add(self, data: bytes) -> None:
        if not self._data:
            self._since = time.monotonic()
        self._data += data

    def full(self) -> bool:
        return len(self._data) >= _BATCH

    def due_in(self) -> float | None:
        """Seconds until the batch must be handed on; None when it is empty."""
        return self._since + _BATCH_DELAY - time.monotonic() if self._data else None

    def take(self, *, final: bool = False) -> str:
        """The batch as text (a split UTF-8 character waits for the next one, unless final)."""
        text = self._decoder.decode(bytes(self._data), final=final)
        self._data.clear()
        return text


def _open_pidfd(pid: int) -> int | None:
    """A pidfd lets the supervisor sleep until the leader exits; fall back to polling."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class PtyProcess:
    """One command on its own PTY, in its own session and process group.

    A single supervisor thread reads the PTY, calls ``on_output`` (always from that thread,
    in order), notices the leader's exit, kills whatever is left in the group, reaps the
    leader and closes every fd. Output is held back at most _BATCH_DELAY (or _BATCH bytes).
    """

    pid: int
    pgid: int

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        master: int,
        on_output: Callable[[str], None],
        started: float,
    ) -> None:
        """Private: use :meth:`spawn`."""
        self._popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid  # setsid: the leader's pid is its session and group id
        self._master = master
        self._on_output = on_output
        self._started = started
        self._lock = threading.Lock()  # guards _reaped/_leader_exited/_aborted/_master close
        self._leader_exited = False
        self._reaped = False
        self._aborted = False
        self._error: BaseException | None = None
        self._status: ExitStatus | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._supervise, name=f"pty-reader-{self.pid}", daemon=True
        )
        self._thread.start()

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        on_output: Callable[[str], None],
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        rows: int = 40,
        cols: int = 120,
        interactive: bool = False,
    ) -> PtyProcess:
        """Start ``argv`` on a fresh PTY; stdin is /dev/null so nothing can wait for input.

        ``interactive`` makes the PTY the program's stdin too; the caller types with ``write``.

        ``env`` replaces the environment (like ``subprocess``); ``TERM`` defaults to
        ``xterm-256color``. Raises ``OSError`` (e.g. ``FileNotFoundError``) if it cannot start.
        """
        if not argv:
            raise ValueError("argv must not be empty")
        master, slave = os.openpty()
        try:
            termios.tcsetwinsize(slave, (rows, cols))
            started = time.monotonic()
            popen = subprocess.Popen(
                list(argv),
                stdin=slave if interactive else subprocess.DEVNULL,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=_child_env(env),
                start_new_session=True,
                preexec_fn=_take_controlling_tty,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # else we would hold the PTY open and never see EOF
        return cls(popen, master, on_output, started)

    # -- public API -------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Block until the leader exited and its output was drained; None if ``timeout`` ran out.

        Re-raises an exception raised by ``on_output`` (after the process was fully cleaned up).
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("wait() must not be called from on_output")
        if not self._done.wait(timeout):
            return None
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._status

    def abort(self, grace: float = 2.0) -> None:
        """SIGINT, then SIGTERM, then SIGKILL to the whole group, ``grace`` seconds apart.

        A no-op once the leader has exited (the supervisor cleans up the rest itself).
        Safe to call from ``on_output``: the escalation then runs on a helper thread.
        """
        if threading.current_thread() is self._thread:
            threading.Thread(target=self.abort, args=(grace,), daemon=True).start()
            return
        with self._lock:
            if self._leader_exited:
                return
            self._aborted = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._signal(sig)
            if self._done.wait(grace):
                return
        self._signal(signal.SIGKILL)
        self._done.wait(grace)

    def write(self, data: bytes) -> None:
        """Send keystrokes to an interactive program (ignored once it has finished)."""
        with self._lock:
            if self._master < 0:
                return
            try:
                os.write(self._master, data)
            except OSError:
                pass  # the program is exiting; its last keystrokes no longer matter

    def resize(self, rows: int, cols: int) -> None:
        """Set the PTY window size; the kernel sends SIGWINCH to the foreground group."""
        with self._lock:
            if self._master < 0:
                return
            try:
                termios.tcsetwinsize(self._master, (rows, cols))
            except OSError:
                pass  # the command is finishing; resizing it no longer matters

    # -- supervisor thread ------------------------------------------------------------------

    def _signal(self, sig: int) -> None:
        """killpg, but never after reaping: until then the zombie leader keeps the pgid ours."""
        with self._lock:
            if self._reaped:
                return
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _leader_has_exited(self) -> bool:
        """Check without reaping (WNOWAIT), so the pgid cannot be recycled under us."""
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.pid, flags) is not None
        except ChildProcessError:
            return True  # reaped behind our back (e.g. SIGCHLD ignored)

    def _emit(self, text: str) -> None:
        """Hand text to on_output; after it fails once, keep draining but drop output."""
        if not text or self._error is not None:
            return
        try:
            self._on_output(text)
        except BaseException as exc:  # must not kill the thread, or wait() would hang
            self._error = exc

    def _read_chunk(self, batch: _Batch) -> bool:
        """Read one chunk into ``batch``; False at EOF (EIO on Linux once all slave fds closed)."""
        try:
            data = os.read(self._master, _CHUNK)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            return False
        batch.add(data)
        if batch.full():
            self._emit(batch.take())
        return True

    def _select(self, sel: selectors.BaseSelector, batch: _Batch,
                timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        """``sel.select``, but hand the batch on first if it is due or would wait for nothing."""
        due = batch.due_in()
        if due is not None and due <= 0:
            self._emit(batch.take())
        elif due is not None:
            ready = sel.select(due if timeout is None else min(due, timeout))
            if ready:
                return ready
            self._emit(batch.take())
            if timeout is not None:
                timeout = max(0.0, timeout - due)
        return sel.select(timeout)

    def _drain(self, sel: selectors.BaseSelector, batch: _Batch,
               deadline: float, quiet: float | None) -> bool:
        """Read until EOF (True), ``deadline``, or ``quiet`` seconds without output (False)."""
        quiet_until = time.monotonic() + quiet if quiet is not None else deadline
        while True:
            remaining = min(deadline, quiet_until) - time.monotonic()
            if remaining <= 0:
                return False
            if self._select(sel, batch, remaining):
                if not self._read_chunk(batch):
                    return True
                if quiet is not None:
                    quiet_until = time.monotonic() + quiet

    def _supervise(self) -> None:
        batch = _Batch()
        sel = selectors.DefaultSelector()
        pidfd = _open_pidfd(self.pid)
        exited_at: float | None = None
        try:
            sel.register(self._master, selectors.EVENT_READ, "out")
            if pidfd is not None:
                sel.register(pidfd, selectors.EVENT_READ, "exit")
            eof = False
            # 1. Stream output until the leader exits (EOF alone is not the end: `exec >&-`).
            while True:
                exit_signalled = pidfd is None  # without a pidfd, poll for the exit
                for key, _ in self._select(sel, batch, None if pidfd is not None else _POLL):
                    if key.data == "exit":
                        exit_signalled = True
                    elif not self._read_chunk(batch):
                        eof = True
                        sel.unregister(self._master)
                if exit_signalled and self._leader_has_exited():
                    break
            exited_at = time.monotonic()
            with self._lock:
                self._leader_exited = True
            if pidfd is not None:
                sel.unregister(pidfd)
            # 2. Drain the tail; background children may hold the PTY open.
            if not eof:
                eof = self._drain(sel, batch, exited_at + _DRAIN_MAX, _DRAIN_QUIET)
            # 3. No orphan survives the command, whether or not it held the PTY.
            self._signal(signal.SIGKILL)
            if not eof:
                self._drain(sel, batch, time.monotonic() + _EOF_AFTER_KILL, None)
        except BaseException as exc:
            if self._error is None:
                self._error = exc
        finally:
            if exited_at is None:  # we failed mid-run: don't leave the command running
                self._signal(signal.SIGKILL)
                exited_at = time.monotonic()
            self._emit(batch.take(final=True))
            sel.close()
            if pidfd is not None:
                os.close(pidfd)
            with self._lock:
                returncode = self._popen.wait()
                self._reaped = True
                os.close(self._master)
                self._master = -1
                aborted = self._aborted
            self._status = ExitStatus(
                exit_code=returncode if returncode >= 0 else None,
                signal=-returncode if returncode < 0 else None,
                duration=exited_at - self._started,
                aborted=aborted,
            )
            self._done.set()


def run_command(
    argv: Sequence[str],
    *,
    on_output: Callable[[str], None],
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    rows: int = 40,
    cols: int = 120,
    grace: float = 2.0,
    abort_event: threading.Event | None = None,
) -> ExitStatus:
    """Spawn ``argv`` and wait; on ``timeout`` or ``abort_event``, abort with ``grace``.

    If the caller itself is interrupted (e.g. KeyboardInterrupt), the command is aborted too.
    """
    proc = PtyProcess.spawn(argv, on_output=on_output, cwd=cwd, env=env, rows=rows, cols=cols)
    return supervise(proc, timeout=timeout, grace=grace, should_abort=abort_event.is_set if abort_event else None)
