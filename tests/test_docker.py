"""The docker integration against a real, private Docker engine (tests/docker_engine.py); no mocks."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runbook_tui.integrations.docker import (
    COMPOSE_SERVICE_LABEL,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerProcess,
    DockerUnavailable,
    LogFollower,
    connect,
    container_status,
    describe_target,
    engine_url,
    exec_in_container,
    find_container,
)
from tests.docker_engine import DockerEngine

TICK = "i=0; while true; do echo {word} $i; i=$((i+1)); sleep 0.2; done"
BOGUS = "unix:///tmp/rbt-no-such-engine.sock"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str | Callable[[], str] = "condition") -> Any:
    """`what` may be a callable, to describe the state at the moment it timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")


class Recorder:
    """Collects a follower's callbacks (they arrive on the follower's thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, str]] = []  # (kind, text, thread name)

    def line(self, text: str) -> None:
        with self.lock:
            self.events.append(("line", text, threading.current_thread().name))

    def status(self, text: str) -> None:
        with self.lock:
            self.events.append(("status", text, threading.current_thread().name))

    def lines(self) -> list[str]:
        with self.lock:
            return [t for k, t, _ in self.events if k == "line"]

    def statuses(self) -> list[str]:
        with self.lock:
            return [t for k, t, _ in self.events if k == "status"]

    def index(self, kind: str, text: str) -> int:
        with self.lock:
            return next(i for i, (k, t, _) in enumerate(self.events) if k == kind and t == text)


@pytest.fixture
def engine(docker_engine: DockerEngine) -> DockerEngine:  # noqa: F811
    return docker_engine


@pytest.fixture
def box(engine: DockerEngine) -> Iterator[Any]:
    """A running container to exec into."""
    container = engine.run("sleep 600", name=engine.unique("box"))
    yield container
    engine.remove(container)


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Exceptions that escape any thread during the test."""
    errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    return errors


def ps(container: Any) -> str:
    return container.exec_run(["ps", "-o", "pid,args"]).output.decode()


# ---- finding ----------------------------------------------------------------------------------

def test_find_container_by_exact_name(engine: DockerEngine) -> None:
    name = engine.unique("api")
    container = engine.run("sleep 600", name=name)
    try:
        found = find_container(engine.client, name)
        assert found is not None and found.id == container.id
        assert find_container(engine.client, container.id[:12]).id == container.id
        assert find_container(engine.client, name[:-2]) is None  # a prefix of a name is not a name
        assert find_container(engine.client, container.id[:3]) is None  # nor is a short id prefix
        assert find_container(engine.client, engine.unique("nothing")) is None
        assert describe_target(engine.client, name) == {"container": name, "id": container.id[:12],
                                                        "image": engine.image}
        with pytest.raises(ContainerNotFound, match="no container named"):
            describe_target(engine.client, engine.unique("nothing"))
    finally:
        engine.remove(container)


def test_find_container_by_compose_service_prefers_running_then_newest(engine: DockerEngine) -> None:
    service = engine.unique("svc")
    labels = {COMPOSE_SERVICE_LABEL: service, "com.docker.compose.project": "demo"}
    running = engine.run("sleep 600", name=engine.unique("demo-svc-1"), labels=labels)
    stopped = engine.run("true", name=engine.unique("demo-svc-2"), labels=labels)  # newer, but exited
    try:
        wait_for(lambda: stopped.reload() or stopped.status == "exited", what="the second container to exit")
        assert find_container(engine.client, service).id == running.id
        engine.remove(running)
        assert find_container(engine.client, service).id == stopped.id  # no running one: the newest
    finally:
        engine.remove(running)
        engine.remove(stopped)


# ---- following logs ---------------------------------------------------------------------------

