"""Values derived from the whole inventory that several roles share.

ZooKeeper ids, the ZooKeeper connect string, the Mesos quorum, the Spark master
URL and each agent's resources/attributes. Pure functions of the inventory.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable

from k1prov.errors import InventoryError, NodeError
from k1prov.inventory.model import Inventory, Node, myids
from k1prov.roles import fit
from k1prov.roles.role_settings import mesos_settings, spark_settings, zookeeper_settings


def zookeeper_ids(inv: Inventory) -> dict[str, int]:
    """myid per zookeeper member (myids). Two members with one id is an error, never
    silently renumbered."""
    ids: dict[str, int] = {}
    owner: dict[int, str] = {}
    members = sorted(inv.with_role("zookeeper"), key=lambda n: n.index)
    assigned = myids(members)
    for node in members:
        myid = assigned[node.name]
        if not 1 <= myid <= 255:
            raise InventoryError(f"zookeeper_id {myid} is outside 1..255", file=str(inv.path),
                                 line=node.line or None, field=f"nodes.{node.name}.zookeeper_id")
        if myid in owner:
            raise InventoryError(
                f"zookeeper myid {myid} is used by both {owner[myid]} and {node.name}; "
                "give one of them an explicit zookeeper_id",
                file=str(inv.path), line=node.line or None, field=f"nodes.{node.name}.zookeeper_id")
        owner[myid] = node.name
        ids[node.name] = myid
    return ids


def cluster_hosts(inv: Inventory) -> str:
    """The hosts-file lines ("ADDRESS<TAB>NAME") of every node of the inventory, in
    inventory order: what each role script puts in /etc/hosts so that members resolve
    each other's names. An address change in the inventory changes every host's
    scripts (their hash), so configure brings every host's file up to date."""
    return "\n".join(f"{n.address}\t{n.name}" for n in sorted(inv.nodes, key=lambda n: n.index))


def zookeeper_servers(inv: Inventory) -> list[dict[str, Any]]:
    """The zoo.cfg server list, ordered by myid."""
    ids = zookeeper_ids(inv)
    servers = [{"name": n.name, "address": n.address, "myid": ids[n.name]} for n in inv.with_role("zookeeper")]
    return sorted(servers, key=lambda s: s["myid"])


def zk_connect(inv: Inventory) -> str:
    """"a:2181,b:2181,c:2181" over every zookeeper member ('' when there is none)."""
    port = zookeeper_settings(inv)["client_port"]
    return ",".join(f"{s['address']}:{port}" for s in zookeeper_servers(inv))


def mesos_zk_url(inv: Inventory) -> str:
    """zk://a:2181,b:2181,c:2181/mesos: where masters elect and agents find the leader."""
    connect = zk_connect(inv)
    if not connect:
        raise inv.error("nodes", "Mesos needs ZooKeeper: no node has the zookeeper role")
    path = mesos_settings(inv)["zk_path"]
    return f"zk://{connect}/{path.lstrip('/')}"


def mesos_quorum(inv: Inventory) -> int:
    """A majority of the Mesos masters (1 of 1, 2 of 3, 3 of 5)."""
    return len(inv.with_role("mesos-master")) // 2 + 1


def spark_master_url(inv: Inventory) -> str:
    """Where Spark applications and workers find the cluster manager."""
    spark = spark_settings(inv)
    if spark["manager"] == "mesos":
        return "mesos://" + mesos_zk_url(inv)
    masters = inv.with_role("spark-master")
    if not masters:
        raise inv.error("nodes", "standalone Spark needs a node with the spark-master role")
    return "spark://" + ",".join(f"{m.address}:{spark['master_port']}" for m in masters)


def _flat(inv: Inventory, node: Node, value: Any, where: str) -> str:
    text = str(value)
    # ';' and ':' separate entries in Mesos' resource and attribute strings.
    if any(c in text for c in ";:\n"):
        reason = f"Mesos attribute value {text!r} must not contain ';' or ':'"
        if where.startswith("roles."):
            raise inv.error(where, reason)
        raise InventoryError(reason, file=str(inv.path), line=node.line or None,
                             field=f"nodes.{node.name}.{where}")
    return text


