"""What the session writes down, read back field by field from a real transcript.

Pinned by mutation testing of engine/session.py (RELIABILITY.md, "Mutation testing"): each test
here fails on mutants that survived the session, policy and invariant tests, because no test
read back the field they changed or took the path they were on (a forgotten value, a jump, a
resumed chain, an interactive task, a command waiting for input, the fan-out's noop plan and
its per-host output lines). In-process and fast, commands on a real PTY, so that the mutation
run can afford them.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from runbook_tui import __version__
from runbook_tui.audit.transcript import Transcript, read_events, verify
from runbook_tui.engine.checks import Verdict
from runbook_tui.engine.runner import PtyProcess
from runbook_tui.engine.session import (NO_ANSWER, Answer, Confirmation, MissingValue, OutputStream, Question,
                                        RunAborted, RunEnded, RunState, Session, TaskOutcome, operator_facts)
from runbook_tui.model import Task
from runbook_tui.parse.markdown import parse_markdown
from runbook_tui.process import ExitStatus
from tests.test_session_invariant import RandomOperator


def events(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in read_events(path) if kind is None or e["type"] == kind]


def make(tmp_path: Path, text: str, operator: Any = None, **kwargs: Any) -> tuple[Session, Path]:
    book = parse_markdown(textwrap.dedent(text).lstrip("\n"), str(tmp_path / "book.md"))
    (tmp_path / "book.md").write_text(textwrap.dedent(text).lstrip("\n"))
    path = tmp_path / "t.jsonl"
    session = Session(book, Transcript.create(path), operator or RandomOperator([]), **kwargs)
    session.start()
    return session, path


TWO = """
    # Two
    ## Steps
    1. **Greet**
       - `echo "hi $WHO" --x`
       - Look at the dashboard
    """


def test_a_forgotten_value_is_recorded_once_and_asked_again(tmp_path: Path) -> None:
    session, path = make(tmp_path, TWO, values={"WHO": "ann"})
    session.forget_value("WHO")
    session.forget_value("WHO")  # gone already: nothing more to record
    session.forget_value("NEVER_GIVEN")
    assert "WHO" not in session.values
    step = session.runbook.sections[0].steps[0]
    assert session.resolve(step.tasks[0]) == 'echo "hi $WHO" --x'
    session.transcript.close()
    assert [e["name"] for e in events(path, "value.forgotten")] == ["WHO"]
    (given,) = events(path, "values.given")
    assert given["values"] == {"WHO": "v"}, "the next task that needs it asks for it again"


def test_a_jump_and_a_task_marked_done_are_on_the_record(tmp_path: Path) -> None:
    session, path = make(tmp_path, TWO)
    step = session.runbook.sections[0].steps[0]
    session.jumped(step.tasks[1].id)
    outcome = session.mark_done(step.tasks[1], step)
    session.transcript.close()
    assert outcome.status == "manual" and session.state.finished[step.tasks[1].id] is outcome
    (jumped,) = events(path, "operator.jumped")
    assert jumped["to"] == "1.1.2"
    (finished,) = events(path, "task.finished")
    assert (finished["task_id"], finished["step_id"], finished["status"], finished["title"]) == (
        "1.1.2", "1.1", "manual", "Look at the dashboard")
    assert finished["fingerprint"] == step.tasks[1].fingerprint and "reason" not in finished
    assert "exit_code" not in finished


def test_run_started_and_run_resumed_say_who_what_and_how(tmp_path: Path) -> None:
    session, path = make(tmp_path, TWO, values={"WHO": "ann"}, secrets={"TOKEN": "s3cr3t-xyz"}, trusted=True,
                         mode="auto", task_timeout=30.0, host_keys="accept-new",
                         git_facts={"user": "Ann <ann@example.org>"})
    step = session.runbook.sections[0].steps[0]
    session.mark_done(step.tasks[1], step)
    session.transcript.close()
    (started,) = events(path, "run.started")
    assert started["run_id"] == session.run_id and started["tool_version"] == __version__
    assert started["runbook"] == {"path": str(tmp_path / "book.md"), "sha256": session.runbook.sha256,
                                  "title": "Two"}
    assert (started["mode"], started["trusted"], started["task_timeout"], started["host_keys"]) == (
        "auto", True, 30.0, "accept-new")
    tty = os.ttyname(0) if os.isatty(0) else None
    assert started["operator"] == {"user": getpass.getuser(), "host": socket.gethostname(), "tty": tty,
                                   "git_user": "Ann <ann@example.org>"}
    assert started["variables"] == {"WHO": "ann"} and started["secrets"] == ["TOKEN"]
    assert started["cwd"] == os.getcwd() and started["concurrent_run"] is None
    assert started["git"] == {"user": "Ann <ann@example.org>"}

    state = RunState(finished={"1.1.2": TaskOutcome("manual"), "1.1.1": TaskOutcome("done", exit_code=0)},
                     hosts_done={"1.1.1": {"web-02": "echo hi", "web-01": "echo hi"}})
    resumed = Session(session.runbook, Transcript.open_append(path), RandomOperator([]), state=state,  # type: ignore[arg-type]
                      trusted=False, mode="auto", git_facts={"user": "Bob"})
    resumed.resume("1.1.1")
    resumed.transcript.close()
    assert verify(path).ok, "run.resumed continues the same chain"
    (event,) = events(path, "run.resumed")
    assert event["run_id"] == resumed.run_id != session.run_id
    assert (event["mode"], event["trusted"]) == ("paranoid", False), "an untrusted resume does not run in auto"
    assert event["operator"] == {"user": getpass.getuser(), "host": socket.gethostname(), "tty": tty,
                                 "git_user": "Bob"}
    assert event["runbook"] == {"path": str(tmp_path / "book.md"), "sha256": session.runbook.sha256}
    assert event["interrupted_task"] == "1.1.1" and event["finished"] == ["1.1.1", "1.1.2"]
    assert event["hosts_done"] == {"1.1.1": ["web-01", "web-02"]}


def stand_in_terminal(seen: list[dict[str, Any]]) -> Callable[..., ExitStatus]:
    """The operator's terminal as a front end supplies it, here without a screen: the program
    runs on a PTY of its own and its output goes where the session says."""

    def run(argv: list[str], *, on_output: Callable[[str], None], cwd: str, env: Mapping[str, str]) -> ExitStatus:
        proc = PtyProcess.spawn(argv, on_output=on_output, cwd=cwd, env=env)
        status = proc.wait()
        assert status is not None
        seen.append({"argv": argv, "cwd": cwd, "env": dict(env), "status": status})
        return status

    return run


INTERACTIVE = """
    # Shell
    ## Steps
    1. **Look around**
       ```sh {interactive=true cwd=/tmp expect_output="as ann"}
       echo "in $PWD as $WHO"
       ```
       ```sh {interactive=true}
       kill -TERM $$
       ```
    """


def interactive_end(task_id: str, status: ExitStatus) -> dict[str, Any]:
    return {"task_id": task_id, "exit_code": status.exit_code, "signal": status.signal,
            "duration": round(status.duration, 3), "timed_out": False, "aborted": False, "attempt": 1,
            "interactive": True}


def test_an_interactive_task_runs_on_the_terminal_and_its_end_is_recorded(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    watching = Watching()
    session, path = make(tmp_path, INTERACTIVE, RandomOperator(["run", "run"]), values={"WHO": "ann"},
                         terminal=stand_in_terminal(seen), shell="sh", observer=watching)
    assert session.run_all() == "failed"
    session.transcript.close()
    assert watching.live == [], "the program drew on the operator's terminal itself: no second copy in a pane"
    first, second = seen
    assert first["argv"][0] == "sh" and first["argv"][-1].startswith('echo "in $PWD as $WHO"')
    assert first["cwd"] == "/tmp" and first["env"]["WHO"] == "ann" and second["cwd"] == os.getcwd()
    assert (first["status"].exit_code, second["status"].exit_code, second["status"].signal) == (0, None, 15)
    assert unstamped(path, "command.finished") == [interactive_end("1.1.1", first["status"]),
                                                   interactive_end("1.1.2", second["status"])]
    assert "in /tmp as ann" in "".join(e["text"] for e in events(path, "output"))
    assert [(t["status"], t.get("exit_code")) for t in unstamped(path, "task.finished")] == [
        ("done", 0), ("failed", 128 + 15)], "a signal's exit code as a shell reports it"


def test_an_interactive_task_without_a_terminal_fails_with_126_and_says_why(tmp_path: Path) -> None:
    session, path = make(tmp_path, INTERACTIVE, RandomOperator(["run"]), values={"WHO": "ann"})
    assert session.run_all() == "failed"
    session.transcript.close()
    assert unstamped(path, "command.finished") == [
        interactive_end("1.1.1", ExitStatus(exit_code=126, signal=None, duration=0.0))]
    output = "".join(e["text"] for e in events(path, "output"))
    assert output == ("cannot run interactively: an interactive task needs the operator's terminal, "
                      "and this run has none\r\n")
    (task,) = events(path, "task.finished")
    assert task["exit_code"] == 126


class Typist(RandomOperator):
    """Answers a command's questions from a list: a line, None (do not answer) or MissingValue."""

    def __init__(self, answers: list[str], lines: list[str | None | type[MissingValue]]) -> None:
        super().__init__(answers)
        self.lines = list(lines)
        self.shown: list[tuple[str, str, bool]] = []

    def ask_input(self, task: Task, shown: str, masked: bool) -> str | None:
        self.shown.append((task.id, shown, masked))
        line = self.lines.pop(0)
        if line is MissingValue:
            raise MissingValue("no one at the terminal")
        return line  # type: ignore[return-value]


