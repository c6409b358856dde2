"""Nothing a command starts outlives it (issue 11, point 7), and a later process can tell (point 6).

Every escape below leaves the command's process group, so the group kill alone (what the runner
did before containments) misses it: each test first checks the escaped process is alive and
outside the group, then that it is really gone (/proc and kill(pid, 0)) after the command's end,
its abort or its timeout. Both containments run every case: the cgroup one (skipped where there
is no writable cgroup v2, unless RUNBOOK_TUI_REQUIRE_CGROUP=1) and the session-tracking fallback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from runbook_tui.engine import containment as containment_module
from runbook_tui.engine import runner as runner_module
from runbook_tui.engine.containment import (
    CgroupContainment,
    ProcessIdentity,
    SessionContainment,
    cgroup_available,
    how_to_stop,
    live_members,
    new_containment,
    read_stat,
    release,
    still_running,
)
from runbook_tui.engine.runner import PtyProcess
from runbook_tui.process import supervise
from tests.test_runner import LIMIT, Collector

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

HAVE_CGROUP = cgroup_available()
REQUIRE_CGROUP = os.environ.get("RUNBOOK_TUI_REQUIRE_CGROUP") == "1"
KINDS = [
    pytest.param("cgroup", marks=pytest.mark.skipif(
        not HAVE_CGROUP and not REQUIRE_CGROUP, reason="no writable cgroup v2 with cgroup.kill here")),
    "session",
]

# Each escape prints `esc=<pid>` of a long-running process that left the command's group.
DAEMON = textwrap.dedent("""\
    import os, sys
    if os.fork(): os._exit(0)
    os.setsid()
    if os.fork(): os._exit(0)
    print(f"esc={os.getpid()}", flush=True)
    fd = os.open(os.devnull, os.O_RDWR)
    for n in (0, 1, 2): os.dup2(fd, n)
    os.chdir("/")
    os.execvp("sleep", ["sleep", "1000"])
