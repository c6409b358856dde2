"""Checkpoints of the chain head sent to a real rsyslog, and what verify makes of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runbook_tui.audit.checkpoints import Checkpointer, message, verify_checkpoints
from runbook_tui.audit.signing import sign_transcript, verify_signature
from runbook_tui.audit.transcript import Transcript, read_events, verify
from tests.rsyslog_collector import Collector, free_port, rsyslog  # noqa: F401 - the fixture
from tests.ssh_agent import Agent, ssh_agent  # noqa: F401 - the fixture
from tests.test_signing import ATTACKS
from tests.test_transcript import lines_of, rehash_from

RUN_ID = "r-cp"
FORMAT = re.compile(r'^<110>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ runbook-tui \d+ checkpoint '
                    r'\[runbook-tui@32473 run="r-cp" seq="(\d+)" hash="([0-9a-f]{64})"\] '
                    r"runbook-tui checkpoint run=r-cp seq=\1 hash=\2$")


def checkpointed_run(path: Path, target: str, tasks: int = 3, interval: float = 0.2) -> list[dict]:
    """run.started, per task: command.started, output, command.finished, task.finished; run.finished."""
    with Transcript.create(path, checkpoints=Checkpointer(target, interval)) as t:
        events = [t.append("run.started", run_id=RUN_ID, mode="paranoid")]
        for task in range(1, tasks + 1):
            task_id = f"1.{task}"
            events.append(t.append("command.started", task_id=task_id, command=f"echo {task}"))
            events.append(t.append("output", task_id=task_id, text=f"private output {task}\n"))
            events.append(t.append("command.finished", task_id=task_id, exit_code=0))
            events.append(t.append("task.finished", task_id=task_id, status="done"))
        events.append(t.append("run.finished", result="success"))
    return events


def sealed_in_log(collector: Collector, events: list[dict]) -> list:
    last = events[-1]
    return collector.wait_for(lambda cps: any(c.seq == last["seq"] and c.hash == last["hash"] for c in cps),
                              "the seal's checkpoint")


def test_a_run_sends_its_head_never_its_content(tmp_path: Path, rsyslog: Collector) -> None:  # noqa: F811
    path = tmp_path / "run.jsonl"
    events = checkpointed_run(path, rsyslog.target)
    found = sealed_in_log(rsyslog, events)
    hashes = {e["seq"]: e["hash"] for e in events}
    assert all(c.run == RUN_ID and hashes[c.seq] == c.hash for c in found)
    assert {0, len(events) - 1} <= {c.seq for c in found}  # the start and the seal went out at once
    log = rsyslog.log.read_text()
    assert "private output" not in log and "echo" not in log
    assert all(FORMAT.match(line) for line in log.splitlines()), log
    check = verify_checkpoints(path, rsyslog.log)
    assert (check.ok, check.complete, check.anchored, check.first_bad_seq) == (True, True, len(events) - 1, None)
    assert check.reason.startswith(f"{len(found)} checkpoints agree")


def test_heads_go_out_while_events_arrive_not_only_at_task_ends(tmp_path: Path, rsyslog: Collector) -> None:  # noqa: F811
    path = tmp_path / "run.jsonl"
    with Transcript.create(path, checkpoints=Checkpointer(rsyslog.target, 0.1)) as t:
        t.append("run.started", run_id=RUN_ID)
        outputs = []
        # a long command: output only, no task end; the interval must carry heads out meanwhile
        while not any(c.seq in outputs for c in rsyslog.checkpoints()):
            outputs.append(t.append("output", task_id="1.1", text="tick\n")["seq"])
            time.sleep(0.02)
            assert len(outputs) < 3000, "no periodic checkpoint"
        t.append("run.finished", result="success")


def attacked(tmp_path: Path, collector: Collector, attack: str) -> tuple[Path, list[dict], list]:
    path = tmp_path / "run.jsonl"
    events = checkpointed_run(path, collector.target)
    found = sealed_in_log(collector, events)
    ATTACKS[attack](path)
    return path, events, found


@pytest.mark.parametrize("attack", ["rewrite and rehash", "cut the tail", "cut and re-seal", "changed byte"])
def test_checkpoints_name_the_first_event_that_disagrees_or_is_missing(tmp_path: Path, rsyslog: Collector,  # noqa: F811
                                                                        attack: str) -> None:
    path, events, found = attacked(tmp_path, rsyslog, attack)
    check = verify_checkpoints(path, rsyslog.log)
    assert not check.ok and not check.complete
    seqs = sorted({c.seq for c in found})
    if attack == "changed byte":  # the chain itself breaks at the edited line
        assert check.reason.startswith("the chain is broken: line")
        return
    if attack == "rewrite and rehash":  # the last command.finished, 3 events before the end
        expected = min(s for s in seqs if s >= len(events) - 3)
        assert f"event seq {expected} (line {expected + 1}) disagrees" in check.reason
    elif attack == "cut the tail":  # two events gone
        expected = min(s for s in seqs if s >= len(events) - 2)
        assert f"event seq {expected} is missing" in check.reason and "cut off" in check.reason
    else:  # cut after 4 events, one forged run.finished as seq 4
        expected = min(s for s in seqs if s >= 4)
        assert f"event seq {expected} " in check.reason
    assert check.first_bad_seq == expected
    agreeing = [s for s in seqs if s < expected]
    assert check.anchored == (max(agreeing) if agreeing else None)


def test_checkpoints_forged_from_the_machine_do_not_hide_a_rewrite(tmp_path: Path, rsyslog: Collector) -> None:  # noqa: F811
    """The collector is reachable by the operator's commands too: sending heads of the forged chain
    adds records, it cannot remove the run's own, which still disagree."""
    path, events, _ = attacked(tmp_path, rsyslog, "rewrite and rehash")
    import socket

    with socket.create_connection(("127.0.0.1", rsyslog.port)) as sock:
        for event in read_events(path):
            sock.sendall(message(RUN_ID, event["seq"], event["hash"], "web-01", 1, "2026-01-01T00:00:00.000000Z"))
    rsyslog.wait_for(lambda cps: len([c for c in cps if c.seq == len(events) - 1]) >= 2, "the forged checkpoints")
    check = verify_checkpoints(path, rsyslog.log)
    assert not check.ok and "disagrees" in check.reason


