"""Write a runbook out as a YAML runbook or as canonical Markdown (`runbook-tui convert`).

Each form reads back through its parser into the same sections, steps, tasks and options, so
`convert` never loses a command. The Markdown stays ordinary GitHub Markdown: a numbered item
with a bold title per step, a bullet per task, a fenced block per command, and options as
Runme-style fence attributes or invisible `<!-- runbook: ... -->` comments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

import yaml

from runbook_tui.model import Host, Related, Runbook, Section, Step, Task, TaskOptions, Variable
from runbook_tui.parse.blocks import CLIENT_PROMPTS
from runbook_tui.parse.markdown import OPTIONAL_TITLE
from runbook_tui.parse.settings import METADATA_KEYS
from runbook_tui.parse.shellwords import assignments, looks_like_command

# Languages that mean "the runbook's shell": YAML leaves them out, Markdown writes them `sh`.
PLAIN_SHELL = frozenset({"sh", "shell", "console", "shell-session", "shellsession", "terminal", "inline"})
_SHELLS = frozenset({"sh", "bash", "zsh", "ksh"})
# An attribute value that would end an HTML comment or a fence info string, or lose a trailing comma.
_UNSAFE_VALUE = re.compile(r"--|[\n\r`]|,\Z")
_BARE_VALUE = re.compile(r"[^\s'\"\\]+")
_ENV_VALUE = re.compile(r"[^\s'\"\\,]*")  # `env=A=1,B=2` splits on commas
_LINKABLE = re.compile(r"[A-Za-z0-9_./~-]+\.(?:md|markdown|ya?ml)")
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>&~])")
_BLOCK_START = re.compile(r"([#>+=-])|(\d+)([.)])")


# ---- YAML ------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style with indented lists, multi-line text as `|` literal blocks, exit codes inline."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML writes U+0085 (NEL) raw in every style but double quotes, and reads it back as a newline
    style = '"' if "\x85" in value else "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, items: list[object]) -> yaml.SequenceNode:
    flow = bool(items) and all(isinstance(item, int) for item in items)  # expect_exit: [0, 1]
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)


def _dump(document: object) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10**6)


def to_yaml(runbook: Runbook) -> str:
    """The runbook as a YAML document that `parse_yaml` reads back into the same model."""
    document: dict[str, object] = {"title": runbook.title}
    for key, value in runbook.metadata:  # in the model's order; other keys go under `metadata`
        if key in METADATA_KEYS:
            document[key] = value
        else:
            document.setdefault("metadata", {})[key] = value  # type: ignore[index]
    if runbook.description:
        document["description"] = runbook.description
    document.update(_run_settings(runbook))
    if runbook.related:
        document["related"] = [_yaml_related(related) for related in runbook.related]
    if runbook.sections:
        document["sections"] = [_yaml_section(section) for section in runbook.sections]
    return _dump(document)


def _run_settings(runbook: Runbook) -> dict[str, object]:
    """Settings that change how commands run: YAML keys, or Markdown front matter."""
    settings: dict[str, object] = {}
    if runbook.shell:
        settings["shell"] = runbook.shell
    if runbook.cwd:
        settings["cwd"] = runbook.cwd
    if runbook.env:
        settings["env"] = dict(runbook.env)
    if runbook.variables:
        settings["variables"] = {variable.name: _yaml_variable(variable) for variable in runbook.variables}
    if runbook.secrets:
        settings["secrets"] = {secret.name: secret.ref for secret in runbook.secrets}
    if runbook.inventory:
        settings["inventory"] = runbook.inventory
    if runbook.hosts:
        settings["hosts"] = {group.name: [_yaml_host(host) for host in group.hosts] for group in runbook.hosts}
    if runbook.watches:
        settings["watch"] = [
            {"docker": watch.docker, **({"tail": watch.tail} if watch.tail is not None else {})}
            for watch in runbook.watches
        ]
    return settings


def _yaml_host(host: Host) -> object:
    """A host's name, or its mapping when it has settings of its own."""
    data = host.as_dict()
    return data if len(data) > 1 else host.name


def _yaml_variable(variable: Variable) -> object:
    if variable.prompt is None:
        return variable.default
    if variable.default is None:
        return {"prompt": variable.prompt}
    return {"default": variable.default, "prompt": variable.prompt}


def _yaml_related(related: Related) -> object:
    return related.target if related.title == related.target else {"title": related.title, "path": related.target}


def _yaml_section(section: Section) -> dict[str, object]:
    if not section.steps:
        return {"title": section.title, **({"body": section.markdown} if section.markdown else {})}
    intro = {"description": section.description} if section.description else {}
    return {"title": section.title, **intro, "steps": [_yaml_step(step) for step in section.steps]}


