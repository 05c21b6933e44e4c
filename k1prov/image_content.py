"""What an image's bytes are: checksums and formats, with no network and no Glance.

- checksums: "sha256:HEX" / "sha512:HEX" (split_checksum, the one parser, used by the
  inventory loader, the image catalog and Glance registration), and checksum files
  (SHA256SUMS, SHA512SUMS, "<image>.sha256");
- formats: the disk and container formats Glance knows (one list for the inventory and the
  catalog), and sniffing them from an image's first bytes: qcow2 by its magic "QFI\\xfb",
  iso by "CD001" at byte 32769, a Linux kernel (bzImage "HdrS" at 0x202) as aki/aki and an
  initramfs (gzip, xz, zstd, lz4 or cpio magic) as ari/ari, everything else raw/bare.
  aki/ari is what devstack and Bifrost register IPA with, and Glance treats those two as
  uninspectable, so a kernel's legacy boot-sector header is not rejected as a bad MBR (it
  would be for "raw");
- direct_image_info: the instance_info of an image Ironic fetches itself (no Glance).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from k1prov.digest_cache import hash_file
from k1prov.errors import InventoryError

if TYPE_CHECKING:
    from k1prov.inventory.model import ImageSource

CHECKSUM_ALGOS = ("sha256", "sha512")
_CHECKSUM_LEN = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[0-9a-fA-F]+$")
# The formats Glance accepts (its [image_format]disk_formats / container_formats defaults).
DISK_FORMATS = ("raw", "qcow2", "iso", "aki", "ari", "ami", "vhd", "vhdx", "vmdk", "vdi", "ploop")
CONTAINER_FORMATS = ("bare", "aki", "ari", "ami", "ovf", "ova", "docker", "compressed")
# Enough to see every magic number detect_formats looks at (ISO's is at 32769).
SNIFF_SIZE = 64 * 1024
# A URL's suffix, when neither the source nor its bytes (not read: Ironic fetches them) say.
_SUFFIX_FORMAT = {".qcow2": "qcow2", ".iso": "iso", ".raw": "raw", ".img": "raw"}


# ---------------------------------------------------------------- checksums


def split_checksum(text: str, *, bare_hex: bool = True) -> tuple[str, str]:
    """("sha256", "hex...") from "sha256:HEX" / "sha512:HEX", or (with bare_hex) a bare
    digest told by its length. ValueError with the reason otherwise."""
    value = text.strip()
    if ":" in value:
        algo, _, digest = value.partition(":")
        algo = algo.lower()
    else:
        algo, digest = ({64: "sha256", 128: "sha512"}.get(len(value), "") if bare_hex else ""), value
    want = _CHECKSUM_LEN.get(algo)
    if want is None:
        raise ValueError("checksum must be 'sha256:HEX' or 'sha512:HEX'")
    if len(digest) != want or not _HEX.match(digest):
        raise ValueError(f"{algo} checksum must be {want} hex digits, got {len(digest)} "
                         "characters" + ("" if _HEX.match(digest or "x") else " (not hex)"))
    return algo, digest.lower()


def parse_checksum(text: str, *, field: str = "checksum") -> tuple[str, str]:
    """split_checksum for an image field: InventoryError naming `field`."""
    try:
        return split_checksum(text)
    except ValueError as exc:
        raise InventoryError(str(exc), field=field) from None


def checksum_from_sums_file(text: str, filename: str) -> tuple[str, str] | None:
    """The checksum of `filename` in a SHA*SUMS / "<file>.sha256" text, or None.

    Understands GNU lines ("HEX  name", "HEX *name"), BSD lines
    ("SHA256 (name) = HEX") and a file holding nothing but one digest.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        bsd = re.fullmatch(r"(SHA256|SHA512) \((.+)\) = ([0-9a-fA-F]+)", line)
        if bsd and os.path.basename(bsd.group(2)) == filename:
            return parse_checksum(f"{bsd.group(1).lower()}:{bsd.group(3)}")
        parts = line.split()
        if len(parts) >= 2 and os.path.basename(parts[1].lstrip("*")) == filename:
            return parse_checksum(parts[0])
    if len(lines) == 1 and len(lines[0].split()) == 1:
        return parse_checksum(lines[0])
    return None


# ---------------------------------------------------------------- formats


def detect_formats(head: bytes) -> tuple[str, str]:
    """(disk_format, container_format) from the first SNIFF_SIZE bytes of an image."""
    if head[:4] == b"QFI\xfb":
        return "qcow2", "bare"
    if head[32769:32774] == b"CD001":
        return "iso", "bare"
    if head[0x202:0x206] == b"HdrS":
        return "aki", "aki"
    initramfs_magics = (b"\x1f\x8b", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18",
                        b"070701", b"070702", b"070707")
    if any(head.startswith(magic) for magic in initramfs_magics):
        return "ari", "ari"
    return "raw", "bare"


def formats_for(src: "ImageSource", head: bytes) -> tuple[str, str]:
    """The formats the source gives, the sniffed ones for what it leaves out."""
    disk, container = detect_formats(head)
    if src.disk_format:
        disk = src.disk_format
        container = src.container_format or (disk if disk in ("aki", "ari", "ami") else "bare")
    elif src.container_format:
        container = src.container_format
    return disk, container


# ---------------------------------------------------------------- local sources


def read_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(SNIFF_SIZE)


def source_filename(src: "ImageSource") -> str:
    if src.url:
        return os.path.basename(urlparse(src.url).path)
    return os.path.basename(src.file or "")


def local_path(src: "ImageSource") -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(src.file or "")))
    if not path.is_file():
        raise InventoryError(f"image {src.name}: file {path} not found", field=f"images.{src.name}.file")
    return path


# ---------------------------------------------------------------- bypassing Glance


def direct_image_info(src: "ImageSource") -> dict[str, str]:
    """instance_info fields that let standalone Ironic fetch the image itself (no Glance).

    A checksum becomes image_os_hash_algo + image_os_hash_value; a checksum_url
    is handed to Ironic as image_checksum (Ironic reads checksum files itself);
    a local file becomes a file:// URL (Ironic's conductor must be allowed to
    read it: [conductor]file_url_allowed_paths) with its sha256 computed here.
    """
    info: dict[str, str] = {}
    if src.url:
        info["image_source"] = src.url
    elif src.file:
        path = local_path(src).resolve()
        info["image_source"] = path.as_uri()
    else:
        raise InventoryError(f"image {src.name}: give a file or url", field=f"images.{src.name}")
    if src.checksum:
        algo, value = parse_checksum(src.checksum, field=f"images.{src.name}.checksum")
        info["image_os_hash_algo"], info["image_os_hash_value"] = algo, value
    elif src.checksum_url:
        info["image_checksum"] = src.checksum_url
    elif src.file:
        info["image_os_hash_algo"] = "sha256"
        info["image_os_hash_value"] = hash_file(local_path(src), ["sha256"])["sha256"]
    else:
        raise InventoryError(f"image {src.name}: an image that bypasses Glance needs a checksum "
                             "or checksum_url", field=f"images.{src.name}.checksum")
    disk_format = src.disk_format
    if disk_format is None and src.file:
        disk_format = detect_formats(read_head(local_path(src)))[0]
    if disk_format is None:
        suffix = Path(urlparse(src.url or "").path).suffix.lower()
        disk_format = _SUFFIX_FORMAT.get(suffix)
    if disk_format:
        info["image_disk_format"] = disk_format
    return info
