"""Annotation keys (`<!-- runbook: risk=high timeout=5m -->`, `{name=migrate}`, YAML task keys).

Both parsers turn a key/value mapping into `TaskOptions` here, so a key means the same thing
whichever format the runbook is written in.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping

from runbook_tui.batches import BatchSizeError, parse_serial
from runbook_tui.model import TaskOptions, WaitUntil
from runbook_tui.parse.errors import did_you_mean

ANNOTATION_KEYS = (
    "name",
    "risk",
    "confirm",
    "timeout",
    "retries",
    "expect_exit",
    "expect_output",
    "wait_until",
    "interval",
    "cwd",
    "env",
    "interactive",
    "container",
    "optional",
    "run",
    "skip",
    "secrets",
    "hosts",
    "serial",
    "max_fail",
    "parallel",
)
# Runme's cell attributes (docs.runme.dev, "cell-level options"). `name`, `interactive` and
# `cwd` mean the same as ours; `excludeFromRunAll` (not run by "run all", runnable by hand) is our
# `optional`; the others are kept on the task as written.
RUNME_KEYS = frozenset(
    "id name interactive background cwd promptEnv excludeFromRunAll closeTerminalOnSuccess category "
    "terminalRows mimeType interpreter skipPrompts readonly transient".split()
)
_RUNME_MEANING = {"excludeFromRunAll": "optional"}
DEFAULT_WAIT_INTERVAL = 5.0
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# A host or group name: what ~/.ssh/config and inventories use; no space or comma (the separators).
HOST_NAME = re.compile(r"[A-Za-z0-9_.:@\[\]-]+\Z")


class AnnotationError(ValueError):
    """A bad key or value; the caller adds the file position of `key`."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def parse_duration(value: object, key: str = "timeout") -> float:
    """Seconds from `90`, `90s`, `5m`, `1h30m` or `250ms`."""
    if isinstance(value, bool):
        raise AnnotationError(f"{key}: expected a duration such as 90s or 5m, got {value!r}", key)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            match = _DURATION.fullmatch(text)
            if not text or match is None or not any(match.groups()):
                raise AnnotationError(
                    f"{key}: expected a duration such as 90s or 5m, got {value!r}", key
                ) from None
            h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
            seconds = h * 3600 + m * 60 + s + ms / 1000
    if seconds <= 0:
        raise AnnotationError(f"{key}: a duration must be positive, got {value!r}", key)
    return seconds


