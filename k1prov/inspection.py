"""`nodes inspect`: Ironic's built-in in-band inspection (issue 21).

Ironic boots the deploy ramdisk on each node with its inspection callback
(`ipa-inspection-callback-url`, Ironic's /v1/continue_inspection); the agent reports the
hardware and Ironic stores it (GET /v1/nodes/<id>/inventory), sets properties (memory_mb,
cpus, local_gb, cpu_arch: what role fit reads, k1prov.roles.fit) and powers the node off.
Ironic inspects from `manageable`: an available node is managed first and provided again
after (with automated cleaning, that provide cleans it: one more boot of the ramdisk), a
node whose inspection failed is managed and inspected again; a deployed node is refused
(Ironic 39 inspects no active node). Ironic finds the agent's report by the node's ports
or, for a node enrolled without MACs (no ports yet), by its BMC's address, which the agent
reads from the BMC and reports: such a node needs a BMC address that is not loopback
(Ironic ignores 127.0.0.0/8 for that), and, with no port to write a boot config for, it
boots the agent from the site's PXE default (unmanaged inspection). Ironic makes the port
of the NIC it booted from ([inspector] add_ports = pxe); the row names it, and the node,
held in manageable by enroll for want of ports, is provided.
A node whose inspected NICs do not carry every MAC the inventory gives it is named: the
row says so and a warning goes to the operator.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from k1prov.context import VerbContext
from k1prov.errors import NodeError
from k1prov.fanout import Status
from k1prov.ironic_actions import fan_out, fire_and_wait, node_rows, refresh_rows
from k1prov.ironic_states import AVAILABLE, INSPECT_FAILED, INSPECTABLE, MANAGEABLE, with_way_on
from k1prov.roles.derive import auto_agents
from k1prov.verb_report import NodeOutcome, VerbReport

# Ironic's built-in in-band inspection; "no-inspect" (the default of an ipmi node when it
# is not enabled) is changed to it.
AGENT_INSPECT = "agent"
# Property keys the inspection hooks set (memory, cpus, root-device, architecture).
PROPERTY_FACTS = ("cpus", "memory_mb", "local_gb", "cpu_arch")


def inspect(ctx: VerbContext, *, limit: Iterable[str] | None = None,
            group: str | None = None) -> VerbReport:
    """Inspect the nodes through the agent; each ends where it started (available or
    manageable), with its hardware in its row. A failed inspection keeps Ironic's error
    in its row, with the way on."""
    rows = node_rows(ctx, "inspect", limit=limit, group=group)
    ironic = ctx.ironic()
    outcomes, report = rows.outcomes, rows.report
    uuid_of: dict[str, str] = {}
    state: dict[str, str] = {}
    back_to_available: set[str] = set()
    switch: list[str] = []
    portless: set[str] = set()     # enrolled without MACs and no port yet
    for node in rows.nodes:
        ir, out = rows.current.get(node.name), outcomes[node.name]
        refusal = refuse(ir)
        if ir is not None and not refusal and not node.macs:
            try:
                if not ironic.port_macs(node.name, ir.id):
                    portless.add(node.name)
                    refusal = refuse_portless(node.bmc.address)
            except NodeError as exc:
                refusal = exc.reason
        if ir is None:
            out.status, out.action = Status.SKIPPED, "not enrolled"
        elif refusal:
            out.status, out.error = Status.FAILED, refusal
        else:
            uuid_of[node.name], state[node.name] = ir.id, ir.provision_state
            if ir.provision_state == AVAILABLE or node.name in portless:
                # A port-less node is in manageable only for want of ports (enroll).
                back_to_available.add(node.name)
            if ir.inspect_interface != AGENT_INSPECT:
                switch.append(node.name)
    if switch:
        # A node enrolled before agent inspection was enabled keeps the interface it got.
        switched = fan_out(ctx, "ironic.update", switch, lambda n: ironic.patch(
            n, uuid_of[n], [{"op": "replace", "path": "/inspect_interface", "value": AGENT_INSPECT}]),
            key=lambda n: n)
        report.phases.append(("inspect_interface", switched))
        for res in switched.results:
            if res.status is Status.OK:
                outcomes[res.key].changes.append("inspect_interface")
            else:
                outcomes[res.key].status, outcomes[res.key].error = res.status, res.error
                state.pop(res.key, None)
    ctx.notify(f"inspect: {len(state)} node(s)")
    inspected: list[str] = []
    for action, from_states, target, timeout, name in (
            ("manage", {AVAILABLE, INSPECT_FAILED}, MANAGEABLE, ctx.timeouts.manage, "manage"),
            ("inspect", {MANAGEABLE}, MANAGEABLE, ctx.timeouts.inspect, "inspect"),
            ("provide", {MANAGEABLE}, AVAILABLE, ctx.timeouts.provide, "provide")):
        names = [n for n, st in state.items() if st in from_states
                 and (action != "provide" or n in back_to_available)]
        if not names:
            continue
        reached = fire_and_wait(
            ctx, kind=f"ironic.{action}", action=action, names=names,
            fire=lambda n, a=action: ironic.start_action(uuid_of[n], a),
            uuid_of=uuid_of, target=target, timeout=timeout, report=report,
            outcomes=outcomes, timeout_name=name)
        for n in names:
            if n in reached:
                state[n] = target
                if action == "inspect":
                    inspected.append(n)
                continue
            state.pop(n, None)
        if action == "inspect" and not report.cancelled:
            _abort_timed_out(ctx, report, outcomes, [n for n in names if n not in reached], uuid_of)
            for n in _read_ports(ctx, report, outcomes, [n for n in reached if n in portless], uuid_of):
                back_to_available.discard(n)
        if report.cancelled:
            break
    _read_facts(ctx, report, outcomes, inspected, uuid_of)
    for n in inspected:
        out = outcomes[n]
        if out.status is Status.OK and out.action.startswith(PORTS_FROM_INSPECTION):
            out.action = f"inspected; {out.action}"
        elif out.status is Status.OK:
            macs = ctx.inventory.node(n).macs
            # No MACs in the inventory: its ports are inspection's, nothing to disagree with.
            differ = mac_disagreement(macs, (out.hardware or {}).get("nics", [])) if macs else None
            out.action = "inspected" + (f" ({differ})" if differ else "")
            if differ:
                ctx.warn(f"{n}: {differ}")
    # A failed inspection's row gets the way on there (ironic_states.WAY_ON).
    return refresh_rows(ctx, report, outcomes, rows.started)


def _abort_timed_out(ctx: VerbContext, report: VerbReport, outcomes: dict[str, NodeOutcome],
                     names: list[str], uuid_of: dict[str, str]) -> None:
    """Abort the inspections that ran out of time (an agent that never called back: its
    NIC not on the network, a machine that never booted). Left alone, Ironic would keep
    the node in `inspect wait`, which no verb starts from, for its own inspect_wait_timeout
    (30 min by default); aborted, Ironic powers it off and marks it inspect failed, from
    which the next `nodes inspect` starts again."""
    timed_out = [n for n in names if outcomes[n].status is Status.TIMEOUT]
    if not timed_out:
        return
    ironic = ctx.ironic()
    aborted = fire_and_wait(
        ctx, kind="ironic.abort", action="abort", names=timed_out,
        fire=lambda n: ironic.start_action(uuid_of[n], "abort"), uuid_of=uuid_of,
        target=INSPECT_FAILED, timeout=ctx.timeouts.power, report=report,
        outcomes={n: NodeOutcome(node=n, status=Status.OK) for n in timed_out}, timeout_name="power")
    for n in timed_out:
        if n in aborted:
            outcomes[n].error = with_way_on(f"{outcomes[n].error}; the inspection was aborted",
                                            INSPECT_FAILED)
        else:
            outcomes[n].error = (f"{outcomes[n].error}; aborting it failed too: the node may still "
                                 f"be in inspect wait (`baremetal node abort {uuid_of[n]}`)")


def _read_ports(ctx: VerbContext, report: VerbReport, outcomes: dict[str, NodeOutcome],
                names: list[str], uuid_of: dict[str, str]) -> list[str]:
    """The ports inspection made for the port-less nodes of `names`, named in their rows;
    returns the nodes that still have none (failed: not provided, Ironic could not boot
    them)."""
    if not names:
        return []
    ironic = ctx.ironic()
    read = fan_out(ctx, "ironic.ports", names, lambda n: ironic.port_macs(n, uuid_of[n]), key=lambda n: n)
    report.phases.append(("ports", read))
    none: list[str] = []
    for res in read.results:
        out = outcomes[res.key]
        if res.status is not Status.OK:
            out.status, out.error = res.status, f"inspected, but {res.error}"
            none.append(res.key)
        elif not res.value:
            out.status = Status.FAILED
            out.error = ("inspected, but Ironic made no port: the agent reported no NIC it booted "
                         "from (BOOTIF); list the node's MACs in the inventory")
            none.append(res.key)
        else:
            out.action = f"{PORTS_FROM_INSPECTION} {', '.join(res.value)}"
    return none


# The start of a port-less node's row once inspection gave it ports.
PORTS_FROM_INSPECTION = "ports from inspection:"


def refuse_portless(bmc_address: str) -> str | None:
    """Why a node without ports (no MACs in the inventory) cannot be inspected: Ironic
    matches its agent's report by the BMC address the agent reads from the BMC, and never
    by a loopback one. None: it can."""
    try:
        loopback = ipaddress.ip_address(bmc_address).is_loopback
    except ValueError:
        # A host name: Ironic resolves it and drops loopback addresses itself.
        loopback = bmc_address == "localhost"
    if loopback:
        return (f"no MACs in the inventory and a loopback BMC address ({bmc_address}): Ironic could "
                f"not match the agent's report to the node; list its MACs or give the BMC's LAN address")
    return None


def refuse(ir: Any | None) -> str | None:
    """Why Ironic could not inspect this node now (None: it can, or it is not enrolled)."""
    if ir is None:
        return None
    if ir.provision_state not in INSPECTABLE:
        return (f"node is {ir.provision_state}; only available, manageable or inspect failed "
                f"nodes are inspected (undeploy it first)")
    if not (ir.driver_info or {}).get("deploy_ramdisk"):
        return "no deploy ramdisk to boot for inspection: run `k1prov images register` first"
    return None


def _read_facts(ctx: VerbContext, report: VerbReport, outcomes: dict[str, NodeOutcome],
                names: list[str], uuid_of: dict[str, str]) -> None:
    """Each inspected node's hardware, from Ironic: its properties and stored inventory."""
    if not names:
        return
    ironic = ctx.ironic()
    properties = {name: (ir.properties or {}) for name, ir in ironic.own_nodes().items()}
    read = fan_out(ctx, "ironic.inventory", names, lambda n: ironic.inventory(n, uuid_of[n]),
                   key=lambda n: n)
    report.phases.append(("inventory", read))
    for res in read.results:
        out = outcomes[res.key]
        if res.status is Status.OK:
            out.hardware = facts(properties.get(res.key, {}), res.value)
        else:
            out.status, out.error = res.status, f"inspected, but {res.error}"


