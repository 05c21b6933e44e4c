"""`k1prov configure` and `k1prov render`: the role scripts pushed to the hosts, phase by phase.

Phases run in dependency order (k1prov.roles.plan): the ZooKeeper ensemble, then a wait
for its quorum (exactly one leader); Mesos masters, then a wait for an elected leader;
Mesos agents; the Spark master, then workers and clients, then a wait for the workers
to register. Every phase goes through the fan-out engine over SSH. When a phase fails
on a host (or its health gate does not pass) the phases after it do not start: their
rows say which phase failed on which host.

Before the first phase one SSH call per host reads, for each of its roles, the recorded
script hash (/var/lib/k1prov/roles/<role>.sha256) and whether the role's service runs
(templates/common/status.sh.j2, the liveness test the scripts use themselves). A role
whose hash equals the rendered script's hash and whose service runs (or that has no
service) is not touched at all: "unchanged". Same hash but the service stopped: the
script runs again, which starts the service: "restarted". Each script's full output is kept in
STATE/<cluster>/runs/<timestamp>-configure/<host>/<role>.log.

    inv = load_inventory("inventories/lab.yaml")
    report = configure(inv, state_root=default_state_root())
"""
from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k1prov.errors import ConfigError, NodeError, TransportError
from k1prov.fanout import EventSink, Policy, Status, run_fanout
from k1prov.inventory.model import Inventory, Node
from k1prov.outcome import NodeOutcome, VerbReport
from k1prov.context import RunOptions, VerbContext, pinned_known_hosts, ssh_target
from k1prov.remote import select_nodes
from k1prov.roles import (HealthResult, RenderedScript, mesos_health, render_all, spark_workers_health,
                          wait_until_healthy, write_rendered, zookeeper_health)
from k1prov.roles.plan import ROLE_PHASES
from k1prov.roles.render import status_functions
from k1prov.roles.settings import mesos_settings, spark_settings, zookeeper_settings
from k1prov.runs import RunRecord
from k1prov.settings import DEFAULT_TIMEOUTS, SSH_MAX_CONCURRENCY, SSH_RETRIES, Timeouts
from k1prov.ssh import SshTarget, put_and_run, run_command

log = logging.getLogger("k1prov.configure")

# K1PROV_STATE_DIR of the role scripts (templates/common/base.sh.j2): script hashes
# in roles/<role>.sha256 (k1_finish), pid files of supervised services in run/.
REMOTE_STATE_DIR = "/var/lib/k1prov"
POLICY_KIND = "ssh.configure"
# Lines of a failed script's log quoted in the report.
LOG_TAIL_LINES = 8
_RESULT_RE = re.compile(r"^K1PROV-RESULT changed=([01])\s*$", re.MULTILINE)
# Roles in the order their phases run; roles with the same phase number run together.
ROLE_ORDER = tuple(sorted(ROLE_PHASES, key=lambda r: ROLE_PHASES[r][0]))


@dataclass(frozen=True)
class Step:
    """One phase of a configure run: the roles it runs and the gate after it."""

    name: str
    roles: tuple[str, ...]
    # "zookeeper", "mesos-masters", "mesos-agents", "spark-workers" or "" (no gate).
    gate: str = ""


# Fixed by the dependencies between the services (see the module docstring).
STEPS = (
    Step("ZooKeeper ensemble", ("zookeeper",), gate="zookeeper"),
    Step("Mesos masters", ("mesos-master",), gate="mesos-masters"),
    Step("Mesos agents", ("mesos-agent",), gate="mesos-agents"),
    Step("Spark masters", ("spark-master",)),
    Step("Spark workers and clients", ("spark-worker", "spark-client"), gate="spark-workers"),
)


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


@dataclass
class ConfigurePlan:
    """What a run will do, decided before any host is touched."""

    run_dir: Path
    work: list[_Work] = field(default_factory=list)


def render(inv: Inventory, out_dir: Path | str) -> dict[str, Any]:
    """`k1prov render -o DIR`: every host's scripts and config files, and DIR/plan.json."""
    return write_rendered(inv, out_dir)


