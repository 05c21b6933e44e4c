"""`k1prov configure` and `k1prov render`: the role scripts pushed to the hosts, phase by phase.

Phases run in dependency order (k1prov.roles.plan): the ZooKeeper ensemble, then a wait
for its quorum (exactly one leader); Mesos masters, then a wait for an elected leader;
Mesos agents; the Spark master, then workers and clients, then a wait for the workers
to register. Every phase goes through the fan-out engine over SSH. A host that fails a
phase stops there; a phase whose gate does not pass over the hosts that did not fail
stops the phases that need it (k1prov.configure_order); the other hosts go on. The rows
left out say why ("not run: …", naming the host and the phase that failed).

Before the first phase one read-only SSH session per host says what to do with each
role (k1prov.configure_plan: recorded script hash, service state, the gates' first
answers): "unchanged" roles are not touched, and a configure that finds nothing to do
costs one session per host. Each script's full output is kept in
STATE/<cluster>/runs/<timestamp>-configure/<host>/<role>.log.

Ensembles roll: the running members of ZooKeeper and the Mesos masters whose script
changed go one at a time, leader last (k1prov.rolling_restart).

    ctx = VerbContext(load_inventory("inventories/lab.yaml"))
    report = apply(ctx)
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k1prov.configure_order import STEPS, Schedule, Step, quorum_lost
from k1prov.configure_plan import ConfigurePlan, RoleDecision, plan
from k1prov.errors import ConfigError, NodeError, TransportError
from k1prov.fanout import Policy, Status, run_fanout
from k1prov.inspection import agent_facts
from k1prov.inventory.model import Node
from k1prov.verb_report import DataResult, NodeOutcome, VerbReport
from k1prov.context import VerbContext
from k1prov.probe import batch_runner
from k1prov.roles import RenderedScript, render_all, wait_until_healthy, write_rendered
from k1prov.roles.health import HealthResult, excusing, gate_checks, sample
from k1prov.roles.plan import QUORUM_ROLES, ROLE_PHASES
from k1prov.roles.role_settings import spark_settings
from k1prov.rolling_restart import roll, rolling_members, skip
from k1prov.run_records import RunRecord, locked_run
from k1prov.settings import SSH_RETRIES
from k1prov.ssh import SshTarget, put_and_run

log = logging.getLogger("k1prov.configure")

POLICY_KIND = "ssh.configure"
# Lines of a failed script's log quoted in the report.
LOG_TAIL_LINES = 8
_RESULT_RE = re.compile(r"^K1PROV-RESULT changed=([01])\s*$", re.MULTILINE)
# Roles in the order their phases run; roles with the same phase number run together.
ROLE_ORDER = tuple(sorted(ROLE_PHASES, key=lambda r: ROLE_PHASES[r][0]))


@dataclass
class _Work:
    """One (host, role) of the run, as it goes."""

    node: Node
    role: str
    script: RenderedScript
    status: Status = Status.OK
    action: str = ""
    error: str | None = None
    duration: float = 0.0
    # Script unchanged but its service found stopped: run to start it again.
    service_stopped: bool = False


def render(ctx: VerbContext, out_dir: Path | str) -> DataResult:
    """`k1prov render -o DIR`: every host's scripts and config files, and DIR/plan.json
    (the result's data)."""
    return DataResult(write_rendered(ctx.inventory, out_dir, agent_facts(ctx)))


def check_roles(roles: Iterable[str] | None) -> tuple[str, ...]:
    """The --roles filter, checked (empty: every role)."""
    wanted = [r.strip() for item in (roles or ()) for r in item.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in ROLE_PHASES]
    if unknown:
        raise ConfigError(f"--roles: unknown role {', '.join(unknown)} (roles: {', '.join(ROLE_ORDER)})")
    return tuple(dict.fromkeys(wanted)) or ROLE_ORDER


def script_changed(stdout: str) -> bool | None:
    """The script's own verdict from its last K1PROV-RESULT line (None: no such line)."""
    found = _RESULT_RE.findall(stdout)
    return found[-1] == "1" if found else None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


class _Run:
    def __init__(self, ctx: VerbContext, *, roles: tuple[str, ...], nodes: list[Node],
                 known_hosts: Path | None, record: RunRecord, own_record: bool):
        self.ctx = ctx
        self.inv = inv = ctx.inventory
        self.roles = roles
        self.nodes = nodes
        self.timeouts = ctx.timeouts
        self.events = ctx.events
        self.known_hosts = known_hosts
        self.notify = ctx.notify
        self.report = VerbReport(verb="configure", outcomes=[])
        # A run record like every verb's (`k1prov runs list` shows it), with the per-host logs
        # as <host>/<role>.log; inside a larger verb (cluster up, rebuild), that verb's record,
        # with the logs under configure/.
        self.own_record = own_record
        self.record = record
        self.run_dir = self.record.path if self.own_record else self.record.path / "configure"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.sudo = inv.ssh.user != "root"
        self.checks = gate_checks(inv)
        self.plan: ConfigurePlan | None = None
        # Set once a role script has run: the health read with the status is then stale.
        self.ran_scripts = False

    # ---- SSH ---------------------------------------------------------------------------

    def _target(self, node: Node) -> SshTarget:
        return self.ctx.ssh_target(node, self.known_hosts)

    def _policy(self, *, item_timeout: float) -> Policy:
        return self.ctx.ssh_policy(POLICY_KIND, item_timeout=item_timeout)

    # ---- the run -----------------------------------------------------------------------

    def execute(self) -> VerbReport:
        try:
            return self._execute()
        finally:
            if self.own_record:
                self.record.finish(self.report.to_dict(), exit_code=self.report.exit_code())

    def _execute(self) -> VerbReport:
        # A bad setting, or an auto agent Ironic knows too little of, stops the run here,
        # before any host is touched.
        rendered = render_all(self.inv, agent_facts(self.ctx))
        work = [_Work(node, s.role, s) for node in self.nodes for s in rendered[node.name]
                if s.role in self.roles]
        self.report.outcomes = []
        if not work:
            return self.report
        self.notify(f"configure: {len(work)} role script(s) on {len({w.node.name for w in work})} host(s); "
                    f"logs in {self.run_dir}")
        decisions = self._read_hosts(work)
        schedule = Schedule(spark_on_mesos=self._spark_on_mesos())
        for step in STEPS:
            items = [w for w in work if w.role in step.roles]
            if not items:
                continue
            # A host stopped earlier is left out for its own reason, the most direct one.
            held = [w for w in items if schedule.host_stopped(w.node.name)]
            for w in held:
                skip([w], schedule.host_stopped(w.node.name))
            if held:
                self.notify(f"{step.name}: left out on {', '.join(sorted({w.node.name for w in held}))} "
                            "(an earlier phase failed there)")
            live = [w for w in items if w not in held]
            why = "cancelled" if self.report.cancelled else schedule.blocked(step)
            if why:
                skip(live, why)
                schedule.stop_step(step, f"which was not run ({why.removeprefix('not run: ')})")
                self.notify(f"{step.name}: {why}")
            else:
                down = self._run_step(step, live, items, decisions, earlier=schedule.stopped_hosts())
                if down:
                    schedule.stop_step(step, down)
            schedule.after(step, [(w.node.name, w.role, w.status is not Status.SKIPPED, w.error or "")
                                  for w in items if w.status is not Status.OK])
        self.report.outcomes = [
            NodeOutcome(node=w.node.name, status=w.status, action=w.action, error=w.error,
                        changes=[w.role], duration=round(w.duration, 3)) for w in work]
        return self.report

    def _read_hosts(self, work: list[_Work]) -> dict[tuple[str, str], RoleDecision]:
        """`plan`: per (host, role) what to do, read in one session per host together with
        the answers the gates of this run look at first. A host that cannot be read gets
        its scripts run."""
        scripts: dict[str, list[RenderedScript]] = {}
        for w in work:
            scripts.setdefault(w.node.name, []).append(w.script)
        gates = {step.gate for step in STEPS if step.gate and any(w.role in step.roles for w in work)}
        checks = {g: c for g, c in self.checks.items() if g in gates}
        self.plan = plan(self.ctx, scripts, checks=checks, known_hosts=self.known_hosts)
        if self.plan.report is not None:
            self.report.phases.append(("recorded hashes", self.plan.report))
        decisions: dict[tuple[str, str], RoleDecision] = {}
        for name, host in self.plan.hosts.items():
            if host.error:
                log.info("%s: cannot read its status (%s): its scripts run", name, host.error)
                for script in scripts[name]:
                    decisions[(name, script.role)] = RoleDecision(script.role, "run", "status unknown")
            for d in host.decisions:
                decisions[(name, d.role)] = d
        return decisions

    def _spark_on_mesos(self) -> bool:
        if not any(self.inv.with_role(r) for r in ("spark-master", "spark-worker", "spark-client")):
            return False
        return spark_settings(self.inv)["manager"] == "mesos"

    def _run_step(self, step: Step, live: list[_Work], items: list[_Work],
                  decisions: dict[tuple[str, str], RoleDecision], *, earlier: set[str]) -> str:
        """Runs one phase on `live` (its `items` less the hosts stopped earlier, `earlier`);
        returns why the phases that need it must not run ('' when they may)."""
        to_run = []
        for w in live:
            decision = decisions.get((w.node.name, w.role))
            if decision is None or decision.action != "unchanged":
                w.service_stopped = decision is not None and decision.action == "restart"
                to_run.append(w)
            else:
                w.action = "unchanged"
        if to_run:
            self.ran_scripts = True
            # What the gates saw before is from before this change.
            self.report.health.clear()
            stopped = sum(w.service_stopped for w in to_run)
            rolling = rolling_members(to_run, decisions, roles=step.roles, gate=step.gate,
                                      checks=self.checks)
            self.notify(f"{step.name}: running on {len(to_run)} host(s)"
                        + (f" ({stopped} to restart a stopped service)" if stopped else "")
                        + (f" ({len(rolling)} running member(s) one at a time, leader last)" if rolling else "")
                        + f", {len(live) - len(to_run)} unchanged")
            together = [w for w in to_run if w not in rolling]
            if together:
                self._fan_out(step.name, together)
            if rolling:
                # A running member is restarted only with the rest of its ensemble in place.
                broken = [w.node.name for w in items if w.status is not Status.OK]
                if broken or self.report.cancelled:
                    why = f"{step.name} failed on {', '.join(broken)}" if broken else "cancelled"
                    skip(rolling, f"not restarted: {why}")
                else:
                    roll(self.ctx, step.name, rolling, gate=step.gate, check=self.checks[step.gate],
                         known_hosts=self.known_hosts, fan_out=self._fan_out,
                         cancelled=lambda: self.report.cancelled)
        elif live:
            self.notify(f"{step.name}: every host unchanged")
        out = [w for w in items if w.status is not Status.OK]
        named = sorted({w.node.name for w in out if w.status is not Status.SKIPPED}
                       or {w.node.name for w in out})
        if self.report.cancelled:
            return "cancelled"
        if out and len(out) == len(items):
            failed = sorted({w.node.name for w in out if w.status is not Status.SKIPPED})
            left = sorted({w.node.name for w in out if w.status is Status.SKIPPED})
            return "which " + " and ".join([f"failed on {', '.join(failed)}"] * bool(failed)
                                           + [f"was left out on {', '.join(left)}"] * bool(left))
        if any(w.role in QUORUM_ROLES for w in items):
            ensemble = {n.name for role in step.roles if role in QUORUM_ROLES for n in self.inv.with_role(role)}
            lost = {w.node.name for w in out} & ensemble
            if quorum_lost(len(ensemble), len(lost)):
                return f"which lost its quorum: failed on {', '.join(sorted(lost))} of {len(ensemble)} members"
        if out:
            self.notify(f"{step.name}: failed on {', '.join(named)}; the other hosts go on"
                        + (" if the gate passes without it" if step.gate else ""))
        if step.gate:
            # A gate also looks at the ensembles of earlier phases (the agents' gate at the
            # masters): a host stopped in one of them is excused there too.
            excused = sorted(earlier | {w.node.name for w in out})
            health, seen = self._gate(step, excused=excused)
            (self.run_dir / f"health-{step.gate}.txt").write_text(
                f"ok={seen.ok}\nsummary={seen.summary}\nstates={seen.states}\n"
                + "".join(f"problem: {p}\n" for p in seen.problems)
                + (f"enough for what needs it (without {', '.join(excused)}): {health.ok}\n" if excused else ""))
            verdict = "healthy" if seen.ok else f"healthy without {', '.join(excused)}" if health.ok else "NOT healthy"
            self.notify(f"{step.name}: {verdict} ({seen.summary})")
            # The whole ensemble's look, failed members included: what a later verdict starts from.
            self.report.health[step.gate] = seen
            if not health.ok:
                why = "; ".join(health.problems) or health.summary
                for w in live:
                    if w.status is Status.OK:
                        w.status, w.error = Status.FAILED, f"{step.name} not healthy: {why}"
                return f"which is not healthy: {why}"
        return ""

    def _fan_out(self, name: str, items: list[_Work]) -> None:
        """Runs the scripts of `items` together (the fan-out engine); their rows say how it went."""
        rep = run_fanout(items, self._push, key=lambda w: f"{w.node.name}/{w.role}",
                         policy=self._policy(item_timeout=self.timeouts.ssh_connect * (SSH_RETRIES + 1)
                                             + self.timeouts.ssh_command),
                         events=self.events)
        self.report.phases.append((name, rep))
        self.report.cancelled = self.report.cancelled or rep.cancelled
        for w, res in zip(items, rep.results):
            w.duration = res.duration
            if res.status is Status.OK:
                w.action = ("restarted" if w.service_stopped else "changed") if res.value else "unchanged"
                continue
            w.status, w.action = res.status, "failed"
            tail = log_tail(self._log_path(w))
            if all(line.startswith("# k1prov:") for line in tail.splitlines() if line.strip()):
                # No script output (it never ran: the host did not answer): the
                # log only repeats the error, once per attempt.
                tail = ""
            w.error = f"{w.role}: {res.error}" + (f"\n{tail}" if tail else "")

    def _log_path(self, w: _Work) -> Path:
        return self.run_dir / w.node.name / f"{w.role}.log"

    def _push(self, w: _Work) -> bool:
        """Runs one role script; True when it changed the host. Its output goes to the log."""
        path = self._log_path(w)
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            res = put_and_run(self._target(w.node), w.script.text, sudo=self.sudo,
                              connect_timeout=self.timeouts.ssh_connect,
                              command_timeout=self.timeouts.ssh_command)
        except TransportError as exc:
            with path.open("a") as f:
                f.write(f"# k1prov: {w.script.filename} on {w.node.name}: {exc}\n")
            raise
        with path.open("a") as f:
            f.write(f"# k1prov: {w.script.filename} sha256 {w.script.sha256} on {w.node.name} "
                    f"({w.node.address}): exit {res.exit_code} after {time.monotonic() - started:.1f} s\n")
            f.write(res.stderr)
            f.write(res.stdout)
        if res.exit_code != 0:
            last = [line for line in res.stderr.splitlines() if line.strip()]
            raise NodeError(w.node.name, f"{w.script.filename} exited {res.exit_code}"
                                         + (f": {last[-1].strip()}" if last else ""))
        changed = script_changed(res.stdout)
        if changed is None:
            raise NodeError(w.node.name, f"{w.script.filename} printed no K1PROV-RESULT line")
        return changed

    def _gate(self, step: Step, *, excused: list[str]) -> tuple[HealthResult, HealthResult]:
        """The health check after a phase (k1prov.roles.health.gate_checks): (what the
        phases that need it see: the check without the problems of the `excused` hosts,
        whose rows already say they failed; the check as it is). While no script has run
        in this run, its first look is the answers read with the hosts' status; after
        that, or when that look does not pass, it looks again (one session per host each
        time) until it passes or timeouts.health has passed."""
        check = self.checks.get(step.gate)
        if check is None:
            nothing = HealthResult(ok=True, summary="nothing to check")
            return nothing, nothing
        gate = {step.gate: check}
        seen: list[HealthResult] = []

        def look(run) -> HealthResult:
            seen[:] = [sample(gate, run)[step.gate]]
            return excusing(seen[0], excused)

        if not self.ran_scripts and self.plan is not None:
            first = look(self.plan.replayed())
            if first.ok:
                return first, seen[0]
        live = batch_runner(self.ctx, known_hosts=self.known_hosts)
        verdict = wait_until_healthy(lambda: look(live), health_timeout=self.timeouts.health)
        return verdict, seen[0]


def apply(ctx: VerbContext, *, roles: Iterable[str] | None = None, limit: Iterable[str] | None = None,
          group: str | None = None, known_hosts: Path | None = None,
          record: RunRecord | None = None) -> VerbReport:
    """Configure the roles of the inventory's hosts (or of `limit`/`group`, for `roles` only).

    `record`: the run record of an enclosing verb (cluster up, rebuild); without one,
    configure keeps a run record of its own.

    Host keys: `known_hosts`, else the cluster's pinned file written by deploy
    (STATE/<cluster>/known_hosts), else unpinned (the SSH layer warns per host).
    Returns one row per host and role: changed, unchanged, failed or skipped.
    """
    wanted = check_roles(roles)
    nodes = ctx.select(limit, group)
    pinned = known_hosts or ctx.known_hosts()

    def run(held: RunRecord, *, own: bool) -> VerbReport:
        return _Run(ctx, roles=wanted, nodes=nodes, known_hosts=pinned, record=held,
                    own_record=own).execute()

    if record is not None:
        return run(record, own=False)     # the enclosing verb holds the cluster's lock
    # Configure changes the cluster (restarts, rolling restarts): one run at a time.
    inv = ctx.inventory
    with locked_run(ctx.state_root, inv.cluster, "configure", inventory=inv.path,
                    wait=ctx.timeouts.lock, notify=ctx.notify) as own:
        return run(own, own=True)