ASKS = """
    # Ask
    ## Steps
    1. **Ask**
       - `read -r -p 'name: ' who; echo "hello $who"`
       - `read -r -s -p 'password: ' pw; echo; echo "got ${#pw} characters"`
    """


def test_the_operator_answers_a_command_and_a_password_is_never_recorded(tmp_path: Path) -> None:
    operator = Typist(["run", "run"], ["bob", "hunter2-Zq9"])
    session, path = make(tmp_path, ASKS, operator)
    assert session.run_all() == "success"
    session.transcript.close()
    assert [(task, masked) for task, _, masked in operator.shown] == [("1.1.1", False), ("1.1.2", True)]
    assert operator.shown[0][1].endswith("name: ") and operator.shown[1][1].endswith("password: ")
    sent = events(path, "input.sent")
    assert [(e["task_id"], e["masked"], e["text"]) for e in sent] == [("1.1.1", False, "bob"), ("1.1.2", True, None)]
    output = "".join(e["text"] for e in events(path, "output"))
    assert "hello bob" in output and "got 11 characters" in output
    assert "hunter2-Zq9" not in path.read_text()
    types = [e["type"] for e in events(path)]
    assert types.index("input.sent") > types.index("output"), "the question is on the record before the answer"


def ask_first(tmp_path: Path, operator: Typist) -> tuple[TaskOutcome, Path]:
    """Run only the first task of ASKS (a command that asks for a name), `operator` answering."""
    session, path = make(tmp_path, ASKS, operator)
    step = session.runbook.sections[0].steps[0]
    outcome = session.run_task(step.tasks[0], step)
    session.transcript.close()
    return outcome, path


def test_a_question_the_operator_declines_stops_the_command_and_says_so(tmp_path: Path) -> None:
    operator = Typist(["run"], [None])
    outcome, path = ask_first(tmp_path, operator)
    assert outcome.status == "failed" and outcome.reason == "the operator did not answer the command's question"
    (declined,) = events(path, "input.declined")
    assert declined["task_id"] == "1.1.1" and not events(path, "input.sent")
    output = "".join(e["text"] for e in events(path, "output"))
    assert output == "name: \r\n[runbook-tui] the operator did not answer the command's question; it was stopped\r\n"


FLEET = """
    ---
    hosts:
      web: [web-01, web-02, web-03, web-04, web-05]
    ---
    # Fleet
    ## Steps
    1. **Deploy**
       ```sh {hosts=web serial=1,50%}
       echo deployed
       ```
    """


def test_noop_of_a_fan_out_records_its_batches_and_connects_nowhere(tmp_path: Path) -> None:
    session, path = make(tmp_path, FLEET, mode="noop")
    assert session.run_all() == "success"
    session.close_targets()
    session.transcript.close()
    (planned,) = events(path, "command.planned")
    assert planned["batches"] == ["batch 1/3 (1 host): web-01", "batch 2/3 (2 hosts): web-02, web-03",
                                  "batch 3/3 (2 hosts): web-04, web-05"]
    assert session._ssh is None, "noop makes no SSH connection"
    assert not events(path, "command.started")


def test_the_ssh_pool_is_made_once_with_the_runs_host_key_policy_and_closed(tmp_path: Path) -> None:
    session, _ = make(tmp_path, FLEET, host_keys="accept-new")
    pool = session.ssh_pool()
    assert session.ssh_pool() is pool and pool.options.host_keys == "accept-new"
    session.close_targets()
    assert session._ssh is None and pool._closed
    assert session.ssh_pool() is not pool, "a closed pool is never handed out again"
    session.close_targets()
    session.transcript.close()


class Watching:
    """An observer as a front end is one: keeps the live output (task, text, host); tests add hooks."""

    def __init__(self) -> None:
        self.live: list[tuple[str, str, str | None]] = []

    def event(self, event: dict[str, Any]) -> None:
        pass

    def output(self, task_id: str, text: str, host: str | None = None) -> None:
        self.live.append((task_id, text, host))


def test_a_hosts_output_is_live_and_recorded_under_its_host(tmp_path: Path) -> None:
    watching = Watching()
    session, path = make(tmp_path, FLEET, observer=watching)
    stream = OutputStream(session, "1.1.1", host="web-02")
    for chunk in ("one\ntw", "o\r\n", "", "three"):
        stream.feed(chunk)
    stream.close()
    session.transcript.close()
    assert "".join(text for _, text, _ in watching.live) == "one\ntwo\r\nthree"
    assert {(task, host) for task, _, host in watching.live} == {("1.1.1", "web-02")}
    recorded = events(path, "output")
    assert "".join(e["text"] for e in recorded) == "one\ntwo\r\nthree"
    assert {(e["task_id"], e["host"]) for e in recorded} == {("1.1.1", "web-02")}


class Answering(RandomOperator):
    """Answers each command's question and each failure from its own list of Answers."""

    def __init__(self, confirms: list[Answer], failures: list[Answer] = ()) -> None:  # type: ignore[assignment]
        super().__init__([])
        self.confirms, self.failures = list(confirms), list(failures)

    def confirm(self, request: Confirmation) -> Answer:
        self.asked.append(request)
        return self.confirms.pop(0)

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer:
        self.asked.append(("failure", task.id, verdict.reason, attempt))
        return self.failures.pop(0)


SECRET = "tok-5f1e-Ωx"
RISKY = """
    ---
    secrets:
      TOKEN: env:FAKE_TOKEN
    ---
    # One
    ## Steps
    1. **Do**
       - `echo "$TOKEN $WHO" --x; exit 3` <!-- runbook: risk=high -->
    """
RISKY_COMMAND = 'echo "$TOKEN $WHO" --x; exit 3'


def unstamped(path: Path, kind: str) -> list[dict[str, Any]]:
    """The events of one kind without what every event has (seq, ts, the chain)."""
    return [{k: v for k, v in e.items() if k not in ("seq", "ts", "hash", "prev", "type")} for e in events(path, kind)]


