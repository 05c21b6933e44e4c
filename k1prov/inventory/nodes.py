"""The `nodes:` list: one entry is a node or a range of nodes (docs/inventory.md).

Each entry is merged over `defaults:` (the node wins; mappings merge one level), its
range-capable fields (bmc.address, bmc.port, macs, address, zookeeper_id) are expanded
to one value per node, and names, MACs, addresses and BMC endpoints are checked to be
unique across the whole list. Errors point at the field as written, which for a value
taken from `defaults:` is the defaults line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from k1prov.inventory import ranges, values
from k1prov.inventory.fields import Field, kind
from k1prov.inventory.model import ROLES, Bmc, Node, SecretRef

NODE_KEYS = ("name", "bmc", "macs", "address", "roles", "zookeeper_id", "driver", "interfaces",
             "resource_class", "properties", "capabilities", "conductor_group", "shard", "gateway")
PER_NODE_ONLY = ("name", "macs", "address", "zookeeper_id")
DEFAULT_KEYS = tuple(k for k in NODE_KEYS if k not in PER_NODE_ONLY)
# Node fields that are mappings: a node's mapping is merged over the default one (one level).
MERGED_KEYS = ("bmc", "interfaces", "properties", "capabilities")
BMC_KEYS = ("address", "port", "username", "password", "url", "system_id", "verify")
IPMI_ONLY = ("address", "port")
REDFISH_ONLY = ("url", "system_id", "verify")
REDFISH = "redfish"
# A bracket range in a Redfish URL or system id ("https://10.0.1.[11-13]"); an IPv6 host
# ("https://[fd00::5]") has colons in its brackets and is not one.
_TEXT_RANGE = re.compile(r"\[[0-9][0-9, -]*\]")
IPMI_PORT = 623
IRONIC_INTERFACES = ("bios", "boot", "console", "deploy", "firmware", "inspect", "management",
                     "network", "power", "raid", "rescue", "storage", "vendor")
# Boot interfaces that need a hardware type of their own: virtual media is a Redfish
# service of the BMC (IPMI has none), so Ironic refuses these on an ipmi node.
BOOT_NEEDS_DRIVER = {"redfish-virtual-media": REDFISH}
ZOOKEEPER_MAX_ID = 255
_IDENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Where-maps: for each expanded node, the Field of each checked value (for locations).
Where = dict[str, Field]


@dataclass
class Seen:
    """Where a unique value (name, MAC, address, BMC, ZooKeeper id) was first used."""

    node: str
    line: int


def unique(seen: dict, key: Any, f: Field, here: Seen, reason: str) -> None:
    first = seen.get(key)
    if first is not None:
        f.fail(f"{reason}: already used by {first.node} (line {first.line})")
    seen[key] = here


def parse_defaults(f: Field) -> dict[str, Field]:
    if isinstance(f.value, dict):
        for key, loc in f.value.items():
            if key in PER_NODE_ONLY:
                Field(f.src, loc, f.sub(key)).fail(
                    f"'{key}' is different on every node; it cannot have a default")
    out = f.mapping(DEFAULT_KEYS)
    for key in MERGED_KEYS:
        if key in out:   # shape and typos now, values with each node
            out[key].mapping(BMC_KEYS if key == "bmc" else (out[key].value or {}).keys())
    return out


def parse_nodes(f: Field, defaults: dict[str, Field]) -> tuple[list[Node], list[Where]]:
    entries = f.items()
    if not entries:
        f.fail("at least one node is needed")
    nodes: list[Node] = []
    fields: list[Where] = []   # per expanded node: its fields (for locations)
    seen_names: dict[str, Seen] = {}
    seen_macs: dict[str, Seen] = {}
    seen_addresses: dict[str, Seen] = {}
    seen_bmcs: dict[tuple[str, int], Seen] = {}
    for entry in entries:
        for node, where in parse_entry(entry, defaults, start_index=len(nodes)):
            here = Seen(node.name, node.line)
            unique(seen_names, node.name.lower(), where["name"], here,
                   f"duplicate node name {node.name!r}")
            for j, mac in enumerate(node.macs):
                unique(seen_macs, mac, where[f"macs[{j}]"], here,
                       f"duplicate MAC {mac} on {node.name}")
            unique(seen_addresses, node.address, where["address"], here,
                   f"duplicate address {node.address} on {node.name}")
            if node.bmc.url is not None:
                # One Redfish BMC may serve many systems (a chassis, sushy-tools): the
                # system is what must be unique; no system_id means the BMC's only one.
                unique(seen_bmcs, (node.bmc.url, node.bmc.system_id), where["bmc.address"], here,
                       f"duplicate BMC {node.bmc.endpoint} on {node.name}")
            else:
                unique(seen_bmcs, (node.bmc.address, node.bmc.port), where["bmc.address"], here,
                       f"duplicate BMC {node.bmc.address} port {node.bmc.port} on {node.name}")
            nodes.append(node)
            fields.append(where)
    return nodes, fields


def parse_entry(entry: Field, defaults: dict[str, Field],
                *, start_index: int) -> list[tuple[Node, Where]]:
    """One `nodes:` entry: a node, or a range of nodes sharing the entry's line."""
    own = entry.mapping(NODE_KEYS, required=("name",))
    name_f = own["name"]
    names = expand(name_f, name_f.string(), hexadecimal=False)
    for name in names:
        name_f.check(values.hostname, name)
    count = len(names)
    merged = {**defaults, **own}

    if "address" not in own:
        entry.missing("address")
    addresses = ranged(own["address"], count, "ipv4")
    # No `macs`: a node of a new rack known by its BMC only; its ports come from
    # inspection (`k1prov nodes inspect`, k1prov.inspection).
    mac_items = own["macs"].items() if "macs" in own else []
    if "macs" in own and not mac_items:
        own["macs"].fail("at least one MAC address is needed (leave macs out to take them from "
                         "`k1prov nodes inspect`)")
    macs_per_item = [ranged(item, count, "mac") for item in mac_items]
    zk_ids = (ranged(own["zookeeper_id"], count, "zookeeper_id")
              if "zookeeper_id" in own else [None] * count)

    driver = ident(merged["driver"]) if "driver" in merged else "ipmi"
    bmc = merged_mapping("bmc", own, defaults, BMC_KEYS)
    bmc_f = own.get("bmc", entry)
    own_bmc = set(bmc_f.value) if "bmc" in own and isinstance(bmc_f.value, dict) else set()
    redfish = driver == REDFISH
    # A key of the other kind of BMC is an error on the node itself, and ignored when it
    # comes from `defaults:` (one defaults block serves IPMI and Redfish nodes alike).
    for key in own_bmc & set(IPMI_ONLY if redfish else REDFISH_ONLY):
        bmc[key].fail(f"not a field of a {driver} BMC" + (
            " (a Redfish BMC is named by bmc.url)" if redfish else " (only for driver: redfish)"))
    for key in (REDFISH_ONLY if not redfish else IPMI_ONLY):
        bmc.pop(key, None)
    for key in ("url" if redfish else "address", "username", "password"):
        if key not in bmc or bmc[key].value is None:
            raise entry.src.error("required field missing", line=bmc_f.line,
                                  path=bmc_f.sub(key) if "bmc" in own else entry.sub(f"bmc.{key}"))
    if redfish:
        urls = [redfish_url(bmc["url"], u) for u in ranged_text(bmc["url"], count)]
        bmc_addresses = [u.hostname for u in urls]
        bmc_ports = [u.port for u in urls]
        system_ids = (ranged_text(bmc["system_id"], count, check=redfish_system_id)
                      if "system_id" in bmc else [None] * count)
        verify = tls_verify(bmc["verify"]) if "verify" in bmc else True
    else:
        bmc_addresses = ranged(bmc["address"], count, "ip")
        bmc_ports = ranged(bmc["port"], count, "port") if "port" in bmc else [IPMI_PORT] * count
    username = bmc["username"].text()
    password = secret(bmc["password"])

    roles = parse_node_roles(merged["roles"]) if "roles" in merged else ()
    interfaces = parse_interfaces(merged_mapping("interfaces", own, defaults, None), driver=driver,
                                  node=names[0] if count == 1 else name_f.string())
    props = parse_properties(merged_mapping("properties", own, defaults, None))
    caps = parse_capabilities(merged_mapping("capabilities", own, defaults, None))
    resource_class = ident(merged["resource_class"]) if "resource_class" in merged else None
    conductor_group = (ident(merged["conductor_group"])
                       if "conductor_group" in merged else None)
    shard = ident(merged["shard"]) if "shard" in merged else None
    gateway = (merged["gateway"].check(values.gateway, merged["gateway"].string())
               if "gateway" in merged else None)

    out = []
    for i, name in enumerate(names):
        node = Node(
            name=name, index=start_index + i,
            bmc=(Bmc(address=bmc_addresses[i], port=bmc_ports[i], username=username,
                     password=password, url=urls[i].url, system_id=system_ids[i], verify=verify)
                 if redfish else
                 Bmc(address=bmc_addresses[i], port=bmc_ports[i], username=username,
                     password=password)),
            macs=tuple(per_item[i] for per_item in macs_per_item),
            address=addresses[i], roles=roles, driver=driver, interfaces=dict(interfaces),
            resource_class=resource_class, properties=dict(props), capabilities=dict(caps),
            conductor_group=conductor_group, shard=shard, zookeeper_id=zk_ids[i], gateway=gateway,
            line=entry.line)
        where = {"name": name_f, "address": own["address"],
                 "bmc.address": bmc["url" if redfish else "address"],
                 "roles": merged.get("roles", entry), "entry": entry}
        if "shard" in merged:
            where["shard"] = merged["shard"]
        if "zookeeper_id" in own:
            where["zookeeper_id"] = own["zookeeper_id"]
        where.update({f"macs[{j}]": item for j, item in enumerate(mac_items)})
        out.append((node, where))
    return out


