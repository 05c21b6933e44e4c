"""Instances: `deploy`, `undeploy`, `reimage`.

Every verb works per node and reports per node: one node that fails is a failed
row, never a reason to touch the others (a failed deploy does not undeploy the
nodes that made it).

deploy, per node:
  1. the node's SSH host key (made once, kept in the cluster's state directory);
  2. instance_info: the Glance image's id as image_source (plus root_gb), or for an
     image that bypasses Glance its URL and checksum fields (image_content.direct_image_info);
  3. a config drive: hostname = node name, the operator's public keys, the host key,
     the static address on the node's first MAC;
  4. `active` with that config drive (fanned out: kind ironic.deploy), then ONE
     batched wait for `active`;
  5. the cluster's known_hosts with the pinned keys, then SSH must answer with that
     key and a fresh boot (k1prov.ssh_ready, fanned out: kind ssh.ready).
A re-run deploys only what is not active yet: an active node with the same image is
"unchanged". Registering the images is k1prov.image_registration.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable

from k1prov import preflight
from k1prov.image_sources import GlanceImage, detect
from k1prov.configdrive import StaticNetwork, build_config_drive
from k1prov.context import VerbContext
from k1prov.ironic_actions import fire_and_wait, node_rows, refresh_rows
from k1prov.errors import ConfigError, NodeError
from k1prov.fanout import Status
from k1prov.hostkeys import ensure_host_key
from k1prov.imagecatalog import resolve_images
from k1prov.inventory.model import Node
from k1prov.ironic_states import (ACTIVE, DEPLOYABLE, MANAGEABLE, NOT_DEPLOYED, REBUILDABLE, UNDEPLOYABLE,
                                  in_flight_to)
from k1prov.roles.fit import misfit, needs_of
from k1prov.verb_report import NodeOutcome, VerbReport
from k1prov.ssh_ready import wait_ssh, write_pinned_known_hosts

# A deploy still under way (an interrupted run's, a real agent writes the disk for a
# while): a re-run waits for it with the others instead of firing it again.
DEPLOYING = in_flight_to(ACTIVE)


@dataclass(frozen=True)
class UserImage:
    """What a deploy writes into instance_info for the user image."""

    name: str
    instance_info: dict[str, Any]

    @property
    def source(self) -> str:
        return str(self.instance_info["image_source"])


# ---------------------------------------------------------------- the user image


def user_image(ctx: VerbContext, *, name: str | None = None) -> UserImage:
    """The inventory's user image (or the cluster's Glance image called `name`)."""
    inv = ctx.inventory
    src = resolve_images(inv).user
    if name is None and src is None:
        raise ConfigError(f"{inv.path}: no images.user to deploy")
    source = GlanceImage(name) if name is not None else detect(src)
    return UserImage(name=source.name, instance_info=source.instance_info(ctx))


# ---------------------------------------------------------------- deploy / reimage


def deploy(ctx: VerbContext, *, limit: Iterable[str] | None = None,
           group: str | None = None) -> VerbReport:
    # What the inventory lacks for a deploy (a user image; the SSH key the config drive
    # carries, without which every deploy ends in an SSH timeout), before anything is
    # touched: the check `inventory check` runs (k1prov.preflight).
    preflight.check_deploy(ctx.inventory)
    needs = needs_of(ctx.inventory)
    nodes = ctx.select(limit, group)
    current = ctx.ironic().own_nodes()
    image = user_image(ctx)
    outcomes = {n.name: NodeOutcome(node=n.name, status=Status.OK) for n in nodes}
    todo: list[tuple[Node, str]] = []
    resume: set[str] = set()
    for node in nodes:
        ir = current.get(node.name)
        out = outcomes[node.name]
        if ir is None:
            out.status, out.error = Status.FAILED, "not enrolled (k1prov nodes enroll)"
        elif ir.provision_state == "active":
            out.action = "unchanged"
            have = (ir.instance_info or {}).get("image_source")
            if have != image.source:
                out.changes = [f"runs image {have}, not {image.name}: `k1prov reimage` to change"]
        elif ir.provision_state in DEPLOYABLE:
            if not _fits(node, ir, needs, out):
                continue
            todo.append((node, ir.id))
        elif ir.provision_state in DEPLOYING:
            todo.append((node, ir.id))
            resume.add(node.name)
        else:
            out.status = Status.FAILED
            out.error = f"node is {ir.provision_state}; deploy needs available"
            if ir.provision_state == MANAGEABLE and not node.macs:
                # Held there by enroll for want of ports (k1prov.enrollment.waits_for_ports).
                out.error += ": a node enrolled without macs gets its ports, and is provided, by `k1prov nodes inspect`"
    return _provision(ctx, "deploy", "active", todo, outcomes, image=image, regenerate_keys=False,
                      current=current, resume=resume)


def reimage(ctx: VerbContext, names: Iterable[str], *, image_name: str | None = None,
            new_host_keys: bool = False) -> VerbReport:
    names = list(names)
    if not names:
        raise ConfigError("reimage: name the node(s) to rebuild")
    preflight.check_deploy(ctx.inventory)
    needs = needs_of(ctx.inventory)
    nodes = ctx.select(names)
    current = ctx.ironic().own_nodes()
    image = user_image(ctx, name=image_name)
    outcomes = {n.name: NodeOutcome(node=n.name, status=Status.OK) for n in nodes}
    todo: list[tuple[Node, str]] = []
    for node in nodes:
        ir = current.get(node.name)
        if ir is None:
            outcomes[node.name].status = Status.FAILED
            outcomes[node.name].error = "not enrolled (k1prov nodes enroll)"
        elif ir.provision_state in REBUILDABLE:
            if _fits(node, ir, needs, outcomes[node.name]):
                todo.append((node, ir.id))
        else:
            outcomes[node.name].status = Status.FAILED
            outcomes[node.name].error = f"node is {ir.provision_state}; reimage needs active"
    return _provision(ctx, "reimage", "rebuild", todo, outcomes, image=image,
                      regenerate_keys=new_host_keys, current=current)


def _fits(node: Node, ir: Any, needs: dict, out: NodeOutcome) -> bool:
    """Role fit, before a disk is written: a node whose Ironic properties are short of what
    its roles need fails in its row (k1prov.roles.fit)."""
    why = misfit(node, ir.properties, needs)
    if why:
        out.status, out.error = Status.FAILED, f"refused before deploying: {why}"
    return why is None


def _provision(ctx: VerbContext, verb: str, action: str, todo: list[tuple[Node, str]],
               outcomes: dict[str, NodeOutcome], *, image: UserImage,
               regenerate_keys: bool, current: dict[str, Any],
               resume: set[str] = frozenset()) -> VerbReport:
    """Fire `action` with a fresh config drive, wait for active, then for SSH. `current`:
    Ironic's view the caller decided from (the rows when there is nothing to do). Nodes in
    `resume` are already on their way (an earlier run fired them): only waited for."""
    started = time.monotonic()
    report = VerbReport(verb=verb, outcomes=list(outcomes.values()))
    if not todo:
        return refresh_rows(ctx, report, outcomes, started, current=current)
    inv = ctx.inventory
    state_dir = ctx.cluster_state_dir
    uuid_of = {node.name: uuid for node, uuid in todo}
    by_name = {node.name: node for node, _ in todo}
    fired_at: dict[str, float] = {}
    ironic = ctx.ironic()

    def fire(name: str) -> None:
        if name in resume:
            return
        node, uuid = by_name[name], uuid_of[name]
        # A node enrolled without macs: the port inspection made (the NIC it booted from).
        mac = node.macs[0] if node.macs else next(iter(ironic.port_macs(node.name, uuid)), None)
        if mac is None:
            raise NodeError(node.name, "no MAC address: the config drive's network needs one "
                                       "(no macs in the inventory and no port: `k1prov nodes inspect`)")
        key = ensure_host_key(state_dir, node.name, regenerate=regenerate_keys)
        ironic.patch(node.name, uuid, [{"op": "add", "path": "/instance_info",
                                        "value": dict(image.instance_info)}])
        drive = build_config_drive(
            hostname=node.name, uuid=uuid, public_keys=list(inv.ssh.public_keys), host_key=key,
            network=StaticNetwork(node.address, inv.network.prefix_length, inv.network.gateway,
                                  tuple(inv.network.dns), inv.network.mtu, mac),
            ssh_user=inv.ssh.user)
        fired_at[node.name] = time.monotonic()
        ironic.start_action(uuid, action, config_drive=drive)

    ctx.notify(f"{verb}: {len(todo)} node(s), image {image.name}")
    t_fire = time.monotonic()
    reached = fire_and_wait(ctx, kind=f"ironic.{verb}", action=action, names=list(by_name), fire=fire,
                            uuid_of=uuid_of, target="active", timeout=ctx.timeouts.deploy,
                            report=report, outcomes=outcomes, timeout_name="deploy")
    if report.cancelled:
        return refresh_rows(ctx, report, outcomes, started)
    ctx.notify(f"{verb}: Ironic reached active in {time.monotonic() - t_fire:.1f} s")
    active = [by_name[name] for name in reached]
    for node in active:
        outcomes[node.name].action = "deployed" if action == "active" else "rebuilt"

    known_hosts = write_pinned_known_hosts(ctx)
    if active:
        ready = wait_ssh(ctx, active, known_hosts=known_hosts, fired_at=fired_at,
                         old_key_may_answer=regenerate_keys)
        report.phases.append(("ssh.ready", ready))
        for res in ready.results:
            out = outcomes[res.key]
            if res.status is not Status.OK:
                out.status, out.error = res.status, f"ssh: {res.error}"
            else:
                out.changes.append(f"ssh after {res.value:.1f} s")
        report.cancelled = ready.cancelled
    return refresh_rows(ctx, report, outcomes, started)


# ---------------------------------------------------------------- undeploy


def undeploy(ctx: VerbContext, *, limit: Iterable[str] | None = None,
             group: str | None = None) -> VerbReport:
    """Undeploy the deployed nodes: Ironic tears each instance down and, with automated
    cleaning on (Ironic's default), boots the deploy ramdisk to clean it before it is
    available again; all in the one wait for available. A node whose cleaning fails is
    left in clean failed, its row with Ironic's error and the way on."""
    rows = node_rows(ctx, "undeploy", limit=limit, group=group)
    current, outcomes, report, started = rows.current, rows.outcomes, rows.report, rows.started
    todo: list[str] = []
    for node in rows.nodes:
        ir = current.get(node.name)
        out = outcomes[node.name]
        if ir is None:
            out.action = "not enrolled"
        elif ir.provision_state in UNDEPLOYABLE:
            todo.append(node.name)
        elif ir.provision_state in NOT_DEPLOYED:
            out.action = "unchanged"
        else:
            out.status, out.error = Status.FAILED, f"node is {ir.provision_state}"
    if not todo:
        return refresh_rows(ctx, report, outcomes, started)
    ironic = ctx.ironic()
    ctx.notify(f"undeploy: {len(todo)} node(s)")
    uuid_of = {name: current[name].id for name in todo}
    reached = fire_and_wait(ctx, kind="ironic.undeploy", action="deleted", names=todo,
                            fire=lambda name: ironic.start_action(uuid_of[name], "deleted"),
                            uuid_of=uuid_of, target="available", timeout=ctx.timeouts.undeploy,
                            report=report, outcomes=outcomes, timeout_name="undeploy")
    for name in reached:
        outcomes[name].action = "undeployed"
    return refresh_rows(ctx, report, outcomes, started)