def check_roles(roles: Iterable[str] | None) -> tuple[str, ...]:
    """The --roles filter, checked (empty: every role)."""
    wanted = [r.strip() for item in (roles or ()) for r in item.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in ROLE_PHASES]
    if unknown:
        raise ConfigError(f"--roles: unknown role {', '.join(unknown)} (roles: {', '.join(ROLE_ORDER)})")
    return tuple(dict.fromkeys(wanted)) or ROLE_ORDER


@dataclass(frozen=True)
class RoleStatus:
    """What a host says about one role before the run: the hash its last successful
    script recorded ("" when none) and whether the role's service runs (None: the
    role has no service)."""

    sha256: str
    running: bool | None


_STATUS_RE = re.compile(r"^(\S+) ([0-9a-f]{64}|-) (running|stopped|none)$")


def parse_status(text: str) -> dict[str, RoleStatus]:
    """The output of `status_command`: one "ROLE HASH STATE" line per role (HASH "-"
    when the role never ran there). Lines that do not fit are ignored: the role then
    counts as never run, so its script runs."""
    found: dict[str, RoleStatus] = {}
    for line in text.splitlines():
        match = _STATUS_RE.match(line.strip())
        if not match or match.group(1) not in ROLE_PHASES:
            continue
        role, digest, state = match.groups()
        found[role] = RoleStatus(sha256="" if digest == "-" else digest,
                                 running=None if state == "none" else state == "running")
    return found


