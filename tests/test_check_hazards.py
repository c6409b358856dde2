"""What runs is what is shown: `check` refuses evaluated placeholders, flags dangerous environment,
a non-standard shell and hidden characters at file:line:col; `plan`, `check`, `runs` and the
Markdown export print runbook text escaped (issue 11, points 3, 4 and 5)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runbook_tui.engine.env import environment_hazards
from runbook_tui.parse import parse_text
from runbook_tui.parse.hazards import environment_hazard, shell_hazard


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook_tui", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, env=env, cwd=cwd)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# ---- point 5: check flags a placeholder the shell would evaluate; the run refuses to fill it ----
def test_check_flags_an_evaluated_placeholder_with_its_position_and_a_fix(tmp_path: Path) -> None:
    """A warning (the runbook still opens: every real corpus file must), and at run time that task
    is not run: see test_an_evaluated_placeholder_is_refused_at_run_time_before_anyone_is_asked."""
    path = write(tmp_path, "book.md", """
        # Book

        ## Steps
        1. Look
           ```sh
           kubectl get pod <pod>
           echo "$(kubectl logs <pod>)"
           ```
        2. Remote
           ```console
           $ ssh db1 'pg_dump <database>'
           ```
    """)
    done = cli("check", str(path))
    assert done.returncode == 0, done.stderr
    flagged = [line for line in done.stderr.splitlines() if "[placeholder-evaluated]" in line]
    assert flagged[0].startswith(f"{path}:7:25: warning: task 1.1.1 will not run as written: placeholder <pod> "
                                 "stands inside $( … )"), flagged
    assert 'write "$POD" there' in flagged[0]
    assert flagged[1].startswith(f"{path}:11:23: warning: task 1.2.1 will not run as written: placeholder "
                                 "<database> stands in a command ssh sends"), flagged
    assert len(flagged) == 2  # line 6's <pod> is unquoted data: quoted and fine


def test_an_evaluated_placeholder_is_refused_at_run_time_before_anyone_is_asked(tmp_path: Path) -> None:
    path = write(tmp_path, "book.md", """
        # Book

        ## Steps
        - `echo "$(touch ran-<name>)"`
    """)
    assert cli("trust", str(path), cwd=tmp_path).returncode == 0
    done = cli("run", str(path), "--yes", "--var", "name=x", "--transcript", str(tmp_path / "t.jsonl"),
               cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert not list(tmp_path.glob("ran-*")), "nothing of the value ran"
    events = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    (finished,) = [e for e in events if e["type"] == "task.finished"]
    assert finished["status"] == "failed" and "stands inside $( … )" in finished["reason"]
    assert "command.started" not in [e["type"] for e in events]


def test_check_still_passes_placeholders_in_data_spots(tmp_path: Path) -> None:
    path = write(tmp_path, "book.md", """
        # Book

        ## Steps
        1. Look: `kubectl -n '<ns>' get pod "<pod>" <other>`
    """)
    done = cli("check", str(path))
    assert done.returncode == 0 and ": ok:" in done.stdout, done.stderr


# ---- point 3: dangerous environment and shell -------------------------------------------------
@pytest.mark.parametrize("name", ["PATH", "BASH_ENV", "ENV", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH",
                                  "PYTHONSTARTUP", "PROMPT_COMMAND", "IFS", "SHELLOPTS", "BASHOPTS", "PS4",
                                  "PERL5OPT", "NODE_OPTIONS", "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT",
                                  "GCONV_PATH", "HOSTALIASES", "BASH_FUNC_ls%%", "JAVA_TOOL_OPTIONS", "LESSOPEN"])
def test_environment_that_runs_code_is_named_with_why(name: str) -> None:
    assert environment_hazard(name)


@pytest.mark.parametrize("name", ["ENVIRONMENT", "RELEASE_TAG", "DB_PASSWORD", "NAMESPACE", "PATHS", "LD",
                                  "GIT_AUTHOR_NAME"])
def test_ordinary_variables_are_not_dangerous(name: str) -> None:
    assert environment_hazard(name) is None


@pytest.mark.parametrize("shell, dangerous", [(None, False), ("bash", False), ("/bin/sh", False),
                                              ("/usr/bin/zsh", False), ("./wrapper", True),
                                              ("/opt/x/bash", True), ("python3", True), ("bash --rcfile x", True)])
def test_only_a_standard_shell_is_not_a_hazard(shell: str | None, dangerous: bool) -> None:
    assert (shell_hazard(shell) is not None) == dangerous


def test_environment_hazards_name_every_source(tmp_path: Path) -> None:
    book = parse_text(textwrap.dedent("""\
        ---
        env:
          BASH_ENV: ./x
          REGION: eu
        variables:
          PYTHONPATH: ./lib
        shell: ./wrapper
        ---
        # Book

        ## Steps
        1. Go
           ```sh {env="LD_PRELOAD=./evil.so"}
           make deploy
           ```
    """), str(tmp_path / "book.md"))
    task = next(book.commands())
    values = {"PYTHONPATH": "./lib", "PATH": "/tmp/evil", "IFS": ":", "COLOR": "red", "LD_AUDIT": "x.so"}
    reasons = environment_hazards(book, values, task, {"PATH": "--var", "IFS": "the transcript"})
    assert [r.split(", which")[0] for r in reasons] == [
        "it sets BASH_ENV (from the runbook's env)", "it sets IFS (from the transcript)",
        "it sets LD_AUDIT (from a value given for this run)", "it sets LD_PRELOAD (from the task's env)",
        "it sets PATH (from --var)", "it sets PYTHONPATH (from the runbook's variables)",
        "the runbook's shell: every command runs through './wrapper'"]
    assert "bash runs this file before every non-interactive command" in reasons[0]


def test_check_flags_dangerous_environment_and_shell_at_their_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "book.md", """
        ---
        env:
          REGION: eu
          BASH_ENV: ./x
        secrets:
          LD_PRELOAD: env:EVIL
        shell: ./wrapper
        ---
        # Book

        ## Steps
        1. Go: `make deploy --now`
    """)
    done = cli("check", str(path))
    assert done.returncode == 0, done.stderr  # flagged, not refused: the run asks for a typed confirmation
    warnings = done.stderr
    assert f"{path}:4:3: warning: env sets BASH_ENV for every command" in warnings
    assert f"{path}:6:3: warning: secrets sets LD_PRELOAD" in warnings
    assert f"{path}:7:8: warning: every command runs through './wrapper'" in warnings
    assert warnings.count("[dangerous-environment]") == 2 and "[dangerous-shell]" in warnings


def test_check_flags_dangerous_environment_in_a_yaml_runbook(tmp_path: Path) -> None:
    path = write(tmp_path, "book.yaml", """
        title: Book
        env: {PATH: /tmp/evil}
        sections:
          - title: Steps
            steps:
              - title: Go
                run: make deploy
    """)
    done = cli("check", str(path))
    assert f"{path}:2:7: warning: env sets PATH" in done.stderr, done.stderr


# ---- point 4: hidden characters and escapes in what we print ----------------------------------
HOSTILE_TITLE = "Deploy \x1b]0;owned\x07\x1b[8m now"
LOOKALIKE = "kub\u0435ctl delete ns prod"  # Cyrillic е
BIDI = "echo safe \u202e;moc.live | hs"


def test_check_flags_bidi_zero_width_and_mixed_script_characters(tmp_path: Path) -> None:
    path = write(tmp_path, "book.md", f"""
        # Book

        ## Steps
        1. Go
           ```sh
           echo start
           {LOOKALIKE}
           echo a\u200bb
           {BIDI}
           ```
    """)
    done = cli("check", str(path))
    lines = [line for line in done.stderr.splitlines() if "[hidden-characters]" in line]
    assert lines[0].startswith(f"{path}:7:4: warning: task 1.1.1 has a word mixing scripts (CYRILLIC, LATIN): "
                               "kub<U+0435>ctl"), lines
    assert lines[1].startswith(f"{path}:8:10: warning: task 1.1.1 holds <U+200B> (ZERO WIDTH SPACE)"), lines
    assert lines[2].startswith(f"{path}:9:14: warning: task 1.1.1 holds <U+202E> (RIGHT-TO-LEFT OVERRIDE)"), lines
    assert "\u202e" not in done.stderr and "\u0435" not in done.stderr and "\u200b" not in done.stderr


def _no_raw(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text
    assert not re.search("[\u202a-\u202e\u2066-\u2069\u200b-\u200f\u2060\ufeff\u0435]", text), text


def test_plan_and_check_print_runbook_text_escaped(tmp_path: Path) -> None:
    path = write(tmp_path, "book.md", f"""
        # {HOSTILE_TITLE}

        **Owner:** team \u202eevil

        ## Steps
        1. Go \u200b
           ```sh
           echo start
           {LOOKALIKE}
           {BIDI}
           ```
    """)
    plan = cli("plan", str(path))
    assert plan.returncode == 0, plan.stderr
    _no_raw(plan.stdout)
    assert "Deploy \\x1b]0;owned\\x07\\x1b[8m now" in plan.stdout
    assert "kub<U+0435>ctl delete ns prod" in plan.stdout and "<U+202E>;moc.live" in plan.stdout
    check = cli("check", str(path))
    _no_raw(check.stdout + check.stderr)
    assert "kub<U+0435>ctl" in check.stderr and "[hidden-characters]" in check.stderr


def test_runs_prints_a_hostile_transcript_escaped(tmp_path: Path) -> None:
    event = {"seq": 0, "ts": "2026-01-01T00:00:00.000000Z", "type": "run.started", "run_id": "x",
             "runbook": {"path": "b.md", "sha256": "0" * 64, "title": HOSTILE_TITLE + "\u202e"},
             "mode": "paranoid", "operator": {"user": "eve\x1b[2J", "host": "h"}}
    (tmp_path / "t.jsonl").write_text(json.dumps(event) + "\n")
    done = cli("runs", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Deploy" in done.stdout
    _no_raw(done.stdout)


def test_markdown_export_carries_no_raw_escape_from_runbook_text(tmp_path: Path) -> None:
    from runbook_tui.audit.export import export
    from runbook_tui.audit.transcript import Transcript

    transcript = Transcript.create(tmp_path / "t.jsonl")
    transcript.append("run.started", run_id="r", runbook={"path": "b.md", "sha256": "0" * 64, "title": HOSTILE_TITLE},
                      mode="paranoid", operator={"user": "u", "host": "h"}, variables={"NS": "a\u202eb"})
    transcript.append("step.entered", step_id="1.1", title="Step \x1b[8m\u200bhidden")
    transcript.append("command.started", task_id="1.1.1", step_id="1.1", command=LOOKALIKE, run_command=BIDI,
                      cwd="/", env_names=[])
    transcript.append("output", task_id="1.1.1", text="ok\n")
    transcript.append("command.finished", task_id="1.1.1", exit_code=0, duration=0.1)
    transcript.append("task.finished", task_id="1.1.1", status="done", exit_code=0)
    transcript.append("note", task_id="1.1.1", text="see \x1b]8;;http://evil\x07here")
    transcript.close()
    markdown = export(str(tmp_path / "t.jsonl"), "md")
    _no_raw(markdown)
    assert "kub<U+0435>ctl" in markdown and "Deploy \\x1b]0;owned\\x07\\x1b[8m now" in markdown
