"""Exports of a real transcript: what a release note reader, a tool and a replay viewer get."""

from __future__ import annotations

import base64
import json
import os
import pty
import shlex
import urllib.parse
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from runbook_tui.audit.export import export, plain_text
from runbook_tui.audit.redact import Redactor, variants
from runbook_tui.audit.transcript import Transcript, TranscriptError, parse_timestamp

FAILING_OUTPUT = "".join(f"\x1b[31merror line {i}\x1b[0m\r\n" for i in range(30))
TRICKY_OUTPUT = "before\r\n```\r\nnot a fence end\r\n````\r\n10%\r50%\r100%\r\n\x1b]0;title\x07after\r\n"
SECRET = "s3cr3t-P@ss w'rd/+="


def run_deploy(path: Path, outputs: dict[str, list[str]] | None = None) -> None:
    """A run of a two-step deploy runbook: one command passes, one fails, one manual check,
    one skipped task, a note. `outputs` replaces the output chunks of task 1.1.1."""
    with Transcript.create(path) as t:
        t.append(
            "run.started",
            run_id="2f1c",
            tool_version="0.1.0",
            runbook={"path": "runbooks/deploy.md", "sha256": "ab" * 32, "title": "Deploy web"},
            mode="paranoid",
            operator={"user": "alice", "host": "web-01", "tty": "/dev/pts/3", "git_user": "Alice <a@x>"},
            git={"repo": "/srv/app", "head": "0123456789abcdef" * 2 + "01234567", "branch": "main",
                 "dirty": True, "tag": "v1.4.0"},
            variables={"VERSION": "1.4.0"},
            secrets=["DB_PASSWORD"],
        )
        t.append("step.entered", step_id="1.1", title="Build")
        t.append("confirm.asked", task_id="1.1.1", prompt="Run `make | tee build.log`?", risk="low")
        t.append("confirm.answered", task_id="1.1.1", answer="run")
        t.append("command.started", task_id="1.1.1", step_id="1.1", command="make | tee build.log",
                 run_command="make | tee build.log", cwd="/srv/app", container=None,
                 env_names=["VERSION", "DB_PASSWORD"], attempt=1)
        for chunk in (outputs or {}).get("1.1.1", ["\x1b[1mhello\x1b[0m\r\n", TRICKY_OUTPUT, "bare\nnewline\n"]):
            t.append("output", task_id="1.1.1", text=chunk)
        t.append("command.finished", task_id="1.1.1", exit_code=0, signal=None, duration=1.25, timed_out=False)
        t.append("task.finished", task_id="1.1.1", step_id="1.1", status="done", exit_code=0)
        t.append("step.entered", step_id="1.2", title="Migrate")
        t.append("confirm.asked", task_id="1.2.1", prompt="Check the dashboard is green", risk="low")
        t.append("task.finished", task_id="1.2.1", step_id="1.2", status="manual")
        t.append("task.finished", task_id="1.2.2", step_id="1.2", status="skipped", reason="already done")
        t.append("command.started", task_id="1.2.3", step_id="1.2", command="./migrate --apply\n  --all",
                 run_command="./migrate --apply\n  --all", cwd="/srv/app", container="web",
                 env_names=[], attempt=1)
        t.append("output", task_id="1.2.3", text=FAILING_OUTPUT)
        t.append("command.finished", task_id="1.2.3", exit_code=3, signal=None, duration=75.5, timed_out=False)
        t.append("task.finished", task_id="1.2.3", step_id="1.2", status="failed", exit_code=3)
        t.append("note", text="Paged the DBA\nticket OPS-1", task_id="1.2.3")
        t.append("run.finished", result="failed", failed=["1.2.3"])


@pytest.fixture
def transcript(tmp_path: Path) -> Path:
    path = tmp_path / "20250101T000000Z-deploy-web-abc123.jsonl"
    run_deploy(path)
    return path


# --- Markdown --------------------------------------------------------------------------------


def parse_md(text: str) -> list:
    return MarkdownIt("commonmark").enable("table").parse(text)


