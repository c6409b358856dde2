"""Exports of a transcript: Markdown for release notes, JSON for tools, asciicast for replay.

Every string read from the transcript passes through the optional `Redactor` before it is
used (defence in depth: the transcript is redacted when written, but a secret registered later,
or one whose escape sequences were stripped for Markdown, is caught here).
"""

from __future__ import annotations

import html
import itertools
import json
import os
import re
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Literal

from .events import RunRecord, TaskRecord, fold
from .redact import Redactor
from .terminal import TerminalFilter, safe_text, visible
from .transcript import TranscriptError, VerifyResult, parse_timestamp, read_events, verify

Format = Literal["md", "json", "cast"]
FAILURE_TAIL_LINES = 20
# A task's output in the Markdown export (release notes) is trimmed past this many lines.
OUTPUT_FOLD_LINES = 200
CAST_SIZE = (120, 40)

_TERMINAL_CONTROLS = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC (titles, hyperlinks)
    r"|\x1b[P^_X][^\x1b]*(?:\x1b\\)?"  # DCS, PM, APC, SOS
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|\x1b[ -/]*[0-~]"  # other escape sequences
    r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"  # remaining control characters
)
_BARE_LF = re.compile(r"(?<!\r)\n")


def export(path: str | os.PathLike[str], fmt: Format, redactor: Redactor | None = None) -> str:
    """The transcript at `path` as a Markdown, JSON or asciicast v2 document."""
    redact = redactor.redact if redactor is not None else _unchanged
    events = _redacted_events(path, redact)
    if fmt == "cast":
        return _cast(events)
    if fmt not in ("md", "json"):
        raise ValueError(f"unknown export format {fmt!r} (md, json, cast)")
    run = fold(events)
    integrity = verify(path)
    if fmt == "md":
        return _markdown(run, integrity, os.path.basename(path), redact)
    document = {
        "run": _run_summary(run, integrity),
        "tasks": [_task_summary(task) for task in run.tasks.values()],
        "events": list(_redacted_events(path, redact)),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def plain_text(text: str) -> str:
    """Terminal output as a reader of a document sees it: no escape sequences, `\\r` applied."""
    lines = _TERMINAL_CONTROLS.sub("", text).replace("\r\n", "\n").split("\n")
    return "\n".join(_overwrite(line) for line in lines)


def _overwrite(line: str) -> str:
    """A carriage return moves back to column 0: later text overwrites earlier (progress bars)."""
    shown = ""
    for segment in line.split("\r"):
        shown = segment + shown[len(segment) :]
    return shown


def _markdown(run: RunRecord, integrity: VerifyResult, filename: str, redact: Callable[[str], str]) -> str:
    out = [f"# Runbook run: {_inline(run.title or run.runbook.get('path') or 'untitled')}", ""]
    out += _header(run, integrity, filename)
    out += ["", "## Tasks", ""]
    out += ["| ID | Step | Task | Status | Confirmed by | Attempts | Duration | Exit |",
            "|---|---|---|---|---|---|---|---|"]
    for task in run.tasks.values():
        cells = [
            _cell(_inline(task.id)),
            _cell(_inline(task.step_title or task.step_id or "")),
            _cell(_label_markdown(task) + (" (edited)" if task.edited else "")),
            _cell(_inline(task.status + (f" ({task.reason})" if task.reason else ""))),
            _cell(_inline(task.confirmed_by or "")),
            str(task.attempts) if task.attempts else "",
            _format_duration(task.duration),
            _cell(_exit_text(task)),
        ]
        out.append("| " + " | ".join(cells) + " |")
    out += _commands(run)
    out += _hosts(run)
    out += _not_run(run)
    if run.notes:
        out += ["", "## Notes", ""]
        for note in run.notes:
            where = f" ({_inline(note['task_id'])})" if note.get("task_id") else ""
            text = "\n  ".join(_inline(line) for line in note.get("text", "").splitlines())
            out.append(f"- {_time_of_day(note['ts'])}{where}: {text}")
    failed = [task for task in run.tasks.values() if task.status == "failed" or len(task.attempt_log) > 1]
    if failed:
        out += ["", "## Failures and retries"]
        for task in failed:
            out += ["", f"### {_inline(task.id)} {_label_markdown(task)}: {_inline(task.status)}", ""]
            out += [f"- attempt {a['attempt']}: {_inline(_attempt_result(a))}, confirmed by "
                    f"{_inline(a.get('confirmed_by') or '?')}" for a in task.attempt_log]
            if task.status == "failed":
                tail = _task_output(task, redact).rstrip("\n").split("\n")[-FAILURE_TAIL_LINES:]
                out += ["", f"Last {len(tail)} lines:", ""] + _fenced("\n".join(tail))
    with_output = [task for task in run.tasks.values() if task.output]
    if with_output:
        out += ["", "## Output", "",
                f"Each task's output, folded; past {OUTPUT_FOLD_LINES} lines only its start and end "
                "(the JSON export and the transcript keep everything)."]
        for task in with_output:
            label = html.escape(visible(_first_line(task.label)))
            summary = f"{_inline(task.id)} <code>{label}</code>: {_inline(task.status)}"
            out += ["", f"<details><summary>{summary}</summary>", ""]
            out += _fenced(_trimmed(_task_output(task, redact).rstrip("\n")))
            out += ["", "</details>"]
    return "\n".join(out) + "\n"


def _commands(run: RunRecord) -> list[str]:
    """Commands that did not run as written: values filled in (secrets masked), or edited."""
    changed = [t for t in run.tasks.values()
               if t.command is not None and any(a["run_command"] != t.command for a in t.attempt_log)]
    if not changed:
        return []
    out = ["", "## Commands as written and as run", ""]
    for task in changed:
        why = "edited by the operator" if task.edited else "values filled in"
        out += [f"### {_inline(task.id)} ({why})", "", "As written:", ""] + _fenced(visible(task.command or ""))
        for attempt in task.attempt_log:
            out += ["", f"As run (attempt {attempt['attempt']}{', edited' if attempt['edited'] else ''}):", ""]
            out += _fenced(visible(attempt["run_command"] or ""))
    return out


def _hosts(run: RunRecord) -> list[str]:
    """Each fan-out task's hosts: how each ended, with the key it presented."""
    fanned = [task for task in run.tasks.values() if task.hosts]
    if not fanned:
        return []
    out = ["", "## Hosts"]
    for task in fanned:
        out += ["", f"### {_inline(task.id)} {_label_markdown(task)}", "",
                "| Host | User | Result | Exit | Duration | Host key |", "|---|---|---|---|---|---|"]
        for host, facts in task.hosts.items():
            result = str(facts.get("state") or "") + (f" ({facts['reason']})" if facts.get("reason") else "")
            code = facts.get("exit_code")
            out.append("| " + " | ".join([_cell(_inline(host)), _cell(_inline(str(facts.get("user") or ""))),
                                          _cell(_inline(result)), "" if code is None else f"exit {code}",
                                          _format_duration(facts.get("duration")),
                                          _cell(_code(str(facts.get("fingerprint") or ""))) if facts.get(
                                              "fingerprint") else ""]) + " |")
    return out


def _not_run(run: RunRecord) -> list[str]:
    """Every task that did not run, and why: skipped, not confirmed, or left when the run ended."""
    left = [tid for tid in run.summary.get("left", []) if isinstance(tid, str)]
    unrun = [t for t in run.tasks.values() if t.status in ("skipped", "not_confirmed", "planned")]
    if not left and not unrun:
        return []
    out = ["", "## Not run", ""]
    for task in unrun:
        why = {"skipped": "skipped", "not_confirmed": "not confirmed", "planned": "noop: shown, not run"}[task.status]
        out.append(f"- {_inline(task.id)} {_label_markdown(task)}: {_inline(why)}"
                   + (f": {_inline(task.reason)}" if task.reason else ""))
    ended = "the run was aborted" if run.result == "aborted" else "the run ended before it"
    out += [f"- {_inline(tid)}: {_inline(ended)}" for tid in left if tid not in run.tasks or
            run.tasks[tid].status not in ("skipped", "not_confirmed", "planned")]
    return out


def _attempt_result(attempt: dict[str, Any]) -> str:
    if attempt.get("timed_out"):
        return "timed out"
    if attempt.get("signal"):
        return f"signal {attempt['signal']}"
    code = attempt.get("exit_code")
    return "unfinished" if code is None else f"exit {code}"


def _trimmed(text: str) -> str:
    """Long output as its first and last lines, saying how much was left out."""
    lines = text.split("\n")
    if len(lines) <= OUTPUT_FOLD_LINES:
        return text
    half = OUTPUT_FOLD_LINES // 2
    return "\n".join([*lines[:half], f"… {len(lines) - 2 * half} lines left out …", *lines[-half:]])


def _header(run: RunRecord, integrity: VerifyResult, filename: str) -> list[str]:
    operator = run.operator
    who = f"{operator.get('user', '?')}@{operator.get('host', '?')}"
    extras = [f"tty {operator['tty']}" if operator.get("tty") else "", operator.get("git_user") or ""]
    lines = [f"- **Result:** {_inline(run.result)}" + (f": {_inline(run.reason)}" if run.reason else "")]
    if run.continued:
        nxt = run.continued
        lines.append(f"- **Continued with:** {_inline(nxt.get('title') or '?')} ({_code(nxt.get('path') or '?')}), "
                     f"transcript {_code(nxt.get('transcript') or '?')}")
    lines.append(f"- **Operator:** {_inline(who)}" + _parenthesised(extras))
    book = run.runbook
    lines.append(f"- **Runbook:** {_code(book.get('path') or '?')}, SHA-256 {_code(book.get('sha256') or '?')}")
    if run.git and run.git.get("head"):
        git = run.git
        where = f"{_code(git.get('branch') or 'detached HEAD')} at {_code(str(git['head'])[:12])}"
        extras = ["dirty" if git.get("dirty") else "", f"tag {git['tag']}" if git.get("tag") else "",
                  "runbook has uncommitted changes" if git.get("runbook_uncommitted") else ""]
        lines.append(f"- **Git:** {where}" + _parenthesised(extras))
    elif run.git:
        lines.append(f"- **Git:** {_inline(run.git.get('note') or 'no commit')}")
    if run.mode:
        lines.append(f"- **Mode:** {_inline(run.mode)}")
    lines.append(f"- **Started:** {_when(run.started)}")
    unfinished = " (last event; the run did not finish)" if run.result == "incomplete" else ""
    lines.append(f"- **Finished:** {_when(run.finished)}{unfinished}")
    lines.append(f"- **Duration:** {_format_duration(run.duration)}")
    if run.run_id:
        lines.append(f"- **Run ID:** {_code(run.run_id)}, runbook-tui {_inline(run.tool_version or '?')}")
    if run.variables:
        values = ", ".join(_code(f"{name}={value}") for name, value in run.variables.items())
        lines.append(f"- **Variables:** {values}")
    if run.values_given:
        values = ", ".join(_code(f"{name}={value}") for name, value in run.values_given.items())
        lines.append(f"- **Values typed during the run:** {values}")
    if run.secrets:
        lines.append(f"- **Secrets (names only):** {', '.join(_code(name) for name in run.secrets)}")
    alarm = "" if integrity.ok else "**VERIFICATION FAILED**: "
    lines.append(
        f"- **Transcript:** {_code(filename)}, {alarm}{_inline(integrity.reason)};"
        f" last hash {_code(integrity.last_hash)}"
    )
    return lines


def _run_summary(run: RunRecord, integrity: VerifyResult) -> dict[str, Any]:
    summary = asdict(run)
    del summary["tasks"]
    summary["duration"] = run.duration
    summary["integrity"] = asdict(integrity)
    return summary


def _task_summary(task: TaskRecord) -> dict[str, Any]:
    summary = asdict(task)
    for internal in ("output", "running", "process"):  # the events carry these; a summary need not
        del summary[internal]
    return summary


def _cast(events: Iterator[dict[str, Any]]) -> str:
    """asciicast v2: commands and their output as typed, a marker at every step."""
    first = next(events, None)
    if first is None:
        raise TranscriptError("the transcript has no events")
    start = parse_timestamp(first["ts"])
    title = (first.get("runbook") or {}).get("title") or first.get("title") or ""
    width, height = CAST_SIZE
    header = {"version": 2, "width": width, "height": height, "timestamp": int(start.timestamp())}
    lines = [json.dumps(header | {"title": title}, ensure_ascii=False)]
    clock = 0.0
    # Replaying a cast writes to the viewer's terminal: keep colors, drop titles, clipboard
    # writes (OSC 52), device queries and screen control, as the headless output does.
    screen = TerminalFilter()
    for event in itertools.chain([first], events):
        kind = event.get("type")
        if kind == "step.entered":
            frame = ("m", f"{event['step_id']} {event.get('title', '')}")
        elif kind == "command.started":  # the command as it ran (values filled in, secrets masked)
            frame = ("o", f"$ {_crlf(safe_text(event.get('run_command') or event.get('command') or ''))}\r\n")
        elif kind == "output" and event.get("text"):
            frame = ("o", _crlf(screen.feed(event.get("text", ""))))
        elif kind == "command.finished":
            ended = _attempt_result(event)
            frame = ("m", f"{event.get('task_id')} {ended}")
            lines.append(json.dumps([round(max(clock, _seconds_since(start, event["ts"])), 6), "o",
                                     f"\x1b[0m[{ended}]\r\n"], ensure_ascii=False))
        elif kind in ("run.finished", "run.aborted"):
            result = event.get("result", "aborted") if kind == "run.finished" else "aborted"
            frame = ("o", f"\r\n[run {result}]\r\n")
        else:
            continue
        clock = max(clock, _seconds_since(start, event["ts"]))
        lines.append(json.dumps([round(clock, 6), *frame], ensure_ascii=False))
    return "\n".join(lines) + "\n"


def _seconds_since(start: datetime, ts: str) -> float:
    return (parse_timestamp(ts) - start).total_seconds()


def _crlf(text: str) -> str:
    """Bare newlines as CRLF, as a terminal needs them; PTY output already has CRLF."""
    return _BARE_LF.sub("\r\n", text)


def _redacted_events(path: str | os.PathLike[str], redact: Callable[[str], str]) -> Iterator[dict[str, Any]]:
    return (_redact_strings(event, redact) for event in read_events(path))


def _redact_strings(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_strings(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_strings(item, redact) for item in value]
    return value


def _unchanged(text: str) -> str:
    return text


def _task_output(task: TaskRecord, redact: Callable[[str], str]) -> str:
    """A task's whole output as plain text, redacted again now that chunks and escapes are joined."""
    return redact(plain_text("".join(task.output)))


def _label_markdown(task: TaskRecord) -> str:
    label = _first_line(task.label)
    return _code(label) if task.command is not None else _inline(label)


def _exit_text(task: TaskRecord) -> str:
    if task.timed_out:
        return "timed out"
    if task.signal:
        return f"signal {task.signal}"
    return "" if task.exit_code is None else f"exit {task.exit_code}"


def _fenced(text: str) -> list[str]:
    """A fenced code block no line of `text` can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


def _code(text: str) -> str:
    """An inline code span that survives backticks in `text`, its hidden characters shown escaped."""
    text = visible(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _inline(text: str) -> str:
    """Free text on one line, with no HTML a renderer would act on and no hidden characters."""
    return html.escape(visible(" ".join(text.split())), quote=False)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines() or [""]
    return lines[0] + (" …" if len(lines) > 1 else "")


def _parenthesised(parts: list[str]) -> str:
    kept = [_inline(part) for part in parts if part]
    return f" ({', '.join(kept)})" if kept else ""


def _when(ts: str | None) -> str:
    return "—" if ts is None else parse_timestamp(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


def _time_of_day(ts: str) -> str:
    return parse_timestamp(ts).strftime("%H:%M:%S")


def _format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def write_exclusive(path: str | os.PathLike[str], text: str) -> None:
    """Create `path` with `text`; FileExistsError if anything (a file, a link) is already there.

    An export never overwrites: with a careless name it could otherwise replace the runbook it
    documents, or follow a link another user planted to a file of ours.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def write_new(path: Path, text: str, avoid: Collection[Path] = ()) -> Path:
    """Write `text` to `path`, or to `stem-2.ext`, `stem-3.ext`, ... if taken; never to a path in `avoid`."""
    number = 1
    while True:
        candidate = path if number == 1 else path.with_name(f"{path.stem}-{number}{path.suffix}")
        number += 1
        if candidate.resolve() in avoid:
            continue
        try:
            write_exclusive(candidate, text)
        except FileExistsError:
            continue
        return candidate
