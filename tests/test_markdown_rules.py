"""The Markdown rules of DESIGN.md, one small runbook at a time."""

from __future__ import annotations

import textwrap

import pytest

from runbook_tui.model import Runbook
from runbook_tui.parse.errors import RunbookError
from runbook_tui.parse.markdown import parse_markdown


def md(text: str) -> Runbook:
    return parse_markdown(textwrap.dedent(text).lstrip("\n"), "book.md")


def commands(book: Runbook) -> list[str]:
    return [t.command for t in book.commands() if t.command is not None]


def test_fenced_shell_block_is_one_command_and_other_languages_are_reference() -> None:
    book = md("""
        # T
        ## Steps
        ### Build
        ```bash
        make build
        make test
        ```
        ```yaml
        key: value
        ```
        ```promql
        rate(x[5m])
        ```
        """)
    assert commands(book) == ["make build\nmake test"]
    assert book.find("1.1.1").language == "bash"


def test_run_true_makes_a_reference_block_runnable_and_run_false_the_opposite() -> None:
    book = md("""
        # T
        ## Steps
        1. Query
           ```sql {run=true}
           select 1;
           ```
        2. Never
           ```sh {run=false}
           rm -rf /tmp/x
           ```
        """)
    assert commands(book) == ["select 1;"]
    never = book.find("1.2")
    assert [t.kind for t in never.tasks] == ["manual"]


@pytest.mark.parametrize("script", [
    "exec >&- 2>&-; sleep 600 &",
    'LEADER="not found"; for POD in $(oc get pods -o name); do echo "$POD"; done',
    "if [ -f /etc/app.conf ]; then cat /etc/app.conf; fi",
    "{ date; uptime; } > health.txt",
    "RELEASE=2.4.1 && deploy-tool --release $RELEASE",
])
def test_shell_grammar_in_a_shell_block_is_a_command(script: str) -> None:
    """The first word is no program, but the shell grammar around it says this is meant to run."""
    assert commands(in_a_shell_block(script)) == [script]


def in_a_shell_block(text: str) -> Runbook:
    """A runbook whose one step holds `text` in a ```sh block."""
    return md(f"""
        # T
        ## Steps
        1. Do it
           ```sh
           {text}
           ```
        """)


@pytest.mark.parametrize("text", [
    'sum by(resource) (rate(apiserver_request_total{code=~"5.."}[5m]))',
    '"msg"="trying to connect" "database"="OVN_Northbound"',
    "notAfter=Aug  6 13:11:20 2025 GMT",
    "forecast: sunny",
])
def test_promql_and_output_in_a_shell_block_stay_reference(text: str) -> None:
    assert commands(in_a_shell_block(text)) == []


def test_console_block_without_prompt_is_reference_unless_a_known_program() -> None:
    book = md("""
        # T
        ## Diagnosis
        Sample:
        ```console
        NAME      READY   STATUS
        web-1     1/1     Running
        ```
        Run this:
        ```console
        kubectl get pods -A
        ```
        """)
    assert commands(book) == ["kubectl get pods -A"]
    assert book.find("1.1").title == "Run this:"


def test_dollar_prompt_in_a_shell_block_and_heredoc() -> None:
    book = md("""
        # T
        ## Steps
        ```shell
        $ cat <<EOF > /tmp/x
        line one
        EOF
        $ wc -l /tmp/x
        1 /tmp/x
        ```
        """)
    assert commands(book) == ["cat <<EOF > /tmp/x\nline one\nEOF", "wc -l /tmp/x"]
    assert book.find("1.1.2").expected_output == "1 /tmp/x"


def test_annotations_from_html_comments_and_fence_attributes() -> None:
    book = md("""
        # T
        ## Deploy
        <!-- runbook: name=deploy timeout=5m -->
        1. **Deploy**
           - Migrate: `python manage.py migrate --noinput`
           <!-- runbook: risk=high name=restart -->
           - Restart: `docker compose up -d web`
        2. **Check**
           ```sh {name=smoke expect_output="ok" retries=2 wait_until=1m interval=5s}
           curl -fsS http://localhost/health
           ```
           ```sh {"name": "json-style", "risk": "low"}
           echo ok
           ```
        """)
    deploy = book.find("deploy")
    assert deploy is not None and deploy.id == "1.1"
    migrate, restart = deploy.tasks
    assert migrate.options.timeout == 300 and migrate.options.risk is None
    assert restart.options.risk == "high" and restart.name == "restart" and restart.options.timeout == 300
    smoke = book.find("smoke")
    assert smoke.options.expect_output == "ok" and smoke.options.retries == 2
    assert smoke.options.wait_until.timeout == 60 and smoke.options.wait_until.interval == 5
    assert book.find("json-style").options.risk == "low"


