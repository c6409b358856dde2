"""Issue 12: the Markdown parsers side by side on the generated 10,000-step runbook: markdown-it-py's
token stream (the reference, and the fallback), pyromark's events (pulldown-cmark, what the
parser reads), the tree our reader makes of each, and our whole `load_runbook`.

Run: `python -m bench.markdown_parsers [STEPS]`. Each time is the best of REPEATS runs in this
process, each with the cyclic garbage collector off as `parse_text` has it, so the ratios compare
like with like. markdown-it-pyrs, measured before the switch (BENCHMARKS.md), gets a row when
it is installed.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.workloads import markdown_runbook

STEPS = 10_000
# Best of this many: the first run pays for imports and caches, the minimum is the least noisy.
REPEATS = 5


def best(run: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        gc.enable()
    return min(times)


def main() -> None:
    import pyromark
    from markdown_it import MarkdownIt

    from runbook_tui.parse import load_runbook
    from runbook_tui.parse.tree import pyromark_tree, python_tree

    steps = int(sys.argv[1]) if len(sys.argv) > 1 else STEPS
    with tempfile.TemporaryDirectory() as tmp:
        path = markdown_runbook(Path(tmp), steps)
        text = path.read_text(encoding="utf-8")
        markdown_it_py = MarkdownIt("commonmark").enable("table")
        pulldown = pyromark.Markdown(options=pyromark.Options.ENABLE_TABLES)
        python_tokens = best(lambda: markdown_it_py.parse(text))
        rows = [
            ("markdown-it-py, token stream", python_tokens),
            ("pyromark (pulldown-cmark), events with ranges", best(lambda: list(pulldown.events_with_range(
                text, merge_text=True)))),
            ("our tree from markdown-it-py (the fallback)", best(lambda: python_tree(text, []))),
            ("our tree from pyromark (events + reader)", best(lambda: pyromark_tree(text, []))),
            ("runbook-tui load_runbook (pyromark inside)", best(lambda: load_runbook(path))),
        ]
        try:
            import markdown_it_pyrs
        except ImportError:
            markdown_it_pyrs = None
        if markdown_it_pyrs is not None:
            rust = markdown_it_pyrs.MarkdownIt("commonmark").enable("table")
            rows.append(("markdown-it-pyrs, node tree with source offsets", best(lambda: rust.tree(text))))
    print(f"{steps:,} steps, {len(text):,} characters; best of {REPEATS}, GC off; {platform.python_implementation()} "
          f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, load average "
          + " ".join(f"{load:.2f}" for load in os.getloadavg()))
    for name, seconds in rows:
        print(f"  {name:<50} {seconds:7.3f} s  {seconds / python_tokens:5.2f}x markdown-it-py")


if __name__ == "__main__":
    main()
