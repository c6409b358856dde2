"""Docker engine integration (docker SDK): watched containers' logs, status, and `docker exec` tasks.

- :func:`connect` finds the engine the way the docker CLI does (``DOCKER_HOST``, then
  ``DOCKER_CONTEXT`` / the current context in ``~/.docker/config.json``, then the default socket)
  and says why when it cannot be reached (:class:`DockerUnavailable`).
- :func:`find_container` resolves a runbook's ``watch: [{docker: web}]`` / ``container=web``: an
  exact container name (or id), else the newest container of compose service ``web``, running
  ones first.
- :class:`LogFollower` follows a watched container's log on its own thread and re-attaches by
  itself when the container is recreated (``docker compose up -d``) or restarted, and keeps
  retrying, saying why, while the engine is unreachable.
- :class:`ContainerProcess` / :func:`exec_in_container` run a task's script through
  ``docker exec`` on a TTY, shaped like the local PTY runner (same ``ExitStatus``,
  same abort escalation SIGINT, SIGTERM, SIGKILL, no orphan left behind).

Secrets reach an exec only as its environment variables; no value of ``env`` is ever logged or
put into a message. This module must never import Textual.
"""

from __future__ import annotations

import codecs
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import CancellableStream

from runbook_tui.process import DEFAULT_TERM, GRACE, ExitStatus, shell_argv, supervise

__all__ = [
    "COMPOSE_SERVICE_LABEL",
    "ContainerNotFound",
    "ContainerNotRunning",
    "ContainerProcess",
    "DockerError",
    "DockerUnavailable",
    "LogFollower",
    "connect",
    "container_status",
    "describe_target",
    "engine_url",
    "exec_in_container",
    "find_container",
]

COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
DEFAULT_URL = "unix:///var/run/docker.sock"
# The environment variable that tags every process of one exec, so abort/cleanup can find them
# from inside the container (the engine only knows the exec's host pid, not its container pid).
EXEC_MARKER = "RUNBOOK_TUI_EXEC"
_CHUNK = 64 * 1024
_POLL = 0.05
_URL_ATTR = "_runbook_tui_url"
_ZERO_TIME = "0001-01-01T00:00:00Z"
_FOLLOWER_TIMEOUT = 15.0  # API calls of a follower's own client (a log stream itself has none)
_MAX_LINE = 64 * 1024  # a "line" without a newline (a progress bar) is delivered at this size

# Runs inside the container with `sh`: signal every process whose environment carries the marker
# (the exec's shell and everything it started, background jobs included); prints their pids.
# They are all stopped first, so none can react (a shell reaping its child and moving on)
# before every one of them got the signal: as close to the local runner's killpg as it gets.
# `grep -z`: environ is NUL-separated (busybox and GNU grep both have it).
_SIGNAL_SCRIPT = r"""
sig=$1; tag=$2; me=$$; pids=
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$me" ] && continue
  grep -qszxF "$tag" "$d/environ" 2>/dev/null && pids="$pids $p"
done
[ -n "$pids" ] || exit 0
kill -s STOP $pids 2>/dev/null
kill -s "$sig" $pids 2>/dev/null
kill -s CONT $pids 2>/dev/null
echo $pids
"""


class DockerError(Exception):
    """Something about the docker engine or a container stops the operation; the message says what."""


class DockerUnavailable(DockerError):
    """The docker engine cannot be reached (not running, wrong DOCKER_HOST, no permission...)."""


class ContainerNotFound(DockerError, LookupError):
    """No container by that name and none of that compose service."""


class ContainerNotRunning(DockerError):
    """The container exists but is not running, so nothing can be executed in it."""


# ---- connecting --------------------------------------------------------------------------------

def _reason(exc: BaseException) -> str:
    """The most useful short explanation inside an exception chain (an OSError's strerror if any)."""
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException):
                queue.append(arg)
            elif isinstance(arg, tuple):
                queue.extend(a for a in arg if isinstance(a, BaseException))
        for attr in ("reason", "__cause__", "__context__"):
            nested = getattr(current, attr, None)
            if isinstance(nested, BaseException):
                queue.append(nested)
    return str(exc) or type(exc).__name__


