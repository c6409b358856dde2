"""The session under random runbooks, trust, modes and answers, checked against the guard invariant
(tests/guard_invariant.py) and against what the policy says each task must have been asked.

In-process and fast (commands are `true`/`false` on a real PTY), so that mutation testing of
engine/session.py can use it: a change to who is asked, what is recorded or when a command
starts makes one of these fail.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.audit.transcript import Transcript, read_events
from runbook_tui.engine.checks import Verdict
from runbook_tui.engine.policy import confirmation_needed, effective_mode, task_risk
from runbook_tui.engine.session import Answer, Confirmation, Question, RunAborted, Session
from runbook_tui.model import Step, Task
from runbook_tui.parse.markdown import parse_markdown
from tests.guard_invariant import unapproved_starts

ANSWERS = ("run", "stop", "skip", "run-edited", "abort")


class RandomOperator:
    """Answers from a drawn list; records every question it was asked."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[Any] = []

    def _next(self) -> str:
        return self.answers.pop(0) if self.answers else "run"

    def confirm(self, request: Confirmation) -> Answer:
        self.asked.append(request)
        answer = self._next()
        if answer == "run-edited":
            return Answer("run", command=request.command + " # edited")
        if answer == "skip":
            return Answer("skip", reason="not today")
        return Answer(answer)  # type: ignore[arg-type]

    def confirm_step(self, step: Step, commands: list[Confirmation]) -> Answer:
        self.asked.append(("step", step.id, [c.command for c in commands]))
        answer = self._next()
        return Answer("run") if answer in ("run", "run-edited") else Answer(answer if answer != "skip" else "stop")  # type: ignore[arg-type]

    def confirm_manual(self, task: Task, step: Step) -> Answer:
        return Answer("done")

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        return {q.name: "v" for q in questions}

    def offer_to_store(self, secret_name: str) -> bool:
        return False

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer:
        self.asked.append(("failure", task.id))
        return Answer("stop")


@st.composite
def runbooks(draw: st.DrawFn) -> str:
    lines = ["# Random", "## Steps"]
    for step in range(1, draw(st.integers(1, 3)) + 1):
        lines.append(f"{step}. **Step {step}**")
        for _ in range(draw(st.integers(1, 3))):
            command = draw(st.sampled_from(["true", "false", "echo hi --x"]))
            notes = []
            confirm = draw(st.sampled_from([None, "true", "false"]))
            if confirm:
                notes.append(f"confirm={confirm}")
            if draw(st.booleans()):
                notes.append("risk=high")
            if draw(st.booleans()):
                notes.append("retries=1")
            annotation = f" <!-- runbook: {' '.join(notes)} -->" if notes else ""
            lines.append(f"   - `{command}`{annotation}")
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=runbooks(), trusted=st.booleans(), mode=st.sampled_from(["paranoid", "step", "auto"]),
       answers=st.lists(st.sampled_from(ANSWERS), max_size=12))
def test_random_runs_never_start_anything_unapproved(tmp_path_factory: pytest.TempPathFactory, text: str,
                                                      trusted: bool, mode: str, answers: list[str]) -> None:
    root = tmp_path_factory.mktemp("inv")
    book = parse_markdown(text, str(root / "book.md"))
    path = root / "t.jsonl"
    operator = RandomOperator(answers)
    session = Session(book, Transcript.create(path), operator, mode=mode, trusted=trusted)  # type: ignore[arg-type]
    session.start()
    try:
        session.run_all()
    except RunAborted as exc:
        session.aborted(str(exc))
    else:
        session.finish()
    session.transcript.close()
    events = list(read_events(path))
    high = {t.id for t in book.commands() if task_risk(book, t).level == "high"}
    confirm_false = {t.id for t in book.commands() if t.options.confirm is False}
    assert unapproved_starts(events, trusted=trusted, confirm_false=confirm_false, high_risk=high) == []
    effective, _ = effective_mode(mode, trusted)  # type: ignore[arg-type]
    assert events[0]["mode"] == effective and events[0]["trusted"] is trusted
    # Every command question is one the policy says must be asked (none too many, none missing).
    asked = [q for q in operator.asked if isinstance(q, Confirmation)]
    for question in asked:
        decision = confirmation_needed(question.task, mode=effective, trusted=trusted,
                                       risk=task_risk(book, question.task), step_approved=False)
        assert decision.ask or effective == "step", (question.task.id, decision)
        assert question.reason, "the operator is told why they are asked"
        assert (question.typed_word is not None) is (question.task.id in high)
    for event in events:
        if event["type"] == "policy.allowed":
            assert trusted or event["reason"].startswith("automatic attempt"), event
            assert event["task_id"] not in high or event["reason"].startswith("automatic attempt"), event
    starts = [e for e in events if e["type"] == "command.started"]
    finished = [e for e in events if e["type"] == "command.finished"]
    assert len(starts) == len(finished)
    assert [e["attempt"] for e in starts] == [e["attempt"] for e in finished]