""")
ESCAPES = {
    "setsid": "setsid sh -c 'echo esc=$$; exec sleep 1000' &",
    "job-control": "set -m; sh -c 'echo esc=$$; exec sleep 1000' &",
    "double-fork": f"{sys.executable} -c '{DAEMON}'",
    "nohup-setsid": "nohup setsid sh -c 'echo esc=$$ >&3; exec sleep 1000 3>&-' 3>&1 >/dev/null 2>&1 &",
    # Ignored signals stay ignored across exec: this sleep ignores HUP, INT and TERM.
    "ignores-signals": "setsid sh -c 'trap \"\" HUP INT TERM; echo esc=$$; exec sleep 1000' &",
}


def escaped_pid(out: Collector) -> int:
    out.wait_for("esc=")
    return int(re.search(r"esc=(\d+)", out.text).group(1))


def assert_really_gone(pid: int, start_time: int) -> None:
    """Not alive any more: no process, a zombie (dead, waiting for its parent), or a new pid owner."""
    end = time.monotonic() + 5.0
    while still_running(pid, start_time) and time.monotonic() < end:
        time.sleep(0.02)
    stat = read_stat(pid)
    assert stat is None or not stat.alive or stat.start_time != start_time, f"{pid} still alive: {stat}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    assert stat is not None and (stat.state == "Z" or stat.start_time != start_time)


def escape_and_check_it_left_the_group(kind: str, escape: str, tail: str) -> tuple[PtyProcess, int, int]:
    """Start ``escape`` then ``tail``; the command waits for a line on its terminal in between."""
    out = Collector()
    proc = PtyProcess.spawn(["bash", "-c", f"{escape}\necho ready; read -r go\n{tail}"], on_output=out, containment=kind)
    try:
        esc = escaped_pid(out)
        out.wait_for("ready")
        stat = read_stat(esc)
        assert stat is not None and stat.alive
        assert stat.pgrp != proc.pgid, "this escape must leave the group for the test to mean anything"
        assert esc in proc.members()
    except BaseException:
        proc.abort(grace=0.2)
        proc.wait(LIMIT)
        raise
    proc.write(b"go\r")
    return proc, esc, stat.start_time


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("style", sorted(ESCAPES))
def test_escapes_die_at_the_end_of_the_command(kind, style):
    proc, esc, started = escape_and_check_it_left_the_group(kind, ESCAPES[style], "exit 0")
    status = proc.wait(LIMIT)
    assert status is not None and status.exit_code == 0 and not status.aborted
    assert_really_gone(esc, started)
    assert proc.members() == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("style", sorted(ESCAPES))
def test_escapes_die_when_the_command_is_aborted(kind, style):
    proc, esc, started = escape_and_check_it_left_the_group(kind, ESCAPES[style], "sleep 1000")
    proc.abort(grace=0.5)
    status = proc.wait(LIMIT)
    assert status is not None and status.aborted
    assert_really_gone(esc, started)


@pytest.mark.parametrize("kind", KINDS)
def test_a_timeout_kills_the_whole_tree(kind):
    out = Collector()
    proc = PtyProcess.spawn(["bash", "-c", f"{ESCAPES['ignores-signals']}\nsleep 1000"], on_output=out,
                            containment=kind)
    esc = escaped_pid(out)
    started = read_stat(esc).start_time
    status = supervise(proc, timeout=0.5, grace=0.3)
    assert status.timed_out
    assert_really_gone(esc, started)


@pytest.mark.skipif(not HAVE_CGROUP and not REQUIRE_CGROUP, reason="no writable cgroup v2 with cgroup.kill here")
def test_only_the_cgroup_holds_a_daemon_that_also_clears_its_environment():
    """Session tracking's blind spot (left the session, no tag, parent gone): the cgroup has it."""
    escape = f"env -i {sys.executable} -c '{DAEMON}'"
    proc, esc, started = escape_and_check_it_left_the_group("cgroup", escape, "exit 0")
    assert proc.wait(LIMIT) is not None
    assert_really_gone(esc, started)


@pytest.mark.skipif(not HAVE_CGROUP and not REQUIRE_CGROUP, reason="no writable cgroup v2 with cgroup.kill here")
def test_auto_uses_a_cgroup_here_and_removes_it_at_the_end():
    proc = PtyProcess.spawn(["sleep", "0.1"], on_output=Collector())
    path = proc.identity.cgroup
    assert path is not None and os.path.isdir(path)
    assert proc.pid in proc.members()
    assert proc.wait(LIMIT) is not None
    assert not os.path.exists(path)


@pytest.mark.skipif(not HAVE_CGROUP and not REQUIRE_CGROUP, reason="no writable cgroup v2 with cgroup.kill here")
def test_a_new_cgroup_removes_the_empty_ones_killed_apps_left_and_keeps_the_rest(monkeypatch):
    # In a scratch parent of our own: concurrent test runs' fresh cgroups must not count as stale.
    scratch = os.path.join(containment_module._own_cgroup(), f"runbook-tui-{uuid.uuid4().hex}")
    os.mkdir(scratch)
    empty = os.path.join(scratch, f"runbook-tui-{uuid.uuid4().hex}")
    os.mkdir(empty)
    busy = CgroupContainment(scratch)
    sleeper = subprocess.Popen(["sleep", "1000"], preexec_fn=busy.enter)
    fresh = None
    try:
        monkeypatch.setattr(containment_module, "_STALE_AFTER", -1.0)  # everything counts as old
        fresh = CgroupContainment(scratch)
        assert not os.path.exists(empty)
        assert busy.members() == [sleeper.pid]  # a process is in it: kept
        assert os.path.isdir(fresh.cgroup)
    finally:
        sleeper.kill()
        sleeper.wait()
        for box in (busy, fresh):
            if box is not None:
                box.kill()
                box.close()
        if os.path.isdir(empty):
            os.rmdir(empty)
        os.rmdir(scratch)


