"""Which hosts a step runs on: front matter ``hosts:`` plus an Ansible inventory file.

A team's existing inventory works as it is: ``inventory: path`` (relative to the runbook) may be
Ansible's YAML format (``.yml``/``.yaml``: ``all: {hosts, vars, children}``) or its INI format
(``[group]``, ``[group:children]``, ``[group:vars]``, host lines with ``key=value`` variables,
host ranges such as ``web[01:20]``). Of the variables only the connection ones matter here:
``ansible_host`` (address), ``ansible_port`` and ``ansible_user`` (and their old ``ansible_ssh_*``
spellings); a host's own variables beat its groups', a child group's beat its parent's. What
neither sets comes from ``~/.ssh/config``.

Front matter groups are written into the runbook and win over an inventory group of the same
name; a host named in front matter with settings of its own keeps them. ``all`` is every host.
Every mistake in an inventory is a :class:`RunbookError` at the inventory's file:line:col.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from runbook_tui.model import Host, HostGroup, Runbook
from runbook_tui.parse.annotations import HOST_NAME
from runbook_tui.parse.errors import RunbookError, did_you_mean
from runbook_tui.parse.settings import YamlSource, parse_port

__all__ = ["ALL", "Inventory", "check_targets", "load_inventory", "runbook_inventory"]

ALL = "all"
_UNGROUPED = "ungrouped"
# Connection variables -> Host fields; later spellings are Ansible's pre-2.0 names.
_CONNECTION_VARS = {
    "ansible_host": "address", "ansible_ssh_host": "address",
    "ansible_port": "port", "ansible_ssh_port": "port",
    "ansible_user": "user", "ansible_ssh_user": "user",
}
_GROUP_KEYS = ("hosts", "vars", "children")
_RANGE = re.compile(r"\[(\d+):(\d+)\]|\[([a-z]):([a-z])\]")
_INI_SECTION = re.compile(r"\[([^\]:\s]+)(?::(\w+))?\]\Z")


class UnknownTarget(LookupError):
    """A name in ``hosts=`` that is neither a group nor a host."""


@dataclass(frozen=True)
class Inventory:
    """Named groups of hosts, resolved from names in a step's ``hosts=``."""

    groups: tuple[HostGroup, ...] = ()

    def group_names(self) -> tuple[str, ...]:
        return (ALL, *(group.name for group in self.groups))

    def hosts(self) -> tuple[Host, ...]:
        """Every host once, in the order first listed."""
        seen: dict[str, Host] = {}
        for group in self.groups:
            for host in group.hosts:
                seen.setdefault(host.name, host)
        return tuple(seen.values())

    def resolve(self, names: Iterable[str]) -> tuple[Host, ...]:
        """The hosts ``names`` (groups and/or hosts) stand for, each once, in order."""
        by_group = {group.name: group.hosts for group in self.groups}
        by_host = {host.name: host for host in self.hosts()}
        out: dict[str, Host] = {}
        for name in names:
            if name == ALL:
                found: Sequence[Host] = tuple(by_host.values())
            elif name in by_group:
                found = by_group[name]
            elif name in by_host:
                found = (by_host[name],)
            else:
                raise UnknownTarget(f"unknown host or group '{name}'"
                                    f"{did_you_mean(name, [*self.group_names(), *by_host])}")
            for host in found:
                out.setdefault(host.name, by_host[host.name])
        return tuple(out.values())

    def merged_under(self, front: Sequence[HostGroup]) -> Inventory:
        """This inventory with ``front`` (the runbook's own groups) taking precedence.

        A host the runbook gives settings of its own keeps them everywhere; a host it only names
        takes the inventory's settings for that name.
        """
        own = {host.name: host for group in front for host in group.hosts if host.address or host.port or host.user}
        known = {**{host.name: host for host in self.hosts()}, **own}
        names = {group.name for group in front}
        groups = [*front, *(g for g in self.groups if g.name not in names)]
        return Inventory(tuple(replace(g, hosts=tuple(known.get(h.name, h) for h in g.hosts)) for g in groups))


# ---- loading ---------------------------------------------------------------------------------

@dataclass
class _Group:
    line: int
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, str] = field(default_factory=dict)