# `resources: auto` (issue 21): an agent offers the hardware Ironic knows of the node
# (its properties cpus, memory_mb, local_gb, which `k1prov nodes inspect` sets) less what
# the OS, the agent itself and the executors' own overhead need. The reserves are the
# role settings reserved_cpus, reserved_memory_mb, reserved_disk_mb and reserved_percent
# (memory and disk keep the larger of the fixed amount and the percentage); documented
# in docs/inventory.md.
AUTO = "auto"
# What auto needs of the node's Ironic properties, and what each becomes.
AUTO_FACTS = ("cpus", "memory_mb", "local_gb")


def auto_agents(inv: Inventory) -> list[Node]:
    """The agents whose resources come from Ironic's properties (`resources: auto`)."""
    return [n for n in inv.with_role("mesos-agent") if _written_resources(inv, n) == AUTO]


def _written_resources(inv: Inventory, node: Node) -> str:
    # The node's own properties.mesos_resources, else roles.mesos.resources.
    own = node.properties.get("mesos_resources")
    return str(own) if own else mesos_settings(inv)["resources"]


def auto_resources(inv: Inventory, node: Node, properties: Mapping[str, Any] | None) -> str:
    """The --resources of an agent with `resources: auto`, from the node's Ironic
    properties. A node Ironic knows too little of is an error naming the node."""
    facts = {key: fit.fact(properties or {}, key) for key in AUTO_FACTS}
    missing = [key for key, value in facts.items() if not value]
    if missing:
        raise NodeError(node.name, f"resources: auto needs Ironic's {', '.join(missing)} for the node "
                                   f"and it has none: run `k1prov nodes inspect {node.name}`, "
                                   "or give roles.mesos.resources by hand")
    mesos = mesos_settings(inv)
    percent = mesos["reserved_percent"]
    cpus = max(facts["cpus"] - mesos["reserved_cpus"], 1)   # an agent offering no CPU is of no use
    mem = facts["memory_mb"] - max(mesos["reserved_memory_mb"], facts["memory_mb"] * percent // 100)
    disk_mb = facts["local_gb"] * 1024
    disk = disk_mb - max(mesos["reserved_disk_mb"], disk_mb * percent // 100)
    for name, left, have in (("memory", mem, f"{facts['memory_mb']} MB"),
                             ("disk", disk, f"{facts['local_gb']} GB")):
        if left <= 0:
            raise NodeError(node.name, f"resources: auto leaves no {name} for tasks: Ironic says the "
                                       f"node has {have}, all of it kept as the reserve "
                                       "(lower roles.mesos.reserved_*, or give resources by hand)")
    return f"cpus:{cpus};mem:{mem};disk:{disk}"


def agent_resources(inv: Inventory, node: Node,
                    properties: Mapping[str, Any] | None = None) -> str:
    """--resources for an agent: the inventory's string (the node's own, else the
    role's); `auto`: from the node's Ironic `properties` (auto_resources); nothing given:
    from the inventory's node properties (cpus, memory_mb less a reserve for the OS,
    local_gb)."""
    mesos = mesos_settings(inv)
    written = _written_resources(inv, node)
    if written == AUTO:
        return auto_resources(inv, node, properties)
    if written:
        return written
    parts = []
    props = node.properties
    if props.get("cpus"):
        parts.append(f"cpus:{int(props['cpus'])}")
    if props.get("memory_mb"):
        mem = max(int(props["memory_mb"]) - mesos["reserved_memory_mb"], 256)
        parts.append(f"mem:{mem}")
    if props.get("local_gb"):
        parts.append(f"disk:{int(props['local_gb']) * 1024}")
    return ";".join(parts)


def agent_attributes(inv: Inventory, node: Node) -> str:
    """--attributes: inventory-wide attributes, overridden by the node's own."""
    attrs: dict[str, Any] = dict(mesos_settings(inv)["attributes"])
    where = {k: "roles.mesos.attributes" for k in attrs}
    if node.properties.get("cpu_arch"):
        attrs.setdefault("arch", node.properties["cpu_arch"])
        where.setdefault("arch", "properties.cpu_arch")
    own = node.properties.get("mesos_attributes") or {}
    attrs.update(own)
    where.update({k: "properties.mesos_attributes" for k in own})
    return ";".join(f"{_flat(inv, node, k, where[k])}:{_flat(inv, node, v, where[k])}"
                    for k, v in sorted(attrs.items()))


def mesos_weights(inv: Inventory) -> str:
    weights = mesos_settings(inv)["weights"]
    return ",".join(f"{role}={weight}" for role, weight in sorted(weights.items()))