BOOK = textwrap.dedent("""
    # Fixed
    ## Steps
    1. **One**
       - `echo one --x` <!-- runbook: confirm=false -->
       - `echo two --x`
    2. **Two**
       - `echo three --x` <!-- runbook: risk=high -->
    """).lstrip("\n")


def run(tmp_path: Path, *, mode: str, trusted: bool, answers: list[str]) -> tuple[list[dict[str, Any]], RandomOperator]:
    book = parse_markdown(BOOK, str(tmp_path / "book.md"))
    operator = RandomOperator(answers)
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), operator, mode=mode,  # type: ignore[arg-type]
                      trusted=trusted, values={"ENVIRONMENT": "staging"})
    session.start()
    session.run_all()
    session.finish()
    session.transcript.close()
    return list(read_events(tmp_path / "t.jsonl")), operator


def test_what_each_question_records(tmp_path: Path) -> None:
    events, operator = run(tmp_path, mode="paranoid", trusted=False, answers=["run", "run", "run"])
    asked = [e for e in events if e["type"] == "confirm.asked"]
    assert [e["task_id"] for e in asked] == ["1.1.1", "1.1.2", "1.2.1"]
    first = asked[0]
    assert first["prompt"] == "echo one --x" and first["cwd"] and first["shell"] == "bash"
    assert first["env"] == {"ENVIRONMENT": "staging"} and first["risk"] == "low" and first["typed_word"] is None
    assert first["reason"] == "confirm=false is ignored: the runbook is not trusted"
    assert asked[2]["risk"] == "high" and asked[2]["typed_word"] == "staging"
    assert asked[2]["risk_reasons"] == ["the runbook marks it risk=high"]
    answered = [e for e in events if e["type"] == "confirm.answered"]
    assert [e["approved"] for e in answered] == ["echo one --x", "echo two --x", "echo three --x"]
    assert [e["answer"] for e in answered] == ["run"] * 3


def test_trusted_auto_asks_only_high_risk_and_records_why_the_rest_started(tmp_path: Path) -> None:
    events, operator = run(tmp_path, mode="auto", trusted=True, answers=["run"])
    assert [q.task.id for q in operator.asked] == ["1.2.1"]
    allowed = [(e["task_id"], e["reason"], e["mode"], e["trusted"], e["attempt"])
               for e in events if e["type"] == "policy.allowed"]
    assert allowed == [("1.1.1", "auto mode, trusted runbook", "auto", True, 1),
                       ("1.1.2", "auto mode, trusted runbook", "auto", True, 1)]


def test_trusted_step_mode_asks_per_step_then_runs_what_was_listed(tmp_path: Path) -> None:
    events, operator = run(tmp_path, mode="step", trusted=True, answers=["run", "run", "run"])
    assert operator.asked[0] == ("step", "1.1", ["echo one --x", "echo two --x"])
    step_asked = [e for e in events if e["type"] == "confirm.asked" and e.get("kind") == "step"]
    assert [[c["task_id"] for c in e["commands"]] for e in step_asked] == [["1.1.1", "1.1.2"], ["1.2.1"]]
    reasons = {e["task_id"]: e["reason"] for e in events if e["type"] == "policy.allowed"}
    assert reasons == {"1.1.1": "approved with its step (step mode, trusted runbook)",
                       "1.1.2": "approved with its step (step mode, trusted runbook)"}
    assert [q.task.id for q in operator.asked if isinstance(q, Confirmation)] == ["1.2.1"], "high risk asks again"


