"""The user's settings file: `config.yaml` in the user config dir (theme, key bindings).

```yaml
theme: runbook-high-contrast
keymap:            # binding id -> keys (see README "Keys" for the ids)
  task.skip: ctrl+s
  app.quit: ctrl+q
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import yaml

from runbook_tui.parse.errors import RunbookError, did_you_mean

KEYS = ("theme", "keymap")


@dataclass(frozen=True)
class Config:
    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)


def config_path() -> Path:
    override = os.environ.get("RUNBOOK_TUI_CONFIG")
    return Path(override) if override else Path(platformdirs.user_config_dir("runbook-tui")) / "config.yaml"


def load_config(path: Path | None = None) -> Config:
    """The settings, or defaults when there is no file; a bad file is a RunbookError (exit 2)."""
    path = path or config_path()
    if not path.is_file():
        return Config()
    name = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RunbookError(f"cannot read the settings file: {exc}", name) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RunbookError(f"not valid YAML: {getattr(exc, 'problem', exc)}", name,
                           mark.line + 1 if mark else 1, mark.column + 1 if mark else 1) from None
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise RunbookError("the settings file must be a mapping (theme:, keymap:)", name)
    for key in data:
        if key not in KEYS:
            raise RunbookError(f"unknown setting '{key}'{did_you_mean(str(key), KEYS)}", name, _line_of(path, key))
    keymap = data.get("keymap") or {}
    if not isinstance(keymap, dict) or not all(isinstance(v, str) for v in keymap.values()):
        raise RunbookError("keymap: expected binding ids mapped to keys, e.g. task.skip: ctrl+s", name,
                           _line_of(path, "keymap"))
    theme = data.get("theme")
    return Config(theme=str(theme) if theme is not None else None, keymap={str(k): v for k, v in keymap.items()})


def _line_of(path: Path, key: object) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith(f"{key}:"):
            return number
    return 1
