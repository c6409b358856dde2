"""Reading runbook files: one entry point that picks the parser by file type."""

from __future__ import annotations

from pathlib import Path

from runbook_tui.model import Runbook
from runbook_tui.parse.errors import RunbookError

YAML_SUFFIXES = (".yaml", ".yml")


def read_text(path: str | Path) -> str:
    """The file's text, or a RunbookError that says what is wrong with it (and where)."""
    name = str(path)
    file = Path(path)
    if not file.exists():
        raise RunbookError("no such file", name)
    if file.is_dir():
        raise RunbookError("is a directory, not a runbook file", name)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise RunbookError(f"cannot read the file: {exc.strerror}", name) from None
    if b"\0" in data:
        offset = data.index(b"\0")
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise RunbookError("binary file (it holds NUL bytes), not a runbook", name, line, column)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RunbookError("not UTF-8 text (is this a binary file?)", name, line, column) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def parse_text(text: str, path: str) -> Runbook:
    """Parse runbook text, as YAML when the path says so, otherwise as Markdown."""
    import gc
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_text(text, path)
    finally:
        if enabled:
            gc.enable()


def _parse_text(text: str, path: str) -> Runbook:
    if path.lower().endswith(YAML_SUFFIXES):
        from runbook_tui.parse.yaml import parse_yaml

        return parse_yaml(text, path)
    from runbook_tui.parse.markdown import parse_markdown

    return parse_markdown(text, path)


def load_runbook(path: str | Path) -> Runbook:
    """Read and parse a runbook file; any user mistake comes out as RunbookError."""
    return parse_text(read_text(path), str(path))
