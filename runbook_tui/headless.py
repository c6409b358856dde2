"""The headless front end of a Session: plain text on stdout, questions on stdin.

Works the same piped, in CI and on a terminal. Without a terminal nothing is ever assumed
except what the command line says (`--yes`, `--confirm-high-risk`); high-risk commands are
never confirmed by `--yes` alone.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any, TextIO

import click

from runbook_tui.audit.terminal import TERMINAL_RESET, TerminalFilter, visible
from runbook_tui.audit.transcript import TranscriptError
from runbook_tui.engine.checks import Verdict
from runbook_tui.engine.policy import trust_command
from runbook_tui.engine.run import Run, RunProblem, RunSettings
from runbook_tui.engine.session import Answer, Confirmation, MissingValue, Question
from runbook_tui.engine.trust import TrustStatus
from runbook_tui.hostlines import HostBlock, HostPrefixer
from runbook_tui.model import Runbook, Step, Task

STATUS_MARKS = {"done": "✓", "manual": "✓", "skipped": "↷", "failed": "✗", "not_confirmed": "✗", "planned": "·"}


class Printer:
    """Observer: one line per thing that happened, command output in between, escapes made safe.

    A fan-out's output is printed line by line, each line labelled with its host; with
    `group_output`, each host's output is held back (its last lines: `hostlines.HostBlock`) and
    printed as one block under a header line when that host ends.
    """

    def __init__(self, out: TextIO | None = None, *, group_output: bool = False) -> None:
        self.out = out or sys.stdout
        self.group_output = group_output
        self._prefixer = HostPrefixer()
        self._blocks: dict[tuple[str, str], HostBlock] = {}  # (task, host) -> output held back
        self._hosts: dict[tuple[str, str], str] = {}  # (task, host) -> who and where, from command.started
        self.colors = self.out.isatty()
        self._filter = TerminalFilter(colors=self.colors)
        self._at_line_start = True
        self._dirty = False  # command output was written since our last line
        self._last_command: tuple[str, str] | None = None
        self._gone = False
        self._handed_over = False  # a full-screen program has the terminal and draws on it itself

    def _write(self, text: str) -> None:
        """Write, unless the terminal went away (SIGHUP): the transcript still has everything."""
        if self._gone:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except OSError:
            self._gone = True

    def _line(self, text: str) -> None:
        reset = TERMINAL_RESET if self._dirty and self.colors else ""
        self._write(reset + ("" if self._at_line_start else "\n") + text + "\n")
        self._at_line_start = True
        self._dirty = False

    def output(self, task_id: str, text: str, host: str | None = None) -> None:
        if self._handed_over:
            return  # the relay copies it to the terminal, raw; the transcript records it as always
        if host is not None:
            if self.group_output:
                self._blocks.setdefault((task_id, host), HostBlock()).add(text)
                return
            text = self._prefixer.feed(host, text)
        safe = self._filter.feed(text).replace("\r\n", "\n")
        if safe:
            self._write(safe)
            self._at_line_start = safe.endswith("\n")
            self._dirty = True

    def hand_over(self, proc: Any) -> Any:
        """A running program went full screen: it gets the operator's terminal (raw relay) until it
        leaves its screen or ends, and nothing of ours is printed over it meanwhile."""
        from runbook_tui.engine.interactive import take_over

        self._handed_over = True
        try:
            return take_over(proc)
        finally:
            self._handed_over = False
            self._filter = TerminalFilter(colors=self.colors)  # the escapes it was in the middle of are gone

    def event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "run.started":
            self._line(f"runbook-tui: {visible(event['runbook']['title'])} ({event['mode']} mode), "
                       f"transcript sealed line by line")
        elif kind == "step.entered":
            self._line(f"\n▶ {event['step_id']} {visible(event['title'])}")
        elif kind == "command.started" and event.get("host"):
            who = f"{event.get('user') or '?'}@{event.get('address') or event['host']}"
            where = f"{visible(who)}, host key {event.get('fingerprint') or '?'}"
            if self.group_output:
                self._hosts[(event["task_id"], event["host"])] = where
            else:
                self._line(f"→ {visible(event['host'])} ({where})")
        elif kind == "command.finished" and event.get("host"):
            ended = f"exit {event['exit_code']}" if event.get("exit_code") is not None else (
                f"signal {event['signal']}" if event.get("signal") else visible(event.get("reason") or "no status"))
            mark = "✓" if event.get("state") == "ok" else "✗"
            if self.group_output:
                self._block(event, f"{mark} {visible(event['host'])}: {ended} in {event.get('duration', 0):g}s")
            else:
                self._line(f"{mark} {visible(event['host'])} {ended}")
        elif kind == "host.skipped":
            self._line(f"↷ {visible(event['host'])} skipped: {visible(event['reason'])}")
        elif kind == "host.failed":
            self._line(f"✗ {visible(event['host'])} could not run it: {visible(event['reason'])}")
        elif kind == "batch.finished":
            states = list(event["hosts"].values())
            self._line(f"batch {event['batch']}: {states.count('ok')} ok, {states.count('failed')} failed, "
                       f"{states.count('skipped')} skipped")
        elif kind == "command.started":
            again = (event["task_id"], event["run_command"]) == self._last_command
            self._last_command = (event["task_id"], event["run_command"])
            if again:  # a retry or a wait_until poll: one line, not the whole script again
                self._line(f"  … attempt {event.get('attempt', '?')} of {event['task_id']}")
            else:
                attempt = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
                self._line(f"$ {visible(event['run_command'])}{attempt}")
        elif kind == "command.planned":
            self._line(f"  would run [{event['task_id']}] in {visible(event['cwd'])} with {visible(event['shell'])}:")
            for line in visible(event["run_command"]).splitlines():
                self._line(f"    {line}")
            if event.get("env"):
                self._line("    with " + ", ".join(f"{k}={visible(v)}" for k, v in event["env"].items()))
            if event.get("risk") == "high":
                self._line("    HIGH RISK: " + "; ".join(visible(r) for r in event.get("risk_reasons", [])))
            for batch in event.get("batches", []):
                self._line(f"    {visible(batch)}")
        elif kind == "command.finished":
            tail = self._filter.flush()
            if tail:
                self.output(event["task_id"], tail)
        elif kind == "task.finished":
            mark = STATUS_MARKS.get(event["status"], "?")
            detail = f" (exit {event['exit_code']})" if "exit_code" in event else ""
            reason = f": {visible(event['reason'])}" if event.get("reason") else ""
            self._line(f"{mark} {event['task_id']} {event['status']}{detail}{reason}")
        elif kind == "note":
            self._line(f"note: {visible(event['text'])}")
        elif kind == "runbook.changed":
            self._line(f"warning: {visible(event['path'])} changed on disk; this run keeps the version it started with")
        elif kind == "run.finished":
            self._line(f"\nrun {event['result']}")
        elif kind == "run.aborted":
            left = f" ({len(event['left'])} task(s) not run: {', '.join(event['left'])})" if event.get("left") else ""
            self._line(f"\nrun aborted: {visible(event['reason'])}{left}")
        elif kind == "mode.changed":
            refused = f" (refused: {visible(event['refused'])})" if event.get("refused") else ""
            self._line(f"mode: {event['mode']}{refused}")

    def _block(self, event: dict[str, Any], header: str) -> None:
        """`--group-output`: a host ended; its header line, then its output as one block."""
        key = (event["task_id"], event["host"])
        where = self._hosts.pop(key, None)
        block = self._blocks.pop(key, None)
        self._line(f"── {header}" + (f" ({where})" if where else "") + " ──")
        if block is not None:
            self.output(event["task_id"], block.text())
            tail = self._filter.flush()
            if tail:
                self.output(event["task_id"], tail)


class TerminalPrompter:
    """Asks on the operator's terminal. Before each question the terminal is reset, so nothing a
    command printed (conceal, colours, an alternate screen) can change how the question looks."""

    def confirm(self, request: Confirmation) -> Answer:
        _reset_terminal()
        click.echo("")
        click.echo(f"  task {request.task.id}: {visible(request.task.text)}")
        _show_command(request)
        if request.typed_word:
            typed = click.prompt(f"  HIGH RISK. Type '{visible(request.typed_word)}' to run it, 'skip' or 'abort'",
                                 default="", show_default=False)
            if typed == request.typed_word:
                return Answer("run", typed=typed)
            if typed in ("skip", "abort"):
                return self._skip_or_abort(typed)
            click.echo("  That is not the word; the command was not run.")
            return Answer("stop", typed=typed)
        choice = click.prompt("  Run it? [y]es, [s]kip, [e]dit, [a]bort", default="y",
                              type=click.Choice(["y", "s", "e", "a"]), show_choices=False)
        if choice == "e":
            edited = click.edit(request.command)
            return Answer("run", command=edited.strip("\n")) if edited else Answer("run")
        return Answer("run") if choice == "y" else self._skip_or_abort("skip" if choice == "s" else "abort")

    def confirm_step(self, step: Step, commands: list[Confirmation]) -> Answer:
        _reset_terminal()
        click.echo(f"  step {step.id} {visible(step.title)} will run {len(commands)} command(s):")
        for request in commands:
            click.echo(f"  task {request.task.id}:")
            _show_command(request)
        choice = click.prompt("  Run this step? [y]es, [s]kip, [a]bort", default="y",
                              type=click.Choice(["y", "s", "a"]), show_choices=False)
        return Answer("run") if choice == "y" else self._skip_or_abort("skip" if choice == "s" else "abort")

    def confirm_manual(self, task: Task, step: Step) -> Answer:
        _reset_terminal()
        click.echo(f"  [ ] {task.id} {visible(task.text)}")
        choice = click.prompt("  Done? [y]es, [s]kip, [a]bort", default="y",
                              type=click.Choice(["y", "s", "a"]), show_choices=False)
        return Answer("done") if choice == "y" else self._skip_or_abort("skip" if choice == "s" else "abort")

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        _reset_terminal()
        return {q.name: click.prompt(f"  value for {visible(q.prompt)}", hide_input=q.secret, default=q.default)
                for q in questions}

    def offer_to_store(self, secret_name: str) -> bool:
        return False  # headless runs never write to the keyring; `secrets set` does that on purpose

    def ask_input(self, task: Task, shown: str, masked: bool) -> str | None:
        _reset_terminal()
        kind = "hidden input (not echoed, never recorded)" if masked else "input"
        click.echo("")
        return click.prompt(f"  task {task.id} waits for {kind}; type the line to send (ctrl+c stops it)",
                            default="", show_default=False, hide_input=masked)

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer:
        _reset_terminal()
        click.echo(f"  ✗ {task.id} failed: {visible(verdict.reason)}")
        choice = click.prompt("  [r]etry, [s]kip, [a]bort, or [f]ail the run", default="f",
                              type=click.Choice(["r", "s", "a", "f"]), show_choices=False)
        return {"r": Answer("retry"), "a": Answer("abort"), "f": Answer("stop")}.get(choice) or self._skip_or_abort("skip")

    @staticmethod
    def _skip_or_abort(action: str) -> Answer:
        if action == "abort":
            return Answer("abort")
        reason = click.prompt("  Reason for skipping", default="skipped by the operator")
        return Answer("skip", reason=reason)


def _show_command(request: Confirmation) -> None:
    """Everything that will run, whole: the script, where, with which environment and why asked."""
    for line in visible(request.command).splitlines() or [""]:
        click.echo(f"  │ {line}")
    where = f"cwd {visible(request.cwd)}, shell {visible(request.shell)}"
    if request.container:
        where += f", container {visible(request.container)}"
    click.echo(f"  {where}; risk: {request.risk}")
    for reason in request.risk_reasons:
        click.echo(f"  ! {visible(reason)}")
    for name, value in request.env:
        click.echo(f"  env {name}={visible(value)}")
    if request.hosts:
        click.echo(f"  on {len(request.hosts)} host(s): {visible(', '.join(request.hosts))} ({visible(request.after)})")
    if request.reason:
        click.echo(f"  (asked because {visible(request.reason)})")


def _reset_terminal() -> None:
    """Undo whatever the last command's output left switched on, before our own text."""
    if sys.stdout.isatty():
        sys.stdout.write(TERMINAL_RESET)
        sys.stdout.flush()