def test_a_declined_step_runs_none_of_it(tmp_path: Path) -> None:
    events, _ = run(tmp_path, mode="step", trusted=True, answers=["stop", "run", "run"])
    assert not [e for e in events if e["type"] == "command.started" and e["task_id"].startswith("1.1.")]
    statuses = {e["task_id"]: e["status"] for e in events if e["type"] == "task.finished"}
    assert statuses["1.1.1"] == "not_confirmed"


def test_an_edited_answer_runs_the_edit_and_records_both(tmp_path: Path) -> None:
    events, _ = run(tmp_path, mode="paranoid", trusted=False, answers=["run-edited", "run", "run"])
    started = next(e for e in events if e["type"] == "command.started")
    answered = next(e for e in events if e["type"] == "confirm.answered")
    assert started["run_command"] == "echo one --x # edited" and started["edited"] is True
    assert started["command"] == "echo one --x"
    assert answered["approved"] == "echo one --x # edited" and answered["edited"] is True


def test_mode_changes_go_through_the_policy_and_are_recorded(tmp_path: Path) -> None:
    book = parse_markdown(BOOK, str(tmp_path / "book.md"))
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), RandomOperator([]), trusted=False)  # type: ignore[arg-type]
    session.start()
    assert session.change_mode("auto") is not None and session.mode == "paranoid"
    assert session.change_mode("noop") is None and session.mode == "noop"
    session.transcript.close()
    changes = [(e["requested"], e["mode"], e["previous"], e["by"], e["trusted"], bool(e["refused"]))
               for e in read_events(tmp_path / "t.jsonl") if e["type"] == "mode.changed"]
    assert changes == [("auto", "paranoid", "paranoid", "operator", False, True),
                       ("noop", "noop", "paranoid", "operator", False, False)]


def test_a_secret_missing_at_the_start_is_asked_as_a_secret_and_never_recorded(tmp_path: Path) -> None:
    class Operator(RandomOperator):
        def ask_values(self, questions: list[Question]) -> dict[str, str]:
            self.asked.extend(questions)
            return {q.name: "hunter2-secret" for q in questions}

    book = parse_markdown("---\nsecrets:\n  DB_PASSWORD: keyring:svc/db\n---\n# S\n## Steps\n"
                          "- `echo \"pw=$DB_PASSWORD\"`\n", str(tmp_path / "book.md"))
    operator = Operator(["run"])
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), operator)  # type: ignore[arg-type]
    session.start()
    session.run_all()
    session.transcript.close()
    (question,) = [q for q in operator.asked if isinstance(q, Question)]
    assert question.secret and "keyring:svc/db" in question.prompt
    raw = (tmp_path / "t.jsonl").read_text()
    assert "hunter2-secret" not in raw and "pw=[REDACTED:DB_PASSWORD]" in raw
    assert "values.given" not in raw


# ---- pinned by mutation testing of engine/session.py (RELIABILITY.md) -------------------------------

class Scripted(RandomOperator):
    """Answers step, manual and command questions from one script of (kind, action, reason)."""

    def __init__(self, script: list[tuple[str, str, str]]) -> None:
        super().__init__([])
        self.script = list(script)

    def _take(self, kind: str) -> Answer:
        expected, action, reason = self.script.pop(0)
        assert expected == kind, (expected, kind)
        return Answer(action, reason=reason)  # type: ignore[arg-type]

    def confirm(self, request: Confirmation) -> Answer:
        self.asked.append(request)
        return self._take("command")

    def confirm_step(self, step: Step, commands: list[Confirmation]) -> Answer:
        assert all(c.step is step for c in commands), "each command is shown with its step"
        self.asked.append(("step", step.id, [c.task.id for c in commands]))
        return self._take("step")

    def confirm_manual(self, task: Task, step: Step) -> Answer:
        assert task in step.tasks
        self.asked.append(("manual", task.id))
        return self._take("manual")


