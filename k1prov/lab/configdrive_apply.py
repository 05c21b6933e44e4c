"""What a lab host takes from its config drive, and how it gets there.

A lab host is configured only from an OpenStack config drive, as a real node with
cloud-init would be: an ISO9660 image labelled `config-2` (Rock Ridge and/or Joliet, as
`genisoimage -J -r` or openstack.baremetal.configdrive.build make it), or that ISO
gzipped and base64-encoded as Ironic keeps it in instance_info.configdrive. Read:

openstack/latest/meta_data.json
    hostname (verbatim: uts name and /etc/hostname); every value of public_keys goes
    to /root/.ssh/authorized_keys.
openstack/latest/network_data.json
    the first network of type "ipv4" (static; the lab has no DHCP for hosts):
    ip_address with netmask (or "10.251.0.11/24"), the gateway of the default route.
openstack/latest/user_data
    #cloud-config with ssh_keys (ed25519/ecdsa/rsa _private and _public: the host
    keys, in cloud-init's own format so a real image applies the same drive) and an
    optional ssh_authorized_keys (added to public_keys). No host keys: the host makes
    an ed25519 key at boot, and its fingerprint cannot be pinned.

`config_drive_parts(config)` returns these three documents for a HostConfig, for
openstack.baremetal.configdrive.build or Ironic's dict form of a configdrive;
`build_config_drive_iso(config)` makes the ISO with k1prov.configdrive's builder
(pycdlib), the same one a deploy sends.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from k1prov.atomic_file import write_atomic
from k1prov.configdrive import ConfigDriveError, config_drive_iso_bytes, parse_config_drive
from k1prov.errors import ConfigError

HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
_HOSTNAME = re.compile(r"^(?=.{1,63}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9-]+)*$")
_DRIVE_FILES = ("meta_data.json", "network_data.json", "user_data")


@dataclass(frozen=True)
class HostConfig:
    """What a config drive tells a lab host: its name, static address and SSH keys."""

    hostname: str
    address: str
    prefix: int
    gateway: str | None = None
    authorized_keys: tuple[str, ...] = ()
    # key type -> (private key in OpenSSH PEM, public key line)
    ssh_host_keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self):
        if not _HOSTNAME.match(self.hostname):
            raise ConfigError(f"host config: bad hostname {self.hostname!r}")
        try:
            interface = ipaddress.IPv4Interface(f"{self.address}/{self.prefix}")
            if self.gateway is not None and ipaddress.IPv4Address(self.gateway) not in interface.network:
                raise ConfigError(f"host config: gateway {self.gateway} is outside {interface.network}")
        except ValueError as exc:
            raise ConfigError(f"host config: {exc}") from None
        unknown = set(self.ssh_host_keys) - set(HOST_KEY_TYPES)
        if unknown:
            raise ConfigError(f"host config: unsupported host key types {sorted(unknown)}")
        object.__setattr__(self, "authorized_keys", tuple(k.strip() for k in self.authorized_keys))


def config_drive_parts(config: HostConfig) -> dict:
    """meta_data, network_data (dicts) and user_data (bytes) of the drive for `config`."""
    meta_data = {
        "uuid": config.hostname,
        "name": config.hostname,
        "hostname": config.hostname,
        "public_keys": {f"key{i}": key for i, key in enumerate(config.authorized_keys)},
    }
    network = ipaddress.IPv4Interface(f"{config.address}/{config.prefix}")
    routes = []
    if config.gateway:
        routes.append({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": config.gateway})
    network_data = {
        "links": [{"id": "eth0", "type": "phy"}],
        "networks": [{"id": "network0", "type": "ipv4", "link": "eth0", "ip_address": config.address,
                      "netmask": str(network.netmask), "routes": routes}],
        "services": [],
    }
    ssh_keys = {}
    for kind, (private, public) in config.ssh_host_keys.items():
        ssh_keys[f"{kind}_private"] = private
        ssh_keys[f"{kind}_public"] = public.strip()
    user_data = b"#cloud-config\n" + yaml.safe_dump({"ssh_keys": ssh_keys}, sort_keys=True).encode()
    return {"meta_data": meta_data, "network_data": network_data, "user_data": user_data}


def build_config_drive_iso(config: HostConfig) -> bytes:
    """The config drive for `config` as ISO9660 bytes (Rock Ridge + Joliet, label config-2),
    made by k1prov.configdrive's builder, the one a deploy sends."""
    return config_drive_iso_bytes(config_drive_parts(config))


