"""The run state machine shared by the headless runner and the TUI.

A Session owns one run of one runbook: it asks the operator (through a Prompter) before anything
runs, runs commands under a PTY, judges their result, and writes every step of that to the audit
transcript before it goes on. The front end only decides *how* to ask and *how* to show; what is
asked, what runs and what is recorded is decided here, once.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from runbook_tui import __version__
from runbook_tui.audit.events import check as check_event
from runbook_tui.audit.redact import Redactor
from runbook_tui.audit.transcript import Transcript, TranscriptError
from runbook_tui.engine.checks import OutputTail, Verdict, judge
from runbook_tui.engine.env import UnsafePlaceholder, command_environment, fill_placeholders, injected_environment
from runbook_tui.engine.local_scripts import command_cwd
from runbook_tui.engine.policy import (Decision, Risk, confirmation_needed, effective_mode, step_confirmation_needed,
                                       task_risk)
from runbook_tui.engine.runner import PtyProcess
from runbook_tui.process import GRACE, ExitStatus, Process, shell_argv, supervise
from runbook_tui.model import Mode, Runbook, Secret, Section, Step, Task
from runbook_tui.parse.hazards import evaluated_placeholders
from runbook_tui.parse.shellwords import placeholder_label

Action = Literal["run", "skip", "abort", "done", "retry", "stop"]
TaskStatus = Literal["done", "failed", "skipped", "manual", "not_confirmed", "planned"]
OUTPUT_EVENT_MAX = 256 * 1024
FLUSH_INTERVAL = 0.1
# Output waiting for the next flush, at most: beyond it the PTY reader waits (PENDING_WAIT at a
# time), so a command that out-writes the transcript's disk is slowed down like one writing to
# a slow terminal instead of piling its output up in memory.
PENDING_MAX = 64 * OUTPUT_EVENT_MAX
PENDING_WAIT = 1.0


class RunAborted(Exception):
    """The operator (or a signal) stopped the run; the transcript ends with run.aborted."""


class RunEnded(Exception):
    """The run's transcript is sealed (run.finished or run.aborted): nothing more is recorded."""


class MissingValue(Exception):
    """A variable, placeholder or secret has no value and no one can be asked for it."""


@dataclass(frozen=True)
class Answer:
    """What the operator decided at a prompt."""

    action: Action
    reason: str = ""
    typed: str | None = None
    command: str | None = None  # an edited command to run instead


@dataclass(frozen=True)
class Question:
    """A value the operator must supply: a variable, a placeholder, a missing secret."""

    name: str
    prompt: str
    secret: bool = False
    default: str | None = None  # offered, when the runbook has one (a value answered again)


@dataclass(frozen=True)
class Confirmation:
    """Everything the operator must see before saying yes to a command: what runs, where, with
    which environment (secret values masked), how dangerous it is and why they are asked."""

    task: Task
    step: Step
    command: str  # exactly what will run (placeholders filled in)
    cwd: str
    container: str | None
    env_names: list[str]
    risk: Literal["low", "high"]
    typed_word: str | None  # the word to type for a high-risk command
    attempt: int = 1
    shell: str = "bash"
    env: tuple[tuple[str, str], ...] = ()  # (name, value as shown: secrets masked)
    risk_reasons: tuple[str, ...] = ()
    reason: str = ""  # why the operator is asked (the policy's decision)
    hosts: tuple[str, ...] = ()  # a fan-out batch: the hosts this approval covers
    after: str = ""  # and what comes after this batch

    def shown(self) -> dict[str, Any]:
        """What the prompt shows, as recorded in confirm.asked."""
        shown = {"prompt": self.command, "cwd": self.cwd, "container": self.container, "shell": self.shell,
                 "env": dict(self.env), "risk": self.risk, "risk_reasons": list(self.risk_reasons),
                 "typed_word": self.typed_word, "attempt": self.attempt, "reason": self.reason}
        if self.hosts:
            shown.update(hosts=list(self.hosts), after=self.after)
        return shown


class Prompter(Protocol):
    """How a front end asks the operator. Every method may block; none may run anything."""

    def confirm(self, request: Confirmation) -> Answer: ...

    def confirm_step(self, step: Step, commands: list[Confirmation]) -> Answer:
        """Step mode: every command of the step, in full, approved (or not) at once."""
        ...

    def confirm_manual(self, task: Task, step: Step) -> Answer: ...

    def ask_values(self, questions: list[Question]) -> dict[str, str]:
        """Every answer, by question name; raises MissingValue if the operator gives none."""
        ...

    def offer_to_store(self, secret_name: str) -> bool:
        """Whether to store a secret the operator just typed in the keyring."""
        ...

    def ask_input(self, task: Task, shown: str, masked: bool) -> str | None:
        """The line to type into a command waiting for input (`shown`: its latest output); None
        stops the command. Raises MissingValue when no one can answer (then it is stopped later)."""
        ...

    def after_failure(self, task: Task, verdict: Verdict, attempt: int) -> Answer: ...


class Observer(Protocol):
    """What a front end is told: every transcript event once it is on disk, and live output."""

    def event(self, event: dict[str, Any]) -> None: ...

    def output(self, task_id: str, text: str, host: str | None = None) -> None:
        """Live output of a task (of one of its hosts, for a fan-out), redacted, as it arrives."""
        ...


