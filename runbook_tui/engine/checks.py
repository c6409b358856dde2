"""Did a command do what the runbook expects? Exit codes and output patterns."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runbook_tui.process import ExitStatus
from runbook_tui.model import Task

# expect_output is matched against this much of the end of the output (the whole output lives
# in the transcript; memory stays bounded however much a command prints).
OUTPUT_TAIL = 1024 * 1024
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\r")


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt passed, and if not, why (shown to the operator and recorded)."""

    passed: bool
    reason: str = ""


def judge(task: Task, status: ExitStatus, output_tail: str) -> Verdict:
    """Check an attempt against `expect_exit` (default 0) and `expect_output`."""
    if status.timed_out:
        return Verdict(False, f"timed out after {task.options.timeout:g}s" if task.options.timeout else "timed out")
    if status.aborted:
        return Verdict(False, "aborted")
    expected = task.options.expect_exit or (0,)
    if status.exit_code is None:
        return Verdict(False, f"killed by signal {status.signal}")
    if status.exit_code not in expected:
        wanted = " or ".join(str(code) for code in expected)
        return Verdict(False, f"exit code {status.exit_code}, expected {wanted}")
    pattern = task.options.expect_output
    if pattern and re.search(pattern, _ANSI.sub("", output_tail), re.MULTILINE) is None:
        return Verdict(False, f"output did not match /{pattern}/")
    return Verdict(True)


class OutputTail:
    """The last OUTPUT_TAIL characters of an attempt's output, for expect_output."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size > 2 * OUTPUT_TAIL:
            joined = "".join(self._parts)[-OUTPUT_TAIL:]
            self._parts, self._size = [joined], len(joined)

    def text(self) -> str:
        return "".join(self._parts)[-OUTPUT_TAIL:]
