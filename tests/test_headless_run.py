"""`runbook-tui run`, `resume` and `transcript` end to end: real processes, real PTYs, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runbook_tui.engine.containment import ProcessIdentity, live_members
from runbook_tui.audit.transcript import read_events
from tests.paths import SEED
from tests.test_markdown_seed import SEED_COMMANDS


def write(tmp_path: Path, text: str, name: str = "book.md") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI without a terminal. `run ... --yes` trusts the runbook first, as an operator
    must before an unattended run (test_untrusted_runbook_falls_back_to_paranoid covers the rest)."""
    if args[0] == "run" and "--yes" in args:
        subprocess.run([sys.executable, "-m", "runbook_tui", "trust", args[1]], check=True, capture_output=True,
                       cwd=cwd, env={**os.environ, **(env or {})})
    return subprocess.run([sys.executable, "-m", "runbook_tui", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


def events(path: Path, kind: str | None = None) -> list[dict]:
    return [e for e in read_events(path) if kind is None or e["type"] == kind]


def output_of(path: Path, task_id: str) -> str:
    return "".join(e["text"] for e in events(path, "output") if e["task_id"] == task_id)


def test_colors_and_a_terminal(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # T
        ## Steps
        1. **Look**
           ```sh
           printf '\\033[31mred\\033[0m\\n'
           test -t 1 && echo stdout-is-a-tty
           test -t 0 && echo stdin-is-a-tty
           ```
        """)
    transcript = tmp_path / "t.jsonl"
    result = cli("run", str(book), "--yes", "--transcript", str(transcript), timeout=60)
    assert result.returncode == 0, result.stderr
    out = output_of(transcript, "1.1.1")
    assert "\x1b[31mred\x1b[0m" in out
    assert "stdout-is-a-tty" in out and "stdin-is-a-tty" in out, "every command has a terminal it can use"
    finished = events(transcript, "command.finished")[0]
    assert finished["exit_code"] == 0
    started = events(transcript, "run.started")[0]
    assert started["runbook"]["sha256"] and started["operator"]["user"] and started["mode"] == "paranoid"


def test_a_command_waiting_for_input_no_one_can_give_fails_with_a_clear_message(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # T
        ## Steps
        - `read -r -p 'Type your name: ' name; echo "hello $name"`
        - `echo never-reached --x`
        """)
    transcript = tmp_path / "t.jsonl"
    started = time.monotonic()
    result = cli("run", str(book), "--yes", "--transcript", str(transcript), timeout=60)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 45, "it did not wait for ever"
    (finished,) = events(transcript, "task.finished")
    assert finished["status"] == "failed" and "waiting for input" in finished["reason"]
    assert "Type your name:" in output_of(transcript, "1.1.1"), "its prompt is shown"
    assert "never-reached" not in result.stdout


def test_exit_codes_failure_and_noop(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # T
        ## Steps
        - Fail: `false --now`
        - Never reached: `touch reached --flag`
        """)
    transcript = tmp_path / "t.jsonl"
    result = cli("run", str(book), "--yes", "--transcript", str(transcript), cwd=tmp_path)
    assert result.returncode == 1
    assert not (tmp_path / "reached").exists()
    statuses = [e["status"] for e in events(transcript, "task.finished")]
    assert statuses == ["failed"]
    assert events(transcript, "run.finished")[0]["result"] == "failed"


def test_seed_runs_end_to_end_in_noop_and_shows_exactly_what_would_run(tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    result = cli("run", str(SEED), "--mode", "noop", "--transcript", str(transcript), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    planned = events(transcript, "command.planned")
    assert [e["run_command"] for e in planned] == SEED_COMMANDS
    for event in planned:
        assert f"would run [{event['task_id']}]" in result.stdout
        assert event["run_command"] in result.stdout
    assert not events(transcript, "command.started")
    assert cli("transcript", "verify", str(transcript)).returncode == 0


def test_yes_never_confirms_high_risk(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # T
        ## Steps
        ```sh {risk=high}
        touch ran
        ```
        """)
    transcript = tmp_path / "t.jsonl"
    result = cli("run", str(book), "--yes", "--transcript", str(transcript), cwd=tmp_path)
    assert result.returncode == 1 and not (tmp_path / "ran").exists()
    finished = events(transcript, "task.finished")[0]
    assert finished["status"] == "not_confirmed" and "--confirm-high-risk" in finished["reason"]
    transcript2 = tmp_path / "t2.jsonl"
    result = cli("run", str(book), "--yes", "--confirm-high-risk", "--transcript", str(transcript2), cwd=tmp_path)
    assert result.returncode == 0 and (tmp_path / "ran").exists()
    answer = events(transcript2, "confirm.answered")[0]
    assert answer["answer"] == "run" and answer["typed"] == "--confirm-high-risk"


def test_without_a_terminal_nothing_runs_unless_yes(tmp_path: Path) -> None:
    book = write(tmp_path, "# T\n## Steps\n- `touch ran --x`\n")
    result = cli("run", str(book), "--transcript", str(tmp_path / "t.jsonl"), cwd=tmp_path)
    assert result.returncode == 2 and "pass --yes" in result.stderr
    assert not (tmp_path / "t.jsonl").exists()


def test_manual_task_without_terminal_is_not_confirmed(tmp_path: Path) -> None:
    book = write(tmp_path, "# T\n## Steps\n1. **Check**\n   - Confirm CI is green.\n")
    transcript = tmp_path / "t.jsonl"
    result = cli("run", str(book), "--mode", "auto", "--transcript", str(transcript), cwd=tmp_path)
    assert result.returncode == 2  # auto mode still needs --yes without a terminal
    result = cli("run", str(book), "--yes", "--transcript", str(transcript), cwd=tmp_path)
    assert result.returncode == 0
    assert events(transcript, "task.finished")[0]["status"] == "manual"


def test_missing_variable_without_terminal_is_bad_input(tmp_path: Path) -> None:
    book = write(tmp_path, "# T\n## Steps\n- `echo $WHO <greeting>`\n")
    result = cli("run", str(book), "--yes", "--transcript", str(tmp_path / "t.jsonl"))
    assert result.returncode == 2
    assert "$WHO" in result.stderr and "<greeting>" in result.stderr
    transcript = tmp_path / "t2.jsonl"
    result = cli("run", str(book), "--yes", "--var", "WHO=ops", "--var", "greeting=it's me",
                 "--transcript", str(transcript))
    assert result.returncode == 0, result.stderr
    started = events(transcript, "command.started")[0]
    assert started["command"] == "echo $WHO <greeting>"
    assert started["run_command"] == "echo $WHO 'it'\"'\"'s me'"
    assert "WHO" in started["env_names"]
    assert "ops it's me" in output_of(transcript, "1.1.1")


def test_unwritable_transcript_means_nothing_runs(tmp_path: Path) -> None:
    book = write(tmp_path, "# T\n## Steps\n- `touch ran --x`\n")
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    result = cli("run", str(book), "--yes", "--transcript", str(blocked / "t.jsonl"), cwd=tmp_path)
    assert result.returncode == 2 and "nothing was run" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ran").exists()


SECRET = "pa$$ w0rd/with:odd&chars"


def test_secret_never_reaches_transcript_or_exports(tmp_path: Path) -> None:
    book = write(tmp_path, """
        ---
        secrets: {DB_PASSWORD: "env:TEST_DB_PASSWORD"}
        ---
        # T
        ## Steps
        1. **Leak it every way**
           ```sh
           echo "whole: $DB_PASSWORD"
           half=$(( ${#DB_PASSWORD} / 2 ))
           printf 'split: %s' "${DB_PASSWORD:0:$half}"; sleep 0.5; printf '%s\\n' "${DB_PASSWORD:$half}"
           printf 'quoted: %q\\n' "$DB_PASSWORD"
           python3 -c 'import os, urllib.parse; print("url:", urllib.parse.quote(os.environ["DB_PASSWORD"], safe=""))'
           python3 -c 'import os, shlex; print("shlex:", shlex.quote(os.environ["DB_PASSWORD"]))'
           ```
        """)
    transcript = tmp_path / "t.jsonl"
    result = cli("run", str(book), "--yes", "--transcript", str(transcript), env={"TEST_DB_PASSWORD": SECRET})
    assert result.returncode == 0, result.stderr
    from urllib.parse import quote
    import shlex
    forms = [SECRET, quote(SECRET, safe=""), shlex.quote(SECRET), SECRET.replace("$", "\\$").replace(" ", "\\ ")]
    raw = transcript.read_text()
    out = output_of(transcript, "1.1.1")
    assert out.count("[REDACTED:DB_PASSWORD]") >= 5
    for fmt in ("md", "json", "cast"):
        exported = cli("transcript", "export", str(transcript), "--format", fmt).stdout
        for form in forms:
            assert form not in exported, (fmt, form)
    for form in forms:
        assert form not in raw and form not in result.stdout
    assert events(transcript, "run.started")[0]["secrets"] == ["DB_PASSWORD"]


def test_million_lines_recorded_completely_with_bounded_memory(tmp_path: Path) -> None:
    book = write(tmp_path, "# T\n## Steps\n```sh\nseq 1000000\n```\n")
    transcript = tmp_path / "t.jsonl"
    assert cli("trust", str(book)).returncode == 0
    proc = subprocess.run(
        [sys.executable, "-c",
         "import runpy, sys; sys.argv=['runbook-tui','run',sys.argv[1],'--yes','--transcript',sys.argv[2]]\n"
         "try:\n    runpy.run_module('runbook_tui', run_name='__main__')\n"
         "except SystemExit as e:\n    code = e.code\n"
         # VmHWM, not ru_maxrss: the latter keeps the forking pytest's size across exec
         "hwm = next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
         "print('RSS_KB', hwm, 'CODE', code, file=sys.stderr)",
         str(book), str(transcript)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )
    stats = proc.stderr.split("RSS_KB")[-1].split()
    assert stats[2] == "0", proc.stderr[-2000:]
    text = output_of(transcript, "1.1.1")
    lines = text.split("\r\n")
    assert lines[0] == "1" and lines[999999] == "1000000" and len([ln for ln in lines if ln]) == 1000000
    assert int(stats[0]) < 150_000, f"peak RSS {stats[0]} kB"  # the 6.9 MB output is not held in memory


def test_sigkill_mid_output_then_verify_and_resume(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # T
        ## Steps
        1. **First**
           - `echo first-done --x`
        2. **Long**
           - `bash -c 'for i in $(seq 1 100); do seq -f "line %g" 1 2000; sleep 0.05; done'`
        3. **After**
           - `echo after-done --x`
        """)
    transcript = tmp_path / "t.jsonl"
    assert cli("trust", str(book)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "runbook_tui", "run", str(book), "--yes",
                             "--transcript", str(transcript)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if transcript.exists() and sum(1 for e in read_events(transcript) if e["type"] == "output"
                                       and e["task_id"] == "1.2.1") >= 3:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    verified = cli("transcript", "verify", str(transcript))
    assert verified.returncode == 0, verified.stderr
    assert [e["type"] for e in events(transcript)][-1] in ("output", "command.spawned")
    spawned = events(transcript, "command.spawned")[-1]
    identity = ProcessIdentity(**{k: spawned[k] for k in ("pid", "pgid", "sid", "start_time", "cgroup", "tag")})
    deadline = time.time() + 10  # the leader dies with the app (PR_SET_PDEATHSIG); its children follow
    while live_members(identity) and time.time() < deadline:
        time.sleep(0.05)
    assert not live_members(identity), "the command did not outlive the app that ran it"
    resumed = cli("resume", str(transcript), "--yes", "--interrupted", "rerun", timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "already done in this run: 1.1.1 done" in resumed.stderr
    kinds = events(transcript)
    assert any(e["type"] == "run.resumed" and e["interrupted_task"] == "1.2.1" for e in kinds)
    started_after = [e["task_id"] for e in kinds[[e["type"] for e in kinds].index("run.resumed"):]
                     if e["type"] == "command.started"]
    assert started_after == ["1.2.1", "1.3.1"]  # 1.1.1 finished before the kill and is not run again
    assert cli("transcript", "verify", str(transcript)).returncode == 0


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap"])
def test_verify_names_the_first_tampered_line(tmp_path: Path, tamper: str) -> None:
    book = write(tmp_path, "# T\n## Steps\n- `echo one --x`\n- `echo two --x`\n")
    transcript = tmp_path / "t.jsonl"
    assert cli("run", str(book), "--yes", "--transcript", str(transcript)).returncode == 0
    lines = transcript.read_bytes().splitlines(keepends=True)
    if tamper == "edit":
        lines[4] = lines[4].replace(b'"seq"', b'"Seq"', 1) if b'"seq"' in lines[4] else lines[4][:-3] + b"X" + lines[4][-2:]
    elif tamper == "delete":
        del lines[4]
    else:
        lines[4], lines[5] = lines[5], lines[4]
    transcript.write_bytes(b"".join(lines))
    result = cli("transcript", "verify", str(transcript))
    assert result.returncode == 1
    assert f"{transcript}:5:" in result.stderr


def test_runs_lists_past_runs_newest_first(tmp_path: Path) -> None:
    book = write(tmp_path, "# Listed Runbook\n## Steps\n- `echo hi --x`\n")
    for name in ("a.jsonl", "b.jsonl"):
        assert cli("run", str(book), "--yes", "--transcript", str(tmp_path / "runs" / name)).returncode == 0
        time.sleep(1.1)
    header, *listing = cli("runs", "--dir", str(tmp_path / "runs")).stdout.splitlines()
    assert header.split() == ["STARTED", "RESULT", "OPERATOR", "RUNBOOK", "TRANSCRIPT"]
    assert len(listing) == 2 and "b.jsonl" in listing[0] and "a.jsonl" in listing[1]
    assert all("success" in line and "Listed Runbook" in line for line in listing)
    assert cli("run", str(book), "--mode", "noop", "--transcript", str(tmp_path / "elsewhere" / "c.jsonl")).returncode == 0
    _, *everywhere = cli("runs").stdout.splitlines()  # the index remembers transcripts written anywhere
    assert [line.rsplit(None, 1)[-1] for line in everywhere] == [
        str((tmp_path / d / n).resolve()) for d, n in (("elsewhere", "c.jsonl"), ("runs", "b.jsonl"), ("runs", "a.jsonl"))]
    assert "success (noop)" in everywhere[0]


def test_check_json_prints_the_model(tmp_path: Path) -> None:
    result = cli("check", str(SEED), "--json")
    assert result.returncode == 0
    model = json.loads(result.stdout)
    tasks = [t for s in model["sections"] for st in s["steps"] for t in st["tasks"]]
    assert all(t["kind"] in ("command", "manual") for t in tasks)
    assert [t["command"] for t in tasks if t["kind"] == "command"][0] == "python src/manage.py check"


def test_untrusted_runbook_falls_back_to_paranoid(tmp_path: Path) -> None:
    book = write(tmp_path, "# T\n## Steps\n- `touch ran --x`\n")
    plain = subprocess.run([sys.executable, "-m", "runbook_tui", "run", str(book), "--yes",
                            "--transcript", str(tmp_path / "t.jsonl")], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, cwd=tmp_path, timeout=60)
    assert plain.returncode == 2 and "not trusted" in plain.stderr and "runbook-tui trust" in plain.stderr
    assert not (tmp_path / "ran").exists()
    assert "not trusted" in cli("check", str(book)).stdout
    assert cli("trust", str(book)).returncode == 0
    assert ", trusted" in cli("check", str(book)).stdout
    book.write_text(book.read_text() + "- `touch also --x`\n")  # changed: trust no longer holds
    assert "not trusted" in cli("check", str(book)).stdout


def test_a_default_task_timeout_stops_a_task_without_its_own_and_is_recorded(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # T
        ## Steps
        - `sleep 30`
        - `sleep 0.1` <!-- runbook: timeout=20s -->
        """)
    assert cli("trust", str(book)).returncode == 0
    transcript = tmp_path / "t.jsonl"
    result = cli("run", str(book), "--yes", "--task-timeout", "1s", "--transcript", str(transcript), timeout=60)
    assert result.returncode == 1, result.stderr
    assert events(transcript, "run.started")[0]["task_timeout"] == 1.0
    (finished,) = events(transcript, "command.finished")
    assert finished["timed_out"] is True and finished["duration"] < 10
    bad = cli("run", str(book), "--task-timeout", "soon")
    assert bad.returncode == 2 and "--task-timeout" in bad.stderr and "Traceback" not in bad.stderr


def test_wait_until_polls_print_one_line_each_not_the_script_again(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # T
        ## Steps
        1. **Wait**
           ```sh {wait_until=20s interval=0.2s}
           echo polling-the-service
           test -e ready.marker || { touch seen.marker; test -e seen2.marker || { touch seen2.marker; exit 1; }; touch ready.marker; exit 1; }
           ```
        """)
    transcript = tmp_path / "t.jsonl"
    result = cli("run", str(book), "--yes", "--transcript", str(transcript), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test -e ready.marker") == 1, result.stdout
    assert "… attempt 2 of 1.1.1" in result.stdout and "… attempt 3 of 1.1.1" in result.stdout
