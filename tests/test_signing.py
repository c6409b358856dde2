"""Signed transcripts against a real ssh-agent and the stock `ssh-keygen -Y verify`."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runbook_tui.audit.signing import NAMESPACE, sign_transcript, signature_path, verify_signature
from runbook_tui.config import SigningSettings
from tests.ssh_agent import Agent, ssh_agent  # noqa: F401 - the fixture
from tests.test_transcript import lines_of, rehash_from, write_run


def stock_verify(path: Path, allowed: Path, principal: str) -> subprocess.CompletedProcess[str]:
    """What a reviewer runs: OpenSSH alone, no runbook-tui."""
    with open(path, "rb") as data:
        return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE,
                               "-s", str(signature_path(path))], stdin=data, capture_output=True, text=True)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook_tui", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def alice(ssh_agent: Agent, tmp_path: Path) -> tuple[Path, Path]:  # noqa: F811
    """Alice's key, held only by the agent; an allowed_signers file naming her."""
    pub = ssh_agent.new_key("alice", "alice@example.com", add=True)
    return pub, ssh_agent.allowed_signers(tmp_path / "allowed_signers", **{"alice@example.com": pub})


def test_sign_with_the_agent_and_check_with_stock_openssh(tmp_path: Path, alice: tuple[Path, Path]) -> None:
    pub, allowed = alice
    path = tmp_path / "run.jsonl"
    write_run(path)
    result = sign_transcript(path, SigningSettings(key=pub, agent=True))
    assert result.signed and result.signature == signature_path(path), result.reason
    assert stat.S_IMODE(result.signature.stat().st_mode) == 0o600
    assert result.signature.read_text().startswith("-----BEGIN SSH SIGNATURE-----")
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    assert result.key == f"ED25519 {fingerprint}"
    done = stock_verify(path, allowed, "alice@example.com")
    assert done.returncode == 0 and 'Good "runbook-tui-transcript" signature for alice@example.com' in done.stdout
    check = verify_signature(path, allowed)
    assert (check.ok, check.principal, check.key) == (True, "alice@example.com", result.key)


def test_the_agents_first_key_when_no_key_is_named(tmp_path: Path, alice: tuple[Path, Path]) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    assert sign_transcript(path, SigningSettings(agent=True)).signed
    assert verify_signature(path, alice[1]).principal == "alice@example.com"


def test_sign_with_a_key_file(tmp_path: Path, ssh_agent: Agent) -> None:  # noqa: F811
    pub = ssh_agent.new_key("ops", "ops@example.com", add=False)
    path = tmp_path / "run.jsonl"
    write_run(path)
    assert sign_transcript(path, SigningSettings(key=pub.with_suffix(""))).signed
    allowed = ssh_agent.allowed_signers(tmp_path / "allowed", **{"ops@example.com": pub})
    assert stock_verify(path, allowed, "ops@example.com").returncode == 0


def test_a_wrong_signer_is_named_and_refused(tmp_path: Path, ssh_agent: Agent, alice: tuple[Path, Path]) -> None:  # noqa: F811
    mallory = ssh_agent.new_key("mallory", "mallory@example.com", add=False)
    path = tmp_path / "run.jsonl"
    write_run(path)
    assert sign_transcript(path, SigningSettings(key=mallory.with_suffix(""))).signed
    check = verify_signature(path, alice[1])
    assert not check.ok and check.principal is None and "wrong signer" in check.reason
    assert check.key.startswith("ED25519 SHA256:")
    assert stock_verify(path, alice[1], "alice@example.com").returncode != 0


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b'"text":"') + len(b'"text":"')  # the first output's first character
    data[at] = ord("X") if data[at] != ord("X") else ord("Y")
    path.write_bytes(bytes(data))


def last_exit_code(lines: list[bytes]) -> int:
    """The index of the last command.finished: the failure an attacker wants to turn into success."""
    return max(i for i, line in enumerate(lines) if b'"exit_code":0' in line)


def rewrite_and_rehash(path: Path) -> None:
    lines = lines_of(path)
    at = last_exit_code(lines)
    lines[at] = lines[at].replace(b'"exit_code":0', b'"exit_code":3')
    path.write_bytes(b"".join(rehash_from(lines, at)))


def cut_the_tail(path: Path) -> None:
    path.write_bytes(b"".join(lines_of(path)[:-2]))


def cut_and_reseal(path: Path) -> None:
    lines = lines_of(path)
    seal = lines[-1].replace(b'"seq":%d' % (len(lines) - 1), b'"seq":4')
    path.write_bytes(b"".join(rehash_from(lines[:4] + [seal], 4)))