def section(md: str, heading: str) -> str:
    start = md.index(f"\n## {heading}\n")
    end = md.find("\n## ", start + 1)
    return md[start : end if end != -1 else len(md)]


def test_markdown_header_says_who_where_when_and_what(transcript: Path) -> None:
    md = export(transcript, "md")
    assert md.startswith("# Runbook run: Deploy web\n")
    for expected in (
        "**Result:** failed",
        "**Operator:** alice@web-01 (tty /dev/pts/3, Alice &lt;a@x&gt;)",
        "**Runbook:** `runbooks/deploy.md`, SHA-256 `" + "ab" * 32 + "`",
        "**Git:** `main` at `0123456789ab` (dirty, tag v1.4.0)",
        "**Mode:** paranoid",
        "**Started:** ",
        "**Finished:** ",
        "**Duration:** ",
        "**Variables:** `VERSION=1.4.0`",
        "**Secrets (names only):** `DB_PASSWORD`",
        "**Transcript:** `20250101T000000Z-deploy-web-abc123.jsonl`, chain intact: 20 events; last hash `",
    ):
        assert expected in md, expected


def test_markdown_task_table(transcript: Path) -> None:
    md = export(transcript, "md")
    tokens = parse_md(md)
    rows: list[list[str]] = []
    for i, token in enumerate(tokens):
        if token.type == "tr_open":
            row = []
            for inner in tokens[i + 1 :]:
                if inner.type == "tr_close":
                    break
                if inner.type == "inline":
                    row.append(inner.content)
            rows.append(row)
    header, *body = rows
    assert header == ["ID", "Step", "Task", "Status", "Confirmed by", "Attempts", "Duration", "Exit"]
    assert [row[0] for row in body] == ["1.1.1", "1.2.1", "1.2.2", "1.2.3"]
    assert body[0] == ["1.1.1", "Build", "`make | tee build.log`", "done", "operator", "1", "1.2s", "exit 0"]
    assert body[1][2:4] == ["Check the dashboard is green", "manual"]
    assert body[2][3] == "skipped (already done)"
    assert body[3][2:] == ["`./migrate --apply …`", "failed", "", "1", "1m 16s", "exit 3"]


def test_markdown_notes_and_failures_with_their_last_lines(transcript: Path) -> None:
    md = export(transcript, "md")
    notes = section(md, "Notes")
    assert "(1.2.3): Paged the DBA\n  ticket OPS-1" in notes
    failures = section(md, "Failures and retries")
    assert "### 1.2.3 `./migrate --apply …`: failed" in failures
    assert "- attempt 1: exit 3, confirmed by ?" in failures
    assert [f"error line {i}" for i in range(10, 30)] == [
        line for line in failures.splitlines() if line.startswith("error line")
    ]


def test_markdown_output_is_folded_plain_text_in_unbreakable_fences(transcript: Path) -> None:
    md = export(transcript, "md")
    assert "\x1b" not in md and "\r" not in md and "\x07" not in md
    assert "<details><summary>1.1.1 <code>make | tee build.log</code>: done</summary>" in md
    assert md.count("<details>") == md.count("</details>") == 2
    fences = [token for token in parse_md(section(md, "Output")) if token.type == "fence"]
    assert len(fences) == 2
    assert fences[0].content == (
        "hello\nbefore\n```\nnot a fence end\n````\n100%\nafter\nbare\nnewline\n"
    )
    assert fences[1].content == "".join(f"error line {i}\n" for i in range(30))


def test_plain_text_applies_carriage_returns_like_a_terminal() -> None:
    assert plain_text("abc\rX\r\n\x1b[2K50%\r100%\r\nok\x08") == "Xbc\n100%\nok"


# --- JSON ------------------------------------------------------------------------------------


