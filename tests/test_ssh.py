"""SSH targets against real OpenSSH servers (tests/ssh_fleet.py): fan-out, batches, host keys,
hung hosts, secrets kept out of argv, abort, ProxyJump. Each test bounds its own waits."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping

import pytest

from runbook_tui.batches import FanoutCallbacks, HostResult, parse_serial, run_on_hosts
from runbook_tui.audit.redact import Redactor
from runbook_tui.integrations.ssh import (HostKeyError, RemoteProcess, SshError, SshOptions, SshPool, SshTarget,
                                          host_starter)
from runbook_tui.model import Host
from tests.ssh_fleet import FLEET_SIZE, PartitionedHost, SshFleet

# Short keepalives so a hung host is declared gone in about a second and a half.
FAST = SshOptions(keepalive_interval=0.5, keepalive_count=2, connect_timeout=5.0)
WAIT = 30.0  # upper bound for any single wait: a hang fails the test instead of stalling it
ALL_NAMES = [f"web-{i:02d}" for i in range(1, FLEET_SIZE + 1)]  # the fleet's ssh config names


@pytest.fixture
def pool(fleet_home: SshFleet) -> Iterator[SshPool]:
    with SshPool(FAST) as pool:
        yield pool


class Collector:
    """Output per host, as the engine would receive it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.text: dict[str, str] = {}
        self.started: dict[str, Mapping[str, object]] = {}
        self.finished: list[HostResult] = []

    def callbacks(self) -> FanoutCallbacks:
        def output(host: str, text: str) -> None:
            with self.lock:
                self.text[host] = self.text.get(host, "") + text

        def started(host: str, facts: Mapping[str, object]) -> None:
            self.started[host] = facts

        return FanoutCallbacks(started=started, output=output, finished=self.finished.append)


def starter(pool: SshPool, script: str, env: Mapping[str, str] | None = None):  # type: ignore[no-untyped-def]
    """run_on_hosts' start for fleet hosts named as in the fleet's ssh config."""
    return host_starter(pool, [Host(name, 0) for name in ALL_NAMES], script, env=env)


def server_port_of(output: str) -> int:
    """$SSH_CONNECTION's last field: the port of the sshd that ran the command."""
    return int(output.split()[-1])


def run(pool: SshPool, host: str, script: str, **kwargs: object) -> tuple[RemoteProcess, str]:
    out: list[str] = []
    proc = pool.spawn(SshTarget(host), script, on_output=out.append, **kwargs)  # type: ignore[arg-type]
    assert proc.wait(WAIT) is not None, f"{host}: no end within {WAIT}s"
    return proc, "".join(out)


def test_twenty_hosts_in_parallel_each_with_its_own_output_and_exit_code(pool: SshPool, fleet_home: SshFleet) -> None:
    hosts = fleet_home.names(20)
    collector = Collector()
    script = 'echo "$SSH_CONNECTION"; exit $(( ${SSH_CONNECTION##* } % 7 ))'
    results = run_on_hosts(hosts, starter(pool, script), parallel=20, max_fail=20, callbacks=collector.callbacks())
    assert [r.host for r in results] == hosts
    for result in results:
        port = fleet_home.server(result.host).port
        assert server_port_of(collector.text[result.host]) == port
        assert result.exit_code == port % 7
        assert result.state == ("ok" if port % 7 == 0 else "failed")
        facts = collector.started[result.host]
        assert facts["port"] == port and facts["user"] == fleet_home.user
        assert str(facts["fingerprint"]).startswith("SHA256:")


def test_one_connection_per_host_is_reused(pool: SshPool, fleet_home: SshFleet) -> None:
    host = fleet_home.names(1)[0]
    ports = {server_port_of(run(pool, host, 'echo "$SSH_CONNECTION"')[1]) for _ in range(3)}
    client_ports = {run(pool, host, 'echo "$SSH_CONNECTION"')[1].split()[1] for _ in range(3)}
    assert ports == {fleet_home.server(host).port}
    assert len(client_ports) == 1  # the same TCP connection (same client port) for every session


def test_failing_canary_stops_before_the_next_batch(pool: SshPool, fleet_home: SshFleet) -> None:
    hosts = fleet_home.names(6)
    canary_port = fleet_home.server(hosts[0]).port
    collector = Collector()
    script = f'[ "${{SSH_CONNECTION##* }}" != {canary_port} ] || {{ echo canary broke; exit 3; }}'
    results = run_on_hosts(hosts, starter(pool, script), serial=parse_serial("1,25%,100%"), max_fail=0,
                           callbacks=collector.callbacks())
    assert results[0].state == "failed" and results[0].exit_code == 3
    assert "canary broke" in collector.text[hosts[0]]
    assert [r.state for r in results[1:]] == ["skipped"] * 5
    assert all("max_fail=0" in (r.reason or "") for r in results[1:])
    assert set(collector.started) == {hosts[0]}  # nothing started on the others