@dataclass
class _Draft:
    """What both formats read, before variables are applied: groups, and host variables."""

    path: str
    groups: dict[str, _Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, str]] = field(default_factory=dict)
    host_lines: dict[str, tuple[int, int]] = field(default_factory=dict)
    var_lines: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def group(self, name: str, line: int) -> _Group:
        return self.groups.setdefault(name, _Group(line))

    def add_host(self, group: str, name: str, values: Mapping[str, str], where: tuple[int, int]) -> None:
        if not HOST_NAME.match(name):
            raise RunbookError(f"'{name}' is not a host name", self.path, *where)
        members = self.group(group, where[0]).hosts
        if name not in members:
            members.append(name)
        self.host_lines.setdefault(name, where)
        self.host_vars.setdefault(name, {}).update(values)
        for key in values:
            self.var_lines[(name, key)] = where


def load_inventory(path: str | Path) -> Inventory:
    """An Ansible inventory file (YAML by extension, else INI) as groups of hosts."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunbookError(f"inventory cannot be read: {exc.strerror or exc}", str(path)) from None
    except UnicodeDecodeError as exc:
        raise RunbookError(f"inventory is not UTF-8 text: {exc.reason}", str(path)) from None
    if path.suffix.lower() in (".yml", ".yaml", ".json"):
        draft = _read_yaml(text, str(path))
    else:
        draft = _read_ini(text, str(path))
    return _build(draft)


def runbook_inventory(runbook: Runbook) -> Inventory:
    """The runbook's front matter groups over its ``inventory:`` file (relative to the runbook)."""
    loaded = Inventory()
    if runbook.inventory:
        where = Path(runbook.inventory).expanduser()
        if not where.is_absolute():
            where = Path(runbook.path).resolve().parent / where
        loaded = load_inventory(where)
    return loaded.merged_under(runbook.hosts)


def check_targets(runbook: Runbook, inventory: Inventory | None = None) -> list[RunbookError]:
    """Every ``hosts=`` name no group or host answers to, at its task's line (for ``check``)."""
    problems: list[RunbookError] = []
    inventory = inventory if inventory is not None else runbook_inventory(runbook)
    for task in runbook.tasks():
        for name in task.options.hosts or ():
            try:
                inventory.resolve([name])
            except UnknownTarget as exc:
                problems.append(RunbookError(str(exc), runbook.path, task.line, 1))
    return problems