def test_json_export_has_run_tasks_and_every_event(transcript: Path) -> None:
    document = json.loads(export(transcript, "json"))
    run = document["run"]
    assert run["title"] == "Deploy web" and run["result"] == "failed"
    assert run["operator"]["user"] == "alice" and run["git"]["branch"] == "main"
    assert run["summary"] == {"failed": ["1.2.3"]}
    assert run["integrity"]["ok"] is True and run["integrity"]["events"] == 20
    assert run["duration"] >= 0
    tasks = {task["id"]: task for task in document["tasks"]}
    assert list(tasks) == ["1.1.1", "1.2.1", "1.2.2", "1.2.3"]
    migrate = tasks["1.2.3"] | {"started": None, "finished": None}
    attempts = migrate.pop("attempt_log")
    assert migrate == {
        "id": "1.2.3", "step_id": "1.2", "step_title": "Migrate", "title": None,
        "command": "./migrate --apply\n  --all", "run_command": "./migrate --apply\n  --all",
        "cwd": "/srv/app", "container": "web", "status": "failed", "reason": None, "exit_code": 3,
        "signal": None, "timed_out": False, "duration": 75.5, "attempts": 1,
        "started": None, "finished": None, "fingerprint": "", "edited": False, "confirmed_by": None, "hosts": {},
    }
    assert [(a["attempt"], a["exit_code"], a["duration"]) for a in attempts] == [(1, 3, 75.5)]
    assert [event["seq"] for event in document["events"]] == list(range(20))
    assert document["events"][6]["text"] == TRICKY_OUTPUT


def test_json_of_an_interrupted_run_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    run_deploy(path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:6]) + lines[6][:10])  # crashed while writing
    document = json.loads(export(path, "json"))
    assert document["run"]["result"] == "incomplete"
    assert document["run"]["integrity"]["torn_tail"] is True
    assert document["tasks"][0]["status"] == "unfinished"
    assert "did not finish" in export(path, "md")


