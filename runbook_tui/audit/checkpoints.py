"""Checkpoints off the machine: the chain head, sent during a run to a syslog collector.

A hash chain cannot show that its end was cut off or that the whole file was rewritten with
fresh hashes. A collector the operator's commands cannot rewrite (rsyslog, or whatever a
company already runs) can: while the run goes on, `Checkpointer` sends the head of the chain
(run id, sequence number, hash; never content) when the run starts, after each task and at
the end, and at least every `interval` seconds while events arrive. A checkpoint of event N
vouches for events 0..N, since each hash covers the one before. `verify_checkpoints` compares a
transcript with the collector's log and names the first event that disagrees or is missing.

Wire format: RFC 5424 messages over TCP with octet-counting framing (RFC 6587), facility
`log audit` (13), severity informational, MSGID `checkpoint`, and the head in structured data:

    <110>1 2026-01-01T10:00:00.000000Z web-01 runbook-tui 4242 checkpoint
        [runbook-tui@32473 run="r-1" seq="12" hash="ab12..."] runbook-tui checkpoint run=r-1 seq=12 hash=ab12...

The message text repeats the head, for collectors that keep only the text. The sender never
blocks the run: it keeps only the latest pending head (a later checkpoint covers every earlier
event, so the queue is bounded at one), sends from a daemon thread, and when the collector is
unreachable records a `checkpoint.gap` event in the transcript and carries on. TCP syslog has no
acknowledgements: a message sent just before the collector dies can be lost unnoticed, which
`verify_checkpoints` then reports as an unanchored tail.
"""

from __future__ import annotations

import os
import re
import select
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from runbook_tui.audit.transcript import Transcript, TranscriptError, read_events, utc_timestamp, verify
from runbook_tui.config import CheckpointSettings, syslog_address

# RFC 5424 PRI: facility 13 ("log audit") * 8 + severity 6 ("informational").
PRI = 13 * 8 + 6
# The structured-data id: a private SD-ID needs an IANA enterprise number; 32473 is the one
# RFC 5612 reserves for documentation and examples, as we have none of our own.
SD_ID = "runbook-tui@32473"
APP_NAME = "runbook-tui"
MSGID = "checkpoint"
# Events after which the head goes out at once: the run exists, a task is over, the run ended.
URGENT = frozenset({"run.started", "run.resumed", "task.finished", "run.finished", "run.aborted"})
_CONNECT_TIMEOUT = 2.0  # a collector that does not answer in 2 s counts as down for this checkpoint
_CLOSE_TIMEOUT = 5.0  # the most closing a transcript waits for its last checkpoint to go out
_SD = re.compile(r"\[" + re.escape(SD_ID) + r"((?:\s+\w+=\"(?:[^\"\\\]]|\\.)*\")*)\s*\]")
_SD_PARAM = re.compile(r"(\w+)=\"((?:[^\"\\\]]|\\.)*)\"")
_TEXT = re.compile(r"runbook-tui checkpoint run=(\S+) seq=(\d+) hash=([0-9a-f]{64})\b")


@dataclass(frozen=True)
class Checkpoint:
    """One head the collector holds: `line` is its line number in the collector's log."""

    run: str
    seq: int
    hash: str
    line: int


def message(run: str, seq: int, digest: str, hostname: str, pid: int, timestamp: str) -> bytes:
    """One RFC 5424 message carrying a chain head, framed by octet counting (RFC 6587)."""
    params = " ".join(f'{name}="{_sd_escape(value)}"' for name, value in (("run", run), ("seq", str(seq)),
                                                                          ("hash", digest)))
    text = (f"<{PRI}>1 {timestamp} {hostname} {APP_NAME} {pid} {MSGID} [{SD_ID} {params}] "
            f"runbook-tui checkpoint run={run} seq={seq} hash={digest}").encode("utf-8")
    return b"%d %s" % (len(text), text)


