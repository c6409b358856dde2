"""The remote bootstrap (integrations/ssh.py) decodes every value exactly, in every /bin/sh we meet.

Runs BOOTSTRAP locally under dash and bash with the payload on stdin (the remote session gives
it a raw PTY instead; the decoding is the same), so any byte sequence hypothesis can find must
come out unchanged in the script's environment, argv and working directory.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.integrations.ssh import BOOTSTRAP, REMOTE_COMMAND, encode_payload

SHELLS = [shell for shell in ("dash", "bash", "busybox") if shutil.which(shell)]
# Any text but NUL (an environment value cannot hold one); surrogates cannot be encoded.
values = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)


def run_bootstrap(shell: str, payload: bytes) -> subprocess.CompletedProcess[bytes]:
    argv = [shell, "sh", "-c", BOOTSTRAP] if shell == "busybox" else [shell, "-c", BOOTSTRAP]
    return subprocess.run(argv, input=payload, capture_output=True, timeout=30)


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values, arg=values)
def test_values_and_arguments_arrive_unchanged(shell: str, value: str, arg: str) -> None:
    script = 'printf "%s" "$V"; printf "\\0"; printf "%s" "$1"'
    payload = encode_payload(["sh", "-c", script, "argv0", arg], {"V": value})
    done = run_bootstrap(shell, payload)
    assert done.returncode == 0, done.stderr
    assert done.stdout == value.encode() + b"\0" + arg.encode()


def test_a_payload_cut_short_runs_nothing() -> None:
    payload = encode_payload(["sh", "-c", "echo ran"])
    done = run_bootstrap(SHELLS[0], payload[: payload.rindex(b".")])
    assert done.returncode == 125 and b"ran" not in done.stdout


def test_the_remote_command_holds_no_quote_or_backslash_and_no_value() -> None:
    # one fixed line that means the same to sh, bash, zsh, fish and tcsh (see the module docstring)
    assert "'" not in BOOTSTRAP and "\\" not in BOOTSTRAP and "\n" not in REMOTE_COMMAND
    assert REMOTE_COMMAND == f"exec /bin/sh -c '{BOOTSTRAP}'"


def test_names_the_bootstrap_uses_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_payload(["true"], {"_rbt_d": "/tmp"})
    with pytest.raises(ValueError):
        encode_payload(["true"], {"A": "nul\0byte"})
