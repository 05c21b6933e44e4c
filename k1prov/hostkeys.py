"""Per-node SSH host keys, made by k1prov before the node is deployed.

Why k1prov makes them: the host key then reaches the node inside its config
drive (see configdrive.py) and the operator's side knows it before the first
connection, so k1prov never has to trust a key on first use. The keys live in
the cluster's state directory:

    STATE_DIR/hostkeys/<node>/ssh_host_ed25519_key       (0600, OpenSSH private key)
    STATE_DIR/hostkeys/<node>/ssh_host_ed25519_key.pub   (0644, "ssh-ed25519 AAAA... root@<node>")
    STATE_DIR/known_hosts                                 ("address,name ssh-ed25519 AAAA...")
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from k1prov.atomic_file import write_atomic
from k1prov.errors import ConfigError

KEY_NAME = "ssh_host_ed25519_key"
# Node names end up as directory names: keep them to what an inventory allows.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class HostKey:
    # The private key in OpenSSH format ("-----BEGIN OPENSSH PRIVATE KEY-----").
    private_openssh: str = field(repr=False)
    # "ssh-ed25519 AAAA... root@<node>", the form of an sshd .pub file.
    public_line: str

    @property
    def key_type(self) -> str:
        return self.public_line.split()[0]

    @property
    def public_blob(self) -> str:
        """The base64 part of the public line (what known_hosts compares)."""
        return self.public_line.split()[1]


def host_key_dir(state_dir: str | os.PathLike, node: str) -> Path:
    if not _SAFE_NAME.match(node):
        raise ConfigError(f"node name {node!r} cannot name a host key directory")
    return Path(state_dir) / "hostkeys" / node


def ensure_host_key(state_dir: str | os.PathLike, node: str, *, regenerate: bool = False) -> HostKey:
    """The node's ed25519 host key: read it when it exists, else generate and store it.

    A rebuild of a node keeps its key (the operator's known_hosts stays valid);
    `regenerate=True` replaces it, e.g. when a key may have leaked.
    """
    directory = host_key_dir(state_dir, node)
    private_path = directory / KEY_NAME
    public_path = directory / (KEY_NAME + ".pub")
    if private_path.exists() and not regenerate:
        return _load(private_path, public_path, node)

    key = ed25519.Ed25519PrivateKey.generate()
    host_key = _host_key_of(key, node)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(private_path, host_key.private_openssh, mode=0o600)
    write_atomic(public_path, host_key.public_line + "\n", mode=0o644)
    return host_key


def write_known_hosts(state_dir: str | os.PathLike, entries: dict[str, tuple[str, str]]) -> Path:
    """Write the cluster's own known_hosts: one "address,name keytype base64" line per node.

    `entries` maps a node name to (address, public_line). The file is for
    OpenSSH (`-o UserKnownHostsFile=PATH -o StrictHostKeyChecking=yes`) and for
    paramiko (`SSHClient.load_host_keys(PATH)`); it is replaced atomically so
    a concurrent reader never sees half of it.
    """
    lines = []
    for name in sorted(entries):
        address, public_line = entries[name]
        parts = public_line.split()
        if len(parts) < 2:
            raise ConfigError(f"{name}: not an SSH public key line: {public_line[:40]!r}")
        hosts = address if address == name else f"{address},{name}"
        lines.append(f"{hosts} {parts[0]} {parts[1]}\n")
    path = Path(state_dir) / "known_hosts"
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(lines), mode=0o644)
    return path


def _host_key_of(key: ed25519.Ed25519PrivateKey, node: str) -> HostKey:
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return HostKey(private_openssh=private, public_line=f"{public} root@{node}")


def _load(private_path: Path, public_path: Path, node: str) -> HostKey:
    try:
        key = serialization.load_ssh_private_key(private_path.read_bytes(), password=None)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{node}: cannot read host key {private_path}: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{node}: {private_path} is not an ed25519 key")
    host_key = _host_key_of(key, node)
    # The .pub file is derived data: rewrite it when it is missing or does not
    # match the private key (a hand edit, an interrupted earlier run).
    try:
        current = public_path.read_text().split()
    except OSError:
        current = []
    if current[:2] != host_key.public_line.split()[:2]:
        write_atomic(public_path, host_key.public_line + "\n", mode=0o644)
    # Keep the private key exactly as stored (re-serialising would change the
    # random check bytes of the OpenSSH format).
    return HostKey(private_openssh=private_path.read_text(), public_line=host_key.public_line)