def test_a_collector_down_mid_run_is_recorded_as_a_gap_and_the_run_goes_on(tmp_path: Path,
                                                                          rsyslog: Collector) -> None:  # noqa: F811
    path = tmp_path / "run.jsonl"
    checkpointer = Checkpointer(rsyslog.target, 0.1)
    with Transcript.create(path, checkpoints=checkpointer) as t:
        started = t.append("run.started", run_id=RUN_ID)
        rsyslog.wait_for(lambda cps: any(c.seq == started["seq"] for c in cps), "run.started")
        rsyslog.stop()
        t.append("task.finished", task_id="1.1", status="done")
        deadline = time.monotonic() + 30
        while not any(e["type"] == "checkpoint.gap" for e in read_events(path)):
            assert time.monotonic() < deadline, "no checkpoint.gap recorded"
            time.sleep(0.05)
        rsyslog.start()
        t.append("task.finished", task_id="1.2", status="done")
        t.append("run.finished", result="success")
    events = list(read_events(path))
    gap = next(e for e in events if e["type"] == "checkpoint.gap")
    assert gap["collector"] == rsyslog.target and gap["last_checkpoint_seq"] == 0 and gap["error"]
    assert [e["type"] for e in events][-1] == "run.finished" and verify(path).sealed
    sealed_in_log(rsyslog, events)
    check = verify_checkpoints(path, rsyslog.log)
    assert check.complete, check.reason  # the last head vouches for everything before it
    assert len(check.gaps) == 1 and f"collector {rsyslog.target} unreachable" in check.gaps[0]