def test_batches_go_on_while_failures_stay_within_max_fail(pool: SshPool, fleet_home: SshFleet) -> None:
    hosts = fleet_home.names(5)
    canary_port = fleet_home.server(hosts[0]).port
    script = f'[ "${{SSH_CONNECTION##* }}" != {canary_port} ]'
    events: list[str] = []
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    callbacks = FanoutCallbacks(
        before_batch=lambda batch, rest: events.append(f"confirm {batch.number} then {len(rest)}") or True,
        batch_finished=lambda batch, done: events.append(f"end {batch.number}: {[r.state for r in done]}"),
        tick=tick)
    results = run_on_hosts(hosts, starter(pool, script), serial=("1", "2"), max_fail=1, parallel=1,
                           callbacks=callbacks)
    assert [r.state for r in results] == ["failed", "ok", "ok", "ok", "ok"]
    assert [r.batch for r in results] == [1, 2, 2, 3, 3]
    assert events == ["confirm 1 then 2", "end 1: ['failed']", "confirm 2 then 1", "end 2: ['ok', 'ok']",
                      "confirm 3 then 0", "end 3: ['ok', 'ok']"]
    assert ticks > 5  # called while hosts run, as supervise's tick


def test_declined_batch_skips_it_and_the_rest(pool: SshPool, fleet_home: SshFleet) -> None:
    hosts = fleet_home.names(4)
    callbacks = FanoutCallbacks(before_batch=lambda batch, rest: batch.number == 1)
    results = run_on_hosts(hosts, starter(pool, "true"), serial=("1", "2"), callbacks=callbacks)
    assert [r.state for r in results] == ["ok", "skipped", "skipped", "skipped"]
    assert results[1].reason == "batch 2 was not confirmed"


