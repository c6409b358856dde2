"""Issue 11: nothing runs that the operator did not see and approve, on every path.

Each reproduction from the issue is a regression test here (headless on a real PTY and the
TUI under Pilot), every palette command is exercised, and two hypothesis searches drive random
sequences (keys, palette commands, dialog answers; headless answers on a PTY) against the
invariant in tests/guard_invariant.py after every step.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from runbook_tui.audit.terminal import TERMINAL_RESET
from runbook_tui.audit.transcript import read_events
from runbook_tui.engine.containment import read_stat
from runbook_tui.engine.policy import task_risk
from runbook_tui.engine.trust import trust
from runbook_tui.parse import load_runbook
from runbook_tui.tui.app import make_app
from runbook_tui.tui.screens.dialogs import ConfirmCommand, ConfirmStep, TextPrompt, YesNo
from tests.guard_invariant import unapproved_starts
from tests.test_reliability import Terminal, cli, rbt, write
from tests.tui_helpers import answer_questions_left_open, notifications, select, until, until_event, until_screen

SIZE = (120, 40)


def until_true(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def events(path: Path) -> list[dict[str, Any]]:
    return list(read_events(path)) if path.exists() else []


def guarded(path: Path, book: Path, *, trusted: bool) -> list[str]:
    runbook = load_runbook(book)
    confirm_false = {t.id for t in runbook.commands() if t.options.confirm is False}
    high = {t.id for t in runbook.commands() if task_risk(runbook, t).level == "high"}
    return unapproved_starts(events(path), trusted=trusted, confirm_false=confirm_false, high_risk=high)


# ---- the invariant checker itself must be able to fail ---------------------------------------------

def test_the_invariant_catches_a_start_without_approval() -> None:
    base = [{"seq": 0, "type": "run.started", "mode": "paranoid", "trusted": False}]
    start = {"seq": 2, "type": "command.started", "task_id": "1.1.1", "run_command": "rm -rf x"}
    assert unapproved_starts([*base, start], trusted=False)
    approved = {"seq": 1, "type": "confirm.answered", "answer": "run", "task_id": "1.1.1", "approved": "rm -rf x"}
    assert unapproved_starts([*base, approved, start], trusted=False) == []
    other = {**approved, "approved": "echo harmless"}
    assert unapproved_starts([*base, other, start], trusted=False), "approved another text"
    auto = {"seq": 1, "type": "policy.allowed", "task_id": "1.1.1", "run_command": "rm -rf x", "reason": "auto"}
    assert unapproved_starts([{**base[0], "mode": "auto"}, auto, start], trusted=False), "auto, untrusted"
    trusted_auto = [{**base[0], "mode": "auto", "trusted": True}, auto, start]
    assert unapproved_starts(trusted_auto, trusted=True) == []
    assert unapproved_starts(trusted_auto, trusted=True, high_risk={"1.1.1"}), "high risk needs a person"
    assert unapproved_starts([*base, approved, start, start], trusted=False), "one approval, one start"


# ---- headless reproductions --------------------------------------------------------------------------

CONFIRM_FALSE = """
    # Untrusted
    ## Steps
    ```sh {confirm=false}
    touch ran-unasked
    ```
    """


def test_an_untrusted_runbook_cannot_switch_off_its_own_confirmation(tmp_path: Path) -> None:
    book = write(tmp_path, CONFIRM_FALSE)
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--transcript", str(transcript)), cwd=tmp_path)
    try:
        shown = term.wait_for(b"Run it?").decode("utf-8", "replace")
        assert not (tmp_path / "ran-unasked").exists()
        assert "confirm=false is ignored" in shown
        term.type(b"y\n")
        assert term.wait(30) == 0
    finally:
        term.close()
    assert (tmp_path / "ran-unasked").exists()
    assert guarded(transcript, book, trusted=False) == []


def test_a_trusted_runbook_may_switch_off_its_confirmation(tmp_path: Path) -> None:
    book = write(tmp_path, CONFIRM_FALSE)
    trust(load_runbook(book))
    transcript = tmp_path / "t.jsonl"
    done = cli("run", str(book), "--yes", "--transcript", str(transcript), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (allowed,) = [e for e in events(transcript) if e["type"] == "policy.allowed"]
    assert allowed["reason"] == "confirm=false on a trusted runbook"
    assert guarded(transcript, book, trusted=True) == []


def test_step_mode_shows_every_line_of_every_script(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # Steps
        ## Steps
        1. **Disk**
           ```sh
           df -h /
           touch second-line-ran
           ```
        """)
    trust(load_runbook(book))
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--mode", "step", "--transcript", str(transcript)), cwd=tmp_path)
    try:
        shown = term.wait_for(b"Run this step?").decode("utf-8", "replace")
        assert "df -h /" in shown and "touch second-line-ran" in shown
        term.type(b"a\n")
        term.wait(30)
    finally:
        term.close()
    assert not (tmp_path / "second-line-ran").exists()
    (asked,) = [e for e in events(transcript) if e["type"] == "confirm.asked"]
    assert "touch second-line-ran" in asked["commands"][0]["prompt"], "the transcript records what was shown"


