"""`run --group-output` on a real sshd fleet: each host's output printed as one block under a
header (host, exit code, duration) when that host ends, the transcript still recording every
line as it arrived (tests/ssh_fleet.py)."""

from __future__ import annotations

import re
from pathlib import Path

from runbook_tui.hostlines import GROUP_LINES, HostBlock, HostPrefixer
from tests.ssh_fleet import SshFleet
from tests.test_fanout import book, cli, events

HEADER = re.compile(r"^── ([✓✗]) (\S+): exit (\d+) in ([\d.]+)s \((.*)\) ──$")


def blocks(stdout: str) -> dict[str, tuple[str, int, list[str]]]:
    """host -> (mark, exit code, the lines printed under its header up to the next line of ours)."""
    found: dict[str, tuple[str, int, list[str]]] = {}
    lines = stdout.splitlines()
    for number, line in enumerate(lines):
        match = HEADER.match(line)
        if match:
            body = []
            for following in lines[number + 1:]:
                if following.startswith(("── ", "✓ ", "✗ ", "batch ")):
                    break
                body.append(following)
            found[match.group(2)] = (match.group(1), int(match.group(3)), body)
    return found


def test_each_hosts_output_is_one_block_under_a_header_with_its_exit_code(fleet_home: SshFleet,
                                                                          tmp_path: Path) -> None:
    # Every host prints slowly, so line by line their output would interleave; the remote port
    # (from SSH_CONNECTION) makes every other host fail, with the port as its exit code's source.
    path = book(tmp_path, fleet_home, "1. Deploy\n   ```sh {hosts=web}\n"
                                      "   set -- $(printenv SSH_CONNECTION)\n"
                                      "   for i in 1 2 3 4 5; do echo \"tick $i from $4\"; sleep 0.1; done\n"
                                      "   exit $(( $4 % 2 * 3 ))\n   ```\n")
    assert cli("trust", str(path), cwd=tmp_path).returncode == 0
    transcript = tmp_path / "t.jsonl"
    done = cli("run", str(path), "--yes", "--group-output", "--transcript", str(transcript), cwd=tmp_path)
    hosts = fleet_home.names(4)
    expected = {host: fleet_home.server(host).port % 2 * 3 for host in hosts}
    assert any(expected.values()) and not all(expected.values())
    assert done.returncode == 1, "a host failed: the run fails"
    shown = blocks(done.stdout)
    assert set(shown) == set(hosts), done.stdout
    for host in hosts:
        mark, code, body = shown[host]
        port = fleet_home.server(host).port
        assert code == expected[host] and mark == ("✓" if code == 0 else "✗")
        assert body == [f"tick {i} from {port}" for i in range(1, 6)], f"{host}'s block is whole and contiguous"
    assert " | tick" not in done.stdout, "no line is printed prefixed as well"
    # The transcript got every host's output as it arrived, events of different hosts interleaved.
    order = [e["host"] for e in events(transcript, "output")]
    assert set(order) == set(hosts) and len(order) > len(hosts)
    finished = {e["host"]: e["exit_code"] for e in events(transcript, "command.finished")}
    assert finished == expected


def test_a_long_block_keeps_its_last_lines_and_says_where_the_rest_is(fleet_home: SshFleet, tmp_path: Path) -> None:
    total = GROUP_LINES + 700
    path = book(tmp_path, fleet_home, f"1. Count\n   ```sh {{hosts=web}}\n   seq {total}\n   ```\n", count=2)
    assert cli("trust", str(path), cwd=tmp_path).returncode == 0
    transcript = tmp_path / "t.jsonl"
    done = cli("run", str(path), "--yes", "--group-output", "--transcript", str(transcript), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = blocks(done.stdout)
    assert set(shown) == set(fleet_home.names(2))
    for host, (_, code, body) in shown.items():
        assert code == 0
        assert body[0] == "… 700 earlier lines in the transcript"
        assert body[1:] == [str(n) for n in range(701, total + 1)]
        recorded = "".join(e["text"] for e in events(transcript, "output") if e["host"] == host)
        assert recorded.split() == [str(n) for n in range(1, total + 1)], "the transcript has every line"


def test_a_host_block_holds_a_bounded_tail_whatever_the_output() -> None:
    block = HostBlock()
    for start in range(0, 200_000, 7_000):  # chunks that end mid-line, as a stream does
        block.add("".join(f"{n}\n" for n in range(start, min(start + 7_000, 200_000))) + "part")
        block.add("ial-")
    block.add("end")
    assert len(block.lines) == GROUP_LINES
    kept = block.text().splitlines()
    assert kept[0] == f"… {200_000 - GROUP_LINES} earlier lines in the transcript"
    assert kept[1:-1] == [str(n) for n in range(200_000 - GROUP_LINES, 200_000)]
    assert kept[-1] == "partial-end", "the unfinished last line is shown too"


def test_grouped_output_of_twenty_hosts_printing_seq_200000_holds_only_their_tails() -> None:
    """What `--group-output` holds while hosts run stays flat, whatever they print: 20 hosts ×
    `seq 200000` (27 MB) fed through the headless printer, interleaved as they arrive."""
    import io
    import tracemalloc

    from runbook_tui.headless import Printer

    out = io.StringIO()
    printer = Printer(out, group_output=True)
    hosts = [f"web-{n:02d}" for n in range(1, 21)]
    step = 10_000
    tracemalloc.start()
    try:
        for start in range(1, 200_001, step):
            chunk = "".join(f"{n}\n" for n in range(start, start + step))
            for host in hosts:
                printer.output("1.1.1", chunk, host)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    fed = 20 * sum(len(f"{n}\n") for n in range(1, 200_001))
    assert fed > 25_000_000 and peak < 3_000_000, f"held {peak} bytes of {fed} fed"
    assert out.getvalue() == "", "nothing is printed before a host ends"
    for host in hosts:
        printer.event({"type": "command.finished", "task_id": "1.1.1", "host": host, "exit_code": 0,
                       "state": "ok", "duration": 1.0})
    shown = out.getvalue().splitlines()
    assert shown.count("… 199500 earlier lines in the transcript") == 20 and shown.count("200000") == 20


def test_interleaved_hosts_never_share_a_line() -> None:
    """Chunks end anywhere: a line one host left open is ended when another host speaks."""
    prefixer = HostPrefixer()
    shown = "".join(prefixer.feed(host, text) for host, text in [
        ("web-1", "downloading 4"), ("web-2", "ready\nsecond"), ("web-1", "0%\n"), ("web-2", " line\n"),
        ("web-2", "third\n")])
    assert shown.splitlines() == ["web-1 | downloading 4", "web-2 | ready", "web-2 | second",
                                  "web-1 | 0%", "web-2 |  line", "web-2 | third"]
