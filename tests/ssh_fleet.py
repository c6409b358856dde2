"""A fleet of real OpenSSH servers for the SSH target tests (issue 15).

``partitioned_host`` adds one host in a network namespace of its own, behind a veth pair a test
can cut (packets then vanish, as when a host falls off the network).

The session-scoped ``ssh_fleet`` fixture starts :data:`FLEET_SIZE` ``sshd`` processes (Debian's
openssh-server) on 127.0.0.1, each with its own host key, config and pid file under a fresh
temp directory, all trusting one user key generated for this session. It writes a home
directory of the test's own: ``.ssh/config`` (``web-01`` ... ``web-20`` with HostName, Port,
User, IdentityFile; ``jumped-XX`` through ``web-01`` by ProxyJump), ``.ssh/known_hosts`` and the
key; tests point ``$HOME`` there (asyncssh reads ``~``) and run OpenSSH's own client with
``-F`` (see :meth:`SshFleet.ssh_argv`).

Registered in tests/conftest.py. When sshd or ssh-keygen is missing, or we are not root (sshd
needs its privilege-separation directory and to switch users), the tests skip, or fail when
``RUNBOOK_TUI_REQUIRE_SSH=1`` (CI sets it).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FLEET_SIZE = 20
# Ports derive from this helper's name ("ssh") so parallel sessions of other helpers never collide;
# the fixture looks for FLEET_SIZE free ports from here on.
BASE_PORT = 42200
START_TIMEOUT = 20.0
_SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin")


def unavailable(reason: str) -> None:
    """Skip, or fail when the environment says the SSH tests must run."""
    if os.environ.get("RUNBOOK_TUI_REQUIRE_SSH") == "1":
        pytest.fail(f"{reason} (RUNBOOK_TUI_REQUIRE_SSH=1)", pytrace=False)
    pytest.skip(reason)


def _which(program: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for directory in _SBIN:  # root's PATH may lack sbin in a CI shell
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    port = BASE_PORT
    while len(ports) < count and port < BASE_PORT + 1000:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                ports.append(port)
            except OSError:
                pass
        port += 1
    return ports


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        out.append(pid)
        queue.extend(children.get(pid, []))
    return out


@dataclass
class SshServer:
    """One running sshd: its name in the fleet's ssh config, port and host key."""

    name: str
    port: int
    directory: Path
    host_key_line: str  # "ssh-ed25519 AAAA..." (the public key, as known_hosts holds it)
    process: subprocess.Popen[bytes]
    log: Path

    def signal_all(self, sig: int) -> None:
        """``sig`` to the listener and everything it started (sessions and their commands)."""
        for pid in _descendants(self.process.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def freeze(self) -> None:
        """The host hangs: every process of this server stops answering (SIGSTOP)."""
        self.signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_all(signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()
        pids = _descendants(self.process.pid)
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)


@dataclass
class SshFleet:
    """The servers plus the client side: a home directory with .ssh/config, known_hosts and key."""

    root: Path
    home: Path
    user: str
    key: Path
    servers: list[SshServer] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.home / ".ssh" / "config"

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    def names(self, count: int | None = None) -> list[str]:
        return [server.name for server in self.servers[:count]]

    def server(self, name: str) -> SshServer:
        return next(server for server in self.servers if server.name == name)

    def ssh_argv(self, name: str, command: str) -> list[str]:
        """OpenSSH's own client on one fleet host (the benchmark's baseline)."""
        return ["ssh", "-F", str(self.config), "-o", "BatchMode=yes", name, command]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    algorithm, blob = Path(f"{path}.pub").read_text().split()[:2]
    return f"{algorithm} {blob}"


def _sshd_config(directory: Path, port: int, authorized: Path, jump: bool, listen: str = "127.0.0.1") -> str:
    # MaxSessions: every command on a host is one session on the shared connection; OpenSSH's
    # default (10) would cap how many a test may run at once on one host.
    return "\n".join([
        f"Port {port}",
        f"ListenAddress {listen}",
        f"HostKey {directory / 'host_ed25519'}",
        f"PidFile {directory / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "AllowTcpForwarding yes",
        "MaxSessions 64",
        "MaxStartups 64",
        "PrintMotd no",
        # the jump host logs its forwardings, so the ProxyJump test can see it was used
        f"LogLevel {'DEBUG1' if jump else 'ERROR'}",
        "",
    ])


def _wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.settimeout(2)
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd on port {port} did not answer within {START_TIMEOUT:g}s")


def start_fleet(size: int = FLEET_SIZE) -> SshFleet:
    sshd = _which("sshd")
    if sshd is None or _which("ssh-keygen") is None or _which("ssh") is None:
        unavailable("OpenSSH server/client not installed (apt-get install openssh-server openssh-client)")
    if os.geteuid() != 0:
        unavailable("the sshd fleet needs root (privilege separation directory, switching users)")
    assert sshd is not None
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
    root = Path(tempfile.mkdtemp(prefix="rbt-sshd-"))
    home = root / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = home / ".ssh" / "id_fleet"
    user_key = _keygen(key)
    authorized = root / "authorized_keys"
    authorized.write_text(user_key + "\n")
    ports = _free_ports(size)
    if len(ports) < size:
        unavailable(f"no {size} free ports from {BASE_PORT}")
    user = getpass.getuser()
    fleet = SshFleet(root=root, home=home, user=user, key=key)

    started: list[SshServer] = []
    lock = threading.Lock()
    spare = iter(_free_ports(size + 20)[size:])  # for a port another process took since the probe

    def start(index: int) -> SshServer:
        name = f"web-{index + 1:02d}"
        directory = root / name
        directory.mkdir()
        host_key = _keygen(directory / "host_ed25519")
        config = directory / "sshd_config"
        log = directory / "sshd.log"
        port = ports[index]
        for _attempt in range(3):
            config.write_text(_sshd_config(directory, port, authorized, jump=index == 0))
            process = subprocess.Popen([sshd, "-D", "-f", str(config), "-E", str(log)], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            server = SshServer(name=name, port=port, directory=directory, host_key_line=host_key,
                               process=process, log=log)
            with lock:
                started.append(server)
            try:
                _wait_listening(port, process, time.monotonic() + START_TIMEOUT)
                return server
            except RuntimeError:
                if process.poll() is None or "already in use" not in log.read_text(errors="replace"):
                    raise RuntimeError(f"{name}: {log.read_text(errors='replace')[-500:]}") from None
                with lock:
                    port = next(spare)
        raise RuntimeError(f"{name}: no free port")

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            fleet.servers = list(pool.map(start, range(size)))
    except BaseException:
        fleet.servers = started  # every sshd started so far is stopped, not leaked
        stop_fleet(fleet)
        raise
    blocks = []
    for server in fleet.servers:
        blocks.append(f"Host {server.name}\n  HostName 127.0.0.1\n  Port {server.port}\n  User {user}\n"
                      f"  IdentityFile {key}\n  IdentitiesOnly yes\n")
        blocks.append(f"Host jumped-{server.name.removeprefix('web-')}\n  HostName 127.0.0.1\n  Port {server.port}\n"
                      f"  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  ProxyJump {fleet.servers[0].name}\n")
    # OpenSSH's client reads ~ from the password database, not $HOME: name the file for it.
    blocks.append(f"Host *\n  UserKnownHostsFile {fleet.known_hosts}\n  BatchMode yes\n")
    fleet.config.write_text("\n".join(blocks))
    fleet.known_hosts.write_text("".join(f"[127.0.0.1]:{s.port} {s.host_key_line}\n" for s in fleet.servers))
    return fleet


def stop_fleet(fleet: SshFleet) -> None:
    for server in fleet.servers:
        try:
            server.stop()
        except (OSError, subprocess.TimeoutExpired):
            pass
    shutil.rmtree(fleet.root, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_fleet() -> Iterator[SshFleet]:
    """FLEET_SIZE real sshd servers and a client home for them; torn down after the session."""
    fleet = start_fleet()
    try:
        yield fleet
    finally:
        stop_fleet(fleet)


@pytest.fixture
def fleet_home(ssh_fleet: SshFleet, monkeypatch: pytest.MonkeyPatch) -> SshFleet:
    """The fleet, with $HOME at its client home (asyncssh reads ~/.ssh) and no operator agent."""
    monkeypatch.setenv("HOME", str(ssh_fleet.home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return ssh_fleet


@dataclass
class PartitionedHost:
    """An sshd in a network namespace of its own, reached over a veth pair that a test can cut."""

    name: str
    namespace: str
    link: str  # the host side of the veth pair
    process: subprocess.Popen[bytes]

    def cut(self) -> None:
        """Drop the link: packets vanish (no RST, no FIN), as when a host falls off the network."""
        subprocess.run(["ip", "link", "set", self.link, "down"], check=True)


@pytest.fixture
def partitioned_host(fleet_home: SshFleet) -> Iterator[PartitionedHost]:
    """One more host, ``partitioned``, in its own network namespace (skips where netns is not allowed)."""
    ip, sshd = _which("ip"), _which("sshd")
    if ip is None or sshd is None:
        pytest.skip("iproute2 (ip) not installed: no network namespace for the partition test")
    tag = f"{os.getpid() % 100000}"
    namespace, link, peer = f"rbt-ssh-{tag}", f"rbtv{tag}a", f"rbtv{tag}b"
    subnet = f"10.231.{os.getpid() % 250}"  # a /30 no real network here uses, per test process
    if subprocess.run([ip, "netns", "add", namespace], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (needs CAP_SYS_ADMIN)")
    process = None
    try:
        for argv in ([ip, "link", "add", link, "type", "veth", "peer", "name", peer],
                     [ip, "link", "set", peer, "netns", namespace],
                     [ip, "addr", "add", f"{subnet}.1/30", "dev", link],
                     [ip, "link", "set", link, "up"],
                     [ip, "-n", namespace, "addr", "add", f"{subnet}.2/30", "dev", peer],
                     [ip, "-n", namespace, "link", "set", peer, "up"],
                     [ip, "-n", namespace, "link", "set", "lo", "up"]):
            subprocess.run(argv, check=True, capture_output=True)
        directory = fleet_home.root / namespace  # kept for the session: one host key, one known_hosts line
        first_use = not directory.exists()
        if first_use:
            directory.mkdir()
            host_key = _keygen(directory / "host_ed25519")
            with open(fleet_home.known_hosts, "a") as handle:
                handle.write(f"{subnet}.2 {host_key}\n")
            with open(fleet_home.config, "a") as handle:
                handle.write(f"\nHost partitioned\n  HostName {subnet}.2\n  User {fleet_home.user}\n"
                             f"  IdentityFile {fleet_home.key}\n  IdentitiesOnly yes\n")
        config = directory / "sshd_config"
        config.write_text(_sshd_config(directory, 22, fleet_home.root / "authorized_keys", jump=False,
                                       listen=f"{subnet}.2"))
        process = subprocess.Popen([ip, "netns", "exec", namespace, sshd, "-D", "-f", str(config),
                                    "-E", str(directory / "sshd.log")], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((f"{subnet}.2", 22), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        yield PartitionedHost("partitioned", namespace, link, process)
    finally:
        if process is not None:
            for pid in reversed(_descendants(process.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.wait(10)
        subprocess.run([ip, "netns", "del", namespace], capture_output=True)  # takes the veth pair with it
        subprocess.run([ip, "link", "del", link], capture_output=True)
