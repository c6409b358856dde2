"""Repository facts for the audit trail (GitPython), and git notes that carry a run's record.

`repo_facts` never fails a run: outside a repository, on a detached HEAD, in an empty or
shallow clone, the facts say so instead. Remote URLs lose any credentials before they are
recorded. `attach_note` / `attach_transcript` are explicit operator actions, so they raise
GitError with git's own message when they cannot do what was asked; the note carries the
transcript's signature (`FILE.sig`) when there is one.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

NOTES_REF = "refs/notes/runbook-tui"
_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@", re.IGNORECASE)


class GitError(Exception):
    """A git operation the operator asked for failed; the message says which and why."""


def strip_credentials(url: str) -> str:
    """`https://user:token@host/x.git` -> `https://host/x.git`.

    A token may sit in the user part alone (`https://ghp_x@host/`), so all user info goes,
    except a bare ssh login name (`ssh://git@host/x`), which is no secret. scp-like
    `git@host:x` has no scheme and stays as is.
    """
    match = _USERINFO.match(url)
    if not match:
        return url
    scheme, userinfo = match["scheme"].lower(), match["userinfo"]
    if scheme in ("ssh://", "git+ssh://", "ssh+git://") and ":" not in userinfo:
        return url
    return match["scheme"] + url[match.end():]


def repo_facts(runbook_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Facts about the repository holding `runbook_path` (and the cwd's, when it differs).

    A runbook kept outside any repository (a shared ops folder) is run against the release
    checked out in the working directory: then the cwd's repository is the run's.
    """
    runbook = Path(runbook_path).resolve()
    facts = _facts_for(runbook.parent, runbook)
    cwd_facts = _facts_for(Path.cwd(), None)
    if cwd_facts.get("repo") and facts.get("repo") is None:
        return {**cwd_facts, "runbook_in_repo": False,
                "note": "; ".join(filter(None, ["the runbook is outside any repository: these are the working "
                                                "directory's", cwd_facts.get("note")]))}
    if cwd_facts.get("repo") and cwd_facts.get("repo") != facts.get("repo"):
        facts["cwd_repo"] = cwd_facts
    return facts


def _in_repository(directory: Path) -> bool:
    """A `.git` here or above: checked before paying ~40 ms to import GitPython."""
    return any((parent / ".git").exists() for parent in (directory, *directory.parents))


def _facts_for(directory: Path, runbook: Path | None) -> dict[str, Any]:
    if not _in_repository(directory):
        return {"repo": None, "note": "not in a git repository"}
    try:
        import git
    except ImportError as exc:  # GitPython missing, or no git executable at all
        return {"repo": None, "note": f"git is not available: {exc}"}
    try:
        repo = git.Repo(directory, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return {"repo": None, "note": "not in a git repository"}
    except Exception as exc:  # noqa: BLE001 - facts must never stop a run
        return {"repo": None, "note": f"git failed: {_reason(exc)}"}
    try:
        return _describe(repo, runbook)
    except Exception as exc:  # noqa: BLE001 - e.g. a corrupt repository or "dubious ownership"
        return {"repo": repo.working_tree_dir, "note": f"git failed: {_reason(exc)}"}
    finally:
        repo.close()


def _reason(exc: Exception) -> str:
    """One line for the transcript: git's `fatal:`/`error:` line, else the first line there is."""
    stderr = getattr(exc, "stderr", None)
    text = stderr.strip() if isinstance(stderr, str) and stderr.strip() else str(exc)
    if text.startswith("stderr: '") and text.endswith("'"):  # GitCommandError's quoting
        text = text[len("stderr: '"):-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith(("fatal:", "error:"))), lines[0] if lines else
                type(exc).__name__)


def _describe(repo: Any, runbook: Path | None) -> dict[str, Any]:
    facts: dict[str, Any] = {"repo": repo.working_tree_dir}
    facts["user"] = _config(repo, "user.name")
    facts["email"] = _config(repo, "user.email")
    facts["shallow"] = repo.git.rev_parse("--is-shallow-repository") == "true"
    facts["remote"] = _remote(repo)
    if not repo.head.is_valid():
        missing = _rev_parse(repo, "HEAD")
        if missing:  # not unborn: HEAD names a commit that is not there
            raise ValueError(f"HEAD points at a missing commit {missing}")
        facts.update(head=None, branch=_unborn_branch(repo), tag=None, dirty=repo.is_dirty(untracked_files=False),
                     note="empty repository (no commits yet)")
        if runbook is not None:
            facts.update(runbook_last_commit=None, runbook_uncommitted=True)
        return facts
    facts["head"] = repo.head.commit.hexsha
    facts["branch"] = None if repo.head.is_detached else repo.active_branch.name
    if repo.head.is_detached:
        facts["note"] = "detached HEAD"
    facts["tag"] = _describe_tag(repo)
    facts["dirty"] = repo.is_dirty(untracked_files=False)
    if runbook is not None and repo.working_tree_dir:
        relative = os.path.relpath(runbook, repo.working_tree_dir)
        last = next(repo.iter_commits(paths=relative, max_count=1), None)
        facts["runbook_last_commit"] = last.hexsha if last else None
        changed = bool(repo.git.status("--porcelain", "--", relative).strip())
        facts["runbook_uncommitted"] = changed or last is None
    return facts


