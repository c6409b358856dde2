"""Secrets through a real Secret Service (gnome-keyring on a private D-Bus), in subprocesses.

keyring chooses its backend at import, so every check runs the real code in a fresh
interpreter under the environment of the `secret_service` fixture (or a broken variant of it).
Every error path is also checked for the one thing that must never happen: a value in a
message, a traceback or a log line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from runbook_tui.audit.transcript import read_events
from tests.secret_service import SECRET_SERVICE_BACKEND, backend_in, running_secret_service

# Runs one operation of runbook_tui.integrations.secrets with DEBUG logging on; prints JSON.
# The value to store comes on stdin (never argv); errors print the whole traceback too.
DRIVER = textwrap.dedent("""
    import json, logging, sys, traceback
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from runbook_tui.integrations import secrets
    from runbook_tui.model import Secret
    op, *args = sys.argv[1:]
    try:
        if op == "store":
            result = str(secrets.store_secret(args[0], sys.stdin.read()))
        elif op == "read":
            result = secrets.read_secret(Secret(args[0], args[1], 1))
        elif op == "check":
            from runbook_tui.parse import load_runbook
            result = [[s.name, ok] for s, ok in secrets.check_secrets(load_runbook(args[0]))]
        elif op == "lock":
            import secretstorage
            secretstorage.get_default_collection(secretstorage.dbus_init()).lock()
            result = "locked"
    except secrets.SecretError as exc:
        chain, seen = [], exc
        while seen is not None:
            chain.append(repr(seen))
            seen = seen.__cause__ or seen.__context__
        traceback.print_exc()
        print(json.dumps({"error": str(exc), "chain": chain}))
        sys.exit(3)
    print(json.dumps({"result": result}))
