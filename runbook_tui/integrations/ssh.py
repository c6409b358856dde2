"""SSH targets (asyncssh): a task's script run on a remote host, shaped like the local PTY runner.

- :class:`SshPool` keeps **one connection per host**, reused by every session on it, on one
  asyncio loop in a background thread (the engine is synchronous and threaded; asyncssh is not).
  Host names resolve through ``~/.ssh/config`` (HostName, User, Port, IdentityFile, ProxyJump)
  by asyncssh's own OpenSSH config support; authentication uses ``ssh-agent`` and the configured
  identity files; keepalives make a hung host fail with a reason instead of hanging.
- Host keys are checked against ``known_hosts``, strictly by default: an unknown or changed key
  fails that host with the fingerprint and what to do (:class:`HostKeyError`).
  ``host_keys="accept-new"`` is OpenSSH's ``StrictHostKeyChecking=accept-new`` (a *changed* key
  still fails); :attr:`HostFacts.accepted_new_key` says when it was used, for the transcript.
- :class:`RemoteProcess` implements :class:`runbook_tui.process.Process` (``wait``, ``abort``)
  for one command on one host, streams its output to ``on_output`` and ends with a real exit
  status; :attr:`RemoteProcess.facts` are what ``command.started`` records about the host.

How values and secrets reach the remote command (the design the tests check with ``ps``):
``env`` requests are no use (sshd's ``AcceptEnv`` refuses them) and splicing values into the
command text would put them in the remote argv, readable by every user through ``ps``. So the
SSH ``exec`` request always carries the same fixed text, :data:`REMOTE_COMMAND`: ``/bin/sh``
running :data:`BOOTSTRAP`, which holds no value. The values, the working directory and the argv
to run (``shell_argv``'s, as locally) are then written to the session's stdin, one per line,
each byte outside a small safe set written as a ``\\0ooo`` octal escape (:func:`encode_payload`).
The bootstrap reads those lines with ``read -r``, decodes each with the shell's *builtin*
``printf %b`` (no program is started, so no argv ever holds a value) into a variable, exports
the values, and finally ``exec``s the argv: the script's own shell, which receives the values
in its environment, exactly as a local command does. Nothing is ever evaluated: a value is only
ever an argument of ``printf`` or the right-hand side of ``export "NAME=$v"``. (``printf`` is
a builtin of every ``/bin/sh`` in use: dash, bash, busybox ash, zsh, mksh.) The PTY is
requested with echo and line editing off (raw), so what is written to stdin is neither echoed
back into the output nor cut at a line length; the bootstrap restores a normal terminal
(``stty sane``) just before the ``exec``. A payload cut short (no final ``.`` line) runs nothing
(exit 125).

Abort: a PTY is requested so the remote command has a controlling terminal. SIGINT is a ``^C``
written to it (the terminal signals the whole foreground process group, as Ctrl+C in ``ssh
-t``); SIGTERM and SIGKILL are SSH ``signal`` requests (OpenSSH delivers them to the command's
leader); closing the channel then hangs the terminal up (SIGHUP to the session). If a host
answers none of that, :meth:`RemoteProcess.abort` stops waiting after ``3 * grace`` and says so.

This module never imports the engine (or Textual); the engine drives RemoteProcesses.
``on_output`` and ``on_started`` are called on the pool's loop thread: they must be quick and
must not call :meth:`RemoteProcess.wait`.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import re
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncssh

from runbook_tui.model import Host
from runbook_tui.process import DEFAULT_TERM, GRACE, ExitStatus, shell_argv

__all__ = [
    "BOOTSTRAP",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_KEEPALIVE_COUNT",
    "DEFAULT_KEEPALIVE_INTERVAL",
    "HostFacts",
    "HostKeyError",
    "HostKeyPolicy",
    "REMOTE_COMMAND",
    "RemoteProcess",
    "SshError",
    "SshOptions",
    "SshPool",
    "SshTarget",
    "encode_payload",
    "host_starter",
]

HostKeyPolicy = Literal["strict", "accept-new"]
# OpenSSH's ServerAliveInterval/ServerAliveCountMax equivalents: a host that answers no keepalive
# for interval * (count + 1) seconds is declared gone (15-20 s), so a hung host fails, not hangs.
DEFAULT_KEEPALIVE_INTERVAL = 5.0
DEFAULT_KEEPALIVE_COUNT = 3
# TCP connect + key exchange + authentication must finish in this time (OpenSSH's ConnectTimeout).
DEFAULT_CONNECT_TIMEOUT = 15.0
# Ciphers in order of preference: AES-GCM first, since `cryptography` computes it in one
# (AES-NI accelerated) pass where chacha20-poly1305, asyncssh's first choice, takes two; on a
# 20-host fan-out it cut our CPU time by about a third. Both are what OpenSSH itself offers.
_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
            "aes256-ctr", "aes192-ctr", "aes128-ctr")
# Bytes read from a session at once; asyncssh's channel window bounds what is buffered anyway.
_CHUNK = 64 * 1024
# Bytes a payload line may hold as they are: no shell, printf or `read` treats these specially.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.,/:@+=-")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The bootstrap's own variables: an environment variable of the runbook may not use the prefix.
_RESERVED_PREFIX = "_rbt_"

# The fixed program every session runs (see the module docstring). One line without `'` or `\`,
# so REMOTE_COMMAND means the same to any login shell (sh, bash, zsh, fish, tcsh). Line kinds:
# `a ARG` appends to the argv to exec, `e NAME VALUE` exports, `d DIR` is the working directory,
# `.` ends the payload.
BOOTSTRAP = (
    "set --; _rbt_d=; _rbt_ok=; "
    'while IFS=" " read -r _rbt_k _rbt_a _rbt_b; do case $_rbt_k in '
    'a) _rbt_v=$(printf %bx "$_rbt_a"); set -- "$@" "${_rbt_v%x}";; '
    'e) _rbt_v=$(printf %bx "$_rbt_b"); export "$_rbt_a=${_rbt_v%x}";; '
    'd) _rbt_v=$(printf %bx "$_rbt_a"); _rbt_d=${_rbt_v%x};; '
    ".) _rbt_ok=1; break;; esac; done; "
    "stty sane 2>/dev/null; "
    '[ -n "$_rbt_ok" ] || exit 125; '
    '[ -z "$_rbt_d" ] || cd "$_rbt_d" || exit 126; '
    'exec "$@"'
)
REMOTE_COMMAND = f"exec /bin/sh -c '{BOOTSTRAP}'"
# The PTY starts raw and silent so the payload is neither echoed nor line-edited (see above).
_RAW_MODES = {
    asyncssh.PTY_ECHO: 0,
    asyncssh.PTY_ICANON: 0,
    asyncssh.PTY_ISIG: 0,
    asyncssh.PTY_IEXTEN: 0,
    asyncssh.PTY_ICRNL: 0,
    asyncssh.PTY_IXON: 0,
    asyncssh.PTY_OPOST: 0,
}
_CTRL_C = b"\x03"

T = TypeVar("T")


class SshError(Exception):
    """A host cannot run the command: unreachable, refused, authentication, host key, gone mid-run."""


class HostKeyError(SshError):
    """The host's key is not in known_hosts, or differs from the one there. Carries the fingerprint."""

    def __init__(self, message: str, fingerprint: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


@dataclass(frozen=True)
class SshTarget:
    """Where to connect: an inventory host. Unset fields come from ~/.ssh/config, then defaults.

    ``address`` is Ansible's ``ansible_host``: connect there (and match config ``Host`` blocks
    on it, as Ansible's ssh does) while the operator keeps reading ``name``.
    """

    name: str
    address: str | None = None
    port: int | None = None
    user: str | None = None

    @classmethod
    def from_host(cls, host: Host) -> SshTarget:
        """The target of an inventory or front matter host (its source line is not part of it)."""
        return cls(name=host.name, address=host.address, port=host.port, user=host.user)


@dataclass(frozen=True)
class SshOptions:
    """How every connection of a pool is made.

    ``known_hosts`` / ``config`` None mean OpenSSH's defaults (``~/.ssh/known_hosts``,
    ``~/.ssh/config``, read under ``$HOME``). A ``UserKnownHostsFile`` in the config is what
    asyncssh checks keys against; the changed-key diagnosis and ``accept-new`` read and append
    ``known_hosts`` (or ``~/.ssh/known_hosts``), so set it when the config names another file.
    """

    host_keys: HostKeyPolicy = "strict"
    keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL
    keepalive_count: int = DEFAULT_KEEPALIVE_COUNT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    known_hosts: str | None = None
    config: tuple[str, ...] | None = None

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts) if self.known_hosts else Path("~", ".ssh", "known_hosts").expanduser()


