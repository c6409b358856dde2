"""What the run tells the operator before it starts: one line each on screen, the whole story on `m`.

The keyring here is keyring's own `fail` backend (what keyring picks on a machine with no Secret
Service), so the problem is the real one an operator without a desktop session meets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from runbook_tui.audit.transcript import read_events
from runbook_tui.parse import load_runbook
from runbook_tui.tui.app import make_app
from runbook_tui.tui.screens.dialogs import Choose, ConfirmCommand, Reading, ValuesForm, YesNo
from runbook_tui.tui.screens.related import RelatedScreen
from runbook_tui.tui.widgets.step_tree import StepTree
from tests.tui_helpers import cursor_id, notifications, run_test, type_text, until, until_event, until_screen

BOOK = """---
secrets:
  DB_PASSWORD: "keyring:rbt-notices/db"
  API_TOKEN: "keyring:rbt-notices/api"
  DB_PASSWORD_AGAIN: "keyring:rbt-notices/db"
---
# Notices

## Steps

1. Use them
   - `echo "$DB_PASSWORD $API_TOKEN"` <!-- runbook: secrets=DB_PASSWORD,API_TOKEN -->
"""


@pytest.fixture
def no_keyring() -> Iterator[None]:
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(before)


async def test_a_missing_keyring_is_one_line_with_the_details_on_m(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   no_keyring: None) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "book.md").write_text(BOOK)
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook(tmp_path / "book.md"), mode="paranoid", variables={}, transcript=str(transcript),
                   theme=None)
    asked: list[str] = []
    async with run_test(app) as pilot:
        for value in ("pw-1", "tok-2"):  # DB_PASSWORD_AGAIN is the same secret: not asked again
            form = await until_screen(pilot, ValuesForm)
            asked += [q.name for q in form.questions]
            await type_text(pilot, value)
            await pilot.press("enter")
            await pilot.pause()
            assert not isinstance(app.screen, YesNo), "offered to store a secret in a keyring that cannot be used"
        await until_event(pilot, transcript, "run.started")
        await until(pilot, lambda: any("keyring" in m for m in notifications(app)), what="the keyring notice")
        about_keyring = [m for m in notifications(app) if "keyring" in m]
        assert about_keyring == ["no usable OS keyring here: DB_PASSWORD, API_TOKEN must be typed in every run "
                                 "(m: details)"], about_keyring
        assert all("\n" not in m for m in notifications(app))
        await pilot.press("m")
        shown = await until_screen(pilot, Reading)
        text = shown.body.plain
        assert "keyring.backends.fail.Keyring" in text and "gnome-keyring-daemon" in text, text
        assert "pw-1" not in text and "tok-2" not in text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, Reading), what="the messages closed")
        await pilot.press("q")
        await pilot.pause()
    assert asked == ["DB_PASSWORD", "API_TOKEN"]
    started = next(e for e in read_events(transcript) if e["type"] == "run.started")
    assert sorted(started["secrets"]) == ["API_TOKEN", "DB_PASSWORD", "DB_PASSWORD_AGAIN"]
    assert "pw-1" not in transcript.read_text() and "tok-2" not in transcript.read_text()


async def test_messages_on_a_run_without_notices_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "book.md").write_text("# Quiet\n\n## Steps\n\n1. One\n   - `echo hi`\n")
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook(tmp_path / "book.md"), mode="paranoid", variables={}, transcript=str(transcript),
                   theme=None)
    async with run_test(app) as pilot:
        await until_event(pilot, transcript, "run.started")
        await pilot.press("m")
        shown = await until_screen(pilot, Reading)
        assert shown.body.plain == "No messages."
        await pilot.press("escape")


PROMPTED = """---
variables:
  RELEASE_TAG:
    prompt: "The git tag to deploy, e.g. v2.14.3 [bold red]not markup[/]"
  ENVIRONMENT:
    default: staging
    prompt: Where it goes
---
# Prompted

## Steps

1. Deploy
   - `echo deploying $RELEASE_TAG to $ENVIRONMENT`
