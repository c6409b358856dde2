"""Issue 12: markdown-it-py against markdown-it-pyrs (Rust, same CommonMark) side by side, before
anyone switches: the library alone on the generated 10,000-step runbook, and our whole `parse`.

Run: `python -m bench.markdown_parsers` (markdown-it-pyrs is not a dependency: `pip install
markdown-it-pyrs` first; without it only our numbers are printed). Each time is the best of
REPEATS runs in this process, the same way for every row, so the ratios compare like with like.
"""

from __future__ import annotations

import gc
import platform
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
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from markdown_it import MarkdownIt

    from runbook_tui.parse import load_runbook

    with tempfile.TemporaryDirectory() as tmp:
        path = markdown_runbook(Path(tmp), STEPS)
        text = path.read_text(encoding="utf-8")
        python_tokens = best(lambda: MarkdownIt("commonmark").enable("table").parse(text))
        ours = best(lambda: load_runbook(path))
        rows = [("markdown-it-py, token stream", python_tokens), ("runbook-tui parse (markdown-it-py inside)", ours)]
        try:
            import markdown_it_pyrs
        except ImportError:
            markdown_it_pyrs = None
        if markdown_it_pyrs is not None:
            rust = markdown_it_pyrs.MarkdownIt("commonmark").enable("table")
            rows.append(("markdown-it-pyrs, node tree with source offsets", best(lambda: rust.tree(text))))
    print(f"{STEPS:,} steps, {len(text):,} characters; best of {REPEATS}; {platform.python_implementation()} "
          f"{platform.python_version()} on {platform.machine()}")
    for name, seconds in rows:
        print(f"  {name:<50} {seconds:7.3f} s  {seconds / python_tokens:5.2f}x markdown-it-py")


if __name__ == "__main__":
    main()
