"""End to end in a real terminal: the TUI under tmux, driven with send-keys, read with capture-pane.

Skips when tmux is missing, unless RUNBOOK_TUI_REQUIRE_TMUX=1 (then it fails). Uses its own tmux
server (`-L` socket) and kills only that server.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tui_helpers import events

RUNBOOK = textwrap.dedent("""\
    # E2E check

    **Owner:** runbook-tui tests

    ## Steps
    1. **Say the answer**
       - `echo e2e-$((6*7))`
""")


class Tmux:
    """One private tmux server."""

    def __init__(self) -> None:
        self.socket = f"rbt-e2e-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], check=False, capture_output=True, text=True,
                              timeout=30)
        if check and done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "e2e")

    def press_until(self, key: str, done: Callable[[], object], tries: int = 6) -> None:
        """Press `key` until `done()` holds: a key sent while the app is still starting up (on a
        loaded machine) can be missed, and an operator would simply press it again."""
        for _ in range(tries):
            self("send-keys", "-t", "e2e", key)
            try:
                if done():
                    return
            except AssertionError:
                continue
        raise AssertionError(f"pressing {key!r} {tries} times did not get there; the screen:\n{self.screen()}")

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on screen after {timeout}s; the screen:\n{screen}")
            time.sleep(0.1)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        if os.environ.get("RUNBOOK_TUI_REQUIRE_TMUX") == "1":
            pytest.fail("tmux is missing and RUNBOOK_TUI_REQUIRE_TMUX=1")
        pytest.skip("tmux is not installed (set RUNBOOK_TUI_REQUIRE_TMUX=1 to make this a failure)")
    server = Tmux()
    try:
        yield server
    finally:
        server("kill-server", check=False)


def wait_for_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.1)
    return path.read_text().strip()


def test_run_a_command_in_a_real_terminal(tmux: Tmux, tmp_path: Path) -> None:
    book = tmp_path / "e2e.md"
    book.write_text(RUNBOOK, encoding="utf-8")
    transcript = tmp_path / "t.jsonl"
    exit_file = tmp_path / "exit-code"
    app = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "runbook_tui", str(book),
                                                "--transcript", str(transcript)))
    config = shlex.quote(str(tmp_path / "config"))  # no user settings, keymap or themes
    shell = (f"cd {shlex.quote(str(tmp_path))} && XDG_CONFIG_HOME={config} {app}; "
             f"echo $? > {shlex.quote(str(exit_file))}")
    tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "e2e", shell)

    tmux.wait_for("0/1 tasks")
    tmux.wait_for("echo e2e-$((6*7))")
    tmux.press_until("Enter", lambda: tmux.wait_for("Run task 1.1.1?", timeout=5))
    tmux("send-keys", "-t", "e2e", "y")
    screen = tmux.wait_for("e2e-42")
    assert "[exit 0," in tmux.wait_for("[exit 0,"), screen
    tmux.wait_for("1/1 tasks")
    tmux("send-keys", "-t", "e2e", "q")

    assert wait_for_file(exit_file) == "0", "every task settled and passed: the run succeeded"
    verified = subprocess.run([sys.executable, "-m", "runbook_tui", "transcript", "verify", str(transcript)],
                              check=False, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    kinds = [e["type"] for e in events(transcript)]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished"
    assert "command.started" in kinds and "command.finished" in kinds
    (started,) = events(transcript, "command.started")
    assert started["command"] == "echo e2e-$((6*7))"
    assert "e2e-42" in "".join(e["text"] for e in events(transcript, "output"))
    assert events(transcript, "command.finished")[0]["exit_code"] == 0
    assert events(transcript, "run.finished")[0]["result"] == "success"
    assert events(transcript, "run.started")[0]["operator"]["tty"] is not None, "it ran on a terminal"


def _running(needle: str) -> list[int]:
    """Processes (not zombies) whose command line holds `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def test_the_app_exits_when_its_terminal_goes_away(tmux: Tmux, tmp_path: Path) -> None:
    """The SSH session drops (tmux kill-server hangs up the pane): the app records why and exits,
    releasing its run lock, instead of blocking for ever on writes to a terminal that is gone."""
    book = tmp_path / "e2e.md"
    book.write_text(RUNBOOK, encoding="utf-8")
    transcript = tmp_path / f"hangup-{uuid.uuid4().hex}.jsonl"
    app = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "runbook_tui", str(book),
                                                "--transcript", str(transcript)))
    tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "e2e",
         f"cd {shlex.quote(str(tmp_path))} && XDG_CONFIG_HOME={shlex.quote(str(tmp_path / 'config'))} {app}")
    tmux.wait_for("0/1 tasks")
    assert _running(transcript.name), "the app is running"

    tmux("kill-server")
    deadline = time.monotonic() + 30
    while _running(transcript.name) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _running(transcript.name)
    for pid in left:  # only our own app, found by its unique transcript name
        os.kill(pid, 9)
    assert not left, "the app was still running 30 s after its terminal went away"
    kinds = [e["type"] for e in events(transcript)]
    assert kinds[-2:] == ["operator.disconnected", "run.aborted"], kinds


def test_switching_to_a_related_runbook_starts_its_own_run(tmux: Tmux, tmp_path: Path) -> None:
    """o opens the related runbook, r and y end this run; the same command then runs the other one."""
    book = tmp_path / "deploy.md"
    book.write_text(RUNBOOK + "\nIf it goes wrong, see [the rollback](./rollback.md).\n", encoding="utf-8")
    (tmp_path / "rollback.md").write_text(textwrap.dedent("""\
        # Roll back

        ## Steps
        1. **Say so**
           - `echo rolled-back`
    """), encoding="utf-8")
    transcript = tmp_path / "deploy.jsonl"
    exit_file = tmp_path / "exit-code"
    app = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "runbook_tui", str(book),
                                                "--transcript", str(transcript)))
    config = shlex.quote(str(tmp_path / "config"))
    state = shlex.quote(str(tmp_path / "state"))
    tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "e2e",
         f"cd {shlex.quote(str(tmp_path))} && XDG_CONFIG_HOME={config} XDG_STATE_HOME={state} {app}; "
         f"echo $? > {shlex.quote(str(exit_file))}")
    tmux.wait_for("0/1 tasks")
    tmux.press_until("o", lambda: tmux.wait_for("related runbook, read-only", timeout=5))
    tmux.press_until("r", lambda: tmux.wait_for("and run Roll back?", timeout=5))
    tmux("send-keys", "-t", "e2e", "y")
    # The related screen shows "Roll back" too: wait for the new app's own screen (no read-only title).
    deadline = time.monotonic() + 30
    while not ("Roll back" in (screen := tmux.screen()) and "read-only" not in screen
               and "echo rolled-back" in screen and "0/1 tasks" in screen):
        assert time.monotonic() < deadline, f"the rollback run never came up; the screen:\n{screen}"
        time.sleep(0.1)
    tmux.press_until("q", lambda: wait_for_file(exit_file, timeout=5))  # the new app may still be starting
    assert wait_for_file(exit_file) == "1", "the rollback run was left with a task not done"

    switched = events(transcript, "runbook.switched")[-1]
    assert switched["path"] == str((tmp_path / "rollback.md").resolve())
    assert events(transcript)[-1]["type"] == "run.aborted"
    following = Path(switched["transcript"])
    started = events(following, "run.started")[0]
    assert started["runbook"]["path"] == str((tmp_path / "rollback.md").resolve())
    assert events(following)[-1]["type"] == "run.aborted"


PANE_RUNBOOK = textwrap.dedent("""\
    # Pane check

    ## Steps
    1. **Print a lot**

       ```sh
       printf '\\033[31m%s\\033[0m %s\\n' red-marker "first-line-$((6*7))"; seq 2 200000
       ```
""")
_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _foreground(params: str) -> tuple[int, int, int] | None:
    """The foreground an SGR sets, as RGB (tmux passes 38;5;N or 38;2;R;G;B as the terminal has it)."""
    from rich.color import Color

    codes = params.split(";")
    for index, code in enumerate(codes[:-2]):
        if code == "38" and codes[index + 1] == "5":
            return tuple(Color.from_ansi(int(codes[index + 2])).get_truecolor())  # type: ignore[return-value]
        if code == "38" and codes[index + 1] == "2" and index + 4 < len(codes):
            return int(codes[index + 2]), int(codes[index + 3]), int(codes[index + 4])
    return None


def _footer(tmux: Tmux, text: str, *, without: str | None = None, timeout: float = 10) -> bool:
    """Wait until the footer (the last row) shows `text`, and not `without`."""
    deadline = time.monotonic() + timeout
    while True:
        footer = tmux.screen().rstrip("\n").splitlines()[-1]
        if text in footer and (without is None or without not in footer):
            return True
        if time.monotonic() > deadline:
            raise AssertionError(f"footer {footer!r} after {timeout}s; wanted {text!r} without {without!r}")
        time.sleep(0.1)


def test_the_log_pane_shows_colours_and_finds_line_one_of_200000_lines(tmux: Tmux, tmp_path: Path) -> None:
    """In a real terminal: the command's red comes out red, and `/` finds its first line, which
    the pane no longer holds in memory (read back from the transcript)."""
    book = tmp_path / "pane.md"
    book.write_text(PANE_RUNBOOK, encoding="utf-8")
    transcript = tmp_path / "t.jsonl"
    exit_file = tmp_path / "exit-code"
    app = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "runbook_tui", str(book),
                                                "--transcript", str(transcript)))
    config = shlex.quote(str(tmp_path / "config"))
    tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "e2e",
         f"cd {shlex.quote(str(tmp_path))} && XDG_CONFIG_HOME={config} {app}; echo $? > {shlex.quote(str(exit_file))}")
    tmux.wait_for("0/1 tasks")
    tmux.press_until("Enter", lambda: tmux.wait_for("Run task 1.1.1?", timeout=5))
    tmux("send-keys", "-t", "e2e", "y")
    tmux.wait_for("[exit 0,", timeout=120)
    tmux.press_until("Tab", lambda: _footer(tmux, "n Next", timeout=2), tries=8)  # the pane's keys in the footer
    tmux("send-keys", "-t", "e2e", "/")
    _footer(tmux, "/ Search", without="n Next")  # the search field has focus (a toast may cover it)
    tmux("send-keys", "-t", "e2e", "-l", "first-line-42")
    tmux("send-keys", "-t", "e2e", "Enter")
    screen = tmux.wait_for("red-marker first-line-42", timeout=30)
    assert "line 2 of 200,002" in screen, screen

    coloured = tmux("capture-pane", "-e", "-p", "-t", "e2e")
    line = next(row for row in coloured.splitlines() if "first-line-42" in row)
    colours = [_foreground(params) for params in _SGR.findall(line[: line.index("red-marker")])]
    red = next((colour for colour in reversed(colours) if colour is not None), None)
    plain_part = line[line.index("red-marker") + len("red-marker") : line.index("first-line-42")]
    assert red is not None and red[0] > 2 * max(red[1], red[2]), f"not red: {red} in {line!r}"
    assert "\x1b[" in plain_part, "the colour ends where the command reset it"

    tmux("send-keys", "-t", "e2e", "q")
    assert wait_for_file(exit_file) == "0"


def test_a_full_screen_program_gets_the_terminal_and_gives_it_back(tmux: Tmux, tmp_path: Path) -> None:
    """`less` is not marked interactive: when it switches to the alternate screen the app hands
    it the real terminal, `q` quits it, and the app is back with the task done and recorded."""
    pages = tmp_path / "pages.txt"
    pages.write_text("".join(f"page-line-{n}\n" for n in range(200)))
    book = tmp_path / "less.md"
    book.write_text(f"# Pager\n\n## Steps\n\n1. Read\n   - `less {pages}`\n", encoding="utf-8")
    transcript = tmp_path / "t.jsonl"
    exit_file = tmp_path / "exit-code"
    app = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "runbook_tui", str(book),
                                                "--transcript", str(transcript)))
    config = shlex.quote(str(tmp_path / "config"))
    shell = (f"cd {shlex.quote(str(tmp_path))} && XDG_CONFIG_HOME={config} {app}; "
             f"echo $? > {shlex.quote(str(exit_file))}")
    tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "e2e", shell)
    tmux.wait_for("0/1 tasks")
    tmux.press_until("Enter", lambda: tmux.wait_for("Run task 1.1.1?", timeout=5))
    tmux("send-keys", "-t", "e2e", "y")
    screen = tmux.wait_for("page-line-0")
    assert "0/1 tasks" not in screen, "the pager has the whole terminal"
    tmux("send-keys", "-t", "e2e", "q")
    tmux.wait_for("1/1 tasks")
    tmux("send-keys", "-t", "e2e", "q")
    assert wait_for_file(exit_file) == "0"
    assert "page-line-0" in "".join(e["text"] for e in events(transcript, "output")), "still recorded"
    (finished,) = events(transcript, "task.finished")
    assert finished["status"] == "done"


def launch(tmux: Tmux, tmp_path: Path, *args: str) -> Path:
    """`runbook-tui ARGS` in the tmux session, with no user settings; the file its exit code goes to."""
    exit_file = tmp_path / "exit-code"
    app = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "runbook_tui", *args))
    config = shlex.quote(str(tmp_path / "config"))
    shell = (f"cd {shlex.quote(str(tmp_path))} && XDG_CONFIG_HOME={config} {app}; "
             f"echo $? > {shlex.quote(str(exit_file))}")
    tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "e2e", shell)
    return exit_file


def test_headless_run_hands_a_full_screen_program_the_terminal(tmux: Tmux, tmp_path: Path) -> None:
    """`run` on a terminal, like the app: `less` gets the real terminal (its own keys work, nothing
    of ours is printed over its screen) and gives it back on `q`; the run goes on."""
    pages = tmp_path / "pages.txt"
    pages.write_text("".join(f"page-line-{n:04d}\n" for n in range(200)))
    book = tmp_path / "less.md"
    book.write_text(f"# Pager\n\n## Steps\n\n1. Read\n   - `less {pages}`\n2. After\n   - `echo after-less`\n")
    transcript = tmp_path / "t.jsonl"
    exit_file = launch(tmux, tmp_path, "run", str(book), "--transcript", str(transcript))
    tmux.wait_for("Run it?")
    tmux("send-keys", "-t", "e2e", "y", "Enter")
    tmux.wait_for("page-line-0000")
    tmux.press_until("G", lambda: tmux.wait_for("(END)", timeout=3))  # less's own key: the end of the file
    bottom = [line for line in tmux.screen().splitlines() if line.strip()][-4:]
    assert bottom == ["page-line-0197", "page-line-0198", "page-line-0199", "(END)"], bottom
    tmux("send-keys", "-t", "e2e", "q")
    screen = tmux.wait_for("echo after-less")
    assert "✓ 1.1.1 done" in screen, screen
    tmux("send-keys", "-t", "e2e", "y", "Enter")
    assert wait_for_file(exit_file) == "0"
    assert "page-line-0199" in "".join(e["text"] for e in events(transcript, "output")), "recorded all along"
    assert not events(transcript, "input.sent"), "the keys went to less, not through a question"


def test_resume_on_a_terminal_opens_the_app_on_the_interrupted_run(tmux: Tmux, tmp_path: Path) -> None:
    from tests.test_tui_resume import interrupted_run

    transcript = interrupted_run(tmp_path)
    exit_file = launch(tmux, tmp_path, "resume", str(transcript))
    screen = tmux.wait_for("was running when the run stopped")
    assert "1/3 tasks" in screen, screen
    tmux("send-keys", "-t", "e2e", "Down", "Enter")  # skip the interrupted task
    tmux.wait_for("2/3 tasks")
    tmux.press_until("Enter", lambda: tmux.wait_for("Run task 1.3.1?", timeout=5))
    tmux("send-keys", "-t", "e2e", "y")
    tmux.wait_for("3/3 tasks")
    tmux("send-keys", "-t", "e2e", "q")
    assert wait_for_file(exit_file) == "0"
    kinds = events(transcript)
    since = [e["type"] for e in kinds].index("run.resumed")
    assert [e["task_id"] for e in kinds[since:] if e["type"] == "command.started"] == ["1.3.1"]
    assert kinds[-1]["type"] == "run.finished"


def test_input_and_a_masked_password_are_typed_from_the_app(tmux: Tmux, tmp_path: Path) -> None:
    """In a real terminal: `read -p` answered from the app's question, then a `sudo -S`-style
    echo-off prompt, whose answer appears nowhere: not on screen, transcript or any export."""
    password = "Tm9-" + uuid.uuid4().hex[:10]
    book = tmp_path / "ask.md"
    book.write_text("# Ask\n\n## Steps\n\n1. Ask\n"
                    "   - `read -r -p 'name: ' who; echo \"hello $who\"`\n"
                    "   - `read -r -s -p '[sudo] password: ' pw; echo; echo \"got ${#pw} characters\"`\n")
    transcript = tmp_path / "t.jsonl"
    exit_file = launch(tmux, tmp_path, str(book), "--transcript", str(transcript))
    tmux.wait_for("0/2 tasks")
    tmux.press_until("Enter", lambda: tmux.wait_for("Run task 1.1.1?", timeout=5))
    tmux("send-keys", "-t", "e2e", "y")
    screen = tmux.wait_for("Task 1.1.1 waits for input")
    assert "name:" in screen
    tmux("send-keys", "-t", "e2e", "-l", "ann")
    tmux("send-keys", "-t", "e2e", "Enter")
    tmux.wait_for("hello ann")
    tmux.press_until("Enter", lambda: tmux.wait_for("Run task 1.1.2?", timeout=5))
    tmux("send-keys", "-t", "e2e", "y")
    tmux.wait_for("waits for hidden input")
    tmux("send-keys", "-t", "e2e", "-l", password)
    assert password not in tmux.screen(), "typed masked"
    tmux("send-keys", "-t", "e2e", "Enter")
    tmux.wait_for("got 14 characters")
    tmux.wait_for("2/2 tasks")
    tmux("send-keys", "-t", "e2e", "q")
    assert wait_for_file(exit_file) == "0"
    assert [(e["masked"], e["text"]) for e in events(transcript, "input.sent")] == [(False, "ann"), (True, None)]
    exports = [subprocess.run([sys.executable, "-m", "runbook_tui", "transcript", "export", str(transcript),
                               "--format", fmt], check=True, capture_output=True, text=True, timeout=60).stdout
               for fmt in ("md", "json", "cast")]
    assert "hello ann" in exports[0]
    for text in (transcript.read_text(), *exports):
        assert password not in text
