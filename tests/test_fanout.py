"""Issue 15 through the engine: a step with `hosts=` runs on a real sshd fleet, batch by batch,
each batch approved as a whole, every host on the record (tests/ssh_fleet.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runbook_tui.audit.transcript import read_events
from runbook_tui.parse import load_runbook
from tests.guard_invariant import unapproved_starts
from tests.ssh_fleet import SshFleet

SECRET = "fleet-s3cr3t-Ω"


def book(tmp_path: Path, fleet: SshFleet, body: str, count: int = 4) -> Path:
    hosts = ", ".join(fleet.names(count))
    path = tmp_path / "deploy.md"
    path.write_text(f"---\nhosts:\n  web: [{hosts}]\nsecrets:\n  TOKEN: env:FLEET_TOKEN\n---\n# Fleet\n\n## Steps\n\n{body}")
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEET_TOKEN": SECRET}
    return subprocess.run([sys.executable, "-m", "runbook_tui", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, cwd=cwd, env=env)


def events(path: Path, kind: str | None = None) -> list[dict]:
    return [e for e in read_events(path) if kind is None or e["type"] == kind]


def test_a_canary_then_the_rest_each_host_on_the_record(fleet_home: SshFleet, tmp_path: Path) -> None:
    path = book(tmp_path, fleet_home, "1. Deploy\n   ```sh {hosts=web serial=1,100%}\n"
                                      "   echo \"deployed on $(hostname) with $TOKEN\"\n   ```\n")
    assert cli("trust", str(path), cwd=tmp_path).returncode == 0
    transcript = tmp_path / "t.jsonl"
    done = cli("run", str(path), "--yes", "--transcript", str(transcript), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    hosts = fleet_home.names(4)
    started = events(transcript, "command.started")
    assert [e["host"] for e in started][:1] == hosts[:1] and sorted(e["host"] for e in started) == sorted(hosts)
    assert all(e["fingerprint"].startswith("SHA256:") and e["user"] for e in started)
    batches = events(transcript, "batch.finished")
    assert [list(b["hosts"]) for b in batches] == [hosts[:1], hosts[1:]]
    outputs = {e["host"]: e["text"] for e in events(transcript, "output")}
    assert set(outputs) == set(hosts) and all("[REDACTED:TOKEN]" in text for text in outputs.values())
    assert SECRET not in transcript.read_text() and SECRET not in done.stdout
    assert all(f"{host} | deployed" in done.stdout for host in hosts), "each line prefixed with its host"
    runbook = load_runbook(path)
    assert unapproved_starts(events(transcript), trusted=True,
                             confirm_false=set(), high_risk=set()) == []
    asked = events(transcript, "confirm.asked")
    assert [(e["batch"], e["hosts"]) for e in asked] == [(1, hosts[:1]), (2, hosts[1:])]
    assert "batch 1 of 2" in asked[0]["after"] and [e["approved"] for e in events(transcript, "confirm.answered")]
    assert list(runbook.commands())[0].options.hosts == ("web",)


def test_a_failing_canary_stops_the_rest_and_the_run_fails(fleet_home: SshFleet, tmp_path: Path) -> None:
    canary = fleet_home.names(1)[0]
    path = book(tmp_path, fleet_home, "1. Deploy\n   ```sh {hosts=web serial=1,100% max_fail=0}\n"
                                      "   echo about to fail\n   exit 3\n   ```\n")
    assert cli("trust", str(path), cwd=tmp_path).returncode == 0
    transcript = tmp_path / "t.jsonl"
    done = cli("run", str(path), "--yes", "--transcript", str(transcript), cwd=tmp_path)
    assert done.returncode == 1
    assert [e["host"] for e in events(transcript, "command.started")] == [canary]
    skipped = [e["host"] for e in events(transcript, "host.skipped")]
    assert skipped == fleet_home.names(4)[1:]
    (finished,) = events(transcript, "task.finished")
    assert finished["status"] == "failed" and f"failed on {canary}" in finished["reason"]


def test_noop_shows_the_batches_and_connects_nowhere(fleet_home: SshFleet, tmp_path: Path) -> None:
    path = book(tmp_path, fleet_home, "1. Deploy\n   ```sh {hosts=web serial=1,50%}\n   echo hi\n   ```\n")
    transcript = tmp_path / "t.jsonl"
    done = cli("run", str(path), "--mode", "noop", "--transcript", str(transcript), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (planned,) = events(transcript, "command.planned")
    assert len(planned["batches"]) == 3 and "batch 1" in planned["batches"][0]
    assert not events(transcript, "command.started")


def test_the_markdown_export_has_a_table_per_host(fleet_home: SshFleet, tmp_path: Path) -> None:
    from runbook_tui.audit.export import export

    path = book(tmp_path, fleet_home, "1. Deploy\n   ```sh {hosts=web serial=2}\n   echo hi-from-$(hostname)\n   ```\n",
                count=3)
    assert cli("trust", str(path), cwd=tmp_path).returncode == 0
    transcript = tmp_path / "t.jsonl"
    assert cli("run", str(path), "--yes", "--transcript", str(transcript), cwd=tmp_path).returncode == 0
    md = export(transcript, "md")
    hosts_section = md.split("## Hosts", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in hosts_section.splitlines() if line.startswith("| ") and "SHA256:" in line]
    assert sorted(row.split(" | ")[0].strip("| ") for row in rows) == fleet_home.names(3)
    assert all(" | ok | exit 0 | " in row for row in rows)


def test_the_bundled_fleet_deployment_runs_end_to_end_on_the_fleet(fleet_home: SshFleet, tmp_path: Path) -> None:
    """runbooks/deployment-fleet.md with harmless stand-ins for docker compose, on four real hosts."""
    from tests.paths import RUNBOOKS

    text = (RUNBOOKS / "deployment-fleet.md").read_text()
    text = text.replace('"keyring:consultantpro/db-password"', "env:FLEET_TOKEN")
    for real, stand_in in (("docker compose pull web worker", "echo pulled-on-$(hostname)"),
                           ("docker compose run --rm web python src/manage.py migrate --noinput",
                            'echo "migrated with ${DB_PASSWORD}"'),
                           ("docker compose up -d web worker", "echo restarted"),
                           ("docker compose ps web worker", "echo up")):
        assert real in text
        text = text.replace(real, stand_in)
    path = tmp_path / "deployment-fleet.md"
    path.write_text(text)
    assert cli("trust", str(path), cwd=tmp_path).returncode == 0
    transcript = tmp_path / "t.jsonl"
    done = cli("run", str(path), "--yes", "--confirm-high-risk", "--var", "RELEASE_TAG=v7",
               "--transcript", str(transcript), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    web, db = fleet_home.names(3), fleet_home.names(4)[3]
    by_task: dict[str, list[str]] = {}
    for event in events(transcript, "command.started"):
        if event.get("host"):
            by_task.setdefault(event["task_id"], []).append(event["host"])
    restart = load_runbook(path).find("restart")
    migrate = load_runbook(path).find("migrate")
    assert by_task[migrate.id] == [db], "the migration runs once, on the database host"
    assert by_task[restart.id][0] == web[0] and sorted(by_task[restart.id]) == web, "canary first"
    asked = [e for e in events(transcript, "confirm.asked") if e.get("task_id") == restart.id]
    assert [e["hosts"] for e in asked] == [web[:1], web[1:]] and all(e["risk"] == "high" for e in asked)
    assert SECRET not in transcript.read_text() and "migrated with [REDACTED:DB_PASSWORD]" in done.stdout


def test_an_unknown_host_key_fails_that_host_unless_the_operator_accepts_new_keys(
        fleet_home: SshFleet, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    known = home / ".ssh" / "known_hosts"
    known.write_text("")
    config = fleet_home.config.read_text().replace(f"UserKnownHostsFile {fleet_home.known_hosts}",
                                                    f"UserKnownHostsFile {known}")
    (home / ".ssh" / "config").write_text(config)
    path = book(tmp_path, fleet_home, "1. Look\n   ```sh {hosts=web}\n   echo hello\n   ```\n", count=1)
    assert cli("trust", str(path), cwd=tmp_path).returncode == 0
    env = {"HOME": str(home), "FLEET_TOKEN": SECRET}
    strict = tmp_path / "strict.jsonl"
    done = subprocess.run([sys.executable, "-m", "runbook_tui", "run", str(path), "--yes", "--transcript",
                           str(strict)], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                          cwd=tmp_path, env={**os.environ, **env})
    assert done.returncode == 1
    (failed,) = events(strict, "host.failed")
    assert "unknown host key" in failed["reason"] and "SHA256:" in failed["reason"]
    assert not events(strict, "command.started"), "nothing started on a host we could not authenticate"
    assert "could not run it" in done.stdout
    assert known.read_text() == "", "nothing was added without the operator saying so"
    accepting = tmp_path / "accept.jsonl"
    done = subprocess.run([sys.executable, "-m", "runbook_tui", "run", str(path), "--yes", "--accept-new-host-keys",
                           "--transcript", str(accepting)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, cwd=tmp_path, env={**os.environ, **env})
    assert done.returncode == 0, done.stdout + done.stderr
    assert events(accepting, "run.started")[0]["host_keys"] == "accept-new"
    (started,) = [e for e in events(accepting, "command.started") if e.get("host")]
    assert started["accepted_new_key"] is True and known.read_text()
