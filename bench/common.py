"""What every case gets (Context) and gives back (CaseResult: tables, targets, numbers)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import ours_exe
from bench.workloads import SECRET_ENV, SECRET_VALUE

REPO = Path(__file__).resolve().parent.parent
BASELINES = ("script", "asciinema")


@dataclass
class Sizes:
    """How big each case runs; `quick` is the smoke test's tiny size."""

    seq_lines: int = 1_000_000
    ansi_lines: int = 200_000
    big_line: int = 20_000_000
    memory_lines: tuple[int, int] = (1_000_000, 5_000_000)
    parse_steps: tuple[int, ...] = (100, 1_000, 10_000)
    verify_events: int = 1_000_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(seq_lines=2_000, ansi_lines=500, big_line=100_000, memory_lines=(2_000, 10_000),
                   parse_steps=(10, 100), verify_events=10_000)


@dataclass
class Context:
    work: Path  # scratch directory: runbooks, data files, transcripts, private XDG dirs
    reps: int
    sizes: Sizes
    quick: bool
    log: Callable[[str], None]
    missing: set[str] = field(default_factory=set)  # baseline/terminal binaries not installed
    code: Path | None = None  # measure the runbook_tui package in this directory (a candidate fix)

    @property
    def env(self) -> dict[str, str]:
        """The children's environment: private config/state/lock dirs, the bench secret."""
        env = dict(os.environ)
        # An installed tool has its bytecode (pip compiles it); a start-up measured without
        # would time the compiler, not us.
        for key in ("TERM_PROGRAM", "TEXTUAL", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE"):
            env.pop(key, None)
        env.update({
            "XDG_CONFIG_HOME": str(self.work / "config"),
            "XDG_STATE_HOME": str(self.work / "state"),
            "XDG_CACHE_HOME": str(self.work / "cache"),
            "RUNBOOK_TUI_LOCK_DIR": str(self.work / "locks"),
            SECRET_ENV: SECRET_VALUE,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(self.code) if self.code else None, str(REPO),
                                                        env.get("PYTHONPATH")])),
        })
        return env

    def compile_code(self) -> None:
        """Write the bytecode of the package measured, as `pip install` does."""
        package = (self.code or REPO) / "runbook_tui"
        subprocess.run([python(), "-m", "compileall", "-q", str(package)], env=self.env, check=True)

    def trust(self, runbook: Path) -> None:
        """`auto` and `run --yes` need a trusted runbook (when this version has `trust`)."""
        done = subprocess.run([*ours_exe(), "trust", str(runbook)], env=self.env, cwd=self.work,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0 and "No such command" not in done.stderr:
            raise RuntimeError(f"runbook-tui trust {runbook} failed: {done.stderr.strip()}")

    def has(self, tool: str) -> bool:
        return tool not in self.missing


@dataclass
class Target:
    """One goal of issue 6: `value op limit`; `met` is None when it could not be measured."""

    text: str
    value: float | None
    limit: float
    unit: str = ""
    op: str = "<="

    @property
    def met(self) -> bool | None:
        if self.value is None or math.isnan(self.value):
            return None
        return self.value <= self.limit if self.op in ("<=", "<") else self.value >= self.limit


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class CaseResult:
    key: str
    title: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)  # the headline medians, by name
    problems: list[str] = field(default_factory=list)  # incomplete output, failed runs

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "title": self.title, "numbers": self.numbers, "problems": self.problems,
            "complete": not self.problems, "notes": self.notes,
            "targets": [{"text": t.text, "value": t.value, "limit": t.limit, "unit": t.unit, "op": t.op,
                         "met": t.met} for t in self.targets],
            "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows} for t in self.tables],
        }


def missing_tools() -> set[str]:
    return {tool for tool in (*BASELINES, "tmux") if shutil.which(tool) is None}


def fmt_s(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}x"


def fmt_mb(kib: float) -> str:
    return "n/a" if math.isnan(kib) else f"{kib / 1024:.0f} MB"


def python() -> str:
    return sys.executable
