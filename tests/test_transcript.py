"""The transcript chain: what it writes, what it survives (crashes, full disks) and what it catches."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.audit import transcript as transcript_module
from runbook_tui.audit.transcript import (
    GENESIS,
    Transcript,
    TranscriptError,
    canonical,
    default_transcript_dir,
    follow,
    guarantee,
    new_transcript_path,
    parse_timestamp,
    read_events,
    verify,
)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def write_run(path: Path, outputs: int = 5) -> list[dict]:
    """A small but realistic run; returns the events as `append` returned them."""
    with Transcript.create(path) as t:
        events = [
            t.append(
                "run.started",
                run_id="r-1",
                tool_version="0.1.0",
                runbook={"path": "deploy.md", "sha256": "ab" * 32, "title": "Deploy"},
                mode="paranoid",
                operator={"user": "alice", "host": "web-01", "tty": "/dev/pts/3", "git_user": None},
                git=None,
                variables={"VERSION": "1.2.3"},
                secrets=["DB_PASSWORD"],
            ),
            t.append("step.entered", step_id="1.1", title="Prepare"),
            t.append("command.started", task_id="1.1.1", step_id="1.1", command="make \"deploy\"",
                     run_command="make \"deploy\"", cwd="/srv", container=None, env_names=["VERSION"], attempt=1),
        ]
        for i in range(outputs):
            events.append(t.append("output", task_id="1.1.1", text=f"line {i} ünïcødé ✓ \"q\" \\ \x1b[32mok\x1b[0m\r\n"))
        events.append(t.append("command.finished", task_id="1.1.1", exit_code=0, signal=None, duration=0.5, timed_out=False))
        events.append(t.append("run.finished", result="success"))
    return events


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# --- what is written -------------------------------------------------------------------------


def test_events_are_chained_and_hash_their_canonical_form(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    prev = GENESIS
    for seq, (event, line) in enumerate(zip(events, lines_of(path), strict=True)):
        assert event["seq"] == seq and event["prev"] == prev and TS.match(event["ts"])
        body = {key: value for key, value in event.items() if key != "hash"}
        assert event["hash"] == hashlib.sha256(canonical(body)).hexdigest()
        assert json.loads(line) == event
        # The documented layout: canonical bytes, then the hash as the last key.
        assert line == canonical(body)[:-1] + b',"hash":"' + event["hash"].encode() + b'"}\n'
        prev = event["hash"]
    assert list(read_events(path)) == events
    result = verify(path)
    assert (result.ok, result.events, result.first_bad_line, result.torn_tail) == (True, len(events), None, False)
    assert result.last_hash == events[-1]["hash"]


def test_create_makes_parent_dirs_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "run.jsonl"
    Transcript.create(path).close()
    with pytest.raises(TranscriptError, match="cannot create"):
        Transcript.create(path)


def test_create_in_an_unwritable_place_is_a_transcript_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TranscriptError, match="cannot create"):
        Transcript.create(tmp_path / "file" / "run.jsonl")


def test_reserved_keys_are_refused(tmp_path: Path) -> None:
    with Transcript.create(tmp_path / "run.jsonl") as t:
        with pytest.raises(ValueError, match="reserved"):
            t.append("note", text="x", prev="0")


def test_append_after_close_raises(tmp_path: Path) -> None:
    t = Transcript.create(tmp_path / "run.jsonl")
    t.close()
    with pytest.raises(TranscriptError):
        t.append("note", text="late")


def test_a_failed_fsync_raises_and_leaves_the_chain_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        t.append("note", text="one")

        def no_space(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(transcript_module.os, "fsync", no_space)
        with pytest.raises(TranscriptError, match="No space left"):
            t.append("note", text="lost")
        monkeypatch.undo()
        assert t.append("note", text="two")["seq"] == 1
    assert [e["text"] for e in read_events(path)] == ["one", "two"]
    assert verify(path).ok


def test_a_full_file_system_mid_line_is_reported_and_the_half_line_removed(tmp_path: Path) -> None:
    """A real short write: RLIMIT_FSIZE makes write() stop part-way, then fail with EFBIG."""
    path = tmp_path / "run.jsonl"
    script = textwrap.dedent(
        f"""
        import resource, signal
        from runbook_tui.audit.transcript import Transcript, TranscriptError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
        t = Transcript.create({str(path)!r})
        written = 0
        try:
            while True:
                t.append("output", task_id="1", text="x" * 3000)
                written += 1
        except TranscriptError as exc:
            print(written, exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    written, message = done.stdout.split(" ", 1)
    assert int(written) == 3 and "cannot write" in message
    result = verify(path)
    assert (result.ok, result.events, result.torn_tail) == (True, 3, False)


def test_concurrent_appends_keep_one_ordered_chain(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        def worker(n: int) -> None:
            for i in range(100):
                t.append("output", task_id=str(n), text=f"{n}-{i}\n")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [e["seq"] for e in read_events(path)] == list(range(800))
    assert verify(path).ok


def test_large_output_events_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    text = "".join(chr(32 + i % 900) for i in range(256 * 1024))
    with Transcript.create(path) as t:
        t.append("output", task_id="1", text=text)
    assert next(read_events(path))["text"] == text
    assert verify(path).ok


# --- open_append: resume -----------------------------------------------------------------------


def test_open_append_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    with Transcript.open_append(path) as t:
        assert t.last_hash == events[-1]["hash"]
        resumed = t.append("runbook.opened", path="deploy.md", sha256="ab" * 32, title="Deploy")
    assert resumed["seq"] == len(events) and resumed["prev"] == events[-1]["hash"]
    assert verify(path).events == len(events) + 1


def test_open_append_on_an_empty_file_starts_at_genesis(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.touch()
    with Transcript.open_append(path) as t:
        assert t.append("note", text="x")["prev"] == GENESIS
    assert verify(path).ok


@pytest.mark.parametrize("keep", [1, 10, 40, -2])
def test_open_append_cuts_a_torn_last_line(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:keep])
    assert verify(path).torn_tail
    with Transcript.open_append(path) as t:
        event = t.append("run.aborted", reason="crash")
    assert event["seq"] == len(events) - 1 and event["prev"] == events[-2]["hash"]
    result = verify(path)
    assert (result.ok, result.events, result.torn_tail) == (True, len(events), False)


def test_open_append_keeps_a_last_line_that_lacks_only_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    path.write_bytes(path.read_bytes()[:-1])
    assert verify(path).events == len(events)
    with Transcript.open_append(path) as t:
        assert t.append("note", text="after")["prev"] == events[-1]["hash"]
    assert verify(path).events == len(events) + 1


def test_open_append_refuses_a_tampered_last_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    path.write_bytes(path.read_bytes().replace(b'"result":"success"', b'"result":"failed!"'))
    with pytest.raises(TranscriptError, match="verify"):
        Transcript.open_append(path)


def test_two_writers_cannot_share_a_transcript(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path):
        with pytest.raises(TranscriptError, match="another run"):
            Transcript.open_append(path)


# --- verify: tampering vs crashes -------------------------------------------------------------


def flip(hex_digit: bytes) -> bytes:
    return b"1" if hex_digit == b"0" else b"0"


TAMPER_CASES = [
    "edited byte", "edited hash", "deleted line", "swapped lines", "duplicated line",
    "truncated middle", "invalid JSON", "blank line", "edited last line",
]


def tamper_cases(lines: list[bytes]) -> dict[str, tuple[bytes, int]]:
    """Tampered file contents and the 1-based line verify must point at."""
    edited = lines[4].replace(b"line 1", b"line 7")
    return {
        "edited byte": (b"".join(lines[:4] + [edited] + lines[5:]), 5),
        "edited hash": (b"".join(lines[:4] + [lines[4][:-10] + flip(lines[4][-10:-9]) + lines[4][-9:]] + lines[5:]), 5),
        "deleted line": (b"".join(lines[:3] + lines[4:]), 4),
        "swapped lines": (b"".join(lines[:3] + [lines[4], lines[3]] + lines[5:]), 4),
        "duplicated line": (b"".join(lines[:4] + [lines[3]] + lines[4:]), 5),
        "truncated middle": (b"".join(lines[:3]) + lines[3][:20] + lines[5][30:] + b"".join(lines[6:]), 4),
        "invalid JSON": (b"".join(lines[:2] + [b"{not json\n"] + lines[3:]), 3),
        "blank line": (b"".join(lines[:2] + [b"\n"] + lines[2:]), 3),
        "edited last line": (b"".join(lines[:-1]) + lines[-1].replace(b"success", b"failure"), len(lines)),
    }


@pytest.mark.parametrize("case", TAMPER_CASES)
def test_verify_reports_the_first_tampered_line(tmp_path: Path, case: str) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    content, bad_line = tamper_cases(lines_of(path))[case]
    path.write_bytes(content)
    result = verify(path)
    assert not result.ok and not result.torn_tail
    assert result.first_bad_line == bad_line, result.reason
    assert result.events == bad_line - 1
    assert result.reason.startswith(f"line {bad_line}:")


def test_verify_reasons_name_the_kind_of_damage(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    cases = tamper_cases(lines_of(path))
    reasons = {}
    for case in ("edited byte", "deleted line", "invalid JSON"):
        path.write_bytes(cases[case][0])
        reasons[case] = verify(path).reason
    assert "edited" in reasons["edited byte"]
    assert "deleted" in reasons["deleted line"]
    assert "not valid JSON" in reasons["invalid JSON"]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_verify_catches_any_single_byte_change(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "run.jsonl"
    if not path.exists():
        write_run(path)
    original = path.read_bytes()
    position = data.draw(st.integers(0, len(original) - 2), label="position")  # not the final newline
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]), label="byte")
    tampered = original[:position] + bytes([byte]) + original[position + 1 :]
    line_number = original.count(b"\n", 0, position) + 1
    tmp = tmp_path / "tampered.jsonl"
    tmp.write_bytes(tampered)
    result = verify(tmp)
    assert not result.ok, (position, byte)  # even \u001b -> \u001B: not the bytes that were hashed
    assert result.first_bad_line == line_number, result.reason


def test_verify_tells_a_torn_tail_from_tampering_at_every_cut(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    lines = lines_of(path)
    head = b"".join(lines[:-1])
    for cut in range(1, len(lines[-1]) - 1):
        path.write_bytes(head + lines[-1][:cut])
        result = verify(path)
        assert (result.ok, result.torn_tail, result.events) == (True, True, len(events) - 1), cut
        assert "torn" in result.reason and result.first_bad_line is None
        assert result.last_hash == events[-2]["hash"]
        assert [e["seq"] for e in read_events(path)] == list(range(len(events) - 1))


@pytest.mark.parametrize("variant", ["spaces", "key order", "escaped unicode", "upper-case escape"])
def test_verify_refuses_the_same_content_in_other_bytes(tmp_path: Path, variant: str) -> None:
    """The hash must cover exactly what every reader sees: another spelling is not what was written."""
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    lines = lines_of(path)
    line = lines[3]
    lines[3] = {
        "spaces": line.replace(b'","', b'", "', 1),
        "key order": json.dumps(events[3], sort_keys=False, ensure_ascii=False, separators=(",", ":")).encode() + b"\n",
        "escaped unicode": line.replace("ü".encode(), b"\\u00fc"),
        "upper-case escape": line.replace(b"\\u001b", b"\\u001B"),
    }[variant]
    assert lines[3] != line and json.loads(lines[3]) == events[3]
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert (result.ok, result.first_bad_line, result.events) == (False, 4, 3)
    assert "not the bytes the writer wrote" in result.reason and "content is the same" in result.reason


@pytest.mark.parametrize("content", [b"", b'{"seq":0,"ts":"2026-01-01T'], ids=["empty", "only-a-torn-line"])
def test_a_file_without_a_complete_event_is_not_a_transcript(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(content)
    result = verify(path)
    assert (result.ok, result.events, result.first_bad_line, result.last_hash) == (False, 0, 1, GENESIS)
    assert result.reason.startswith("line 1: no")


def test_read_events_rejects_garbage_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:2] + [b"garbage\n"] + lines[2:]))
    with pytest.raises(TranscriptError, match=":3:"):
        list(read_events(path))


