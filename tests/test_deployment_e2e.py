"""The bundled ConsultantPro deployment runbook, walked end to end against the real things:
a git repository at the release tag, the keyring secret from a real Secret Service, and
`web`/`worker` containers on a real Docker engine whose logs the runbook tails.

Only the application is a stand-in: `src/manage.py` prints what it was asked (and uses the
database password the way Django would, from the environment), and `docker compose` is a small
shim that maps compose verbs onto the real engine's containers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from runbook_tui.audit.transcript import read_events
from tests.docker_engine import DockerEngine
from tests.paths import RUNBOOKS

PASSWORD = "Corr3ct-Horse!batt€ry"
TAG = "v2026.11.26"

MANAGE_PY = """\
import os, sys
args = " ".join(sys.argv[1:])
print(f"manage.py {args}: ok (database password {os.environ['DB_PASSWORD']})")
"""

DOCKER_SHIM = """\
#!/bin/sh
# docker compose, as far as the deployment runbook needs it, on the test engine
[ "$1" = compose ] || exec /usr/bin/docker "$@"
shift
case "$1" in
  config|build) echo "compose $*: ok" ;;
  up) shift; shift; for s in "$@"; do /usr/bin/docker restart "$(/usr/bin/docker ps -q -f label=com.docker.compose.service=$s)"; done ;;
  ps) /usr/bin/docker ps -f label=com.docker.compose.project=consultantpro --format '{{.Names}} {{.State}}' ;;
  logs) service=$2; shift 2; /usr/bin/docker logs "$@" "$(/usr/bin/docker ps -q -f label=com.docker.compose.service=$service)" ;;
  *) echo "compose $1: not in this shim" >&2; exit 2 ;;
esac
"""


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Release Bot", "GIT_AUTHOR_EMAIL": "release@example.com",
           "GIT_COMMITTER_NAME": "Release Bot", "GIT_COMMITTER_EMAIL": "release@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def test_deployment_runbook_end_to_end(docker_engine: DockerEngine, secret_service: dict[str, str],
                                       tmp_path: Path) -> None:
    repo = tmp_path / "consultantpro"
    (repo / "src").mkdir(parents=True)
    for name in ("deployment.md", "rollback.md", "backup-restore.md", "incident-response.md"):
        shutil.copy(RUNBOOKS / name, repo / name)
    (repo / "src" / "manage.py").write_text(MANAGE_PY)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Release Engineer")
    git(repo, "config", "user.email", "release@example.com")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "release")
    git(repo, "tag", TAG)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "docker").write_text(DOCKER_SHIM)
    (shim / "docker").chmod(0o755)
    for service in ("web", "worker"):
        docker_engine.run(f"while true; do echo {service}-heartbeat; sleep 0.3; done",
                          name=docker_engine.unique(service),
                          labels={"com.docker.compose.service": service, "com.docker.compose.project": "consultantpro"})

    env = {**secret_service, "DOCKER_HOST": docker_engine.base_url, "PATH": f"{shim}:{os.environ['PATH']}",
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "RUNBOOK_TUI_LOCK_DIR": str(tmp_path / "locks")}

    def rbt(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runbook_tui", *args], cwd=repo, env=env, input=stdin,
                              capture_output=True, text=True, timeout=240)

    assert rbt("secrets", "check", "deployment.md").returncode == 1  # not stored yet
    assert rbt("secrets", "set", "consultantpro/db-password", stdin=PASSWORD).returncode == 0
    assert "DB_PASSWORD  keyring:consultantpro/db-password  stored" in rbt("secrets", "check", "deployment.md").stdout
    assert rbt("trust", "deployment.md").returncode == 0

    transcript = tmp_path / "deploy.jsonl"
    done = rbt("run", "deployment.md", "--yes", "--confirm-high-risk", "--var", f"RELEASE_TAG={TAG}",
               "--transcript", str(transcript))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]

    events = list(read_events(transcript))
    started = events[0]
    assert started["type"] == "run.started"
    assert started["git"]["head"] == git(repo, "rev-parse", "HEAD").strip()
    assert started["git"]["tag"] == TAG and started["git"]["branch"] == "main" and not started["git"]["dirty"]
    assert started["secrets"] == ["DB_PASSWORD"] and started["variables"]["RELEASE_TAG"] == TAG
    assert started["operator"]["git_user"] == "Release Engineer"
    statuses = {e["task_id"]: e["status"] for e in events if e["type"] == "task.finished"}
    assert set(statuses.values()) <= {"done", "manual"} and len(statuses) == sum(1 for _ in _tasks(repo))
    typed = [e for e in events if e["type"] == "confirm.answered" and e.get("typed")]
    assert {e["task_id"] for e in typed} >= {"5.1.2", "5.1.3"}  # migrate and restart: high risk
    output = "".join(e["text"] for e in events if e["type"] == "output")
    assert "web-heartbeat" in output and "worker-heartbeat" in output  # container logs, via compose logs
    assert "database password [REDACTED:DB_PASSWORD]" in output
    for fmt in ("md", "json", "cast"):
        exported = rbt("transcript", "export", str(transcript), "--format", fmt)
        assert exported.returncode == 0 and PASSWORD not in exported.stdout
    assert PASSWORD not in transcript.read_text() and PASSWORD not in done.stdout + done.stderr
    assert rbt("transcript", "verify", str(transcript)).returncode == 0
    attached = rbt("transcript", "attach", str(transcript), "--git-note")
    assert attached.returncode == 0, attached.stderr
    note = git(repo, "notes", "--ref", "runbook-tui", "show", "HEAD")
    assert "Deployment Procedures" in note and PASSWORD not in note


def _tasks(repo: Path):
    from runbook_tui.parse import load_runbook

    return load_runbook(repo / "deployment.md").tasks()