"""


async def test_the_values_form_shows_the_runbooks_prompt_and_offers_its_default(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from runbook_tui.tui.screens.dialogs import ConfirmCommand
    from tests.tui_helpers import until_status

    monkeypatch.chdir(tmp_path)
    (tmp_path / "book.md").write_text(PROMPTED)
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook(tmp_path / "book.md"), mode="paranoid", variables={}, transcript=str(transcript),
                   theme=None)
    async with run_test(app) as pilot:
        await until_event(pilot, transcript, "run.started")
        app.run_screen.forget_value("ENVIRONMENT")  # "Answer again": its default is offered
        await until(pilot, lambda: cursor_id(pilot) == "1.1.1", what="the guide on the task")
        await pilot.press("enter")
        form = await until_screen(pilot, ValuesForm)
        labels = [str(label.render()) for label in form.query("Label")]
        assert "$RELEASE_TAG: The git tag to deploy, e.g. v2.14.3 [bold red]not markup[/]" in labels, labels
        assert "$ENVIRONMENT: Where it goes" in labels
        assert [field.value for field in form.query("Input")] == ["", "staging"]
        await type_text(pilot, "v2.14.3")
        await pilot.press("enter", "enter")
        confirm = await until_screen(pilot, ConfirmCommand)
        assert ("RELEASE_TAG", "v2.14.3") in confirm.request.env and ("ENVIRONMENT", "staging") in confirm.request.env
        await pilot.press("y")
        await until_status(pilot, "1.1.1", "done")
    output = "".join(e["text"] for e in read_events(transcript) if e["type"] == "output")
    assert "deploying v2.14.3 to staging" in output


async def test_a_notice_quotes_runbook_text_literally_never_as_markup(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The trust notice tells the operator the command to type, with the file's name in it: a
    name like `x[red]y.md` must reach the screen as written, not as a colour tag."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x[red]y.md").write_text("# M\n\n## Steps\n\n1. One\n   - `echo hi --x`\n")
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook("x[red]y.md"), mode="auto", variables={}, transcript=str(transcript), theme=None)
    async with run_test(app) as pilot:
        await until_event(pilot, transcript, "run.started")
        await until(pilot, lambda: any("trust" in m for m in notifications(app)), what="the trust notice")
        (notice,) = [n for n in app._notifications if "runbook-tui trust 'x[red]y.md'" in n.message]
        assert notice.markup is False
        await pilot.press("q")


def drawn(widget: object) -> list[str]:
    """The lines a widget draws, as characters."""
    return ["".join(segment.text for segment in widget.render_line(y))  # type: ignore[attr-defined]
            for y in range(widget.size.height)]  # type: ignore[attr-defined]


async def test_a_commands_unfinished_line_is_drawn_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The line a command is still writing (a prompt, a progress line) is its own text: `[/x]`
    in it made the screen raise, `[bold]` would have been taken for a style."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "m.md").write_text("# M\n\n## Steps\n\n1. One\n   - `printf '[/x] [bold]q[/bold] '; sleep 3`\n")
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook("m.md"), mode="paranoid", variables={}, transcript=str(transcript), theme=None)
    async with run_test(app) as pilot:
        await until_event(pilot, transcript, "run.started")
        await until(pilot, lambda: cursor_id(pilot) == "1.1.1", what="the first task")
        await pilot.press("enter")
        await until_screen(pilot, ConfirmCommand)
        await pilot.press("y")
        partial = app.screen.query_one("#partial")
        await until(pilot, lambda: not app.is_running or any("[/x] [bold]q[/bold]" in line for line in drawn(partial)),
                    what=lambda: f"the unfinished line: {drawn(partial)}")
        assert app.is_running, "the screen survived the command's text"
        await until_event(pilot, transcript, "command.finished", timeout=30)
        await pilot.press("q")


async def test_a_related_runbooks_title_and_file_are_drawn_as_written(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A runbook's title is a file's text: in the tree (`[/y]` in it made the app fail to open),
    and a related one's in the picker, on its screen and in the question that switches to it,
    `[/x]` and `[b]` are characters; a missing file is marked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "other.md").write_text("# [/x] Roll[b]back\n\n## Steps\n\n1. One\n   - `echo hi --x`\n")
    (tmp_path / "m.md").write_text("# M [/y] [i]i[/i]\n\n## Steps\n\n1. One\n   - `echo hi --x`\n\n## Related runbooks\n\n"
                                   "- [[/x] Roll[b]back](./other.md)\n- [Gone](./gone.md)\n")
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook("m.md"), mode="paranoid", variables={}, transcript=str(transcript), theme=None)
    async with run_test(app, (120, 40)) as pilot:
        await until_event(pilot, transcript, "run.started")
        await pilot.pause()
        assert str(app.screen.query_one(StepTree).root.label) == "M [/y] [i]i[/i]", "its own title too"
        await pilot.press("o")
        choose = await until_screen(pilot, Choose)
        await pilot.pause()
        shown = drawn(choose.query_one("#choices"))
        assert any("[/x] Roll[b]back (./other.md)" in line for line in shown), shown
        assert any("Gone (./gone.md)  [missing file]" in line for line in shown), shown
        await pilot.press("enter")
        related = await until_screen(pilot, RelatedScreen)
        await pilot.pause()
        assert any("[/x] Roll[b]back — related runbook" in line for line in drawn(related.query_one("#related-title")))
        await pilot.press("r")
        question = await until_screen(pilot, YesNo)
        await pilot.pause()
        assert any("and run [/x] Roll[b]back?" in line for line in drawn(question.query_one("#dialog-title")))
        assert app.is_running
        await pilot.press("escape")
