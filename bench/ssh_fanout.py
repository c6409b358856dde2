"""SSH fan-out (issue 15): ours against OpenSSH's own client fanned out the simple way.

    python -m bench.ssh_fanout                 # 20 hosts x `seq 200000`, 3 alternating runs
    python -m bench.ssh_fanout --reps 1 --scale 5,20

Needs root and Debian's openssh-server/openssh-client: it starts a fleet of real ``sshd`` on
127.0.0.1 with tests/ssh_fleet.py (the SSH tests' fixture) and points both tools at it.

- **ours**: one child process (``--child``) that runs ``seq N`` on every host at once through
  :class:`SshPool` + :func:`run_on_hosts` (one connection per host, a PTY per command), redacts
  each host's stream and writes it, batched every 50 ms as the engine does, as ``output`` events
  of a hash-chained, fsynced transcript.
- **OpenSSH**: ``xargs -P HOSTS ssh -F config HOST seq N > out/HOST`` (no PTY, plain files),
  and the same with ``-tt`` (a PTY on the host, as ours has: what the PTY itself costs).

Every run is checked complete: each host's output, from the transcript for ours and from its
file for OpenSSH, must be exactly ``1..N``. Printed: wall medians and the ratio ours/OpenSSH,
our peak RSS at each ``--scale`` host count (flat is the goal), and the time from ``spawn`` to
the first output on a warm connection, next to OpenSSH's own over a ControlMaster connection. Not part of ``python -m bench``: it needs root and
starts up to 50 sshd.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from bench.measure import median, python_exe, rotate, run_timed

REPO = Path(__file__).resolve().parent.parent
# The engine flushes output to the transcript on this period (OutputStream via supervise's tick).
FLUSH_EVERY = 0.05
SECRET = "bench-secret-value-0123"  # never printed by the command: the redactor still scans it all


def _expected(lines: int) -> str:
    return "".join(f"{i}\n" for i in range(1, lines + 1))


# ---- the measured child: ours --------------------------------------------------------------------

def child(hosts: list[str], lines: int, transcript_path: Path) -> dict[str, object]:
    from runbook_tui.audit.redact import Redactor
    from runbook_tui.audit.transcript import Transcript
    from runbook_tui.batches import FanoutCallbacks, run_on_hosts
    from runbook_tui.integrations.ssh import SshPool, host_starter
    from runbook_tui.model import Host

    redactor = Redactor()
    redactor.add("BENCH_SECRET", SECRET)
    pending: dict[str, list[str]] = {}
    lock = threading.Lock()
    done = threading.Event()

    def output(host: str, text: str) -> None:
        safe = redactor.feed(host, text)
        with lock:
            pending.setdefault(host, []).append(safe)

    def flush(transcript: Transcript) -> None:
        with lock:
            batch = {host: "".join(parts) for host, parts in pending.items() if parts}
            pending.clear()
        for host, text in batch.items():
            transcript.append("output", host=host, text=text)

    with Transcript.create(transcript_path) as transcript, SshPool() as pool:
        def flusher() -> None:
            while not done.wait(FLUSH_EVERY):
                flush(transcript)

        thread = threading.Thread(target=flusher, daemon=True)
        thread.start()
        start = time.perf_counter()

        starter = host_starter(pool, [Host(name, 0) for name in hosts], f"seq {lines}", env={"BENCH_SECRET": SECRET})
        results = run_on_hosts(hosts, starter, parallel=len(hosts), callbacks=FanoutCallbacks(output=output))
        done.set()
        thread.join()
        for host in hosts:
            tail = redactor.flush(host)
            if tail:
                with lock:
                    pending.setdefault(host, []).append(tail)
        flush(transcript)
        wall = time.perf_counter() - start
    return {"wall": wall, "failed": [r.host for r in results if r.state != "ok"]}


def first_output_latency(host: str, reps: int) -> list[float]:
    """Seconds from spawn to the first output of ``echo``, on an already open connection."""
    from runbook_tui.integrations.ssh import SshPool, SshTarget

    samples = []
    with SshPool() as pool:
        pool.connect(SshTarget(host))
        for _ in range(reps):
            first = threading.Event()
            at: list[float] = []
            start = time.perf_counter()

            def on_output(text: str) -> None:
                seen.append(text)
                if not first.is_set():
                    at.append(time.perf_counter() - start)
                    first.set()

            seen: list[str] = []
            process = pool.spawn(SshTarget(host), "echo first", on_output=on_output)
            status = process.wait(30)
            if status is None or status.exit_code != 0 or not "".join(seen).startswith("first"):
                raise SystemExit(f"first output: the host did not run `echo first` ({seen!r}, {status})")
            samples.append(at[0])
    return samples


def openssh_warm_latency(config: Path, host: str, work: Path, reps: int) -> list[float]:
    """The same over OpenSSH's own warm connection (a ControlMaster), process start included."""
    control = ["-F", str(config), "-o", f"ControlPath={work}/cm-%C", "-o", "BatchMode=yes"]
    subprocess.run(["ssh", *control, "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-fN", host], check=True)
    samples = []
    try:
        for _ in range(reps):
            start = time.perf_counter()
            proc = subprocess.Popen(["ssh", *control, host, "echo first"], stdout=subprocess.PIPE)
            assert proc.stdout is not None
            proc.stdout.read(1)
            samples.append(time.perf_counter() - start)
            proc.wait(30)
    finally:
        subprocess.run(["ssh", *control, "-O", "exit", host], capture_output=True)
    return samples


