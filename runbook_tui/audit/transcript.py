"""The audit transcript: one append-only, hash-chained JSON Lines file per run.

Every event is `{"seq", "ts", "type", **fields, "prev"}` plus `hash`, the SHA-256 of
`canonical(event without "hash")`; `prev` is the previous event's hash ("0" * 64 for the first),
so editing, deleting, inserting or reordering a line breaks the chain at that line.

Line layout: a line is `canonical(event without "hash")` with its closing `}` replaced by
`,"hash":"<64 hex>"}` and a newline. The line minus that fixed-size suffix, plus `}`, is exactly
the hashed text. The line is still an ordinary JSON object, so any JSON tool reads it.

`verify` accepts a line only when its bytes are exactly what the writer produces for the event
they parse to: re-formatted, re-ordered or re-escaped lines, duplicate keys (which JSON readers
resolve differently) and non-JSON lines carrying a self-computed hash are all refused, so what
was hashed is what every reader sees. Parsing and re-serialising each line with json's C
accelerators runs at about 50-60 MB/s per CPU on small events, so a large file is split among
the CPUs (forked processes, each checking its part, the parent linking the parts).

What a hash chain cannot tell: whoever can write the file can rewrite it and recompute every
hash, or cut its tail. `verify` says so; a signature (`audit.signing`) or checkpoints held by a
collector (`audit.checkpoints`) are what detect that, and `VerifyResult.last_hash` is the value
they anchor.

Transcripts are created 0600, and directories we create for them 0700: a run's record names
hosts, commands and output that other local users have no business reading.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import json.encoder
import json.scanner
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Iterator, Protocol, cast

import platformdirs

GENESIS = "0" * 64
RESERVED = frozenset({"seq", "ts", "type", "prev", "hash"})
# The events that end a run; a transcript whose last event is one of them is "sealed".
SEALS = frozenset({"run.finished", "run.aborted"})

_HASH_KEY = b',"hash":"'
_SUFFIX_LEN = len(_HASH_KEY) + 64 + len(b'"}\n')
_FOLLOW_POLL = 0.1  # seconds between looks at a followed file: live enough for a second responder
_PRIVATE_FILE, _PRIVATE_DIR = 0o600, 0o700
# verify splits a file this large among processes: below it, starting them costs more than it saves.
_PARALLEL_MIN_SIZE = 32 << 20
_MAX_PARTS = 4  # verify is CPU-bound; more parts than this mostly contend for the disk

# json's C scanner and encoder, called directly: `json.loads`/`json.dumps` wrap them in Python
# calls (and `dumps` builds a new encoder per call) that cost verify a third of its speed on
# small events. `canonical` uses the same encoder, so writer and checker cannot drift apart.
_scan = json.scanner.make_scanner(json.JSONDecoder())
if json.encoder.c_make_encoder is not None:
    _encode = json.encoder.c_make_encoder(
        None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )

    def _canonical_text(obj: Any) -> str:
        return "".join(_encode(obj, 0))

else:  # pragma: no cover - a Python without the _json accelerator
    _canonical_text = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


class TranscriptError(Exception):
    """The transcript cannot be written or read as a chain; the run must not go on silently."""


def canonical(obj: Any) -> bytes:
    """The exact bytes that are hashed: sorted keys, no spaces, UTF-8.

    A string Python decoded with surrogateescape (a non-UTF-8 file name, argument or working
    directory) keeps its undecodable bytes as `\\udcXX` JSON escapes, so it is recorded, not lost.
    """
    return _canonical_text(obj).encode(errors="backslashreplace")


def utc_timestamp() -> str:
    """Now as UTC ISO-8601 with microseconds and a `Z`, the `ts` of every event."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(ts: str) -> datetime:
    """An event's `ts` back as an aware datetime (exports compute durations from it)."""
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def _seal(event: dict[str, Any]) -> tuple[bytes, str]:
    """The line to write for `event` (which has no `hash` yet) and its hash."""
    body = canonical(event)
    digest = hashlib.sha256(body).hexdigest()
    return body[:-1] + _HASH_KEY + digest.encode() + b'"}\n', digest


