"""Ansible inventories (YAML and INI) and front matter groups as SSH targets (issue 15)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runbook_tui.integrations.inventory import Inventory, UnknownTarget, check_targets, load_inventory, runbook_inventory
from runbook_tui.model import Host
from runbook_tui.parse import parse_text
from runbook_tui.parse.errors import RunbookError

INI = textwrap.dedent(
    """\
    # production
    bastion.example.com ansible_user=ops

    [web]
    web[01:03].example.com
    web-04 ansible_host=10.0.0.4 ansible_port=2222  # the odd one

    [db]
    db-1 ansible_host=10.0.1.1 ansible_user=postgres

    [prod:children]
    web
    db

    [prod:vars]
    ansible_user=deploy

    [web:vars]
    ansible_user=www
    """
)

YAML = textwrap.dedent(
    """\
    all:
      hosts:
        bastion.example.com:
          ansible_user: ops
      children:
        prod:
          vars:
            ansible_user: deploy
          children:
            web:
              vars: {ansible_user: www}
              hosts:
                web[01:03].example.com:
                web-04: {ansible_host: 10.0.0.4, ansible_port: 2222}
            db:
              hosts:
                db-1: {ansible_host: 10.0.1.1, ansible_user: postgres}
    """
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("name", "text"), [("hosts.ini", INI), ("hosts.yml", YAML)])
def test_both_formats_give_the_same_groups_and_connection_settings(tmp_path: Path, name: str, text: str) -> None:
    inventory = load_inventory(write(tmp_path, name, text))
    web = inventory.resolve(["web"])
    assert [h.name for h in web] == ["web01.example.com", "web02.example.com", "web03.example.com", "web-04"]
    assert {h.user for h in web} == {"www"}  # the child group's variable beats the parent's
    assert (web[3].address, web[3].port) == ("10.0.0.4", 2222)
    db, = inventory.resolve(["db"])
    assert (db.address, db.user, db.port) == ("10.0.1.1", "postgres", None)  # host beats group
    assert [h.name for h in inventory.resolve(["prod"])] == [h.name for h in (*web, db)]
    assert [h.name for h in inventory.resolve(["all"])][0] == "bastion.example.com"
    assert inventory.resolve(["bastion.example.com"])[0].user == "ops"
    assert [h.name for h in inventory.resolve(["db-1", "db", "web-04"])] == ["db-1", "web-04"]


def test_unknown_name_suggests_the_nearest() -> None:
    inventory = Inventory()
    with pytest.raises(UnknownTarget, match="unknown host or group 'al'"):
        inventory.resolve(["al"])


@pytest.mark.parametrize(("text", "where", "message"), [
    ("[web]\nweb-1 ansible_port=http\n", (2, 1), "ansible_port: expected a TCP port"),
    ("[web]\nweb-1 port\n", (2, 7), "expected key=value, got 'port'"),
    ("[web:chidren]\na\n", (1, 1), "not an inventory section"),
    ("[a:children]\nb\n[b:children]\na\n", (1, 1), "group 'a' contains itself"),
    ("[web]\n  web 'unterminated\n", (2, 3), "cannot be read"),
])
def test_ini_mistakes_are_located(tmp_path: Path, text: str, where: tuple[int, int], message: str) -> None:
    path = write(tmp_path, "inv", text)
    with pytest.raises(RunbookError) as caught:
        load_inventory(path)
    assert (caught.value.path, caught.value.line, caught.value.column) == (str(path), *where)
    assert message in caught.value.message


def test_yaml_mistakes_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", "all:\n  children:\n    web:\n      hots:\n        a:\n")
    with pytest.raises(RunbookError) as caught:
        load_inventory(path)
    assert (caught.value.line, caught.value.column) == (4, 7)
    assert "unknown key 'hots'" in caught.value.message and "did you mean 'hosts'" in caught.value.message


def test_runbook_groups_win_over_the_inventory_and_check_flags_unknown_names(tmp_path: Path) -> None:
    write(tmp_path, "hosts.ini", INI)
    runbook_path = tmp_path / "deploy.md"
    runbook = parse_text(textwrap.dedent(
        """\
        ---
        inventory: hosts.ini
        hosts:
          web: [web-9, db-1]
          canary: [{name: web-04, user: canary}]
        ---
        # Deploy

        ## Go

        1. **Restart**

           ```sh {hosts=web,db}
           systemctl restart app
           ```

        2. **Smoke**

           ```sh {hosts=wbe}
           curl -fsS localhost/health
           ```
        """), str(runbook_path))
    inventory = runbook_inventory(runbook)
    assert [h.name for h in inventory.resolve(["web", "db"])] == ["web-9", "db-1"]
    assert inventory.resolve(["web-04"]) == (Host("web-04", 5, user="canary"),)
    db = inventory.resolve(["web"])[1]  # only named by the runbook: the inventory's settings
    assert (db.address, db.user) == ("10.0.1.1", "postgres")
    problem, = check_targets(runbook, inventory)
    assert problem.line == 20 and "unknown host or group 'wbe'" in problem.message
    assert "did you mean 'web'" in problem.message