def _boolean(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise AnnotationError(f"{key}: expected true or false, got {value!r}", key)


def _count(value: object, key: str, least: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise AnnotationError(f"{key}: expected a whole number, got {value!r}", key) from None
    if number < least:
        raise AnnotationError(f"{key}: expected {least} or more, got {value!r}", key)
    return number


def _hosts(value: object, key: str) -> tuple[str, ...]:
    """`web`, `web,db-1` or a list: group and host names, in order, each once."""
    items = value if isinstance(value, list) else str(value).replace(",", " ").split()
    names = tuple(dict.fromkeys(str(item).strip() for item in items))
    if not names:
        raise AnnotationError(f"{key}: expected a group or host name, got {value!r}", key)
    for name in names:
        if not HOST_NAME.match(name):
            raise AnnotationError(f"{key}: {name!r} is not a host or group name", key)
    return names


def _exit_codes(value: object, key: str) -> tuple[int, ...]:
    items = value if isinstance(value, list) else str(value).replace(",", " ").split()
    try:
        codes = tuple(int(item) for item in items)
    except (TypeError, ValueError):
        raise AnnotationError(f"{key}: expected exit codes such as 0 or 0,1, got {value!r}", key) from None
    if not codes or any(not 0 <= code <= 255 for code in codes):
        raise AnnotationError(f"{key}: exit codes go from 0 to 255, got {value!r}", key)
    return codes


def _env(value: object, key: str) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        pairs = [(str(k), "" if v is None else str(v)) for k, v in value.items()]
    else:
        pairs = []
        try:
            items = shlex.split(str(value).replace(",", " "))
        except ValueError as exc:
            raise AnnotationError(f"{key}: cannot be read: {exc}", key) from None
        for item in items:
            name, sep, val = item.partition("=")
            if not sep:
                raise AnnotationError(f"{key}: expected NAME=value pairs, got {item!r}", key)
            pairs.append((name, val))
    for name, _ in pairs:
        if not _ENV_NAME.match(name):
            raise AnnotationError(f"{key}: {name!r} is not a valid environment variable name", key)
    return tuple(pairs)


def _names(value: object, key: str) -> tuple[str, ...]:
    """Environment variable names from `A,B`, `A B` or a YAML list."""
    items = value if isinstance(value, list) else str(value).replace(",", " ").split()
    names = tuple(str(item) for item in items)
    bad = next((name for name in names if not _ENV_NAME.match(name)), None)
    if not names or bad is not None:
        raise AnnotationError(f"{key}: expected names such as DB_PASSWORD,API_TOKEN, got {value!r}", key)
    return names


def _text(value: object, key: str) -> str:
    if isinstance(value, (Mapping, list)) or value is None or str(value).strip() == "":
        raise AnnotationError(f"{key}: expected a non-empty text value, got {value!r}", key)
    return str(value)


def split_foreign(values: Mapping[str, object]) -> tuple[dict[str, object], dict[str, str], list[str]]:
    """(our keys, other tools' keys kept as written, the unknown ones among those) from an annotation.

    Runme's keys are understood; any other unknown key is another tool's (a warning), unless it
    is close to one of ours: that is a typo, an AnnotationError with a suggestion.
    """
    ours: dict[str, object] = {}
    kept: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in values.items():
        if key in ANNOTATION_KEYS:
            ours[key] = value
        elif key in _RUNME_MEANING:
            ours[_RUNME_MEANING[key]] = value
        elif key in RUNME_KEYS:
            kept[key] = _json_scalar(value)
        elif suggestion := did_you_mean(key, ANNOTATION_KEYS):
            raise AnnotationError(f"unknown annotation key '{key}'{suggestion}", key)
        else:
            kept[key] = _json_scalar(value)
            unknown.append(key)
    return ours, kept, unknown


def options_from_mapping(values: Mapping[str, object]) -> TaskOptions:
    """Validate annotation keys and values into `TaskOptions` (raises AnnotationError)."""
    opts: dict[str, object] = {}
    for key, value in values.items():
        if key not in ANNOTATION_KEYS:
            raise AnnotationError(f"unknown annotation key '{key}'{did_you_mean(key, ANNOTATION_KEYS)}", key)
        if key in ("name", "cwd", "container"):
            opts[key] = _text(value, key)
        elif key == "expect_output":
            pattern = _text(value, key)
            try:
                re.compile(pattern)
            except re.error as exc:
                raise AnnotationError(f"expect_output: not a valid regular expression: {exc}", key) from None
            opts[key] = pattern
        elif key == "risk":
            risk = str(value).strip().lower()
            if risk not in ("low", "high"):
                raise AnnotationError(f"risk: expected low or high, got {value!r}", key)
            opts[key] = risk
        elif key in ("confirm", "interactive", "optional", "run", "skip"):
            opts[key] = _boolean(value, key)
        elif key == "timeout":
            opts[key] = parse_duration(value, key)
        elif key in ("retries", "max_fail"):
            opts[key] = _count(value, key, 0)
        elif key == "parallel":
            opts[key] = _count(value, key, 1)
        elif key == "hosts":
            opts[key] = _hosts(value, key)
        elif key == "serial":
            try:
                opts[key] = parse_serial(value)
            except BatchSizeError as exc:
                raise AnnotationError(str(exc), key) from None
        elif key == "expect_exit":
            opts[key] = _exit_codes(value, key)
        elif key == "env":
            opts[key] = _env(value, key)
        elif key == "secrets":
            opts[key] = _names(value, key)
        elif key == "wait_until":
            opts[key] = _wait_until(value, values.get("interval"))
        elif key == "interval" and "wait_until" not in values:
            raise AnnotationError("interval: only means something together with wait_until", key)
    return TaskOptions(**opts)  # type: ignore[arg-type]


def _wait_until(value: object, interval: object) -> WaitUntil:
    if isinstance(value, Mapping):
        unknown = set(value) - {"timeout", "interval"}
        if unknown:
            key = sorted(unknown)[0]
            raise AnnotationError(
                f"wait_until: unknown key '{key}'{did_you_mean(key, ('timeout', 'interval'))}", "wait_until"
            )
        interval = value.get("interval", interval)
        value = value.get("timeout", "5m")
    timeout = parse_duration(value, "wait_until")
    every = parse_duration(interval, "interval") if interval is not None else DEFAULT_WAIT_INTERVAL
    return WaitUntil(timeout=timeout, interval=every)


def parse_attributes(text: str) -> dict[str, object]:
    """Key/value pairs from `key=value key2="two words"` or a JSON object (Runme's syntax).

    Raises AnnotationError(key="") when the text cannot be read as either.
    """
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        inner = text[1:-1].strip()
        if inner.startswith('"'):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise AnnotationError(f"annotation is not valid JSON: {exc.msg}", "") from None
            return {str(k): v if isinstance(v, (Mapping, list)) else _json_scalar(v) for k, v in data.items()}
        text = inner
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise AnnotationError(f"annotation cannot be read: {exc}", "") from None
    pairs: dict[str, object] = {}
    for word in words:
        word = word.rstrip(",")
        key, sep, value = word.partition("=")
        if not sep:
            raise AnnotationError(f"annotation: expected key=value, got {word!r}", key)
        pairs[key.strip()] = value
    return pairs


def _json_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