def test_a_high_risk_command_is_recorded_whole_from_question_to_end(tmp_path: Path) -> None:
    operator = Answering([Answer("run", reason=f"checked, {SECRET} rotated", typed="prod")], [Answer("stop")])
    session, path = make(tmp_path, RISKY, operator, values={"ENVIRONMENT": "prod", "WHO": "ann"},
                         secrets={"TOKEN": SECRET})
    assert session.run_all() == "failed"
    session.transcript.close()
    assert SECRET not in path.read_text()
    (request,) = [a for a in operator.asked if isinstance(a, Confirmation)]
    assert (request.risk, request.typed_word, request.shell) == ("high", "prod", "bash")
    assert request.env_names == ["ENVIRONMENT", "TOKEN", "WHO"], "the prompt names every variable it sets"
    assert [a for a in operator.asked if not isinstance(a, Confirmation)] == [
        ("failure", "1.1.1", "exit code 3, expected 0", 1)]
    cwd = os.getcwd()
    assert unstamped(path, "step.entered") == [{"step_id": "1.1", "title": "Do"}]
    assert unstamped(path, "confirm.asked") == [{
        "task_id": "1.1.1", "prompt": RISKY_COMMAND, "cwd": cwd, "container": None, "shell": "bash",
        "env": {"ENVIRONMENT": "prod", "TOKEN": "[secret]", "WHO": "ann"}, "risk": "high",
        "risk_reasons": ["the runbook marks it risk=high"], "typed_word": "prod", "attempt": 1,
        "reason": "high risk: the runbook marks it risk=high", "edited": False}]
    assert unstamped(path, "confirm.answered") == [{
        "task_id": "1.1.1", "answer": "run", "reason": "checked, [REDACTED:TOKEN] rotated", "typed": "prod",
        "edited": False, "approved": RISKY_COMMAND}]
    assert unstamped(path, "command.started") == [{
        "task_id": "1.1.1", "step_id": "1.1", "command": RISKY_COMMAND, "run_command": RISKY_COMMAND, "cwd": cwd,
        "container": None, "image": None, "container_id": None, "env_names": ["ENVIRONMENT", "TOKEN", "WHO"],
        "attempt": 1, "shell": "bash", "edited": False}]
    (spawned,) = unstamped(path, "command.spawned")
    assert (spawned["task_id"], spawned["attempt"], spawned["host"]) == ("1.1.1", 1, socket.gethostname())
    assert spawned["pid"] == spawned["pgid"] == spawned["sid"] > 0
    (finished,) = unstamped(path, "command.finished")
    duration = finished.pop("duration")
    assert isinstance(duration, float) and duration == round(duration, 3), "milliseconds, not whole seconds"
    assert finished == {"task_id": "1.1.1", "exit_code": 3, "signal": None, "timed_out": False, "aborted": False,
                        "attempt": 1}
    assert "".join(e["text"] for e in events(path, "output")) == "[REDACTED:TOKEN] ann --x\r\n"
    (task,) = unstamped(path, "task.finished")
    assert task == {"task_id": "1.1.1", "step_id": "1.1", "status": "failed", "title": RISKY_COMMAND,
                    "fingerprint": session.runbook.sections[0].steps[0].tasks[0].fingerprint,
                    "reason": "exit code 3, expected 0", "exit_code": 3}


FAILS = """
    # Fails
    ## Steps
    1. **Do**
       - `sh -c 'exit 3' --x`
       - `true --x`
    """


def failing(tmp_path: Path, confirms: list[Answer], failures: list[Answer]) -> tuple[list[dict[str, Any]], str]:
    session, path = make(tmp_path, FAILS, Answering(confirms, failures))
    outcome = "finished"
    try:
        outcome = session.run_all()
    except RunAborted as exc:
        outcome = str(exc)
        session.aborted(outcome)
    session.transcript.close()
    return unstamped(path, "task.finished"), outcome


def test_each_answer_after_a_failure_ends_the_task_as_it_says(tmp_path: Path) -> None:
    run = [Answer("run")]
    (tmp_path / "skip").mkdir()
    finished, outcome = failing(tmp_path / "skip", run * 2, [Answer("skip")])
    assert outcome == "success", "a failure the operator skipped does not fail the run"
    assert [(t["status"], t.get("reason"), t.get("exit_code")) for t in finished] == [
        ("skipped", "failed (exit code 3, expected 0), skipped by the operator", None), ("done", None, 0)]
    (tmp_path / "skip-why").mkdir()
    finished, _ = failing(tmp_path / "skip-why", run * 2, [Answer("skip", reason="known flaky")])
    assert finished[0]["reason"] == "known flaky"
    (tmp_path / "abort").mkdir()
    finished, outcome = failing(tmp_path / "abort", run, [Answer("abort")])
    assert outcome == "operator aborted after task 1.1.1 failed"
    assert [(t["status"], t["reason"], t["exit_code"]) for t in finished] == [("failed", "exit code 3, expected 0", 3)]
    (tmp_path / "retry").mkdir()
    finished, outcome = failing(tmp_path / "retry", run * 2, [Answer("retry"), Answer("stop")])
    assert outcome == "failed"
    started = events(tmp_path / "retry" / "t.jsonl", "command.started")
    assert [e["attempt"] for e in started] == [1, 2], "the operator's retry is the next attempt"
    asked = events(tmp_path / "retry" / "t.jsonl", "confirm.asked")
    assert [e["attempt"] for e in asked] == [1, 2], "and is asked for again in paranoid mode"
    assert [(t["status"], t["exit_code"]) for t in finished] == [("failed", 3)]


def test_an_answer_that_edits_the_command_is_approved_and_run_as_edited(tmp_path: Path) -> None:
    edit = "sh -c 'exit 0' --x"
    session, path = make(tmp_path, FAILS, Answering([Answer("run", command=edit), Answer("skip")]))
    assert session.run_all() == "success"
    session.transcript.close()
    answered = unstamped(path, "confirm.answered")
    assert [(a["answer"], a["edited"], a["approved"]) for a in answered] == [("run", True, edit), ("skip", False, None)]
    assert answered[1]["reason"] == "" and events(path, "task.finished")[1]["reason"] == "skipped by the operator"
    (started,) = events(path, "command.started")
    assert (started["run_command"], started["command"], started["edited"]) == (edit, "sh -c 'exit 3' --x", True)
    assert [(t["status"], t.get("exit_code")) for t in unstamped(path, "task.finished")] == [("done", 0), ("skipped", None)]


def test_streams_that_interleave_hold_and_redact_their_own_output(tmp_path: Path) -> None:
    """Two hosts' output arrives interleaved, each cut inside the secret: each stream keeps its own
    held tail, so neither leaks a piece of it or loses its own last characters."""
    session, path = make(tmp_path, FLEET, secrets={"TOKEN": SECRET})
    first = OutputStream(session, "1.1.1", host="web-01")
    second = OutputStream(session, "1.1.1", host="web-02")
    first.feed("a: " + SECRET[:4])
    second.feed("b: " + SECRET[:6])
    first.feed(SECRET[4:] + " ok\n")
    second.feed(SECRET[6:] + " ok\n")
    first.feed("tail " + SECRET[:3])
    first.close()
    second.close()
    session.transcript.close()
    assert SECRET[:4] not in path.read_text()
    by_host: dict[str, str] = {}
    for event in events(path, "output"):
        by_host[event["host"]] = by_host.get(event["host"], "") + event["text"]
    assert by_host == {"web-01": "a: [REDACTED:TOKEN] ok\ntail " + SECRET[:3], "web-02": "b: [REDACTED:TOKEN] ok\n"}


def test_nothing_is_recorded_after_an_abort_or_a_finish(tmp_path: Path) -> None:
    for end in ("aborted", "finish"):
        (tmp_path / end).mkdir()
        session, path = make(tmp_path / end, TWO)
        session.aborted("stopped by the operator") if end == "aborted" else session.finish()
        for late in (lambda: session.note("too late"), lambda: session.jumped("1.1.2"),
                     lambda: session.change_mode("auto")):
            with pytest.raises(RunEnded, match="^this run has ended and its transcript is sealed; "
                                               "start a new run to do more$"):
                late()
        session.transcript.close()
        assert [e["type"] for e in events(path)][-1] == ("run.aborted" if end == "aborted" else "run.finished")
        assert verify(path).ok


