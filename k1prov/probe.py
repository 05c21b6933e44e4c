"""Read-only looks at hosts: a batch of commands in ONE SSH session per host, fanned out.

Used wherever k1prov reads the hosts without changing them: the health checks of the
cluster verbs and of configure's gates (k1prov.roles.health.sample), and what configure
(and `cluster up --dry-run`) reads before deciding what to run. One session per host
instead of one per command: a session costs a TCP and SSH handshake and a login.

    answers = probe_hosts(ctx, {"lab01": (node, ["uptime", "cat /etc/hostname"])},
                          known_hosts=ctx.known_hosts())
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from k1prov.context import VerbContext
from k1prov.fanout import Report, Status, run_fanout
from k1prov.inventory.model import Node
from k1prov.roles.health import BatchRunner, batch_command, parse_batch
from k1prov.settings import SSH_RETRIES
from k1prov.ssh import run_command

log = logging.getLogger("k1prov.probe")

POLICY_KIND = "ssh.probe"


@dataclass
class Probed:
    """Per host: the answers to its commands in order, or why it could not be read."""

    answers: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    report: Report | None = None


def probe_hosts(ctx: VerbContext, wanted: dict[str, tuple[Node, list[str]]], *,
                known_hosts: Path | None, quiet: bool = False) -> Probed:
    """Run each host's commands in one session (k1prov.roles.health.batch_command); a
    host that cannot be reached, or whose batch does not finish within
    timeouts.ssh_probe, gets an error instead of answers. `quiet`: no progress events."""
    probed = Probed()
    if not wanted:
        return probed
    timeouts = ctx.timeouts

    def read(name: str) -> list[tuple[int, str]]:
        node, commands = wanted[name]
        res = run_command(ctx.ssh_target(node, known_hosts), batch_command(commands),
                          connect_timeout=timeouts.ssh_connect, command_timeout=timeouts.ssh_probe)
        return parse_batch(res.stdout, len(commands))

    policy = ctx.ssh_policy(POLICY_KIND, failure_budget=1.0,
                            item_timeout=timeouts.ssh_connect * (SSH_RETRIES + 1) + timeouts.ssh_probe)
    probed.report = run_fanout(list(wanted), read, key=lambda name: name, policy=policy,
                               events=None if quiet else ctx.events)
    for res in probed.report.results:
        if res.status is Status.OK:
            probed.answers[res.key] = res.value
        else:
            probed.errors[res.key] = res.error or res.status.value
            log.info("%s: probe: %s", res.key, probed.errors[res.key])
    return probed


def batch_runner(ctx: VerbContext, *, known_hosts: Path | None) -> BatchRunner:
    """A k1prov.roles.health.BatchRunner over SSH (quiet: no progress events)."""
    def run(wanted: dict[str, tuple[Node, list[str]]]) -> dict[str, list[tuple[int, str]] | None]:
        probed = probe_hosts(ctx, wanted, known_hosts=known_hosts, quiet=True)
        return {name: probed.answers.get(name) for name in wanted}
    return run