def _sd_escape(value: str) -> str:
    """RFC 5424 6.3.3: `"`, `\\` and `]` are escaped inside a PARAM-VALUE."""
    return re.sub(r'(["\\\]])', r"\\\1", value)


def _hostname() -> str:
    """RFC 5424 HOSTNAME: printable US-ASCII, at most 255 characters, `-` when unknown."""
    name = "".join(ch for ch in socket.gethostname() if 33 <= ord(ch) <= 126)[:255]
    return name or "-"


class Checkpointer:
    """Sends the chain head of one transcript to a syslog collector (a `ChainWatcher`).

    Attach it with `Transcript.create(path, checkpoints=Checkpointer(...))` (or `open_append`);
    closing the transcript sends the last head, waiting at most a few seconds.
    """

    def __init__(self, target: str, interval: float) -> None:
        self.target = target
        self._address = syslog_address(target)
        self._interval = interval
        self._cond = threading.Condition()
        self._head: tuple[int, str] | None = None
        self._urgent = self._closing = False
        self._run = "-"
        self._transcript: Transcript | None = None
        self._sock: socket.socket | None = None
        self._down = False
        self.last_sent: tuple[int, str] | None = None
        self.gaps = 0
        self._hostname, self._pid = _hostname(), os.getpid()
        self._thread = threading.Thread(target=self._loop, name="runbook-tui-checkpoints", daemon=True)

    @classmethod
    def from_settings(cls, settings: CheckpointSettings | None) -> Checkpointer | None:
        return cls(settings.syslog, settings.interval) if settings is not None else None

    def attach(self, transcript: Transcript) -> None:
        """Start sending for `transcript`; on resume the run id comes from its first event."""
        self._transcript = transcript
        try:
            first = next(read_events(transcript.path), {})
        except (OSError, TranscriptError):  # verify will say what is wrong with the file
            first = {}
        self._run = str(first.get("run_id") or "-")
        self._thread.start()

    def written(self, event: dict[str, Any]) -> None:
        with self._cond:
            if event["seq"] == 0 and event.get("run_id"):
                self._run = str(event["run_id"])
            self._head = (event["seq"], event["hash"])
            if event["type"] in URGENT:
                self._urgent = True
                self._cond.notify()

    def close(self) -> None:
        """Send the last head (bounded wait), then stop; a late failure is kept in `gaps`."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(_CLOSE_TIMEOUT)
        if self._sock is not None:
            self._sock.close()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._urgent or self._closing, timeout=self._interval)
                head, closing, self._urgent = self._head, self._closing, False
                run = self._run
            if head is not None and head != self.last_sent:
                self._send(run, head)
            if closing:
                return

    def _send(self, run: str, head: tuple[int, str]) -> None:
        frame = message(run, head[0], head[1], self._hostname, self._pid, utc_timestamp())
        try:
            if self._sock is not None and _peer_closed(self._sock):
                self._sock.close()
                self._sock = None
            if self._sock is None:
                self._sock = socket.create_connection(self._address, timeout=_CONNECT_TIMEOUT)
            self._sock.sendall(frame)
        except OSError as exc:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._record_gap(exc)
            return
        self.last_sent, self._down = head, False

    def _record_gap(self, exc: OSError) -> None:
        """Once per outage: a `checkpoint.gap` event, unless the run is already sealed."""
        self.gaps += 1
        if self._down or self._transcript is None:
            return
        self._down = True
        try:
            self._transcript.append_unless_sealed(
                "checkpoint.gap", collector=self.target, error=exc.strerror or str(exc),
                last_checkpoint_seq=self.last_sent[0] if self.last_sent else None)
        except Exception:  # noqa: BLE001 - a transcript that fails is the run's to report, not ours
            return


def _peer_closed(sock: socket.socket) -> bool:
    """True when the collector closed the connection (readable with nothing to read)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False


