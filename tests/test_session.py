"""The run state machine with a scripted operator: modes, expectations, retries, waits, values."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runbook_tui.audit.transcript import Transcript, read_events, verify
from runbook_tui.engine.checks import Verdict
from runbook_tui.engine.session import Answer, Confirmation, Question, RunAborted, Session
from runbook_tui.model import Step, Task
from runbook_tui.parse.markdown import parse_markdown


class Operator:
    """A prompter that answers from a script and remembers what it was asked."""

    def __init__(self, confirm: str = "run", failure: str = "stop", values: dict[str, str] | None = None,
                 typed: str | None = None) -> None:
        self.confirm_answer = confirm
        self.failure_answer = failure
        self.values = values or {}
        self.typed = typed
        self.asked: list[Any] = []

    def confirm(self, request: Confirmation) -> Answer:
        self.asked.append(request)
        return Answer(self.confirm_answer, typed=self.typed)  # type: ignore[arg-type]

    def confirm_step(self, step: Step, commands: list[Confirmation]) -> Answer:
        self.asked.append(("step", step.id, [c.command for c in commands]))
        return Answer("run")

    def offer_to_store(self, secret_name: str) -> bool:
        return False

    def confirm_manual(self, task: Task, step: Step) -> Answer:
        self.asked.append(("manual", task.id))
        return Answer("done")

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        self.asked.extend(("value", q.name) for q in questions)
        return {q.name: self.values[q.name] for q in questions}

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer:
        self.asked.append(("failure", task.id, verdict.reason))
        answer = self.failure_answer
        if answer == "retry-once":
            self.failure_answer = "stop"
            return Answer("retry")
        return Answer(answer)  # type: ignore[arg-type]


def session(tmp_path: Path, text: str, operator: Operator, **kwargs: Any) -> Session:
    book = parse_markdown(textwrap.dedent(text).lstrip("\n"), str(tmp_path / "book.md"))
    transcript = Transcript.create(tmp_path / "t.jsonl")
    s = Session(book, transcript, operator, **kwargs)
    s.start()
    return s


def kinds(tmp_path: Path, kind: str) -> list[dict]:
    return [e for e in read_events(tmp_path / "t.jsonl") if e["type"] == kind]


def test_paranoid_asks_before_every_command_and_auto_does_not(tmp_path: Path) -> None:
    text = """
        # T
        ## Steps
        - `echo one --x`
        - `echo two --x`
        """
    op = Operator()
    s = session(tmp_path, text, op)
    assert s.run_all() == "success"
    assert [a.command for a in op.asked] == ["echo one --x", "echo two --x"]
    auto = tmp_path / "auto"
    auto.mkdir()
    op2 = Operator()
    s2 = session(auto, text, op2, mode="auto", trusted=True)
    assert s2.run_all() == "success" and op2.asked == []
    assert [e["reason"] for e in kinds(auto, "policy.allowed")] == ["auto mode, trusted runbook"] * 2
    untrusted = tmp_path / "untrusted"
    untrusted.mkdir()
    op3 = Operator()
    s3 = session(untrusted, text, op3, mode="auto")
    assert s3.mode == "paranoid" and s3.run_all() == "success"
    assert [a.command for a in op3.asked] == ["echo one --x", "echo two --x"]


def test_step_mode_confirms_once_per_step(tmp_path: Path) -> None:
    op = Operator()
    s = session(tmp_path, """
        # T
        ## Steps
        1. **A**
           - `echo a1 --x`
           - `echo a2 --x`
        2. **B**
           - `echo b1 --x`
        """, op, mode="step", trusted=True)
    assert s.run_all() == "success"
    assert op.asked == [("step", "1.1", ["echo a1 --x", "echo a2 --x"]), ("step", "1.2", ["echo b1 --x"])]


def test_high_risk_always_asks_with_a_typed_word_even_in_auto(tmp_path: Path) -> None:
    op = Operator(typed="production")
    s = session(tmp_path, """
        ---
        variables: {ENVIRONMENT: production}
        ---
        # T
        ## Steps
        ```sh {risk=high}
        echo dangerous
        ```
        """, op, mode="auto")
    assert s.run_all() == "success"
    assert op.asked[0].risk == "high" and op.asked[0].typed_word == "production"
    answered = kinds(tmp_path, "confirm.answered")[0]
    assert answered["typed"] == "production"


def test_resolution_steps_of_a_high_severity_runbook_are_high_risk(tmp_path: Path) -> None:
    op = Operator()
    s = session(tmp_path, """
        # T
        **Severity:** High
        ## Investigation Steps
        - `echo look --x`
        ## Resolution Steps
        - `echo change --x`
        """, op)
    s.run_all()
    assert [(a.command, a.risk) for a in op.asked] == [("echo look --x", "low"), ("echo change --x", "high")]


def test_expect_output_and_expect_exit(tmp_path: Path) -> None:
    op = Operator()
    s = session(tmp_path, """
        # T
        ## Steps
        ```sh {expect_exit=3}
        exit 3
        ```
        ```sh {expect_output="^ready$"}
        echo not-yet
        ```
        """, op, mode="auto")
    assert s.run_all() == "failed"
    finished = kinds(tmp_path, "task.finished")
    assert [f["status"] for f in finished] == ["done", "failed"]
    assert finished[1]["reason"] == "output did not match /^ready$/"


def test_retries_rerun_automatically_then_ask(tmp_path: Path) -> None:
    marker = tmp_path / "count"
    op = Operator()
    s = session(tmp_path, f"""
        # T
        ## Steps
        ```sh {{retries=2}}
        echo x >> {marker}; test $(wc -l < {marker}) -ge 3
        ```
        """, op, mode="auto")
    assert s.run_all() == "success"
    started = kinds(tmp_path, "command.started")
    assert [e["attempt"] for e in started] == [1, 2, 3]


def test_operator_retry_after_failure(tmp_path: Path) -> None:
    marker = tmp_path / "flag"
    op = Operator(failure="retry-once")
    s = session(tmp_path, f"""
        # T
        ## Steps
        ```sh
        test -f {marker} || {{ touch {marker}; exit 1; }}
        ```
        """, op, mode="auto")
    assert s.run_all() == "success"
    assert [e["exit_code"] for e in kinds(tmp_path, "command.finished")] == [1, 0]
    assert ("failure", "1.1.1", "exit code 1, expected 0") in op.asked


def test_wait_until_polls_until_it_passes(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    s = session(tmp_path, f"""
        # T
        ## Steps
        ```sh {{wait_until=20s interval=0.3s}}
        test -f {flag} || {{ touch {flag}; exit 1; }}
        ```
        """, Operator(), mode="auto")
    assert s.run_all() == "success"
    assert [e["exit_code"] for e in kinds(tmp_path, "command.finished")] == [1, 0], "fails once, passes next time"


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    s = session(tmp_path, f"""
        # T
        ## Steps
        ```sh {{timeout=1s}}
        sleep 300 & echo $! > {pidfile}; sleep 300
        ```
        """, Operator(), mode="auto", grace=0.5)
    assert s.run_all() == "failed"
    finished = kinds(tmp_path, "command.finished")[0]
    assert finished["timed_out"] is True
    assert kinds(tmp_path, "task.finished")[0]["reason"] == "timed out after 1s"
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


class InterruptsOnSpawn:
    """Ctrl+C once the command runs (a timer could fire before it starts, on a busy machine)."""

    session: Session | None = None

    def event(self, event: dict[str, Any]) -> None:
        if event["type"] == "command.spawned" and self.session is not None:
            self.session.interrupt()

    def output(self, task_id: str, text: str, host: str | None = None) -> None:
        pass


def test_interrupt_aborts_the_run(tmp_path: Path) -> None:
    s = session(tmp_path, """
        # T
        ## Steps
        ```sh
        sleep 300
        ```
        """, Operator(), mode="auto", grace=0.5, observer=InterruptsOnSpawn())
    s.observer.session = s  # type: ignore[union-attr]
    with pytest.raises(RunAborted):
        s.run_all()
    s.aborted("test")
    assert kinds(tmp_path, "command.finished")[0]["aborted"] is True
    assert verify(tmp_path / "t.jsonl").ok


def test_values_reach_commands_as_environment_variables_never_pasted(tmp_path: Path) -> None:
    op = Operator(values={"TARGET": "a; touch pwned"})
    s = session(tmp_path, """
        # T
        ## Steps
        ```sh {env="GREETING=hello" cwd=/tmp}
        echo "$GREETING $TARGET from $(pwd)"
        ```
        """, op, mode="auto")
    assert s.run_all() == "success"
    started = kinds(tmp_path, "command.started")[0]
    assert started["run_command"] == 'echo "$GREETING $TARGET from $(pwd)"'
    assert started["cwd"] == "/tmp" and {"GREETING", "TARGET"} <= set(started["env_names"])
    out = "".join(e["text"] for e in kinds(tmp_path, "output"))
    assert "hello a; touch pwned from /tmp" in out
    assert not Path("/tmp/pwned").exists()
    assert ("value", "TARGET") in op.asked


def test_skip_note_and_manual(tmp_path: Path) -> None:
    op = Operator(confirm="skip")
    s = session(tmp_path, """
        # T
        ## Steps
        1. **Check**
           - Confirm CI is green.
           - `echo skipped --x`
        """, op)
    s.note("starting the window")
    assert s.run_all() == "success"
    assert [f["status"] for f in kinds(tmp_path, "task.finished")] == ["manual", "skipped"]
    assert kinds(tmp_path, "note")[0]["text"] == "starting the window"
    assert s.finish() == "success"


def test_a_failed_start_is_recorded(tmp_path: Path) -> None:
    s = session(tmp_path, "# T\n## Steps\n```sh\necho hi\n```\n", Operator(), mode="auto", shell="/nonexistent/sh")
    assert s.run_all() == "failed"
    finished = kinds(tmp_path, "command.finished")[0]
    assert finished["exit_code"] == 127 and "cannot start" in finished["error"]
    assert os.path.exists(tmp_path / "t.jsonl") and verify(tmp_path / "t.jsonl").ok


# ---- a command that out-writes the transcript ----------------------------------------------------

def _feeding(stream: Any, chunks: int, size: int) -> tuple[threading.Thread, list[int]]:
    """A stand-in PTY reader feeding `chunks` chunks of `size` characters; the list counts them."""
    fed: list[int] = []

    def reader() -> None:
        for number in range(chunks):
            stream.feed("x" * size)
            fed.append(number)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    return thread, fed


def _bounded_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wait: float) -> Any:
    """An output stream that holds its reader back past 1,000 pending characters, `wait` s at a time."""
    from runbook_tui.engine import session as session_module

    monkeypatch.setattr(session_module, "PENDING_MAX", 1000)
    monkeypatch.setattr(session_module, "PENDING_WAIT", wait)
    s = session(tmp_path, "# T\n## Steps\n- `echo x --y`\n", Operator())
    return session_module.OutputStream(s, "1.1.1")


def test_output_beyond_the_pending_limit_waits_for_the_flush(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader is held back, like a command writing to a slow terminal; nothing is lost."""
    stream = _bounded_stream(tmp_path, monkeypatch, wait=60.0)
    thread, fed = _feeding(stream, 6, 600)
    deadline = time.monotonic() + 10
    while len(fed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(fed) == 2, "1,200 characters pending: the third chunk waits for a flush"
    while thread.is_alive() and time.monotonic() < deadline:
        stream.flush()
        time.sleep(0.02)
    assert len(fed) == 6
    stream.close()
    recorded = "".join(e["text"] for e in kinds(tmp_path, "output"))
    assert recorded == "x" * 3600


def test_a_stalled_flush_slows_the_reader_but_never_stops_it(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _bounded_stream(tmp_path, monkeypatch, wait=0.05)
    thread, fed = _feeding(stream, 6, 600)
    thread.join(30)
    assert len(fed) == 6, "no flush came, and the reader went on after waiting"
    stream.close()
    assert "".join(e["text"] for e in kinds(tmp_path, "output")) == "x" * 3600