@dataclass(frozen=True)
class HostFacts:
    """What the transcript records about the host a command ran on."""

    host: str  # the name the runbook uses
    address: str  # the peer IP address actually connected to
    port: int
    user: str
    host_key: str  # e.g. ssh-ed25519
    fingerprint: str  # SHA256:...
    accepted_new_key: bool = False  # the key was unknown and added under host_keys="accept-new"

    def as_dict(self) -> dict[str, object]:
        return {"host": self.host, "address": self.address, "port": self.port, "user": self.user,
                "host_key": self.host_key, "fingerprint": self.fingerprint,
                "accepted_new_key": self.accepted_new_key}


def encode_payload(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> bytes:
    """The stdin lines :data:`BOOTSTRAP` reads: argv, environment, working directory, end mark."""
    lines = [f"a {_encode(arg)}" for arg in argv]
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name) or name.startswith(_RESERVED_PREFIX):
            raise ValueError(f"{name!r} cannot be an environment variable of a remote command")
        lines.append(f"e {name} {_encode(value)}")
    if cwd:
        lines.append(f"d {_encode(cwd)}")
    lines.append(".")
    return ("\n".join(lines) + "\n").encode("ascii")


def _encode(value: str) -> str:
    """``value`` as a `printf %b` argument: safe bytes as they are, every other byte as ``\\0ooo``.

    An empty value is an empty field, which ``read`` leaves empty too (it is always the last).
    """
    data = value.encode("utf-8", errors="surrogateescape")
    if b"\0" in data:
        raise ValueError("a value passed to a remote command cannot contain a NUL byte")
    return "".join(chr(b) if b in _SAFE else f"\\0{b:03o}" for b in data)


