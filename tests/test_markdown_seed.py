"""The seed deployment runbook (tests/seed/DEPLOYMENT.md) parses exactly as an operator reads it."""

from __future__ import annotations

import pytest

from runbook_tui.model import Runbook
from runbook_tui.parse import load_runbook
from tests.paths import SEED

SEED_COMMANDS = [
    "python src/manage.py check",
    "python src/manage.py makemigrations --check --dry-run",
    "docker compose build",
    "python src/manage.py migrate --noinput",
    "docker compose up -d web worker",
    'python src/manage.py shell -c "from modules.jobs.models import JobQueue; '
    'print(JobQueue.objects.pending().count())"',
    "docker compose logs web --tail=100",
]


@pytest.fixture(scope="module")
def seed() -> Runbook:
    return load_runbook(SEED)


def test_title_and_metadata(seed: Runbook) -> None:
    assert seed.title == "Deployment Procedures"
    assert seed.owner == "Release Engineering"
    assert seed.severity == "High (user-impacting changes)"
    assert seed.meta("last_updated") == "2026-01-04"


def test_sections_and_their_kind(seed: Runbook) -> None:
    kinds = {s.title: s.procedural for s in seed.sections}
    assert kinds == {
        "Overview": False,
        "Symptoms": False,
        "Impact": False,
        "Investigation Steps": True,
        "Resolution Steps": True,
        "Prevention": False,
        "Related Resources": False,
    }
    assert [s.id for s in seed.sections] == ["1", "2", "3", "4", "5", "6", "7"]


def test_steps_of_investigation_and_resolution(seed: Runbook) -> None:
    investigation, resolution = (s for s in seed.sections if s.procedural)
    assert [s.title for s in investigation.steps] == [
        "Pre-flight checks",
        "Verify configuration",
        "Dry run critical commands",
    ]
    assert [s.title for s in resolution.steps] == [
        "Deploy application",
        "Post-deploy verification",
        "Rollback if needed",
        "Communicate",
    ]
    assert [s.id for s in resolution.steps] == ["5.1", "5.2", "5.3", "5.4"]
    optional = {s.title for s in seed.steps() if s.optional}
    assert optional == {"Rollback if needed"}


def test_the_seven_commands_are_command_tasks_with_exact_text(seed: Runbook) -> None:
    assert [t.command for t in seed.commands()] == SEED_COMMANDS
    assert all(t.kind == "command" for t in seed.commands())


def test_every_other_list_item_is_a_manual_task(seed: Runbook) -> None:
    manual = [t.text for t in seed.tasks() if t.kind == "manual"]
    assert manual == [
        "Confirm CI is green for the release commit.",
        "Review changelog entries and migration notes.",
        "Ensure required environment variables are set for the target environment.",
        "Validate secrets are provisioned via the secrets manager (never in code).",
        "Run smoke tests on auth, deals, automation triggers, and webhooks (happy paths).",
        "Re-deploy previous artifact/tag.",
        "If migrations introduced failures, execute documented rollback procedures.",
        "Announce start/end of deployment in #engineering and incident channels if applicable.",
        "Update release notes/CHANGELOG.md with user-impacting changes.",
    ]
    assert all(t.command is None for t in seed.tasks() if t.kind == "manual")


def test_task_ids_are_dotted_positions(seed: Runbook) -> None:
    deploy = seed.find("5.1")
    assert deploy is not None and deploy.title == "Deploy application"
    assert [t.id for t in deploy.tasks] == ["5.1.1", "5.1.2", "5.1.3"]
    migrate = seed.find("5.1.2")
    assert migrate is not None and migrate.command == "python src/manage.py migrate --noinput"
    assert migrate.line == 31


def test_related_runbooks(seed: Runbook) -> None:
    assert [(r.title, r.target) for r in seed.related] == [
        ("Rollback Procedures", "./ROLLBACK.md"),
        ("Backup and Restore", "./BACKUP_RESTORE.md"),
        ("Incident Response Runbook", "./INCIDENT_RESPONSE.md"),
    ]


def test_reading_sections_keep_their_text(seed: Runbook) -> None:
    overview = seed.sections[0]
    assert overview.steps == ()
    assert "Standardized deployment checklist" in overview.markdown


def test_no_variables_are_required(seed: Runbook) -> None:
    assert seed.required_variables == ()
    assert seed.placeholders == ()