# --- follow: the second responder's view ------------------------------------------------------


def test_follow_yields_history_then_live_events_and_only_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    stop = threading.Event()
    seen: list[dict] = []
    arrived = threading.Condition()

    def reader() -> None:
        for event in follow(path, stop):
            with arrived:
                seen.append(event)
                arrived.notify_all()

    def wait_for(count: int) -> None:
        with arrived:
            assert arrived.wait_for(lambda: len(seen) >= count, timeout=20), seen

    thread = threading.Thread(target=reader)
    thread.start()  # before the file exists
    try:
        t = Transcript.create(path)
        t.append("note", text="first")
        wait_for(1)
        t.close()
        # A crash tears a line; the follower must not yield it, and must pick up the repair.
        with open(path, "ab") as raw:
            raw.write(b'{"seq":1,"ts":"2025-01-')
        t = Transcript.open_append(path)
        for i in range(3):
            t.append("output", task_id="1", text=f"{i}\n")
        wait_for(4)
        t.close()
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert [e["seq"] for e in seen] == [0, 1, 2, 3]
    assert [e.get("text") for e in seen] == ["first", "0\n", "1\n", "2\n"]


def test_follow_stops_while_waiting_for_the_file(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    assert list(follow(tmp_path / "never.jsonl", stop)) == []


# --- paths ------------------------------------------------------------------------------------


def test_new_transcript_paths_are_sortable_slugged_and_unique() -> None:
    first, second = new_transcript_path("Deploy web (v2)!"), new_transcript_path("Deploy web (v2)!")
    assert first != second
    assert first.parent == default_transcript_dir()
    assert default_transcript_dir().name == "transcripts" and "runbook-tui" in str(default_transcript_dir())
    assert re.fullmatch(r"\d{8}T\d{6}Z-deploy-web-v2-[0-9a-f]{6}\.jsonl", first.name)
    assert re.fullmatch(r"\d{8}T\d{6}Z-run-[0-9a-f]{6}\.jsonl", new_transcript_path("¡¿").name)


# --- golden vectors: the format pinned by bytes and digests computed outside this project --------
# Written by hand and hashed with coreutils (`printf '%s' '<body>' | sha256sum`), not with
# canonical(): sorted keys (nested too), no spaces, UTF-8 as is, json's escapes (\" \\ \n \u001b),
# a non-UTF-8 byte kept as the lone surrogate escape \udcff, `hash` appended last.

GOLDEN_HASHES = [
    "abccff437eabd7a0702fca03e81e3efc76f9a5971815a114d94b5fe2f06b1f33",
    "4aa15fb1ef85da8eec6d61bc86cd6420b2da2541fae2d7d23685bf80c91c4f86",
    "3c6e92988e202f25ba8e51fb22981346180cd67f036f7cede3bc266dc28a964e",
]
GOLDEN_BODIES = [
    b'{"operator":{"host":"h","user":"\xc3\xa5lice"},"prev":"' + GENESIS.encode()
    + b'","run_id":"golden","seq":0,"ts":"2026-01-01T00:00:00.000000Z","type":"run.started"}',
    b'{"duration":0.5,"exit_code":null,"ok":true,"prev":"' + GOLDEN_HASHES[0].encode()
    + b'","seq":1,"task_id":"1.1","text":"a\\"b\\\\c\\n\\u001b[0m\\udcff\xe2\x9c\x93",'
    b'"ts":"2026-01-01T00:00:01.000000Z","type":"output"}',
    b'{"prev":"' + GOLDEN_HASHES[1].encode()
    + b'","result":"success","seq":2,"ts":"2026-01-01T00:00:02.000000Z","type":"run.finished"}',
]
GOLDEN_LINES = [body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
                for body, digest in zip(GOLDEN_BODIES, GOLDEN_HASHES, strict=True)]


def test_golden_vectors_are_what_the_writer_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stamps = iter(f"2026-01-01T00:00:0{i}.000000Z" for i in range(3))
    monkeypatch.setattr(transcript_module, "utc_timestamp", lambda: next(stamps))
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        # keys given out of order on purpose: the canonical form sorts them, nested ones too
        t.append("run.started", run_id="golden", operator={"user": "ålice", "host": "h"})
        t.append("output", text="a\"b\\c\n\x1b[0m" + b"\xff".decode("utf-8", "surrogateescape") + "✓", task_id="1.1",
                 ok=True, exit_code=None, duration=0.5)
        t.append("run.finished", result="success")
    assert lines_of(path) == GOLDEN_LINES
    for body, digest in zip(GOLDEN_BODIES, GOLDEN_HASHES, strict=True):
        assert hashlib.sha256(body).hexdigest() == digest
    result = verify(path)
    assert (result.ok, result.events, result.last_hash, result.sealed, result.run_id) == (
        True, 3, GOLDEN_HASHES[2], True, "golden")


def test_golden_vectors_read_back_and_an_unsorted_form_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"".join(GOLDEN_LINES))
    assert verify(path).ok
    assert [e["hash"] for e in read_events(path)] == GOLDEN_HASHES
    # the same first event with its nested keys unsorted, correctly re-hashed: refused
    body = GOLDEN_BODIES[0].replace(b'{"host":"h","user":"\xc3\xa5lice"}', b'{"user":"\xc3\xa5lice","host":"h"}')
    digest = hashlib.sha256(body).hexdigest().encode()
    path.write_bytes(body[:-1] + b',"hash":"' + digest + b'"}\n')
    result = verify(path)
    assert (result.ok, result.first_bad_line) == (False, 1) and "forged" in result.reason