def test_a_runbook_changed_on_disk_is_recorded_once_and_the_run_keeps_its_version(tmp_path: Path) -> None:
    session, path = make(tmp_path, FAILS, Answering([Answer("run"), Answer("run")], [Answer("skip")]))
    started_with = session.runbook.sha256
    (tmp_path / "book.md").write_text("# Changed\n## Steps\n- `rm -rf --x`\n")
    assert session.run_all() == "success"
    session.transcript.close()
    (changed,) = unstamped(path, "runbook.changed")
    assert changed == {"path": str(tmp_path / "book.md"), "sha256_started": started_with,
                       "sha256_now": hashlib.sha256(b"# Changed\n## Steps\n- `rm -rf --x`\n").hexdigest(),
                       "note": "the run keeps the version it started with"}
    assert [e["run_command"] for e in events(path, "command.started")] == ["sh -c 'exit 3' --x", "true --x"]
    (tmp_path / "gone").mkdir()
    session, path = make(tmp_path / "gone", FAILS, Answering([Answer("stop")]))
    (tmp_path / "gone" / "book.md").unlink()
    session.check_runbook()
    session.check_runbook()
    session.transcript.close()
    (changed,) = unstamped(path, "runbook.changed")
    assert changed["sha256_now"] is None, "a deleted runbook is a changed one"


class Hangup(Watching):
    """Loses the operator's terminal (SIGHUP) once the first command has started."""

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None

    def event(self, event: dict[str, Any]) -> None:
        if event["type"] == "command.started" and self.session is not None:
            self.session.disconnect()


def test_after_a_hangup_the_command_in_flight_ends_and_nothing_new_starts(tmp_path: Path) -> None:
    hangup = Hangup()
    session, path = make(tmp_path, FAILS.replace("`sh -c 'exit 3' --x`", "`sh -c 'exit 3' --x` <!-- runbook: retries=3 -->"),
                         Answering([Answer("run")]), observer=hangup)
    hangup.session = session
    with pytest.raises(RunAborted, match="^operator disconnected: terminal lost; resume the run to continue$"):
        session.run_all()
    session.aborted("operator disconnected")
    session.transcript.close()
    assert [e["attempt"] for e in events(path, "command.started")] == [1], "no retry starts after the hangup"
    assert [e["exit_code"] for e in events(path, "command.finished")] == [3], "the command in flight ended by itself"
    assert [(t["task_id"], t["status"], t["exit_code"], t["reason"]) for t in unstamped(path, "task.finished")] == [
        ("1.1.1", "failed", 3, "exit code 3, expected 0")], "the task says why it failed, as any failed task does"
    assert unstamped(path, "operator.disconnected") == [{"reason": "terminal lost (SIGHUP)"}]
    assert [e["type"] for e in events(path)][-2:] == ["operator.disconnected", "run.aborted"]
    (tmp_path / "before").mkdir()
    session, path = make(tmp_path / "before", FAILS, Answering([]))
    session.disconnect()
    with pytest.raises(RunAborted):
        session.run_all()
    session.transcript.close()
    assert not events(path, "confirm.asked") and len(events(path, "operator.disconnected")) == 1


def test_a_placeholder_the_shell_would_run_is_refused_before_its_value_is_asked(tmp_path: Path) -> None:
    session, path = make(tmp_path, """
        # Book
        ## Steps
        - `echo "$(touch ran-<name>)"`
        """, Answering([]))
    assert session.run_all() == "failed"
    session.transcript.close()
    assert not list(tmp_path.glob("ran-*")) and session.prompter.asked == []
    (finished,) = unstamped(path, "task.finished")
    assert finished["status"] == "failed" and finished["reason"].startswith("not run: ")
    assert "stands inside $( … )" in finished["reason"]
    assert finished["reason"].endswith(". Edit the command to write the value in place, or fix the runbook")
    assert not events(path, "values.given") and not events(path, "command.started")


def test_a_full_screen_program_gets_the_operators_terminal_until_it_ends(tmp_path: Path) -> None:
    handed: list[int] = []

    handed_over = tmp_path / "handed-over"

    def take_over(proc: PtyProcess) -> ExitStatus | None:
        handed.append(proc.identity.pid)
        handed_over.touch()  # the operator quits the program
        return proc.wait()

    session, path = make(tmp_path, f"""
        # Screen
        ## Steps
        - `printf '\\033[?1049h'; until test -e {handed_over}; do sleep 0.1; done; printf '\\033[?1049l'; echo left`
        """, Answering([Answer("run")]), take_over=take_over)
    assert session.run_all() == "success"
    session.transcript.close()
    (spawned,) = events(path, "command.spawned")
    assert handed == [spawned["pid"]], "handed over once, to the command's own process"
    assert "left" in "".join(e["text"] for e in events(path, "output")), "its output is still recorded"


def test_a_command_waiting_for_input_no_one_can_give_is_stopped_and_says_how_to_fix_it(tmp_path: Path) -> None:
    operator = Typist(["run"], [MissingValue])
    outcome, path = ask_first(tmp_path, operator)
    assert len(operator.shown) == 1, "asked once; after no one could answer, not again"
    assert outcome.status == "failed" and outcome.reason == NO_ANSWER
    assert "interactive=true" in NO_ANSWER and "--yes" in NO_ANSWER
    output = "".join(e["text"] for e in events(path, "output"))
    assert output == f"name: \r\n[runbook-tui] {NO_ANSWER}\r\n"
    (finished,) = events(path, "command.finished")
    assert finished["aborted"] is True and finished["exit_code"] is None
    assert not events(path, "input.sent") and not events(path, "input.declined")


def fleet_runbook(hosts: list[str], options: str, command: str) -> str:
    """One step running `command` on group `web` (the given hosts), with more block options."""
    return (f"---\nhosts:\n  web: [{', '.join(hosts)}]\n---\n# Fleet\n## Steps\n1. **Deploy**\n"
            f"   ```sh {{hosts=web {options}}}\n   {command}\n   ```\n")


def test_a_fan_out_runs_in_process_batch_by_batch_each_host_named(fleet_home: Any, tmp_path: Path) -> None:
    """The session's side of a fan-out on the real sshd fleet (tests/ssh_fleet.py): one approval per
    batch, each host's output live under its name, the run's SSH connections closed at the end."""
    hosts = fleet_home.names(3)
    watching = Watching()

    session, path = make(tmp_path, fleet_runbook(hosts, "serial=1,100%", 'echo "deployed on $(hostname)"'),
                         Answering([Answer("run"), Answer("run")]), observer=watching)
    assert session.run_all() == "success"
    session.close_targets()
    session.transcript.close()
    asked = events(path, "confirm.asked")
    assert [e["hosts"] for e in asked] == [hosts[:1], hosts[1:]]
    assert [e["after"] for e in asked] == [f"batch 1 of 2; then batch 2/2 (2 hosts): {', '.join(hosts[1:])}",
                                           "batch 2 of 2; the last batch"]
    assert sorted(e["host"] for e in events(path, "command.started")) == sorted(hosts)
    for host in hosts:
        assert "deployed on " in "".join(text for _, text, named in watching.live if named == host)
    (finished,) = unstamped(path, "task.finished")
    assert (finished["task_id"], finished["status"]) == ("1.1.1", "done")
    assert session._ssh is None


def test_an_edited_fan_out_command_is_recorded_as_edited_on_every_host(fleet_home: Any, tmp_path: Path) -> None:
    hosts = fleet_home.names(2)
    session, path = make(tmp_path, fleet_runbook(hosts, "", "echo as-written"), Answering([Answer("run")]))
    step = session.runbook.sections[0].steps[0]
    assert session.run_task(step.tasks[0], step, edited="echo as-edited").status == "done"
    session.close_targets()
    session.transcript.close()
    started = events(path, "command.started")
    assert sorted(e["host"] for e in started) == sorted(hosts)
    assert all(e["edited"] is True and e["run_command"] == "echo as-edited" for e in started), started
    assert "as-edited" in "".join(e["text"] for e in events(path, "output"))