STEPPED = textwrap.dedent("""
    # Stepped
    ## Steps
    1. **One**
       - Look at the dashboard
       - `echo one --x`
       - `echo skipped-by-the-runbook --x` <!-- runbook: skip=true -->
       - `echo two --x`
    2. **Two**
       - `echo three --x`
    """).lstrip("\n")


def stepped(tmp_path: Path, script: list[tuple[str, str, str]], **kwargs: Any) -> tuple[list[dict[str, Any]], Scripted, str]:
    book = parse_markdown(STEPPED, str(tmp_path / "book.md"))
    operator = Scripted(script)
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), operator, **kwargs)  # type: ignore[arg-type]
    session.start()
    outcome = "finished"
    try:
        session.run_all()
        session.finish()
    except RunAborted as exc:
        outcome = str(exc)
        session.aborted(outcome)
    session.transcript.close()
    return list(read_events(tmp_path / "t.jsonl")), operator, outcome


def test_a_step_lists_only_its_commands_still_to_run_and_records_the_question(tmp_path: Path) -> None:
    events, operator, _ = stepped(tmp_path, [("manual", "done", ""), ("step", "run", "looks right"),
                                             ("step", "run", "")], mode="step", trusted=True)
    assert ("step", "1.1", ["1.1.2", "1.1.4"]) in operator.asked, "no manual check, no task marked skip"
    asked = next(e for e in events if e["type"] == "confirm.asked" and e.get("kind") == "step")
    assert asked["step_id"] == "1.1" and [c["task_id"] for c in asked["commands"]] == ["1.1.2", "1.1.4"]
    assert all(c["reason"] == "step mode" and c["attempt"] == 1 for c in asked["commands"])
    answered = next(e for e in events if e["type"] == "confirm.answered" and e.get("kind") == "step")
    assert (answered["step_id"], answered["answer"], answered["reason"]) == ("1.1", "run", "looks right")


def test_a_step_declined_skipped_or_aborted_says_so(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    events, _, _ = stepped(tmp_path / "a", [("manual", "done", ""), ("step", "stop", "")], mode="step", trusted=True)
    finished = {e["task_id"]: (e["status"], e.get("reason")) for e in events if e["type"] == "task.finished"}
    assert finished["1.1.2"] == ("not_confirmed", "step not confirmed")
    (tmp_path / "b").mkdir()
    events, _, _ = stepped(tmp_path / "b", [("manual", "done", ""), ("step", "skip", ""), ("step", "skip", "later")],
                           mode="step", trusted=True)
    finished = {e["task_id"]: (e["status"], e.get("reason")) for e in events if e["type"] == "task.finished"}
    assert finished["1.1.2"] == finished["1.1.4"] == ("skipped", "step skipped"), "skipping a step skips its commands"
    assert finished["1.2.1"] == ("skipped", "later")
    (tmp_path / "c").mkdir()
    events, _, outcome = stepped(tmp_path / "c", [("manual", "done", ""), ("step", "abort", "")],
                                 mode="step", trusted=True)
    assert outcome == "operator aborted at step 1.1"
    assert not [e for e in events if e["type"] == "command.started"]


def test_manual_checks_record_the_question_and_every_answer(tmp_path: Path) -> None:
    for name, action, reason, status in (("done", "done", "", "manual"), ("run", "run", "", "manual"),
                                         ("skip", "skip", "not needed", "skipped"),
                                         ("stop", "stop", "", "not_confirmed")):
        root = tmp_path / name
        root.mkdir()
        events, _, _ = stepped(root, [("manual", action, reason), ("command", "stop", ""), ("command", "stop", ""),
                                      ("command", "stop", "")])
        asked = next(e for e in events if e["type"] == "confirm.asked")
        assert (asked["task_id"], asked["prompt"], asked["risk"], asked["kind"]) == (
            "1.1.1", "Look at the dashboard", "low", "manual")
        answered = next(e for e in events if e["type"] == "confirm.answered")
        assert (answered["answer"], answered["reason"]) == (action, reason)
        first = next(e for e in events if e["type"] == "task.finished")
        assert first["status"] == status
        assert first.get("reason") == (reason or ("not confirmed" if status == "not_confirmed" else None))
    root = tmp_path / "abort"
    root.mkdir()
    _, _, outcome = stepped(root, [("manual", "abort", "")])
    assert outcome == "operator aborted at task 1.1.1"
    root = tmp_path / "noop"
    root.mkdir()
    events, operator, _ = stepped(root, [], mode="noop")
    first = next(e for e in events if e["type"] == "task.finished")
    assert (first["status"], first["reason"]) == ("planned", "manual check: Look at the dashboard")
    assert operator.asked == []


@pytest.mark.parametrize(("values", "word"), [({"ENVIRONMENT": "prod"}, "prod"), ({"ENV": "stage-2"}, "stage-2"),
                                              ({"STAGE": "blue"}, "blue"), ({"CLUSTER": "eu-1"}, "eu-1"),
                                              ({"ENVIRONMENT": "", "CLUSTER": "c"}, "c"), ({}, "yes")])
def test_the_typed_word_is_the_environments_name_or_yes(tmp_path: Path, values: dict[str, str], word: str) -> None:
    book = parse_markdown(BOOK, str(tmp_path / "book.md"))
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), RandomOperator([]), values=values)  # type: ignore[arg-type]
    assert session.typed_word() == word
    session.transcript.close()


