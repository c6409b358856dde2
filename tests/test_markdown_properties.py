"""Arbitrary Markdown never makes the parser raise anything but RunbookError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.parse.errors import RunbookError
from runbook_tui.parse.markdown import parse_markdown

WORDS = st.sampled_from([
    "kubectl get pods", "$ oc logs $POD", "# systemctl restart x", "<placeholder>", "`", "```", "~~~", "---",
    "1.", "-", "*", "##", "###", "#", "<!-- runbook: risk=high -->", "<!-- runbook: bogus -->", "{name=x}",
    "**Owner:** me", "[link](./other.md)", "${VAR:-x}", "\\", "'", '"', ":", "\t", "  ", "\n", "\n\n",
    "sh", "console", "yaml", "{", "}", "=", "run=true", "`make test --now`", "| a | b |", ">", "\r\n",
])
BLOCKS = st.lists(st.one_of(WORDS, st.text(max_size=20)), max_size=60).map(" ".join)
LINES = st.lists(st.one_of(WORDS, st.text(max_size=30)), max_size=40).map("\n".join)


def parse_or_user_error(text: str) -> None:
    try:
        book = parse_markdown(text, "fuzz.md")
    except RunbookError as exc:
        assert exc.line >= 1 and exc.column >= 1 and str(exc).startswith("fuzz.md:")
        return
    for task in book.tasks():
        assert task.kind in ("command", "manual")
        assert (task.command is not None) == (task.kind == "command")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text(text: str) -> None:
    parse_or_user_error(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BLOCKS)
def test_markdown_shaped_words(text: str) -> None:
    parse_or_user_error(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINES)
def test_markdown_shaped_lines(text: str) -> None:
    parse_or_user_error(text)
