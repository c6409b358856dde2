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

from runbook_tui.audit.terminal import TerminalFilter, visible
from runbook_tui.audit.transcript import Transcript, TranscriptError, new_transcript_path
from runbook_tui.engine.checks import Verdict
from runbook_tui.engine.guards import RunLock, describe_holder
from runbook_tui.engine.session import Answer, Confirmation, MissingValue, Question, RunAborted, Session
from runbook_tui.model import Runbook, Step, Task

STATUS_MARKS = {"done": "✓", "manual": "✓", "skipped": "↷", "failed": "✗", "not_confirmed": "✗", "planned": "·"}


class Printer:
    """Observer: one line per thing that happened, command output in between, escapes made safe."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.colors = self.out.isatty()
        self._filter = TerminalFilter(colors=self.colors)
        self._at_line_start = True
        self._gone = False

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
        self._write(("" if self._at_line_start else "\n") + text + "\n")
        self._at_line_start = True

    def output(self, task_id: str, text: str) -> None:
        safe = self._filter.feed(text).replace("\r\n", "\n")
        if safe:
            self._write(safe)
            self._at_line_start = safe.endswith("\n")

    def event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "run.started":
            self._line(f"runbook-tui: {event['runbook']['title']} ({event['mode']} mode), "
                       f"transcript sealed line by line")
        elif kind == "step.entered":
            self._line(f"\n▶ {event['step_id']} {visible(event['title'])}")
        elif kind == "command.started":
            attempt = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
            self._line(f"$ {visible(event['run_command'])}{attempt}")
        elif kind == "command.planned":
            self._line(f"  would run [{event['task_id']}] in {event['cwd']}:")
            for line in visible(event["run_command"]).splitlines():
                self._line(f"    {line}")
            if event.get("env"):
                self._line("    with " + ", ".join(f"{k}={v}" for k, v in event["env"].items()))
        elif kind == "command.finished":
            tail = self._filter.flush()
            if tail:
                self.output(event["task_id"], tail)
        elif kind == "task.finished":
            mark = STATUS_MARKS.get(event["status"], "?")
            detail = f" (exit {event['exit_code']})" if "exit_code" in event else ""
            reason = f": {event['reason']}" if event.get("reason") else ""
            self._line(f"{mark} {event['task_id']} {event['status']}{detail}{reason}")
        elif kind == "note":
            self._line(f"note: {event['text']}")
        elif kind == "runbook.changed":
            self._line(f"warning: {event['path']} changed on disk; this run keeps the version it started with")
        elif kind == "run.finished":
            self._line(f"\nrun {event['result']}")
        elif kind == "run.aborted":
            self._line(f"\nrun aborted: {event['reason']}")


class TerminalPrompter:
    """Asks on the operator's terminal."""

    def confirm(self, request: Confirmation) -> Answer:
        click.echo("")
        click.echo(f"  task {request.task.id}: {visible(request.task.text)}")
        for line in visible(request.command).splitlines():
            click.echo(f"  │ {line}")
        where = f"cwd {request.cwd}" + (f", container {request.container}" if request.container else "")
        click.echo(f"  {where}; env: {', '.join(request.env_names) or 'none'}; risk: {request.risk}")
        if request.typed_word:
            typed = click.prompt(f"  HIGH RISK. Type '{request.typed_word}' to run it, 'skip' or 'abort'",
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

    def confirm_step(self, step: Step, commands: list[str]) -> Answer:
        click.echo(f"  step {step.id} will run {len(commands)} command(s):")
        for command in commands:
            click.echo(f"  │ {command.splitlines()[0]}")
        choice = click.prompt("  Run this step? [y]es, [s]kip, [a]bort", default="y",
                              type=click.Choice(["y", "s", "a"]), show_choices=False)
        return Answer("run") if choice == "y" else self._skip_or_abort("skip" if choice == "s" else "abort")

    def confirm_manual(self, task: Task, step: Step) -> Answer:
        click.echo(f"  [ ] {task.id} {visible(task.text)}")
        choice = click.prompt("  Done? [y]es, [s]kip, [a]bort", default="y",
                              type=click.Choice(["y", "s", "a"]), show_choices=False)
        return Answer("done") if choice == "y" else self._skip_or_abort("skip" if choice == "s" else "abort")

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        return {q.name: click.prompt(f"  value for {q.prompt}", hide_input=q.secret) for q in questions}

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer:
        click.echo(f"  ✗ {task.id} failed: {verdict.reason}")
        choice = click.prompt("  [r]etry, [s]kip, [a]bort, or [f]ail the run", default="f",
                              type=click.Choice(["r", "s", "a", "f"]), show_choices=False)
        return {"r": Answer("retry"), "a": Answer("abort"), "f": Answer("stop")}.get(choice) or self._skip_or_abort("skip")

    @staticmethod
    def _skip_or_abort(action: str) -> Answer:
        if action == "abort":
            return Answer("abort")
        reason = click.prompt("  Reason for skipping", default="skipped by the operator")
        return Answer("skip", reason=reason)


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

    def confirm_step(self, step: Step, commands: list[str]) -> Answer:
        return Answer("run", reason="--yes") if self.yes else Answer("stop", reason="no terminal to confirm on")

    def confirm_manual(self, task: Task, step: Step) -> Answer:
        if self.yes:
            return Answer("done", reason="confirmed by --yes")
        return Answer("stop", reason="not confirmed: no terminal to ask on (pass --yes)")

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        needed = ", ".join(f"{q.prompt} (--var {q.name}=...)" for q in questions)
        raise MissingValue(f"no terminal to ask for {needed}")

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer:
        return Answer("stop", reason=verdict.reason)


def _fail(message: str) -> int:
    click.echo(f"error: {message}", err=True)
    return 2


class _Terminated(Exception):
    """SIGTERM arrived: stop like Ctrl+C does."""


def _stopper(session: Session, name: str) -> Callable[[int, object], None]:
    """SIGINT/SIGTERM: while a command runs, stop it (SIGINT, SIGTERM, SIGKILL to its group) and
    let the session record that; between commands (at a prompt), stop the run right away.
    Raising in the middle of a command could cut a transcript line or leave the command alive."""

    def handler(signum: int, frame: object) -> None:
        if session.command_running:
            session.interrupt()
        else:
            raise _Terminated(f"stopped by {name}")

    return handler


def _front_end(yes: bool, confirm_high_risk: bool, mode: str) -> tuple[Any, str | None]:
    """The prompter for this terminal (or none), or why the run cannot be confirmed at all."""
    if sys.stdin.isatty():
        return TerminalPrompter(), None
    if not yes and mode != "noop":
        return None, "no terminal to confirm on: pass --yes (and --confirm-high-risk for risk=high commands)"
    return UnattendedPrompter(yes=yes, confirm_high_risk=confirm_high_risk), None


def _secrets(book: Runbook, prompter: Any, mode: str) -> dict[str, str]:
    """Read every secret the runbook declares; ask on a terminal for one that is not stored."""
    from runbook_tui.integrations.secrets import read_secret

    values: dict[str, str] = {}
    if mode == "noop":
        return values
    for secret in book.secrets:
        value = read_secret(secret)
        if value is None:
            if isinstance(prompter, UnattendedPrompter):
                raise MissingValue(f"secret {secret.name} ({secret.ref}) is not stored; store it with "
                                   f"`runbook-tui secrets set {secret.ref.partition(':')[2]}`")
            question = Question(secret.name, f"secret {secret.name} ({secret.ref})", secret=True)
            value = prompter.ask_values([question])[secret.name]
        values[secret.name] = value
    return values


def _drive(session: Session, prepare: Callable[[], None]) -> int:
    """Run the session to its end and record how it ended; the exit code of the run.

    SIGTERM stops like Ctrl+C (the command's group is stopped with escalation). SIGHUP (the SSH
    session dropped) lets the command in flight finish and starts nothing after it.
    """
    lock = RunLock(session.runbook.path)
    holder = lock.acquire(str(session.transcript.path))
    if holder is not None:
        click.echo(f"warning: another run of this runbook is in progress: {describe_holder(holder)}", err=True)
    session.concurrent_run = holder
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _stopper(session, "SIGTERM")),
                signal.SIGINT: signal.signal(signal.SIGINT, _stopper(session, "Ctrl+C (SIGINT)")),
                signal.SIGHUP: signal.signal(signal.SIGHUP, lambda *_: session.disconnect())}
    try:
        prepare()
        session.run_all()
        result = session.finish()
        return 0 if result == "success" else 1
    except (KeyboardInterrupt, RunAborted, _Terminated, click.Abort) as exc:
        if isinstance(exc, click.Abort) and session.disconnected.is_set():
            session.record("operator.disconnected", reason="terminal lost (SIGHUP)")
        session.aborted(str(exc) or ("no answer: the terminal closed" if isinstance(exc, click.Abort)
                                     else "interrupted (Ctrl+C)"))
        return 1
    except MissingValue as exc:
        session.aborted(str(exc))
        return _fail(str(exc))
    except TranscriptError as exc:
        _say(f"error: {exc}; the run stopped so that nothing runs unrecorded")
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        lock.release()
        session.transcript.close()
        _say(f"transcript: {session.transcript.path}")


