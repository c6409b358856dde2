"""The settings file: theme and key bindings, with located errors for mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_tui.config import Config, load_config
from runbook_tui.parse.errors import RunbookError


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nope.yaml") == Config()


def test_theme_and_keymap(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("theme: runbook-light\nkeymap:\n  task.skip: ctrl+s\n")
    assert load_config(path) == Config(theme="runbook-light", keymap={"task.skip": "ctrl+s"})


def test_unknown_key_is_located_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("theme: x\nkeymapp: {}\n")
    with pytest.raises(RunbookError) as err:
        load_config(path)
    assert err.value.line == 2 and "did you mean 'keymap'" in err.value.message


async def test_keymap_rebinds_a_key_in_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runbook_tui.parse.markdown import parse_markdown
    from runbook_tui.tui.app import make_app

    config = tmp_path / "config.yaml"
    config.write_text("keymap:\n  task.skip: z\n")
    monkeypatch.setenv("RUNBOOK_TUI_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    book = parse_markdown("# T\n## Steps\n1. **Check**\n   - Confirm CI is green.\n", str(tmp_path / "b.md"))
    app = make_app(book, mode="paranoid", variables={}, transcript=str(tmp_path / "t.jsonl"), theme=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("z")
        await pilot.pause()
        assert type(app.screen).__name__ == "TextPrompt"  # the skip reason dialog, now on z
