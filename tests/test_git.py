"""Repository facts and git notes against real repositories made with the git binary."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runbook_tui.audit.signing import NAMESPACE, sign_transcript
from runbook_tui.audit.transcript import Transcript
from runbook_tui.config import SigningSettings
from runbook_tui.integrations.git import GitError, attach_note, attach_transcript, repo_facts, strip_credentials
from tests.ssh_agent import Agent, ssh_agent  # noqa: F401 - the fixture


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git config; a fixed identity for commits and notes; cwd outside any repo."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test Operator")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "ops@example.com")
    monkeypatch.chdir(tmp_path)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, runbook: str = "runbook.md") -> Path:
    """main: commit 1 adds the runbook, tagged v1.0; commit 2 touches another file."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Repo User")
    (path / runbook).write_text("# Deploy\n")
    git(path, "add", runbook)
    git(path, "commit", "-q", "-m", "add runbook")
    git(path, "tag", "v1.0")
    (path / "app.txt").write_text("1\n")
    git(path, "add", "app.txt")
    git(path, "commit", "-q", "-m", "app")
    return path


@pytest.mark.parametrize("url, stripped", [
    ("https://user:tok@host/x.git", "https://host/x.git"),
    ("https://ghp_token@github.com/o/r.git", "https://github.com/o/r.git"),
    ("https://user:p@ss@host:8443/x.git", "https://host:8443/x.git"),
    ("http://host/x.git", "http://host/x.git"),
    ("ssh://git@host/x.git", "ssh://git@host/x.git"),
    ("ssh://git:secret@host/x.git", "ssh://host/x.git"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ("file:///srv/repo.git", "file:///srv/repo.git"),
    ("https://host/path@v1/x.git", "https://host/path@v1/x.git"),
])
def test_strip_credentials(url: str, stripped: str) -> None:
    assert strip_credentials(url) == stripped


def test_normal_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "https://user:tok@host/x.git")
    facts = repo_facts(repo / "runbook.md")
    first = git(repo, "rev-list", "--max-parents=0", "HEAD")
    assert facts["repo"] == str(repo)
    assert facts["head"] == git(repo, "rev-parse", "HEAD")
    assert facts["branch"] == "main" and facts["user"] == "Repo User"
    assert facts["tag"] == f"v1.0-1-g{git(repo, 'rev-parse', '--short=7', 'HEAD')}"
    assert facts["remote"] == "https://host/x.git"
    assert "tok" not in str(facts)
    assert facts["dirty"] is False and facts["shallow"] is False
    assert facts["runbook_last_commit"] == first and facts["runbook_uncommitted"] is False
    assert "note" not in facts and "cwd_repo" not in facts

    git(repo, "checkout", "-q", "v1.0")
    assert repo_facts(repo / "runbook.md")["tag"] == "v1.0"


def test_modified_and_untracked_runbooks(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "runbook.md").write_text("# Deploy, edited\n")
    facts = repo_facts(repo / "runbook.md")
    assert facts["dirty"] is True and facts["runbook_uncommitted"] is True
    assert facts["runbook_last_commit"] is not None
    git(repo, "checkout", "-q", "--", "runbook.md")

    (repo / "docs").mkdir()
    (repo / "docs" / "new.md").write_text("# New\n")
    facts = repo_facts(repo / "docs" / "new.md")
    assert facts["dirty"] is False  # untracked files alone do not make the tree dirty
    assert facts["runbook_uncommitted"] is True and facts["runbook_last_commit"] is None


def test_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "runbook.md").write_text("# x\n")
    facts = repo_facts(tmp_path / "runbook.md")
    assert facts == {"repo": None, "note": "not in a git repository"}


def test_outside_a_repository_gitpython_is_not_even_imported(tmp_path: Path) -> None:
    """`run` pays for GitPython only where there is a repository to describe."""
    (tmp_path / "runbook.md").write_text("# x\n")
    code = ("import sys; from runbook_tui.integrations.git import repo_facts; "
            f"facts = repo_facts({str(tmp_path / 'runbook.md')!r}); print(facts['note'], 'git' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "not in a git repository False"
    assert repo_facts(tmp_path / "missing" / "runbook.md")["repo"] is None


def test_cwd_in_another_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ops, app = make_repo(tmp_path / "ops"), make_repo(tmp_path / "app")
    monkeypatch.chdir(app)
    facts = repo_facts(ops / "runbook.md")
    assert facts["repo"] == str(ops) and facts["cwd_repo"]["repo"] == str(app)
    assert "runbook_last_commit" not in facts["cwd_repo"]


def test_detached_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    facts = repo_facts(repo / "runbook.md")
    assert facts["branch"] is None and facts["note"] == "detached HEAD"
    assert facts["head"] == git(repo, "rev-parse", "HEAD") and facts["tag"] == "v1.0"


def test_empty_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "trunk")
    (repo / "runbook.md").write_text("# x\n")
    facts = repo_facts(repo / "runbook.md")
    assert facts["head"] is None and facts["branch"] == "trunk" and facts["tag"] is None
    assert facts["note"] == "empty repository (no commits yet)"
    assert facts["dirty"] is False and facts["runbook_uncommitted"] is True
    git(repo, "add", "runbook.md")
    assert repo_facts(repo / "runbook.md")["dirty"] is True


