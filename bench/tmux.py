"""A private tmux server for one measurement (cases 5 and 8): its own `-L` socket, so the only
server the bench ever kills is one it started, and no state carries over between measurements."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence

from bench.common import Context

# What tmux puts in the pane's TERM: a user inside tmux has one of these (tmux's own entry when
# the system has it, else the older screen one tmux documents as its fallback); Textual and
# ncurses programs read it to pick their escape sequences.
TERMS = ("tmux-256color", "screen-256color")
# The pane is the whole window (no status line), so the program gets exactly the 120x40 that
# Textual's headless driver gets in case 2.
WIDTH, HEIGHT = 120, 40
EXIT_GRACE = 3.0  # seconds a program may take to exit once its terminal is gone (SIGHUP)
CALL_TIMEOUT = 30.0  # a tmux client call that takes longer than this means the server is wedged
_SERVERS = itertools.count()  # a fresh socket name per server, within this bench process


def pane_term() -> str:
    """The first of TERMS this system has a terminfo entry for."""
    for term in TERMS:
        if subprocess.run(["infocmp", term], capture_output=True, check=False).returncode == 0:
            return term
    return TERMS[-1]


class Server:
    """One tmux server, started by `start` with a single detached 120x40 session running `command`."""

    SESSION = "bench"

    def __init__(self, ctx: Context, tag: str) -> None:
        self.ctx = ctx
        self.socket = f"rbt-bench-{os.getpid()}-{tag}-{next(_SERVERS)}"
        self.conf = ctx.work / f"tmux-{self.socket}.conf"
        self.conf.write_text(f"set -g default-terminal {pane_term()}\nset -g status off\n", encoding="utf-8")

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        # COLUMNS and LINES (pytest sets them) would override the pane's size in Textual and curses
        env = {key: value for key, value in self.ctx.env.items() if key not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-L", self.socket, "-f", str(self.conf), *args], capture_output=True,
                              text=True, env=env, cwd=self.ctx.work, timeout=CALL_TIMEOUT, check=False)

    def start(self, command: Sequence[str]) -> None:
        started = self("new-session", "-d", "-s", self.SESSION, "-x", str(WIDTH), "-y", str(HEIGHT),
                       shlex.join(command))
        if started.returncode != 0:
            raise RuntimeError(f"tmux new-session failed: {started.stderr.strip()}")

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", self.SESSION).stdout

    def press(self, key: str) -> None:
        self("send-keys", "-t", self.SESSION, key)

    def wait_for(self, texts: Sequence[str], timeout: float, poll: float) -> str:
        """The screen once every one of `texts` is on it; RuntimeError with the screen after `timeout`."""
        deadline = time.perf_counter() + timeout
        while True:
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{texts!r} not on screen after {timeout:g}s; screen:\n{screen}")
            time.sleep(poll)

    def pane_pid(self) -> int:
        return int(self("list-panes", "-t", self.SESSION, "-F", "#{pane_pid}").stdout.split()[0])

    def kill(self, pane: int) -> bool:
        """Kill this server; whether the pane's program `pane` then exited within EXIT_GRACE seconds."""
        self("kill-server")
        self.conf.unlink(missing_ok=True)
        return exited(pane) if pane else True


def line_at_left_edge(screen: str, text: str) -> bool:
    """Whether a line of `screen` shows `text` where an output line starts: at column 0 or right
    after a border glyph, not after a space (so `seq 2000` in a title is not the line `2000`)."""
    return re.search(rf"(?<![\w ]){re.escape(text)}(?!\w)", screen) is not None


def exited(pid: int) -> bool:
    """Wait for the pane's program to exit; kill its process group (its own session) if it does not."""
    deadline = time.monotonic() + EXIT_GRACE
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return False


def _alive(pid: int) -> bool:
    """Running, not a zombie: with tmux gone the program is reaped by whatever adopts it, and
    that can take seconds (in this sandbox PID 1 is not an init), so `kill(pid, 0)` would still
    succeed on a program that has long exited."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")

