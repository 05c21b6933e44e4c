"""What `render`, `images register` and `deploy` refuse in an inventory, in one place.

Each verb runs its own check before it touches anything, and `k1prov inventory check`
runs all of them, so a file that passes the check is not refused later for a reason
written in it. Every refusal is an InventoryError located "FILE:LINE: field: reason"
(Inventory.error / Inventory.line_of find the line of the field, or of its closest
written parent when the field is missing).

What the check cannot know from the file alone is a warning, not a refusal: a local
image file that does not exist yet (the lab builds its image at `lab up`; a site builds
its own); `images register` refuses it if it is still missing then.

    inv = load_inventory("inventories/devtower.yaml")
    warnings = check_all(inv)      # raises InventoryError on the first refusal
"""
from __future__ import annotations

from k1prov.errors import InventoryError
from k1prov.image_sources import detect
from k1prov.imagecatalog import DEFAULT_CATALOG, load_catalog, resolve_images
from k1prov.inventory.model import ImageSource, Inventory
from k1prov.roles import render

IMAGE_SLOTS = ("deploy_kernel", "deploy_ramdisk", "user")


def located(inv: Inventory, exc: InventoryError) -> InventoryError:
    """`exc` with the inventory's file and the field's line when it has none."""
    if exc.line is not None or not exc.field:
        return exc
    field = exc.field
    if field.startswith("images.") and field.split(".")[1] not in IMAGE_SLOTS:
        # Lower layers name an image by its name ("images.debian-12.file"): use the slot.
        name, _, rest = field[len("images."):].partition(".")
        for slot in IMAGE_SLOTS:
            src = getattr(inv.images, slot)
            if src is not None and src.name == name:
                field = f"images.{slot}" + (f".{rest}" if rest else "")
                break
    if exc.file and exc.file != str(inv.path):
        return exc          # about another file (the image catalog)
    return type(exc)(exc.reason, file=str(inv.path), line=inv.line_of(field), field=field)


def check_roles(inv: Inventory) -> None:
    """What `render` and `configure` refuse: role settings (a tarball source needs its
    sha512, a mirror its URL), roles that cannot work together, the template path."""
    try:
        render.check(inv)
    except InventoryError as exc:
        raise located(inv, exc) from None


def check_images(inv: Inventory) -> list[str]:
    """What `images register` refuses before contacting Glance: catalog names, and what
    each image source refuses (k1prov.image_sources: checksum formats, Glance bypass
    rules). Returns warnings (local files not there yet)."""
    warnings: list[str] = []
    try:
        images = resolve_images(inv, materialize=False)
        catalog = None
        for slot in IMAGE_SLOTS:
            src: ImageSource | None = getattr(images, slot)
            if src is None:
                continue
            written: ImageSource = getattr(inv.images, slot)
            field = f"images.{slot}"
            source = detect(src)
            source.check(field)
            missing = source.missing_file()
            if missing:
                generated = False
                if not (written.file or written.url):
                    catalog = catalog if catalog is not None else load_catalog(DEFAULT_CATALOG)
                    entry = catalog.get(written.name)
                    generated = bool(entry and entry.generate)
                if not generated:
                    line = inv.line_of(f"{field}.file") or inv.line_of(field)
                    warnings.append(f"{inv.path}:{line}: {field}.file: {missing} does not exist "
                                    "(yet): `images register` needs it")
    except InventoryError as exc:
        raise located(inv, exc) from None
    return warnings


def check_deploy(inv: Inventory) -> None:
    """What `deploy` and `reimage` refuse before touching a node."""
    if inv.images.user is None:
        raise inv.error("images.user", "no user image to deploy (images.user)")
    if not inv.ssh.public_keys:
        raise inv.error("ssh.public_keys", "none given; the config drive must carry the key "
                                           "k1prov logs in with (ssh.public_key_files or public_keys)")


def check_all(inv: Inventory) -> list[str]:
    """Every check above, in the order `cluster up` meets them; returns the warnings."""
    check_roles(inv)
    warnings = check_images(inv)
    check_deploy(inv)
    return warnings
