"""Which role runs in which phase, and the phases of an inventory in dependency order.

ZooKeeper must have a quorum before Mesos masters elect a leader through it;
agents register with an elected master; Spark comes last (its standalone master
before its workers; on Mesos, Spark needs the Mesos masters).
"""
from __future__ import annotations

from dataclasses import dataclass

from k1prov.inventory.model import Inventory, Node

# role -> (phase number, template, human name of the phase)
ROLE_PHASES: dict[str, tuple[int, str, str]] = {
    "zookeeper": (1, "zookeeper/install.sh.j2", "ZooKeeper ensemble"),
    "mesos-master": (2, "mesos/master.sh.j2", "Mesos masters"),
    "mesos-agent": (3, "mesos/agent.sh.j2", "Mesos agents"),
    "spark-master": (4, "spark/master.sh.j2", "Spark masters"),
    "spark-worker": (5, "spark/worker.sh.j2", "Spark workers"),
    "spark-client": (5, "spark/client.sh.j2", "Spark clients"),
}

# Roles whose members form an ensemble with a quorum and one leader. A member whose
# service runs is taken out one at a time, followers first and the leader last
# (k1prov.roles.health.leaders_last): configure restarts them that way when their
# script changed, `cluster rebuild` reimages them that way.
QUORUM_ROLES = ("zookeeper", "mesos-master")


@dataclass(frozen=True)
class Phase:
    name: str                   # what an operator sees, e.g. "Mesos masters"
    role: str
    nodes: tuple[Node, ...]
    order: int                  # roles with the same order may run together


def roles_in_order(node: Node) -> list[str]:
    """The node's roles sorted by phase (inventory order breaks ties)."""
    return sorted((r for r in node.roles if r in ROLE_PHASES), key=lambda r: ROLE_PHASES[r][0])


def phases(inv: Inventory) -> list[Phase]:
    """The phases that have at least one node, in dependency order."""
    result = []
    for role, (order, _template, name) in sorted(ROLE_PHASES.items(), key=lambda item: item[1][0]):
        nodes = inv.with_role(role)
        if nodes:
            result.append(Phase(name=name, role=role, nodes=nodes, order=order))
    return result
