"""YAML runbooks: the runbook model written as a document (DESIGN.md, "YAML runbooks").

    title: Deploy                           # plus owner, severity, variables, secrets, watch...
    sections:
      - title: Overview
        body: Markdown text to read         # no steps: a reading section
      - title: Deploy
        description: Announce it in #ops.   # optional: the text before the first step
        steps:
          - title: Migrate
            risk: high                      # a step's annotation keys are its tasks' defaults
            tasks:
              - title: Apply migrations     # a command task (untitled: its first line)
                run: python manage.py migrate
                timeout: 5m
              - manual: Check the dashboard # a manual task, with annotation keys if needed
              - Tell the release channel    # a bare string is a manual task
          - title: Restart
            run: docker compose up -d       # short form: one command task
          - title: Announce
            manual: Post in the channel     # short form: one manual task
          - Confirm CI is green             # a bare string step is confirmed by hand

A step without tasks (a bare string, or a mapping without tasks/run/manual) gets one manual
task with its own title, as a numbered Markdown item without bullets does, so the operator
always has something to confirm. `name` and `optional` on a step belong to the step itself;
its other annotation keys are defaults for its tasks. `run` is the command, so the `run`
annotation is not a YAML key. A command task may also have `language` (a fence language such
as bash or python; default: the runbook's shell) and `output` (expected output, for reference).
A task of a client session has `client` (psql, mysql, redis-cli...) and `input` (the lines to
type into it): on a command task, the command starts that client.
A section has either a `body` (to read) or `steps`, which its `description` may introduce.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import yaml

from runbook_tui.model import Runbook, Section, Step, Task, TaskOptions
from runbook_tui.parse.annotations import ANNOTATION_KEYS, AnnotationError, options_from_mapping
from runbook_tui.parse.emit import PLAIN_SHELL, default_title, markdown_step, markdown_steps
from runbook_tui.parse.errors import RunbookError
from runbook_tui.parse.markdown import OPTIONAL_TITLE
from runbook_tui.parse.settings import Entries, YamlSource, describe, parse_settings
from runbook_tui.parse.shellwords import command_placeholders, command_variables

OPTION_KEYS = tuple(key for key in ANNOTATION_KEYS if key != "run")
CLIENT_KEYS = ("client", "input")  # a client session: its name and the lines to type into it
TASK_KEYS = ("title", "run", "manual", "language", "output", *CLIENT_KEYS, *OPTION_KEYS)
STEP_KEYS = ("title", "description", "tasks", "run", "manual", "language", "output", *CLIENT_KEYS, *OPTION_KEYS)
SECTION_KEYS = ("title", "body", "description", "steps")


def parse_yaml(text: str, path: str) -> Runbook:
    """Parse a YAML runbook; every mistake is a RunbookError located at file:line:col."""
    src = YamlSource(path)
    root = src.compose(text)
    if root is None:
        raise RunbookError("empty document: a YAML runbook needs at least a title", path)
    src.check_expansion(root, text)
    if not isinstance(root, yaml.MappingNode):
        raise src.error(f"a YAML runbook is a mapping (title: ..., sections: ...), got {describe(root)}", root)
    settings = parse_settings(root, path, allow_unknown=False, extra_keys=("sections",))
    if settings.title is None:
        raise src.error("missing 'title': every runbook needs one", root)
    entries = src.mapping(root, "runbook", normalise=True)
    nodes = src.sequence(entries["sections"][1], "sections") if "sections" in entries else []
    return Runbook(
        title=settings.title.strip(),
        path=path,
        format="yaml",
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        sections=tuple(_section(src, node, str(number)) for number, node in enumerate(nodes, start=1)),
        metadata=settings.metadata,
        variables=settings.variables,
        secrets=settings.secrets,
        watches=settings.watches,
        related=settings.related,
        shell=settings.shell,
        cwd=settings.cwd,
        env=settings.env,
        description=settings.description.strip("\n"),
        hosts=settings.hosts,
        inventory=settings.inventory,
    )


def _section(src: YamlSource, node: yaml.Node, sid: str) -> Section:
    entries = src.mapping(node, f"section {sid}")
    src.check_keys(entries, SECTION_KEYS, "a section")
    title = _title(src, entries, node, "a section")
    if "body" in entries and "steps" in entries:
        raise src.error(
            "a section has either a body (to read) or steps, not both: put the text in a section of its own",
            entries["steps"][0],
        )
    if "description" in entries and "steps" not in entries:
        raise src.error("a section's description goes before its steps; a section to read has a body",
                        entries["description"][0])
    items = src.sequence(entries["steps"][1], "steps") if "steps" in entries else []
    steps = [_step(src, item, sid, number) for number, item in enumerate(items, start=1)]
    if steps:
        intro = (src.scalar(entries["description"][1], "description") or "").strip("\n") \
            if "description" in entries else ""
        body = markdown_steps(steps, lambda step, _: step.markdown)
        return Section(id=sid, title=title, line=src.line(node), steps=tuple(steps),
                       markdown=f"{intro}\n\n{body}" if intro else body, procedural=True, description=intro)
    body = (src.scalar(entries["body"][1], "body") or "") if "body" in entries else ""
    return Section(id=sid, title=title, line=src.line(node), markdown=body.strip("\n"))


def _step(src: YamlSource, node: yaml.Node, section_id: str, number: int) -> Step:
    sid = f"{section_id}.{number}"
    if isinstance(node, yaml.ScalarNode):
        title = src.text(node, "step").strip()
        return _finish_step(sid, title, src.line(node), (), "", TaskOptions(), TaskOptions(), number)
    entries = src.mapping(node, f"step {sid}")
    src.check_keys(entries, STEP_KEYS, "a step")
    title = _title(src, entries, node, "a step")
    options = _options(src, entries, node)
    forms = [key for key in ("tasks", "run", "manual") if key in entries]
    if len(forms) > 1:
        raise src.error(f"a step has one of tasks, run or manual, not both '{forms[0]}' and '{forms[1]}'",
                        entries[forms[1]][0])
    if "run" not in entries:
        _only_with_run(src, entries)
    step_only = options.name is not None or options.optional is not None  # not inherited by its tasks
    defaults = replace(options, name=None, optional=None) if step_only else options
    tasks: list[Task] = []
    if forms == ["tasks"]:
        items = src.sequence(entries["tasks"][1], "tasks")
        tasks = [_task(src, item, f"{sid}.{number}", defaults) for number, item in enumerate(items, 1)]
    elif forms:
        tasks = [_build_task(src, entries, node, f"{sid}.1", defaults, None, src.line(entries[forms[0]][0]))]
    description = (src.scalar(entries["description"][1], "description") or "") if "description" in entries else ""
    return _finish_step(sid, title, src.line(node), tuple(tasks), description.strip(), options, defaults, number)


def _finish_step(sid: str, title: str, line: int, tasks: tuple[Task, ...], description: str,
                 options: TaskOptions, defaults: TaskOptions, number: int) -> Step:
    """The step, with the title's "if needed", the manual task of a step without tasks, and its Markdown."""
    tasks = tasks or (Task(id=f"{sid}.1", kind="manual", text=title, line=line, options=defaults),)
    optional = bool(options.optional) or OPTIONAL_TITLE.search(title) is not None
    step = Step(id=sid, title=title, line=line, tasks=tasks, description=description, optional=optional,
                name=options.name)
    return replace(step, markdown=markdown_step(step, number))