def test_shallow_clone(tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{origin}", str(clone)], check=True)
    facts = repo_facts(clone / "runbook.md")
    assert facts["shallow"] is True
    assert facts["head"] == git(origin, "rev-parse", "HEAD")
    assert facts["remote"] == f"file://{origin}"
    assert facts["runbook_last_commit"] == facts["head"]  # the only commit the clone has
    assert facts["runbook_uncommitted"] is False and facts["dirty"] is False


@pytest.mark.parametrize("damage, note", [
    ("gitdir-file", "not in a git repository"),
    ("missing-head-commit", "git failed: HEAD points at a missing commit"),
    ("dubious-ownership", "git failed: fatal: detected dubious ownership"),
])
def test_broken_repositories_do_not_raise(tmp_path: Path, damage: str, note: str) -> None:
    repo = make_repo(tmp_path / "repo")
    if damage == "gitdir-file":
        shutil.rmtree(repo / ".git")
        (repo / ".git").write_text("gitdir: /nonexistent/x.git\n")
    elif damage == "missing-head-commit":
        (repo / ".git" / "refs" / "heads" / "main").write_text("0123456789" * 4 + "\n")
    else:
        if os.geteuid() != 0:
            pytest.skip("needs root to give the repository to another user")
        subprocess.run(["chown", "-R", "nobody", str(repo)], check=True)
    facts = repo_facts(repo / "runbook.md")
    assert facts["note"].startswith(note), facts


def test_attach_note_appends(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    assert attach_note(repo, "HEAD", "first run: ok\n") == head
    assert attach_note(repo, head[:10], "second run: rolled back\n") == head
    shown = git(repo, "notes", "--ref", "runbook-tui", "show", head)
    assert "first run: ok" in shown and "second run: rolled back" in shown
    assert shown.index("first run") < shown.index("second run")
    assert git(repo, "notes", "list") == ""  # the default notes ref is untouched


def test_attach_note_to_a_missing_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(GitError, match="no commit 'nope'"):
        attach_note(repo, "nope", "x")
    with pytest.raises(GitError, match="no commit"):
        attach_note(tmp_path, "HEAD", "x")  # not a repository


def record_run(path: Path, git_facts: dict) -> None:
    with Transcript.create(path) as t:
        t.append("run.started", run_id="r1", tool_version="0", mode="auto", git=git_facts, secrets=[],
                 runbook={"path": "runbook.md", "sha256": "ab" * 32, "title": "Release 1.0"},
                 operator={"user": "alice", "host": "h", "tty": None, "git_user": None}, variables={})
        t.append("step.entered", step_id="1.1", title="Tag")
        t.append("command.started", task_id="1.1.1", step_id="1.1", command="make release",
                 run_command="make release", cwd=".", container=None, env_names=[], attempt=1)
        t.append("output", task_id="1.1.1", text="released\r\n")
        t.append("command.finished", task_id="1.1.1", exit_code=0, signal=None, duration=0.5, timed_out=False)
        t.append("task.finished", task_id="1.1.1", step_id="1.1", status="done", exit_code=0)
        t.append("run.finished", result="success")


def test_attach_transcript_to_the_recorded_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    recorded = git(repo, "rev-parse", "HEAD")
    transcript = tmp_path / "run.jsonl"
    record_run(transcript, repo_facts(repo / "runbook.md"))
    (repo / "app.txt").write_text("2\n")
    git(repo, "commit", "-q", "-am", "later work")  # HEAD moves on; the note must not follow it

    assert attach_transcript(transcript) == (str(repo), recorded)
    note = git(repo, "notes", "--ref", "runbook-tui", "show", recorded)
    assert "# Runbook run: Release 1.0" in note and "make release" in note and "chain intact" in note

    assert attach_transcript(transcript, commit="HEAD") == (str(repo), git(repo, "rev-parse", "HEAD"))
    attach_transcript(transcript)
    assert git(repo, "notes", "--ref", "runbook-tui", "show", recorded).count("# Runbook run: Release 1.0") == 2


def test_attach_transcript_without_a_recorded_repository(tmp_path: Path) -> None:
    transcript = tmp_path / "run.jsonl"
    record_run(transcript, {"repo": None, "note": "not in a git repository"})
    with pytest.raises(GitError, match="not in a git repository"):
        attach_transcript(transcript)
    repo = make_repo(tmp_path / "repo")
    assert attach_transcript(transcript, commit="v1.0", repo=repo)[1] == git(repo, "rev-parse", "v1.0^{commit}")
    empty = tmp_path / "empty.jsonl"
    record_run(empty, {"repo": str(repo), "head": None, "note": "empty repository (no commits yet)"})
    with pytest.raises(GitError, match="--commit"):
        attach_transcript(empty)
    (tmp_path / "no-start.jsonl").write_text("")
    with pytest.raises(GitError, match="no run.started"):
        attach_transcript(tmp_path / "no-start.jsonl")


# --- issue 14: facts a release manager can use ------------------------------------------------


def annotate(repo: Path, tag: str, rev: str = "HEAD") -> None:
    git(repo, "tag", "-a", tag, "-m", f"release {tag}", rev)


@pytest.mark.parametrize("where", ["at-the-tag", "after-the-tag"])
def test_the_tag_on_a_detached_head_of_an_annotated_release(tmp_path: Path, where: str) -> None:
    repo = make_repo(tmp_path / "repo")
    annotate(repo, "v2.0", "HEAD~1")
    git(repo, "checkout", "-q", "--detach", "v2.0" if where == "at-the-tag" else "main")
    facts = repo_facts(repo / "runbook.md")
    assert facts["branch"] is None and facts["note"] == "detached HEAD"
    short = git(repo, "rev-parse", "--short=7", "HEAD")
    assert facts["tag"] == ("v2.0" if where == "at-the-tag" else f"v2.0-1-g{short}")


def test_the_tag_in_a_shallow_detached_clone_of_a_release(tmp_path: Path) -> None:
    """What a CI job checks out: one commit, detached at the release tag."""
    origin = make_repo(tmp_path / "origin")
    annotate(origin, "v2.0", "HEAD")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "v2.0", f"file://{origin}", str(clone)],
                   check=True, capture_output=True)
    facts = repo_facts(clone / "runbook.md")
    assert (facts["branch"], facts["tag"], facts["shallow"]) == (None, "v2.0", True)


