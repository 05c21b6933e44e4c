"""Checks that need the whole node list, and the settings of the roles.

Run after every node is parsed: ZooKeeper ids (explicit ones unique, the others
defaulted to the member's position), role combinations that cannot work (Mesos without
ZooKeeper, Spark 4 on Mesos, ...), and `roles:` settings with their defaults.
"""
from __future__ import annotations

import copy
import ipaddress
from dataclasses import replace
from typing import Any

from k1prov.inventory import values
from k1prov.inventory.fields import Field
from k1prov.inventory.model import Network, Node
from k1prov.inventory.nodes import Seen, Where, ident, unique

# Settings of each role, with their defaults. None is filled in from the rest of the
# inventory: spark.manager from the nodes' roles, mesos.cluster_name from the cluster.
ROLE_SETTINGS: dict[str, dict[str, Any]] = {
    "zookeeper": {"version": "3.8", "source": "distro", "client_port": 2181,
                  "peer_port": 2888, "election_port": 3888},
    "mesos": {"version": "1.11.0", "source": "aventer", "cluster_name": None, "roles": {},
              "containerizers": "mesos", "master_port": 5050, "agent_port": 5051},
    "spark": {"version": "3.5.7", "manager": None, "mode": "coarse", "source": "tarball",
              "master_port": 7077},
}
SPARK_MANAGERS = ("standalone", "mesos")
SPARK_MODES = ("coarse", "fine")
MESOS_CONTAINERIZERS = ("mesos", "docker")


def zookeeper_ids(nodes: list[Node], where: list[Where]) -> list[Node]:
    """Check explicit ids and give every member its id (default: position + 1)."""
    explicit: dict[int, Seen] = {}
    for node, w in zip(nodes, where):
        if node.zookeeper_id is None:
            continue
        f = w["zookeeper_id"]
        if not node.has_role("zookeeper"):
            f.fail(f"{node.name} has a zookeeper_id but not the zookeeper role")
        unique(explicit, node.zookeeper_id, f, Seen(node.name, node.line),
               f"duplicate zookeeper_id {node.zookeeper_id} on {node.name}")
    out, position = [], 0
    for node, w in zip(nodes, where):
        if node.has_role("zookeeper"):
            position += 1
            if node.zookeeper_id is None:
                if position in explicit:
                    first = explicit[position]
                    w["roles"].fail(
                        f"{node.name} would get the default zookeeper_id {position} "
                        f"(its position among zookeeper members), which {first.node} "
                        f"(line {first.line}) sets explicitly; give every member a zookeeper_id")
                node = replace(node, zookeeper_id=position)
        out.append(node)
    return out


def role_settings(f: Field | None, cluster: str, nodes: list[Node],
                  where: list[Where], root: Field) -> dict[str, dict[str, Any]]:
    """The `roles:` settings with defaults filled in, after checking that the nodes'
    roles can work together."""
    given = f.mapping(ROLE_SETTINGS) if f is not None else {}
    settings: dict[str, dict[str, Any]] = {}
    for role, known in ROLE_SETTINGS.items():
        current = copy.deepcopy(known)   # never share the default {} between inventories
        if role in given:
            for key, item in given[role].mapping(known).items():
                current[key] = role_value(key, item)
        settings[role] = current

    def first_with(*roles: str) -> tuple[Node, Field] | None:
        for node, w in zip(nodes, where):
            if any(node.has_role(r) for r in roles):
                return node, w["roles"]
        return None

    mesos = first_with("mesos-master", "mesos-agent")
    if mesos and not first_with("zookeeper"):
        mesos[1].fail(f"{mesos[0].name} has a Mesos role but no node has the zookeeper role "
                      "(Mesos masters elect their leader through ZooKeeper)")
    agent = first_with("mesos-agent")
    if agent and not first_with("mesos-master"):
        agent[1].fail(f"{agent[0].name} is a mesos-agent but no node is a mesos-master")

    spark = settings["spark"]
    spark_f = given.get("spark")
    spark_given = spark_f.mapping(ROLE_SETTINGS["spark"]) if spark_f is not None else {}
    if spark["manager"] is None:
        spark["manager"] = "mesos" if mesos else "standalone"
    uses_spark = first_with("spark-master", "spark-worker", "spark-client") or spark_f
    if uses_spark and values.major(spark["version"]) >= 4 and (spark["manager"] == "mesos"
                                                                or mesos):
        why = "spark.manager is mesos" if spark["manager"] == "mesos" else \
            f"{mesos[0].name} has a Mesos role"
        spark_given.get("version", spark_f or root).fail(
            f"Spark {spark['version']} cannot run on Mesos ({why}): Spark removed Mesos "
            "support in 4.0; use Spark 3.5.x, or manager: standalone without Mesos roles")
    if spark["manager"] == "mesos" and uses_spark and not first_with("mesos-master"):
        spark_given.get("manager", spark_f or root).fail(
            "spark.manager is mesos but no node is a mesos-master")
    worker = first_with("spark-worker")
    if spark["manager"] == "standalone" and worker and not first_with("spark-master"):
        worker[1].fail(f"{worker[0].name} is a spark-worker but no node is a spark-master "
                       "(spark.manager is standalone)")
    if settings["mesos"]["cluster_name"] is None:
        settings["mesos"]["cluster_name"] = cluster

    members = [(n, w) for n, w in zip(nodes, where) if n.has_role("zookeeper")]
    if members and len(members) % 2 == 0:
        members[-1][1]["roles"].warn(
            f"{len(members)} zookeeper members: an even ensemble survives no more failures "
            f"than {len(members) - 1} members; use an odd number")
    return settings


def role_value(key: str, f: Field) -> Any:
    if key == "version":
        return f.check(values.version, f.text())
    if key.endswith("_port"):
        return f.check(values.port, f.value)
    if key == "roles":
        f.mapping(f.value.keys() if isinstance(f.value, dict) else ())
        return f.loc.plain()
    if key == "manager":
        return f.choice(SPARK_MANAGERS)
    if key == "mode":
        return f.choice(SPARK_MODES)
    if key == "containerizers":
        text = f.string()
        for part in text.split(","):
            if part.strip() not in MESOS_CONTAINERIZERS:
                f.fail(f"{part.strip()!r} is not a Mesos containerizer "
                       f"({', '.join(MESOS_CONTAINERIZERS)})")
        return ",".join(p.strip() for p in text.split(","))
    if key == "cluster_name":
        return f.check(values.cluster_name, f.string())
    return ident(f)   # source


def network_warnings(network: Network, nodes: list[Node], where: list[Where]) -> None:
    """Warn (once) when a node's address is outside the gateway's network."""
    if network.gateway is None:
        return
    subnet = ipaddress.ip_network(f"{network.gateway}/{network.prefix_length}", strict=False)
    for node, w in zip(nodes, where):
        if ipaddress.ip_address(node.address) not in subnet:
            w["address"].warn(f"{node.address} of {node.name} is outside {subnet}, "
                              f"the network of gateway {network.gateway}")
            return
