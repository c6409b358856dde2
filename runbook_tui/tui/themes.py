"""Colour themes as YAML files: the bundled ones, then the user's, registered on the app.

A theme file mirrors `textual.theme.Theme` (name, primary, ..., dark, variables). It is read
from composed YAML nodes so every mistake names the line and column to fix. A bad file never
stops the app: it is reported once and skipped, and an unknown theme name falls back to the
default (STYLE.md, "Screens, bindings, CSS, themes"; posting's `themes.py`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import platformdirs
import yaml
from textual.app import App
from textual.color import Color, ColorParseError
from textual.css.styles import Styles
from textual.design import ColorSystem
from textual.theme import Theme

from runbook_tui.parse.errors import RunbookError, did_you_mean
from runbook_tui.parse.settings import YamlSource, describe

DEFAULT_THEME = "runbook-dark"
COLOR_KEYS = ("primary", "secondary", "accent", "warning", "error", "success",
              "foreground", "background", "surface", "panel", "boost")
FRACTION_KEYS = ("luminosity_spread", "text_alpha")
THEME_KEYS = ("name", *COLOR_KEYS, "dark", *FRACTION_KEYS, "variables")
THEME_SUFFIXES = (".yaml", ".yml")
NOTIFY_SECONDS = 12.0
_VARIABLE_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class ThemeError(RunbookError):
    """A theme file that cannot be used, printed as `file:line:col: message`."""


def _bundled_theme_dir(package: Path) -> Path:
    """The wheel force-includes `themes/` as `runbook_tui/_bundled/themes`; a checkout has `<repo>/themes`."""
    installed = package / "_bundled" / "themes"
    return installed if installed.is_dir() else package.parent / "themes"


BUNDLED_THEME_DIR = _bundled_theme_dir(Path(__file__).resolve().parent.parent)


def user_theme_dir() -> Path:
    """Where the operator's own themes live; read after the bundled ones, so they win by name."""
    return Path(platformdirs.user_config_dir("runbook-tui")) / "themes"


def load_theme_file(path: Path) -> Theme:
    """One theme file as a Theme; any mistake is a ThemeError located at file:line:col."""
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ThemeError(f"cannot read the theme file: {exc.strerror or exc}", where) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line, column = before.count(b"\n") + 1, len(before) - before.rfind(b"\n")
        raise ThemeError("not UTF-8 text: a theme file is YAML", where, line, column) from None
    try:
        return _parse_theme(YamlSource(where), text)
    except ThemeError:
        raise
    except RunbookError as exc:  # YamlSource's own errors: same location, our type
        raise ThemeError(exc.message, exc.path, exc.line, exc.column) from None


def load_themes(dirs: Iterable[Path]) -> tuple[list[Theme], list[str]]:
    """Every `*.yaml`/`*.yml` theme in `dirs`, in order; a later theme replaces an earlier one of
    the same name. Bad files are skipped and reported as one error line each, never raised."""
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    for directory in dirs:
        try:
            paths = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in THEME_SUFFIXES)
        except FileNotFoundError:
            continue  # no user themes: the usual case
        except OSError as exc:
            errors.append(f"{directory}: cannot read the themes folder: {exc.strerror or exc}")
            continue
        for path in paths:
            try:
                theme = load_theme_file(path)
            except ThemeError as exc:
                errors.append(str(exc))
            else:
                themes[theme.name] = theme  # a later folder's theme replaces one of the same name
    return list(themes.values()), errors


def register_themes(app: App[Any], requested: str | None) -> str:
    """Register the bundled and user themes on `app` and return the theme name to use.

    Each bad file gives one error notification and is skipped; an unknown `requested` name
    gives one warning listing the available themes and falls back to DEFAULT_THEME, so a typo
    in `--theme` or a broken file never keeps the operator out of the runbook. The caller
    assigns the result to `app.theme`.
    """
    themes, errors = load_themes([BUNDLED_THEME_DIR, user_theme_dir()])
    for theme in themes:
        app.register_theme(theme)
    for error in errors:
        app.notify(error, title="Theme file skipped", severity="error", timeout=NOTIFY_SECONDS, markup=False)
    available = app.available_themes
    fallback = DEFAULT_THEME if DEFAULT_THEME in available else "textual-dark"
    if requested is None or requested in available:
        return requested or fallback
    app.notify(
        f"Unknown theme '{requested}'{did_you_mean(requested, available)}; using '{fallback}'. "
        f"Available: {', '.join(sorted(available))}.",
        title="Unknown theme",
        severity="warning",
        timeout=NOTIFY_SECONDS,
        markup=False,
    )
    return fallback


