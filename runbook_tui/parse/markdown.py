"""Markdown runbooks: ordinary Markdown, as GitHub renders it, read into the runbook model.

The rules (DESIGN.md, "Markdown: what becomes a command") in short: H1 is the title, `**Key:**
value` lines are metadata, every H2 is a section. A section with an ordered list, a sub-heading
or a command is procedural; its steps are the top-level ordered-list items and the sub-headings,
and their bullets, code blocks and inline commands are the tasks. Commands outside any step get
a step of their own, titled by the sentence that leads into them.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import textwrap
from dataclasses import dataclass, replace
from typing import Iterable

import yaml

from runbook_tui.model import Block, BlockKind, Notice, Related, Runbook, Section, Step, Task, TaskOptions, Variable
from runbook_tui.parse.annotations import AnnotationError, options_from_mapping, parse_attributes, split_foreign
from runbook_tui.parse.blocks import (
    Piece,
    Reading,
    normalise_language,
    read_block,
)
from runbook_tui.parse.errors import RunbookError
from runbook_tui.parse.settings import Settings, YamlSource, parse_settings
from runbook_tui.parse.shellwords import (
    KNOWN_PROGRAMS,
    command_placeholders,
    command_variables,
    looks_like_command,
    placeholder_label,
)
from runbook_tui.parse.tree import NestingError, Node, parse_tree, plain

# Sections that explain rather than instruct stay readable even when they quote a command.
READING_TITLES = re.compile(
    r"^(overview|meaning|impact|symptoms?|prevention|background|summary|description|"
    r"related( resources| runbooks)?|references?|see also|links|notes?|contacts?)\b",
    re.IGNORECASE,
)
OPTIONAL_TITLE = re.compile(r"\bif (?:needed|necessary)\b|\(optional\)|^optional\b", re.IGNORECASE)
_ANNOTATION = re.compile(r"<!--\s*runbook:(.*?)-->", re.DOTALL)
_METADATA_LINE = re.compile(r"^\s*\*\*([^*]+?):\*\*\s*(.*?)\s*$|^\s*\*\*([^*]+?)\*\*:\s*(.*?)\s*$")
_ALIAS = re.compile(r"\balias\s+([A-Za-z_][\w-]*)=")
# "`k` is an alias for `kubectl`", "`k` (alias of `kubectl`)": prose that names an alias
_ALIAS_PROSE = re.compile(r"`([A-Za-z_][\w-]*)`\W{0,3}\s*(?:is\s+)?(?:an?\s+|the\s+)?(?:shell\s+)?alias\s+(?:for|of|to)\s+`")
# "run `chef-client`", "by running the script `scripts/check-pages-certs`": a lone word to run
_RUN_BEFORE = re.compile(r"\b(?:run|running|execute|executing)(?:\s+the\s+(?:script|command|program|tool))?\s*$",
                         re.IGNORECASE)
_SCRIPT_PATH = re.compile(r"(?:\.{0,2}/)?[\w-]+(?:/[\w.-]+)+\Z")
_CONTEXT = 200  # characters of prose either side of an inline span that decide whether it is a command
_BRACKET_OR_BREAK = re.compile(r"(?<!\\)[\[\]]|\n[ \t]*\n")
MAX_BRACKET_DEPTH = 100  # link text nests a bracket or two; past this, markdown-it's link scan turns quadratic
_ERB = re.compile(r"<%.*?%>", re.DOTALL)
# "`setex` is equivalent to `set k v ex 10`": named, not run
_MENTION_BEFORE = re.compile(r"\b(?:equivalent to|same as|similar to|instead of|such as)\s*$", re.IGNORECASE)
# "the `kubectl logs` command", "`ceph -s` should report 1 mon": the span is named or its result described
_MENTION_AFTER = re.compile(
    r"^\s*(?:command|commands|subcommand|tool|binary|utility|output|returns|reports|prints|"
    r"(?:may|might|should|will|would|can)\s+(?:return|report|show|print|output|list|give))\b",
    re.IGNORECASE,
)
_RUNBOOK_LINK = re.compile(r"\.(?:md|markdown|ya?ml)(?:#.*)?$", re.IGNORECASE)
_HUGO_REF = re.compile(r"\[([^\]]+)\]\(\{\{<\s*ref\s+\"([^\"]+)\"\s*>\}\}\)")
_NOT_INSTRUCTION = frozenset("the a an this that these those it its there some all each".split())
_NO_OPTIONS = TaskOptions()  # frozen, so one instance serves every task without options


@dataclass
class _Draft:
    """A task before it gets its id."""

    kind: str
    text: str
    line: int
    command: str | None = None
    language: str | None = None
    options: TaskOptions = _NO_OPTIONS
    expected_output: str | None = None
    client: str | None = None
    client_input: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()


def split_front_matter(text: str, path: str) -> tuple[str | None, int, str]:
    """(front matter YAML or None, its first line number, body with the same line numbers)."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return None, 0, text
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            front = "\n".join(lines[1:index])
            body = "\n" * (index + 1) + "\n".join(lines[index + 1 :])
            return front, 2, body
    raise RunbookError("front matter starts with '---' but never ends (add a closing '---' line)", path, 1, 1)


