"""What the cases feed the tools: commands, generated runbooks and transcripts, and the checks
that a run recorded everything (a fast wrong result does not count)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

SECRET_ENV = "BENCH_TOKEN"
SECRET_VALUE = "bench-Tok3n-9f8e7d6c5b4a3928"  # registered, redacted; never printed by the workloads


@dataclass(frozen=True)
class Workload:
    """A shell command, and what its recorded output must hold."""

    name: str
    command: str
    lines: int  # newlines the output must hold (0: one line without a newline)
    chars: int  # characters the recording must hold, at least (as they come out of the PTY)
    last: str  # text the output must end with (before the final \r\n)


def seq(lines: int) -> Workload:
    return Workload(f"seq {lines:,}", f"seq {lines}", lines, 0, str(lines))


def ansi_lines(directory: Path, lines: int, width: int = 200) -> Workload:
    """`lines` lines of `width` visible characters in ten colored runs each, printed by `cat`."""
    path = directory / f"ansi-{lines}.txt"
    part = width // 10

    def line(i: int) -> str:
        runs = [f"{i:>{part}}"] + [chr(97 + (i + k) % 26) * part for k in range(1, 10)]
        return "".join(f"\x1b[{31 + k % 7}m{run}" for k, run in enumerate(runs)) + "\x1b[0m\n"

    if not path.exists():
        with open(path, "w", encoding="ascii") as out:
            out.writelines(line(i) for i in range(lines))
    # through the PTY every \n arrives as \r\n: one more character per line
    return Workload(f"{lines:,} lines x {width} chars, ANSI colors", f"cat {path}", lines,
                    path.stat().st_size + lines, line(lines - 1).rstrip("\n"))


def big_line(directory: Path, size: int) -> Workload:
    """One line of `size` bytes and no newline, printed by `cat`."""
    path = directory / f"line-{size}.txt"
    if not path.exists():
        pattern = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        block = pattern * ((1 << 20) // len(pattern) + 1)
        with open(path, "wb") as out:
            left = size
            while left:
                chunk = block[: min(left, len(block))]
                out.write(chunk)
                left -= len(chunk)
    mib = size / 1e6
    return Workload(f"one {mib:g} MB line, no newline", f"cat {path}", 0, size, "")


def runbook(directory: Path, workload: Workload, tag: str) -> Path:
    """A one-task runbook running `workload.command`, with a secret registered from the environment."""
    path = directory / f"bench-{tag}.md"
    path.write_text(
        "---\n"
        "secrets:\n"
        f'  TOKEN: "env:{SECRET_ENV}"\n'
        "---\n\n"
        f"# Bench {tag}\n\n"
        "## Steps\n\n"
        "1. **Print**\n\n"
        "   ```sh\n"
        f"   {workload.command}\n"
        "   ```\n",
        encoding="utf-8",
    )
    return path


# ---- completeness ------------------------------------------------------------------------------

TAIL = 1024  # characters of the end of a recording kept to check its last line


@dataclass
class Tally:
    newlines: int = 0
    chars: int = 0
    tail: str = ""

    def add(self, text: str) -> None:
        self.newlines += text.count("\n")
        self.chars += len(text)
        self.tail = (self.tail + text)[-TAIL:]


def judge(workload: Workload, tally: Tally) -> tuple[bool, str]:
    """Whether a recording holds the whole output; a short description of what it holds."""
    problems = []
    if tally.newlines < workload.lines:
        problems.append(f"{tally.newlines:,} of {workload.lines:,} lines")
    if workload.lines == 0 and tally.newlines:
        problems.append(f"{tally.newlines} newline(s) in a one-line output")
    if tally.chars < workload.chars:
        problems.append(f"{tally.chars:,} of {workload.chars:,} characters")
    tail = tally.tail.rstrip("\r\n")
    if workload.last and not tail.endswith(workload.last):
        problems.append(f"ends with {tail[-20:]!r}, not {workload.last!r}")
    held = f"{tally.newlines:,} lines, {tally.chars:,} chars"
    return (not problems, "; ".join(problems) or held)


def transcript_tally(path: Path) -> tuple[Tally, int, bool]:
    """Output of every task in a transcript; the number of events and whether a command finished 0."""
    tally, events, finished_ok = Tally(), 0, False
    with open(path, "rb") as file:
        for line in file:
            events += 1
            event = json.loads(line)
            if event["type"] == "output":
                tally.add(event["text"])
            elif event["type"] == "command.finished":
                finished_ok = event.get("exit_code") == 0
    return tally, events, finished_ok


def script_tally(path: Path) -> Tally:
    """What `script` recorded, without the header and footer lines it adds around the output."""
    data = path.read_bytes()
    start = data.index(b"\n") + 1 if data.startswith(b"Script started") else 0
    end = data.rfind(b"\nScript done")
    tally = Tally()
    tally.add(data[start : end if end >= start else len(data)].decode("utf-8", errors="replace"))
    return tally


def cast_tally(path: Path) -> Tally:
    """What `asciinema rec` recorded: the text of every "o" event of an asciicast v2 file."""
    tally = Tally()
    with open(path, encoding="utf-8") as file:
        next(file)  # header
        for line in file:
            _, kind, text = json.loads(line)
            if kind == "o":
                tally.add(text)
    return tally


# ---- parse scale ---------------------------------------------------------------------------------

def markdown_runbook(directory: Path, steps: int) -> Path:
    """`steps` numbered steps, 100 per `##` section, each with a manual check and a command."""
    path = directory / f"scale-{steps}.md"
    parts = [f"# Generated runbook, {steps} steps\n\n**Owner:** bench\n**Severity:** Low\n"]
    for i in range(steps):
        if i % 100 == 0:
            parts.append(f"\n## Section {i // 100 + 1}\n\n")
        marker = f"{i % 100 + 1}. "
        pad = " " * len(marker)  # nested bullets start where the item's text does (CommonMark)
        parts.append(f"{marker}**Step {i + 1}**\n{pad}- Check item {i + 1} by hand.\n{pad}- `echo step-{i + 1}`\n")
    path.write_text("".join(parts), encoding="utf-8")
    return path


def yaml_runbook(directory: Path, steps: int) -> Path:
    """The same runbook as `markdown_runbook`, as a YAML document."""
    path = directory / f"scale-{steps}.yaml"
    parts = [f"title: Generated runbook, {steps} steps\nowner: bench\nseverity: Low\nsections:\n"]
    for i in range(steps):
        if i % 100 == 0:
            parts.append(f"  - title: Section {i // 100 + 1}\n    steps:\n")
        parts.append(f"      - title: Step {i + 1}\n        tasks:\n"
                     f"          - manual: Check item {i + 1} by hand.\n"
                     f"          - run: echo step-{i + 1}\n")
    path.write_text("".join(parts), encoding="utf-8")
    return path


def transcript_file(directory: Path, events: int) -> Path:
    """A valid transcript of `events` events (run.started, output lines, run.finished).

    Written with the line layout documented in `runbook_tui.audit.transcript` (canonical JSON
    with `hash` appended last), without fsyncing each line, so a million events take seconds.
    """
    path = directory / f"transcript-{events}.jsonl"
    if path.exists():
        return path
    prev = "0" * 64
    ts = "2026-01-01T00:00:00.000000Z"
    with open(path, "wb", buffering=1 << 20) as out:
        for seq in range(events):
            if seq == 0:
                event = {"seq": 0, "ts": ts, "type": "run.started", "run_id": "bench", "mode": "auto", "prev": prev}
            elif seq == events - 1:
                event = {"seq": seq, "ts": ts, "type": "run.finished", "result": "success", "prev": prev}
            else:
                event = {"seq": seq, "ts": ts, "type": "output", "task_id": "1.1.1",
                         "text": f"{seq:>8} deploy: replica {seq % 7} healthy, lag {seq % 97} ms, queue ok\r\n",
                         "prev": prev}
            body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            prev = hashlib.sha256(body).hexdigest()
            out.write(body[:-1] + b',"hash":"' + prev.encode() + b'"}\n')
    return path
