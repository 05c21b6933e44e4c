"""The parsed, validated, expanded inventory: plain frozen dataclasses.

Everything here is already checked by the loader (k1prov.inventory.loader): names
and addresses are unique, ranges are expanded, roles are known. Secrets stay
unresolved references until someone calls `SecretRef.reveal()`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from k1prov.errors import InventoryError, SecretError

# Roles a node may carry. "spark-client" is a host that only submits jobs.
ROLES = ("zookeeper", "mesos-master", "mesos-agent", "spark-master", "spark-worker", "spark-client")

# Tag put on every Ironic node and Glance image that k1prov creates, so that re-runs
# are find-or-create and teardown knows exactly what is its own.
OWNER_TAG = "k1prov"


@dataclass(frozen=True)
class SecretRef:
    """A password by reference: an environment variable, a file, or (discouraged) inline.

    `repr`/`str` never show the value; only `reveal()` does, and only when called.
    """

    env: str | None = None
    file: str | None = None
    inline: str | None = field(default=None, repr=False)
    # Where the reference was written, for errors: "FILE:LINE".
    origin: str = ""

    def reveal(self) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(f"environment variable {self.env} is not set",
                                  field="bmc.password", file=self.origin or None)
            return value
        if self.file is not None:
            path = Path(os.path.expandvars(os.path.expanduser(self.file)))
            try:
                return path.read_text().rstrip("\n")
            except OSError as exc:
                raise SecretError(f"cannot read password file {path}: {exc.strerror}",
                                  field="bmc.password", file=self.origin or None) from None
        if self.inline is not None:
            return self.inline
        raise SecretError("no password given", field="bmc.password", file=self.origin or None)

    def describe(self) -> str:
        """What an operator may see: where the secret comes from, never the secret."""
        if self.env is not None:
            return f"env:{self.env}"
        if self.file is not None:
            return f"file:{self.file}"
        return "inline:***" if self.inline is not None else "none"

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True)
class Bmc:
    """A node's BMC. IPMI (`driver: ipmi`): address and port. Redfish (`driver: redfish`):
    `url` (scheme and authority: https://10.0.0.5[:port]), the system's path when the BMC
    has more than one (`system_id`), and how its TLS certificate is checked (`verify`: True,
    False, or a CA bundle's path); address and port are then the URL's host and port, so
    that rows and duplicate checks read the same for both."""

    address: str
    port: int
    username: str
    password: SecretRef
    url: str | None = None
    system_id: str | None = None
    verify: bool | str = True

    @property
    def endpoint(self) -> str:
        """The BMC as an operator names it in a row: host:port, or the Redfish URL with
        the system's path."""
        if self.url is not None:
            return self.url + (self.system_id or "")
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Node:
    name: str
    # 0-based position in the expanded inventory (stable; used for ZooKeeper myid defaults).
    index: int
    bmc: Bmc
    macs: tuple[str, ...]          # lower-case, colon-separated
    address: str                   # the OS's IPv4 address
    roles: tuple[str, ...]
    driver: str = "ipmi"
    # Ironic interface overrides, e.g. {"deploy": "direct", "power": "ipmitool"}.
    interfaces: dict[str, str] = field(default_factory=dict)
    resource_class: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, str] = field(default_factory=dict)
    conductor_group: str | None = None
    # Ironic's node shard (API 1.82): clients split the nodes into shards and work on
    # each separately.
    shard: str | None = None
    # Explicit ZooKeeper myid; None means index+1 among the zookeeper members.
    zookeeper_id: int | None = None
    # SSH gateway ("user@host:port") for this node, overriding Ssh.gateway.
    gateway: str | None = None
    # Source line of the node entry (for a range, the line of the range).
    line: int = 0

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Cloud:
    """Where Ironic and Glance are: a clouds.yaml entry, or explicit standalone endpoints."""

    cloud: str | None = None          # a clouds.yaml entry name
    ironic_url: str | None = None
    glance_url: str | None = None
    # Ironic API microversion k1prov asks for.
    ironic_api_version: str = "1.78"
    # Where Ironic's conductor keeps the agents' deploy logs ([agent]
    # deploy_logs_local_path), when k1prov runs on the conductor's host (k1prov.deploy_logs).
    deploy_logs: str | None = None


@dataclass(frozen=True)
class ImageSource:
    """One image: a local file or an http(s) URL, with its checksum ("sha256:HEX")."""

    name: str
    file: str | None = None
    url: str | None = None
    checksum: str | None = None       # "sha256:..." or "sha512:..."
    # URL of a published checksum file (SHA256SUMS, SHA512SUMS, "<image>.sha256"),
    # read when `checksum` is not given.
    checksum_url: str | None = None
    disk_format: str | None = None    # raw, qcow2, aki, ari, ... (detected when None)
    container_format: str | None = None
    # When true the image does not go through Glance: Ironic gets the URL + checksum.
    bypass_glance: bool = False


@dataclass(frozen=True)
class Images:
    deploy_kernel: ImageSource | None = None
    deploy_ramdisk: ImageSource | None = None
    user: ImageSource | None = None


@dataclass(frozen=True)
class Network:
    prefix_length: int = 24
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    mtu: int | None = None


@dataclass(frozen=True)
class Ssh:
    user: str = "root"
    private_key: str | None = None            # path
    public_keys: tuple[str, ...] = ()         # authorized keys put in the config drive
    gateway: str | None = None                # default jump host "user@host:port"
    port: int = 22


@dataclass(frozen=True)
class Inventory:
    path: Path
    cluster: str
    cloud: Cloud
    nodes: tuple[Node, ...]
    images: Images = field(default_factory=Images)
    network: Network = field(default_factory=Network)
    ssh: Ssh = field(default_factory=Ssh)
    # Role settings, validated but kept as mappings: {"zookeeper": {...}, "mesos": {...}, "spark": {...}}.
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Non-fatal findings of validation ("FILE:LINE: field: reason").
    warnings: tuple[str, ...] = ()
    # Source line of every key written in the file, by dotted path ("roles.spark",
    # "images.user.file", "nodes[0].bmc.address"): lets checks made after loading (render,
    # images, deploy) point at the line, like the loader's own checks.
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, path: str) -> int | None:
        """The line of `path`, else of its closest written parent ("roles.spark.sha512"
        not written: the line of "roles.spark"); None when nothing of it is in the file."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def error(self, field_path: str, reason: str) -> InventoryError:
        """A located "FILE:LINE: field: reason" error about this inventory."""
        return InventoryError(reason, file=str(self.path), line=self.line_of(field_path),
                              field=field_path)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def with_role(self, role: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if role in n.roles)


# Here, beside Node, and not in k1prov.roles.derive: the loader's checks use it, and an
# import of k1prov.roles from the package side would otherwise cycle back into a
# half-initialised roles.derive (python -m k1prov.roles.docs did).
def myids(members: Iterable[Node]) -> dict[str, int]:
    """The one ZooKeeper id rule: Node.zookeeper_id, else the member's 1-based position
    among the members (inventory order), so ids stay put when members are added at the
    end. The loader fills zookeeper_id with it; zookeeper_ids checks the result."""
    return {node.name: node.zookeeper_id if node.zookeeper_id is not None else position
            for position, node in enumerate(members, start=1)}
