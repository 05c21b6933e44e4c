"""Read an inventory file: parse, merge defaults, expand ranges, validate.

`load_inventory(path)` returns a frozen `Inventory` or raises the first problem found
as an InventoryError "FILE:LINE: FIELD: REASON". Non-fatal findings go to
`Inventory.warnings` and to the "k1prov.inventory" logger. Passwords are read only as
references (SecretRef); their values are never put in a message.

The file format is documented in docs/inventory.md.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from k1prov.image_content import CONTAINER_FORMATS, DISK_FORMATS
from k1prov.errors import InventoryError
from k1prov.inventory import values
from k1prov.inventory.cross_checks import network_warnings, role_settings, zookeeper_ids
from k1prov.inventory.fields import Field, Source
from k1prov.inventory.model import Cloud, ImageSource, Images, Inventory, Network, Ssh
from k1prov.inventory.nodes import parse_defaults, parse_nodes
from k1prov.inventory.yamlpos import Located, YamlError, load_located

TOP_KEYS = ("cluster", "cloud", "ssh", "network", "defaults", "images", "roles", "nodes")
IMAGE_KEYS = ("name", "file", "url", "checksum", "checksum_url", "disk_format", "container_format",
              "bypass_glance")
# "TYPE BASE64 [comment]", the authorized_keys line format.
_SSH_KEY = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-\S+)\s+"
                      r"[A-Za-z0-9+/=]+(\s.*)?$")


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate the inventory file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InventoryError("not a UTF-8 text file", file=str(path)) from None
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror}", file=str(path)) from None
    return parse_inventory(text, path=path)


def parse_inventory(text: str, *, path: str | Path) -> Inventory:
    """Validate inventory YAML `text` as if read from `path` (which names it in errors
    and anchors its relative paths)."""
    path = Path(path)
    src = Source(name=str(path), directory=path.absolute().parent)
    try:
        root = load_located(text)
    except YamlError as exc:
        raise src.error(exc.reason, line=exc.line, path=None) from None
    if root is None:
        raise src.error("empty inventory", line=None, path=None)
    return _inventory(Field(src, root, ""), path)


def plan_rows(inv: Inventory) -> list[dict[str, Any]]:
    """One JSON-safe row per node for `inventory check` (password: its source only)."""
    rows = []
    for n in inv.nodes:
        rows.append({
            "name": n.name,
            "bmc": n.bmc.endpoint,
            "bmc_user": n.bmc.username,
            "password": n.bmc.password.describe(),
            "macs": list(n.macs),
            "address": n.address,
            "roles": list(n.roles),
            "driver": n.driver,
            "interfaces": dict(n.interfaces),
            "resource_class": n.resource_class,
            "conductor_group": n.conductor_group,
            "shard": n.shard,
            "zookeeper_id": n.zookeeper_id,
        })
    return rows


def _inventory(root: Field, path: Path) -> Inventory:
    # "x-..." keys are ignored so that operators can keep YAML anchors there.
    top = root.mapping(TOP_KEYS, required=("cluster", "cloud", "nodes"), ignore_prefix="x-")
    cluster = top["cluster"].check(values.cluster_name, top["cluster"].string())
    cloud = _cloud(top["cloud"])
    ssh = _ssh(top["ssh"]) if "ssh" in top else Ssh()
    network = _network(top["network"]) if "network" in top else Network()
    defaults = parse_defaults(top["defaults"]) if "defaults" in top else {}
    images = _images(top["images"]) if "images" in top else Images()
    nodes, node_fields = parse_nodes(top["nodes"], defaults)
    nodes = zookeeper_ids(nodes, node_fields)
    cloud = shard_api_version(cloud, top["cloud"], nodes, node_fields)
    roles = role_settings(top.get("roles"), cluster, nodes, node_fields, root)
    network_warnings(network, nodes, node_fields)
    return Inventory(path=path, cluster=cluster, cloud=cloud, nodes=tuple(nodes),
                     images=images, network=network, ssh=ssh, roles=roles,
                     warnings=tuple(root.src.warnings), lines=key_lines(root.loc))


def key_lines(root: Located) -> dict[str, int]:
    """The line of every key and list item, by the dotted path Field uses."""
    lines: dict[str, int] = {}
    stack: list[tuple[str, Located]] = [("", root)]
    while stack:
        path, loc = stack.pop()
        if isinstance(loc.value, dict):
            for key, child in loc.value.items():
                sub = f"{path}.{key}" if path else key
                lines[sub] = child.line
                stack.append((sub, child))
        elif isinstance(loc.value, list):
            for i, child in enumerate(loc.value):
                lines[f"{path}[{i}]"] = child.line
                stack.append((f"{path}[{i}]", child))
    return lines


CLOUD_KEYS = ("cloud", "ironic_url", "glance_url", "ironic_api_version", "deploy_logs")


def _cloud(f: Field) -> Cloud:
    if isinstance(f.value, str):   # "cloud: NAME" is short for {cloud: NAME}
        return Cloud(cloud=f.string())
    m = f.mapping(CLOUD_KEYS)
    if "cloud" not in m and "ironic_url" not in m:
        f.fail("give a clouds.yaml entry (cloud: NAME) or ironic_url")
    if "cloud" in m and "ironic_url" in m:
        m["ironic_url"].fail("give either a clouds.yaml entry (cloud) or ironic_url, not both")
    kw: dict[str, Any] = {}
    if "cloud" in m:
        kw["cloud"] = m["cloud"].string()
    for key in ("ironic_url", "glance_url"):
        if key in m:
            kw[key] = m[key].check(values.url, m[key].string())
    if "ironic_api_version" in m:
        v = m["ironic_api_version"]
        if not isinstance(v.value, str):
            v.fail('must be a quoted string like "1.78" (YAML reads 1.80 as 1.8)')
        if not re.match(r"^1\.[0-9]+$", v.value):
            v.fail(f"{v.value!r} is not an Ironic API version (like \"1.78\")")
        kw["ironic_api_version"] = v.value
    if "deploy_logs" in m:
        kw["deploy_logs"] = str(f.src.local_path(m["deploy_logs"].string()))
    return Cloud(**kw)


# The first Ironic API version with node shards (Ironic 21.4, 2023.1).
SHARD_API_VERSION = "1.82"


def shard_api_version(cloud: Cloud, f: Field, nodes: list, node_fields: list) -> Cloud:
    """Nodes with a `shard` need Ironic API 1.82: asked for by default, refused (at the
    version written) when the inventory pins an older one."""
    sharded = [(n, w) for n, w in zip(nodes, node_fields) if n.shard]
    if not sharded or _minor(cloud.ironic_api_version) >= _minor(SHARD_API_VERSION):
        return cloud
    pinned = f.mapping(CLOUD_KEYS).get("ironic_api_version") if isinstance(f.value, dict) else None
    if pinned is None:
        return dataclasses.replace(cloud, ironic_api_version=SHARD_API_VERSION)
    node, where = sharded[0]
    pinned.fail(f"node {node.name} has a shard (line {where['shard'].line}), which needs "
                f"Ironic API {SHARD_API_VERSION} or later")


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def _ssh(f: Field) -> Ssh:
    m = f.mapping(("user", "private_key", "public_keys", "public_key_files", "gateway", "port"))
    kw: dict[str, Any] = {}
    if "user" in m:
        kw["user"] = m["user"].check(values.user_name, m["user"].string())
    if "private_key" in m:
        kw["private_key"] = str(f.src.local_path(m["private_key"].string()))
    keys: list[str] = []
    for item in m["public_keys"].items() if "public_keys" in m else []:
        keys.append(_public_key(item, item.string().strip()))
    for item in m["public_key_files"].items() if "public_key_files" in m else []:
        key_path = f.src.local_path(item.string())
        try:
            text = key_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            item.fail(f"cannot read {key_path}: {getattr(exc, 'strerror', None) or exc}")
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                keys.append(_public_key(item, line.strip()))
    kw["public_keys"] = tuple(dict.fromkeys(keys))
    if "gateway" in m:
        kw["gateway"] = m["gateway"].check(values.gateway, m["gateway"].string())
    if "port" in m:
        kw["port"] = m["port"].check(values.port, m["port"].value)
    return Ssh(**kw)


def _public_key(f: Field, key: str) -> str:
    if not _SSH_KEY.match(key):
        f.fail("not an OpenSSH public key (like 'ssh-ed25519 AAAA... comment')")
    return key


def _network(f: Field) -> Network:
    m = f.mapping(("prefix_length", "gateway", "dns", "mtu"))
    kw: dict[str, Any] = {}
    if "prefix_length" in m:
        kw["prefix_length"] = m["prefix_length"].integer(low=1, high=32)
    if "gateway" in m:
        kw["gateway"] = m["gateway"].check(values.ipv4, m["gateway"].string())
    if "dns" in m:
        kw["dns"] = tuple(d.check(values.ip, d.string()) for d in m["dns"].items())
    if "mtu" in m:
        kw["mtu"] = m["mtu"].integer(low=576, high=65535)
    return Network(**kw)


def _images(f: Field) -> Images:
    m = f.mapping(("deploy_kernel", "deploy_ramdisk", "user"))
    return Images(**{key: _image(field) for key, field in m.items()})


def _image(f: Field) -> ImageSource:
    m = f.mapping(IMAGE_KEYS, required=("name",))
    if "file" in m and "url" in m:
        f.fail("give one of file: (a local path) or url: (http/https), not both")
    kw: dict[str, Any] = {"name": m["name"].string()}
    # Neither file: nor url: names an entry of the image catalog (images/catalog.yaml),
    # resolved when the images are registered.
    if "file" in m:
        kw["file"] = str(f.src.local_path(m["file"].string()))
    elif "url" in m:
        kw["url"] = m["url"].check(values.url, m["url"].string())
    if "checksum_url" in m:
        kw["checksum_url"] = m["checksum_url"].check(values.url, m["checksum_url"].string())
    if "checksum" in m:
        kw["checksum"] = m["checksum"].check(values.checksum, m["checksum"].string())
    for key, allowed in (("disk_format", DISK_FORMATS), ("container_format", CONTAINER_FORMATS)):
        if key in m:
            kw[key] = m[key].choice(allowed)
    if "bypass_glance" in m:
        kw["bypass_glance"] = m["bypass_glance"].boolean()
        if kw["bypass_glance"] and "url" not in m:
            m["bypass_glance"].fail("bypass_glance needs url: (Ironic downloads the image itself)")
        if kw["bypass_glance"] and "checksum" not in m:
            f.missing("checksum")
    return ImageSource(**kw)
