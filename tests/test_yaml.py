"""YAML runbooks: the schema, its short forms, and errors that point at file:line:col."""

from __future__ import annotations

import hashlib
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.model import Runbook, TaskOptions, WaitUntil
from runbook_tui.parse.errors import RunbookError
from runbook_tui.parse.settings import parse_settings
from runbook_tui.parse.yaml import parse_yaml

DEPLOY = textwrap.dedent(
    """\
    title: Deploy ConsultantPro
    owner: Release Engineering
    severity: High
    Last Updated: 2026-01-04
    metadata: {team: Platform}
    description: Standard deployment checklist.
    shell: bash
    cwd: /srv/app
    env: {DJANGO_SETTINGS_MODULE: app.settings}
    variables:
      ENV: production
      TAG: {default: v1, prompt: "Release tag"}
      REGION: null
    secrets:
      DB_PASSWORD: "keyring:consultantpro/db-password"
      API_TOKEN: "env:CI_TOKEN"
    watch: [{docker: web}, {docker: worker, tail: 200}]
    related:
      - {title: Rollback, path: ./rollback.md}
      - ./backup.md
    sections:
      - title: Overview
        body: |
          Read this **first**.
      - title: Deploy
        steps:
          - title: Migrate
            name: migrate-step
            risk: high
            timeout: 10m
            tasks:
              - title: Apply migrations
                run: python src/manage.py migrate --noinput --settings=$DJANGO_SETTINGS_MODULE
                timeout: 300
                name: migrate
              - manual: Check the dashboard
                risk: low
              - Tell the release channel
          - title: Restart
            run: |
              docker compose up -d web worker
              docker compose ps
            wait_until: {timeout: 2m, interval: 10s}
            expect_output: Up
          - title: Rollback if needed
            manual: Redeploy tag $TAG
          - title: Warm caches
            optional: true
            run: curl -fsS https://$ENV.example.com/<path>
            language: bash
            output: OK
          - Confirm CI is green
    """
)


def line_of(snippet: str) -> int:
    return next(number for number, line in enumerate(DEPLOY.splitlines(), 1) if snippet in line)


def parse(text: str) -> Runbook:
    return parse_yaml(textwrap.dedent(text), "rb.yaml")


def test_runbook_settings() -> None:
    rb = parse_yaml(DEPLOY, "deploy.yaml")
    assert (rb.title, rb.format, rb.path) == ("Deploy ConsultantPro", "yaml", "deploy.yaml")
    assert rb.sha256 == hashlib.sha256(DEPLOY.encode()).hexdigest()
    assert rb.metadata == (
        ("owner", "Release Engineering"),
        ("severity", "High"),
        ("last_updated", "2026-01-04"),
        ("team", "Platform"),
    )
    assert rb.description == "Standard deployment checklist."
    assert (rb.shell, rb.cwd, rb.env) == ("bash", "/srv/app", (("DJANGO_SETTINGS_MODULE", "app.settings"),))
    assert [(v.name, v.default, v.prompt, v.line) for v in rb.variables] == [
        ("ENV", "production", None, line_of("ENV: production")),
        ("TAG", "v1", "Release tag", line_of("TAG:")),
        ("REGION", None, None, line_of("REGION:")),
    ]
    assert [(s.name, s.ref) for s in rb.secrets] == [
        ("DB_PASSWORD", "keyring:consultantpro/db-password"),
        ("API_TOKEN", "env:CI_TOKEN"),
    ]
    assert [(w.docker, w.tail) for w in rb.watches] == [("web", None), ("worker", 200)]
    assert [(r.title, r.target) for r in rb.related] == [("Rollback", "./rollback.md"), ("./backup.md", "./backup.md")]


