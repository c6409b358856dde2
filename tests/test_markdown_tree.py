"""The tree read from pyromark's events is the tree markdown-it-py gives (issue 12).

`parse/markdown.py` was written against markdown-it-py's tree; it now reads pulldown-cmark's
events (through pyromark), converted in `parse/tree.py`. markdown-it-py's own tree
(`python_tree`, also what the product uses where pulldown-cmark panics) is the oracle: every
field the parser reads must be the same, on every Markdown file of the repository and on
generated Markdown. The differences that remain are pinned at the end, each with why it is
accepted and that it changes no command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runbook_tui.parse import tree
from runbook_tui.parse.errors import RunbookError
from runbook_tui.parse.markdown import parse_markdown
from runbook_tui.parse.tree import MAX_NESTING, Node, parse_tree, pyromark_tree, python_tree
from tests.paths import REPO

MARKDOWN_FILES = sorted(p for p in REPO.rglob("*.md") if ".git" not in p.parts)
# what the parser reads of each node type (parse/markdown.py)
CONTENT = frozenset(("fence", "code_block", "html_block", "text", "code_inline", "html_inline"))


def view(nodes: list[Node]) -> list:
    """The fields of each node that the parser reads, recursively.

    markdown-it-py leaves empty text tokens where emphasis markers were; no reader can tell
    them from nothing (they add no text, and an item whose first child is one is no
    instruction, as with any first child that is not text), so they are left out.
    """
    out: list = []
    for node in nodes:
        if node.type == "text" and not node.content:
            continue
        out.append((
            node.type,
            node.map if node.type != "inline" else None,
            node.tag if node.type == "heading" else "",
            node.info if node.type == "fence" else "",
            node.content if node.type in CONTENT else "",
            node.attrs.get("href") if node.type == "link" else None,
            view(list(node.children)),
        ))
    return out


def assert_same_tree(text: str) -> None:
    ours: list[Node] = []
    reference: list[Node] = []
    assert view(pyromark_tree(text, ours)) == view(python_tree(text, reference)), text
    assert [n.attrs["href"] for n in ours] == [n.attrs["href"] for n in reference]


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_repository_markdown_file_gives_the_same_tree(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for variant in (text, text.replace("\n", "\r\n")):
        assert_same_tree(variant)


@pytest.mark.parametrize("text", ["", "\n", "   ", "\n\n  \n", "#", "---", "```", "    ", ">", "-", "1.", "|",
                                  "<!-- -->", "\r", "\0", "```sh\nls", "- `ls`", "> ```\n> ls"])
def test_tiny_documents_give_the_same_tree(text: str) -> None:
    assert_same_tree(text)


# ---- generated Markdown ----------------------------------------------------------------------
# Words mix ASCII, accented and CJK letters (byte offsets differ from character offsets), and
# the characters Markdown gives meaning to.
WORD = st.sampled_from(["kubectl", "get", "pods", "é", "ünïcode", "日本語", "x=1", "$POD", "<pod>", "`ls -l`",
                        "``a`b``", "*em*", "**strong**", "_u_", "[link](./other.md)", "[x](<a b.md> \"t\")",
                        "<https://example.com>", "<a@b.c>", "![img](i.png)", "\\*", "&amp;", "&#35;", "<span>",
                        "<!-- runbook: risk=high -->", "|", "#", "-", "1.", "\\", "  ", "\t", "`", "```", "~~~",
                        "[", "]", "(", ")", "*", "_", "**", "\xa0", "[ref]", "[`x`](y.md)", "&nbsp;",
                        "[j](javascript:x)", "<javascript:y>", "[*j*](vbscript:x)"])
INLINE = st.lists(WORD, min_size=1, max_size=6).map(" ".join)
FENCE_INFO = st.sampled_from(["", "sh", "bash {name=x}", "console", " yaml ", "sh {\"id\":\"01H\"}", "!bash",
                              "sh\\_x"])


@st.composite
def block(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["para", "heading", "setext", "fence", "unclosed", "indented", "list", "table",
                                 "html", "hr", "quote", "reference"]))
    if kind == "para":
        return "\n".join(draw(st.lists(INLINE, min_size=1, max_size=3)))
    if kind == "heading":
        return "#" * draw(st.integers(1, 6)) + " " + draw(INLINE) + draw(st.sampled_from(["", " ##", "  "]))
    if kind == "setext":
        return draw(INLINE) + "\n" + draw(st.sampled_from(["===", "---"]))
    if kind in ("fence", "unclosed"):
        marker = draw(st.sampled_from(["```", "~~~", "````"]))
        body = draw(st.lists(st.one_of(INLINE, st.just(""), st.just("  ")), max_size=4))
        closing = [marker] if kind == "fence" else []
        return "\n".join([marker + draw(FENCE_INFO), *body, *closing])
    if kind == "indented":
        return "\n".join(draw(st.sampled_from(["    ", "\t"])) + line for line in draw(st.lists(INLINE, min_size=1,
                                                                                                    max_size=3)))
    if kind == "list":
        marker = draw(st.sampled_from(["-", "*", "+", "1.", "2)"]))
        items = draw(st.lists(st.tuples(st.integers(0, 2), st.one_of(INLINE, st.just(""))), min_size=1, max_size=5))
        separator = draw(st.sampled_from(["\n", "\n\n"]))
        lines = []
        for depth, text in items:
            lines.append("   " * depth + marker + (" " + text if text else ""))
            if draw(st.booleans()):
                lines.append("   " * (depth + 1) + draw(st.sampled_from(["```sh\n", "", "> "])) + draw(INLINE))
        return separator.join(lines)
    if kind == "table":
        columns = draw(st.integers(1, 3))
        rows = draw(st.lists(st.lists(INLINE.map(lambda s: s.replace("|", "/")), min_size=columns,
                                      max_size=columns), min_size=1, max_size=3))
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join([lines[0], "|" + "---|" * columns, *lines[1:]])
    if kind == "html":
        return draw(st.sampled_from(["<div>\n" + draw(INLINE) + "\n</div>", "<!--\n" + draw(INLINE) + "\n-->",
                                     "<!-- runbook: name=x -->", "<details><summary>more</summary>"]))
    if kind == "hr":
        return draw(st.sampled_from(["---", "***", "___", "- - -"]))
    if kind == "quote":
        return "\n".join("> " + line for line in draw(st.lists(INLINE, min_size=1, max_size=3)))
    return "[" + draw(INLINE).replace("]", "") + "]: ./ref.md"


DOCUMENT = st.tuples(st.lists(block(), max_size=8), st.sampled_from(["\n", "\n\n", "\n\n\n"]),
                     st.sampled_from(["", "\n", "\n\n", "  "]), st.sampled_from(["\n", "\r\n", "\r"])).map(
    lambda t: (t[1].join(t[0]) + t[2]).replace("\n", t[3]))

# Known differences, each pinned at the end: a reference label of only Unicode spaces; a tab
# among the spaces that end a line; an HTML tag line ending in a Unicode space; a line that is not
# blank right after a reference definition; a delimiter row without `|`; a line indented 4
# spaces or more right after a table's row (approximated: after any line, in a text with a table);
# a block quote line with nothing in it before a blank line (approximating: a quote of only such lines); a tab after a block quote's `>`; an empty list
# item before two blank lines; a code span across a line end and indentation (approximated: any);
# a line of only `|`; a line of only spaces, one of them a Unicode space, after a table; an item
# whose text starts 4 spaces after its marker (then a lazy line); a lazy line after a block quote;
# a backslash before the spaces that end a line.
KNOWN = re.compile(r"\[\s*\]:|\t[ \t]*$|<.*[^\S\x00-\x7f][ \t]*$|\]:.*\n[ \t]*[^ \t\n]|^.*\|.*\n[ \t]*[-:][ \t:-]*$"
                   r"|^[ \t]*>[ \t]*(?:\n[ \t]*>[ \t]*)*(?:\n[ \t]*)?(?:\n|\Z)|> *\t"
                   r"|^[ \t]*(?:[-*+]|[0-9]{1,9}[.)])[ \t]*\n[ \t]*\n[ \t]*\n|`[^`]*\n[ \t][^`]*`"
                   r"|^[ \t]*\|[ \t]*$|^[^\S\n]*[^\S\x00-\x7f][^\S\n]*$|(?:[-*+]|[0-9]{1,9}[.)]) {4}"
                   r"|^[ \t]*>.*\n[ \t]*[^ \t>\n]|\\[ \t]+$", re.MULTILINE)
TABLE = re.compile(r"^[ \t]*\|[ \t:|-]*-", re.MULTILINE)
INDENTED_AFTER_TEXT = re.compile(r"\S.*\n(?: {4}|\t| {1,3}\t)")


def known_difference(text: str) -> bool:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return bool(KNOWN.search(text) or TABLE.search(text) and INDENTED_AFTER_TEXT.search(text))


# 500 documents a run (about 4 s); TREE_EXAMPLES=8000 for a longer search, as before a release
@settings(max_examples=int(os.environ.get("TREE_EXAMPLES", "500")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(DOCUMENT)
def test_generated_trees_are_the_same(text: str) -> None:
    assume(not known_difference(text))
    assert_same_tree(text)


# ---- check --json: the same with either engine -------------------------------------------------

def _panic_type() -> type[BaseException]:
    """pyo3's PanicException, as pyromark's import made it (it is exported by no module)."""
    return next(kind for kind in BaseException.__subclasses__()
                if kind.__module__ == "pyo3_runtime" and kind.__name__ == "PanicException")


def _panicking(text: str, links: list[Node]) -> list[Node]:
    raise _panic_type()("called `Option::unwrap()` on a `None` value")


def _check_json(paths: list[Path]) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from runbook_tui.cli import main

    result = CliRunner().invoke(main, ["check", "--json", *map(str, paths)])
    return result.exit_code, result.stdout, result.stderr


def test_check_json_is_byte_identical_with_markdown_it_py(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Markdown file of the repository, checked with pyromark and then with markdown-it-py
    (pyromark made to panic, so the fallback parses): the same bytes, exit code and warnings."""
    with_pyromark = _check_json(MARKDOWN_FILES)
    monkeypatch.setattr(tree, "pyromark_tree", _panicking)
    with_markdown_it_py = _check_json(MARKDOWN_FILES)
    assert json.loads(with_pyromark[1])  # a document for each file that parses
    assert with_pyromark == with_markdown_it_py