def merged_mapping(key: str, own: dict[str, Field], defaults: dict[str, Field],
                   allowed: tuple[str, ...] | None) -> dict[str, Field]:
    """The default mapping `key` with the node's own keys over it (one level)."""
    out: dict[str, Field] = {}
    for source in (defaults.get(key), own.get(key)):
        if source is not None:
            keys = allowed if allowed is not None else \
                (source.value.keys() if isinstance(source.value, dict) else ())
            out.update(source.mapping(keys))
    return out


def expand(f: Field, text: str, *, hexadecimal: bool) -> list[str]:
    try:
        return ranges.expand(text, hexadecimal=hexadecimal)
    except ranges.RangeError as exc:
        f.fail(str(exc))


def ranged(f: Field, count: int, what: str) -> list[Any]:
    """`count` values of a range-capable field: a plain value (the same for every
    node), a bracket range with `count` values, or {start: X, step: N}."""
    one: Callable[[Field, Any], Any] = _ONE[what]
    if isinstance(f.value, dict):
        m = f.mapping(("start", "step"), required=("start",))
        step = m["step"].integer() if "step" in m else 1
        if step == 0:
            m["step"].fail("step must not be 0 (every node would get the same value)")
        start = one(m["start"], m["start"].text() if what == "mac" else m["start"].value)
        try:
            if what == "mac":
                result = ranges.step_mac(start, step, count)
            elif what in ("ip", "ipv4"):
                result = ranges.step_ip(start, step, count)
            else:
                result = ranges.step_int(start, step, count)
        except ranges.RangeError as exc:
            f.fail(str(exc))
        # The last value must still be valid (port <= 65535, unicast MAC, ...).
        return [one(f, v) for v in result]
    if isinstance(f.value, str) and ranges.has_range(f.value):
        items = expand(f, f.value, hexadecimal=(what == "mac"))
        if len(items) != count:
            f.fail(f"range gives {len(items)} values but the node name gives {count}")
        if what in ("port", "zookeeper_id"):
            items = [int(v) for v in items]
        return [one(f, v) for v in items]
    value = one(f, f.text() if what == "mac" else f.value)
    return [value] * count