def host_config_from_config_drive(source: Path | str | bytes) -> HostConfig:
    """Read a config drive: an ISO file or directory path, ISO bytes, or Ironic's gzip+base64."""
    files = _drive_files(source)
    if "meta_data.json" not in files:
        raise ConfigError("config drive: no openstack/latest/meta_data.json")
    try:
        meta = json.loads(files["meta_data.json"])
        network = json.loads(files.get("network_data.json", b"{}"))
    except ValueError as exc:
        raise ConfigError(f"config drive: bad JSON: {exc}") from None
    hostname = meta.get("hostname") or meta.get("name")
    if not hostname:
        raise ConfigError("config drive: meta_data.json has no hostname")
    keys = meta.get("public_keys") or {}
    authorized = list(keys.values()) if isinstance(keys, dict) else list(keys)
    cloud_config = _cloud_config(files.get("user_data", b""))
    authorized += [k for k in cloud_config.get("ssh_authorized_keys") or [] if k not in authorized]
    host_keys = {}
    ssh_keys = cloud_config.get("ssh_keys") or {}
    for kind in HOST_KEY_TYPES:
        private, public = ssh_keys.get(f"{kind}_private"), ssh_keys.get(f"{kind}_public")
        if private and public:
            host_keys[kind] = (private, public)
    address, prefix, gateway = _static_ipv4(network)
    return HostConfig(hostname=hostname, address=address, prefix=prefix, gateway=gateway,
                      authorized_keys=tuple(authorized), ssh_host_keys=host_keys)


def apply_host_config(root: Path, config: HostConfig) -> None:
    """Write the config into a host's root: hostname, hosts, authorized_keys, SSH host keys.

    Host keys of types the config does not carry are removed, so a host never
    answers with a key left over from an earlier boot.
    """
    root = Path(root)
    _write(root / "etc/hostname", f"{config.hostname}\n", 0o644)
    _write(root / "etc/hosts", f"127.0.0.1\tlocalhost\n{config.address}\t{config.hostname}\n", 0o644)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    _write(ssh_dir / "authorized_keys", "".join(f"{key}\n" for key in config.authorized_keys), 0o600)
    etc_ssh = root / "etc/ssh"
    for old in etc_ssh.glob("ssh_host_*_key*"):
        old.unlink()
    for kind, (private, public) in config.ssh_host_keys.items():
        _write(etc_ssh / f"ssh_host_{kind}_key", private.rstrip("\n") + "\n", 0o600)
        _write(etc_ssh / f"ssh_host_{kind}_key.pub", public.strip() + "\n", 0o644)


def _write(path: Path, text: str, mode: int) -> None:
    # Replace, never write through: on an overlay the old file may be the image's.
    write_atomic(path, text, mode=mode, fsync=False)


def _drive_files(source: Path | str | bytes) -> dict[str, bytes]:
    """The files of openstack/latest, from a drive directory, an ISO file, ISO bytes or
    Ironic's gzip+base64 (read by k1prov.configdrive.parse_config_drive)."""
    if isinstance(source, Path) or (isinstance(source, str) and os.path.exists(source)):
        path = Path(source)
        if path.is_dir():
            latest = path / "openstack/latest"
            return {name: (latest / name).read_bytes() for name in _DRIVE_FILES if (latest / name).exists()}
        source = path.read_bytes()
    if isinstance(source, str):
        source = source.encode()
    try:
        files = parse_config_drive(bytes(source))
    except ConfigDriveError as exc:
        raise ConfigError(str(exc)) from None
    return {name: files[f"openstack/latest/{name}"] for name in _DRIVE_FILES
            if f"openstack/latest/{name}" in files}


def _cloud_config(user_data: bytes) -> dict:
    if not user_data.lstrip().startswith(b"#cloud-config"):
        return {}
    try:
        loaded = yaml.safe_load(user_data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config drive: bad cloud-config in user_data: {exc}") from None
    return loaded if isinstance(loaded, dict) else {}


def _static_ipv4(network_data: dict) -> tuple[str, int, str | None]:
    for net in network_data.get("networks") or []:
        if net.get("type") != "ipv4":
            continue
        try:
            address = net["ip_address"]
            if "/" in address:
                interface = ipaddress.IPv4Interface(address)
            else:
                interface = ipaddress.IPv4Interface(f"{address}/{net.get('netmask', '255.255.255.255')}")
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"config drive: bad ipv4 network {net.get('id')}: {exc}") from None
        gateway = net.get("gateway")
        for route in net.get("routes") or []:
            if route.get("network") == "0.0.0.0" and route.get("gateway"):
                gateway = route["gateway"]
        return str(interface.ip), interface.network.prefixlen, gateway
    raise ConfigError("config drive: network_data.json has no static ipv4 network")