# --- forgeries: an attacker who can write the file and recompute hashes ------------------------

SUFFIX = len(b',"hash":"') + 64 + len(b'"}\n')


def rehash_from(lines: list[bytes], start: int) -> list[bytes]:
    """Recompute the hash of lines[start:] over their own bytes and fix each next line's prev,
    as a forger would (plain hashlib on bytes, not this project's canonical())."""
    lines = list(lines)
    for i in range(start, len(lines)):
        if i > 0:
            prev = json.loads(lines[i - 1])["hash"].encode()
            old_prev = json.loads(lines[i])["prev"].encode()
            lines[i] = lines[i].replace(b'"prev":"' + old_prev + b'"', b'"prev":"' + prev + b'"')
        head = lines[i][:-SUFFIX]
        digest = hashlib.sha256(head + b"}").hexdigest().encode()
        lines[i] = head + b',"hash":"' + digest + b'"}\n'
    return lines


def test_rewrite_and_rehash_passes_the_chain_and_verify_does_not_claim_more(tmp_path: Path) -> None:
    """Without a signature or checkpoints nothing can catch this; the chain result must not hide it."""
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    lines = lines_of(path)
    lines[-2] = lines[-2].replace(b'"exit_code":0', b'"exit_code":3')
    forged = rehash_from(lines, len(lines) - 2)
    path.write_bytes(b"".join(forged))
    result = verify(path)
    assert result.ok and result.last_hash != events[-1]["hash"]  # a different head: what anchors catch
    assert json.loads(forged[-2])["exit_code"] == 3


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_duplicate_key_is_refused_even_with_every_hash_recomputed(tmp_path: Path, where: str) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    lines = lines_of(path)
    index = {"first": 0, "middle": len(lines) - 2, "last": len(lines) - 1}[where]
    key = {"first": b'"mode":"paranoid"', "middle": b'"exit_code":0', "last": b'"result":"success"'}[where]
    duplicate = key.split(b":")[0] + b':"forged"' if where != "middle" else b'"exit_code":3'
    assert key in lines[index]
    lines[index] = lines[index].replace(key, key + b"," + duplicate)
    path.write_bytes(b"".join(rehash_from(lines, index)))
    result = verify(path)
    assert (result.ok, result.first_bad_line) == (False, index + 1), result.reason
    assert "duplicate key" in result.reason and key.split(b":")[0].decode().strip('"') in result.reason