def test_the_operators_terminal_is_named_when_stdin_is_one() -> None:
    """Who ran it from where: the terminal on stdin (a real PTY here), none when stdin is not one."""
    controller, terminal = os.openpty()
    devnull = os.open(os.devnull, os.O_RDONLY)
    name = os.ttyname(terminal)
    saved = os.dup(0)
    try:
        os.dup2(terminal, 0)
        on_a_terminal = operator_facts(None)
        os.dup2(devnull, 0)
        not_on_one = operator_facts({"user": "Ann"})
    finally:
        os.dup2(saved, 0)
        for fd in (saved, controller, terminal, devnull):
            os.close(fd)
    me = {"user": getpass.getuser(), "host": socket.gethostname()}
    assert on_a_terminal == {**me, "tty": name, "git_user": None}
    assert not_on_one == {**me, "tty": None, "git_user": "Ann"}


class SeesOutput(Watching):
    """Lets the command go on once its output is on the record (a flag file)."""

    def __init__(self, flag: Path) -> None:
        super().__init__()
        self.flag = flag

    def event(self, event: dict[str, Any]) -> None:
        if event["type"] == "output" and "ready" in event["text"]:
            self.flag.touch()


def test_output_is_recorded_while_the_command_still_runs(tmp_path: Path) -> None:
    """The transcript has what a command printed before it ends (a crash of ours loses nothing
    it showed): the command waits for its own output event, and gives up after 30 s."""
    flag = tmp_path / "seen"
    session, path = make(tmp_path, f"""
        # Live
        ## Steps
        - `echo ready; for i in $(seq 300); do test -e {flag} && exit 0; sleep 0.1; done; exit 1`
        """, Answering([Answer("run")]), observer=SeesOutput(flag))
    assert session.run_all() == "success"
    session.transcript.close()
    kinds = [e["type"] for e in events(path)]
    assert kinds.index("output") < kinds.index("command.finished")


def test_the_runs_task_timeout_stops_a_task_without_its_own(tmp_path: Path) -> None:
    session, path = make(tmp_path, """
        # Slow
        ## Steps
        - `sleep 60`
        - `sleep 0.2` <!-- runbook: timeout=30s -->
        """, Answering([Answer("run"), Answer("run")], [Answer("skip")]), task_timeout=0.5, grace=0.5)
    assert session.run_all() == "success"
    session.transcript.close()
    assert [e["timed_out"] for e in events(path, "command.finished")] == [True, False], "its own timeout wins"
    assert events(path, "task.finished")[0]["reason"] == "failed (timed out), skipped by the operator"
    assert events(path, "run.started")[0]["task_timeout"] == 0.5


def test_a_command_that_cannot_start_is_recorded_as_such(tmp_path: Path) -> None:
    watching = Watching()
    session, path = make(tmp_path, FAILS, Answering([Answer("run"), Answer("run")], [Answer("stop")]),
                         shell="/nonexistent/sh", observer=watching)
    assert session.run_all() == "failed"
    session.transcript.close()
    message = "cannot start: No such file or directory"
    assert unstamped(path, "output") == [{"task_id": "1.1.1", "text": message + "\r\n"}], "no host: a local command"
    assert watching.live == [("1.1.1", message + "\r\n", None)], "the operator sees why, as it happens"
    (finished,) = unstamped(path, "command.finished")
    assert finished == {"task_id": "1.1.1", "exit_code": 127, "signal": None, "duration": 0.0, "timed_out": False,
                        "attempt": 1, "error": message}
    (task,) = unstamped(path, "task.finished")
    assert (task["status"], task["exit_code"], task["reason"]) == ("failed", 127, message)
    assert not events(path, "command.spawned")


def ends_in_our_failure(session: Session, path: Path, error: str) -> dict[str, Any]:
    """Run the first task, which a failure of ours (`error`) interrupts; the command must not
    outlive it and nothing may still count as running. Returns its command.finished, unstamped."""
    step = session.runbook.sections[0].steps[0]
    with pytest.raises(RuntimeError, match=error):
        session.run_task(step.tasks[0], step)
    session.transcript.close()
    assert not session.command_running
    (spawned,) = events(path, "command.spawned")
    assert not os.path.exists(f"/proc/{spawned['pid']}"), "the command does not outlive our failure"
    (finished,) = unstamped(path, "command.finished")
    return finished


class Broken(Typist):
    """A front end that fails while the command waits for an answer."""

    def ask_input(self, task: Task, shown: str, masked: bool) -> str | None:
        raise RuntimeError("the front end broke")


def test_a_failure_of_ours_during_a_command_stops_it_and_still_records_its_end(tmp_path: Path) -> None:
    """Stopped with the run's grace between signals: a command that ignores SIGINT gets SIGTERM."""
    session, path = make(tmp_path, """
        # Ask
        ## Steps
        ```sh
        trap '' INT; trap 'exit 7' TERM; read -r -p 'name: ' who
        ```
        """, Broken(["run"], []), grace=0.2)
    finished = ends_in_our_failure(session, path, "the front end broke")
    assert (finished["aborted"], finished["exit_code"], finished["signal"]) == (True, 7, None), \
        "its own way of ending on SIGTERM (exit 7) is what the record says"


def test_running_a_failed_task_again_goes_on_counting_its_attempts(tmp_path: Path) -> None:
    session, path = make(tmp_path, FAILS, Answering([Answer("run"), Answer("run")], [Answer("stop"), Answer("stop")]))
    section = session.runbook.sections[0]
    step = section.steps[0]
    session.run_task(step.tasks[0], step)
    session.run_task(step.tasks[0], step)  # the operator's `r` on the failed task
    session.transcript.close()
    assert [e["attempt"] for e in events(path, "command.started")] == [1, 2]
    assert [e["attempt"] for e in events(path, "confirm.asked")] == [1, 2]


def test_noop_plans_a_command_whole_and_asks_nothing(tmp_path: Path) -> None:
    operator = Answering([])
    session, path = make(tmp_path, RISKY, operator, mode="noop", values={"ENVIRONMENT": "prod"},
                         secrets={"TOKEN": SECRET})
    assert session.run_all() == "success"
    session.transcript.close()
    assert operator.asked == [], "noop shows what is missing instead of asking for it"
    (planned,) = unstamped(path, "command.planned")
    assert planned == {"task_id": "1.1.1", "step_id": "1.1", "command": RISKY_COMMAND, "run_command": RISKY_COMMAND,
                       "cwd": os.getcwd(), "container": None, "shell": "bash",
                       "env": {"ENVIRONMENT": "prod", "TOKEN": "[secret]"}, "risk": "high",
                       "risk_reasons": ["the runbook marks it risk=high"]}
    (task,) = unstamped(path, "task.finished")
    assert task["status"] == "planned" and "exit_code" not in task and "reason" not in task
    assert not events(path, "command.started") and not events(path, "values.given")


def test_an_optional_step_or_an_optional_task_may_fail_and_the_run_goes_on(tmp_path: Path) -> None:
    session, path = make(tmp_path, """
        # Optional
        ## Steps
        1. **Warm the cache (optional)**
           - `sh -c 'exit 1' --x`
        2. **Clean up**
           - `sh -c 'exit 2' --x` <!-- runbook: optional=true -->
        3. **Deploy**
           - `true --x`
        """, Answering([Answer("run")] * 3, [Answer("stop")] * 2))
    steps = session.runbook.sections[0].steps
    assert (steps[0].optional, steps[0].tasks[0].optional) == (True, False)
    assert (steps[1].optional, steps[1].tasks[0].optional) == (False, True)
    assert session.run_all() == "success"
    session.transcript.close()
    assert [(t["task_id"], t["status"]) for t in unstamped(path, "task.finished")] == [
        ("1.1.1", "failed"), ("1.2.1", "failed"), ("1.3.1", "done")]


