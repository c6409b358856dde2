"""Case 6: parse time of generated runbooks by size (Markdown and YAML), and `transcript verify`
on a transcript of a million events."""

from __future__ import annotations

import json
import time

from bench.common import CaseResult, Context, Table, Target, fmt_s, python
from bench.measure import median, ours_exe, run_timed
from bench.workloads import markdown_runbook, transcript_file, yaml_runbook

# Runs in a fresh interpreter: import and warm up first, then time `load_runbook` only, and the
# third-party parsing underneath it alone, under the same conditions as ours (the cyclic GC off,
# as load_runbook has it; the libyaml loader where there is one), so the report shows which part
# of the time is ours and which is the library's. The Markdown library is pyromark's events
# (pulldown-cmark), or markdown-it-py's token stream in a checkout from before the switch (`--code`).
PARSE = """
import gc, json, sys, time
import yaml
from runbook_tui.parse import load_runbook, tree
path, warm, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
load_runbook(warm)
text = open(path, encoding="utf-8").read()
if path.endswith(".md") and hasattr(tree, "pyromark_tree"):
    import pyromark
    pulldown = pyromark.Markdown(options=pyromark.Options.ENABLE_TABLES)
    library = lambda: list(pulldown.events_with_range(text, merge_text=True))
elif path.endswith(".md"):
    from markdown_it import MarkdownIt
    library = lambda: MarkdownIt("commonmark").enable("table").parse(text)
else:
    library = lambda: yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
times, lib = [], []
for _ in range(reps):
    start = time.perf_counter()
    book = load_runbook(path)
    times.append(time.perf_counter() - start)
    del book
    gc.disable()
    start = time.perf_counter()
    nodes = library()
    lib.append(time.perf_counter() - start)
    del nodes
    gc.enable()
book = load_runbook(path)
print(json.dumps({"times": times, "library": lib, "steps": sum(1 for _ in book.steps()),
                  "commands": sum(1 for _ in book.commands())}))
"""
LIBRARY = {"Markdown": "pyromark's events with their ranges (pulldown-cmark, `events_with_range`)",
           "YAML": "`yaml.compose` with libyaml's `CSafeLoader`"}


def _yaml_supported() -> bool:
    try:
        from runbook_tui.parse.yaml import parse_yaml  # noqa: F401
    except ImportError:
        return False
    return True


def parse_times(ctx: Context, result: CaseResult) -> None:
    formats = {"Markdown": markdown_runbook}
    if _yaml_supported():
        formats["YAML"] = yaml_runbook
    else:
        result.notes.append("`runbook_tui.parse.yaml.parse_yaml` does not exist in this version: YAML not measured.")
    rows = []
    largest, previous = ctx.sizes.parse_steps[-1], ctx.sizes.parse_steps[-2]
    for name, generate in formats.items():
        per_step: dict[int, float] = {}
        warm = generate(ctx.work, 5)
        for steps in ctx.sizes.parse_steps:
            path = generate(ctx.work, steps)
            proc = run_timed([python(), "-c", PARSE, str(path), str(warm), str(ctx.reps)], env=ctx.env,
                             cwd=ctx.work, stdout_path=None)
            try:
                data = json.loads(proc.stdout)
            except ValueError:
                result.problems.append(f"{name} {steps} steps: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
                continue
            if data["steps"] != steps or data["commands"] != steps:
                result.problems.append(f"{name} {steps} steps: parsed {data['steps']} steps, "
                                       f"{data['commands']} commands")
            seconds = median(data["times"])
            per_step[steps] = seconds / steps
            growth = ""
            index = ctx.sizes.parse_steps.index(steps)
            if index:
                smaller = ctx.sizes.parse_steps[index - 1]
                growth = f"{seconds / (per_step[smaller] * smaller):.1f}x for {steps // smaller}x the steps"
            library = median(data["library"])
            rows.append([name, f"{steps:,}", f"{path.stat().st_size / 1024:,.0f} KB", fmt_s(seconds),
                         f"{per_step[steps] * 1e6:.0f} µs", growth, f"{fmt_s(library)} ({library / seconds:.0%})"])
            result.numbers[f"{name.lower()}.{steps}_library_s"] = library
            result.numbers[f"{name.lower()}.{steps}_s"] = seconds
            ctx.log(f"  parse {name} {steps:,} steps: {fmt_s(seconds)}")
        if largest in per_step and previous in per_step:
            result.targets.append(Target(f"{name}: {largest:,} steps parse", per_step[largest] * largest * 1000,
                                         1000, "ms", "<"))
            result.targets.append(Target(f"{name}: linear (cost per step at {largest:,} / at {previous:,} steps)",
                                         per_step[largest] / per_step[previous], 1.5, "x"))
    result.tables.append(Table("`load_runbook` (read + parse), in a warmed-up interpreter, median of runs",
                               ["format", "steps", "file", "median", "per step", "growth",
                                "of which the library alone"], rows))
    result.notes.append("\"The library alone\" times the third-party parse underneath on the same text in the same "
                        "process: " + "; ".join(f"{k}: {v}" for k, v in LIBRARY.items() if k in formats) + ".")


def verify_speed(ctx: Context, result: CaseResult) -> None:
    events = ctx.sizes.verify_events
    start = time.perf_counter()
    path = transcript_file(ctx.work, events)
    ctx.log(f"  generated a {events:,}-event transcript in {fmt_s(time.perf_counter() - start)}")
    size = path.stat().st_size
    times = []
    for _ in range(max(1, min(ctx.reps, 3))):
        proc = run_timed([*ours_exe(), "transcript", "verify", str(path)], env=ctx.env, cwd=ctx.work,
                         stdout_path=None)
        if proc.returncode != 0 or f"ok: {events} events" not in proc.stdout:
            result.problems.append(f"verify: exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-300:]}")
        times.append(proc.seconds)
    whole = median(times)
    rate = size / 1e6 / whole
    result.tables.append(Table(
        f"`runbook-tui transcript verify` on {events:,} events (whole process, median of runs)",
        ["events", "file", "median", "throughput", "runs"],
        [[f"{events:,}", f"{size / 1e6:,.0f} MB", fmt_s(whole), f"{rate:,.0f} MB/s", str(len(times))]]))
    result.numbers.update({"verify_s": whole, "verify_mb_s": rate})
    result.targets.append(Target(f"verify throughput ({events:,} events)", rate, 50, "MB/s", ">="))
    path.unlink(missing_ok=True)


def case_scale(ctx: Context) -> CaseResult:
    result = CaseResult("6", "Parsing and scale")
    parse_times(ctx, result)
    verify_speed(ctx, result)
    result.notes.append("Generated runbooks: 100 steps per `##` section, each step a numbered item with a manual "
                        "check and a command (YAML: the same structure). The transcript: one run.started, "
                        "output events of one ~70-character line each, one run.finished, hash-chained in the "
                        "documented line layout (checked by verify itself).")
    return result