def test_log_follower_streams_lines_and_stops_promptly(engine: DockerEngine, thread_errors: list) -> None:
    name = engine.unique("ticker")
    container = engine.run(TICK.format(word="tick"), name=name)
    rec = Recorder()
    follower = LogFollower(name, client=engine.client, on_line=rec.line, on_status=rec.status, tail=100)
    try:
        follower.start()
        wait_for(lambda: "tick 3" in rec.lines(), what="tick 3")
        lines = rec.lines()
        assert lines[:4] == ["tick 0", "tick 1", "tick 2", "tick 3"]  # whole lines, in order, no "\n"
        assert rec.statuses()[0] == f"attached to {name} ({container.id[:12]})"
        assert {thread for _, _, thread in rec.events} == {f"docker-logs-{name}"}
        assert follower.container_name == name
        started = time.monotonic()
        follower.stop()
        assert time.monotonic() - started < 2.0
        assert not follower.running
        count = len(rec.lines())
        time.sleep(0.5)
        assert len(rec.lines()) == count  # nothing arrives after stop()
    finally:
        follower.stop()
        engine.remove(container)
    assert thread_errors == []


def test_log_follower_reads_a_tty_container_line_by_line(engine: DockerEngine) -> None:
    name = engine.unique("tty")
    container = engine.run("printf 'no newline yet'; sleep 0.3; echo ' done'; " + TICK.format(word="tty"),
                           name=name, tty=True)
    rec = Recorder()
    follower = LogFollower(name, client=engine.client, on_line=rec.line, on_status=rec.status)
    try:
        follower.start()
        wait_for(lambda: "tty 2" in rec.lines(), what="tty 2")
        assert rec.lines()[:3] == ["no newline yet done", "tty 0", "tty 1"]  # "\r\n" endings removed
    finally:
        follower.stop()
        engine.remove(container)


def test_log_follower_reattaches_when_the_container_is_recreated(engine: DockerEngine, thread_errors: list) -> None:
    service = engine.unique("web")  # no other test's (or compose run's) "web" on this engine can be chosen
    labels = {COMPOSE_SERVICE_LABEL: service, "com.docker.compose.project": "shop"}
    old = engine.run(TICK.format(word="old"), name=engine.unique("shop-web-1"), labels=labels)
    rec = Recorder()
    follower = LogFollower(service, client=engine.client, on_line=rec.line, on_status=rec.status, tail=100,
                           poll=0.2)
    new = None
    try:
        follower.start()
        wait_for(lambda: "old 2" in rec.lines(), what="the old container's lines")
        # What `docker compose up -d` does to a changed service: stop, remove, start a new container.
        old.stop(timeout=2)
        old.remove()
        new = engine.run(TICK.format(word="new"), name=engine.unique("shop-web-1"), labels=labels)
        reattached = f"re-attached to {new.name} ({new.id[:12]})"
        wait_for(lambda: reattached in rec.statuses(), what=lambda: f"{reattached}; the statuses: {rec.statuses()}")
        wait_for(lambda: "new 2" in rec.lines(), what="the new container's lines")
        assert rec.index("status", reattached) < rec.index("line", "new 0")
        assert follower.running and follower.container_id == new.id[:12]
        lines = rec.lines()
        assert lines.index("new 0") > lines.index("old 2")
        assert lines.count("new 0") == 1 and lines.count("old 0") == 1  # nothing shown twice
    finally:
        follower.stop()
        engine.remove(old)
        if new is not None:
            engine.remove(new)
    assert not follower.running
    assert thread_errors == []


def test_log_follower_resumes_a_restarted_container_without_repeating_lines(engine: DockerEngine) -> None:
    name = engine.unique("restarts")
    container = engine.run("echo boot; sleep 600", name=name)
    rec = Recorder()
    follower = LogFollower(name, client=engine.client, on_line=rec.line, on_status=rec.status, poll=0.2)
    try:
        follower.start()
        wait_for(lambda: rec.lines() == ["boot"], what="the first boot line")
        container.stop(timeout=2)
        wait_for(lambda: any("exited" in s for s in rec.statuses()), what="the stop to be reported")
        container.start()
        wait_for(lambda: rec.lines() == ["boot", "boot"], what="the second boot line, once")
        assert f"re-attached to {name} ({container.id[:12]})" in rec.statuses()
        time.sleep(0.5)
        assert rec.lines() == ["boot", "boot"]
    finally:
        follower.stop()
        engine.remove(container)


