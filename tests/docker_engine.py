"""A private Docker engine for the docker integration tests (DESIGN.md, "Integrations").

The session-scoped ``docker_engine`` fixture starts its own ``dockerd`` (Debian's docker.io) on
a socket, data root and exec root under a fresh ``/tmp/rbt-*`` directory, so it never touches
an engine the machine already runs, imports a tiny image built from ``busybox-static``, and
tears everything down again: containers, daemon, mounts, directories.

Registered in tests/conftest.py; ask for ``docker_engine`` in a test. When dockerd,
busybox-static or root is missing the tests are skipped, or fail when
``RUNBOOK_TUI_REQUIRE_DOCKER=1`` (CI sets it so a broken runner cannot pass by skipping).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

IMAGE_REPO = "runbook-tui-busybox"
IMAGE_TAG = "test"
IMAGE = f"{IMAGE_REPO}:{IMAGE_TAG}"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
_SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")
_counter = itertools.count(1)


def unavailable(reason: str) -> None:
    """Skip, or fail when the environment says docker tests must run."""
    if os.environ.get("RUNBOOK_TUI_REQUIRE_DOCKER") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _which(program: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for directory in _SBIN:  # root's PATH may lack sbin in a container or a CI shell
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _is_static_elf(path: str) -> bool:
    """True for an ELF executable without a PT_INTERP header (needs no dynamic loader)."""
    with open(path, "rb") as handle:
        head = handle.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64, little = head[4] == 2, head[5] == 1
        order = "<" if little else ">"
        if is64:
            phoff, = struct.unpack_from(order + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
        else:
            phoff, = struct.unpack_from(order + "I", head, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    for index in range(phnum):
        p_type, = struct.unpack_from(order + "I", table, index * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def busybox_rootfs_tar(busybox: str) -> bytes:
    """A root file system holding only a static busybox and a symlink per applet, as a tar."""
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        now = time.time()

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
            tar.addfile(info)

        for name in ("bin", "dev", "etc", "proc", "root", "sys", "usr", "usr/bin", "usr/sbin", "sbin"):
            add_dir(name)
        add_dir("tmp", 0o1777)
        with open(busybox, "rb") as handle:
            data = handle.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode, info.mtime = len(data), 0o755, now
        tar.addfile(info, io.BytesIO(data))
        for applet in sorted(set(applets) - {"busybox"}):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "busybox", now
            tar.addfile(link)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n")):
            payload = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(payload), 0o644, now
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@dataclass
class DockerEngine:
    """A running private engine: a client, its address, a test image and cleanup helpers."""

    client: Any  # docker.DockerClient
    base_url: str
    image: str
    root: Path
    log_path: Path
    env: dict[str, str]
    created: list[str] = field(default_factory=list)

    def unique(self, prefix: str) -> str:
        """A container name (or compose service) no other test uses."""
        return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:6]}"

    def run(
        self,
        command: str | Sequence[str],
        *,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        tty: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Start a detached container of the test image, network disabled, removed at teardown.

        A string command runs under ``sh -c``. ``init=True`` is the default so ``stop()`` works
        quickly (a shell as PID 1 would ignore SIGTERM and make every stop take its timeout).
        """
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        kwargs.setdefault("init", True)
        container = self.client.containers.run(
            self.image, argv, name=name, labels=dict(labels or {}), tty=tty,
            detach=True, network_mode="none", **kwargs,
        )
        self.created.append(container.id)
        return container

    def remove(self, container: Any) -> None:
        """Force-remove a container; fine if it is already gone."""
        import docker

        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    try:
        with open("/proc/self/mounts") as handle:
            points = [line.split()[1].encode().decode("unicode_escape") for line in handle]
    except OSError:
        return []
    return [p for p in points if p.startswith(prefix) or p == str(root)]