@dataclass
class Terminal(Protocol):
    """Runs an `interactive` task on the operator's own terminal, recording what it prints."""

    def __call__(self, argv: list[str], *, on_output: Callable[[str], None], cwd: str,
                 env: Mapping[str, str]) -> ExitStatus: ...


@dataclass
class TaskOutcome:
    status: TaskStatus
    exit_code: int | None = None
    reason: str = ""


@dataclass
class RunState:
    """What the run has done so far, by task id (resume fills it from the transcript)."""

    finished: dict[str, TaskOutcome] = field(default_factory=dict)
    entered_steps: set[str] = field(default_factory=set)
    confirmed_steps: set[str] = field(default_factory=set)
    approved: dict[str, str] = field(default_factory=dict)  # task id -> command approved with its step
    attempts: dict[str, int] = field(default_factory=dict)  # task id -> the last attempt's number
    # A fan-out task the interrupted run left unfinished: host -> the command (redacted) that
    # finished ok there. Its next run leaves those hosts alone (engine/fanout.py).
    hosts_done: dict[str, dict[str, str]] = field(default_factory=dict)


class Session:
    """One run of one runbook, recorded in one transcript."""

    def __init__(
        self,
        runbook: Runbook,
        transcript: Transcript,
        prompter: Prompter,
        *,
        observer: Observer | None = None,
        mode: Mode = "paranoid",
        values: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        redactor: Redactor | None = None,
        shell: str | None = None,
        grace: float = GRACE,
        git_facts: dict[str, Any] | None = None,
        state: RunState | None = None,
        terminal: Terminal | None = None,
        trusted: bool = False,
        task_timeout: float | None = None,
        host_keys: str = "strict",
        take_over: Callable[[PtyProcess], Any] | None = None,
    ) -> None:
        self.runbook = runbook
        self.transcript = transcript
        self.prompter = prompter
        self.observer = observer
        self.trusted = trusted
        self.task_timeout = task_timeout  # for tasks without their own `timeout` (headless runs)
        self.host_keys = host_keys  # SSH: "strict", or "accept-new" (the operator said so; recorded)
        # Hands the operator's terminal to a running full-screen program (the front end's, if it
        # has a terminal to give); None: such a program is answered line by line, or stopped.
        self.take_over = take_over
        self.mode, self.mode_notice = effective_mode(mode, trusted, runbook.path)
        self.values: dict[str, str] = {v.name: v.default for v in runbook.variables if v.default is not None}
        self.values.update(values or {})
        self.secrets = dict(secrets or {})
        self.redactor = redactor or Redactor()
        for name, value in self.secrets.items():
            self.redactor.add(name, value)
        self.shell = shell or runbook.shell or "bash"
        self.grace = grace
        self.git_facts = git_facts
        self.state = state or RunState()
        self.terminal = terminal
        self._docker: Any = None  # a Docker client, made for the first container task
        self._ssh: Any = None  # an SshPool, made for the first task with hosts=
        self.ended = False  # run.finished or run.aborted is being or has been written
        self._sealed = False  # ...and is on disk: from then on nothing is appended
        self.command_running = False  # a signal then stops the command; between commands it stops the run
        self.concurrent_run: dict[str, Any] | None = None  # another run of this runbook, from the lock
        self.disconnected = threading.Event()  # the operator's terminal is gone (SIGHUP)
        self._runbook_changed = False
        self.abort_event = threading.Event()  # stop the command and the run
        self.cancel_event = threading.Event()  # stop the running command only (the TUI's Ctrl+C)
        self.run_id = uuid.uuid4().hex

    def add_secret(self, name: str, value: str) -> None:
        """A secret read after the session was made (the TUI asks for missing ones on start)."""
        self.secrets[name] = value
        self.redactor.add(name, value)

    # ---- recording -----------------------------------------------------------------------
    def record(self, type: str, **fields: Any) -> dict[str, Any]:
        """Append an event durably, then tell the observer. TranscriptError stops everything.

        Every event is one the transcript's vocabulary (audit/events.py) knows, with its fields.
        Nothing is appended after the seal (a note, a jump or a mode change once the run ended
        would make a finished transcript unsealed again): RunEnded says so.
        """
        if self._sealed:
            raise RunEnded("this run has ended and its transcript is sealed; start a new run to do more")
        check_event(type, fields)
        event = self.transcript.append(type, **fields)
        if self.observer is not None:
            self.observer.event(event)
        return event

    def start(self) -> None:
        """Write run.started: who, where, what, with which values (secret names only), and
        `concurrent_run`: another run of the same runbook in progress, if the lock said so."""
        self.record(
            "run.started",
            run_id=self.run_id,
            tool_version=__version__,
            runbook={"path": os.path.abspath(self.runbook.path), "sha256": self.runbook.sha256,
                     "title": self.runbook.title},
            mode=self.mode,
            trusted=self.trusted,
            task_timeout=self.task_timeout,
            host_keys=self.host_keys,
            operator=operator_facts(self.git_facts),
            git=self.git_facts,
            cwd=os.getcwd(),
            variables={k: self.redactor.redact(v) for k, v in self.values.items()},
            secrets=sorted(self.secrets),
            concurrent_run=self.concurrent_run,
        )

    def resume(self, interrupted: str | None) -> None:
        """Write run.resumed on an existing chain (the transcript was opened for appending)."""
        self.record("run.resumed", run_id=self.run_id, mode=self.mode, trusted=self.trusted,
                    operator=operator_facts(self.git_facts),
                    runbook={"path": os.path.abspath(self.runbook.path), "sha256": self.runbook.sha256},
                    interrupted_task=interrupted, finished=sorted(self.state.finished),
                    hosts_done={tid: sorted(hosts) for tid, hosts in self.state.hosts_done.items()})

    def note(self, text: str, task_id: str | None = None) -> None:
        self.record("note", text=self.redactor.redact(text), task_id=task_id)

    def change_mode(self, requested: Mode, by: str = "operator") -> str | None:
        """Ask less or more from the next task on, as the policy allows; recorded either way.

        Returns a notice when the request was refused (a relaxed mode on an untrusted runbook).
        """
        mode, notice = effective_mode(requested, self.trusted, self.runbook.path)
        self.record("mode.changed", requested=requested, mode=mode, previous=self.mode, by=by,
                    trusted=self.trusted, refused=notice)
        self.mode = mode
        return notice

    def forget_value(self, name: str) -> None:
        """A value given earlier is asked for again by the next task that needs it (recorded)."""
        if self.values.pop(name, None) is not None:
            self.record("value.forgotten", name=name)

    def jumped(self, element_id: str) -> None:
        """The operator moved to another step or task out of order (recorded, nothing runs)."""
        self.record("operator.jumped", to=element_id)

    def finish(self) -> str:
        """Write run.finished with the overall result: success unless a required task failed,
        and the tasks that did not run (a failure stopped the run before them).

        A run ends once: a second finish or abort (a quit racing an interrupt) records nothing.
        """
        counts: dict[str, int] = {}
        for outcome in self.state.finished.values():
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        failed = [tid for tid, o in self.state.finished.items() if o.status in ("failed", "not_confirmed")]
        result = "failed" if failed else "success"
        if not self.ended:
            self.ended = True
            left = [task.id for _, _, task in self.pending_tasks()]
            self.record("run.finished", result=result, counts=counts, failed=failed, left=left)
            self._sealed = True
        return result

    def aborted(self, reason: str, left: list[str] | None = None) -> None:
        """Write run.aborted once, with the tasks that did not run (by id)."""
        if not self.ended:
            self.ended = True
            self.record("run.aborted", reason=self.redactor.redact(reason), left=left or [])
            self._sealed = True

    # ---- the guided sequence -------------------------------------------------------------
    def pending_tasks(self) -> Iterator[tuple[Section, Step, Task]]:
        for section in self.runbook.sections:
            for step in section.steps:
                for task in step.tasks:
                    if task.id not in self.state.finished:
                        yield section, step, task

    def run_all(self) -> str:
        """Walk every unfinished task in order; stop at the first failure the operator does not pass."""
        for _, step, task in list(self.pending_tasks()):
            if task.id in self.state.finished:  # settled meanwhile (a skipped step skips its commands)
                continue
            self.check_connected()
            outcome = self.run_task(task, step)
            if outcome.status in ("failed", "not_confirmed") and not (task.optional or step.optional):
                return "failed"
        return "success"

    def disconnect(self) -> None:
        """The terminal is gone (SIGHUP): the command in flight may finish; nothing new starts."""
        self.disconnected.set()

    def check_connected(self) -> None:
        """Raise RunAborted (after recording operator.disconnected) once the terminal is gone."""
        if self.disconnected.is_set():
            self.record("operator.disconnected", reason="terminal lost (SIGHUP)")
            raise RunAborted("operator disconnected: terminal lost; resume the run to continue")

    def check_runbook(self) -> None:
        """Warn once if the file changed on disk: the run keeps the version it started with."""
        if self._runbook_changed:
            return
        try:
            now = hashlib.sha256(Path(self.runbook.path).read_bytes()).hexdigest()
        except OSError:
            now = None
        if now != self.runbook.sha256:
            self._runbook_changed = True
            self.record("runbook.changed", path=os.path.abspath(self.runbook.path), sha256_started=self.runbook.sha256,
                        sha256_now=now, note="the run keeps the version it started with")

    def enter_step(self, step: Step) -> None:
        if step.id not in self.state.entered_steps:
            self.state.entered_steps.add(step.id)
            self.record("step.entered", step_id=step.id, title=step.title)

    def run_task(self, task: Task, step: Step, edited: str | None = None) -> TaskOutcome:
        """Do one task: ask, run, judge, record. Raises RunAborted when the operator aborts.

        `edited` is a command the operator rewrote before running it; it is recorded as such.
        """
        self.check_runbook()
        self.enter_step(step)
        if task.options.skip:
            return self.skip(task, step, "marked skip in the runbook")
        if task.kind == "manual":
            return self._manual(task, step)
        try:
            if step_confirmation_needed(self.mode, self.trusted) and step.id not in self.state.confirmed_steps:
                refused = self._confirm_step(task, step)
                if refused is not None:
                    return refused
            return self._command(task, step, edited)
        except UnsafePlaceholder as exc:
            return self._finish(task, step, TaskOutcome("failed", reason=f"not run: {exc}. Edit the command "
                                                        "to write the value in place, or fix the runbook"))

    def _confirm_step(self, task: Task, step: Step) -> TaskOutcome | None:
        """Step mode: show every command of the step as it will run, in full, and ask once.

        The approval covers exactly those texts: a command that differs when its turn comes
        (edited, or a value changed) is asked again. Returns the task's outcome if not approved.
        """
        requests = [self._confirmation(t, step, self.resolve(t), attempt=1, reason="step mode")
                    for t in step.tasks if t.kind == "command" and t.id not in self.state.finished
                    and not t.options.skip]
        self.record("confirm.asked", step_id=step.id, kind="step", commands=[
            {"task_id": r.task.id, **self._redacted(r.shown())} for r in requests])
        answer = self.prompter.confirm_step(step, requests)
        self.record("confirm.answered", step_id=step.id, kind="step", answer=answer.action,
                    reason=self.redactor.redact(answer.reason))
        if answer.action == "abort":
            raise RunAborted("operator aborted at step " + step.id)
        if answer.action == "skip":  # the whole step: every command it listed
            for other in requests:
                if other.task is not task:
                    self.skip(other.task, step, answer.reason or "step skipped")
            return self.skip(task, step, answer.reason or "step skipped")
        if answer.action != "run":
            return self._finish(task, step, TaskOutcome("not_confirmed", reason=answer.reason or "step not confirmed"))
        self.state.confirmed_steps.add(step.id)
        self.state.approved.update({r.task.id: r.command for r in requests})
        return None

    def skip(self, task: Task, step: Step, reason: str) -> TaskOutcome:
        return self._finish(task, step, TaskOutcome("skipped", reason=reason))

    def mark_done(self, task: Task, step: Step) -> TaskOutcome:
        return self._finish(task, step, TaskOutcome("manual"))

    def _finish(self, task: Task, step: Step, outcome: TaskOutcome) -> TaskOutcome:
        self.state.finished[task.id] = outcome
        fields: dict[str, Any] = {"task_id": task.id, "step_id": step.id, "status": outcome.status,
                                  "title": task.command if task.command is not None else task.text,
                                  "fingerprint": task.fingerprint}
        if outcome.reason:
            fields["reason"] = self.redactor.redact(outcome.reason)
        if outcome.exit_code is not None:
            fields["exit_code"] = outcome.exit_code
        self.record("task.finished", **fields)
        return outcome

    def _manual(self, task: Task, step: Step) -> TaskOutcome:
        if self.mode == "noop":
            return self._finish(task, step, TaskOutcome("planned", reason=f"manual check: {task.text}"))
        self.check_connected()
        self.record("confirm.asked", task_id=task.id, prompt=task.text, risk="low", kind="manual")
        answer = self.prompter.confirm_manual(task, step)
        self.record("confirm.answered", task_id=task.id, answer=answer.action, reason=answer.reason)
        if answer.action == "abort":
            raise RunAborted(f"operator aborted at task {task.id}")
        if answer.action in ("done", "run"):
            return self._finish(task, step, TaskOutcome("manual"))
        if answer.action == "skip":
            return self.skip(task, step, answer.reason)
        return self._finish(task, step, TaskOutcome("not_confirmed", reason=answer.reason or "not confirmed"))

    # ---- commands ------------------------------------------------------------------------
    def risk(self, task: Task) -> Risk:
        """The policy's risk for this task, with the values this run has (one risk everywhere)."""
        return task_risk(self.runbook, task, self.values)

    def typed_word(self) -> str:
        """What a high-risk confirmation asks the operator to type: the environment's name, or yes."""
        for name in ("ENVIRONMENT", "ENV", "STAGE", "CLUSTER"):
            if self.values.get(name):
                return self.values[name]
        return "yes"

    def resolve(self, task: Task) -> str:
        """Ask for what the task needs (variables, placeholders) and return the command to run.

        A placeholder the shell would run as code is refused before anyone is asked for its value.
        """
        refused = evaluated_placeholders(task)
        if refused:
            raise UnsafePlaceholder(refused[0][1])
        own = dict(task.options.env or ())
        declared = {secret.name: secret for secret in self.runbook.secrets}
        # A declared secret no one gave at the start is asked for as a secret (masked, redacted,
        # never recorded), not as a plain variable whose value would go into values.given.
        questions = [self._question(name, declared) for name in task.variables
                     if not (name in self.values or name in self.secrets or name in own or name in os.environ)]
        questions += [Question(placeholder_label(token), token) for token in task.placeholders
                      if placeholder_label(token) not in self.values]
        if questions and self.mode != "noop":  # noop shows what is missing instead of asking for it
            given = self.prompter.ask_values(questions)
            for name, value in given.items():
                if name in declared:
                    self.add_secret(name, value)
            plain = {name: value for name, value in given.items() if name not in declared}
            self.values.update(plain)
            if plain:
                self.record("values.given", task_id=task.id,
                            values={name: self.redactor.redact(value) for name, value in plain.items()})
        fills = {token: self.values[placeholder_label(token)] for token in task.placeholders
                 if placeholder_label(token) in self.values}
        return fill_placeholders(task.command or "", fills)

    def _question(self, name: str, declared: Mapping[str, Secret]) -> Question:
        """How a missing value is asked for: a declared secret masked; a variable with the
        runbook's own prompt text and default."""
        if name in declared:
            return Question(name, f"secret {name} ({declared[name].ref})", secret=True)
        variable = next((v for v in self.runbook.variables if v.name == name), None)
        if variable is None:
            return Question(name, f"${name}")
        prompt = f"${name}: {variable.prompt}" if variable.prompt else f"${name}"
        return Question(name, prompt, default=variable.default)

    def environment(self, task: Task) -> dict[str, str]:
        """What the runbook adds to this task's environment (secrets only where it uses them)."""
        return injected_environment(self.runbook, self.values, self.secrets, task)

    def _redacted(self, shown: dict[str, Any]) -> dict[str, Any]:
        """A confirmation's fields for the transcript: every text through the redactor."""
        return {k: self.redactor.redact(v) if isinstance(v, str) else v for k, v in shown.items()}

    def _confirmation(self, task: Task, step: Step, command: str, *, attempt: int, reason: str) -> Confirmation:
        """Everything that will run, as the operator is shown it (secret values masked)."""
        risk = self.risk(task)
        shown_env = self._shown_env(task)
        return Confirmation(task, step, command, self._cwd(task), task.options.container, [k for k, _ in shown_env],
                            risk.level, self.typed_word() if risk.level == "high" else None, attempt,
                            shell=self._shell(task), env=shown_env, risk_reasons=risk.reasons, reason=reason)

    def _shown_env(self, task: Task) -> tuple[tuple[str, str], ...]:
        """What the runbook adds to the task's environment, as the operator sees it: secrets masked."""
        return tuple((k, "[secret]" if k in self.secrets else self.redactor.redact(v))
                     for k, v in sorted(self.environment(task).items()))

    def _cwd(self, task: Task) -> str:
        return command_cwd(self.runbook, task)

    def _shell(self, task: Task) -> str:
        return (self.runbook.shell or "sh") if task.options.container else self.shell

    def _command(self, task: Task, step: Step, edited: str | None) -> TaskOutcome:
        command = edited if edited is not None else self.resolve(task)
        cwd = self._cwd(task)
        if self.mode == "noop":
            risk = self.risk(task)
            self.record("command.planned", task_id=task.id, step_id=step.id, command=task.command,
                        run_command=self.redactor.redact(command), cwd=cwd, container=task.options.container,
                        shell=self._shell(task), env=dict(self._shown_env(task)), risk=risk.level,
                        risk_reasons=list(risk.reasons), **self._planned_batches(task))
            return self._finish(task, step, TaskOutcome("planned"))
        if task.options.hosts:
            from runbook_tui.engine.fanout import Fanout

            outcome = self._finish(task, step, Fanout(self, task, step, command, edited).run())
            if self.abort_event.is_set():  # interrupted: the run ends here, resumable, not finished
                raise RunAborted(f"interrupted during task {task.id}")
            return outcome
        attempt = self.state.attempts.get(task.id, 0) + 1  # a retry (r) goes on counting
        while True:
            decision = self._decide(task, command, edited)
            self.check_connected()
            if decision.ask:
                request = self._confirmation(task, step, command, attempt=attempt, reason=decision.reason)
                self.record("confirm.asked", task_id=task.id, **self._redacted(request.shown()),
                            edited=edited is not None)
                answer = self.prompter.confirm(request)
                # An edited command was approved as the operator wrote it, in full, in the editor.
                approved = answer.command if answer.command is not None else command
                self.record("confirm.answered", task_id=task.id, answer=answer.action,
                            reason=self.redactor.redact(answer.reason), typed=answer.typed,
                            edited=answer.command is not None,
                            approved=self.redactor.redact(approved) if answer.action == "run" else None)
                if answer.action == "abort":
                    raise RunAborted(f"operator aborted at task {task.id}")
                if answer.action == "skip":
                    return self.skip(task, step, answer.reason or "skipped by the operator")
                if answer.action != "run":
                    return self._finish(task, step, TaskOutcome("not_confirmed", reason=answer.reason or "not confirmed"))
                if answer.command is not None:
                    command, edited = answer.command, answer.command
            else:
                self._allowed(task, command, decision.reason, attempt)
            status, verdict, attempt = self._attempts(task, step, command, cwd, attempt, edited is not None)
            if verdict.passed:
                return self._finish(task, step, TaskOutcome("done", exit_code=status.ok_code))
            if status.aborted and self.abort_event.is_set():
                self._finish(task, step, TaskOutcome("failed", exit_code=status.ok_code, reason=verdict.reason))
                raise RunAborted(f"interrupted during task {task.id}")
            if self.disconnected.is_set():
                self._finish(task, step, TaskOutcome("failed", exit_code=status.ok_code, reason=verdict.reason))
                self.check_connected()
            answer = self.prompter.after_failure(task, verdict, attempt)
            if answer.action == "retry":
                attempt += 1
                continue
            if answer.action == "abort":
                self._finish(task, step, TaskOutcome("failed", exit_code=status.ok_code, reason=verdict.reason))
                raise RunAborted(f"operator aborted after task {task.id} failed")
            if answer.action == "skip":
                return self.skip(task, step, answer.reason or f"failed ({verdict.reason}), skipped by the operator")
            return self._finish(task, step, TaskOutcome("failed", exit_code=status.ok_code, reason=verdict.reason))

    def _planned_batches(self, task: Task) -> dict[str, Any]:
        """Noop of a fan-out: the batches it would run, one line each."""
        if not task.options.hosts:
            return {}
        from runbook_tui.batches import describe_batches, plan_batches
        from runbook_tui.integrations.inventory import runbook_inventory

        hosts = [h.name for h in runbook_inventory(self.runbook).resolve(task.options.hosts)]
        return {"batches": describe_batches(plan_batches(hosts, task.options.serial))}

    def ssh_pool(self) -> Any:
        """The run's SSH connections (one per host, reused by every task), made on first use."""
        if self._ssh is None:
            from runbook_tui.integrations.ssh import SshOptions, SshPool

            self._ssh = SshPool(SshOptions(host_keys=self.host_keys))  # type: ignore[arg-type]
        return self._ssh

    def close_targets(self) -> None:
        """Close what the run opened to reach other machines (SSH connections)."""
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    def _decide(self, task: Task, command: str, edited: str | None) -> Decision:
        """The policy's answer for this command as it will run now."""
        approved = edited is None and self.state.approved.get(task.id) == command
        return confirmation_needed(task, mode=self.mode, trusted=self.trusted, risk=self.risk(task),
                                   step_approved=approved)

    def _allowed(self, task: Task, command: str, reason: str, attempt: int) -> None:
        """Record why a command starts without a question of its own (the invariant's other half)."""
        self.record("policy.allowed", task_id=task.id, run_command=self.redactor.redact(command), reason=reason,
                    mode=self.mode, trusted=self.trusted, attempt=attempt)

    def _attempts(self, task: Task, step: Step, command: str, cwd: str,
                  attempt: int, edited: bool) -> tuple[ExitStatus, Verdict, int]:
        """Run the command until it passes: `retries` more times, or every interval until `wait_until` ends.

        Every automatic attempt after the first is recorded as allowed by the approval of the
        first; none starts once the terminal is gone or the run is being stopped. Returns the
        last attempt's status and verdict, and its number.
        """
        wait = task.options.wait_until
        deadline = time.monotonic() + wait.timeout if wait else 0.0
        retries_left = task.options.retries or 0
        while True:
            status, verdict = self._execute(task, step, command, cwd, attempt, edited)
            if verdict.passed or self.abort_event.is_set() or status.aborted or self.disconnected.is_set():
                return status, verdict, attempt
            if wait is not None:
                if time.monotonic() + wait.interval >= deadline or self.abort_event.wait(wait.interval):
                    return status, verdict, attempt
            elif retries_left > 0:
                retries_left -= 1
            else:
                return status, verdict, attempt
            if self.disconnected.is_set():
                return status, verdict, attempt
            attempt += 1
            kind = "wait_until" if wait is not None else f"retries={task.options.retries}"
            self._allowed(task, command, f"automatic attempt ({kind}) of the approved command", attempt)

    def _execute(self, task: Task, step: Step, command: str, cwd: str,
                 attempt: int, edited: bool) -> tuple[ExitStatus, Verdict]:
        """One attempt: command.started, streamed output events, command.finished."""
        self.state.attempts[task.id] = attempt
        injected = self.environment(task)
        target = self._container_facts(task.options.container) if task.options.container else {}
        self.record("command.started", task_id=task.id, step_id=step.id, command=task.command,
                    run_command=self.redactor.redact(command), cwd=cwd, container=task.options.container,
                    image=target.get("image"), container_id=target.get("id"),
                    env_names=sorted(injected), attempt=attempt, shell=self._shell(task), edited=edited)
        stream = OutputStream(self, task.id, live=not task.options.interactive)
        if task.options.interactive:
            return self._interactive(task, command, cwd, command_environment(injected), stream, attempt)
        try:
            proc = self._spawn(task, command, cwd, injected, stream)
        except OSError as exc:
            message = f"cannot start: {exc.strerror or exc}"
            stream.feed(message + "\r\n")
            stream.close()
            status = ExitStatus(exit_code=127, signal=None, duration=0.0)
            self.record("command.finished", task_id=task.id, exit_code=status.exit_code, signal=status.signal,
                        duration=status.duration, timed_out=status.timed_out, attempt=attempt, error=message)
            return status, Verdict(False, message)
        status: ExitStatus | None = None
        self.command_running = True
        try:
            if isinstance(proc, PtyProcess):  # where to look on resume if the app dies meanwhile
                self.record("command.spawned", task_id=task.id, attempt=attempt, host=socket.gethostname(),
                            **proc.identity.as_dict())
            watch = InputWatch(self, task, proc, stream)
            status = self._supervise(proc, task, stream, watch)
            if watch.fired:
                stream.feed(f"\r\n[runbook-tui] {NO_ANSWER}\r\n")
            elif watch.declined:
                stream.feed("\r\n[runbook-tui] the operator did not answer the command's question; it was stopped\r\n")
        except BaseException:
            # A failure of ours (or an exception from a front end): the command does not outlive it.
            proc.abort(self.grace)
            ended = proc.wait()
            if ended is not None:
                status = ExitStatus(ended.exit_code, ended.signal, ended.duration, aborted=True)
            raise
        finally:
            self.command_running = False
            stream.close()
            final = status or ExitStatus(exit_code=None, signal=None, duration=0.0, aborted=True)
            lost = {"output_lost": str(stream.error)} if stream.error is not None else {}
            self.record("command.finished", task_id=task.id, exit_code=final.exit_code, signal=final.signal,
                        duration=round(final.duration, 3), timed_out=final.timed_out, aborted=final.aborted,
                        attempt=attempt, **lost)
        if stream.error is not None:
            raise stream.error
        if watch.fired:
            return status, Verdict(False, NO_ANSWER)
        if watch.declined:
            return status, Verdict(False, "the operator did not answer the command's question")
        return status, judge(task, status, stream.tail.text())

    def _spawn(self, task: Task, command: str, cwd: str, injected: Mapping[str, str],
               stream: OutputStream) -> Process:
        """Start the command locally under a PTY, or with docker exec in the task's container.

        A container gets only what the runbook injects (not the operator's PATH or HOME), its
        own working directory unless the task names one, and `sh` unless the runbook names a shell.
        """
        if not task.options.container:
            return PtyProcess.spawn(shell_argv(command, self.shell), on_output=stream.feed, cwd=cwd,
                                    env=command_environment(injected))
        from runbook_tui.integrations.docker import ContainerProcess, DockerError

        try:
            return ContainerProcess.spawn(self._docker_client(), task.options.container, command,
                                          on_output=stream.feed, env=injected, cwd=task.options.cwd,
                                          shell=self.runbook.shell or "sh")
        except DockerError as exc:
            raise OSError(str(exc)) from None

    def _docker_client(self) -> Any:
        if self._docker is None:
            from runbook_tui.integrations.docker import connect

            self._docker = connect()
        return self._docker

    def _container_facts(self, target: str) -> dict[str, str]:
        """Name, id and image of the task's container for command.started; empty if unreachable."""
        from runbook_tui.integrations.docker import DockerError, describe_target

        try:
            return describe_target(self._docker_client(), target)
        except DockerError:
            return {}

    def _interactive(self, task: Task, command: str, cwd: str, env: Mapping[str, str], stream: OutputStream,
                     attempt: int) -> tuple[ExitStatus, Verdict]:
        """Give the program the operator's terminal; its output is still recorded."""
        try:
            if self.terminal is None:
                raise OSError("an interactive task needs the operator's terminal, and this run has none")
            status = self.terminal(shell_argv(command, self.shell), on_output=stream.feed, cwd=cwd, env=env)
        except OSError as exc:
            status = ExitStatus(exit_code=126, signal=None, duration=0.0)
            stream.feed(f"cannot run interactively: {exc}\r\n")
        stream.close()
        self.record("command.finished", task_id=task.id, exit_code=status.exit_code, signal=status.signal,
                    duration=round(status.duration, 3), timed_out=False, aborted=False, attempt=attempt,
                    interactive=True)
        return status, judge(task, status, stream.tail.text())

    def _supervise(self, proc: Process, task: Task, stream: OutputStream, watch: InputWatch) -> ExitStatus:
        """Wait for the command, flushing output to the transcript; enforce timeout and abort, and
        stop a command that waits for input no one can give it."""
        return supervise(proc, timeout=task.options.timeout or self.task_timeout, grace=self.grace,
                         should_abort=lambda: self._stop_requested() or watch.stuck(),
                         tick=stream.flush, interval=FLUSH_INTERVAL)

    def _stop_requested(self) -> bool:
        """The run is being aborted, or the operator interrupted this one command."""
        if self.cancel_event.is_set():
            self.cancel_event.clear()
            return True
        return self.abort_event.is_set()

    def interrupt(self) -> None:
        """Stop the running command (SIGINT, SIGTERM, SIGKILL to its group) and the run."""
        self.abort_event.set()

    def cancel_command(self) -> None:
        """Stop the running command only; the task fails as aborted and the run goes on."""
        self.cancel_event.set()