def status_command(functions: str, services: dict[str, str]) -> str:
    """One read-only command (no sudo needed) printing "ROLE HASH STATE" per role.

    `functions` is templates/common/status.sh.j2 (the liveness test the role scripts
    use themselves); `services` maps each role to its service name ("" for none)."""
    calls = "".join(f"k1_status {shlex.quote(role)} {shlex.quote(service)}\n"
                    for role, service in services.items())
    body = f'K1PROV_STATE_DIR="${{K1PROV_STATE_DIR:-{REMOTE_STATE_DIR}}}"\n{functions}\n{calls}true\n'
    return f"bash -c {shlex.quote(body)}"


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
    def __init__(self, inv: Inventory, *, roles: tuple[str, ...], nodes: list[Node], state_root: Path,
                 timeouts: Timeouts, options: RunOptions, events: EventSink | None,
                 known_hosts: Path | None, notify: Callable[[str], None], record: RunRecord | None):
        self.inv = inv
        self.roles = roles
        self.nodes = nodes
        self.state_root = Path(state_root)
        self.timeouts = timeouts
        self.options = options
        self.events = events
        self.known_hosts = known_hosts
        self.notify = notify
        self.report = VerbReport(verb="configure", outcomes=[])
        # A run record like every verb's (`k1prov runs list` shows it), with the per-host logs
        # as <host>/<role>.log; inside a larger verb (cluster up, rebuild), that verb's record,
        # with the logs under configure/.
        self.own_record = record is None
        self.record = record or RunRecord(self.state_root, inv.cluster, "configure", inventory=inv.path)
        self.run_dir = self.record.path if self.own_record else self.record.path / "configure"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.sudo = inv.ssh.user != "root"

    # ---- SSH ---------------------------------------------------------------------------

    def _target(self, node: Node) -> SshTarget:
        return ssh_target(self.inv, node, known_hosts=self.known_hosts)

    def _policy(self, *, item_timeout: float) -> Policy:
        return Policy(kind=POLICY_KIND, endpoint="ssh", concurrency=self.options.concurrency,
                      max_concurrency=self.options.max_concurrency or SSH_MAX_CONCURRENCY,
                      item_timeout=item_timeout, retries=SSH_RETRIES,
                      failure_budget=self.options.failure_budget,
                      profile_path=self.state_root / "profiles.json")

    def _health_runner(self, node: Node, command: str) -> tuple[int, str]:
        try:
            res = run_command(self._target(node), command, connect_timeout=self.timeouts.ssh_connect,
                              command_timeout=self.timeouts.ssh_connect * 3)
        except TransportError as exc:
            log.info("%s: health check: %s", node.name, exc)
            return 255, ""
        return res.exit_code, res.stdout

    # ---- the run -----------------------------------------------------------------------

    def execute(self) -> VerbReport:
        try:
            return self._execute()
        finally:
            if self.own_record:
                self.record.finish(self.report.to_dict(), exit_code=self.report.exit_code())

    def _execute(self) -> VerbReport:
        rendered = render_all(self.inv)   # a bad setting stops the run before any host is touched
        work = [_Work(node, s.role, s) for node in self.nodes for s in rendered[node.name]
                if s.role in self.roles]
        self.report.outcomes = []
        if not work:
            return self.report
        self.notify(f"configure: {len(work)} role script(s) on {len({w.node.name for w in work})} host(s); "
                    f"logs in {self.run_dir}")
        recorded = self._read_status(sorted({w.node.name for w in work}), work)
        stop_reason = ""
        for step in STEPS:
            items = [w for w in work if w.role in step.roles]
            if not items:
                continue
            if stop_reason:
                for w in items:
                    w.status, w.action, w.error = Status.SKIPPED, "skipped", stop_reason
                continue
            stop_reason = self._run_step(step, items, recorded)
            if self.report.cancelled:
                stop_reason = stop_reason or "cancelled"
        self.report.outcomes = [
            NodeOutcome(node=w.node.name, status=w.status, action=w.action, error=w.error,
                        changes=[w.role], duration=round(w.duration, 3)) for w in work]
        return self.report

    def _read_status(self, hosts: list[str], work: list[_Work]) -> dict[str, dict[str, RoleStatus]]:
        """Recorded hashes and service states per host, one SSH call each; a host that
        cannot be read gets its scripts run."""
        by_host: dict[str, dict[str, str]] = {}
        for w in work:
            by_host.setdefault(w.node.name, {})[w.role] = w.script.service
        nodes = [self.inv.node(h) for h in hosts]
        functions = status_functions(self.inv)

        def read(node: Node) -> dict[str, RoleStatus]:
            res = run_command(self._target(node), status_command(functions, by_host[node.name]),
                              connect_timeout=self.timeouts.ssh_connect,
                              command_timeout=self.timeouts.ssh_connect * 3)
            return parse_status(res.stdout) if res.exit_code == 0 else {}

        rep = run_fanout(nodes, read, key=lambda n: n.name, events=self.events,
                         policy=self._policy(item_timeout=self.timeouts.ssh_connect * 4 * (SSH_RETRIES + 1)))
        self.report.phases.append(("recorded hashes", rep))
        return {r.key: (r.value if r.status is Status.OK and isinstance(r.value, dict) else {})
                for r in rep.results}

    def _run_step(self, step: Step, items: list[_Work], recorded: dict[str, dict[str, RoleStatus]]) -> str:
        """Runs one phase; returns why the later phases must not run ('' when they may)."""
        to_run = []
        for w in items:
            status = recorded.get(w.node.name, {}).get(w.role)
            if status is None or status.sha256 != w.script.sha256:
                to_run.append(w)
            elif status.running is False:
                # Same script, but its service died: running the script starts it again.
                w.service_stopped = True
                to_run.append(w)
            else:
                w.action = "unchanged"
        if to_run:
            stopped = sum(w.service_stopped for w in to_run)
            self.notify(f"{step.name}: running on {len(to_run)} host(s)"
                        + (f" ({stopped} to restart a stopped service)" if stopped else "")
                        + f", {len(items) - len(to_run)} unchanged")
            rep = run_fanout(to_run, self._push, key=lambda w: f"{w.node.name}/{w.role}",
                             policy=self._policy(item_timeout=self.timeouts.ssh_connect * (SSH_RETRIES + 1)
                                                 + self.timeouts.ssh_command),
                             events=self.events)
            self.report.phases.append((step.name, rep))
            self.report.cancelled = self.report.cancelled or rep.cancelled
            for w, res in zip(to_run, rep.results):
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
        else:
            self.notify(f"{step.name}: every host unchanged")
        failed = [w for w in items if w.status is not Status.OK]
        if failed:
            return f"{step.name} failed on {', '.join(w.node.name for w in failed)}"
        if step.gate:
            health = self._gate(step)
            (self.run_dir / f"health-{step.gate}.txt").write_text(
                f"ok={health.ok}\nsummary={health.summary}\nstates={health.states}\n"
                + "".join(f"problem: {p}\n" for p in health.problems))
            self.notify(f"{step.name}: {'healthy' if health.ok else 'NOT healthy'} ({health.summary})")
            if not health.ok:
                why = "; ".join(health.problems) or health.summary
                for w in items:
                    w.status, w.error = Status.FAILED, f"{step.name} not healthy: {why}"
                return f"{step.name} not healthy: {why}"
        return ""

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

    def _gate(self, step: Step) -> HealthResult:
        """The health check after a phase, over every inventory member of the roles (a
        quorum is a property of the whole ensemble, not of the hosts in --limit)."""
        inv, run = self.inv, self._health_runner
        if step.gate == "zookeeper":
            port = zookeeper_settings(inv)["client_port"]
            check = lambda: zookeeper_health(inv.with_role("zookeeper"), run, port=port)  # noqa: E731
        elif step.gate in ("mesos-masters", "mesos-agents"):
            port = mesos_settings(inv)["master_port"]
            agents = inv.with_role("mesos-agent") if step.gate == "mesos-agents" else ()
            check = lambda: mesos_health(inv.with_role("mesos-master"), run, agents=agents,  # noqa: E731
                                         port=port)
        else:
            spark = spark_settings(inv)
            if spark["manager"] != "standalone" or not inv.with_role("spark-worker"):
                return HealthResult(ok=True, summary="no standalone workers to check")
            port = spark["master_webui_port"]
            check = lambda: spark_workers_health(  # noqa: E731
                inv.with_role("spark-master"), inv.with_role("spark-worker"), run, webui_port=port)
        return wait_until_healthy(check, health_timeout=self.timeouts.health)


