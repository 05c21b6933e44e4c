"""The image catalog (images/catalog.yaml): named images an inventory can refer to.

An inventory image written as just `name: debian-12-genericcloud` (no file or
url) takes the catalog entry of that name; fields the inventory does give
(checksum, formats, bypass_glance) win over the catalog's.

Entry fields:
    url: or file:        where the bytes are (exactly one). A file may hold the
                         placeholders {lab_dir}, {image_cache}, {ipa_cache}, "~", and a
                         glob ("k1prov-lab-*.raw": the newest match is taken);
                         a relative path is relative to the catalog file.
    checksum:            "sha256:HEX" or "sha512:HEX"
    checksum_url:        a published checksum file (SHA256SUMS, SHA512SUMS,
                         "<image>.sha256") read when the image is registered
    disk_format:, container_format:   as Glance names them (detected when absent)
    generate:            "lab-deploy-kernel" / "lab-deploy-ramdisk": k1prov writes
                         a small deterministic stand-in at `file` when it is
                         missing (the lab's fake deploy never boots them)
    description:         for people
"""
from __future__ import annotations

import glob
import gzip
import os
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from k1prov.atomic_file import write_atomic
from k1prov.errors import InventoryError
from k1prov.image_content import CONTAINER_FORMATS, DISK_FORMATS, parse_checksum
from k1prov.inventory.model import ImageSource, Images, Inventory

DEFAULT_CATALOG = Path(__file__).resolve().parents[1] / "images" / "catalog.yaml"
ENTRY_KEYS = ("url", "file", "checksum", "checksum_url", "disk_format", "container_format",
              "generate", "description")
GENERATORS = ("lab-deploy-kernel", "lab-deploy-ramdisk")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    url: str | None = None
    file: str | None = None          # as written (placeholders not yet expanded)
    checksum: str | None = None
    checksum_url: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    generate: str | None = None
    description: str = ""


def default_places() -> dict[str, str]:
    """Values of the placeholders usable in `file:`; the environment overrides them."""
    return {
        "lab_dir": os.environ.get("K1PROV_LAB_DIR") or "~/.local/share/k1prov/lab",
        "image_cache": os.environ.get("K1PROV_IMAGE_CACHE") or "~/.cache/k1prov/images",
        # The VM lab's agent ramdisks (scripts/vm-lab/build-ipa-ramdisk.sh).
        "ipa_cache": os.environ.get("K1PROV_IPA_CACHE") or "~/.cache/k1prov/ipa-ramdisk",
    }


def load_catalog(catalog_path: str | os.PathLike) -> dict[str, CatalogEntry]:
    path = Path(catalog_path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InventoryError(f"cannot read image catalog: {exc.strerror}", file=str(path)) from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise InventoryError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                             line=line + 1 if line is not None else None) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise InventoryError("an image catalog is a mapping with an 'images:' mapping", file=str(path))
    return {name: _entry(path, str(name), body) for name, body in data["images"].items()}


