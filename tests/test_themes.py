"""Themes: the bundled YAML files, the loader's located errors, user overrides, the app fallback.

The high-contrast theme's promise (readable at 3 a.m. on a bad monitor) is checked with WCAG's
contrast ratio, computed from the colors Textual parses.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.theme import Theme
from textual.widgets import Static
from textual.widgets._toast import Toast

from runbook_tui.tui import themes
from runbook_tui.tui.themes import (
    BUNDLED_THEME_DIR,
    DEFAULT_THEME,
    ThemeError,
    load_theme_file,
    load_themes,
    register_themes,
    user_theme_dir,
)

REPO = Path(__file__).resolve().parent.parent
BUNDLED = ("runbook-dark", "runbook-light", "runbook-high-contrast")
REQUIRED_COLORS = ("primary", "secondary", "accent", "warning", "error", "success",
                   "foreground", "background", "surface", "panel")
GOOD = "name: {name}\nprimary: '#336699'\n"


def bundled(name: str) -> Theme:
    return load_theme_file(BUNDLED_THEME_DIR / f"{name}.yaml")


def contrast(first: str, second: str) -> float:
    """WCAG 2 contrast ratio: (L1 + 0.05) / (L2 + 0.05) of the relative luminances."""

    def luminance(text: str) -> float:
        color = Color.parse(text)

        def channel(value: int) -> float:
            c = value / 255
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(color.r) + 0.7152 * channel(color.g) + 0.0722 * channel(color.b)

    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# --- bundled themes -------------------------------------------------------------------------


def test_bundled_dir_is_the_checkouts_themes_folder() -> None:
    assert BUNDLED_THEME_DIR == REPO / "themes"


def test_bundled_dir_prefers_the_wheels_copy(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "runbook_tui"
    assert themes._bundled_theme_dir(package) == tmp_path / "site-packages" / "themes"
    (package / "_bundled" / "themes").mkdir(parents=True)
    assert themes._bundled_theme_dir(package) == package / "_bundled" / "themes"


def test_the_bundled_themes_are_all_here_and_load_cleanly() -> None:
    loaded, errors = load_themes([BUNDLED_THEME_DIR])
    assert errors == []
    assert sorted(t.name for t in loaded) == sorted(BUNDLED)
    assert DEFAULT_THEME in BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_theme_has_every_color(name: str) -> None:
    theme = bundled(name)
    assert theme.name == name  # the file name and the theme name agree
    for field in REQUIRED_COLORS:
        value = getattr(theme, field)
        assert value, f"{name} has no {field}"
        Color.parse(value)
    assert theme.dark is (name != "runbook-light")
    assert theme.to_color_system().generate()["error"]  # Textual can build CSS variables from it


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_theme_text_and_status_colors_meet_wcag_aa(name: str) -> None:
    theme = bundled(name)
    assert contrast(theme.foreground, theme.background) >= 7  # type: ignore[arg-type]
    for field in ("error", "warning", "success"):
        assert contrast(getattr(theme, field), theme.background) >= 4.5, field  # type: ignore[arg-type]


def test_high_contrast_theme_is_high_contrast() -> None:
    theme = bundled("runbook-high-contrast")
    assert theme.background and theme.foreground
    assert Color.parse(theme.background).brightness < 0.05  # pure-ish black
    assert contrast(theme.foreground, theme.background) >= 7
    statuses = {field: getattr(theme, field) for field in ("error", "warning", "success")}
    for field, value in statuses.items():
        assert contrast(value, theme.background) >= 4.5, field
    assert len({Color.parse(v).hex for v in statuses.values()}) == 3  # three distinct colors
    assert theme.text_alpha == 1.0  # text drawn at full strength, not faded


# --- located errors -------------------------------------------------------------------------

BAD_FILES = {
    "unknown-key": ("name: x\nprimary: '#336699'\nprimry: red\n", 3, 1,
                    "unknown key 'primry' in a theme (did you mean 'primary'?)"),
    "bad-color": ("name: x\nprimary: '#336699'\nerror: reddish\n", 3, 8, "error: 'reddish' is not a color"),
    "bad-hex": ("name: x\nprimary: '#12345'\n", 2, 10, "primary: '#12345' is not a color"),
    "missing-name": ("primary: '#336699'\ndark: true\n", 1, 1, "missing 'name'"),
    "missing-primary": ("name: x\nbackground: black\n", 1, 1, "missing 'primary'"),
    "not-a-mapping": ("- name: x\n- primary: red\n", 1, 1, "expected a mapping (key: value), got a list"),
    "invalid-yaml": ("name: x\nprimary: [red\n", 3, 1, "not valid YAML"),
    "empty": ("# nothing but a comment\n", 1, 1, "empty theme file"),
    "empty-name": ("name: ''\nprimary: red\n", 1, 7, "name: must not be empty"),
    "dark-not-bool": ("name: x\nprimary: red\ndark: maybe\n", 3, 7, "dark: expected true or false"),
    "alpha-out-of-range": ("name: x\nprimary: red\ntext_alpha: 2\n", 3, 13,
                           "text_alpha: expected a number from 0 to 1"),
    "variables-not-mapping": ("name: x\nprimary: red\nvariables: bold\n", 3, 12, "variables: expected a mapping"),
    "bad-variable-name": ("name: x\nprimary: red\nvariables:\n  $border: red\n", 4, 3,
                          "'$border' is not a CSS variable name"),
    "bad-variable-color": ("name: x\nprimary: red\nvariables:\n  border: notacolor\n", 4, 11,
                           "variables.border: 'notacolor' is not a color"),
    "bad-variable-style": ("name: x\nprimary: red\nvariables:\n  link-style: blinky\n", 4, 15,
                           "variables.link-style: 'blinky' is not a text style"),
    "duplicate-key": ("name: x\nprimary: red\nprimary: blue\n", 3, 1, "duplicate key 'primary'"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_file_gives_one_located_line(tmp_path: Path, kind: str) -> None:
    text, line, column, message = BAD_FILES[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ThemeError) as caught:
        load_theme_file(path)
    error = str(caught.value)
    assert error.startswith(f"{path}:{line}:{column}: "), error
    assert message in error
    assert "\n" not in error


def test_a_file_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: x\nprimary: red\n# caf\xe9\n")
    with pytest.raises(ThemeError, match=r":3:6: not UTF-8"):
        load_theme_file(path)


def test_bad_files_do_not_stop_the_others_loading(tmp_path: Path) -> None:
    for kind, (text, *_) in BAD_FILES.items():
        (tmp_path / f"{kind}.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "good.yaml").write_text(GOOD.format(name="good"), encoding="utf-8")
    (tmp_path / "also-good.yml").write_text(GOOD.format(name="also-good"), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a theme", encoding="utf-8")
    loaded, errors = load_themes([tmp_path])
    assert sorted(t.name for t in loaded) == ["also-good", "good"]
    assert len(errors) == len(BAD_FILES)
    assert all(e.startswith(str(tmp_path)) and "\n" not in e for e in errors)


def test_a_missing_folder_is_no_error(tmp_path: Path) -> None:
    assert load_themes([tmp_path / "nowhere"]) == ([], [])


# --- user themes ----------------------------------------------------------------------------


def test_user_theme_dir_is_in_the_config_dir() -> None:
    assert user_theme_dir() == Path(platformdirs.user_config_dir("runbook-tui")) / "themes"


def test_a_user_theme_overrides_a_bundled_one_by_name(tmp_path: Path) -> None:
    (tmp_path / "my-dark.yaml").write_text("name: runbook-dark\nprimary: '#ff00ff'\n", encoding="utf-8")
    (tmp_path / "mine.yaml").write_text(GOOD.format(name="mine"), encoding="utf-8")
    loaded, errors = load_themes([BUNDLED_THEME_DIR, tmp_path])
    assert errors == []
    by_name = {t.name: t for t in loaded}
    assert len(by_name) == len(loaded) == len(BUNDLED) + 1
    assert by_name["runbook-dark"].primary == "#ff00ff"
    assert by_name["runbook-light"] == bundled("runbook-light")


# --- in the app -----------------------------------------------------------------------------


class ThemedApp(App[None]):
    """The smallest app that picks its theme the way runbook-tui does."""

    def __init__(self, requested: str | None) -> None:
        super().__init__()
        self.requested = requested

    def compose(self) -> ComposeResult:
        yield Static("runbook")

    def on_mount(self) -> None:
        self.theme = register_themes(self, self.requested)


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user themes folder of the test's own, never the real one."""
    monkeypatch.setattr(themes, "user_theme_dir", lambda: tmp_path)
    return tmp_path


