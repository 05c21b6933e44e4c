"""OpenStack config drives for Ironic: identity, SSH keys and a static address per node.

k1prov hands Ironic the JSON form of a config drive (API >= 1.56):
`set_node_provision_state(node, "active", config_drive=build_config_drive(...))`.
Ironic keeps that dict in `instance_info["configdrive"]` (unless
`[deploy]configdrive_use_object_store` is set) and turns it into an ISO 9660
image labelled "config-2" only when a deploy interface asks for the image
(`ironic.conductor.configdrive_utils.build_configdrive`, which runs
openstacksdk's `openstack.baremetal.configdrive.build` with genisoimage, mkisofs
or xorrisofs, then gzip + base64). `parse_config_drive` reads both forms.

How the node's identity travels, the standard cloud-init way:
- meta_data.json: uuid, name, hostname and public_keys (the operator's keys);
- network_data.json: one "phy" link (by MAC, with its MTU) and one "ipv4"
  network (address, netmask, default route, DNS services);
- user_data: `#cloud-config` with hostname, fqdn and `ssh_keys` holding the
  node's ed25519 host key pair made by k1prov (hostkeys.py), so the operator
  knows the host key before the first connection.

`ssh_deletekeys: true` together with `ssh_keys`: cloud-init first deletes the
host keys baked into the image (identical on every node made from it), then
writes k1prov's key, and generates no other type (`ssh_genkeytypes: []`), so
the node offers exactly the key recorded in the cluster's known_hosts.
"""
from __future__ import annotations

import base64
import binascii
import copy
import email
import email.policy
import gzip
import io
import ipaddress
import json
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any, NamedTuple

import yaml

from k1prov.errors import ConfigError, K1provError
from k1prov.hostkeys import HostKey

# Metadata versions written into the ISO, as openstacksdk and Ironic write them.
METADATA_VERSIONS = ("2012-08-10", "latest")
# The ISO volume label cloud-init looks for.
VOLUME_LABEL = "config-2"
# MTU written when the inventory gives none: Ironic regenerates network_data
# for links without an MTU (configdrive_utils.is_invalid_network_metadata).
DEFAULT_MTU = 1500
CLOUD_CONFIG_HEADER = "#cloud-config"


class StaticNetwork(NamedTuple):
    """The node's one static IPv4 interface. A plain 6-tuple works as well."""

    address: str
    prefix_length: int
    gateway: str | None
    dns: tuple[str, ...] | list[str]
    mtu: int | None
    mac: str


class ConfigDriveError(K1provError):
    """A config drive that cannot be read (corrupt base64, gzip or ISO)."""


def build_config_drive(*, hostname: str, uuid: str, public_keys: list[str], host_key: HostKey,
                       network: StaticNetwork | tuple, user_data: str | None = None,
                       domain: str | None = None, ssh_user: str = "root") -> dict[str, Any]:
    """The JSON config drive for one node: {"meta_data", "network_data", "user_data"}.

    `user_data` from the operator is kept: a `#cloud-config` document is merged
    (k1prov's identity keys win: the recorded host key and hostname must be the
    ones the node gets); anything else (a shell script, ...) travels next to
    k1prov's cloud-config in a MIME multipart document, which cloud-init reads.
    """
    net = StaticNetwork(*network)
    fqdn = f"{hostname}.{domain}" if domain else hostname
    meta_data = {
        "uuid": uuid,
        "name": hostname,
        "hostname": fqdn,
        "launch_index": 0,
        "availability_zone": "",
        "public_keys": {f"key-{i}": key.strip() for i, key in enumerate(public_keys)},
    }
    ours: dict[str, Any] = {
        "hostname": hostname,
        "fqdn": fqdn,
        "preserve_hostname": False,
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {
            "ed25519_private": host_key.private_openssh,
            "ed25519_public": host_key.public_line,
        },
    }
    if ssh_user == "root":
        # cloud-init's default forbids root logins ("Please login as the user ...");
        # k1prov's default SSH user is root.
        ours["disable_root"] = False
        ours["ssh_authorized_keys"] = [key.strip() for key in public_keys]
    return {
        "meta_data": meta_data,
        "network_data": network_data_for(net),
        "user_data": _user_data(ours, user_data),
    }


