"""Images and instances: `images register`, `deploy`, `undeploy`, `reimage`.

The facade (k1prov.provisioner.Provisioner) delegates each of these verbs here.
Every verb works per node and reports per node: one node that fails is a failed
row, never a reason to touch the others (a failed deploy does not undeploy the
nodes that made it).

deploy, per node:
  1. the node's SSH host key (made once, kept in the cluster's state directory);
  2. instance_info: the Glance image's id as image_source (plus root_gb), or for an
     image that bypasses Glance its URL and checksum fields (glance.direct_image_info);
  3. a config drive: hostname = node name, the operator's public keys, the host key,
     the static address on the node's first MAC;
  4. `active` with that config drive (fanned out: kind ironic.deploy), then ONE
     batched wait for `active`;
  5. the cluster's known_hosts with the pinned keys, then SSH must answer with that
     key and a fresh boot (fanned out: kind ssh.ready).
A re-run deploys only what is not active yet: an active node with the same image is
"unchanged".

Ironic node fields are written here with the SDK's patch_node; its exceptions are
translated at this boundary like in ironic.py.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from k1prov import glance
from k1prov.cloud import describe_http_error
from k1prov.configdrive import StaticNetwork, build_config_drive
from k1prov.errors import ConfigError, K1provError, NodeError, TransportError
from k1prov.fanout import Policy, Status, run_fanout
from k1prov.hostkeys import KEY_NAME, ensure_host_key, host_key_dir, write_known_hosts
from k1prov.imagecatalog import resolve_images
from k1prov.inventory.model import ImageSource, Node
from k1prov.outcome import NodeOutcome, VerbReport
from k1prov.settings import MAX_CONCURRENCY
from k1prov.ssh import SshTarget, run_command

if TYPE_CHECKING:
    from k1prov.provisioner import Provisioner

log = logging.getLogger("k1prov.deploy")

# States from which `active` (a deploy) is the way forward.
DEPLOYABLE = {"available", "deploy failed"}
# States from which `rebuild` is accepted.
REBUILDABLE = {"active", "deploy failed", "error"}
# States from which `deleted` (undeploy) is accepted.
UNDEPLOYABLE = {"active", "deploy failed", "error", "wait call-back", "rescue", "rescue failed",
                "rescue wait", "service failed"}
# Pause between two SSH attempts while a host boots.
SSH_RETRY_PAUSE = 0.3
# How much older than the deploy request a host's PID 1 may look (clock ticks, rounding).
BOOT_AGE_SLACK = 2.0
# Prints "<seconds since boot of the machine> <start of PID 1 in ticks> <ticks per second>":
# the age of PID 1 tells a fresh boot from an old instance that still answers.
BOOT_AGE_COMMAND = "read up _ < /proc/uptime; set -- $(cat /proc/1/stat); " \
                   "echo $up ${22} $(getconf CLK_TCK)"

ImageProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class UserImage:
    """What a deploy writes into instance_info for the user image."""

    name: str
    instance_info: dict[str, Any]

    @property
    def source(self) -> str:
        return str(self.instance_info["image_source"])


# ---------------------------------------------------------------- images register


def register_images(prov: "Provisioner", *, progress: ImageProgress | None = None) -> VerbReport:
    """Register the deploy kernel/ramdisk and the user image, then point every node at
    the deploy kernel/ramdisk (driver_info, patched: other driver_info keys stay)."""
    inv = prov.inventory
    images = resolve_images(inv)
    started = time.monotonic()
    outcomes: list[NodeOutcome] = []
    ids: dict[str, str] = {}
    visibility = image_visibility(inv.cloud)
    for slot in ("deploy_kernel", "deploy_ramdisk", "user"):
        src: ImageSource | None = getattr(images, slot)
        if src is None:
            continue
        row = NodeOutcome(node=f"image:{src.name}", status=Status.OK)
        outcomes.append(row)
        t0 = time.monotonic()
        try:
            if src.bypass_glance:
                info = glance.direct_image_info(src)
                ids[slot] = info["image_source"]
                row.action = "bypasses glance"
                row.changes = [info["image_source"]]
            else:
                prov._notify(f"{slot}: {src.name}")
                cb = (lambda done, total, n=src.name: progress(n, done, total)) if progress else None
                reg = glance.register_image(prov.conn, src, cluster=inv.cluster,
                                            timeout=prov.timeouts.image_upload, progress=cb,
                                            visibility=visibility)
                ids[slot] = reg.id
                row.uuid = reg.id
                row.action = "unchanged" if reg.reused else "uploaded"
                row.changes = [reg.checksum]
        except K1provError as exc:
            row.status, row.error = Status.FAILED, str(exc)
        row.duration = time.monotonic() - t0

    report = VerbReport(verb="images register", outcomes=outcomes)
    kernel, ramdisk = ids.get("deploy_kernel"), ids.get("deploy_ramdisk")
    if kernel is None or ramdisk is None:
        if images.deploy_kernel is None or images.deploy_ramdisk is None:
            prov._notify("no deploy kernel/ramdisk in the inventory: driver_info left as it is")
        return report
    current = prov._ironic().own_nodes()
    nodes = list(inv.nodes)

    def point(node: Node) -> str:
        ironic_node = current.get(node.name)
        if ironic_node is None:
            raise NodeError(node.name, "not enrolled (k1prov nodes enroll)")
        info = ironic_node.driver_info or {}
        patch = [{"op": "add", "path": f"/driver_info/{key}", "value": value}
                 for key, value in (("deploy_kernel", kernel), ("deploy_ramdisk", ramdisk))
                 if info.get(key) != value]
        if not patch:
            return "unchanged"
        _patch_node(prov, node.name, ironic_node.id, patch)
        return "updated"

    prov._notify(f"driver_info deploy_kernel/deploy_ramdisk on {len(nodes)} node(s)")
    fired = prov._fan_out("ironic.driver_info", nodes, point, key=lambda n: n.name,
                          item_timeout=prov.timeouts.api_request * 3)
    report.phases.append(("driver_info", fired))
    report.cancelled = fired.cancelled
    node_rows = {}
    for res in fired.results:
        row = NodeOutcome(node=res.key, status=res.status, error=res.error,
                          action=res.value if res.status is Status.OK else "")
        if res.status is Status.OK and res.value == "updated":
            row.changes = ["driver_info.deploy_kernel", "driver_info.deploy_ramdisk"]
        node_rows[res.key] = row
    outcomes.extend(node_rows.values())
    prov._finish(report, node_rows, started)
    return report


def image_visibility(cloud) -> str | None:
    """Glance visibility for k1prov's images.

    A standalone Ironic (explicit endpoints, no Keystone) has no project to own a
    private image, and its conductor refuses private images it does not own ("Access
    to IMAGE owned by None denied"): only public and community images pass. Public,
    not community: Glance lists community images only when asked for them, and the
    find-or-create of glance.list_own_images must see them. Without Keystone there is
    no other tenant to see them. With Keystone (a clouds.yaml entry) Glance's default,
    private to the project, is right.
    """
    return "public" if cloud.cloud is None else None


def _patch_node(prov: "Provisioner", name: str, uuid: str, patch: list[dict[str, Any]]) -> None:
    from openstack import exceptions as os_exc

    try:
        prov.conn.baremetal.patch_node(uuid, patch)
    except os_exc.SDKException as exc:
        raise NodeError(name, f"update: {describe_http_error(exc)}") from None


# ---------------------------------------------------------------- the user image


def user_image(prov: "Provisioner", *, name: str | None = None) -> UserImage:
    """The inventory's user image (or the cluster's Glance image called `name`)."""
    inv = prov.inventory
    src = resolve_images(inv).user
    if name is None and src is None:
        raise ConfigError(f"{inv.path}: no images.user to deploy")
    if name is None and src.bypass_glance:
        return UserImage(name=src.name, instance_info=glance.direct_image_info(src))
    wanted = name or src.name
    candidates = [img for img in glance.list_own_images(prov.conn, inv.cluster, name=wanted)
                  if img.status == "active"]
    if not candidates:
        raise ConfigError(f"image {wanted!r} of cluster {inv.cluster} is not in Glance "
                          f"(run `k1prov images register -i {inv.path}` first)")
    image = candidates[-1]          # newest: what the last `images register` uploaded
    size = image.virtual_size or image.size or 0
    info: dict[str, Any] = {"image_source": image.id,
                            # Ironic needs root_gb for a partition image; harmless for whole-disk.
                            "root_gb": max(1, math.ceil(size / 2**30))}
    return UserImage(name=wanted, instance_info=info)


# ---------------------------------------------------------------- deploy / reimage


def deploy(prov: "Provisioner", *, limit: Iterable[str] | None = None) -> VerbReport:
    nodes = prov.select(limit)
    current = prov._ironic().own_nodes()
    image = user_image(prov)
    outcomes = {n.name: NodeOutcome(node=n.name, status=Status.OK) for n in nodes}
    todo: list[tuple[Node, str]] = []
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
            todo.append((node, ir.id))
        else:
            out.status = Status.FAILED
            out.error = f"node is {ir.provision_state}; deploy needs available"
    return _provision(prov, "deploy", "active", todo, outcomes, image=image, regenerate_keys=False)


def reimage(prov: "Provisioner", names: Iterable[str], *, image_name: str | None = None,
            new_host_keys: bool = False) -> VerbReport:
    names = list(names)
    if not names:
        raise ConfigError("reimage: name the node(s) to rebuild")
    nodes = prov.select(names)
    current = prov._ironic().own_nodes()
    image = user_image(prov, name=image_name)
    outcomes = {n.name: NodeOutcome(node=n.name, status=Status.OK) for n in nodes}
    todo: list[tuple[Node, str]] = []
    for node in nodes:
        ir = current.get(node.name)
        if ir is None:
            outcomes[node.name].status = Status.FAILED
            outcomes[node.name].error = "not enrolled (k1prov nodes enroll)"
        elif ir.provision_state in REBUILDABLE:
            todo.append((node, ir.id))
        else:
            outcomes[node.name].status = Status.FAILED
            outcomes[node.name].error = f"node is {ir.provision_state}; reimage needs active"
    return _provision(prov, "reimage", "rebuild", todo, outcomes, image=image,
                      regenerate_keys=new_host_keys)


def _check_ssh(prov: "Provisioner") -> None:
    """A deployed host is reached with the inventory's key: without one, every deploy
    would end in an SSH timeout. Checked before any node is touched."""
    ssh = prov.inventory.ssh
    if not ssh.public_keys:
        raise ConfigError(f"{prov.inventory.path}: ssh.public_keys: none given; the config drive "
                          f"must carry the key k1prov logs in with (ssh.public_key_files or public_keys)")


def _provision(prov: "Provisioner", verb: str, action: str, todo: list[tuple[Node, str]],
               outcomes: dict[str, NodeOutcome], *, image: UserImage,
               regenerate_keys: bool) -> VerbReport:
    """Fire `action` with a fresh config drive, wait for active, then for SSH."""
    started = time.monotonic()
    report = VerbReport(verb=verb, outcomes=list(outcomes.values()))
    if not todo:
        return prov._finish(report, outcomes, started)
    _check_ssh(prov)
    inv = prov.inventory
    state_dir = prov.cluster_state_dir
    uuid_of = {node.name: uuid for node, uuid in todo}
    by_name = {node.name: node for node, _ in todo}
    fired_at: dict[str, float] = {}

    def fire(name: str) -> None:
        node, uuid = by_name[name], uuid_of[name]
        if not node.macs:
            raise NodeError(node.name, "no MAC address: the config drive's network needs one")
        key = ensure_host_key(state_dir, node.name, regenerate=regenerate_keys)
        _patch_node(prov, node.name, uuid, [{"op": "add", "path": "/instance_info",
                                              "value": dict(image.instance_info)}])
        drive = build_config_drive(
            hostname=node.name, uuid=uuid, public_keys=list(inv.ssh.public_keys), host_key=key,
            network=StaticNetwork(node.address, inv.network.prefix_length, inv.network.gateway,
                                  tuple(inv.network.dns), inv.network.mtu, node.macs[0]),
            ssh_user=inv.ssh.user)
        fired_at[node.name] = time.monotonic()
        prov._ironic().start_action(uuid, action, config_drive=drive)

    prov._notify(f"{verb}: {len(todo)} node(s), image {image.name}")
    t_fire = time.monotonic()
    reached = prov._fire_and_wait(kind=f"ironic.{verb}", action=action, names=list(by_name), fire=fire,
                                  uuid_of=uuid_of, target="active", timeout=prov.timeouts.deploy,
                                  report=report, outcomes=outcomes)
    if report.cancelled:
        return prov._finish(report, outcomes, started)
    prov._notify(f"{verb}: Ironic reached active in {time.monotonic() - t_fire:.1f} s")
    active = [by_name[name] for name in reached]
    for node in active:
        outcomes[node.name].action = "deployed" if action == "active" else "rebuilt"

    known_hosts = write_pinned_known_hosts(prov)
    if active:
        ready = wait_ssh(prov, active, known_hosts=known_hosts, fired_at=fired_at,
                         old_key_may_answer=regenerate_keys)
        report.phases.append(("ssh.ready", ready))
        for res in ready.results:
            out = outcomes[res.key]
            if res.status is not Status.OK:
                out.status, out.error = res.status, f"ssh: {res.error}"
            else:
                out.changes.append(f"ssh after {res.value:.1f} s")
        report.cancelled = ready.cancelled
    return prov._finish(report, outcomes, started)


def write_pinned_known_hosts(prov: "Provisioner") -> Path:
    """known_hosts of the cluster: every inventory node whose host key k1prov made."""
    state_dir = prov.cluster_state_dir
    entries = {}
    for node in prov.inventory.nodes:
        if (host_key_dir(state_dir, node.name) / KEY_NAME).exists():
            entries[node.name] = (node.address, ensure_host_key(state_dir, node.name).public_line)
    return write_known_hosts(state_dir, entries)


def ssh_target(prov: "Provisioner", node: Node, known_hosts: Path) -> SshTarget:
    ssh = prov.inventory.ssh
    return SshTarget(host=node.name, address=node.address, user=ssh.user, port=ssh.port,
                     key_filename=ssh.private_key, known_hosts=known_hosts,
                     gateway=node.gateway or ssh.gateway)


def wait_ssh(prov: "Provisioner", nodes: list[Node], *, known_hosts: Path,
             fired_at: dict[str, float], old_key_may_answer: bool = False):
    """Wait until each node answers SSH with its pinned key from a boot newer than its
    deploy request. Fanned out (kind ssh.ready); each item's value is the seconds waited."""
    timeouts = prov.timeouts

    def ready(node: Node) -> float:
        target = ssh_target(prov, node, known_hosts)
        t0 = time.monotonic()
        deadline = t0 + timeouts.ssh_ready
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
        raise TransportError(node.name, f"not ready after {timeouts.ssh_ready:.0f} s: {last}")

    policy = Policy(kind="ssh.ready", endpoint="ssh", concurrency=prov.options.concurrency,
                    max_concurrency=min(MAX_CONCURRENCY, prov.options.max_concurrency or 64),
                    item_timeout=timeouts.ssh_ready + timeouts.ssh_connect * 2,
                    failure_budget=1.0, retries=0,
                    profile_path=prov.state_root / "profiles.json")
    return run_fanout(nodes, ready, key=lambda n: n.name, policy=policy, events=prov.events)


