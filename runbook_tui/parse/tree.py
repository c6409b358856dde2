"""A minimal syntax tree of a Markdown text, for the Markdown parser.

pulldown-cmark (through pyromark: CommonMark with GitHub's tables, in Rust) makes its events for
a 10,000-step runbook some 15x faster than markdown-it-py makes its token stream, and the tree
read from them comes 4x faster (BENCHMARKS.md, issue 12).
Its flat event stream is read here into the shape `parse/markdown.py` was written for,
markdown-it-py's: the same node types (a paragraph, a heading or a table cell holds one `inline`
node whose children are the text; a table has `thead`/`tbody`/`tr`/`th`/`td`; an autolink is a
`link`), text runs joined as markdown-it-py joins them, links' hrefs normalised as it does, and
`map` the same 0-based [first line, end line) of the source. markdown-it-py makes the tree
itself where pulldown-cmark panics (see `parse_tree`), and is the oracle the pyromark tree is
checked against (`tests/test_markdown_tree.py`). Each node's fields are plain slots.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from bisect import bisect_right
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import pyromark

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

# markdown-it-py's `normalize` step: CR and CRLF end a line, NUL becomes U+FFFD. Applied before
# parsing, so the byte offsets and the line numbers are those of the text markdown-it-py sees.
_NEWLINES = re.compile(r"\r\n?")
# What markdown-it-py strips from the ends of a paragraph's, a heading's or a cell's text: what
# JavaScript's `trim` removes, U+FEFF excepted (its `MD_TRIM_CHARS`). pulldown-cmark strips
# only spaces and tabs there.
_TRIM = "\t\n\v\f\r \xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
_TRIM_CHARS = frozenset(_TRIM)
_TRIM_OR_MARKER = _TRIM + ">"  # and a block quote's marker, on a paragraph's next line
# pulldown-cmark's container tags -> our (markdown-it-py's) node types; lists, headings and
# code blocks are told apart by their payload, cells by where they are (see _Reader.read)
_BLOCKS = {"Paragraph": "paragraph", "Item": "list_item", "BlockQuote": "blockquote", "HtmlBlock": "html_block",
           "Table": "table", "TableHead": "thead", "TableRow": "tr", "TableCell": "td"}
_INLINES = {"Emphasis": "em", "Strong": "strong", "Link": "link", "Image": "image"}
# the nodes whose text is one inline run: markdown-it-py puts it in an `inline` child
_INLINE_PARENTS = frozenset(("paragraph", "heading", "th", "td"))
# GitHub's tables: the one extension to CommonMark that markdown-it-py's `.enable("table")` adds
_OPTIONS = pyromark.Options.ENABLE_TABLES
# an opening code fence: what follows its marker on the line is its info string
_FENCE = re.compile(rb"(?:`{3,}|~{3,})([^\n]*)")

# How deep block quotes, lists and inline markup may nest. pulldown-cmark sets no bound (50,000
# `>` make 50,000 levels, past what the recursive walks in parse/markdown.py take); markdown-it-py
# stops at 20 levels and drops what is deeper unsaid. A runbook's lists nest a few levels.
MAX_NESTING = 50


class NestingError(Exception):
    """The Markdown nests deeper than MAX_NESTING, at `line` (1-based)."""

    def __init__(self, line: int) -> None:
        super().__init__(f"Markdown nested more than {MAX_NESTING} levels deep (block quotes, lists or emphasis "
                         "inside each other)")
        self.line = line


_NO_ATTRS: Mapping[str, Any] = MappingProxyType({})  # shared by the nodes without attributes: read only


class Node:
    """A block or inline element, with the fields markdown-it-py's token for it has.

    Read from pyromark, an `inline` node's `content` (markdown-it-py's raw text of the
    paragraph) stays empty: nothing reads it, its children are the text.
    """

    __slots__ = ("type", "tag", "map", "info", "content", "attrs", "children", "text")

    def __init__(self, type_: str, map_: list[int] | None = None) -> None:
        self.type = type_
        self.tag = ""  # "h1" ... "h6" for a heading
        self.map = map_  # [first line, end line), 0-based; None for inline nodes and table cells
        self.info = ""  # a fence's info string
        self.content = ""  # a code block's, an HTML block's, a text's or an inline code span's text
        self.attrs: Mapping[str, Any] = _NO_ATTRS  # a link's href
        self.children: Sequence[Node] = ()  # a list, for a node that holds others
        self.text: str | None = None  # plain() of this node, once asked for


def parse_tree(text: str, links: list[Node]) -> list[Node]:
    """The top-level block nodes of a Markdown text; every link node is also appended to `links`.

    Links are collected here, in document order, so finding the runbooks a file links to
    needs no second walk over the tree. pyromark makes the tree; markdown-it-py, the same tree
    more slowly, only where pulldown-cmark panics (a bug in it: none is known in 0.13, but a
    Rust panic must not take the parse down).
    """
    try:
        return pyromark_tree(text, links)
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        links.clear()
    return python_tree(text, links)


def _is_panic(exc: BaseException) -> bool:
    """Whether `exc` is a Rust panic: pyo3's PanicException, a BaseException (so that `except
    Exception` does not swallow one). Told by name: pyo3 makes that type lazily, one per
    extension module, and exports it nowhere."""
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


@functools.cache
def _pyromark() -> pyromark.Markdown:
    """CommonMark with GitHub's tables, made once and shared (immutable, a parse keeps no state in it)."""
    return pyromark.Markdown(options=_OPTIONS)


@functools.cache
def _python_parser() -> MarkdownIt:
    """The same in markdown-it-py, made once: making it (~0.5 ms) costs more than a short file's parse."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table")


def pyromark_tree(text: str, links: list[Node]) -> list[Node]:
    """The tree from pulldown-cmark's events; NestingError past MAX_NESTING."""
    text = _NEWLINES.sub("\n", text).replace("\0", "\ufffd")
    with _stderr_unprinted():
        events = list(_pyromark().events_with_range(text, merge_text=True))
    return _Reader(text, links).read(events)


@contextlib.contextmanager
def _stderr_unprinted() -> Iterator[None]:
    """Standard error (fd 2) goes to /dev/null while pulldown-cmark parses.

    Rust's panic hook writes "thread panicked at ..." straight to fd 2 before the panic reaches
    Python, where it is handled (parse_tree); on the terminal the TUI draws on, that would
    garble the screen. Nothing else writes meanwhile: the events are made holding the GIL. One
    parse at a time: two interleaved would save and restore each other's /dev/null for good.
    """
    with _STDERR_SWAP:
        saved = os.dup(2)
        try:
            os.dup2(_devnull(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_STDERR_SWAP = threading.Lock()  # see _stderr_unprinted


@functools.cache
def _devnull() -> int:
    return os.open(os.devnull, os.O_WRONLY)


def python_tree(text: str, links: list[Node]) -> list[Node]:
    """The tree from markdown-it-py's token stream."""
    return _from_tokens(_python_parser().parse(text), links)


def _from_tokens(tokens: Sequence[Token], links: list[Node]) -> list[Node]:
    """An `x_open`/`x_close` pair and the tokens between become one node of type `x`; a token's
    own `children`, as an inline token's, become child nodes. Built in one pass."""
    top: list[Node] = []
    siblings = top
    enclosing: list[list[Node]] = []  # the sibling lists of the pairs still open
    for token in tokens:
        nesting = token.nesting
        if nesting < 0:
            siblings = enclosing.pop()
            continue
        node = Node(token.type.removesuffix("_open") if nesting else token.type, token.map or None)
        node.tag, node.info, node.content, node.attrs = token.tag, token.info, token.content, token.attrs
        siblings.append(node)
        if nesting > 0:
            enclosing.append(siblings)
            siblings = node.children = []
            if node.type == "link":
                links.append(node)
        elif token.children:
            node.children = _from_tokens(token.children, links)
    return top


class _Reader:
    """pulldown-cmark's events into our nodes: byte offsets into lines, inline runs under `inline`.

    One pass with a stack of the open nodes, no recursion: what nests deeper than MAX_NESTING
    is refused where it starts.
    """

    def __init__(self, text: str, links: list[Node]) -> None:
        self.links = links
        self.data = text.encode()
        self.starts = [0]  # the byte offset where each line starts
        offset = 0
        for line in self.data.split(b"\n")[:-1]:
            offset += len(line) + 1
            self.starts.append(offset)
        # markdown-it-py's line count: a last line without "\n" counts unless it is only spaces and tabs
        last = self.data[self.starts[-1]:]
        self.open_last = bool(last.strip(b" \t"))  # whether the last line has text and no "\n" after it
        self.lines = len(self.starts) - (0 if self.open_last else 1)
        self.backslash_breaks: set[int] = set()  # the ids of hard breaks written as a backslash (see _strip_end)

    def line(self, offset: int) -> int:
        return bisect_right(self.starts, offset) - 1

    def first_line(self, start: int) -> int:
        """The line a block's byte range starts on.

        (A list nested after a tab-indented line can start at the newline before its marker.)
        """
        if self.data[start:start + 1] == b"\n":
            start += 1
        return bisect_right(self.starts, start) - 1

    def end_line(self, start: int, end: int) -> int:
        """The line after a block's byte range: what the range ends in is its last line."""
        return min(bisect_right(self.starts, max(end - 1, start)), self.lines)

    def read(self, events: list[tuple[Any, dict[str, int]]]) -> list[Node]:
        """The nodes, in one pass over the events (written for speed: 130,000 events on a 10,000-step runbook)."""
        top: list[Node] = []
        siblings = top  # where the next node goes
        stack: list[tuple[Node, list[Node]]] = []  # the open nodes, each with the list it was put in
        inline: list[Node] | None = None  # the open inline node's children, inside a paragraph, heading or cell
        tight = False  # whether that paragraph is one made for a tight list item (see _tight)
        block: Node | None = None  # the code or HTML block being read: its text events are its content
        in_head = False
        skip = 0  # the depth of a link markdown-it-py does not make (see _link) being left out
        last_inline = 0  # the byte offset where the last inline event ended: a tight item's paragraph ends there
        first_text = -1  # where the first text event of the open inline run starts (-1: none yet)
        for event, where in events:
            if skip:
                if event.__class__ is dict:
                    kind = next(iter(event))
                    skip += 1 if kind == "Start" else -1 if kind == "End" else 0
                continue
            if event.__class__ is str:  # "SoftBreak", "HardBreak" or "Rule"
                if event == "Rule":
                    if tight:
                        siblings = self._end_tight(stack, first_text, last_inline)
                        inline, tight, first_text = None, False, -1
                    start = where["start"]
                    siblings.append(Node("hr", [self.first_line(start), self.end_line(start, where["end"])]))
                    continue
                if inline is None:
                    siblings = inline = self._tight(stack, siblings, where["start"])
                    tight = True
                siblings.append(Node("softbreak" if event == "SoftBreak" else "hardbreak"))
                if event == "HardBreak" and self.data[where["start"]] == 0x5C:  # `\`
                    self.backslash_breaks.add(id(siblings[-1]))
                last_inline = where["end"]
                continue
            (kind, value), = event.items()
            if kind == "Text":
                if block is not None:
                    block.content += value
                    continue
                if inline is None:
                    siblings = inline = self._tight(stack, siblings, where["start"])
                    tight = True
                last_inline = where["end"]
                if first_text < 0:
                    first_text = where["start"]
                if siblings and siblings[-1].type == "text":
                    siblings[-1].content += value  # markdown-it-py's `text_join`: escapes and entities are text
                    continue
                siblings.append(_text(value))
            elif kind == "Start":
                if value.__class__ is str:
                    name, payload = value, None
                else:
                    (name, payload), = value.items()
                if name in _INLINES:
                    if inline is None:
                        siblings = inline = self._tight(stack, siblings, where["start"])
                        tight = True
                    node = Node(_INLINES[name])
                    siblings.append(node)
                    refused = payload is not None and not self._link(node, name, payload, where)
                    if refused:  # `node` is text now
                        if len(siblings) > 1 and siblings[-2].type == "text":
                            siblings[-2].content += siblings.pop().content
                        if node.map is None:  # an autolink: its source is all text
                            skip, last_inline = 1, where["end"]
                            continue
                    stack.append((node, siblings))
                    if len(stack) > MAX_NESTING:
                        raise NestingError(self.line(where["start"]) + 1)
                    if not refused:
                        siblings = node.children = []
                    continue
                if tight:  # a block after a tight item's text
                    siblings = self._end_tight(stack, first_text, last_inline)
                    inline, tight, first_text = None, False, -1
                start = where["start"]
                node = Node(_BLOCKS.get(name, ""), [self.first_line(start), 0])
                if name == "Item":
                    pass  # its end is set by its list (_end_items)
                elif name == "List":
                    node.type = "bullet_list" if payload is None else "ordered_list"
                else:
                    node.map[1] = self.end_line(start, where["end"])
                    if name == "Heading":
                        node.type, node.tag = "heading", "h" + payload["level"][1]
                    elif name == "CodeBlock":
                        node.type = "code_block" if payload == "Indented" else "fence"
                        if node.type == "fence":  # its info string as written (pulldown-cmark's is unescaped, trimmed)
                            node.info = _FENCE.search(self.data, start).group(1).decode()
                        block = node
                    elif name == "HtmlBlock":
                        block = node
                    elif name == "TableHead":
                        in_head = True
                        node.map[1] = node.map[0] + 1
                        row = Node("tr", list(node.map))
                        siblings.append(node)
                        node.children = [row]
                        stack.append((node, siblings))
                        stack.append((row, node.children))
                        siblings = row.children = []
                        continue
                    elif name == "TableRow":
                        table = stack[-1][0]
                        if table.children[-1].type != "tbody":
                            table.children.append(Node("tbody", [node.map[0], table.map[1]]))
                            table.children[-1].children = []
                        siblings = table.children[-1].children
                    elif name == "TableCell":
                        node.type, node.map = ("th" if in_head else "td"), None
                siblings.append(node)
                stack.append((node, siblings))
                if len(stack) > MAX_NESTING:
                    raise NestingError(node.map[0] + 1 if node.map else self.line(start) + 1)
                siblings = node.children = []
                if node.type in _INLINE_PARENTS:
                    text = Node("inline", node.map)
                    node.children.append(text)
                    inline = siblings = text.children = []
            elif kind == "End":
                name = value if value.__class__ is str else next(iter(value))
                if tight and name == "Item":  # the item ends after its text
                    siblings = self._end_tight(stack, first_text, last_inline)
                    inline, tight, first_text = None, False, -1
                node, siblings = stack.pop()
                if name in _INLINES:
                    if node.map is not None:  # a refused link's text ends: the rest of its source is text
                        (start, opener), node.map = node.map, None
                        tail = self.data[max(last_inline, start + opener):where["end"]].decode()
                        if siblings and siblings[-1].type == "text":
                            siblings[-1].content += tail
                        else:
                            siblings.append(_text(tail))
                    last_inline = where["end"]
                    if name == "Link" and node.type == "link":
                        self.links.append(node)
                        if node.info == "auto" and node.children:
                            from markdown_it.common.normalize_url import normalizeLinkText

                            node.children[0].content = normalizeLinkText(node.children[0].content)
                elif name == "Item":
                    node.map[1] = self.end_line(where["start"], where["end"])  # the last item's (see _end_items)
                elif node.type in _INLINE_PARENTS:
                    self._strip(inline, first_text, last_inline)
                    inline, first_text = None, -1
                elif name == "List":
                    # pulldown-cmark's list runs over the blank lines after it, up to what follows
                    end = where["end"]
                    node.map[1] = max(self.line(end) if end < len(self.data) else self.lines, node.children[-1].map[1])
                    _end_items(node)
                elif name == "TableHead":
                    in_head = False
                    node, siblings = stack.pop()
                elif name == "CodeBlock" or name == "HtmlBlock":
                    block = None
                    self._end_block(node, where["end"])
            elif kind == "Code" or kind == "InlineHtml":
                if inline is None:
                    siblings = inline = self._tight(stack, siblings, where["start"])
                    tight = True
                last_inline = where["end"]
                node = Node("code_inline" if kind == "Code" else "html_inline")
                node.content = value
                siblings.append(node)
            elif kind == "Html":
                block.content += value
        return top

    def _end_block(self, node: Node, end: int) -> None:
        """A code or HTML block's content and lines as markdown-it-py has them."""
        if end == len(self.data) and not self.open_last and not self.data.endswith(b"\n"):
            node.content = node.content[:node.content.rfind("\n") + 1]  # a last line of spaces is no line to it
        if node.type == "fence" and node.map[1] == self.lines and self.open_last \
                and not self.data[self.starts[-1]:].strip(b" \t>"):
            node.map[1] -= 1  # the text's last line, blank in a block quote and not ended: an unclosed fence's end
        elif node.type == "html_block":  # its lines are its content's (its range can run into the next line)
            node.map[1] = node.map[0] + node.content.count("\n") + (not node.content.endswith("\n"))
        elif node.type == "code_block" and not node.content.endswith("\n"):
            node.content += "\n"  # markdown-it-py ends an indented block's last line, at the end of the text too

    def _strip(self, nodes: list[Node], start: int, end: int) -> None:
        """An inline run without the whitespace markdown-it-py strips from its ends (`_TRIM`).

        pulldown-cmark strips spaces and tabs there, markdown-it-py all of `_TRIM`, and before
        it reads entities: `&nbsp;` at an end stays. So what the text has at an end goes (line
        breaks within it too) unless the source, from `start` (the run's first text) to `end`,
        has an entity right past its whitespace (and block quote markers) there: then only as
        much as that whitespace.
        """
        if nodes and nodes[0].type == "text" and nodes[0].content[:1] in _TRIM_CHARS:
            written = self.data[start:end].decode()
            run = len(written) - len(written.lstrip(_TRIM_OR_MARKER))
            _strip_end(nodes, _text_width(written[:run]) if written.startswith("&", run) else len(written), 0,
                       self.backslash_breaks)
        if nodes and nodes[-1].type == "text" and nodes[-1].content[-1:] in _TRIM_CHARS:
            written = self.data[max(start, 0):end].decode()
            kept = written.rstrip(_TRIM_OR_MARKER)
            _strip_end(nodes, _text_width(written[len(kept):]) if kept.endswith(";") else len(written), -1,
                       self.backslash_breaks)

    def _tight(self, stack: list[tuple[Node, list[Node]]], siblings: list[Node], start: int) -> list[Node]:
        """Open the paragraph pulldown-cmark leaves out in a tight list item, where its text starts;
        its inline node's children. Its end line is set when it closes (_end_tight)."""
        paragraph = Node("paragraph", [self.line(start), 0])
        siblings.append(paragraph)
        stack.append((paragraph, siblings))
        if len(stack) > MAX_NESTING:
            raise NestingError(paragraph.map[0] + 1)
        text = Node("inline", paragraph.map)
        paragraph.children = [text]
        text.children = []
        return text.children

    def _end_tight(self, stack: list[tuple[Node, list[Node]]], first_text: int, end: int) -> list[Node]:
        """Close the paragraph _tight opened, at the line its last text ends on; the list it is in."""
        paragraph, siblings = stack.pop()
        paragraph.map[1] = self.line(max(end - 1, 0)) + 1
        self._strip(paragraph.children[0].children, first_text, end)
        return siblings

    def _link(self, node: Node, kind: str, data: dict[str, Any], where: dict[str, int]) -> bool:
        """A link's or image's href as markdown-it-py normalises it; False where it makes no link.

        markdown-it-py refuses a `javascript:`, `vbscript:`, `file:` or non-image `data:` URL:
        the link's brackets and destination are text then, and its text is read as any other.
        `node` becomes the text of the opening bracket (its `map`, while open: where the link
        starts and how long that is), or of the whole source of an autolink.
        """
        # imported here: markdown-it-py's package takes ~30 ms to import, which a text without links needs not pay
        from markdown_it.common.normalize_url import normalizeLink, validateLink

        url = data["dest_url"]
        if data["link_type"] == "Email":
            url = "mailto:" + url
        href = normalizeLink(url)
        if not validateLink(href):
            node.type = "text"
            if data["link_type"] in ("Email", "Autolink"):
                node.content = self.data[where["start"]:where["end"]].decode()
            else:  # its text is read as text around it; the source after the text is text (see read)
                node.content = "[" if kind == "Link" else "!["
                node.map = [where["start"], len(node.content)]
            return False
        node.attrs = {"href": href} if kind == "Link" else {"src": href}
        if data["link_type"] in ("Email", "Autolink"):
            node.info = "auto"  # as markdown-it-py marks an autolink: its text is shown as normalizeLinkText gives it
        return True


def _text(content: str) -> Node:
    node = Node("text")
    node.content = content
    return node


def _text_width(run: str) -> int:
    """How many characters of text a run of whitespace in a paragraph's source makes: not the
    spaces before a line end (pulldown-cmark drops them, or makes them a hard break), nor a
    next line's block quote markers and indentation."""
    lines = run.split("\n")
    width = 0
    for number, line in enumerate(lines):
        if number:
            line = line.lstrip(" \t>")
        if number < len(lines) - 1:
            line = line.rstrip(" \t")
        width += len(line)
    return width


def _strip_end(nodes: list[Node], budget: int, at: int, backslash_breaks: set[int]) -> None:
    """Strip up to `budget` whitespace characters from the first (`at` 0) or last (-1) end of an
    inline run, and the line breaks there. markdown-it-py trims the text before it reads
    breaks, so a hard break written as a backslash stays at the start, and is that backslash
    at the end."""
    while nodes:
        node = nodes[at]
        if node.type == "softbreak" or node.type == "hardbreak":  # a line end: whitespace, always stripped
            if at == 0 and id(node) in backslash_breaks:  # but not a backslash before it
                return
            del nodes[at]
            if id(node) in backslash_breaks:
                if nodes and nodes[-1].type == "text":
                    nodes[-1].content += "\\"
                else:
                    nodes.append(_text("\\"))
                return
            continue
        if node.type != "text" or budget == 0:
            return
        content = node.content
        kept = content.lstrip(_TRIM) if at == 0 else content.rstrip(_TRIM)
        count = min(len(content) - len(kept), budget)
        if count == 0:
            return
        node.content = content[count:] if at == 0 else content[: len(content) - count]
        budget -= count
        if node.content:
            return
        del nodes[at]


def _end_items(lst: Node) -> None:
    """An item ends where the next one starts, in markdown-it-py (blank lines after it, however
    many, are its), the last one where its list ends, an empty one a line after its marker at
    most; the list, where its last item ends."""
    items = lst.children
    for item, after in zip(items, items[1:]):
        item.map[1] = after.map[0]
    items[-1].map[1] = lst.map[1]
    for item in items:
        if not item.children:  # an empty item: its marker's line and at most one blank line
            item.map[1] = min(item.map[1], item.map[0] + 2)
    lst.map[1] = items[-1].map[1]


def plain(node: Node) -> str:
    """The text of a node with markup removed, on one line.

    Kept on the node: a step's title paragraph is read this way several times.
    """
    if node.text is not None:
        return node.text
    parts: list[str] = []
    pending = [node]  # depth first, in document order
    while pending:
        current = pending.pop()
        kind = current.type
        if kind == "text" or kind == "code_inline":
            parts.append(current.content)
        elif kind == "softbreak" or kind == "hardbreak":
            parts.append(" ")
        if current.children:
            pending.extend(reversed(current.children))
    node.text = " ".join("".join(parts).split())  # runs of whitespace become one space
    return node.text
