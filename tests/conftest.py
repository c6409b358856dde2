"""Fixtures for real components, registered once so a session-scoped engine is started once."""

from tests.docker_engine import docker_engine  # noqa: F401
from tests.secret_service import secret_service  # noqa: F401
from tests.ssh_fleet import fleet_home, partitioned_host, ssh_fleet  # noqa: F401

import pytest


@pytest.fixture(autouse=True)
def private_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own config, state and lock directories: trust, settings, transcripts and
    run locks never come from (or land in) the real user's, and tests cannot see each other's."""
    root = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(root / "state"))
    monkeypatch.setenv("RUNBOOK_TUI_LOCK_DIR", str(root / "locks"))
