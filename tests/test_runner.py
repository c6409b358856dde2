"""Tests for runbook_tui.engine.runner, against the real OS (real PTYs, real processes)."""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.engine.runner import PtyProcess, run_command
from runbook_tui.process import ExitStatus, shell_argv, supervise

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

LIMIT = 20.0  # safety net so a broken runner fails a test instead of hanging the suite


# -- helpers ------------------------------------------------------------------------------


class Collector:
    """on_output sink that records text and the calling threads, and can wait for a needle."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.threads: set[int] = set()
        self._cond = threading.Condition()

    def __call__(self, text: str) -> None:
        with self._cond:
            self.threads.add(threading.get_ident())
            self.chunks.append(text)
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(self.chunks)

    def wait_for(self, needle: str, timeout: float = LIMIT) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: needle in "".join(self.chunks), timeout)
        assert ok, f"never saw {needle!r} in {self.text!r}"


def bash(script: str, **kw) -> tuple[ExitStatus, Collector]:
    out = Collector()
    kw.setdefault("timeout", LIMIT)
    status = run_command(["bash", "-c", script], on_output=out, **kw)
    return status, out


def live_pids(pred) -> list[int]:
    """Pids of non-zombie processes whose (state, pgrp, cmdline) satisfy pred."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # exited while we looked
        fields = stat[stat.rindex(")") + 2 :].split()  # comm may contain spaces
        state, pgrp = fields[0], int(fields[2])
        # Zombies are dead; whether PID 1 reaps them promptly is outside our control.
        if state not in ("Z", "X") and pred(pgrp, cmdline):
            found.append(int(entry))
    return found


def assert_gone(pred, what: str) -> None:
    """No matching process is alive (allowing a SIGKILLed one a moment to finish dying)."""
    end = time.monotonic() + 5.0
    while (pids := live_pids(pred)) and time.monotonic() < end:
        time.sleep(0.02)
    assert not pids, f"{what} still alive: {pids}"


def assert_group_gone(pgid: int) -> None:
    assert_gone(lambda pgrp, _: pgrp == pgid, f"members of process group {pgid}")


def pgid_from(text: str) -> int:
    m = re.search(r"pgid=(\d+)", text)
    assert m, text
    return int(m.group(1))


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- shell_argv -----------------------------------------------------------------------------


def test_shell_argv_single_line_runs_as_typed():
    assert shell_argv("echo hi") == ["bash", "-c", "echo hi"]


def test_shell_argv_multi_line_adds_e_ignoring_blank_and_comment_lines():
    one = "# comment\n\n  echo hi  \n   # another\n"
    assert shell_argv(one) == ["bash", "-c", one]
    two = "echo a\n# c\necho b\n"
    assert shell_argv(two) == ["bash", "-e", "-o", "pipefail", "-c", two]


def test_shell_argv_sh_has_no_pipefail():
    assert shell_argv("echo a", shell="sh") == ["sh", "-c", "echo a"]
    assert shell_argv("echo a\necho b", shell="sh") == ["sh", "-e", "-c", "echo a\necho b"]


def test_shell_argv_semantics_for_real():
    out = Collector()
    status = run_command(shell_argv("false | true\ntrue"), on_output=out, timeout=LIMIT)
    assert status.exit_code == 1  # pipefail, in a script
    out = Collector()
    status = run_command(shell_argv("seq 1000000 | head -3"), on_output=out, timeout=LIMIT)
    assert status.exit_code == 0 and out.text.split() == ["1", "2", "3"]  # a reader closing early is fine
    out = Collector()
    status = run_command(shell_argv("false\necho after"), on_output=out, timeout=LIMIT)
    assert status.exit_code == 1 and "after" not in out.text  # -e
    out = Collector()
    status = run_command(shell_argv("false\necho after", shell="sh"), on_output=out, timeout=LIMIT)
    assert status.exit_code == 1 and "after" not in out.text


# -- terminal environment -------------------------------------------------------------------


def test_child_sees_a_terminal_with_the_requested_size():
    status, out = bash(
        "test -t 1 && echo tty; test -t 2 && echo errtty; stty size <&1; tput cols; tput lines",
        rows=25,
        cols=90,
    )
    assert status.exit_code == 0
    assert out.text.splitlines() == ["tty", "errtty", "25 90", "90", "25"]


def test_default_size_is_40x120():
    _, out = bash("stty size <&1")
    assert out.text.strip() == "40 120"


