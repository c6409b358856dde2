"""One TUI measurement, in its own process (so its peak RSS is its own): cases 2, 3 and 4.

    python -m bench.tui_run RUNBOOK TRANSCRIPT [--keys] [--last TEXT]

Builds the app with `make_app(..., mode="auto")` (no confirmation), runs it under Textual's
headless driver (`run_test`), waits until `run.started` is on disk and the cursor is on the
task, presses enter and times until `command.finished` is in the transcript. With `--keys`
it also presses k/j every 50 ms while the command floods the pane and times each key until
the tree's cursor has moved. Prints one JSON object.

Keys are sent the way `Pilot.press` sends them (`driver.send_message(events.Key(...))`) but
without its `wait_for_idle` calls: under load those sleep up to 1 s each per key, so timing
the `pilot.press` call would measure Pilot's idle heuristic instead of the app.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

KEY_INTERVAL = 0.05
KEY_TIMEOUT = 5.0
POLL = 0.005


def vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class TranscriptTail:
    """The event types a growing transcript has held so far, reading only what was appended
    since the last look (a flood's transcript is read once, in pieces)."""

    TYPE = re.compile(rb'"type":"([a-z_.]+)"')  # escaped inside an output's text, so never matched there
    CARRY = 64  # bytes kept from the previous read: longer than any `"type":"..."` split across two reads

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.carry = b""
        self.kinds: set[str] = set()

    def seen(self, kind: str) -> bool:
        if kind in self.kinds or not self.path.exists() or self.path.stat().st_size <= self.offset:
            return kind in self.kinds  # a stat per poll while nothing was appended
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            data = file.read()
        self.offset += len(data)
        self.kinds.update(match.decode() for match in self.TYPE.findall(self.carry + data))
        self.carry = (self.carry + data)[-self.CARRY:]
        return kind in self.kinds


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(POLL)


def send_key(app: Any, key: str) -> None:
    from textual import events

    event = events.Key(key, "\r" if key == "enter" else key)
    event.set_sender(app)
    app._driver.send_message(event)


async def measure(runbook: str, transcript: str, keys: bool, last: str, timeout: float) -> dict[str, Any]:
    from runbook_tui.parse import load_runbook
    from runbook_tui.tui.app import make_app

    book = load_runbook(runbook)
    task = next(book.commands())
    app = make_app(book, mode="auto", variables={}, transcript=transcript, theme=None)
    if app.session is None or app.session.mode != "auto":
        raise RuntimeError(f"the app runs in {app.session.mode if app.session else None!r} mode, not auto "
                           "(is the runbook trusted? `runbook-tui trust PATH`)")
    tail = TranscriptTail(Path(transcript))
    result: dict[str, Any] = {"latencies": [], "unhandled_keys": 0}
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await _drive(app, pilot, task, tail, keys, last, timeout, result)
    finally:
        if app.session is not None:
            app.session.interrupt()
    result["vm_hwm_kb"] = vm_hwm_kb()
    return result


async def _drive(app: Any, pilot: Any, task: Any, tail: TranscriptTail, keys: bool, last: str, timeout: float,
                 result: dict[str, Any]) -> None:
    from runbook_tui.tui.widgets.output_pane import OutputPane
    from runbook_tui.tui.widgets.step_tree import StepTree

    tree = app.query_one(StepTree)
    pane = app.query_one("#output", OutputPane)

    def on_task() -> bool:
        node = tree.cursor_node
        return node is not None and node.data is not None and node.data.task is task

    await until(lambda: tail.seen("run.started"), 30, "run.started")
    await until(on_task, 10, "the cursor on the task")
    await pilot.pause()
    start = time.perf_counter()
    send_key(app, "enter")
    finished = asyncio.Event()

    async def watch_transcript() -> None:
        while not tail.seen("command.finished"):
            await asyncio.sleep(POLL)
        result["seconds"] = time.perf_counter() - start
        finished.set()

    watcher = asyncio.create_task(watch_transcript())
    if keys:
        await until(lambda: app.run_screen.running is not None or finished.is_set(), 10, "the command to start")
        key = "k"
        while not finished.is_set():
            before = tree.cursor_line
            sent = time.perf_counter()
            send_key(app, key)
            try:
                await until(lambda before=before: tree.cursor_line != before, KEY_TIMEOUT, f"key {key}")
                result["latencies"].append(time.perf_counter() - sent)
            except TimeoutError:
                result["unhandled_keys"] += 1
                result["latencies"].append(KEY_TIMEOUT)
            key = "j" if key == "k" else "k"
            await asyncio.sleep(max(0.0, sent + KEY_INTERVAL - time.perf_counter()))
    await asyncio.wait_for(watcher, timeout)
    # the pane keeps the tail: it must show the last line once it has drained its queue
    caught = time.perf_counter()
    try:
        await until(lambda: any(last in line for line in pane.lines_of(task.id)[-4:]) or
                    (not last and bool(pane.lines_of(task.id))), 30, "the pane to show the last line")
        result["pane_complete"] = True
    except TimeoutError:
        result["pane_complete"] = False
    result["pane_lag"] = time.perf_counter() - caught
    app.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tui_run")
    parser.add_argument("runbook")
    parser.add_argument("transcript")
    parser.add_argument("--keys", action="store_true", help="press k/j every 50 ms during the run")
    parser.add_argument("--last", default="", help="text the pane's last line must hold")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    loop = asyncio.new_event_loop()
    code = 0
    try:
        result = loop.run_until_complete(measure(args.runbook, args.transcript, args.keys, args.last, args.timeout))
    except Exception as exc:  # report it; the parent marks the sample incomplete
        result, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
    json.dump(result, sys.stdout)
    sys.stdout.flush()
    # a session thread may still wait on a dialog or a command: do not hang on interpreter exit
    os._exit(code)


if __name__ == "__main__":
    main()