class ChainWatcher(Protocol):
    """Told about every event once it is on disk (e.g. `audit.checkpoints.Checkpointer`).

    `written` is called with the transcript's lock held, in chain order, so it must only note
    the event and return (never block, never append). `close` runs before the file closes.
    """

    def attach(self, transcript: Transcript) -> None: ...

    def written(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Transcript:
    """Appends events to one transcript file; each line is on disk before `append` returns.

    Thread-safe. Holds an exclusive `flock` on the file so two runs cannot interleave
    their chains (a read-only `follow`/`verify` needs no lock).
    """

    def __init__(self, path: Path, file: IO[bytes], seq: int, prev: str, sealed: bool = False,
                 watcher: ChainWatcher | None = None) -> None:
        self.path = path
        self._file = file
        self._seq = seq
        self._prev = prev
        self._sealed = sealed
        self._size = file.seek(0, os.SEEK_END)
        self._lock = threading.Lock()
        self._broken = ""  # why this transcript refuses further writes ("" while it is usable)
        self._watcher = watcher
        if watcher is not None:
            watcher.attach(self)

    @classmethod
    def create(cls, path: str | os.PathLike[str], checkpoints: ChainWatcher | None = None) -> Transcript:
        """Start a new chain in a new file (never overwrites one), 0600 in a 0700 directory."""
        path = Path(path)
        try:
            make_private_dirs(path.parent)
            if path.parent == default_transcript_dir():  # made 0755 by a version before this rule
                os.chmod(path.parent, _PRIVATE_DIR)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _PRIVATE_FILE)
            file = open(fd, "wb", buffering=0)
        except OSError as exc:
            raise TranscriptError(f"cannot create transcript {path}: {exc.strerror or exc}") from exc
        _lock_file(file, path)
        try:
            _fsync_dir(path.parent)  # else a crash could lose the file, not just its last line
        except OSError as exc:
            file.close()
            raise TranscriptError(f"cannot create transcript {path}: {exc.strerror or exc}") from exc
        return cls(path, file, 0, GENESIS, watcher=checkpoints)

    @classmethod
    def open_append(cls, path: str | os.PathLike[str], checkpoints: ChainWatcher | None = None) -> Transcript:
        """Continue the chain of an existing file (resume); a torn last line is cut off first."""
        path = Path(path)
        try:
            file = open(path, "r+b", buffering=0)
        except OSError as exc:
            raise TranscriptError(f"cannot open transcript {path}: {exc.strerror or exc}") from exc
        try:
            _lock_file(file, path)
            seq, prev, last_type = _repair_tail(file, path)
        except BaseException:
            file.close()
            raise
        return cls(path, file, seq, prev, sealed=last_type in SEALS, watcher=checkpoints)

    def append(self, type: str, **fields: Any) -> dict[str, Any]:
        """Write one event durably and return it (with `hash`); raise TranscriptError on failure."""
        return cast(dict[str, Any], self._append(type, fields))

    def append_unless_sealed(self, type: str, **fields: Any) -> dict[str, Any] | None:
        """`append`, unless the last event ended the run (a late note must not unseal it)."""
        return self._append(type, fields, unless_sealed=True)

    def _append(self, type: str, fields: dict[str, Any], unless_sealed: bool = False) -> dict[str, Any] | None:
        clash = RESERVED.intersection(fields)
        if clash:
            raise ValueError(f"reserved event keys: {sorted(clash)}")
        with self._lock:
            if self._broken:
                raise TranscriptError(self._broken)
            if unless_sealed and self._sealed:
                return None
            event = {"seq": self._seq, "ts": utc_timestamp(), "type": type, **fields, "prev": self._prev}
            line, digest = _seal(event)
            try:
                _write_all(self._file, line)
                os.fsync(self._file.fileno())
            except BaseException as exc:  # also a signal mid-write: the line is not part of the chain
                self._undo_partial_write(exc)
                if isinstance(exc, (OSError, ValueError)):
                    raise TranscriptError(f"cannot write to transcript {self.path}: {exc}") from exc
                raise
            self._size += len(line)
            self._seq += 1
            self._prev = digest
            self._sealed = type in SEALS
            event["hash"] = digest
            if self._watcher is not None:
                self._watcher.written(event)
        return event

    def _undo_partial_write(self, exc: BaseException) -> None:
        """Cut a half-written line so the chain stays valid; if that fails, refuse further writes."""
        try:
            os.ftruncate(self._file.fileno(), self._size)
            self._file.seek(self._size)
        except (OSError, ValueError):
            self._broken = f"transcript {self.path} is unusable after a failed write: {exc}"

    @property
    def last_hash(self) -> str:
        return self._prev

    def close(self) -> None:
        """Let the watcher finish (e.g. send the last checkpoint), then close the file."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()
        with self._lock:
            self._file.close()

    def __enter__(self) -> Transcript:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents 0700 (existing ones are left as they are)."""
    missing = []
    while not directory.exists():  # ends at the root at the latest
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        created.mkdir(exist_ok=True)  # another run may make it meanwhile
        os.chmod(created, _PRIVATE_DIR)  # empty until now, so nothing could be read meanwhile


