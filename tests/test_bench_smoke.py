"""The benchmarks still run: every case of `python -m bench` at its `--quick` size.

Asserts only that each case produced its numbers and that every run recorded the whole output;
never anything about time (benchmarks are read by people, not asserted). The script(1),
asciinema and tmux measurements are skipped by the bench when those programs are missing,
unless RUNBOOK_TUI_REQUIRE_TMUX=1 (CI installs them): then a missing one fails this test.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from tests.paths import REPO

TOOLS = ("script", "asciinema", "tmux")
CASES = {"1", "2", "3", "4", "5", "6", "7", "8"}
TERMINAL = ("tmux", "asciinema")  # case 8 runs only with both


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing and os.environ.get("RUNBOOK_TUI_REQUIRE_TMUX") == "1":
        pytest.fail(f"{', '.join(missing)} missing and RUNBOOK_TUI_REQUIRE_TMUX=1")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out / "r.json"), "--markdown", str(out / "r.md")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, f"python -m bench --quick failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    results = json.loads((out / "r.json").read_text())
    results["markdown"] = (out / "r.md").read_text()
    results["missing"] = missing
    return results


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_every_case_produced_numbers_and_complete_output(quick_results: dict) -> None:
    cases = quick_results["cases"]
    assert set(cases) == CASES
    for key, case in cases.items():
        assert case["complete"] and not case["problems"], f"case {key}: {case['problems']}"
        if key == "8" and set(TERMINAL) & set(quick_results["missing"]):
            assert not case["numbers"] and case["targets"][0]["value"] is None, "skipped, not measured"
            continue
        assert case["numbers"], f"case {key} produced no numbers"
        bad = {name: value for name, value in case["numbers"].items() if not _number(value)}
        assert not bad, f"case {key}: not numbers: {bad}"
        assert case["tables"] and all(table["rows"] for table in case["tables"]), f"case {key}: an empty table"


def test_ours_and_the_baselines_were_measured(quick_results: dict) -> None:
    missing = quick_results["missing"]
    headless = quick_results["cases"]["1"]["numbers"]
    for workload in ("seq", "ansi", "line"):
        assert _number(headless[f"{workload}.ours_s"])
        assert _number(headless[f"{workload}.python_s"]), "the Python floor reference"
        for tool in ("script", "asciinema"):
            assert (f"{workload}.{tool}_s" in headless) == (tool not in missing)
    assert _number(quick_results["cases"]["2"]["numbers"]["tui_s"])
    flood = quick_results["cases"]["3"]["numbers"]
    assert flood["keys"] >= 1 and _number(flood["max_ms"])
    startup = quick_results["cases"]["5"]["numbers"]
    assert _number(startup["check_s"])
    assert ("first_frame_s" in startup) == ("tmux" not in missing)
    scale = quick_results["cases"]["6"]["numbers"]
    assert _number(scale["verify_mb_s"]) and any(name.startswith("yaml.") for name in scale)


def test_the_terminal_case_compares_ours_in_tmux_with_the_baselines(quick_results: dict) -> None:
    if set(TERMINAL) & set(quick_results["missing"]):
        pytest.skip(f"case 8 needs {' and '.join(TERMINAL)} (RUNBOOK_TUI_REQUIRE_TMUX=1 makes this a failure)")
    case = quick_results["cases"]["8"]
    numbers = case["numbers"]
    [table] = case["tables"]
    tools = [row[0] for row in table["rows"]]
    assert tools[:2] == ["ours (TUI)", "asciinema"] and ("script" in tools) == ("script" not in quick_results["missing"])
    for key in ("ours_s", "ours.seq1_s", "asciinema_s", "asciinema.seq1_s", "ratio.asciinema"):
        assert _number(numbers[key]) and numbers[key] > 0, key
    lag = table["columns"].index("pane shows the last line after")
    assert all(row[lag] != "n/a" for row in table["rows"]), "every pane showed the tool's last line"
    [target] = case["targets"]
    assert target["value"] == numbers["ratio.asciinema"] and target["limit"] == 1.5


def test_a_screen_line_is_found_only_as_a_whole_output_line() -> None:
    from bench.tui_terminal import shows_line

    pane = ("  └ ✓ $ seq 2000          ▕\n"
            " 0/1 tasks · 00:01\n"
            "                          ▕1999\n"
            "                          ▕2000        ▌ Run success\n")
    assert shows_line(pane, "2000") and shows_line(pane, "1999")
    assert not shows_line(pane, "1"), "not the 1 of `0/1 tasks`"
    assert shows_line("1999\n2000\n$ ", "2000"), "a plain terminal's line at column 0"
    assert not shows_line("$ seq 2000\n", "2000"), "the command line is not the output"


def test_the_markdown_report_has_the_machine_and_every_target(quick_results: dict) -> None:
    markdown = quick_results["markdown"]
    assert "nproc" in markdown and "Reproduce: `python -m bench --quick" in markdown
    for key in CASES:
        assert f"## Case {key}:" in markdown
    targets = sum(len(case["targets"]) for case in quick_results["cases"].values())
    assert markdown.count("not evaluated (--quick)") == targets


def test_only_selects_cases_by_key_or_name() -> None:
    from bench.cases import select

    assert select(None) == sorted(CASES)
    assert select(["tui", "1"]) == ["1", "2"]
    assert select(["5,scale"]) == ["5", "6"]
    with pytest.raises(SystemExit):
        select(["nope"])