def _stop_daemon(proc: subprocess.Popen[bytes], pidfile: Path) -> None:
    """SIGTERM (dockerd then stops its containers and its containerd), wait, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    # A SIGKILLed dockerd leaves its managed containerd behind: stop that one too, by its pid file.
    containerd_pid = pidfile.parent / "exec" / "containerd" / "containerd.pid"
    try:
        pid = int(containerd_pid.read_text().strip())
    except (OSError, ValueError):
        return
    try:  # only if that pid is still the containerd of this engine (pids get reused)
        if str(pidfile.parent) not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return
    except OSError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _cleanup_dir(root: Path) -> None:
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


def _start(root: Path, dockerd: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    sock = root / "d.sock"
    log_path = root / "dockerd.log"
    config = root / "daemon.json"
    config.write_text(json.dumps({}))  # never pick up /etc/docker/daemon.json
    # containerd namespaces allow only [A-Za-z0-9] runs joined by single . _ or -
    namespace = "rbt" + "".join(c for c in root.name.removeprefix("rbt-") if c.isalnum())
    argv = [
        dockerd,
        "--host", f"unix://{sock}",
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(root / "d.pid"),
        "--config-file", str(config),
        "--containerd-namespace", namespace,
        "--containerd-plugins-namespace", namespace + "-plugins",
        "--iptables=false",
        "--bridge=none",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    return proc, f"unix://{sock}", log_path


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> Any:
    import docker

    deadline = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            unavailable(f"dockerd exited with {proc.returncode} while starting:\n{_tail(log_path, 30)}")
        try:
            client = docker.DockerClient(base_url=base_url, timeout=30)
            client.ping()
            return client
        except Exception as exc:  # not listening yet
            last_error = exc
            time.sleep(0.1)
    unavailable(f"dockerd did not answer at {base_url} within {START_TIMEOUT:.0f}s ({last_error}):\n"
                f"{_tail(log_path, 30)}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private dockerd with the busybox test image; everything is removed at the end."""
    dockerd = _which("dockerd")
    if dockerd is None:
        unavailable("dockerd not installed: apt-get install docker.io")
    busybox = next((p for p in (_which("busybox"), "/bin/busybox") if p and os.path.exists(p)), None)
    if busybox is None or not _is_static_elf(busybox):
        unavailable("a static busybox is needed for the test image: apt-get install busybox-static")
    if os.geteuid() != 0:
        unavailable("a private dockerd needs root")
    assert dockerd is not None and busybox is not None
    root = Path(tempfile.mkdtemp(prefix="rbt-", dir="/tmp"))  # short: unix socket paths are limited
    proc: subprocess.Popen[bytes] | None = None
    engine: DockerEngine | None = None
    client: Any = None
    # A CI timeout usually sends SIGTERM: turn it into KeyboardInterrupt so pytest still runs this
    # teardown and no dockerd outlives the tests.
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        try:
            signal.signal(signal.SIGTERM, _interrupt)
        except ValueError:  # not the main thread
            pass
    try:
        proc, base_url, log_path = _start(root, dockerd)
        client = _wait_ready(proc, base_url, log_path)
        client.api.import_image_from_data(
            busybox_rootfs_tar(busybox), repository=IMAGE_REPO, tag=IMAGE_TAG,
            changes=["ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["sh"]'],
        )
        env = {k: v for k, v in os.environ.items()
               if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")}
        env["DOCKER_HOST"] = base_url
        engine = DockerEngine(client=client, base_url=base_url, image=IMAGE, root=root,
                              log_path=log_path, env=env)
        yield engine
    finally:
        if client is not None:
            for container_id in engine.created if engine is not None else ():
                try:
                    client.api.remove_container(container_id, force=True)
                except Exception:
                    pass  # already removed by its test
            try:  # and anything else in this private engine
                for container in client.containers.list(all=True, sparse=True):
                    try:
                        client.api.remove_container(container.id, force=True)
                    except Exception:
                        pass
            except Exception:
                pass
            client.close()
        if proc is not None:
            _stop_daemon(proc, root / "d.pid")
        _cleanup_dir(root)
        if signal.getsignal(signal.SIGTERM) is _interrupt:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