def test_a_tasks_end_is_titled_by_its_command_not_the_sentence_around_it(tmp_path: Path) -> None:
    session, path = make(tmp_path, """
        # Titles
        ## Steps
        - Run `true --x` to check
        - Then look at the graphs
        """, Answering([Answer("run")], []))
    session.run_all()
    session.transcript.close()
    assert [t["title"] for t in unstamped(path, "task.finished")] == ["true --x", "Then look at the graphs"]


def test_a_command_that_ignores_the_stop_signals_gets_the_runs_grace_before_the_kill(tmp_path: Path) -> None:
    """The session's grace reaches the supervisor: with a long one, a command that ignores SIGINT,
    SIGTERM and SIGHUP after its timeout still ends by itself (the supervisor's default, 2 s between
    SIGINT, SIGTERM and SIGKILL, would kill it 4.5 s in)."""
    session, path = make(tmp_path, """
        # Stubborn
        ## Steps
        ```sh {timeout=0.5s}
        trap '' INT TERM HUP; sleep 6; echo ended-by-itself
        ```
        """, Answering([Answer("run")], [Answer("stop")]), grace=120.0)
    session.run_all()
    session.transcript.close()
    (finished,) = events(path, "command.finished")
    assert finished["timed_out"] is True and finished["exit_code"] == 0 and finished["signal"] is None
    assert "ended-by-itself" in "".join(e["text"] for e in events(path, "output"))


def test_a_command_stopped_at_the_operators_word_is_not_retried(tmp_path: Path) -> None:
    """The operator declined the command's question: it was stopped, and `retries` does not start it again."""
    operator = Typist(["run"], [None, None, None])
    session, path = make(tmp_path, """
        # Ask
        ## Steps
        ```sh {retries=2}
        read -r -p 'name: ' who; echo "hello $who"
        ```
        """, operator)
    assert session.run_all() == "failed"
    session.transcript.close()
    assert len(events(path, "command.started")) == 1 and len(operator.shown) == 1
    (finished,) = events(path, "command.finished")
    assert finished["aborted"] is True


class FailsOnSpawn(Watching):
    """A front end whose observer fails on the event that says the command is running (once the
    command has said it ignores SIGINT, by creating `ready`)."""

    def __init__(self, ready: Path) -> None:
        super().__init__()
        self.ready = ready

    def event(self, event: dict[str, Any]) -> None:
        if event["type"] == "command.spawned":
            for _ in range(300):
                if self.ready.exists():
                    break
                time.sleep(0.1)
            raise RuntimeError("the view broke")


def test_a_failure_before_the_command_is_watched_still_stops_it_with_the_runs_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    session, path = make(tmp_path, f"""
        # Stubborn
        ## Steps
        ```sh
        trap '' INT; touch {ready}; sleep 30
        ```
        """, Answering([Answer("run")]), observer=FailsOnSpawn(ready), grace=0.2)
    finished = ends_in_our_failure(session, path, "the view broke")
    assert ready.exists()
    assert (finished["aborted"], finished["exit_code"], finished["signal"]) == (True, None, 15)


class CancelsOnSpawn(Watching):
    """The operator's Ctrl+C on the first command (the TUI's cancel), once it is running."""

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None

    def event(self, event: dict[str, Any]) -> None:
        if event["type"] == "command.spawned" and event["task_id"] == "1.1.1" and self.session is not None:
            self.session.cancel_command()


def test_cancelling_a_command_stops_only_it_and_the_run_goes_on(tmp_path: Path) -> None:
    cancels = CancelsOnSpawn()
    session, path = make(tmp_path, """
        # Cancel
        ## Steps
        1. **Wait**
           ```sh
           sleep 30
           ```
           ```sh
           true
           ```
        """, Answering([Answer("run"), Answer("run")], [Answer("skip")]), observer=cancels, grace=0.5)
    cancels.session = session
    assert session.run_all() == "success"
    session.transcript.close()
    assert [(e["aborted"], e["exit_code"]) for e in events(path, "command.finished")][0] == (True, None)
    assert [(t["task_id"], t["status"]) for t in unstamped(path, "task.finished")] == [
        ("1.1.1", "skipped"), ("1.1.2", "done")]
    assert events(path, "task.finished")[0]["reason"] == "failed (aborted), skipped by the operator"


class TypesTheSecret(Answering):
    """An operator who types a secret's value where a placeholder asks for one."""

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        return {q.name: SECRET for q in questions}


