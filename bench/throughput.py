"""Cases 1-4: output throughput headless and in the TUI, key latency under flood, peak memory.

Every run is checked: ours must have the whole output in the transcript (and the TUI's pane
must show the last line), the baselines in their recording. An incomplete run is reported
as a problem, whatever its time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BASELINES, REPO, CaseResult, Context, Table, Target, fmt_mb, fmt_ratio, fmt_s, python
from bench.measure import Proc, Sample, exact_rss, median, ours_exe, percentile, rotate, run_timed
from bench.workloads import (
    Workload,
    ansi_lines,
    big_line,
    cast_tally,
    judge,
    runbook,
    script_tally,
    seq,
    transcript_tally,
)

OURS, TUI, FLOOR = "ours", "ours (TUI)", "Python floor (reference)"
# What `run` cannot start without, whatever our own code does: the CLI, the Markdown parser, YAML.
STACK = ("click", "pyromark", "yaml")
# "Flat": issue 6's own reference design went from 44 MB at 1M lines to 52 MB at 5M (+8 MB).
FLAT_MB = 10


@dataclass
class Series:
    tool: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return median([s.seconds for s in self.samples])

    @property
    def rss(self) -> float:
        return median([s.rss_kb for s in self.samples])

    def problems(self) -> list[str]:
        """Our incomplete runs (a baseline's are shown in its `complete` column and explained)."""
        if self.tool not in (OURS, TUI):
            return []
        return [f"{self.tool}: {s.detail}" for s in self.samples if not s.complete]

    def completeness(self) -> str:
        done = sum(1 for s in self.samples if s.complete)
        return "yes" if done == len(self.samples) else f"{done}/{len(self.samples)}"

    def lost(self) -> list[str]:
        return [s.detail for s in self.samples if not s.complete]


def _fresh(path: Path) -> Path:
    path.unlink(missing_ok=True)
    return path


def run_ours(ctx: Context, workload: Workload, book: Path) -> Sample:
    transcript = _fresh(ctx.work / "ours.jsonl")
    proc = run_timed([*ours_exe(), "run", "--yes", "--transcript", str(transcript), str(book)],
                     env=ctx.env, cwd=ctx.work)
    return _recorded(proc, workload, transcript)


def run_floor(ctx: Context, workload: Workload, imports: tuple[str, ...] = ()) -> Sample:
    """bench/floor.py: a bare Python PTY recorder writing a hash-chained, fsynced JSONL."""
    out = _fresh(ctx.work / "floor.jsonl")
    proc = run_timed([python(), str(REPO / "bench" / "floor.py"), workload.command, str(out), *imports],
                     env=ctx.env, cwd=ctx.work)
    return _recorded(proc, workload, out)


def _recorded(proc: Proc, workload: Workload, recording: Path) -> Sample:
    """The sample of a run that wrote a hash-chained JSONL: complete when it holds the whole output."""
    sample = Sample(proc.seconds, proc.rss_kb)
    if proc.returncode != 0 or not recording.exists():
        sample.complete, sample.detail = False, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    else:
        tally, events, ok = transcript_tally(recording)
        sample.complete, sample.detail = judge(workload, tally)
        sample.complete = sample.complete and ok
        sample.extra["events"] = events
    recording.unlink(missing_ok=True)
    return sample


def run_baseline(ctx: Context, tool: str, workload: Workload) -> Sample:
    out = _fresh(ctx.work / f"{tool}.rec")
    argv = (["script", "-q", "-c", workload.command, str(out)] if tool == "script"
            else ["asciinema", "rec", "-q", "-c", workload.command, str(out)])
    proc = run_timed(argv, env=ctx.env, cwd=ctx.work)
    sample = Sample(proc.seconds, proc.rss_kb)
    if proc.returncode != 0 or not out.exists():
        sample.complete, sample.detail = False, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    else:
        tally = script_tally(out) if tool == "script" else cast_tally(out)
        sample.complete, sample.detail = judge(workload, tally)
    out.unlink(missing_ok=True)
    return sample


def run_tui(ctx: Context, workload: Workload, book: Path, *, keys: bool = False) -> Sample:
    transcript = _fresh(ctx.work / "tui.jsonl")
    argv = [python(), "-m", "bench.tui_run", str(book), str(transcript), "--last", workload.last]
    proc = run_timed(argv + (["--keys"] if keys else []), env=ctx.env, cwd=ctx.work, stdout_path=None)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = {"error": f"no result (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"}
    sample = Sample(result.get("seconds", math.nan), proc.rss_kb, extra=result)
    sample.extra["process_seconds"] = proc.seconds
    if "error" in result:
        sample.complete, sample.detail = False, result["error"]
    else:
        tally, _, ok = transcript_tally(transcript)
        sample.complete, sample.detail = judge(workload, tally)
        sample.complete = sample.complete and ok and bool(result.get("pane_complete"))
        if not result.get("pane_complete"):
            sample.detail += "; the pane never showed the last line"
    transcript.unlink(missing_ok=True)
    return sample


def compare(ctx: Context, workload: Workload, tag: str, ours: str, *, floor: bool = False) -> dict[str, Series]:
    """Ours, the installed baselines (and the Python floor), `ctx.reps` times, in a rotating order."""
    book = runbook(ctx.work, workload, tag)
    ctx.trust(book)
    tools = [ours] + [t for t in BASELINES if ctx.has(t)] + ([FLOOR] if floor else [])
    series = {tool: Series(tool) for tool in tools}
    for rep in range(ctx.reps):
        for tool in rotate(tools, rep):
            if tool == OURS:
                sample = run_ours(ctx, workload, book)
            elif tool == TUI:
                sample = run_tui(ctx, workload, book)
            elif tool == FLOOR:
                sample = run_floor(ctx, workload)
            else:
                sample = run_baseline(ctx, tool, workload)
            series[tool].samples.append(sample)
        ctx.log(f"  {workload.name} rep {rep + 1}/{ctx.reps}: "
                + ", ".join(f"{t} {fmt_s(series[t].samples[-1].seconds)}" for t in tools))
    return series


def ratio(series: dict[str, Series], ours: str, baseline: str) -> float | None:
    if baseline not in series:
        return None
    return series[ours].seconds / series[baseline].seconds


def _baseline_losses(result: CaseResult, workload: Workload, series: dict[str, Series]) -> None:
    for tool in (*BASELINES, FLOOR):
        if tool in series and series[tool].lost():
            result.notes.append(f"{tool} lost output in {len(series[tool].lost())} of {len(series[tool].samples)} "
                                f"runs of `{workload.name}` (e.g. {series[tool].lost()[0][:120]}); its times "
                                "are kept, the loss is at the very end and does not change them.")


def throughput_table(title: str, series: dict[str, Series], ours: str) -> Table:
    rows = []
    for tool, s in series.items():
        times = [x.seconds for x in s.samples]
        rows.append([tool, fmt_s(s.seconds), f"{fmt_s(min(times))} – {fmt_s(max(times))}",
                     "1.00x" if tool == ours else fmt_ratio(series[ours].seconds / s.seconds),
                     fmt_mb(s.rss), s.completeness()])
    return Table(title, ["tool", "median", "min – max", "ours/tool", "peak RSS", "complete"], rows)


def case_headless(ctx: Context) -> CaseResult:
    result = CaseResult("1", "Output throughput, headless (`runbook-tui run --yes --transcript T`)")
    sizes = ctx.sizes
    workloads = [("seq", seq(sizes.seq_lines)), ("ansi", ansi_lines(ctx.work, sizes.ansi_lines)),
                 ("line", big_line(ctx.work, sizes.big_line))]
    for tag, workload in workloads:
        series = compare(ctx, workload, tag, OURS, floor=True)
        result.tables.append(throughput_table(f"`{workload.command.replace(str(ctx.work) + '/', '')}` "
                                              f"({workload.name})", series, OURS))
        result.numbers[f"{tag}.ours_s"] = series[OURS].seconds
        for tool in (*BASELINES, FLOOR):
            if tool in series:
                result.numbers[f"{tag}.{tool.split()[0].lower()}_s"] = series[tool].seconds
        for s in series.values():
            result.problems += s.problems()
        _baseline_losses(result, workload, series)
        if tag == "seq":
            result.targets += [
                Target(f"ours/asciinema, {workload.name}", ratio(series, OURS, "asciinema"), 1.0, "x"),
                Target(f"ours/script, {workload.name}", ratio(series, OURS, "script"), 1.5, "x"),
            ]
            _streaming_alone(ctx, result, workload, series)
    result.notes.append("Ours: whole process, stdout to /dev/null, redaction on with one secret registered "
                        "(front matter `secrets: {TOKEN: \"env:BENCH_TOKEN\"}`), transcript fsynced per event. "
                        "Baselines: `script -q -c CMD FILE` and `asciinema rec -q -c CMD FILE`, stdout to "
                        "/dev/null, stdin from /dev/null (both record through their own PTY without a terminal; "
                        "no wrapper needed). Complete = the recording holds every line and the last one. "
                        "\"Python floor\" is `bench/floor.py`, the bare Python PTY reader writing a hash-chained, "
                        "fsynced JSONL in 256 KB events that issue 6 quotes (0.88x asciinema then): no redaction, "
                        "no escape filter, no live output, no git facts.")
    return result


def _streaming_alone(ctx: Context, result: CaseResult, workload: Workload, series: dict[str, Series]) -> None:
    """Each tool's start and stop (`seq 1`), and `workload` without them: what the ratios are made of."""
    fixed = compare(ctx, seq(1), "fixed", OURS, floor=True)
    for s in fixed.values():
        result.problems += s.problems()
    rows = []
    for tool, s in series.items():
        alone = s.seconds - fixed[tool].seconds
        ours_alone = series[OURS].seconds - fixed[OURS].seconds
        rows.append([tool, fmt_s(fixed[tool].seconds), fmt_s(alone),
                     "1.00x" if tool == OURS else fmt_ratio(ours_alone / alone if alone > 0 else None)])
        result.numbers[f"fixed.{tool.split()[0].lower()}_s"] = fixed[tool].seconds
    stack = median([run_floor(ctx, seq(1), STACK).seconds for _ in range(ctx.reps)])
    result.numbers["fixed.floor_with_stack_s"] = stack
    rows.append([f"Python floor importing {', '.join(STACK)}", fmt_s(stack), "", ""])
    result.tables.append(Table(f"Start and stop (`seq 1`) and the output alone (`{workload.command}` minus `seq 1`), "
                               "medians", ["tool", "`seq 1`, whole process", "output alone", "ours/tool"], rows))


def case_tui(ctx: Context) -> CaseResult:
    result = CaseResult("2", "Output throughput in the TUI (Textual headless driver, `run_test`)")
    workload = seq(ctx.sizes.seq_lines)
    series = compare(ctx, workload, "tui", TUI)
    table = throughput_table(f"`{workload.command}` in the app, enter → `command.finished` on disk", series, TUI)
    table.columns.append("whole process")
    for row, s in zip(table.rows, series.values()):
        row.append(fmt_s(median([x.extra.get("process_seconds", x.seconds) for x in s.samples])))
    result.tables.append(table)
    result.numbers["tui_s"] = series[TUI].seconds
    for tool in BASELINES:
        if tool in series:
            result.numbers[f"{tool}_s"] = series[tool].seconds
    for s in series.values():
        result.problems += s.problems()
    _baseline_losses(result, workload, series)
    result.targets.append(Target(f"ours (TUI)/asciinema, {workload.name}", ratio(series, TUI, "asciinema"), 1.5, "x"))
    result.notes.append("Ours: `make_app(..., mode=\"auto\")` under `App.run_test(size=(120, 40))` in its own "
                        "process; the time runs from sending enter on the selected task until `command.finished` "
                        "is in the transcript (polled every 5 ms). Complete = the transcript holds every line and "
                        "the pane shows the last one. Baselines: whole process, as in case 1. \"whole process\" "
                        "adds the app's start and shutdown.")
    return result


def case_flood(ctx: Context) -> CaseResult:
    result = CaseResult("3", "Responsiveness under flood (k/j every 50 ms during case 2)")
    workload = seq(ctx.sizes.seq_lines)
    book = runbook(ctx.work, workload, "flood")
    ctx.trust(book)
    latencies: list[float] = []
    runs: list[Sample] = []
    for rep in range(ctx.reps):
        sample = run_tui(ctx, workload, book, keys=True)
        runs.append(sample)
        latencies += sample.extra.get("latencies", [])
        if not sample.complete:
            result.problems.append(f"{TUI}: {sample.detail}")
        ctx.log(f"  flood rep {rep + 1}/{ctx.reps}: {len(sample.extra.get('latencies', []))} keys, "
                f"run {fmt_s(sample.seconds)}")
    ms = [x * 1000 for x in latencies]
    unhandled = sum(s.extra.get("unhandled_keys", 0) for s in runs)
    med, p95, worst = median(ms), percentile(ms, 95), max(ms, default=math.nan)
    result.tables.append(Table(
        f"Key handling latency while `{workload.command}` floods the pane",
        ["runs", "keys pressed", "median", "p95", "max", "keys never handled (5 s)", "run time with keys"],
        [[str(len(runs)), str(len(ms)), f"{med:.1f} ms", f"{p95:.1f} ms", f"{worst:.1f} ms", str(unhandled),
          fmt_s(median([s.seconds for s in runs]))]]))
    result.numbers.update({"keys": float(len(ms)), "median_ms": med, "p95_ms": p95, "max_ms": worst})
    if not ms:
        result.problems.append("no key was pressed during the run")
    result.targets += [Target("key latency p95", p95, 100, "ms", "<"), Target("key latency max", worst, 250, "ms", "<")]
    result.notes.append("A key is sent the way `Pilot.press` sends it (`driver.send_message(events.Key)`), without "
                        "Pilot's `wait_for_idle` (under load it sleeps up to 1 s twice per key, which would time "
                        "Pilot, not the app); latency = until the tree's `cursor_line` changed, polled every 5 ms. "
                        "The next key goes 50 ms after the previous one was sent, or once it was handled if later. "
                        "k/j move between the step and the task, so every j re-selects the running task and the "
                        "pane re-shows its retained lines.")
    return result


def case_memory(ctx: Context) -> CaseResult:
    result = CaseResult("4", "Peak memory (RSS) by output size")
    reps = max(1, min(ctx.reps, 3))
    rows = []
    peaks: dict[tuple[str, int], float] = {}
    for lines in ctx.sizes.memory_lines:
        workload = seq(lines)
        book = runbook(ctx.work, workload, f"mem-{lines}")
        ctx.trust(book)
        for front in (OURS, TUI):
            samples = [run_ours(ctx, workload, book) if front == OURS else run_tui(ctx, workload, book)
                       for _ in range(reps)]
            result.problems += [f"{front} {lines:,} lines: {s.detail}" for s in samples if not s.complete]
            rss = [s.rss_kb for s in samples]
            peaks[(front, lines)] = median(rss)
            rows.append([front, f"{lines:,}", fmt_mb(median(rss)), fmt_mb(max(rss)),
                         fmt_s(median([s.seconds for s in samples])), str(reps)])
            ctx.log(f"  memory {front} {lines:,} lines: {fmt_mb(median(rss))}")
    result.tables.append(Table("`seq N` with the transcript on (peak RSS from GNU time; median of runs)",
                               ["front end", "lines", "peak RSS (median)", "peak RSS (max)", "time (median)",
                                "runs"], rows))
    small, large = ctx.sizes.memory_lines
    for front, limit in ((OURS, 100), (TUI, 250)):
        worst = max(peaks[(front, small)], peaks[(front, large)]) / 1024
        growth = (peaks[(front, large)] - peaks[(front, small)]) / 1024
        result.numbers[f"{front}.peak_mb"] = worst
        result.numbers[f"{front}.growth_mb"] = growth
        result.targets.append(Target(f"{front}: peak RSS, {small:,} and {large:,} lines", worst, limit, "MB", "<"))
        result.targets.append(Target(f"{front}: flat, growth from {small:,} to {large:,} lines", growth,
                                     FLAT_MB, "MB"))
    result.notes.append("Peak RSS is `ru_maxrss` as GNU time reports it: the largest single process of the tree "
                        "(for us the Python process; bash and seq are smaller). The TUI runs in `bench.tui_run`'s "
                        "process: the app under Textual's headless driver plus a few KB of bench code.")
    if not exact_rss():
        result.notes.append("GNU time (/usr/bin/time) is not installed: peak RSS came from wait4 in the bench process "
                            "and also counts pages shared with it between fork and exec, so it is an upper bound.")
    result.notes.append(f"Flat means the peak at {large:,} lines is at most {FLAT_MB} MB above the peak at {small:,} "
                        "(issue 6's reference design went from 44 MB to 52 MB).")
    return result