def _lock_file(file: IO[bytes], path: Path) -> None:
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        file.close()
        raise TranscriptError(f"transcript {path} is being written by another run") from exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(file: IO[bytes], data: bytes) -> None:
    """Unbuffered writes may be partial; loop until every byte is handed to the OS."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(f"short write ({len(view)} bytes left)")
        view = view[written:]


def _repair_tail(file: IO[bytes], path: Path) -> tuple[int, str, str | None]:
    """Next seq, last hash and last event type of the chain in `file`, after dropping a torn line.

    The last event must be one `verify` would accept, so a resumed run never extends a forgery.
    """
    start, last_start = _last_line_starts(file, os.fstat(file.fileno()).st_size)
    file.seek(start)
    tail = file.read()
    if tail:
        if _written_event(tail + b"\n") is not None:
            _write_all(file, b"\n")  # complete but for its newline: keep the event
            last_start = start
        elif _parses(tail):
            raise TranscriptError(f"{path}: the last line is not a valid event; run `transcript verify`")
        else:
            os.ftruncate(file.fileno(), start)
    file.seek(last_start)
    last = file.read()
    if not last:
        return 0, GENESIS, None
    event = _written_event(last)
    if event is None:
        raise TranscriptError(f"{path}: the last event is not as it was written; run `transcript verify`")
    return event["seq"] + 1, event["hash"], event["type"]


def _last_line_starts(file: IO[bytes], end: int) -> tuple[int, int]:
    """Offsets of the text after the last newline, and of the last complete line (read backwards
    in 64 KiB steps until two newlines are in view, so a long transcript is not read whole)."""
    buf = b""
    pos = end
    while pos and buf.count(b"\n") < 2:
        step = min(1 << 16, pos)
        pos -= step
        file.seek(pos)
        buf = file.read(step) + buf
    last_nl = buf.rfind(b"\n")
    before = buf[:max(last_nl, 0)].rfind(b"\n")
    return pos + last_nl + 1, pos + before + 1


def _parses(data: bytes) -> bool:
    try:
        json.loads(data.decode())
    except (ValueError, RecursionError):
        return False
    return True


def read_events(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Stream the events of a transcript (no verification; a torn last line is skipped)."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            if line.endswith(b"\n") or _parses(line):
                yield _load(line, path, number)


def follow(path: str | os.PathLike[str], stop: threading.Event) -> Iterator[dict[str, Any]]:
    """Yield every event of a transcript, then new ones as a live run appends them, until `stop`.

    Waits for the file to appear. Only newline-terminated lines are read, each poll starting
    again after the last of them, so a torn line that `open_append` cuts off is never seen.
    """
    path = Path(path)
    while not path.exists():
        if stop.wait(_FOLLOW_POLL):
            return
    offset = number = 0
    with open(path, "rb") as file:
        while not stop.is_set():
            file.seek(offset)
            for line in file:
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
                number += 1
                yield _load(line, path, number)
                if stop.is_set():
                    return
            stop.wait(_FOLLOW_POLL)


def _load(line: bytes, path: str | os.PathLike[str], number: int) -> dict[str, Any]:
    """One event: a UTF-8 JSON object, or TranscriptError (never another exception)."""
    try:
        event = json.loads(line.decode())
    except (ValueError, RecursionError) as exc:
        raise TranscriptError(f"{path}:{number}: not a JSON event: {exc}") from None
    if not isinstance(event, dict):
        raise TranscriptError(f"{path}:{number}: not an event (a JSON {type(event).__name__})")
    return event


@dataclass(frozen=True)
class VerifyResult:
    """What `verify` found about the chain alone.

    `first_bad_line` is 1-based; `last_hash` is the head a signature or a checkpoint anchors;
    `sealed` says the last event ends the run (`run.finished` / `run.aborted`), which a chain
    cannot prove complete: only a signature or a checkpoint of that head can.
    """

    ok: bool
    events: int
    first_bad_line: int | None
    reason: str
    torn_tail: bool
    last_hash: str
    sealed: bool = False
    run_id: str | None = None


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Check the whole chain, streaming; report the first line that does not follow from the last.

    A line counts only if it is byte for byte what `Transcript.append` writes for its event,
    and its `seq` and `prev` continue the chain. An empty file is not a transcript. A large
    file is checked in parallel when that is safe; anything wrong sends it to the serial check,
    which alone writes the reasons.
    """
    return _verify_in_parallel(path) or _verify_serially(path)