def read_checkpoints(log: str | os.PathLike[str]) -> Iterator[Checkpoint]:
    """The checkpoints in a collector's log file, in its order (other lines are skipped)."""
    with open(log, encoding="utf-8", errors="replace") as file:
        for number, line in enumerate(file, 1):
            found = _SD.search(line)
            if found:
                params = {key: re.sub(r"\\(.)", r"\1", value) for key, value in _SD_PARAM.findall(found[1])}
                if params.get("seq", "").isdigit() and re.fullmatch(r"[0-9a-f]{64}", params.get("hash", "")):
                    yield Checkpoint(params.get("run", "-"), int(params["seq"]), params["hash"], number)
                continue
            text = _TEXT.search(line)
            if text:
                yield Checkpoint(text[1], int(text[2]), text[3], number)


@dataclass(frozen=True)
class CheckpointCheck:
    """The transcript against the collector's log.

    `ok`: every checkpoint of the run matches the transcript (none disagrees, none is missing).
    `anchored`: the highest event seq a checkpoint vouches for; events after it could have been
    cut or rewritten unseen. `first_bad_seq` names the first event that disagrees or is missing.
    """

    ok: bool
    checkpoints: int
    anchored: int | None
    events: int
    first_bad_seq: int | None
    reason: str
    gaps: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Every event of the transcript is vouched for by a checkpoint."""
        return self.ok and self.anchored == self.events - 1


def verify_checkpoints(path: str | os.PathLike[str], log: str | os.PathLike[str]) -> CheckpointCheck:
    """Compare a transcript with the checkpoints a collector holds for its run."""
    chain = verify(path)
    if not chain.ok:
        return CheckpointCheck(False, 0, None, chain.events, chain.events, f"the chain is broken: {chain.reason}", ())
    if chain.run_id is None:
        return CheckpointCheck(False, 0, None, chain.events, 0, "the transcript names no run id to look up", ())
    held: dict[int, list[Checkpoint]] = {}
    for checkpoint in read_checkpoints(log):
        if checkpoint.run == chain.run_id:
            held.setdefault(checkpoint.seq, []).append(checkpoint)
    count = sum(map(len, held.values()))
    gaps: list[str] = []
    bad: tuple[int, str] | None = None
    anchored: int | None = None
    for event in read_events(path):
        seq = event["seq"]
        if seq >= chain.events:
            break
        if event["type"] == "checkpoint.gap":
            gaps.append(f"seq {seq}: collector {event.get('collector')} unreachable ({event.get('error')})")
        for checkpoint in held.get(seq, ()):
            if checkpoint.hash != event["hash"]:
                bad = bad or (seq, f"event seq {seq} (line {seq + 1}) disagrees with the collector's checkpoint "
                                   f"(log line {checkpoint.line}): it was rewritten at or before that event")
            elif bad is None:
                anchored = seq
    missing = [seq for seq in held if seq >= chain.events]
    if bad is None and missing:
        seq = min(missing)
        bad = (seq, f"event seq {seq} is missing: the collector holds a checkpoint for it (log line "
                    f"{held[seq][0].line}) but the transcript ends at seq {chain.events - 1} (cut off)")
    if not count:
        return CheckpointCheck(False, 0, None, chain.events, None,
                               f"the collector's log holds no checkpoint for run {chain.run_id}", tuple(gaps))
    if bad is not None:
        after = f"; the last checkpoint that agrees is at seq {anchored}" if anchored is not None else ""
        return CheckpointCheck(False, count, anchored, chain.events, bad[0], bad[1] + after, tuple(gaps))
    if anchored == chain.events - 1:
        reason = f"{count} checkpoints agree; the last vouches for every event up to the end (seq {anchored})"
    else:
        reason = (f"{count} checkpoints agree up to seq {anchored}; events {anchored + 1 if anchored is not None else 0}"
                  f"..{chain.events - 1} are not anchored (cut or rewritten there would go unseen)")
    return CheckpointCheck(True, count, anchored, chain.events, None, reason, tuple(gaps))