def test_a_switch_to_a_related_runbook_says_where_the_run_went_on(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as record:
        record.append("run.started", runbook={"path": "/srv/deploy.md", "sha256": "ab" * 32, "title": "Deploy"})
        record.append("runbook.switched", path="/srv/rollback.md", sha256="cd" * 32, title="Rollback",
                      transcript="/var/log/runs/rollback.jsonl")
        record.append("run.aborted", reason="operator switched to the related runbook Rollback with 3 task(s) left")
    markdown = export(path, "md")
    assert ("- **Continued with:** Rollback (`/srv/rollback.md`), transcript `/var/log/runs/rollback.jsonl`"
            in markdown)
    assert json.loads(export(path, "json"))["run"]["continued"]["transcript"] == "/var/log/runs/rollback.jsonl"


def test_exports_say_when_the_chain_is_broken(transcript: Path) -> None:
    content = transcript.read_bytes()
    transcript.write_bytes(content.replace(b"exit_code\":3", b"exit_code\":0", 1))
    assert "**VERIFICATION FAILED**: line 17: content does not match its hash" in export(transcript, "md")
    assert json.loads(export(transcript, "json"))["run"]["integrity"]["ok"] is False


# --- asciicast -------------------------------------------------------------------------------


def cast_frames(text: str) -> tuple[dict, list[list]]:
    header, *frames = text.splitlines()
    return json.loads(header), [json.loads(frame) for frame in frames]


def test_cast_header_markers_commands_and_output(transcript: Path) -> None:
    header, frames = cast_frames(export(transcript, "cast"))
    first_ts = parse_timestamp(json.loads(transcript.read_text().splitlines()[0])["ts"])
    assert header == {"version": 2, "width": 120, "height": 40, "timestamp": int(first_ts.timestamp()),
                      "title": "Deploy web"}
    assert [f[2] for f in frames if f[1] == "m"] == ["1.1 Build", "1.1.1 exit 0", "1.2 Migrate", "1.2.3 exit 3"]
    outputs = [f[2] for f in frames if f[1] == "o"]
    assert outputs[0] == "$ make | tee build.log\r\n"
    assert outputs[1] == "\x1b[1mhello\x1b[0m\r\n"
    # already CRLF and colors kept for replay; the window-title OSC never reaches a viewer's terminal
    assert outputs[2] == TRICKY_OUTPUT.replace("\x1b]0;title\x07", "")
    assert outputs[3] == "bare\r\nnewline\r\n"
    assert outputs[4] == "\x1b[0m[exit 0]\r\n"
    assert outputs[5] == "$ ./migrate --apply\r\n  --all\r\n"
    assert outputs[-1] == "\r\n[run failed]\r\n"
    times = [f[0] for f in frames]
    assert times == sorted(times) and times[0] >= 0


def play_cat(path: Path) -> tuple[int, bytes]:
    """`asciinema cat` needs a controlling terminal; give it a real PTY."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvp("asciinema", ["asciinema", "cat", str(path)])
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def test_asciinema_replays_the_cast(transcript: Path, tmp_path: Path) -> None:
    cast = tmp_path / "run.cast"
    cast.write_text(export(transcript, "cast"), encoding="utf-8")
    code, out = play_cat(cast)
    assert code == 0, out
    text = out.decode()
    assert "$ make | tee build.log\r\n" in text and "hello" in text and "error line 29" in text


def test_unknown_format_and_empty_transcript(tmp_path: Path, transcript: Path) -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export(transcript, "html")  # type: ignore[arg-type]
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    with pytest.raises(TranscriptError, match="no events"):
        export(empty, "cast")


# --- secrets ---------------------------------------------------------------------------------


def leaked_forms(text: str) -> set[str]:
    return {form for form in variants(SECRET) if form in text}


def decoded_strings(fmt: str, text: str) -> str:
    """Every string inside a JSON or JSON Lines document, unescaped (escaping could hide a leak)."""
    if fmt == "md":
        return text
    documents = [json.loads(text)] if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for document in documents:
        walk(document)
    return "\n".join(found)


def test_a_secret_printed_in_every_way_reaches_neither_transcript_nor_exports(tmp_path: Path) -> None:
    """The engine's path: PTY chunks -> Redactor.feed -> output events."""
    redactor = Redactor()
    redactor.add("DB_PASSWORD", SECRET)
    printed = (
        f"password={SECRET}\r\n"
        f"quoted: {shlex.quote(SECRET)}\r\n"
        f"url: postgres://app:{urllib.parse.quote(SECRET, safe='')}@db/app\r\n"
        f"b64: {base64.b64encode(SECRET.encode()).decode()}\r\n"
    )
    chunks = [printed[i : i + 7] for i in range(0, len(printed), 7)]  # splits every secret
    redacted = [redactor.feed("1.1.1", chunk) for chunk in chunks] + [redactor.flush("1.1.1")]
    path = tmp_path / "run.jsonl"
    run_deploy(path, outputs={"1.1.1": [chunk for chunk in redacted if chunk]})
    raw = path.read_text(encoding="utf-8")
    assert leaked_forms(raw) == set()
    assert leaked_forms(decoded_strings("cast", raw)) == set()
    for fmt in ("md", "json", "cast"):
        for used in (None, redactor):
            out = export(path, fmt, used)  # type: ignore[arg-type]
            assert leaked_forms(out) == leaked_forms(decoded_strings(fmt, out)) == set(), fmt
    assert export(path, "md").count("[REDACTED:DB_PASSWORD]") == 4


def test_exports_redact_a_secret_the_transcript_missed(tmp_path: Path) -> None:
    """Defence in depth: a secret registered too late, or split by escape sequences."""
    path = tmp_path / "run.jsonl"
    half = len(SECRET) // 2
    run_deploy(path, outputs={"1.1.1": [
        f"late: {SECRET}\r\n",
        f"styled: {SECRET[:half]}",
        f"\x1b[1m{SECRET[half:]}\x1b[0m\r\n",
    ]})
    redactor = Redactor()
    redactor.add("DB_PASSWORD", SECRET)
    for fmt in ("md", "json", "cast"):
        out = export(path, fmt, redactor)
        assert leaked_forms(out) == leaked_forms(decoded_strings(fmt, out)) == set(), fmt
    md = export(path, "md", redactor)
    assert "late: [REDACTED:DB_PASSWORD]" in md and "styled: [REDACTED:DB_PASSWORD]" in md