def test_a_forged_non_json_line_with_its_own_hash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    body = b'{"prev":"%s","seq":%d,"type":"note",broken}' % (events[-1]["hash"].encode(), len(events))
    path.write_bytes(path.read_bytes() + body[:-1] + b',"hash":"' + hashlib.sha256(body).hexdigest().encode() + b'"}\n')
    result = verify(path)
    assert (result.ok, result.first_bad_line) == (False, len(events) + 1) and "not valid JSON" in result.reason


@pytest.mark.parametrize("field", ["seq", "prev"])
def test_a_wrong_seq_or_prev_is_caught_even_when_its_hash_is_recomputed(tmp_path: Path, field: str) -> None:
    """Pins both chain checks: such a line's own hash is valid, only seq/prev give it away."""
    path = tmp_path / "run.jsonl"
    write_run(path)
    lines = lines_of(path)
    prev = json.loads(lines[0])["hash"]
    other = ("1" if prev[0] == "0" else "0") + prev[1:]
    lines[1] = lines[1].replace(b'"seq":1,', b'"seq":2,') if field == "seq" else lines[1].replace(
        prev.encode(), other.encode())
    head = lines[1][:-SUFFIX]
    lines[1] = head + b',"hash":"' + hashlib.sha256(head + b"}").hexdigest().encode() + b'"}\n'
    path.write_bytes(b"".join(lines[:2]))
    result = verify(path)
    assert (result.ok, result.first_bad_line) == (False, 2), result.reason
    assert ("seq is 2, expected 1" if field == "seq" else "prev does not match") in result.reason