@dataclass(frozen=True)
class RedfishUrl:
    url: str            # scheme://authority, no trailing slash: Ironic's redfish_address
    hostname: str
    port: int


def ranged_text(f: Field, count: int, *, check: Callable[[Field, str], str] | None = None) -> list[str]:
    """`count` values of a text field that may hold one bracket range, like a node name."""
    text = f.string().strip()
    if _TEXT_RANGE.search(text):
        items = expand(f, text, hexadecimal=False)
        if len(items) != count:
            f.fail(f"range gives {len(items)} values but the node name gives {count}")
    else:
        items = [text] * count
    return [check(f, v) for v in items] if check else items


def redfish_url(f: Field, text: str) -> RedfishUrl:
    """A Redfish BMC's URL: http or https, a host, an optional port, nothing else. The
    message never repeats the URL when it may carry a password (user:pass@host)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        f.fail(f"not a URL: {exc}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        f.fail("the URL must not carry credentials: give bmc.username and bmc.password")
    if parts.scheme not in ("http", "https"):
        f.fail(f"{text!r}: the scheme must be http or https (https://10.0.0.5)")
    if not parts.hostname:
        f.fail(f"{text!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        f.fail(f"{text!r}: give the BMC's scheme, host and port only; the system's path "
               f"(/redfish/v1/Systems/...) goes in bmc.system_id")
    host = parts.hostname
    if ":" in host:
        f.check(values.ip, host)
    return RedfishUrl(url=f"{parts.scheme}://{parts.netloc}", hostname=host,
                      port=port if port is not None else (443 if parts.scheme == "https" else 80))


def redfish_system_id(f: Field, text: str) -> str:
    """Ironic's redfish_system_id: the system's path on the BMC. Optional: without it Ironic
    uses the BMC's only system (and fails for a BMC with several)."""
    if not text.startswith("/redfish/v1/Systems/") or text.rstrip("/") == "/redfish/v1/Systems":
        f.fail(f"{text!r} is not a system's path (/redfish/v1/Systems/<id>)")
    if any(c.isspace() for c in text):
        f.fail(f"{text!r}: a system's path has no spaces")
    return text


