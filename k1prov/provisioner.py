"""The facade: one method per user verb. The CLI is a thin shell over it.

A Python user (or a CI job) can do everything the CLI does:

    inv = load_inventory("inventories/lab.yaml")
    report = Provisioner(inv).enroll()
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from k1prov.cloud import connect, is_transient
from k1prov.errors import ConfigError
from k1prov.fanout import EventSink, Policy, Status, run_fanout
from k1prov.inventory.model import Inventory, Node
from k1prov.ironic import NEEDS_MANAGE, IronicNodes
from k1prov.outcome import NodeOutcome, VerbReport
from k1prov.settings import DEFAULT_FAILURE_BUDGET, DEFAULT_TIMEOUTS, IRONIC_MAX_CONCURRENCY, Timeouts

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


class Provisioner:
    def __init__(self, inventory: Inventory, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 options: RunOptions = RunOptions(), events: EventSink | None = None,
                 state_root: Path | None = None, notify: Callable[[str], None] | None = None):
        self.inventory = inventory
        self.timeouts = timeouts
        self.options = options
        self.events = events
        self.state_root = state_root or default_state_root()
        self._notify = notify or (lambda msg: log.info("%s", msg))
        self._conn = None

    # ---- helpers -------------------------------------------------------------------

    @property
    def conn(self):
        if self._conn is None:
            self._conn = connect(self.inventory.cloud, api_timeout=self.timeouts.api_request)
        return self._conn

    def _ironic(self) -> IronicNodes:
        return IronicNodes(self.conn, cluster=self.inventory.cluster)

    def _endpoint(self) -> str:
        return self.inventory.cloud.ironic_url or f"cloud:{self.inventory.cloud.cloud}"

    def select(self, limit: Iterable[str] | None) -> list[Node]:
        """The inventory's nodes, or those named in `limit` (unknown names are an input error)."""
        if not limit:
            return list(self.inventory.nodes)
        wanted = list(dict.fromkeys(limit))
        known = {n.name: n for n in self.inventory.nodes}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise ConfigError(f"--limit: not in {self.inventory.path}: {', '.join(unknown)}")
        return [known[name] for name in wanted]

    def _ironic_policy(self, kind: str, *, item_timeout: float) -> Policy:
        ceiling = min(IRONIC_MAX_CONCURRENCY, self.options.max_concurrency or IRONIC_MAX_CONCURRENCY)
        return Policy(kind=kind, endpoint=self._endpoint(), concurrency=self.options.concurrency,
                      max_concurrency=ceiling, item_timeout=item_timeout,
                      failure_budget=self.options.failure_budget,
                      profile_path=self.state_root / "profiles.json")

    def _fan_out(self, kind: str, items: list, fn, *, key, item_timeout: float):
        return run_fanout(items, fn, key=key, policy=self._ironic_policy(kind, item_timeout=item_timeout),
                          events=self.events, is_transient=is_transient)

    # ---- nodes enroll --------------------------------------------------------------

    def enroll(self, *, limit: Iterable[str] | None = None) -> VerbReport:
        """Find-or-create each node (ports by MAC) and drive it to `available`.

        enroll -> manageable makes Ironic check the BMC credentials over IPMI; a node
        that fails gets its own row with Ironic's last_error and the others go on.
        """
        nodes = self.select(limit)
        for node in nodes:
            # Resolve every secret first: a missing password file stops the run before any change.
            node.bmc.password.reveal()
        ironic = self._ironic()
        started = time.monotonic()
        outcomes: dict[str, NodeOutcome] = {n.name: NodeOutcome(node=n.name, status=Status.OK)
                                            for n in nodes}
        report = VerbReport(verb="enroll", outcomes=list(outcomes.values()))

        self._notify(f"enrolling {len(nodes)} node(s)")
        existing = ironic.by_name()
        ensured = self._fan_out("ironic.ensure", nodes,
                                lambda n: ironic.ensure(n, existing.get(n.name)),
                                key=lambda n: n.name, item_timeout=self.timeouts.api_request * 3)
        report.phases.append(("ensure", ensured))
        state: dict[str, str] = {}   # node name -> provision state as far as we know
        uuid_of: dict[str, str] = {}
        for res in ensured.results:
            out = outcomes[res.key]
            if res.status is not Status.OK:
                out.status, out.error = res.status, res.error
                continue
            ens = res.value
            uuid_of[res.key] = out.uuid = ens.uuid
            state[res.key] = ens.provision_state
            out.action = "created" if ens.created else ("updated" if ens.changes else "unchanged")
            out.changes = list(ens.changes)
            if ens.ports_created:
                out.changes.append(f"ports +{ens.ports_created}")
            if ens.ports_deleted:
                out.changes.append(f"ports -{ens.ports_deleted}")
        if ensured.cancelled:
            report.cancelled = True
            return self._finish(report, outcomes, started)

        for action, from_states, target, timeout in (
                ("manage", NEEDS_MANAGE, "manageable", self.timeouts.manage),
                ("provide", {"manageable"}, "available", self.timeouts.provide)):
            names = [name for name, st in state.items() if st in from_states]
            if not names:
                continue
            self._notify(f"{action}: {len(names)} node(s) -> {target}")
            reached = self._fire_and_wait(
                kind=f"ironic.{action}", action=action, names=names,
                fire=lambda name, a=action: ironic.start_action(uuid_of[name], a),
                uuid_of=uuid_of, target=target, timeout=timeout, report=report, outcomes=outcomes)
            for name in names:
                if name in reached:
                    state[name] = target
                else:
                    state.pop(name, None)
            if report.cancelled:
                break
        return self._finish(report, outcomes, started)

    def _fire_and_wait(self, *, kind: str, action: str, names: list[str], fire: Callable[[str], None],
                       uuid_of: dict[str, str], target: str, timeout: float, report: VerbReport,
                       outcomes: dict[str, NodeOutcome]) -> list[str]:
        """Fan `fire` (one provision request per node) out over `names`, then ONE batched
        wait for `target`. Failures and timeouts go to their nodes' rows; returns the names
        that reached `target` (none when the run was interrupted)."""
        fired = self._fan_out(kind, names, fire, key=lambda name: name,
                              item_timeout=self.timeouts.api_request * 3)
        report.phases.append((action, fired))
        started = []
        for res in fired.results:
            if res.status is Status.OK:
                started.append(res.key)
            else:
                outcomes[res.key].status, outcomes[res.key].error = res.status, res.error
        if fired.cancelled:
            report.cancelled = True
            return []
        waited = self._ironic().wait_state([uuid_of[name] for name in started], target, timeout=timeout)
        reached = []
        for name in started:
            result, error = waited.get(uuid_of[name], ("timeout", f"not {target}"))
            if result == "ok":
                reached.append(name)
            else:
                outcomes[name].status = Status.TIMEOUT if result == "timeout" else Status.FAILED
                outcomes[name].error = f"{action}: {error}"
        return reached

    def _finish(self, report: VerbReport, outcomes: dict[str, NodeOutcome], started: float) -> VerbReport:
        """Fill every row with Ironic's current view (one list call, not one GET per node)."""
        current = self._ironic().own_nodes()
        elapsed = time.monotonic() - started
        for name, out in outcomes.items():
            node = current.get(name)
            out.duration = elapsed
            if node is not None:
                out.uuid = node.id
                out.provision_state = node.provision_state
                out.power_state = node.power_state
                if out.status is not Status.OK and node.last_error and not out.error:
                    out.error = node.last_error
        return report

    # ---- nodes list / delete -------------------------------------------------------

    def list_nodes(self, *, limit: Iterable[str] | None = None) -> VerbReport:
        """Ironic's view of each inventory node: provision and power state, last error."""
        nodes = self.select(limit)
        current = self._ironic().own_nodes()
        outcomes = []
        for node in nodes:
            ir = current.get(node.name)
            if ir is None:
                outcomes.append(NodeOutcome(node=node.name, status=Status.SKIPPED, action="not enrolled"))
                continue
            outcomes.append(NodeOutcome(
                node=node.name, status=Status.FAILED if ir.last_error else Status.OK,
                action="maintenance" if ir.is_maintenance else "", uuid=ir.id,
                provision_state=ir.provision_state, power_state=ir.power_state,
                error=ir.last_error or None))
        return VerbReport(verb="list", outcomes=outcomes)

    def delete_nodes(self, *, limit: Iterable[str] | None = None) -> VerbReport:
        """Delete this cluster's nodes from Ironic (never another cluster's or a foreign node)."""
        nodes = self.select(limit)
        ironic = self._ironic()
        existing = ironic.by_name()
        deleted = self._fan_out("ironic.delete", nodes,
                                lambda n: ironic.delete(n.name, existing.get(n.name)),
                                key=lambda n: n.name, item_timeout=self.timeouts.api_request * 3)
        outcomes = []
        for res in deleted.results:
            if res.status is Status.OK:
                outcomes.append(NodeOutcome(node=res.key, status=Status.OK,
                                            action="deleted" if res.value else "absent"))
            else:
                outcomes.append(NodeOutcome(node=res.key, status=res.status, error=res.error))
        return VerbReport(verb="delete", outcomes=outcomes, phases=[("delete", deleted)],
                          cancelled=deleted.cancelled)

    # ---- images and instances (the work lives in k1prov.deploy) --------------------

    @property
    def cluster_state_dir(self) -> Path:
        """This cluster's host keys and known_hosts: STATE_ROOT/<cluster>."""
        return self.state_root / self.inventory.cluster

    def register_images(self, *, progress: Callable[[str, int, int], None] | None = None) -> VerbReport:
        """Deploy kernel/ramdisk and user image into Glance; driver_info of every node."""
        from k1prov import deploy

        return deploy.register_images(self, progress=progress)

    def deploy(self, *, limit: Iterable[str] | None = None) -> VerbReport:
        """available -> active with a config drive, then wait until SSH answers."""
        from k1prov import deploy

        return deploy.deploy(self, limit=limit)

    def undeploy(self, *, limit: Iterable[str] | None = None) -> VerbReport:
        """active -> available (Ironic `deleted`)."""
        from k1prov import deploy

        return deploy.undeploy(self, limit=limit)

    def reimage(self, nodes: Iterable[str], *, image: str | None = None,
                new_host_keys: bool = False) -> VerbReport:
        """Ironic `rebuild` with a fresh config drive; host keys kept unless new_host_keys."""
        from k1prov import deploy

        return deploy.reimage(self, nodes, image_name=image, new_host_keys=new_host_keys)

    # ---- roles (the work lives in k1prov.configure) --------------------------------

    def configure(self, *, roles: Iterable[str] | None = None,
                  limit: Iterable[str] | None = None, record=None) -> VerbReport:
        """Role scripts phase by phase: ZooKeeper, Mesos masters, agents, Spark. `record`: the
        run record of an enclosing verb, which then holds the per-host logs."""
        from k1prov import configure

        return configure.configure(self.inventory, state_root=self.state_root, roles=roles,
                                   limit=list(limit) if limit else None, timeouts=self.timeouts,
                                   options=self.options, events=self.events, notify=self._notify,
                                   record=record)

    def render(self, out_dir: Path) -> dict:
        """Every host's role scripts and config files under out_dir, and out_dir/plan.json."""
        from k1prov import configure

        return configure.render(self.inventory, out_dir)

    # ---- the operator's workflow (the work lives in k1prov.cluster) ----------------

    def cluster_up(self, *, dry_run: bool = False):
        """enroll -> images -> deploy -> SSH -> configure, resumable; returns a ClusterReport."""
        from k1prov import cluster

        return cluster.up(self, dry_run=dry_run)

    def cluster_status(self):
        """Ironic state, address, roles and service health of every node, live."""
        from k1prov import cluster

        return cluster.status(self)

    def cluster_down(self, *, unenroll: bool = False):
        """Stop services and undeploy; with unenroll also delete nodes and k1prov's images."""
        from k1prov import cluster

        return cluster.down(self, unenroll=unenroll)

    def cluster_rebuild(self, *, image: str | None = None):
        """Reimage and reconfigure every node, quorum members one at a time."""
        from k1prov import cluster

        return cluster.rebuild(self, image=image, on_step=self._notify)

    def rejoin(self, nodes: Iterable[str], *, image: str | None = None,
               new_host_keys: bool = False) -> VerbReport:
        """Reimage nodes and configure them back into the cluster."""
        report = self.reimage(nodes, image=image, new_host_keys=new_host_keys)
        rebuilt = [o.node for o in report.outcomes if o.status is Status.OK]
        if rebuilt and not report.cancelled:
            configured = self.configure(limit=rebuilt)
            by_node = {o.node: o for o in report.outcomes}
            for out in configured.outcomes:
                row = by_node[out.node]
                if out.status is not Status.OK and row.status is Status.OK:
                    row.status, row.error = out.status, f"configure: {out.error}"
                elif out.action:
                    row.changes.append(f"{out.action}" + (f" ({', '.join(out.changes)})" if out.changes else ""))
            report.phases.extend(configured.phases)
            report.cancelled = configured.cancelled
        return report
