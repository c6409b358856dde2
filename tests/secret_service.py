"""A real Secret Service for tests: gnome-keyring-daemon on a private D-Bus session bus.

keyring picks its backend when it is imported, so tests run the code under test in a
subprocess with the environment this yields. The bus has its own config with no service
directories, so nothing is D-Bus-activated behind our back: the only processes are the two
started here, and teardown stops exactly those (by pid).

Missing binaries or Python modules skip the tests, or fail them when
RUNBOOK_TUI_REQUIRE_KEYRING=1 (CI sets it, so a broken image cannot pass silently).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"
KEYRING_PASSWORD = "rbt-test-login-password"
_START_TIMEOUT = 10.0

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={runtime}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

_PROBE = ("import keyring; b = keyring.get_keyring(); "
          "print(type(b).__module__ + '.' + type(b).__name__)")


def unavailable(reason: str) -> None:
    """Skip, or fail when the environment promises a keyring."""
    if os.environ.get("RUNBOOK_TUI_REQUIRE_KEYRING") == "1":
        pytest.fail(f"{reason} (RUNBOOK_TUI_REQUIRE_KEYRING=1)")
    pytest.skip(reason)


def backend_in(env: dict[str, str]) -> str:
    """The keyring backend a fresh interpreter resolves under `env`."""
    result = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=30)
    return result.stdout.strip() or result.stderr.strip()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop one process we started: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_for_secrets_name(address: str, daemon: subprocess.Popen[bytes], log: Path) -> None:
    """Block until org.freedesktop.secrets is owned on the bus (the daemon is ready)."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")
    deadline = time.monotonic() + _START_TIMEOUT
    with open_dbus_connection(address) as connection:
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                pytest.fail(f"gnome-keyring-daemon exited with {daemon.returncode}: {log.read_text(errors='replace')}")
            call = new_method_call(bus, "NameHasOwner", "s", ("org.freedesktop.secrets",))
            reply = connection.send_and_get_reply(call)
            if reply.body[0]:
                return
            time.sleep(0.05)
    pytest.fail(f"gnome-keyring-daemon did not claim org.freedesktop.secrets in {_START_TIMEOUT}s: {log.read_text()}")


@contextmanager
def running_secret_service() -> Iterator[dict[str, str]]:
    """Start bus + keyring daemon in a fresh HOME; yield a full environment for subprocesses."""
    binaries = {name: shutil.which(name) or "" for name in ("dbus-daemon", "gnome-keyring-daemon")}
    missing = [name for name, path in binaries.items() if not path]
    if missing:
        unavailable(f"{' and '.join(missing)} not installed (apt-get install -y gnome-keyring dbus)")
    try:
        import jeepney  # noqa: F401
        import secretstorage  # noqa: F401
    except ImportError as exc:
        unavailable(f"keyring's Secret Service backend cannot load: {exc}")

    root = Path(tempfile.mkdtemp(prefix="rbt-ss-"))  # short: a D-Bus socket path must fit in 108 bytes
    home, runtime = root / "home", root / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON_KEYRING", "KEYRING_", "GNOME_KEYRING", "DBUS_")) and k != "SSH_AUTH_SOCK"}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"), XDG_CACHE_HOME=str(home / ".cache"))
    (root / "bus.conf").write_text(_BUS_CONFIG.format(runtime=runtime))
    started: list[subprocess.Popen[bytes]] = []
    try:
        bus = subprocess.Popen([binaries["dbus-daemon"], "--nofork", f"--config-file={root / 'bus.conf'}",
                                "--print-address=1"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        started.append(bus)
        assert bus.stdout is not None
        address = bus.stdout.readline().decode().strip()
        bus.stdout.close()
        if not address:
            pytest.fail(f"dbus-daemon exited with {bus.wait(5)} before printing its address")
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        log = root / "gnome-keyring.log"
        with open(log, "wb") as log_file:
            daemon = subprocess.Popen([binaries["gnome-keyring-daemon"], "--foreground", "--unlock",
                                       "--components=secrets"], env=env, stdin=subprocess.PIPE,
                                      stdout=log_file, stderr=log_file)
        started.append(daemon)
        assert daemon.stdin is not None
        daemon.stdin.write(KEYRING_PASSWORD.encode())  # --unlock creates the login keyring with it
        daemon.stdin.close()
        _wait_for_secrets_name(address, daemon, log)
        found = backend_in(env)
        if found != SECRET_SERVICE_BACKEND:
            pytest.fail(f"keyring resolves to {found!r}, not {SECRET_SERVICE_BACKEND}, on the test Secret Service")
        yield env
    finally:
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def secret_service() -> Iterator[dict[str, str]]:
    """An unlocked Secret Service for the whole session; the env under which keyring uses it."""
    with running_secret_service() as env:
        yield env