def test_pty_is_stdin_and_the_controlling_terminal_and_ctrl_d_ends_input():
    """stdin is the PTY (it used to be /dev/null): a reader waits for input; ctrl+d is its EOF."""
    out = Collector()
    script = ': </dev/tty && echo ctty; [ "$(readlink /proc/self/fd/0)" = "$(tty)" ] && echo stdin-is-pty;' \
             " echo ready; cat; read x; echo read=$?"
    proc = PtyProcess.spawn(["bash", "-c", script], on_output=out)
    out.wait_for("ready")
    for _ in ("cat", "read"):
        deadline = time.monotonic() + LIMIT
        while not proc.terminal_state().waiting_for_input:
            assert time.monotonic() < deadline, out.text
            time.sleep(0.02)
        proc.write(b"\x04")
    status = proc.wait(LIMIT)
    assert status is not None and status.exit_code == 0
    assert out.text.splitlines() == ["ctty", "stdin-is-pty", "ready", "read=1"]


def test_own_session_and_process_group():
    out = Collector()
    proc = PtyProcess.spawn(["sleep", "1000"], on_output=out)
    try:
        assert proc.pgid == proc.pid
        assert os.getsid(proc.pid) == proc.pid
        assert os.getpgid(proc.pid) == proc.pid
        assert os.getsid(proc.pid) != os.getsid(0)
    finally:
        proc.abort(grace=1.0)
    status = proc.wait(LIMIT)
    assert status is not None and status.aborted and status.signal == signal.SIGINT


def test_term_defaults_and_env_and_cwd(tmp_path):
    _, out = bash('echo "$TERM"')
    assert out.text.strip() == "xterm-256color"
    base = {"PATH": os.environ["PATH"], "FOO": "bar baz"}
    _, out = bash('echo "$TERM|$FOO|$(pwd)"', env=base, cwd=str(tmp_path))
    assert out.text.strip() == f"xterm-256color|bar baz|{tmp_path}"
    _, out = bash('echo "$TERM"', env={**base, "TERM": "vt100"})
    assert out.text.strip() == "vt100"


def test_resize_reaches_the_child():
    out = Collector()
    script = (
        'echo ready; while [ "$(stty size </dev/tty)" != "30 100" ]; do sleep 0.02; done;'
        " echo resized"
    )
    proc = PtyProcess.spawn(["bash", "-c", script], on_output=out)
    out.wait_for("ready")
    proc.resize(30, 100)
    status = proc.wait(LIMIT)
    assert status is not None and status.exit_code == 0
    assert "resized" in out.text


# -- output -----------------------------------------------------------------------------------


def test_escapes_pass_through_untouched():
    _, out = bash(r"printf '\033[31mred\033[0m'")
    assert out.text == "\x1b[31mred\x1b[0m"


def test_no_lost_tail_on_large_output():
    out = Collector()
    status = run_command(["seq", "200000"], on_output=out, timeout=LIMIT)
    assert status.exit_code == 0
    lines = out.text.split("\r\n")
    assert lines[-1] == ""
    assert lines[:-1] == [str(i) for i in range(1, 200001)]  # all, in order


def test_a_flood_reaches_on_output_in_batches_not_read_by_read():
    """A fast writer's PTY gives a line or so per read; passing each on would load the reader."""
    out = Collector()
    run_command(["seq", "200000"], on_output=out, timeout=LIMIT)
    reads_at_least = len(out.text) // 4096  # a PTY read returns at most 4 KiB
    assert len(out.chunks) < reads_at_least / 4


def test_output_of_a_command_still_running_is_not_held_back():
    out = Collector()
    proc = PtyProcess.spawn(["bash", "-c", "printf ready; sleep 5"], on_output=out)
    try:
        deadline = time.monotonic() + 2
        while out.text != "ready" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert out.text == "ready"
    finally:
        proc.abort(grace=0.5)
        proc.wait()


def test_multibyte_char_split_across_reads():
    # The pause makes the reader see the first byte of "é" alone.
    _, out = bash(r"printf '\xc3'; sleep 0.2; printf '\xa9\n'")
    assert out.text == "é\r\n"


def test_invalid_and_truncated_utf8_become_replacement_chars():
    _, out = bash(r"printf 'a\xffb\xc3'")
    assert out.text == "a\ufffdb\ufffd"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.integers(0, 3),
    data=st.binary(max_size=2000)
    | st.text(max_size=500).map(lambda s: s.encode("utf-8", "surrogatepass")),
)
def test_decoding_matches_one_shot_decode(prefix, data):
    payload = b"x" * prefix + data * 30  # large enough to span several reads
    with tempfile.NamedTemporaryFile() as f:
        f.write(payload)
        f.flush()
        out = Collector()
        status = run_command(["cat", f.name], on_output=out, timeout=LIMIT)
    assert status.exit_code == 0
    expected = payload.replace(b"\n", b"\r\n").decode("utf-8", errors="replace")  # ONLCR
    assert out.text == expected


