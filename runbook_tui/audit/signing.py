"""Signed transcripts: `ssh-keygen -Y sign` over a sealed transcript, checkable with stock OpenSSH.

Operators already hold SSH keys (in ssh-agent, on hardware tokens), and a reviewer needs nothing
but OpenSSH to check the result:

    ssh-keygen -Y verify -f allowed_signers -I alice@example.com -n runbook-tui-transcript \\
        -s run.jsonl.sig < run.jsonl

The signature (`FILE.sig`, 0600, next to the transcript) covers every byte of the file, so a
rewrite with recomputed hashes, a cut tail or a re-sealed run no longer matches it. It proves
what the file was when it was signed (at the end of the run) and by which key; it cannot prove
that the signer's machine did not alter the file before that.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runbook_tui.audit.transcript import verify
from runbook_tui.config import SigningSettings

# The signature namespace (`-n`): a signature made for a transcript cannot be passed off as a
# git commit, an email or a file signature (`git`, `email`, `file`), nor the reverse.
NAMESPACE = "runbook-tui-transcript"
# Generous for a hardware key waiting for a touch, finite so that the end of a run cannot hang.
_TIMEOUT = 60.0
_FINGERPRINT = re.compile(r"\b([A-Z0-9-]+) key (SHA256:[A-Za-z0-9+/=]+)")


class SigningError(Exception):
    """ssh-keygen could not do what was asked; the message says why, in its own words."""


@dataclass(frozen=True)
class SignResult:
    """`signed` with the signature's path and key, or why the transcript stays unsigned."""

    signed: bool
    signature: Path | None
    key: str
    reason: str


@dataclass(frozen=True)
class SignatureCheck:
    """`ok` when the signature matches the file and its key belongs to `principal`."""

    ok: bool
    principal: str | None
    key: str
    reason: str


def signature_path(transcript: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(transcript)}.sig")


def sign_transcript(path: str | os.PathLike[str], settings: SigningSettings | None,
                    interactive: bool = False) -> SignResult:
    """Sign a sealed transcript; never raises for a missing key (the run must not fail for it).

    `interactive` lets ssh-keygen ask for a passphrase on the terminal; at the end of a run it
    must not, so ssh-keygen then runs without a controlling terminal and fails instead.
    """
    if settings is None:
        return SignResult(False, None, "", "unsigned: no signing key configured (config.yaml `signing:`)")
    chain = verify(path)
    if not chain.ok or not chain.sealed:
        why = chain.reason if not chain.ok else "the run is not sealed (no run.finished or run.aborted last)"
        return SignResult(False, None, "", f"unsigned: {why}")
    try:
        with tempfile.TemporaryDirectory(prefix="runbook-tui-sign-") as scratch:
            signature = _ssh_keygen_sign(Path(path), _key_args(settings, Path(scratch)), interactive)
        key = _signer_key(path, signature)
        target = signature_path(path)
        _write_private(target, signature)
    except (SigningError, OSError) as exc:
        return SignResult(False, None, "", f"unsigned: {exc}")
    return SignResult(True, target, key, f"signed with {key} (namespace {NAMESPACE})")


def _key_args(settings: SigningSettings, scratch: Path) -> list[str]:
    """ssh-keygen's `-f KEY` (and `-U` when ssh-agent holds the private half)."""
    if not settings.agent:
        if settings.key is None or not settings.key.is_file():
            raise SigningError(f"no signing key at {settings.key}")
        return ["-f", str(settings.key)]
    if not os.environ.get("SSH_AUTH_SOCK"):
        raise SigningError("signing.agent is set but there is no ssh-agent (SSH_AUTH_SOCK is empty)")
    if settings.key is not None:
        return ["-U", "-f", str(settings.key)]
    listed = _run(["ssh-add", "-L"], None, "list the agent's keys")
    first = next((line for line in listed.decode().splitlines() if line.strip()), None)
    if first is None:
        raise SigningError("ssh-agent holds no key")
    public = scratch / "agent-key.pub"
    public.write_text(first + "\n", encoding="utf-8")
    return ["-U", "-f", str(public)]