def test_auto_falls_back_to_session_tracking_when_no_cgroup_can_be_made(tmp_path, monkeypatch):
    # A directory that is not a cgroup: creating the command's cgroup "works", joining it cannot.
    monkeypatch.setattr(containment_module, "_own_cgroup", lambda: str(tmp_path))
    box = new_containment("auto")
    assert isinstance(box, SessionContainment) and box.cgroup is None
    assert list(tmp_path.iterdir()) == []  # nothing left behind by the failed attempt
    with pytest.raises(OSError):
        new_containment("cgroup")
    proc, esc, started = escape_and_check_it_left_the_group("auto", ESCAPES["setsid"], "exit 0")
    assert proc.identity.cgroup is None
    assert proc.wait(LIMIT) is not None
    assert_really_gone(esc, started)


def test_other_children_of_the_app_are_not_killed():
    """Only what descends from the command dies: a sibling subprocess of ours (git, docker) lives."""
    sibling = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        for kind in ("session", *(["cgroup"] if HAVE_CGROUP else [])):
            proc, esc, started = escape_and_check_it_left_the_group(kind, ESCAPES["setsid"], "exit 0")
            assert proc.wait(LIMIT) is not None
            assert_really_gone(esc, started)
            assert sibling.poll() is None, kind
    finally:
        sibling.kill()
        sibling.wait()


# -- identity, for resume --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_identity_names_the_leader_its_group_and_session(kind):
    proc = PtyProcess.spawn(["sleep", "1000"], on_output=Collector(), containment=kind)
    try:
        ident = proc.identity
        assert (ident.pid, ident.pgid, ident.sid) == (proc.pid, os.getpgid(proc.pid), os.getsid(proc.pid))
        with open(f"/proc/{proc.pid}/stat") as f:
            assert ident.start_time == int(f.read().rsplit(")", 1)[1].split()[19])
        assert still_running(ident.pid, ident.start_time)
        assert not still_running(ident.pid, ident.start_time + 1)  # same pid, another process
        assert live_members(ident) == [proc.pid]
        assert (ident.cgroup is not None) == (kind == "cgroup")
    finally:
        proc.abort(grace=0.2)
    assert proc.wait(LIMIT) is not None
    assert not still_running(ident.pid, ident.start_time)
    assert live_members(ident) == []


APP = textwrap.dedent("""\
    import json, sys, time
    from runbook_tui.engine.runner import PtyProcess
    from tests.test_runner import Collector
    out = Collector()
    proc = PtyProcess.spawn(["bash", "-c", sys.argv[2]], on_output=out, containment=sys.argv[1])
    out.wait_for("esc=")
    out.wait_for("ready")
    print(json.dumps(proc.identity.as_dict()), flush=True)
    time.sleep(1000)
""")