def tls_verify(f: Field) -> bool | str:
    """bmc.verify: true (the system's CAs), false (no check), or a CA bundle's path,
    relative to the inventory; the file must exist now, not at the first power action."""
    if isinstance(f.value, bool):
        return f.value
    if not isinstance(f.value, str) or not f.value.strip():
        f.fail(f"must be true, false or a CA file's path, got {kind(f.value)}")
    path = os.path.expanduser(f.value)
    if not os.path.isabs(path):
        path = str(f.src.directory / path)
    if not os.path.isfile(path):
        f.fail(f"CA file {path} does not exist (or is not a file)")
    return path


def secret(f: Field) -> SecretRef:
    """A password reference. Messages here never include the value given."""
    origin = f"{f.src.name}:{f.line}"
    if isinstance(f.value, dict):
        m = f.mapping(("env", "file"))
        if len(m) != 1:
            f.fail("give exactly one of env: NAME or file: PATH")
        if "env" in m:
            env = m["env"]
            if not isinstance(env.value, str) or not _ENV_NAME.match(env.value):
                env.fail("not an environment variable name")
            return SecretRef(env=env.value, origin=origin)
        file_f = m["file"]
        if not isinstance(file_f.value, str) or not file_f.value.strip():
            file_f.fail("must be a path")
        text = file_f.value
        # ~ and $VAR are expanded by SecretRef.reveal(); anchor plain relative paths now.
        if not (text.startswith("~") or text.startswith("$") or os.path.isabs(text)):
            text = str(f.src.directory / text)
        return SecretRef(file=text, origin=origin)
    if f.value is None or isinstance(f.value, list) or f.loc.raw is None or not f.loc.raw:
        f.fail("must be {env: NAME}, {file: PATH} or a string")
    f.warn("inline password; use env: or file:")
    # The text as written: YAML would turn 0123 into 83 and yes into true.
    return SecretRef(inline=f.loc.raw, origin=origin)