def _say(message: str) -> None:
    """A line on stderr, unless the terminal is gone (then the transcript says it all)."""
    try:
        click.echo(message, err=True)
    except OSError:
        pass


def trust_fallback(book: Runbook, mode: str, yes: bool) -> tuple[str, bool]:
    """Unattended modes only for a trusted runbook; otherwise paranoid, with a notice."""
    from runbook_tui.engine.guards import is_trusted

    if (mode == "auto" or yes) and not is_trusted(book):
        _say(f"notice: {book.path} is not trusted (or changed since it was trusted): running in paranoid "
             f"mode without --yes. Trust this version with: runbook-tui trust {book.path}")
        return "paranoid", False
    return mode, yes


def run_headless(book: Runbook, *, mode: str, values: dict[str, str], yes: bool, confirm_high_risk: bool,
                 transcript_path: str | None) -> int:
    """`runbook-tui run`: the whole runbook, in order, recorded; returns the exit code."""
    from runbook_tui.integrations.git import repo_facts
    from runbook_tui.integrations.secrets import SecretError

    mode, yes = trust_fallback(book, mode, yes)
    prompter, problem = _front_end(yes, confirm_high_risk and yes, mode)
    if problem:
        return _fail(problem)
    if isinstance(prompter, UnattendedPrompter) and mode != "noop":
        missing = [f"${v}" for v in book.required_variables if v not in values and v not in os.environ]
        missing += [p for p in book.placeholders if p[1:-1] not in values]
        if missing:
            return _fail("no terminal to ask for " + ", ".join(missing) + " (pass --var NAME=value)")
    try:
        secrets = _secrets(book, prompter, mode)
    except (SecretError, MissingValue) as exc:
        return _fail(str(exc))
    try:
        transcript = Transcript.create(transcript_path or new_transcript_path(book.title))
    except TranscriptError as exc:
        return _fail(f"{exc}; nothing was run")
    session = Session(book, transcript, prompter, observer=Printer(), mode=mode,  # type: ignore[arg-type]
                      values=values, secrets=secrets, git_facts=repo_facts(book.path), terminal=_terminal())
    return _drive(session, session.start)


