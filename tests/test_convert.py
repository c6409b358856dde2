"""`convert`: YAML -> Markdown -> model and YAML -> YAML -> model keep every command and option.

Tests that read Markdown back import `parse_markdown` inside the test, so this module loads
even while the Markdown parser is being changed.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.model import Runbook, Task
from runbook_tui.parse.emit import PLAIN_SHELL, default_title, to_markdown, to_yaml
from runbook_tui.parse.yaml import parse_yaml

from tests.paths import CORPUS, RUNBOOKS, SEED

MARKDOWN_FILES = [SEED, *sorted(CORPUS.glob("*/*.md")), *sorted(RUNBOOKS.glob("*.md"))]
YAML_FILES = sorted(RUNBOOKS.glob("*.yaml"))

DEPLOY = textwrap.dedent(
    """\
    title: Deploy ConsultantPro
    owner: Release Engineering
    severity: High
    last_updated: 2026-01-04
    description: Standard deployment checklist.
    shell: bash
    env: {DJANGO_SETTINGS_MODULE: app.settings}
    variables:
      TAG: {default: v1, prompt: "Release tag"}
      REGION: null
    secrets: {DB_PASSWORD: "keyring:consultantpro/db-password"}
    watch: [{docker: web}, {docker: worker, tail: 200}]
    related:
      - {title: Rollback, path: ./rollback.md}
      - {title: Dashboards, path: "https://grafana.example.com/d/deploy"}
    sections:
      - title: Overview
        body: Read this **first**.
      - title: Deploy
        steps:
          - title: Migrate
            name: migrate-step
            description: |-
              Migrations lock tables.

              Run them in the maintenance window.
            risk: high
            tasks:
              - title: Apply migrations
                run: python src/manage.py migrate --noinput
                name: migrate
                timeout: 5m
                env: {PGOPTIONS: "-c statement_timeout=0", EMPTY: ""}
              - manual: Check the dashboard -- it must be green
                risk: low
                expect_output: ok --> done
              - Tell the release channel
          - title: Restart
            run: |
              docker compose up -d web worker
              docker compose ps | grep -c '```'
            wait_until: {timeout: 2m, interval: 10s}
            expect_exit: [0, 1]
            container: web
          - title: Rollback if needed
            manual: Redeploy tag $TAG
          - title: Print the version
            run: echo "$TAG"
            output: v1
          - title: Seed data
            run: SEED=1 ./bin/seed --all
            language: python
          - Confirm CI is green
    """
)


# ---- projections: what each direction must keep ---------------------------------------------


def without_positions(value: object) -> object:
    """The model as plain data, minus what a conversion may change: lines, path, hash."""
    if dataclasses.is_dataclass(value):
        return {
            field.name: without_positions(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if field.name not in ("line", "path", "sha256")
        }
    if isinstance(value, tuple):
        return [without_positions(item) for item in value]
    return value


def task_view(task: Task) -> dict[str, object]:
    """A task as both formats keep it: an untitled command may read back titled "Run"."""
    untitled = task.kind == "command" and task.text in ("Run", default_title(task.command or ""))
    options = task.options.as_dict()
    options.pop("run", None)  # implied by a YAML task's shape, written when Markdown needs it
    # only a one-line shell command (no heredoc, no continuation) keeps its sample output, as a
    # console block; otherwise the output follows the command as a reference block, for the reader
    command = task.command or ""
    one_line = "\n" not in command and "<<" not in command and not command.endswith("\\")
    shell = task.language is None or task.language in PLAIN_SHELL
    console = one_line and (shell or task.language in ("bash", "zsh", "ksh"))
    return {
        "kind": task.kind,
        "text": None if untitled else task.text,
        "command": task.command,
        "language": None if shell else task.language,
        "options": options,
        "output": task.expected_output if console else None,
    }


def model_view(runbook: Runbook, *, section_text: bool = True) -> dict[str, object]:
    sections = list(runbook.sections)
    if sections and sections[-1].title == "Related Resources" and not sections[-1].steps:
        sections.pop()  # written by to_markdown for the related runbooks
    return {
        "title": runbook.title,
        "metadata": runbook.metadata,
        "description": runbook.description,
        "settings": without_positions((runbook.variables, runbook.secrets, runbook.watches, runbook.env)),
        "run": (runbook.shell, runbook.cwd),
        "related": sorted((r.title, r.target) for r in runbook.related),
        "sections": [
            {
                "title": section.title,
                "procedural": section.procedural,
                "text": section.markdown if section_text and not section.steps else None,
                "intro": section.description,  # the prose before a procedural section's first step
                "steps": [
                    {
                        "title": step.title,
                        "optional": step.optional,
                        "name": step.name,
                        "description": step.description,
                        # a step without tasks is confirmed by hand, as if its title were its task
                        "tasks": [task_view(task) for task in step.tasks] or [task_view(Task("", "manual", step.title, 0))],
                    }
                    for step in section.steps
                ],
            }
            for section in sections
        ],
    }


def commands(runbook: Runbook) -> list[tuple[str | None, dict[str, object]]]:
    return [(view["command"], view["options"]) for view in map(task_view, runbook.commands())]


# ---- examples -----------------------------------------------------------------------------


def test_yaml_to_yaml_is_the_identity() -> None:
    runbook = parse_yaml(DEPLOY, "deploy.yaml")
    again = parse_yaml(to_yaml(runbook), "deploy.yaml")
    assert without_positions(again) == without_positions(runbook)


def test_to_yaml_is_readable() -> None:
    text = to_yaml(parse_yaml(DEPLOY, "deploy.yaml"))
    assert "run: |-\n" in text and "  docker compose up -d web worker\n" in text  # literal blocks
    assert "      - title: Rollback if needed\n        manual: Redeploy tag $TAG\n" in text  # short form kept
    assert "      - Confirm CI is green\n" in text
    assert "timeout: 300\n" in text and "optional" not in text  # whole seconds; optional implied by the title
    assert yaml.safe_load(text)["sections"][1]["steps"][0]["tasks"][0]["run"] == "python src/manage.py migrate --noinput"


def test_to_markdown_canonical_form() -> None:
    text = to_markdown(parse_yaml(DEPLOY, "deploy.yaml"))
    assert text.startswith("---\nshell: bash\n")
    assert "\n---\n\n# Deploy ConsultantPro\n\n**Owner:** Release Engineering  \n**Severity:** High  \n" in text
    assert "<!-- runbook: name=migrate-step -->\n\n1. **Migrate**\n\n   Migrations lock tables.\n" in text
    assert "   - Apply migrations\n\n     ```sh {" in text
    assert "   - Run\n\n     ````sh {" in text  # longer than the ``` inside the command
    assert "     ```python {run=true}\n     SEED=1 ./bin/seed --all\n" in text
    assert "     ```console\n     $ echo \"$TAG\"\n     v1\n     ```" in text
    assert "## Related Resources\n\n- [Rollback](./rollback.md)\n" in text
    assert "related:\n  - title: Dashboards\n" in text  # not a link the parser would follow: front matter


def test_the_text_before_a_sections_first_step_survives_both_ways() -> None:
    from runbook_tui.parse.markdown import parse_markdown

    book = parse_markdown(textwrap.dedent("""\
        # Deploy

        ## Rollout

        Announce the rollout in **#ops** first.

        1. Build
           ```sh
           make build
           ```
        """), "x.md")
    assert book.sections[0].description == "Announce the rollout in **#ops** first."
    as_yaml = to_yaml(book)
    assert "description: Announce the rollout in **#ops** first." in as_yaml
    again = parse_yaml(as_yaml, "x.yaml")
    assert again.sections[0].description == book.sections[0].description
    assert again.sections[0].markdown.startswith("Announce the rollout")  # what the TUI shows
    assert parse_markdown(to_markdown(again), "y.md").sections[0].description == book.sections[0].description


def test_yaml_to_markdown_keeps_steps_tasks_and_options() -> None:
    from runbook_tui.parse.markdown import parse_markdown

    runbook = parse_yaml(DEPLOY, "deploy.yaml")
    assert model_view(parse_markdown(to_markdown(runbook), "deploy.md")) == model_view(runbook)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: path.name)
def test_bundled_yaml_runbooks_convert_both_ways(path: Path) -> None:
    from runbook_tui.parse.markdown import parse_markdown

    runbook = parse_yaml(path.read_text(), str(path))
    assert without_positions(parse_yaml(to_yaml(runbook), str(path))) == without_positions(runbook)
    assert model_view(parse_markdown(to_markdown(runbook), "x.md")) == model_view(runbook)


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_markdown_files_convert_both_ways(path: Path) -> None:
    from runbook_tui.parse.markdown import parse_markdown

    runbook = parse_markdown(path.read_text(), str(path))
    as_yaml = parse_yaml(to_yaml(runbook), "x.yaml")
    assert model_view(as_yaml) == model_view(runbook)
    back = parse_markdown(to_markdown(runbook), "x.md")
    assert commands(back) == commands(runbook)
    assert model_view(back, section_text=False) == model_view(runbook, section_text=False)
    assert commands(parse_markdown(to_markdown(as_yaml), "x.md")) == commands(runbook)


# ---- generated runbooks --------------------------------------------------------------------

word = st.from_regex(r"[A-Za-z][a-z0-9]{0,7}", fullmatch=True)
markup = st.sampled_from(
    ["#1", "*x*", "**b**", "`y`", "a_b", "[x]", "[l](./l.md)", "<b>", "&amp;", "1.", "2)", "-", "+", ">", "--",
     "C:\\dir", "Ünïcødé", "日本", '"q"', "'s'", "50%", "x|y", "~z~", "!", "(optional)", "<!-- c -->", "$HOME", "{a}", ":"]
)
title = st.tuples(word, st.lists(word | markup, max_size=5)).map(lambda parts: " ".join([parts[0], *parts[1]]))
prose = st.lists(st.lists(word, min_size=1, max_size=8).map(" ".join), min_size=1, max_size=3).map("\n\n".join)
argument = word | st.sampled_from(
    ["$ENV", "${TAG}", "'single quoted'", '"double $X"', "`date`", "```", "````x", "a|b", "--flag", "-n",
     "<pod>", "a\\b", "#no", "{a,b}", "&&", ";", "2>&1", "'it''s'", '"a \\" b"', "x=1", "<<EOF", "ü"]
)
program = st.sampled_from(["echo", "kubectl", "docker", "python3", "grep", "curl", "psql", "./deploy.sh"])
command_line = st.tuples(program, st.lists(argument, max_size=5)).map(lambda parts: " ".join([parts[0], *parts[1]]))
command = st.lists(command_line, min_size=1, max_size=3).map("\n".join)
value = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=12).filter(str.strip)
any_text = st.text(min_size=1, max_size=12).filter(str.strip)
env_name = st.from_regex(r"[A-Z][A-Z0-9_]{0,5}", fullmatch=True)


def options(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "name": text,
            "risk": st.sampled_from(["low", "high"]),
            "confirm": st.booleans(),
            "timeout": st.integers(1, 10**5) | st.sampled_from(["90s", "5m", "1h30m", "250ms", "0.5"]),
            "retries": st.integers(0, 9),
            "expect_exit": st.lists(st.integers(0, 255), min_size=1, max_size=3),
            "expect_output": text.map(re.escape),
            "wait_until": st.fixed_dictionaries({"timeout": st.integers(1, 999)}, optional={"interval": st.integers(1, 99)}),
            "cwd": text,
            "env": st.dictionaries(env_name, text | st.just(""), max_size=2),
            "interactive": st.booleans(),
            "container": text,
            "skip": st.booleans(),
        },
    )


def runbooks(
    text: st.SearchStrategy[str], command: st.SearchStrategy[str], values: st.SearchStrategy[str] = value
) -> st.SearchStrategy[dict[str, object]]:
    """YAML runbook documents: `text` for titles, `command` for what runs, `values` for options."""
    task = st.one_of(
        text,
        st.builds(lambda m, o: {"manual": m, **o}, text, options(values)),
        st.builds(lambda r, o: {"run": r, **o}, command, options(values)),
        st.builds(lambda t, r, o: {"title": t, "run": r, **o}, text, command, options(values)),
        st.builds(lambda r, out, lang: {"run": r, "output": out, "language": lang}, command, prose,
                  st.sampled_from(["sh", "bash", "zsh", "python"])),
    )
    step_own = st.fixed_dictionaries({}, optional={"description": prose, "name": values, "optional": st.booleans()})
    step = st.one_of(
        text,
        st.builds(lambda t, own, o, tasks: {"title": t, **own, **o, "tasks": tasks},
                  text, step_own, options(values), st.lists(task, min_size=1, max_size=3)),
        st.builds(lambda t, own, o, r: {"title": t, **own, **o, "run": r}, text, step_own, options(values), command),
        st.builds(lambda t, own, m: {"title": t, **own, "manual": m}, text, step_own, text),
    )
    section = st.one_of(
        st.builds(lambda t, body: {"title": "Read " + t, **({"body": body} if body else {})}, text, st.none() | prose),
        st.builds(lambda t, steps: {"title": "Do " + t, "steps": steps}, text, st.lists(step, min_size=1, max_size=3)),
    )
    names = st.lists(env_name, unique=True, max_size=6)
    return st.builds(
        lambda top, extra, names, sections: {
            "title": top,
            **extra,
            "variables": {f"V_{n}": v for n, v in zip(names, [None, "x", {"prompt": "Value"}, {"default": "1", "prompt": "P"}])},
            "secrets": {f"S_{n}": f"keyring:svc/{n.lower()}" for n in names[4:]},
            "env": {f"E_{n}": "1" for n in names[:2]},
            "sections": sections,
        },
        text,
        st.fixed_dictionaries(
            {},
            optional={
                "owner": st.lists(word, min_size=1, max_size=4).map(" ".join),
                "severity": word,
                "last_updated": st.just("2026-01-04"),
                "description": prose,
                "shell": st.just("bash"),
                "cwd": st.just("/srv/app"),
                "watch": st.lists(st.builds(lambda d, t: {"docker": d, **({"tail": t} if t else {})}, word, st.none() | st.integers(0, 500)), max_size=2),
                "related": st.lists(st.sampled_from(["./rollback.md", "docs/backup.yaml", "./notes", "https://x.example/y"]), unique=True, max_size=3)
                .map(lambda paths: [{"title": f"See {i}", "path": p} if i % 2 else p for i, p in enumerate(paths)]),
            },
        ),
        names,
        st.lists(section, max_size=3),
    )


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(runbooks(any_text, any_text | command, any_text))
def test_generated_yaml_round_trip(document: dict[str, object]) -> None:
    runbook = parse_yaml(yaml.safe_dump(document, allow_unicode=True), "gen.yaml")
    assert without_positions(parse_yaml(to_yaml(runbook), "gen.yaml")) == without_positions(runbook)


@SETTINGS
@given(runbooks(title, command))
def test_generated_markdown_round_trip(document: dict[str, object]) -> None:
    from runbook_tui.parse.markdown import parse_markdown

    runbook = parse_yaml(yaml.safe_dump(document, allow_unicode=True), "gen.yaml")
    markdown = to_markdown(runbook)
    assert model_view(parse_markdown(markdown, "gen.md")) == model_view(runbook), markdown
