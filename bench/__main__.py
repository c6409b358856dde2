"""`python -m bench`: run the cases of issue 6, print medians and ratios, write Markdown/JSON.

    python -m bench                      # every case, 5 repetitions
    python -m bench --quick              # tiny sizes, 1 repetition (the smoke test)
    python -m bench --only 1 --only tui  # some cases, by key or name
    python -m bench --markdown results.md --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.cases import CASES, select
from bench.common import Context, Sizes, missing_tools


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, help="repetitions per measurement (default 5; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--only", action="append", metavar="CASE",
                        help="run only this case: " + ", ".join(f"{k}/{n}" for k, (n, _) in CASES.items()))
    parser.add_argument("--markdown", metavar="FILE", help="write the results as Markdown")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--require-tools", action="store_true",
                        help="fail when script, asciinema or tmux is missing (default: skip those measurements; "
                             "also on with RUNBOOK_TUI_REQUIRE_TMUX=1)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--code", metavar="DIR", type=Path,
                        help="measure the runbook_tui package in DIR instead of the checkout's (DIR/runbook_tui: "
                             "a scratch copy with a candidate fix, for before/after numbers)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = select(args.only)
    missing = missing_tools()
    if missing and (args.require_tools or os.environ.get("RUNBOOK_TUI_REQUIRE_TMUX") == "1"):
        print(f"missing: {', '.join(sorted(missing))} (required)", file=sys.stderr)
        return 2
    report.QUICK = args.quick
    work = Path(tempfile.mkdtemp(prefix="runbook-tui-bench-"))
    ctx = Context(work=work, reps=args.reps or (1 if args.quick else 5),
                  sizes=Sizes.quick() if args.quick else Sizes(), quick=args.quick,
                  log=lambda line: print(line, file=sys.stderr, flush=True), missing=missing,
                  code=args.code.resolve() if args.code else None)
    if ctx.code is not None and not (ctx.code / "runbook_tui" / "__init__.py").exists():
        print(f"--code {args.code}: no runbook_tui package there", file=sys.stderr)
        return 2
    if missing:
        ctx.log(f"not installed, skipped: {', '.join(sorted(missing))}")
    ctx.compile_code()
    results = []
    started = time.perf_counter()
    ctx.log(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        for key in keys:
            name, run = CASES[key]
            ctx.log(f"case {key} ({name})...")
            case_start = time.perf_counter()
            result = run(ctx)
            ctx.log(f"case {key} done in {time.perf_counter() - case_start:.0f} s")
            results.append(result)
            print(report.text([result]), flush=True)
    finally:
        if args.keep:
            ctx.log(f"scratch directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    ctx.log(f"all cases in {time.perf_counter() - started:.0f} s")
    info = report.machine()
    info["code"] = f"`{ctx.code}/runbook_tui`" if ctx.code else "the checkout's runbook_tui"
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.markdown:
        Path(args.markdown).write_text(report.markdown(results, info, command.strip()), encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(results, info), indent=2), encoding="utf-8")
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