# ---- the driver ------------------------------------------------------------------------------------

def _ours_complete(transcript: Path, hosts: list[str], expected: str) -> bool:
    from runbook_tui.audit.transcript import read_events, verify

    if not verify(transcript).ok:
        return False
    text: dict[str, list[str]] = {host: [] for host in hosts}
    for event in read_events(transcript):
        if event["type"] == "output":
            text[event["host"]].append(event["text"])
    return all("".join(parts).replace("\r\n", "\n") == expected for parts in text.values())


def run_ours(hosts: list[str], lines: int, env: Mapping[str, str], work: Path) -> tuple[float, int, bool, float]:
    """Process wall, peak RSS, completeness, and the wall inside the process (its start-up and
    imports, asyncssh's ~0.25 s among them, left out: what a run that is already going pays)."""
    transcript = work / f"ours-{time.monotonic_ns()}.jsonl"
    proc = run_timed([python_exe(), "-m", "bench.ssh_fanout", "--child", "--lines", str(lines),
                      "--transcript", str(transcript), "--hosts", ",".join(hosts)],
                     env=env, cwd=REPO, stdout_path=None)
    if proc.returncode != 0:
        raise SystemExit(f"ours failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    complete = not result["failed"] and _ours_complete(transcript, hosts, _expected(lines))
    transcript.unlink()
    return proc.seconds, proc.rss_kb, complete, float(result["wall"])


def run_openssh(hosts: list[str], lines: int, config: Path, work: Path, *, tty: bool = False) -> tuple[float, bool]:
    """``xargs -P`` over ``ssh``; ``tty`` adds ``-tt`` (a PTY on the host, as ours requests)."""
    out = work / f"openssh-{time.monotonic_ns()}"
    out.mkdir()
    flags = "-tt -o LogLevel=ERROR " if tty else ""
    command = (f'printf "%s\\n" {" ".join(hosts)} | xargs -P {len(hosts)} -I{{}} '
               f'sh -c \'ssh -F "$0" -o BatchMode=yes {flags}{{}} seq {lines} < /dev/null > "$1/{{}}"\' {config} {out}')
    proc = run_timed(["sh", "-c", command])
    expected = _expected(lines)
    complete = proc.returncode == 0 and all((out / host).read_text().replace("\r\n", "\n") == expected
                                            for host in hosts)
    shutil.rmtree(out)
    return proc.seconds, complete


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ssh_fanout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=str, default="20", help="host count (driver) or names (--child)")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scale", default="5,20,50", help="host counts for our peak RSS")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--transcript", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.hosts.split(","), args.lines, args.transcript)))
        return 0

    sys.path.insert(0, str(REPO))
    from tests.ssh_fleet import start_fleet, stop_fleet

    count = int(args.hosts)
    scale = sorted({int(n) for n in args.scale.split(",")} | {count})
    try:
        fleet = start_fleet(max(scale))
    except BaseException as exc:  # pytest's skip outside pytest: say why and stop
        print(f"cannot start the sshd fleet: {exc}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="rbt-ssh-bench-"))
    env = {**os.environ, "HOME": str(fleet.home), "PYTHONPATH": str(REPO)}
    env.pop("SSH_AUTH_SOCK", None)
    try:
        hosts = fleet.names(count)
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        ours, inside, openssh, openssh_tty, rss, complete = [], [], [], [], [], True
        for rep in range(args.reps):
            for tool in rotate(["ours", "openssh", "openssh -tt"], rep):
                if tool == "ours":
                    seconds, kb, ok, wall = run_ours(hosts, args.lines, env, work)
                    ours.append(seconds)
                    inside.append(wall)
                    rss.append(kb)
                else:
                    seconds, ok = run_openssh(hosts, args.lines, fleet.config, work, tty=tool.endswith("-tt"))
                    (openssh_tty if tool.endswith("-tt") else openssh).append(seconds)
                complete &= ok
                log(f"rep {rep + 1} {tool}: {seconds:.2f}s complete={ok}")
        scaled = {}
        for n in scale:
            _, kb, ok, _ = run_ours(fleet.names(n), args.lines, env, work)
            complete &= ok
            scaled[n] = kb
            log(f"ours at {n} hosts: peak RSS {kb / 1024:.1f} MB complete={ok}")
        old_home = os.environ.get("HOME")
        os.environ["HOME"] = str(fleet.home)
        try:
            latency = first_output_latency(hosts[0], 10)
        finally:
            if old_home is not None:
                os.environ["HOME"] = old_home
        warm_openssh = openssh_warm_latency(fleet.config, hosts[0], work, 10)
    finally:
        stop_fleet(fleet)
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
          f"Python {platform.python_version()}, {subprocess.run(['ssh', '-V'], capture_output=True, text=True).stderr.strip()}")
    print(f"{count} hosts x seq {args.lines}, {args.reps} runs each, alternating")
    print(f"  ours (asyncssh, PTY, redacted, transcript): median {median(ours):.2f}s  "
          f"(min {min(ours):.2f}, max {max(ours):.2f})")
    print(f"  ours, inside the process (no start-up):     median {median(inside):.2f}s  "
          f"(min {min(inside):.2f}, max {max(inside):.2f})")
    print(f"  xargs -P {count} ssh (files):                   median {median(openssh):.2f}s  "
          f"(min {min(openssh):.2f}, max {max(openssh):.2f})")
    print(f"  xargs -P {count} ssh -tt (PTY, files):          median {median(openssh_tty):.2f}s  "
          f"(min {min(openssh_tty):.2f}, max {max(openssh_tty):.2f})")
    print(f"  wall ratio ours/openssh: {median(ours) / median(openssh):.2f}x (target <= 1.2x); "
          f"ours/openssh -tt: {median(ours) / median(openssh_tty):.2f}x; without our start-up: "
          f"{median(inside) / median(openssh):.2f}x")
    print(f"  our peak RSS: {median(rss) / 1024:.1f} MB (target < 150 MB); by host count: "
          + ", ".join(f"{n}: {kb / 1024:.1f} MB" for n, kb in scaled.items()))
    print(f"  first output on a warm connection: median {median(latency) * 1000:.0f} ms, "
          f"max {max(latency) * 1000:.0f} ms (target < 300 ms); OpenSSH over a ControlMaster: median "
          f"{median(warm_openssh) * 1000:.0f} ms, max {max(warm_openssh) * 1000:.0f} ms")
    print(f"  nothing lost: {'yes, every host complete in every run' if complete else 'NO: some output missing'}")
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
