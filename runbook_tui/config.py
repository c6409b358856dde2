"""The user's settings file: `config.yaml` in the user config dir.

```yaml
theme: runbook-high-contrast
keymap:            # binding id -> keys (see README "Keys" for the ids)
  task.skip: ctrl+s
  app.quit: ctrl+q
signing:           # sign each finished transcript (ssh-keygen -Y sign; README "Verifying a transcript")
  key: ~/.ssh/id_ed25519.pub   # a private key file, or a public key whose private half ssh-agent holds
  agent: true                  # use ssh-agent (`signing: agent` alone: the first key the agent holds)
checkpoints:       # send the chain head to a syslog collector during the run
  syslog: tcp://logs.example.com:6514
  interval: 2      # seconds between checkpoints while events arrive (task ends send at once)
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import yaml

from runbook_tui.parse.errors import RunbookError, did_you_mean

KEYS = ("theme", "keymap", "signing", "checkpoints")
SIGNING_KEYS = ("key", "agent")
CHECKPOINT_KEYS = ("syslog", "interval")
# How often the chain head goes to the collector while events arrive: short enough that a
# rewrite of the last seconds of a run is all an attacker could hide, rare enough to cost nothing.
DEFAULT_CHECKPOINT_INTERVAL = 2.0


@dataclass(frozen=True)
class SigningSettings:
    """Which SSH key signs finished transcripts: a key file, or one held by ssh-agent."""

    key: Path | None = None
    agent: bool = False


@dataclass(frozen=True)
class CheckpointSettings:
    """Where the chain head goes during a run: `tcp://host:port` of an RFC 5424 syslog collector."""

    syslog: str
    interval: float = DEFAULT_CHECKPOINT_INTERVAL


@dataclass(frozen=True)
class Config:
    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)
    signing: SigningSettings | None = None
    checkpoints: CheckpointSettings | None = None


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
        raise RunbookError("the settings file must be a mapping (theme:, keymap:, signing:, checkpoints:)", name)
    for key in data:
        if key not in KEYS:
            raise RunbookError(f"unknown setting '{key}'{did_you_mean(str(key), KEYS)}", name, _line_of(path, key))
    keymap = data.get("keymap") or {}
    if not isinstance(keymap, dict) or not all(isinstance(v, str) for v in keymap.values()):
        raise RunbookError("keymap: expected binding ids mapped to keys, e.g. task.skip: ctrl+s", name,
                           _line_of(path, "keymap"))
    theme = data.get("theme")
    return Config(theme=str(theme) if theme is not None else None, keymap={str(k): v for k, v in keymap.items()},
                  signing=_signing(data.get("signing"), path), checkpoints=_checkpoints(data.get("checkpoints"), path))


def _section(value: object, path: Path, key: str, keys: tuple[str, ...], example: str) -> dict[str, object]:
    """A settings sub-mapping with known keys only, else a RunbookError at its line."""
    if not isinstance(value, dict):
        raise RunbookError(f"{key}: expected a mapping, e.g. {example}", str(path), _line_of(path, key))
    for sub in value:
        if sub not in keys:
            raise RunbookError(f"{key}: unknown setting '{sub}'{did_you_mean(str(sub), keys)}", str(path),
                               _line_of(path, sub))
    return value


def syslog_address(target: object) -> tuple[str, int]:
    """`tcp://host:port` -> (host, port); ValueError for anything else."""
    match = re.fullmatch(r"tcp://([^\s/:]+):(\d+)", target) if isinstance(target, str) else None
    if not match or not 0 < int(match[2]) < 65536:
        raise ValueError(f"not a syslog target: {target!r} (expected tcp://HOST:PORT)")
    return match[1], int(match[2])


def _signing(value: object, path: Path) -> SigningSettings | None:
    if value is None:
        return None
    if value == "agent":
        return SigningSettings(agent=True)
    example = "signing: {key: ~/.ssh/id_ed25519}"
    section = _section(value, path, "signing", SIGNING_KEYS, example)
    key, agent = section.get("key"), section.get("agent", False)
    if key is not None and not isinstance(key, str) or not isinstance(agent, bool):
        raise RunbookError(f"signing: key is a file name and agent is true or false, e.g. {example}", str(path),
                           _line_of(path, "signing"))
    if key is None and not agent:
        raise RunbookError(f"signing: name a key or say agent: true, e.g. {example}", str(path),
                           _line_of(path, "signing"))
    return SigningSettings(key=Path(key).expanduser() if key else None, agent=agent)


def _checkpoints(value: object, path: Path) -> CheckpointSettings | None:
    if value is None:
        return None
    example = 'checkpoints: {syslog: "tcp://127.0.0.1:6514"}'
    section = _section(value, path, "checkpoints", CHECKPOINT_KEYS, example)
    target, interval = section.get("syslog"), section.get("interval", DEFAULT_CHECKPOINT_INTERVAL)
    try:
        syslog_address(target)
    except ValueError:
        raise RunbookError(f"checkpoints: syslog must be tcp://HOST:PORT, e.g. {example}", str(path),
                           _line_of(path, "syslog")) from None
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 3600:
        raise RunbookError("checkpoints: interval is a number of seconds (0 < interval <= 3600)", str(path),
                           _line_of(path, "interval"))
    return CheckpointSettings(syslog=target, interval=float(interval))


def _line_of(path: Path, key: object) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith(f"{key}:"):
            return number
    return 1