# A command blocked reading its terminal this long, with no one to answer it (no terminal), is
# stopped: it would wait for ever. The grace keeps a command that only peeks at its terminal (or
# our detection, a /proc read racing the command) from being stopped by mistake.
INPUT_GRACE = 5.0
# With an operator to answer: how long a command must have been waiting before they are asked,
# so that a prompt is on screen whole (its question printed) when the question appears.
INPUT_SETTLE = 0.3
# How often the terminal is looked at: /proc reads for every member, so not on every tick.
INPUT_POLL = 0.5
NO_ANSWER = ("the command is waiting for input, and no one can type into its terminal here; it was "
             "stopped. Give it its input on the command line (e.g. --yes, < file), or mark the task "
             "interactive=true to answer it on your own terminal")


class InputWatch:
    """A command that waits for input (`read`, a y/N question, a password prompt): the operator
    is asked for the line to type (masked when the terminal does not echo); with no one to ask
    (UnattendedPrompter), the command is stopped after INPUT_GRACE instead of waiting for ever."""

    def __init__(self, session: Session, task: Task, proc: Process, stream: OutputStream) -> None:
        self._session, self._task, self._stream = session, task, stream
        self._proc = proc if isinstance(proc, PtyProcess) else None
        self._since: float | None = None
        self._next = 0.0
        self._answerable = True  # until the prompter says no one can answer
        self.fired = False  # stopped: no one could answer
        self.declined = False  # stopped: the operator chose not to answer

    def stuck(self) -> bool:
        """True once the command must stop: it waits for input no one gives it."""
        now = time.monotonic()
        if self._proc is None or now < self._next or self.fired or self.declined:
            return self.fired or self.declined
        self._next = now + INPUT_POLL
        state = self._proc.terminal_state()
        if state.alternate_screen and self._session.take_over is not None:
            # A full-screen program (less, vi, top): the operator's own terminal, until it leaves
            # its screen or ends; its output is still recorded meanwhile.
            self._session.take_over(self._proc)
            self._since = None
            return False
        if not state.waiting_for_input:
            self._since = None
            return False
        self._since = self._since or now
        if self._answerable and now - self._since >= INPUT_SETTLE:
            self._answer(state.masked_input)
            self._since = None
            return self.declined
        self.fired = not self._answerable and now - self._since >= INPUT_GRACE
        return self.fired

    def _answer(self, masked: bool) -> None:
        """Ask the operator for the line the command waits for, type it in, record that."""
        assert self._proc is not None
        self._stream.flush()  # the question it printed is on the record before the answer
        try:
            line = self._session.prompter.ask_input(self._task, self._stream.tail.text(), masked)
        except MissingValue:
            self._answerable = False
            return
        if line is None:
            self.declined = True
            self._session.record("input.declined", task_id=self._task.id)
            return
        # An echo-off answer (a password) is never recorded, not even redacted: only that one was sent.
        text = None if masked else self._session.redactor.redact(line)
        self._session.record("input.sent", task_id=self._task.id, masked=masked, text=text)
        self._proc.write(line.encode() + b"\n")