def test_a_secret_typed_into_a_placeholder_is_redacted_in_the_recorded_question(tmp_path: Path) -> None:
    session, path = make(tmp_path, """
        # Paste
        ## Steps
        - `echo <token> --x`
        """, TypesTheSecret([Answer("run")]), secrets={"TOKEN": SECRET})
    assert session.run_all() == "success"
    session.transcript.close()
    assert SECRET not in path.read_text()
    (asked,) = events(path, "confirm.asked")
    assert "[REDACTED:TOKEN]" in asked["prompt"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A real file system that fills up: a 256 KiB tmpfs (root only: mount). Skips without root,
    unless RUNBOOK_TUI_REQUIRE_ROOT=1 (CI runs as root and sets it): then it fails."""
    import subprocess

    if os.geteuid() != 0:
        if os.environ.get("RUNBOOK_TUI_REQUIRE_ROOT") == "1":
            pytest.fail("mounting a small file system needs root (RUNBOOK_TUI_REQUIRE_ROOT=1)")
        pytest.skip("mounting a small file system needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_output_lost_on_a_full_disk_is_marked_on_the_commands_end(tmp_path: Path, small_disk: Path) -> None:
    """The disk fills while a command prints: what did not fit is not silently missing; the
    command's end says its output was lost and why, and the run stops (bug 6 in RELIABILITY.md)."""
    from runbook_tui.audit.transcript import TranscriptError

    text = "# Full\n## Steps\n1. **Flood**\n\n   ```sh\n   seq 1 200000\n   ```\n"  # 1.3 MB: five times the disk
    book = parse_markdown(text, str(tmp_path / "book.md"))
    path = small_disk / "t.jsonl"
    session = Session(book, Transcript.create(path), RandomOperator([]))
    session.start()
    step = book.sections[0].steps[0]
    with pytest.raises(TranscriptError):
        session.run_task(step.tasks[0], step)
    finished = [e for e in read_events(path) if e["type"] == "command.finished"]
    assert len(finished) == 1, "the command's end is on the record although its output did not fit"
    assert "No space left on device" in finished[0]["output_lost"], finished[0]
    assert finished[0]["exit_code"] == 0
    assert verify(path).ok, "what is on disk is still a whole chain"


class Reanswering(RandomOperator):
    """Gives a placeholder a new value each time it is asked (v1, v2, ...)."""

    def __init__(self) -> None:
        super().__init__([])
        self.given = 0

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        self.given += 1
        return {q.name: f"v{self.given}" for q in questions}


def test_a_step_approval_covers_the_text_approved_not_a_value_answered_again(tmp_path: Path) -> None:
    """Trusted step mode approves the step's commands as listed; a value answered again before a
    command's turn changes its text, and that text is asked for (pinned by mutation testing:
    `edited is None or ...` let the new text run unasked)."""
    text = "# S\n## Steps\n1. **Two**\n   - `echo first --x`\n   - `echo <name> --x`\n"
    operator = Reanswering()
    session, path = make(tmp_path, text, operator, mode="step", trusted=True)
    step = session.runbook.sections[0].steps[0]
    first, second = step.tasks
    session.run_task(first, step)
    assert operator.asked == [("step", step.id, ["echo first --x", "echo v1 --x"])]
    session.forget_value("name")
    outcome = session.run_task(second, step)
    session.transcript.close()
    assert outcome.status == "done"
    asked = [q for q in operator.asked if isinstance(q, Confirmation)]
    assert [q.command for q in asked] == ["echo v2 --x"], "the text approved with the step was echo v1"
    assert asked[0].step is step and asked[0].task is second
    kinds = [(e["type"], e.get("task_id")) for e in events(path)]
    assert kinds.index(("confirm.answered", second.id)) < kinds.index(("command.started", second.id))


def test_an_edited_command_is_asked_for_even_when_it_reads_like_the_step_approved(tmp_path: Path) -> None:
    """An edit is the operator's own new command: it is confirmed as such, also in trusted step
    mode and also when its text happens to equal what the step listed (pinned by mutation
    testing: passing the edit on as None let it run on the step's approval)."""
    text = "# S\n## Steps\n1. **Two**\n   - `echo first --x`\n   - `echo second --x`\n"
    operator = RandomOperator([])
    session, path = make(tmp_path, text, operator, mode="step", trusted=True)
    step = session.runbook.sections[0].steps[0]
    first, second = step.tasks
    session.run_task(first, step)
    assert session.run_task(second, step, edited="echo second --x").status == "done"
    session.transcript.close()
    asked = [q for q in operator.asked if isinstance(q, Confirmation)]
    assert [(q.task.id, q.command) for q in asked] == [(second.id, "echo second --x")]
    (started,) = [e for e in events(path, "command.started") if e["task_id"] == second.id]
    assert started["edited"] is True


def test_a_command_not_confirmed_or_aborted_says_so_in_the_record(tmp_path: Path) -> None:
    """The words an operator reads later: 'not confirmed' when the answer gave no reason, and the
    task an abort came from (pinned by mutation testing: both texts survived)."""
    text = "# N\n## Steps\n1. **Two**\n   - `echo first --x`\n   - `echo second --x`\n"
    session, path = make(tmp_path, text, RandomOperator(["stop", "abort"]))
    step = session.runbook.sections[0].steps[0]
    first, second = step.tasks
    assert session.run_task(first, step) == TaskOutcome("not_confirmed", reason="not confirmed")
    with pytest.raises(RunAborted) as aborted:
        session.run_task(second, step)
    assert str(aborted.value) == f"operator aborted at task {second.id}"
    session.transcript.close()
    (finished,) = events(path, "task.finished")
    assert (finished["task_id"], finished["status"], finished["reason"]) == (first.id, "not_confirmed",
                                                                             "not confirmed")
    assert not events(path, "command.started")


class InterruptsWhenReady(Watching):
    """Ctrl+C once the command says it has set its trap (a timer could fire before, on a busy machine)."""

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None

    def output(self, task_id: str, text: str, host: str | None = None) -> None:
        super().output(task_id, text, host)
        if "ready" in "".join(text for _, text, _ in self.live) and self.session is not None:
            self.session.interrupt()


def test_an_interrupted_command_ends_its_task_failed_with_its_exit_code(tmp_path: Path) -> None:
    """Ctrl+C mid-command: the command's own exit code and why are on the task's end, and the run
    stops naming the task (pinned by mutation testing: code, status and message survived)."""
    text = "# I\n## Steps\n1. **Wait**\n\n   ```sh\n   trap 'exit 7' INT\n   echo ready\n   sleep 30 & wait\n   ```\n"
    interrupting = InterruptsWhenReady()
    session, path = make(tmp_path, text, RandomOperator([]), observer=interrupting)
    interrupting.session = session
    step = session.runbook.sections[0].steps[0]
    (task,) = step.tasks
    with pytest.raises(RunAborted) as stopped:
        session.run_task(task, step)
    assert str(stopped.value) == f"interrupted during task {task.id}"
    session.transcript.close()
    (finished,) = events(path, "task.finished")
    assert (finished["status"], finished["exit_code"]) == ("failed", 7), finished
    assert finished["reason"]


class SeesRunning(Watching):
    """Notes, at each command's start on the record and at its end, whether the session says a
    command is running (headless sends Ctrl+C to the command then, and ends the run otherwise)."""

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self.running: list[tuple[str, bool]] = []

    def event(self, event: dict[str, Any]) -> None:
        if event["type"] in ("command.spawned", "command.finished") and self.session is not None:
            self.running.append((event["type"], self.session.command_running))


def test_a_local_command_runs_in_its_directory_says_it_is_running_and_never_asks_docker(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    seeing = SeesRunning()
    session, path = make(tmp_path, f"""
        # Where
        ## Steps
        - `pwd -P` <!-- runbook: cwd={tmp_path / "sub"} -->
        """, Answering([Answer("run")]), observer=seeing)
    seeing.session = session
    assert session.command_running is False, "no command before the first one starts"

    def no_docker() -> Any:
        raise AssertionError("a local command reached for the Docker engine")

    session._docker_client = no_docker  # type: ignore[method-assign]
    assert session.run_all() == "success"
    session.transcript.close()
    where = os.path.realpath(tmp_path / "sub")
    (started,) = events(path, "command.started")
    assert started["cwd"] == where
    assert "".join(e["text"] for e in events(path, "output")).strip() == where, "the command ran where it says"
    assert (started["container"], started["image"], started["container_id"]) == (None, None, None)
    assert seeing.running == [("command.spawned", True), ("command.finished", False)]
    assert session.command_running is False


class BrokenPane(Watching):
    """A front end whose output view fails on the command's first output."""

    def output(self, task_id: str, text: str, host: str | None = None) -> None:
        raise RuntimeError("the pane broke")


def test_a_view_failing_on_output_stops_the_command_and_its_end_is_still_recorded(tmp_path: Path) -> None:
    """Its output is no longer shown or recorded, so the command is stopped at once (not left to
    run unseen to its own end), and the view's error comes back from every wait, so no exit
    status is ever known: the record still ends the command, aborted, with nothing invented."""
    done = tmp_path / "done"
    session, path = make(tmp_path, f"""
        # Loud
        ## Steps
        - `echo first; sleep 30; touch {done}` <!-- runbook: retries=2 -->
        """, Answering([Answer("run")]), observer=BrokenPane(), grace=0.2)
    assert ends_in_our_failure(session, path, "the pane broke") == {
        "task_id": "1.1.1", "exit_code": None, "signal": None, "duration": 0.0, "timed_out": False, "aborted": True,
        "attempt": 1}
    assert len(events(path, "command.started")) == 1, "no retry after a failure of ours"
    assert not done.exists(), "stopped, not left to finish"


class KeepsQuestions(RandomOperator):
    """Runs every command and answers every value with its name, keeping the questions as they were put."""

    def __init__(self) -> None:
        super().__init__(["run"] * 10)
        self.questions: list[Question] = []

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        self.questions += questions
        return {q.name: f"{q.name}-typed" for q in questions}


def test_a_missing_value_is_asked_in_the_runbooks_own_words(tmp_path: Path) -> None:
    """The prompt text and the default come from the runbook's declaration of that very variable;
    an undeclared one is asked by its name; a declared secret masked, naming where it is kept; a
    placeholder as it is written."""
    operator = KeepsQuestions()
    session, path = make(tmp_path, """
        ---
        variables:
          WHERE: {prompt: "Where it goes"}
          TAG: {default: v1, prompt: "Release tag"}
          BARE: {default: b1}
        secrets:
          TOKEN: env:RUNBOOK_TUI_TEST_NO_SUCH_TOKEN
        ---
        # Q
        ## Steps
        - `echo "$TAG $WHERE $BARE $OTHER $TOKEN" --x <release-name>`
        """, operator)
    session.forget_value("TAG")
    session.forget_value("BARE")
    assert session.run_all() == "success"
    session.transcript.close()
    assert sorted(operator.questions, key=lambda q: q.name) == [
        Question("BARE", "$BARE", default="b1"),
        Question("OTHER", "$OTHER"),
        Question("TAG", "$TAG: Release tag", default="v1"),
        Question("TOKEN", "secret TOKEN (env:RUNBOOK_TUI_TEST_NO_SUCH_TOKEN)", secret=True),
        Question("WHERE", "$WHERE: Where it goes"),
        Question("release-name", "<release-name>"),
    ]
    (given,) = unstamped(path, "values.given")
    assert given == {"task_id": "1.1.1", "values": {name: f"{name}-typed" for name in ("BARE", "OTHER", "TAG", "WHERE", "release-name")}}, \
        "the values typed, under the task that asked (the secret only as a secret: not here)"


def test_a_command_stopped_at_its_question_stays_stopped_and_the_operator_is_asked_once(tmp_path: Path) -> None:
    """Once `stuck` said stop, it keeps saying so, even after its next look at the terminal is
    due and the command still waits there: the operator is never asked the same thing twice."""
    from runbook_tui.engine.session import INPUT_POLL, InputWatch

    operator = Typist(["run"], [None])
    session, path = make(tmp_path, ASKS, operator)
    task = session.runbook.sections[0].steps[0].tasks[0]
    stream = OutputStream(session, task.id)
    proc = PtyProcess.spawn(["bash", "-c", "read -r -p 'name: ' who"], on_output=stream.feed)
    try:
        watch = InputWatch(session, task, proc, stream)
        deadline = time.monotonic() + 30
        while not watch.stuck():
            assert time.monotonic() < deadline, "the question was never noticed"
            time.sleep(0.02)
        assert watch.declined and not watch.fired
        assert watch.stuck(), "at once"
        time.sleep(INPUT_POLL * 1.5)
        assert proc.wait(0) is None and watch.stuck(), "and when the next look is due"
        assert len(operator.shown) == 1
    finally:
        proc.abort(0.2)
        proc.wait()


def test_the_terminal_goes_back_when_a_program_leaves_its_full_screen_and_the_command_goes_on(tmp_path: Path) -> None:
    """Handed over only for the full screen: a command that waits for a line is asked through the
    front end, and one that leaves its full screen runs on to its own end once it is given back."""
    handed: list[int] = []
    handed_over = tmp_path / "handed-over"

    def take_over(proc: PtyProcess) -> ExitStatus | None:
        assert not handed and proc.alternate_screen, "handed over once, on the full screen only"
        handed.append(proc.identity.pid)
        handed_over.touch()  # the operator quits the pager; the command goes on after it
        deadline = time.monotonic() + 30
        while proc.alternate_screen and time.monotonic() < deadline:
            time.sleep(0.02)
        return None  # given back while the command still runs

    operator = Typist(["run", "run"], ["ann"])
    session, path = make(tmp_path, f"""
        # Screen
        ## Steps
        - `printf '\\033[?1049h'; until test -e {handed_over}; do sleep 0.1; done; printf '\\033[?1049l'; sleep 1; echo went on`
        - `read -r -p 'name: ' who; echo "hi $who"`
        """, operator, take_over=take_over)
    assert session.run_all() == "success"
    session.transcript.close()
    first, _ = events(path, "command.spawned")
    assert handed == [first["pid"]], "the full-screen program only"
    assert [(e["exit_code"], e["aborted"]) for e in events(path, "command.finished")] == [(0, False), (0, False)]
    output = "".join(e["text"] for e in events(path, "output"))
    assert "went on" in output and "hi ann" in output
    assert [(task, masked) for task, _, masked in operator.shown] == [("1.1.2", False)]


def test_a_command_that_only_waits_a_moment_for_input_no_one_can_give_is_left_to_go_on(tmp_path: Path) -> None:
    """INPUT_GRACE: a prompt with a timeout of its own (or our /proc read racing the command) is
    not stopped at the first look; only a command still blocked after the grace is."""
    operator = Typist(["run"], [MissingValue])
    session, path = make(tmp_path, """
        # Peek
        ## Steps
        - `timeout --foreground 3 sh -c 'read who'; echo went on`
        """, operator)
    assert session.run_all() == "success"
    session.transcript.close()
    assert len(operator.shown) == 1, "asked, and no one could answer"
    assert [(e["exit_code"], e["aborted"]) for e in events(path, "command.finished")] == [(0, False)]
    assert "went on" in "".join(e["text"] for e in events(path, "output"))


def test_what_the_operator_is_shown_reflects_the_task_the_run_and_the_runbook(tmp_path: Path) -> None:
    """A value given for this run that makes the environment dangerous raises the risk of a
    plain command; a container task is shown with its container and the shell it runs there; a
    step is entered once however many tasks it has; a task marked skip says so."""
    session, path = make(tmp_path, """
        # Shown
        ## Steps
        1. **Two**
           - `echo one --x`
           - `echo skipped --x` <!-- runbook: skip=true -->
           - `echo two --x`
        2. **Inside**
           ```sh {container=web-1}
           echo inside
           ```
        """, Answering([Answer("run")] * 3, [Answer("stop")]), values={"BASH_ENV": "/tmp/evil"})
    session.run_all()
    session.transcript.close()
    asked = unstamped(path, "confirm.asked")
    assert [(a["task_id"], a["risk"]) for a in asked] == [("1.1.1", "high"), ("1.1.3", "high"), ("1.2.1", "high")]
    assert any("BASH_ENV (from a value given for this run)" in reason for reason in asked[0]["risk_reasons"])
    assert (asked[2]["container"], asked[2]["shell"]) == ("web-1", "sh"), "the container's shell, not the operator's"
    assert (asked[0]["container"], asked[0]["shell"]) == (None, session.shell)
    assert [e["step_id"] for e in events(path, "step.entered")] == ["1.1", "1.2"], "each step entered once"
    skipped = [t for t in unstamped(path, "task.finished") if t["task_id"] == "1.1.2"]
    assert [(t["status"], t["reason"]) for t in skipped] == [("skipped", "marked skip in the runbook")]


def test_a_run_starts_with_strict_host_keys_and_names_the_run_it_overlaps(tmp_path: Path) -> None:
    """Unknown SSH host keys are refused unless the operator said otherwise; a run that started
    while another of the same runbook held the lock says which one (the lock's word for it)."""
    book = parse_markdown(textwrap.dedent(TWO).lstrip("\n"), str(tmp_path / "book.md"))
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), RandomOperator([]))
    session.concurrent_run = {"pid": 4242, "user": "bob", "run_id": "r-1"}
    session.start()
    session.transcript.close()
    (started,) = events(tmp_path / "t.jsonl", "run.started")
    assert started["host_keys"] == "strict" and session.ssh_pool().options.host_keys == "strict"
    session.close_targets()
    assert started["concurrent_run"] == {"pid": 4242, "user": "bob", "run_id": "r-1"}


