"""Run one command under a real PTY, synchronously, with a supervisor thread.

Why a PTY: colours, progress bars and ``isatty`` checks must behave as in a terminal, and a
command that asks something (``read -p``, ``sudo``, ``apt``) must be answerable: the PTY is its
stdin too, and the operator types into it with ``write`` (or gets the real terminal relayed,
``engine/interactive.py``). It never shares the operator's own terminal.
Why its own session: abort/timeout signal its process group (``killpg``), as ctrl+c on a
terminal would; what leaves the group (``setsid``, job control, daemons) is held by a
containment (a cgroup, or session tracking: ``engine/containment.py``) and killed at the end.
Why synchronous: the TUI calls this from a worker thread and the headless CLI calls it
directly; neither needs an event loop. This module must never import Textual.
"""

from __future__ import annotations

import codecs
import ctypes
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

from runbook_tui.engine.containment import Containment, ContainmentKind, ProcessIdentity, new_containment, read_stat
from runbook_tui.engine.terminal import FINISHED, ScreenTracker, line_discipline, reading_terminal
from runbook_tui.process import DEFAULT_TERM, GRACE, ExitStatus, TerminalState, supervise

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
# After killing the containment, how long to wait for the PTY to report EOF. Only a process
# that escaped it (session tracking's blind spot) can keep it open longer; we stop reading
# rather than hang.
_EOF_AFTER_KILL = 1.0
# Poll interval for the leader's exit where pidfd is unavailable.
_POLL = 0.05
# Raw output kept since the last switch to or from the alternate screen (or the start), so a
# terminal attached later can be shown the full-screen program's screen. Beyond this the
# program is asked to redraw itself instead (SIGWINCH), which full-screen programs all handle.
_REPLAY_MAX = 256 * 1024
# prctl(2) option: the signal the child gets when the thread that forked it ends.
_PR_SET_PDEATHSIG = 1
# SIGKILL, not SIGHUP: the app dying means nobody records or supervises the command any more,
# and the commands that made `resume` start a second migration were the ones ignoring SIGHUP.
# The leader cannot ignore SIGKILL; as it led the session, the kernel then sends SIGHUP to the
# terminal's foreground group; whatever survives stays in the containment, and `resume`
# refuses while any of it is alive (containment.live_members).
_DEATH_SIGNAL = int(signal.SIGKILL)
# Looked up before any fork: the child may only make the call, not load anything.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


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


def _child_setup(parent: int, containment: Containment) -> Callable[[], None]:
    """preexec_fn: join the containment, take the PTY as controlling terminal, die with us.

    Runs between fork and exec (after setsid), so it only makes system calls with what was
    prepared before the fork. Joining the containment first means nothing the command ever
    starts can be outside it. The death signal is tied to the *thread* that forked, which is
    why the supervisor thread, which outlives the leader, is the one that spawns.
    """

    def setup() -> None:
        containment.enter()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        _prctl(_PR_SET_PDEATHSIG, _DEATH_SIGNAL, 0, 0, 0)
        if os.getppid() != parent:  # we died before the death signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


