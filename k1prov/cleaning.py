"""`nodes clean`: Ironic's manual cleaning, on demand (issue 21).

The deploy ramdisk boots on each node and erases its disks: `metadata` wipes partition
tables and filesystem signatures (seconds), `full` overwrites every disk (hours on large
disks; the `clean` timeout). Ironic runs manual cleaning from `manageable`, so an
available node is managed first and provided again after, and a node whose earlier
cleaning failed is managed and cleaned again. A deployed node is refused: undeploy it
first (with automated cleaning on, undeploy cleans it anyway).
"""
from __future__ import annotations

from typing import Iterable

from k1prov.context import VerbContext
from k1prov.fanout import Status
from k1prov.ironic_actions import fire_and_wait, node_rows, refresh_rows
from k1prov.ironic_states import AVAILABLE, CLEAN_FAILED, CLEANABLE, MANAGEABLE
from k1prov.verb_report import VerbReport

# The agent's clean steps for each `--erase` (ironic-python-agent's GenericHardwareManager).
ERASE_STEPS = {
    "metadata": [{"interface": "deploy", "step": "erase_devices_metadata"}],
    "full": [{"interface": "deploy", "step": "erase_devices"}],
}


def clean(ctx: VerbContext, *, erase: str = "metadata", limit: Iterable[str] | None = None,
          group: str | None = None) -> VerbReport:
    """Erase the nodes' disks through the deploy ramdisk; each node ends `available`.
    A node whose cleaning fails keeps Ironic's error in its row, with the way on."""
    steps = ERASE_STEPS[erase]
    rows = node_rows(ctx, "clean", limit=limit, group=group)
    ironic = ctx.ironic()
    outcomes, report = rows.outcomes, rows.report
    uuid_of: dict[str, str] = {}
    state: dict[str, str] = {}
    for node in rows.nodes:
        ir, out = rows.current.get(node.name), outcomes[node.name]
        if ir is None:
            out.status, out.action = Status.SKIPPED, "not enrolled"
        elif ir.provision_state in CLEANABLE:
            uuid_of[node.name], state[node.name] = ir.id, ir.provision_state
        else:
            out.status = Status.FAILED
            out.error = (f"node is {ir.provision_state}; only available, manageable or clean "
                         f"failed nodes are cleaned (undeploy it first)")
    ctx.notify(f"clean ({erase}): {len(state)} node(s)")
    for action, from_states, target, timeout, name in (
            ("manage", {AVAILABLE, CLEAN_FAILED}, MANAGEABLE, ctx.timeouts.manage, "manage"),
            ("clean", {MANAGEABLE}, MANAGEABLE, ctx.timeouts.clean, "clean"),
            ("provide", {MANAGEABLE}, AVAILABLE, ctx.timeouts.provide, "provide")):
        names = [n for n, st in state.items() if st in from_states]
        if not names:
            continue
        reached = fire_and_wait(
            ctx, kind=f"ironic.{action}", action=action, names=names,
            fire=lambda n, a=action: ironic.start_action(
                uuid_of[n], a, clean_steps=steps if a == "clean" else None),
            uuid_of=uuid_of, target=target, timeout=timeout, report=report,
            outcomes=outcomes, timeout_name=name)
        # A failed clean's row gets the way on from refresh_rows (ironic_states.WAY_ON).
        for n in names:
            if n in reached:
                state[n] = target
            else:
                state.pop(n, None)
        if report.cancelled:
            break
    for n in state:
        outcomes[n].action = f"cleaned ({erase})"
    return refresh_rows(ctx, report, outcomes, rows.started)