def test_on_output_called_from_one_non_caller_thread():
    out = Collector()
    run_command(["seq", "50000"], on_output=out, timeout=LIMIT)
    assert len(out.threads) == 1
    assert threading.get_ident() not in out.threads


def test_on_output_exception_is_raised_by_wait_at_once_and_again_after_cleanup():
    calls = []

    def boom(text: str) -> None:
        calls.append(text)
        raise ValueError("sink broke")

    before = fd_count()
    proc = PtyProcess.spawn(["bash", "-c", "echo a; sleep 0.1; echo b; exit 7"], on_output=boom)
    with pytest.raises(ValueError, match="sink broke"):
        while proc.wait(0.01) is None:  # raised as soon as it happened, not only at the end
            pass
    with pytest.raises(ValueError, match="sink broke"):
        proc.wait()
    assert len(calls) == 1  # not called again after failing
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)  # reaped
    assert fd_count() == before



def test_supervise_stops_a_command_whose_output_sink_broke(tmp_path: Path):
    """Its output is no longer shown or recorded: it must not run on unseen to its own end."""
    done = tmp_path / "done"

    def boom(text: str) -> None:
        raise ValueError("sink broke")

    proc = PtyProcess.spawn(["bash", "-c", f"trap '' INT; echo a; sleep 30; touch {done}"], on_output=boom)
    with pytest.raises(ValueError, match="sink broke"):
        supervise(proc, grace=0.2, interval=0.05)
    with pytest.raises(ValueError, match="sink broke"):
        proc.wait()
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)  # ended and reaped: stopped, since `sleep 30` never finished
    assert not done.exists()

# -- waiting ----------------------------------------------------------------------------------


def test_exit_code_and_signal():
    status, _ = bash("exit 3")
    assert (status.exit_code, status.signal, status.ok_code) == (3, None, 3)
    assert not status.timed_out and not status.aborted and status.duration >= 0
    status, _ = bash("kill -9 $$")
    assert (status.exit_code, status.signal, status.ok_code) == (None, 9, 137)


def test_closing_stdout_waits_for_process_exit_not_eof(tmp_path):
    marker = tmp_path / "marker"
    status, out = bash(f"echo hi; exec >&- 2>&-; sleep 0.5; touch {marker}; exit 4")
    assert status.exit_code == 4
    assert marker.exists()
    assert out.text == "hi\r\n"


def test_wait_with_timeout_returns_none_while_running():
    proc = PtyProcess.spawn(["sleep", "1000"], on_output=Collector())
    try:
        assert proc.wait(0.05) is None
    finally:
        proc.abort(grace=1.0)
    assert proc.wait(LIMIT) is not None


def test_background_child_holding_the_pty_is_killed_after_leader_exits():
    # Ignores SIGHUP, so the kernel's hangup on session-leader exit does not end it.
    status, out = bash("(trap '' HUP INT TERM; exec sleep 1000) & echo pgid=$$; echo done; exit 5")
    assert status.exit_code == 5 and not status.aborted
    assert "done" in out.text
    assert_group_gone(pgid_from(out.text))


def test_background_child_that_never_goes_quiet_is_killed():
    status, out = bash(
        "(trap '' HUP; while :; do echo tick; sleep 0.05; done) & echo pgid=$$; sleep 0.2"
    )
    assert status.exit_code == 0
    assert_group_gone(pgid_from(out.text))


def test_nohup_background_child_is_killed(tmp_path):
    status, out = bash("nohup sleep 1000 & echo pgid=$$", cwd=str(tmp_path))
    assert status.exit_code == 0
    assert_group_gone(pgid_from(out.text))


def test_process_outside_the_containment_holding_the_pty_does_not_hang_wait():
    """Session tracking's blind spot (no tag, own session, orphaned) still cannot hang wait()."""
    escape = "import os; os.setsid(); print('escaped', flush=True); os.execvp('sleep', ['sleep', '1000'])"
    out = Collector()
    proc = PtyProcess.spawn(["bash", "-c", f'env -i {sys.executable} -c "{escape}" & echo spid=$!; read -r go'],
                            on_output=out, containment="session")
    out.wait_for("escaped")
    proc.write(b"go\r")
    status = supervise(proc, timeout=LIMIT)
    spid = int(re.search(r"spid=(\d+)", out.text).group(1))
    try:
        assert status.exit_code == 0 and not status.timed_out
        assert os.getsid(spid) == spid  # it escaped and is still there: the runner gave up on EOF
    finally:
        os.kill(spid, signal.SIGKILL)