def test_command_output_cannot_conceal_the_next_prompt(tmp_path: Path) -> None:
    """The first command prints a fake prompt and switches on conceal (SGR 8): the real question
    for the second command must be reset back to visible before it is asked."""
    book = write(tmp_path, r"""
        # Fake
        ## Steps
        - `printf 'Run it? [y]: \033[8m'`
        - `touch should-ask-first`
        """)
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--transcript", str(transcript)), cwd=tmp_path)
    try:
        term.wait_for(b"Run it? [y]es")
        term.type(b"y\n")
        term.wait_for(b"touch should-ask-first")
        output = term.wait_for(b"[e]dit, [a]bort", timeout=30).decode("utf-8", "replace")
        term.type(b"a\n")
        term.wait(30)
    finally:
        term.close()
    second = output.rindex("task 1.1.2")
    conceal = output.index("\x1b[8m")
    assert conceal < output.index(TERMINAL_RESET, conceal) < second, "reset after the output, before the question"
    assert not (tmp_path / "should-ask-first").exists()


@pytest.mark.parametrize("source", ["front matter", "--var", "task env"])
def test_dangerous_environment_is_high_risk(tmp_path: Path, source: str) -> None:
    front = "---\nenv:\n  BASH_ENV: ./evil.sh\n---\n" if source == "front matter" else ""
    annotation = " {env=BASH_ENV=./evil.sh}" if source == "task env" else ""
    book = write(tmp_path, f"{front}# Env\n## Steps\n```sh{annotation}\necho hello\n```\n")
    (tmp_path / "evil.sh").write_text("touch evil-ran\n")
    assert cli("trust", str(book), cwd=tmp_path).returncode == 0
    extra = ["--var", "BASH_ENV=./evil.sh"] if source == "--var" else []
    plan = cli("plan", str(book), cwd=tmp_path).stdout
    if source != "--var":
        assert "HIGH RISK" in plan and "BASH_ENV" in plan, plan
    done = cli("run", str(book), "--yes", *extra, "--transcript", str(tmp_path / "t.jsonl"), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert not (tmp_path / "evil-ran").exists(), "--yes never answers a high-risk question"
    (asked,) = [e for e in events(tmp_path / "t.jsonl") if e["type"] == "confirm.asked"]
    assert asked["risk"] == "high" and any("BASH_ENV" in r for r in asked["risk_reasons"])
    assert asked["env"]["BASH_ENV"] == "./evil.sh", "the prompt shows the value, not only the name"


def test_resume_takes_mode_and_values_from_now_not_from_the_transcript(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # Resume
        ## Steps
        - `echo first-$WHO`
        - `touch second-ran-$WHO`
        """)
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--var", "WHO=alice", "--transcript", str(transcript)), cwd=tmp_path)
    try:
        term.wait_for(b"Run it?")
        term.type(b"y\n")
        until_true(lambda: term.output.count(b"Run it?") == 2, "the second question")  # kill the app there
        os.killpg(term.proc.pid, signal.SIGKILL)
        term.proc.wait(10)
    finally:
        term.close()
    done = cli("resume", str(transcript), "--yes", cwd=tmp_path)
    assert done.returncode == 2 and "not trusted" in done.stderr, "untrusted: no unattended resume"
    trust(load_runbook(book))
    done = cli("resume", str(transcript), "--yes", "--var", "WHO=bob", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "second-ran-bob").exists(), "the value given now, not the transcript's"
    resumed = [e for e in events(transcript) if e["type"] == "run.resumed"]
    assert resumed[0]["mode"] == "paranoid" and resumed[0]["trusted"] is True


def test_resume_refuses_while_the_interrupted_command_still_runs(tmp_path: Path) -> None:
    """A hand-made transcript whose interrupted command is a live process group of ours."""
    import subprocess

    book = write(tmp_path, "# R\n## Steps\n- `echo one --x`\n")
    transcript = tmp_path / "t.jsonl"
    assert cli("run", str(book), "--mode", "noop", "--transcript", str(transcript), cwd=tmp_path).returncode == 0
    lines = transcript.read_text().splitlines()
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        from runbook_tui.audit.transcript import Transcript

        # Rebuild a chain that ends with the command running in `sleeper`'s group.
        rebuilt = tmp_path / "r.jsonl"
        with Transcript.create(rebuilt) as record:
            first = __import__("json").loads(lines[0])
            record.append("run.started", **{k: v for k, v in first.items()
                                             if k not in ("seq", "ts", "type", "prev", "hash")})
            record.append("command.started", task_id="1.1.1", step_id="1.1", command="echo one --x",
                          run_command="echo one --x", cwd=str(tmp_path), attempt=1)
            record.append("command.spawned", task_id="1.1.1", attempt=1, host=os.uname().nodename,
                          pid=sleeper.pid, pgid=sleeper.pid, sid=sleeper.pid, cgroup=None, tag="0" * 32,
                          start_time=read_stat(sleeper.pid).start_time)
        done = cli("resume", str(rebuilt), "--yes", "--interrupted", "rerun", cwd=tmp_path)
        assert done.returncode == 2 and "still running" in done.stderr, done.stderr
        assert f"kill -TERM -- -{sleeper.pid}" in done.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    done = cli("resume", str(rebuilt), "--mode", "noop", "--interrupted", "rerun", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_after_sighup_no_further_attempt_starts(tmp_path: Path) -> None:
    book = write(tmp_path, """
        # Retries
        ## Steps
        - `sh -c 'sleep 1; exit 1'` <!-- runbook: retries=3 -->
        """)
    trust(load_runbook(book))
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--yes", "--transcript", str(transcript)), cwd=tmp_path,
                    stdin_tty=False)
    try:
        term.wait_for(b"sleep 1")
        os.kill(term.proc.pid, signal.SIGHUP)
        term.wait(30)
    finally:
        term.close()
    kinds = [e["type"] for e in events(transcript)]
    assert kinds.count("command.started") == 1, kinds
    assert kinds[-1] == "run.aborted" and "operator.disconnected" in kinds


def test_two_signals_at_once_still_end_the_transcript_with_run_aborted(tmp_path: Path) -> None:
    book = write(tmp_path, "# S\n## Steps\n- `echo one --x`\n")
    transcript = tmp_path / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--transcript", str(transcript)), cwd=tmp_path)
    try:
        term.wait_for(b"Run it?")
        os.kill(term.proc.pid, signal.SIGTERM)
        os.kill(term.proc.pid, signal.SIGINT)
        os.kill(term.proc.pid, signal.SIGTERM)
        assert term.wait(30) == 1
        assert b"Traceback" not in term.output
    finally:
        term.close()
    kinds = [e["type"] for e in events(transcript)]
    assert kinds[-1] == "run.aborted", kinds
    assert cli("transcript", "verify", str(transcript)).returncode == 0


def test_a_secret_reaches_only_the_tasks_that_use_it(tmp_path: Path) -> None:
    book = write(tmp_path, """
        ---
        secrets:
          API_TOKEN: env:TEST_SECRET_SOURCE
        ---
        # Scoped
        ## Steps
        - `sh -c 'echo "other sees [${API_TOKEN:-nothing}]"'` <!-- runbook: name=other -->
        - `test -n "$API_TOKEN" && echo user-sees-it`
        """)
    trust(load_runbook(book))
    env = {**os.environ, "TEST_SECRET_SOURCE": "s3cr3t-value"}
    transcript = tmp_path / "t.jsonl"
    done = cli("run", str(book), "--yes", "--transcript", str(transcript), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "other sees [nothing]" in done.stdout and "user-sees-it" in done.stdout
    started = [e for e in events(transcript) if e["type"] == "command.started"]
    assert [("API_TOKEN" in e["env_names"]) for e in started] == [False, True]
    assert "s3cr3t-value" not in transcript.read_text()


def test_plan_and_prompt_show_one_risk(tmp_path: Path) -> None:
    """The bundled deployment marks its risks: only those ask for a typed word, as plan says."""
    from runbook_tui.engine.policy import task_risk as risk
    from tests.paths import RUNBOOKS

    book = load_runbook(RUNBOOKS / "deployment.md")
    plan = cli("plan", str(RUNBOOKS / "deployment.md")).stdout
    high = [t.id for t in book.commands() if risk(book, t).level == "high"]
    assert high == [t.id for t in book.commands() if t.options.risk == "high"] and len(high) == 2
    assert plan.count("HIGH RISK") == 2


def test_an_export_never_overwrites_the_runbook_or_any_file(tmp_path: Path) -> None:
    book = write(tmp_path, "# X\n## Steps\n- `echo one --x`\n", name="deploy.md")
    original = book.read_text()
    transcript = tmp_path / "deploy.jsonl"
    assert cli("run", str(book), "--mode", "noop", "--transcript", str(transcript), cwd=tmp_path).returncode == 0
    refused = cli("transcript", "export", str(transcript), "-o", str(book), cwd=tmp_path)
    assert refused.returncode == 2 and "never overwrites" in refused.stderr
    assert book.read_text() == original
    from runbook_tui.audit.export import write_new

    first = write_new(tmp_path / "deploy.md", "export", avoid={book.resolve()})
    assert first.name == "deploy-2.md" and book.read_text() == original
    assert write_new(tmp_path / "deploy.md", "again", avoid={book.resolve()}).name == "deploy-3.md"


# ---- the TUI: palette commands and reproductions --------------------------------------------------

SMALL = """
    # Small
    **Severity:** low

    ## Steps
    1. **First**
       ```sh {confirm=false}
       touch first-ran
       ```
    2. **Second**
       ```sh
       echo second
       touch second-ran
       ```
    3. **Third**
       - `sh -c 'exit 1'` <!-- runbook: retries=1 -->
       - `touch high-ran` <!-- runbook: risk=high -->

    See [Other](./other.md).
    """


def small_app(tmp_path: Path, *, trusted: bool, mode: str = "paranoid") -> tuple[Any, Path, Path]:
    book = write(tmp_path, SMALL)
    write(tmp_path, "# Other\n## Steps\n- `echo other --x`\n", name="other.md")
    if trusted:
        trust(load_runbook(book))
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook(book), mode=mode, variables={}, transcript=str(transcript), theme=None)
    return app, book, transcript


async def palette(pilot: Any, command: str) -> None:
    await pilot.press("ctrl+p")
    for char in command:
        await pilot.press(char if char != " " else "space")
    await pilot.pause(0.3)
    await pilot.press("enter")
    await pilot.pause(0.1)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def test_palette_auto_on_an_untrusted_runbook_is_refused_and_recorded(isolated: Path) -> None:
    app, book, transcript = small_app(isolated, trusted=False)
    async with app.run_test(size=SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        await palette(pilot, "Change mode to auto")
        await until_event(pilot, transcript, "mode.changed")
        assert app.current_run.mode == "paranoid"
        assert any("not trusted" in m for m in notifications(app))
        await select(pilot, "1.2.1")
        await pilot.press("enter")
        await until_screen(pilot, ConfirmCommand)  # still asked
        await pilot.press("n")
        await pilot.pause(0.2)
        answer_questions_left_open(app)
    (changed,) = [e for e in events(transcript) if e["type"] == "mode.changed"]
    assert changed["requested"] == "auto" and changed["mode"] == "paranoid" and changed["refused"]
    assert not (isolated / "second-ran").exists()
    assert guarded(transcript, book, trusted=False) == []


async def test_palette_auto_on_a_trusted_runbook_runs_without_asking_but_not_high_risk(isolated: Path) -> None:
    app, book, transcript = small_app(isolated, trusted=True)
    async with app.run_test(size=SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        await palette(pilot, "Change mode to auto")
        await until(pilot, lambda: app.current_run.mode == "auto", what="auto mode")
        await select(pilot, "1.2.1")
        await pilot.press("enter")
        await until(pilot, lambda: (isolated / "second-ran").exists(), what="the command ran unasked")
        await select(pilot, "1.3.2")
        await pilot.press("enter")
        dialog = await until_screen(pilot, ConfirmCommand)
        assert dialog.request.risk == "high"
        await pilot.press("escape")
        await pilot.pause(0.2)
    assert not (isolated / "high-ran").exists()
    assert guarded(transcript, book, trusted=True) == []


@pytest.mark.parametrize("mode", ["paranoid", "step", "noop"])
async def test_palette_mode_changes_are_recorded(isolated: Path, mode: str) -> None:
    app, book, transcript = small_app(isolated, trusted=True, mode="auto")
    async with app.run_test(size=SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        await palette(pilot, f"Change mode to {mode}")
        await until(pilot, lambda: app.current_run.mode == mode, what=f"{mode} mode")
    (changed,) = [e for e in events(transcript) if e["type"] == "mode.changed"]
    assert (changed["previous"], changed["mode"]) == ("auto", mode)


async def test_palette_jump_selects_and_records(isolated: Path) -> None:
    app, _, transcript = small_app(isolated, trusted=False)
    async with app.run_test(size=SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        await palette(pilot, "Jump to 1.3 Third")
        await until_event(pilot, transcript, "operator.jumped")
        node = app.run_screen.query_one("#tree").cursor_node
        assert node is not None and node.data.step is not None and node.data.step.id == "1.3"
    assert [e["to"] for e in events(transcript) if e["type"] == "operator.jumped"] == ["1.3"]


async def test_palette_export_writes_a_fresh_file_and_says_where(isolated: Path) -> None:
    app, _, transcript = small_app(isolated, trusted=False)
    (isolated / "t.md").write_text("do not touch")
    async with app.run_test(size=SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        await palette(pilot, "Export the transcript")
        await until(pilot, lambda: any("Exported to" in m for m in notifications(app)), what="the export notice")
        message = next(m for m in notifications(app) if "Exported to" in m)
    assert (isolated / "t.md").read_text() == "do not touch"
    assert str((isolated / "t-2.md").resolve()) in message


async def test_palette_opens_the_related_runbook(isolated: Path) -> None:
    from runbook_tui.tui.screens.related import RelatedScreen

    app, _, transcript = small_app(isolated, trusted=False)
    async with app.run_test(size=SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        await palette(pilot, "Open related runbook: Other")
        await until_screen(pilot, RelatedScreen)
        await pilot.press("escape")
        await until_event(pilot, transcript, "runbook.closed")


async def test_the_confirmation_scrolls_a_long_script_and_keeps_its_buttons(isolated: Path) -> None:
    lines = "\n".join(f"echo line-{n}" for n in range(80)) + "\ntouch last-line-ran"
    book = write(isolated, f"# Long\n## Steps\n```sh\n{lines}\n```\n")
    transcript = isolated / "t.jsonl"
    app = make_app(load_runbook(book), mode="paranoid", variables={}, transcript=str(transcript), theme=None)
    async with app.run_test(size=SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        await select(pilot, "1.1.1")
        await pilot.press("enter")
        dialog = await until_screen(pilot, ConfirmCommand)
        await pilot.pause(0.2)
        buttons = dialog.query_one("#dialog-buttons")
        assert buttons.region.bottom <= SIZE[1], "the buttons are on screen"
        body = dialog.query_one("#dialog-body")
        assert body.max_scroll_y > 0, "the script scrolls"
        assert "touch last-line-ran" in dialog.request.command
        await pilot.press("n")
        await pilot.pause(0.2)


# ---- random sequences against the invariant -------------------------------------------------------

KEYS = ["enter", "y", "n", "escape", "s", "r", "e", "a", "j", "k", "down", "up", "ctrl+c", "tab", "space"]
PALETTE = ["Change mode to auto", "Change mode to step", "Change mode to paranoid", "Change mode to noop",
           "Jump to 1.2 Second", "Jump to 1.3 Third"]


class GuardMachine(RuleBasedStateMachine):
    """Random keys, palette commands and dialog answers on the small runbook, trusted or not."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        # Every step runs in this one context: Textual keeps the active app in a context variable
        # that run_test sets, and a fresh task per step would otherwise not see it.
        self.ctx = contextvars.copy_context()
        self.context: Any = None
        self.pilot: Any = None

    def _await(self, coro: Any) -> Any:
        return self.loop.run_until_complete(self.loop.create_task(coro, context=self.ctx))

    @initialize(trusted=st.booleans(), mode=st.sampled_from(["paranoid", "auto", "step"]))
    def open_app(self, trusted: bool, mode: str) -> None:
        import tempfile

        self.root = Path(tempfile.mkdtemp(prefix="guard-"))
        os.environ["XDG_CONFIG_HOME"] = str(self.root / "config")
        os.environ["XDG_STATE_HOME"] = str(self.root / "state")
        os.chdir(self.root)
        self.trusted = trusted
        self.app, self.book, self.transcript = small_app(self.root, trusted=trusted, mode=mode)
        self.context = self.app.run_test(size=SIZE)
        self.pilot = self._await(self.context.__aenter__())
        self._await(until_event(self.pilot, self.transcript, "run.started"))

    @rule(key=st.sampled_from(KEYS))
    def press(self, key: str) -> None:
        self._await(self._press(key))

    async def _press(self, key: str) -> None:
        await self.pilot.press(key)
        await self.pilot.pause(0.05)

    @rule(command=st.sampled_from(PALETTE))
    def use_palette(self, command: str) -> None:
        self._await(palette(self.pilot, command))

    @rule(text=st.sampled_from(["yes", "no reason", "x"]))
    def type_into_a_field(self, text: str) -> None:
        if isinstance(self.app.screen, (TextPrompt, ConfirmCommand)):
            self._await(self._type(text))

    async def _type(self, text: str) -> None:
        for char in text:
            await self.pilot.press(char if char != " " else "space")
        await self.pilot.press("enter")
        await self.pilot.pause(0.05)

    @invariant()
    def nothing_ran_unapproved(self) -> None:
        if self.pilot is not None:
            assert guarded(self.transcript, self.book, trusted=self.trusted) == []

    def teardown(self) -> None:
        if self.context is not None:
            self.ctx.run(answer_questions_left_open, self.app)
            self._await(self.context.__aexit__(None, None, None))
            assert guarded(self.transcript, self.book, trusted=self.trusted) == []
        self.loop.close()
        for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            os.environ.pop(name, None)


GuardMachine.TestCase.settings = settings(max_examples=6, stateful_step_count=12, deadline=None,
                                          suppress_health_check=list(HealthCheck))
TestGuardMachine = GuardMachine.TestCase


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(trusted=st.booleans(), mode=st.sampled_from(["paranoid", "auto", "step"]),
       answers=st.lists(st.sampled_from(["y", "n", "s", "a", "e", "r", "f", "yes", ""]), min_size=6, max_size=6))
def test_headless_random_answers_never_run_anything_unapproved(tmp_path_factory: pytest.TempPathFactory,
                                                                 trusted: bool, mode: str, answers: list[str]) -> None:
    root = tmp_path_factory.mktemp("headless")
    env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config"), "XDG_STATE_HOME": str(root / "state"),
           "EDITOR": "true", "VISUAL": "true"}
    book = write(root, SMALL)
    write(root, "# Other\n## Steps\n- `echo other --x`\n", name="other.md")
    if trusted:
        assert cli("trust", str(book), env=env, cwd=root).returncode == 0
    transcript = root / "t.jsonl"
    term = Terminal(rbt("run", str(book), "--mode", mode, "--transcript", str(transcript)), cwd=root, env=env)
    try:
        for answer in answers:
            asked = len(term.output)
            deadline = time.monotonic() + 5
            # Every question ends with ": " (run it?, the typed word, a reason, a value).
            while term.proc.poll() is None and time.monotonic() < deadline and not (
                    len(term.output) > asked and term.output.rstrip().endswith(b":")):
                time.sleep(0.02)
            if term.proc.poll() is not None:
                break
            term.type(answer.encode() + b"\n")
        if term.proc.poll() is None:
            term.proc.send_signal(signal.SIGTERM)
        term.wait(30)
    finally:
        term.close()
    assert guarded(transcript, book, trusted=trusted) == []
    assert [e["type"] for e in events(transcript)][-1] in ("run.finished", "run.aborted")


async def test_palette_answer_again_forgets_a_value_and_the_next_task_asks(isolated: Path) -> None:
    from runbook_tui.tui.screens.dialogs import ValuesForm
    from tests.tui_helpers import type_text

    book = write(isolated, "# V\n## Steps\n- `echo first <app>`\n- `echo second <app>`\n")
    transcript = isolated / "t.jsonl"
    app = make_app(load_runbook(book), mode="paranoid", variables={"app": "wrong"}, transcript=str(transcript),
                   theme=None)
    async with app.run_test(size=SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        await palette(pilot, "Answer again: app")
        await until_event(pilot, transcript, "value.forgotten")
        await select(pilot, "1.1.1")
        await pilot.press("enter")
        await until_screen(pilot, ValuesForm)
        await type_text(pilot, "right")
        await pilot.press("enter")
        dialog = await until_screen(pilot, ConfirmCommand)
        assert dialog.request.command == "echo first right"
        await pilot.press("n")
        await pilot.pause(0.2)


def test_resume_shows_a_forged_transcripts_text_safely(tmp_path: Path) -> None:
    """What resume says was already done comes from the transcript, a file anyone with write access
    can forge: an escape sequence in a task id reaches the terminal made visible, never raw."""
    import json

    from runbook_tui.audit.transcript import Transcript

    book = write(tmp_path, "# R\n## Steps\n- `echo one --x`\n")
    transcript = tmp_path / "t.jsonl"
    assert cli("run", str(book), "--mode", "noop", "--transcript", str(transcript), cwd=tmp_path).returncode == 0
    first = json.loads(transcript.read_text().splitlines()[0])
    forged = tmp_path / "forged.jsonl"
    with Transcript.create(forged) as record:
        record.append("run.started", **{k: v for k, v in first.items() if k not in ("seq", "ts", "type", "prev", "hash")})
        record.append("task.finished", task_id="9.9.9\x1b]0;owned\x07\x1b[2J", step_id="9.9", status="done",
                      title="x", fingerprint="f")
    done = cli("resume", str(forged), "--mode", "noop", "--interrupted", "rerun", cwd=tmp_path)
    assert "already done in this run: 9.9.9" in done.stderr, done.stderr
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