def test_a_boolean_seq_is_not_a_number(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    lines = lines_of(path)
    forged = rehash_from([lines[0], lines[1].replace(b'"seq":1,', b'"seq":true,')], 1)
    path.write_bytes(b"".join(forged))
    result = verify(path)
    assert (result.ok, result.first_bad_line) == (False, 2) and "seq is True" in result.reason


def test_cut_the_tail_and_cut_and_reseal_pass_the_chain_alone(tmp_path: Path) -> None:
    """What only a signature or checkpoints can catch: the chain verifies, `sealed` tells them apart."""
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:4]))
    cut = verify(path)
    assert (cut.ok, cut.events, cut.sealed) == (True, 4, False)
    resealed = lines[:4] + [lines[-1].replace(b'"seq":%d' % (len(lines) - 1), b'"seq":4')]
    path.write_bytes(b"".join(rehash_from(resealed, 4)))
    result = verify(path)
    assert (result.ok, result.events, result.sealed, result.run_id) == (True, 5, True, "r-1")
    assert result.last_hash != events[-1]["hash"]


# --- permissions and the seal ------------------------------------------------------------------


def test_transcripts_are_0600_in_directories_we_create_0700(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "deeper" / "run.jsonl"
        Transcript.create(path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new" / "deeper").stat().st_mode) == 0o700


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    Transcript.create(shared / "run.jsonl").close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "run.jsonl").stat().st_mode) == 0o600


def test_the_default_transcript_directory_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = new_transcript_path("Deploy")
    assert path.parent == default_transcript_dir() and str(tmp_path) in str(path)
    Transcript.create(path).close()
    for directory in (tmp_path / "state", default_transcript_dir()):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(default_transcript_dir(), 0o755)  # as an older version left it
    Transcript.create(new_transcript_path("Deploy")).close()
    assert stat.S_IMODE(default_transcript_dir().stat().st_mode) == 0o700


def test_the_transcript_descriptor_is_not_inherited(tmp_path: Path) -> None:
    """A command started even with close_fds=False holds no descriptor of the transcript."""
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        assert not os.get_inheritable(t._file.fileno())
        listing = ("import os\nfor fd in os.listdir('/proc/self/fd'):\n    try: print(os.readlink(f'/proc/self/fd/{fd}'))"
                   "\n    except OSError: pass  # the descriptor listdir used")
        done = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, close_fds=False,
                              check=True)
    assert str(path) not in done.stdout and "pipe:" in done.stdout


