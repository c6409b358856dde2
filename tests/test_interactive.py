"""An interactive task gets the operator's terminal (keystrokes reach it) and is still recorded."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from runbook_tui.audit.transcript import read_events


def drive(argv: list[str], keystrokes: bytes, until: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Run argv on a fresh terminal, type once the first prompt shows, collect output until exit."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    seen = b""
    typed = False
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not typed and until in seen:
            os.write(fd, keystrokes)
            typed = True
    os.close(fd)
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), seen
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"still running after {timeout}s; output so far: {seen!r}")


def test_interactive_task_reads_the_terminal_and_is_recorded(tmp_path: Path) -> None:
    book = tmp_path / "inter.md"
    book.write_text('# Inter\n## Steps\n```sh {interactive=true}\nread -p "name? " n; echo "hello $n"\n```\n')
    transcript = tmp_path / "t.jsonl"
    subprocess.run([sys.executable, "-m", "runbook_tui", "trust", str(book)], check=True, capture_output=True)
    code, seen = drive([sys.executable, "-m", "runbook_tui", "run", str(book), "--mode", "auto",
                        "--transcript", str(transcript)], b"bob\r", b"\nname? ")
    assert code == 0, seen.decode(errors="replace")
    assert b"hello bob" in seen
    recorded = "".join(e["text"] for e in read_events(transcript) if e["type"] == "output")
    assert "name? bob" in recorded and "hello bob" in recorded
    finished = [e for e in read_events(transcript) if e["type"] == "command.finished"][0]
    assert finished["interactive"] is True and finished["exit_code"] == 0


def test_interactive_task_without_a_terminal_fails_clearly(tmp_path: Path) -> None:
    book = tmp_path / "inter.md"
    book.write_text("# Inter\n## Steps\n```sh {interactive=true}\npsql\n```\n")
    transcript = tmp_path / "t.jsonl"
    subprocess.run([sys.executable, "-m", "runbook_tui", "trust", str(book)], check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "runbook_tui", "run", str(book), "--yes",
                             "--transcript", str(transcript)], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 1
    output = "".join(e["text"] for e in read_events(transcript) if e["type"] == "output")
    assert "needs the operator's terminal" in output
