"""Fixtures for real components, registered once so a session-scoped engine is started once."""

from tests.docker_engine import docker_engine  # noqa: F401
from tests.secret_service import secret_service  # noqa: F401