def test_no_collector_at_all_never_stops_the_run(tmp_path: Path) -> None:
    """The outage is recorded once, however many heads fail to go out after it. (The first send
    is waited for: on a loaded machine the sender could otherwise first try after the seal, when
    nothing may be appended any more, and the run would rightly end without a gap event.)"""
    path = tmp_path / "run.jsonl"
    nobody = f"tcp://127.0.0.1:{free_port()}"
    with Transcript.create(path, checkpoints=Checkpointer(nobody, 0.05)) as t:
        t.append("run.started", run_id=RUN_ID, mode="paranoid")
        deadline = time.monotonic() + 30
        while not any(e["type"] == "checkpoint.gap" for e in read_events(path)):
            assert time.monotonic() < deadline, "no checkpoint.gap recorded"
            time.sleep(0.05)
        for task in ("1.1", "1.2"):
            t.append("task.finished", task_id=task, status="done")
            time.sleep(0.2)  # a few more heads fail to go out: still the same outage
        t.append("run.finished", result="success")
    kinds = [e["type"] for e in read_events(path)]
    assert kinds.count("checkpoint.gap") == 1 and kinds[-1] == "run.finished"
    log = tmp_path / "empty.log"
    log.write_text("")
    check = verify_checkpoints(path, log)
    assert not check.ok and f"holds no checkpoint for run {RUN_ID}" in check.reason


