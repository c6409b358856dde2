"""Coverage-guided fuzzing of the runbook parsers and the transcript reader (atheris).

Targets (pick one with the first argument):

    markdown    parse_markdown(text) and lint(book, text), what `runbook-tui check` does
    yaml        parse_yaml(text) and lint(book, text)
    transcript  verify(path) and read_events(path) on the bytes written to a file

Contracts (anything else is a crash, and atheris stops with the input that caused it):

    parsers     a Runbook, or RunbookError with a location (line >= 1, column >= 1). Nothing else.
    verify      total: a VerifyResult for any bytes; it never raises (only OSError for I/O).
    read_events yields one dict per complete line, or raises TranscriptError naming the line.
                A file that `verify` accepts reads back as events (dicts with seq, type, hash).

Run (one core, 10 minutes, seed corpus copied to a scratch directory so it is not polluted):

    cp -r fuzz/corpus/markdown /tmp/md && python fuzz/fuzz_parsers.py markdown /tmp/md \
        -max_total_time=600 -rss_limit_mb=2048 -max_len=8192

`tests/test_fuzz.py` imports the `check_*` functions below and drives them with hypothesis
(atheris is not a test dependency), and replays every file in fuzz/corpus/ through them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

# Instrumented when run under atheris (see main); plain imports otherwise.
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] in ("markdown", "yaml", "transcript"):
    import atheris

    with atheris.instrument_imports(include=["runbook_tui", "markdown_it", "yaml", "json"]):
        from runbook_tui.audit.transcript import TranscriptError, read_events, verify
        from runbook_tui.parse.errors import RunbookError
        from runbook_tui.parse.lint import lint
        from runbook_tui.parse.markdown import parse_markdown
        from runbook_tui.parse.yaml import parse_yaml
else:
    from runbook_tui.audit.transcript import TranscriptError, read_events, verify
    from runbook_tui.parse.errors import RunbookError
    from runbook_tui.parse.lint import lint
    from runbook_tui.parse.markdown import parse_markdown
    from runbook_tui.parse.yaml import parse_yaml


def _text(data: bytes) -> str:
    """Text that `read_text` could hand the parsers: valid UTF-8 without NUL (it rejects files with
    either), BOM dropped, CRLF as LF. Bad bytes become U+FFFD rather than wasting the input."""
    text = data.decode("utf-8", "replace").replace("\0", "\ufffd")
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def _parsed(parse, text: str, path: str) -> None:
    try:
        book = parse(text, path)
    except RunbookError as exc:
        assert exc.line >= 1 and exc.column >= 1, f"error without a location: {exc!r}"
        assert str(exc).startswith(path + ":"), str(exc)
        return
    for task in book.tasks():
        assert task.kind in ("command", "manual"), task
        assert (task.command is not None) == (task.kind == "command"), task
    lint(book, text)


def check_markdown(data: bytes) -> None:
    _parsed(parse_markdown, _text(data), "fuzz.md")


def check_yaml(data: bytes) -> None:
    _parsed(parse_yaml, _text(data), "fuzz.yaml")


_SCRATCH: Path | None = None


def _scratch() -> Path:
    global _SCRATCH
    if _SCRATCH is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _SCRATCH = Path(tempfile.mkdtemp(prefix="rbt-fuzz-", dir=base)) / "t.jsonl"
    return _SCRATCH


def check_transcript(data: bytes, path: Path | None = None) -> None:
    path = path or _scratch()
    path.write_bytes(data)
    result = verify(path)  # total: must not raise
    assert result.ok == (result.first_bad_line is None), result
    events = []
    try:
        for event in read_events(path):
            assert isinstance(event, dict), f"read_events yielded a {type(event).__name__}: {event!r}"
            events.append(event)
    except TranscriptError:
        assert not result.ok or result.torn_tail, "read_events refused a file that verify accepted"
        return
    if result.ok:
        assert len(events) >= result.events, (len(events), result)
        for event in events[: result.events]:
            assert {"seq", "type", "hash", "prev"} <= set(event), event


TARGETS = {"markdown": check_markdown, "yaml": check_yaml, "transcript": check_transcript}


def main() -> None:
    import atheris

    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