def test_bad_annotation_is_a_located_error_with_a_suggestion() -> None:
    with pytest.raises(RunbookError) as err:
        md("""
            # T
            ## Steps
            1. Go
               <!-- runbook: riks=high -->
               - `make deploy --now`
            """)
    assert (err.value.line, err.value.column) == (4, 18)
    assert "unknown annotation key 'riks'" in err.value.message and "did you mean 'risk'" in err.value.message


@pytest.mark.parametrize("annotation, message", [
    ("risk=extreme", "risk: expected low or high"),
    ("timeout=soon", "timeout: expected a duration"),
    ("retries=-1", "retries: expected 0 or more"),
    ('expect_output="(unclosed"', "not a valid regular expression"),
])
def test_bad_annotation_values(annotation: str, message: str) -> None:
    with pytest.raises(RunbookError, match=message.replace("(", r"\(")):
        md(f"""
            # T
            ## Steps
            ```sh {{{annotation}}}
            make
            ```
            """)


def test_optional_steps_by_title_and_annotation() -> None:
    book = md("""
        # T
        ## Steps
        1. Rollback if necessary
        2. Clean caches (optional)
        <!-- runbook: optional=true -->
        3. Page the owner
        4. Done
        """)
    assert [s.optional for s in book.steps()] == [True, True, True, False]


def test_placeholders_and_variables_are_found_and_single_quotes_respected() -> None:
    book = md("""
        # T
        ## Steps
        - Scale: `kubectl -n $NS scale deploy/<deployment> --replicas=${REPLICAS:-3}`
        - Awk: `kubectl get pods | awk '{print $1}' | grep $APP`
        """)
    assert book.required_variables == ("NS", "APP")
    assert book.placeholders == ("<deployment>",)


def test_front_matter_settings_and_error_position() -> None:
    book = md("""
        ---
        variables: {ENVIRONMENT: production, TAG: null}
        secrets: {DB_PASSWORD: "keyring:consultantpro/db-password"}
        watch: [{docker: web}]
        ---
        # T
        ## Steps
        - Deploy: `deploy --env $ENVIRONMENT --tag $TAG --password-env DB_PASSWORD`
        """)
    assert [(v.name, v.default) for v in book.variables] == [("ENVIRONMENT", "production"), ("TAG", None)]
    assert [s.name for s in book.secrets] == ["DB_PASSWORD"]
    assert [w.docker for w in book.watches] == ["web"]
    assert book.required_variables == ()
    assert book.find("1.1.1").line == 8
    with pytest.raises(RunbookError) as err:
        md("""
            ---
            variables: [unclosed
            ---
            # T
            """)
    assert err.value.line >= 2 and "front matter" in err.value.message


def test_reading_section_titles_stay_reading_even_with_code() -> None:
    book = md("""
        # T
        ## Overview
        The health check is `curl -fsS http://localhost/health`.
        ## Steps
        - Check: `curl -fsS http://localhost/health`
        """)
    assert [s.procedural for s in book.sections] == [False, True]


def test_numbered_step_without_title_is_an_error() -> None:
    with pytest.raises(RunbookError, match="no title") as err:
        md("""
            # T
            ## Steps
            1. Good
            2.
            """)
    assert err.value.line == 4


def test_commands_outside_steps_get_a_step_titled_by_their_lead_in() -> None:
    book = md("""
        # T
        ## Diagnosis
        Check the pods of the namespace:
        ```shell
        kubectl get pods -n web
        ```
        """)
    step = book.find("1.1")
    assert step.title == "Check the pods of the namespace:"
    assert [t.command for t in step.tasks] == ["kubectl get pods -n web"]


def test_no_h1_takes_the_title_from_the_file_name() -> None:
    book = parse_markdown("## Steps\n- `make deploy --now`\n", "runbooks/deploy-web.md")
    assert book.title == "deploy-web"


@pytest.mark.parametrize("script", ['echo "whole: $DB_PASSWORD"\nhalf=$(( 1 / 2 ))', ". ./env.sh\n./deploy.sh",
                                    'printf "status: %s\\n" ok'])
def test_a_shell_block_opening_with_a_known_program_or_source_is_a_command(script: str) -> None:
    """`echo "x: y"` is echo, not a line of output; `. ./env.sh` sources a file. Both run."""
    book = parse_markdown("# T\n## Steps\n1. **Do**\n   ```sh\n" + textwrap.indent(script, "   ") + "\n   ```\n", "b.md")
    (task,) = book.commands()
    assert task.command == script
