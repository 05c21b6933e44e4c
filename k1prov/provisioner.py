"""The facade: one method per user verb, each one line over a verb module.

A Python user (or a CI job) can do everything the CLI does:

    inv = load_inventory("inventories/lab.yaml")
    report = Provisioner(inv).enroll()

The work lives in the verb modules, which take the verb context (k1prov.context):
k1prov.inventory_check (inventory check), k1prov.enrollment (nodes enroll/list/delete),
k1prov.cleaning (nodes clean), k1prov.inspection (nodes inspect),
k1prov.image_registration (images register), k1prov.deploy (deploy/undeploy/reimage),
k1prov.configure (configure, render), k1prov.ad_hoc (run), k1prov.bench (bench
kmeans/drf), k1prov.runs (runs list/show), k1prov.cluster (cluster
up/status/down/rebuild). The facade imports them; none of them imports the facade.
Every method is one line. The names a caller needs beside it (options, result types,
the parsers of the CLI's option strings) are exported here too, so the CLI imports the
facade and not the verbs.
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence
from typing import Callable, Iterable

from k1prov import (ad_hoc, cleaning, cluster, configure, deploy, enrollment, inspection, inventory_check,
                    runs)
from k1prov.ad_hoc import RunResult, RunTargets
from k1prov.bench.contention import DEFAULT_RELEASE_EVERY, ContentionOptions, parse_levels
from k1prov.bench.drf import DEFAULT_FRAMEWORKS, DrfOptions, DrfResult, parse_frameworks, run_drf
from k1prov.bench.kmeans import (DEFAULT_JOB_TIMEOUT, KmeansOptions, parse_modes, parse_scale_factors,
                                 run_kmeans)
from k1prov.bench.results import BenchResult, faster_mode
from k1prov.cloud import translate as translate_cloud_error
from k1prov.verb_report import ClusterReport
from k1prov.context import RunOptions, VerbContext, default_state_root
from k1prov.fanout import EventSink, Report
from k1prov.image_registration import ImageProgress, register_images
from k1prov.inventory.model import Inventory, Node
from k1prov.inventory_check import InventoryCheck
from k1prov.run_records import RunSummary
from k1prov.runs import RunList
from k1prov.verb_report import DataResult, VerbReport
from k1prov.settings import DEFAULT_TIMEOUTS, Timeouts

__all__ = ["Provisioner", "RunOptions", "VerbContext", "default_state_root",
           # what callers of the verbs need beside the facade
           "BenchResult", "ContentionOptions", "DEFAULT_FRAMEWORKS", "DEFAULT_JOB_TIMEOUT",
           "DEFAULT_RELEASE_EVERY", "DrfOptions", "DrfResult", "InventoryCheck", "KmeansOptions",
           "RunResult", "RunSummary", "RunTargets", "faster_mode", "parse_frameworks", "parse_levels", "parse_modes",
           "parse_scale_factors", "run_exit_code", "translate_cloud_error"]

# The exit code of a `run` report (one rule for every command: k1prov.verb_report.exit_code).
run_exit_code = ad_hoc.exit_code


class Provisioner:
    """The facade: one method per user verb, each a line over the verb module that does it,
    all sharing one verb context (inventory, cloud, timeouts, options, events, state)."""

    def __init__(self, inventory: Inventory, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 options: RunOptions = RunOptions(), events: EventSink | None = None,
                 state_root: Path | None = None, notify: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] | None = None):
        self.context = VerbContext(inventory, timeouts=timeouts, options=options, events=events,
                                   state_root=state_root, notify=notify, warn=warn)

    @property
    def inventory(self) -> Inventory:
        return self.context.inventory

    @property
    def state_root(self) -> Path:
        return self.context.state_root

    @property
    def cluster_state_dir(self) -> Path:
        """This cluster's host keys and known_hosts: STATE_ROOT/<cluster>."""
        return self.context.cluster_state_dir

    def select(self, limit: Iterable[str] | None = None, group: str | None = None) -> list[Node]:
        """The nodes a verb works on: the one --limit/--group grammar (VerbContext.select)."""
        return self.context.select(limit, group)

    # ---- inventory check (k1prov.inventory_check) -------------------------------------

    def check_inventory(self) -> InventoryCheck:
        """Validate the inventory as every verb will; the expanded plan and its warnings."""
        return inventory_check.check(self.context)

    # ---- nodes enroll / list / delete (k1prov.enrollment) ---------------------------

    def enroll(self, *, limit: Iterable[str] | None = None,
               group: str | None = None) -> VerbReport:
        """Find-or-create each node (ports by MAC) and drive it to `available`."""
        return enrollment.enroll(self.context, limit=limit, group=group)

    def list_nodes(self, *, limit: Iterable[str] | None = None,
                   group: str | None = None) -> VerbReport:
        """Ironic's view of each inventory node: provision and power state, last error."""
        return enrollment.list_nodes(self.context, limit=limit, group=group)

    def delete_nodes(self, *, limit: Iterable[str] | None = None,
                     group: str | None = None) -> VerbReport:
        """Delete this cluster's nodes from Ironic (never another cluster's or a foreign node)."""
        return enrollment.delete_nodes(self.context, limit=limit, group=group)

    def clean_nodes(self, *, erase: str = "metadata", limit: Iterable[str] | None = None,
                    group: str | None = None) -> VerbReport:
        """Ironic's manual cleaning: the deploy ramdisk erases the disks; nodes end available."""
        return cleaning.clean(self.context, erase=erase, limit=limit, group=group)

    def inspect_nodes(self, *, limit: Iterable[str] | None = None,
                      group: str | None = None) -> VerbReport:
        """Ironic's in-band inspection by the agent; each row has the node's hardware."""
        return inspection.inspect(self.context, limit=limit, group=group)

    # ---- images and instances (k1prov.image_registration, k1prov.deploy) ------------

    def register_images(self, *, progress: ImageProgress | None = None) -> VerbReport:
        """Deploy kernel/ramdisk and user image into Glance; driver_info of every node."""
        return register_images(self.context, progress=progress)

    def deploy(self, *, limit: Iterable[str] | None = None,
               group: str | None = None) -> VerbReport:
        """available -> active with a config drive, then wait until SSH answers."""
        return deploy.deploy(self.context, limit=limit, group=group)

    def undeploy(self, *, limit: Iterable[str] | None = None,
                 group: str | None = None) -> VerbReport:
        """active -> available (Ironic `deleted`)."""
        return deploy.undeploy(self.context, limit=limit, group=group)

    def reimage(self, nodes: Iterable[str], *, image: str | None = None,
                new_host_keys: bool = False) -> VerbReport:
        """Ironic `rebuild` with a fresh config drive; host keys kept unless new_host_keys."""
        return deploy.reimage(self.context, nodes, image_name=image, new_host_keys=new_host_keys)

    # ---- roles (k1prov.configure) ---------------------------------------------------

    def configure(self, *, roles: Iterable[str] | None = None, limit: Iterable[str] | None = None,
                  group: str | None = None, record=None) -> VerbReport:
        """Role scripts phase by phase: ZooKeeper, Mesos masters, agents, Spark. `record`: the
        run record of an enclosing verb, which then holds the per-host logs."""
        return configure.apply(self.context, roles=roles, limit=limit, group=group, record=record)

    def render(self, out_dir: Path) -> DataResult:
        """Every host's role scripts and config files under out_dir, and out_dir/plan.json."""
        return configure.render(self.context, out_dir)

    # ---- commands on the hosts (k1prov.ad_hoc) and benchmarks (k1prov.bench) ----------

    def run_targets(self, *, limit: Iterable[str] | None = None, group: str | None = None,
                    known_hosts: Path | None = None) -> RunTargets:
        """The hosts `run` would reach and the host keys it would check (for `run(hosts=)`)."""
        return ad_hoc.targets(self.context, limit=limit, group=group, known_hosts=known_hosts)

    def run(self, command: str, *, limit: Iterable[str] | None = None, group: str | None = None,
            known_hosts: Path | None = None, hosts: RunTargets | None = None, script: bool = False,
            args: Sequence[str] = ()) -> RunResult:
        """A command (or, with script, a script's text run with `args`) on the selected
        hosts (or `hosts`, from run_targets) over SSH."""
        return ad_hoc.run(self.context, command, limit=limit, group=group, known_hosts=known_hosts,
                          hosts=hosts, script=script, args=args)

    def bench_kmeans(self, options: KmeansOptions = KmeansOptions(), *,
                     job_timeout: float = DEFAULT_JOB_TIMEOUT) -> BenchResult:
        """The Spark-Perf K-means experiment on the configured cluster (with
        options.contention: against a competing Mesos framework, k1prov.bench.contention)."""
        return run_kmeans(self.context, options=options, job_timeout=job_timeout)

    def bench_drf(self, options: DrfOptions | None = None) -> DrfResult:
        """Weighted DRF on Mesos: two frameworks' dominant shares over time."""
        return run_drf(self.context, options=options or DrfOptions())

    # ---- run records (k1prov.runs) ----------------------------------------------------

    def runs(self) -> RunList:
        """The cluster's run records, newest first."""
        return runs.list_runs(self.context)

    def run_record(self, run_id: str = "latest") -> DataResult:
        """One run's record: meta, report and directory (the result's data)."""
        return runs.show_run(self.context, run_id)

    # ---- the operator's workflow (k1prov.cluster) -----------------------------------

    def cluster_up(self, *, dry_run: bool = False) -> ClusterReport:
        """images -> enroll -> deploy -> SSH -> configure, resumable."""
        return cluster.up(self.context, dry_run=dry_run)

    def cluster_status(self) -> ClusterReport:
        """Ironic state, address, roles and service health of every node, live."""
        return cluster.status(self.context)

    def cluster_down(self, *, unenroll: bool = False) -> ClusterReport:
        """Stop services and undeploy; with unenroll also delete nodes and k1prov's images."""
        return cluster.down(self.context, unenroll=unenroll)

    def cluster_rebuild(self, *, image: str | None = None) -> ClusterReport:
        """Reimage and reconfigure every node, quorum members one at a time."""
        return cluster.rebuild(self.context, image=image)

    def rejoin(self, nodes: Iterable[str], *, image: str | None = None,
               new_host_keys: bool = False) -> VerbReport:
        """Reimage nodes and configure them back into the cluster."""
        return cluster.rejoin(self.context, nodes, image=image, new_host_keys=new_host_keys)