class UnattendedPrompter:
    """No terminal: only what the command line allowed. Anything else stops the run."""

    def __init__(self, *, yes: bool, confirm_high_risk: bool) -> None:
        self.yes = yes
        self.confirm_high_risk = confirm_high_risk

    def confirm(self, request: Confirmation) -> Answer:
        if request.risk == "high":
            if self.confirm_high_risk:
                return Answer("run", reason="--confirm-high-risk", typed="--confirm-high-risk")
            return Answer("stop", reason="high-risk command needs --confirm-high-risk")
        return Answer("run", reason="--yes") if self.yes else Answer("stop", reason="no terminal to confirm on")

    def confirm_step(self, step: Step, commands: list[Confirmation]) -> Answer:
        return Answer("run", reason="--yes") if self.yes else Answer("stop", reason="no terminal to confirm on")

    def confirm_manual(self, task: Task, step: Step) -> Answer:
        if self.yes:
            return Answer("done", reason="confirmed by --yes")
        return Answer("stop", reason="not confirmed: no terminal to ask on (pass --yes)")

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        needed = ", ".join(f"{q.prompt} (--var {q.name}=...)" for q in questions)
        raise MissingValue(f"no terminal to ask for {needed}")

    def offer_to_store(self, secret_name: str) -> bool:
        return False

    def ask_input(self, task: Task, shown: str, masked: bool) -> str | None:
        raise MissingValue("no terminal to type the command's input on")

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer:
        return Answer("stop", reason=verdict.reason)


