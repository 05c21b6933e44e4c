"""Rolling restarts: configure's order for the running members of an ensemble.

A changed script restarts its service (new flags, a new member's address), and
restarting every member of an ensemble at once loses its quorum and its leader. So in
the phases of the quorum roles (k1prov.roles.plan.QUORUM_ROLES: ZooKeeper, the Mesos
masters) the members whose service runs and whose script changed go one at a time:
followers first and the leader last, the leader read again before each turn, each one
back in its ensemble with a leader elected (timeouts.rolling_restart) before the next.
Members whose service does not run (a first start, a stopped service) have no part in
the quorum: they go first, together. An ensemble that has no leader to begin with has
nothing to keep: its members go together too.

configure's runner (k1prov.configure) runs the scripts; this module picks who rolls and
keeps the order and the waits.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from k1prov.configure_plan import RoleDecision
from k1prov.context import VerbContext
from k1prov.fanout import Status
from k1prov.inventory.model import Node
from k1prov.probe import batch_runner
from k1prov.roles import wait_until_healthy
from k1prov.roles.health import Check, HealthResult, back_in_ensemble, leaders, leaders_last, sample
from k1prov.roles.plan import QUORUM_ROLES


class Member(Protocol):
    """One (host, role) of configure's run, as the roll reads and marks it."""

    node: Node
    role: str
    status: Status
    action: str
    error: str | None


def skip(items: Iterable[Member], why: str) -> None:
    """Mark `items` skipped: they were left as they were, for the reason `why`."""
    for w in items:
        w.status, w.action, w.error = Status.SKIPPED, "skipped", why


def rolling_members(to_run: list[Member], decisions: dict[tuple[str, str], RoleDecision], *,
                    roles: tuple[str, ...], gate: str, checks: dict[str, Check]) -> list[Member]:
    """The members of an ensemble in `to_run` whose service runs and whose script
    changed: running the script restarts them, so they go one at a time (`roll`)."""
    if gate not in checks or not any(role in QUORUM_ROLES for role in roles):
        return []
    return [w for w in to_run if w.role in QUORUM_ROLES
            and (d := decisions.get((w.node.name, w.role))) is not None
            and d.action == "run" and d.running is True]


def roll(ctx: VerbContext, name: str, items: list[Member], *, gate: str, check: Check,
         known_hosts: Path | None, fan_out: Callable[[str, list[Member]], None],
         cancelled: Callable[[], bool]) -> None:
    """Runs the scripts of `items` (running members of one ensemble) one at a time:
    before each turn the ensemble is read (its gate's check, one session per member)
    and the next member is a follower while one is left (k1prov.roles.health.leaders_last);
    after it, the wait until that member is back in the ensemble and a leader is elected
    (timeouts.rolling_restart). A member that fails or does not come back stops the
    roll: the members after it are left as they were (skipped), the quorum intact.

    `fan_out(label, members)` runs scripts and marks their rows (the runner's engine);
    `cancelled()` says whether the run was cancelled meanwhile."""
    gates = {gate: check}
    live = batch_runner(ctx, known_hosts=known_hosts)
    timeout = ctx.timeouts.rolling_restart

    def look() -> HealthResult:
        return sample(gates, live)[gate]

    ensemble = look()
    if not leaders([ensemble]):
        ctx.notify(f"{name}: no leader now ({ensemble.summary}), no quorum to keep: "
                   f"{len(items)} member(s) together")
        fan_out(name, items)
        return
    remaining = list(items)
    while remaining:
        node = leaders_last([w.node for w in remaining], [ensemble])[0]
        w = next(w for w in remaining if w.node is node)
        remaining.remove(w)
        what = "the leader" if node.name in leaders([ensemble]) else ensemble.states.get(node.name, "member")
        ctx.notify(f"{name}: {node.name} ({what}), {len(remaining)} after it")
        fan_out(f"{name}: {node.name}", [w])
        if w.status is not Status.OK or cancelled():
            skip(remaining, f"not restarted: {name} failed on {node.name}"
                 if w.status is not Status.OK else "cancelled")
            return
        ensemble = wait_until_healthy(
            lambda: (lambda r: dataclasses.replace(r, ok=back_in_ensemble(r, node.name)))(look()),
            health_timeout=timeout)
        if not ensemble.ok:
            w.status, w.action = Status.FAILED, "failed"
            w.error = (f"{w.role}: not back in its ensemble {timeout:.0f} s after "
                       f"its restart ({node.name} {ensemble.states.get(node.name, 'unknown')}; "
                       f"{ensemble.summary})")
            skip(remaining, f"not restarted: {node.name} did not come back")
            return