def network_data_for(net: StaticNetwork) -> dict[str, Any]:
    """network_data.json for one static IPv4 address on the interface with `mac`."""
    try:
        interface = ipaddress.IPv4Interface(f"{net.address}/{net.prefix_length}")
        dns = [str(ipaddress.ip_address(d)) for d in net.dns]
        gateway = str(ipaddress.IPv4Address(net.gateway)) if net.gateway else None
    except ValueError as exc:
        raise ConfigError(f"network settings for {net.address}: {exc}") from None
    link_id = "eth0"
    services = [{"type": "dns", "address": d} for d in dns]
    network: dict[str, Any] = {
        "id": "network0",
        "type": "ipv4",
        "link": link_id,
        "ip_address": str(interface.ip),
        "netmask": str(interface.netmask),
        "routes": [],
        "network_id": "k1prov",
        "services": services,
    }
    if gateway:
        network["routes"].append({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": gateway})
    return {
        "links": [{
            "id": link_id,
            "type": "phy",
            "ethernet_mac_address": net.mac.lower(),
            "mtu": net.mtu or DEFAULT_MTU,
        }],
        "networks": [network],
        "services": services,
    }


def _user_data(ours: dict[str, Any], theirs: str | None) -> str:
    if theirs is None or not theirs.strip():
        return _dump_cloud_config(ours)
    if theirs.lstrip().startswith(CLOUD_CONFIG_HEADER):
        try:
            loaded = yaml.safe_load(theirs) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"user_data is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError("user_data #cloud-config must be a mapping")
        merged = {**loaded, **ours}
        if "ssh_authorized_keys" in loaded and "ssh_authorized_keys" in ours:
            merged["ssh_authorized_keys"] = list(dict.fromkeys(
                [*ours["ssh_authorized_keys"], *loaded["ssh_authorized_keys"]]))
        return _dump_cloud_config(merged)
    message = MIMEMultipart()
    message.attach(MIMEText(_dump_cloud_config(ours), "cloud-config"))
    subtype = "x-shellscript" if theirs.startswith("#!") else "plain"
    message.attach(MIMEText(theirs, subtype))
    return message.as_string()


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the PEM private key) as literal blocks, readable by eye."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def _dump_cloud_config(data: dict[str, Any]) -> str:
    return CLOUD_CONFIG_HEADER + "\n" + yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, width=4096,
                                                  default_flow_style=False)


def cloud_config(user_data: str | bytes | None) -> dict[str, Any]:
    """The #cloud-config mapping inside user_data (plain or MIME multipart); {} when none."""
    if user_data is None:
        return {}
    text = user_data.decode() if isinstance(user_data, bytes) else user_data
    if text.lstrip().startswith(CLOUD_CONFIG_HEADER):
        return yaml.safe_load(text) or {}
    if text.startswith("Content-Type: multipart/"):
        message = email.message_from_string(text, policy=email.policy.compat32)
        merged: dict[str, Any] = {}
        for part in message.walk():
            if part.get_content_type() == "text/cloud-config":
                payload = part.get_payload(decode=True).decode()
                merged.update(yaml.safe_load(payload) or {})
        return merged
    return {}


def config_drive_files(config_drive: dict[str, Any]) -> dict[str, bytes]:
    """The files of the ISO Ironic would build from the JSON form, by relative path."""
    files: dict[str, bytes] = {}
    user_data = config_drive.get("user_data")
    if isinstance(user_data, (dict, list)):
        user_data = json.dumps(user_data)
    for version in METADATA_VERSIONS:
        base = f"openstack/{version}/"
        files[base + "meta_data.json"] = json.dumps(config_drive.get("meta_data") or {}).encode()
        if config_drive.get("network_data"):
            files[base + "network_data.json"] = json.dumps(config_drive["network_data"]).encode()
        if config_drive.get("vendor_data"):
            files[base + "vendor_data2.json"] = json.dumps(config_drive["vendor_data"]).encode()
        if user_data:
            files[base + "user_data"] = (user_data.encode() if isinstance(user_data, str)
                                         else bytes(user_data))
    return files


def build_config_drive_iso(config_drive: dict[str, Any]) -> str:
    """The gzip + base64 ISO 9660 image, as Ironic stores and ships a config drive."""
    return base64.b64encode(gzip.compress(config_drive_iso_bytes(config_drive), mtime=0)).decode()