def configure(inv: Inventory, *, state_root: Path, roles: Iterable[str] | None = None,
              limit: list[str] | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS,
              options: RunOptions = RunOptions(), events: EventSink | None = None,
              known_hosts: Path | None = None,
              notify: Callable[[str], None] | None = None,
              record: RunRecord | None = None) -> VerbReport:
    """Configure the roles of the inventory's hosts (or of `limit`, for `roles` only).

    `record`: the run record of an enclosing verb (cluster up, rebuild); without one,
    configure keeps a run record of its own.

    Host keys: `known_hosts`, else the cluster's pinned file written by deploy
    (STATE/<cluster>/known_hosts), else unpinned (the SSH layer warns per host).
    Returns one row per host and role: changed, unchanged, failed or skipped.
    """
    wanted = check_roles(roles)
    nodes = select_nodes(inv, limit=limit)
    pinned = known_hosts or pinned_known_hosts(state_root, inv.cluster)
    run = _Run(inv, roles=wanted, nodes=nodes, state_root=state_root, timeouts=timeouts, options=options,
               events=events, known_hosts=pinned, notify=notify or (lambda msg: log.info("%s", msg)),
               record=record)
    return run.execute()


def apply(ctx: VerbContext, *, roles: Iterable[str] | None = None, limit: Iterable[str] | None = None,
          record: RunRecord | None = None) -> VerbReport:
    """`configure` with the verb context's inventory, state, timeouts, options and events."""
    return configure(ctx.inventory, state_root=ctx.state_root, roles=roles,
                     limit=list(limit) if limit else None, timeouts=ctx.timeouts,
                     options=ctx.options, events=ctx.events, notify=ctx.notify, record=record)