def _ssh_keygen_sign(path: Path, key_args: list[str], interactive: bool) -> bytes:
    with open(path, "rb") as data:
        return _run(["ssh-keygen", "-q", "-Y", "sign", "-n", NAMESPACE, *key_args], data, "sign",
                    detach=not interactive)


def _signer_key(path: str | os.PathLike[str], signature: bytes) -> str:
    """`ED25519 SHA256:...`: the key inside a signature, read back by ssh-keygen itself."""
    with tempfile.TemporaryDirectory(prefix="runbook-tui-sig-") as scratch:
        sig = Path(scratch) / "t.sig"
        sig.write_bytes(signature)
        with open(path, "rb") as data:
            out = _run(["ssh-keygen", "-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig)], data,
                       "read the signature")
    match = _FINGERPRINT.search(out.decode(errors="replace"))
    return f"{match[1]} {match[2]}" if match else "an unknown key"


def _write_private(target: Path, data: bytes) -> None:
    """Write `target` 0600 atomically (a reader never sees half a signature)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def verify_signature(path: str | os.PathLike[str], allowed_signers: str | os.PathLike[str],
                     signature: str | os.PathLike[str] | None = None) -> SignatureCheck:
    """Check `FILE.sig` against `allowed_signers` the way stock OpenSSH does, naming the signer."""
    sig = Path(signature) if signature else signature_path(path)
    if not sig.is_file():
        return SignatureCheck(False, None, "", f"no signature ({sig} does not exist): the transcript is unsigned")
    try:
        with open(path, "rb") as data:
            key_out = _run(["ssh-keygen", "-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig)], data,
                           "check the signature")
    except SigningError as exc:
        return SignatureCheck(False, None, "", f"the signature does not match the file (changed after signing): {exc}")
    match = _FINGERPRINT.search(key_out.decode(errors="replace"))
    key = f"{match[1]} {match[2]}" if match else "an unknown key"
    try:
        found = _run(["ssh-keygen", "-Y", "find-principals", "-f", os.fspath(allowed_signers), "-s", str(sig)], None,
                     "find the signer")
    except SigningError:
        return SignatureCheck(False, None, key, f"signed by {key}, which {allowed_signers} does not list "
                                                "(a wrong signer)")
    for principal in found.decode().split():
        try:
            with open(path, "rb") as data:
                _run(["ssh-keygen", "-Y", "verify", "-f", os.fspath(allowed_signers), "-I", principal, "-n", NAMESPACE,
                      "-s", str(sig)], data, "verify the signature")
        except SigningError:
            continue
        return SignatureCheck(True, principal, key, f"good signature by {principal} ({key})")
    return SignatureCheck(False, None, key, f"signed by {key}, but {allowed_signers} does not allow it for "
                                            f"namespace {NAMESPACE}")


def note_text(path: str | os.PathLike[str]) -> str | None:
    """The signature and how to check it, for a git note next to the Markdown export."""
    sig = signature_path(path)
    if not sig.is_file():
        return None
    chain = verify(path)
    name = Path(path).name
    return "\n".join([
        "## Transcript signature",
        "",
        f"`{name}`: {chain.events} events, last hash `{chain.last_hash}`. Check it with stock OpenSSH:",
        "",
        f"    ssh-keygen -Y verify -f allowed_signers -I SIGNER -n {NAMESPACE} -s {name}.sig < {name}",
        "",
        f"`{name}.sig`:",
        "",
        "```",
        sig.read_text(encoding="ascii").strip(),
        "```",
        "",
    ])


def _run(argv: list[str], stdin: IO[bytes] | None, doing: str, detach: bool = True) -> bytes:
    """Run an OpenSSH tool; SigningError with its message when it fails or is missing."""
    if shutil.which(argv[0]) is None:
        raise SigningError(f"{argv[0]} is not installed (OpenSSH client)")
    try:
        done = subprocess.run(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL, capture_output=True,
                              timeout=_TIMEOUT, start_new_session=detach)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SigningError(f"{argv[0]} could not {doing}: {exc}") from exc
    if done.returncode != 0:
        message = " ".join(done.stderr.decode(errors="replace").split()) or f"exit {done.returncode}"
        raise SigningError(f"{argv[0]} could not {doing}: {message}")
    return done.stdout