def facts(properties: dict[str, Any], inventory: dict[str, Any] | None) -> dict[str, Any]:
    """CPUs, memory, disks and NICs as the operator reads them: Ironic's properties (what
    the hooks set) and, from the agent's inventory, each disk and NIC."""
    out: dict[str, Any] = {k: properties[k] for k in PROPERTY_FACTS if properties.get(k) is not None}
    inv = (inventory or {}).get("inventory") or {}
    if not inv:
        return out
    cpu = inv.get("cpu") or {}
    if cpu:
        out["cpu_model"] = cpu.get("model_name")
    memory = inv.get("memory") or {}
    if memory.get("physical_mb") is not None:
        out["memory_physical_mb"] = memory["physical_mb"]
    out["disks"] = [{"name": d.get("name"), "size_bytes": d.get("size"), "rotational": d.get("rotational"),
                     "model": d.get("model") or None} for d in inv.get("disks") or []]
    out["nics"] = [{"name": i.get("name"), "mac": (i.get("mac_address") or "").lower() or None,
                    "ipv4": i.get("ipv4_address")} for i in inv.get("interfaces") or []]
    return out


def mac_disagreement(inventory_macs: Iterable[str], nics: list[dict[str, Any]]) -> str | None:
    """How the inventory's MACs and the inspected NICs differ, or None when every MAC the
    inventory lists was found (NICs the inventory does not list are named too: a port for
    them is the operator's call)."""
    wanted = {m.lower() for m in inventory_macs}
    found = {n["mac"] for n in nics if n.get("mac")}
    missing, extra = sorted(wanted - found), sorted(found - wanted)
    parts = []
    if missing:
        parts.append(f"the inventory's MAC {', '.join(missing)} is on no NIC inspection found")
    if extra:
        parts.append(f"NIC MAC {', '.join(extra)} is not in the inventory")
    return "; ".join(parts) if parts else None


def agent_facts(ctx: VerbContext) -> dict[str, dict[str, Any]] | None:
    """The Ironic properties of the inventory's nodes, by name, for the Mesos agents with
    `resources: auto` (k1prov.roles.derive.auto_resources): what rendering resolves them
    from, read the way role fit reads them (`own_nodes`). None, and Ironic is not asked,
    when no agent has `auto`."""
    if not auto_agents(ctx.inventory):
        return None
    return {name: dict(ir.properties or {}) for name, ir in ctx.ironic().own_nodes().items()}
