"""`images register`: the deploy kernel/ramdisk and the user image into Glance, and the
deploy kernel/ramdisk into every node's driver_info.

Two steps: `put_images` puts each image where Ironic fetches it and gives its ref;
`images register` then points every enrolled node at the deploy refs. `cluster up` runs
only the first before enroll and hands the refs to enroll, which writes them with the
rest of driver_info; standalone `nodes enroll` finds them (`deploy_image_refs`): with
automated cleaning, `provide` boots the deploy ramdisk, so a node must have them before
it (issue 21).

Each image registers itself the way its kind does (k1prov.image_sources: uploaded into
Glance, or, bypassing Glance, handed to Ironic as a URL: not uploaded, its row says so).
Each image is its own row: one that fails does not stop the others.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from k1prov import preflight
from k1prov.cloud import uses_keystone
from k1prov.context import VerbContext
from k1prov.ironic import DEPLOY_IMAGE_KEYS
from k1prov.ironic_actions import fan_out, refresh_rows
from k1prov.errors import CloudError, InventoryError, K1provError
from k1prov.fanout import Status
from k1prov.image_sources import detect
from k1prov.imagecatalog import resolve_images
from k1prov.inventory.model import Images, ImageSource, Node
from k1prov.run_records import RunRecord, locked_run
from k1prov.verb_report import EXIT_ERROR, NodeOutcome, VerbReport

# The row of a node `images register` finds not enrolled: enroll writes its deploy images.
NOT_ENROLLED = "not enrolled (nodes enroll gives it the deploy images)"
# progress(image name, bytes done, bytes total) while an image uploads.
ImageProgress = Callable[[str, int, int], None]


@dataclass
class Registration:
    """What put_images did: its report (one row per image) and the deploy refs,
    driver_info key -> ref; empty unless both the kernel and the ramdisk registered."""

    report: VerbReport
    deploy_images: dict[str, str] = field(default_factory=dict)


def register_images(ctx: VerbContext, *, progress: ImageProgress | None = None,
                    record: RunRecord | None = None) -> VerbReport:
    """Register the deploy kernel/ramdisk and the user image, then point every node at
    the deploy kernel/ramdisk (driver_info, patched: other driver_info keys stay).

    `record`: the run record of an enclosing verb, which holds the cluster's lock;
    without one, this verb takes the lock and keeps a record of its own (the lock lets
    glance.register_image delete what an earlier run left half-uploaded)."""
    images = _resolved(ctx.inventory)
    return _locked(ctx, record, lambda: _point_nodes(ctx, _put(ctx, images, progress=progress))).report


def put_images(ctx: VerbContext, *, progress: ImageProgress | None = None,
               record: RunRecord | None = None) -> Registration:
    """Put each image where Ironic fetches it (no node touched): `cluster up`'s images
    phase, before enroll. `record` as for register_images."""
    images = _resolved(ctx.inventory)
    return _locked(ctx, record, lambda: _put(ctx, images, progress=progress))


def deploy_image_refs(ctx: VerbContext) -> tuple[dict[str, str], str]:
    """The refs of the deploy kernel/ramdisk an earlier `images register` put where Ironic
    fetches them, found, never uploaded: (driver_info key -> ref, or {} with the reason)."""
    inv = ctx.inventory
    if any(getattr(inv.images, key) is None for key in DEPLOY_IMAGE_KEYS):
        return {}, "no deploy kernel/ramdisk in the inventory"
    try:
        images = resolve_images(inv, materialize=False)
        sources = [getattr(images, key) for key in DEPLOY_IMAGE_KEYS]
        refs = {key: detect(src).find(ctx) for key, src in zip(DEPLOY_IMAGE_KEYS, sources)}
    except K1provError as exc:      # Glance unreachable, a catalog image unknown, ...
        return {}, f"the deploy kernel/ramdisk could not be looked up ({exc})"
    if any(ref is None for ref in refs.values()):
        return {}, "the deploy kernel/ramdisk are not registered yet (k1prov images register)"
    return refs, ""


def _resolved(inv) -> Images:
    """The inventory's images, refused (located) as `inventory check` refuses them, before
    anything is locked or registered."""
    preflight.check_images(inv)
    try:
        return resolve_images(inv)
    except InventoryError as exc:     # e.g. the lab image not built yet
        raise preflight.located(inv, exc) from None


def _locked(ctx: VerbContext, record: RunRecord | None,
            run: Callable[[], Registration]) -> Registration:
    """run() under the cluster's lock: the enclosing verb's (`record`) or its own record."""
    inv = ctx.inventory
    if record is not None:
        return run()
    with locked_run(ctx.state_root, inv.cluster, "images register", inventory=inv.path,
                    wait=ctx.timeouts.lock, notify=ctx.notify) as own:
        try:
            done = run()
        except K1provError as exc:
            own.finish({"verb": "images register", "error": str(exc)}, exit_code=EXIT_ERROR)
            raise
        own.finish(done.report.to_dict(), exit_code=done.report.exit_code())
        return done


def _put(ctx: VerbContext, images: Images, *, progress: ImageProgress | None) -> Registration:
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
    deploy_images = {key: ids[key] for key in DEPLOY_IMAGE_KEYS if key in ids}
    if len(deploy_images) < len(DEPLOY_IMAGE_KEYS):
        if images.deploy_kernel is None or images.deploy_ramdisk is None:
            ctx.notify("no deploy kernel/ramdisk in the inventory: driver_info left as it is")
        deploy_images = {}
    return Registration(report, deploy_images)


def _point_nodes(ctx: VerbContext, registration: Registration) -> Registration:
    """Every enrolled node of the inventory at the deploy refs, a row each. A node not
    enrolled yet is no failure: `nodes enroll` finds the refs and creates it with them
    (images register first is the order an Ironic without default deploy images needs)."""
    report, refs = registration.report, registration.deploy_images
    if not refs:
        return registration
    started = time.monotonic()
    ironic = ctx.ironic()
    current = ironic.own_nodes()
    nodes = list(ctx.inventory.nodes)

    def point(node: Node) -> str:
        ironic_node = current.get(node.name)
        if ironic_node is None:
            return NOT_ENROLLED
        info = ironic_node.driver_info or {}
        patch = [{"op": "add", "path": f"/driver_info/{key}", "value": value}
                 for key, value in refs.items() if info.get(key) != value]
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
            row.changes = [f"driver_info.{key}" for key in DEPLOY_IMAGE_KEYS]
        node_rows[res.key] = row
    report.outcomes.extend(node_rows.values())
    # Nothing patched: the view read above is still Ironic's.
    unchanged = all(res.status is Status.OK and res.value in ("unchanged", NOT_ENROLLED)
                    for res in fired.results)
    refresh_rows(ctx, report, node_rows, started, current=current if unchanged else None)
    return registration


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
