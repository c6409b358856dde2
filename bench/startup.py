"""Case 5: start-up. `runbook-tui check` as a whole process, and the TUI's first painted frame
in a real terminal (tmux, on a private `-L` socket whose server is the only one we kill)."""

from __future__ import annotations

import math
import subprocess
import time

from bench.common import REPO, CaseResult, Context, Table, Target, fmt_ratio, python
from bench.measure import median, ours_exe, rotate, run_timed
from bench.tmux import EXIT_GRACE, Server

FRAME_TIMEOUT = 30.0  # a first frame this late means the app is stuck, not slow
FRAME_POLL = 0.005  # capture-pane every 5 ms: the first frame's time is known to within that
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
    sends it SIGHUP); one that did not is killed, by the pane's process id."""
    server = Server(ctx, tag)
    pane = 0
    try:
        start = time.perf_counter()
        server.start(command)
        server.wait_for([title], FRAME_TIMEOUT, FRAME_POLL)
        seconds = time.perf_counter() - start
        pane = server.pane_pid()
    finally:
        exited = server.kill(pane)
    return seconds, exited


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

