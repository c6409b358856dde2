"""Case 8: the TUI's `seq 1000000` in a real terminal (tmux), side by side with `asciinema rec`
and `script` in the same tmux.

Case 2 runs the app under Textual's headless driver, which draws nothing. Here every tool runs
in a detached 120x40 tmux pane with TERM set as a user inside tmux has it (bench/tmux.py), one
fresh tmux server per measurement:

- ours: `runbook-tui open --mode auto --transcript T RUNBOOK` (a trusted one-task runbook, so
  enter runs the task without a confirmation). Once `run.started` is in the transcript and the
  first frame is on the screen with the cursor on the task, the bench presses enter (`send-keys`)
  and times until `command.finished` is in the transcript on disk.
- asciinema: the pane runs `sh`, which prints a line and waits on `read`; the bench presses
  enter and times until the file `sh` writes after `asciinema rec --overwrite -q -c CMD FILE`
  exits appears. That includes asciinema's own start and stop (a Python program), so the same
  is done with `seq 1`, and the table shows the ratio with each tool's `seq 1` subtracted too.
  Ours with `seq 1` is its fixed cost per command (spawn, PTY, fsynced events) in the running app.
- script: `script -qfc CMD /dev/null` the same way, the floor for a terminal recorder.

tmux parses every byte a pane's program writes into its grid (cursor moves, scrolling, the
2,000-line history, colours) whether or not a client is attached; that is the terminal's real
work, and the app's frames go through it like a user's terminal's. What no client means is that
tmux does not redraw an outer terminal, which a user's terminal emulator would do on its own CPU.

Every run is checked: ours' transcript holds the whole output, asciinema's recording too, and
every pane shows the output's last line (for ours: the output pane caught up; its lag after
`command.finished` is reported, not added). The order of the tools rotates every repetition.
"""

from __future__ import annotations

import math
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import CaseResult, Context, Table, Target, fmt_ratio, fmt_s
from bench.measure import Sample, median, ours_exe, rotate
from bench.tmux import Server, pane_term
from bench.tui_run import POLL, TranscriptTail
from bench.workloads import Workload, cast_tally, judge, runbook, seq, transcript_tally

OURS, ASCIINEMA, SCRIPT = "ours (TUI)", "asciinema", "script"
TOOLS = (OURS, ASCIINEMA, SCRIPT)
READY = "bench: press enter"  # what a baseline's pane prints before it waits for the enter key
SCREEN_POLL = 0.02  # capture-pane (a tmux client process each time) every 20 ms, only outside the timing
SETTLE_TIMEOUT = 60.0  # first frame or READY this late means a tool is stuck, not slow
START_TIMEOUT = 10.0  # the enter key must have started the command by then (else it was lost)
RUN_TIMEOUT = 600.0  # seq 1000000 takes about a second: ten minutes means a hang
PANE_TIMEOUT = 30.0  # the pane must show the last line this long after the tool finished
# A line of output on the screen: the text alone between the line's ends or box-drawing and block
# glyphs (U+2500-U+259F: the output pane's borders, a toast's edge), never inside other text such
# as `0/1 tasks` or `$ seq 1`.
_EDGE = "[\u2500-\u259f]"


def shows_line(screen: str, text: str) -> bool:
    return re.search(rf"(?m)(?:^|{_EDGE}){re.escape(text)} *(?:{_EDGE}|$)", screen) is not None


@dataclass
class Runs:
    """One tool's samples: the workload's and `seq 1`'s."""

    big: list[Sample] = field(default_factory=list)
    one: list[Sample] = field(default_factory=list)

    def seconds(self, samples: list[Sample]) -> float:
        return median([s.seconds for s in samples])


def _until(predicate: Callable[[], bool], timeout: float, poll: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll)


def _pane_lag(server: Server, last: str) -> float:
    """Seconds until the pane shows the line `last` (after the timed part ended)."""
    start = time.perf_counter()
    _until(lambda: shows_line(server.screen(), last), PANE_TIMEOUT, SCREEN_POLL, f"the line {last!r} on the screen")
    return time.perf_counter() - start


