"""The machine the bench ran on, and the results as plain text (console) and Markdown."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.common import REPO, CaseResult


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "?"


def machine() -> dict[str, str]:
    cpu = _proc_field("/proc/cpuinfo", "model name", lambda value: value) or "unknown"
    try:
        from textual import __version__ as textual_version
    except ImportError:
        from importlib.metadata import version

        textual_version = version("textual")
    head = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": _meminfo(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "textual": textual_version,
        "commit": head + (" (with uncommitted changes)" if dirty else ""),
        "script": _first_line(["script", "--version"]),
        "asciinema": _first_line(["asciinema", "--version"]),
        "tmux": _first_line(["tmux", "-V"]),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _meminfo() -> str:
    return _proc_field("/proc/meminfo", "MemTotal",
                       lambda value: f"{int(value.split()[0]) / 1024 / 1024:.0f} GiB") or "unknown"


def _proc_field(path: str, key: str, convert: Callable[[str], str]) -> str | None:
    """The first `key: value` line of a /proc file, converted; None if it is not there."""
    try:
        with open(path, encoding="utf-8") as file:
            for line in file:
                if line.startswith(key):
                    return convert(line.split(":", 1)[1].strip())
    except OSError:
        pass
    return None


QUICK = False  # set by __main__ for --quick: tiny sizes say nothing about the targets


def mark(met: bool | None) -> str:
    if QUICK:
        return "not evaluated (--quick)"
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.1f} {unit}" if abs(value) < 100 else f"{value:,.0f} {unit}"


def text(results: list[CaseResult]) -> str:
    out: list[str] = []
    for result in results:
        out.append(f"\n== Case {result.key}: {result.title}")
        for table in result.tables:
            out.append(f"-- {table.title}")
            widths = [max(len(str(c)) for c in column) for column in zip(table.columns, *table.rows)]
            for row in [table.columns, *table.rows]:
                out.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        for target in result.targets:
            out.append(f"   target {target.text}: {_value(target.value, target.unit)} "
                       f"(needs {target.op} {target.limit:g} {target.unit}) -> {mark(target.met).strip('*')}")
        for problem in result.problems:
            out.append(f"   INCOMPLETE: {problem}")
    return "\n".join(out)


def markdown(results: list[CaseResult], info: dict[str, str], command: str) -> str:
    out = ["## Machine and command", "",
           f"- Date: {info['date']}; commit {info['commit']}; code measured: {info.get('code', 'the checkout')}",
           f"- CPU: {info['cpu']}, `nproc` = {info['nproc']}, memory {info['memory']}, Linux {info['kernel']}",
           (f"- Python {info['python']}, Textual {info['textual']}; {info['script']}; {info['asciinema']}; "
            f"{info['tmux']}"),
           (f"- Load average (1, 5, 15 min) when the run ended: {info['load']} "
            "(other work on the machine shows up as noise in the medians)"),
           f"- Reproduce: `{command}`", ""]
    summary = [t for r in results for t in r.targets]
    out += ["## Targets (issue 6)", "", "| case | target | measured | needs | result |", "|---|---|---|---|---|"]
    for result in results:
        for t in result.targets:
            out.append(f"| {result.key} | {t.text} | {_value(t.value, t.unit)} | {t.op} {t.limit:g} {t.unit} "
                       f"| {mark(t.met)} |")
    missed = sum(1 for t in summary if t.met is False)
    out += ["", f"{len(summary) - missed} of {len(summary)} targets met." if summary else "", ""]
    for result in results:
        out += [f"## Case {result.key}: {result.title}", ""]
        for table in result.tables:
            out += [f"**{table.title}**", "", "| " + " | ".join(table.columns) + " |",
                    "|" + "---|" * len(table.columns)]
            out += ["| " + " | ".join(str(c) for c in row) + " |" for row in table.rows]
            out.append("")
        for note in result.notes:
            out += [note, ""]
        if result.problems:
            out += ["Incomplete or failed runs:", ""] + [f"- {p}" for p in result.problems] + [""]
    return "\n".join(out).rstrip() + "\n"


def as_json(results: list[CaseResult], info: dict[str, str]) -> dict[str, Any]:
    return {"machine": info, "cases": {r.key: r.as_dict() for r in results}}