def _verify_serially(path: str | os.PathLike[str]) -> VerifyResult:
    seq, prev, last_type, run_id = 0, GENESIS, None, None
    with open(path, "rb", buffering=1 << 20) as file:
        for number, line in enumerate(file, 1):
            event = _written_event(line if line.endswith(b"\n") else line + b"\n")
            if event is None or event.get("prev") != prev or event.get("seq") != seq or type(event["seq"]) is not int:
                problem = _diagnose(line, seq, prev)
                if problem == "torn" and seq:
                    reason = f"chain intact: {seq} events; line {number} is torn (a crash cut it short)"
                    return VerifyResult(True, seq, None, reason, True, prev, last_type in SEALS, run_id)
                if problem == "torn":
                    problem = "no complete event (the only line is cut short)"
                return VerifyResult(False, seq, number, f"line {number}: {problem}", False, prev, False, run_id)
            if not seq:
                run_id = event.get("run_id") if isinstance(event.get("run_id"), str) else None
            last_type = event["type"]
            seq, prev = seq + 1, event["hash"]
    if not seq:
        return VerifyResult(False, 0, 1, "line 1: no events (an empty file records no run)", False, GENESIS)
    return VerifyResult(True, seq, None, f"chain intact: {seq} events", False, prev, last_type in SEALS, run_id)


@dataclass(frozen=True)
class _Span:
    """What one process found in its part of the file, for the parent to link to the others."""

    events: int
    first_seq: int
    first_prev: str
    last_hash: str
    last_type: str
    run_id: str | None