def test_sections_steps_and_tasks() -> None:
    rb = parse_yaml(DEPLOY, "deploy.yaml")
    overview, deploy = rb.sections
    assert (overview.id, overview.procedural, overview.steps, overview.markdown) == ("1", False, (), "Read this **first**.")
    assert deploy.procedural and deploy.line == line_of("- title: Deploy")
    assert [s.id for s in deploy.steps] == ["2.1", "2.2", "2.3", "2.4", "2.5"]
    assert [t.id for t in rb.tasks()] == ["2.1.1", "2.1.2", "2.1.3", "2.2.1", "2.3.1", "2.4.1", "2.5.1"]

    migrate = deploy.steps[0]
    assert (migrate.title, migrate.name, migrate.optional) == ("Migrate", "migrate-step", False)
    apply, check, tell = migrate.tasks
    assert (apply.kind, apply.text, apply.command, apply.line) == (
        "command",
        "Apply migrations",
        "python src/manage.py migrate --noinput --settings=$DJANGO_SETTINGS_MODULE",
        line_of("- title: Apply migrations"),
    )
    # step annotation keys are defaults; the task's own keys win; name stays with its owner
    assert apply.options == TaskOptions(name="migrate", risk="high", timeout=300.0)
    assert check.options == TaskOptions(risk="low", timeout=600.0)
    assert (tell.kind, tell.text, tell.options) == ("manual", "Tell the release channel", TaskOptions(risk="high", timeout=600.0))
    assert apply.variables == ("DJANGO_SETTINGS_MODULE",)
    assert rb.find("migrate") is apply and rb.find("migrate-step") is migrate


def test_short_forms_and_optional_steps() -> None:
    rb = parse_yaml(DEPLOY, "deploy.yaml")
    restart, rollback, warm, confirm = rb.sections[1].steps[1:]
    (task,) = restart.tasks
    assert task.command == "docker compose up -d web worker\ndocker compose ps"
    assert task.text == "docker compose up -d web worker"  # no title: the first line
    assert task.options == TaskOptions(expect_output="Up", wait_until=WaitUntil(timeout=120.0, interval=10.0))
    assert (task.line, restart.line) == (line_of("run: |"), line_of("- title: Restart"))
    assert (rollback.optional, rollback.tasks[0].kind, rollback.tasks[0].text) == (True, "manual", "Redeploy tag $TAG")
    assert warm.optional and warm.tasks[0].options == TaskOptions()
    assert (warm.tasks[0].language, warm.tasks[0].expected_output) == ("bash", "OK")
    assert warm.tasks[0].placeholders == ("<path>",) and warm.tasks[0].variables == ("ENV",)
    # a bare string step is confirmed by hand: one manual task with its title
    assert (confirm.title, [(t.kind, t.text) for t in confirm.tasks]) == ("Confirm CI is green", [("manual", "Confirm CI is green")])
    assert rb.required_variables == ()


def test_step_without_tasks_takes_step_defaults() -> None:
    rb = parse(
        """\
        title: T
        sections:
          - title: S
            steps:
              - {title: Page the on-call engineer (optional), risk: high}
        """
    )
    step = rb.sections[0].steps[0]
    assert step.optional
    assert [(t.id, t.kind, t.text, t.options.risk) for t in step.tasks] == [("1.1.1", "manual", step.title, "high")]


def test_values_are_kept_as_written() -> None:
    rb = parse(
        """\
        title: 2026
        variables: {VERSION: 1.10, DEBUG: off, EMPTY: ""}
        sections: [{title: S, steps: [{title: Go, run: "true"}]}]
        """
    )
    assert rb.title == "2026"
    assert [(v.name, v.default) for v in rb.variables] == [("VERSION", "1.10"), ("DEBUG", "off"), ("EMPTY", "")]
    assert next(rb.commands()).command == "true"


