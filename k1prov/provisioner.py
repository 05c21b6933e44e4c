"""The facade: one method per user verb, each one line over a verb module.

A Python user (or a CI job) can do everything the CLI does:

    inv = load_inventory("inventories/lab.yaml")
    report = Provisioner(inv).enroll()

The work lives in the verb modules, which take the verb context (k1prov.context):
k1prov.enrollment (nodes enroll/list/delete), k1prov.image_registration (images
register), k1prov.deploy (deploy/undeploy/reimage), k1prov.configure (configure,
render), k1prov.cluster (cluster up/status/down/rebuild). The facade imports them;
none of them imports the facade.
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence
from typing import Callable, Iterable

from k1prov import ad_hoc, cluster, configure, deploy, enrollment, preflight
from k1prov.bench.drf import DrfOptions, DrfResult, run_drf
from k1prov.bench.kmeans import DEFAULT_JOB_TIMEOUT, KmeansOptions, run_kmeans
from k1prov.bench.results import BenchResult
from k1prov.verb_report import ClusterReport
from k1prov.context import RunOptions, VerbContext, default_state_root
from k1prov.fanout import EventSink, Report
from k1prov.image_registration import ImageProgress, register_images
from k1prov.inventory.model import Inventory, Node
from k1prov.verb_report import VerbReport
from k1prov.settings import DEFAULT_TIMEOUTS, Timeouts

__all__ = ["Provisioner", "RunOptions", "VerbContext", "default_state_root"]


class Provisioner:
    def __init__(self, inventory: Inventory, *, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 options: RunOptions = RunOptions(), events: EventSink | None = None,
                 state_root: Path | None = None, notify: Callable[[str], None] | None = None):
        self.context = VerbContext(inventory, timeouts=timeouts, options=options, events=events,
                                   state_root=state_root, notify=notify)

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
        """The nodes a verb works on: the one --limit/--group grammar (context.select_nodes)."""
        return self.context.select(limit, group)

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

    def render(self, out_dir: Path) -> dict:
        """Every host's role scripts and config files under out_dir, and out_dir/plan.json."""
        return configure.render(self.inventory, out_dir)

    # ---- commands on the hosts (k1prov.ad_hoc) and benchmarks (k1prov.bench) ----------

    def run(self, command: str, *, limit: Iterable[str] | None = None, group: str | None = None,
            known_hosts: Path | None = None, script: bool = False,
            args: Sequence[str] = ()) -> Report:
        """A command (or, with script, a script's text run with `args`) on the selected
        hosts over SSH."""
        return ad_hoc.run(self.context, command, limit=limit, group=group, known_hosts=known_hosts,
                          script=script, args=args)

    def bench_kmeans(self, options: KmeansOptions = KmeansOptions(), *,
                     job_timeout: float = DEFAULT_JOB_TIMEOUT) -> BenchResult:
        """The Spark-Perf K-means experiment on the configured cluster (with
        options.contention: against a competing Mesos framework, k1prov.bench.contention)."""
        return run_kmeans(self.inventory, state_root=self.state_root, options=options,
                          timeouts=self.context.timeouts, job_timeout=job_timeout, notify=self.context.notify)

    def bench_drf(self, options: DrfOptions | None = None) -> DrfResult:
        """Weighted DRF on Mesos: two frameworks' dominant shares over time."""
        return run_drf(self.inventory, state_root=self.state_root, options=options or DrfOptions(),
                       timeouts=self.context.timeouts, notify=self.context.notify)

    # ---- the operator's workflow (k1prov.cluster) -----------------------------------

    def cluster_up(self, *, dry_run: bool = False) -> ClusterReport:
        """enroll -> images -> deploy -> SSH -> configure, resumable."""
        # What configure would refuse in the role settings (a tarball without its sha512, a
        # sha512_file that is not there) is refused before anything is enrolled or deployed.
        preflight.check_roles(self.inventory)
        return cluster.up(self.context, dry_run=dry_run)

    def cluster_status(self) -> ClusterReport:
        """Ironic state, address, roles and service health of every node, live."""
        return cluster.status(self.context)

    def cluster_down(self, *, unenroll: bool = False) -> ClusterReport:
        """Stop services and undeploy; with unenroll also delete nodes and k1prov's images."""
        return cluster.down(self.context, unenroll=unenroll)

    def cluster_rebuild(self, *, image: str | None = None) -> ClusterReport:
        """Reimage and reconfigure every node, quorum members one at a time."""
        preflight.check_roles(self.inventory)     # before a node is wiped, as cluster_up
        return cluster.rebuild(self.context, image=image, on_step=self.context.notify)

    def rejoin(self, nodes: Iterable[str], *, image: str | None = None,
               new_host_keys: bool = False) -> VerbReport:
        """Reimage nodes and configure them back into the cluster."""
        preflight.check_roles(self.inventory)     # before a node is wiped, as cluster_up
        return cluster.rejoin(self.context, nodes, image=image, new_host_keys=new_host_keys)