def _context_endpoint() -> tuple[str | None, Any]:
    """Host and TLS config of the docker context in use (DOCKER_CONTEXT, else config.json)."""
    name = os.environ.get("DOCKER_CONTEXT")
    if not name:
        from docker.context.config import get_current_context_name

        name = get_current_context_name()
    if not name or name == "default":
        return None, None
    from docker.context import ContextAPI

    try:
        context = ContextAPI.get_context(name)
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(f"docker context '{name}' cannot be loaded: {_reason(exc)}") from exc
    if context is None:
        raise DockerUnavailable(f"docker context '{name}' does not exist (docker context ls)")
    return context.Host, context.TLSConfig


def connect(base_url: str | None = None, *, timeout: float | None = None) -> docker.DockerClient:
    """A client for the engine at ``base_url``, else the one the docker CLI would use.

    Order: ``base_url``; ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``, via
    ``docker.from_env``); the context named by ``DOCKER_CONTEXT`` or ``currentContext`` in the
    docker config; the default socket. The engine is pinged: :class:`DockerUnavailable` says
    which address failed and why.
    """
    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["timeout"] = timeout
    url = base_url
    try:
        if base_url is not None:
            client = docker.DockerClient(base_url=base_url, **kwargs)
        elif os.environ.get("DOCKER_HOST"):
            url = os.environ["DOCKER_HOST"]
            client = docker.from_env(**kwargs)
        else:
            host, tls = _context_endpoint()
            if host is not None:
                url = host.removeprefix("http+") if host.startswith("http+unix://") else host
                client = docker.DockerClient(base_url=host, tls=tls or False, **kwargs)
            else:
                url = DEFAULT_URL
                client = docker.from_env(**kwargs)
        client.ping()
    except DockerUnavailable:
        raise
    except Exception as exc:  # DockerException, requests' ConnectionError, OSError...
        raise DockerUnavailable(f"docker engine unreachable at {url}: {_reason(exc)}") from exc
    setattr(client, _URL_ATTR, url)
    return client


def _failure(url: str, exc: BaseException) -> str:
    """'unreachable at X: why' for a connection problem; 'at X failed: why' when the engine answered."""
    if isinstance(exc, DockerUnavailable):
        return str(exc)
    if isinstance(exc, docker.errors.APIError):
        return f"docker engine at {url} failed: {_reason(exc)}"
    return f"docker engine unreachable at {url}: {_reason(exc)}"


def engine_url(client: docker.DockerClient) -> str:
    """The address a client talks to, as the operator would write it (for messages)."""
    return getattr(client, _URL_ATTR, None) or str(client.api.base_url)


# ---- finding containers ------------------------------------------------------------------------

def _parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times (nanoseconds, trailing zeros trimmed) -> aware datetime; None for zero."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _created(container: Container) -> datetime:
    return _parse_time(container.attrs.get("Created")) or datetime.min.replace(tzinfo=timezone.utc)


def _state(container: Container) -> dict[str, Any]:
    state = container.attrs.get("State")
    return state if isinstance(state, dict) else {"Status": state or "unknown"}


def _short(container: Container) -> str:
    return container.id[:12]


def find_container(client: docker.DockerClient, target: str) -> Container | None:
    """The container named ``target`` (or with that id), else the best of compose service ``target``.

    Among a service's containers a running one wins, then the newest: during a recreate the old
    and the new container can both exist for a moment.
    """
    try:
        container = client.containers.get(target)
    except docker.errors.NotFound:
        container = None
    except docker.errors.APIError as exc:
        if exc.status_code not in (400, 404):  # an ambiguous id prefix is "not this one" too
            raise
        container = None
    # The engine also matches any id *prefix*: service `db` must not pick a container whose id
    # happens to start with "db". Ids count only from the 12 characters docker ps shows.
    if container is not None and (
        container.name == target or (len(target) >= 12 and container.id.startswith(target))
    ):
        return container
    candidates = client.containers.list(all=True, filters={"label": f"{COMPOSE_SERVICE_LABEL}={target}"},
                                        ignore_removed=True)
    if not candidates:
        return None
    return max(candidates, key=lambda c: (_state(c).get("Running", False), _created(c)))


