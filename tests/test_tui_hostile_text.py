"""Any runbook text opens in the app and is drawn: hypothesis writes titles, headings, steps,
prose and commands out of the characters that mean something to Rich and Textual markup, to
Markdown and to a terminal, and the app must open on them, draw every node, show each task, and
open the related runbook picker and the related runbook itself without raising.

Written after `[/x]` in a runbook's title kept the app from opening (Rich read it as a closing
tag), in the fifth session: this is the promise for every path that draws runbook text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.parse import load_runbook
from runbook_tui.parse.errors import RunbookError
from runbook_tui.tui.app import make_app
from runbook_tui.tui.widgets.step_tree import StepTree
from tests.tui_helpers import run_test, until_event

# What markup, Markdown and terminals give meaning to, with enough letters to make words and tags.
MEANINGFUL = "[]/\\*_<>!#|&;$(){}=:'\"~\x1b\u202e\u200b "
WORDS = ["bold", "red", "link", "b", "x", "on", "$x", "/x", "etc",
         "[/x]", "[/]", "[b]", "[/b]", "[red]", "[@click=app.quit]", "[link=x]"]  # tags, closing ones alone

fragments = st.lists(st.one_of(st.sampled_from(WORDS), st.text(alphabet=MEANINGFUL, min_size=1, max_size=3)),
                     min_size=1, max_size=8).map("".join)
# a command has no backtick (it is written in one) and no newline (it is one line)
commands = fragments.map(lambda text: "echo " + text.replace("`", "'").replace("\n", " "))


def book_text(title: str, section: str, step: str, prose: str, command: str, related: str) -> str:
    return (f"# {title}\n\n## {section}\n\n{prose}\n\n1. **{step}**\n   - `{command}`\n   - {prose}\n\n"
            f"## Related runbooks\n\n- [{related}](./other.md)\n- [gone]({related}.md)\n")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=fragments, section=fragments, step=fragments, prose=fragments, command=commands, related=fragments)
def test_any_runbook_text_opens_and_is_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, title: str,
                                             section: str, step: str, prose: str, command: str,
                                             related: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = tmp_path / "book.md"
    path.write_text(book_text(title, section, step, prose, command, related), encoding="utf-8")
    (tmp_path / "other.md").write_text(f"# {related}\n\n## Steps\n\n1. {step}\n   - `{command}`\n", encoding="utf-8")
    try:
        book = load_runbook(path)
    except RunbookError:
        return  # refused with its position (`check` says why): nothing to draw
    transcript = tmp_path / f"t-{len(list(tmp_path.glob('t-*.jsonl')))}.jsonl"
    app = make_app(book, mode="paranoid", variables={}, transcript=str(transcript), theme=None)

    async def drive() -> None:
        async with run_test(app, (100, 30)) as pilot:
            await until_event(pilot, transcript, "run.started")
            tree = app.screen.query_one(StepTree)
            for _ in range(tree.last_line + 1):  # every node, each drawn in the step view as selected
                await pilot.press("down")
            await pilot.pause()
            await pilot.press("o")  # the related runbooks: a picker (two links) of their titles
            await pilot.pause()
            await pilot.press("enter")  # the first one, on its own screen (its tree, its title line)
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
            assert app.is_running, "the app is still up"
            await pilot.press("q")

    asyncio.run(drive())
    assert app.return_code in (0, None), f"the app ended with {app.return_code}"
