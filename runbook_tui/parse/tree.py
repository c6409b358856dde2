"""A minimal syntax tree over markdown-it's flat token stream, for the Markdown parser.

It has the shape of markdown-it's `SyntaxTreeNode` (an `x_open`/`x_close` pair and the tokens
between become one node of type `x`; a token's own `children`, as an inline token's, become
child nodes) but is built in one pass and its fields are plain slots. `SyntaxTreeNode` builds
recursively and reads every field through a property (`type` alone was 700,000 calls on a
10,000-step runbook), and its parent links make cycles that only the garbage collector frees.
"""

from __future__ import annotations

from typing import Sequence

from markdown_it.token import Token


class Node:
    """A block or inline element; its fields are its token's (the opening token's, for a pair)."""

    __slots__ = ("type", "tag", "map", "info", "content", "attrs", "children", "text")

    def __init__(self, type_: str, token: Token) -> None:
        self.type = type_
        self.tag = token.tag
        self.map: list[int] | None = token.map or None  # [first line, end line), 0-based
        self.info = token.info
        self.content = token.content
        self.attrs = token.attrs
        self.children: Sequence[Node] = ()  # a list only for a pair or a token with children
        self.text: str | None = None  # plain() of this node, once asked for


def build_tree(tokens: Sequence[Token], links: list[Node]) -> list[Node]:
    """The top-level nodes of a token stream; every link node is also appended to `links`.

    Links are collected here, in document order, so finding the runbooks a file links to
    needs no second walk over the tree.
    """
    top: list[Node] = []
    siblings = top
    enclosing: list[list[Node]] = []  # the sibling lists of the pairs still open
    for token in tokens:
        nesting = token.nesting
        if nesting < 0:
            siblings = enclosing.pop()
            continue
        if nesting > 0:
            node = Node(token.type.removesuffix("_open"), token)
            siblings.append(node)
            enclosing.append(siblings)
            siblings = node.children = []
            if node.type == "link":
                links.append(node)
            continue
        node = Node(token.type, token)
        siblings.append(node)
        if token.children:
            node.children = build_tree(token.children, links)
    return top


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
