"""SSH readiness of deployed hosts: the cluster's pinned known_hosts, and the wait until
each host answers with its pinned key from a boot newer than its deploy request."""
from __future__ import annotations

import time
from pathlib import Path

from k1prov.context import VerbContext
from k1prov.errors import TransportError
from k1prov.fanout import Report, run_fanout
from k1prov.hostkeys import KEY_NAME, ensure_host_key, host_key_dir, write_known_hosts
from k1prov.inventory.model import Node
from k1prov.ssh import run_command

# Pause between two SSH attempts while a host boots.
SSH_RETRY_PAUSE = 0.3
# How much older than the deploy request a host's PID 1 may look (clock ticks, rounding).
BOOT_AGE_SLACK = 2.0
# Prints "<seconds since boot of the machine> <start of PID 1 in ticks> <ticks per second>":
# the age of PID 1 tells a fresh boot from an old instance that still answers.
BOOT_AGE_COMMAND = "read up _ < /proc/uptime; set -- $(cat /proc/1/stat); " \
                   "echo $up ${22} $(getconf CLK_TCK)"


def write_pinned_known_hosts(ctx: VerbContext) -> Path:
    """known_hosts of the cluster: every inventory node whose host key k1prov made."""
    state_dir = ctx.cluster_state_dir
    entries = {}
    for node in ctx.inventory.nodes:
        if (host_key_dir(state_dir, node.name) / KEY_NAME).exists():
            entries[node.name] = (node.address, ensure_host_key(state_dir, node.name).public_line)
    return write_known_hosts(state_dir, entries)


def wait_ssh(ctx: VerbContext, nodes: list[Node], *, known_hosts: Path,
             fired_at: dict[str, float], old_key_may_answer: bool = False,
             ready_timeout: float | None = None) -> Report:
    """Wait until each node answers SSH with its pinned key from a boot newer than its
    deploy request. Fanned out (kind ssh.ready); each item's value is the seconds waited.
    `ready_timeout`: how long to wait for each (default timeouts.ssh_ready)."""
    timeouts = ctx.timeouts
    wait_for = timeouts.ssh_ready if ready_timeout is None else ready_timeout

    def ready(node: Node) -> float:
        target = ctx.ssh_target(node, known_hosts)
        t0 = time.monotonic()
        deadline = t0 + wait_for
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                res = run_command(target, BOOT_AGE_COMMAND, connect_timeout=timeouts.ssh_connect,
                                  command_timeout=timeouts.ssh_connect)
                if res.ok:
                    age = boot_age(res.stdout)
                    fired = fired_at.get(node.name)
                    # A node this run did not (re)deploy may have booted long ago: any answer
                    # with the pinned key will do. A redeployed one must have booted since.
                    if age is None or fired is None or age <= time.monotonic() - fired + BOOT_AGE_SLACK:
                        return time.monotonic() - t0
                    last = f"still the old instance (PID 1 is {age:.0f} s old)"
                else:
                    last = f"`true` exited {res.exit_code}"
            except TransportError as exc:
                mismatch = "host key mismatch" in exc.reason
                if not (exc.transient or (mismatch and old_key_may_answer)):
                    raise
                last = exc.reason
            time.sleep(SSH_RETRY_PAUSE)
        raise TransportError(node.name, f"not ready after {wait_for:.0f} s: {last}")

    # The wait retries by itself until ssh_ready; every host is waited for (no failure budget).
    policy = ctx.ssh_policy("ssh.ready", item_timeout=wait_for + timeouts.ssh_connect * 2,
                            retries=0, failure_budget=1.0)
    return run_fanout(nodes, ready, key=lambda n: n.name, policy=policy, events=ctx.events)


def boot_age(stdout: str) -> float | None:
    """Age in seconds of PID 1 from BOOT_AGE_COMMAND's output; None if unreadable."""
    try:
        uptime, start_ticks, hz = stdout.split()[:3]
        return float(uptime) - int(start_ticks) / int(hz)
    except (ValueError, ZeroDivisionError):
        return None