def test_an_untrusted_runbook_asked_to_run_in_auto_runs_paranoid_and_says_how_to_trust_it(tmp_path: Path) -> None:
    book = parse_markdown(textwrap.dedent(TWO).lstrip("\n"), str(tmp_path / "my book.md"))
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), RandomOperator([]), mode="auto")
    assert session.mode == "paranoid"
    assert session.mode_notice is not None and session.mode_notice.endswith(
        f"trust this version with: runbook-tui trust '{tmp_path / 'my book.md'}'")
    session.transcript.close()


def test_a_fan_out_whose_view_fails_on_output_stops_every_host_at_once(fleet_home: Any, tmp_path: Path) -> None:
    """As for a local command (bug 10, RELIABILITY.md): output that can no longer be shown or
    recorded stops the commands that make it, on every host of the batch, not at their own end."""
    hosts = fleet_home.names(2)
    done = tmp_path / "done"  # the fleet's sshd run on this machine: a host's `touch` lands here
    session, path = make(tmp_path, fleet_runbook(hosts, "", f"echo started; sleep 30; touch {done}-$(hostname)"),
                         Answering([Answer("run")]), observer=BrokenPane(), grace=0.2)
    step = session.runbook.sections[0].steps[0]
    with pytest.raises(RuntimeError, match="the pane broke"):
        session.run_task(step.tasks[0], step)
    session.close_targets()
    session.transcript.close()
    assert not session.command_running
    assert not list(tmp_path.glob("done-*")), "no host's command ran on to its end"
    ends = {e["host"]: (e["state"], e["reason"]) for e in events(path, "command.finished")}
    assert ends == {host: ("failed", "stopped: the pane broke") for host in hosts}, "each host's end is recorded"
