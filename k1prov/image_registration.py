"""`images register`: the deploy kernel/ramdisk and the user image into Glance, and the
deploy kernel/ramdisk into every node's driver_info.

Each image registers itself the way its kind does (k1prov.image_sources: uploaded into
Glance, or, bypassing Glance, handed to Ironic as a URL: not uploaded, its row says so).
Each image is its own row: one that fails does not stop the others.
"""
from __future__ import annotations

import time
from typing import Callable

from k1prov import preflight
from k1prov.cloud import uses_keystone
from k1prov.context import VerbContext
from k1prov.ironic_actions import fan_out, refresh_rows
from k1prov.errors import CloudError, InventoryError, K1provError, NodeError
from k1prov.fanout import Status
from k1prov.image_sources import detect
from k1prov.imagecatalog import resolve_images
from k1prov.inventory.model import Images, ImageSource, Node
from k1prov.run_records import RunRecord, locked_run
from k1prov.verb_report import EXIT_ERROR, NodeOutcome, VerbReport

# progress(image name, bytes done, bytes total) while an image uploads.
ImageProgress = Callable[[str, int, int], None]


def register_images(ctx: VerbContext, *, progress: ImageProgress | None = None,
                    record: RunRecord | None = None) -> VerbReport:
    """Register the deploy kernel/ramdisk and the user image, then point every node at
    the deploy kernel/ramdisk (driver_info, patched: other driver_info keys stay).

    `record`: the run record of an enclosing verb (cluster up), which holds the cluster's
    lock; without one, this verb takes the lock and keeps a record of its own (the lock
    lets glance.register_image delete what an earlier run left half-uploaded)."""
    inv = ctx.inventory
    preflight.check_images(inv)       # the refusals `inventory check` reports, located
    try:
        images = resolve_images(inv)
    except InventoryError as exc:     # e.g. the lab image not built yet
        raise preflight.located(inv, exc) from None
    if record is not None:
        return _register_images(ctx, images, progress=progress)
    with locked_run(ctx.state_root, inv.cluster, "images register", inventory=inv.path,
                    wait=ctx.timeouts.lock, notify=ctx.notify) as own:
        try:
            report = _register_images(ctx, images, progress=progress)
        except K1provError as exc:
            own.finish({"verb": "images register", "error": str(exc)}, exit_code=EXIT_ERROR)
            raise
        own.finish(report.to_dict(), exit_code=report.exit_code())
        return report


def _register_images(ctx: VerbContext, images: Images, *, progress: ImageProgress | None) -> VerbReport:
    inv = ctx.inventory
    started = time.monotonic()
    outcomes: list[NodeOutcome] = []
    ids: dict[str, str] = {}
    visibility = image_visibility(uses_keystone(ctx.conn))
    for slot in ("deploy_kernel", "deploy_ramdisk", "user"):
        src: ImageSource | None = getattr(images, slot)
        if src is None:
            continue
        row = NodeOutcome(node=f"image:{src.name}", status=Status.OK)
        outcomes.append(row)
        t0 = time.monotonic()
        try:
            source = detect(src)
            if source.through_glance:
                ctx.notify(f"{slot}: {src.name}")
            cb = (lambda done, total, n=src.name: progress(n, done, total)) if progress else None
            reg = source.register(ctx, progress=cb, visibility=visibility)
            ids[slot] = reg.ref
            row.uuid, row.action, row.changes = reg.uuid, reg.action, reg.changes
        except CloudError as exc:
            if exc.transient:
                raise               # Glance unreachable: the command stops, one line, exit 1
            row.status, row.error = Status.FAILED, str(exc)
        except K1provError as exc:
            row.status, row.error = Status.FAILED, str(exc)
        row.duration = time.monotonic() - t0

    report = VerbReport(verb="images register", outcomes=outcomes)
    kernel, ramdisk = ids.get("deploy_kernel"), ids.get("deploy_ramdisk")
    if kernel is None or ramdisk is None:
        if images.deploy_kernel is None or images.deploy_ramdisk is None:
            ctx.notify("no deploy kernel/ramdisk in the inventory: driver_info left as it is")
        return report
    ironic = ctx.ironic()
    current = ironic.own_nodes()
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
        ironic.patch(node.name, ironic_node.id, patch)
        return "updated"

    ctx.notify(f"driver_info deploy_kernel/deploy_ramdisk on {len(nodes)} node(s)")
    fired = fan_out(ctx, "ironic.driver_info", nodes, point, key=lambda n: n.name)
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
    # Nothing patched: the view read above is still Ironic's.
    unchanged = all(res.status is Status.OK and res.value == "unchanged" for res in fired.results)
    refresh_rows(ctx, report, node_rows, started, current=current if unchanged else None)
    return report


def image_visibility(keystone: bool) -> str | None:
    """Glance visibility for k1prov's images; `keystone`: whether the connection
    authenticates with Keystone (k1prov.cloud.uses_keystone).

    A standalone Ironic (explicit endpoints, or a clouds.yaml entry with http_basic or no
    auth) has no project to own a private image, and its conductor refuses private images
    it does not own ("Access to IMAGE owned by None denied"): only public and community
    images pass. Public, not community: Glance lists community images only when asked for
    them, and the find-or-create of glance.list_own_images must see them. Without Keystone
    there is no other tenant to see them. With Keystone Glance's default, private to the
    project, is right.
    """
    return None if keystone else "public"