def _terminal() -> Any:
    """The operator's terminal for interactive tasks, when there is one."""
    from runbook_tui.engine.interactive import run_on_terminal

    return run_on_terminal if sys.stdin.isatty() and sys.stdout.isatty() else None


def resume_headless(path: str, *, yes: bool, confirm_high_risk: bool, interrupted: str,
                    values: dict[str, str]) -> int:
    """`runbook-tui resume`: reopen the runbook of a run, skip what finished, continue the chain."""
    from runbook_tui.engine.history import RunHistory
    from runbook_tui.integrations.git import repo_facts
    from runbook_tui.integrations.secrets import SecretError
    from runbook_tui.parse import load_runbook

    history = RunHistory.load(path)
    if history.problem:
        return _fail(history.problem)
    book = load_runbook(history.runbook_path)
    if book.sha256 != history.runbook_sha256:
        click.echo(f"warning: {history.runbook_path} changed since the run started "
                   f"(sha256 {history.runbook_sha256[:12]} then, {book.sha256[:12]} now); "
                   "tasks whose text changed will run again", err=True)
    mode, yes = trust_fallback(book, history.mode, yes)
    prompter, problem = _front_end(yes, confirm_high_risk and yes, mode)
    if problem:
        return _fail(problem)
    state = history.state_for(book)
    task = book.find(history.interrupted) if history.interrupted else None
    if isinstance(task, Task) and interrupted == "ask" and isinstance(prompter, UnattendedPrompter):
        return _fail(f"task {task.id} was running when the run stopped: pass --interrupted rerun|skip|done")
    try:
        secrets = _secrets(book, prompter, mode)
        transcript = Transcript.open_append(path)
    except (SecretError, MissingValue, TranscriptError) as exc:
        return _fail(str(exc))
    merged = {**history.values, **values}
    session = Session(book, transcript, prompter, observer=Printer(), mode=mode,  # type: ignore[arg-type]
                      values=merged, secrets=secrets, git_facts=repo_facts(book.path), state=state,
                      terminal=_terminal())

    def prepare() -> None:
        session.resume(history.interrupted)
        if not isinstance(task, Task):
            return
        step = next(s for s in book.steps() if task in s.tasks)
        choice = interrupted
        if choice == "ask":
            choice = click.prompt(f"  task {task.id} was running when the run stopped: rerun, skip or done?",
                                  type=click.Choice(["rerun", "skip", "done"]), default="rerun")
        if choice == "skip":
            session.skip(task, step, "interrupted task skipped on resume")
        elif choice == "done":
            session.mark_done(task, step)

    return _drive(session, prepare)
