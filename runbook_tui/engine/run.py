"""One run's lifecycle, written once: open or resume → trust → lock → secrets → start → drive →
finish or abort → close.

Front ends (headless `run`, the TUI) supply a Prompter (how to ask) and an Observer (what to
show) and call the typed methods here for everything the operator does: run, skip, retry,
edit, note, jump, mode change, export, switch runbook, interrupt, quit. They never write a
transcript event themselves and never decide policy; this module and `Session` do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_tui.audit.checkpoints import Checkpointer
from runbook_tui.audit.redact import Redactor
from runbook_tui.audit.signing import SignResult, sign_transcript
from runbook_tui.audit.transcript import Transcript, TranscriptError, new_transcript_path
from runbook_tui.engine.lock import RunLock, describe_holder
from runbook_tui.engine.ownfiles import UnsafeFileError
from runbook_tui.engine.trust import TrustStatus, trust_status
from runbook_tui.config import SigningSettings, load_config
from runbook_tui.engine.history import RunHistory, remember
from runbook_tui.engine.session import (MissingValue, Observer, Prompter, Question, RunAborted, Session, Terminal,
                                        TaskOutcome)
from runbook_tui.model import Mode, Runbook, Secret, Section, Step, Task


# Builds the front end's prompter for a runbook once its trust is known (`--yes` answers only for a
# trusted runbook); raises RunProblem when there is no one to ask.
PrompterFactory = Callable[[Runbook, TrustStatus], Prompter]


class RunProblem(Exception):
    """The run cannot open (bad transcript, missing secret with no one to ask): nothing ran."""


@dataclass(frozen=True)
class RunNotice:
    """Something the operator should know before the run: a line for the screen, and the whole
    story (what is wrong, what to do) for whoever asks; a plain terminal prints both."""

    summary: str
    details: str = ""

    def __str__(self) -> str:
        return f"{self.summary} ({self.details})" if self.details else self.summary


@dataclass
class RunSettings:
    """What the operator asked for on the command line (or the TUI's start)."""

    mode: Mode = "paranoid"
    values: Mapping[str, str] = field(default_factory=dict)
    transcript: str | None = None
    task_timeout: float | None = None  # for tasks without a timeout of their own (recorded)
    host_keys: str = "strict"  # SSH host keys: "strict", or "accept-new" when the operator says so


class Run:
    """One run of one runbook, recorded in one transcript; the only owner of its lifecycle."""

    def __init__(self, session: Session, lock: RunLock, trust: TrustStatus, *,
                 resumed_from: RunHistory | None = None, signing: SigningSettings | None = None) -> None:
        """Private: use `open` or `resume`."""
        self.session = session
        self._signing = signing
        self.signature: SignResult | None = None  # how the sealed transcript was signed, once closed
        self.resumed_from = resumed_from
        self.notices: list[RunNotice] = []
        if session.mode_notice:
            self.notices.append(RunNotice(session.mode_notice, trust.reason))
        if session.concurrent_run is not None:
            self.notices.append(RunNotice("another run of this runbook is in progress",
                                          describe_holder(session.concurrent_run)))
        self.next_run: tuple[Runbook, Path] | None = None  # a related runbook the operator switched to
        self._lock = lock
        self._closed = False
        self._started = False
        # Where this session's events start in the transcript (a resumed run's file already holds
        # the interrupted session's): the log pane reads older output back from here on.
        self.output_since = session.transcript.path.stat().st_size
        self._ending = threading.Lock()

    # ---- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, book: Runbook, settings: RunSettings, prompter_for: PrompterFactory, *,
             observer: Observer | None = None, terminal: Terminal | None = None,
             take_over: Callable[[Any], Any] | None = None) -> Run:
        """A new run: its trust decided now, then the front end's prompter for that trust (which
        may refuse with RunProblem: no one to ask), the run lock, then its transcript."""
        path = Path(settings.transcript or new_transcript_path(book.title))
        run = cls._begin(book, path, Transcript.create, settings, prompter_for, observer=observer,
                         terminal=terminal, take_over=take_over)
        remember(path)
        return run

    @classmethod
    def resume(cls, path: str, settings: RunSettings, prompter_for: PrompterFactory, *,
               observer: Observer | None = None, terminal: Terminal | None = None,
               take_over: Callable[[Any], Any] | None = None) -> Run:
        """Continue an interrupted run on its own chain.

        Only *what was done* comes from the transcript. Mode, trust and values come from now: a
        transcript is a file anyone with write access can forge, and it must not be able to
        switch confirmations off or smuggle values into commands.
        """
        from runbook_tui.parse import load_runbook

        history = RunHistory.load(path)
        if history.problem:
            raise RunProblem(history.problem)
        alive = history.interrupted_still_running()
        if alive:
            raise RunProblem(alive)
        book = load_runbook(history.runbook_path)
        run = cls._begin(book, Path(path), Transcript.open_append, settings, prompter_for, history=history,
                         observer=observer, terminal=terminal, take_over=take_over)
        if book.sha256 != history.runbook_sha256:
            run.notices.append(RunNotice(f"{history.runbook_path} changed since the run started; tasks whose text "
                                         "changed will run again", f"sha256 {history.runbook_sha256[:12]} then, "
                                         f"{book.sha256[:12]} now"))
        return run

    @classmethod
    def _begin(cls, book: Runbook, path: Path, transcript_at: Callable[..., Transcript], settings: RunSettings,
               prompter_for: PrompterFactory, *, history: RunHistory | None = None,
               observer: Observer | None, terminal: Terminal | None, take_over: Callable[[Any], Any] | None) -> Run:
        """Trust, the prompter for it, the lock, the transcript (`create` or `open_append`), the session."""
        from runbook_tui.integrations.git import repo_facts

        config = load_config()
        trust = trust_status(book)
        prompter = prompter_for(book, trust)
        lock, holder = _lock(book, path)
        try:
            transcript = transcript_at(path, checkpoints=Checkpointer.from_settings(config.checkpoints))
        except TranscriptError as exc:
            lock.release()
            raise RunProblem(f"{exc}; nothing was run") from None
        session = Session(book, transcript, prompter, observer=observer, mode=settings.mode,
                          values=settings.values, git_facts=repo_facts(book.path),
                          state=history.state_for(book) if history is not None else None, terminal=terminal,
                          trusted=trust.trusted, task_timeout=settings.task_timeout,
                          host_keys=settings.host_keys, take_over=take_over)
        session.concurrent_run = holder
        return cls(session, lock, trust, resumed_from=history, signing=config.signing)

    # ---- properties front ends show ------------------------------------------------------------
    @property
    def runbook(self) -> Runbook:
        return self.session.runbook

    @property
    def mode(self) -> Mode:
        return self.session.mode

    @property
    def transcript_path(self) -> Path:
        return self.session.transcript.path

    @property
    def redactor(self) -> Redactor:
        return self.session.redactor

    @property
    def interrupted_task(self) -> Task | None:
        """The task that was running when a resumed run stopped, if it is still in the runbook."""
        if self.resumed_from is None or not self.resumed_from.interrupted:
            return None
        found = self.runbook.find(self.resumed_from.interrupted)
        return found if isinstance(found, Task) else None

    # ---- before run.started --------------------------------------------------------------------
    def read_secrets(self, *, ask: bool) -> list[RunNotice]:
        """Read every secret the runbook declares, before anything is shown or run, so that every
        view redacts from its first line. Asks for one that is not stored (and offers to store
        it, unless the keyring just failed) when `ask`; returns notices: one per keyring problem,
        naming the secrets it concerns, and one per secret no one gave."""
        from runbook_tui.integrations.secrets import SecretError, read_secret, store_secret

        if self.mode == "noop":
            return []
        notices: list[RunNotice] = []
        failures: dict[str, tuple[SecretError, list[str]]] = {}  # the same keyring problem, told once
        given: dict[str, str] = {}  # by reference: one secret under two names is asked for once
        for secret in self.runbook.secrets:
            if secret.ref in given:
                self.session.add_secret(secret.name, given[secret.ref])
                continue
            try:
                value = read_secret(secret)
                keyring_works = True
            except SecretError as exc:
                if not ask:
                    raise RunProblem(str(exc)) from None
                failures.setdefault(str(exc), (exc, []))[1].append(secret.name)
                value, keyring_works = None, False
            if value is None:
                value = self._ask_secret(secret, ask)
                if value is None:
                    notices.append(RunNotice(f"{secret.name} was not given; commands that use it will not get it"))
                    continue
                if keyring_works and secret.ref.startswith("keyring:") and \
                        self.session.prompter.offer_to_store(secret.name):
                    try:
                        store_secret(secret.ref, value)
                    except SecretError as exc:
                        notices.append(RunNotice(f"{secret.name} was not stored: {exc.summary}", str(exc)))
            given[secret.ref] = value
            self.session.add_secret(secret.name, value)
        told = [RunNotice(f"{exc.summary}: {', '.join(names)} must be typed in every run", str(exc))
                for exc, names in failures.values()]
        return told + notices

    def _ask_secret(self, secret: Secret, ask: bool) -> str | None:
        if not ask:
            raise RunProblem(f"secret {secret.name} ({secret.ref}) is not stored; store it with "
                             f"`runbook-tui secrets set {secret.ref.partition(':')[2]}`")
        question = Question(secret.name, f"secret {secret.name} ({secret.ref})", secret=True)
        try:
            return self.session.prompter.ask_values([question])[secret.name]
        except MissingValue:
            return None

    def start(self) -> None:
        """run.started (or run.resumed): from here on every action is on the record."""
        if self.resumed_from is not None:
            self.session.resume(self.resumed_from.interrupted)
        else:
            self.session.start()
        self._started = True

    # ---- driving -------------------------------------------------------------------------------
    def drive(self) -> int:
        """Walk every unfinished task in order (headless); the exit code of the run."""
        try:
            self.session.run_all()
            return 0 if self.session.finish() == "success" else 1
        except RunAborted as exc:
            return self.abort(str(exc))
        except MissingValue as exc:
            self.abort(str(exc))
            raise

    def locate(self, task_id: str) -> tuple[Section, Step, Task]:
        """The section and step of a task, by id (KeyError if the runbook has no such task)."""
        for section in self.runbook.sections:
            for step in section.steps:
                for task in step.tasks:
                    if task.id == task_id:
                        return section, step, task
        raise KeyError(task_id)

    def run_task(self, task_id: str, edited: str | None = None) -> TaskOutcome | None:
        """Do one task as the operator asked (enter, r, e); None if the run was stopped meanwhile."""
        _, step, task = self.locate(task_id)
        try:
            return self.session.run_task(task, step, edited=edited)
        except RunAborted as exc:
            if not self.session.disconnected.is_set():
                self.abort(str(exc))
            return None

    def skip(self, task_id: str, reason: str) -> TaskOutcome:
        _, step, task = self.locate(task_id)
        return self.session.skip(task, step, reason)

    def settle_interrupted(self, choice: str) -> None:
        """Resume: the task that was running when the run stopped is run again, skipped or done."""
        task = self.interrupted_task
        if task is None or choice == "rerun":
            return
        if choice == "skip":
            self.skip(task.id, "interrupted task skipped on resume")
        else:
            _, step, _ = self.locate(task.id)
            self.session.mark_done(task, step)

    def note(self, text: str, task_id: str | None = None) -> None:
        self.session.note(text, task_id)

    def forget_value(self, name: str) -> None:
        """The operator wants to answer a value again (a wrong placeholder value, say)."""
        self.session.forget_value(name)

    def given_values(self) -> list[str]:
        """Names of the values this run holds that the operator may answer again."""
        return sorted(self.session.values)

    def jump(self, element_id: str) -> None:
        self.session.jumped(element_id)

    def change_mode(self, mode: Mode) -> str | None:
        """From the next task on, as the policy allows; a notice when it refused."""
        return self.session.change_mode(mode)

    def pending(self) -> list[str]:
        return [task.id for _, _, task in self.session.pending_tasks()]

    def settled(self) -> dict[str, str]:
        """Task id -> status of every task settled so far (a resumed run: those of the run it continues)."""
        return {task_id: outcome.status for task_id, outcome in self.session.state.finished.items()}

    def all_settled(self) -> bool:
        return not self.pending()

    # ---- stopping ------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop the running command (INT, TERM, KILL to its group) and the run."""
        self.session.interrupt()

    def cancel_command(self) -> None:
        """Stop the running command only; the task fails and the run goes on."""
        self.session.cancel_command()

    def hangup(self) -> None:
        """The operator's terminal is gone: the command in flight may finish; nothing new starts."""
        self.session.disconnect()

    def end(self, reason: str | None = None) -> int:
        """Seal the transcript: run.finished when every task settled, else run.aborted naming the
        tasks left (and why: `reason`, a lost terminal or the operator's quit). The exit code."""
        with self._ending:
            if self.session.disconnected.is_set():
                if not self.session.ended:
                    self.session.record("operator.disconnected", reason="terminal lost (SIGHUP)")
                return self.abort("operator disconnected: terminal lost; resume the run to continue")
            pending = self.pending()
            if pending:
                return self.abort(f"{reason or 'operator quit'} with {len(pending)} task(s) left", left=pending)
            return 0 if self.session.finish() == "success" else 1

    def abort(self, reason: str, left: list[str] | None = None) -> int:
        """run.aborted (once), listing the tasks that did not run; exit code 1."""
        self.session.aborted(reason, left=left if left is not None else self.pending())
        return 1

    def switch_to(self, runbook: Runbook) -> int:
        """End this run for a related runbook (`next_run` says which, with the transcript the
        next run uses): recorded here. The exit code of this run."""
        target = new_transcript_path(runbook.title)
        self.next_run = (runbook, target)
        if not self.session.ended:  # a finished run's transcript stays sealed
            self.session.record("runbook.switched", path=str(Path(runbook.path).resolve()),
                                sha256=runbook.sha256, title=runbook.title, transcript=str(target))
        return self.end(f"operator switched to the related runbook {runbook.title}")

    def consult(self, runbook: Runbook) -> None:
        """The operator opened a related runbook to read (recorded while the run goes on: a
        reviewer sees it was consulted; after the run ended, reading it records nothing)."""
        if not self.session.ended:
            self.session.record("runbook.opened", path=str(Path(runbook.path).resolve()),
                                sha256=runbook.sha256, title=runbook.title)

    def stop_consulting(self, runbook: Runbook) -> None:
        if not self.session.ended:
            self.session.record("runbook.closed", path=str(Path(runbook.path).resolve()))

    def close(self) -> None:
        """Release the lock, close the transcript and sign it (idempotent; `signature` says how it
        went, never an error). A new run that never started (a secret missing, no one to ask)
        leaves no transcript behind: it has nothing to say."""
        if self._closed:
            return
        self._closed = True
        self.session.close_targets()
        self._lock.release()
        self.session.transcript.close()
        if not self._started and self.resumed_from is None:
            self.transcript_path.unlink(missing_ok=True)
        elif self.session.ended:
            # After the seal, with the operator's SSH key: checkable with stock `ssh-keygen -Y verify`.
            self.signature = sign_transcript(self.transcript_path, self._signing)

    # ---- after the run -------------------------------------------------------------------------
    def export(self, fmt: str = "md") -> Path:
        """Write an export next to the transcript under a fresh name; never overwrites anything."""
        from runbook_tui.audit.export import export, write_new

        text = export(self.transcript_path, fmt, self.redactor)  # type: ignore[arg-type]
        avoid = {Path(self.runbook.path).resolve()}
        return write_new(self.transcript_path.with_suffix(f".{fmt}"), text, avoid=avoid)


def _lock(book: Runbook, transcript: Path) -> tuple[RunLock, dict[str, Any] | None]:
    """Take the runbook's run lock (it warns a second operator; it never forbids): the lock and
    the other holder, if any. A lock file someone tampered with refuses the run."""
    lock = RunLock(book.path)
    try:
        return lock, lock.acquire(str(transcript))
    except (UnsafeFileError, OSError) as exc:
        raise RunProblem(f"cannot take the run lock: {exc}; nothing was run") from None


def watch_redactor(book: Runbook) -> tuple[Redactor, list[str]]:
    """A redactor for a read-only view (watch, container logs) with every secret it can read;
    the names it could not read, whose values such a view must therefore not show raw."""
    from runbook_tui.integrations.secrets import SecretError, read_secret

    redactor = Redactor()
    missing = []
    for secret in book.secrets:
        try:
            value = read_secret(secret)
        except SecretError:
            value = None
        if value is None:
            missing.append(secret.name)
        else:
            redactor.add(secret.name, value)
    return redactor, missing