def _image_name(container: Container) -> str:
    config = container.attrs.get("Config") or {}
    return config.get("Image") or container.attrs.get("Image", "")[:19]


def describe_target(client: docker.DockerClient, target: str) -> dict[str, str]:
    """What ``command.started`` records for a container task: name, short id, image."""
    container = find_container(client, target)
    if container is None:
        raise ContainerNotFound(_not_found(target))
    return {"container": container.name, "id": _short(container), "image": _image_name(container)}


def _not_found(target: str) -> str:
    return f"no container named '{target}' and none with label {COMPOSE_SERVICE_LABEL}={target}"


def container_status(client: docker.DockerClient, target: str) -> dict[str, Any]:
    """One watched container for the status line; never raises for a missing container or engine.

    Keys: ``target``, ``name``, ``id`` (short), ``image``, ``state`` (running, exited, paused,
    restarting, created, dead, or ``missing`` / ``unreachable`` / ``error``), ``health`` (healthy, unhealthy,
    starting, or None without a healthcheck), ``exit_code`` (when not running), ``started_at``,
    ``error`` (why, when the container is not there or the engine did not answer).
    """
    status: dict[str, Any] = {"target": target, "name": None, "id": None, "image": None, "state": "missing",
                              "health": None, "exit_code": None, "started_at": None, "error": None}
    try:
        container = find_container(client, target)
    except Exception as exc:
        status.update(state="error" if isinstance(exc, docker.errors.APIError) else "unreachable",
                      error=_failure(engine_url(client), exc))
        return status
    if container is None:
        status["error"] = _not_found(target)
        return status
    state = _state(container)
    health = state.get("Health") or {}
    running = bool(state.get("Running"))
    status.update(
        name=container.name, id=_short(container), image=_image_name(container),
        state=state.get("Status", "unknown"), health=health.get("Status"),
        exit_code=None if running else state.get("ExitCode"), started_at=state.get("StartedAt"),
    )
    return status


# ---- following logs ----------------------------------------------------------------------------

def _open_log_stream(client: docker.DockerClient, container: Container, *, tail: int | str = "all",
                     since: float | None = None) -> Any:
    """A closable iterator over a container's log (follow), yielding bytes.

    ``APIClient.logs`` is used as is for ordinary containers. For a TTY container it would yield
    one character per item, so that stream is opened here with the chunk size the daemon sends.
    """
    if not (container.attrs.get("Config") or {}).get("Tty"):
        return client.api.logs(container.id, stream=True, follow=True, stdout=True, stderr=True,
                                timestamps=False, tail=tail, since=since)
    api = client.api
    params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": 1, "timestamps": 0, "tail": tail}
    if since is not None:
        params["since"] = since
    response = api._get(api._url("/containers/{0}/logs", container.id), params=params, stream=True)
    api._raise_for_status(response)
    api._disable_socket_timeout(api._get_raw_response_socket(response))
    return CancellableStream(response.iter_content(chunk_size=None), response)