# -- abort and timeout ------------------------------------------------------------------------


def test_abort_kills_the_whole_group():
    out = Collector()
    proc = PtyProcess.spawn(
        ["bash", "-c", "sleep 1000 & sleep 1000 & echo ready; wait"], on_output=out
    )
    out.wait_for("ready")
    assert len(live_pids(lambda pgrp, _: pgrp == proc.pgid)) == 3
    proc.abort(grace=0.5)
    status = proc.wait(LIMIT)
    assert status is not None and status.aborted and not status.timed_out
    assert_group_gone(proc.pgid)


def test_timeout_kills_the_whole_group():
    tag = f"rbtest-{uuid.uuid4().hex}"
    script = f"(exec -a {tag} sleep 1000) & (exec -a {tag} sleep 1000) & wait"
    proc = PtyProcess.spawn(["bash", "-c", script], on_output=Collector())
    status = supervise(proc, timeout=1.0, grace=0.5)
    assert status.timed_out and not status.aborted
    assert (status.exit_code is None) != (status.signal is None)  # exactly one is set
    assert_gone(lambda _, cmdline: tag.encode() in cmdline, "background children")
    assert_group_gone(proc.pgid)


def test_timeout_sets_timed_out():
    status, _ = bash("sleep 1000", timeout=0.2, grace=1.0)
    assert status.timed_out and not status.aborted
    assert status.signal == signal.SIGINT and status.exit_code is None


def test_escalates_int_then_term():
    out = Collector()
    script = "trap 'echo got-INT' INT; echo ready; while :; do sleep 0.05; done"
    proc = PtyProcess.spawn(["bash", "-c", script], on_output=out)
    out.wait_for("ready")
    proc.abort(grace=0.5)
    status = proc.wait(LIMIT)
    assert status is not None and status.signal == signal.SIGTERM and status.aborted
    assert "got-INT" in out.text


def test_command_ignoring_int_and_term_is_killed():
    out = Collector()
    proc = PtyProcess.spawn(
        ["bash", "-c", "trap '' INT TERM; echo ready; sleep 1000; echo after"], on_output=out
    )
    out.wait_for("ready")
    proc.abort(grace=0.1)
    status = proc.wait(LIMIT)
    assert status is not None and status.signal == signal.SIGKILL and status.aborted
    assert_group_gone(proc.pgid)


def test_abort_event_stops_run_command():
    event = threading.Event()
    out = Collector()

    def sink(text: str) -> None:
        out(text)
        if "ready" in out.text:
            event.set()

    status = run_command(
        ["bash", "-c", "echo ready; sleep 1000"],
        on_output=sink,
        abort_event=event,
        timeout=LIMIT,
        grace=1.0,
    )
    assert status.aborted and not status.timed_out


def test_abort_from_on_output_does_not_deadlock():
    holder: dict[str, PtyProcess] = {}
    assigned = threading.Event()

    def sink(text: str) -> None:
        if "ready" in text:
            assigned.wait(LIMIT)
            holder["proc"].abort(grace=0.5)

    proc = PtyProcess.spawn(["bash", "-c", "echo ready; sleep 1000"], on_output=sink)
    holder["proc"] = proc
    assigned.set()
    status = proc.wait(LIMIT)
    assert status is not None and status.aborted


def test_abort_after_exit_is_a_noop():
    proc = PtyProcess.spawn(["true"], on_output=Collector())
    first = proc.wait(LIMIT)
    proc.abort(grace=0.1)
    assert proc.wait(LIMIT) == first and first is not None and not first.aborted


# -- resources --------------------------------------------------------------------------------


def test_no_fd_thread_or_zombie_leaks():
    bash("echo warmup")
    fds, threads = fd_count(), threading.active_count()
    pids = []
    for i in range(20):
        out = Collector()
        proc = PtyProcess.spawn(["bash", "-c", f"echo {i}; exit {i % 3}"], on_output=out)
        status = proc.wait(LIMIT)
        assert status is not None and status.exit_code == i % 3
        assert out.text == f"{i}\r\n"
        pids.append(proc.pid)
    assert fd_count() == fds
    assert threading.active_count() == threads
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_spawn_failure_leaks_nothing():
    fds = fd_count()
    with pytest.raises(FileNotFoundError):
        PtyProcess.spawn(["/nonexistent/definitely-not-here"], on_output=Collector())
    assert fd_count() == fds
