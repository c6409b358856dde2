"""The bundled runbooks in runbooks/: what they promise, pinned.

- every file parses, and every relative link in it points at another bundled runbook;
- deployment.md is still the seed's procedure (its step titles, manual checks and 7 commands,
  verbatim), enriched with settings and annotations;
- deployment.yaml is the same runbook as deployment.md;
- demo.md shows every feature it is meant to show, and its commands really run safely: each one
  runs as the engine runs it (`bash -c`, plus `-e -o pipefail` for a multi-line script), in a
  temporary directory with TMPDIR and HOME pointing at temporary directories, and does what its
  step says (the flaky command fails once, then succeeds; everything else succeeds).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from runbook_tui.process import shell_argv
from runbook_tui.model import Runbook, Task
from runbook_tui.parse import load_runbook, parse_text

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"
FILES = sorted(p for p in RUNBOOKS.iterdir() if p.suffix in (".md", ".yaml", ".yml"))

# The seed this project exists for (the original DEPLOYMENT.md), verbatim, so that the test
# needs nothing outside the repository.
SEED = """\
# Deployment Procedures

**Last Updated:** 2026-01-04  
**Owner:** Release Engineering  
**Severity:** High (user-impacting changes)

## Overview
Standardized deployment checklist for ConsultantPro services to reduce risk, ensure observability, and provide rollback guidance.

## Symptoms
- Planned release window for new code or configuration.
- Hotfix required for production incident.

## Impact
- Deployment errors can cause downtime, migrations can stall, and users may see inconsistent behavior if not coordinated.

## Investigation Steps
1. **Pre-flight checks**
   - Confirm CI is green for the release commit.
   - Review changelog entries and migration notes.
2. **Verify configuration**
   - Ensure required environment variables are set for the target environment.
   - Validate secrets are provisioned via the secrets manager (never in code).
3. **Dry run critical commands**
   - `python src/manage.py check` for configuration issues.
   - `python src/manage.py makemigrations --check --dry-run` to confirm no pending schema drift.

## Resolution Steps
1. **Deploy application**
   - Build and publish artifacts using the CI pipeline or `docker compose build` for manual flows.
   - Apply database migrations: `python src/manage.py migrate --noinput`.
   - Restart services: `docker compose up -d web worker`.
2. **Post-deploy verification**
   - Run smoke tests on auth, deals, automation triggers, and webhooks (happy paths).
   - Check background jobs backlog: `python src/manage.py shell -c "from modules.jobs.models import JobQueue; print(JobQueue.objects.pending().count())"`.
   - Tail logs for errors: `docker compose logs web --tail=100`.
3. **Rollback if needed**
   - Re-deploy previous artifact/tag.
   - If migrations introduced failures, execute documented rollback procedures.
4. **Communicate**
   - Announce start/end of deployment in #engineering and incident channels if applicable.
   - Update release notes/CHANGELOG.md with user-impacting changes.

## Prevention
- Keep migrations small and reversible.
- Use feature flags for risky changes and roll forward when safe.
- Automate smoke tests in CI/CD to catch issues before production.