def _entry(path: Path, name: str, body: object) -> CatalogEntry:
    def fail(field: str, reason: str) -> InventoryError:
        return InventoryError(reason, file=str(path), field=f"images.{name}{'.' + field if field else ''}")

    if not isinstance(body, dict):
        raise fail("", "an entry is a mapping")
    unknown = sorted(set(map(str, body)) - set(ENTRY_KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown field (known: {', '.join(ENTRY_KEYS)})")
    values = {k: (str(v) if v is not None else None) for k, v in body.items()}
    if ("url" in values) == ("file" in values):
        raise fail("", "give exactly one of url: or file:")
    if values.get("url") and not values["url"].startswith(("http://", "https://")):
        raise fail("url", "must be an http:// or https:// URL")
    if values.get("checksum"):
        try:
            parse_checksum(values["checksum"])
        except InventoryError as exc:
            raise fail("checksum", exc.reason) from None
    if values.get("checksum_url") and not values["checksum_url"].startswith(("http://", "https://")):
        raise fail("checksum_url", "must be an http:// or https:// URL")
    if values.get("url") and not (values.get("checksum") or values.get("checksum_url")):
        raise fail("checksum", "a url entry needs checksum: or checksum_url:")
    for key, allowed in (("disk_format", DISK_FORMATS), ("container_format", CONTAINER_FORMATS),
                         ("generate", GENERATORS)):
        if values.get(key) and values[key] not in allowed:
            raise fail(key, f"{values[key]!r} is not one of {', '.join(allowed)}")
    if values.get("generate") and not values.get("file"):
        raise fail("generate", "generate: needs file: (where to write it)")
    return CatalogEntry(name=name, **{k: v for k, v in values.items() if v is not None})


def entry_source(entry: CatalogEntry, *, catalog_dir: Path, places: dict[str, str] | None = None,
                 materialize: bool = True) -> ImageSource:
    """The ImageSource of an entry; generated stand-ins are written when missing.

    `materialize` False (a check): nothing is written, and a glob that matches no file
    yet stays the pattern instead of being an error."""
    file = None
    if entry.file is not None:
        file = str(_expand(entry.file, catalog_dir=catalog_dir, places=places or default_places(),
                           entry=entry, must_match=materialize))
        if entry.generate and materialize:
            write_lab_deploy_image(Path(file), entry.generate)
    return ImageSource(name=entry.name, file=file, url=entry.url, checksum=entry.checksum,
                       checksum_url=entry.checksum_url, disk_format=entry.disk_format,
                       container_format=entry.container_format)


def resolve_images(inv: Inventory, catalog_path: str | os.PathLike = DEFAULT_CATALOG, *,
                   places: dict[str, str] | None = None, materialize: bool = True) -> Images:
    """The inventory's images with catalog references filled in.

    The catalog is read only when some image refers to it.
    """
    slots = {"deploy_kernel": inv.images.deploy_kernel, "deploy_ramdisk": inv.images.deploy_ramdisk,
             "user": inv.images.user}
    if all(src is None or src.file or src.url for src in slots.values()):
        return inv.images
    catalog = load_catalog(catalog_path)
    resolved: dict[str, ImageSource | None] = {}
    for slot, src in slots.items():
        if src is None or src.file or src.url:
            resolved[slot] = src
            continue
        entry = catalog.get(src.name)
        if entry is None:
            raise InventoryError(f"{src.name!r} has no file: or url: and is not in the image catalog "
                                 f"{catalog_path} (known: {', '.join(sorted(catalog))})",
                                 file=str(inv.path), field=f"images.{slot}.name")
        base = entry_source(entry, catalog_dir=Path(catalog_path).parent, places=places,
                            materialize=materialize)
        resolved[slot] = replace(
            base,
            checksum=src.checksum or base.checksum,
            # A checksum written in the inventory replaces the catalog's checksum_url.
            checksum_url=None if src.checksum else (src.checksum_url or base.checksum_url),
            disk_format=src.disk_format or base.disk_format,
            container_format=src.container_format or base.container_format,
            bypass_glance=src.bypass_glance,
        )
        if resolved[slot].bypass_glance and not resolved[slot].url:
            raise InventoryError(f"catalog image {src.name!r} is a local file: it cannot bypass Glance",
                                 file=str(inv.path), field=f"images.{slot}.bypass_glance")
    return Images(**resolved)


def _expand(text: str, *, catalog_dir: Path, places: dict[str, str], entry: CatalogEntry,
            must_match: bool = True) -> Path:
    try:
        expanded = text.format(**places)
    except (KeyError, IndexError, ValueError) as exc:
        raise InventoryError(f"unknown placeholder in {text!r}: {exc} (known: "
                             f"{', '.join('{' + k + '}' for k in places)})",
                             field=f"images.{entry.name}.file") from None
    path = Path(os.path.expandvars(os.path.expanduser(expanded)))
    if not path.is_absolute():
        path = catalog_dir / path
    if glob.has_magic(str(path)):
        matches = sorted(glob.glob(str(path)), key=lambda p: (os.path.getmtime(p), p))
        if not matches and not must_match:
            return path
        if not matches:
            raise InventoryError(f"no file matches {path}", field=f"images.{entry.name}.file")
        return Path(matches[-1])
    return path


# ------------------------------------------------------- the lab's deploy stand-ins


def lab_deploy_image_bytes(kind: str) -> bytes:
    """The deterministic stand-in for a deploy kernel or ramdisk (never booted).

    Shaped so that format detection names them as it would the real ones: the
    kernel carries the bzImage "HdrS" signature at 0x202 (-> aki), the ramdisk
    is a gzip'ed cpio "newc" archive (-> ari).
    """
    note = b"k1prov lab stand-in: the lab's fake deploy interface never boots this file.\n"
    if kind == "lab-deploy-kernel":
        data = bytearray(4096)
        data[0x1FE:0x200] = b"\x55\xaa"
        data[0x202:0x206] = b"HdrS"
        data[0x400:0x400 + len(note)] = note
        return bytes(data)
    if kind == "lab-deploy-ramdisk":
        archive = _cpio_newc([("k1prov-lab-ramdisk.txt", note)])
        return gzip.compress(archive, mtime=0)
    raise ValueError(kind)


def write_lab_deploy_image(path: Path, kind: str) -> Path:
    """Write the stand-in at `path` unless identical bytes are already there."""
    data = lab_deploy_image_bytes(kind)
    if path.is_file() and path.read_bytes() == data:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, data)


def _cpio_newc(files: list[tuple[str, bytes]]) -> bytes:
    out = bytearray()

    def record(ino: int, name: str, mode: int, content: bytes) -> None:
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(content), 0, 0, 0, 0, len(encoded), 0]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(content)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, content) in enumerate(files, start=1):
        record(ino, name, 0o100644, content)
    record(0, "TRAILER!!!", 0, b"")
    return bytes(out)
