"""Issue 14, point 1: the exports say exactly what happened, from a real run with edits, command-line
answers, retries, typed values and an abort, checked line by line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from runbook_tui.audit.export import export
from runbook_tui.audit.transcript import Transcript
from runbook_tui.engine.checks import Verdict
from runbook_tui.engine.session import Answer, Confirmation, Question, RunAborted, Session
from runbook_tui.model import Step, Task
from runbook_tui.parse.markdown import parse_markdown

BOOK = """
    # Release 7
    ## Steps
    1. **Prepare**
       - `echo preparing <release>`
       - Check the dashboard is green
    2. **Deploy**
       - `echo deploy-original --x`
       - `sh -c 'test -e retried.marker || { touch retried.marker; exit 4; }; echo second-try-ok'`
    3. **Finish**
       - `echo never-run --x`
       - `echo never-run-either --x`
    """


class Script:
    """Answers like an operator would: a typed value, --yes for the manual check, an edit, a retry,
    then abort at step 3."""

    def confirm(self, request: Confirmation) -> Answer:
        if request.task.id == "1.2.1":
            return Answer("run", command="echo deploy-edited --x")
        if request.task.id.startswith("1.3"):
            return Answer("abort")
        return Answer("run")

    def confirm_step(self, step: Step, commands: list[Confirmation]) -> Answer:
        return Answer("run")

    def confirm_manual(self, task: Task, step: Step) -> Answer:
        return Answer("done", reason="confirmed by --yes")

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        return {q.name: "v7.0.1" for q in questions}

    def offer_to_store(self, secret_name: str) -> bool:
        return False

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer:
        return Answer("retry")


@pytest.fixture
def transcript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    book = parse_markdown(textwrap.dedent(BOOK).lstrip("\n"), str(tmp_path / "release.md"))
    path = tmp_path / "t.jsonl"
    session = Session(book, Transcript.create(path), Script())  # type: ignore[arg-type]
    session.start()
    with pytest.raises(RunAborted):
        session.run_all()
    session.aborted("operator aborted at task 1.3.1", left=[t.id for _, _, t in session.pending_tasks()])
    session.transcript.close()
    return path


def test_the_markdown_export_says_what_ran_who_confirmed_it_and_what_did_not_run(transcript: Path) -> None:
    md = export(transcript, "md")
    lines = md.splitlines()
    assert "- **Result:** aborted: operator aborted at task 1.3.1" in lines
    assert "- **Values typed during the run:** `release=v7.0.1`" in lines
    rows = {cells[0]: cells for cells in (_cells(line) for line in lines if line.startswith("| 1."))}
    # ID, step, task, status, confirmed by, attempts (duration and exit code vary)
    assert rows["1.1.1"][2:6] == ["`echo preparing <release>`", "done", "operator", "1"]
    assert rows["1.1.2"][2:6] == ["Check the dashboard is green", "manual", "--yes", ""]
    assert rows["1.2.1"][2:6] == ["`echo deploy-original --x` (edited)", "done", "operator", "1"]
    assert rows["1.2.2"][3:6] == ["done", "operator", "2"]
    assert rows["1.3.1"][3:5] == ["aborted", ""], "asked, and the run was aborted at the question"
    assert "1.3.2" not in rows, "what was never reached is listed under Not run"
    commands = md.split("## Commands as written and as run", 1)[1].split("\n## ", 1)[0]
    assert "### 1.1.1 (values filled in)" in commands and "echo preparing v7.0.1" in commands
    assert "### 1.2.1 (edited by the operator)" in commands
    assert "echo deploy-original --x" in commands and "As run (attempt 1, edited):" in commands
    assert "echo deploy-edited --x" in commands
    retries = md.split("## Failures and retries", 1)[1].split("\n## ", 1)[0]
    assert "- attempt 1: exit 4, confirmed by operator" in retries
    assert "- attempt 2: exit 0, confirmed by operator" in retries
    not_run = md.split("## Not run", 1)[1].split("\n## ", 1)[0]
    assert "- 1.3.1: the run was aborted" in not_run and "- 1.3.2: the run was aborted" in not_run


def test_the_json_export_numbers_attempts_and_marks_edits(transcript: Path) -> None:
    document = json.loads(export(transcript, "json"))
    tasks = {task["id"]: task for task in document["tasks"]}
    assert tasks["1.2.1"]["edited"] is True and tasks["1.2.1"]["command"] == "echo deploy-original --x"
    assert tasks["1.2.1"]["run_command"] == "echo deploy-edited --x"
    assert [(a["attempt"], a["exit_code"]) for a in tasks["1.2.2"]["attempt_log"]] == [(1, 4), (2, 0)]
    assert tasks["1.1.2"]["confirmed_by"] == "--yes"
    assert document["run"]["summary"]["left"] == ["1.3.1", "1.3.2"]
    assert document["run"]["values_given"] == {"release": "v7.0.1"}


def test_the_cast_replays_what_ran_with_exit_codes_and_the_result(transcript: Path) -> None:
    frames = [json.loads(line) for line in export(transcript, "cast").splitlines()[1:]]
    typed = [f[2] for f in frames if f[1] == "o" and f[2].startswith("$ ")]
    assert "$ echo deploy-edited --x\r\n" in typed and "$ echo preparing v7.0.1\r\n" in typed
    markers = [f[2] for f in frames if f[1] == "m"]
    assert "1.2.2 exit 4" in markers and "1.2.2 exit 0" in markers
    assert frames[-1][2] == "\r\n[run aborted]\r\n"


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]