def config_drive_iso_bytes(config_drive: dict[str, Any]) -> bytes:
    """The ISO 9660 image of a config drive (the JSON form's files), uncompressed.

    Same layout and volume label as Ironic's own build; made with pycdlib so no
    genisoimage is needed on the operator's machine. The one ISO builder of k1prov
    (the lab's hosts read it back with parse_config_drive).
    """
    import pycdlib

    iso = pycdlib.PyCdlib()
    # Interchange level 4 allows lower-case, long ISO 9660 names, like the
    # "-l -allow-lowercase -allow-multidot" of genisoimage; Rock Ridge and Joliet
    # carry the same names for the readers that use those.
    iso.new(interchange_level=4, vol_ident=VOLUME_LABEL, pub_ident_str="k1prov",
            joliet=3, rock_ridge="1.09")
    made: set[str] = set()
    for path, content in sorted(config_drive_files(config_drive).items()):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/" + "/".join(parts[:depth])
            if directory not in made:
                iso.add_directory(iso_path=directory, rr_name=parts[depth - 1], joliet_path=directory)
                made.add(directory)
        iso.add_fp(io.BytesIO(content), len(content), iso_path=f"/{path};1",
                   rr_name=parts[-1], joliet_path=f"/{path}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def parse_config_drive(data: dict[str, Any] | str | bytes) -> dict[str, bytes]:
    """The files of a config drive, by relative path ("openstack/latest/meta_data.json").

    Reads the JSON form (what k1prov sends; what Ironic keeps in
    instance_info), the gzip + base64 ISO form Ironic builds, and a bare ISO.
    """
    if isinstance(data, dict):
        return config_drive_files(data)
    if isinstance(data, str):
        stripped = data.strip()
        if stripped.startswith("{"):
            return config_drive_files(json.loads(stripped))
        if "://" in stripped:
            raise ConfigDriveError("the config drive is a URL (object store); fetch it first")
        data = stripped.encode()
    raw = bytes(data)
    if raw[:2] != b"\x1f\x8b" and not _is_iso(raw):
        try:
            raw = base64.b64decode(raw, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ConfigDriveError(f"config drive: neither JSON, base64 nor ISO9660: {exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ConfigDriveError(f"config drive: bad gzip: {exc}") from None
    if not _is_iso(raw):
        raise ConfigDriveError("config drive: not an ISO9660 image")
    return _iso_files(raw)


def config_drive_contents(data: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """The JSON form back from any form: {"meta_data", "network_data", "user_data"}."""
    if isinstance(data, dict):
        return copy.deepcopy(data)
    files = parse_config_drive(data)

    def latest(name: str) -> bytes | None:
        return files.get(f"openstack/latest/{name}")

    meta = latest("meta_data.json")
    network = latest("network_data.json")
    user = latest("user_data")
    return {
        "meta_data": json.loads(meta) if meta else {},
        "network_data": json.loads(network) if network else None,
        "user_data": user.decode() if user is not None else None,
    }


def _is_iso(raw: bytes) -> bool:
    return raw[32769:32774] == b"CD001"


def _iso_files(raw: bytes) -> dict[str, bytes]:
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(io.BytesIO(raw))
        # Prefer the namespaces that keep the real names: Rock Ridge, then Joliet;
        # plain ISO 9660 names carry ";1" and may be upper-cased.
        if iso.has_rock_ridge():
            facade, key = iso.get_rock_ridge_facade(), "rr_path"
        elif iso.has_joliet():
            facade, key = iso.get_joliet_facade(), "joliet_path"
        else:
            facade, key = iso.get_iso9660_facade(), "iso_path"
        files: dict[str, bytes] = {}
        for root, _dirs, names in iso.walk(**{key: "/"}):
            for name in names:
                full = f"{root.rstrip('/')}/{name}"
                out = io.BytesIO()
                facade.get_file_from_iso_fp(out, **{key: full})
                clean = full.lstrip("/")
                if key == "iso_path":
                    clean = clean.split(";")[0].lower()
                files[clean] = out.getvalue()
        return files
    except PyCdlibException as exc:
        raise ConfigDriveError(f"config drive: unreadable ISO9660: {exc}") from None
    finally:
        iso.close()
