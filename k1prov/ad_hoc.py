"""`k1prov run`: one command (or one pushed script) on many inventory hosts over SSH.

A verb module like the others: it takes the verb context, selects the nodes with the one
--limit/--group grammar (ctx.select), builds one SshTarget per node (ctx.ssh_target) and
fans out through the engine with the context's SSH policy (kind ssh.run). The result is
a RunResult: the engine's Report (one Result per host, identical outputs grouped by the
caller) and the exit code every k1prov command uses (`exit_code(report)`).

    ctx = VerbContext(load_inventory("inventories/lab.yaml"))
    report = run(ctx, "uname -r", group="zookeeper")
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from pathlib import Path
from typing import Callable, Iterable

from k1prov.context import VerbContext
from k1prov.errors import ConfigError
from k1prov.fanout import Report, Status, run_fanout
from k1prov.inventory.model import Node
from k1prov.settings import SSH_RETRIES, Timeouts
from k1prov.ssh import CommandResult, SshTarget, put_and_run, run_command
from k1prov.verb_report import exit_code as outcome_exit_code

POLICY_KIND = "ssh.run"
POLICY_ENDPOINT = "ssh"


def _item_timeout(timeouts: Timeouts) -> float:
    # Every attempt may spend a connect timeout; the command itself runs once.
    return timeouts.ssh_connect * (SSH_RETRIES + 1) + timeouts.ssh_command


def _fan_out(ctx: VerbContext, fn: Callable[[SshTarget], CommandResult], *, nodes: list[Node],
             known_hosts: Path | None) -> Report:
    targets = [ctx.ssh_target(node, known_hosts) for node in nodes]
    policy = ctx.ssh_policy(POLICY_KIND, item_timeout=_item_timeout(ctx.timeouts))
    return run_fanout(targets, fn, key=lambda t: t.host, policy=policy, events=ctx.events)


def run_on_hosts(ctx: VerbContext, command: str, *, nodes: list[Node],
                 known_hosts: Path | None = None) -> Report:
    """Run `command` on every node; one Result per node (a non-zero exit is FAILED with
    its exit code and output, an SSH failure is FAILED with the reason). `known_hosts`:
    pinned host keys (None: unpinned)."""
    if not command.strip():
        raise ConfigError("no command given")
    timeouts = ctx.timeouts

    def call(target: SshTarget) -> CommandResult:
        return run_command(target, command, connect_timeout=timeouts.ssh_connect,
                           command_timeout=timeouts.ssh_command)

    return _fan_out(ctx, call, nodes=nodes, known_hosts=known_hosts)


def run_script_on_hosts(ctx: VerbContext, script_text: str, *, nodes: list[Node],
                        known_hosts: Path | None = None, sudo: bool = False,
                        args: Sequence[str] = ()) -> Report:
    """Upload `script_text` into a private temporary directory on every node, run it with
    `args` (each one argument, as Ansible's `script` passes them; through `sudo -n` when
    `sudo` and the SSH user is not root) and remove it."""
    if not script_text.strip():
        raise ConfigError("the script is empty")
    timeouts = ctx.timeouts

    def call(target: SshTarget) -> CommandResult:
        return put_and_run(target, script_text, sudo=sudo, args=args,
                           connect_timeout=timeouts.ssh_connect,
                           command_timeout=timeouts.ssh_command)

    return _fan_out(ctx, call, nodes=nodes, known_hosts=known_hosts)


@dataclass(frozen=True)
class RunTargets:
    """The hosts of a run and the host keys it checks them against (None: unpinned)."""

    nodes: list[Node]
    known_hosts: Path | None


def targets(ctx: VerbContext, *, limit: Iterable[str] | None = None, group: str | None = None,
            known_hosts: Path | None = None) -> RunTargets:
    """The selected nodes, with the cluster's pinned host keys unless `known_hosts` is given.
    The caller can look before the run (nothing selected; no pinned keys) without the run
    selecting again."""
    return RunTargets(ctx.select(limit, group), known_hosts or ctx.known_hosts())


@dataclass(frozen=True)
class RunResult:
    """What `k1prov run` returns (k1prov.verb_report.Result): the engine's report, one
    Result per host; `nothing_selected` when no node matched --group/--limit."""

    report: Report

    @property
    def nothing_selected(self) -> bool:
        return not self.report.results

    def exit_code(self) -> int:
        return exit_code(self.report)

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "exit_code": self.exit_code()}


def run(ctx: VerbContext, command: str, *, limit: Iterable[str] | None = None, group: str | None = None,
        known_hosts: Path | None = None, hosts: RunTargets | None = None, script: bool = False,
        args: Sequence[str] = ()) -> RunResult:
    """`k1prov run`: `command` (with `script`, a script's text to upload and run with
    `args`) on `hosts`, else on the nodes `targets` selects. No node: an empty report."""
    hosts = hosts or targets(ctx, limit=limit, group=group, known_hosts=known_hosts)
    if not hosts.nodes:
        return RunResult(Report(results=[], kind=POLICY_KIND, endpoint=POLICY_ENDPOINT))
    with _one_host_key_warning(ctx, hosts.known_hosts):
        if script:
            return RunResult(run_script_on_hosts(ctx, command, nodes=hosts.nodes,
                                                 known_hosts=hosts.known_hosts, args=args))
        return RunResult(run_on_hosts(ctx, command, nodes=hosts.nodes, known_hosts=hosts.known_hosts))


@contextlib.contextmanager
def _one_host_key_warning(ctx: VerbContext, pinned: Path | None) -> Iterator[None]:
    """Without pinned keys the SSH layer warns once per host; say it once for the run
    (ctx.warn) and keep the per-host warnings for -v."""
    if pinned is not None:
        yield
        return
    ctx.warn(f"no pinned host keys for cluster {ctx.inventory.cluster!r} "
             "(deploy writes them; or pass --known-hosts): accepting host keys unchecked")
    ssh_log = logging.getLogger("k1prov.ssh")
    saved = ssh_log.level
    if not ssh_log.isEnabledFor(logging.INFO):
        ssh_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        ssh_log.setLevel(saved)


def exit_code(report: Report) -> int:
    """The exit code of a run (k1prov.verb_report.exit_code over its hosts)."""
    good = sum(1 for r in report.results if r.status is Status.OK)
    return outcome_exit_code(succeeded=good, failed=len(report.results) - good, cancelled=report.cancelled)
