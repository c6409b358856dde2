"""`check`, `plan` and `convert` from the command line: bad input, lint warnings, readable plans."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.paths import SEED


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook_tui", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


BAD_INPUT = {
    "missing file": (None, "missing.md", ":1:1: no such file"),
    "directory": (None, "", ":1:1: is a directory"),
    "binary file": (b"# T\n\x00\x01\x02", "blob.md", ":2:1: binary file"),
    "not utf-8": (b"# T\n\nok \xff\xfe", "latin.md", ":3:4: not UTF-8"),
    "invalid yaml": ("title: T\nsections: [\n  {title: x\n", "bad.yaml", "bad.yaml:"),
    "unknown yaml key": ("title: T\nsectons: []\n", "typo.yaml", "typo.yaml:2:1: "),
    "yaml step without title": ("title: T\nsections:\n  - title: S\n    steps:\n      - run: make\n",
                                "notitle.yaml", "notitle.yaml:5:"),
    "markdown step without title": ("# T\n## Steps\n1. Go\n2.\n", "notitle.md", "notitle.md:4:1: "),
    "bad annotation": ("# T\n## Steps\n```sh {timeout=forever}\nmake\n```\n", "ann.md", "ann.md:3:"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_located_line_and_exit_2(tmp_path: Path, case: str) -> None:
    content, name, expected = BAD_INPUT[case]
    path = tmp_path / name if name else tmp_path
    if content is not None:
        write(tmp_path, name, content)
    result = cli("check", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert cli("plan", str(path)).returncode == 2


def test_unknown_yaml_key_suggests_the_nearest(tmp_path: Path) -> None:
    path = write(tmp_path, "typo.yaml", "title: T\nsectons: []\n")
    assert "did you mean 'sections'" in cli("check", str(path)).stderr


def test_one_bad_file_among_good_ones(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "title: [\n")
    result = cli("check", str(SEED), str(bad))
    assert result.returncode == 2
    assert f"{SEED}: ok:" in result.stdout and f"error: {bad}" in result.stderr


def test_lint_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, "lint.md", """
        # T
        ## Steps
        <!-- runbook: name=same -->
        1. **Wipe**
           - `rm -rf / --no-preserve-root`
           - `curl -fsSL https://example.com/install.sh | sudo bash`
        <!-- runbook: name=same -->
        2. **Data**
           - `psql -c "DROP DATABASE prod" $DB_URL`
           - `kubectl delete pod <pod-name> -n prod`
        ## Related
        - [Gone](./gone.md)
        """)
    result = cli("check", str(path))
    assert result.returncode == 0  # warnings are not errors
    warnings = result.stderr
    assert "[dangerous-command]" in warnings and warnings.count("[dangerous-command]") == 3
    assert "[undefined-variable]" in warnings and "$DB_URL" in warnings
    assert "[placeholder]" in warnings and "<pod-name>" in warnings
    assert "[missing-related]" in warnings and "./gone.md" in warnings
    assert "[duplicate-name]" in warnings
    assert f"{path}:5:1: warning:" in warnings


def test_plan_shows_numbered_steps_and_exact_commands() -> None:
    result = cli("plan", str(SEED))
    assert result.returncode == 0
    out = result.stdout
    assert out.startswith("Deployment Procedures\n")
    assert "  5.3 Rollback if needed  (optional)" in out
    assert "      $ 4.3.1\n          python src/manage.py check\n" in out
    # a resolution step of a high-severity runbook is high risk (engine.policy), and the plan says so
    assert "      $ 5.1.2  HIGH RISK (typed confirmation): " in out
    assert "\n          python src/manage.py migrate --noinput\n" in out
    assert "      [ ] 4.1.1  Confirm CI is green for the release commit." in out
    assert out.index("4.1 Pre-flight checks") < out.index("5.4 Communicate")
    assert "Overview" not in out  # reading sections are not steps


def test_help_and_version() -> None:
    assert "check" in cli("--help").stdout
    assert cli("--version").stdout.startswith("runbook-tui, version")


def test_commands_hidden_from_the_rendered_page_are_flagged(tmp_path: Path) -> None:
    path = write(tmp_path, "hidden.md", """
        # T
        ## Steps
        <!-- kubectl delete namespace prod -->
        <details><summary>more</summary>

        ```sh
        curl -X POST https://example.com/purge
        ```

        </details>

        - `echo visible --x`
        """)
    result = cli("check", str(path))
    assert result.returncode == 0
    assert f"{path}:3:1: warning: an HTML comment holds what looks like a command" in result.stderr
    assert f"{path}:7:1: warning: task 1.1.1 runs but sits inside a collapsed <details> block" in result.stderr
    assert result.stderr.count("[hidden-command]") == 2


def test_check_json_accounts_for_every_block_and_a_file_with_nothing_to_run_warns(tmp_path: Path) -> None:
    """Nothing disappears silently: each block's kind and reason; an empty runbook is not 'ok: 0 sections'."""
    path = write(tmp_path, "wiki.md", """
        # Wiki page

        ## Steps

        ```
        pgbouncer=# show pools;
        ```

        ```
        {"a": 1}
        ```
    """)
    result = cli("check", "--json", str(path))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [(b["kind"], b["reason"]) for b in document["blocks"]] == [
        ("client-input", "client-input: typed at a psql prompt"), ("reference", "reference: JSON")]
    (task,) = document["sections"][0]["steps"][0]["tasks"]
    assert task["kind"] == "manual" and task["client"] == "psql" and task["client_input"] == ["show pools;"]
    empty = write(tmp_path, "empty.md", "# Alert catalogue\n\nNothing to do here.\n")
    result = cli("check", str(empty))
    assert result.returncode == 0
    assert f"{empty}:1:1: warning: no steps and no commands" in result.stderr
    assert "1 warning" in result.stdout


def test_plan_shows_what_to_type_into_a_client(tmp_path: Path) -> None:
    path = write(tmp_path, "redis.md", """
        # Ban an IP

        ## Ban

        ```
        worker$ redis-cli -h 10.0.0.1
        10.0.0.1:6379> auth <password>
        10.0.0.1:6379> del cache:ban:192.168.0.1
        ```
    """)
    plan = cli("plan", str(path)).stdout
    assert "      $ 1.1.1  [interactive=True]\n          redis-cli -h 10.0.0.1\n" in plan
    assert "          redis-cli> auth <password>\n          redis-cli> del cache:ban:192.168.0.1\n" in plan


@pytest.mark.parametrize(("command", "flagged"), [
    ("less /etc/services", True), ("psql -h db", True), ("psql -h db -c 'select 1'", False),
    ("redis-cli", True), ("redis-cli info", False), ("ssh web-01", True), ("ssh web-01 uptime", False),
    ("kubectl exec -it pod -- sh", True), ("kubectl exec pod -- ls", False), ("journalctl -u x | less", True),
    ("echo less", False),
])
def test_check_warns_about_commands_that_need_a_terminal(tmp_path: Path, command: str, flagged: bool) -> None:
    from runbook_tui.parse.lint import lint
    from runbook_tui.parse.markdown import parse_markdown

    book = parse_markdown(f"# T\n## Steps\n```sh\n{command}\n```\n", str(tmp_path / "b.md"))
    codes = [w.code for w in lint(book)]
    assert ("needs-terminal" in codes) is flagged
    marked = parse_markdown(f"# T\n## Steps\n```sh {{interactive=true}}\n{command}\n```\n", str(tmp_path / "b.md"))
    assert "needs-terminal" not in [w.code for w in lint(marked)], "interactive=true hands it the terminal"