def test_log_follower_reports_an_unreachable_engine_and_keeps_retrying(thread_errors: list) -> None:
    rec = Recorder()
    follower = LogFollower("web", base_url=BOGUS, on_line=rec.line, on_status=rec.status, backoff=0.1)
    follower.start()
    try:
        wait_for(lambda: len(rec.statuses()) >= 3, what="three retries")
        first = rec.statuses()[0]
        assert first.startswith(f"docker engine unreachable at {BOGUS}: No such file or directory")
        assert "retrying in 0.1s" in first and "retrying in 0.2s" in rec.statuses()[1]  # backoff
        assert follower.running
    finally:
        started = time.monotonic()
        follower.stop()
    assert time.monotonic() - started < 2.0 and not follower.running
    assert rec.lines() == []
    assert thread_errors == []


def test_log_follower_attaches_once_the_engine_comes_back(engine: DockerEngine, thread_errors: list) -> None:
    name = engine.unique("later")
    container = engine.run(TICK.format(word="back"), name=name)
    link_dir = tempfile.mkdtemp(prefix="rbt-l", dir="/tmp")
    link = os.path.join(link_dir, "d.sock")
    rec = Recorder()
    follower = LogFollower(name, base_url=f"unix://{link}", on_line=rec.line, on_status=rec.status,
                           backoff=0.1, max_backoff=0.4)
    try:
        follower.start()
        wait_for(lambda: any("unreachable" in s for s in rec.statuses()), what="the outage to be reported")
        os.symlink(engine.base_url.removeprefix("unix://"), link)  # the engine "starts"
        wait_for(lambda: "back 1" in rec.lines(), what="lines once the engine answers")
        statuses = rec.statuses()
        assert f"docker engine reachable again at unix://{link}" in statuses
        assert f"attached to {name} ({container.id[:12]})" in statuses
    finally:
        follower.stop()
        engine.remove(container)
        shutil.rmtree(link_dir, ignore_errors=True)
    assert thread_errors == []


# ---- status -----------------------------------------------------------------------------------

def test_container_status_running_exited_missing_unreachable(engine: DockerEngine) -> None:
    import docker

    running = engine.run("sleep 600", name=engine.unique("up"))
    exited = engine.run("exit 4", name=engine.unique("down"))
    try:
        status = container_status(engine.client, running.name)
        assert status["state"] == "running" and status["name"] == running.name
        assert status["id"] == running.id[:12] and status["image"] == engine.image
        assert status["health"] is None and status["exit_code"] is None
        wait_for(lambda: container_status(engine.client, exited.name)["state"] == "exited", what="exit")
        status = container_status(engine.client, exited.name)
        assert status["exit_code"] == 4
        missing = container_status(engine.client, "nope-" + engine.unique("x"))
        assert missing["state"] == "missing" and "no container named" in missing["error"]
        offline = docker.DockerClient(base_url=BOGUS, version="1.41")  # no version probe: no I/O yet
        unreachable = container_status(offline, "web")
        assert unreachable["state"] == "unreachable" and "No such file or directory" in unreachable["error"]
    finally:
        engine.remove(running)
        engine.remove(exited)


# ---- exec -------------------------------------------------------------------------------------

def test_exec_streams_output_with_escapes_and_returns_the_exit_code(engine: DockerEngine, box: Any) -> None:
    chunks: list[tuple[float, str]] = []
    script = r"printf '\033[32mgreen\033[0m\n'; sleep 0.5; echo après; exit 3"
    status = exec_in_container(engine.client, box.name, script,
                               on_output=lambda text: chunks.append((time.monotonic(), text)))
    text = "".join(t for _, t in chunks)
    assert "\x1b[32mgreen\x1b[0m\r\n" in text  # a TTY: escapes kept, \n -> \r\n
    assert "après" in text
    assert status.exit_code == 3 and status.signal is None
    assert not status.timed_out and not status.aborted
    green_at = next(at for at, t in chunks if "green" in t)
    apres_at = next(at for at, t in chunks if "après" in t)
    assert apres_at - green_at >= 0.3  # streamed as it came, not delivered at the end
    assert 0.5 <= status.duration < 10


def test_exec_delivers_every_byte_in_order_and_stops_a_script_at_its_first_failure(
        engine: DockerEngine, box: Any) -> None:
    out: list[str] = []
    status = exec_in_container(engine.client, box.name, "seq 1 20000", on_output=out.append)
    assert status.exit_code == 0
    assert "".join(out) == "".join(f"{i}\r\n" for i in range(1, 20001))
    out.clear()
    status = exec_in_container(engine.client, box.name, "echo one\nfalse\necho not-reached", on_output=out.append)
    assert status.exit_code == 1 and "".join(out) == "one\r\n"  # multi-line: -e, as a local command


