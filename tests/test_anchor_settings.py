"""config.yaml: which key signs transcripts and where checkpoints go, with located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_tui.audit.checkpoints import Checkpointer
from runbook_tui.config import CheckpointSettings, Config, SigningSettings, load_config
from runbook_tui.parse.errors import RunbookError


@pytest.mark.parametrize(("text", "expected"), [
    ("signing: agent\n", Config(signing=SigningSettings(agent=True))),
    ("signing:\n  key: ~/.ssh/id_ed25519\n", Config(signing=SigningSettings(key=Path("~/.ssh/id_ed25519").expanduser()))),
    ("signing:\n  key: /k.pub\n  agent: true\n", Config(signing=SigningSettings(key=Path("/k.pub"), agent=True))),
    ('checkpoints:\n  syslog: "tcp://logs.example.com:6514"\n  interval: 5\n',
     Config(checkpoints=CheckpointSettings(syslog="tcp://logs.example.com:6514", interval=5.0))),
    ("checkpoints:\n  syslog: tcp://10.0.0.1:514\n", Config(checkpoints=CheckpointSettings(syslog="tcp://10.0.0.1:514"))),
])
def test_settings(tmp_path: Path, text: str, expected: Config) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert load_config(path) == expected


def test_a_checkpointer_from_the_settings() -> None:
    checkpointer = Checkpointer.from_settings(CheckpointSettings(syslog="tcp://logs.example.com:6514"))
    assert checkpointer is not None and checkpointer.target == "tcp://logs.example.com:6514"
    assert Checkpointer.from_settings(None) is None


@pytest.mark.parametrize(("text", "line", "message"), [
    ("theme: x\nsigning:\n  kee: /k\n", 3, "did you mean 'key'"),
    ("signing: yes\n", 1, "expected a mapping"),
    ("signing:\n  agent: false\n", 1, "name a key or say agent: true"),
    ("signing:\n  agent: maybe\n", 1, "agent is true or false"),
    ("checkpoints:\n  syslog: udp://x:514\n", 2, "tcp://HOST:PORT"),
    ("checkpoints:\n  syslog: tcp://x\n", 2, "tcp://HOST:PORT"),
    ("checkpoints:\n  syslog: tcp://x:99999\n", 2, "tcp://HOST:PORT"),
    ("checkpoints:\n  syslog: tcp://x:514\n  interval: 0\n", 3, "interval"),
    ("checkpoints:\n  syslog: tcp://x:514\n  interval: true\n", 3, "interval"),
    ("checkpoints:\n  syslog: tcp://x:514\n  intervall: 2\n", 3, "did you mean 'interval'"),
    ("checkpoint:\n  syslog: tcp://x:514\n", 1, "did you mean 'checkpoints'"),
])
def test_bad_settings_are_located(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(RunbookError) as err:
        load_config(path)
    assert err.value.line == line and message in err.value.message