def _expand(pattern: str) -> list[str]:
    """Ansible host ranges: ``web[01:03]`` -> web01, web02, web03; ``db-[a:c]`` -> db-a, db-b, db-c."""
    match = _RANGE.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end():]
    if match.group(1) is not None:
        first, last = match.group(1), match.group(2)
        width = len(first) if first.startswith("0") else 0
        items = [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    else:
        items = [chr(c) for c in range(ord(match.group(3)), ord(match.group(4)) + 1)]
    return [name for item in items for name in _expand(head + item + tail)]


def _read_ini(text: str, path: str) -> _Draft:
    draft = _Draft(path)
    section, kind = _UNGROUPED, "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        column = len(raw) - len(raw.lstrip()) + 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            match = _INI_SECTION.match(line)
            if match is None or (match.group(2) or "hosts") not in ("hosts", "children", "vars"):
                raise RunbookError(f"not an inventory section: {line} (expected [group], [group:children] "
                                   f"or [group:vars])", path, number, column)
            section, kind = match.group(1), match.group(2) or "hosts"
            draft.group(section, number)
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise RunbookError(f"cannot be read: {exc}", path, number, column) from None
        if not words:
            continue
        if kind == "children":
            draft.group(words[0], number)
            draft.group(section, number).children.append(words[0])
        elif kind == "vars":
            name, value = _assignment(line, path, number, column)
            draft.group(section, number).vars[name] = value.strip()
            draft.var_lines[(section, name)] = (number, column)
        else:
            values = dict(_assignment(word, path, number, column + raw.strip().find(word)) for word in words[1:])
            for host in _expand(words[0]):
                draft.add_host(section, host, values, (number, column))
    return draft


def _assignment(word: str, path: str, line: int, column: int) -> tuple[str, str]:
    name, sep, value = word.partition("=")
    if not sep or not name:
        raise RunbookError(f"expected key=value, got {word!r}", path, line, column)
    return name.strip(), value


def _read_yaml(text: str, path: str) -> _Draft:
    src = YamlSource(path)
    root = src.compose(text)
    draft = _Draft(path)
    if root is None:
        return draft
    for name, (key_node, body) in src.mapping(root, "inventory").items():
        _yaml_group(src, draft, name, key_node, body)
    return draft


def _yaml_group(src: YamlSource, draft: _Draft, name: str, key_node: yaml.Node, body: yaml.Node) -> None:
    group = draft.group(name, src.line(key_node))
    if _null(body):
        return
    entries = src.mapping(body, f"group {name}")
    src.check_keys(entries, _GROUP_KEYS, f"inventory group '{name}'")
    if "vars" in entries:
        for var, (var_key, value) in src.mapping(entries["vars"][1], f"{name}.vars").items():
            group.vars[var] = str(src.plain(value, var))
            draft.var_lines[(name, var)] = (src.line(var_key), var_key.start_mark.column + 1)
    if "hosts" in entries and not _null(entries["hosts"][1]):
        for host, (host_key, values) in src.mapping(entries["hosts"][1], f"{name}.hosts").items():
            settings: dict[str, str] = {}
            if not _null(values):
                settings = {k: str(src.plain(v, k)) for k, (_, v) in src.mapping(values, host).items()}
            where = (src.line(host_key), host_key.start_mark.column + 1)
            for expanded in _expand(host):  # hosts right under `all` are Ansible's "ungrouped"
                draft.add_host(_UNGROUPED if name == ALL else name, expanded, settings, where)
    if "children" in entries and not _null(entries["children"][1]):
        for child, (child_key, child_body) in src.mapping(entries["children"][1], f"{name}.children").items():
            group.children.append(child)
            _yaml_group(src, draft, child, child_key, child_body)


def _null(node: yaml.Node) -> bool:
    """``key:`` with nothing after it (Ansible writes hosts without variables that way)."""
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _build(draft: _Draft) -> Inventory:
    """Groups with their children's hosts, and each host's connection settings."""
    members: dict[str, list[str]] = {}

    def expand(name: str, trail: tuple[str, ...]) -> list[str]:
        if name in trail:
            group = draft.groups[name]
            raise RunbookError(f"group '{name}' contains itself ({' -> '.join((*trail, name))})",
                               draft.path, group.line)
        if name not in members:
            group = draft.groups[name]
            found = dict.fromkeys(group.hosts)
            for child in group.children:
                found.update(dict.fromkeys(expand(child, (*trail, name))))
            members[name] = list(found)
        return members[name]

    depth: dict[str, int] = {}
    for name in draft.groups:
        expand(name, ())
        for child in draft.groups[name].children:
            depth[child] = max(depth.get(child, 0), depth.get(name, 0) + 1)
    hosts: dict[str, Host] = {}
    for host, (line, column) in draft.host_lines.items():
        settings: dict[str, str] = {}
        owners = sorted((g for g in draft.groups if host in members[g]), key=lambda g: depth.get(g, 0))
        for owner in owners:  # parents first, so a child group's variables win
            settings.update({k: v for k, v in draft.groups[owner].vars.items() if k in _CONNECTION_VARS})
        settings.update({k: v for k, v in draft.host_vars.get(host, {}).items() if k in _CONNECTION_VARS})
        fields: dict[str, object] = {}
        for var, value in settings.items():
            target = _CONNECTION_VARS[var]
            if target == "port":
                port = parse_port(value)
                if port is None:
                    owner = next((g for g in reversed(owners) if (g, var) in draft.var_lines), host)
                    raise RunbookError(f"{var}: expected a TCP port (1-65535), got {value!r}", draft.path,
                                       *draft.var_lines.get((owner, var), (line, column)))
                fields[target] = port
            else:
                fields[target] = value
        hosts[host] = Host(name=host, line=line, **fields)  # type: ignore[arg-type]
    groups = [HostGroup(name, tuple(hosts[h] for h in members[name]), draft.groups[name].line)
              for name in draft.groups if name != ALL and members[name]]
    return Inventory(tuple(groups))