def measure_ours(ctx: Context, book: Path, workload: Workload, tag: str) -> Sample:
    transcript = ctx.work / "terminal.jsonl"
    transcript.unlink(missing_ok=True)
    server, pane = Server(ctx, tag), 0
    sample = Sample(math.nan, complete=False)
    try:
        server.start([*ours_exe(), "open", "--mode", "auto", "--transcript", str(transcript), str(book)])
        pane = server.pane_pid()
        tail = TranscriptTail(transcript)
        _until(lambda: tail.seen("run.started"), SETTLE_TIMEOUT, SCREEN_POLL, "run.started")
        # the task in the tree, its panel (the cursor is on it) and the footer: the frame is whole
        server.wait_for([f"$ {workload.command}", "task 1.1.1 · pending", "q Quit"], SETTLE_TIMEOUT, SCREEN_POLL)
        start = time.perf_counter()
        server.press("Enter")
        _until(lambda: tail.seen("command.started"), START_TIMEOUT, POLL, "the enter key to start the command")
        _until(lambda: tail.seen("command.finished"), RUN_TIMEOUT, POLL, "command.finished")
        sample.seconds = time.perf_counter() - start
        sample.extra["pane_lag"] = _pane_lag(server, workload.last)
        tally, _, ok = transcript_tally(transcript)
        sample.complete, sample.detail = judge(workload, tally)
        sample.complete = sample.complete and ok
    except RuntimeError as exc:
        sample.detail = str(exc)[:300]
    finally:
        sample.extra["hung"] = not server.kill(pane)
        transcript.unlink(missing_ok=True)
    return sample


def measure_baseline(ctx: Context, tool: str, workload: Workload, tag: str) -> Sample:
    done = ctx.work / "terminal.done"  # written by the pane's shell once the tool exited
    cast = ctx.work / "terminal.cast"
    done.unlink(missing_ok=True)
    command = (["asciinema", "rec", "--overwrite", "-q", "-c", workload.command, str(cast)] if tool == ASCIINEMA
               else ["script", "-qfc", workload.command, "/dev/null"])
    # `: >` is the shell's own redirection (no process to start); the last `read` keeps the pane
    # open for the screen check until the server is killed
    shell = f"echo {shlex.quote(READY)}; read _; {shlex.join(command)}; : > {shlex.quote(str(done))}; read _"
    server, pane = Server(ctx, tag), 0
    sample = Sample(math.nan, complete=False)
    try:
        server.start(["sh", "-c", shell])
        pane = server.pane_pid()
        server.wait_for([READY], SETTLE_TIMEOUT, SCREEN_POLL)
        start = time.perf_counter()
        server.press("Enter")
        _until(done.exists, RUN_TIMEOUT, POLL, f"{tool} to exit")
        sample.seconds = time.perf_counter() - start
        last = workload.last
        if tool == ASCIINEMA:
            # asciinema 2 stops reading once its child exits and loses what the PTY still held:
            # the pane shows what it recorded (its times are kept; the loss is in the notes)
            tally = cast_tally(cast)
            sample.complete, sample.detail = judge(workload, tally)
            last = tally.tail.rstrip("\r\n").rsplit("\n", 1)[-1].strip("\r")
        else:
            sample.complete, sample.detail = True, "the pane shows the last line"
        sample.extra["pane_lag"] = _pane_lag(server, last)
    except RuntimeError as exc:
        sample.complete, sample.detail = False, str(exc)[:300]
        sample.extra["failed"] = True
    finally:
        sample.extra["hung"] = not server.kill(pane)
        cast.unlink(missing_ok=True)
    return sample


def _lag(samples: list[Sample]) -> str:
    lags = [s.extra["pane_lag"] for s in samples if "pane_lag" in s.extra]
    return fmt_s(median(lags)) if lags else "n/a"


def _complete(samples: list[Sample]) -> str:
    done = sum(1 for s in samples if s.complete)
    return "yes" if done == len(samples) else f"{done}/{len(samples)}"