def test_exec_gets_env_cwd_and_a_tty_and_reports_the_container(engine: DockerEngine, box: Any) -> None:
    out: list[str] = []
    proc = ContainerProcess.spawn(
        engine.client, box.name,
        'echo "pw=$DB_PASSWORD"; echo "term=$TERM"; pwd; [ -t 1 ] && echo is-a-tty; stty size',
        on_output=out.append, env={"DB_PASSWORD": "s3cr3t value; $(rm -rf /)"}, cwd="/tmp", rows=33, cols=99,
    )
    assert proc.describe() == {"container": box.name, "id": box.id[:12], "image": engine.image}
    status = proc.wait(20)
    assert status is not None and status.exit_code == 0
    text = "".join(out)
    assert "pw=s3cr3t value; $(rm -rf /)\r\n" in text  # a value, never code
    assert "term=xterm-256color" in text and "/tmp\r\n" in text and "is-a-tty" in text


def test_exec_timeout_kills_the_process_in_the_container(engine: DockerEngine, box: Any) -> None:
    out: list[str] = []
    status = exec_in_container(engine.client, box.name, "echo waiting; sleep 300", on_output=out.append,
                               timeout=1.0, grace=1.0)
    assert status.timed_out and not status.aborted
    assert status.exit_code is None and status.signal == 2  # SIGINT was enough
    assert "waiting" in "".join(out)
    assert "sleep 300" not in ps(box)


def test_exec_abort_escalates_to_sigkill_when_signals_are_ignored(engine: DockerEngine, box: Any) -> None:
    abort = threading.Event()
    threading.Timer(0.5, abort.set).start()
    status = exec_in_container(engine.client, box.name, "trap '' INT TERM; sleep 301; echo survived",
                               on_output=lambda _: None, abort_event=abort, grace=0.5)
    assert status.aborted and not status.timed_out
    assert status.signal == 9
    assert "sleep 301" not in ps(box)


def test_exec_leaves_no_background_process_behind(engine: DockerEngine, box: Any) -> None:
    out: list[str] = []
    started = time.monotonic()
    status = exec_in_container(engine.client, box.name, "sleep 302 & echo started", on_output=out.append)
    assert status.exit_code == 0 and "started" in "".join(out)
    assert time.monotonic() - started < 10
    assert "sleep 302" not in ps(box)


def test_exec_errors_name_the_problem_not_the_secret(engine: DockerEngine) -> None:
    stopped = engine.run("true", name=engine.unique("stopped"))
    try:
        wait_for(lambda: stopped.reload() or stopped.status == "exited", what="exit")
        with pytest.raises(ContainerNotRunning, match="is exited") as info:
            exec_in_container(engine.client, stopped.name, "true", on_output=print, env={"TOKEN": "hunter2"})
        assert "hunter2" not in str(info.value)
        with pytest.raises(ContainerNotFound):
            exec_in_container(engine.client, engine.unique("absent"), "true", on_output=print)
    finally:
        engine.remove(stopped)


# ---- connecting -------------------------------------------------------------------------------

def test_connect_honours_docker_host(engine: DockerEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)
    name = engine.unique("via-env")
    container = engine.run("sleep 600", name=name)
    try:
        client = connect()
        assert engine_url(client) == engine.base_url
        assert client.containers.get(name).id == container.id
        client.close()
    finally:
        engine.remove(container)
    monkeypatch.setenv("DOCKER_HOST", BOGUS)
    with pytest.raises(DockerUnavailable, match=f"unreachable at {BOGUS}: No such file or directory"):
        connect()


def test_connect_uses_the_current_docker_context(engine: DockerEngine, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Any) -> None:
    from docker.context import ContextAPI

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "rbt-private"}))
    ContextAPI.create_context("rbt-private", host=engine.base_url)
    client = connect()
    assert engine_url(client) == engine.base_url
    assert client.ping()
    client.close()
    monkeypatch.setenv("DOCKER_CONTEXT", "rbt-missing")
    with pytest.raises(DockerUnavailable, match="rbt-missing"):
        connect()