def _config(repo: Any, key: str) -> str | None:
    try:
        return repo.git.config("--get", key) or None
    except Exception:  # noqa: BLE001 - an unset key is an error exit in git
        return None


def _rev_parse(repo: Any, rev: str) -> str | None:
    try:
        return repo.git.rev_parse("--verify", "--quiet", rev) or None
    except Exception:  # noqa: BLE001 - unresolvable is an error exit in git
        return None


def _unborn_branch(repo: Any) -> str | None:
    """The branch the first commit will land on (HEAD names it before it exists)."""
    try:
        return repo.git.symbolic_ref("--short", "HEAD") or None
    except Exception:  # noqa: BLE001
        return None


def _remote(repo: Any) -> str | None:
    """origin's URL (else the first remote's), without credentials."""
    remotes = {r.name: r for r in repo.remotes}
    remote = remotes.get("origin") or next(iter(remotes.values()), None)
    if remote is None:
        return None
    try:
        url = next(iter(remote.urls), None)
    except Exception:  # noqa: BLE001 - a remote with no url
        return None
    return strip_credentials(url) if url else None


def _describe_tag(repo: Any) -> str | None:
    """`git describe --tags`: `v1.2` on the tag, `v1.2-3-gabc1234` after it; None with no tag."""
    try:
        return repo.git.describe("--tags") or None
    except Exception:  # noqa: BLE001 - no tag reachable (or a shallow clone without it)
        return None


def _git(repo_path: str | os.PathLike[str], *args: str, stdin: str | None = None) -> str:
    """Run git in `repo_path`; GitError carrying git's message when it fails."""
    try:
        import git

        executable = git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"
    except ImportError:
        executable = "git"
    try:
        done = subprocess.run([executable, "-C", os.fspath(repo_path), *args], input=stdin, capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]} could not run in {repo_path}: {exc}") from exc
    if done.returncode != 0:
        raise GitError(f"git {args[0]} failed in {repo_path}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout.strip()


def attach_note(repo_path: str | os.PathLike[str], commit: str, text: str, ref: str = NOTES_REF) -> str:
    """Add `text` to the git note on `commit` under `ref`; returns the full commit id.

    Appends (`git notes append`), never overwrites: a release commit may be run against more
    than once (a rollback, a retry) and every run's record must survive. git normalises
    whitespace in notes (trailing blanks, repeated blank lines).

    The note lives on the (peeled) commit. `git notes show v1.2` looks up the object a name
    resolves to, which for an annotated tag is the tag object, not the commit; so the same text
    is also appended to each annotated tag that points at the commit now. (For a tag made
    later: `git notes --ref runbook-tui show 'v1.2^{}'`.)
    """
    try:
        sha = _git(repo_path, "rev-parse", "--verify", "--end-of-options", f"{commit}^{{commit}}")
    except GitError as exc:
        raise GitError(f"no commit {commit!r} in {repo_path} ({exc})") from None
    _git(repo_path, "notes", "--ref", ref, "append", "--file=-", sha, stdin=text)
    listing = _git(repo_path, "for-each-ref", f"--points-at={sha}", "--format=%(objecttype) %(objectname)",
                   "refs/tags")
    for tag_object in sorted({line.split()[1] for line in listing.splitlines() if line.startswith("tag ")}):
        _git(repo_path, "notes", "--ref", ref, "append", "--file=-", tag_object, stdin=text)
    return sha


def attach_transcript(transcript_path: str | os.PathLike[str], commit: str | None = None,
                      repo: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """Attach a run's Markdown export as a note on the commit it ran from; (repo, commit id).

    By default both come from the transcript's run.started event (git.repo, git.head), so the
    note lands on the commit the run actually used, not on whatever HEAD is now.
    """
    from runbook_tui.audit.export import export
    from runbook_tui.audit.signing import note_text
    from runbook_tui.audit.transcript import TranscriptError, read_events

    try:
        started = next((e for e in read_events(transcript_path) if e.get("type") == "run.started"), None)
    except (OSError, TranscriptError) as exc:
        raise GitError(f"cannot read {transcript_path}: {exc}") from exc
    if started is None:
        raise GitError(f"{transcript_path} has no run.started event")
    facts = started.get("git") or {}
    where = repo or facts.get("repo")
    if not where:
        raise GitError(f"{transcript_path}: the run was not in a git repository "
                       f"({facts.get('note') or 'no git facts recorded'}); give the repository and --commit")
    target = commit or facts.get("head")
    if not target:
        raise GitError(f"{transcript_path}: no commit recorded ({facts.get('note') or 'no HEAD'}); pass --commit REV")
    text = export(transcript_path, "md")
    signature = note_text(transcript_path)
    return os.fspath(where), attach_note(where, target, f"{text.rstrip()}\n\n{signature}" if signature else text)
