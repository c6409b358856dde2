"""Issue 7: every promise to the operator, attacked with real processes, signals, terminals and files.

The promise: the tool never loses the record of what happened, never leaves a process running
behind the operator's back, never lets a command's output drive their terminal, and never runs a
command they did not see. Each test here tries to break one part of it through the headless CLI
(`python -m runbook_tui run BOOK --yes --transcript T` after `trust BOOK`) unless it says
otherwise: no mocks. RELIABILITY.md maps every fault to the test that covers it.

A test marked `xfail(strict=True)` shows a real bug that is reported, not fixed here: it must
keep failing until the fix lands, then the marker goes.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runbook_tui.audit.terminal import TERMINAL_RESET
from runbook_tui.audit.transcript import VerifyResult, read_events, verify
from tests.paths import REPO

PY = sys.executable
ESC = "\x1b"


# ---- helpers -------------------------------------------------------------------------------------

def rbt(*args: str) -> list[str]:
    return [PY, "-m", "runbook_tui", *args]


def user_env(root: Path) -> dict[str, str]:
    """Private config/state/lock directories for fixtures wider than one test (conftest's autouse
    fixture only covers function scope)."""
    return {**os.environ, "XDG_CONFIG_HOME": str(root / "config"), "XDG_STATE_HOME": str(root / "state"),
            "RUNBOOK_TUI_LOCK_DIR": str(root / "locks"), "PYTHONPATH": str(REPO)}


def write(directory: Path, text: str, name: str = "book.md") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI without a terminal (stdin at EOF, output captured)."""
    return subprocess.run(rbt(*args), capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL,
                          cwd=cwd, env=env,
                          timeout=timeout)


def trust(book: Path, env: dict[str, str] | None = None) -> None:
    done = cli("trust", str(book), env=env)
    assert done.returncode == 0, done.stderr


def default_sigint() -> None:
    """preexec_fn: a shell without job control starts background jobs with SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler; give the CLI the disposition a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The CLI in the background, in its own session (a signal to it reaches no one else)."""
    return subprocess.Popen(rbt(*args), cwd=cwd, env=env, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=default_sigint)