def _verify_in_parallel(path: str | os.PathLike[str]) -> VerifyResult | None:
    """The chain checked by one process per CPU over equal parts of a large file, or None.

    None (check serially) for a small file, one CPU, a process with threads (a forked child
    would inherit locks they hold), or any part that is not a clean run of written events.
    """
    size = os.path.getsize(path)
    parts = min(len(os.sched_getaffinity(0)), _MAX_PARTS)
    if size < _PARALLEL_MIN_SIZE or parts < 2 or threading.active_count() > 1:
        return None
    with open(path, "rb") as file:
        starts = [0]
        for part in range(1, parts):
            file.seek(size * part // parts)
            file.readline()  # to the start of the next line
            starts.append(max(file.tell(), starts[-1]))
    bounds = list(zip(starts, [*starts[1:], size]))
    children = [_fork_span(path, start, end) for start, end in bounds[1:]]
    spans = [_check_span(path, *bounds[0]), *(_collect(pid, fd) for pid, fd in children)]
    seq, prev = 0, GENESIS
    for span in spans:
        if span is None or span.first_seq != seq or span.first_prev != prev:
            return None
        seq, prev = seq + span.events, span.last_hash
    return VerifyResult(True, seq, None, f"chain intact: {seq} events", False, prev, spans[-1].last_type in SEALS,
                        spans[0].run_id)


def _fork_span(path: str | os.PathLike[str], start: int, end: int) -> tuple[int, int]:
    """A child process that checks [start, end) and writes its `_Span` (JSON) to a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            os.close(read_end)
            span = _check_span(path, start, end)
            if span is not None:
                os.write(write_end, json.dumps(span.__dict__).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, read_end: int) -> _Span | None:
    """The child's `_Span`; None when its part was not clean or the child did not end well."""
    with open(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    return _Span(**json.loads(data)) if data and status == 0 else None


def _check_span(path: str | os.PathLike[str], start: int, end: int) -> _Span | None:
    """The events in bytes [start, end) if each is as written and follows the one before it."""
    count, first, prev, last = 0, None, "", None
    with open(path, "rb", buffering=1 << 20) as file:
        file.seek(start)
        position = start
        while position < end:
            line = file.readline()
            position += len(line)
            event = _written_event(line)
            if event is None or type(event["seq"]) is not int or (first and (event["prev"] != prev or
                                                                            event["seq"] != first["seq"] + count)):
                return None
            first, last = first or event, event
            prev, count = event["hash"], count + 1
    if first is None or last is None:
        return None
    run_id = first.get("run_id") if isinstance(first.get("run_id"), str) else None
    return _Span(count, first["seq"], first.get("prev"), last["hash"], last["type"], run_id)


def _written_event(line: bytes) -> dict[str, Any] | None:
    """The event on `line` if the line is exactly what `_seal` writes for it, else None."""
    try:
        text = line.decode()
        event, _ = _scan(text, 0)
    except (ValueError, StopIteration, RecursionError):
        return None
    if type(event) is not dict:
        return None
    digest = event.pop("hash", None)
    if type(digest) is not str or not isinstance(event.get("type"), str) or not isinstance(event.get("ts"), str):
        return None
    try:
        body = _canonical_text(event)
    except (ValueError, RecursionError):
        return None
    if _writer_bytes(body, digest) != line:
        return None
    hasher = hashlib.sha256(memoryview(line)[:-_SUFFIX_LEN])
    hasher.update(b"}")
    if hasher.hexdigest() != digest:
        return None
    event["hash"] = digest
    return event


def _writer_bytes(body: str, digest: str) -> bytes:
    """The bytes `_seal` writes for a canonical body: a lone surrogate becomes a `\\udcXX` escape."""
    return body.encode(errors="backslashreplace")[:-1] + _HASH_KEY + digest.encode() + b'"}\n'


def _diagnose(line: bytes, seq: int, prev: str) -> str:
    """Why `line` does not continue the chain: "torn" for a crash-cut last line, else a reason."""
    whole = line if line.endswith(b"\n") else line + b"\n"
    try:
        event = json.loads(line.decode(), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        return f"duplicate key {exc.args[0]!r} (JSON readers disagree on which value counts; the writer never repeats one)"
    except (ValueError, RecursionError):
        return "torn" if whole is not line else "not valid JSON (edited or truncated)"
    if not isinstance(event, dict) or not isinstance(event.get("hash"), str):
        return "not an event (no hash)"
    stored = event.pop("hash")
    content_hash = hashlib.sha256(canonical(event)).hexdigest()
    if _writer_bytes(_canonical_text(event), stored) != whole:
        if content_hash == stored:
            return "not the bytes the writer wrote (spacing, key order or escapes changed; the content is the same)"
        if hashlib.sha256(whole[:-_SUFFIX_LEN] + b"}").hexdigest() == stored:
            return "not in the writer's canonical form, with a hash computed over its own bytes (forged)"
        return "content does not match its hash (the line was edited)"
    if content_hash != stored:
        return "content does not match its hash (the line was edited)"
    if not isinstance(event.get("type"), str) or not isinstance(event.get("ts"), str):
        return "not an event (no type or ts)"
    if event.get("prev") != prev:
        return "prev does not match the previous line's hash (a line was deleted, inserted or moved)"
    return f"seq is {event.get('seq')!r}, expected {seq} (a line was deleted, inserted or moved)"


class _DuplicateKey(ValueError):
    """A JSON object repeats this key (`args[0]`)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a repeated key (which `json` would silently resolve)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [key for key, _ in pairs]
        raise _DuplicateKey(next(key for key in keys if keys.count(key) > 1))
    return obj


def guarantee(signed: bool, checkpointed: bool) -> str:
    """What a transcript that passed `verify` proves, given which anchors were checked and held.

    The README ("What verify proves") states the same four cases.
    """
    if signed and checkpointed:
        return ("proves: the file is byte for byte what the signer's key signed, and every event is the one the "
                "run sent to the collector while it ran (nothing cut, rewritten or re-sealed since)")
    if signed:
        return ("proves: the file is byte for byte what the signer's key signed at the end of the run; it cannot "
                "show changes made on that machine before the signature (add --checkpoints for that)")
    if checkpointed:
        return ("proves: every event, up to the seal, is the one the run sent to the collector while it ran; "
                "it does not say who ran it (add --allowed-signers for that)")
    return ("proves only that the file is self-consistent: unsigned and without checkpoints, anyone with write "
            "access could have rewritten it (hashes recomputed) or cut its end; check --allowed-signers or "
            "--checkpoints to tell")


def default_transcript_dir() -> Path:
    return Path(platformdirs.user_state_dir("runbook-tui")) / "transcripts"


def new_transcript_path(runbook_title_or_stem: str) -> Path:
    """A fresh, sortable file name: `20250101T120000Z-<slug>-<random>.jsonl`."""
    slug = re.sub(r"[^a-z0-9]+", "-", runbook_title_or_stem.lower()).strip("-")[:48].strip("-")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return default_transcript_dir() / f"{stamp}-{slug or 'run'}-{secrets.token_hex(3)}.jsonl"
