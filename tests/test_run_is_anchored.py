"""Issue 14 through a real run: `runbook-tui run` with `signing:` and `checkpoints:` in config.yaml
signs the sealed transcript with the operator's key in ssh-agent and sends checkpoints to a real
rsyslog; `transcript verify` then proves it, and catches a rewrite that re-hashes the chain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runbook_tui.audit.transcript import canonical, verify
from tests.rsyslog_collector import Collector, rsyslog  # noqa: F401 - the fixture
from tests.ssh_agent import Agent, ssh_agent  # noqa: F401 - the fixture


def rbt(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook_tui", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, env=env, cwd=cwd)


def rehash(path: Path, change: dict[str, object], where: str) -> None:
    """Rewrite one event and recompute every hash after it, as someone with write access would."""
    import hashlib

    events = [json.loads(line) for line in path.read_text().splitlines()]
    prev = None
    lines = []
    for event in events:
        if event["type"] == where:
            event.update(change)
        event.pop("hash")
        if prev is not None:
            event["prev"] = prev
        body = canonical(event)
        prev = hashlib.sha256(body).hexdigest()
        lines.append(body[:-1] + b',"hash":"' + prev.encode() + b'"}\n')  # as the writer writes it
    path.write_bytes(b"".join(lines))


def test_a_run_is_signed_and_checkpointed_and_verify_proves_it(tmp_path: Path, rsyslog: Collector,  # noqa: F811
                                                               ssh_agent: Agent) -> None:  # noqa: F811
    pub = ssh_agent.new_key("alice", "alice@example.com", add=True)
    allowed = ssh_agent.allowed_signers(tmp_path / "allowed", **{"alice@example.com": pub})
    config = tmp_path / "config.yaml"
    config.write_text(f"signing:\n  key: {pub}\n  agent: true\ncheckpoints:\n  syslog: {rsyslog.target}\n"
                      "  interval: 1\n")
    book = tmp_path / "book.md"
    book.write_text("# Signed\n## Steps\n- `echo one --x`\n- `sh -c 'exit 4'`\n")
    env = {**ssh_agent.env, "RUNBOOK_TUI_CONFIG": str(config)}
    assert rbt("trust", str(book), env=env, cwd=tmp_path).returncode == 0
    transcript = tmp_path / "t.jsonl"
    done = rbt("run", str(book), "--yes", "--transcript", str(transcript), env=env, cwd=tmp_path)
    assert done.returncode == 1  # the second task fails: a failed run is signed all the same
    assert "signed with" in done.stderr, done.stderr
    assert Path(f"{transcript}.sig").exists()
    events = verify(transcript).events
    rsyslog.wait_for(lambda cps: any(c.seq == events - 1 for c in cps), "the seal")
    checked = rbt("transcript", "verify", str(transcript), "--allowed-signers", str(allowed),
                  "--checkpoints", str(rsyslog.log), env=env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "alice@example.com" in checked.stdout
    # Someone with write access turns the failure into a success and re-hashes the chain.
    rehash(transcript, {"result": "success", "failed": []}, "run.finished")
    assert verify(transcript).ok, "the chain alone is fooled"
    forged = rbt("transcript", "verify", str(transcript), "--allowed-signers", str(allowed),
                 "--checkpoints", str(rsyslog.log), env=env, cwd=tmp_path)
    assert forged.returncode != 0, forged.stdout
