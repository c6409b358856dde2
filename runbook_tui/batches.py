"""Rolling execution over many hosts: batch planning (``serial``) and the fan-out runner.

Planning is pure: :func:`plan_batches` turns ``serial=1,25%,100%`` and a host list into batches
with Ansible's ``serial`` semantics, so a team's habits carry over:

- a number is that many hosts; a percentage is that share **of all the hosts of the step** (not
  of the ones left), rounded **down**, and never less than one host;
- the list is used in order and its **last value repeats** until every host has a batch;
- a batch larger than what is left takes what is left; no ``serial`` means one batch of all.

So ``1,25%,100%`` over 20 hosts is 1, 5, 14; over 3 hosts 1, 1 (25% of 3 rounds down to 0,
hence 1), 1; ``2`` over 5 hosts is 2, 2, 1.

:func:`run_on_hosts` runs one command on the hosts, batch after batch, at most ``parallel`` at
once within a batch, through any target that makes :class:`runbook_tui.process.Process` objects
(an SSH pool in practice), and stops before the next batch once more than ``max_fail`` hosts
failed. It never imports the engine: the engine gives it a ``start`` function and callbacks and
records what they report (per-host events, batch start and end), and asks the operator between
batches through ``before_batch``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from runbook_tui.process import GRACE, ExitStatus, Process

__all__ = [
    "Batch",
    "BatchSizeError",
    "FanoutCallbacks",
    "HostResult",
    "RemoteStart",
    "batch_size",
    "describe_batches",
    "parse_serial",
    "plan_batches",
    "run_on_hosts",
]

# How often run_on_hosts looks at its running hosts (Process only offers wait(timeout)); a host's
# end is noticed at most this late, which is nothing next to an SSH round trip.
POLL = 0.02
_SIZE = re.compile(r"(\d+)(%?)\Z")

HostState = Literal["ok", "failed", "skipped"]
# Why a host of a resumed fan-out is not run again (its host.skipped event says so).
FINISHED_BEFORE = "finished ok in the interrupted run; not run again"


class BatchSizeError(ValueError):
    """A ``serial`` value that is not a batch size (``3``, ``25%``)."""


def parse_serial(value: object) -> tuple[str, ...]:
    """``"1,25%,100%"``, ``[1, "25%"]`` or ``3`` -> ``("1", "25%", "100%")``, validated.

    A size is a whole number of hosts (at least 1) or a percentage from 1% to 100%.
    """
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    sizes: list[str] = []
    for item in items:
        text = str(item).strip()
        match = _SIZE.match(text)
        if match is None:
            raise BatchSizeError(f"serial: expected batch sizes such as 1,25%,100%, got {text!r}")
        number, percent = int(match.group(1)), match.group(2)
        if number < 1 or (percent and number > 100):
            raise BatchSizeError(f"serial: {text} is not a batch size (a number of hosts from 1, or 1% to 100%)")
        sizes.append(f"{number}{percent}")
    if not sizes:
        raise BatchSizeError("serial: expected at least one batch size, such as 1,25%,100%")
    return tuple(sizes)


def batch_size(size: str, total: int) -> int:
    """Hosts in a batch of ``size`` when the step has ``total`` hosts (before capping to what is left)."""
    if size.endswith("%"):
        return max(1, int(size[:-1]) * total // 100)
    return int(size)


@dataclass(frozen=True)
class Batch:
    """One batch: its 1-based number and its hosts, in the step's order."""

    number: int
    hosts: tuple[str, ...]


def plan_batches(hosts: Sequence[str], serial: Sequence[str] | None = None) -> tuple[Batch, ...]:
    """The batches ``serial`` makes of ``hosts`` (see the module docstring for the rules)."""
    total = len(hosts)
    sizes = list(serial or ()) or [str(total or 1)]
    batches: list[Batch] = []
    start = 0
    while start < total:
        size = batch_size(sizes[min(len(batches), len(sizes) - 1)], total)
        batches.append(Batch(len(batches) + 1, tuple(hosts[start:start + size])))
        start += size
    return tuple(batches)