def test_cli_verify_with_checkpoints(tmp_path: Path, rsyslog: Collector) -> None:  # noqa: F811
    path = tmp_path / "run.jsonl"
    events = checkpointed_run(path, rsyslog.target)
    sealed_in_log(rsyslog, events)
    cli = [sys.executable, "-m", "runbook_tui", "transcript", "verify", str(path), "--checkpoints", str(rsyslog.log)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"vouches for every event up to the end (seq {len(events) - 1})" in done.stdout
    assert "proves: every event, up to the seal, is the one the run sent" in done.stdout
    ATTACKS["cut the tail"](path)
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "is missing" in done.stdout


# --- a command that rewrites its own transcript after the run -----------------------------------

# What the command does first: find the app's open transcript through /proc/$PPID/fd.
FIND_TRANSCRIPT = (
    "fds = f'/proc/{os.getppid()}/fd'; "
    "found = next(t for t in (os.readlink(f'{fds}/{fd}') for fd in os.listdir(fds)) if t.endswith('.jsonl'))"
)

REWRITER = textwrap.dedent('''
    """Started in the background by a task's command, with the transcript it found through
    /proc/$PPID/fd: wait for the app to exit, then remove the command's output from the file
    and recompute the chain (the format is documented)."""
    import hashlib, json, os, sys, time
    marker, app, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    while os.path.exists(f"/proc/{app}"):
        time.sleep(0.02)
    time.sleep(0.5)  # let the app's signature be written first
    events = [json.loads(line) for line in open(path, "rb")]
    kept, prev = [], "0" * 64
    for event in events:
        if "EVIL" in event.get("text", ""):
            continue
        event.pop("hash")
        event.update(seq=len(kept), prev=prev)
        body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        prev = hashlib.sha256(body).hexdigest()
        kept.append(body[:-1] + b',"hash":"' + prev.encode() + b'"}\\n')
    open(path, "wb").write(b"".join(kept))
    open(marker, "w").write("rewritten")
''')

APP = textwrap.dedent('''
    """A run: its one command starts REWRITER in the background, then prints EVIL; the run is
    checkpointed and signed at the end, as the engine does."""
    import subprocess, sys
    from pathlib import Path
    from runbook_tui.audit.checkpoints import Checkpointer
    from runbook_tui.audit.signing import sign_transcript
    from runbook_tui.audit.transcript import Transcript
    from runbook_tui.config import SigningSettings
    path, target, pub, rewriter, marker, find = sys.argv[1:7]
    t = Transcript.create(path, checkpoints=Checkpointer(target, 0.2))
    t.append("run.started", run_id="r-cp")
    t.append("command.started", task_id="1.1", command="deploy")
    command = (f"import os, subprocess, sys; exec({find!r}); "
               f"subprocess.Popen([sys.executable, {rewriter!r}, {marker!r}, str(os.getppid()), found], "
               f"start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print('EVIL')")
    out = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, check=True).stdout
    t.append("output", task_id="1.1", text=out)
    t.append("command.finished", task_id="1.1", exit_code=0)
    t.append("task.finished", task_id="1.1", status="done")
    t.append("run.finished", result="success")
    t.close()
    print(sign_transcript(path, SigningSettings(key=Path(pub), agent=True)).reason)
''')


def test_a_command_rewriting_its_own_transcript_after_the_run(tmp_path: Path, rsyslog: Collector,  # noqa: F811
                                                             ssh_agent: Agent) -> None:  # noqa: F811
    pub = ssh_agent.new_key("alice", "alice@example.com", add=True)
    allowed = ssh_agent.allowed_signers(tmp_path / "allowed", **{"alice@example.com": pub})
    rewriter, path, marker = tmp_path / "rewriter.py", tmp_path / "run.jsonl", tmp_path / "rewritten"
    rewriter.write_text(REWRITER)
    app = subprocess.Popen([sys.executable, "-c", APP, str(path), rsyslog.target, str(pub), str(rewriter), str(marker),
                            FIND_TRANSCRIPT], stdout=subprocess.PIPE, text=True, env=ssh_agent.env)
    try:
        out, _ = app.communicate(timeout=120)
    finally:
        app.kill()
    assert app.returncode == 0 and "signed with" in out, out
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the rewriter never ran"
        time.sleep(0.05)
    assert "EVIL" not in path.read_text()
    rsyslog.wait_for(lambda cps: any(c.seq == 5 for c in cps), "the seal (seq 5) of the run as it was written")
    chain = verify(path)
    assert chain.ok and chain.sealed  # the chain alone is fooled
    done = subprocess.run([sys.executable, "-m", "runbook_tui", "transcript", "verify", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "anyone with write access could have rewritten it" in done.stdout
    signature = verify_signature(path, allowed)
    assert not signature.ok and "does not match the file" in signature.reason
    check = verify_checkpoints(path, rsyslog.log)
    removed = 2  # the command's output event
    held = {c.seq for c in rsyslog.checkpoints()}
    expected, before = min(s for s in held if s >= removed), max(s for s in held if s < removed)
    assert (check.ok, check.first_bad_seq, check.anchored) == (False, expected, before), check.reason
    # heads coalesce when events come faster than they are sent: the task's end may have gone out
    # with the seal, and then the first checkpoint past the rewrite is one the file no longer reaches
    assert (f"event seq {expected} (line {expected + 1}) disagrees" if expected < chain.events
            else f"event seq {expected} is missing") in check.reason


def test_a_resumed_run_checkpoints_under_its_original_run_id(tmp_path: Path, rsyslog: Collector) -> None:  # noqa: F811
    path = tmp_path / "run.jsonl"
    with Transcript.create(path, checkpoints=Checkpointer(rsyslog.target, 0.2)) as t:
        t.append("run.started", run_id=RUN_ID)
        t.append("run.aborted", reason="operator disconnected")
    with Transcript.open_append(path, checkpoints=Checkpointer(rsyslog.target, 0.2)) as t:
        t.append("run.resumed")
        last = t.append("run.finished", result="success")
    sealed_in_log(rsyslog, [last])
    check = verify_checkpoints(path, rsyslog.log)
    assert check.complete and check.anchored == last["seq"] == 3, check.reason