""")


def new_value() -> str:
    return f"s3cr3t Ω {uuid.uuid4().hex}"


def secrets_call(env: dict[str, str], op: str, *args: str, stdin: str = "") -> tuple[dict, str]:
    """The driver's JSON answer and its whole stderr (logs and traceback)."""
    done = subprocess.run([sys.executable, "-c", DRIVER, op, *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode in (0, 3), done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def assert_leaks_nothing(value: str, *texts: object) -> None:
    for text in texts:
        assert value not in json.dumps(text, ensure_ascii=False) and value not in str(text)


def store(env: dict[str, str], ref: str, value: str) -> None:
    answer, log = secrets_call(env, "store", ref, stdin=value)
    assert "result" in answer, answer
    assert_leaks_nothing(value, answer, log)


def rbt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI under the Secret Service's environment; `run --yes` trusts the runbook first."""
    if args[0] == "run" and "--yes" in args:
        subprocess.run([sys.executable, "-m", "runbook_tui", "trust", args[1]], env=env, check=True,
                       capture_output=True, timeout=60)
    return subprocess.run([sys.executable, "-m", "runbook_tui", *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


def test_fixture_resolves_to_secret_service(secret_service: dict[str, str]) -> None:
    assert backend_in(secret_service) == SECRET_SERVICE_BACKEND


def test_round_trip_and_overwrite(secret_service: dict[str, str]) -> None:
    first, second = new_value(), new_value()
    store(secret_service, "keyring:rbt-test/round-trip", first)
    assert secrets_call(secret_service, "read", "X", "keyring:rbt-test/round-trip")[0] == {"result": first}
    store(secret_service, "rbt-test/round-trip", second)  # bare SERVICE/USERNAME, as `secrets set` takes it
    assert secrets_call(secret_service, "read", "X", "keyring:rbt-test/round-trip")[0] == {"result": second}


def test_service_with_slashes(secret_service: dict[str, str]) -> None:
    value = new_value()
    store(secret_service, "keyring:https://vault.example/team/deploy-bot", value)
    answer, _ = secrets_call(secret_service, "read", "X", "keyring:https://vault.example/team/deploy-bot")
    assert answer == {"result": value}


def test_missing_secret_reads_as_none(secret_service: dict[str, str]) -> None:
    assert secrets_call(secret_service, "read", "X", "keyring:rbt-test/never-stored")[0] == {"result": None}


def test_env_refs(secret_service: dict[str, str]) -> None:
    value = new_value()
    env = {**secret_service, "RBT_FROM_ENV": value, "RBT_EMPTY": ""}
    assert secrets_call(env, "read", "X", "env:RBT_FROM_ENV")[0] == {"result": value}
    assert secrets_call(env, "read", "X", "env:RBT_UNSET_VARIABLE")[0] == {"result": None}
    assert secrets_call(env, "read", "X", "env:RBT_EMPTY")[0] == {"result": None}
    answer, log = secrets_call(env, "store", "env:RBT_FROM_ENV", stdin=value)
    assert "environment" in answer["error"]
    assert_leaks_nothing(value, answer, log)


def test_env_refs_need_no_keyring(secret_service: dict[str, str]) -> None:
    env = {k: v for k, v in secret_service.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    assert secrets_call({**env, "RBT_X": "v"}, "read", "X", "env:RBT_X")[0] == {"result": "v"}


def test_empty_value_is_refused(secret_service: dict[str, str]) -> None:
    answer, _ = secrets_call(secret_service, "store", "keyring:rbt-test/empty", stdin="")
    assert "empty" in answer["error"]


@pytest.mark.parametrize("change, backend, cause", [
    ({"DBUS_SESSION_BUS_ADDRESS": None}, "keyring.backends.fail.Keyring", "DBUS_SESSION_BUS_ADDRESS is not set"),
    ({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}, "keyring.backends.fail.Keyring",
     "no Secret Service on the D-Bus session bus"),
    ({"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}, "keyring.backends.fail.Keyring",
     "PYTHON_KEYRING_BACKEND"),
    ({"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}, "keyring.backends.null.Keyring",
     "PYTHON_KEYRING_BACKEND"),
])
def test_absent_backend_is_an_error_naming_it(secret_service: dict[str, str], change: dict[str, str | None],
                                              backend: str, cause: str) -> None:
    env = {k: v for k, v in {**secret_service, **change}.items() if v is not None}
    value = new_value()
    for op, args in (("read", ("DB_PASSWORD", "keyring:rbt-test/db")), ("store", ("keyring:rbt-test/db",))):
        answer, log = secrets_call(env, op, *args, stdin=value)
        assert backend in answer["error"] and cause in answer["error"], answer
        assert "gnome-keyring-daemon" in answer["error"] and "env:NAME" in answer["error"]  # what to do
        assert answer["chain"] == [f"SecretError({answer['error']!r})"]
        assert_leaks_nothing(value, answer, log)


@pytest.mark.parametrize("module, cls", [("file", "PlaintextKeyring"), ("file", "EncryptedKeyring"),
                                         ("Windows", "RegistryKeyring")])
def test_keyrings_alt_file_backends_are_refused(secret_service: dict[str, str], tmp_path: Path,
                                                module: str, cls: str) -> None:
    """A stand-in for keyrings.alt (not installed here) that would write the value to a file."""
    package = tmp_path / "keyrings" / "alt"
    package.mkdir(parents=True)
    store_file = tmp_path / "stored.txt"
    (package / f"{module}.py").write_text(textwrap.dedent(f"""
        from keyring.backend import KeyringBackend
        class {cls}(KeyringBackend):
            priority = 1
            def get_password(self, service, username):
                return open({str(store_file)!r}).read() if __import__("os").path.exists({str(store_file)!r}) else None
            def set_password(self, service, username, password):
                open({str(store_file)!r}, "w").write(password)
            def delete_password(self, service, username):
                pass
    """))
    env = {**secret_service, "PYTHONPATH": str(tmp_path), "PYTHON_KEYRING_BACKEND": f"keyrings.alt.{module}.{cls}"}
    value = new_value()
    answer, log = secrets_call(env, "store", "keyring:rbt-test/alt", stdin=value)
    assert f"keyrings.alt.{module}.{cls}" in answer["error"]
    assert_leaks_nothing(value, answer, log)
    assert not store_file.exists()
    store_file.write_text(value)
    answer, log = secrets_call(env, "read", "X", "keyring:rbt-test/alt")
    assert "no usable OS keyring" in answer["error"]
    assert_leaks_nothing(value, answer, log)


def test_refused_backend_classes() -> None:
    from keyring.backends import chainer, fail, null

    from runbook_tui.integrations.secrets import _refused

    plaintext = type("PlaintextKeyring", (), {})
    secret_service_like = type("Keyring", (), {})
    assert _refused(fail.Keyring()) and _refused(null.Keyring()) and _refused(plaintext())
    assert not _refused(secret_service_like())

    def chain(*members: object) -> object:
        return type("Chain", (chainer.ChainerBackend,), {"backends": list(members)})()

    assert _refused(chain(secret_service_like(), plaintext()))  # a read would fall through to the file
    assert _refused(chain())
    assert not _refused(chain(secret_service_like()))


def test_locked_collection_is_an_error_not_a_prompt_or_fallback() -> None:
    value = new_value()
    with running_secret_service() as env:  # its own daemon: locking must not leak into other tests
        store(env, "keyring:rbt-test/locked", value)
        assert secrets_call(env, "lock")[0] == {"result": "locked"}
        for op, args in (("read", ("DB_PASSWORD", "keyring:rbt-test/locked")),
                         ("store", ("keyring:rbt-test/locked",))):
            answer, log = secrets_call(env, op, *args, stdin=value)
            assert "locked" in answer["error"] and "SecretService" in answer["error"], answer
            assert "unlock" in answer["error"]
            if op == "read":
                assert "DB_PASSWORD" in answer["error"]
            assert answer["chain"] == [f"SecretError({answer['error']!r})"]
            assert_leaks_nothing(value, answer, log)


def test_check_secrets_reports_presence_never_values(secret_service: dict[str, str], tmp_path: Path) -> None:
    stored, from_env = new_value(), new_value()
    store(secret_service, "keyring:rbt-test/check-present", stored)
    book = tmp_path / "book.md"
    book.write_text(textwrap.dedent("""\
        ---
        secrets:
          PRESENT: "keyring:rbt-test/check-present"
          ABSENT: "keyring:rbt-test/check-absent"
          FROM_ENV: "env:RBT_CHECK_ENV"
          UNSET_ENV: "env:RBT_CHECK_UNSET"
        ---
        # Check
        ## Steps
        1. Look
           ```sh
           true
           ```
        """))
    answer, log = secrets_call({**secret_service, "RBT_CHECK_ENV": from_env}, "check", str(book))
    assert answer == {"result": [["PRESENT", True], ["ABSENT", False], ["FROM_ENV", True], ["UNSET_ENV", False]]}
    assert_leaks_nothing(stored, answer, log)
    assert_leaks_nothing(from_env, answer, log)


E2E_BOOK = """\
---
secrets:
  DB_PASSWORD: "keyring:rbt-test/db"
---
# Secret demo
## Steps
1. **Show it**
   ```sh
   echo "password is $DB_PASSWORD"
   ```
"""


def test_headless_run_redacts_a_keyring_secret(secret_service: dict[str, str], tmp_path: Path) -> None:
    value = new_value()
    store(secret_service, "keyring:rbt-test/db", value)
    book, transcript = tmp_path / "book.md", tmp_path / "t.jsonl"
    book.write_text(E2E_BOOK)
    done = rbt(secret_service, "run", str(book), "--yes", "--transcript", str(transcript))
    assert done.returncode == 0, done.stderr
    text = transcript.read_text(encoding="utf-8")
    assert "password is [REDACTED:DB_PASSWORD]" in text
    assert value not in text
    started = next(e for e in read_events(transcript) if e["type"] == "run.started")
    assert started["secrets"] == ["DB_PASSWORD"]
    assert value not in done.stdout and value not in done.stderr


def test_headless_run_without_the_secret_exits_2(secret_service: dict[str, str], tmp_path: Path) -> None:
    other = new_value()
    store(secret_service, "keyring:rbt-test/other", other)  # a value that must not show up either
    book = tmp_path / "book.md"
    book.write_text(E2E_BOOK.replace("rbt-test/db", "rbt-test/db-absent"))
    done = rbt(secret_service, "run", str(book), "--yes", "--transcript", str(tmp_path / "t.jsonl"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "DB_PASSWORD" in done.stderr and "rbt-test/db-absent" in done.stderr
    assert other not in done.stdout + done.stderr
    assert not (tmp_path / "t.jsonl").exists()  # nothing ran


def test_headless_run_without_a_keyring_exits_2(secret_service: dict[str, str], tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(E2E_BOOK)
    env = {**secret_service, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    done = rbt(env, "run", str(book), "--yes", "--transcript", str(tmp_path / "t.jsonl"))
    assert done.returncode == 2
    assert "keyring.backends.fail.Keyring" in done.stderr and "Traceback" not in done.stderr