def _fail(message: str) -> int:
    click.echo(f"error: {message}", err=True)
    return 2


class _Terminated(Exception):
    """SIGTERM or SIGINT arrived at a prompt: stop like Ctrl+C does."""


class _Signals:
    """SIGINT/SIGTERM/SIGHUP for the length of a run, each turned into a call on the Run.

    While a command runs, SIGINT/SIGTERM stop it (INT, TERM, KILL to its group) and the session
    records that; at a prompt they raise once to end the blocking read. Every signal after that
    raise is ignored: the run is already stopping, and raising again while the first is being
    recorded would cut the transcript short (it must end with run.aborted) or print a traceback. SIGHUP (the SSH
    session dropped) lets the command in flight finish and starts nothing after it.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.raised = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for signum, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl+C (SIGINT)")):
            self.previous[signum] = signal.signal(signum, self._stopper(name))
        self.previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: self.run.hangup())
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _stopper(self, name: str) -> Callable[[int, object], None]:
        def handler(signum: int, frame: object) -> None:
            if self.raised:
                # The run is already stopping. Python may run this handler while our exception is
                # still being raised: touching a lock here then fails with a SystemError.
                return
            if self.run.session.command_running:
                self.run.interrupt()
                return
            self.raised = True
            raise _Terminated(f"stopped by {name}")

        return handler


def _drive(run: Run, prepare: Callable[[], None]) -> int:
    """Lock, start, run every task, and record how it ended; the exit code of the run."""
    signals = _Signals(run)
    try:
        with signals:
            try:
                run.start()
                prepare()
                return run.drive()
            except (KeyboardInterrupt, _Terminated, click.Abort) as exc:
                if isinstance(exc, click.Abort) and not run.session.disconnected.is_set():
                    return run.abort("no answer: the terminal closed")
                if run.session.disconnected.is_set():
                    return run.end()
                return run.abort(str(exc) or "interrupted (Ctrl+C)")
            except MissingValue as exc:
                run.abort(str(exc))
                return _fail(str(exc))
    except TranscriptError as exc:
        _say(f"error: {exc}; the run stopped so that nothing runs unrecorded")
        return 1
    finally:
        run.close()
        _say(f"transcript: {run.transcript_path}")
        if run.signature is not None:
            _say(run.signature.reason)


def _say(message: str) -> None:
    """A line on stderr, unless the terminal is gone (then the transcript says it all)."""
    try:
        click.echo(message, err=True)
    except OSError:
        pass


def _prompter_for(yes: bool, confirm_high_risk: bool, mode: str) -> Callable[[Runbook, TrustStatus], Any]:
    """The prompter for this terminal, or for the command line's answers when there is none.

    `--yes` answers for a trusted runbook only: an untrusted one (or one changed since it was
    trusted) must not run unattended, whatever it says.
    """

    def make(book: Runbook, trust: TrustStatus) -> Any:
        if sys.stdin.isatty():
            return TerminalPrompter()
        if yes and not trust.trusted:
            raise RunProblem(f"{book.path} is not trusted ({trust.reason}), so --yes does not apply and there is "
                             f"no terminal to confirm on. Review it, then: {trust_command(book.path)}")
        if not yes and mode != "noop":
            raise RunProblem("no terminal to confirm on: pass --yes (and --confirm-high-risk for risk=high commands)")
        return UnattendedPrompter(yes=yes, confirm_high_risk=confirm_high_risk and yes)

    return make


def _unanswerable(book: Runbook, values: dict[str, str], mode: str) -> str | None:
    """With no terminal, the values no one will be able to give (checked before anything runs)."""
    if sys.stdin.isatty() or mode == "noop":
        return None
    missing = [f"${v}" for v in book.required_variables if v not in values and v not in os.environ]
    missing += [p for p in book.placeholders if p[1:-1] not in values]
    return "no terminal to ask for " + ", ".join(missing) + " (pass --var NAME=value)" if missing else None


def _open(opener: Callable[[], Run]) -> Run | int:
    """Open a run and read its secrets; the exit code (2, nothing ran) if either fails."""
    from runbook_tui.integrations.secrets import SecretError

    try:
        run = opener()
    except RunProblem as exc:
        return _fail(str(exc))
    try:
        for notice in run.notices:
            _say(f"notice: {notice}")
        for notice in run.read_secrets(ask=sys.stdin.isatty()):
            _say(f"notice: {notice}")
    except (RunProblem, SecretError, MissingValue) as exc:
        run.close()
        return _fail(str(exc))
    return run


def run_headless(book: Runbook, *, mode: str, values: dict[str, str], yes: bool, confirm_high_risk: bool,
                 transcript_path: str | None, task_timeout: float | None, host_keys: str = "strict",
                 group_output: bool = False) -> int:
    """`runbook-tui run`: the whole runbook, in order, recorded; returns the exit code."""
    problem = _unanswerable(book, values, mode)
    if problem:
        return _fail(problem)
    settings = RunSettings(mode=mode, values=values, transcript=transcript_path,  # type: ignore[arg-type]
                           task_timeout=task_timeout, host_keys=host_keys)
    printer = Printer(group_output=group_output)
    run = _open(lambda: Run.open(book, settings, _prompter_for(yes, confirm_high_risk, mode), observer=printer,
                                 **_terminal(printer)))
    if isinstance(run, int):
        return run
    return _drive(run, lambda: None)


def _terminal(printer: Printer) -> dict[str, Any]:
    """The operator's terminal, when there is one: interactive tasks run on it, and a program that
    goes full screen (less, vi, top) is handed it, as in the app."""
    from runbook_tui.engine.interactive import run_on_terminal

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return {"terminal": None, "take_over": None}
    return {"terminal": run_on_terminal, "take_over": printer.hand_over}


def resume_headless(path: str, *, mode: str, yes: bool, confirm_high_risk: bool, interrupted: str,
                    values: dict[str, str], task_timeout: float | None, group_output: bool = False,
                    host_keys: str = "strict") -> int:
    """`runbook-tui resume`: reopen the runbook of a run, skip what finished, continue the chain.

    Mode and values are today's (from this command line), not the transcript's."""
    settings = RunSettings(mode=mode, values=values, task_timeout=task_timeout,  # type: ignore[arg-type]
                           host_keys=host_keys)
    printer = Printer(group_output=group_output)
    run = _open(lambda: Run.resume(path, settings, _prompter_for(yes, confirm_high_risk, mode), observer=printer,
                                   **_terminal(printer)))
    if isinstance(run, int):
        return run
    if run.resumed_from is not None and run.resumed_from.settled:
        done = ", ".join(f"{tid} {status}" for tid, (status, _) in run.resumed_from.settled.items())
        _say(f"already done in this run: {visible(done)}")  # a transcript is anyone's file: its text is shown safe
    for tid, hosts in run.session.state.hosts_done.items():
        _say(f"task {tid} finished ok in the interrupted run on {visible(', '.join(sorted(hosts)))}: "
             "unless its command differs now, it runs again only on its other hosts")
    task = run.interrupted_task
    if task is not None and interrupted == "ask" and not sys.stdin.isatty():
        run.close()
        return _fail(f"task {task.id} was running when the run stopped: pass --interrupted rerun|skip|done")

    def prepare() -> None:
        if task is None:
            return
        choice = interrupted
        if choice == "ask":
            choice = click.prompt(f"  task {task.id} was running when the run stopped: rerun, skip or done?",
                                  type=click.Choice(["rerun", "skip", "done"]), default="rerun")
        run.settle_interrupted(choice)

    return _drive(run, prepare)