def _yaml_step(step: Step) -> object:
    own: dict[str, object] = {"title": step.title}
    if step.description:
        own["description"] = step.description
    if step.name:
        own["name"] = step.name
    if _optional_by_flag(step):
        own["optional"] = True
    tasks = step.tasks
    if _confirmed_by_hand(step):
        return step.title if len(own) == 1 else own
    if len(tasks) == 1 and tasks[0].options.name is None and tasks[0].options.optional is None:
        task = tasks[0]
        if task.kind == "manual":
            return {**own, "manual": task.text, **_yaml_options(task.options)}
        if task.text == default_title(task.command or ""):
            return {**own, **_yaml_task(task)}
    return {**own, "tasks": [_yaml_task(task) for task in tasks]}


def default_title(command: str) -> str:
    """What a command task without a title is called: its first line that is not a comment."""
    lines = (line.strip() for line in command.splitlines())
    return next((line for line in lines if line and not line.startswith("#")), command.strip())


def _optional_by_flag(step: Step) -> bool:
    """Optional, and not already saying so in its title ("Rollback if needed")."""
    return step.optional and OPTIONAL_TITLE.search(step.title) is None


def _confirmed_by_hand(step: Step) -> bool:
    """A step whose only task is its own title, done by hand: what a step without tasks means."""
    return (
        len(step.tasks) == 1
        and step.tasks[0].kind == "manual"
        and step.tasks[0].text == step.title
        and step.tasks[0].options == TaskOptions()
    )


def _yaml_task(task: Task) -> object:
    options = _yaml_options(task.options)
    if task.client_input:
        options = {**options, "client": task.client, "input": list(task.client_input)}
    if task.kind == "manual":
        return {"manual": task.text, **options} if options else task.text
    out: dict[str, object] = {}
    if task.text != default_title(task.command or ""):
        out["title"] = task.text
    out["run"] = task.command
    if task.language and task.language not in PLAIN_SHELL:
        out["language"] = task.language
    if task.expected_output:
        out["output"] = task.expected_output
    return {**out, **options}


def _yaml_options(options: TaskOptions) -> dict[str, object]:
    """Annotation keys; `run` is implied by a YAML task's shape."""
    values = {key: _number(value) for key, value in options.as_dict().items() if key != "run"}
    if isinstance(values.get("wait_until"), dict):
        values["wait_until"] = {key: _number(value) for key, value in values["wait_until"].items()}
    return values


def _number(value: object) -> object:
    """`300.0` -> `300`: durations read as whole seconds when they are."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# ---- Markdown ----------------------------------------------------------------------------


def to_markdown(runbook: Runbook) -> str:
    """The runbook in the project's canonical Markdown, which `parse_markdown` reads back."""
    verbatim = [runbook.description, *(section.markdown for section in runbook.sections if not section.steps)]
    linked = "\n".join(verbatim)
    unlinked = [r for r in runbook.related if f"]({r.target})" not in linked]
    as_links = [r for r in unlinked if _LINKABLE.fullmatch(r.target)]
    front = _run_settings(runbook)
    if len(as_links) < len(unlinked):
        front["related"] = [_yaml_related(r) for r in unlinked if r not in as_links]
    parts = [f"---\n{_dump(front)}---"] if front else []
    parts.append(f"# {escape(runbook.title)}")
    if runbook.metadata:
        lines = [f"**{key.replace('_', ' ').title()}:** {' '.join(value.split())}" for key, value in runbook.metadata]
        parts.append("  \n".join(lines))
    if runbook.description:
        parts.append(runbook.description)
    for section in runbook.sections:
        parts.append(f"## {escape(section.title)}")
        if section.steps and section.description:
            parts.append(section.description)
        body = markdown_steps(section.steps) if section.steps else section.markdown
        if body:
            parts.append(body)
    if as_links:
        parts.append("## Related Resources")
        parts.append("\n".join(f"- [{escape(r.title)}]({r.target})" for r in as_links))
    return "\n\n".join(parts) + "\n"


def markdown_steps(steps: Iterable[Step], render: Callable[[Step, int], str] | None = None) -> str:
    """A procedural section's body: each step a numbered item, its own options in a comment before it.

    `render` gives a step's item (default `markdown_step`); the YAML parser passes the one it made.
    """
    blocks = []
    for number, step in enumerate(steps, start=1):
        own = {key: value for key, value in (("name", step.name), ("optional", _optional_by_flag(step))) if value}
        if own:
            blocks.append(_comment(own))
        blocks.append((render or markdown_step)(step, number))
    return "\n\n".join(blocks)