class MarkdownParser:
    """One parse of one file; holds the source lines so positions can be reported."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.lines = text.split("\n")
        self.variables: dict[str, Variable] = {}
        # an annotation comment that precedes a loose block, kept until that block's tasks exist
        self._pending_for_block: dict[int, TaskOptions] = {}
        # aliases the runbook defines (`alias k=kubectl`) count as programs
        self.known = KNOWN_PROGRAMS | frozenset(_ALIAS.findall(text)) | frozenset(_ALIAS_PROSE.findall(text))
        self.blocks: dict[int, Block] = {}  # by line: how each code block was read
        self.notices: dict[tuple[int, str], Notice] = {}
        self._readings: dict[int, Reading] = {}
        self._made_tasks: set[int] = set()  # lines of the blocks that became tasks
        self._title_lines = range(0)  # the H1's source lines, left out of the text around it

    # ---- entry point -------------------------------------------------------------------
    def parse(self) -> Runbook:
        self._check_nesting()
        front, front_line, body = split_front_matter(self.text, self.path)
        settings = self._front_matter(front, front_line) if front is not None else None
        links: list[Node] = []
        try:
            nodes = parse_tree(body, links)
        except NestingError as exc:
            raise RunbookError(str(exc), self.path, exc.line, 1) from None

        title, metadata, rest = self._title_and_metadata(nodes)
        self._classify_blocks(nodes)
        sections, preamble_is_section = self._sections(rest, title)
        meta = dict(settings.metadata) if settings else {}
        meta.update(metadata)
        if title and _ERB.search(title):  # `# <%= current_page.data.title %>`: the template fills it in
            title = None
        title = title or (settings.title if settings and settings.title else None) or _stem(self.path)
        declared = {v.name: v for v in (settings.variables if settings else ())}
        for name, variable in self.variables.items():
            declared.setdefault(name, variable)
        return Runbook(
            title=title,
            path=self.path,
            format="markdown",
            sha256=hashlib.sha256(self.text.encode()).hexdigest(),
            sections=tuple(sections),
            metadata=tuple(meta.items()),
            variables=tuple(declared.values()),
            secrets=settings.secrets if settings else (),
            watches=settings.watches if settings else (),
            related=self._related(links, settings.related if settings else ()),
            shell=settings.shell if settings else None,
            cwd=settings.cwd if settings else None,
            env=settings.env if settings else (),
            hosts=settings.hosts if settings else (),
            inventory=settings.inventory if settings else None,
            description="" if preamble_is_section else self._preamble_text(rest),
            blocks=tuple(self._block_record(line) for line in sorted(self.blocks)),
            notices=tuple(self.notices.values()),
        )

    def _check_nesting(self) -> None:
        """Refuse `[` nested deeper than any link text needs: markdown-it's link scan is quadratic in it.

        (A 150 KB paragraph of nested brackets took 43 s.) Counted per paragraph, in one pass.
        """
        depth, line = 0, 1
        for match in _BRACKET_OR_BREAK.finditer(self.text):
            token = match.group()
            if token == "[":
                depth += 1
                if depth > MAX_BRACKET_DEPTH:
                    line += self.text.count("\n", 0, match.start())
                    column = match.start() - self.text.rfind("\n", 0, match.start())
                    raise RunbookError(f"brackets nested more than {MAX_BRACKET_DEPTH} deep: no link needs that; "
                                       "is this file Markdown?", self.path, line, column)
            elif token == "]":
                depth = max(0, depth - 1)
            else:
                depth = 0  # a blank line ends the paragraph, and any link text with it

    def _notice(self, line: int, code: str, message: str, column: int = 1) -> None:
        self.notices.setdefault((line, code), Notice(line, column, code, message))

    def _block_record(self, line: int) -> Block:
        """A block's record; one that reads as commands but sits in a reading section says it is only shown."""
        block = self.blocks[line]
        if block.kind in ("command", "client-input") and line not in self._made_tasks:
            return replace(block, reason=f"{block.reason} (in a reading section: shown, not run)")
        return block

    def _classify_blocks(self, nodes: Iterable[Node]) -> None:
        """Read every code block once, wherever it is, so `check --json` accounts for each."""
        for node in nodes:
            if node.type in ("fence", "code_block"):
                self._reading(node)
            elif node.children and node.type != "inline":
                self._classify_blocks(node.children)

    def _front_matter(self, front: str, first_line: int) -> Settings | None:
        try:
            node = yaml.compose(front, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = first_line + (mark.line if mark else 0)
            column = mark.column + 1 if mark else 1
            raise RunbookError(f"front matter is not valid YAML: {getattr(exc, 'problem', exc)}", self.path, line, column) from None
        if node is None:
            return None
        if not isinstance(node, yaml.MappingNode):
            raise RunbookError("front matter must be a mapping of settings (key: value)", self.path, first_line, 1)
        YamlSource(self.path, first_line - 1).check_expansion(node, front)
        self._front_matter_quirks(front, node, first_line)
        return parse_settings(node, self.path, allow_unknown=True, line_offset=first_line - 1)

    def _front_matter_quirks(self, front: str, node: yaml.MappingNode, first_line: int) -> None:
        """Static-site front matter is not refused for what its generator tolerates: warn instead.

        A repeated key keeps its last value (as the generators' YAML readers do); an ERB tag
        (`<%= ... %>`) is text the site's template fills in.
        """
        last: dict[str, int] = {}
        for position, (key, _) in enumerate(node.value):
            if isinstance(key, yaml.ScalarNode):
                if key.value in last:
                    self._notice(first_line + key.start_mark.line, "front-matter",
                                 f"front matter repeats the key '{key.value}'; its last value is used")
                last[key.value] = position
        node.value = [pair for position, pair in enumerate(node.value)
                      if not isinstance(pair[0], yaml.ScalarNode) or last[pair[0].value] == position]
        if match := _ERB.search(front):
            self._notice(first_line + front.count("\n", 0, match.start()), "front-matter",
                         "front matter holds a template tag (<% %>); it is kept as text")

    # ---- title, metadata, sections -----------------------------------------------------
    def _title_and_metadata(self, nodes: list[Node]) -> tuple[str | None, dict[str, str], list]:
        title: str | None = None
        metadata: dict[str, str] = {}
        rest: list[Node] = []
        h2_seen = False  # metadata lines come before the first section
        for node in nodes:
            if title is None and node.type == "heading" and node.tag == "h1":
                title = plain(node)
                self._title_lines = range(*node.map) if node.map else range(0)
                continue
            if node.type == "paragraph" and not h2_seen and (found := self._metadata(node)):
                metadata.update(found)
                continue
            rest.append(node)
            h2_seen = h2_seen or (node.type == "heading" and node.tag == "h2")
        return title, metadata, rest

    def _metadata(self, node: Node) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in self._source(node).splitlines():
            match = _METADATA_LINE.match(line)
            if not match:
                return {}
            key = (match.group(1) or match.group(3)).strip()
            value = match.group(2) if match.group(1) else match.group(4)
            found[re.sub(r"\W+", "_", key.lower()).strip("_")] = value
        return found

    def _preamble_text(self, nodes: list[Node]) -> str:
        preamble = []
        for node in nodes:
            if node.type == "heading" and node.tag == "h2":
                break
            preamble.append(self._source(node))
        return "\n\n".join(part for part in preamble if part.strip())

    def _sections(self, nodes: list[Node], title: str | None) -> tuple[list[Section], bool]:
        """Every H2 and its content; text before the first H2 is a section only if it holds commands."""
        groups: list[tuple[Node | None, list[Node]]] = [(None, [])]
        for node in nodes:
            if node.type == "heading" and node.tag == "h2":
                groups.append((node, []))
            else:
                groups[-1][1].append(node)
        preamble_is_section = any(self._has_command(node) for node in groups[0][1])
        if not preamble_is_section:
            groups = groups[1:]
        sections = [self._section(str(n), heading, body, title) for n, (heading, body) in enumerate(groups, start=1)]
        return sections, preamble_is_section

    def _section(self, sid: str, heading: Node | None, body: list, runbook_title: str | None) -> Section:
        title = plain(heading) if heading is not None else (runbook_title or _stem(self.path))
        line = _line(heading) if heading is not None else (_line(body[0]) if body else 1)
        markdown = self._slice(body)
        has_command = any(self._has_command(n) for n in body)
        has_steps = any((n.type == "heading" and n.tag not in ("h1", "h2")) or n.type == "ordered_list" for n in body)
        # "Overview" or "Impact" quoting a command stays reading; numbered steps with commands do not
        reading = heading is not None and READING_TITLES.match(title) is not None
        procedural = (has_steps and has_command) if reading else (has_steps or has_command)
        steps, intro = self._steps(sid, title, body) if procedural else ([], "")
        return Section(id=sid, title=title, line=line, steps=tuple(steps), markdown=markdown, procedural=bool(steps),
                       description=intro if steps else "")

    # ---- steps -------------------------------------------------------------------------
    def _steps(self, sid: str, title: str, body: list[Node]) -> tuple[list[Step], str]:
        """The section's steps, and the prose before the first one (when no step is made of it)."""
        steps: list[Step] = []
        pending: TaskOptions | None = None
        loose: list[Node] = []
        intro = ""

        def flush_loose() -> None:
            nonlocal intro
            made = self._implicit_steps(sid, len(steps), loose, title)
            if not steps and not made and loose:
                intro = self._slice(loose)
            steps.extend(made)
            loose.clear()

        index = 0
        while index < len(body):
            node = body[index]
            if node.type == "html_block" and (opts := self._annotation(node)) is not None:
                pending = opts
                index += 1
                continue
            if node.type == "heading":
                flush_loose()
                end = index + 1
                while end < len(body) and not (body[end].type == "heading"):
                    end += 1
                steps.append(self._heading_step(f"{sid}.{len(steps) + 1}", node, body[index + 1 : end], pending))
                pending = None
                index = end
                continue
            if node.type == "ordered_list":
                flush_loose()
                for item in node.children:
                    steps.append(self._item_step(f"{sid}.{len(steps) + 1}", item, pending))
                    pending = None
                index += 1
                continue
            if pending is not None:
                loose.append(node)  # the annotation goes with the block it precedes
                self._pending_for_block[id(node)] = pending
                pending = None
            else:
                loose.append(node)
            index += 1
        flush_loose()
        return steps, intro

    def _item_step(self, step_id: str, item: Node, options: TaskOptions | None) -> Step:
        children = list(item.children)
        if not children or children[0].type != "paragraph":
            raise RunbookError("this numbered step has no title (write the step's text after the number)",
                               self.path, _line(item), 1)
        title_node = children[0]
        title = plain(title_node)
        drafts = self._inline_commands(title_node)
        drafts += self._tasks(children[1:], every_bullet=True)
        if not drafts:
            drafts = [_Draft("manual", title, _line(title_node))]
        description = "\n\n".join(plain(n) for n in children[1:] if n.type == "paragraph")
        return self._step(step_id, title, _line(item), drafts, options, self._source(item), description)

    def _heading_step(self, step_id: str, heading: Node, body: list, options: TaskOptions | None) -> Step:
        drafts = self._tasks(body, every_bullet=False)
        description = "\n\n".join(plain(n) for n in body if n.type == "paragraph")
        markdown = self._source(heading) + ("\n\n" + self._slice(body) if body else "")
        return self._step(step_id, plain(heading), _line(heading), drafts, options, markdown, description)

    def _implicit_steps(self, sid: str, count: int, nodes: list[Node], section_title: str) -> list[Step]:
        """Commands outside any step: one step for each block that holds commands."""
        steps: list[Step] = []
        lead: str | None = None
        for node in nodes:
            drafts = self._tasks([node], every_bullet=False, lead=lead)
            if node.type == "paragraph" and not any(d.kind == "command" for d in drafts):
                lead = plain(node)
                continue
            if drafts:
                first = drafts[0]
                fallback = section_title if node.type.endswith("_list") else (first.command or first.text).splitlines()[0]
                title = lead or fallback
                step_id = f"{sid}.{count + len(steps) + 1}"
                steps.append(self._step(step_id, _shorten(title), _line(node), drafts, None, self._source(node), ""))
            lead = None
        return steps

    def _step(self, step_id: str, title: str, line: int, drafts: list[_Draft], options: TaskOptions | None,
              markdown: str, description: str) -> Step:
        base = options or _NO_OPTIONS
        optional = bool(base.optional) or OPTIONAL_TITLE.search(title) is not None
        # the name and `optional` belong to the step; its tasks inherit the other keys
        inherited = base if base.name is None and base.optional is None else replace(base, name=None, optional=None)
        tasks = []
        for number, draft in enumerate(drafts, start=1):
            opts = draft.options if inherited is _NO_OPTIONS else draft.options.merged_over(inherited)
            command = draft.command
            tasks.append(
                Task(
                    id=f"{step_id}.{number}",
                    kind="command" if command is not None else "manual",
                    text=draft.text,
                    line=draft.line,
                    command=command,
                    language=draft.language,
                    options=opts,
                    variables=command_variables(command) if command else (),
                    placeholders=command_placeholders(command) if command else (),
                    expected_output=draft.expected_output,
                    client=draft.client,
                    client_input=draft.client_input,
                    attributes=draft.attributes,
                )
            )
        return Step(id=step_id, title=title, line=line, tasks=tuple(tasks), description=description,
                    markdown=markdown, optional=optional, name=base.name)

    # ---- tasks -------------------------------------------------------------------------
    def _tasks(self, nodes: list[Node], *, every_bullet: bool, lead: str | None = None) -> list[_Draft]:
        drafts: list[_Draft] = []
        pending: TaskOptions | None = None
        for position, node in enumerate(nodes):
            pending = self._pending_for_block.pop(id(node), pending)
            if node.type == "html_block":
                if (opts := self._annotation(node)) is not None:
                    pending = opts
                continue
            made: list[_Draft] = []
            if node.type == "paragraph":
                made = self._inline_commands(node)
                if not made:
                    lead = plain(node)
                    continue
            elif node.type in ("fence", "code_block"):
                made = self._block_commands(node, lead, pending)
                pending = None
            elif node.type in ("bullet_list", "ordered_list"):
                next_is_block = position + 1 < len(nodes) and nodes[position + 1].type in ("fence", "code_block")
                made, lead_in = self._list_tasks(node, every_bullet or node.type == "ordered_list", next_is_block)
                if lead_in is not None:
                    lead = lead_in
                    drafts.extend(made)
                    continue
            elif node.type == "blockquote":
                made = self._tasks(list(node.children), every_bullet=every_bullet, lead=lead)
            elif node.type == "table":
                made = [draft for cell in _cells(node) for draft in self._inline_commands(cell)]
            if pending is not None and made:
                made[0].options = made[0].options.merged_over(pending) if made[0].options != _NO_OPTIONS else pending
                pending = None
            drafts.extend(made)
            lead = None
        return drafts

    def _list_tasks(self, node: Node, every_bullet: bool, next_is_block: bool) -> tuple[list[_Draft], str | None]:
        """Tasks from a list; a last text-only item ending in ':' before a code block is its lead-in."""
        items = list(node.children)
        if not (every_bullet or self._has_command(node) or all(self._is_instruction(i) for i in items)):
            return [], None
        lead_in = None
        if next_is_block and items and self._is_lead_in(items[-1]):
            lead_in = plain(items[-1].children[0])
            items = items[:-1]
        drafts: list[_Draft] = []
        for item in items:
            drafts.extend(self._item_tasks(item))
        return drafts, lead_in

    def _item_tasks(self, item: Node) -> list[_Draft]:
        children = list(item.children)
        if not children:
            return []
        head = children[0] if children[0].type == "paragraph" else None
        drafts: list[_Draft] = []
        options = _NO_OPTIONS
        if head is not None:
            options = self._inline_annotation(head)
            drafts = self._inline_commands(head)
        rest = children[1:] if head is not None else children
        lead = plain(head) if head is not None and not drafts else None
        nested = self._tasks(rest, every_bullet=True, lead=lead)
        has_list = any(child.type in ("bullet_list", "ordered_list") for child in rest)
        if not drafts and not nested and head is not None and not has_list:
            drafts = [_Draft("manual", plain(head), _line(head))]
        if options is not _NO_OPTIONS:
            for draft in drafts:
                draft.options = draft.options.merged_over(options)
        return drafts + nested

    def _is_instruction(self, item: Node) -> bool:
        """An item that reads as something to do: it opens with a capitalised word, not an article or code."""
        if not item.children or item.children[0].type != "paragraph":
            return False
        inline = item.children[0].children[0]
        first = inline.children[0] if inline.children else None
        if first is None or first.type != "text" or not first.content.strip():
            return False
        word = first.content.split()[0].strip(",.:")
        long_enough = len(plain(item.children[0]).split()) >= 3  # "CPU Usage" labels a group
        return long_enough and word[:1].isupper() and word.lower() not in _NOT_INSTRUCTION

    @staticmethod
    def _is_lead_in(item: Node) -> bool:
        return (
            len(item.children) == 1
            and item.children[0].type == "paragraph"
            and plain(item.children[0]).rstrip().endswith(":")
        )

    def _inline_commands(self, paragraph: Node) -> list[_Draft]:
        inline = paragraph.children[0] if paragraph.children else None
        if inline is None:
            return []
        text = plain(paragraph)
        children = inline.children
        if not any(child.type == "code_inline" for child in children):
            return []
        # the paragraph's text once, and where each child's ends: the words around a span are a
        # window of it (a paragraph of 20,000 spans must not cost 20,000 joins)
        parts = [c.content if c.type in ("text", "code_inline") else "" for c in children]
        joined = "".join(parts)
        ends = list(itertools.accumulate(map(len, parts)))
        drafts = []
        cursor = (paragraph.map[0], 0) if paragraph.map else (0, 0)  # spans come in order: search on from the last
        for position, child in enumerate(children):
            if child.type != "code_inline":
                continue
            start, end = ends[position] - len(parts[position]), ends[position]
            before, after = joined[max(0, start - _CONTEXT):start], joined[end:end + _CONTEXT]
            if self._inline_is_command(child.content, before, after):
                line, cursor = self._locate(paragraph, child.content, cursor)
                drafts.append(_Draft("command", text, line, command=child.content.strip(), language="inline"))
        return drafts

    def _inline_is_command(self, code: str, before: str, after: str) -> bool:
        """Inline code that is a command to run, not a name or a command the prose only mentions."""
        if _MENTION_AFTER.match(after) or _MENTION_BEFORE.search(before):
            return False
        word = code.strip()
        words = word.split()
        # a host or file name (`ping db.example.com`) makes a two-word span an invocation, not a name
        bare = all(not (w.startswith("-") or any(c in w for c in "/$=<.")) for w in words[1:])
        if (len(words) > 2 or not bare) and _RUN_BEFORE.search(before):  # "run the command `sudo ncdu <dir>`"
            return looks_like_command(word, known=self.known)
        if " " not in word and _RUN_BEFORE.search(before):
            return word in self.known or bool(_SCRIPT_PATH.match(word)) and "." not in word.rsplit("/", 1)[-1]
        if not looks_like_command(code, inline=True, known=self.known):
            return False
        if bare and len(words) <= 2:
            return before.rstrip().endswith((":", "Run", "run", "Execute", "execute")) or not before.strip()
        return True

    def _block_commands(self, node: Node, lead: str | None, pending: TaskOptions | None) -> list[_Draft]:
        """The tasks a code block makes (see `blocks.py` for how its content is read)."""
        language, options, attributes = self._block_options(node)
        if pending is not None:
            options = options.merged_over(pending)
        line = _line(node)
        reading = self._reading(node)
        if options.run is False:
            self.blocks[line] = Block(line, "reference", "reference: annotated run=false", language)
            return []
        if options.run is True and reading.kind != "command" and node.content.strip():  # a comment's run=true
            content = textwrap.dedent(node.content).strip("\n")
            self.blocks[line] = Block(line, "command", "command: annotated run=true", language)
            self._made_tasks.add(line)
            return [_Draft("command", lead or _first_code_line(content), self._content_line(node), command=content,
                           language=language or "sh", options=options, attributes=attributes)]
        drafts = []
        self._made_tasks.add(line)
        for piece in reading.pieces:
            client_input = tuple(piece.client_input)
            if piece.kind == "command":
                opts = options
                if client_input and options.interactive is None:
                    opts = replace(options, interactive=True)  # a client needs the terminal
                drafts.append(_Draft("command", lead or _first_code_line(piece.text), piece.line, command=piece.text,
                                     language=language or ("console" if reading.prompted else "sh"), options=opts,
                                     expected_output=piece.expected_output, client=piece.client,
                                     client_input=client_input, attributes=attributes))
            else:
                text = f"Type into {piece.client}: " + "; ".join(client_input)
                drafts.append(_Draft("manual", _shorten(text), piece.line, options=options,
                                     client=piece.client, client_input=client_input, attributes=attributes))
        return drafts

    def _reading(self, node: Node) -> Reading:
        """How a code block reads (once per block); declares its variables and records its kind."""
        reading = self._readings.get(id(node))
        if reading is not None:
            return reading
        language, options, _ = self._block_options(node)
        content = textwrap.dedent(node.content).rstrip("\n")
        if options.run is not None and content.strip():  # the author decided: no guessing, no variables
            kind: BlockKind = "command" if options.run else "reference"
            pieces = [Piece("command", self._content_line(node), content.strip("\n"))] if options.run else []
            reading = Reading(kind, f"{kind}: annotated run={str(options.run).lower()}", pieces)
        else:
            reading = read_block(language, content, self._content_line(node), self.known)
        self._readings[id(node)] = reading
        line = _line(node)
        self.blocks[line] = Block(line, reading.kind, reading.reason, language)
        for name, value, at in reading.assignments:
            self._declare(name, value, at)
        for at in reading.repairs:
            self._notice(at, "missing-continuation", "this line of a continued command has no trailing `\\`; "
                         "the next line starts with a flag, so they are read as one command")
        return reading

    def _block_options(self, node: Node) -> tuple[str, TaskOptions, tuple[tuple[str, str], ...]]:
        """(language, options, other tools' attributes) from a fence's info string."""
        if node.type != "fence":
            return "", _NO_OPTIONS, ()
        language, attrs = normalise_language(node.info or "")
        if not attrs:
            return language, _NO_OPTIONS, ()
        line = _line(node)
        options, kept = self._options(attrs, line, self._column(line, attrs[:1] or "`"))
        return language, options, kept

    @staticmethod
    def _content_line(node: Node) -> int:
        return _line(node) + (1 if node.type == "fence" else 0)

    def _declare(self, name: str, value: str, line: int) -> None:
        """`MYPOD=<pod name>` asks the operator; `NAMESPACE=kube-etcd` is a default."""
        placeholders = command_placeholders(value)
        if placeholders and value.strip() == placeholders[0]:
            self.variables.setdefault(name, Variable(name=name, line=line, prompt=placeholder_label(value)))
        else:
            self.variables.setdefault(name, Variable(name=name, line=line, default=value))

    # ---- annotations -------------------------------------------------------------------
    def _annotation(self, node: Node) -> TaskOptions | None:
        match = _ANNOTATION.search(node.content)
        if match is None:
            return None
        line = _line(node) + node.content[: match.start()].count("\n")
        return self._options(match.group(1), line, self._column(line, "runbook:"))[0]

    def _inline_annotation(self, paragraph: Node) -> TaskOptions:
        inline = paragraph.children[0] if paragraph.children else None
        for child in inline.children if inline else ():
            if child.type == "html_inline" and (match := _ANNOTATION.search(child.content)):
                line = self._find_line(paragraph, "runbook:")
                return self._options(match.group(1), line, self._column(line, "runbook:"))[0]
        return _NO_OPTIONS

    def _options(self, text: str, line: int, column: int) -> tuple[TaskOptions, tuple[tuple[str, str], ...]]:
        """Our keys as options and other tools' keys kept as written (a warning when not Runme's)."""
        try:
            ours, kept, unknown = split_foreign(parse_attributes(text))
            options = options_from_mapping(ours)
        except AnnotationError as exc:
            key_column = self._column(line, f"{exc.key}=") if exc.key else column
            raise RunbookError(str(exc), self.path, line, key_column if key_column > 1 else column) from None
        for key in unknown:
            self._notice(line, "unknown-attribute", f"attribute '{key}' is not runbook-tui's nor Runme's; "
                         "it is kept but means nothing here", self._column(line, key))
        return options, tuple(kept.items())

    # ---- related runbooks --------------------------------------------------------------
    def _related(self, links: list[Node], declared: Iterable[Related]) -> tuple[Related, ...]:
        found: dict[str, Related] = {r.target: r for r in declared}
        for node in links:
            href = str(node.attrs.get("href", ""))
            if "://" in href or href.startswith(("#", "mailto:")) or not _RUNBOOK_LINK.search(href):
                continue
            target = href.split("#")[0]
            if target not in found:
                found[target] = Related(title=plain(node), target=target, line=self._find_line_any(href))
        line, counted = 1, 0  # newlines are counted once, from one match to the next
        for match in _HUGO_REF.finditer(self.text):
            line += self.text.count("\n", counted, match.start())
            counted = match.start()
            found.setdefault(match.group(2), Related(title=match.group(1), target=match.group(2), line=line))
        return tuple(found.values())

    # ---- source positions --------------------------------------------------------------
    def _source(self, node: Node) -> str:
        if node.map is None:
            return ""
        start, end = node.map
        return "\n".join(self.lines[start:end]).strip("\n")

    def _slice(self, nodes: list[Node]) -> str:
        mapped = [n.map for n in nodes if n.map is not None]
        if not mapped:
            return ""
        start, end = mapped[0][0], mapped[-1][1]
        if start < self._title_lines.start < end:  # text on both sides of the title: the title is not part of it
            kept = self.lines[start : self._title_lines.start] + self.lines[self._title_lines.stop : end]
            return "\n".join(kept).strip("\n")
        return "\n".join(self.lines[start:end]).strip("\n")

    def _locate(self, node: Node, needle: str, cursor: tuple[int, int]) -> tuple[int, tuple[int, int]]:
        """The file line of `needle` at or after `cursor` (line index, column) in the node, and the cursor past it."""
        end = node.map[1] if node.map else len(self.lines)
        probe = needle.split("\n")[0][:40]
        index, column = cursor
        while index < min(end, len(self.lines)):
            found = self.lines[index].find(probe, column)
            if found >= 0:
                return index + 1, (index, found + len(probe))
            index, column = index + 1, 0
        return cursor[0] + 1, cursor

    def _find_line(self, node: Node, needle: str) -> int:
        start, end = node.map if node.map else (0, len(self.lines))
        probe = needle.split("\n")[0][:40]
        for index in range(start, min(end, len(self.lines))):
            if probe in self.lines[index]:
                return index + 1
        return start + 1

    def _find_line_any(self, needle: str) -> int:
        for index, text in enumerate(self.lines):
            if needle in text:
                return index + 1
        return 1

    def _column(self, line: int, needle: str) -> int:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        position = text.find(needle)
        return position + 1 if position >= 0 else 1

    def _has_command(self, node: Node) -> bool:
        """Whether a block holds anything the parser would run (used before any step exists)."""
        if node.type in ("fence", "code_block"):
            language, options, _ = self._block_options(node)
            if options.run is not None:
                return options.run
            return bool(self._reading(node).pieces)  # commands, or input to type into a client
        if node.type in ("paragraph", "td", "th"):
            return bool(self._inline_commands(node))
        return any(self._has_command(child) for child in node.children if child.type != "inline")


def _line(node: Node) -> int:
    return node.map[0] + 1 if node.map else 1


def _cells(table: Node) -> Iterable[Node]:
    """The cells of a table, row by row (each holds one inline node, as a paragraph does)."""
    for part in table.children:
        for row in part.children:
            yield from row.children


def _first_code_line(content: str) -> str:
    return next((ln.strip() for ln in content.splitlines() if ln.strip() and not ln.strip().startswith("#")), content)


def _shorten(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())  # a title is one line, as Markdown renders it
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] or name


def parse_markdown(text: str, path: str) -> Runbook:
    """Parse Markdown runbook text; `path` is used in positions and as the runbook's path."""
    return MarkdownParser(text, path).parse()