def test_hung_host_fails_by_keepalive_not_by_hanging(pool: SshPool, fleet_home: SshFleet) -> None:
    server = fleet_home.servers[-1]
    out: list[str] = []
    proc = pool.spawn(SshTarget(server.name), "echo started; sleep 20; echo finished", on_output=out.append)
    deadline = time.monotonic() + WAIT
    while "started" not in "".join(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    server.freeze()
    try:
        status = proc.wait(WAIT)
    finally:
        server.thaw()
    assert status is not None, "a hung host must fail, not hang"
    assert status.exit_code is None and status.signal is None
    assert proc.error is not None and "stopped responding" in proc.error and "keepalive" in proc.error
    assert "finished" not in "".join(out)
    # the dropped connection is not reused: the next command reconnects and runs
    again, text = run(pool, server.name, "echo back")
    assert again.error is None and "back" in text


def test_host_that_hangs_before_answering_times_out(fleet_home: SshFleet) -> None:
    server = fleet_home.servers[-2]
    server.freeze()
    try:
        with SshPool(SshOptions(connect_timeout=1.5)) as pool:
            proc, _ = run(pool, server.name, "true")
    finally:
        server.thaw()
    assert proc.error is not None and "no SSH answer within 1.5s" in proc.error


def test_changed_host_key_fails_with_the_fingerprint(fleet_home: SshFleet, tmp_path) -> None:
    first, second = fleet_home.servers[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{first.port} {second.host_key_line}\n")  # someone else's key
    with SshPool(SshOptions(known_hosts=str(known))) as pool:
        with pytest.raises(HostKeyError) as caught:
            pool.connect(SshTarget(first.name))
        proc, _ = run(pool, first.name, "echo must-not-run")
    message = str(caught.value)
    assert "HOST KEY CHANGED" in message and "ssh-keygen -R" in message
    offered = run_fingerprint(fleet_home, first.name)
    assert caught.value.fingerprint == offered and offered in message
    assert proc.error is not None and "HOST KEY CHANGED" in proc.error
    assert known.read_text().count("\n") == 1  # nothing was added


def run_fingerprint(fleet: SshFleet, name: str) -> str:
    with SshPool() as pool:
        return pool.connect(SshTarget(name)).fingerprint


def test_unknown_host_key_is_refused_unless_accept_new_which_is_reported(fleet_home: SshFleet, tmp_path) -> None:
    server = fleet_home.servers[2]
    known = tmp_path / "known_hosts"
    known.write_text("")
    with SshPool(SshOptions(known_hosts=str(known))) as pool:
        with pytest.raises(HostKeyError, match="unknown host key") as caught:
            pool.connect(SshTarget(server.name))
    assert caught.value.fingerprint.startswith("SHA256:")
    with SshPool(SshOptions(known_hosts=str(known), host_keys="accept-new")) as pool:
        facts = pool.connect(SshTarget(server.name))
    assert facts.accepted_new_key and facts.fingerprint == caught.value.fingerprint
    assert f"[127.0.0.1]:{server.port} {server.host_key_line}" in known.read_text()
    with SshPool(SshOptions(known_hosts=str(known))) as pool:  # now known: strict accepts it
        assert not pool.connect(SshTarget(server.name)).accepted_new_key


def test_refused_connection_names_the_reason(fleet_home: SshFleet) -> None:
    with SshPool(FAST) as pool:
        with pytest.raises(SshError, match="connection refused"):
            pool.connect(SshTarget("nowhere", address="127.0.0.1", port=1, user=fleet_home.user))


def _cmdlines() -> list[bytes]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    found.append(handle.read())
            except OSError:
                pass
    return found


def test_secret_arrives_intact_and_never_appears_in_any_argv(pool: SshPool, fleet_home: SshFleet) -> None:
    token = os.urandom(8).hex()
    secret = f"pw-{token} with 'quotes' \"dq\" $(touch /tmp/pwned-{token}) `id` \\n é\nsecond line "
    script = 'printf %s "$DB_PASSWORD" | sha256sum; echo ready; sleep 2; echo done'
    out: list[str] = []
    proc = pool.spawn(SshTarget(fleet_home.names(1)[0]), script, on_output=out.append, env={"DB_PASSWORD": secret})
    seen_running = False
    leaked = []
    while proc.wait(0.05) is None:
        cmdlines = _cmdlines()
        seen_running = seen_running or any(b"sleep\x002" in line for line in cmdlines)
        leaked += [line for line in cmdlines if token.encode() in line]
    status = proc.wait(WAIT)
    assert status is not None and status.exit_code == 0, "".join(out)
    assert seen_running, "the remote command was never seen running"
    assert leaked == []
    assert hashlib.sha256(secret.encode()).hexdigest() in "".join(out)
    assert not os.path.exists(f"/tmp/pwned-{token}")


def test_values_reach_the_script_environment_and_cwd(pool: SshPool, fleet_home: SshFleet, tmp_path) -> None:
    proc, text = run(pool, fleet_home.names(1)[0], 'printf "[%s][%s]" "$EMPTY" "$A"; pwd',
                     env={"EMPTY": "", "A": "x  y"}, cwd=str(tmp_path))
    assert proc.error is None and "[][x  y]" in text and str(tmp_path) in text


def test_aborted_remote_command_is_signalled_and_reports_its_end(pool: SshPool, fleet_home: SshFleet) -> None:
    marker = f"31.{os.getpid()}"
    out: list[str] = []
    proc = pool.spawn(SshTarget(fleet_home.names(1)[0]),
                      f"trap 'echo got-INT; exit 130' INT; echo started; sleep {marker}; echo not-reached",
                      on_output=out.append)
    deadline = time.monotonic() + WAIT
    while "started" not in "".join(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.abort(grace=2.0)
    status = proc.wait(WAIT)
    assert status is not None and status.aborted and status.exit_code == 130
    assert "got-INT" in "".join(out) and "not-reached" not in "".join(out)
    assert not any(marker.encode() in line for line in _cmdlines())  # nothing left on the host


def test_remote_interactive_command_gets_its_answer(pool: SshPool, fleet_home: SshFleet) -> None:
    out: list[str] = []
    proc = pool.spawn(SshTarget(fleet_home.names(1)[0]), 'printf "proceed? "; read -r answer; echo "answer=$answer"',
                      on_output=out.append)
    deadline = time.monotonic() + WAIT
    while "proceed?" not in "".join(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.write("yes\r")
    status = proc.wait(WAIT)
    assert status is not None and status.exit_code == 0
    assert "answer=yes" in "".join(out)


def test_proxyjump_through_one_of_the_servers(pool: SshPool, fleet_home: SshFleet) -> None:
    jump, target = fleet_home.servers[0], fleet_home.servers[4]
    before = jump.log.read_text(errors="replace").count(f"port {target.port}")
    proc, text = run(pool, f"jumped-{target.name.removeprefix('web-')}", 'echo "$SSH_CONNECTION"')
    assert proc.error is None and server_port_of(text) == target.port
    assert proc.facts is not None and proc.facts.port == target.port
    log = jump.log.read_text(errors="replace")
    assert "direct-tcpip" in log and log.count(f"port {target.port}") > before


def test_abort_signals_every_running_host_and_skips_the_rest(pool: SshPool, fleet_home: SshFleet) -> None:
    hosts = fleet_home.names(4)
    collector = Collector()
    aborting = threading.Event()

    callbacks = collector.callbacks()
    record = callbacks.output
    assert record is not None

    def output(host: str, text: str) -> None:
        record(host, text)
        if len(collector.text) == 2 and all("started" in t for t in collector.text.values()):
            aborting.set()

    callbacks.output = output
    script = "trap 'echo got-INT; exit 130' INT; echo started; sleep 29.5; echo not-reached"
    results = run_on_hosts(hosts, starter(pool, script), serial=("2",), parallel=2, should_abort=aborting.is_set,
                           grace=1.0, callbacks=callbacks)
    assert [r.state for r in results] == ["failed", "failed", "skipped", "skipped"]
    assert all(r.status is not None and r.status.aborted and r.exit_code == 130 for r in results[:2])
    assert all("got-INT" in collector.text[h] for h in hosts[:2])
    assert all(r.reason == "the run was aborted" for r in results[2:])
    assert not any(b"29.5" in line for line in _cmdlines())


def test_per_host_timeout_fails_that_host_only(pool: SshPool, fleet_home: SshFleet) -> None:
    slow_port = fleet_home.servers[1].port
    script = f'[ "${{SSH_CONNECTION##* }}" != {slow_port} ] || sleep 28.5; echo done'
    results = run_on_hosts(fleet_home.names(3), starter(pool, script), timeout=2.0, grace=0.5, max_fail=3)
    assert [r.state for r in results] == ["ok", "failed", "ok"]
    assert results[1].status is not None and results[1].status.timed_out and results[1].reason == "timed out"


def test_authentication_failure_names_the_reason(fleet_home: SshFleet) -> None:
    server = fleet_home.servers[3]  # addressed directly: no config block, so no IdentityFile for it
    with SshPool(FAST) as pool:
        with pytest.raises(SshError, match="authentication failed as") as caught:
            pool.connect(SshTarget("direct", address="127.0.0.1", port=server.port, user=fleet_home.user))
    assert "ssh-agent" in str(caught.value)


def test_keys_from_a_real_ssh_agent(fleet_home: SshFleet, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("ssh-agent/ssh-add not installed")
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        subprocess.run(["ssh-add", "-q", str(fleet_home.key)], env=env, check=True, timeout=WAIT)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        server = fleet_home.servers[3]
        with SshPool(FAST) as pool:
            facts = pool.connect(SshTarget("direct", address="127.0.0.1", port=server.port, user=fleet_home.user))
        assert facts.port == server.port and facts.user == fleet_home.user
    finally:
        agent.terminate()
        agent.wait(WAIT)


def test_a_secret_printed_by_every_host_is_redacted_in_each_hosts_stream(pool: SshPool, fleet_home: SshFleet) -> None:
    secret = "s3cr3t-" + os.urandom(6).hex()
    redactor = Redactor()
    redactor.add("DB_PASSWORD", secret)
    safe: dict[str, list[str]] = {}
    lock = threading.Lock()

    def output(host: str, text: str) -> None:
        with lock:
            safe.setdefault(host, []).append(redactor.feed(host, text))

    # printed one byte-chunk at a time: the secret arrives split across many reads
    script = ('s=$DB_PASSWORD; while [ -n "$s" ]; do r=${s#?}; printf %s "${s%"$r"}"; s=$r; sleep 0.01; done; '
              'echo; echo "$DB_PASSWORD"')
    hosts = fleet_home.names(3)
    results = run_on_hosts(hosts, starter(pool, script, env={"DB_PASSWORD": secret}), callbacks=FanoutCallbacks(output=output))
    assert [r.state for r in results] == ["ok"] * 3
    for host in hosts:
        text = "".join(safe[host]) + redactor.flush(host)
        assert secret not in text and text.count("[REDACTED:DB_PASSWORD]") == 2, text


def test_host_cut_off_the_network_mid_command_fails_by_keepalive(pool: SshPool, partitioned_host: PartitionedHost) -> None:
    out: list[str] = []
    proc = pool.spawn(SshTarget(partitioned_host.name), "echo started; sleep 20; echo finished", on_output=out.append)
    deadline = time.monotonic() + WAIT
    while "started" not in "".join(out) and time.monotonic() < deadline and proc.wait(0) is None:
        time.sleep(0.02)
    assert "started" in "".join(out), proc.error
    partitioned_host.cut()
    status = proc.wait(WAIT)
    assert status is not None, "a host cut off the network must fail, not hang"
    assert status.exit_code is None and proc.error is not None and "stopped responding" in proc.error
    assert "finished" not in "".join(out)