def markdown_step(step: Step, number: int) -> str:
    """One step as a numbered list item: bold title, description, a bullet per task."""
    marker = f"{number}. "
    lines = [f"{marker}**{escape(step.title)}**"]
    for paragraph in step.description.split("\n\n") if step.description else ():
        lines += ["", escape(paragraph)]  # plain text: `<name>` must not read back as HTML
    if not _confirmed_by_hand(step):
        loose = any(task.kind == "command" for task in step.tasks)
        for index, task in enumerate(step.tasks):
            if index == 0 or loose:
                lines.append("")
            lines += _task_lines(task)
    return "\n".join(lines[:1] + [_indent(line, len(marker)) for line in lines[1:]])


def _task_lines(task: Task) -> list[str]:
    if task.kind == "manual" and task.client_input:
        # input for a client an earlier task opened: the prompted lines, under a bullet
        lines = [CLIENT_PROMPTS.get(task.client or "", "> ") + line for line in task.client_input]
        fence = [_indent(line, 2) for line in _fenced("console", lines)]
        return [f"- Type into {escape(task.client or 'the client')}", "", *fence]
    if task.kind == "manual":
        comment = _comment(_annotation_values(task.options))
        return [f"- {escape(task.text)}" + (f" {comment}" if comment else "")]
    title = "Run" if task.text in (task.command, default_title(task.command or "")) else task.text
    return [f"- {escape(title)}", "", *(_indent(line, 2) for line in _fence(task))]


def _fence(task: Task) -> list[str]:
    """A command as a fenced block whose info string carries its options."""
    command = task.command or ""
    language = "sh" if task.language in PLAIN_SHELL or not task.language else task.language
    values = _annotation_values(task.options)
    lines = command.split("\n")
    trailer: list[str] = []
    one_line = len(lines) == 1 and not command.endswith("\\") and "<<" not in command
    if task.client_input and "<<" not in command:
        # a command that starts a client, then what to type into it
        prompt = CLIENT_PROMPTS.get(task.client or "", "> ")
        lines = [f"$ {lines[0]}", *lines[1:], *(prompt + line for line in task.client_input)]
        lines += task.expected_output.split("\n") if task.expected_output else []
        language = "console"
    elif task.expected_output and one_line and language in _SHELLS:
        # a prompt line and its output: the parser reads a shell fence with a `$ ` prompt as a console
        language = "console" if language == "sh" else language
        lines = [f"$ {command}", *task.expected_output.split("\n")]
    else:
        if language not in _SHELLS or assignments(command) is not None or not looks_like_command(command):
            values["run"] = True
        if task.expected_output:
            trailer = ["", *_fenced("text", task.expected_output.split("\n"))]
    info = language + (" " + _attributes(values, braces=True) if values else "")
    return _fenced(info, lines) + trailer


def _fenced(info: str, lines: list[str]) -> list[str]:
    """A fence longer than any run of backticks inside, so no line can close it early."""
    longest = max((len(run) for run in re.findall(r"`+", "\n".join(lines))), default=0)
    ticks = "`" * max(3, longest + 1)
    return [ticks + info, *lines, ticks]


def _comment(values: dict[str, object]) -> str:
    return f"<!-- runbook: {_attributes(values, braces=False)} -->" if values else ""


def _annotation_values(options: TaskOptions) -> dict[str, object]:
    """Options as annotation keys: `wait_until` as its timeout plus `interval`, `run` left out."""
    values = _yaml_options(options)
    wait = values.pop("wait_until", None)
    if isinstance(wait, dict):
        values["wait_until"], values["interval"] = wait["timeout"], wait["interval"]
    return values


def _attributes(values: dict[str, object], *, braces: bool) -> str:
    """`key=value key2="two words"`, or a JSON object when a value would not survive that."""
    words = []
    for key, value in values.items():
        text = _attribute_text(value)
        if _UNSAFE_VALUE.search(text) or (isinstance(value, dict) and not all(map(_ENV_VALUE.fullmatch, value.values()))):
            return _json_attributes(values)
        if _BARE_VALUE.fullmatch(text):
            words.append(f"{key}={text}")
        else:
            words.append(f'{key}="' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    joined = " ".join(words)
    return "{" + joined + "}" if braces else joined


def _attribute_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{name}={item}" for name, item in value.items())
    return str(value)


def _json_attributes(values: dict[str, object]) -> str:
    """Runme's JSON form, with the characters that end a comment or a fence escaped."""
    return json.dumps(values, ensure_ascii=False).replace("--", "\\u002d\\u002d").replace("`", "\\u0060")


def escape(text: str) -> str:
    """Plain text as Markdown that renders (and parses back) as exactly that text, on one line."""
    text = _INLINE_MARKUP.sub(r"\\\1", " ".join(text.split()))
    match = _BLOCK_START.match(text)
    if match is None:
        return text
    if match.group(1):
        return "\\" + text
    return f"{match.group(2)}\\{text[match.end(2):]}"


def _indent(line: str, width: int) -> str:
    return " " * width + line if line else line
