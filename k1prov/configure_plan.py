"""What configure would do on each host, read from the hosts: the decisions and the plan.

Before the first phase ONE SSH session per host (k1prov.probe) reads, for each of its
roles, the recorded script hash (k1prov.host_layout: /var/lib/k1prov/roles/<role>.sha256)
and whether the role's service runs (templates/common/status.sh.j2, the liveness test the
scripts use themselves), together with the answers to the health checks of the run's
gates. A role whose hash equals the rendered script's hash and whose service runs (or
that has no service) is "unchanged"; same hash but the service stopped: "restart"; else
"run" (`decide`). `plan` is that read and those decisions: what the run (k1prov.configure)
starts from and what `cluster up --dry-run` shows.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from k1prov.context import VerbContext
from k1prov.fanout import Report
from k1prov.host_layout import HOST
from k1prov.inventory.model import Node
from k1prov.probe import probe_hosts
from k1prov.roles import RenderedScript
from k1prov.roles.health import BatchRunner, Check, HealthResult, commands_by_host, replay, sample
from k1prov.roles.plan import ROLE_PHASES
from k1prov.roles.render import status_functions


@dataclass(frozen=True)
class RoleStatus:
    """What a host says about one role before the run: the hash its last successful
    script recorded ("" when none) and whether the role's service runs (None: the
    role has no service)."""

    sha256: str
    running: bool | None
    # One of the role's state files (RenderedScript.state_files) is gone.
    lost: bool = False


_STATUS_RE = re.compile(r"^(\S+) ([0-9a-f]{64}|-) (running|stopped|none)( lost)?$")


def parse_status(text: str) -> dict[str, RoleStatus]:
    """The output of `status_command`: one "ROLE HASH STATE" line per role (HASH "-"
    when the role never ran there). Lines that do not fit are ignored: the role then
    counts as never run, so its script runs."""
    found: dict[str, RoleStatus] = {}
    for line in text.splitlines():
        match = _STATUS_RE.match(line.strip())
        if not match or match.group(1) not in ROLE_PHASES:
            continue
        role, digest, state, lost = match.groups()
        found[role] = RoleStatus(sha256="" if digest == "-" else digest,
                                 running=None if state == "none" else state == "running", lost=bool(lost))
    return found


def status_command(functions: str, services: dict[str, str],
                   state_files: dict[str, tuple[str, ...]] | None = None) -> str:
    """One read-only command (no sudo needed) printing "ROLE HASH STATE[ lost]" per role.

    `functions` is templates/common/status.sh.j2 (the liveness test the role scripts
    use themselves); `services` maps each role to its service name ("" for none);
    `state_files` each role to its state files (RenderedScript.state_files)."""
    state_files = state_files or {}
    calls = "".join(f"k1_status {shlex.quote(role)} {shlex.quote(service)}"
                    + "".join(f" {shlex.quote(f)}" for f in state_files.get(role, ())) + "\n"
                    for role, service in services.items())
    body = f'K1PROV_STATE_DIR="${{K1PROV_STATE_DIR:-{HOST.state_dir}}}"\n{functions}\n{calls}true\n'
    return f"bash -c {shlex.quote(body)}"


@dataclass(frozen=True)
class RoleDecision:
    """What configure does with one role on one host, and why."""

    role: str
    action: str     # "unchanged", "run" or "restart"
    reason: str
    # Whether the role's service ran when read (None: no service, or not known).
    running: bool | None = None


def decide(script: RenderedScript, status: RoleStatus | None) -> RoleDecision:
    """From the host's recorded status of the role (None: the host reported none)."""
    if status is None:
        return RoleDecision(script.role, "run", "never ran here")
    if not status.sha256:
        return RoleDecision(script.role, "run", "never ran here", running=status.running)
    if status.sha256 != script.sha256:
        return RoleDecision(script.role, "run", "script changed", running=status.running)
    if status.lost:
        # Same script, but what it set up once is gone (a wiped data directory): running
        # it again sets the role up anew (ZooKeeper: myid written, the member restarted,
        # its data synced from the leader).
        return RoleDecision(script.role, "run", f"its data is gone (no {', '.join(script.state_files)})",
                            running=status.running)
    if status.running is False:
        # Same script, but its service died: running the script starts it again.
        return RoleDecision(script.role, "restart", "service stopped", running=False)
    return RoleDecision(script.role, "unchanged",
                        "script unchanged" + (", service running" if status.running else ""),
                        running=status.running)


@dataclass
class HostPlan:
    """What configure would do on one host: a decision per role, or, when the host could
    not be read, `error` (the real run then runs every script of the host)."""

    node: Node
    decisions: list[RoleDecision] = field(default_factory=list)
    error: str | None = None

    @property
    def to_do(self) -> list[RoleDecision]:
        return [d for d in self.decisions if d.action != "unchanged"]


@dataclass
class ConfigurePlan:
    """The read before a configure run: per host its plan, and the answers of the health
    checks of `checks` from the same sessions (`health()` replays them)."""

    hosts: dict[str, HostPlan]
    checks: dict[str, Check]
    answers: dict[tuple[str, str], tuple[int, str]]
    report: Report | None = None

    def replayed(self) -> BatchRunner:
        return replay(self.answers)

    def health(self) -> dict[str, HealthResult]:
        """Every check, evaluated over the answers read with the hosts' status."""
        return sample(self.checks, self.replayed())


def plan(ctx: VerbContext, scripts: dict[str, list[RenderedScript]], *, checks: dict[str, Check],
         known_hosts: Path | None) -> ConfigurePlan:
    """What configure would do on each host of `scripts` (host name -> the role scripts in
    play there), read from the hosts (read-only: one session per host, bounded by
    timeouts.ssh_connect and timeouts.ssh_probe), with the answers to the health checks
    `checks` in the same sessions. Used by the real run and by `cluster up --dry-run`."""
    inv = ctx.inventory
    functions = status_functions(inv)
    wanted = commands_by_host(checks)
    status_of: dict[str, str] = {}
    for name, host_scripts in scripts.items():
        if not host_scripts:
            continue
        command = status_command(functions, {s.role: s.service for s in host_scripts},
                                 {s.role: s.state_files for s in host_scripts})
        status_of[name] = command
        node, commands = wanted.get(name) or (inv.node(name), [])
        wanted[name] = (node, [command, *commands])
    probed = probe_hosts(ctx, wanted, known_hosts=known_hosts)
    answers: dict[tuple[str, str], tuple[int, str]] = {}
    for name, got in probed.answers.items():
        answers.update({(name, command): answer for command, answer in zip(wanted[name][1], got)})
    hosts: dict[str, HostPlan] = {}
    for name, host_scripts in scripts.items():
        node = inv.node(name)
        if not host_scripts:
            hosts[name] = HostPlan(node)
            continue
        if name in probed.errors:
            hosts[name] = HostPlan(node, error=probed.errors[name])
            continue
        code, out = answers.get((name, status_of[name]), (255, ""))
        if code != 0:
            hosts[name] = HostPlan(node, error=f"status read exited {code}")
            continue
        found = parse_status(out)
        hosts[name] = HostPlan(node, [decide(s, found.get(s.role)) for s in host_scripts])
    return ConfigurePlan(hosts=hosts, checks=checks, answers=answers, report=probed.report)