def describe_batches(batches: Sequence[Batch], *, max_hosts: int = 8, total: int | None = None) -> list[str]:
    """One line per batch for `plan`, noop and the confirmation: `batch 2/3 (5 hosts): a, b, ...`.

    `total`: how many batches the plan has, when `batches` is only the rest of it.
    """
    lines = []
    for batch in batches:
        names = list(batch.hosts[:max_hosts])
        if len(batch.hosts) > max_hosts:
            names.append(f"... {len(batch.hosts) - max_hosts} more")
        count = f"{len(batch.hosts)} host{'s' if len(batch.hosts) != 1 else ''}"
        lines.append(f"batch {batch.number}/{total or len(batches)} ({count}): {', '.join(names)}")
    return lines


@dataclass(frozen=True)
class HostResult:
    """How one host's command ended (``status`` None when it never started)."""

    host: str
    batch: int
    state: HostState
    status: ExitStatus | None = None
    reason: str | None = None  # why it failed without an exit code, or why it was skipped
    finished_before: bool = False  # ok in an earlier run of this task (a resumed run): not run again

    @property
    def exit_code(self) -> int | None:
        return None if self.status is None else self.status.exit_code

    @property
    def duration(self) -> float | None:
        return None if self.status is None else self.status.duration


class RemoteStart(Protocol):
    """Starts the command on one host: ``start(host, on_output, on_started) -> Process``.

    ``on_started(facts)`` is called by the target once the command runs (facts: address, user,
    host key fingerprint...). The process may carry ``error`` (a reason it failed without an exit
    status), as :class:`runbook_tui.integrations.ssh.RemoteProcess` does.
    """

    def __call__(self, host: str, on_output: Callable[[str], None],
                 on_started: Callable[[Mapping[str, object]], None]) -> Process: ...


@dataclass
class _Running:
    host: str
    process: Process
    deadline: float | None


@dataclass
class FanoutCallbacks:
    """What the engine hears from :func:`run_on_hosts`; every callback is optional.

    ``output`` and ``started`` may be called from the target's own thread (the SSH pool's loop);
    the others from the thread that called run_on_hosts. ``before_batch(batch, remaining)``
    returning False stops the run there (the operator declined that batch): its hosts and the
    rest are skipped. ``tick()`` is called about every :data:`POLL` seconds while hosts run,
    on the calling thread, as ``supervise`` calls its tick (the engine flushes output there).
    """

    started: Callable[[str, Mapping[str, object]], None] | None = None
    output: Callable[[str, str], None] | None = None
    finished: Callable[[HostResult], None] | None = None
    before_batch: Callable[[Batch, Sequence[Batch]], bool] | None = None
    batch_finished: Callable[[Batch, Sequence[HostResult]], None] | None = None
    tick: Callable[[], None] | None = None


def run_on_hosts(hosts: Sequence[str], start: RemoteStart, *, serial: Sequence[str] | None = None,
                 max_fail: int = 0, parallel: int | None = None, timeout: float | None = None,
                 grace: float = GRACE, should_abort: Callable[[], bool] | None = None,
                 callbacks: FanoutCallbacks | None = None, done: Collection[str] = ()) -> list[HostResult]:
    """Run a command on ``hosts`` in batches; one :class:`HostResult` per host, in host order.

    Within a batch at most ``parallel`` hosts run at once (default: the whole batch). A host
    fails on a non-zero exit, a signal, a timeout or a target error. After a batch, when more
    than ``max_fail`` hosts have failed so far, the remaining batches are skipped. ``timeout``
    is per host; ``should_abort()`` (polled) aborts every running host and skips the rest.

    ``done``: hosts where the command already finished ok (the interrupted run a resume goes
    on). The batches are still planned over every host, so a canary that passed is not
    replaced by a new one; ``done`` hosts are reported ok (``finished_before``) without
    running, each batch covers only its other hosts, and a batch left empty is not run.
    """
    cb = callbacks or FanoutCallbacks()
    if parallel is not None and parallel < 1:
        raise ValueError("parallel must be at least 1")
    results: dict[str, HostResult] = {}
    batches = []
    for planned in plan_batches(hosts, serial):
        for host in planned.hosts:
            if host in done:
                results[host] = _report(HostResult(host, planned.number, "ok", reason=FINISHED_BEFORE,
                                                   finished_before=True), cb)
        remaining = tuple(host for host in planned.hosts if host not in done)
        if remaining:
            batches.append(Batch(planned.number, remaining))
    failed = 0
    stop_reason: str | None = None
    for index, batch in enumerate(batches):
        if stop_reason is None and cb.before_batch is not None and not cb.before_batch(batch, batches[index + 1:]):
            stop_reason = f"batch {batch.number} was not confirmed"
        if stop_reason is not None:
            for host in batch.hosts:
                results[host] = _skip(host, batch, stop_reason, cb)
            continue
        batch_results, aborted = _run_batch(batch, start, parallel or len(batch.hosts), timeout, grace,
                                            should_abort, cb)
        results.update((r.host, r) for r in batch_results)
        failed += sum(r.state == "failed" for r in batch_results)
        if cb.batch_finished is not None:
            cb.batch_finished(batch, batch_results)
        if aborted:
            stop_reason = "the run was aborted"
        elif failed > max_fail and index + 1 < len(batches):
            stop_reason = f"{failed} host{'s' if failed != 1 else ''} failed, more than max_fail={max_fail}"
    return [results[host] for host in hosts]


