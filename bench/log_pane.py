"""Case 7: the log pane over a long output: Home to the first line, a search over all of it, memory.

The parent runs, for each size, `python -m bench.log_pane RUNBOOK TRANSCRIPT` in its own process:
the app (`make_app`, auto mode, Textual's headless driver) runs `echo first-line-marker; seq N`,
and once `command.finished` is on disk and the pane shows the last line, the child focuses the
pane and times, with keys sent as `bench.tui_run` sends them:

- `home`: until the first line of the output ("first-line-marker", read back from the transcript:
  the pane keeps only the last lines in memory) is on screen;
- `/first-line-marker` enter, then `end` and `N` (the previous match from the live end): until the
  cursor is on that line; a backward search from the end reads the whole output on disk.

It prints one JSON object; the parent reports medians and the child's peak RSS per size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import CaseResult, Context, Table, Target, fmt_mb, fmt_s, python
from bench.measure import median, run_timed
from bench.throughput import FLAT_MB
from bench.tui_run import POLL, TranscriptTail, send_key, until, vm_hwm_kb
from bench.workloads import Workload, runbook

MARKER = "first-line-marker"


def case_log_pane(ctx: Context) -> CaseResult:
    result = CaseResult("7", "The log pane over a long output (Home to line 1, search, memory)")
    reps = max(1, min(ctx.reps, 3))
    rows, peaks = [], {}
    for lines in ctx.sizes.memory_lines:
        workload = Workload(f"seq {lines:,}", f"echo {MARKER}; seq {lines}", lines + 1, 0, str(lines))
        book = runbook(ctx.work, workload, f"pane-{lines}")
        ctx.trust(book)
        samples = []
        for _ in range(reps):
            transcript = ctx.work / "pane.jsonl"
            transcript.unlink(missing_ok=True)
            proc = run_timed([python(), "-m", "bench.log_pane", str(book), str(transcript), "--last", str(lines)],
                             env=ctx.env, cwd=ctx.work, stdout_path=None)
            transcript.unlink(missing_ok=True)
            try:
                sample = json.loads(proc.stdout)
            except ValueError:
                sample = {"error": f"no result (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"}
            if "error" in sample:
                result.problems.append(f"{lines:,} lines: {sample['error']}")
                continue
            sample["rss_kb"] = proc.rss_kb
            samples.append(sample)
        if not samples:
            continue
        home, search = median([s["home_s"] for s in samples]), median([s["search_s"] for s in samples])
        peak = median([s["rss_kb"] for s in samples])
        peaks[lines] = peak
        result.numbers[f"{lines}.home_s"], result.numbers[f"{lines}.search_s"] = home, search
        rows.append([f"{lines:,}", fmt_s(home), fmt_s(search), fmt_mb(peak), str(len(samples))])
        ctx.log(f"  log pane {lines:,} lines: home {fmt_s(home)}, search {fmt_s(search)}, peak {fmt_mb(peak)}")
        if lines == max(ctx.sizes.memory_lines):
            result.targets.append(Target(f"Home to the first line of {lines:,} lines", home, 0.2, "s", "<"))
        if lines == min(ctx.sizes.memory_lines):
            result.targets.append(Target(f"search over {lines:,} lines (backward from the end to line 1)",
                                         search, 1.0, "s", "<"))
    result.tables.append(Table("`echo first-line-marker; seq N` in the app, then in the pane",
                               ["lines", "home → line 1 on screen", "search from the end → line 1",
                                "peak RSS", "runs"], rows))
    if len(peaks) == 2:
        small, large = sorted(peaks)
        growth = (peaks[large] - peaks[small]) / 1024
        result.numbers["growth_mb"] = growth
        result.targets.append(Target(f"flat: peak RSS growth from {small:,} to {large:,} lines", growth, FLAT_MB, "MB"))
    result.notes.append("The app under Textual's headless driver in its own process (as in case 2). Keys are sent "
                        "as `bench.tui_run` sends them; each time runs from the key until the pane's rendered rows "
                        "hold line 1 (polled every 5 ms). Older lines come from the transcript (`output` events, "
                        "indexed sparsely on a worker thread); the pane keeps the last 5,000 lines in memory.")
    return result


def rows_of(view: Any) -> list[str]:
    return ["".join(segment.text for segment in view.render_line(y)).rstrip()
            for y in range(view.scrollable_content_region.height)]


async def measure(runbook_path: str, transcript: str, last: str) -> dict[str, Any]:
    from runbook_tui.parse import load_runbook
    from runbook_tui.tui.app import make_app
    from runbook_tui.tui.widgets.log_view import LogView
    from runbook_tui.tui.widgets.output_pane import OutputPane

    book = load_runbook(runbook_path)
    task = next(book.commands())
    app = make_app(book, mode="auto", variables={}, transcript=transcript, theme=None)
    tail = TranscriptTail(Path(transcript))
    result: dict[str, Any] = {}
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(lambda: tail.seen("run.started"), 30, "run.started")
            await pilot.pause()
            send_key(app, "enter")
            await until(lambda: tail.seen("command.finished"), 900, "command.finished")
            pane = app.query_one("#output", OutputPane)
            await until(lambda: any(last == line for line in pane.lines_of(task.id)[-3:]), 60, "the last line")
            view = app.query_one(LogView)
            view.focus()
            await pilot.pause()
            start = time.perf_counter()
            send_key(app, "home")
            await until(lambda: MARKER in rows_of(view), 30, "line 1 on screen after home")
            result["home_s"] = time.perf_counter() - start
            send_key(app, "slash")
            await until(lambda: app.focused is not view, 10, "the search field")
            for key in [*MARKER, "enter"]:
                send_key(app, key)
            await until(lambda: view.cursor == 1, 30, "the forward search")
            send_key(app, "end")
            await until(lambda: view.follow, 10, "end")
            start = time.perf_counter()
            send_key(app, "N")
            await until(lambda: view.cursor == 1 and MARKER in rows_of(view), 60, "the backward search")
            result["search_s"] = time.perf_counter() - start
            await asyncio.sleep(POLL)
            app.exit(0)
    finally:
        if app.session is not None:
            app.session.interrupt()
    result["vm_hwm_kb"] = vm_hwm_kb()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_pane")
    parser.add_argument("runbook")
    parser.add_argument("transcript")
    parser.add_argument("--last", default="", help="the output's last line")
    args = parser.parse_args(argv)
    code = 0
    try:
        result = asyncio.new_event_loop().run_until_complete(measure(args.runbook, args.transcript, args.last))
    except Exception as exc:  # report it; the parent counts the run as a problem
        result, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
    json.dump(result, sys.stdout)
    sys.stdout.flush()
    os._exit(code)  # a session thread may still wait: do not hang on interpreter exit


if __name__ == "__main__":
    main()
