"""The verb context: what every verb needs, built once per command. Data and accessors only.

A verb is a module with functions that take a `VerbContext` as their first argument
(k1prov.enrollment, k1prov.image_registration, k1prov.deploy, k1prov.configure,
k1prov.cluster, k1prov.ad_hoc, k1prov.bench, k1prov.inventory_check, k1prov.runs). The
context holds the inventory, the lazily opened cloud connection and the Ironic adapter,
the timeouts and run options, the events sink, notifications and warnings, the state paths, and
one way to get each derived item: the node selection (`select`), the pinned host keys
(`known_hosts`), the SSH target of a node (`ssh_target`), one fan-out policy per
transport (`ironic_policy`, `ssh_policy`). Actions on Ironic live in
k1prov.ironic_actions. Nothing here imports a verb module, so the verbs may import each
other and this module without a cycle.

    ctx = VerbContext(load_inventory("inventories/lab.yaml"))
    report = enrollment.enroll(ctx)
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from k1prov.cloud import connect
from k1prov.errors import ConfigError
from k1prov.fanout import EventSink, Policy, expand_hosts
from k1prov.inventory.model import ROLES, Inventory, Node
from k1prov.ironic import IronicNodes
from k1prov.settings import (DEFAULT_FAILURE_BUDGET, DEFAULT_TIMEOUTS, IRONIC_MAX_CONCURRENCY,
                             IRONIC_RETRIES, IRONIC_RETRY_WAIT, SSH_GIVE_UP_WAIT, SSH_MAX_CONCURRENCY, SSH_RETRIES, Timeouts)
from k1prov.ssh import SshTarget

log = logging.getLogger("k1prov")


def default_state_root() -> Path:
    """Where k1prov keeps what it learns: concurrency profiles, host keys, run records."""
    env = os.environ.get("K1PROV_STATE_DIR")
    return Path(env) if env else Path.home() / ".local" / "state" / "k1prov"


@dataclass(frozen=True)
class RunOptions:
    """How a verb fans out; the same for every verb."""

    concurrency: int | None = None        # fixed level; None = adaptive
    max_concurrency: int | None = None    # operator's ceiling
    failure_budget: float = DEFAULT_FAILURE_BUDGET


# Characters that make a --limit entry a node set rather than one name (ClusterShell's
# ranges, lists and operators; @groups are not resolved, so '@' is an unknown name).
_NODESET_SYNTAX = frozenset("[],!&^@ ")


class VerbContext:
    """What a verb works with: the inventory, the cloud, timeouts, options, events and
    state paths, and one accessor for each item derived from them. No actions."""

    def __init__(self, inventory: Inventory, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 options: RunOptions = RunOptions(), events: EventSink | None = None,
                 state_root: Path | None = None, notify: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] | None = None):
        self.inventory = inventory
        self.timeouts = timeouts
        self.options = options
        self.events = events
        self.state_root = Path(state_root) if state_root is not None else default_state_root()
        # notify: progress for the operator (the CLI drops it under --json); warn: what the
        # operator must hear even then.
        self.notify: Callable[[str], None] = notify or (lambda msg: log.info("%s", msg))
        self.warn: Callable[[str], None] = warn or (lambda msg: log.warning("%s", msg))
        self._conn = None

    # ---- cloud -----------------------------------------------------------------------

    @property
    def conn(self):
        """The openstacksdk connection, opened on first use (a verb that needs no cloud
        never opens one)."""
        if self._conn is None:
            self._conn = connect(self.inventory.cloud, api_timeout=self.timeouts.api_request)
        return self._conn

    def ironic(self) -> IronicNodes:
        return IronicNodes(self.conn, cluster=self.inventory.cluster)

    @property
    def endpoint(self) -> str:
        """The Ironic endpoint's name in concurrency profiles."""
        return self.inventory.cloud.ironic_url or f"cloud:{self.inventory.cloud.cloud}"

    # ---- state paths -------------------------------------------------------------------

    @property
    def cluster_state_dir(self) -> Path:
        """This cluster's host keys and known_hosts: STATE_ROOT/<cluster>."""
        return self.state_root / self.inventory.cluster

    @property
    def profile_path(self) -> Path:
        """The learned concurrency levels of every endpoint (k1prov.fanout.profiles)."""
        return self.state_root / "profiles.json"

    def known_hosts(self) -> Path | None:
        """The cluster's pinned host keys (written by deploy through
        k1prov.hostkeys.write_known_hosts), or None when there are none yet."""
        path = self.cluster_state_dir / "known_hosts"
        return path if path.is_file() else None

    # ---- nodes -------------------------------------------------------------------------

    def select(self, limit: Iterable[str] | None = None, group: str | None = None) -> list[Node]:
        """The nodes a verb targets, in inventory order: the one `--limit`/`--group` grammar.

        `limit`: entries that are each a ClusterShell node set (names, folded patterns like
        `w[01-10]` or `w[01,03]`, comma lists, and combinations: `w[01-04],zk1`); no entries
        means every node. `group`: a role (ROLES). Both given: the nodes of the group that
        are also in the limit. An empty result is not an error here (the caller says there
        is nothing to do); an unknown role, an unknown node name or a bad pattern is, since a
        typo must not silently shrink a run: a ConfigError (exit 2) naming the option.
        """
        inv = self.inventory
        nodes = list(inv.nodes)
        if group is not None:
            if group not in ROLES:
                raise ConfigError(f"--group: unknown role {group!r} (roles: {', '.join(ROLES)})")
            nodes = [n for n in nodes if n.has_role(group)]
        items = [item.strip() for item in (limit or ()) if item.strip()]
        if items:
            wanted: list[str] = []
            for item in items:
                if not _NODESET_SYNTAX.intersection(item):
                    wanted.append(item)          # a plain name (the verbs of cluster up pass many)
                    continue
                try:
                    wanted.extend(expand_hosts(item))
                except ValueError as exc:
                    raise ConfigError(f"--limit: bad host pattern {item!r}: {exc}") from None
            known = {n.name for n in inv.nodes}
            unknown = [name for name in dict.fromkeys(wanted) if name not in known]
            if unknown:
                more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
                raise ConfigError(f"--limit: not in {inv.path}: {', '.join(unknown[:10])}{more}")
            keep = set(wanted)
            nodes = [n for n in nodes if n.name in keep]
        return nodes

    def ssh_target(self, node: Node, known_hosts: Path | None = None) -> SshTarget:
        """How k1prov reaches `node` over SSH: the inventory's ssh section, the node's address."""
        ssh = self.inventory.ssh
        return SshTarget(host=node.name, address=node.address, user=ssh.user, port=ssh.port,
                         key_filename=ssh.private_key, known_hosts=known_hosts,
                         gateway=node.gateway or ssh.gateway)

    # ---- fan-out policies, one per transport --------------------------------------------

    def ironic_policy(self, kind: str, *, item_timeout: float) -> Policy:
        ceiling = min(IRONIC_MAX_CONCURRENCY, self.options.max_concurrency or IRONIC_MAX_CONCURRENCY)
        return Policy(kind=kind, endpoint=self.endpoint, concurrency=self.options.concurrency,
                      max_concurrency=ceiling, item_timeout=item_timeout,
                      retries=IRONIC_RETRIES, retry_wait=IRONIC_RETRY_WAIT,
                      failure_budget=self.options.failure_budget, profile_path=self.profile_path)

    def ssh_policy(self, kind: str, *, item_timeout: float, retries: int = SSH_RETRIES,
                   failure_budget: float | None = None) -> Policy:
        """The one SSH fan-out policy (endpoint "ssh", ceiling SSH_MAX_CONCURRENCY unless the
        operator sets one)."""
        options = self.options
        return Policy(kind=kind, endpoint="ssh", concurrency=options.concurrency,
                      max_concurrency=options.max_concurrency or SSH_MAX_CONCURRENCY,
                      item_timeout=item_timeout, retries=retries,
                      failure_budget=options.failure_budget if failure_budget is None else failure_budget,
                      profile_path=self.profile_path,
                      # Given up (timeout, deadline, Ctrl-C): time for k1prov.ssh to end the
                      # command on the host and say so in its row.
                      cancel_wait=SSH_GIVE_UP_WAIT, cancel_grace=SSH_GIVE_UP_WAIT)