## Related Resources
- [Rollback Procedures](./ROLLBACK.md)
- [Backup and Restore](./BACKUP_RESTORE.md)
- [Incident Response Runbook](./INCIDENT_RESPONSE.md)
"""

SEED_COMMANDS = (
    "python src/manage.py check",
    "python src/manage.py makemigrations --check --dry-run",
    "docker compose build",
    "python src/manage.py migrate --noinput",
    "docker compose up -d web worker",
    'python src/manage.py shell -c "from modules.jobs.models import JobQueue; print(JobQueue.objects.pending().count())"',
    "docker compose logs web --tail=100",
)

# What the operator would answer when the demo asks (required variables and placeholders).
DEMO_ANSWERS = {"GREETING_NAME": "Ada Lovelace", "<colour>": "dark blue"}
COMMAND_LIMIT = 20.0  # seconds; no demo command may take longer, waiting included


def load(name: str) -> Runbook:
    return load_runbook(RUNBOOKS / name)


def steps_by_section(book: Runbook) -> list[tuple[str, list[str]]]:
    return [(s.title, [step.title for step in s.steps]) for s in book.sections if s.steps]


def task_shapes(book: Runbook) -> list[tuple[str, str, str, str | None, str | None]]:
    """(step title, kind, command, risk, name) for every task: what must not differ between formats."""
    return [
        (step.title, task.kind, task.command or "", task.options.risk, task.options.name)
        for step in book.steps()
        for task in step.tasks
    ]


# ---- every bundled runbook -----------------------------------------------------------------


def test_the_bundled_runbooks_are_all_here() -> None:
    names = {p.name for p in FILES}
    assert {"demo.md", "deployment.md", "deployment.yaml", "rollback.md", "backup-restore.md",
            "incident-response.md"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_runbook_parses(path: Path) -> None:
    book = load_runbook(path)  # raises RunbookError on any mistake
    assert book.title
    assert book.owner and book.severity and book.meta("last_updated")
    assert any(s.procedural for s in book.sections)
    assert [s.title for s in book.sections][-2:] == ["Prevention", "Related Resources"]
    assert book.related, "every bundled runbook links to at least one other"


_LINK = re.compile(r"\]\(([^()\s]+)\)")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_relative_links_resolve_to_bundled_runbooks(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    targets = set(_LINK.findall(text)) | {r.target for r in load_runbook(path).related}
    relative = {t.split("#")[0] for t in targets if "://" not in t and not t.startswith(("#", "mailto:"))}
    assert relative, f"{path.name} links to no other runbook"
    for target in sorted(relative):
        resolved = (path.parent / target).resolve()
        assert resolved.parent == RUNBOOKS, f"{path.name}: {target} points outside runbooks/"
        # compare names exactly: a case-insensitive file system must not hide ./ROLLBACK.md
        assert resolved.name in os.listdir(RUNBOOKS), f"{path.name}: {target} does not exist"


# ---- deployment.md: the seed's procedure ---------------------------------------------------


def test_deployment_keeps_the_seed_procedure() -> None:
    seed = parse_text(SEED, "DEPLOYMENT.md")
    book = load("deployment.md")
    assert tuple(t.command for t in seed.commands()) == SEED_COMMANDS

    assert steps_by_section(book) == steps_by_section(seed)
    assert [s.title for s in book.sections] == [s.title for s in seed.sections]
    for seed_step, step in zip(seed.steps(), book.steps()):
        commands = [t.command for t in step.tasks if t.kind == "command"]
        manual = [t.text for t in step.tasks if t.kind == "manual"]
        for task in seed_step.tasks:
            if task.kind == "command":
                assert task.command in commands, f"{step.title}: lost {task.command!r}"
            else:
                assert task.text in manual, f"{step.title}: lost the manual check {task.text!r}"
    assert {r.title for r in seed.related} == {r.title for r in book.related}


def test_deployment_settings_and_annotations() -> None:
    book = load("deployment.md")
    assert [(v.name, v.default) for v in book.variables] == [("ENVIRONMENT", "production"), ("RELEASE_TAG", None)]
    assert [(s.name, s.ref) for s in book.secrets] == [("DB_PASSWORD", "keyring:consultantpro/db-password")]
    assert [(w.docker, w.tail) for w in book.watches] == [("web", None), ("worker", 200)]

    migrate = book.find("migrate")
    assert isinstance(migrate, Task) and migrate.command == "python src/manage.py migrate --noinput"
    assert (migrate.options.risk, migrate.options.timeout) == ("high", 15 * 60)
    restart = book.find("restart")
    assert isinstance(restart, Task) and restart.command == "docker compose up -d web worker"
    assert restart.options.risk == "high"
    high = {t.command for t in book.commands() if t.options.risk == "high"}
    assert high == {migrate.command, restart.command}
    for name in ("smoke-tests", "jobs-backlog", "web-logs"):
        assert book.find(name) is not None, name
    assert [r.target for r in book.related] == ["./rollback.md", "./backup-restore.md", "./incident-response.md"]


def test_deployment_yaml_is_the_same_runbook() -> None:
    md, yml = load("deployment.md"), load("deployment.yaml")
    assert yml.format == "yaml"
    assert yml.title == md.title
    assert [(s.title, s.procedural) for s in yml.sections] == [(s.title, s.procedural) for s in md.sections]
    assert steps_by_section(yml) == steps_by_section(md)
    assert task_shapes(yml) == task_shapes(md)
    assert [t.options for t in yml.commands()] == [t.options for t in md.commands()]
    assert [s.optional for s in yml.steps()] == [s.optional for s in md.steps()]
    assert yml.variables and [(v.name, v.default) for v in yml.variables] == [(v.name, v.default) for v in md.variables]
    assert yml.secrets and [(s.name, s.ref) for s in yml.secrets] == [(s.name, s.ref) for s in md.secrets]
    assert [(w.docker, w.tail) for w in yml.watches] == [(w.docker, w.tail) for w in md.watches]
    assert dict(yml.metadata) == dict(md.metadata)
    assert [(r.title, r.target) for r in yml.related] == [(r.title, r.target) for r in md.related]


def test_incident_response_is_high_severity() -> None:
    book = load("incident-response.md")
    assert book.severity == "High"
    titles = [step.title.lower() for step in book.steps()]
    assert any("page" in t for t in titles) and any("status update" in t for t in titles)


# ---- demo.md: every feature, and it runs safely ----------------------------------------------


def test_demo_shows_every_feature() -> None:
    book = load("demo.md")
    tasks = list(book.tasks())
    assert any(t.kind == "manual" for t in tasks)
    assert any(t.options.risk == "high" for t in tasks)
    assert any(t.options.retries for t in tasks)
    assert any(t.options.wait_until for t in tasks)
    assert any(t.options.expect_output for t in tasks)
    assert any(t.options.expect_exit and 0 not in t.options.expect_exit for t in tasks)
    assert any(t.options.timeout for t in tasks)
    assert any(t.language == "console" and t.expected_output for t in tasks)
    assert any(s.optional for s in book.steps())
    assert "GREETING_NAME" in book.required_variables
    assert "<colour>" in book.placeholders
    assert any(v.name == "GREETING" and v.default == "Hello" for v in book.variables)
    assert "./rollback.md" in {r.target for r in book.related}
    assert any(not s.procedural and s.title == "Background" for s in book.sections)
    assert any("\\033[" in t.command for t in book.commands())  # colored output
    assert any("--color=always" in t.command for t in book.commands())
    assert any("\\r" in t.command and "sleep" in t.command for t in book.commands())  # progress bar


def run_script(script: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """(exit code, stdout + stderr) with carriage returns kept, as a terminal would get them."""
    done = subprocess.run(shell_argv(script), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=COMMAND_LIMIT)
    return done.returncode, done.stdout.decode("utf-8", "replace")


def filled_in(task: Task) -> str:
    """The command with each placeholder replaced by the operator's (quoted) answer."""
    command = task.command or ""
    for token in task.placeholders:
        command = command.replace(token, shlex.quote(DEMO_ANSWERS[token]))
    return command