def events(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [e for e in read_events(path) if kind is None or e["type"] == kind]


def types(path: Path) -> list[str]:
    return [e["type"] for e in events(path)]


def output_of(path: Path, task_id: str) -> str:
    return "".join(e["text"] for e in events(path, "output") if e["task_id"] == task_id)


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def verified(path: Path) -> VerifyResult:
    result = verify(path)
    assert result.ok, result.reason
    return result


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`, from /proc/*/stat."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def kill_group(pgid: int | None) -> None:
    """Test cleanup only: whatever a failing test left behind."""
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def read_pgid(pidfile: Path) -> int:
    text = wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, f"{pidfile.name}")
    return int(text)


def _controlling_tty() -> None:
    """preexec_fn (after setsid): make the PTY slave on fd 1 our controlling terminal."""
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """A process on its own pseudo-terminal, which is its controlling terminal (an SSH session).

    Closing the master side is a real hangup: the kernel sends SIGHUP to the session leader.
    `stdin_tty=False` keeps stdin at /dev/null (an unattended `--yes` run whose output goes to a
    terminal); otherwise the CLI sees a terminal everywhere and asks its questions there.
    """

    def __init__(self, argv: list[str], *, cwd: Path, stdin_tty: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        termios.tcsetwinsize(slave, (40, 120))
        try:
            self.proc = subprocess.Popen(argv, stdin=slave if stdin_tty else subprocess.DEVNULL, stdout=slave,
                                         stderr=slave, cwd=cwd, env=env, start_new_session=True,
                                         preexec_fn=_controlling_tty)
        finally:
            os.close(slave)
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every slave fd is closed
                return
            if not data:
                return
            with self._lock:
                self._buffer += data

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._buffer)

    def wait_for(self, needle: bytes, timeout: float = 30.0) -> bytes:
        wait_for(lambda: needle in self.output, timeout, f"{needle!r} on the terminal; got {self.output[-600:]!r}")
        return self.output

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def hang_up(self) -> None:
        """Close the terminal, as a dropped SSH connection does (the reader must let go first)."""
        if not self._closed:
            self._stop.set()
            self._thread.join()
            os.close(self.master)
            self._closed = True

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code; keeps reading the terminal until then if it is still open."""
        code = self.proc.wait(timeout)
        if not self._closed:
            self._thread.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.hang_up()


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


# ---- terminal lost (SIGHUP) ------------------------------------------------------------------------

HANGUP_BOOK = """
    # Hangup
    ## Steps
    1. **Long**
       ```sh
       sleep 2; echo finished-anyway
       ```
    2. **Second**
       ```sh
       touch second-ran
       ```
    """


@pytest.mark.parametrize("terminal", ["output-on-tty", "all-on-tty"])
def test_terminal_lost_mid_command_finishes_it_records_it_and_starts_nothing(
        tmp_path: Path, terminals: list[Terminal], terminal: str) -> None:
    """The SSH session to the bastion drops while task 1 runs: task 1 finishes and is recorded,
    operator.disconnected and run.aborted end the transcript, task 2 never starts; `resume` runs it."""
    book = write(tmp_path, HANGUP_BOOK)
    trust(book)
    transcript = tmp_path / "t.jsonl"
    if terminal == "output-on-tty":  # `run --yes` with stdout/stderr on the SSH terminal
        args = ["run", str(book), "--yes", "--transcript", str(transcript)]
    else:  # an operator at the terminal; auto mode (the runbook is trusted) asks nothing
        args = ["run", str(book), "--mode", "auto", "--transcript", str(transcript)]
    term = Terminal(rbt(*args), cwd=tmp_path, stdin_tty=terminal == "all-on-tty")
    terminals.append(term)
    term.wait_for(b"$ sleep 2; echo finished-anyway")
    assert only(events(transcript, "command.started"))["task_id"] == "1.1.1"
    term.hang_up()
    assert term.wait(30) == 1

    kinds = types(transcript)
    assert kinds[-2:] == ["operator.disconnected", "run.aborted"], kinds
    finished = only(events(transcript, "command.finished"))
    assert finished["task_id"] == "1.1.1" and finished["exit_code"] == 0 and not finished["aborted"]
    assert finished["duration"] >= 1.5, "the command in flight was allowed to finish"
    assert "finished-anyway" in output_of(transcript, "1.1.1")
    assert only(events(transcript, "task.finished"))["status"] == "done"
    assert kinds.index("task.finished") < kinds.index("operator.disconnected")
    assert not (tmp_path / "second-ran").exists()
    assert "terminal lost" in only(events(transcript, "run.aborted"))["reason"]
    checked = cli("transcript", "verify", str(transcript))
    assert checked.returncode == 0, checked.stderr

    # Task 2 was pending, not interrupted: resume needs only --yes (--interrupted changes nothing).
    extra = ["--interrupted", "rerun"] if terminal == "output-on-tty" else []
    resumed = cli("resume", str(transcript), "--yes", *extra, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = events(transcript)
    start_at = next(i for i, e in enumerate(after) if e["type"] == "run.resumed")
    assert after[start_at]["interrupted_task"] is None
    assert [e["task_id"] for e in after[start_at:] if e["type"] == "command.started"] == ["1.2.1"]
    assert after[-1]["type"] == "run.finished" and after[-1]["result"] == "success"
    assert (tmp_path / "second-ran").exists()
    assert cli("transcript", "verify", str(transcript)).returncode == 0


def test_terminal_lost_at_a_question_runs_nothing(tmp_path: Path, terminals: list[Terminal]) -> None:
    """The terminal drops while the operator is being asked: the command is not run, the run ends
    with operator.disconnected and run.aborted."""
    book = write(tmp_path, "# Q\n## Steps\n```sh\ntouch ran\n```\n")
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--transcript", str(transcript)), cwd=tmp_path)
    terminals.append(term)
    term.wait_for(b"Run it?")
    term.hang_up()
    assert term.wait(30) == 1
    kinds = types(transcript)
    assert "command.started" not in kinds and not (tmp_path / "ran").exists()
    assert kinds[-1] == "run.aborted", kinds
    assert "operator.disconnected" in kinds, kinds
    verified(transcript)


# ---- SIGTERM / SIGINT to the app ---------------------------------------------------------------------

CHILDREN_BOOK = """
    # Children
    ## Steps
    ```sh
    echo $$ > pidfile; sleep 300 & sleep 300 & wait
    ```
    ```sh
    touch second-ran
    ```
    """


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "ctrl-c-on-tty"])
def test_signal_to_the_app_stops_the_whole_group_and_ends_the_transcript(
        tmp_path: Path, terminals: list[Terminal], how: str) -> None:
    book = write(tmp_path, CHILDREN_BOOK)
    trust(book)
    transcript = tmp_path / "t.jsonl"
    args = ["run", str(book), "--yes", "--transcript", str(transcript)]
    pgid = None
    try:
        if how == "ctrl-c-on-tty":
            term = Terminal(rbt("run", str(book), "--mode", "auto", "--transcript", str(transcript)), cwd=tmp_path)
            terminals.append(term)
        else:
            proc = start(*args, cwd=tmp_path)
        pgid = read_pgid(tmp_path / "pidfile")
        wait_for(lambda: len(group_members(pgid)) >= 3, 10, "the shell and its two background sleeps")
        if how == "ctrl-c-on-tty":
            term.type(b"\x03")  # the terminal driver sends SIGINT to its foreground group: the app
            code = term.wait(30)
            stderr = term.output.decode(errors="replace")
        else:
            proc.send_signal(getattr(signal, how))
            stderr = proc.communicate(timeout=30)[1]
            code = proc.returncode
        assert code == 1, stderr
        assert "Traceback" not in stderr
        wait_for(lambda: not group_members(pgid), 5, f"process group {pgid} to be gone")
    finally:
        kill_group(pgid)
    kinds = types(transcript)
    assert kinds[-1] == "run.aborted", kinds
    finished = only(events(transcript, "command.finished"))
    assert finished["aborted"] is True and finished["exit_code"] != 0
    assert not (tmp_path / "second-ran").exists()
    verified(transcript)


IGNORING_BOOK = """
    # Stubborn
    ## Steps
    ```sh
    trap '' INT TERM HUP; echo $$ > pidfile; sleep 30
    ```
    """


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_repeated_signals_during_escalation_still_stop_the_group(tmp_path: Path, signum: str) -> None:
    """The operator keeps pressing Ctrl+C (or a supervisor repeats SIGTERM) while a stubborn command
    is being stopped: the command must still be killed and the transcript still end with run.aborted."""
    book = write(tmp_path, IGNORING_BOOK)
    trust(book)
    transcript = tmp_path / "t.jsonl"
    proc = start("run", str(book), "--yes", "--transcript", str(transcript), cwd=tmp_path)
    pgid = None
    try:
        pgid = read_pgid(tmp_path / "pidfile")
        wait_for(lambda: group_members(pgid), 10, "the command (bash may exec its last command)")
        time.sleep(0.2)
        for _ in range(3):  # each lands while the escalation waits `grace` (2 s) after its SIGINT
            proc.send_signal(getattr(signal, signum))
            time.sleep(0.5)
        stderr = proc.communicate(timeout=30)[1]
        assert "Traceback" not in stderr, stderr[-1500:]
        assert types(transcript)[-1] == "run.aborted"
        verified(transcript)
        wait_for(lambda: not group_members(pgid), 6, "no process left in the command's group")
    finally:
        kill_group(pgid)
        if proc.poll() is None:
            proc.kill()


STRESS = textwrap.dedent("""
    import random, signal, sys
    from runbook_tui.audit.transcript import Transcript, verify
    from runbook_tui.headless import _Terminated

    def raising(signum, frame):  # what the headless handlers still do between commands
        raise _Terminated("terminated (SIGTERM)")

    signal.signal(signal.SIGALRM, raising)
    path = sys.argv[1]
    transcript = Transcript.create(path)
    chunk = "x" * 262144  # one full output event (OUTPUT_EVENT_MAX)
    random.seed(7)
    for attempt in range(1, 61):
        signal.setitimer(signal.ITIMER_REAL, random.uniform(0.0002, 0.004))
        try:
            while True:
                transcript.append("output", task_id="1.1.1", text=chunk)
        except _Terminated:
            pass
        signal.setitimer(signal.ITIMER_REAL, 0)
        transcript.append("run.aborted", reason="terminated (SIGTERM)")  # what _drive records next
        result = verify(path)
        if not result.ok:
            print("BROKEN after", attempt, "signals:", result.reason)
            sys.exit(1)
    print("HELD")
""")


def test_a_signal_landing_in_a_transcript_write_keeps_the_chain(tmp_path: Path) -> None:
    """SIGTERM/SIGINT during a command that prints a lot often arrive while the main thread writes
    and fsyncs an output event. 60 such signals on a timer, each followed by run.aborted as
    `_drive` does: the chain must verify after every one."""
    done = subprocess.run([PY, "-c", STRESS, str(tmp_path / "t.jsonl")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "HELD" in done.stdout, done.stdout + done.stderr[-1500:]


FLOOD_FOREVER = """
    # Busy
    ## Steps
    ```sh
    while true; do seq 2000; done
    ```
    """


def _thread_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return "?"


def test_sigterm_while_a_transcript_write_is_blocked_keeps_the_chain(tmp_path: Path) -> None:
    """End to end and deterministic: the transcript's file system is frozen (fsfreeze) while the CLI
    writes an output event, SIGTERM arrives while that write is blocked, then the file system thaws."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a loop mount and fsfreeze (the stress test above covers the cause)")
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as file:
        file.truncate(64 << 20)
    setup = subprocess.run(f"mkfs.ext4 -q -F {image} && mount -o loop {image} {mnt}", shell=True,
                           capture_output=True, text=True)
    if setup.returncode != 0:
        pytest.skip(f"no loop-mounted ext4 here: {setup.stderr.strip()}")
    frozen = False
    proc = None
    try:
        book = write(tmp_path, FLOOD_FOREVER)
        trust(book)
        transcript = mnt / "t.jsonl"
        proc = start("run", str(book), "--yes", "--transcript", str(transcript), cwd=tmp_path)
        wait_for(lambda: len(events(transcript, "output")) >= 2, 20, "output events")
        subprocess.run(["fsfreeze", "-f", str(mnt)], check=True)
        frozen = True
        wait_for(lambda: _thread_state(proc.pid) == "D", 10, "the CLI's main thread blocked on the transcript")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        subprocess.run(["fsfreeze", "-u", str(mnt)], check=True)
        frozen = False
        stderr = proc.communicate(timeout=30)[1]
        assert proc.returncode == 1, stderr
        assert types(transcript)[-1] == "run.aborted"
        verified(transcript)
    finally:
        if frozen:
            subprocess.run(["fsfreeze", "-u", str(mnt)], check=False)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ---- disk full / transcript unwritable ---------------------------------------------------------------

FLOOD_BOOK = """
    # Flood
    ## Steps
    1. **Flood**
       ```sh
       seq 200000
       ```
    2. **Next**
       ```sh
       touch second-ran
       ```
    """


def _fsize_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death by signal


DiskFullRun = tuple[subprocess.CompletedProcess[str], Path, Path]


@pytest.fixture(scope="module", params=["rlimit-fsize", "tmpfs-200k"])
def disk_full_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiskFullRun]:
    """One run of FLOOD_BOOK whose transcript fills up mid-output: (result, transcript, work dir)."""
    root = tmp_path_factory.mktemp(f"full-{request.param}")
    env = user_env(root)
    book = write(root, FLOOD_BOOK)
    trust(book, env)
    mounted = None
    preexec = None
    if request.param == "rlimit-fsize":
        transcript = root / "t.jsonl"
        preexec = _fsize_limit
    else:
        mounted = root / "small"
        mounted.mkdir()
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mounted)],
                               capture_output=True, text=True)
        if mount.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {mount.stderr.strip()}")
        transcript = mounted / "t.jsonl"
    try:
        result = subprocess.run(rbt("run", str(book), "--yes", "--transcript", str(transcript)), cwd=root, env=env,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                                preexec_fn=preexec)
        yield result, transcript, root
    finally:
        if mounted is not None:
            subprocess.run(["umount", "-l", str(mounted)], check=False)


def test_disk_full_stops_the_run_before_the_next_task(disk_full_run: DiskFullRun) -> None:
    result, transcript, root = disk_full_run
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot write to transcript {transcript}" in result.stderr, result.stderr
    assert "nothing runs unrecorded" in result.stderr
    assert not (root / "second-ran").exists(), "task 2 started without its audit line"
    kinds = types(transcript)
    assert kinds.count("command.started") == 1, kinds
    check = verify(transcript)
    assert check.ok, check.reason  # intact, or intact with a torn last line


def test_disk_full_transcript_does_not_pass_lost_output_off_as_complete(disk_full_run: DiskFullRun) -> None:
    _, transcript, _ = disk_full_run
    recorded = output_of(transcript, "1.1.1")
    complete = recorded.rstrip().endswith("200000")
    said = [e for e in events(transcript) if e["type"] != "output" and re.search(
        r"lost|not recorded|incomplete|truncated|missing", json.dumps(e), re.IGNORECASE)]
    assert complete or said, f"{len(recorded)} characters of output recorded and nothing says the rest is lost"


# ---- the runbook file changes during a run -------------------------------------------------------------

def test_runbook_changed_mid_run_keeps_the_version_it_started_with(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # Change
        ## Steps
        1. **Wait**
           ```sh
           sleep 1
           ```
        2. **Act**
           ```sh
           touch original
           ```
        """)
    trust(book)
    transcript = tmp_path / "t.jsonl"
    proc = subprocess.Popen(rbt("run", str(book), "--yes", "--transcript", str(transcript)), cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: events(transcript, "command.started"), 20, "task 1 to start")
    book.write_text(book.read_text().replace("touch original", "touch evil"))
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    changed = only(events(transcript, "runbook.changed"))
    assert changed["sha256_now"] != changed["sha256_started"]
    kinds = types(transcript)
    assert kinds.index("runbook.changed") < [i for i, k in enumerate(kinds) if k == "command.started"][1]
    second = events(transcript, "command.started")[1]
    assert second["command"] == "touch original" and second["run_command"] == "touch original"
    assert (tmp_path / "original").exists() and not (tmp_path / "evil").exists()
    assert "changed on disk" in stdout
    verified(transcript)


# ---- two runs at once ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run A holds the runbook (its task waits while `hold` exists); run B starts meanwhile."""
    root = tmp_path_factory.mktemp("two-runs")
    env = user_env(root)
    book = write(root, """
        # Shared
        ## Steps
        ```sh
        if test -e hold; then touch holding; sleep 3; fi; echo done-$$
        ```
        """)
    trust(book, env)
    (root / "hold").touch()
    a, b = root / "a.jsonl", root / "b.jsonl"
    first = subprocess.Popen(rbt("run", str(book), "--yes", "--transcript", str(a)), cwd=root, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (root / "holding").exists(), 20, "run A's command to be holding the runbook")
    (root / "hold").unlink()
    second = subprocess.run(rbt("run", str(book), "--yes", "--transcript", str(b)), cwd=root, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    first_stderr = first.communicate(timeout=60)[1]
    return {"a": a, "b": b, "a_pid": first.pid, "a_code": first.returncode, "a_stderr": first_stderr,
            "second": second}


def test_two_runs_at_once_warn_and_keep_separate_transcripts(two_runs: dict[str, Any]) -> None:
    import getpass
    import socket

    second = two_runs["second"]
    assert two_runs["a_code"] == 0, two_runs["a_stderr"]
    assert second.returncode == 0, second.stderr
    warning = next(line for line in second.stderr.splitlines() if "another run of this runbook" in line)
    assert f"{getpass.getuser()}@{socket.gethostname()}" in warning
    assert f"pid {two_runs['a_pid']}" in warning and str(two_runs["a"]) in warning
    assert "another run" not in two_runs["a_stderr"]
    a, b = events(two_runs["a"]), events(two_runs["b"])
    verified(two_runs["a"])
    verified(two_runs["b"])
    assert not {e["hash"] for e in a} & {e["hash"] for e in b}, "an event of one run is in the other"
    assert [e["seq"] for e in a] == list(range(len(a))) and [e["seq"] for e in b] == list(range(len(b)))
    run_ids = {only([e for e in a if e["type"] == "run.started"])["run_id"],
               only([e for e in b if e["type"] == "run.started"])["run_id"]}
    assert len(run_ids) == 2
    assert output_of(two_runs["a"], "1.1.1") != output_of(two_runs["b"], "1.1.1")  # each its own $$


def test_second_run_records_the_concurrent_run(two_runs: dict[str, Any]) -> None:
    started = only(events(two_runs["b"], "run.started"))
    concurrent = started.get("concurrent_run") or {}
    assert concurrent.get("pid") == two_runs["a_pid"] and concurrent.get("transcript") == str(two_runs["a"])


# ---- hostile output ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hostile")
    env = user_env(root)
    book = write(root, r"""
        # Hostile output
        ## Steps
        1. **Invalid UTF-8**
           ```sh
           printf '\xff\xfe ok\n'
           ```
        2. **NUL bytes**
           ```sh
           printf 'a\0b\0c\n'
           ```
        3. **Closes its output and keeps running**
           ```sh
           echo closing; exec >&- 2>&-; sleep 1; touch done-file
           ```
        4. **Ignores SIGINT and SIGTERM**
           ```sh {timeout=1s}
           trap '' INT TERM; echo $$ > stubborn.pid; echo stubborn; sleep 30
           ```
        """)
    trust(book, env)
    transcript = root / "t.jsonl"
    started = time.monotonic()
    result = subprocess.run(rbt("run", str(book), "--yes", "--transcript", str(transcript)), cwd=root, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=90)
    return {"root": root, "t": transcript, "result": result, "elapsed": time.monotonic() - started}


def test_hostile_output_invalid_utf8_and_nul(hostile_run: dict[str, Any]) -> None:
    transcript = hostile_run["t"]
    verified(transcript)
    assert output_of(transcript, "1.1.1") == "\ufffd\ufffd ok\r\n"
    assert output_of(transcript, "1.2.1") == "a\x00b\x00c\r\n"  # recorded as it was printed
    assert "\x00" not in hostile_run["result"].stdout  # but not sent to the operator's terminal
    statuses = {e["task_id"]: e["status"] for e in events(transcript, "task.finished")}
    assert statuses["1.1.1"] == statuses["1.2.1"] == "done"


def test_hostile_output_closed_stdout_is_waited_for(hostile_run: dict[str, Any]) -> None:
    transcript = hostile_run["t"]
    finished = next(e for e in events(transcript, "command.finished") if e["task_id"] == "1.3.1")
    assert finished["exit_code"] == 0 and finished["duration"] >= 1.0
    assert "closing" in output_of(transcript, "1.3.1")
    assert (hostile_run["root"] / "done-file").exists(), "the command was cut short when it closed its output"


def test_hostile_output_ignoring_signals_is_killed_at_the_timeout(hostile_run: dict[str, Any]) -> None:
    transcript, result = hostile_run["t"], hostile_run["result"]
    finished = next(e for e in events(transcript, "command.finished") if e["task_id"] == "1.4.1")
    assert finished["timed_out"] is True
    assert finished["signal"] == signal.SIGKILL and finished["exit_code"] is None
    assert "stubborn" in output_of(transcript, "1.4.1")
    pgid = int((hostile_run["root"] / "stubborn.pid").read_text())
    assert group_members(pgid) == [], "a process survived the escalation"
    task = next(e for e in events(transcript, "task.finished") if e["task_id"] == "1.4.1")
    assert task["status"] == "failed" and "timed out" in task["reason"]
    assert result.returncode == 1 and types(transcript)[-1] == "run.finished"
    assert hostile_run["elapsed"] < 30
    verified(transcript)


def test_hostile_output_50_mb_line_without_newline(tmp_path: Path) -> None:
    """A 50 MB line: recorded whole, in bounded events, with bounded memory in the CLI."""
    book = write(tmp_path, """
        # Long line
        ## Steps
        ```sh
        head -c 50000000 /dev/zero | tr '\\0' x
        ```
        """)
    trust(book)
    transcript = tmp_path / "t.jsonl"
    measure = ("import resource, subprocess, sys\n"
               "code = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).returncode\n"
               "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([PY, "-c", measure, *rbt("run", str(book), "--yes", "--transcript", str(transcript))],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    code, peak_kb = (int(x) for x in done.stdout.split())
    assert code == 0, done.stderr
    lengths = []
    for event in read_events(transcript):
        if event["type"] == "output":
            assert set(event["text"]) == {"x"}
            lengths.append(len(event["text"]))
    assert sum(lengths) == 50_000_000
    assert max(lengths) <= 256 * 1024, "one output event stays bounded"
    assert peak_kb < 200_000, f"peak RSS of the CLI {peak_kb} kB"
    verified(transcript)


# ---- terminal escape injection -------------------------------------------------------------------------

HOSTILE_ESCAPES = (
    r"A\033]52;c;cm0gLXJmIH4K\aB"  # OSC 52: write the clipboard
    r"\033]0;pwned-title\aC"  # OSC 0: icon name and title
    r"\033]2;pwned-title-2\033\\D"  # OSC 2, ST-terminated
    r"\033[2J\033[HE"  # clear the screen, cursor home
    r"\033[5;10HF"  # cursor position
    r"\033P1$r0m\033\\G"  # DCS
    r"\033[31mred\033[0m\n"  # SGR: must survive where colors are shown
)
FORBIDDEN = ("\x1b]", "\x1bP", "\x1b[2J", "\x1b[H", "\x1b[5;10H", "\x07")  # the payload text may show: the
# command line is echoed as written (`printf 'A\033]52;...'`), only the bytes must never reach the terminal
SGR_ONLY = re.compile(r"\x1b\[[0-9;]*m")


def no_escape_but_sgr(text: str) -> bool:
    """Nothing but colours, and our own reset between a command's output and our next line."""
    text = text.replace(TERMINAL_RESET, "")
    return ESC not in SGR_ONLY.sub("", text) and not any(bad in text for bad in FORBIDDEN)


@pytest.fixture(scope="module")
def escape_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same hostile output, once with the CLI's stdout on a terminal and once on a pipe."""
    root = tmp_path_factory.mktemp("escapes")
    env = user_env(root)
    book = write(root, f"# Escapes\n## Steps\n```sh\nprintf '{HOSTILE_ESCAPES}'\n```\n")
    trust(book, env)
    on_tty = root / "tty.jsonl"
    term = Terminal(rbt("run", str(book), "--yes", "--transcript", str(on_tty)), cwd=root, stdin_tty=False, env=env)
    try:
        assert term.wait(60) == 0, term.output[-2000:]
        tty_output = term.output.decode("utf-8", "replace")
    finally:
        term.close()
    on_pipe = root / "pipe.jsonl"
    piped = subprocess.run(rbt("run", str(book), "--yes", "--transcript", str(on_pipe)), cwd=root, env=env,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert piped.returncode == 0, piped.stderr
    return {"tty": tty_output, "pipe": piped.stdout + piped.stderr, "transcript": on_pipe, "env": env}


def test_escapes_in_output_never_reach_the_terminal_colors_do(escape_run: dict[str, Any]) -> None:
    raw = output_of(escape_run["transcript"], "1.1.1")
    assert "\x1b]52;c;" in raw, "the transcript keeps the output as it was printed"
    tty = escape_run["tty"]
    assert no_escape_but_sgr(tty), repr(tty)
    assert "ABCDEFG\x1b[31mred\x1b[0m" in tty, repr(tty)
    piped = escape_run["pipe"]
    assert ESC not in piped and not any(bad in piped for bad in FORBIDDEN), repr(piped)
    assert "ABCDEFGred" in piped  # no terminal: no colors either


def test_escapes_never_reach_an_export(escape_run: dict[str, Any]) -> None:
    transcript, env = escape_run["transcript"], escape_run["env"]
    markdown = cli("transcript", "export", str(transcript), "--format", "md", env=env)
    assert markdown.returncode == 0, markdown.stderr
    assert ESC not in markdown.stdout and not any(bad in markdown.stdout for bad in FORBIDDEN)
    assert "ABCDEFGred" in markdown.stdout
    cast = cli("transcript", "export", str(transcript), "--format", "cast", env=env)
    assert cast.returncode == 0, cast.stderr
    lines = cast.stdout.splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2
    frames = [json.loads(line) for line in lines[1:]]
    played = "".join(frame[2] for frame in frames if frame[1] == "o")
    assert no_escape_but_sgr(played), repr(played)
    assert "ABCDEFG\x1b[31mred\x1b[0m" in played


async def test_escapes_never_reach_the_watch_view(escape_run: dict[str, Any]) -> None:
    from runbook_tui.tui.app import make_watch_app
    from runbook_tui.tui.widgets.output_pane import OutputPane
    from tests.tui_helpers import until

    app = make_watch_app(str(escape_run["transcript"]), None)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(OutputPane)
        await until(pilot, lambda: any("ABCDEFGred" in line for line in pane.lines_of("1.1.1")), 10,
                    "the output in the watch view")
        lines = pane.lines_of("1.1.1")
        assert all(ESC not in line and "\x07" not in line for line in lines), lines
        from runbook_tui.tui.widgets.log_view import LogView
        from tests.test_tui import shown_rows

        view = app.query_one("#output", OutputPane).query_one(LogView)
        await until(pilot, lambda: "ABCDEFGred" in shown_rows(view), 10, "the output drawn")
        assert ESC not in shown_rows(view) and "\x07" not in shown_rows(view)
        await pilot.press("q")


def test_escapes_in_a_runbook_command_cannot_disguise_it_at_the_prompt(
        tmp_path: Path, terminals: list[Terminal]) -> None:
    """A contributed runbook hides `touch hidden-ran` behind erase-line and carriage return: the
    operator would see only `echo harmless` and say yes. What is shown must be what runs."""
    book = tmp_path / "book.md"
    book.write_text("# T\n## Steps\n```sh\ntouch hidden-ran #\x1b[2K\recho harmless\n```\n", encoding="utf-8")
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--transcript", str(transcript)), cwd=tmp_path)
    terminals.append(term)
    shown = term.wait_for(b"Run it?").decode("utf-8", "replace")
    term.type(b"a\n")
    term.wait(30)
    assert not (tmp_path / "hidden-ran").exists()
    assert ESC not in shown.replace(TERMINAL_RESET, ""), repr(shown)
    assert shown.rindex(TERMINAL_RESET) < shown.index("Run it?"), "the terminal is reset before the question"


def test_a_stray_c1_control_does_not_hide_the_output_after_it(tmp_path: Path) -> None:
    book = write(tmp_path, "# T\n## Steps\n```sh\nprintf '\\xc2\\x9d'; echo migration $((6 * 7)) FAILED; seq 3\n```\n")
    trust(book)
    done = cli("run", str(book), "--yes", "--transcript", str(tmp_path / "t.jsonl"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "migration 42 FAILED" in output_of(tmp_path / "t.jsonl", "1.1.1")
    assert "migration 42 FAILED" in done.stdout, done.stdout


# ---- hostile bytes from the command line and the file system -------------------------------------------

@pytest.mark.parametrize("where", ["var", "path", "cwd"])
def test_non_utf8_bytes_from_the_command_line_are_recorded_not_a_crash(tmp_path: Path, where: str) -> None:
    """A non-UTF-8 --var value, runbook file name or working directory (Python hands them over as
    surrogate escapes): the run happens and is recorded. (Was a UnicodeEncodeError in canonical().)"""
    name = os.fsdecode(b"book-\xff.md") if where == "path" else "book.md"
    book = write(tmp_path, "# T\n## Steps\n- `echo value=$X --x`\n", name)
    trust(book)
    cwd = tmp_path
    if where == "cwd":
        cwd = tmp_path / os.fsdecode(b"dir-\xfe")
        cwd.mkdir()
    value = os.fsdecode(b"caf\xe9") if where == "var" else "plain"
    transcript = tmp_path / "t.jsonl"
    done = cli("run", str(book), "--yes", "--var", f"X={value}", "--transcript", str(transcript), cwd=cwd)
    assert "Traceback" not in done.stderr, done.stderr[-1500:]
    assert done.returncode == 0, done.stderr
    verified(transcript)
    assert types(transcript)[-1] == "run.finished"
    assert "value=caf" in output_of(transcript, "1.1.1") or "value=plain" in output_of(transcript, "1.1.1")
    started = only(events(transcript, "run.started"))
    if where == "path":
        assert os.fsencode(started["runbook"]["path"]).endswith(b"book-\xff.md")
    elif where == "cwd":
        assert os.fsencode(started["cwd"]).endswith(b"dir-\xfe")
    else:
        assert os.fsencode(started["variables"]["X"]) == b"caf\xe9"


def test_corrupt_transcript_is_reported_not_followed(tmp_path: Path) -> None:
    """A transcript edited by hand: verify names the line, resume refuses to extend it."""
    book = write(tmp_path, "# T\n## Steps\n- `echo one --x`\n- `echo two --x`\n")
    transcript = tmp_path / "t.jsonl"
    assert cli("run", str(book), "--yes", "--transcript", str(transcript)).returncode == 2  # untrusted
    trust(book)
    assert cli("run", str(book), "--yes", "--transcript", str(transcript)).returncode == 0
    lines = transcript.read_bytes().splitlines(keepends=True)
    lines[3] = b"garbage\n"
    transcript.write_bytes(b"".join(lines))
    checked = cli("transcript", "verify", str(transcript))
    assert checked.returncode == 1 and f"{transcript}:4:" in checked.stderr and "Traceback" not in checked.stderr
    resumed = cli("resume", str(transcript), "--yes")
    assert resumed.returncode == 2 and "chain is broken" in resumed.stderr


DAMAGE = [b"garbage\n", b"[1]\n", b'{"type": "run.started", "runbook": "x"}\n']


@pytest.mark.parametrize("damage", DAMAGE, ids=["not-json", "not-an-object", "wrong-types"])
def test_runs_lists_past_runs_despite_one_damaged_transcript(tmp_path: Path, damage: bytes) -> None:
    """(Was a crash: list_runs caught neither TranscriptError nor events that are not objects.)"""
    book = write(tmp_path, "# Listed\n## Steps\n- `echo hi --x`\n")
    trust(book)
    runs = tmp_path / "runs"
    assert cli("run", str(book), "--yes", "--transcript", str(runs / "good.jsonl")).returncode == 0
    (runs / "bad.jsonl").write_bytes(damage)
    listed = cli("runs", "--dir", str(runs))
    assert "Traceback" not in listed.stderr, listed.stderr[-1500:]
    assert listed.returncode == 0 and "good.jsonl" in listed.stdout and "bad.jsonl" in listed.stdout


@pytest.mark.parametrize("damage", DAMAGE[:2], ids=["not-json", "not-an-object"])
def test_export_of_a_damaged_transcript_names_the_line(tmp_path: Path, damage: bytes) -> None:
    book = write(tmp_path, "# Exported\n## Steps\n- `echo hi --x`\n")
    trust(book)
    transcript = tmp_path / "t.jsonl"
    assert cli("run", str(book), "--yes", "--transcript", str(transcript)).returncode == 0
    transcript.write_bytes(transcript.read_bytes() + damage)
    exported = cli("transcript", "export", str(transcript), "--format", "md")
    assert "Traceback" not in exported.stderr, exported.stderr[-1500:]
    assert exported.returncode != 0 and f"{transcript}:" in exported.stderr


# ---- untrusted runbooks ---------------------------------------------------------------------------------

def test_untrusted_runbook_never_runs_unattended_and_editing_revokes_trust(tmp_path: Path) -> None:
    book = write(tmp_path, "# Untrusted\n## Steps\n```sh\ntouch ran\n```\n")
    transcript = tmp_path / "t.jsonl"
    refused = cli("run", str(book), "--yes", "--transcript", str(transcript), cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "is not trusted" in refused.stderr and f"runbook-tui trust {book}" in refused.stderr
    assert not (tmp_path / "ran").exists() and not events(transcript, "command.started")
    auto = cli("run", str(book), "--mode", "auto", "--transcript", str(transcript), cwd=tmp_path)
    assert auto.returncode == 2 and not (tmp_path / "ran").exists()

    trust(book)
    assert "trusted" in cli("check", str(book)).stdout.rsplit(",", 1)[-1]
    ran = cli("run", str(book), "--yes", "--transcript", str(tmp_path / "t2.jsonl"), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "ran").exists()
    (tmp_path / "ran").unlink()

    book.write_text(book.read_text().replace("touch ran", "touch ran; touch more"))
    assert "not trusted" in cli("check", str(book)).stdout
    again = cli("run", str(book), "--yes", "--transcript", str(tmp_path / "t3.jsonl"), cwd=tmp_path)
    assert again.returncode == 2 and "not trusted" in again.stderr
    assert not (tmp_path / "ran").exists() and not (tmp_path / "more").exists()


def test_auto_mode_on_a_terminal_falls_back_to_paranoid(tmp_path: Path, terminals: list[Terminal]) -> None:
    book = write(tmp_path, "# Untrusted\n## Steps\n```sh\ntouch ran\n```\n")
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--mode", "auto", "--transcript", str(transcript)), cwd=tmp_path)
    terminals.append(term)
    shown = term.wait_for(b"Run it?").decode("utf-8", "replace")
    assert "is not trusted" in shown and "paranoid" in shown
    assert not events(transcript, "command.started"), "it asked before running"
    term.type(b"a\n")
    assert term.wait(30) == 1
    assert only(events(transcript, "run.started"))["mode"] == "paranoid"
    assert "command.started" not in types(transcript) and not (tmp_path / "ran").exists()
    assert types(transcript)[-1] == "run.aborted"
    verified(transcript)


@pytest.mark.parametrize("trusted", [True, False])
async def test_opening_a_runbook_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              trusted: bool) -> None:
    from runbook_tui.parse import load_runbook
    from runbook_tui.tui.app import make_app
    from tests.tui_helpers import notifications, until, until_event

    book = write(tmp_path, "# Open me\n## Steps\n1. **Mark**\n   ```sh\n   touch ran\n   ```\n")
    if trusted:
        trust(book)
    monkeypatch.chdir(tmp_path)
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook(book), mode="auto", variables={}, transcript=str(transcript), theme=None)
    assert app.session is not None and app.session.mode == ("auto" if trusted else "paranoid")
    async with app.run_test(size=(120, 40)) as pilot:
        await until_event(pilot, transcript, "run.started")
        if not trusted:
            assert any("not trusted" in message for message in notifications(app))
        await pilot.pause(0.5)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running or app.return_value is not None, 10, "the app to exit")
    kinds = types(transcript)
    assert "command.started" not in kinds and "confirm.asked" not in kinds, kinds
    assert not (tmp_path / "ran").exists()
    assert kinds[-1] == "run.aborted"
    verified(transcript)


# ---- check: dangerous and hidden commands ----------------------------------------------------------------

def test_check_flags_dangerous_and_hidden_commands(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # Suspicious
        ## Steps
        1. **Clean up**
           ```sh
           rm -rf /
           ```
        2. **Install**
           - `curl -fsSL https://example.invalid/install.sh | sudo bash`

        <!--
        kubectl delete namespace production
        -->

        ## Extra
        <details>
        <summary>Advanced</summary>

        ```sh
        touch folded-ran
        ```

        </details>
        """)
    text = book.read_text()
    line_of = {needle: text[: text.index(needle)].count("\n") + 1
               for needle in ("rm -rf /", "curl -fsSL", "<!--", "touch folded-ran")}
    done = cli("check", str(book))
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.splitlines()

    def flagged(code: str, line: int) -> bool:
        return any(w.startswith(f"{book}:{line}:") and w.endswith(f"[{code}]") for w in warnings)

    assert flagged("dangerous-command", line_of["rm -rf /"]), warnings
    assert flagged("dangerous-command", line_of["curl -fsSL"]), warnings
    assert flagged("hidden-command", line_of["<!--"]), warnings
    assert flagged("hidden-command", line_of["touch folded-ran"]), warnings
    assert "4 warnings" in done.stdout
    assert not (tmp_path / "folded-ran").exists()