def _skip(host: str, batch: Batch, reason: str, cb: FanoutCallbacks) -> HostResult:
    return _report(HostResult(host, batch.number, "skipped", reason=reason), cb)


def _report(result: HostResult, cb: FanoutCallbacks) -> HostResult:
    if cb.finished is not None:
        cb.finished(result)
    return result


def _run_batch(batch: Batch, start: RemoteStart, parallel: int, timeout: float | None, grace: float,
               should_abort: Callable[[], bool] | None, cb: FanoutCallbacks) -> tuple[list[HostResult], bool]:
    pending = list(batch.hosts)
    running: list[_Running] = []
    results: dict[str, HostResult] = {}
    aborted = False

    def finish(host: str, status: ExitStatus, error: str | None) -> None:
        ok = error is None and status.exit_code == 0 and not status.timed_out
        reason = error or ("timed out" if status.timed_out else None)
        results[host] = HostResult(host, batch.number, "ok" if ok else "failed", status, reason)
        if cb.finished is not None:
            cb.finished(results[host])

    try:
        while pending or running:
            if not aborted and should_abort is not None and should_abort():
                aborted = True
                _abort_all(running, grace)
                for host in pending:
                    results[host] = _skip(host, batch, "the run was aborted", cb)
                pending = []
            while pending and len(running) < parallel:
                host = pending.pop(0)
                running.append(_start(host, start, timeout, cb))
            if running and all(item.process.wait(0) is None for item in running):
                time.sleep(POLL)
            if cb.tick is not None:
                cb.tick()
            now = time.monotonic()
            for item in list(running):
                status = item.process.wait(0)
                if status is None and item.deadline is not None and now >= item.deadline:
                    item.process.abort(grace)
                    status = item.process.wait()
                    assert status is not None
                    status = ExitStatus(status.exit_code, status.signal, status.duration, timed_out=True)
                if status is not None:
                    running.remove(item)
                    finish(item.host, status, getattr(item.process, "error", None))
    except BaseException as exc:  # a failure of ours (a host's output sink, a callback): no host runs on unseen
        _abort_all(running, grace)
        for item in running:  # and each one's end is on the record, as far as the record still takes it
            with contextlib.suppress(Exception):
                _report(HostResult(item.host, batch.number, "failed", reason=f"stopped: {exc}"), cb)
        raise
    return [results[host] for host in batch.hosts], aborted


def _start(host: str, start: RemoteStart, timeout: float | None, cb: FanoutCallbacks) -> _Running:
    def on_output(text: str) -> None:
        if cb.output is not None:
            cb.output(host, text)

    def on_started(facts: Mapping[str, object]) -> None:
        if cb.started is not None:
            cb.started(host, facts)

    process = start(host, on_output, on_started)
    return _Running(host, process, None if timeout is None else time.monotonic() + timeout)


def _abort_all(running: Sequence[_Running], grace: float) -> None:
    """Abort every running host at once (each abort may take up to a few ``grace``s)."""
    threads = [threading.Thread(target=item.process.abort, args=(grace,), daemon=True) for item in running]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
