"""Actions on Ironic that the verbs share: fan Ironic calls out with the Ironic policy, fire a
provision action at many nodes and wait for them in one batched wait, fill report rows from
Ironic's current view. They take the verb context (k1prov.context) and work through its
accessors; the context itself holds no action, so no verb climbs back up into it for one.

    reached = fire_and_wait(ctx, kind="ironic.manage", action="manage", names=names, ...)
    return refresh_rows(ctx, report, outcomes, started)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from k1prov.cloud import is_transient
from k1prov.context import VerbContext
from k1prov.fanout import Report, Status, run_fanout
from k1prov.ironic_states import bmc_did_not_answer, with_way_on
from k1prov.inventory.model import Node
from k1prov.verb_report import NodeOutcome, VerbReport


@dataclass
class NodeRows:
    """What a verb over the selected nodes starts from: the nodes, Ironic's view of them
    (one list call), a row for each (OK until something says otherwise), the report the
    rows are in, and when it started (refresh_rows' duration)."""
    nodes: list[Node]
    current: dict[str, Any]
    outcomes: dict[str, NodeOutcome]
    report: VerbReport
    started: float


def node_rows(ctx: VerbContext, verb: str, *, limit: Iterable[str] | None,
              group: str | None) -> NodeRows:
    nodes = ctx.select(limit, group)
    current = ctx.ironic().own_nodes()
    outcomes = {n.name: NodeOutcome(node=n.name, status=Status.OK) for n in nodes}
    return NodeRows(nodes=nodes, current=current, outcomes=outcomes,
                    report=VerbReport(verb=verb, outcomes=list(outcomes.values())),
                    started=time.monotonic())


def fan_out(ctx: VerbContext, kind: str, items: list, fn: Callable[[Any], Any], *,
            key: Callable[[Any], str], item_timeout: float | None = None) -> Report:
    """`fn` over `items` through the engine with the Ironic policy (one API call or a few
    per item: by default three API request timeouts each), one lane per conductor group
    or shard (`ironic_partitions`; the keys are node names)."""
    timeout = ctx.timeouts.api_request * 3 if item_timeout is None else item_timeout
    lanes = ironic_partitions(ctx)
    return run_fanout(items, fn, key=key, policy=ctx.ironic_policy(kind, item_timeout=timeout),
                      events=ctx.events, is_transient=is_transient,
                      partition=lambda item: lanes.get(key(item), ""))


def ironic_partitions(ctx: VerbContext) -> dict[str, str]:
    """Node name -> the lane of its Ironic calls: its shard when it has one, else its
    conductor group; nodes with neither (and keys that are no node) share the lane "".
    Only the conductors of a node's group serve it, so each group (or shard, which a site
    sizes to its conductors) gets its own climber: a group whose conductors are slow, busy
    or dead backs off and fails alone while the others go at their own pace."""
    lanes = {}
    for node in ctx.inventory.nodes:
        if node.shard:
            lanes[node.name] = f"shard={node.shard}"
        elif node.conductor_group:
            lanes[node.name] = f"conductor_group={node.conductor_group}"
    return lanes


def fire_and_wait(ctx: VerbContext, *, kind: str, action: str, names: list[str],
                  fire: Callable[[str], None], uuid_of: dict[str, str], target: str,
                  timeout: float, report: VerbReport, outcomes: dict[str, NodeOutcome],
                  timeout_name: str = "") -> list[str]:
    """Fan `fire` (one provision request per node) out over `names`, then ONE batched
    wait for `target`. Failures and timeouts go to their nodes' rows; returns the names
    that reached `target` (none when the run was interrupted)."""
    fired = fan_out(ctx, kind, names, fire, key=lambda name: name)
    report.phases.append((action, fired))
    started = []
    for res in fired.results:
        if res.status is Status.OK:
            started.append(res.key)
        else:
            outcomes[res.key].status, outcomes[res.key].error = res.status, res.error
    if fired.cancelled:
        report.cancelled = True
        return []
    waited = ctx.ironic().wait_state([uuid_of[name] for name in started], target, timeout=timeout)
    reached = []
    for name in started:
        result, error = waited.get(uuid_of[name], ("timeout", f"not {target}"))
        if result == "ok":
            reached.append(name)
        else:
            outcomes[name].status = Status.TIMEOUT if result == "timeout" else Status.FAILED
            # The timeout's name in settings.Timeouts, so the operator knows which to raise.
            named = f" (the {timeout_name} timeout)" if result == "timeout" and timeout_name else ""
            outcomes[name].error = f"{action}: {error}{named}"
    return reached


def refresh_rows(ctx: VerbContext, report: VerbReport, outcomes: dict[str, NodeOutcome],
                 started: float, *, current: dict[str, Any] | None = None) -> VerbReport:
    """Fill every row with Ironic's current view (one list call, not one GET per node).
    `current`: the view (own_nodes()) the verb read before, when it has changed nothing
    since: a re-run on a healthy cluster then lists the nodes once per verb, not twice."""
    current = ctx.ironic().own_nodes() if current is None else current
    elapsed = time.monotonic() - started
    for name, out in outcomes.items():
        node = current.get(name)
        out.duration = elapsed
        if node is not None:
            out.uuid = node.id
            out.provision_state = node.provision_state
            out.power_state = node.power_state
            out.conductor_group = node.conductor_group or None
            out.shard = node.shard or None
            if out.status is not Status.OK and node.last_error and not out.error:
                out.error = node.last_error
            if out.status is not Status.OK:
                out.error = with_way_on(out.error, node.provision_state)
        if out.status is not Status.OK and bmc_did_not_answer(out.error):
            out.error = f"{out.error} ({_bmc_of(ctx, name)})"
    return report


def _bmc_of(ctx: VerbContext, name: str) -> str:
    """Which BMC a row whose error is Ironic's BMC failure (IPMI or Redfish) is about, as the inventory has it
    (the operator's next step is to look at that BMC)."""
    try:
        bmc = ctx.inventory.node(name).bmc
    except KeyError:
        return "BMC not in the inventory"
    return f"BMC {bmc.endpoint}"
