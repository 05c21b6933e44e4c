"""Whether a node's hardware can carry its roles (issue 21).

Each role needs memory, disk and CPUs; a node's needs are the sums over its roles (the
services run side by side). The facts are the node's Ironic properties (`memory_mb`,
`local_gb`, `cpus`), as the inventory's `properties` or an inspection set them. `deploy`,
`reimage` and `cluster up` refuse, before writing a disk, a node that has less than its
roles need; a fact Ironic does not have is not checked. The defaults are modest (a lab
host, not a production sizing); an inventory raises or lowers them per role under
`roles: {common: {needs: {ROLE: {memory_mb: N, local_gb: N, cpus: N}}}}`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k1prov.errors import InventoryError
from k1prov.inventory.model import ROLES, Inventory, Node

# What a need is measured in: Ironic's property names.
NEED_KEYS = ("memory_mb", "local_gb", "cpus")
ROLE_NEEDS: dict[str, dict[str, int]] = {
    "zookeeper": {"memory_mb": 1024, "local_gb": 2, "cpus": 1},
    "mesos-master": {"memory_mb": 1024, "local_gb": 2, "cpus": 1},
    "mesos-agent": {"memory_mb": 2048, "local_gb": 4, "cpus": 1},
    "spark-master": {"memory_mb": 1024, "local_gb": 1, "cpus": 1},
    "spark-worker": {"memory_mb": 2048, "local_gb": 4, "cpus": 1},
    "spark-client": {"memory_mb": 512, "local_gb": 1, "cpus": 0},
}
_UNITS = {"memory_mb": "MB of memory", "local_gb": "GB of disk", "cpus": "CPUs"}


def resolve_needs(given: Any, fail) -> dict[str, dict[str, int]]:
    """The needs table: the defaults with the inventory's `needs` over them, each value a
    whole number >= 0. `fail(reason)` reports a problem (with its place)."""
    if not isinstance(given, Mapping):
        fail("must be a mapping of role to {memory_mb, local_gb, cpus}")
    table = {role: dict(needs) for role, needs in ROLE_NEEDS.items()}
    for role, needs in given.items():
        if role not in ROLES:
            fail(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        if not isinstance(needs, Mapping):
            fail(f"{role}: must be a mapping of {', '.join(NEED_KEYS)}")
        for key, value in needs.items():
            if key not in NEED_KEYS:
                fail(f"{role}.{key}: unknown need (known: {', '.join(NEED_KEYS)})")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                fail(f"{role}.{key}: must be a whole number >= 0, got {value!r}")
            table[role][key] = value
    return table


def needs_of(inv: Inventory) -> dict[str, dict[str, int]]:
    """The inventory's needs table (the loader checked it; an Inventory built in Python
    gets the same checks here)."""
    def fail(reason: str):
        raise inv.error("roles.common.needs", reason)
    return resolve_needs((inv.roles.get("common") or {}).get("needs") or {}, fail)


def misfit(node: Node, properties: Mapping[str, Any] | None,
           table: Mapping[str, Mapping[str, int]]) -> str | None:
    """Why the node cannot carry its roles, or None. Names the need, the roles behind it
    and the fact Ironic has."""
    facts = properties or {}
    for key in NEED_KEYS:
        need = sum(table[role][key] for role in node.roles)
        have = fact(facts, key)
        if have is not None and need > have:
            roles = " + ".join(r for r in node.roles if table[r][key]) or "its roles"
            return (f"{roles} need {need} {_UNITS[key]}; Ironic says the node has {have} "
                    f"(properties.{key}); raise it, lower roles.common.needs, or move a role")
    return None


def fact(properties: Mapping[str, Any], key: str) -> int | None:
    """One of the node's Ironic properties as a whole number, None when Ironic does not
    have it (role fit and `resources: auto` read the facts the same way)."""
    value = properties.get(key)
    # Ironic keeps properties as given: numbers, or strings from older clients.
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None