def parse_node_roles(f: Field) -> tuple[str, ...]:
    roles = []
    for item in f.items():
        role = item.string()
        if role not in ROLES:
            item.fail(f"unknown role {role!r} (known: {', '.join(ROLES)})")
        if role in roles:
            item.fail(f"role {role!r} is listed twice")
        roles.append(role)
    return tuple(roles)


def ident(f: Field) -> str:
    value = f.string()
    if not _IDENT.match(value):
        f.fail(f"{value!r} may only contain letters, digits, '_', '.' and '-'")
    return value


def parse_interfaces(m: dict[str, Field], *, driver: str = "ipmi", node: str = "") -> dict[str, str]:
    """`node`: the node's name, for an error on a `defaults:` field."""
    out = {}
    for key, f in m.items():
        if key not in IRONIC_INTERFACES:
            f.fail(f"unknown Ironic interface '{key}' (known: {', '.join(IRONIC_INTERFACES)})")
        out[key] = ident(f)
    needs = BOOT_NEEDS_DRIVER.get(out.get("boot", ""))
    if needs and driver != needs:
        m["boot"].fail(f"boot interface {out['boot']!r} needs driver: {needs} "
                       f"(node {node} has driver: {driver}, whose BMC has no virtual media)")
    return out


def parse_properties(m: dict[str, Field]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, f in m.items():
        if key in ("cpus", "memory_mb"):
            out[key] = f.integer(low=1)
        elif key == "local_gb":
            out[key] = f.integer(low=0)
        elif key == "cpu_arch":
            out[key] = ident(f)
        else:
            out[key] = f.loc.plain()
    return out


def parse_capabilities(m: dict[str, Field]) -> dict[str, str]:
    out = {}
    for key, f in m.items():
        if any(c in key for c in ":,"):
            f.fail("capability names may not contain ':' or ','")
        value = f.text()
        if any(c in value for c in ":,"):
            f.fail("capability values may not contain ':' or ','")
        if key == "boot_mode" and value not in ("uefi", "bios"):
            f.fail(f"{value!r} is not one of: uefi, bios")
        out[key] = value
    return out


def _mac(f: Field, value: Any) -> str:
    return f.check(values.mac, value if isinstance(value, str) else str(value))


def _ip(f: Field, value: Any) -> str:
    if not isinstance(value, str):
        f.fail(f"must be an IP address, got {kind(value)}")
    return f.check(values.ip, value)


def _ipv4(f: Field, value: Any) -> str:
    if not isinstance(value, str):
        f.fail(f"must be an IP address, got {kind(value)}")
    return f.check(values.ipv4, value)


def _port(f: Field, value: Any) -> int:
    return f.check(values.port, value)


def _zookeeper_id(f: Field, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 1 <= value <= ZOOKEEPER_MAX_ID:
        f.fail(f"{value!r} is not a ZooKeeper id (1-{ZOOKEEPER_MAX_ID})")
    return value


_ONE: dict[str, Callable[[Field, Any], Any]] = {
    "mac": _mac, "ip": _ip, "ipv4": _ipv4, "port": _port, "zookeeper_id": _zookeeper_id,
}