# ---- where pulldown-cmark panics ---------------------------------------------------------------

def test_a_panic_falls_back_to_markdown_it_py_and_the_same_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (REPO / "runbooks" / "incident-response.md").read_text(encoding="utf-8")
    expected = parse_markdown(text, "book.md")
    links: list[Node] = []
    reference = view(python_tree(text, []))
    monkeypatch.setattr(tree, "pyromark_tree", lambda text, found: (found.append(Node("link")), _panicking(text, found)))
    assert view(parse_tree(text, links)) == reference
    assert all(node.attrs for node in links)  # the link read before the panic was dropped: only markdown-it-py's
    assert parse_markdown(text, "book.md") == expected


def test_a_panic_inside_pyromark_is_caught_and_only_a_panic(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real call raising: a PanicException falls back, anything else is not swallowed."""
    class Raising:
        def __init__(self, error: BaseException) -> None:
            self.error = error

        def events_with_range(self, text: str, merge_text: bool) -> list:
            raise self.error

    text = "# T\n\nRun `kubectl get pods`\n"
    monkeypatch.setattr(tree, "_pyromark", lambda: Raising(_panic_type()("index out of bounds")))
    assert view(parse_tree(text, [])) == view(python_tree(text, []))
    for error in (KeyboardInterrupt(), ValueError("not a panic")):
        monkeypatch.setattr(tree, "_pyromark", lambda error=error: Raising(error))
        with pytest.raises(type(error)):
            parse_tree(text, [])


# ---- hostile input -----------------------------------------------------------------------------

HOSTILE = {
    "markdown-it-pyrs panic": "# Fix\n\nSee [the `kubectl docs\n\n- run `kubectl get pods`\n",
    "bracket backtick runs": ("[`" * 90 + "\n\n") * 100,  # 90: within the bracket bound of parse/markdown.py
    "NUL": "# T\0\n\n- `echo \0`\n\0```sh\nls\0\n```\n",
    "odd Unicode": "# \u202eT\u200d\n\n- `echo \U0001f600\u0301` \ufeff\uffff\u2028x\u2029\n\n| \u00a0 | \U000e0001 |\n|---|---|\n",
    "CR and CRLF mixed": "# T\r\n\r- `ls`\r\n\r```sh\recho\r```",
    "huge single line": "`kubectl " + "a" * 2_000_000 + "`",
    "many backticks": "`" * 100_000 + "x",
    "unclosed everything": "<!--\n```\n<div>\n[a](\n*_**",
    "references to no character": "&#xD800; &#0; &#x110000; &#99999999;",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_parses_as_markdown_it_py_does_and_prints_nothing(capfd: pytest.CaptureFixture[str],
                                                                         text: str) -> None:
    capfd.readouterr()
    ours = view(pyromark_tree(text, []))
    parse_markdown("# T\n\n## S\n\n" + text, "book.md")
    assert capfd.readouterr() == ("", "")  # fd 1 and fd 2: nothing reaches the TUI's terminal
    if text.startswith("`kubectl a"):
        return  # markdown-it-py takes seconds on it; the tree is a paragraph of one code span either way
    assert ours == view(python_tree(text, []))


def test_what_pyromark_prints_to_fd_2_while_it_parses_does_not_reach_it(capfd: pytest.CaptureFixture[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rust's panic hook writes to fd 2 before the panic reaches Python: fd 2 is /dev/null then."""
    class Noisy:
        def events_with_range(self, text: str, merge_text: bool) -> list:
            os.write(2, b"thread '<unnamed>' panicked at src/lib.rs:1:1\n")
            raise _panic_type()("boom")

    monkeypatch.setattr(tree, "_pyromark", Noisy)
    capfd.readouterr()
    assert view(parse_tree("- `ls`\n", [])) == view(python_tree("- `ls`\n", []))
    assert capfd.readouterr().err == ""
    os.write(2, b"after\n")  # and fd 2 is back
    assert capfd.readouterr().err == "after\n"


# ---- nesting -----------------------------------------------------------------------------------

def test_nesting_past_the_bound_is_refused_with_its_line() -> None:
    fine = "\n".join("  " * depth + "- level" for depth in range(MAX_NESTING // 2 - 1))
    parse_markdown("# T\n\n" + fine, "book.md")
    with pytest.raises(RunbookError, match=f"nested more than {MAX_NESTING} levels") as caught:
        parse_markdown("# T\n\n" + "> " * (MAX_NESTING + 1) + "x\n", "book.md")
    assert caught.value.line == 3
    with pytest.raises(RunbookError, match="nested more than"):
        parse_markdown("# T\n\nword " + "*a " * (MAX_NESTING + 1) + "x" + " a*" * (MAX_NESTING + 1), "book.md")


@pytest.mark.parametrize(("text", "line"), [("> " * 50_000 + "x", 1), ("*" * 30_000 + "a" + "*" * 30_000, 1),
                                            ("".join("  " * depth + "- a\n" for depth in range(1_100)), 25)],
                         ids=["quotes", "emphasis", "lists"])
def test_deep_nesting_is_refused_with_a_message_not_a_crash(tmp_path: Path, text: str, line: int) -> None:
    """Each list level is two (the list and its item): the 25th holds the 51st level."""
    path = tmp_path / "deep.md"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "runbook_tui", "check", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:{line}:1: Markdown nested more than {MAX_NESTING} levels" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---- the differences that remain ---------------------------------------------------------------
# Each: what differs, why it is accepted, and what it does to commands. `commands` shows the
# parser's result with each engine where a difference could reach one.

def commands(text: str, monkeypatch: pytest.MonkeyPatch | None = None) -> list[str]:
    """The commands parse_markdown finds in `text` under a section; with markdown-it-py when
    `monkeypatch` is given (pyromark made to panic)."""
    if monkeypatch is not None:
        monkeypatch.setattr(tree, "pyromark_tree", _panicking)
    try:
        return [t.command for t in parse_markdown("# T\n\n## Steps\n\n" + text, "book.md").commands()]
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()


def types(nodes: list[Node]) -> list[str]:
    return [node.type for node in nodes]


def test_known_difference_a_line_indented_4_spaces_right_after_a_table_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """markdown-it-py ends a table at a row indented 4 spaces or more (then an indented code
    block); pulldown-cmark reads it as one more row, as GitHub's table extension does (a table
    ends at a blank line or another block that can start there, and an indented code block
    cannot interrupt). Accepted, and the one difference that can change a command: a code block
    written right under a table, with no blank line, is a table row now. Both agree with a blank
    line, as every table in the corpus has."""
    text = "| a |\n|---|\n    kubectl get pods\n"
    assert types(pyromark_tree(text, [])) == ["table"]
    assert types(python_tree(text, [])) == ["table", "code_block"]
    assert commands(text) == []
    assert commands(text, monkeypatch) == ["kubectl get pods"]
    spaced = "| a |\n|---|\n\n    kubectl get pods\n"
    assert_same_tree(spaced)
    assert commands(spaced) == commands(spaced, monkeypatch) == ["kubectl get pods"]


def test_known_difference_a_delimiter_row_without_a_bar() -> None:
    """A one-column header (`a |`) over a bare `---`: a table in markdown-it-py, a setext heading
    in pulldown-cmark (GitHub's too: a one-column delimiter row needs a `|`). Accepted: no code
    is involved; a table with a `|` in its delimiter row is the same in both."""
    assert types(pyromark_tree("a |\n---\n", [])) == ["heading"]
    assert types(python_tree("a |\n---\n", [])) == ["table"]
    assert_same_tree("a |\n--|\n")
    assert_same_tree("Run these:\n| what | command |\n|---|---|\n| pods | `kubectl get pods` |\n")


def test_known_difference_a_line_of_only_a_bar_in_a_table() -> None:
    """`|` alone after a table's rows is one more (empty) row in markdown-it-py; pulldown-cmark
    ends the table there. A line of only Unicode spaces, the other way round. Accepted: neither
    holds a command."""
    text = "| a |\n|---|\n|\n===\n"
    assert types(pyromark_tree(text, [])) == ["table", "heading"]
    assert types(python_tree(text, [])) == ["table"]
    # and a line of only Unicode spaces: the end of the table to markdown-it-py, a row to pulldown-cmark
    assert types(pyromark_tree("| a |\n|---|\n\xa0\nb", [])) == ["table"]
    assert types(python_tree("| a |\n|---|\n\xa0\nb", [])) == ["table", "paragraph"]


def test_known_difference_lines_right_after_a_reference_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    """CommonMark reads link reference definitions off the start of a paragraph: a line right
    after one continues that paragraph, and an indented code block or an empty item cannot
    interrupt it (pulldown-cmark). markdown-it-py ends the definition at its line, so the next
    line can start a code block or a list. Accepted: spec behaviour; a blank line after the
    definitions, as runbooks write them, gives the same tree."""
    text = "[ref]: ./other.md\n    kubectl get pods\n"
    assert types(pyromark_tree(text, [])) == ["paragraph"]
    assert types(python_tree(text, [])) == ["code_block"]
    assert commands(text) == []
    assert commands(text, monkeypatch) == ["kubectl get pods"]
    assert_same_tree("[ref]: ./other.md\n\n    kubectl get pods\n")


def test_known_difference_an_invalid_destination_in_a_reference_definition() -> None:
    """`[r]: javascript:z`: markdown-it-py refuses the URL, so the line is a paragraph;
    pulldown-cmark defines the reference (the reader then refuses the link, below). Accepted: the
    line is no command either way, and the link is text in both."""
    text = "[r]: javascript:z\n\n[r]\n"
    assert types(pyromark_tree(text, [])) == ["paragraph"]
    assert types(python_tree(text, [])) == ["paragraph", "paragraph"]


def test_a_refused_link_is_text_as_in_markdown_it_py_but_markup_in_its_destination() -> None:
    """A link to `javascript:` (or `vbscript:`, `file:`, non-image `data:`) is no link to
    markdown-it-py: its brackets and destination are text, its text is read as any other. The
    reader does the same, except that it keeps the destination as written where markdown-it-py
    reads markup in it too (a known difference). Accepted: such a destination is no runbook's,
    and the link is followed by neither."""
    for text in ("see [j](javascript:x) and <javascript:y>\n", "[*j*](vbscript:x) after", "a ![`i`](file:///x) b",
                 "- [](javascript:x)", "# T\n- <javascript:y>"):
        assert_same_tree(text)
    links: list[Node] = []
    pyromark_tree("[a](javascript:*x*) [b](./b.md)", links)
    assert [node.attrs["href"] for node in links] == ["./b.md"]
    assert types(pyromark_tree("[a](javascript:*x*)", [])[0].children[0].children) == ["text"]
    assert types(python_tree("[a](javascript:*x*)", [])[0].children[0].children) == ["text", "em", "text"]


def test_known_difference_a_reference_label_of_unicode_spaces() -> None:
    """A label of only non-breaking spaces defines a reference in pulldown-cmark (CommonMark: a
    label needs a character other than a space, a tab or a line ending); markdown-it-py strips
    Unicode spaces first and finds it empty. Accepted: nothing is a command there."""
    text = "[\xa0]: ./ref.md\n"
    assert pyromark_tree(text, []) == []
    assert types(python_tree(text, [])) == ["paragraph"]


def test_known_difference_a_backslash_before_the_spaces_that_end_a_line() -> None:
    """`x\\  ` then a line end: markdown-it-py keeps a space after the backslash (and with two
    spaces makes the break soft); pulldown-cmark drops the spaces into a hard break. Accepted:
    both read as one space (`plain`); a code span's backslashes are not escapes."""
    ours, reference = pyromark_tree("x\\  \ny", []), python_tree("x\\  \ny", [])
    assert ours[0].children[0].children[0].content == "x\\"
    assert reference[0].children[0].children[0].content == "x\\ "
    assert tree.plain(ours[0]) == "x\\ y" == tree.plain(reference[0])


def test_known_difference_a_tab_among_the_spaces_that_end_a_line() -> None:
    """`word \t` then a line end: pulldown-cmark makes a hard break, markdown-it-py a soft one
    and keeps the spaces in the text. Accepted: both read as one space (`plain`), and a code
    span ignores line breaks' kinds."""
    ours, reference = pyromark_tree("kubectl \t\nget", []), python_tree("kubectl \t\nget", [])
    assert types(ours[0].children[0].children) == ["text", "hardbreak", "text"]
    assert types(reference[0].children[0].children) == ["text", "softbreak", "text"]
    assert tree.plain(ours[0]) == tree.plain(reference[0]) == "kubectl get"


def test_known_difference_an_html_tag_line_ending_in_a_unicode_space() -> None:
    """`<span>` then a no-break space: markdown-it-py starts an HTML block (its "whitespace" is
    JavaScript's); pulldown-cmark a paragraph (CommonMark: spaces and tabs). Accepted: an
    annotation comment is a different HTML block kind, the same in both."""
    assert types(pyromark_tree("<span> \xa0\n", [])) == ["paragraph"]
    assert types(python_tree("<span> \xa0\n", [])) == ["html_block"]
    assert_same_tree("<!-- runbook: name=x -->\xa0\n```sh\nls\n```\n")


def test_known_difference_block_quotes_and_tabs() -> None:
    """A block quote of only empty `>` lines, before a blank line, ends a line later in
    markdown-it-py (in a list item too); a tab after `>` is kept as a tab by markdown-it-py, as
    spaces by pulldown-cmark. Accepted: the first holds nothing, the second changes only
    indentation inside quoted HTML or code."""
    assert pyromark_tree(">   \n\n", [])[0].map == [0, 1]
    assert python_tree(">   \n\n", [])[0].map == [0, 2]
    assert pyromark_tree("- x\n  >\n\nk", [])[0].children[0].children[1].map == [1, 2]
    assert python_tree("- x\n  >\n\nk", [])[0].children[0].children[1].map == [1, 3]
    assert_same_tree("> a\n>   \n\nb")
    assert pyromark_tree("> \t <span>", [])[0].children[0].content == "   <span>"
    assert python_tree("> \t <span>", [])[0].children[0].content == "\t <span>"


def test_known_difference_an_empty_item_before_two_blank_lines() -> None:
    """An empty item followed by two blank lines ends its list in markdown-it-py (an older
    CommonMark rule); pulldown-cmark continues it. Accepted: an empty item holds nothing."""
    assert len(pyromark_tree("*\n\n\n*", [])[0].children) == 2
    assert types(python_tree("*\n\n\n*", [])) == ["bullet_list", "bullet_list"]


def test_known_difference_a_code_span_onto_a_tab_indented_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a list item, a code span that runs onto a line indented with a tab: markdown-it-py
    keeps what the item's indentation leaves of the tab, as spaces; pulldown-cmark drops it.
    Accepted: the command differs only in the spaces between its words, which the shell splits
    on alike. With spaces for indentation both keep the same."""
    text = "- run `kubectl\n\tget pods`\n"
    assert commands(text) == ["kubectl get pods"]
    assert commands(text, monkeypatch) == ["kubectl   get pods"]
    assert_same_tree("- run `kubectl\n    get pods`\n")


def test_known_difference_references_to_control_characters_and_noncharacters() -> None:
    """`&#7;` and `&#xFFFE;` are U+FFFD to markdown-it-py, the characters themselves to
    pulldown-cmark (CommonMark replaces only NUL, surrogates and what is past U+10FFFF).
    Accepted: they are text, not in code spans (whose entities are not read)."""
    assert pyromark_tree("&#7; &#xFFFE;", [])[0].children[0].children[0].content == "\x07 \ufffe"
    assert python_tree("&#7; &#xFFFE;", [])[0].children[0].children[0].content == "\ufffd \ufffd"


def test_known_difference_markdown_it_py_drops_what_nests_past_20_levels() -> None:
    """markdown-it-py's CommonMark preset stops at 20 levels and drops the rest unsaid; the
    pyromark tree keeps it, up to MAX_NESTING, past which the file is refused with its line."""
    text = "".join("  " * depth + "- a\n" for depth in range(12)) + "  " * 12 + "- `kubectl get pods`\n"
    assert "kubectl get pods" in commands(text)
    assert "kubectl" not in str(view(python_tree(text, [])))


def test_a_runbook_without_links_does_not_import_markdown_it_py() -> None:
    """markdown-it-py's package takes ~30 ms to import: only a link (its URL normalised as
    markdown-it-py does) or the fallback needs it, not a `check` or `run` of a plain runbook."""
    code = ("import sys\nfrom runbook_tui.parse import parse_text\n"
            "book = parse_text('# T\\n\\n## S\\n\\n1. Check\\n   - `kubectl get pods`\\n', 'x.md')\n"
            "assert [t.command for t in book.commands()] == ['kubectl get pods']\n"
            "print('markdown_it' in sys.modules)\n"
            "parse_text('See [b](./b.md).\\n', 'y.md')\n"
            "print('markdown_it' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.stdout.split() == ["False", "True"], proc.stderr


def test_known_difference_a_lazy_line_after_an_item_whose_text_starts_4_spaces_in() -> None:
    """`-    text` puts the item's text 4 spaces past the marker; a next line indented less than
    that but 4 past the outer item is, to pulldown-cmark, more of the item's paragraph (a lazy
    line: an indented code block cannot interrupt a paragraph); to markdown-it-py, an indented
    code block of the outer item. Accepted: a runbook does not indent a list's text that way."""
    text = "-\n   -    kubectl\n      ```sh\nkubectl"
    assert "code_block" not in str(view(pyromark_tree(text, [])))
    assert "code_block" in str(view(python_tree(text, [])))
    assert_same_tree("-\n   - kubectl\n      ```sh\nkubectl")


def test_known_difference_a_lazy_line_after_a_block_quote_indented_like_a_marker() -> None:
    """In a list item, a block quote's paragraph continued by lazy lines, one of them indented
    too far for its `>` to be a marker: text `> r` to pulldown-cmark (as CommonMark says), the
    quote's marker to markdown-it-py. Accepted: a runbook quotes with `>` on every line."""
    text = "- k\n   > q\n      -\n         > r"
    assert pyromark_tree(text, [])[0].children[0].children[1].children[0].children[0].children[-1].content == "> r"
    assert python_tree(text, [])[0].children[0].children[1].children[0].children[0].children[-1].content == "r"
    assert_same_tree("- k\n   > q\n   > r")


def test_parses_on_several_threads_leave_standard_error_where_it_was() -> None:
    """fd 2 is pointed at /dev/null while pulldown-cmark parses: parses on two threads must not
    save and restore each other's /dev/null, or standard error stays lost for good."""
    import sys
    import threading

    before = os.fstat(2)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        def parse_many() -> None:
            for _ in range(200):
                parse_tree("# T\n\n1. **a**\n   - `echo b`\n", [])

        threads = [threading.Thread(target=parse_many) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