STEP = "title: T\nsections: [{title: S, steps: [%s]}]\n"
# (document, where the error points: (line, column) or the first occurrence of a snippet, message)
BAD = [
    ("title: [unclosed\n", (2, 1), "not valid YAML"),
    ("title: a\n\tsections: []\n", "\t", "not valid YAML"),
    ("", (1, 1), "empty document"),
    ("# only a comment\n", "#", "empty document"),
    ("- title: a list\n", "- title", "a YAML runbook is a mapping"),
    ("tite: Deploy\n", "tite", "unknown key 'tite' (did you mean 'title'?)"),
    ("title: T\nsectons: []\n", "sectons", "did you mean 'sections'?"),
    ("owner: me\n", "owner", "missing 'title'"),
    ("title: T\ntitle: U\n", "title: U", "duplicate key 'title'"),
    ("title: T\nsections: 3\n", "3", "sections: expected a list, got a number"),
    ("title: T\nsections: [{title: S, steps: 3}]\n", "3}", "steps: expected a list, got a number"),
    (STEP % "{run: ls}", "{run", "a step needs a 'title'"),
    (STEP % "{title: '', run: ls}", "''", "title: must not be empty"),
    (STEP % "{title: A, tittle: B}", "tittle", "unknown key 'tittle' in a step (did you mean 'title'?)"),
    ("title: T\nsections:\n  - title: S\n    steps:\n      - title: A\n        tasks:\n          - rum: ls\n", "rum",
     "unknown key 'rum' in a task (did you mean 'run'?)"),
    (STEP % "{title: A, tasks: [{run: ls, manual: x}]}", "manual", "either run (a command) or manual"),
    (STEP % "{title: A, tasks: [{risk: high}]}", "{risk", "needs 'run'"),
    (STEP % "{title: A, run: ls, manual: x}", "manual", "not both 'run' and 'manual'"),
    (STEP % "{title: A, manual: x, language: bash}", "language", "'language' only goes with 'run'"),
    (STEP % "{title: A, tasks: [{manual: x, title: y}]}", "title: y", "'title' only goes with 'run'"),
    ("title: T\nsections: [{title: S, body: x, steps: [A]}]\n", "steps", "either a body"),
    ("title: T\nsections: [{title: S, description: x, body: y}]\n", "description", "goes before its steps"),
    ("title: T\nsections:\n  - title: S\n    steps:\n      - title: A\n        risk: extreme\n", "risk",
     "risk: expected low or high"),
    (STEP % "{title: A, run: ls, timeout: soon}", "timeout", "timeout: expected a duration"),
    (STEP % "{title: A, run: ls, interval: 5s}", "interval", "interval: only means"),
    (STEP % "{title: A, run: ls, env: \"A='x\"}", "env", "env: cannot be read"),
    (STEP % "{title: A, run: ls, wait_until: {timout: 5m}}", "wait_until", "did you mean 'timeout'?"),
    (STEP % "{title: A, run: [ls]}", "[ls]", "run: expected a single value, got a list"),
    ("title: T\nvariables: {1X: a}\n", "1X", "'1X' is not a valid environment variable name"),
    ("title: T\nvariables: {X: {default: a, promt: b}}\n", "promt", "did you mean 'prompt'?"),
    ("title: T\nsecrets: {DB: 'vault:x'}\n", "'vault", "expected 'keyring:service/username' or 'env:NAME'"),
    ("title: T\nsecrets: {DB: 'keyring:service'}\n", "'keyring", "keyring:service/username"),
    ("title: T\nvariables: {X: a}\nsecrets: {X: 'env:Y'}\n", "X: 'env", "'X' is already defined in variables"),
    ("title: T\nwatch: [{tail: 5}]\n", "{tail", "needs 'docker'"),
    ("title: T\nwatch: [{docker: web, tail: lots}]\n", "lots", "watch.tail: expected a number of lines"),
    ("title: T\nrelated: [{title: R}]\n", "{title: R", "needs 'path'"),
    ("title: T\n? [a]\n: b\n", "[a]", "keys must be text"),
    ("title: T\nenv: [A]\n", "[A]", "env: expected a mapping"),
]