def _parse_theme(src: YamlSource, text: str) -> Theme:
    root = src.compose(text)
    if root is None:
        raise ThemeError("empty theme file: a theme needs at least 'name' and 'primary'", src.path)
    entries = src.mapping(root, "a theme file")
    src.check_keys(entries, THEME_KEYS, "a theme")
    for required in ("name", "primary"):
        if required not in entries:
            raise src.error(f"missing '{required}': a theme needs at least 'name' and 'primary'", root)
    values: dict[str, Any] = {}
    for key, (_, node) in entries.items():
        if key == "name":
            values[key] = src.text(node, key).strip()
        elif key in COLOR_KEYS:
            values[key] = _color(src, key, node)
        elif key == "dark":
            values[key] = _bool(src, key, node)
        elif key in FRACTION_KEYS:
            values[key] = _fraction(src, key, node)
        else:
            values[key] = _variables(src, node)
    return Theme(**values)


def _color(src: YamlSource, key: str, node: yaml.Node) -> str:
    """The color as written, once Textual has accepted it (it parses it again when applied)."""
    value = src.text(node, key).strip()
    try:
        Color.parse(value)
    except ColorParseError as exc:
        hint = f" (did you mean '{exc.suggested_color}'?)" if exc.suggested_color else ""
        raise src.error(f"{key}: '{value}' is not a color{hint}; use #rrggbb, rgb(...), hsl(...) or a name", node)
    return value


def _bool(src: YamlSource, key: str, node: yaml.Node) -> bool:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL_TAG:
        raise src.error(f"{key}: expected true or false, got {describe(node)}", node)
    return node.value.lower() in ("true", "yes", "on")


def _fraction(src: YamlSource, key: str, node: yaml.Node) -> float:
    text = src.scalar(node, key)
    try:
        value = float(text) if text is not None and node.tag in _NUMBER_TAGS else -1.0
    except ValueError:  # YAML's .inf and .nan
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise src.error(f"{key}: expected a number from 0 to 1, got {text!r}", node)
    return value


def _variables(src: YamlSource, node: yaml.Node) -> dict[str, str]:
    """Extra CSS variables (`footer-key-foreground: "#ffb000"`). A value Textual rejects would
    only fail when the theme is applied, crashing the app, so Textual's own variables are
    checked here as the kind they are (a color, or a text style such as `bold`); variables of
    the app's own are kept as written."""
    kinds = _textual_variable_kinds()
    variables: dict[str, str] = {}
    for name, (key_node, value_node) in src.mapping(node, "variables").items():
        if not _VARIABLE_NAME.match(name):
            raise src.error(f"variables: '{name}' is not a CSS variable name (letters, digits, - and _)", key_node)
        value = src.text(value_node, f"variables.{name}").strip()
        kind = kinds.get(name)
        if any(c in value for c in ";{}") or (kind and not _valid_css(kind, value)):
            raise src.error(f"variables.{name}: '{value}' is not {_KIND_NAMES.get(kind or '', 'a CSS value')}",
                            value_node)
        variables[name] = value
    return variables


_KIND_NAMES = {"color": "a color", "text-style": "a text style (bold, italic, underline, reverse, none, ...)"}


@functools.cache
def _textual_variable_kinds() -> dict[str, str]:
    """Each variable Textual's themes define, and the CSS property its value must suit."""
    defaults = ColorSystem(primary="#000000").generate()
    return {name: "color" if _valid_css("color", value) else "text-style" for name, value in defaults.items()}


def _valid_css(prop: str, value: str) -> bool:
    try:
        Styles.parse(f"{prop}: {value};", read_from=("theme", ""))
    except Exception:  # Textual's parser raises several error types; any of them means no
        return False
    return True