def _task(src: YamlSource, node: yaml.Node, tid: str, defaults: TaskOptions) -> Task:
    if isinstance(node, yaml.ScalarNode):
        text = src.text(node, "task").strip()
        return Task(id=tid, kind="manual", text=text, line=src.line(node), options=defaults)
    entries = src.mapping(node, f"task {tid}")
    src.check_keys(entries, TASK_KEYS, "a task")
    if "run" not in entries:
        _only_with_run(src, entries, ("title", "language", "output"))
    title = _title(src, entries, node, "a task") if "title" in entries else None
    options = _options(src, entries, node).merged_over(defaults)
    return _build_task(src, entries, node, tid, options, title, src.line(node))


def _build_task(src: YamlSource, entries: Entries, node: yaml.Node, tid: str, options: TaskOptions,
                title: str | None, line: int) -> Task:
    """A task from the `run` or `manual` key of a task, or of a step in short form."""
    if "run" in entries and "manual" in entries:
        raise src.error("a task is either run (a command) or manual (done by hand), not both", entries["manual"][0])
    client = src.text(entries["client"][1], "client").strip() if "client" in entries else None
    typed = tuple(src.text(item, "input") for item in src.sequence(entries["input"][1], "input")) \
        if "input" in entries else ()
    if "manual" in entries:
        return Task(id=tid, kind="manual", text=src.text(entries["manual"][1], "manual").strip(), line=line,
                    options=options, client=client, client_input=typed)
    if "run" not in entries:
        raise src.error("a task needs 'run' (a command) or 'manual' (something done by hand)", node)
    command = src.text(entries["run"][1], "run").strip()
    language = src.text(entries["language"][1], "language").strip().lower() if "language" in entries else None
    output = (src.scalar(entries["output"][1], "output") or "").strip("\n") if "output" in entries else ""
    return Task(
        id=tid,
        kind="command",
        text=title or default_title(command),
        line=line,
        command=command,
        language=None if language in PLAIN_SHELL else language,
        options=options,
        variables=command_variables(command),
        placeholders=command_placeholders(command),
        expected_output=output or None,
        client=client,
        client_input=typed,
    )


def _only_with_run(src: YamlSource, entries: Entries, keys: tuple[str, ...] = ("language", "output")) -> None:
    for key in keys:
        if key in entries:
            raise src.error(f"'{key}' only goes with 'run' (a command)", entries[key][0])


def _title(src: YamlSource, entries: Entries, node: yaml.Node, what: str) -> str:
    if "title" not in entries:
        raise src.error(f"{what} needs a 'title'", node)
    return src.text(entries["title"][1], "title").strip()


def _options(src: YamlSource, entries: Entries, node: yaml.Node) -> TaskOptions:
    """Annotation keys, validated as in Markdown, with errors at the offending key."""
    values = {key: src.plain(value, key) for key, (_, value) in entries.items() if key in OPTION_KEYS}
    try:
        return options_from_mapping(values)
    except AnnotationError as exc:
        raise src.error(str(exc), entries[exc.key][0] if exc.key in entries else node) from None
    except ValueError as exc:  # shlex, on an unbalanced quote in an `env` string
        raise src.error(f"env: cannot be read: {exc}", entries["env"][0]) from None
