"""N plain sshd processes on distinct loopback addresses, for the fan-out benchmarks.

    with SshdFarm(200, workdir=Path("/tmp/farm")) as farm:
        farm.addresses      # ["127.0.1.1", ..., "127.0.1.200"], all on farm.port (22)
        farm.key            # client private key (authorized on every host)
        farm.known_hosts    # one line per address with the shared host key

Every host is a separate `sshd -D` on its own address, so every tool sees ordinary hosts
on the standard port (no per-host ports, which not every peer tool supports). One host
key and one authorized key are shared: generating 200 host keys would cost time and
prove nothing. Needs root (port 22, /run/sshd). Only loopback addresses are used:
127.0.1.1 upward (all of 127.0.0.0/8 is routed to lo on Linux, no setup needed).

Logins are root's, and by default with a home of the farm's own holding Debian's stock
root dot files (`login_rc="stock"`, sshd's SetEnv HOME): every SSH command runs the login
shell's rc file, and this machine's /root/.bashrc (pyenv's init here: ~100 ms of CPU a
shell) would make each farm "host" several times dearer than a real host and the figures
depend on whoever set up the machine. `login_rc="machine"` keeps root's own home.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
FIRST_ADDRESS = "127.0.1.1"
# How long one sshd may take to listen, and to exit after SIGTERM.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# Debian's root dot files (package base-files), as a freshly installed host has them.
STOCK_DOT_FILES = {".bashrc": Path("/usr/share/base-files/dot.bashrc"),
                   ".profile": Path("/usr/share/base-files/dot.profile")}
LOGIN_RCS = ("stock", "machine")


def farm_address(index: int, first: str = FIRST_ADDRESS) -> str:
    """The index-th (0-based) address, skipping .0 and .255 of each /24."""
    base = ipaddress.IPv4Address(first)
    block, offset = divmod((int(base) & 0xFF) - 1 + index, 254)
    address = ipaddress.IPv4Address((int(base) & ~0xFF) + block * 256 + offset + 1)
    if not address.is_loopback:
        raise ValueError(f"farm address {address} would leave 127.0.0.0/8")
    return str(address)


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, timeout=30)
    return Path(f"{path}.pub").read_text().strip()


def _listening(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((address, port)) == 0


class SshdFarm:
    def __init__(self, count: int, *, workdir: Path, port: int = 22, first: str = FIRST_ADDRESS,
                 max_startups: int = 1000, max_sessions: int = 64, login_rc: str = "stock"):
        if count < 1:
            raise ValueError("a farm needs at least one host")
        if login_rc not in LOGIN_RCS:
            raise ValueError(f"login_rc must be one of {LOGIN_RCS}, not {login_rc!r}")
        self.login_rc = login_rc
        self.count, self.workdir, self.port = count, Path(workdir), port
        self.addresses = [farm_address(i, first) for i in range(count)]
        self.max_startups, self.max_sessions = max_startups, max_sessions
        self.key = self.workdir / "id_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.config = self.workdir / "sshd_config"
        self.procs: dict[str, subprocess.Popen] = {}

    # ---- set-up ----------------------------------------------------------------------
    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for path in (self.key, Path(f"{self.key}.pub")):
            path.unlink(missing_ok=True)
        host_key = self.workdir / "ssh_host_ed25519_key"
        if not host_key.exists():
            _keygen(host_key)
        key_type, blob = Path(f"{host_key}.pub").read_text().split()[:2]
        (self.workdir / "authorized_keys").write_text(_keygen(self.key) + "\n")
        self.known_hosts.write_text("".join(
            f"{a if self.port == 22 else f'[{a}]:{self.port}'} {key_type} {blob}\n"
            for a in self.addresses))
        (self.workdir / "hosts").write_text("\n".join(self.addresses) + "\n")
        login = []
        if self.login_rc == "stock":
            home = self.workdir / "home"
            home.mkdir(exist_ok=True)
            for name, source in STOCK_DOT_FILES.items():
                (home / name).write_bytes(source.read_bytes())
            login = [f"SetEnv HOME={home}"]
        self.config.write_text("\n".join(login + [
            f"Port {self.port}", f"HostKey {host_key}",
            f"AuthorizedKeysFile {self.workdir}/authorized_keys",
            "PidFile none", "UsePAM no", "UseDNS no", "StrictModes no",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "PrintMotd no", "PrintLastLog no",
            # Every peer tool connects at once: sshd must not drop (or delay) handshakes.
            f"MaxStartups {self.max_startups}", f"MaxSessions {self.max_sessions}",
            "LoginGraceTime 60", "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))

    def _start_one(self, address: str) -> subprocess.Popen:
        with open(self.workdir / f"sshd-{address}.log", "ab") as log:
            return subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config),
                                     "-o", f"ListenAddress={address}"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log)

    def _wait_listening(self, addresses: list[str]) -> None:
        until = time.monotonic() + START_TIMEOUT + 0.02 * len(addresses)
        pending = list(addresses)
        while pending:
            if time.monotonic() > until:
                raise RuntimeError(f"sshd not listening on {len(pending)} address(es), "
                                   f"e.g. {pending[0]} (see {self.workdir}/sshd-*.log)")
            for address in list(pending):
                proc = self.procs[address]
                if proc.poll() is not None:
                    log = (self.workdir / f"sshd-{address}.log").read_text()[-400:]
                    raise RuntimeError(f"sshd on {address} exited: {log}")
                if _listening(address, self.port):
                    pending.remove(address)
            if pending:
                time.sleep(0.05)

    def start(self) -> "SshdFarm":
        if os.geteuid() != 0:
            raise RuntimeError("the sshd farm needs root")
        if not os.path.exists(SSHD):
            raise RuntimeError(f"{SSHD} missing (apt-get install openssh-server)")
        os.makedirs("/run/sshd", exist_ok=True)
        self._write_files()
        busy = [a for a in self.addresses if _listening(a, self.port)]
        if busy:
            raise RuntimeError(f"something already listens on {busy[0]}:{self.port}")
        try:
            for address in self.addresses:
                self.procs[address] = self._start_one(address)
            self._wait_listening(self.addresses)
        except BaseException:
            self.stop()
            raise
        return self

    # ---- tear-down -------------------------------------------------------------------
    def stop_host(self, address: str) -> None:
        """Stop one host's sshd (its address then refuses connections)."""
        proc = self.procs.pop(address, None)
        if proc is not None:
            _terminate([proc])

    def stop(self) -> None:
        procs, self.procs = list(self.procs.values()), {}
        _terminate(procs)

    def __enter__(self) -> "SshdFarm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _terminate(procs: list[subprocess.Popen]) -> None:
    # The listener only: its per-connection children exit with their sessions.
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    until = time.monotonic() + STOP_TIMEOUT
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