class LogFollower:
    """Follows the log of the container ``target`` names, across recreations and engine outages.

    ``on_line(text)`` gets each log line without its line ending; ``on_status(message)`` gets
    what an operator should know: attached, re-attached, the container stopped, the engine is
    unreachable (and why), reachable again. **Both run on the follower's own thread** (named
    ``docker-logs-<target>``), one at a time, in order: a UI must hand them to its own thread and
    return quickly. An exception raised by a callback is reported through ``on_status`` (if that
    fails too it is dropped); it never ends the follower.

    It starts with the last ``tail`` lines. When the stream ends it polls every ``poll`` seconds
    for the container to come back: a *new* container of the same name or compose service
    (``docker compose up -d``) is attached with its last ``tail`` lines and reported as
    ``re-attached to <name> (<short id>)``; the same container restarted is attached from the
    moment it stopped, so nothing is shown twice. While the engine cannot be reached it retries
    with exponential backoff (``backoff`` up to ``max_backoff`` seconds). :meth:`stop` closes the
    log stream and returns promptly.
    """

    def __init__(
        self,
        target: str,
        *,
        on_line: Callable[[str], None],
        on_status: Callable[[str], None],
        client: docker.DockerClient | None = None,
        base_url: str | None = None,
        tail: int = 100,
        poll: float = 0.5,
        backoff: float = 0.5,
        max_backoff: float = 15.0,
    ) -> None:
        self.target = target
        self.tail = tail
        self.poll = poll
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._on_line = on_line
        self._on_status = on_status
        self._client = client
        self._base_url = base_url
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name=f"docker-logs-{target}", daemon=True)
        self.container_name: str | None = None  # what it follows now (for a tab title)
        self.container_id: str | None = None

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End following: close the stream, wake the thread, and join it (unless called from it)."""
        self._stopped.set()
        self._close_stream()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> LogFollower:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- callbacks --------------------------------------------------------------------------

    def _status(self, message: str) -> None:
        try:
            self._on_status(message)
        except Exception:
            pass  # a broken status callback must not end the follower

    def _line(self, text: str) -> None:
        try:
            self._on_line(text)
        except Exception as exc:
            self._status(f"log line handler failed: {type(exc).__name__}: {exc}")

    # -- the thread -------------------------------------------------------------------------

    def _url(self) -> str:
        if self._client is not None:
            return engine_url(self._client)
        return self._base_url or os.environ.get("DOCKER_HOST") or "the docker engine"

    def _run(self) -> None:
        delay = self.backoff  # while the engine is unreachable
        stream_delay = self.backoff  # while a container's log cannot be read (e.g. log driver "none")
        unreachable = False
        waiting_said: str | None = None
        failed_on: str | None = None  # the container whose log just failed: say so once, not every poll
        seen: dict[str, Any] | None = None  # id and StartedAt of the container last followed
        first = True
        while not self._stopped.is_set():
            if not first and self._stopped.wait(self.poll):
                break
            first = False
            try:
                if self._client is None:
                    self._client = connect(self._base_url, timeout=_FOLLOWER_TIMEOUT)
                client = self._client
                container = find_container(client, self.target)
                plan = self._plan(container, seen)
            except Exception as exc:
                self._status(f"{_failure(self._url(), exc)}; retrying in {delay:g}s")
                unreachable = True
                if self._stopped.wait(delay):
                    break
                delay = min(delay * 2, self.max_backoff)
                first = True  # the backoff was the wait
                continue
            if unreachable:
                self._status(f"docker engine reachable again at {self._url()}")
                unreachable = False
            delay = self.backoff
            if plan is None:
                note = self._waiting_note(container, seen)
                if note != waiting_said:
                    self._status(note)
                    waiting_said = note
                continue
            assert container is not None
            waiting_said = None
            kwargs, verb = plan
            self.container_name, self.container_id = container.name, _short(container)
            if failed_on != container.id:
                self._status(f"{verb} {container.name} ({_short(container)})")
            seen = {"id": container.id, "started": _state(container).get("StartedAt")}
            try:
                self._follow(client, container, kwargs)
            except Exception as exc:
                if self._stopped.is_set():
                    break
                if failed_on != container.id:
                    self._status(f"cannot follow the log of {container.name}: {_reason(exc)}; "
                                 f"retrying in the background")
                failed_on = container.id
                if self._stopped.wait(stream_delay):
                    break
                stream_delay = min(stream_delay * 2, self.max_backoff)
            else:
                failed_on, stream_delay = None, self.backoff

    def _plan(self, container: Container | None, seen: dict[str, Any] | None) -> tuple[dict[str, Any], str] | None:
        """How to attach to ``container`` now (logs() arguments and the verb to report), or None to wait."""
        if container is None:
            return None
        state = _state(container)
        started = state.get("StartedAt")
        if seen is None:
            return {"tail": self.tail}, "attached to"
        never_started = not started or started == _ZERO_TIME
        if container.id != seen["id"]:
            if never_started:  # created, not started yet: wait until it runs
                return None
            return {"tail": self.tail}, "re-attached to"
        if not state.get("Running"):
            return None  # the container we followed is stopped; wait for it or a new one
        if started != seen["started"]:  # restarted: only what it printed since it stopped
            finished = _parse_time(state.get("FinishedAt"))
            if finished is not None:
                return {"since": finished.timestamp(), "tail": "all"}, "re-attached to"
            return {"tail": self.tail}, "re-attached to"
        return {"tail": 0}, "re-attached to"  # the stream dropped while it kept running

    def _waiting_note(self, container: Container | None, seen: dict[str, Any] | None) -> str:
        if container is None:
            return f"waiting for container {self.target} ({_not_found(self.target)})"
        state = _state(container)
        status = state.get("Status", "unknown")
        if status == "exited":
            status = f"exited with code {state.get('ExitCode')}"
        return f"{container.name} ({_short(container)}) {status}; waiting for it to run again"

    def _follow(self, client: docker.DockerClient, container: Container, kwargs: dict[str, Any]) -> None:
        stream = _open_log_stream(client, container, **kwargs)
        with self._lock:
            self._stream = stream
        if self._stopped.is_set():
            self._close_stream()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts: list[str] = []  # the current line so far
        size = 0
        try:
            for chunk in stream:
                if self._stopped.is_set():
                    return
                text = decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
                if "\n" in text:
                    *lines, rest = text.split("\n")
                    for line in lines:
                        parts.append(line)
                        self._line("".join(parts).removesuffix("\r"))
                        parts, size = [], 0
                    text = rest
                if text:
                    parts.append(text)
                    size += len(text)
                    if size >= _MAX_LINE:  # a progress bar without newlines: deliver what there is
                        self._line("".join(parts))
                        parts, size = [], 0
            parts.append(decoder.decode(b"", final=True))
            if any(parts) and not self._stopped.is_set():
                self._line("".join(parts).removesuffix("\r"))
        finally:
            self._close_stream()

    def _close_stream(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass


# ---- docker exec -------------------------------------------------------------------------------

def _raw_reader(sock: Any) -> tuple[Callable[[], bytes], Callable[[], None]]:
    """(read a chunk, interrupt) for an exec's hijacked connection.

    Reads through the HTTP response's buffered reader when it is there: bytes the daemon sent
    right after its 101 response may already sit in that buffer, and reading the socket
    underneath would lose them.
    """
    response = getattr(sock, "_response", None)
    buffered = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    raw_socket = getattr(sock, "_sock", None)
    if isinstance(raw_socket, socket.socket):
        raw_socket.settimeout(None)  # the client's request timeout must not end a quiet command
    if buffered is not None and hasattr(buffered, "read1"):
        def read() -> bytes:
            return buffered.read1(_CHUNK)
    elif hasattr(sock, "recv"):
        def read() -> bytes:
            return sock.recv(_CHUNK)
    else:
        def read() -> bytes:
            return sock.read(_CHUNK)

    def interrupt() -> None:
        target = raw_socket if isinstance(raw_socket, socket.socket) else sock
        try:
            target.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass

    return read, interrupt


class ContainerProcess:
    """A script run by ``docker exec`` on a TTY, shaped like :class:`runbook_tui.engine.runner.PtyProcess`.

    A supervisor thread reads the exec's output and calls ``on_output`` (always from that
    thread, in order) with text decoded by an incremental UTF-8 decoder; escape sequences pass
    untouched. Once the stream ends it fetches the exit code with ``exec_inspect`` and, as the
    local runner does, kills whatever the script left running in the container.

    Every process of the exec carries ``RUNBOOK_TUI_EXEC=<random token>`` in its environment:
    the engine cannot signal an exec, so :meth:`abort` runs a second exec that stops, signals and
    continues exactly the processes carrying the token (this needs ``sh``, ``grep -z`` and
    ``kill`` in the image: busybox, alpine and debian-based images have them). If nothing can
    be signalled, :meth:`abort` stops waiting after ``4 * grace`` and the status carries neither
    exit code nor signal.
    """

    def __init__(self, client: docker.DockerClient, container: Container, exec_id: str, token: str,
                 user: str | None, sock: Any, on_output: Callable[[str], None], started: float) -> None:
        """Private: use :meth:`spawn`."""
        self.client = client
        self.container_name: str = container.name
        self.container_id: str = _short(container)
        self.image: str = _image_name(container)
        self.exec_id = exec_id
        self._container_full_id = container.id
        self._token = token
        self._user = user
        self._sock = sock
        self._read, self._interrupt = _raw_reader(sock)
        self._on_output = on_output
        self._started = started
        self._lock = threading.Lock()
        self._aborted = False
        self._exited = False
        self._signals: set[int] = set()
        self._error: BaseException | None = None
        self._status: ExitStatus | None = None
        self._done = threading.Event()
        self._give_up = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=f"docker-exec-{exec_id[:12]}", daemon=True)
        self._thread.start()

    @classmethod
    def spawn(
        cls,
        client: docker.DockerClient,
        target: str,
        script: str,
        *,
        on_output: Callable[[str], None],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        shell: str = "sh",
        user: str | None = None,
        rows: int = 40,
        cols: int = 120,
    ) -> ContainerProcess:
        """Start ``[shell, "-c", script]`` in the running container ``target`` names.

        The argv is :func:`runbook_tui.process.shell_argv`'s, as for a local command: a
        multi-line script gets ``-e`` and a bash-like shell ``-o pipefail``, so a script fails the
        same way in a container as on the operator's machine.

        ``env`` is what the runbook injects (its variables, secrets, the task's ``env``), *not*
        the operator's environment: the container keeps its own PATH and HOME. ``TERM``
        defaults to ``xterm-256color``. ``cwd`` None means the container's working directory.
        Raises :class:`ContainerNotFound`, :class:`ContainerNotRunning`, :class:`DockerUnavailable`
        or :class:`DockerError`; the messages never contain a value of ``env``.
        """
        try:
            container = find_container(client, target)
        except docker.errors.APIError as exc:
            raise DockerError(_failure(engine_url(client), exc)) from exc
        except Exception as exc:
            raise DockerUnavailable(_failure(engine_url(client), exc)) from exc
        if container is None:
            raise ContainerNotFound(_not_found(target))
        state = _state(container)
        if not state.get("Running") or state.get("Paused"):
            raise ContainerNotRunning(f"container {container.name} ({_short(container)}) is "
                                      f"{state.get('Status', 'not running')}")
        token = uuid.uuid4().hex
        environment = dict(env or {})
        environment.setdefault("TERM", DEFAULT_TERM)
        environment[EXEC_MARKER] = token
        try:
            created = client.api.exec_create(container.id, shell_argv(script, shell), stdout=True, stderr=True,
                                              stdin=False, tty=True, environment=environment,
                                              workdir=cwd or None, user=user or "")
            started = time.monotonic()
            sock = client.api.exec_start(created["Id"], tty=True, socket=True)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise ContainerNotRunning(f"container {container.name} ({_short(container)}): {_reason(exc)}") from exc
            raise DockerError(f"docker exec in {container.name} failed: {_reason(exc)}") from exc
        except Exception as exc:
            raise DockerUnavailable(f"docker engine unreachable at {engine_url(client)}: {_reason(exc)}") from exc
        process = cls(client, container, created["Id"], token, user, sock, on_output, started)
        process.resize(rows, cols)
        return process

    def describe(self) -> dict[str, str]:
        """What ``command.started`` records: container name, short id, image."""
        return {"container": self.container_name, "id": self.container_id, "image": self.image}

    # -- public API, as PtyProcess --------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Block until the exec ended and its output was read; None if ``timeout`` ran out.

        Re-raises an exception raised by ``on_output``: with a ``timeout`` as soon as it is known,
        while the command may still run (its output is no longer passed on, so a supervisor must
        stop it: `supervise` does), without one once it ended, or :class:`DockerUnavailable` when the
        engine went away before the exit code could be read.
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
        """SIGINT, then SIGTERM, then SIGKILL to every process of the exec, ``grace`` seconds apart."""
        if threading.current_thread() is self._thread:
            threading.Thread(target=self.abort, args=(grace,), daemon=True).start()
            return
        with self._lock:
            if self._exited or self._done.is_set():
                return
            self._aborted = True
        for sig in ("INT", "TERM", "KILL"):
            self._signal(sig)
            if self._done.wait(grace):
                return
        # Nothing took (no sh/grep in the image, or a process that escaped): stop reading and
        # waiting rather than hang; the status then has neither exit code nor signal.
        self._give_up.set()
        self._interrupt()
        self._done.wait(grace)

    def resize(self, rows: int, cols: int) -> None:
        try:
            self.client.api.exec_resize(self.exec_id, height=rows, width=cols)
        except Exception:
            pass  # finishing, or an engine without resize: the size does not matter then

    # -- signalling from inside the container -----------------------------------------------

    def _signal(self, sig: str) -> list[int]:
        """Send ``sig`` to the exec's processes; returns the container pids it reached."""
        with self._lock:
            self._signals.add(int(getattr(signal, "SIG" + sig)))
        try:
            created = self.client.api.exec_create(
                self._container_full_id, ["sh", "-c", _SIGNAL_SCRIPT, "runbook-tui-signal", sig,
                                          f"{EXEC_MARKER}={self._token}"],
                stdout=True, stderr=False, tty=False, user=self._user or "")
            output = self.client.api.exec_start(created["Id"], tty=False)
        except Exception:
            return []  # container gone or engine unreachable: nothing we can signal
        text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
        return [int(p) for p in text.split() if p.isdigit()]

    # -- supervisor thread ------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        if not text or self._error is not None:
            return
        try:
            self._on_output(text)
        except BaseException as exc:  # keep draining, or the exec would block on a full pipe
            self._error = exc

    def _inspect_exit(self) -> dict[str, Any]:
        """exec_inspect until the exec is no longer running (the stream can end before that)."""
        failures = 0
        while True:
            try:
                info = self.client.api.exec_inspect(self.exec_id)
                failures = 0
            except docker.errors.NotFound:
                return {"Running": False, "ExitCode": None}  # the container was removed
            except Exception as exc:
                failures += 1
                if failures >= 20:
                    raise DockerUnavailable(
                        f"lost the docker engine at {engine_url(self.client)} while waiting for the exit "
                        f"code in {self.container_name} ({_reason(exc)}); the command may still be running"
                    ) from exc
                if self._give_up.wait(0.25):
                    return {"Running": False, "ExitCode": None}
                continue
            if not info.get("Running") or self._give_up.is_set():
                return info
            self._give_up.wait(_POLL)

    def _supervise(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        ended = None
        code: int | None = None
        try:
            while True:
                try:
                    data = self._read()
                except (OSError, ValueError):
                    data = b""
                if not data:
                    break
                self._emit(decoder.decode(data))
            self._emit(decoder.decode(b"", final=True))
            info = self._inspect_exit()
            ended = time.monotonic()
            with self._lock:
                self._exited = True
            code = info.get("ExitCode")
            self._signal("KILL")  # no orphan survives the command (background jobs, `setsid` aside)
        except BaseException as exc:
            if self._error is None:
                self._error = exc
        finally:
            try:
                self._sock.close()
            except Exception:
                pass
            response = getattr(self._sock, "_response", None)
            if response is not None:
                try:
                    response.close()
                except Exception:
                    pass
            if ended is None:
                ended = time.monotonic()
            with self._lock:
                aborted = self._aborted
                signals = set(self._signals)
            sig = None
            if aborted and code is not None and code > 128 and code - 128 in signals:
                code, sig = None, code - 128  # the engine reports a signal death as 128 + n
            self._status = ExitStatus(exit_code=code, signal=sig, duration=ended - self._started, aborted=aborted)
            self._done.set()


def exec_in_container(
    client: docker.DockerClient,
    target: str,
    script: str,
    *,
    on_output: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    shell: str = "sh",
    user: str | None = None,
    timeout: float | None = None,
    abort_event: threading.Event | None = None,
    rows: int = 40,
    cols: int = 120,
    grace: float = GRACE,
) -> ExitStatus:
    """Run ``script`` in ``target`` and wait, like :func:`runbook_tui.engine.runner.run_command`.

    On ``timeout`` the exec's processes get SIGINT, SIGTERM, SIGKILL (``grace`` apart) and the
    status says ``timed_out``; on ``abort_event`` the same, ``aborted``. If the caller itself is
    interrupted (KeyboardInterrupt) the exec is aborted too. Use :func:`describe_target` (or
    :meth:`ContainerProcess.describe`) for what to record about the container.
    """
    proc = ContainerProcess.spawn(client, target, script, on_output=on_output, env=env, cwd=cwd,
                                  shell=shell, user=user, rows=rows, cols=cols)
    return supervise(proc, timeout=timeout, grace=grace, should_abort=abort_event.is_set if abort_event else None)
