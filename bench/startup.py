"""Case 5: start-up. `runbook-tui check` as a whole process, and the TUI's first painted frame
in a real terminal (tmux, on a private `-L` socket whose server is the only one we kill)."""

from __future__ import annotations

import itertools
import math
import os
import shlex
import signal
import subprocess
import time

from bench.common import REPO, CaseResult, Context, Table, Target, fmt_ratio, python
from bench.measure import median, ours_exe, rotate, run_timed

FRAME_TIMEOUT = 30.0
_SERVERS = itertools.count()  # a fresh tmux server (socket) per measurement
EXIT_GRACE = 3.0
BARE_APP = (
    "from textual.app import App\n"
    "from textual.widgets import Static\n"
    "class Bare(App):\n"
    "    def compose(self):\n"
    "        yield Static('bare textual app')\n"
    "Bare().run()\n"
)


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def first_frame(ctx: Context, command: list[str], title: str, tag: str) -> tuple[float, bool]:
    """Seconds from starting a tmux session running `command` until `title` is on its screen, and
    whether the program exited within EXIT_GRACE seconds of losing its terminal (tmux kill-server
    sends it SIGHUP); one that did not is killed here, by the pane's process id."""
    socket = f"rbt-bench-{os.getpid()}-{tag}-{next(_SERVERS)}"

    def tmux(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", *args], capture_output=True, text=True,
                              env=ctx.env, cwd=ctx.work, timeout=30, check=False)

    pane = 0
    try:
        start = time.perf_counter()
        started = tmux("new-session", "-d", "-s", "bench", "-x", "120", "-y", "40", shlex.join(command))
        if started.returncode != 0:
            raise RuntimeError(f"tmux new-session failed: {started.stderr.strip()}")
        while True:
            screen = tmux("capture-pane", "-p", "-t", "bench").stdout
            if title in screen:
                seconds = time.perf_counter() - start
                break
            if time.perf_counter() - start > FRAME_TIMEOUT:
                raise RuntimeError(f"{title!r} not on screen after {FRAME_TIMEOUT}s; screen:\n{screen}")
            time.sleep(0.005)
        pane = int(tmux("list-panes", "-t", "bench", "-F", "#{pane_pid}").stdout.split()[0])
    finally:
        tmux("kill-server")
    return seconds, _exited(pane)


def _exited(pid: int) -> bool:
    """Wait for the pane's program to exit; kill its process group (its own session) if it does not."""
    deadline = time.monotonic() + EXIT_GRACE
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return False


def _alive(pid: int) -> bool:
    """Running, not a zombie: with tmux gone the program is reaped by whatever adopts it, and
    that can take seconds (in this sandbox PID 1 is not an init), so `kill(pid, 0)` would still
    succeed on a program that has long exited."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def case_startup(ctx: Context) -> CaseResult:
    result = CaseResult("5", "Start-up")
    deployment = REPO / "runbooks" / "deployment.md"
    reps = ctx.reps * 2
    commands = {
        "runbook-tui check runbooks/deployment.md": [*ours_exe(), "check", str(deployment)],
        "python -c pass": [python(), "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for rep in range(reps):
        for name in rotate(list(commands), rep):
            proc = run_timed(commands[name], env=ctx.env, cwd=REPO)
            if proc.returncode != 0:
                result.problems.append(f"{name}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
            times[name].append(proc.seconds)
    check, bare = (median(times[name]) for name in commands)
    result.tables.append(Table(
        "Whole process, real interpreter (no pyenv shim), median of runs",
        ["command", "median", "min", "ratio to python -c pass", "runs"],
        [[f"`{name}`", _ms(median(t)), _ms(min(t)), fmt_ratio(median(t) / bare), str(len(t))]
         for name, t in times.items()]))
    result.numbers.update({"check_s": check, "python_s": bare})
    result.targets.append(Target("`check` whole process", check * 1000, 200, "ms", "<"))

    if not ctx.has("tmux"):
        result.notes.append("tmux is not installed: the first-frame measurement was skipped.")
        result.targets.append(Target("first frame in tmux", None, 1000, "ms", "<"))
        return result
    demo = REPO / "runbooks" / "demo.md"
    ctx.trust(demo)
    frames: dict[str, list[float]] = {"runbook-tui runbooks/demo.md": [], "bare Textual app (reference)": []}
    hung: dict[str, int] = {name: 0 for name in frames}
    for rep in range(1 if ctx.quick else max(3, ctx.reps)):
        transcript = ctx.work / f"frame-{rep}.jsonl"
        transcript.unlink(missing_ok=True)
        runs = {
            "runbook-tui runbooks/demo.md": ([*ours_exe(), str(demo), "--transcript", str(transcript)],
                                             "runbook-tui demo"),
            "bare Textual app (reference)": ([python(), "-c", BARE_APP], "bare textual app"),
        }
        for name in rotate(list(runs), rep):
            command, title = runs[name]
            try:
                seconds, exited = first_frame(ctx, command, title, str(rep))
                frames[name].append(seconds)
                hung[name] += not exited
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                result.problems.append(f"{name}: {exc}")
    ours_frame = median(frames["runbook-tui runbooks/demo.md"])
    bare_frame = median(frames["bare Textual app (reference)"])
    result.tables.append(Table(
        "First painted frame in tmux (120x40): from `tmux new-session` until the title is in `capture-pane`",
        ["program", "median", "min", "max", "runs"],
        [[name, _ms(median(t)), _ms(min(t, default=math.nan)), _ms(max(t, default=math.nan)), str(len(t))]
         for name, t in frames.items()]))
    result.numbers.update({"first_frame_s": ours_frame, "bare_frame_s": bare_frame})
    result.targets.append(Target("first frame in tmux", ours_frame * 1000, 1000, "ms", "<"))
    result.notes.append("The first-frame time includes starting a private tmux server (`-L`) and polling "
                        "`capture-pane` every 5 ms; the bare Textual app shows what Textual itself costs.")
    for name, count in hung.items():
        result.numbers[f"{name.split()[0]}.hung_after_sighup"] = float(count)
        if count:
            result.notes.append(f"{name}: {count} of {len(frames[name])} processes were still running "
                                f"{EXIT_GRACE:g} s after their terminal closed (tmux kill-server, SIGHUP) and were "
                                "killed by the bench.")
    return result