def _signal_number(name: str) -> int | None:
    try:
        return int(getattr(signal, "SIG" + name.removeprefix("SIG")))
    except AttributeError:
        return None


def _describe_target(target: SshTarget) -> str:
    where = target.address or target.name
    return f"{target.name}" + (f" ({where})" if where != target.name else "")


class _Client(asyncssh.SSHClient):
    """Decides about keys known_hosts does not vouch for, and remembers why a connection ended."""

    def __init__(self, options: SshOptions) -> None:
        self._options = options
        self.problem: HostKeyError | None = None
        self.accepted_new_key = False
        self.lost: Exception | None = None
        self.closed = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.closed = True

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        """Called only for a key known_hosts does not list for this host."""
        fingerprint = key.get_fingerprint("sha256")
        algorithm = key.get_algorithm()
        entry = host if port in (22, None) else f"[{host}]:{port}"
        path = self._options.known_hosts_path
        known = _known_keys(path, host, addr, port)
        if known:
            self.problem = HostKeyError(
                f"HOST KEY CHANGED for {entry}: it offers {algorithm} {fingerprint}, but {path} has "
                f"{', '.join(known)}. If the host was reinstalled, confirm the new fingerprint with its "
                f"owner, then `ssh-keygen -R '{entry}' -f {path}` and connect again; otherwise someone "
                f"may be intercepting the connection. Refusing to connect.", fingerprint)
            return False
        if self._options.host_keys == "accept-new":
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="ascii") as handle:
                handle.write(f"{entry} {key.export_public_key('openssh').decode('ascii').strip()}\n")
            self.accepted_new_key = True
            return True
        self.problem = HostKeyError(
            f"unknown host key for {entry}: {algorithm} {fingerprint} is not in {path}. Check the "
            f"fingerprint with the host's owner, then add it (`ssh-keyscan -p {port} {host} >> {path}`, "
            f"or connect once with `ssh`), or run with host keys accept-new to trust new hosts on first "
            f"use (recorded in the transcript).", fingerprint)
        return False


