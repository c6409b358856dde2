"""Secret values from where the runbook says they live: the OS keyring or the environment.

A value is only ever returned to the caller, which puts it in a command's environment and
registers it with the redactor; it is never logged, and errors name the secret, not its value.
Errors are raised outside the `except` block that caught the backend's exception, so no
exception chain (`__context__`) carries a backend message that might quote a value.

Only a real OS keyring is used: the fail and null backends, and plaintext or encrypted-file
backends (keyrings.alt, keyrings.cryptfile), are refused with a SecretError saying what to do;
there is no fallback that would write a secret to a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from runbook_tui.model import Runbook, Secret

T = TypeVar("T")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFUSED_MODULES = ("keyrings.alt", "keyrings.cryptfile", "keyring.backends.fail", "keyring.backends.null")
_REFUSED_NAMES = re.compile(r"plaintext|encrypted|cryptfile|filekeyring", re.IGNORECASE)
_FIX = ("run inside a desktop session with an unlocked keyring, or start a Secret Service "
        "(gnome-keyring-daemon --unlock --components=secrets inside dbus-run-session), "
        "or give the secret as an env:NAME reference; file and plaintext keyrings are never used")


class SecretError(Exception):
    """A secret cannot be read (missing, locked or absent backend); the message says what to do.

    `summary` is the same problem in a few words, for a screen that shows one line and the
    message on request."""

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = summary or message


@dataclass(frozen=True)
class KeyringRef:
    service: str
    username: str

    def __str__(self) -> str:
        return f"keyring:{self.service}/{self.username}"


def parse_ref(ref: str) -> KeyringRef | str:
    """`keyring:service/username` -> KeyringRef; `env:NAME` -> the variable name.

    The username is the part after the last `/`, so a service may itself contain slashes
    (`keyring:https://host/user`). A bare `service/username` (as typed after `secrets set`)
    is a keyring reference too.
    """
    scheme, colon, rest = ref.partition(":")
    if scheme == "env" and _ENV_NAME.match(rest):
        return rest
    if not colon:
        rest = ref
    elif scheme != "keyring":
        rest = ""
    service, _, username = rest.rpartition("/")
    if service and username:
        return KeyringRef(service, username)
    raise SecretError(f"{ref!r} is not a secret reference (use keyring:SERVICE/USERNAME or env:NAME)")


def backend_name() -> str:
    """The dotted class name of the backend keyring chose (for messages and `secrets check`)."""
    import keyring

    backend = keyring.get_keyring()
    return f"{type(backend).__module__}.{type(backend).__name__}"


def _refused(backend: Any) -> bool:
    """True for a backend that cannot hold a secret, or would keep it in a file."""
    from keyring.backends.chainer import ChainerBackend

    if isinstance(backend, ChainerBackend):  # reads fall through to every chained backend
        return not backend.backends or any(_refused(b) for b in backend.backends)
    kind = type(backend)
    return kind.__module__.startswith(_REFUSED_MODULES) or bool(_REFUSED_NAMES.search(kind.__name__))


def _why_no_secret_service(backend: Any) -> str:
    """Why the Secret Service backend was not chosen, in the words of keyring or the environment."""
    from keyring.backends.chainer import ChainerBackend

    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return f"PYTHON_KEYRING_BACKEND={os.environ['PYTHON_KEYRING_BACKEND']} selects it"
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return "DBUS_SESSION_BUS_ADDRESS is not set: there is no D-Bus session"
    try:
        from keyring.backends import SecretService

        SecretService.Keyring.priority  # noqa: B018 - raises with the reason when unavailable
    except Exception as exc:  # noqa: BLE001 - any failure here is the diagnosis
        return f"no Secret Service on the D-Bus session bus: {exc or type(exc).__name__}"
    if isinstance(backend, ChainerBackend):
        return "it would fall back to a file keyring such as keyrings.alt; uninstall that or set " \
               "PYTHON_KEYRING_BACKEND=keyring.backends.SecretService.Keyring"
    return "a keyring configuration file (keyringrc.cfg) selects it"


def _usable_backend() -> None:
    """Refuse backends that would not keep a secret secret (or cannot hold one at all)."""
    import keyring

    backend = keyring.get_keyring()
    if _refused(backend):
        raise SecretError(f"no usable OS keyring: found {backend_name()} ({_why_no_secret_service(backend)}); {_FIX}",
                          "no usable OS keyring here")


def _guarded(action: str, call: Callable[[], T], value: str | None = None) -> T:
    """Run a keyring call; turn its failures into a SecretError that quotes no value."""
    import keyring.errors

    try:
        return call()
    except keyring.errors.KeyringLocked:
        message = (f"the keyring ({backend_name()}) is locked, so it cannot {action}; unlock it "
                   "(log in to the desktop session, or run gnome-keyring-daemon --unlock) and try again")
        summary = "the keyring is locked"
    except keyring.errors.KeyringError as exc:  # its own messages describe the backend, not values
        detail = str(exc) if not value or value not in str(exc) else "details withheld"
        message = f"cannot {action} with {backend_name()}: {type(exc).__name__}: {detail}"
        summary = f"the keyring failed ({type(exc).__name__})"
    except Exception as exc:  # noqa: BLE001 - D-Bus, decoding...: the type only, never the text
        message = f"cannot {action} with {backend_name()}: {type(exc).__name__}"
        summary = f"the keyring failed ({type(exc).__name__})"
    raise SecretError(message, summary)


def read_secret(secret: Secret) -> str | None:
    """The secret's value, or None when it is not stored (or its variable is unset or empty)."""
    where = parse_ref(secret.ref)
    if isinstance(where, str):
        return os.environ.get(where) or None
    import keyring

    _usable_backend()
    value = _guarded(f"read {secret.name} ({where})", lambda: keyring.get_password(where.service, where.username))
    return value or None


def store_secret(ref: str, value: str) -> KeyringRef:
    """Store a value under `keyring:SERVICE/USERNAME` (or bare `SERVICE/USERNAME`), then read it back.

    Reading back proves the keyring really kept it (a backend may accept and drop a value).
    """
    where = parse_ref(ref)
    if isinstance(where, str):
        raise SecretError(f"{ref} is read from the environment variable {where}; there is nothing to store")
    if not value:
        raise SecretError(f"refusing to store an empty value under {where}")
    import keyring

    _usable_backend()
    _guarded(f"store {where}", lambda: keyring.set_password(where.service, where.username, value), value)
    if _guarded(f"read back {where}", lambda: keyring.get_password(where.service, where.username)) != value:
        raise SecretError(f"{backend_name()} accepted {where} but does not return it; it was not stored")
    return where


def check_secrets(runbook: Runbook) -> list[tuple[Secret, bool]]:
    """Each declared secret and whether a value is available, for `secrets check` (never values).

    Raises SecretError when a keyring reference cannot be looked up at all (no usable or a
    locked keyring): "cannot tell" is not "missing".
    """
    return [(secret, read_secret(secret) is not None) for secret in runbook.secrets]
