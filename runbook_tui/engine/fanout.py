"""A task with `hosts=`: its command on each host over SSH, in batches, each batch approved (or
allowed by the policy) as a whole before any of its hosts starts.

The session owns the questions and the record; `batches.run_on_hosts` owns the order, the
parallelism and the stopping rule (`serial`, `parallel`, `max_fail`); `integrations.ssh` owns
the connections. Every host gets its own `command.started` (host, address, user, host key),
`output` and `command.finished` events; every batch its `batch.finished`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from runbook_tui.batches import Batch, FanoutCallbacks, HostResult, describe_batches, plan_batches, run_on_hosts

if TYPE_CHECKING:
    from runbook_tui.engine.session import OutputStream, Session, TaskOutcome
    from runbook_tui.model import Step, Task

# Host facts that go into each host's command.started (what a reviewer needs to trust the record).
HOST_FACTS = ("host", "address", "port", "user", "host_key", "fingerprint", "accepted_new_key")


class Fanout:
    """One attempt of one task over its hosts; `run()` returns the task's outcome."""

    def __init__(self, session: Session, task: Task, step: Step, command: str, edited: str | None) -> None:
        from runbook_tui.integrations.inventory import runbook_inventory

        self.session, self.task, self.step = session, task, step
        self.command, self.edited = command, edited
        self.hosts = runbook_inventory(session.runbook).resolve(task.options.hosts or ())
        self.attempt = session.state.attempts.get(task.id, 0) + 1
        self.batch_count = len(plan_batches([host.name for host in self.hosts], task.options.serial))
        # A resumed run: the hosts where this very command (as recorded, redacted) finished ok
        # before the interruption are not run again. Only the first attempt after the resume.
        ran = session.state.hosts_done.pop(task.id, {})
        shown = session.redactor.redact(command)
        self.done = frozenset(host for host, ran_command in ran.items() if ran_command == shown)
        self.streams: dict[str, OutputStream] = {}
        self._lock = threading.Lock()  # streams are made on the SSH pool's thread, flushed on ours

    def run(self) -> TaskOutcome:
        from runbook_tui.engine.session import TaskOutcome
        from runbook_tui.integrations.ssh import host_starter

        session = self.session
        session.state.attempts[self.task.id] = self.attempt
        start = host_starter(session.ssh_pool(), self.hosts, self.command, env=session.environment(self.task),
                             cwd=self.task.options.cwd, shell=session.runbook.shell or "sh")
        session.command_running = True
        try:
            results = run_on_hosts(
                [host.name for host in self.hosts], start, serial=self.task.options.serial,
                max_fail=self.task.options.max_fail or 0, parallel=self.task.options.parallel,
                timeout=self.task.options.timeout or session.task_timeout, grace=session.grace,
                should_abort=session._stop_requested, done=self.done,
                callbacks=FanoutCallbacks(started=self._started, output=self._output, finished=self._finished,
                                          before_batch=self._before_batch, batch_finished=self._batch_finished,
                                          tick=self._flush))
        finally:
            session.command_running = False
            self._flush()
        failed = [r.host for r in results if r.state == "failed"]
        skipped = [r for r in results if r.state == "skipped"]
        if not failed and not skipped:
            return TaskOutcome("done", exit_code=0)
        reasons = [f"failed on {', '.join(failed)}"] if failed else []
        reasons += [f"{r.host} skipped: {r.reason}" for r in skipped[:1]] + (
            [f"{len(skipped) - 1} more skipped"] if len(skipped) > 1 else [])
        declined = not failed and all("not confirmed" in (r.reason or "") for r in skipped)
        return TaskOutcome("not_confirmed" if declined else "failed", exit_code=1 if failed else None,
                           reason="; ".join(reasons))

    # ---- callbacks (see batches.FanoutCallbacks for which thread calls each) -------------------------
    def _before_batch(self, batch: Batch, rest: Sequence[Batch]) -> bool:
        """The batch's approval: one question for all its hosts, or the policy's reason."""
        session = self.session
        session.check_connected()
        decision = session._decide(self.task, self.command, self.edited)
        after = "; then " + "; ".join(describe_batches(rest, total=self.batch_count)) if rest else "; the last batch"
        where = {"hosts": list(batch.hosts), "batch": batch.number}
        if not decision.ask:
            session.record("policy.allowed", task_id=self.task.id, run_command=session.redactor.redact(self.command),
                           reason=decision.reason, mode=session.mode, trusted=session.trusted, attempt=self.attempt,
                           **where)
            return True
        request = replace(session._confirmation(self.task, self.step, self.command, attempt=self.attempt,
                                                reason=decision.reason),
                          hosts=batch.hosts, after=f"batch {batch.number} of {self.batch_count}{after}")
        session.record("confirm.asked", task_id=self.task.id, batch=batch.number, **session._redacted(request.shown()))
        answer = session.prompter.confirm(request)
        # A batch runs the command as shown: an edit at this question declines the batch.
        action = "stop" if answer.action == "run" and answer.command is not None else answer.action
        approved = action == "run"
        session.record("confirm.answered", task_id=self.task.id, answer=action,
                       reason=session.redactor.redact(answer.reason), typed=answer.typed, edited=False,
                       approved=session.redactor.redact(self.command) if approved else None, **where)
        if answer.action == "abort":
            from runbook_tui.engine.session import RunAborted

            raise RunAborted(f"operator aborted at task {self.task.id}, batch {batch.number}")
        return approved

    def _started(self, host: str, facts: Mapping[str, object]) -> None:
        from runbook_tui.engine.session import OutputStream

        with self._lock:
            self.streams[host] = OutputStream(self.session, self.task.id, host=host)
        session = self.session
        session.record("command.started", task_id=self.task.id, step_id=self.step.id, command=self.task.command,
                       run_command=session.redactor.redact(self.command), cwd=self.task.options.cwd or "~",
                       env_names=sorted(session.environment(self.task)), attempt=self.attempt,
                       shell=session.runbook.shell or "sh", edited=self.edited is not None,
                       **{key: facts.get(key) for key in HOST_FACTS})

    def _output(self, host: str, text: str) -> None:
        with self._lock:
            stream = self.streams.get(host)
        if stream is not None:
            stream.feed(text)

    def _finished(self, result: HostResult) -> None:
        with self._lock:
            stream = self.streams.pop(result.host, None)
        if result.finished_before:
            self.session.record("host.skipped", task_id=self.task.id, host=result.host, reason=result.reason or "",
                                attempt=self.attempt, finished_before=True)
            return
        if stream is None:  # never started: unreachable, a bad host key; or its batch was not run
            kind = "host.skipped" if result.state == "skipped" else "host.failed"
            self.session.record(kind, task_id=self.task.id, host=result.host, reason=result.reason or "",
                                attempt=self.attempt)
            return
        stream.close()
        status = result.status
        fields: dict[str, Any] = {"exit_code": status.exit_code if status else None,
                                  "signal": status.signal if status else None,
                                  "duration": round(status.duration, 3) if status else 0.0,
                                  "timed_out": bool(status and status.timed_out)}
        self.session.record("command.finished", task_id=self.task.id, host=result.host, attempt=self.attempt,
                            state=result.state, reason=result.reason, **fields)

    def _batch_finished(self, batch: Batch, results: Sequence[HostResult]) -> None:
        self.session.record("batch.finished", task_id=self.task.id, batch=batch.number,
                            hosts={r.host: r.state for r in results})

    def _flush(self) -> None:
        with self._lock:
            streams = list(self.streams.values())
        for stream in streams:
            stream.flush()
