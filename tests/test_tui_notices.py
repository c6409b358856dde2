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
from runbook_tui.tui.screens.dialogs import Reading, ValuesForm, YesNo
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
