"""Ironic node records: `nodes enroll`, `nodes list`, `nodes delete`.

enroll finds or creates each inventory node (ports by MAC) and drives it to
`available`; list shows Ironic's view of each inventory node; delete removes this
cluster's nodes (never another cluster's or a foreign node). Every function takes
the verb context (k1prov.context.VerbContext) and returns a VerbReport.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from k1prov import inspection
from k1prov.bmc_login import tried_by_login, try_login
from k1prov.context import VerbContext
from k1prov.image_registration import deploy_image_refs
from k1prov.ironic_actions import fan_out, fire_and_wait, refresh_rows
from k1prov.fanout import Status
from k1prov.ironic_states import AVAILABLE, MANAGEABLE, NEEDS_MANAGE, PROVIDABLE, bmc_did_not_answer
from k1prov.settings import MANAGE_RETRIES
from k1prov.verb_report import NodeOutcome, VerbReport


def enroll(ctx: VerbContext, *, limit: Iterable[str] | None = None,
           group: str | None = None, existing: dict[str, Any] | None = None,
           deploy_images: dict[str, str] | None = None) -> VerbReport:
    """Find-or-create each node (ports by MAC) and drive it to `available`.

    enroll -> manageable makes Ironic check the BMC credentials over IPMI; a node
    that fails gets its own row with Ironic's last_error and the others go on.
    `existing`: Ironic's nodes by name (IronicNodes.by_name()) when the caller has just
    listed them (cluster up does, to find nodes still in a transition).
    `deploy_images`: driver_info deploy_kernel/deploy_ramdisk -> ref, written with the
    rest of driver_info, before `provide` (with automated cleaning it boots the deploy
    ramdisk: issue 21). cluster up passes what its images phase registered; None: the
    refs of the images an earlier `images register` registered, found, never uploaded.
    """
    nodes = ctx.select(limit, group)
    for node in nodes:
        # Resolve every secret first: a missing password file stops the run before any change.
        node.bmc.password.reveal()
    ironic = ctx.ironic()
    started = time.monotonic()
    outcomes: dict[str, NodeOutcome] = {n.name: NodeOutcome(node=n.name, status=Status.OK)
                                        for n in nodes}
    report = VerbReport(verb="enroll", outcomes=list(outcomes.values()))

    if deploy_images is None:
        deploy_images, why_not = deploy_image_refs(ctx)
        if why_not:
            ctx.notify(f"{why_not}: driver_info gets no deploy_kernel/deploy_ramdisk, so cleaning on "
                       "provide relies on the conductor's default deploy images")
    ctx.notify(f"enrolling {len(nodes)} node(s)")
    existing = ironic.by_name() if existing is None else existing

    def ensure(node):
        current = existing.get(node.name)
        # A changed login is tried first: a refused one must not replace the one that works.
        if current is not None and tried_by_login(node) and ironic.login_changes(node, current):
            try_login(node, timeout=ctx.timeouts.bmc_login)
        return ironic.ensure(node, current, deploy_images)

    ensured = fan_out(ctx, "ironic.ensure", nodes, ensure, key=lambda n: n.name)
    report.phases.append(("ensure", ensured))
    state: dict[str, str] = {}   # node name -> provision state as far as we know
    uuid_of: dict[str, str] = {}
    no_ports: set[str] = set()
    macs_of = {n.name: n.macs for n in nodes}
    for res in ensured.results:
        out = outcomes[res.key]
        if res.status is not Status.OK:
            out.status, out.error = res.status, res.error
            continue
        ens = res.value
        uuid_of[res.key] = out.uuid = ens.uuid
        state[res.key] = ens.provision_state
        out.action = "created" if ens.created else ("updated" if ens.changes else "unchanged")
        out.changes = list(ens.changes)
        if ens.ports_created:
            out.changes.append(f"ports +{ens.ports_created}")
        if ens.ports_deleted:
            out.changes.append(f"ports -{ens.ports_deleted}")
        if waits_for_ports(macs_of[res.key], ens.ports):
            no_ports.add(res.key)
    if ensured.cancelled:
        report.cancelled = True
        return refresh_rows(ctx, report, outcomes, started)

    fired_any = False
    for action, from_states, target, timeout in (
            ("manage", NEEDS_MANAGE, MANAGEABLE, ctx.timeouts.manage),
            ("provide", PROVIDABLE, AVAILABLE, ctx.timeouts.provide)):
        names = [name for name, st in state.items() if st in from_states
                 and not (action == "provide" and name in no_ports)]
        if not names:
            continue
        fired_any = True
        ctx.notify(f"{action}: {len(names)} node(s) -> {target}")
        reached = fire_and_wait(
            ctx, kind=f"ironic.{action}", action=action, names=names,
            fire=lambda name, a=action: ironic.start_action(uuid_of[name], a),
            uuid_of=uuid_of, target=target, timeout=timeout, report=report, outcomes=outcomes)
        if action == "manage" and not report.cancelled:
            reached += _manage_again(ctx, [n for n in names if n not in reached], uuid_of=uuid_of,
                                     report=report, outcomes=outcomes)
        for name in names:
            if name in reached:
                state[name] = target
            else:
                state.pop(name, None)
        if report.cancelled:
            break
    for name in no_ports:
        if state.get(name) == MANAGEABLE:
            outcomes[name].action = f"{outcomes[name].action}; {NO_PORTS_YET}"
    # Every node found as the inventory has it and nothing fired: the listing read above is
    # still Ironic's view (a re-run on a healthy cluster lists the nodes once, not twice).
    untouched = not fired_any and all(o.status is Status.OK and o.action == "unchanged"
                                      and not o.changes for o in outcomes.values())
    return refresh_rows(ctx, report, outcomes, started,
                        current={name: n for name, n in existing.items() if ironic.owned(n)}
                        if untouched else None)


# The row of a node held in manageable for want of ports, and what to do: one line.
NO_PORTS_YET = "left manageable: no ports until `k1prov nodes inspect` finds its NICs"


def waits_for_ports(inventory_macs: tuple[str, ...], ports: int) -> bool:
    """Whether enroll leaves the node in manageable rather than providing it: the
    inventory lists no MACs and Ironic has no port for it yet. Ironic could not boot it
    by PXE (it writes the boot config by port MAC), so cleaning on `provide` and any later
    deploy would wait for an agent that never comes; `nodes inspect` makes its ports
    and provides it."""
    return not inventory_macs and ports == 0


def _manage_again(ctx: VerbContext, failed: list[str], *, uuid_of: dict[str, str],
                  report: VerbReport, outcomes: dict[str, NodeOutcome]) -> list[str]:
    """`manage` again, up to MANAGE_RETRIES times, for the nodes of `failed` whose BMC did not
    answer Ironic's check (a slow or lossy BMC; Ironic's own ipmitool retries ran out). Each
    row says how many retries it took; returns the names that reached manageable."""
    ironic = ctx.ironic()
    got: list[str] = []
    retries: dict[str, int] = {}
    for attempt in range(1, MANAGE_RETRIES + 1):
        again = [n for n in failed if outcomes[n].status is Status.FAILED
                 and bmc_did_not_answer(outcomes[n].error)]
        if not again or report.cancelled:
            break
        for name in again:
            outcomes[name].status, outcomes[name].error = Status.OK, None
            retries[name] = attempt
        ctx.notify(f"manage again ({attempt}/{MANAGE_RETRIES}): {len(again)} node(s) whose BMC did not answer")
        reached = fire_and_wait(
            ctx, kind="ironic.manage", action="manage", names=again,
            fire=lambda name: ironic.start_action(uuid_of[name], "manage"),
            uuid_of=uuid_of, target=MANAGEABLE, timeout=ctx.timeouts.manage, report=report, outcomes=outcomes)
        got += reached
        failed = [n for n in again if n not in reached]
    for name, count in retries.items():
        outcomes[name].changes.append(f"manage retried {count}x (the BMC did not answer Ironic's check)")
    return got


def list_nodes(ctx: VerbContext, *, limit: Iterable[str] | None = None,
               group: str | None = None) -> VerbReport:
    """Ironic's view of each inventory node: provision and power state, last error."""
    nodes = ctx.select(limit, group)
    ironic = ctx.ironic()
    current = ironic.own_nodes()
    enrolled = [n.name for n in nodes if n.name in current]
    # The hardware inspection stored (one GET per node: Ironic's listing carries no inventory).
    inventories = fan_out(ctx, "ironic.inventory", enrolled,
                          lambda name: ironic.inventory(name, current[name].id), key=lambda name: name)
    inventory_of = {r.key: r.value for r in inventories.results if r.status is Status.OK}
    outcomes = []
    for node in nodes:
        ir = current.get(node.name)
        if ir is None:
            outcomes.append(NodeOutcome(node=node.name, status=Status.SKIPPED, action="not enrolled"))
            continue
        outcomes.append(NodeOutcome(
            node=node.name, status=Status.FAILED if ir.last_error else Status.OK,
            action="maintenance" if ir.is_maintenance else "", uuid=ir.id,
            provision_state=ir.provision_state, power_state=ir.power_state,
            conductor_group=ir.conductor_group or None, shard=ir.shard or None,
            error=ir.last_error or None,
            hardware=inspection.facts(ir.properties or {}, inventory_of.get(node.name))))
    return VerbReport(verb="list", outcomes=outcomes)


def delete_nodes(ctx: VerbContext, *, limit: Iterable[str] | None = None,
                 group: str | None = None) -> VerbReport:
    """Delete this cluster's nodes from Ironic (never another cluster's or a foreign node)."""
    nodes = ctx.select(limit, group)
    ironic = ctx.ironic()
    existing = ironic.by_name()
    deleted = fan_out(ctx, "ironic.delete", nodes,
                      lambda n: ironic.delete(n.name, existing.get(n.name)), key=lambda n: n.name)
    outcomes = []
    for res in deleted.results:
        if res.status is Status.OK:
            outcomes.append(NodeOutcome(node=res.key, status=Status.OK,
                                        action="deleted" if res.value else "absent"))
        else:
            outcomes.append(NodeOutcome(node=res.key, status=res.status, error=res.error))
    return VerbReport(verb="delete", outcomes=outcomes, phases=[("delete", deleted)],
                      cancelled=deleted.cancelled)
