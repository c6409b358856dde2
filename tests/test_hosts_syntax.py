"""Runbook syntax for SSH targets (issue 15): front matter `hosts:`/`inventory:`, and the `hosts`,
`serial`, `max_fail`, `parallel` annotation keys in Markdown and YAML, through `convert` both ways."""

from __future__ import annotations

import textwrap

import pytest

from runbook_tui.model import Host, HostGroup
from runbook_tui.parse import parse_text
from runbook_tui.parse.emit import to_markdown, to_yaml
from runbook_tui.parse.errors import RunbookError
from tests.test_convert import model_view, without_positions

MARKDOWN = textwrap.dedent(
    """\
    ---
    inventory: inventory.ini
    hosts:
      web: [web-1, web-2, {name: web-3, user: deploy, port: 2222, address: 10.0.0.3}]
      db: db-1
    ---
    # Deploy to the fleet

    ## Deploy

    <!-- runbook: hosts=web serial=1,25%,100% max_fail=0 parallel=4 -->
    1. **Restart the web tier**

       ```sh
       docker compose up -d web worker
       ```

    2. **Migrate once**

       ```sh {hosts=db-1 risk=high}
       python manage.py migrate
       ```
    """
)


def test_markdown_front_matter_and_annotations() -> None:
    runbook = parse_text(MARKDOWN, "deploy.md")
    assert runbook.inventory == "inventory.ini"
    assert runbook.hosts == (
        HostGroup("web", (Host("web-1", 4), Host("web-2", 4), Host("web-3", 4, address="10.0.0.3", port=2222, user="deploy")), 4),
        HostGroup("db", (Host("db-1", 5),), 5),
    )
    restart, migrate = runbook.commands()
    assert restart.options.hosts == ("web",) and restart.options.serial == ("1", "25%", "100%")
    assert restart.options.max_fail == 0 and restart.options.parallel == 4
    assert migrate.options.hosts == ("db-1",) and migrate.options.serial is None


@pytest.mark.parametrize("direction", ["yaml", "markdown-via-yaml"])
def test_convert_keeps_hosts_and_batch_keys(direction: str) -> None:
    original = parse_text(MARKDOWN, "deploy.md")
    text = to_yaml(original)
    back = parse_text(text, "deploy.yaml")
    if direction == "markdown-via-yaml":
        back = parse_text(to_markdown(back), "deploy.md")
    assert model_view(back) == model_view(original)
    assert without_positions(back.hosts) == without_positions(original.hosts)
    assert back.inventory == original.inventory
    assert [t.options for t in back.commands()] == [t.options for t in original.commands()]


# A YAML runbook whose one step takes more keys appended at its indentation (line 8 on).
FLEET_YAML = textwrap.dedent(
    """\
    title: Fleet
    hosts: {web: [a, b]}
    sections:
      - title: Go
        steps:
          - title: Smoke
            run: "true"
    """
)


def test_yaml_task_keys() -> None:
    runbook = parse_text(FLEET_YAML + '        hosts: [web]\n        serial: [1, "50%"]\n        parallel: 2\n',
                         "fleet.yaml")
    task, = runbook.commands()
    assert task.options.hosts == ("web",) and task.options.serial == ("1", "50%") and task.options.parallel == 2


@pytest.mark.parametrize(("snippet", "message", "where"), [
    ("serial: 0%", "serial: 0% is not a batch size", (8, 9)),
    ("parallel: 0", "parallel: expected 1 or more", (8, 9)),
    ("max_fail: -1", "max_fail: expected 0 or more", (8, 9)),
    ("hosts: [web, 'db one']", "hosts: 'db one' is not a host or group name", (8, 9)),
])
def test_bad_values_are_located(snippet: str, message: str, where: tuple[int, int]) -> None:
    with pytest.raises(RunbookError) as caught:
        parse_text(FLEET_YAML + f"        {snippet}\n", "fleet.yaml")
    assert message in str(caught.value)
    assert (caught.value.line, caught.value.column) == where


def test_bad_host_in_front_matter_names_file_line_column() -> None:
    with pytest.raises(RunbookError) as caught:
        parse_text("---\nhosts:\n  web: [web-1, {name: web-2, prot: 22}]\n---\n# T\n", "x.md")
    assert "unknown key 'prot'" in str(caught.value) and "did you mean 'port'" in str(caught.value)
    assert str(caught.value).startswith("x.md:3:")
