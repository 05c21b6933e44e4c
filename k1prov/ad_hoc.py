"""`k1prov run`: one command (or one pushed script) on many inventory hosts over SSH.

The library side of the verb: pick the nodes (`select_nodes`), build one SshTarget per
node from the inventory's `ssh:` section, and fan out through the engine. The result is
the engine's Report (one Result per host, identical outputs grouped by the caller), and
`exit_code(report)` turns it into the exit code every k1prov command uses.

    inv = load_inventory("inventories/lab.yaml")
    nodes = select_nodes(inv, group="zookeeper", limit=None)
    report = run_on_hosts(inv, "uname -r", nodes=nodes)
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from k1prov.errors import ConfigError
from k1prov.fanout import EventSink, Policy, Report, Status, run_fanout
from k1prov.context import RunOptions, pinned_known_hosts, select_nodes, ssh_target
from k1prov.inventory.model import Inventory, Node
from k1prov.verb_report import exit_code as outcome_exit_code
from k1prov.settings import DEFAULT_TIMEOUTS, SSH_MAX_CONCURRENCY, SSH_RETRIES, Timeouts
from k1prov.ssh import CommandResult, SshTarget, put_and_run, run_command

__all__ = ["SSH_MAX_CONCURRENCY", "SSH_RETRIES", "pinned_known_hosts", "ssh_target", "select_nodes",
           "ssh_policy", "run_on_hosts", "run_script_on_hosts", "exit_code"]

POLICY_KIND = "ssh.run"
POLICY_ENDPOINT = "ssh"


def ssh_policy(options: RunOptions, *, item_timeout: float, profile_path: Path | None) -> Policy:
    ceiling = options.max_concurrency or SSH_MAX_CONCURRENCY
    return Policy(kind=POLICY_KIND, endpoint=POLICY_ENDPOINT, concurrency=options.concurrency,
                  max_concurrency=ceiling, item_timeout=item_timeout, retries=SSH_RETRIES,
                  failure_budget=options.failure_budget, profile_path=profile_path)


def _item_timeout(timeouts: Timeouts) -> float:
    # Every attempt may spend a connect timeout; the command itself runs once.
    return timeouts.ssh_connect * (SSH_RETRIES + 1) + timeouts.ssh_command


def _fan_out(inv: Inventory, fn: Callable[[SshTarget], CommandResult], *, nodes: list[Node],
             options: RunOptions, timeouts: Timeouts, known_hosts: Path | None,
             events: EventSink | None, profile_path: Path | None) -> Report:
    targets = [ssh_target(inv, node, known_hosts=known_hosts) for node in nodes]
    policy = ssh_policy(options, item_timeout=_item_timeout(timeouts), profile_path=profile_path)
    return run_fanout(targets, fn, key=lambda t: t.host, policy=policy, events=events)


def run_on_hosts(inv: Inventory, command: str, *, nodes: list[Node],
                 options: RunOptions = RunOptions(), timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 known_hosts: Path | None = None, events: EventSink | None = None,
                 profile_path: Path | None = None) -> Report:
    """Run `command` on every node; one Result per node (a non-zero exit is FAILED with
    its exit code and output, an SSH failure is FAILED with the reason)."""
    if not command.strip():
        raise ConfigError("no command given")

    def call(target: SshTarget) -> CommandResult:
        return run_command(target, command, connect_timeout=timeouts.ssh_connect,
                           command_timeout=timeouts.ssh_command)

    return _fan_out(inv, call, nodes=nodes, options=options, timeouts=timeouts,
                    known_hosts=known_hosts, events=events, profile_path=profile_path)


def run_script_on_hosts(inv: Inventory, script_text: str, *, nodes: list[Node],
                        options: RunOptions = RunOptions(), timeouts: Timeouts = DEFAULT_TIMEOUTS,
                        known_hosts: Path | None = None, events: EventSink | None = None,
                        profile_path: Path | None = None, sudo: bool = False) -> Report:
    """Upload `script_text` into a private temporary directory on every node, run it
    (through `sudo -n` when `sudo` and the SSH user is not root) and remove it."""
    if not script_text.strip():
        raise ConfigError("the script is empty")

    def call(target: SshTarget) -> CommandResult:
        return put_and_run(target, script_text, sudo=sudo, connect_timeout=timeouts.ssh_connect,
                           command_timeout=timeouts.ssh_command)

    return _fan_out(inv, call, nodes=nodes, options=options, timeouts=timeouts,
                    known_hosts=known_hosts, events=events, profile_path=profile_path)


def exit_code(report: Report) -> int:
    """The exit code of a run (k1prov.verb_report.exit_code over its hosts)."""
    good = sum(1 for r in report.results if r.status is Status.OK)
    return outcome_exit_code(succeeded=good, failed=len(report.results) - good, cancelled=report.cancelled)