def case_terminal(ctx: Context) -> CaseResult:
    result = CaseResult("8", "Output throughput in a real terminal (the TUI and the baselines in tmux)")
    workload = seq(ctx.sizes.seq_lines)
    target = f"ours (TUI)/asciinema in tmux, {workload.name}"
    if not (ctx.has("tmux") and ctx.has("asciinema")):
        result.notes.append("tmux or asciinema is not installed: this case was skipped.")
        result.targets.append(Target(target, None, 1.5, "x"))
        return result
    one = seq(1)
    books = {workload: runbook(ctx.work, workload, "terminal"), one: runbook(ctx.work, one, "terminal-1")}
    for book in books.values():
        ctx.trust(book)
    tools = [tool for tool in TOOLS if tool == OURS or ctx.has(tool)]
    runs = {tool: Runs() for tool in tools}
    for rep in range(ctx.reps):
        for load in (workload, one):
            for tool in rotate(tools, rep):
                tag = f"{rep}-{load.lines}"
                sample = (measure_ours(ctx, books[load], load, tag) if tool == OURS
                          else measure_baseline(ctx, tool, load, tag))
                (runs[tool].big if load is workload else runs[tool].one).append(sample)
                if not sample.complete and (tool == OURS or sample.extra.get("failed")):
                    result.problems.append(f"{tool}, {load.name}: {sample.detail}")
        ctx.log(f"  terminal rep {rep + 1}/{ctx.reps}: "
                + ", ".join(f"{t} {fmt_s(runs[t].big[-1].seconds)} (seq 1: {fmt_s(runs[t].one[-1].seconds)})"
                            for t in tools))
    _report(result, workload, runs, target)
    return result


def _report(result: CaseResult, workload: Workload, runs: dict[str, Runs], target: str) -> None:
    ours_big, ours_one = runs[OURS].seconds(runs[OURS].big), runs[OURS].seconds(runs[OURS].one)
    rows = []
    for tool, r in runs.items():
        big, fixed = r.seconds(r.big), r.seconds(r.one)
        times = [s.seconds for s in r.big]
        alone = big - fixed
        raw_ratio = ours_big / big
        # at a tiny size the output alone is within the noise of `seq 1`: no ratio then
        alone_ratio = (ours_big - ours_one) / alone if alone > 0 and ours_big > ours_one else math.nan
        rows.append([tool, fmt_s(big), f"{fmt_s(min(times))} – {fmt_s(max(times))}", fmt_s(fixed), fmt_s(alone),
                     "1.00x" if tool == OURS else fmt_ratio(raw_ratio),
                     "1.00x" if tool == OURS else fmt_ratio(alone_ratio), _lag(r.big), _complete(r.big + r.one)])
        key = tool.split()[0]
        result.numbers.update({f"{key}_s": big, f"{key}.seq1_s": fixed})
        if tool != OURS:
            result.numbers[f"ratio.{key}"] = raw_ratio
            if not math.isnan(alone_ratio):
                result.numbers[f"ratio_alone.{key}"] = alone_ratio
        lost = [s.detail for s in r.big + r.one if not s.complete and not s.extra.get("failed")]
        if tool != OURS and lost:
            result.notes.append(f"{tool} lost output in {len(lost)} of {len(r.big) + len(r.one)} runs (e.g. "
                                f"{lost[0][:120]}): it stops reading when its child exits; its times are kept.")
        hung = sum(1 for s in r.big + r.one if s.extra.get("hung"))
        if hung:
            result.notes.append(f"{tool}: {hung} of {len(r.big) + len(r.one)} processes were still running after "
                                "their tmux server was killed and were killed by the bench.")
    result.tables.append(Table(
        f"`{workload.command}` in a {pane_term()} tmux pane (120x40): enter → `command.finished` on disk "
        "(ours) or the recorder's exit (baselines); medians",
        ["tool", "median", "min – max", "`seq 1`", "output alone", "ours/tool", "ours/tool, `seq 1` subtracted",
         "pane shows the last line after", "complete"], rows))
    result.targets.append(Target(target, result.numbers.get("ratio.asciinema"), 1.5, "x"))
    result.notes.append("Ours starts, draws its first frame and waits with the cursor on the task before the timed "
                        "enter; its `seq 1` row is the fixed cost of one command in the running app. A baseline is "
                        "started by the enter (`sh` waiting on `read` runs it), so its time includes its own start "
                        "and stop (asciinema is a Python program): the `seq 1` subtracted column compares the output "
                        "alone. \"pane shows the last line after\" is how long after the timed end the output's last "
                        "line was on the screen (`capture-pane` every 20 ms), not part of the time.")
