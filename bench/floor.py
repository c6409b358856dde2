"""Reference for case 1: the least a Python recorder can do, as issue 6 describes it.

    python bench/floor.py 'seq 1000000' FILE [MODULE ...]

Runs the command under a PTY (bash -c, its own session), reads 64 KiB at a time, decodes
UTF-8 incrementally and writes a hash-chained JSONL of output events of at most 256 KiB,
one per 100 ms, each fsynced. No redaction, no escape filtering, no live view, no git facts:
the gap between this and `runbook-tui run` is what our features and structure cost.
MODULEs are imported first: with the libraries the stack prescribes, it shows what starting
them costs before any code of ours runs.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import BinaryIO

EVENT_MAX = 256 * 1024
FLUSH = 0.1


def main(command: str, path: str) -> int:
    with open(path, "xb", buffering=0) as out:
        record = _recorder(out)
        master, slave = os.openpty()
        proc = subprocess.Popen(["bash", "-c", command], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                                start_new_session=True)
        os.close(slave)
        record("command.started", command=command)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending: list[str] = []
        size, last = 0, time.monotonic()
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if data:
                text = decoder.decode(data)
                pending.append(text)
                size += len(text)
            if not data or size >= EVENT_MAX or time.monotonic() - last >= FLUSH:
                joined = "".join(pending)
                for start in range(0, len(joined), EVENT_MAX):
                    record("output", text=joined[start : start + EVENT_MAX])
                pending, size, last = [], 0, time.monotonic()
            if not data:
                break
        os.close(master)
        record("command.finished", exit_code=proc.wait())
    return 0


def _recorder(out: BinaryIO) -> Callable[..., None]:
    """Append hash-chained events to `out`, each fsynced."""
    state = {"prev": "0" * 64, "seq": 0}

    def record(kind: str, **fields: object) -> None:
        event = {"seq": state["seq"], "ts": time.time(), "type": kind, **fields, "prev": state["prev"]}
        body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        state["prev"] = hashlib.sha256(body).hexdigest()
        out.write(body[:-1] + b',"hash":"' + state["prev"].encode() + b'"}\n')
        os.fsync(out.fileno())
        state["seq"] += 1

    return record


if __name__ == "__main__":
    for module in sys.argv[3:]:
        __import__(module)
    sys.exit(main(sys.argv[1], sys.argv[2]))