def test_a_trusted_run_may_change_to_auto_and_the_notice_names_the_runbook(tmp_path: Path) -> None:
    book = parse_markdown(BOOK, str(tmp_path / "deploy.md"))
    trusted = Session(book, Transcript.create(tmp_path / "a.jsonl"), RandomOperator([]), trusted=True)  # type: ignore[arg-type]
    trusted.start()
    assert trusted.change_mode("auto") is None and trusted.mode == "auto"
    trusted.transcript.close()
    untrusted = Session(book, Transcript.create(tmp_path / "b.jsonl"), RandomOperator([]))  # type: ignore[arg-type]
    untrusted.start()
    notice = untrusted.change_mode("step")
    assert notice is not None and f"runbook-tui trust {tmp_path / 'deploy.md'}" in notice
    untrusted.transcript.close()


def test_run_finished_counts_statuses_and_lists_failures_and_what_was_left(tmp_path: Path) -> None:
    events, _, _ = stepped(tmp_path, [("manual", "done", ""), ("command", "stop", "no")])
    (finished,) = [e for e in events if e["type"] == "run.finished"]
    assert finished["result"] == "failed"
    assert finished["counts"] == {"manual": 1, "not_confirmed": 1}
    assert finished["failed"] == ["1.1.2"] and finished["left"] == ["1.1.3", "1.1.4", "1.2.1"]
    (tmp_path / "ok").mkdir()
    events, _, _ = stepped(tmp_path / "ok", [("manual", "done", ""), ("command", "run", ""), ("command", "run", ""),
                                             ("command", "run", "")])
    (finished,) = [e for e in events if e["type"] == "run.finished"]
    assert (finished["result"], finished["failed"], finished["left"]) == ("success", [], [])
    assert finished["counts"] == {"manual": 1, "done": 3, "skipped": 1}


