"""The transcript chain: what it writes, what it survives (crashes, full disks) and what it catches."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
import threading
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
    new_transcript_path,
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
    start = tampered.rfind(b"\n", 0, position) + 1
    end = tampered.find(b"\n", position)
    if same_event(tampered[start:end], original[start : original.index(b"\n", start)]):
        assert result.ok  # e.g. \u001b -> \u001B: another spelling of the same content
    else:
        assert not result.ok, (position, byte)
        assert result.first_bad_line == line_number, result.reason


def same_event(line: bytes, original: bytes) -> bool:
    try:
        return json.loads(line) == json.loads(original)
    except ValueError:
        return False


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


def test_verify_accepts_a_reformatted_but_unchanged_line(tmp_path: Path) -> None:
    """The hash covers the canonical form, not the bytes: re-indenting a line is not tampering."""
    path = tmp_path / "run.jsonl"
    events = write_run(path)
    lines = lines_of(path)
    lines[2] = json.dumps(events[2], indent=None, sort_keys=False).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    assert verify(path).ok


def test_verify_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.touch()
    result = verify(path)
    assert (result.ok, result.events, result.last_hash) == (True, 0, GENESIS)


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
