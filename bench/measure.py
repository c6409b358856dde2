"""Timing and peak memory of one child process, and the statistics the report prints.

Peak RSS is `ru_maxrss` of the child: the largest resident set of the child and every
descendant it waited for (the biggest single process of the tree, not a sum), so `script`'s
number covers script, the shell and `seq`, and ours covers the Python process. It is read by
GNU time (`/usr/bin/time -f %M`), a small process: `ru_maxrss` from our own `wait4` would also
count the pages the child shared with this (larger) Python process between fork and exec.
Without GNU time, `wait4` is used and the numbers are marked as upper bounds.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Sample:
    """One measured run: wall seconds, peak RSS (KiB), whether its output was complete."""

    seconds: float
    rss_kb: int = 0
    complete: bool = True
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Proc:
    seconds: float
    rss_kb: int
    returncode: int
    stderr: str
    stdout: str


GNU_TIME = "/usr/bin/time"


def exact_rss() -> bool:
    """Whether peak RSS comes from GNU time (exact) rather than our wait4 (an upper bound)."""
    return os.access(GNU_TIME, os.X_OK)


def run_timed(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
              stdout_path: str | None = os.devnull, timeout: float = 900.0) -> Proc:
    """Run `argv` with stdin from /dev/null; its wall time, peak RSS (KiB) and exit code.

    Standard output goes to `stdout_path` (/dev/null by default, like a recording tool's
    terminal nobody reads); None captures it. Standard error is captured in a file. The wall
    time includes GNU time's own fork and exec (about a millisecond).
    """
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out, \
            tempfile.NamedTemporaryFile(prefix="rss-") as rss:
        target = open(stdout_path, "wb") if stdout_path else out
        command = list(argv)
        if exact_rss():
            command = [GNU_TIME, "-f", "%M", "-o", rss.name, *command]
        try:
            start = time.perf_counter()
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=target, stderr=err,
                                    env=dict(env) if env is not None else None, cwd=cwd)
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if stdout_path:
                target.close()
        err.seek(0)
        out.seek(0)
        peak = int(usage.ru_maxrss)
        if exact_rss():
            lines = Path(rss.name).read_text().split()
            peak = int(lines[-1]) if lines and lines[-1].isdigit() else peak
        return Proc(seconds, peak, proc.returncode,
                    err.read().decode(errors="replace"), out.read().decode(errors="replace"))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def rotate(items: Sequence[Any], rep: int) -> list[Any]:
    """The tools in a different order each repetition, so none always runs first (cold caches)."""
    k = rep % len(items) if items else 0
    return list(items[k:]) + list(items[:k])


def python_exe() -> str:
    """The interpreter running the bench (never a pyenv shim, which adds ~0.25 s of bash per start)."""
    return sys.executable


def ours_exe() -> list[str]:
    """The installed `runbook-tui` console script next to the interpreter, run directly."""
    script = Path(python_exe()).parent / "runbook-tui"
    if script.exists():
        return [str(script)]
    found = shutil.which("runbook-tui")
    return [found] if found else [python_exe(), "-m", "runbook_tui"]


def mb(kib: float) -> float:
    return kib / 1024