async def test_an_unknown_theme_falls_back_to_the_default_with_a_notification(user_dir: Path) -> None:
    app = ThemedApp("nope")
    async with app.run_test(size=(120, 40), notifications=True) as pilot:  # toasts are off by default
        await pilot.pause()
        assert app.theme == DEFAULT_THEME
        notes = list(app._notifications)
        assert len(notes) == 1
        assert notes[0].severity == "warning"
        assert "Unknown theme 'nope'" in notes[0].message
        assert all(name in notes[0].message for name in BUNDLED)  # it lists what is available
        toasts = app.screen.query(Toast)
        assert len(toasts) == 1
        assert "Unknown theme 'nope'" in str(toasts.first().render())


async def test_a_bad_user_file_gives_one_error_notification_and_the_rest_still_work(user_dir: Path) -> None:
    (user_dir / "broken.yaml").write_text("name: broken\nprimary: notacolor\n", encoding="utf-8")
    (user_dir / "typo.yaml").write_text("name: typo\nprimary: red\nbakground: black\n", encoding="utf-8")
    (user_dir / "mine.yaml").write_text(GOOD.format(name="mine"), encoding="utf-8")
    app = ThemedApp("mine")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.theme == "mine"
        errors = sorted(n.message for n in app._notifications if n.severity == "error")
        assert len(errors) == len(list(app._notifications)) == 2
        assert errors[0].startswith(f"{user_dir / 'broken.yaml'}:2:10: primary: 'notacolor' is not a color")
        assert errors[1].startswith(f"{user_dir / 'typo.yaml'}:3:1: unknown key 'bakground'")
        assert "(did you mean 'background'?)" in errors[1]
        assert "runbook-high-contrast" in app.available_themes


