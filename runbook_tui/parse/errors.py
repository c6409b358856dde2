"""The one exception type a user mistake in a runbook file may raise."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RunbookError(Exception):
    """Bad input, located in a file: printed as `file:line:col: message`, exit code 2."""

    def __init__(self, message: str, path: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix naming the nearest known key, or nothing."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