def test_append_unless_sealed_never_writes_after_the_seal(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        assert t.append_unless_sealed("note", text="before")["seq"] == 0
        t.append("run.aborted", reason="x")
        assert t.append_unless_sealed("checkpoint.gap", error="late") is None
        assert t.append("run.resumed")["seq"] == 2  # a resume may go on explicitly
        assert t.append_unless_sealed("note", text="after resume")["seq"] == 3
    with Transcript.open_append(path) as t:
        t.append("run.finished", result="success")
    with Transcript.open_append(path) as t:
        assert t.append_unless_sealed("note", text="late") is None
    assert [e["type"] for e in read_events(path)][-1] == "run.finished"


# --- pinned by mutation testing (RELIABILITY.md, "Mutation testing") --------------------------


class RecordingWatcher:
    """A ChainWatcher that notes what it is told, and when."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def attach(self, transcript: Transcript) -> None:
        self.calls.append(("attach", transcript))

    def written(self, event: dict) -> None:
        self.calls.append(("written", (event["seq"], event["type"], event["hash"])))

    def close(self) -> None:
        self.calls.append(("close", None))


def test_a_watcher_sees_every_event_in_order_and_closes_before_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    watcher = RecordingWatcher()
    t = Transcript.create(path, checkpoints=watcher)
    assert t.path == path and watcher.calls == [("attach", t)]
    first = t.append("run.started", run_id="w")
    second = t.append_unless_sealed("note", text="n")
    assert second is not None and second["type"] == "note"
    t.close()
    assert watcher.calls[1:] == [("written", (0, "run.started", first["hash"])),
                                 ("written", (1, "note", second["hash"])), ("close", None)]
    resumed = RecordingWatcher()
    with Transcript.open_append(path, checkpoints=resumed) as t:
        assert t.path == path and resumed.calls == [("attach", t)]
        third = t.append("run.finished", result="success")
    assert resumed.calls[1:] == [("written", (2, "run.finished", third["hash"])), ("close", None)]


def test_create_and_open_name_the_file_and_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TranscriptError, match=r"^cannot create transcript .*/file/run\.jsonl: Not a directory$"):
        Transcript.create(tmp_path / "file" / "run.jsonl")
    with pytest.raises(TranscriptError, match=r"^cannot open transcript .*/nope\.jsonl: No such file or directory$"):
        Transcript.open_append(tmp_path / "nope.jsonl")

    def unsyncable(directory: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(transcript_module, "_fsync_dir", unsyncable)
    with pytest.raises(TranscriptError, match=r"^cannot create transcript .*/b\.jsonl: Input/output error$"):
        Transcript.create(tmp_path / "b.jsonl")


def test_a_locked_transcript_is_named(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path):
        with pytest.raises(TranscriptError, match=rf"^transcript {re.escape(str(path))} is being written by another run$"):
            Transcript.open_append(path)


def test_a_write_that_cannot_be_undone_makes_the_transcript_refuse_more(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        t.append("note", text="one")
        t.append("note", text="two")

        def no_space(fd: int) -> None:
            raise OSError(28, "No space left on device")

        def no_truncate(fd: int, size: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(transcript_module.os, "fsync", no_space)
        monkeypatch.setattr(transcript_module.os, "ftruncate", no_truncate)
        with pytest.raises(TranscriptError, match="No space left"):
            t.append("note", text="lost")
        monkeypatch.undo()
        with pytest.raises(TranscriptError, match=rf"^transcript {re.escape(str(path))} is unusable after a failed "
                                                   r"write: \[Errno 28\] No space left on device$"):
            t.append("note", text="refused")


def test_an_undone_write_cuts_back_to_the_last_whole_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        for text in ("one", "two", "three"):
            t.append("note", text=text)
        monkeypatch.setattr(transcript_module.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "full")))
        with pytest.raises(TranscriptError):
            t.append("note", text="lost")
        monkeypatch.undo()
    assert [e["text"] for e in read_events(path)] == ["one", "two", "three"] and verify(path).events == 3


class Trickle:
    """A file whose write() takes at most 7 bytes, then nothing once `limit` is reached."""

    def __init__(self, limit: int) -> None:
        self.data, self.limit = bytearray(), limit

    def write(self, view: memoryview) -> int:
        taken = bytes(view[: min(7, self.limit - len(self.data))])
        self.data += taken
        return len(taken)


def test_short_writes_are_continued_and_a_stuck_one_is_an_error() -> None:
    whole = Trickle(10_000)
    transcript_module._write_all(whole, b"x" * 100)  # type: ignore[arg-type]
    assert bytes(whole.data) == b"x" * 100
    with pytest.raises(OSError, match=r"^short write \(50 bytes left\)$"):
        transcript_module._write_all(Trickle(50), b"y" * 100)  # type: ignore[arg-type]


@pytest.mark.parametrize("ending", [b'"]\n', b'"}\n'], ids=["not-json", "no-hash-key"])
def test_open_append_refuses_a_forged_last_line_without_a_traceback(tmp_path: Path, ending: bytes) -> None:
    """A last line whose hash matches its own bytes but which verify refuses: no resume onto it."""
    path = tmp_path / "run.jsonl"
    write_run(path)
    lines = lines_of(path)
    body = lines[-1][:-SUFFIX] + b"}"
    key = b',"hash":"' if ending == b'"]\n' else b',"hush":"'
    lines[-1] = body[:-1] + key + hashlib.sha256(body).hexdigest().encode() + ending
    path.write_bytes(b"".join(lines))
    with pytest.raises(TranscriptError, match=rf"^{re.escape(str(path))}: the last event is not as it was written"):
        Transcript.open_append(path)


def test_open_append_refuses_an_unterminated_last_line_that_is_json_but_no_event(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    path.write_bytes(path.read_bytes() + b'{"seq":99}')
    with pytest.raises(TranscriptError, match=rf"^{re.escape(str(path))}: the last line is not a valid event"):
        Transcript.open_append(path)


@pytest.mark.parametrize("last_size", [10, 70_000, 140_000])
@pytest.mark.parametrize("cut", [0, 1, 5_000])
def test_resume_reads_the_tail_across_64k_boundaries(tmp_path: Path, last_size: int, cut: int) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        for i in range(40):
            t.append("output", task_id="1", text=f"{i} " + "y" * 3000)
        last = t.append("output", task_id="1", text="z" * last_size)
    torn = b'{"seq":41,"ts":"2026' + b"w" * cut
    path.write_bytes(path.read_bytes() + torn)
    with Transcript.open_append(path) as t:
        event = t.append("run.finished", result="success")
    assert (event["seq"], event["prev"]) == (41, last["hash"])
    assert verify(path).events == 42


def test_read_events_keeps_a_last_event_that_lacks_only_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    path.write_bytes(path.read_bytes()[:-1])
    assert list(read_events(path)) == events


@pytest.mark.parametrize(("content", "message"), [
    (b"garbage\n", r"^{path}:2: not a JSON event: "),
    (b"[1]\n", r"^{path}:2: not an event \(a JSON list\)$"),
])
def test_readers_name_the_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path, outputs=0)
    path.write_bytes(lines_of(path)[0] + content)
    pattern = message.format(path=re.escape(str(path)))
    with pytest.raises(TranscriptError, match=pattern):
        list(read_events(path))
    stop = threading.Event()
    with pytest.raises(TranscriptError, match=pattern):
        list(follow(path, stop))


def test_follow_waits_for_the_file_and_for_a_torn_line_to_be_completed(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    stop = threading.Event()
    seen: list[dict] = []

    def reader() -> None:
        seen.extend(follow(path, stop))

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.3)  # the follower is now waiting for the file (not a timing assertion)
    write_run(path, outputs=1)
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:10])  # the last line torn, as a crash leaves it
    time.sleep(0.3)
    with open(path, "ab") as raw:
        raw.write(lines[-1][10:])
    deadline = time.monotonic() + 20
    while len(seen) < len(lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=20)
    assert [e["seq"] for e in seen] == list(range(len(lines)))


def test_verify_reports_sealed_and_the_run_id_also_with_a_torn_tail_and_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    path.write_bytes(path.read_bytes() + b'{"seq":')
    torn = verify(path)
    assert (torn.ok, torn.torn_tail, torn.sealed, torn.run_id, torn.events) == (True, True, True, "r-1", len(events))
    assert torn.reason == f"chain intact: {len(events)} events; line {len(events) + 1} is torn (a crash cut it short)"
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:3] + lines[4:]))
    broken = verify(path)
    assert (broken.ok, broken.torn_tail, broken.sealed, broken.run_id) == (False, False, False, "r-1")
    assert broken.torn_tail is False and broken.sealed is False
    path.write_bytes(b"".join(lines[:-1]))
    whole = verify(path)
    assert whole.reason == f"chain intact: {len(events)} events" and whole.torn_tail is False
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert verify(empty).torn_tail is False and verify(empty).sealed is False


def test_a_run_id_that_is_not_a_string_is_not_reported(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        t.append("run.started", run_id=42)
    assert verify(path).run_id is None


@pytest.mark.parametrize("missing", ["type", "ts"])
def test_an_event_without_type_or_ts_is_refused(tmp_path: Path, missing: str) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    lines = lines_of(path)
    event = json.loads(lines[1])
    del event[missing], event["hash"]
    body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    lines[1] = body[:-1] + b',"hash":"' + hashlib.sha256(body).hexdigest().encode() + b'"}\n'
    path.write_bytes(b"".join(lines[:2]))
    result = verify(path)
    assert (result.ok, result.reason) == (False, "line 2: not an event (no type or ts)")


def test_every_reason_word_for_word(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    lines = lines_of(path)
    reasons = {}
    cases = {
        "edited": lines[:4] + [lines[4].replace(b"line 1", b"line 7")],
        "not json": lines[:2] + [b"{not json\n"],
        "no hash": lines[:2] + [b'{"seq":2}\n'],
        "reformatted": lines[:3] + [lines[3].replace(b'","', b'", "', 1)],
        "reformatted and edited": lines[:3] + [lines[3].replace(b'","', b'", "', 1).replace(b"line 0", b"line 9")],
        "forged": lines[:3] + rehash_from(lines[:3] + [lines[3].replace(b'","', b'", "', 1)], 3)[3:],
        "deleted": lines[:3] + lines[4:],
        "deleted, no final newline": lines[:-2] + [lines[-1][:-1]],
        "list": lines[:1] + [b'[1]\n'],
    }
    for case, content in cases.items():
        path.write_bytes(b"".join(content))
        reasons[case] = verify(path).reason
    assert reasons == {
        "edited": "line 5: content does not match its hash (the line was edited)",
        "not json": "line 3: not valid JSON (edited or truncated)",
        "no hash": "line 3: not an event (no hash)",
        "reformatted": "line 4: not the bytes the writer wrote (spacing, key order or escapes changed; the content "
                       "is the same)",
        "reformatted and edited": "line 4: content does not match its hash (the line was edited)",
        "forged": "line 4: not in the writer's canonical form, with a hash computed over its own bytes (forged)",
        "deleted": "line 4: prev does not match the previous line's hash (a line was deleted, inserted or moved)",
        "deleted, no final newline": f"line {len(lines) - 1}: prev does not match the previous line's hash (a line "
                                     "was deleted, inserted or moved)",
        "list": "line 2: not an event (no hash)",
    }


def test_timestamps_are_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        before = datetime.now(timezone.utc)
        stamp = transcript_module.utc_timestamp()
        after = datetime.now(timezone.utc)
        assert before <= parse_timestamp(stamp) <= after
        names = {time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())}
        name = new_transcript_path("x").name
        names.add(time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        assert name.split("-")[0] in names
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert parse_timestamp("2026-01-02T03:04:05.000006Z") == datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


@pytest.mark.parametrize(("title", "slug"), [
    ("--Deploy--", "deploy"),
    ("a" * 47 + " bcd", "a" * 47),  # the cut leaves a dash at the end: it goes
    ("-" + "b" * 60, "b" * 48),  # a leading dash does not count towards the 48
])
def test_slugs_lose_their_dashes_at_both_ends_and_after_the_cut(title: str, slug: str) -> None:
    name = new_transcript_path(title).name
    assert re.fullmatch(r"\d{8}T\d{6}Z-" + slug + r"-[0-9a-f]{6}\.jsonl", name), name


def test_the_default_directory_is_in_the_user_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_transcript_dir() == tmp_path / "runbook-tui" / "transcripts"


def test_what_verify_proves_differs_in_each_configuration() -> None:
    texts = {(signed, checkpointed): guarantee(signed, checkpointed) for signed in (False, True)
             for checkpointed in (False, True)}
    assert len(set(texts.values())) == 4 and all(text.startswith("proves") for text in texts.values())
    assert texts[(False, False)].endswith("check --allowed-signers or --checkpoints to tell")
    assert "anyone with write access could have rewritten it" in texts[(False, False)]
    assert texts[(True, False)].endswith("(add --checkpoints for that)")
    assert texts[(False, True)].endswith("(add --allowed-signers for that)")
    assert texts[(True, True)].endswith("(nothing cut, rewritten or re-sealed since)")


@pytest.mark.parametrize("content", [b"\n", b"\n" + b'{"seq":0,"ts'], ids=["blank", "blank-then-torn"])
def test_open_append_refuses_a_blank_first_line(tmp_path: Path, content: bytes) -> None:
    """Not a chain to continue: resuming must not start a new one after it."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(content)
    with pytest.raises(TranscriptError, match="the last event is not as it was written"):
        Transcript.open_append(path)


# --- verify in parallel: the same answers, from forked processes over parts of the file ----------


@pytest.fixture
def parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split every file, however small, as if it were a large one (into up to 4 parts)."""
    monkeypatch.setattr(transcript_module, "_PARALLEL_MIN_SIZE", 0)
    monkeypatch.setattr(transcript_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})


def test_a_clean_file_is_verified_in_parallel_with_the_serial_answer(tmp_path: Path, parallel: None) -> None:
    path = tmp_path / "run.jsonl"
    events = write_run(path, outputs=40)
    found = transcript_module._verify_in_parallel(path)
    assert found is not None and found == transcript_module._verify_serially(path)
    assert (found.events, found.last_hash, found.sealed, found.run_id) == (len(events), events[-1]["hash"], True, "r-1")
    assert verify(path) == found


def forged_prev(lines: list[bytes], at: int) -> list[bytes]:
    """Line `at` with another prev and its own hash recomputed: its seq still follows."""
    lines = list(lines)
    prev = json.loads(lines[at])["prev"]
    other = ("1" if prev[0] == "0" else "0") + prev[1:]
    head = lines[at][:-SUFFIX].replace(prev.encode(), other.encode())
    lines[at] = head + b',"hash":"' + hashlib.sha256(head + b"}").hexdigest().encode() + b'"}\n'
    return lines


@pytest.mark.parametrize("damage", ["edited early", "edited late", "deleted late", "prev forged late", "torn tail",
                                    "cut at a part boundary"])
def test_anything_wrong_goes_to_the_serial_check_for_its_reason(tmp_path: Path, parallel: None, damage: str) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path, outputs=40)
    lines = lines_of(path)
    content = {
        "edited early": b"".join(lines[:4] + [lines[4].replace(b"line", b"LINE")] + lines[5:]),
        "prev forged late": b"".join(forged_prev(lines, len(lines) - 6)),
        "edited late": b"".join(lines[:-5] + [lines[-5].replace(b"line", b"LINE")] + lines[-4:]),
        "deleted late": b"".join(lines[:-5] + lines[-4:]),
        "torn tail": b"".join(lines) + b'{"seq":',
        "cut at a part boundary": b"".join(lines[: len(lines) // 2] + lines[len(lines) // 2 + 1:]),
    }[damage]
    path.write_bytes(content)
    assert transcript_module._verify_in_parallel(path) is None
    assert verify(path) == transcript_module._verify_serially(path)
    assert verify(path).ok == (damage == "torn tail")
    if damage == "prev forged late":
        assert verify(path).first_bad_line == len(lines) - 5 and "prev does not match" in verify(path).reason


def test_the_parallel_check_reports_only_a_string_run_id(tmp_path: Path, parallel: None) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        t.append("run.started", run_id=42)
        for i in range(20):
            t.append("output", task_id="1", text=f"{i}\n")
    found = transcript_module._verify_in_parallel(path)
    assert found is not None and found.run_id is None and found.events == 21


def test_no_parallel_check_in_a_process_with_threads_or_for_a_small_file(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path, outputs=40)
    assert transcript_module._verify_in_parallel(path) is None  # far below 32 MiB
    monkeypatch.setattr(transcript_module, "_PARALLEL_MIN_SIZE", 0)
    monkeypatch.setattr(transcript_module.os, "sched_getaffinity", lambda pid: {0})
    assert transcript_module._verify_in_parallel(path) is None  # one CPU
    monkeypatch.setattr(transcript_module.os, "sched_getaffinity", lambda pid: {0, 1})
    assert transcript_module._verify_in_parallel(path) is not None
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert transcript_module._verify_in_parallel(path) is None  # a fork would copy other threads' locks
    finally:
        stop.set()
        thread.join()


def test_a_forged_prev_at_the_start_of_a_part_is_not_linked(tmp_path: Path, parallel: None) -> None:
    """Each part's first line must continue the part before it in both seq and prev."""
    path = tmp_path / "run.jsonl"
    write_run(path, outputs=40)
    lines = lines_of(path)
    size = sum(map(len, lines))
    offsets = list(itertools.accumulate(map(len, lines)))  # where each next line starts
    boundary = next(i + 1 for i, end in enumerate(offsets) if end > size * 2 // 4)  # the third part's first line
    # the rest re-hashed onto the forged line: the only break is its prev, at a part's first line
    path.write_bytes(b"".join(rehash_from(forged_prev(lines, boundary), boundary + 1)))
    assert transcript_module._verify_in_parallel(path) is None
    result = verify(path)
    assert (result.ok, result.first_bad_line) == (False, boundary + 1) and "prev does not match" in result.reason


def test_parts_are_split_on_bytes_even_inside_a_multibyte_character(tmp_path: Path, parallel: None) -> None:
    path = tmp_path / "run.jsonl"
    with Transcript.create(path) as t:
        t.append("run.started", run_id="r-é")
        for _ in range(30):
            t.append("output", task_id="1", text="é" * 999)  # every split offset lands in a character
    found = transcript_module._verify_in_parallel(path)
    assert found is not None and found == transcript_module._verify_serially(path) and found.events == 31