class OutputStream:
    """Redacts a command's output as it streams, feeds the live view, batches transcript events.

    `feed` runs on the PTY reader thread; `flush` on the session's thread. If the transcript
    cannot be written, output is no longer recorded and the error stops the run once the
    command has ended (a migration is not killed halfway because a disk filled up).

    An interactive program's output is fed on the session's own thread, which flushes only
    when it ends: `live=False` streams are therefore never held back (see PENDING_MAX).
    """

    def __init__(self, session: Session, task_id: str, *, live: bool = True, host: str | None = None) -> None:
        self.session = session
        self.task_id = task_id
        self.host = host  # one stream per host of a fan-out: its events and its live output name it
        self.stream_id = f"{task_id}:{host or ''}:{uuid.uuid4().hex[:8]}"
        self.tail = OutputTail()
        self.error: TranscriptError | None = None
        self._pending: list[str] = []
        self._size = 0
        self._flushed = threading.Condition()
        self._bounded = live
        # an interactive program already shows its output on the operator's terminal
        self._live: Callable[[str, str, str | None], None] | None = (
            session.observer.output if session.observer and live else None)

    def feed(self, text: str) -> None:
        safe = self.session.redactor.feed(self.stream_id, text)
        self._accept(safe)

    def _accept(self, safe: str) -> None:
        if not safe:
            return
        with self._flushed:
            if self._bounded and self._size >= PENDING_MAX and self.error is None:
                self._flushed.wait(PENDING_WAIT)  # a stalled flush slows the reader, never stops it
            self._pending.append(safe)
            self._size += len(safe)
        self.tail.add(safe)
        if self._live is not None:
            self._live(self.task_id, safe, self.host)

    def flush(self) -> None:
        with self._flushed:
            text, self._pending, self._size = "".join(self._pending), [], 0
            self._flushed.notify_all()
        if not text or self.error is not None:
            return
        try:
            where = {"host": self.host} if self.host else {}
            for start in range(0, len(text), OUTPUT_EVENT_MAX):
                self.session.record("output", task_id=self.task_id, text=text[start : start + OUTPUT_EVENT_MAX], **where)
        except TranscriptError as exc:
            self.error = exc

    def close(self) -> None:
        """On the session's thread: flush first, so the redactor's tail never waits on itself."""
        self.flush()
        self._accept(self.session.redactor.flush(self.stream_id))
        self.flush()


def operator_facts(git_facts: dict[str, Any] | None) -> dict[str, Any]:
    """Who runs this and where: user, host, terminal, git user."""
    try:
        tty: str | None = os.ttyname(0)
    except OSError:  # not a terminal (ENOTTY), or stdin closed
        tty = None
    return {
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "tty": tty,
        "git_user": (git_facts or {}).get("user"),
    }