def _known_keys(path: Path, host: str, addr: str, port: int) -> list[str]:
    """Fingerprints known_hosts lists for this host (any key: a mismatch means it changed)."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    trusted = asyncssh.match_known_hosts(data, host, addr, None if port == 22 else port)[0]
    return [f"{k.get_algorithm()} {k.get_fingerprint('sha256')}" for k in trusted]


@dataclass
class _Connection:
    conn: asyncssh.SSHClientConnection
    client: _Client
    facts: HostFacts


class SshPool:
    """One SSH connection per host, shared by every command run there; one loop thread for all.

    Use as a context manager, or call :meth:`close`. Thread-safe: any thread may :meth:`spawn`.
    """

    def __init__(self, options: SshOptions | None = None) -> None:
        self.options = options or SshOptions()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ssh-pool", daemon=True)
        self._thread.start()
        self._connections: dict[SshTarget, asyncio.Task[_Connection]] = {}
        self._closed = False

    def __enter__(self) -> SshPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- thread-facing API ---------------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the pool's loop and wait for its result (from any other thread)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("SshPool.call() would deadlock on the pool's own loop")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def connect(self, target: SshTarget) -> HostFacts:
        """Open (or reuse) the connection to ``target``; raises :class:`SshError` with the reason."""
        return self.call(self._connection(target)).facts

    def spawn(self, target: SshTarget, script: str, *, on_output: Callable[[str], None],
              env: Mapping[str, str] | None = None, cwd: str | None = None, shell: str = "sh",
              rows: int = 40, cols: int = 120,
              on_started: Callable[[HostFacts], None] | None = None) -> RemoteProcess:
        """Start ``script`` on ``target`` and return at once; connecting happens in the background.

        The argv is :func:`runbook_tui.process.shell_argv`'s, as for a local command. ``env`` is
        what the runbook injects (values and secrets); the host keeps its own PATH and HOME.
        ``on_started(facts)`` is called once the session is open. A host that cannot run the
        command ends the process with neither exit code nor signal and :attr:`RemoteProcess.error`
        saying why; :meth:`RemoteProcess.wait` does not raise for it.
        """
        payload = encode_payload(shell_argv(script, shell), env, cwd)  # bad names fail here, in the caller
        process = RemoteProcess(self, target, on_output)
        asyncio.run_coroutine_threadsafe(process._run(payload, rows, cols, on_started), self._loop)
        return process

    def close(self, timeout: float = 5.0) -> None:
        """Close every connection and stop the loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self.call(self._close_all(), timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    # -- on the loop ----------------------------------------------------------------------------

    async def _close_all(self) -> None:
        tasks = list(self._connections.values())
        self._connections.clear()
        for task in tasks:
            if not task.done():
                task.cancel()
                continue
            if task.exception() is None:
                task.result().conn.close()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                try:
                    await asyncio.wait_for(task.result().conn.wait_closed(), 2.0)
                except (asyncio.TimeoutError, OSError, asyncssh.Error):
                    pass

    async def _connection(self, target: SshTarget) -> _Connection:
        """The live connection to ``target``; concurrent callers share one connection attempt."""
        task = self._connections.get(target)
        if task is not None and task.done():
            failed = task.cancelled() or task.exception() is not None
            if failed or task.result().client.closed:
                task = None  # a failed or dropped connection is retried by the next command
        if task is None:
            task = asyncio.ensure_future(self._open(target))
            self._connections[target] = task
        return await asyncio.shield(task)

    def _forget(self, target: SshTarget, connection: _Connection) -> None:
        task = self._connections.get(target)
        if task is not None and task.done() and not task.cancelled() and task.exception() is None \
                and task.result() is connection:
            del self._connections[target]
        connection.conn.abort()

    async def _open(self, target: SshTarget) -> _Connection:
        options = self.options
        client = _Client(options)
        kwargs: dict[str, Any] = {
            "client_factory": lambda: client,
            "keepalive_interval": options.keepalive_interval,
            "keepalive_count_max": options.keepalive_count,
            "connect_timeout": options.connect_timeout,
            "encryption_algs": list(_CIPHERS),
        }
        if options.known_hosts:
            kwargs["known_hosts"] = options.known_hosts
        if options.config is not None:
            kwargs["config"] = list(options.config)
        if target.port is not None:
            kwargs["port"] = target.port
        if target.user is not None:
            kwargs["username"] = target.user
        who = _describe_target(target)
        try:
            conn = await asyncssh.connect(target.address or target.name, **kwargs)
        except asyncssh.HostKeyNotVerifiable as exc:
            if client.problem is not None:
                raise HostKeyError(f"{target.name}: {client.problem}", client.problem.fingerprint) from None
            raise SshError(f"{who}: host key rejected: {exc}") from None
        except asyncssh.PermissionDenied:
            user = target.user or "the configured user"
            raise SshError(f"{who}: authentication failed as {user}: the host accepted none of the keys "
                           f"from ssh-agent or the identity files (IdentityFile in ~/.ssh/config, "
                           f"~/.ssh/id_*)") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise SshError(f"{who}: no SSH answer within {options.connect_timeout:g}s "
                           f"(host down, firewalled, or hung)") from None
        except ConnectionRefusedError:
            raise SshError(f"{who}: connection refused (no sshd listening on that port?)") from None
        except asyncssh.Error as exc:
            raise SshError(f"{who}: SSH connection failed: {exc.reason}") from None
        except OSError as exc:
            raise SshError(f"{who}: cannot connect: {exc.strerror or exc}") from None
        key = conn.get_server_host_key()
        # Through a ProxyJump there is no socket of ours: the address is the HostName the jump host dialled.
        peer = conn.get_extra_info("peername") or ("", 0)
        if not peer[0]:
            peer = (conn.get_extra_info("host"), conn.get_extra_info("port"))
        facts = HostFacts(
            host=target.name,
            address=str(peer[0] or ""),
            port=int(peer[1] or 0),
            user=str(conn.get_extra_info("username") or target.user or ""),
            host_key=key.get_algorithm() if key else "",
            fingerprint=key.get_fingerprint("sha256") if key else "",
            accepted_new_key=client.accepted_new_key,
        )
        return _Connection(conn, client, facts)


def host_starter(pool: SshPool, hosts: Sequence[Host], script: str, *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, shell: str = "sh",
                 ) -> Callable[[str, Callable[[str], None], Callable[[Mapping[str, object]], None]], RemoteProcess]:
    """The ``start`` :func:`runbook_tui.batches.run_on_hosts` needs: ``script`` on the named host."""
    targets = {host.name: SshTarget.from_host(host) for host in hosts}

    def start(name: str, on_output: Callable[[str], None],
              on_started: Callable[[Mapping[str, object]], None]) -> RemoteProcess:
        return pool.spawn(targets[name], script, on_output=on_output, env=env, cwd=cwd, shell=shell,
                          on_started=lambda facts: on_started(facts.as_dict()))

    return start


class RemoteProcess:
    """One command on one host over a shared SSH connection: a :class:`runbook_tui.process.Process`.

    Made by :meth:`SshPool.spawn`. ``facts`` is set once the session is open; ``error`` when the
    host could not run or finish the command (refused, host key, authentication, keepalive).
    """

    def __init__(self, pool: SshPool, target: SshTarget, on_output: Callable[[str], None]) -> None:
        """Private: use :meth:`SshPool.spawn`."""
        self.target = target
        self.facts: HostFacts | None = None
        self.error: str | None = None
        self._pool = pool
        self._on_output = on_output
        self._output_error: BaseException | None = None
        self._process: asyncssh.SSHClientProcess[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()  # the loop's view of _done (asyncio.Event binds to a loop on first use)
        self._aborted = False
        self._status: ExitStatus | None = None
        self._done = threading.Event()
        self._started = time.monotonic()

    # -- Process ---------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Block until the command ended and its output was delivered; None if ``timeout`` ran out.

        Re-raises an exception raised by ``on_output`` (with a ``timeout`` as soon as it is known,
        as `Process.wait` says); a host failure is not raised (see ``error``).
        """
        if threading.current_thread() is self._pool._thread:
            raise RuntimeError("wait() must not be called from on_output")
        if not self._done.wait(timeout):
            if self._output_error is not None:
                raise self._output_error
            return None
        if self._output_error is not None:
            raise self._output_error
        return self._status

    def abort(self, grace: float = GRACE) -> None:
        """^C (SIGINT to the foreground group), then SIGTERM, then SIGKILL + hang-up, ``grace`` apart."""
        if self._done.is_set():
            return
        future = asyncio.run_coroutine_threadsafe(self._abort(grace), self._pool._loop)
        if threading.current_thread() is not self._pool._thread:
            try:
                future.result(5 * grace)
            except concurrent.futures.TimeoutError:
                pass

    def write(self, data: str) -> None:
        """Send ``data`` to the command's terminal (answering a prompt)."""
        self._pool._loop.call_soon_threadsafe(self._write, data.encode())

    def resize(self, rows: int, cols: int) -> None:
        def change() -> None:
            if self._process is not None:
                try:
                    self._process.change_terminal_size(cols, rows)
                except (OSError, asyncssh.Error):
                    pass  # finishing: the size does not matter then
        self._pool._loop.call_soon_threadsafe(change)

    # -- on the loop -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._process is not None and not self._done.is_set():
            try:
                self._process.stdin.write(data)
            except (OSError, asyncssh.Error, BrokenPipeError):
                pass

    def _emit(self, text: str) -> None:
        if not text or self._output_error is not None:
            return
        try:
            self._on_output(text)
        except BaseException as exc:  # keep draining, or the remote command would block on a full window
            self._output_error = exc

    async def _run(self, payload: bytes, rows: int, cols: int,
                   on_started: Callable[[HostFacts], None] | None) -> None:
        self._task = asyncio.current_task()  # type: ignore[assignment]
        code: int | None = None
        sig: int | None = None
        connection: _Connection | None = None
        try:
            if self._aborted:  # abort() came before this coroutine even started
                raise asyncio.CancelledError
            connection = await self._pool._connection(self.target)
            self.facts = connection.facts
            process = await connection.conn.create_process(
                REMOTE_COMMAND, term_type=DEFAULT_TERM, term_size=(cols, rows), term_modes=_RAW_MODES,
                encoding=None)
            self._started = time.monotonic()
            self._process = process
            if self._aborted:  # aborted while the session was being opened: run nothing
                process.close()
                raise asyncio.CancelledError
            if on_started is not None:
                try:
                    on_started(connection.facts)
                except BaseException as exc:
                    self._output_error = exc
            process.stdin.write(payload)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while data := await process.stdout.read(_CHUNK):
                self._emit(decoder.decode(data))
            self._emit(decoder.decode(b"", final=True))
            await process.wait_closed()
            exit_signal = process.exit_signal
            if exit_signal:
                sig = _signal_number(exit_signal[0])
            elif process.exit_status is not None:
                code = process.exit_status
            if code is None and sig is None:
                self.error = self._lost_reason(connection)
        except asyncio.CancelledError:
            if self.error is None:
                self.error = f"{self.target.name}: aborted before the command started"
        except SshError as exc:
            self.error = str(exc)
        except (OSError, asyncssh.Error) as exc:
            self.error = self._lost_reason(connection, exc)
        finally:
            if self.error is not None and connection is not None and connection.client.closed:
                self._pool._forget(self.target, connection)
            self._status = ExitStatus(exit_code=code, signal=sig, duration=time.monotonic() - self._started,
                                      aborted=self._aborted)
            self._ended.set()
            self._done.set()

    def _lost_reason(self, connection: _Connection | None, exc: BaseException | None = None) -> str:
        """Why a session ended without an exit status: usually the connection went away."""
        lost = connection.client.lost if connection is not None else None
        cause = lost or exc
        text = getattr(cause, "reason", None) or (str(cause) if cause else "")
        if "keepalive" in text:
            opts = self._pool.options
            text = (f"host stopped responding: no answer to {opts.keepalive_count} keepalives "
                    f"{opts.keepalive_interval:g}s apart")
        elif not text:
            text = "the session closed without an exit status"
        return f"{self.target.name}: {text}; the command's state on the host is unknown"

    async def _abort(self, grace: float) -> None:
        if self._done.is_set():
            return
        self._aborted = True
        process = self._process
        if process is None:
            if self._task is not None:
                self._task.cancel()  # still connecting: nothing runs on the host yet
            return
        steps: list[Callable[[], None]] = [
            lambda: process.stdin.write(_CTRL_C),
            lambda: process.send_signal("TERM"),
            lambda: (process.send_signal("KILL"), process.close()),
        ]
        for step in steps:
            try:
                step()
            except (OSError, asyncssh.Error, BrokenPipeError):
                pass
            try:
                await asyncio.wait_for(self._ended.wait(), grace)
                return
            except asyncio.TimeoutError:
                continue
        # Nothing took (the host is gone): give up on this session and say so.
        if self._task is not None and not self._done.is_set():
            self.error = (f"{self.target.name}: did not confirm the end of the command after "
                          f"SIGINT, SIGTERM and SIGKILL; its state on the host is unknown")
            self._task.cancel()
