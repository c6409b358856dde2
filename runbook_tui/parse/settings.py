"""Runbook-level settings, shared by YAML runbooks and Markdown front matter.

Both formats hand over a node from `yaml.compose` rather than loaded Python values, so every
error can name the line and column of the key the operator has to fix. Top-level keys are
normalised to lower snake case (`Last Updated`, `last-updated` and `lastUpdated` are one key),
as `**Last Updated:**` metadata lines are.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

import yaml

from runbook_tui.model import Host, HostGroup, Related, Secret, Variable, Watch
from runbook_tui.parse.annotations import HOST_NAME
from runbook_tui.parse.errors import RunbookError, did_you_mean

METADATA_KEYS = ("owner", "severity", "last_updated")
SETTING_KEYS = (
    "title",
    *METADATA_KEYS,
    "metadata",
    "description",
    "variables",
    "secrets",
    "watch",
    "related",
    "shell",
    "cwd",
    "env",
    "hosts",
    "inventory",
)
# What front matter may say about one host (Ansible's ansible_host/ansible_port/ansible_user).
HOST_KEYS = ("name", "address", "port", "user")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NULL_TAG = "tag:yaml.org,2002:null"
_TYPE_NAMES = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true/false",
    _NULL_TAG: "nothing",
}

Entries = dict[str, tuple[yaml.Node, yaml.Node]]


# How many nodes aliases may add to a document, beyond those written: reusing a list of tasks
# in a few steps stays far below; a "billion laughs" of nested aliases (a 2 KB file expanding
# to 216,000 commands) goes far above.
ALIAS_EXPANSION_LIMIT = 10_000


@dataclass(frozen=True)
class Settings:
    """What a runbook declares about itself, before any section."""

    title: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    variables: tuple[Variable, ...] = ()
    secrets: tuple[Secret, ...] = ()
    watches: tuple[Watch, ...] = ()
    related: tuple[Related, ...] = ()
    shell: str | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    description: str = ""
    hosts: tuple[HostGroup, ...] = ()
    inventory: str | None = None


def normalise_key(key: str) -> str:
    """`Last Updated`, `last-updated`, `lastUpdated` -> `last_updated`."""
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key.strip())
    return re.sub(r"[\W_]+", "_", key).strip("_").lower()


@dataclass(frozen=True)
class YamlSource:
    """Where composed nodes came from; reads them with errors located in the file.

    `line_offset` is the number of file lines before the YAML text (front matter starts on
    line 2 of a Markdown file, so its offset is 1).
    """

    path: str
    line_offset: int = 0

    def error(self, message: str, node: yaml.Node) -> RunbookError:
        mark = node.start_mark
        return RunbookError(message, self.path, self.line(node), mark.column + 1)

    def line(self, node: yaml.Node) -> int:
        return node.start_mark.line + 1 + self.line_offset

    def compose(self, text: str) -> yaml.Node | None:
        """The document's root node, or None when it holds nothing but comments."""
        try:
            return yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = exc.problem or exc.context or "cannot be read"
            raise RunbookError(f"not valid YAML: {problem}", self.path, line + self.line_offset, column) from None
        except yaml.reader.ReaderError as exc:
            before = text[: exc.position]
            line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
            raise RunbookError(f"not valid YAML: {exc.reason}", self.path, line + self.line_offset, column) from None
        except yaml.YAMLError as exc:
            raise RunbookError(f"not valid YAML: {exc}", self.path, 1 + self.line_offset, 1) from None
        except RecursionError:
            raise RunbookError("not valid YAML: nested too deeply", self.path, 1 + self.line_offset, 1) from None

    def check_expansion(self, root: yaml.Node, text: str) -> None:
        """Refuse aliases that multiply the document (a "billion laughs"): reading it would be a bomb.

        An alias is the node of its anchor, read again; the size of the document with every alias
        expanded is computed once per distinct node, so this check itself stays linear. `text`
        without an anchor cannot hold an alias: then the walk (a third of a 10,000-step runbook's
        parse) is not needed.
        """
        if _ANCHOR.search(text) is None:
            return
        size: dict[int, int] = {}
        uses: dict[int, int] = {}
        nodes: dict[int, yaml.Node] = {}
        order: list[tuple[yaml.Node, bool]] = [(root, False)]
        while order:  # post-order without recursion: a deep document must not overflow the stack
            node, done = order.pop()
            if done:
                size[id(node)] = 1 + sum(size[id(child)] for child in _children(node))
                continue
            uses[id(node)] = uses.get(id(node), 0) + 1
            if id(node) in nodes:
                continue
            nodes[id(node)] = node
            order.append((node, True))
            order.extend((child, False) for child in reversed(_children(node)))
        extra = size[id(root)] - len(nodes)
        if extra > ALIAS_EXPANSION_LIMIT:
            worst = max(nodes, key=lambda key: (uses[key] - 1) * size[key])
            raise self.error(f"aliases expand this document by {extra:,} nodes beyond what is written (at most "
                             f"{ALIAS_EXPANSION_LIMIT:,}); the node anchored here is reused {uses[worst] - 1} times",
                             nodes[worst])

    def mapping(self, node: yaml.Node, what: str, *, normalise: bool = False) -> Entries:
        """Entries by key, each with its key node (for positions); keys are text, each once."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(f"{what}: expected a mapping (key: value), got {describe(node)}", node)
        entries: Entries = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL_TAG:
                raise self.error(f"{what}: keys must be text, got {describe(key_node)}", key_node)
            key = normalise_key(key_node.value) if normalise else key_node.value
            if key in entries:
                raise self.error(f"{what}: duplicate key '{key_node.value}'", key_node)
            entries[key] = (key_node, value_node)
        return entries

    def check_keys(self, entries: Entries, known: Collection[str], what: str) -> None:
        for key, (key_node, _) in entries.items():
            if key not in known:
                raise self.error(f"unknown key '{key}' in {what}{did_you_mean(key, known)}", key_node)

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(f"{what}: expected a list, got {describe(node)}", node)
        return list(node.value)

    def scalar(self, node: yaml.Node, what: str) -> str | None:
        """The value as written (`1.10` stays `1.10`), or None for null."""
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(f"{what}: expected a single value, got {describe(node)}", node)
        return None if node.tag == _NULL_TAG else str(node.value)

    def text(self, node: yaml.Node, what: str) -> str:
        """A non-empty value."""
        value = self.scalar(node, what)
        if value is None or not value.strip():
            raise self.error(f"{what}: must not be empty", node)
        return value

    def plain(self, node: yaml.Node, what: str) -> object:
        """A value, a list of values or a mapping of values: what an annotation key may hold."""
        if isinstance(node, yaml.SequenceNode):
            return [self.scalar(item, what) for item in node.value]
        if isinstance(node, yaml.MappingNode):
            return {key: self.scalar(value, f"{what}.{key}") for key, (_, value) in self.mapping(node, what).items()}
        return self.scalar(node, what)


# An anchor (`&name`) where YAML allows one: at the start of a line or after a space or a flow
# indicator. A command's `a && b` is not one. Text without any cannot hold an alias (`*name`
# needs an anchor), so a match only means "look": the walk decides.
_ANCHOR = re.compile(r"(?:^|[\s\[{,])&[^\s\[\]{},&]")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def describe(node: yaml.Node) -> str:
    """What kind of value a node holds, for error messages."""
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return _TYPE_NAMES.get(node.tag, "text")


def parse_settings(
    node: yaml.MappingNode,
    path: str,
    *,
    allow_unknown: bool,
    line_offset: int = 0,
    extra_keys: Collection[str] = (),
) -> Settings:
    """Settings from a composed mapping.

    `allow_unknown` (Markdown front matter, e.g. Hugo's `weight`) keeps unknown scalar keys as
    metadata instead of rejecting them; `extra_keys` are keys the caller reads itself (a YAML
    runbook's `sections`), skipped here but offered as suggestions for a typo.
    """
    src = YamlSource(path, line_offset)
    entries = src.mapping(node, "runbook settings", normalise=True)
    values: dict[str, object] = {}
    metadata: dict[str, str] = {}
    for key, (key_node, value) in entries.items():
        if key in extra_keys:
            continue
        if key in METADATA_KEYS:
            metadata[key] = src.text(value, key)
        elif key == "metadata":
            for name, (_, item) in src.mapping(value, key, normalise=True).items():
                metadata[name] = src.text(item, f"metadata.{name}")
        elif key in ("title", "shell", "cwd", "inventory"):
            values[key] = src.text(value, key)
        elif key == "description":
            values[key] = src.scalar(value, key) or ""
        elif key == "variables":
            values[key] = tuple(_variable(src, name, key_node, item) for name, (key_node, item) in _names(src, value, key))
        elif key == "secrets":
            values[key] = tuple(_secret(src, name, key_node, item) for name, (key_node, item) in _names(src, value, key))
        elif key == "env":
            values[key] = tuple((name, src.scalar(item, f"env.{name}") or "") for name, (_, item) in _names(src, value, key))
        elif key == "watch":
            values["watches"] = tuple(_watch(src, item) for item in src.sequence(value, key))
        elif key == "related":
            values[key] = tuple(_related(src, item) for item in src.sequence(value, key))
        elif key == "hosts":
            values[key] = tuple(HostGroup(name, host_list(src, item, f"hosts.{name}"), src.line(key_node))
                                for name, (key_node, item) in _host_names(src, value, key))
        elif not allow_unknown:
            raise src.error(f"unknown key '{key}'{did_you_mean(key, (*SETTING_KEYS, *extra_keys))}", key_node)
        elif key and (kept := _loose_value(value)) is not None:
            metadata[key] = kept
        elif key == "runme" and isinstance(value, yaml.MappingNode):  # Runme's {id, version}: runme_id, runme_version
            for sub_key, sub_value in value.value:
                if isinstance(sub_key, yaml.ScalarNode) and (kept := _loose_value(sub_value)) is not None:
                    metadata[f"{key}_{normalise_key(str(sub_key.value))}"] = kept
    settings = Settings(metadata=tuple(metadata.items()), **values)  # type: ignore[arg-type]
    _check_unique_names(src, entries, settings)
    return settings


def _names(src: YamlSource, node: yaml.Node, what: str, *, pattern: re.Pattern[str] = ENV_NAME,
           kind: str = "a valid environment variable name (letters, digits, _)",
           ) -> list[tuple[str, tuple[yaml.Node, yaml.Node]]]:
    """Entries of a mapping whose keys must be names of one kind (environment variables by default)."""
    entries = src.mapping(node, what)
    for name, (key_node, _) in entries.items():
        if not pattern.match(name):
            raise src.error(f"{what}: '{name}' is not {kind}", key_node)
    return list(entries.items())


def _host_names(src: YamlSource, node: yaml.Node, what: str) -> list[tuple[str, tuple[yaml.Node, yaml.Node]]]:
    return _names(src, node, what, pattern=HOST_NAME, kind="a host or group name (no spaces or commas)")


def host_list(src: YamlSource, node: yaml.Node, what: str) -> tuple[Host, ...]:
    """A group's hosts: `web-1`, `[web-1, {name: web-2, port: 2222}]` or `{web-1: {user: x}, web-2: }`."""
    if isinstance(node, yaml.ScalarNode):
        return (_host(src, node, None, what),)
    if isinstance(node, yaml.MappingNode):
        return tuple(_host(src, key_node, item, what) for _, (key_node, item) in _host_names(src, node, what))
    return tuple(_host(src, item, None, what) for item in src.sequence(node, what))


def _host(src: YamlSource, node: yaml.Node, settings: yaml.Node | None, what: str) -> Host:
    """One host: a name (`node` a scalar) with optional settings, or a mapping with `name`."""
    fields: dict[str, object] = {}
    if isinstance(node, yaml.MappingNode):
        settings, name_node = node, None
    else:
        name_node = node
    if settings is not None and not (isinstance(settings, yaml.ScalarNode) and settings.tag == _NULL_TAG):
        entries = src.mapping(settings, what)
        src.check_keys(entries, HOST_KEYS if name_node is None else HOST_KEYS[1:], f"a host of {what}")
        if name_node is None:
            if "name" not in entries:
                raise src.error(f"{what}: a host given as a mapping needs 'name'", settings)
            name_node = entries["name"][1]
        for key in ("address", "user"):
            if key in entries:
                fields[key] = src.text(entries[key][1], f"{what}.{key}")
        if "port" in entries:
            fields["port"] = port_number(src, entries["port"][1], f"{what}.port")
    assert name_node is not None
    name = src.text(name_node, what).strip()
    if not HOST_NAME.match(name):
        raise src.error(f"{what}: {name!r} is not a host name (no spaces or commas)", name_node)
    return Host(name=name, line=src.line(name_node), **fields)  # type: ignore[arg-type]


def parse_port(text: str) -> int | None:
    """A TCP port number, or None when ``text`` is not one."""
    text = text.strip()
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def port_number(src: YamlSource, node: yaml.Node, what: str) -> int:
    text = src.text(node, what)
    port = parse_port(text)
    if port is None:
        raise src.error(f"{what}: expected a TCP port (1-65535), got {text.strip()!r}", node)
    return port


def _variable(src: YamlSource, name: str, key_node: yaml.Node, node: yaml.Node) -> Variable:
    line = src.line(key_node)
    if not isinstance(node, yaml.MappingNode):
        return Variable(name=name, line=line, default=src.scalar(node, f"variables.{name}"))
    entries = src.mapping(node, f"variables.{name}")
    src.check_keys(entries, ("default", "prompt"), f"variable '{name}'")
    default = src.scalar(entries["default"][1], f"variables.{name}.default") if "default" in entries else None
    prompt = src.text(entries["prompt"][1], f"variables.{name}.prompt") if "prompt" in entries else None
    return Variable(name=name, line=line, default=default, prompt=prompt)


def _secret(src: YamlSource, name: str, key_node: yaml.Node, node: yaml.Node) -> Secret:
    ref = src.text(node, f"secrets.{name}").strip()
    scheme, _, rest = ref.partition(":")
    service, _, user = rest.partition("/")
    valid = (scheme == "keyring" and service and user) or (scheme == "env" and ENV_NAME.match(rest))
    if not valid:
        raise src.error(
            f"secrets.{name}: expected 'keyring:service/username' or 'env:NAME', got {ref!r}", node
        )
    return Secret(name=name, ref=ref, line=src.line(key_node))


def _watch(src: YamlSource, node: yaml.Node) -> Watch:
    entries = src.mapping(node, "watch")
    src.check_keys(entries, ("docker", "tail"), "watch")
    if "docker" not in entries:
        raise src.error("watch: each entry needs 'docker' (a container or compose service name)", node)
    tail = None
    if "tail" in entries:
        text = src.text(entries["tail"][1], "watch.tail")
        if not text.isdigit():
            raise src.error(f"watch.tail: expected a number of lines, got {text!r}", entries["tail"][1])
        tail = int(text)
    return Watch(docker=src.text(entries["docker"][1], "watch.docker"), line=src.line(node), tail=tail)


def _related(src: YamlSource, node: yaml.Node) -> Related:
    if isinstance(node, yaml.ScalarNode):
        target = src.text(node, "related")
        return Related(title=target, target=target, line=src.line(node))
    entries = src.mapping(node, "related")
    src.check_keys(entries, ("title", "path"), "related")
    if "path" not in entries:
        raise src.error("related: each entry needs 'path' (the other runbook's file)", node)
    target = src.text(entries["path"][1], "related.path")
    title = src.text(entries["title"][1], "related.title") if "title" in entries else target
    return Related(title=title, target=target, line=src.line(node))


def _loose_value(node: yaml.Node) -> str | None:
    """An unknown front matter value as metadata text: scalars, and lists of scalars joined."""
    if isinstance(node, yaml.ScalarNode):
        return None if node.tag == _NULL_TAG else str(node.value)
    if isinstance(node, yaml.SequenceNode) and all(isinstance(item, yaml.ScalarNode) for item in node.value):
        return ", ".join(str(item.value) for item in node.value)
    return None


def _check_unique_names(src: YamlSource, entries: Entries, settings: Settings) -> None:
    """A name is a variable, a secret or an env entry, never two of them."""
    seen: dict[str, str] = {}
    groups = (
        ("variables", [v.name for v in settings.variables]),
        ("secrets", [s.name for s in settings.secrets]),
        ("env", [name for name, _ in settings.env]),
    )
    for group, names in groups:
        for name in names:
            if name in seen:
                _, node = entries[group]
                where = next(k for k, _ in node.value if k.value == name)
                raise src.error(f"{group}: '{name}' is already defined in {seen[name]}", where)
            seen[name] = group
