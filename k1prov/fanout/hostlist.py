"""Host sets in ClusterShell's notation: fold names into `worker[001-040]` and expand
patterns back, with ClusterShell's NodeSet (the notation HPC operators know).

["worker001", ..., "worker040", "db1"] -> "db1,worker[001-040]". Zero padding is kept
(`n01` and `n1` are different names), so expand_hosts(fold_hosts(x)) == sorted set of x.
Node groups (`@name`) are not resolved: no ClusterShell configuration is read.
"""
from __future__ import annotations

from collections.abc import Iterable

# ClusterShell is imported where it is used: `k1prov --help` and the verbs that never fold or
# expand host names do not pay for it at start-up.


def fold_hosts(names: Iterable[str]) -> str:
    """Fold names into one comma-separated node set string, sorted by name pattern."""
    from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet

    return str(NodeSet.fromlist(list(names), resolver=RESOLVER_NOGROUP))


def expand_hosts(pattern: str) -> list[str]:
    """Expand "db1,worker[001-003]" (a ClusterShell node set: names, folded ranges, commas,
    several bracket groups) into names, sorted. A bad pattern raises ValueError."""
    from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet, NodeSetException

    try:
        return list(NodeSet(pattern, resolver=RESOLVER_NOGROUP))
    except NodeSetException as exc:
        raise ValueError(str(exc)) from None
