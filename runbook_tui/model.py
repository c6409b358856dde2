"""The runbook model: plain frozen dataclasses, no I/O.

Parsers (Markdown and YAML) build these; the engine, the audit trail, the CLI and the TUI only
read them. Every element keeps the 1-based source line it came from so that errors, lint
warnings and the transcript can point back into the file the operator edits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator, Literal

TaskKind = Literal["command", "manual"]
Risk = Literal["low", "high"]
Mode = Literal["paranoid", "step", "auto", "noop"]
MODES: tuple[Mode, ...] = ("paranoid", "step", "auto", "noop")


@dataclass(frozen=True)
class WaitUntil:
    """Re-run a command until its expectations hold, every `interval` seconds, for at most `timeout`."""

    timeout: float
    interval: float = 5.0


@dataclass(frozen=True)
class TaskOptions:
    """Annotation keys that change how a task runs (DESIGN.md, "Annotations").

    `None` means "not set here" so that a step's options can be merged into its tasks'.
    """

    name: str | None = None
    risk: Risk | None = None
    confirm: bool | None = None
    timeout: float | None = None
    retries: int | None = None
    expect_exit: tuple[int, ...] | None = None
    expect_output: str | None = None
    wait_until: WaitUntil | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] | None = None
    interactive: bool | None = None
    container: str | None = None
    optional: bool | None = None
    run: bool | None = None
    skip: bool | None = None
    secrets: tuple[str, ...] | None = None  # secrets this task may see besides those its command names
    hosts: tuple[str, ...] | None = None  # SSH targets: groups and/or host names
    serial: tuple[str, ...] | None = None  # batch sizes, "1", "25%" (runbook_tui.batches)
    max_fail: int | None = None  # failed hosts tolerated before the next batch is skipped
    parallel: int | None = None  # hosts running at once within a batch

    def merged_over(self, base: TaskOptions) -> TaskOptions:
        """These options, with every unset key taken from `base` (a step's or a runbook's)."""
        mine, theirs = vars(self), vars(base)
        if not any(value is not None for value in theirs.values()):
            return self
        if not any(value is not None for value in mine.values()):
            return base
        return TaskOptions(**{key: value if value is not None else theirs[key] for key, value in mine.items()})

    def as_dict(self) -> dict[str, object]:
        """Only the keys that are set, in annotation form (for JSON, YAML and the TUI)."""
        out: dict[str, object] = {}
        for key, value in vars(self).items():
            if value is None:
                continue
            if isinstance(value, WaitUntil):
                value = {"timeout": value.timeout, "interval": value.interval}
            elif key == "env":
                value = dict(value)
            elif key in ("expect_exit", "secrets", "hosts"):
                value = list(value)
            elif key == "serial":
                value = [int(size) if size.isdigit() else size for size in value]
            out[key] = value
        return out


@dataclass(frozen=True)
class Task:
    """One thing to do inside a step: a command to run, or a manual check to confirm."""

    id: str
    kind: TaskKind
    text: str
    line: int
    command: str | None = None
    language: str | None = None
    options: TaskOptions = field(default_factory=TaskOptions)
    variables: tuple[str, ...] = ()
    placeholders: tuple[str, ...] = ()
    expected_output: str | None = None
    # A client session (psql, redis-cli, mysql, mongo, gdb): the client's name and the lines to
    # type into it. On a command task, the command starts the client (it needs the terminal);
    # on a manual task, the client is one an earlier task opened.
    client: str | None = None
    client_input: tuple[str, ...] = ()
    # Attributes of other tools (Runme's `id`, `promptEnv`, `terminalRows`...), kept as written.
    attributes: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str | None:
        return self.options.name

    @property
    def optional(self) -> bool:
        return bool(self.options.optional)

    @property
    def fingerprint(self) -> str:
        """Hash of what the task does; resume matches a task on id plus this."""
        payload = f"{self.kind}\0{self.command if self.command is not None else self.text}"
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    """A numbered step: an ordered-list item or a sub-heading of a section."""

    id: str
    title: str
    line: int
    tasks: tuple[Task, ...] = ()
    description: str = ""
    markdown: str = ""
    optional: bool = False
    name: str | None = None


@dataclass(frozen=True)
class Section:
    """A level-2 heading and what it holds; procedural sections have steps, reading ones text.

    `markdown` is the section's source text (what the TUI renders); for a step it is the
    step's own slice, while `description` is its prose without the tasks (what YAML keeps).
    A procedural section's `description` is the text before its first step.
    """

    id: str
    title: str
    line: int
    steps: tuple[Step, ...] = ()
    markdown: str = ""
    procedural: bool = False
    description: str = ""


@dataclass(frozen=True)
class Variable:
    """A value commands receive as an environment variable.

    `default` is None when the operator must supply it (a `$VAR` no one defines, or a
    `VAR=<placeholder>` assignment); `prompt` tells them what to enter.
    """

    name: str
    line: int
    default: str | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class Secret:
    """A secret environment variable, read at run time from `ref` (e.g. `keyring:svc/user`)."""

    name: str
    ref: str
    line: int


@dataclass(frozen=True)
class Watch:
    """A container whose logs the TUI follows while the runbook runs."""

    docker: str
    line: int
    tail: int | None = None


@dataclass(frozen=True)
class Host:
    """A machine steps can run on over SSH; unset fields come from ~/.ssh/config, then defaults.

    `address` is where to connect when it differs from the name (Ansible's `ansible_host`).
    """

    name: str
    line: int
    address: str | None = None
    port: int | None = None
    user: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The name alone when nothing else is set (front matter's short form), else a mapping."""
        extra = {key: value for key, value in (("address", self.address), ("port", self.port), ("user", self.user))
                 if value is not None}
        return {"name": self.name, **extra} if extra else {"name": self.name}


@dataclass(frozen=True)
class HostGroup:
    """A named list of hosts (`hosts: {web: [web-1, web-2]}` or an inventory group)."""

    name: str
    hosts: tuple[Host, ...]
    line: int


@dataclass(frozen=True)
class Related:
    """A link to another local runbook the operator can open from this one."""

    title: str
    target: str
    line: int


BlockKind = Literal["command", "variables", "reference", "client-input"]


@dataclass(frozen=True)
class Block:
    """How one code block was read, and why: nothing in a runbook is dropped without a trace.

    `check --json` lists every block, so a wrong guess is visible and can be overridden with
    an annotation (`run=true`, `run=false`).
    """

    line: int
    kind: BlockKind
    reason: str
    language: str = ""


@dataclass(frozen=True)
class Notice:
    """Something the parser accepted but the author should look at (printed with the lint warnings)."""

    line: int
    column: int
    code: str
    message: str


@dataclass(frozen=True)
class Runbook:
    """A parsed runbook file."""

    title: str
    path: str
    format: Literal["markdown", "yaml"]
    sha256: str
    sections: tuple[Section, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    variables: tuple[Variable, ...] = ()
    secrets: tuple[Secret, ...] = ()
    watches: tuple[Watch, ...] = ()
    related: tuple[Related, ...] = ()
    shell: str | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    description: str = ""
    blocks: tuple[Block, ...] = ()
    notices: tuple[Notice, ...] = ()
    hosts: tuple[HostGroup, ...] = ()  # front matter `hosts:` groups
    inventory: str | None = None  # front matter `inventory:`: an Ansible inventory, relative to the runbook

    def meta(self, key: str) -> str | None:
        """A metadata value by normalised key (`owner`, `severity`, `last_updated`...)."""
        return dict(self.metadata).get(key)

    @property
    def owner(self) -> str | None:
        return self.meta("owner")

    @property
    def severity(self) -> str | None:
        return self.meta("severity")

    def steps(self) -> Iterator[Step]:
        for section in self.sections:
            yield from section.steps

    def tasks(self) -> Iterator[Task]:
        for step in self.steps():
            yield from step.tasks

    def commands(self) -> Iterator[Task]:
        return (task for task in self.tasks() if task.kind == "command")

    @cached_property
    def marks_risks(self) -> bool:
        """Whether any command says `risk=` (the policy's default for unmarked runbooks depends on it)."""
        return any(task.options.risk for task in self.commands())

    def find(self, id_or_name: str) -> Section | Step | Task | None:
        """The element with this dotted id or annotation name."""
        for section in self.sections:
            if id_or_name == section.id:
                return section
            for step in section.steps:
                if id_or_name in (step.id, step.name):
                    return step
                for task in step.tasks:
                    if id_or_name in (task.id, task.name):
                        return task
        return None

    @property
    def defined_names(self) -> frozenset[str]:
        """Names the runbook itself gives a value or a prompt for."""
        names = {v.name for v in self.variables} | {s.name for s in self.secrets}
        return frozenset(names | {key for key, _ in self.env})

    @property
    def required_variables(self) -> tuple[str, ...]:
        """`$VAR`s used by commands that the runbook does not define, in first-use order."""
        defined = self.defined_names
        seen: dict[str, None] = {}
        for task in self.commands():
            own = {key for key, _ in task.options.env or ()}
            for name in task.variables:
                if name not in defined and name not in own:
                    seen.setdefault(name)
        return tuple(seen)

    @property
    def placeholders(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for task in self.commands():
            for name in task.placeholders:
                seen.setdefault(name)
        return tuple(seen)

    def as_dict(self) -> dict[str, object]:
        """The parsed model as plain data (`check --json`): every task has `kind`, commands `command`."""

        def task(t: Task) -> dict[str, object]:
            out: dict[str, object] = {"id": t.id, "kind": t.kind, "text": t.text, "line": t.line}
            if t.command is not None:
                out.update(command=t.command, language=t.language, variables=list(t.variables),
                           placeholders=list(t.placeholders))
            if t.expected_output is not None:
                out["expected_output"] = t.expected_output
            if t.client is not None:
                out.update(client=t.client, client_input=list(t.client_input))
            if t.attributes:
                out["attributes"] = dict(t.attributes)
            if opts := t.options.as_dict():
                out["options"] = opts
            return out

        def step(s: Step) -> dict[str, object]:
            return {"id": s.id, "title": s.title, "line": s.line, "name": s.name, "optional": s.optional,
                    "tasks": [task(t) for t in s.tasks]}

        return {
            "path": self.path,
            "format": self.format,
            "sha256": self.sha256,
            "title": self.title,
            "metadata": dict(self.metadata),
            "variables": [{"name": v.name, "default": v.default, "prompt": v.prompt, "line": v.line}
                          for v in self.variables],
            "required_variables": list(self.required_variables),
            "placeholders": list(self.placeholders),
            "secrets": [{"name": s.name, "ref": s.ref, "line": s.line} for s in self.secrets],
            "watch": [{"docker": w.docker, "tail": w.tail, "line": w.line} for w in self.watches],
            "related": [{"title": r.title, "target": r.target, "line": r.line} for r in self.related],
            "shell": self.shell,
            "cwd": self.cwd,
            "env": dict(self.env),
            **({"hosts": {group.name: [host.as_dict() for host in group.hosts] for group in self.hosts}}
               if self.hosts else {}),
            **({"inventory": self.inventory} if self.inventory else {}),
            "sections": [
                {"id": sec.id, "title": sec.title, "line": sec.line, "procedural": sec.procedural,
                 "steps": [step(s) for s in sec.steps]}
                for sec in self.sections
            ],
            "blocks": [{"line": b.line, "kind": b.kind, "reason": b.reason, "language": b.language}
                       for b in self.blocks],
        }
