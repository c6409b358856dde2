"""`resume` after a fan-out was interrupted mid-task, on a real sshd fleet: the hosts where the
command finished ok are not run again, the resumed batch asks only for the others, and the
transcript's fold ends with every host's final result (tests/ssh_fleet.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runbook_tui.audit.events import fold
from runbook_tui.audit.export import export
from runbook_tui.audit.transcript import read_events
from tests.ssh_fleet import SshFleet
from tests.test_fanout import SECRET, book, cli, events


def after_resume(path: Path, kind: str) -> list[dict]:
    seen = list(read_events(path))
    start = next(i for i, e in enumerate(seen) if e["type"] == "run.resumed")
    return [e for e in seen[start:] if e["type"] == kind]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_resume_runs_an_interrupted_fanout_only_where_it_did_not_finish_ok(fleet_home: SshFleet, tmp_path: Path,
                                                                          stop: signal.Signals) -> None:
    """Ctrl+C: the run ends with run.aborted, h3's end recorded. Killed: the transcript just
    stops (no task.finished, so no task fingerprint: the runbook's own hash must match)."""
    h1, h2, h3, h4 = fleet_home.names(4)
    flag = tmp_path / "go"
    # Batches: [h1] (the canary), then [h2, h3, h4]. Until `go` exists, h3 waits and h4 fails.
    port = {host: fleet_home.server(host).port for host in (h3, h4)}
    path = book(tmp_path, fleet_home, "1. Deploy\n   ```sh {hosts=web serial=1,100%}\n"
                                      "   set -- $(printenv SSH_CONNECTION)\n"
                                      f"   if [ \"$4\" = {port[h3]} ]; then until [ -e {flag} ]; do sleep 0.1; done; fi\n"
                                      f"   if [ \"$4\" = {port[h4]} ] && [ ! -e {flag} ]; then exit 4; fi\n"
                                      "   echo \"deployed on $4\"\n   ```\n")
    assert cli("trust", str(path), cwd=tmp_path).returncode == 0
    transcript = tmp_path / "t.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "runbook_tui", "run", str(path), "--yes",
                             "--transcript", str(transcript)], cwd=tmp_path,
                            env={**os.environ, "FLEET_TOKEN": SECRET}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ended = {e["host"] for e in events(transcript, "command.finished")} if transcript.exists() else set()
        if ended >= {h1, h2, h4}:
            break
        time.sleep(0.1)
    assert {e["host"] for e in events(transcript, "command.started")} == {h1, h2, h3, h4}
    proc.send_signal(stop)  # while h3 still waits
    out, err = proc.communicate(timeout=60)
    first = {e["host"]: e["state"] for e in events(transcript, "command.finished")}
    if stop == signal.SIGINT:
        assert proc.returncode == 1, out + err
        aborted = events(transcript)[-1]
        assert aborted["type"] == "run.aborted", "interrupted, not finished: resumable"
        task_id = events(transcript, "command.started")[0]["task_id"]
        assert aborted["reason"] == f"interrupted during task {task_id}", aborted
        assert first == {h1: "ok", h2: "ok", h3: "failed", h4: "failed"}
    else:
        assert not events(transcript, "task.finished") and first == {h1: "ok", h2: "ok", h4: "failed"}

    flag.touch()
    resumed = cli("resume", str(transcript), "--yes", "--interrupted", "rerun", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"finished ok in the interrupted run on {h1}, {h2}" in resumed.stderr
    (marker,) = events(transcript, "run.resumed")
    task_id = events(transcript, "command.started")[0]["task_id"]
    assert marker["hosts_done"] == {task_id: [h1, h2]}
    assert sorted(e["host"] for e in after_resume(transcript, "command.started")) == [h3, h4]
    carried = after_resume(transcript, "host.skipped")
    assert sorted(e["host"] for e in carried) == [h1, h2] and all(e["finished_before"] for e in carried)
    assert all(f"↷ {host} skipped: finished ok in the interrupted run" in resumed.stdout for host in (h1, h2))
    # The canary's batch has nothing left: no question; the second asks for its two other hosts only.
    asked = after_resume(transcript, "confirm.asked")
    assert [(e["batch"], e["hosts"]) for e in asked] == [(2, [h3, h4])]
    assert "batch 2 of 2" in asked[0]["after"]

    record = fold(read_events(transcript)).tasks[task_id]
    assert record.status == "done"
    assert {host: facts["state"] for host, facts in record.hosts.items()} == dict.fromkeys((h1, h2, h3, h4), "ok")
    assert record.hosts[h1]["exit_code"] == 0 and "interrupted run" in record.hosts[h1]["reason"]
    table = export(transcript, "md").split("## Hosts", 1)[1]
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith(f"| web-")}
    assert set(rows) == {h1, h2, h3, h4} and all(" | ok" in row and "exit 0" in row for row in rows.values())
