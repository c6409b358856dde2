"""A real ssh-agent on a private socket, holding keys made by ssh-keygen, for the signing tests.

Skips when OpenSSH's client tools are missing, unless RUNBOOK_TUI_REQUIRE_SSH_KEYGEN=1 (CI sets
it, so a broken image cannot pass by skipping): then the tests fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Agent:
    socket: Path
    keys: Path  # where the key pairs are: NAME (private, unless held by the agent only), NAME.pub

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SSH_AUTH_SOCK": str(self.socket)}

    def new_key(self, name: str, comment: str, add: bool, passphrase: str = "") -> Path:
        """A fresh ed25519 key pair; with `add`, loaded into the agent and its private file deleted,
        so that signing can only succeed through the agent. Returns the public key's path."""
        private = self.keys / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(private)],
                       check=True, stdin=subprocess.DEVNULL)
        if add:
            subprocess.run(["ssh-add", "-q", str(private)], env=self.env, check=True, capture_output=True)
            private.unlink()
        return private.with_suffix(".pub")

    def allowed_signers(self, path: Path, **principals: Path) -> Path:
        """An OpenSSH allowed_signers file: `principal keytype key` per line."""
        lines = [f"{principal} {' '.join(pub.read_text().split()[:2])}" for principal, pub in principals.items()]
        path.write_text("\n".join(lines) + "\n")
        return path


def require_openssh() -> None:
    missing = [tool for tool in ("ssh-keygen", "ssh-agent", "ssh-add") if shutil.which(tool) is None]
    if missing:
        reason = f"OpenSSH client tools missing: {', '.join(missing)} (Debian package openssh-client)"
        if os.environ.get("RUNBOOK_TUI_REQUIRE_SSH_KEYGEN") == "1":
            pytest.fail(f"{reason} (RUNBOOK_TUI_REQUIRE_SSH_KEYGEN=1)")
        pytest.skip(reason)


@pytest.fixture
def ssh_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Agent]:
    """`ssh-agent -D -a SOCK` in the foreground, ended by its pid; SSH_AUTH_SOCK points at it."""
    require_openssh()
    base = Path(tempfile.mkdtemp(prefix="rbt-agent-"))  # short: a socket path is limited to 107 bytes
    sock = base / "agent.sock"
    keys = base / "keys"
    keys.mkdir()
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ssh-agent did not start (exit {proc.poll()})")
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield Agent(sock, keys)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(base, ignore_errors=True)