def boot_age(stdout: str) -> float | None:
    """Age in seconds of PID 1 from BOOT_AGE_COMMAND's output; None if unreadable."""
    try:
        uptime, start_ticks, hz = stdout.split()[:3]
        return float(uptime) - int(start_ticks) / int(hz)
    except (ValueError, ZeroDivisionError):
        return None


# ---------------------------------------------------------------- undeploy


def undeploy(prov: "Provisioner", *, limit: Iterable[str] | None = None) -> VerbReport:
    nodes = prov.select(limit)
    current = prov._ironic().own_nodes()
    started = time.monotonic()
    outcomes = {n.name: NodeOutcome(node=n.name, status=Status.OK) for n in nodes}
    report = VerbReport(verb="undeploy", outcomes=list(outcomes.values()))
    todo: list[str] = []
    for node in nodes:
        ir = current.get(node.name)
        out = outcomes[node.name]
        if ir is None:
            out.action = "not enrolled"
        elif ir.provision_state in UNDEPLOYABLE:
            todo.append(node.name)
        elif ir.provision_state in ("available", "manageable", "enroll"):
            out.action = "unchanged"
        else:
            out.status, out.error = Status.FAILED, f"node is {ir.provision_state}"
    if not todo:
        return prov._finish(report, outcomes, started)
    ironic = prov._ironic()
    prov._notify(f"undeploy: {len(todo)} node(s)")
    uuid_of = {name: current[name].id for name in todo}
    reached = prov._fire_and_wait(kind="ironic.undeploy", action="deleted", names=todo,
                                  fire=lambda name: ironic.start_action(uuid_of[name], "deleted"),
                                  uuid_of=uuid_of, target="available", timeout=prov.timeouts.undeploy,
                                  report=report, outcomes=outcomes)
    for name in reached:
        outcomes[name].action = "undeployed"
    return prov._finish(report, outcomes, started)
