"""The operator's workflow: `cluster up`, `status`, `down`, `rebuild`.

Each verb is a sequence of the single verbs (enroll, images, deploy, configure, ...)
run on the nodes that are still healthy: a node that fails a phase gets a failed row
and leaves the later phases, the others go on. Every phase starts from the real state
(Ironic's node states, Glance's images, the role hashes recorded on the hosts), so a
re-run after a failure or Ctrl-C continues where the last one stopped, and a re-run
on a healthy cluster changes nothing.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from k1prov import configure, configure_plan, deploy, enrollment, glance, inspection, preflight
from k1prov.context import VerbContext
from k1prov.deploy_logs import keep, newest_logs
from k1prov.errors import K1provError
from k1prov.host_layout import HOST
from k1prov.fanout import Status
from k1prov.image_registration import put_images
from k1prov.ironic_actions import fan_out
from k1prov.inventory.model import Inventory, Node
from k1prov.ironic_states import CLEANING, ironic_plan, settles_to
from k1prov.verb_report import ClusterReport, NodeOutcome, PhaseResult, VerbReport
from k1prov.ad_hoc import run_on_hosts
from k1prov.probe import batch_runner
from k1prov.roles import render_all
from k1prov.roles.derive import mesos_zk_url, spark_master_url, zk_connect
from k1prov.roles.health import (Check, HealthResult, cluster_checks, cluster_gates, leaders_last, sample,
                                 wait_until_all_healthy)
from k1prov.roles.plan import QUORUM_ROLES
from k1prov.roles.role_settings import mesos_settings, spark_settings
from k1prov.run_records import RunRecord, locked_run
from k1prov.ssh_ready import wait_ssh, write_pinned_known_hosts

log = logging.getLogger("k1prov.cluster")

# The phases of `cluster up`, in order.
# The images come first: enroll writes the deploy kernel/ramdisk into each node's
# driver_info before `provide`, which with automated cleaning boots them (issue 21).
UP_PHASES = ("images", "enroll", "deploy", "ssh", "configure")
# The cluster checks of the ensembles whose quorum a rebuild keeps (QUORUM_ROLES' members).
QUORUM_CHECKS = ("zookeeper", "mesos")
# Share of the other nodes rebuilt together in one batch of a rebuild.
REBUILD_BATCH_SHARE = 0.25

# Stops what the role scripts started: systemd units, or the supervised processes whose
# pid files the scripts keep (templates/common/base.sh.j2, k1_service).
STOP_SERVICES = rf"""
if [ -d /run/systemd/system ]; then systemctl stop '{HOST.unit_prefix}*' 2>/dev/null || true; fi
for f in {HOST.run_dir}/*.pid; do
  [ -f "$f" ] || continue
  read -r pid _ < "$f" || continue
  # The launcher leads its own session (k1_service): signal the whole group.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  rm -f "$f"
done
rm -f {HOST.roles_dir}/*.sha256
echo stopped
"""


class _Pipeline:
    """Runs phases over the nodes still in play; failures leave the pipeline."""

    def __init__(self, ctx: VerbContext, report: ClusterReport, nodes: list[Node]):
        self.ctx = ctx
        self.report = report
        self.alive = [n.name for n in nodes]
        self.errors: dict[str, str] = {}

    def phase(self, name: str, fn: Callable[[list[str]], VerbReport | None], *, note: str = "") -> bool:
        """Run one phase on the nodes still alive; False when the run must stop."""
        if not self.alive:
            self.report.phases.append(PhaseResult(name, None, 0.0, "skipped: no node left"))
            return False
        self.ctx.notify(f"phase {name}: {len(self.alive)} node(s)")
        t0 = time.monotonic()
        rep = fn(list(self.alive))
        self.report.phases.append(PhaseResult(name, rep, time.monotonic() - t0, note))
        if rep is None:
            return True
        for out in rep.outcomes:
            if out.status is not Status.OK and out.node in self.alive:
                self.errors.setdefault(out.node, f"{name}: {out.error or out.status.value}")
        self.alive = [n for n in self.alive if n not in self.errors]
        if rep.cancelled:
            self.report.cancelled = True
            return False
        return True


def _ssh_phase(ctx: VerbContext, names: list[str]) -> VerbReport:
    """Every active node answers SSH with its pinned host key (deploy waited only for the
    nodes it deployed in this run; a resumed run must not assume the others are up).

    A node that does not answer within one connect timeout may have lost power since it
    was deployed (Ironic keeps it `active`, and its record of the power may be stale): it
    is powered on through Ironic, which reads the BMC first and leaves a node that is on
    as it is, then waited for like a fresh boot (timeouts.ssh_ready)."""
    nodes = ctx.select(names)
    known_hosts = write_pinned_known_hosts(ctx)
    first = wait_ssh(ctx, nodes, known_hosts=known_hosts, fired_at={}, ready_timeout=ctx.timeouts.ssh_connect)
    outcomes = {r.key: NodeOutcome(node=r.key, status=r.status, action="ssh ok" if r.status is Status.OK else "",
                                   error=r.error) for r in first.results}
    report = VerbReport(verb="ssh", outcomes=list(outcomes.values()), phases=[("ssh.ready", first)],
                        cancelled=first.cancelled)
    silent = [n for n in nodes if outcomes[n.name].status is not Status.OK]
    if not silent or report.cancelled:
        return report
    ctx.notify(f"ssh: {', '.join(n.name for n in silent)} not answering: power on through Ironic "
               "(a node that is on is left as it is), then wait for SSH")
    current = ctx.ironic().own_nodes()
    ironic = ctx.ironic()

    def power_on(node: Node) -> None:
        ironic.power_on(node.name, current[node.name].id, timeout=ctx.timeouts.power)

    powered = fan_out(ctx, "ironic.power", [n for n in silent if n.name in current], power_on,
                      key=lambda n: n.name, item_timeout=ctx.timeouts.power + ctx.timeouts.api_request)
    report.phases.append(("ironic.power", powered))
    report.cancelled = powered.cancelled
    on = [n for n in silent if n.name in {r.key for r in powered.results if r.status is Status.OK}]
    for res in powered.results:
        if res.status is not Status.OK:
            outcomes[res.key].status, outcomes[res.key].error = res.status, res.error
    if not on or report.cancelled:
        return report
    again = wait_ssh(ctx, on, known_hosts=known_hosts, fired_at={})
    report.phases.append(("ssh.ready after power on", again))
    report.cancelled = again.cancelled
    for res in again.results:
        out = outcomes[res.key]
        out.status, out.error = res.status, res.error
        out.action = "ssh ok after a power on through Ironic" if res.status is Status.OK else ""
    return report


def _transition_timeout(ctx: VerbContext, state: str, target: str) -> float:
    """The timeout of the transition a node in `state` is on, towards `target`."""
    if target == "active":
        return ctx.timeouts.deploy
    if state in CLEANING:
        return ctx.timeouts.clean
    if state == "deleting":
        return ctx.timeouts.undeploy
    return ctx.timeouts.manage


def _settle_then(ctx: VerbContext, names: list[str],
                 verb: Callable[[list[str], dict[str, Any] | None], VerbReport]) -> VerbReport:
    """Wait for the nodes a previous (interrupted) run left in a transition, then run verb;
    verb(names, listing) gets the node listing read here when nothing had to settle."""
    ironic = ctx.ironic()
    listing = ironic.by_name()
    current = {name: n for name, n in listing.items() if ironic.owned(n)}
    # (target, the timeout of the transition) -> the nodes on their way there.
    by_target: dict[tuple[str, float], list[str]] = {}
    for name in names:
        ir = current.get(name)
        target = settles_to(ir) if ir is not None else None
        if target is None:
            continue
        by_target.setdefault((target, _transition_timeout(ctx, ir.provision_state, target)),
                             []).append(ir.id)
    for (target, timeout), uuids in by_target.items():
        ctx.notify(f"waiting for {len(uuids)} node(s) an earlier run left on their way to {target}")
        # Failures show in the verb that follows (it reads the node states again).
        ctx.ironic().wait_state(uuids, target, timeout=timeout)
    return verb(names, None if by_target else listing)


@contextlib.contextmanager
def _recorded(ctx: VerbContext, report: ClusterReport, verb: str) -> Iterator[RunRecord]:
    """Hold the cluster's lock and keep a run record for the whole verb. Ctrl-C ends the
    verb there: the report says what was done and the record is written all the same."""
    inv = ctx.inventory
    with locked_run(ctx.state_root, inv.cluster, verb, inventory=inv.path, wait=ctx.timeouts.lock,
                    notify=ctx.notify) as record:
        report.run_dir = str(record.path)
        try:
            yield record
        except KeyboardInterrupt:
            report.cancelled = True
            _summarize(ctx, report, errors={}, live=False)
        finally:
            _keep_deploy_logs(report, record)
            record.finish(report.to_dict(), exit_code=report.exit_code())


def up(ctx: VerbContext, *, dry_run: bool = False) -> ClusterReport:
    """register images -> enroll (with the deploy refs) -> deploy -> wait for SSH -> configure
    (with health gates)."""
    inv = ctx.inventory
    # What configure would refuse in the role settings (a tarball without its sha512, a
    # sha512_file that is not there) is refused before anything is enrolled or deployed.
    preflight.check_roles(inv)
    if dry_run:
        return plan(ctx)
    report = ClusterReport(verb="cluster up")
    with _recorded(ctx, report, "cluster up") as record:
        pipe = _Pipeline(ctx, report, list(inv.nodes))
        # The deploy refs the images phase registered ({} when it could not: enroll goes
        # on without them, as the conductor's default deploy images may do).
        refs: dict[str, str] = {}

        def images(names: list[str]) -> VerbReport:
            registered = put_images(ctx, record=record)
            refs.update(registered.deploy_images)
            return registered.report

        steps: list[tuple[str, Callable[[list[str]], VerbReport | None]]] = [
            ("images", images),
            ("enroll", lambda names: _settle_then(
                ctx, names, lambda limit, listing: enrollment.enroll(ctx, limit=limit, existing=listing,
                                                                     deploy_images=refs))),
            ("deploy", lambda names: deploy.deploy(ctx, limit=names)),
            ("ssh", lambda names: _ssh_phase(ctx, names)),
            ("configure", lambda names: configure.apply(ctx, limit=names, record=record)),
        ]
        for name, fn in steps:
            if not pipe.phase(name, fn):
                break
        # configure's gates looked at the health after its last change (on a healthy cluster:
        # with the hosts' status, a moment ago); the verdict starts from what they saw.
        configured = next((p.report for p in report.phases if p.name == "configure" and p.report), None)
        seen = configured.health if configured is not None and not pipe.errors else {}
        # After a Ctrl-C the operator wants the prompt back, not a round of health checks.
        _summarize(ctx, report, errors=pipe.errors, live=not report.cancelled, timed=True, seen=seen)
    return report


def plan(ctx: VerbContext) -> ClusterReport:
    """What `cluster up` would do, from the real state; changes nothing. Ironic's states
    say what enroll and deploy would do; for the active nodes, the hosts themselves say
    what configure would do: the same read and the same decisions as the real run
    (k1prov.configure_plan.plan: recorded script hashes, service states, one read-only session
    per host, bounded by the same timeouts), and the cluster's health from that read.
    A host that cannot be read is reported as unreachable, with the reason."""
    inv = ctx.inventory
    report = ClusterReport(verb="cluster up", dry_run=True)
    current = ctx.ironic().own_nodes()
    rendered = render_all(inv, inspection.agent_facts(ctx))   # a bad role setting shows here, as in the real run
    active = [n.name for n in inv.nodes
              if current.get(n.name) is not None and current[n.name].provision_state == "active"]
    read = configure_plan.plan(ctx, {name: rendered[name] for name in active},
                               checks=cluster_checks(inv) if active else {},
                               known_hosts=ctx.known_hosts())
    for node in inv.nodes:
        ir = current.get(node.name)
        state = ir.provision_state if ir else None
        steps: list[str] = []
        error = None
        roles = ", ".join(s.role for s in rendered[node.name])
        if state != "active":
            # Enroll and deploy from the state sets the real run uses (ironic_plan).
            steps, end = ironic_plan(state)
            steps += [f"configure {roles}"] if roles and end == "active" else []
        else:
            host = read.hosts[node.name]
            if host.error:
                error = f"unreachable: {host.error}"
                steps += [f"{error} (what configure would do is unknown)"]
            elif host.to_do:
                steps += ["configure " + ", ".join(f"{d.role} ({d.reason})" for d in host.to_do)]
        report.rows.append({"node": node.name, "provision_state": state or "not enrolled",
                            "address": node.address, "roles": list(node.roles),
                            "plan": "; ".join(steps) or "nothing to do", "error": error})
    if active:
        for gate, result in read.health().items():
            report.health[gate] = ("ok: " if result.ok else "unhealthy: ") + result.summary
    report.endpoints = endpoints(inv)
    return report


def endpoints(inv: Inventory) -> dict[str, str]:
    out: dict[str, str] = {}
    if inv.with_role("zookeeper"):
        out["zookeeper"] = zk_connect(inv)
    if inv.with_role("mesos-master"):
        port = mesos_settings(inv)["master_port"]
        out["mesos"] = mesos_zk_url(inv)
        out["mesos_ui"] = ", ".join(f"http://{n.address}:{port}" for n in inv.with_role("mesos-master"))
    if inv.with_role("spark-master"):
        spark = spark_settings(inv)
        out["spark"] = spark_master_url(inv)
        if spark["manager"] == "standalone":
            out["spark_ui"] = ", ".join(f"http://{n.address}:{spark['master_webui_port']}"
                                        for n in inv.with_role("spark-master"))
    return out


def health_snapshot(ctx: VerbContext, *, checks: dict[str, Check] | None = None) -> dict[str, HealthResult]:
    """One look at each role's health (no waiting): gate -> HealthResult. Every check
    once, all of them together in one SSH session per host (k1prov.roles.health.sample)."""
    inv = ctx.inventory
    run = batch_runner(ctx, known_hosts=ctx.known_hosts())
    return sample(cluster_checks(inv) if checks is None else checks, run)


def health_verdict(ctx: VerbContext, *, checks: dict[str, Check] | None = None,
                   timeout: float | None = None,
                   seen: dict[str, HealthResult] | None = None) -> dict[str, HealthResult]:
    """The cluster's health as a verb's exit code states it: looked at again every few
    seconds while something is unhealthy, until all is well or `timeout` (default
    timeouts.health_verdict) has passed; one unhealthy sample is not a verdict.

    `seen`: what configure's gates saw after the verb's last change, by gate. When it
    covers every check of the cluster and all passed, that is the verdict (no new look)."""
    timeout = ctx.timeouts.health_verdict if timeout is None else timeout
    gates = cluster_gates(ctx.inventory)
    if checks is None and seen and all(g in seen and seen[g].ok for g in gates.values()):
        return {name: seen[gate] for name, gate in gates.items()}
    first = True

    def look() -> dict[str, HealthResult]:
        nonlocal first
        results = health_snapshot(ctx, checks=checks)
        bad = [f"{gate} ({r.summary})" for gate, r in results.items() if not r.ok]
        if bad and first and timeout > 0:
            ctx.notify(f"health: {', '.join(bad)} not healthy yet; looking again for up to {timeout:.0f} s")
        first = False
        return results

    return wait_until_all_healthy(look, health_timeout=timeout)


def _summarize(ctx: VerbContext, report: ClusterReport, *, errors: dict[str, str],
               live: bool = True, timed: bool = False, seen: dict[str, HealthResult] | None = None) -> None:
    """The report's rows, endpoints and health. `live`: the health verdict (a bounded
    wait, see health_verdict; `seen`: what configure's gates saw); `timed`: it shows as
    the phase "health"."""
    inv = ctx.inventory
    try:
        current = ctx.ironic().own_nodes()
    except K1provError as exc:
        current = {}
        report.health["ironic"] = f"unreachable: {exc}"
    t0 = time.monotonic()
    # Waiting helps a cluster whose members all run; one that has members not deployed
    # will not heal by itself: one look says so.
    deployed = all(current.get(n.name) is not None and current[n.name].provision_state == "active"
                   for n in inv.nodes if n.roles)
    checks = (health_verdict(ctx, seen=seen, timeout=None if deployed else 0.0)
              if live and current else {})
    if timed and checks:
        verdict = "ok" if all(r.ok for r in checks.values()) else "unhealthy"
        report.phases.append(PhaseResult("health", None, time.monotonic() - t0, verdict))
    states: dict[str, list[str]] = {}
    for gate, result in checks.items():
        report.health[gate] = ("ok: " if result.ok else "unhealthy: ") + result.summary
        for node_name, state in result.states.items():
            states.setdefault(node_name, []).append(f"{gate} {state}")
    logs = (newest_logs(inv.cloud.deploy_logs, [ir.id for ir in current.values()])
            if inv.cloud.deploy_logs else {})
    for node in inv.nodes:
        ir = current.get(node.name)
        log = logs.get(ir.id) if ir and logs else None
        report.rows.append({
            "node": node.name,
            "provision_state": ir.provision_state if ir else "not enrolled",
            "power_state": ir.power_state if ir else None,
            "conductor_group": (ir.conductor_group or None) if ir else None,
            "shard": (ir.shard or None) if ir else None,
            "address": node.address, "roles": list(node.roles),
            "health": "; ".join(states.get(node.name, [])) or None,
            "error": errors.get(node.name) or ((ir.last_error or None) if ir else None),
            # The agent's log of the node's last deploy (cloud.deploy_logs), if k1prov sees it.
            "deploy_log": str(log) if log else None,
            # CPUs, memory and disk as Ironic has them (inspection's or the inventory's
            # properties); disks and NICs one by one are `nodes list --json`'s (a GET each).
            "hardware": inspection.facts(ir.properties or {}, None) if ir else None,
        })
    report.endpoints = endpoints(inv)


def _keep_deploy_logs(report: ClusterReport, record: RunRecord) -> None:
    """Copy into the run record the agent logs of the deploys this run made (newer than
    its start); the row then names the copy."""
    for row in report.rows:
        log = row.get("deploy_log")
        try:
            if log and Path(log).stat().st_mtime >= record.started:
                row["deploy_log"] = str(keep(Path(log), record.host_dir(row["node"])))
        except OSError:
            continue


def status(ctx: VerbContext) -> ClusterReport:
    report = ClusterReport(verb="cluster status")
    _summarize(ctx, report, errors={})
    return report


def down(ctx: VerbContext, *, unenroll: bool) -> ClusterReport:
    """Stop the role services, undeploy every node; with unenroll also delete the nodes and
    k1prov's images of this cluster."""
    inv = ctx.inventory
    report = ClusterReport(verb="cluster down")
    with _recorded(ctx, report, "cluster down"):
        current = ctx.ironic().own_nodes()
        active = [n for n in inv.nodes if current.get(n.name) is not None
                  and current[n.name].provision_state == "active"]
        t0 = time.monotonic()
        if active:
            stopped = run_on_hosts(ctx, STOP_SERVICES, nodes=active, known_hosts=ctx.known_hosts())
            bad = [r.key for r in stopped.results if r.status is not Status.OK]
            note = f"stopped services on {len(active) - len(bad)} node(s)"
            # A host that does not answer is undeployed all the same: its disk is wiped.
            note += f"; unreachable: {', '.join(bad)}" if bad else ""
            report.phases.append(PhaseResult("stop services", None, time.monotonic() - t0, note))
        pipe = _Pipeline(ctx, report, list(inv.nodes))
        ok = pipe.phase("undeploy", lambda names: deploy.undeploy(ctx, limit=names))
        if ok and unenroll:
            ok = pipe.phase("delete nodes", lambda names: enrollment.delete_nodes(ctx, limit=names))
            if ok and not pipe.errors:
                t0 = time.monotonic()
                deleted = glance.delete_own_images(ctx.conn, inv.cluster)
                report.phases.append(PhaseResult("delete images", None, time.monotonic() - t0,
                                                 f"{len(deleted)} image(s) deleted"))
        _summarize(ctx, report, errors=pipe.errors, live=False)
    return report


def rebuild(ctx: VerbContext, *, image: str | None = None) -> ClusterReport:
    """Reimage and reconfigure every node. Quorum members (ZooKeeper, Mesos masters) go one
    at a time, followers first and the leaders last (k1prov.roles.health.leaders_last, the
    leaders read again before each member's turn: the look that saw the ensemble healthy
    after the previous member), and the ensemble must be healthy again before the next;
    the other nodes go in parallel batches. A failed node stops the rebuild of the quorum
    members (losing a second one would break the quorum) but not of the batches."""
    inv = ctx.inventory
    preflight.check_roles(inv)      # before a node is wiped, as cluster up
    report = ClusterReport(verb="cluster rebuild")
    step = ctx.notify
    with _recorded(ctx, report, "cluster rebuild") as record:
        errors: dict[str, str] = {}
        remaining = [n for n in inv.nodes if any(r in n.roles for r in QUORUM_ROLES)]
        others = [n for n in inv.nodes if n not in remaining]
        ensembles = health_snapshot(ctx, checks=_quorum_checks(inv)) if remaining else {}
        while remaining:
            # The leadership may have moved during the last member's rebuild: a member
            # that leads now waits for the end.
            node = leaders_last(remaining, ensembles.values())[0]
            remaining.remove(node)
            step(f"rebuild {node.name}")
            if not _rebuild_group(ctx, report, [node.name], image=image, errors=errors, record=record):
                break
            healthy, ensembles = _wait_quorum(ctx)
            report.phases.append(PhaseResult(f"quorum after {node.name}", None, 0.0, healthy))
            if not healthy.startswith("ok"):
                errors.setdefault(node.name, f"quorum not back after rebuild: {healthy}")
                break
        else:
            size = max(1, int(len(others) * REBUILD_BATCH_SHARE))
            for i in range(0, len(others), size):
                batch = [n.name for n in others[i:i + size]]
                step(f"rebuild {', '.join(batch)}")
                _rebuild_group(ctx, report, batch, image=image, errors=errors, record=record)
                if report.cancelled:
                    break
        _summarize(ctx, report, errors=errors, live=not report.cancelled, timed=True)
    return report


def _rebuild_group(ctx: VerbContext, report: ClusterReport, names: list[str], *,
                   image: str | None, errors: dict[str, str], record: RunRecord) -> bool:
    """reimage + configure (rejoin) of a group of nodes; False when one of them failed."""
    nodes = ctx.select(names)
    # The services stop first, as an operator takes a member out: a reimage powers the
    # machine off, and a machine that loses power sends its peers nothing, so a Mesos
    # master or ZooKeeper member cut that way is noticed only when the others' timeouts
    # run out (in the lab, the rebuilt Mesos leader's peers found no single leader for
    # 300 s). Best effort: a host that does not answer is reimaged all the same.
    t0 = time.monotonic()
    stopped = run_on_hosts(ctx, STOP_SERVICES, nodes=nodes, known_hosts=ctx.known_hosts())
    bad = [r.key for r in stopped.results if r.status is not Status.OK]
    report.phases.append(PhaseResult(f"stop services {','.join(names)}", None, time.monotonic() - t0,
                                     f"unreachable: {', '.join(bad)}" if bad else ""))
    pipe = _Pipeline(ctx, report, nodes)
    pipe.phase(f"reimage {','.join(names)}", lambda ns: deploy.reimage(ctx, ns, image_name=image))
    if pipe.alive and not report.cancelled:
        pipe.phase(f"configure {','.join(names)}", lambda ns: configure.apply(ctx, limit=ns, record=record))
    errors.update(pipe.errors)
    return not pipe.errors and not report.cancelled


def _quorum_checks(inv: Inventory) -> dict[str, Check]:
    return {g: c for g, c in cluster_checks(inv).items() if g in QUORUM_CHECKS}


def _wait_quorum(ctx: VerbContext) -> tuple[str, dict[str, HealthResult]]:
    """Wait until every quorum role reports healthy (timeouts.health, like configure's
    gates); 'ok: …' or the last problem, and the last look at the ensembles."""
    gates = health_verdict(ctx, checks=_quorum_checks(ctx.inventory), timeout=ctx.timeouts.health)
    if all(r.ok for r in gates.values()):
        return "ok: " + "; ".join(r.summary for r in gates.values()), gates
    last = "; ".join(r.summary for r in gates.values() if not r.ok)
    return f"unhealthy after {ctx.timeouts.health:.0f} s: {last}", gates


def rejoin(ctx: VerbContext, nodes: Iterable[str], *, image: str | None = None,
           new_host_keys: bool = False) -> VerbReport:
    """`reimage` (rejoin is its default): reimage nodes and configure them back into the
    cluster; configure's failures and changes go into the reimage rows."""
    preflight.check_roles(ctx.inventory)     # before a node is wiped, as cluster up
    report = deploy.reimage(ctx, nodes, image_name=image, new_host_keys=new_host_keys)
    rebuilt = [o.node for o in report.outcomes if o.status is Status.OK]
    if rebuilt and not report.cancelled:
        configured = configure.apply(ctx, limit=rebuilt)
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
