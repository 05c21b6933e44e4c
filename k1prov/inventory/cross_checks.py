"""Checks that need the whole node list, and the settings of the roles.

Run after every node is parsed: ZooKeeper ids (explicit ones unique, the others
defaulted to the member's position), role combinations that cannot work (Mesos without
ZooKeeper, Spark 4 on Mesos, ...), and `roles:` settings with their defaults.
"""
from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any, NoReturn

from k1prov.inventory import values
from k1prov.inventory.fields import Field
from k1prov.inventory.model import Network, Node, myids
from k1prov.inventory.nodes import Seen, Where, unique
# The renderer's table is the one source of truth: the loader accepts exactly its keys.
from k1prov.roles import role_settings as role_table

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
    defaults = myids([node for node in nodes if node.has_role("zookeeper")])
    out = []
    for node, w in zip(nodes, where):
        if node.has_role("zookeeper"):
            position = defaults[node.name]
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
                  where: list[Where], root: Field) -> dict[str, Any]:
    """The `roles:` settings (k1prov.roles.role_settings: keys, defaults, checks) with defaults
    filled in, after checking that the nodes' roles can work together."""
    given = f.mapping(role_table.ROLE_KEYS) if f is not None else {}

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

    settings: dict[str, Any] = {}
    located: dict[str, dict[str, Field]] = {}
    for section in role_table.DEFAULTS:
        section_f = given.get(section)
        fields = section_f.mapping(role_table.DEFAULTS[section]) if section_f is not None else {}
        located[section] = fields
        resolved = role_table.resolve(
            section, {key: _setting_value(item, role_table.DEFAULTS[section][key])
                      for key, item in fields.items()},
            cluster=cluster, mesos_masters=bool(first_with("mesos-master")),
            fail=_located_fail(section, fields, section_f or f or root),
            install=False)   # checked by `render`/`configure`: enroll needs no sha512
        settings[section] = role_table.stored(section, resolved)
    checksum_file = settings["mesos"]["sha512_file"]
    if checksum_file:
        # A path on this machine: ~ expanded, a relative one from the file's directory.
        settings["mesos"]["sha512_file"] = str(root.src.local_path(checksum_file))
    if role_table.TEMPLATES_DIR in given:
        settings[role_table.TEMPLATES_DIR] = given[role_table.TEMPLATES_DIR].string()

    spark = settings["spark"]
    spark_f = given.get("spark")
    spark_given = located["spark"]
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

    members = [(n, w) for n, w in zip(nodes, where) if n.has_role("zookeeper")]
    if members and len(members) % 2 == 0:
        members[-1][1]["roles"].warn(
            f"{len(members)} zookeeper members: an even ensemble survives no more failures "
            f"than {len(members) - 1} members; use an odd number")
    return settings


def _setting_value(f: Field, default: Any) -> Any:
    """A setting as the renderer takes it. A string setting written as a number keeps
    its text ("version: 3.10" is "3.10", not 3.1); mappings and lists become plain."""
    if isinstance(default, str) and isinstance(f.value, (int, float)) \
            and not isinstance(f.value, bool):
        return f.text()
    if isinstance(f.value, (dict, list)):
        return f.loc.plain()
    return f.value


def _located_fail(section: str, fields: dict[str, Field], fallback: Field):
    """The settings table's fail(key, reason) as a FILE:LINE error at the key's line."""
    def fail(key: str, reason: str) -> NoReturn:
        top, _, sub = key.partition(".")
        where = fields.get(top, fallback)
        line = where.line
        # An entry of a mapping setting (agent_flags.x): the entry's own line.
        if sub and where is not fallback and isinstance(where.value, dict) and sub in where.value:
            line = where.value[sub].line
        raise where.src.error(reason, line=line, path=f"roles.{section}.{key}")
    return fail


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