@pytest.mark.parametrize("kind", KINDS)
def test_after_the_app_is_killed_the_leader_dies_and_survivors_can_be_found_and_stopped(kind):
    """The interrupted-migration case: the app is SIGKILLed; resume must see what still runs."""
    # The leader ignores the hangup the dying app's PTY sends it: only the death signal ends it.
    script = f"trap '' HUP\n{ESCAPES['ignores-signals']}\necho ready\nsleep 1000"
    app = subprocess.Popen([sys.executable, "-c", APP, kind, script], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        line = app.stdout.readline()
        assert line, "the app ended before it started the command"
        ident = ProcessIdentity(**json.loads(line))
    finally:
        app.kill()  # SIGKILL: no cleanup of ours runs
        app.wait()
    try:
        # PR_SET_PDEATHSIG: the leader dies with the app.
        end = time.monotonic() + 5
        while still_running(ident.pid, ident.start_time) and time.monotonic() < end:
            time.sleep(0.02)
        assert not still_running(ident.pid, ident.start_time)
        # The escaped process ignores SIGHUP and nobody supervises it any more: resume must see it.
        (survivor,) = live_members(ident)
        started = read_stat(survivor).start_time
        stop = how_to_stop(ident, [survivor])
        subprocess.run(["sh", "-c", stop.replace("-TERM", "-KILL")], check=True, timeout=LIMIT)
        assert_really_gone(survivor, started)
        assert live_members(ident) == []
    finally:
        for pid in live_members(ident):
            os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 5
        while ident.cgroup and os.path.isdir(ident.cgroup) and time.monotonic() < end:
            release(ident)  # removes it once the kernel has emptied it
            time.sleep(0.02)
        assert not (ident.cgroup and os.path.isdir(ident.cgroup))


def test_a_recorded_group_whose_number_was_reused_names_nobody():
    """After the command's group is gone, its number can be a stranger's: never list or kill that."""
    stranger = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        start = read_stat(stranger.pid).start_time
        same = ProcessIdentity(pid=stranger.pid, pgid=stranger.pid, sid=stranger.pid, start_time=start,
                               cgroup=None, tag=uuid.uuid4().hex)  # in nobody's environment
        assert live_members(same) == [stranger.pid]
        reused = ProcessIdentity(**{**same.as_dict(), "start_time": start - 1})
        assert live_members(reused) == []
        assert how_to_stop(reused, [stranger.pid]) == f"kill -TERM {stranger.pid}"
        assert how_to_stop(same, [stranger.pid]) == f"kill -TERM -- -{stranger.pid}"
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize("change", [
    {"pgid": "1; rm -rf ~"}, {"pid": True}, {"sid": 1}, {"start_time": -1}, {"tag": "$(reboot)"},
    {"cgroup": "/tmp/runbook-tui-" + "0" * 32}, {"cgroup": "/sys/fs/cgroup/x/../../../home"},
    {"cgroup": "/sys/fs/cgroup/runbook-tui-$(reboot)"},
])
def test_a_hand_made_process_record_is_refused(change):
    """A transcript can be forged; its process record reaches /proc, rmdir and a shown shell command."""
    fields = {"pid": 10, "pgid": 10, "sid": 10, "start_time": 1, "cgroup": None, "tag": uuid.uuid4().hex}
    ProcessIdentity(**fields)  # the untouched record is fine
    with pytest.raises(ValueError):
        ProcessIdentity(**{**fields, **change})


def test_how_to_stop_names_the_group_and_what_left_it():
    ident = ProcessIdentity(pid=10, pgid=10, sid=10, start_time=1, cgroup=None, tag=uuid.uuid4().hex)
    me = os.getpid()  # a live process outside group 10
    assert how_to_stop(ident, [me]) == f"kill -TERM {me}"
    assert how_to_stop(ident, []) == ""


def test_spawning_from_a_thread_that_ends_does_not_kill_the_command():
    """The death signal follows the forking thread: the supervisor, not the caller, must fork."""
    import threading

    holder: list[PtyProcess] = []
    out = Collector()
    thread = threading.Thread(target=lambda: holder.append(
        PtyProcess.spawn(["bash", "-c", "sleep 0.5; echo survived"], on_output=out)))
    thread.start()
    thread.join()
    status = holder[0].wait(LIMIT)
    assert status is not None and status.exit_code == 0 and "survived" in out.text


def test_a_failed_spawn_leaves_no_cgroup_behind(monkeypatch):
    made = []

    def recording(kind):
        made.append(new_containment(kind))
        return made[-1]

    monkeypatch.setattr(runner_module, "new_containment", recording)
    with pytest.raises(FileNotFoundError):
        PtyProcess.spawn(["/nonexistent/definitely-not-here"], on_output=Collector())
    assert len(made) == 1
    assert made[0].cgroup is None or not os.path.exists(made[0].cgroup)


def test_cgroup_containment_rejects_a_parent_it_cannot_use(tmp_path):
    with pytest.raises(OSError):
        CgroupContainment(str(tmp_path / "missing"))