def test_a_run_ends_once_and_lists_failed_tasks(tmp_path: Path) -> None:
    book = parse_markdown("# F\n## Steps\n- `sh -c 'exit 3'`\n", str(tmp_path / "book.md"))
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), RandomOperator(["run"]))  # type: ignore[arg-type]
    session.start()
    session.run_all()
    session.note("paged the DBA", "1.1.1")
    assert session.finish() == "failed"
    session.finish()
    session.aborted("again")
    session.transcript.close()
    events = list(read_events(tmp_path / "t.jsonl"))
    ends = [e for e in events if e["type"] in ("run.finished", "run.aborted")]
    assert len(ends) == 1 and ends[0]["failed"] == ["1.1.1"]
    (note,) = [e for e in events if e["type"] == "note"]
    assert (note["text"], note["task_id"]) == ("paged the DBA", "1.1.1")
    aborted = Session(book, Transcript.create(tmp_path / "a.jsonl"), RandomOperator([]))  # type: ignore[arg-type]
    aborted.start()
    aborted.aborted("stopped")
    aborted.aborted("twice")
    aborted.finish()
    aborted.transcript.close()
    assert [e["type"] for e in read_events(tmp_path / "a.jsonl")][-1:] == ["run.aborted"]
    assert sum(e["type"] in ("run.finished", "run.aborted") for e in read_events(tmp_path / "a.jsonl")) == 1


def one_task_session(tmp_path: Path, line: str, answers: list[str], **kwargs: Any) -> tuple[Session, Path]:
    book = parse_markdown("# One\n## Steps\n1. **Do**\n" + textwrap.indent(line, "   ") + "\n", str(tmp_path / "book.md"))
    path = tmp_path / "t.jsonl"
    session = Session(book, Transcript.create(path), RandomOperator(answers), **kwargs)  # type: ignore[arg-type]
    session.start()
    return session, path


def test_noop_records_exactly_what_would_run(tmp_path: Path) -> None:
    session, path = one_task_session(tmp_path, "```sh {container=web}\necho hi\n```", [], mode="noop",
                                     values={"ENVIRONMENT": "staging"})
    session.run_all()
    session.transcript.close()
    (planned,) = [e for e in read_events(path) if e["type"] == "command.planned"]
    assert (planned["task_id"], planned["step_id"], planned["command"], planned["run_command"]) == (
        "1.1.1", "1.1", "echo hi", "echo hi")
    assert planned["container"] == "web" and planned["shell"] == "sh" and planned["cwd"]
    assert planned["env"] == {"ENVIRONMENT": "staging"} and planned["risk"] == "low"


def test_retries_run_the_approved_command_again_and_say_so(tmp_path: Path) -> None:
    session, path = one_task_session(tmp_path, "- `sh -c 'exit 5'` <!-- runbook: retries=2 -->", ["run"])
    session.run_all()
    session.transcript.close()
    events = list(read_events(path))
    assert [e["attempt"] for e in events if e["type"] == "command.started"] == [1, 2, 3]
    allowed = [e for e in events if e["type"] == "policy.allowed"]
    assert [(e["attempt"], e["run_command"], e["reason"]) for e in allowed] == [
        (n, "sh -c 'exit 5'", "automatic attempt (retries=2) of the approved command") for n in (2, 3)]
    (tmp_path / "ok").mkdir()
    once, path2 = one_task_session(tmp_path / "ok", "- `true --x` <!-- runbook: retries=3 -->", ["run"])
    once.run_all()
    once.transcript.close()
    assert sum(e["type"] == "command.started" for e in read_events(path2)) == 1, "a passing command runs once"


def test_wait_until_polls_at_its_interval_until_its_timeout(tmp_path: Path) -> None:
    session, path = one_task_session(tmp_path, "- `sh -c 'exit 1'` <!-- runbook: wait_until=1s interval=0.4s -->",
                                     ["run"])
    session.run_all()
    session.transcript.close()
    events = list(read_events(path))
    attempts = [e for e in events if e["type"] == "command.started"]
    assert 2 <= len(attempts) <= 4, "one try per interval within the timeout"
    assert all(e["reason"] == "automatic attempt (wait_until) of the approved command"
               for e in events if e["type"] == "policy.allowed")


def test_an_edited_run_runs_the_edit(tmp_path: Path) -> None:
    session, path = one_task_session(tmp_path, "- `echo original --x`", ["run"])
    section = session.runbook.sections[0]
    step = section.steps[0]
    session.run_task(step.tasks[0], step, edited="echo edited --x")
    session.transcript.close()
    (started,) = [e for e in read_events(path) if e["type"] == "command.started"]
    assert started["run_command"] == "echo edited --x" and started["edited"] is True