@pytest.mark.parametrize("requested", [None, "runbook-high-contrast", "nord"])
async def test_a_known_theme_is_used_quietly(user_dir: Path, requested: str | None) -> None:
    app = ThemedApp(requested)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.theme == (requested or DEFAULT_THEME)
        assert list(app._notifications) == []


async def test_a_theme_with_a_bad_variable_is_refused_rather_than_crashing_the_app(user_dir: Path) -> None:
    # Textual only checks variables when the theme is applied, and then the app dies.
    (user_dir / "loud.yaml").write_text("name: loud\nprimary: red\nvariables:\n  text: wat\n", encoding="utf-8")
    app = ThemedApp("loud")
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.theme == DEFAULT_THEME
        messages = [n.message for n in app._notifications]
        assert len(messages) == 2
        assert messages[0].startswith(f"{user_dir / 'loud.yaml'}:4:9: variables.text: 'wat' is not a color")
        assert messages[1].startswith("Unknown theme 'loud'")


async def test_every_bundled_theme_applies_in_a_running_app(user_dir: Path) -> None:
    app = ThemedApp(None)
    async with app.run_test() as pilot:
        for name in BUNDLED:
            app.theme = name
            await pilot.pause()
            assert app.theme == name
            assert app.current_theme == bundled(name)
            assert app.get_css_variables()["block-cursor-text-style"] == "bold"  # its own variables are in
        assert app.return_code is None  # still running: no stylesheet error