def position(text: str, where: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(where, tuple):
        return where
    before = text[: text.index(where)]
    return before.count("\n") + 1, len(before) - before.rfind("\n")


@pytest.mark.parametrize(("text", "where", "message"), BAD)
def test_errors_name_the_file_line_and_column(text: str, where: str | tuple[int, int], message: str) -> None:
    with pytest.raises(RunbookError) as caught:
        parse_yaml(text, "bad.yaml")
    error = caught.value
    line, column = position(text, where)
    assert message in error.message
    assert (error.path, error.line, error.column) == ("bad.yaml", line, column), str(error)
    assert str(error).startswith(f"bad.yaml:{line}:{column}: ")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(RunbookError):
        parse_yaml("[" * 5000, "deep.yaml")


def test_front_matter_keeps_unknown_keys_and_offsets_lines() -> None:
    node = yaml.compose("title: Kube Job Failed\nweight: 20\ntags: [k8s, jobs]\nparams: {x: 1}\nLast Updated: today\n")
    result = parse_settings(node, "job.md", allow_unknown=True, line_offset=1)
    assert result.title == "Kube Job Failed"
    assert result.metadata == (("weight", "20"), ("tags", "k8s, jobs"), ("last_updated", "today"))
    with pytest.raises(RunbookError) as caught:
        parse_settings(yaml.compose("title: T\nsecrets: {X: nope}\n"), "job.md", allow_unknown=True, line_offset=1)
    assert (caught.value.line, caught.value.column) == (3, 14)
    with pytest.raises(RunbookError, match="did you mean 'variables'"):
        parse_settings(yaml.compose("variabels: {X: 1}\n"), "rb.yaml", allow_unknown=False)


# ---- never anything but a RunbookError ---------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
yamlable = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=30)
keys = st.sampled_from(
    ["title", "owner", "variables", "secrets", "watch", "related", "env", "sections", "steps", "tasks", "body",
     "run", "manual", "risk", "timeout", "wait_until", "interval", "expect_exit", "name", "optional",
     "language", "output", "docker", "tail", "path", "default", "prompt", "description", "metadata"]
)
shaped = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=40)


def _parses_or_fails_cleanly(text: str) -> None:
    try:
        parse_yaml(text, "fuzz.yaml")
    except RunbookError as error:
        assert error.line >= 1 and error.column >= 1


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
yaml_characters = st.text(alphabet="ab1:-? \n\t[]{}'\"#&*!|>%@`,.~", max_size=60)


@FUZZ
@given(st.text() | yaml_characters)
def test_arbitrary_text(text: str) -> None:
    _parses_or_fails_cleanly(text)


@FUZZ
@given(yamlable | shaped)
def test_arbitrary_yaml_structures(document: object) -> None:
    _parses_or_fails_cleanly(yaml.safe_dump(document))


@FUZZ
@given(st.dictionaries(keys, shaped, max_size=4), st.dictionaries(keys, shaped, max_size=3))
def test_runbook_shaped_documents(extra: dict[str, object], top: dict[str, object]) -> None:
    step = {"title": "Step", **extra}
    _parses_or_fails_cleanly(yaml.safe_dump({"title": "T", **top, "sections": [{"title": "S", "steps": [step]}]}))
    _parses_or_fails_cleanly(yaml.safe_dump({"title": "T", "sections": [{"title": "S", "steps": [{"title": "A", "tasks": [step]}]}]}))


def test_client_sessions_have_client_and_input_keys() -> None:
    from runbook_tui.parse.yaml import parse_yaml

    book = parse_yaml(textwrap.dedent("""
        title: Ban an IP
        sections:
          - title: Ban
            steps:
              - title: Connect
                tasks:
                  - run: redis-cli -h 10.0.0.1
                    client: redis-cli
                    input: [auth <password>, info replication]
                  - manual: Type into psql
                    client: psql
                    input: [show pools;]
    """), "ban.yaml")
    command, typed = book.tasks()
    assert (command.kind, command.client, command.client_input) == ("command", "redis-cli",
                                                                   ("auth <password>", "info replication"))
    assert (typed.kind, typed.client, typed.client_input) == ("manual", "psql", ("show pools;",))
    with pytest.raises(RunbookError, match=r"ban.yaml:3:\d+: input: expected a list"):
        parse_yaml("title: T\nsections:\n  - {title: S, steps: [{title: s, run: psql, input: 'x'}]}\n", "ban.yaml")