def duplicate_key(path: Path) -> None:
    lines = lines_of(path)
    at = last_exit_code(lines)
    lines[at] = lines[at].replace(b'"exit_code":0', b'"exit_code":0,"exit_code":3')
    path.write_bytes(b"".join(rehash_from(lines, at)))


ATTACKS: dict[str, Callable[[Path], None]] = {
    "changed byte": flip_a_byte, "rewrite and rehash": rewrite_and_rehash, "cut the tail": cut_the_tail,
    "cut and re-seal": cut_and_reseal, "duplicate key": duplicate_key,
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_breaks_the_signature(tmp_path: Path, alice: tuple[Path, Path], attack: str) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    assert sign_transcript(path, SigningSettings(key=alice[0], agent=True)).signed
    assert cli("transcript", "verify", str(path), "--allowed-signers", str(alice[1])).returncode == 0
    ATTACKS[attack](path)
    check = verify_signature(path, alice[1])
    assert not check.ok and "does not match the file" in check.reason, check.reason
    assert stock_verify(path, alice[1], "alice@example.com").returncode != 0
    done = cli("transcript", "verify", str(path), "--allowed-signers", str(alice[1]))
    assert done.returncode == 1, done.stdout + done.stderr


@pytest.mark.parametrize("attack", ["rewrite and rehash", "cut the tail", "cut and re-seal"])
def test_without_anchors_verify_explains_instead_of_claiming_intact(tmp_path: Path, attack: str) -> None:
    """The chain alone cannot see these: verify passes the chain and says what it cannot know."""
    path = tmp_path / "run.jsonl"
    write_run(path)
    ATTACKS[attack](path)
    done = cli("transcript", "verify", str(path))
    assert done.returncode == 0, done.stderr
    assert "anyone with write access could have rewritten it" in done.stdout
    assert ("NOT sealed" in done.stdout) == (attack == "cut the tail")


def test_a_duplicate_key_fails_verify_even_without_anchors(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    duplicate_key(path)
    done = cli("transcript", "verify", str(path))
    assert done.returncode == 1 and "duplicate key 'exit_code'" in done.stderr


def test_no_key_configured_leaves_it_unsigned_without_failing(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    result = sign_transcript(path, None)
    assert (result.signed, result.signature) == (False, None) and "no signing key configured" in result.reason
    assert not signature_path(path).exists()
    check = verify_signature(path, tmp_path / "allowed")
    assert not check.ok and "unsigned" in check.reason


def test_an_unsealed_or_broken_transcript_is_not_signed(tmp_path: Path, alice: tuple[Path, Path]) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    cut_the_tail(path)
    result = sign_transcript(path, SigningSettings(key=alice[0], agent=True))
    assert not result.signed and "not sealed" in result.reason
    write_run(other := tmp_path / "other.jsonl")
    duplicate_key(other)
    result = sign_transcript(other, SigningSettings(key=alice[0], agent=True))
    assert not result.signed and "duplicate key" in result.reason


def test_a_passphrase_key_at_the_end_of_a_run_does_not_hang(tmp_path: Path, ssh_agent: Agent) -> None:  # noqa: F811
    pub = ssh_agent.new_key("locked", "locked@example.com", add=False, passphrase="correct horse")
    path = tmp_path / "run.jsonl"
    write_run(path)
    result = sign_transcript(path, SigningSettings(key=pub.with_suffix("")))
    assert not result.signed and result.reason.startswith("unsigned: ssh-keygen could not sign")


def test_agent_signing_without_an_agent_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    path = tmp_path / "run.jsonl"
    write_run(path)
    result = sign_transcript(path, SigningSettings(agent=True))
    assert not result.signed and "SSH_AUTH_SOCK" in result.reason


def test_cli_sign_then_verify_names_the_signer(tmp_path: Path, alice: tuple[Path, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    config = tmp_path / "config.yaml"
    config.write_text(f"signing:\n  key: {alice[0]}\n  agent: true\n")
    monkeypatch.setenv("RUNBOOK_TUI_CONFIG", str(config))
    signed = cli("transcript", "sign", str(path))
    assert signed.returncode == 0 and f"{path}.sig: signed with ED25519 SHA256:" in signed.stdout, signed.stderr
    done = cli("transcript", "verify", str(path), "--allowed-signers", str(alice[1]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signature: good signature by alice@example.com (ED25519 SHA256:" in done.stdout
    assert "proves: the file is byte for byte what the signer's key signed" in done.stdout


def test_cli_sign_without_a_key_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    done = cli("transcript", "sign", str(path))
    assert done.returncode == 2 and "no signing key" in done.stderr and "Traceback" not in done.stderr