def test_a_runbook_outside_any_repository_records_the_working_directorys(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "ops-runbooks"
    outside.mkdir()
    (outside / "release.md").write_text("# Release\n")
    app = make_repo(tmp_path / "app")
    monkeypatch.chdir(app)
    facts = repo_facts(outside / "release.md")
    assert facts["repo"] == str(app) and facts["head"] == git(app, "rev-parse", "HEAD")
    assert facts["runbook_in_repo"] is False and "outside any repository" in facts["note"]
    assert "runbook_last_commit" not in facts
    transcript = tmp_path / "run.jsonl"
    record_run(transcript, facts)
    assert attach_transcript(transcript) == (str(app), git(app, "rev-parse", "HEAD"))


def test_the_note_is_found_through_an_annotated_and_a_lightweight_tag(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    annotate(repo, "v2.0")
    git(repo, "tag", "v2.0-light")
    transcript = tmp_path / "run.jsonl"
    record_run(transcript, repo_facts(repo / "runbook.md"))
    attach_transcript(transcript)
    for name in ("v2.0", "v2.0-light", "HEAD", "v2.0^{}"):
        assert "# Runbook run: Release 1.0" in git(repo, "notes", "--ref", "runbook-tui", "show", name), name
    with pytest.raises(subprocess.CalledProcessError):
        git(repo, "notes", "--ref", "runbook-tui", "show", "v1.0")  # another commit: no note


def test_the_note_carries_the_signature(tmp_path: Path, ssh_agent: Agent) -> None:  # noqa: F811
    """A reviewer with the note, the transcript and stock OpenSSH can check who ran it."""
    repo = make_repo(tmp_path / "repo")
    transcript = tmp_path / "run.jsonl"
    record_run(transcript, repo_facts(repo / "runbook.md"))
    attach_transcript(transcript)
    assert "Transcript signature" not in git(repo, "notes", "--ref", "runbook-tui", "show", "HEAD")
    pub = ssh_agent.new_key("alice", "alice@example.com", add=True)
    assert sign_transcript(transcript, SigningSettings(key=pub, agent=True)).signed
    attach_transcript(transcript)
    note = git(repo, "notes", "--ref", "runbook-tui", "show", "HEAD")
    assert "ssh-keygen -Y verify" in note and f"-n {NAMESPACE}" in note
    armored = note[note.index("-----BEGIN SSH SIGNATURE-----"):note.index("-----END SSH SIGNATURE-----")]
    (tmp_path / "from-note.sig").write_text(armored + "-----END SSH SIGNATURE-----\n")
    allowed = ssh_agent.allowed_signers(tmp_path / "allowed", **{"alice@example.com": pub})
    with open(transcript, "rb") as data:
        done = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "alice@example.com", "-n",
                               NAMESPACE, "-s", str(tmp_path / "from-note.sig")], stdin=data, capture_output=True,
                              text=True)
    assert done.returncode == 0, done.stderr