def _write_all(fd: int, data: bytes) -> None:
    """os.write until all of ``data`` is written (a terminal may take part of it at a time)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
    """One command on its own PTY, in its own session and process group, and contained.

    A single supervisor thread forks the command, reads the PTY, calls ``on_output`` (always
    from that thread, in order), notices the leader's exit, kills whatever else the command
    started (its containment), reaps the leader and closes every fd. Output is held back at
    most _BATCH_DELAY (or _BATCH bytes).
    """

    pid: int
    pgid: int
    identity: ProcessIdentity

    def __init__(
        self,
        argv: Sequence[str],
        master: int,
        slave: int,
        *,
        on_output: Callable[[str], None],
        on_screen_change: Callable[[bool], None] | None,
        cwd: str | None,
        env: dict[str, str],
        containment: Containment,
    ) -> None:
        """Private: use :meth:`spawn`. Takes ownership of ``master``, ``slave`` and ``containment``."""
        self._master = master
        self._slave_rdev = os.fstat(slave).st_rdev
        self._on_output = on_output
        self._on_screen_change = on_screen_change
        self._containment = containment
        self._lock = threading.Lock()  # guards _reaped/_leader_exited/_aborted/_master close
        self._tee_lock = threading.Lock()  # guards _tee/_replay; a slow terminal never blocks write()
        self._tee = -1
        self._screen = ScreenTracker()
        self._replay = bytearray()
        self._replay_whole = True  # _replay holds everything since the last screen switch
        self._leader_exited = False
        self._reaped = False
        self._aborted = False
        self._error: BaseException | None = None
        self._status: ExitStatus | None = None
        self._done = threading.Event()
        self._spawned = threading.Event()
        self._spawn_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(list(argv), slave, cwd, env),
                                        name="pty-spawning", daemon=True)
        self._thread.start()
        self._spawned.wait()
        if self._spawn_error is not None:
            self._thread.join()
            raise self._spawn_error

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
        on_screen_change: Callable[[bool], None] | None = None,
        containment: ContainmentKind = "auto",
    ) -> PtyProcess:
        """Start ``argv`` on a fresh PTY, which is its stdin, stdout and stderr.

        A command that reads its input waits for ``write`` (see :meth:`terminal_state`); one
        that must see end of input gets it from ``write(b"\\x04")`` (ctrl+d).
        ``env`` replaces the environment (like ``subprocess``); ``TERM`` defaults to
        ``xterm-256color``; ``RUNBOOK_TUI_TAG`` is added (see ``engine/containment.py``).
        ``on_screen_change(alternate)`` is called from the supervisor thread when the program
        enters or leaves the alternate screen, after the output read so far went to
        ``on_output``; also with False when it ends while still on it. Like ``on_output`` it
        must return quickly (post a message; hand the terminal over from another thread).
        ``containment``: ``auto`` (cgroup where possible), ``cgroup`` or ``session``.
        Raises ``OSError`` (e.g. ``FileNotFoundError``) if it cannot start.
        """
        if not argv:
            raise ValueError("argv must not be empty")
        master, slave = os.openpty()
        try:
            termios.tcsetwinsize(slave, (rows, cols))
            box = new_containment(containment)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        return cls(argv, master, slave, on_output=on_output, on_screen_change=on_screen_change, cwd=cwd,
                   env=box.child_env(_child_env(env)), containment=box)

    # -- public API -------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Block until the leader exited and its output was drained; None if ``timeout`` ran out.

        Re-raises an exception raised by ``on_output``: with a ``timeout`` as soon as it is known,
        while the command may still run (its output is no longer passed on, so a supervisor must
        stop it: `supervise` does), without one once it ended (after the process was fully cleaned up).
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("wait() must not be called from on_output")
        if not self._done.wait(timeout):
            if self._error is not None:
                raise self._error
            return None
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._status

    def abort(self, grace: float = GRACE) -> None:
        """SIGINT, then SIGTERM, then SIGKILL to the whole group, ``grace`` seconds apart.

        A no-op once the leader has exited (the supervisor then kills the rest itself, including
        what left the group). Safe to call from ``on_output``: the escalation then runs on a
        helper thread.
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
        """Type ``data`` into the command's terminal (ignored once it has finished)."""
        with self._lock:
            if self._master < 0:
                return
            try:
                _write_all(self._master, data)
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

    def terminal_state(self) -> TerminalState:
        """What the command does with its terminal now; cheap enough to ask a few times a second."""
        with self._lock:
            if self._master < 0:
                return FINISHED
            try:
                echo, canonical = line_discipline(self._master)
            except OSError:
                return FINISHED  # the last process holding the PTY is gone
            waiting = reading_terminal(self._master, self._slave_rdev, self._containment.members())
            return TerminalState(waiting_for_input=waiting, echo=echo, canonical=canonical,
                                 alternate_screen=self.alternate_screen)

    @property
    def alternate_screen(self) -> bool:
        """The program is on the alternate screen (full screen); cheaper than terminal_state().

        False once it has finished; so when this turns False, either it left the alternate
        screen or :meth:`wait` has its status.
        """
        return self._screen.alternate and not self._done.is_set()

    def members(self) -> list[int]:
        """Live pids of everything the command started (its leader included while it lives)."""
        return self._containment.members()

    def attach(self, fd: int, *, replay: bool) -> bool:
        """Copy the command's output, raw and unbatched, to ``fd`` too (the operator's terminal).

        With ``replay``, first what it printed since it started or last switched screens, so
        the terminal shows what a full-screen program drew before ``fd`` was attached. False
        when the command has already finished. Undo with :meth:`detach`.
        """
        with self._tee_lock:
            if self._reaped:
                return False
            redraw = replay and not self._replay_whole
            if replay and self._replay_whole:
                _write_all(fd, bytes(self._replay))
            self._tee = fd
        if redraw:
            self._ask_redraw()
        return True

    def detach(self) -> None:
        """Stop copying output to the fd given to :meth:`attach`."""
        with self._tee_lock:
            self._tee = -1

    # -- supervisor thread ------------------------------------------------------------------

    def _ask_redraw(self) -> None:
        """SIGWINCH to the foreground group: full-screen programs redraw their screen on it."""
        with self._lock:
            try:
                if self._master >= 0:
                    os.killpg(os.tcgetpgrp(self._master), signal.SIGWINCH)
            except OSError:
                pass  # nothing in the foreground any more

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

    def _screen_changed(self, alternate: bool) -> None:
        if self._on_screen_change is None or self._error is not None:
            return
        try:
            self._on_screen_change(alternate)
        except BaseException as exc:  # as in _emit
            self._error = exc

    def _observe(self, data: bytes, batch: _Batch) -> None:
        """Pass raw output to an attached terminal, follow the screen, keep the replay."""
        with self._tee_lock:
            if self._tee >= 0:
                try:
                    _write_all(self._tee, data)
                except OSError:
                    self._tee = -1  # the operator's terminal went away; the output is still recorded
            switched = self._screen.feed(data)
            if switched:
                self._replay.clear()
                self._replay_whole = True
            if self._replay_whole and len(self._replay) + len(data) <= _REPLAY_MAX:
                self._replay += data
            else:
                self._replay.clear()
                self._replay_whole = False
        batch.add(data)
        if switched:
            self._emit(batch.take())
            self._screen_changed(self._screen.alternate)

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
        self._observe(data, batch)
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

    def _run(self, argv: list[str], slave: int, cwd: str | None, env: dict[str, str]) -> None:
        """The supervisor thread: fork the command (so its death signal is armed for as long as
        this thread lives), then supervise it."""
        try:
            self._started = time.monotonic()
            self._popen = subprocess.Popen(
                argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True,
                preexec_fn=_child_setup(os.getpid(), self._containment), close_fds=True,
            )
            self.pid = self.pgid = self._popen.pid  # setsid: its session and group id too
            self._containment.started(self.pid)
            stat = read_stat(self.pid)  # not reaped before this thread does it, so still there
            assert stat is not None
            self.identity = ProcessIdentity(pid=self.pid, pgid=self.pgid, sid=self.pid, start_time=stat.start_time,
                                            cgroup=self._containment.cgroup, tag=self._containment.tag)
        except BaseException as exc:
            self._spawn_error = exc
            os.close(self._master)
            self._containment.close()
            return
        finally:
            os.close(slave)  # else we would hold the PTY open and never see EOF
            self._spawned.set()
        threading.current_thread().name = f"pty-reader-{self.pid}"
        self._supervise()

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
            # 3. Nothing the command started survives it, in its group or not, holding the PTY
            #    or not. The leader is a zombie until reaped below, so no pid here is recycled.
            self._containment.kill()
            if not eof:
                self._drain(sel, batch, time.monotonic() + _EOF_AFTER_KILL, None)
        except BaseException as exc:
            if self._error is None:
                self._error = exc
        finally:
            if exited_at is None:  # we failed mid-run: don't leave the command running
                self._signal(signal.SIGKILL)
                self._containment.kill()
                exited_at = time.monotonic()
            self._emit(batch.take(final=True))
            if self._screen.alternate:  # it ended on the alternate screen: the front end takes it back
                self._screen_changed(False)
            sel.close()
            if pidfd is not None:
                os.close(pidfd)
            with self._tee_lock, self._lock:
                self._containment.close()  # before reaping: then the leader's pid is still ours
                returncode = self._popen.wait()
                self._reaped = True
                os.close(self._master)
                self._master = -1
                self._tee = -1
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
    grace: float = GRACE,
    abort_event: threading.Event | None = None,
) -> ExitStatus:
    """Spawn ``argv`` and wait; on ``timeout`` or ``abort_event``, abort with ``grace``.

    If the caller itself is interrupted (e.g. KeyboardInterrupt), the command is aborted too.
    """
    proc = PtyProcess.spawn(argv, on_output=on_output, cwd=cwd, env=env, rows=rows, cols=cols)
    return supervise(proc, timeout=timeout, grace=grace, should_abort=abort_event.is_set if abort_event else None)