def test_demo_commands_run_safely(tmp_path: Path) -> None:
    book = load("demo.md")
    assert set(book.required_variables) | set(book.placeholders) <= set(DEMO_ANSWERS)
    work, tmp, home = tmp_path / "work", tmp_path / "tmp", tmp_path / "home"
    for directory in (work, tmp, home):
        directory.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(tmp), "LC_ALL": "C"}
    env.update({v.name: v.default for v in book.variables if v.default is not None})
    env.update({name: value for name, value in DEMO_ANSWERS.items() if not name.startswith("<")})

    outputs: dict[str, str] = {}
    for task in book.commands():
        command, opts = filled_in(task), task.options
        label = f"{task.id} {task.name or command.splitlines()[0]}"
        if opts.retries:
            first, _ = run_script(command, work, env)
            assert first != 0, f"{label}: meant to fail the first time"
            code, output = run_script(command, work, env)
        elif opts.wait_until:
            deadline = time.monotonic() + min(opts.wait_until.timeout, COMMAND_LIMIT)
            code, output = run_script(command, work, env)
            while code != 0 and time.monotonic() < deadline:
                time.sleep(opts.wait_until.interval)
                code, output = run_script(command, work, env)
        else:
            code, output = run_script(command, work, env)
        assert code in (opts.expect_exit or (0,)), f"{label} exited {code}:\n{output}"
        if opts.expect_output:
            assert re.search(opts.expect_output, output, re.MULTILINE), f"{label}: output does not match"
        outputs[task.name or task.id] = output

    assert "Hello, Ada Lovelace!" in outputs["greet"]
    assert "dark blue" in outputs["colour"]
    assert "\033[32mOK\033[0m" in outputs["colors"]
    assert "100%" in outputs["progress"] and "\r" in outputs["progress"]
    # the demo cleans up after itself and writes nowhere but under TMPDIR
    assert not (tmp / "runbook-tui-demo").exists()
    assert list(work.iterdir()) == [] and list(home.iterdir()) == []
