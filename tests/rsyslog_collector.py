"""A real rsyslog collector for the checkpoint tests: its own config, work dir and pid file, an
imtcp listener on a free local port, and a template that writes each raw message to a file.

Skips when rsyslogd is missing (Debian package rsyslog), unless RUNBOOK_TUI_REQUIRE_RSYSLOG=1
(CI sets it): then the tests fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runbook_tui.audit.checkpoints import Checkpoint, read_checkpoints

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None)
_CONFIG = """\
global(workDirectory="{work}")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="checkpoints") {{
  action(type="omfile" file="{log}" template="raw" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="checkpoints")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Collector:
    """One rsyslogd in the foreground (`-n`), stopped and started again by the tests."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.log = base / "checkpoints.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> None:
        work = self.base / "work"
        work.mkdir(exist_ok=True)
        conf = self.base / "rsyslog.conf"
        conf.write_text(_CONFIG.format(work=work, log=self.log, port=self.port))
        assert RSYSLOGD is not None
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(self.base / "rsyslogd.pid")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.base / "rsyslogd.err", "ab"))
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = (self.base / "rsyslogd.err").read_text(errors="replace")
                    pytest.fail(f"rsyslogd did not start (exit {self.proc.poll()}): {err[-500:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def checkpoints(self) -> list[Checkpoint]:
        return list(read_checkpoints(self.log)) if self.log.exists() else []

    def wait_for(self, predicate: Callable[[list[Checkpoint]], bool], what: str) -> list[Checkpoint]:
        """Poll the log until `predicate` holds (rsyslog writes asynchronously to the socket)."""
        deadline = time.monotonic() + 30
        while not predicate(found := self.checkpoints()):
            if time.monotonic() > deadline:
                pytest.fail(f"the collector never logged {what}; it has {found}")
            time.sleep(0.05)
        return found


@pytest.fixture
def rsyslog() -> Iterator[Collector]:
    if RSYSLOGD is None:
        reason = "rsyslogd is not installed (Debian package rsyslog)"
        if os.environ.get("RUNBOOK_TUI_REQUIRE_RSYSLOG") == "1":
            pytest.fail(f"{reason} (RUNBOOK_TUI_REQUIRE_RSYSLOG=1)")
        pytest.skip(reason)
    collector = Collector(Path(tempfile.mkdtemp(prefix="rbt-rsyslog-")))
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()
        shutil.rmtree(collector.base, ignore_errors=True)
